"""The settings `make coverage` runs the suite with ([tool.coverage.*] in pyproject.toml):
the Python processes the tests start are measured, a process ended by SIGTERM still takes
brewops's clean-up, an xdist worker killed after its tests keeps what they ran, and the code
a Lambda package runs from elsewhere counts as lib/brewops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import coverage

from fixtures.checkout import git_in
from fixtures.commands import run_in_group
from fixtures.coverage_run import unmeasured

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PYPROJECT = ROOT / "pyproject.toml"
INTERRUPTS = ROOT / "lib" / "brewops" / "interrupts.py"


def measured(data_dir: Path) -> coverage.CoverageData:
    """The data files of `data_dir` combined, as `make coverage` combines them."""
    cov = coverage.Coverage(data_file=str(data_dir / ".coverage"), config_file=str(PYPROJECT))
    cov.combine([str(data_dir)])
    return cov.get_data()


def test_the_settings_keep_the_data_and_the_report_in_the_ignored_build_folder():
    config = coverage.Coverage(config_file=str(PYPROJECT)).config
    for path in (config.data_file, config.html_dir):
        assert Path(path).parts[0] == "build", path
    check = ["check-ignore", "--quiet", "--no-index", "build/coverage/.coverage"]
    ignored = git_in(ROOT, *check, exit_codes=(0, 1))  # 1: not ignored
    assert ignored.returncode == 0, "build/ is not ignored by git"


# started by a script `coverage run` runs, as pytest starts the suite's processes
CHILD = """
import os, time
from brewops.interrupts import terminate_as_interrupt
with terminate_as_interrupt():
    try:
        print("ready", os.getpid(), flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("cleaned up", flush=True)
"""
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, encoding="locale")
for line in child.stdout:
    print(line, end="", flush=True)
sys.exit(child.wait())
"""


def test_a_process_a_test_starts_is_measured_and_sigterm_takes_its_clean_up(tmp_path: Path):
    # GIVEN a process started from a script run under coverage with the project's settings,
    # waiting in brewops's SIGTERM-as-Ctrl-C handling
    (tmp_path / "parent.py").write_text(PARENT, encoding="utf-8")
    env = {
        **unmeasured(os.environ),  # not measured by a `make coverage` running this test
        "COVERAGE_FILE": str(tmp_path / "data" / ".coverage"),
    }
    parent = subprocess.Popen(
        [sys.executable, "-m", "coverage", "run", f"--rcfile={PYPROJECT}", tmp_path / "parent.py"],
        stdout=subprocess.PIPE,
        encoding="locale",
        env=env,
        cwd=ROOT,
    )
    try:
        assert parent.stdout is not None
        ready, pid = parent.stdout.readline().split()
        assert ready == "ready"
        # WHEN it is sent SIGTERM
        os.kill(int(pid), signal.SIGTERM)
        output, _ = parent.communicate(timeout=60)
    finally:
        parent.kill()
    # THEN it ends through brewops's clean-up (coverage's own handler would stand in its
    # way), and the lines it alone ran are measured
    assert (parent.returncode, output) == (0, "cleaned up\n")
    source = INTERRUPTS.read_text(encoding="utf-8").splitlines()
    interrupted = next(n for n, line in enumerate(source, 1) if "raise interrupt" in line)
    assert interrupted in (measured(tmp_path / "data").lines(str(INTERRUPTS)) or [])


def test_a_lambda_package_extracted_elsewhere_is_reported_as_lib_brewops(tmp_path: Path):
    # the zip `package_code` makes of lib/, extracted to a folder removed since
    extracted = tmp_path / "brewops-bench-x" / "package" / "brewops" / "transform.py"
    (tmp_path / "data").mkdir()
    data = coverage.CoverageData(basename=str(tmp_path / "data" / ".coverage"), suffix="worker")
    data.add_lines({str(extracted): [1, 3]})
    data.write()

    combined = measured(tmp_path / "data")

    assert combined.measured_files() == {str(ROOT / "lib" / "brewops" / "transform.py")}


# run in an xdist worker, which then ends by SIGKILL before coverage's own exit handler
# runs: what xdist does to a worker not gone 10 s after its tests
KILLED_WORKER_TEST = """
import atexit, os, signal
from brewops.interrupts import terminate_as_interrupt

def test_runs_brewops_in_a_worker_killed_at_its_exit():
    with terminate_as_interrupt():
        pass
    atexit.register(os.kill, os.getpid(), signal.SIGKILL)
"""


def test_a_pytest_worker_killed_after_its_tests_keeps_what_they_ran(tmp_path: Path):
    # GIVEN a test run as `make coverage` runs the suite, in one xdist worker, with the
    # suite's plugin that saves the measurement (and no other: they only slow it down)
    (tmp_path / "test_killed.py").write_text(KILLED_WORKER_TEST, encoding="utf-8")
    env = {
        **unmeasured(os.environ),  # not measured by a `make coverage` running this test
        "COVERAGE_FILE": str(tmp_path / "data" / ".coverage"),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    under_coverage = ["-m", "coverage", "run", f"--rcfile={PYPROJECT}", "-m", "pytest", "-n", "1"]
    plugins = ["-p", "xdist.plugin", "-p", "fixtures.coverage_run", "-p", "no:cacheprovider"]
    # WHEN its worker is killed once its tests are done
    run = run_in_group(
        [sys.executable, *under_coverage, *plugins, "--rootdir", str(tmp_path), "test_killed.py"],
        capture_output=True,
        encoding="locale",
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    # THEN the lines the test ran in that worker are measured all the same
    assert run.returncode == 0, run.stdout + run.stderr
    source = INTERRUPTS.read_text(encoding="utf-8").splitlines()
    entered = next(n for n, line in enumerate(source, 1) if "def terminate_as_interrupt" in line)
    lines = measured(tmp_path / "data").lines(str(INTERRUPTS)) or []
    assert [n for n in lines if n > entered], run.stdout
