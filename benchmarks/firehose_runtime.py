"""The local Firehose runtime delivering 100,000 synthetic beers: throughput and peak memory.

    .venv/bin/python benchmarks/firehose_runtime.py [--beers 100000] [--shards N] [--idle S]

Deploys the template on its own emulator (a temporary local target; the template's
ShardCount unless `--shards` is given), puts the beers with the producer, then drains BOTH
delivery streams (raw: GZIP NDJSON; cleaned: Lambda transform + Parquet) in a separate
process, so that process's peak RSS is the runtime's alone.

- runtime_rps: beers / seconds to deliver them through both delivery streams (each record
  is read once per delivery stream); per-stream rates are printed too.
- peak_rss_mb: peak resident memory of the draining process; target_met: under 1 GiB.
- put_seconds: putting the beers into the stream; drain_seconds: delivering them through
  both delivery streams; per_stream_rps: records per second of each delivery stream.
- With `--idle S`, the continuous runtime (`brewops stream run`) then runs S seconds with
  nothing to deliver, in a separate process: idle_reads_per_second, the GetRecords calls it
  makes each second (one per shard and delivery stream each poll); idle_runtime_cpu_percent
  and idle_emulator_cpu_percent, the CPU time that process and the emulator use, in percent
  of the idle seconds (of one core).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import islice

CHUNK = 5_000


def produce(outputs: dict[str, str], kinesis, n: int) -> float:
    from brewops.catalog import default_catalog_path, load_catalog
    from brewops.producer import put_beers
    from brewops.synth import iter_synthetic_beers

    beers = iter_synthetic_beers(load_catalog(default_catalog_path()), n, seed=7)
    started, sent = time.perf_counter(), 0
    while chunk := list(islice(beers, CHUNK)):
        report = put_beers(chunk, outputs["StreamName"], kinesis)
        assert report.ok, report.as_dict()
        sent += report.sent
        print(f"  put {sent:,} beers ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def worker(outputs: dict[str, str], state_dir: str) -> None:
    """Drain both delivery streams; print the figures as JSON."""
    from brewops.firehose_runtime import FirehoseRuntime

    started = time.perf_counter()
    runtime = FirehoseRuntime.from_outputs(outputs, state_dir=state_dir, progress=False)
    report = runtime.drain()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"seconds": seconds, "peak_rss_mb": own_peak_kib() / 1024, "streams": report.rows()}
        )
    )


def idle_worker(outputs: dict[str, str], state_dir: str, seconds: float, emulator: int) -> None:
    """Run the continuous runtime `seconds` with nothing to deliver; print the figures as
    JSON."""
    from collections import Counter

    import boto3
    import psutil

    from brewops.firehose_runtime import FirehoseRuntime

    session = boto3.Session()
    calls: Counter[str] = Counter()
    # the clients the runtime makes copy the session's handlers: registered before them
    session.events.register("before-call.kinesis", lambda model, **_: calls.update([model.name]))
    runtime = FirehoseRuntime.from_outputs(
        outputs, session=session, state_dir=state_dir, progress=False
    )
    processes = {"runtime": psutil.Process(), "emulator": psutil.Process(emulator)}
    used = {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}
    calls.clear()
    started = time.monotonic()
    report = runtime.run(max_seconds=seconds)
    elapsed = time.monotonic() - started
    assert report.read == 0, report.rows()  # idle: the drain delivered everything
    percent = {
        name: round(100 * (sum(p.cpu_times()[:2]) - used[name]) / elapsed, 2)
        for name, p in processes.items()
    }
    print(
        json.dumps(
            {
                "idle_seconds": round(elapsed, 1),
                "idle_reads_per_second": round(calls["GetRecords"] / elapsed, 2),
                "idle_runtime_cpu_percent": percent["runtime"],
                "idle_emulator_cpu_percent": percent["emulator"],
            }
        )
    )


def run_worker(job: dict[str, object]) -> dict[str, object]:
    """A worker in a separate process: the figures it prints."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def own_peak_kib() -> int:
    """Peak resident memory of this process alone: ru_maxrss would be at least the peak of
    the process that started it, which Linux carries across exec; VmHWM starts afresh."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])  # kB
    except FileNotFoundError:  # no /proc: macOS
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, else KiB


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--beers", type=int, default=100_000, help="beers to put and deliver (default: 100000)"
    )
    parser.add_argument("--shards", type=int, help="ShardCount (default: the template's)")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="seconds to run the continuous runtime with nothing to deliver (default: 0, none)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.idle < 0:
        parser.error("--idle must be 0 or more")
    if args.beers < 1:
        parser.error("--beers must be at least 1")
    if args.shards is not None and args.shards < 1:  # 0 would deploy the template's count
        parser.error("--shards must be at least 1")
    if args.worker:
        job = json.loads(args.worker)
        (idle_worker if "seconds" in job else worker)(**job)
        return

    state_dir = tempfile.mkdtemp(prefix="brewops-bench-")
    os.environ["BREWOPS_LOCAL_STATE_DIR"] = state_dir
    from botocore.config import Config

    from brewops import local, paths
    from brewops.local import deploy
    from brewops.local.state import emulator_environment

    state = local.up(deploy=False)
    try:
        state.outputs = deploy.deploy(
            state.session(),
            state.endpoint_url,
            paths.template_path(),
            state.stack_name,
            {
                "PunkApiUrl": state.punkapi_url,
                "PunkApiVersion": "v2",
                **({"ShardCount": str(args.shards)} if args.shards else {}),
            },
        )
        state.deployed = True
        state.save()
        os.environ.update(emulator_environment(state.endpoint_url, state.region))
        # No client-side retries: a large call the emulator is still processing would be
        # sent again on a timeout and its records put twice.
        kinesis = state.session().client(
            "kinesis",
            endpoint_url=state.endpoint_url,
            config=Config(read_timeout=900, retries={"total_max_attempts": 1}),
        )
        shards = len(kinesis.list_shards(StreamName=state.outputs["StreamName"])["Shards"])
        print(f"putting {args.beers:,} beers into {shards} shard(s)")
        put_seconds = produce(state.outputs, kinesis, args.beers)

        print("draining both delivery streams in a separate process")
        job = {"outputs": state.outputs, "state_dir": str(paths.local_state_dir())}
        result = run_worker(job)
        idle = {}
        if args.idle:
            print(f"running the continuous runtime {args.idle:g} s with nothing to deliver")
            emulator = state.services["emulator"].pid
            idle = run_worker({**job, "seconds": args.idle, "emulator": emulator})
    finally:
        local.down()
    shutil.rmtree(state_dir)  # its server logs, kept when the run failed

    for row in result["streams"]:
        rate = row["read"] / row["seconds"] if row["seconds"] else 0.0
        print(
            f"  {row['delivery_stream']}: read {row['read']:,}, delivered {row['delivered']:,}, "
            f"failed {row['failed']}, {row['objects']} object{'' if row['objects'] == 1 else 's'}, "
            f"{row['seconds']:.1f} s "
            f"({rate:,.0f} records/s)"
        )
        assert row["read"] == args.beers, row
        assert row["delivered"] + row["failed"] + row["dropped"] == args.beers, row
    figures = {
        "beers": args.beers,
        "shards": shards,
        "delivery_streams": [row["delivery_stream"] for row in result["streams"]],
        "runtime_rps": round(args.beers / result["seconds"], 1),
        "drain_seconds": round(result["seconds"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "put_seconds": round(put_seconds, 1),
        "per_stream_rps": {
            row["delivery_stream"]: round(row["read"] / row["seconds"], 1)
            for row in result["streams"]
            if row["seconds"]
        },
    }
    figures["target_met"] = figures["peak_rss_mb"] < 1024
    figures.update(idle)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
