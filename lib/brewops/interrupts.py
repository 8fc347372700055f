"""SIGTERM and SIGHUP end a command as Ctrl-C does.

A cancelled CI job, `timeout` and `kill` send SIGTERM; a closed terminal or a dropped SSH
session sends SIGHUP. By default either ends Python at once: no `finally`, no clean-up. The
local target's servers run in sessions of their own, so a `brewops run` ended that way
would leave them running. Raised as KeyboardInterrupt, the signals take the same clean-up
paths as Ctrl-C. A signal that is ignored (`nohup` ignores SIGHUP) stays ignored.

Python runs a signal's handler wherever the main thread stands, a weakref callback or a
`__del__` among them, where an exception is printed as "Exception ignored" and dropped: the
command would go on as if no signal had come. The signal of such an interrupt is sent
again, to be raised once that code has returned.

Work done in a thread while the main one waits (`in_background`) does not hold up a
Ctrl-C: the interrupt reaches the notebook, or ends the command, at once.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from types import FrameType
from typing import Any, TypeVar, cast

T = TypeVar("T")

SIGNALS = (signal.SIGTERM, signal.SIGHUP)

# id() of the last KeyboardInterrupt `_interrupt` raised, and the signal it stands for
_last_raised: tuple[int, int] | None = None

# the signal `_interrupt` last turned into an interrupt since `terminate_as_interrupt` began
_received: int | None = None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _last_raised, _received
    interrupt = KeyboardInterrupt()
    _last_raised = (id(interrupt), signum)
    _received = signum
    raise interrupt


def exit_status() -> int:
    """The exit status of a command an interrupt ended, as a shell gives a program the signal
    killed: 128 + the signal's number. 143 for SIGTERM, 129 for SIGHUP, else 130 (Ctrl-C)."""
    return 128 + (_received or signal.SIGINT)


def _delivered_again_if_dropped(previous: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An unraisable-exception hook that sends again the signal of an interrupt Python
    dropped, and hands anything else to `previous`."""

    def hook(unraisable: Any) -> None:
        global _last_raised
        raised = _last_raised
        # id() alone could name a later object at a freed interrupt's address
        if (
            raised is None
            or not isinstance(unraisable.exc_value, KeyboardInterrupt)
            or id(unraisable.exc_value) != raised[0]
        ):
            previous(unraisable)
            return
        _last_raised = None
        # From another thread: the main thread's handler would run within this hook.
        # A signal to the main thread, as `kill` gives, also ends a system call it waits in.
        main = cast(int, threading.main_thread().ident)  # started: it has one
        _thread.start_new_thread(signal.pthread_kill, (main, raised[1]))

    return hook


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the duration, SIGTERM and SIGHUP raise KeyboardInterrupt where they would have
    ended the process; then the old handlers are back. Only the main thread may set a
    handler: elsewhere this does nothing."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    replaced = {
        signum: signal.signal(signum, _interrupt)
        for signum in SIGNALS
        if signal.getsignal(signum) is signal.SIG_DFL
    }
    unraisable_hook = sys.unraisablehook
    if replaced:
        sys.unraisablehook = _delivered_again_if_dropped(unraisable_hook)
    try:
        yield
    finally:
        sys.unraisablehook = unraisable_hook
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


def in_background(function: Callable[..., T], *args: Any) -> Future[T]:
    """`function(*args)` in a daemon thread, for work that writes nothing and that the caller
    may give up on: a Ctrl-C while it runs is not kept waiting for it to end, neither in a
    notebook's kernel (as leaving a ThreadPoolExecutor's `with` would) nor at the exit of a
    command (which joins a pool's threads)."""
    future: Future[T] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(function(*args))
        except BaseException as error:  # given to whoever asks for the result
            future.set_exception(error)

    threading.Thread(target=run, name=f"background {function.__name__}", daemon=True).start()
    return future
