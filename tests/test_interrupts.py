"""SIGTERM (a cancelled CI job, `timeout`, `kill`) ends a command, and a test run, through
the clean-up Ctrl-C takes, instead of ending Python where it stands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brewops.interrupts import terminate_as_interrupt

TESTS = Path(__file__).parent


def _started(script: str, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """A Python process that prints "ready" once it is where SIGTERM should find it."""
    process = subprocess.Popen(
        [sys.executable, *args] if args else [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        },
    )
    for line in process.stdout:
        if "ready" in line:
            return process
    process.kill()
    pytest.fail(f"never got ready: {process.communicate()[0]}")


def _terminated(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, output


def test_a_terminated_command_runs_its_clean_up():
    # a command of the real `brewops` group, which waits inside a try/finally
    process = _started(
        textwrap.dedent(
            """
            import time
            import click
            from brewops import cli

            @click.command()
            def linger():
                try:
                    print("ready", flush=True)
                    time.sleep(120)
                finally:
                    print("cleaned up", flush=True)

            cli.COMMANDS["linger"] = ("__main__:linger", "waits")
            cli.main(["linger"])
            """
        )
    )

    code, output = _terminated(process)

    assert "cleaned up" in output
    assert code == 1, output  # click's exit after an interrupt, not death by the signal
    assert "Aborted!" in output


def test_a_terminated_test_run_tears_its_fixtures_down(tmp_path: Path):
    torn_down = tmp_path / "torn-down"
    (tmp_path / "test_waits.py").write_text(
        textwrap.dedent(
            f"""
            import time
            import pytest

            @pytest.fixture(scope="session")
            def server():
                yield
                open({str(torn_down)!r}, "w").write("stopped")

            def test_waits(server):
                print("ready", flush=True)
                time.sleep(120)
            """
        )
    )
    process = _started(
        "",
        "-m",
        "pytest",
        "-s",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "fixtures.interrupts",  # the plugin this suite loads
        "--rootdir",
        str(tmp_path),
        "test_waits.py",
        cwd=tmp_path,
    )

    code, output = _terminated(process)

    assert torn_down.read_text() == "stopped", output
    assert code == pytest.ExitCode.INTERRUPTED, output


def test_the_old_handler_is_back_afterwards():
    def before(signum, frame):
        pytest.fail("the handler from before was called")

    suite_handler = signal.signal(signal.SIGTERM, before)
    try:
        with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, suite_handler)
