"""Memory of `brewops run`: the peak of all its processes together, and of each kind.

    .venv/bin/python benchmarks/run_memory.py [--target local] [--only 05 ...] [-p NAME VALUE]
        [--interval 0.1]

Runs `brewops run --no-progress` (every notebook, or those of --only) with its outputs in a
temporary folder (BREWOPS_BUILD_DIR), so that it starts a local target of its own, and
samples the resident memory (RSS) of every process under it at each interval:

- peak_total_mb: the largest sum over all of them at one sample, about what the machine (a
  container's or Colab's memory limit) must hold for the run.
- runner_mb: `brewops run` itself; emulator_mb and punkapi_mb: the local target's servers.
- For each notebook NN run: NN_kernel_mb, its kernel's peak; NN_workers_mb, the peak sum of
  the processes its kernel starts (the joblib workers of notebook 05's training);
  NN_total_mb, the peak sum of everything while it ran; NN_seconds, as the run says it.
- seconds: the whole run; failed: whether the run failed (its output is printed, and the
  script exits with the run's status).

RSS counts the pages of the shared libraries in each process, so the sums are upper bounds;
a sample every 0.1 s can miss a peak shorter than that.

The last line printed is one JSON object with the figures.

Ended by Ctrl-C, SIGTERM or SIGHUP, the script passes the signal on to the run, which stops
its notebook and its local target, and waits for it before removing the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

NOTEBOOK_STARTS = re.compile(r"^==> (\d{2})_\w+\.ipynb")
NOTEBOOK_ENDS = re.compile(r"^    (\w+) in ([0-9.]+) s$")  # after its start: "    ok in 21.3 s"


def kind_of(process, kernels: set[int]) -> str:
    """What a process of the run is: by its command line, or by the kernel that started it."""
    import psutil

    try:
        command = " ".join(process.cmdline())
        parents = {p.pid for p in process.parents()}
    except psutil.Error:
        return "gone"
    if "ipykernel_launcher" in command:
        return "kernel"
    if parents & kernels:
        return "workers"
    if "brewops.local.emulator" in command:
        return "emulator"
    if " api serve" in command:
        return "punkapi"
    return "runner"


def sample(
    run: subprocess.Popen, peaks: dict[str, float], notebook: list[str], interval: float
) -> None:
    """Sample the memory of `run` and every process under it into `peaks` until it ends."""
    import psutil

    root = psutil.Process(run.pid)
    while run.poll() is None:
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        kernels = {p.pid for p in processes if kind_of(p, set()) == "kernel"}
        by_kind: dict[str, float] = defaultdict(float)
        for process in processes:
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.Error:
                continue
            by_kind[kind_of(process, kernels)] += rss
        total = sum(by_kind.values())
        current = notebook[0]
        peaks["total"] = max(peaks["total"], total)
        for kind in ("runner", "emulator", "punkapi"):
            peaks[kind] = max(peaks[kind], by_kind[kind])
        if current != "up":
            for kind in ("kernel", "workers"):
                peaks[f"{current}_{kind}"] = max(peaks[f"{current}_{kind}"], by_kind[kind])
            peaks[f"{current}_total"] = max(peaks[f"{current}_total"], total)
        time.sleep(interval)


def stop(run: subprocess.Popen) -> None:
    """Pass the signal that ended this script on to `run`, and wait while it stops what it
    started (its local target runs in sessions of its own: nothing else would stop it).
    The run leads a session of its own, so it gets each signal once, from here."""
    from brewops.interrupts import exit_status

    while True:
        try:
            run.send_signal(exit_status() - 128)
            run.wait()
            return
        except KeyboardInterrupt:  # another signal meanwhile: passed on too
            continue


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="local", choices=["local", "aws"])
    parser.add_argument("--only", nargs="*", default=[], help="notebook numbers (default: all)")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, passed to brewops run (e.g. `brewops run -p n_jobs 1`)",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    args = parser.parse_args()
    if args.interval <= 0:
        parser.error("--interval must be more than 0")

    from brewops.interrupts import exit_status, terminate_as_interrupt

    command = [sys.executable, "-m", "brewops.cli", "run", "--target", args.target]
    command += ["--no-progress", *(f"--only={number}" for number in args.only)]
    for name, value in args.parameter:
        command += ["-p", name, value]
    peaks: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = {}
    notebook = ["up"]  # the one running, as the run's output says
    output: list[str] = []

    def follow(stream) -> None:
        for line in stream:
            output.append(line)
            started, ended = NOTEBOOK_STARTS.match(line), NOTEBOOK_ENDS.match(line)
            if started:
                notebook[0] = started.group(1)
            elif ended and notebook[0] != "up":
                seconds[notebook[0]] = float(ended.group(2))

    # SIGTERM and SIGHUP as Ctrl-C: the run is stopped, not left running on its own
    with (
        terminate_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="brewops-bench-run-") as build,
    ):
        started = time.perf_counter()
        run = subprocess.Popen(
            command,
            env={**os.environ, "BREWOPS_BUILD_DIR": build},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # signals reach it from here only (see `stop`)
        )
        reader = threading.Thread(target=follow, args=(run.stdout,), daemon=True)
        try:
            reader.start()
            sample(run, peaks, notebook, args.interval)
        except KeyboardInterrupt:
            stop(run)
            print("".join(output), end="", file=sys.stderr)
            sys.exit(exit_status())
        run.wait()
        reader.join(timeout=5)
        elapsed = time.perf_counter() - started

    if run.returncode != 0:
        print("".join(output), end="", file=sys.stderr)
    figures: dict[str, object] = {
        "target": args.target,
        "failed": run.returncode != 0,
        "seconds": round(elapsed, 1),
        "peak_total_mb": round(peaks["total"]),
        "runner_mb": round(peaks["runner"]),
        "emulator_mb": round(peaks["emulator"]),
        "punkapi_mb": round(peaks["punkapi"]),
    }
    for number in sorted({key.split("_")[0] for key in peaks if key[0].isdigit()}):
        for kind in ("kernel", "workers", "total"):
            figures[f"{number}_{kind}_mb"] = round(peaks[f"{number}_{kind}"])
        figures[f"{number}_seconds"] = seconds.get(number)
        print(
            f"{number}: kernel {peaks[f'{number}_kernel']:.0f} MB, workers "
            f"{peaks[f'{number}_workers']:.0f} MB, all {peaks[f'{number}_total']:.0f} MB",
            flush=True,
        )
    print(json.dumps(figures))
    sys.exit(run.returncode)  # a run that failed measured only part of the notebooks


if __name__ == "__main__":
    main()
