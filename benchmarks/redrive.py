"""What `brewops stream redrive` holds in memory while it reads a large error prefix.

    .venv/bin/python benchmarks/redrive.py [--mb 50] [--object-mb 5] [--catalog FILE]

Reads an error prefix of `--mb` MB of error lines (synthetic beers the function failed, in
objects of `--object-mb` MB, as Firehose buffers them) the way the command does
(`read_error_lines`, then the lines it would send), from an S3 stand-in that builds each
object when it is asked for, so that only what redrive keeps is measured.

- stored_mb: the error lines' bytes; lines: how many.
- peak_mb: peak of the memory Python allocated while reading and choosing (tracemalloc);
  peak_vs_stored: the two's ratio.
- seconds: reading and choosing, tracemalloc's overhead included.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import time
import tracemalloc

PREFIX = "errors/cleaned/processing-failed/"


class GeneratedS3:
    """The calls redrive's reading makes, over objects made on demand."""

    def __init__(self, lines_per_object: list[int], line_for) -> None:
        self.lines_per_object = lines_per_object
        self.line_for = line_for

    def get_paginator(self, name: str):
        return self

    def paginate(self, **kwargs):
        keys = [f"{PREFIX}2024/03/07/errors-{n}" for n in range(len(self.lines_per_object))]
        yield {"Contents": [{"Key": key} for key in keys]}

    def get_object(self, Bucket: str, Key: str):  # boto3's names
        n = int(Key.rsplit("-", 1)[1])
        first = sum(self.lines_per_object[:n])
        body = b"".join(
            self.line_for(i) + b"\n" for i in range(first, first + self.lines_per_object[n])
        )
        return {"Body": io.BytesIO(body)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mb", type=float, default=50, help="MB of error lines under the prefix (default: 50)"
    )
    parser.add_argument(
        "--object-mb", type=float, default=5, help="MB of each error object (default: 5)"
    )
    parser.add_argument("--catalog", help="catalogue of the beers (default: the downloaded one)")
    args = parser.parse_args()

    from brewops.catalog import load_catalog
    from brewops.reconcile import LoggedReasons
    from brewops.redrive import chosen, read_error_lines

    beers = load_catalog(args.catalog)

    def line_for(i: int) -> bytes:
        beer = {**beers[i % len(beers)], "id": i + 1}
        data = json.dumps(beer).encode() + b"\n"
        return json.dumps(
            {
                "errorCode": "Lambda.FunctionError",
                "errorMessage": "The Lambda function was throttled.",
                "rawData": base64.b64encode(data).decode(),
            }
        ).encode()

    line_bytes = sum(len(line_for(i)) + 1 for i in range(len(beers))) / len(beers)
    per_object = max(1, int(args.object_mb * 1e6 / line_bytes))
    total = max(1, int(args.mb * 1e6 / line_bytes))
    lines_per_object = [per_object] * (total // per_object)
    if total % per_object:
        lines_per_object.append(total % per_object)
    s3 = GeneratedS3(lines_per_object, line_for)
    stored = sum(len(line_for(i)) + 1 for i in range(total))

    tracemalloc.start()
    started = time.perf_counter()
    by_key, _, _ = read_error_lines(s3, "bench", PREFIX, lambda since_ms: LoggedReasons())
    to_send = chosen(line for lines in by_key.values() for line in lines)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(to_send) == total, (len(to_send), total)

    figures = {
        "stored_mb": round(stored / 1e6, 1),
        "lines": total,
        "objects": len(lines_per_object),
        "peak_mb": round(peak / 1e6, 1),
        "peak_vs_stored": round(peak / stored, 2),
        "seconds": round(seconds, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
