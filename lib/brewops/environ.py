"""Environment variables applied for the duration of a block (a Lambda's configuration, the
runner's per-notebook settings), then put back as they were."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def applied_environment(variables: dict[str, Any]) -> Iterator[None]:
    """Set `variables` for the duration (as strings, as Lambda passes them; one whose value
    is None is unset), then restore."""
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
