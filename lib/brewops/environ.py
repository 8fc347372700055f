"""Environment variables applied for the duration of a block (a Lambda's configuration, the
runner's per-notebook settings), then put back as they were."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def applied_environment(variables: dict[str, Any]) -> Iterator[None]:
    """Set `variables` for the duration (as strings, as Lambda passes them; one whose value
    is None is unset), then restore. A variable deleted while another thread walks
    `os.environ` fails that walk: only where no other thread reads the environment
    meanwhile (the runner, between notebooks). A Lambda call, which other threads run
    beside, uses `function_environment`."""
    saved = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Variables a Lambda function's environment added to the process, with the value last set:
# they outlive the call (see `function_environment`) until `forget_function_environments`.
_FUNCTION_ADDED: dict[str, str] = {}
_FUNCTION_ADDED_LOCK = threading.Lock()


@contextlib.contextmanager
def function_environment(variables: dict[str, Any]) -> Iterator[None]:
    """Set a function's `variables` for a call made in this process (as strings, as Lambda
    passes them), then put back those the process had.

    A variable the process lacked stays set, with the function's value, instead of being
    deleted: other threads walk `os.environ` at any moment (botocore and requests do on
    every request, looking for proxies), and a variable deleted in the middle of a walk
    raises KeyError in that thread. Values are only ever replaced, which no walk notices.
    So a function may see a variable another function's call left: handlers read the names
    they are configured with, which every call sets. `forget_function_environments()`
    removes the ones left, when no other thread is running."""
    saved = {name: os.environ.get(name) for name in variables}
    with _FUNCTION_ADDED_LOCK:
        for name, value in variables.items():
            if name in _FUNCTION_ADDED and saved[name] != _FUNCTION_ADDED[name]:
                del _FUNCTION_ADDED[name]  # set or unset since by the process: its own again
            if saved[name] is None or name in _FUNCTION_ADDED:
                _FUNCTION_ADDED[name] = str(value)
            os.environ[name] = str(value)
    try:
        yield
    finally:
        with _FUNCTION_ADDED_LOCK:
            for name, value in saved.items():
                if value is not None and name not in _FUNCTION_ADDED:
                    os.environ[name] = value


def forget_function_environments() -> None:
    """Remove the variables functions' calls added to this process and left, unless set to
    something else since. Only safe when no other thread may be walking `os.environ`."""
    with _FUNCTION_ADDED_LOCK:
        for name, value in _FUNCTION_ADDED.items():
            if os.environ.get(name) == value:
                del os.environ[name]
        _FUNCTION_ADDED.clear()


# A proxy set in the shell (HTTP_PROXY, ALL_PROXY…) is for other machines: requests and
# botocore send 127.0.0.1 through it too unless NO_PROXY names it, and the local target's
# servers, its notebooks' kernels and its Lambda handlers all talk to 127.0.0.1.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def bypass_proxy_for_loopback() -> None:
    """Add this machine's addresses to no_proxy and NO_PROXY, keeping what they list: a
    proxy still carries everything else (AWS on the aws target)."""
    for name in NO_PROXY_VARIABLES:
        # either spelling alone is read for both; the other one may be unset
        listed = os.environ.get(name) or next(
            (os.environ[other] for other in NO_PROXY_VARIABLES if os.environ.get(other)), ""
        )
        hosts = [host.strip() for host in listed.split(",") if host.strip()]
        missing = [host for host in LOOPBACK_HOSTS if host not in hosts]
        if missing or name not in os.environ:
            os.environ[name] = ",".join([*hosts, *missing])


@contextlib.contextmanager
def proxy_bypassed_for_loopback() -> Iterator[None]:
    """`bypass_proxy_for_loopback()` for the block, undone if it fails: with nothing started
    on this machine, the shell's settings stay as they were."""
    saved = {name: os.environ.get(name) for name in NO_PROXY_VARIABLES}
    bypass_proxy_for_loopback()
    try:
        yield
    except BaseException:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        raise
