"""Reading JSON the package did not write: hand-edited files, S3 objects, stream records.

Text of arrays in arrays deeper than Python's JSON reader goes (`"[" * 100_000 +
"]" * 100_000`, 200 kB, fits in one Kinesis record) makes `json.loads` raise RecursionError,
which the `except ValueError` that catches every other malformed text lets through.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from typing import Any


def parse_json(text: str | bytes | bytearray) -> Any:
    """`json.loads(text)`, raising ValueError for JSON nested too deeply as for any other
    text that is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a large tree of plain values (dicts,
    lists, strings, numbers) is built, and restored as it was, even on error.

    Such a tree holds no reference cycle, so the collector finds nothing in it, but it runs
    again and again over the growing heap: more than half the time of parsing 32,500 beers.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
