"""The log handler of a handler's Powertools logger."""

from __future__ import annotations

import logging
import sys


class CurrentStdout:
    """Whatever `sys.stdout` is at each write. A logger keeps the stream it is made with,
    at import: one made beside a stand-in (pytest's capture, click's CliRunner, a redirect)
    would write every later call's lines there, not in the function's log. On Lambda
    stdout never changes, and this writes where a plain `sys.stdout` would."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def stdout_handler() -> logging.StreamHandler[CurrentStdout]:
    """The handler Powertools would make, writing to the stdout of each call."""
    return logging.StreamHandler(CurrentStdout())
