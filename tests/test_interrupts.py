"""SIGTERM (a cancelled CI job, `timeout`, `kill`) and SIGHUP (a closed terminal) end a
command, and a test run, through the clean-up Ctrl-C takes, instead of ending Python where
it stands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from brewops.interrupts import in_background, terminate_as_interrupt
from fixtures.commands import run_in_group

TESTS = Path(__file__).parent
# named here, not taken from brewops.interrupts: a signal left out there must fail a test
SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# A script starts with the handlers a terminal gives it: a test run under nohup ignores
# SIGHUP, and a child inherits that, which would leave SIGHUP ignored, as it should be.
DEFAULT_HANDLERS = (
    "import signal\n"
    "for signum in (signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(signum, signal.SIG_DFL)\n"
)


def _started(*arguments: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """`python ARGUMENTS`, once it prints "ready": where SIGTERM should find it."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="locale",
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


def _terminated(
    process: subprocess.Popen[str], signum: signal.Signals = signal.SIGTERM
) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, output


@pytest.mark.parametrize("signum", [signal.SIGINT, *SIGNALS], ids=lambda s: s.name)
def test_a_terminated_command_runs_its_clean_up(signum: signal.Signals):
    # a command of the real `brewops` group, which waits inside a try/finally
    process = _started(
        "-c",
        DEFAULT_HANDLERS
        # Ctrl-C as a terminal sends it (a test run in the background may ignore SIGINT)
        + "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + textwrap.dedent(
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
        ),
    )

    code, output = _terminated(process, signum)

    assert "cleaned up" in output
    # as a shell gives a program the signal killed (130 for Ctrl-C, 143 for SIGTERM), not
    # click's 1, a failure's; yet after the clean-up, not death by the signal
    assert code == 128 + signum, output
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
        ),
        encoding="utf-8",
    )
    process = _started(
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

    assert torn_down.read_text(encoding="utf-8") == "stopped", output
    assert code == pytest.ExitCode.INTERRUPTED, output


# SIGTERM comes while a weakref callback runs, as the garbage collector may run one anywhere
_TERMINATED_IN_A_CALLBACK = DEFAULT_HANDLERS + textwrap.dedent(
    """
    import os, time, weakref
    from brewops.interrupts import terminate_as_interrupt

    class Held:
        pass

    def on_collected(ref):
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, in the callback

    with terminate_as_interrupt():
        try:
            held = Held()
            ref = weakref.ref(held, on_collected)
            del held
            time.sleep(5)
            print("went on")
        except KeyboardInterrupt:
            print("interrupted")
    """
)


def test_a_signal_that_comes_in_a_weakref_callback_still_interrupts():
    result = run_in_group(
        [sys.executable, "-c", _TERMINATED_IN_A_CALLBACK],
        capture_output=True,
        encoding="locale",
        timeout=60,
        check=False,
    )

    # not "Exception ignored in: <function on_collected …>", and no sleep to its end
    assert (result.stdout, result.stderr) == ("interrupted\n", "")


@pytest.fixture
def default_handlers():
    """SIGTERM and SIGHUP as a fresh process has them (the suite's plugin replaces them)."""
    saved = {signum: signal.signal(signum, signal.SIG_DFL) for signum in SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_the_default_handlers_are_back_afterwards(default_handlers, signum):
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signum)

    assert signal.getsignal(signum) is signal.SIG_DFL


def test_a_signal_that_is_ignored_stays_ignored(default_handlers):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a command

    with terminate_as_interrupt():
        try:
            signal.raise_signal(signal.SIGHUP)
        except KeyboardInterrupt:
            pytest.fail("an ignored SIGHUP interrupted")
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL

    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_in_another_thread_the_handlers_are_left_alone(default_handlers):
    # only the main thread may set one: a command run from a thread (a notebook's) still runs
    raised = []

    def command() -> None:
        try:
            with terminate_as_interrupt():
                pass
        except Exception as error:
            raised.append(error)

    thread = threading.Thread(target=command)
    thread.start()
    thread.join()

    assert raised == []
    assert [signal.getsignal(signum) for signum in SIGNALS] == [signal.SIG_DFL] * len(SIGNALS)


def test_a_command_interrupted_exits_without_waiting_for_its_background_work():
    # the seconds SAM's translation, or the final fit, would keep a Ctrl-C'd command alive
    process = _started(
        "-c",
        "import signal, threading, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from brewops.interrupts import in_background\n"
        "released = threading.Event()\n"
        "in_background(released.wait, 120)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n",
    )

    code, output = _terminated(process, signal.SIGINT)  # fails when still alive after 60 s

    assert code == -signal.SIGINT, output  # how Python ends on a Ctrl-C it was not caught in
    assert "KeyboardInterrupt" in output


def test_background_work_gives_its_result_or_its_error():
    def fails() -> None:
        raise ValueError("no template")

    assert in_background(sum, [1, 2]).result(timeout=10) == 3
    with pytest.raises(ValueError, match="no template"):
        in_background(fails).result(timeout=10)
