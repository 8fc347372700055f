"""Reading JSON the package did not write: hand-edited files, S3 objects, stream records.

Text of arrays in arrays deeper than Python's JSON reader goes (`"[" * 100_000 +
"]" * 100_000`, 200 kB, fits in one Kinesis record) makes `json.loads` raise RecursionError,
which the `except ValueError` that catches every other malformed text lets through.
"""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes | bytearray) -> Any:
    """`json.loads(text)`, raising ValueError for JSON nested too deeply as for any other
    text that is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
