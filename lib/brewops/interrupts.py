"""SIGTERM and SIGHUP end a command as Ctrl-C does.

A cancelled CI job, `timeout` and `kill` send SIGTERM; a closed terminal or a dropped SSH
session sends SIGHUP. By default either ends Python at once: no `finally`, no clean-up. The
local target's servers run in sessions of their own, so a `brewops run` ended that way
would leave them running. Raised as KeyboardInterrupt, the signals take the same clean-up
paths as Ctrl-C. A signal that is ignored (`nohup` ignores SIGHUP) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the duration, SIGTERM and SIGHUP raise KeyboardInterrupt where they would have
    ended the process; then the old handlers are back. Only the main thread may set a
    handler: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = {
        signum: signal.signal(signum, _interrupt)
        for signum in SIGNALS
        if signal.getsignal(signum) is signal.SIG_DFL
    }
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)
