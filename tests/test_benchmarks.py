"""The benchmark scripts that are quick enough to run here, on small sizes: they must keep
running and printing their figures (the figures themselves are not asserted)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
from types import SimpleNamespace

import nbformat
import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from brewops.paths import repo_root
from fixtures.commands import run_in_group
from fixtures.coverage_run import unmeasured

BENCHMARKS = repo_root() / "benchmarks"


def figures_printed(script: str, *arguments: str, env: dict[str, str] | None = None) -> dict:
    """Run a benchmark script; the figures of its last line, once it has ended well."""
    result = run_in_group(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        env=env,
        capture_output=True,
        encoding="locale",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_explains_its_figures_in_its_help(script):
    """Each script stands alone, to be run or copied by itself: its --help is its whole
    docstring, which says what each figure it prints means."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, encoding="locale"
    )

    assert result.returncode == 0, result.stderr
    assert "The last line printed is one JSON object" in result.stdout


def test_model_benchmark_prints_its_figures(catalog_path):
    figures = figures_printed(
        "model.py",
        "--beers",
        "60",
        "--catalog",
        str(catalog_path),
        env=unmeasured(os.environ),  # under coverage's tracer its training outlasts the timeout
    )
    assert figures["training_beers"] == 320  # the catalogue's beers with an IBU, deduplicated
    assert figures["beers"] == 60
    for name in (
        "fit_seconds",
        "time_split_seconds",
        "intervals_seconds",
        "model_mb",
        "load_seconds",
        "features_per_s",
        "predict_per_s",
        "one_beer_ms",
        "peak_rss_mb",
    ):
        assert figures[name] > 0, name


def test_validation_benchmark_prints_its_figures(catalog_path):
    figures = figures_printed("validation.py", "--beers", "60", "--catalog", str(catalog_path))
    assert figures["beers"] == 60
    assert figures["raw_columns"] == 9  # the ids and numbers validate checks, with ingest_date
    for name in (
        "raw_read_seconds",
        "raw_read_peak_rss_mb",
        "quality_seconds",
        "distributions_seconds",
        "gravities_seconds",
        "peak_rss_mb",
    ):
        assert figures[name] > 0, name


def test_the_redrive_benchmark_prints_its_figures(catalog_path):
    figures = figures_printed(
        "redrive.py", "--mb", "0.2", "--object-mb", "0.05", "--catalog", str(catalog_path)
    )
    assert figures["objects"] > 1
    for name in ("stored_mb", "lines", "peak_mb", "peak_vs_stored", "seconds"):
        assert figures[name] > 0, name


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("script", "arguments", "figure"),
    [
        ("producer.py", ["--beers", "10", "--rounds", "1", "--one-by-one", "2"], "producer_rps"),
        ("firehose_runtime.py", ["--beers", "10"], "runtime_rps"),
        # an idle runtime still reads each shard once per poll
        ("firehose_runtime.py", ["--beers", "10", "--idle", "2"], "idle_reads_per_second"),
    ],
)
def test_a_streaming_benchmark_prints_its_figures_and_leaves_no_state_behind(
    tmp_path, script, arguments, figure
):
    result = run_in_group(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True,
        encoding="locale",
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where its emulator's state goes
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["beers"] == 10
    assert figures[figure] > 0
    assert not list(tmp_path.glob("brewops-bench-*")), "its state folder is removed"


@pytest.mark.emulator
def test_the_cold_start_benchmark_prints_its_figures_and_leaves_no_state_behind(tmp_path):
    result = run_in_group(
        [sys.executable, str(BENCHMARKS / "lambda_cold_start.py"), "--runs", "1", "--warm", "1"],
        capture_output=True,
        encoding="locale",
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where its package and emulator go
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["runs"] == 1
    assert figures["package_files"] > 0
    for handler in ("producer", "transform"):
        for figure in ("import_ms", "modules", "first_ms", "warm_ms"):
            assert figures[f"{handler}_{figure}"] > 0, f"{handler}_{figure}"
    assert not list(tmp_path.glob("brewops-bench-*")), "its temporary folder is removed"


HOLDS_MEMORY = """
import subprocess, sys, time
held = b"\\x01" * (200 * 2**20)  # written, so resident
child = "held = b'\\x01' * (100 * 2**20); import time; time.sleep(2)"
subprocess.run([sys.executable, "-c", child], check=True)
"""


def home_with_a_notebook(tmp_path, source: str):
    """A checkout (BREWOPS_HOME) whose one notebook, 01, runs `source`."""
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('target = "local"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, home / "notebooks" / "01_notebook.ipynb")
    return home


def test_the_run_memory_benchmark_counts_each_kernel_and_the_processes_it_starts(tmp_path):
    home = home_with_a_notebook(tmp_path, HOLDS_MEMORY)

    figures = figures_printed(
        "run_memory.py", "--target", "aws", env={**os.environ, "BREWOPS_HOME": str(home)}
    )
    assert figures["failed"] is False
    assert figures["01_kernel_mb"] >= 200
    assert figures["01_workers_mb"] >= 100  # the kernel's child
    assert figures["peak_total_mb"] >= figures["01_total_mb"] >= 300
    assert figures["01_seconds"] > 0


def test_the_run_memory_benchmark_ended_by_sigterm_stops_the_run_it_measures(tmp_path):
    import psutil

    home = home_with_a_notebook(tmp_path, "import time; time.sleep(600)")
    benchmark = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "run_memory.py"), "--target", "aws"],
        env={**os.environ, "BREWOPS_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs: list[psutil.Process] = []
    try:
        for attempt in Retrying(stop=stop_after_delay(120), wait=wait_fixed(0.2), reraise=True):
            with attempt:
                runs = psutil.Process(benchmark.pid).children()
                assert runs, "brewops run not started"

        benchmark.terminate()  # as `kill` or `timeout` does: this process alone
        assert benchmark.wait(timeout=120) == 128 + signal.SIGTERM
        # the run it measured was told, and has ended (a notebook that takes 10 minutes)
        _, running = psutil.wait_procs(runs, timeout=120)
        assert running == []
    finally:
        for process in [benchmark, *runs]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        benchmark.wait()


@pytest.mark.parametrize(
    ("script", "arguments", "refusal"),
    [
        ("model.py", ["--beers", "0"], "--beers must be at least 1"),
        ("model.py", ["--catalog", "no-such-catalogue.json"], "Cannot read the catalogue"),
        ("validation.py", ["--beers", "0"], "--beers must be at least 1"),
        ("validation.py", ["--catalog", "no-such-catalogue.json"], "Cannot read the catalogue"),
        # the streaming ones would fail only after their emulator ran, with a traceback (the
        # other sizes small: a script that accepts the value runs quickly)
        ("producer.py", ["--beers", "0"], "--beers must be at least 1"),
        ("producer.py", ["--beers", "10", "--one-by-one", "0"], "--one-by-one must be at least 1"),
        ("producer.py", ["--beers", "10", "--rounds", "0"], "--rounds must be at least 1"),
        ("firehose_runtime.py", ["--beers", "0"], "--beers must be at least 1"),
        # 0 would be taken as not given: the template's ShardCount
        ("firehose_runtime.py", ["--beers", "10", "--shards", "0"], "--shards must be at least 1"),
        ("firehose_runtime.py", ["--beers", "10", "--idle", "-1"], "--idle must be 0 or more"),
        ("lambda_cold_start.py", ["--runs", "0"], "--runs must be at least 1"),
        ("lambda_cold_start.py", ["--warm", "0"], "--warm must be at least 1"),
        ("lambda_cold_start.py", ["--python", "no-such-python"], "no such interpreter"),
    ],
)
def test_a_benchmark_refuses_arguments_it_cannot_measure_with(script, arguments, refusal):
    result = run_in_group(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert refusal in result.stderr
    assert "Traceback" not in result.stderr


DRAIN_NOTHING = """
import runpy, sys
from brewops import firehose_runtime

class Drained:
    def rows(self):
        return []

class Runtime:
    @classmethod
    def from_outputs(cls, outputs, **options):
        return cls()

    def drain(self):
        return Drained()

firehose_runtime.FirehoseRuntime = Runtime
sys.argv = [sys.argv[1], "--worker", '{"outputs": {}, "state_dir": "unused"}']
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_draining_process_reports_its_own_peak_memory_not_its_parents():
    # Linux carries a process's peak RSS across exec: a large parent would set the floor
    parent_peak = b"\x01" * (768 * 1024 * 1024)
    result = run_in_group(
        [sys.executable, "-c", DRAIN_NOTHING, str(BENCHMARKS / "firehose_runtime.py")],
        capture_output=True,
        encoding="locale",
        timeout=120,
    )
    del parent_peak
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"] < 512


def test_the_draining_process_finds_its_peak_memory_where_there_is_no_proc(monkeypatch):
    # macOS: no /proc, and ru_maxrss in bytes (KiB on Linux)
    spec = importlib.util.spec_from_file_location("drain", BENCHMARKS / "firehose_runtime.py")
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)

    def no_proc(path, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(benchmark, "open", no_proc, raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=300 << 20))
    assert benchmark.own_peak_kib() == 300 << 10
