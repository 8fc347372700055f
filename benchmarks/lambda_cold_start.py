"""The Lambda functions' cold start: handler import time, first and warm invocations, package.

    .venv/bin/python benchmarks/lambda_cold_start.py [--runs 9] [--warm 5] [--python PATH]

Both handlers of infra/template.yaml run from the code package the local target uploads
(`brewops.local.deploy.package_code` of `lib/`, extracted to a temporary folder), in fresh
processes of `--python` started with `-B`. On Lambda the package holds no bytecode and
/var/task is read-only, so its modules are compiled again at every cold start: `-B` keeps
that so here. The other libraries come from `--python`'s environment: a virtual environment
made with Python 3.13 from `lib/requirements.txt`, plus boto3 (the runtime's own), is the
closest to Lambda; the default, this interpreter, has the development libraries too.

- <handler>_import_ms: the median, over `--runs` fresh processes, of importing the module.
- <handler>_modules: the modules that import adds to `sys.modules`.
- <handler>_first_ms: the first invocation, in a fresh process right after the import (it
  builds what the handler keeps for the execution environment: clients, models);
  <handler>_warm_ms: the median of the `--warm` invocations after it. The transform gets
  tests/events/firehose_kinesis_transform.json; the producer gets
  tests/events/eventbridge_scheduled.json and puts a beer from a Punk API server into a
  fresh stream of its own emulator (a temporary local target, not deployed).
- package_kb, package_files: the zip of the code (without the requirements `sam build`
  adds next to it).

The slowest imports of each handler (`python -X importtime`, cumulative) are printed too.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events"
HANDLERS = {
    "producer": ("brewops.lambdas.producer.app", EVENTS / "eventbridge_scheduled.json"),
    "transform": ("brewops.lambdas.transform.app", EVENTS / "firehose_kinesis_transform.json"),
}
SLOWEST_IMPORTS = 8


class LambdaContext:
    """What the handlers and Powertools read of the Lambda context object."""

    function_name = "brewops-cold-start"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:brewops-cold-start"
    aws_request_id = "cold-start"
    log_group_name = "/aws/lambda/brewops-cold-start"
    log_stream_name = "cold-start"

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self._ends = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def worker(module_name: str, event_file: str | None, warm: int) -> None:
    """Import the handler's module; invoke it when given an event. Prints the timings."""
    import importlib

    before = set(sys.modules)
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    figures: dict[str, object] = {
        "import_seconds": time.perf_counter() - started,
        "modules": len(set(sys.modules) - before),
        "package": str(Path(sys.modules["brewops"].__file__ or "").parent.parent),
    }
    if event_file:
        event = json.loads(Path(event_file).read_text(encoding="utf-8"))
        invocations = []
        for _ in range(1 + warm):
            started = time.perf_counter()
            module.handler(event, LambdaContext())
            invocations.append(time.perf_counter() - started)
        figures["first_seconds"] = invocations[0]
        figures["warm_seconds"] = statistics.median(invocations[1:])
    print(json.dumps(figures))


def run_worker(
    python: str, package: Path, arguments: list[str], env: dict[str, str] | None = None
) -> dict:
    result = subprocess.run(
        [python, "-B", __file__, "--worker", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(package)},
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stderr}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])  # the handler logs before it
    if Path(figures["package"]) != package:
        raise SystemExit(f"the handler ran the code of {figures['package']}, not the package")
    return figures


def slowest_imports(python: str, package: Path, module_name: str) -> list[str]:
    result = subprocess.run(
        [python, "-B", "-X", "importtime", "-c", f"import {module_name}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(package)},
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            rows.append((int(fields[1]), fields[2].strip()))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)]


def extracted_package(destination: Path) -> tuple[int, int]:
    from brewops.local.deploy import package_code

    body = package_code(ROOT / "lib")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        archive.extractall(destination)
        return len(body), len(archive.namelist())


def producer_environment(kinesis_endpoint: str, punkapi_url: str, stream: str) -> dict[str, str]:
    from brewops.local.state import emulator_environment

    return {
        **emulator_environment(kinesis_endpoint),
        "PUNKAPI_URL": punkapi_url,
        "PUNKAPI_VERSION": "v2",
        "STREAM_NAME": stream,
        "BEERS_PER_TICK": "1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=9, help="fresh processes per import (default: 9)"
    )
    parser.add_argument(
        "--warm", type=int, default=5, help="invocations after the first (default: 5)"
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter the handlers run in (default: this one)",
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        module_name, event_file, warm = args.worker
        worker(module_name, event_file or None, int(warm))
        return
    for option, value in (("--runs", args.runs), ("--warm", args.warm)):
        if value < 1:
            parser.error(f"{option} must be at least 1")
    if not shutil.which(args.python):
        parser.error(f"--python {args.python}: no such interpreter")

    work = Path(tempfile.mkdtemp(prefix="brewops-bench-"))
    try:
        package = work / "package"
        package_bytes, package_files = extracted_package(package)
        figures: dict[str, object] = {
            "runs": args.runs,
            "python": subprocess.run(
                [args.python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip(),
            "package_kb": round(package_bytes / 1024, 1),
            "package_files": package_files,
        }
        for name, (module_name, _) in HANDLERS.items():
            imports = [
                run_worker(args.python, package, [module_name, "", "0"]) for _ in range(args.runs)
            ]
            figures[f"{name}_import_ms"] = round(
                statistics.median(i["import_seconds"] for i in imports) * 1000, 1
            )
            figures[f"{name}_modules"] = imports[-1]["modules"]
            print(f"{name}: import {figures[f'{name}_import_ms']} ms (median of {args.runs})")
            for line in slowest_imports(args.python, package, module_name)[:SLOWEST_IMPORTS]:
                print(f"  {line}")

        module_name, event = HANDLERS["transform"]
        invoked = run_worker(args.python, package, [module_name, str(event), str(args.warm)])
        figures["transform_first_ms"] = round(invoked["first_seconds"] * 1000, 2)
        figures["transform_warm_ms"] = round(invoked["warm_seconds"] * 1000, 2)

        os.environ["BREWOPS_LOCAL_STATE_DIR"] = str(work / "local")
        from brewops import local

        state = local.up(deploy=False)
        try:
            kinesis = state.client("kinesis")
            stream = f"bench-cold-start-{os.getpid()}"
            kinesis.create_stream(StreamName=stream, ShardCount=1)
            kinesis.get_waiter("stream_exists").wait(StreamName=stream)
            module_name, event = HANDLERS["producer"]
            invoked = run_worker(
                args.python,
                package,
                [module_name, str(event), str(args.warm)],
                producer_environment(state.endpoint_url, str(state.punkapi_url), stream),
            )
        finally:
            local.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["producer_first_ms"] = round(invoked["first_seconds"] * 1000, 2)
    figures["producer_warm_ms"] = round(invoked["warm_seconds"] * 1000, 2)
    for name in HANDLERS:
        print(
            f"{name}: first invocation {figures[f'{name}_first_ms']} ms, "
            f"warm {figures[f'{name}_warm_ms']} ms (median of {args.warm})"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
