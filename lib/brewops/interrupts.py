"""SIGTERM ends a command as Ctrl-C does.

A CI job that is cancelled, `timeout`, `kill` and process managers send SIGTERM, whose
default ends Python at once: no `finally`, no clean-up. The local target's servers run in
sessions of their own, so a `brewops run` ended that way would leave them running. Raised
as KeyboardInterrupt, SIGTERM takes the same clean-up paths as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the duration, SIGTERM raises KeyboardInterrupt; then the old handler is back.
    Only the main thread may set a handler: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
