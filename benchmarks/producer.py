"""Producer throughput against the embedded emulator, next to its ceiling and to the naive way.

    .venv/bin/python benchmarks/producer.py [--beers 20000] [--one-by-one 1000] [--rounds 2]

- producer_rps: `put_beers` on N synthetic beers (serialisation, batching, retries included).
- ceiling_rps: bare boto3 `put_records` in batches of 500 on the same records, same run,
  serialisation included too, one call after another: what a single caller gets from
  this emulator. The producer keeps several calls in flight, so it may pass it.
- one_by_one_rps: one `put_record` per beer on the first 1,000 (what most public solutions
  of the challenge do).
- producer_vs_ceiling, producer_vs_one_by_one: the ratios; targets_met: at least 0.8 of
  the ceiling and 20 times one-by-one.

Each measurement writes to a fresh stream (4 shards), so all start from the same empty
state. The best of `--rounds` rounds is kept. Starts and stops its own emulator (a
temporary local target, not deployed). The last line printed is one JSON object with the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from itertools import islice

SHARDS = 4
BATCH = 500


def synthetic_beers(n: int) -> list[dict]:
    from brewops.catalog import default_catalog_path, load_catalog
    from brewops.synth import iter_synthetic_beers

    return list(iter_synthetic_beers(load_catalog(default_catalog_path()), n, seed=42))


def fresh_stream(kinesis) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    return name


def producer_rps(kinesis, beers: list[dict]) -> float:
    from brewops.producer import put_beers

    stream = fresh_stream(kinesis)
    started = time.perf_counter()
    report = put_beers(beers, stream, kinesis)
    seconds = time.perf_counter() - started
    assert report.ok, report.as_dict()
    return len(beers) / seconds


def ceiling_rps(kinesis, beers: list[dict]) -> float:
    from brewops.producer import serialise_beer

    stream = fresh_stream(kinesis)
    started = time.perf_counter()
    entries = ({"Data": serialise_beer(b), "PartitionKey": str(b["id"])} for b in beers)
    while batch := list(islice(entries, BATCH)):
        response = kinesis.put_records(StreamName=stream, Records=batch)
        assert not response["FailedRecordCount"]
    return len(beers) / (time.perf_counter() - started)


def one_by_one_rps(kinesis, beers: list[dict]) -> float:
    from brewops.producer import serialise_beer

    stream = fresh_stream(kinesis)
    started = time.perf_counter()
    for beer in beers:
        kinesis.put_record(
            StreamName=stream, Data=serialise_beer(beer), PartitionKey=str(beer["id"])
        )
    return len(beers) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--beers",
        type=int,
        default=20_000,
        help="beers for put_beers and the ceiling (default: 20000)",
    )
    parser.add_argument(
        "--one-by-one", type=int, default=1_000, help="beers put one at a time (default: 1000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds; the best is kept (default: 2)"
    )
    args = parser.parse_args()
    # a rate of nothing, or no round, would fail only after the emulator ran
    for option, value in (
        ("--beers", args.beers),
        ("--one-by-one", args.one_by_one),
        ("--rounds", args.rounds),
    ):
        if value < 1:
            parser.error(f"{option} must be at least 1")

    state_dir = tempfile.mkdtemp(prefix="brewops-bench-")
    os.environ["BREWOPS_LOCAL_STATE_DIR"] = state_dir
    from botocore.config import Config

    from brewops import local

    beers = synthetic_beers(args.beers)
    state = local.up(deploy=False)
    try:
        # No client-side retries: a large call the emulator is still processing would be
        # sent again on a timeout and its records put twice.
        kinesis = state.session().client(
            "kinesis",
            endpoint_url=state.endpoint_url,
            config=Config(read_timeout=900, retries={"total_max_attempts": 1}),
        )
        producer, ceiling, naive = [], [], []
        for round_number in range(1, args.rounds + 1):
            # alternate the order, so neither side always runs on a warmer emulator
            order = [ceiling_rps, producer_rps] if round_number % 2 else [producer_rps, ceiling_rps]
            for measure in order:
                rate = measure(kinesis, beers)
                (ceiling if measure is ceiling_rps else producer).append(rate)
                print(f"round {round_number}: {measure.__name__} = {rate:,.0f} records/s")
            naive.append(one_by_one_rps(kinesis, beers[: args.one_by_one]))
            print(f"round {round_number}: one_by_one_rps = {naive[-1]:,.0f} records/s")
    finally:
        local.down()
    shutil.rmtree(state_dir)  # its server logs, kept when the run failed

    figures = {
        "beers": args.beers,
        "shards": SHARDS,
        "producer_rps": round(max(producer), 1),
        "ceiling_rps": round(max(ceiling), 1),
        "one_by_one_rps": round(max(naive), 1),
    }
    figures["producer_vs_ceiling"] = round(figures["producer_rps"] / figures["ceiling_rps"], 3)
    figures["producer_vs_one_by_one"] = round(
        figures["producer_rps"] / figures["one_by_one_rps"], 1
    )
    figures["targets_met"] = (
        figures["producer_vs_ceiling"] >= 0.8 and figures["producer_vs_one_by_one"] >= 20
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
