"""The command line: errors a user can act on are one clean line; the Punk API version
follows the URL unless it is given."""

from __future__ import annotations

import ast
import contextlib
import errno
import fnmatch
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from click.testing import CliRunner

from brewops import cli, infra, streaming_cli
from brewops.cli import main
from brewops.paths import repo_root
from brewops.producer import FailedRecord, ProduceReport
from fixtures.commands import run_in_group
from fixtures.coverage_run import unmeasured
from fixtures.punkapi import ServedApi

BREWOPS = Path(sys.executable).parent / "brewops"


def _every_command() -> list[click.Context]:
    """A context for `brewops` and for each of its groups and commands, depth first."""
    walked: list[click.Context] = []

    def walk(ctx: click.Context) -> None:
        walked.append(ctx)
        if isinstance(ctx.command, click.Group):
            for name in ctx.command.list_commands(ctx):
                sub = ctx.command.get_command(ctx, name)
                walk(click.Context(sub, parent=ctx, info_name=name))

    walk(click.Context(main, info_name="brewops"))
    return walked


def test_every_option_of_every_command_says_what_it_does():
    walked = _every_command()
    undescribed = [
        f"{ctx.command_path} {param.opts[0]}"
        for ctx in walked
        for param in ctx.command.params
        if isinstance(param, click.Option) and not param.hidden and not param.help
    ]

    paths = {ctx.command_path for ctx in walked}
    assert {"brewops api serve", "brewops data crawl", "brewops stream backfill"} <= paths
    assert undescribed == []


_HELP_OF_EVERY_COMMAND = """
import json, click
from brewops.cli import main

helps = {}
def walk(ctx):
    helps[ctx.command_path] = ctx.command.get_help(ctx)
    if isinstance(ctx.command, click.Group):
        for name in ctx.command.list_commands(ctx):
            sub = ctx.command.get_command(ctx, name)
            walk(click.Context(sub, parent=ctx, info_name=name))
walk(click.Context(main, info_name="brewops"))
print(json.dumps(helps))
"""


def test_every_commands_help_is_the_same_when_python_strips_docstrings():
    # PYTHONOPTIMIZE=2 (python -OO) makes every __doc__ None: help taken from docstrings
    # would list the commands with no description and say nothing of what each does.
    # Both renderings run in a fresh process, alike but for that one variable.
    def every_help(optimize: str | None) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONOPTIMIZE"}
        environment["COLUMNS"] = "80"
        if optimize:
            environment["PYTHONOPTIMIZE"] = optimize
        result = subprocess.run(
            [sys.executable, "-c", _HELP_OF_EVERY_COMMAND],
            env=environment,
            capture_output=True,
            encoding="utf-8",
            check=True,
        )
        return json.loads(result.stdout)

    helps = every_help(None)

    assert every_help("2") == helps
    assert re.search(r"\n  train +Run the evaluation protocol", helps["brewops model"])


def test_the_readme_names_every_command_and_none_that_does_not_exist():
    text = (repo_root() / "README.md").read_text(encoding="utf-8")
    # `from brewops import …` in a code block names a module, not a command
    invocations = re.findall(r"(?<!from )\bbrewops (\w+)(?: (\w+))?", text)
    named = {" ".join(filter(None, m)) for m in invocations}
    paths = {
        ctx.command_path.removeprefix("brewops "): isinstance(ctx.command, click.Group)
        for ctx in _every_command()[1:]
    }
    commands = {path for path, is_group in paths.items() if not is_group}
    groups = {path for path, is_group in paths.items() if is_group}

    # a leaf command's next word is prose or an option ("brewops run against"), not a command
    mentioned = {n if n.split()[0] in groups else n.split()[0] for n in named}
    assert sorted(commands - mentioned) == [], "commands the README never mentions"
    assert sorted(mentioned - commands - groups) == [], "the README names what does not exist"


def test_a_target_that_is_not_running_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "nothing-here"))
    result = subprocess.run([BREWOPS, "stream", "drain"], capture_output=True, encoding="locale")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "brewops local up" in result.stderr


def test_a_build_dir_that_is_a_file_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("BREWOPS_LOCAL_STATE_DIR", raising=False)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    (tmp_path / "build").write_text("a file, not a folder", encoding="utf-8")

    result = subprocess.run([BREWOPS, "local", "status"], capture_output=True, encoding="locale")

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: BREWOPS_BUILD_DIR={tmp_path / 'build'} is a file, not a folder: set it to a "
        "folder, or unset it\n"
    )


def synth_one_beer_to(out: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BREWOPS, "data", "synth", "--n", "1", "--out", str(out)],
        capture_output=True,
        encoding="locale",
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
def test_an_out_in_a_folder_that_takes_no_new_file_is_one_line_naming_it():
    result = synth_one_beer_to("/proc/catalog.json")

    assert result.returncode == 1
    assert result.stderr == (
        "Error: /proc/catalog.json: cannot be created, /proc takes no new files.\n"
    )


def test_an_out_under_a_file_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")

    result = synth_one_beer_to(tmp_path / "a-file" / "c.json")

    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path / 'a-file'}: Not a directory.\n"


def test_an_out_through_a_link_into_a_missing_folder_is_one_line_naming_it(tmp_path):
    (tmp_path / "c.json").symlink_to(tmp_path / "gone" / "c.json")

    result = synth_one_beer_to(tmp_path / "c.json")

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'gone' / 'c.json'}: cannot be created, {tmp_path / 'gone'} "
        "does not exist.\n"
    )


@pytest.mark.parametrize("variable", ["BREWOPS_CACHE_DIR", "XDG_CACHE_HOME"])
def test_a_cache_dir_under_a_file_is_one_line_naming_where_it_comes_from(
    tmp_path, monkeypatch, variable
):
    monkeypatch.delenv("BREWOPS_CACHE_DIR", raising=False)
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(variable, str(tmp_path / "a-file" / "cache"))
    bin_dir = tmp_path / "bin"  # an npm that fetches nothing, for machines without one
    bin_dir.mkdir()
    (bin_dir / "npm").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    result = subprocess.run([BREWOPS, "data", "fetch"], capture_output=True, encoding="locale")

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {tmp_path / 'a-file' / 'cache'}")
    assert "BREWOPS_CACHE_DIR, else $XDG_CACHE_HOME/brewops" in result.stderr


def test_a_refusal_in_the_cache_or_on_the_way_to_it_names_the_cache(tmp_path, monkeypatch):
    from brewops.cli import _file_system_refusal

    cache = tmp_path / "home" / ".cache" / "brewops"
    monkeypatch.setenv("BREWOPS_CACHE_DIR", str(cache))

    def said(path: Path) -> str:
        return _file_system_refusal(PermissionError(errno.EACCES, "Permission denied", str(path)))

    # making the cache fails at the first folder that cannot be made, and names that one
    assert f"The catalogue is cached in {cache}" in said(tmp_path / "home" / ".cache")
    assert f"The catalogue is cached in {cache}" in said(cache / "punkapi-db-2.6.0.json")
    assert "catalogue" not in said(tmp_path / "home" / "elsewhere")


# A Python under a file size limit would cache the bytecode of a source changed since its
# last import cut short at the limit: every later import of that module would then fail.
NO_BYTECODE = {"PYTHONDONTWRITEBYTECODE": "1"}


def test_a_full_disk_is_one_line(tmp_path, catalog_path):
    import resource

    def disk_full() -> None:  # files may grow no larger than 10 kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    out = tmp_path / "beers.json"
    result = subprocess.run(
        [BREWOPS, "data", "synth", "--n", "100", "--catalog", catalog_path, "--out", out],
        preexec_fn=disk_full,
        env={**unmeasured(os.environ), **NO_BYTECODE},  # no coverage data file to write either
        capture_output=True,
        encoding="locale",
    )

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {out}: File too large. This shell allows files of 9 kB at most "
        "(`ulimit -f`): raise the limit and run it again.\n"
    )


def test_a_file_too_large_that_names_no_file_says_the_limit_not_to_free_space(monkeypatch):
    import resource

    from brewops.cli import _file_system_refusal

    monkeypatch.setattr(resource, "getrlimit", lambda which: (10_000, 10_000))
    said = _file_system_refusal(OSError(errno.EFBIG, "File too large"))

    assert said == (
        "File too large while writing a file. This shell allows files of 9 kB at most "
        "(`ulimit -f`): raise the limit and run it again."
    )


def test_a_mistyped_command_names_the_nearest_one():
    result = CliRunner().invoke(main, ["modle"])

    assert result.exit_code == 2
    assert result.output.endswith("Error: No such command 'modle'. Did you mean 'model'?\n")


def test_the_help_and_the_readme_give_the_same_exit_statuses():
    # the statuses themselves: the tests of failures (1), usage errors (2) and interrupts
    said = CliRunner().invoke(main, ["--help"]).output.split("Exit status:")[1]
    readme = (repo_root() / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit status\n")[1].split("\n### ")[0]
    rows = re.findall(r"^\| ([\d, ]+) \|", table, flags=re.MULTILINE)

    in_readme = {int(code) for row in rows for code in row.split(",")}
    assert {int(code) for code in re.findall(r"\b\d+\b", said)} == in_readme
    assert in_readme == {0, 1, 2, 129, 130, 143}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--target", "aws", "local", "up"],
            "Error: No such option '--target' of `brewops` itself. It is an option of "
            "`model versions`, `run`, `stream backfill`, `stream drain`, `stream reconcile`, "
            "`stream redrive`, `stream run`, `stream tick`, `validate run`: give it after "
            "the command's name.\n",
        ),
        (  # not click's "Did you mean '--version'?"
            ["--json", "model", "versions"],
            "Error: No such option '--json' of `brewops` itself. It is an option of "
            "`local status`, `model versions`, `stream reconcile`, `stream redrive`, "
            "`validate run`: give it after the command's name.\n",
        ),
        (
            ["model", "--progress", "train"],
            "Error: No such option '--progress' of `brewops model` itself. It is an option "
            "of `evaluate`, `predict`, `train`: give it after the command's name.\n",
        ),
    ],
)
def test_an_option_given_before_its_command_names_the_commands_that_take_it(args, said):
    result = CliRunner().invoke(main, args, prog_name="brewops")

    assert result.exit_code == 2
    assert result.output.endswith(said)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--versio"], "Error: No such option '--versio'. Did you mean '--version'?\n"),
        (["--nope", "run"], "Error: No such option '--nope'.\n"),
        (["model", "train", "--catlog", "x"], "Did you mean '--catalog'?\n"),
    ],
)
def test_an_option_no_command_takes_is_left_to_click_s_suggestion(args, said):
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 2
    assert result.output.endswith(said)


@click.command()
@click.argument("ending")
def _ends(ending: str) -> None:
    """A command that ends as ENDING says: interrupted where it stands, after catching the
    interrupt (as `stream tick` ends a run cut short), by a signal, or failing."""
    import signal

    from brewops import interrupts

    if ending == "ctrl-c":
        raise KeyboardInterrupt
    if ending == "caught":
        raise click.Abort
    if ending == "sigterm":
        interrupts._interrupt(signal.SIGTERM, None)  # as the handler raises it
    raise click.ClickException("it failed")


@pytest.mark.parametrize(
    ("ending", "status"), [("ctrl-c", 130), ("caught", 130), ("sigterm", 143), ("failed", 1)]
)
def test_an_interrupted_command_exits_as_a_shell_says_a_signal_ended_it(
    monkeypatch, ending, status
):
    # a script tells Ctrl-C (a `timeout`, a cancelled job) from a failed check
    monkeypatch.setitem(cli.COMMANDS, "ends", (f"{__name__}:_ends", ""))

    result = CliRunner().invoke(main, ["ends", ending])

    assert result.exit_code == status, result.output
    if status != 1:
        assert result.output.endswith("Aborted!\n")


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["model", "--help"]])
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
def test_help_and_version_to_a_full_disk_are_one_line(args, unbuffered):
    # buffered, as a terminal-less stdout is by default: what the disk refused is written
    # again at exit, where only Python reports it
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "w", encoding="utf-8") as full:
        result = subprocess.run(
            [BREWOPS, *args], stdout=full, stderr=subprocess.PIPE, encoding="locale", env=env
        )

    assert result.returncode == 1
    assert result.stderr == (
        "Error: No space left on device while writing a file: free some space and run it again.\n"
    )


@pytest.mark.parametrize(
    ("terminal", "shown"),
    [
        # Latin-1 has no "…": written as Python's stderr writes what it cannot show
        ({"PYTHONIOENCODING": "latin-1"}, b"(s3://\\u2026/models/ibu/[VERSION])"),
        # ASCII: click writes UTF-8 whatever the locale says
        ({"LC_ALL": "C", "PYTHONUTF8": "0"}, "(s3://…/models/ibu/[VERSION])".encode()),
        ({"PYTHONIOENCODING": "utf-8"}, "(s3://…/models/ibu/[VERSION])".encode()),
    ],
    ids=["latin-1", "ascii", "utf-8"],
)
def test_a_character_the_terminal_cannot_show_does_not_end_the_command(
    terminal: dict[str, str], shown: bytes
):
    result = subprocess.run(
        [BREWOPS, "model", "evaluate", "--help"],
        capture_output=True,
        env={**os.environ, **terminal},
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert shown in result.stdout


@contextlib.contextmanager
def _reader_gone() -> Any:
    """The write end of a pipe whose reader has gone (`brewops … | head -c 1`, head done)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.close(write_end)


def test_a_crawl_whose_progress_reader_has_gone_still_writes_the_catalogue(catalog_path, tmp_path):
    served = ServedApi(catalog_path, "--rate-limit", "0")
    out = tmp_path / "crawled.json"
    try:
        with _reader_gone() as closed:
            result = subprocess.run(
                [BREWOPS, "data", "crawl", "--url", served.url, "--out", out, "--progress"],
                stdout=subprocess.PIPE,
                stderr=closed,
                encoding="locale",
                check=False,
            )
    finally:
        served.stop()

    # stderr only comments on the work: without a reader, the work is done all the same
    assert result.returncode == 0
    assert result.stdout == f"{out}\n"
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 325


# A command whose report is written by another thread (`stream run --with-scheduler`
# reports each tick from the scheduler's), or by print(), which the flush at exit writes.
_REPORTED_ASIDE = """
import sys, threading, click
from brewops import cli

@click.command()
@click.argument("recorded")
@click.option("--from-a-thread", is_flag=True)
def report(recorded, from_a_thread):
    if from_a_thread:
        said = threading.Thread(target=click.echo, args=("tick 1: ok",))
        said.start()
        said.join()
    else:
        print("tick 1: ok")
    with open(recorded, "w", encoding="utf-8") as out:
        out.write("recorded")

cli.COMMANDS["report"] = ("__main__:report", "")
cli.main(["report", *sys.argv[1:]])
"""


@pytest.mark.parametrize("aside", [["--from-a-thread"], []], ids=["thread", "print"])
@pytest.mark.parametrize("closed_too", ["stdout", "stderr"])
def test_an_output_whose_reader_has_gone_is_quiet_and_no_success(tmp_path, aside, closed_too):
    recorded = tmp_path / "recorded"
    with _reader_gone() as closed:
        result = subprocess.run(
            [sys.executable, "-c", _REPORTED_ASIDE, recorded, *aside],
            stdout=closed,
            stderr=closed if closed_too == "stderr" else subprocess.PIPE,
            encoding="locale",
            # buffered, as a stdout that is no terminal is by default: print() is written
            # at exit, after the command has returned
            env={**os.environ, "PYTHONUNBUFFERED": ""},
            check=False,
        )

    assert result.returncode == 1  # as the Python docs' SIGPIPE pattern exits
    assert result.stderr in ("", None)  # no traceback, no "Exception ignored"
    assert recorded.read_text(encoding="utf-8") == "recorded"  # the thread's work went on


def test_a_write_whose_reader_has_gone_ends_the_command_once():
    from brewops.cli import _OutputItsReaderMayLeave

    with _reader_gone() as closed_out, _reader_gone() as closed_err:
        out = open(os.dup(closed_out), "w", encoding="utf-8")  # noqa: SIM115
        err = open(os.dup(closed_err), "w", encoding="utf-8")  # noqa: SIM115
        stdout = _OutputItsReaderMayLeave(out, gone_ends_the_command=True)
        stderr = _OutputItsReaderMayLeave(err, gone_ends_the_command=False)
        stderr.write("progress\n")
        stderr.flush()  # commentary: dropped, the work goes on

        with pytest.raises(BrokenPipeError):
            stdout.write("result\n")
            stdout.flush()
        stdout.write("the clean-up says what it does\n")  # dropped: the clean-up goes on
        stdout.flush()
        out.close()
        err.close()

    assert stdout.gone and stderr.gone


def test_a_write_that_reaches_a_reader_gone_ends_the_command_without_waiting_for_a_flush():
    from brewops.cli import _OutputItsReaderMayLeave

    with _reader_gone() as closed:
        # line-buffered, as print() to a terminal is: the write itself meets the closed pipe
        out = open(os.dup(closed), "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        stdout = _OutputItsReaderMayLeave(out, gone_ends_the_command=True)

        with pytest.raises(BrokenPipeError):
            stdout.write("result\n")
        out.close()

    assert stdout.gone


def _closed(fd: int) -> Any:
    """For subprocess's preexec_fn: the command starts with `fd` closed (`>&-`, `2>&-`)."""
    return lambda: os.close(fd)


# `--help` of the program, of each group and of each command, in one process
_EVERY_HELP = """
import json, sys, click
from brewops.cli import main

def walk(command, path):
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), [*path, name])

codes = {}
for path in walk(main, []):
    try:
        main([*path, "--help"])
    except SystemExit as exiting:
        codes[" ".join(["brewops", *path])] = exiting.code
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(codes, out)
"""

STDOUT_CLOSED = (
    "Error: stdout is closed (Bad file descriptor): the output could not be written. Send it "
    "to a file, or to /dev/null, instead.\n"
)


@pytest.mark.parametrize(("closed", "status"), [(1, 1), (2, 0)], ids=["stdout", "stderr"])
def test_every_command_with_an_output_closed_fails_only_for_its_stdout(tmp_path, closed, status):
    codes_file = tmp_path / "codes.json"
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP, codes_file],
        preexec_fn=_closed(closed),
        stdout=subprocess.DEVNULL if closed == 2 else None,
        stderr=subprocess.PIPE if closed == 1 else None,
        encoding="locale",
        check=False,
    )

    assert result.returncode == 0, result.stderr
    codes = json.loads(codes_file.read_text(encoding="utf-8"))
    assert len(codes) == len(_every_command())
    assert set(codes.values()) == {status}, codes
    if closed == 1:  # said once for each command, like `ls >&-`
        assert result.stderr == STDOUT_CLOSED * len(codes)


def test_a_command_whose_stdout_is_closed_does_its_work_then_fails_saying_so(
    tmp_path, catalog_path
):
    out = tmp_path / "beers.json"
    result = subprocess.run(
        [BREWOPS, "data", "synth", "--n", "3", "--catalog", catalog_path, "--out", out],
        preexec_fn=_closed(1),
        stderr=subprocess.PIPE,
        encoding="locale",
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.endswith(STDOUT_CLOSED)  # not a traceback
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 3


# A command that runs jobs in processes, as `model train` does: joblib flushes stderr first
_PARALLEL = """
import sys, click
from brewops import cli

@click.command()
def squares():
    from joblib import Parallel, delayed
    click.echo(Parallel(n_jobs=2)(delayed(pow)(n, 2) for n in range(4)))

cli.COMMANDS["squares"] = ("__main__:squares", "")
cli.main(["squares"])
"""


def test_a_command_whose_stderr_is_closed_runs_its_jobs_and_prints(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _PARALLEL],
        preexec_fn=_closed(2),
        stdout=subprocess.PIPE,
        encoding="locale",
        check=False,
    )

    assert (result.returncode, result.stdout) == (0, "[0, 1, 4, 9]\n")


def test_the_command_line_gives_back_the_outputs_it_was_given(tmp_path):
    # `main` called from Python (standalone_mode=False) leaves stdout and stderr as they were
    script = (
        "import sys\n"
        "from brewops import cli\n"
        "given = sys.stdout, sys.stderr\n"
        "cli.main(['--help'], standalone_mode=False)\n"
        "assert (sys.stdout, sys.stderr) == given, (sys.stdout, sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, encoding="locale", check=False
    )

    assert result.returncode == 0, result.stderr


def test_an_emulator_that_stops_mid_command_is_one_line_saying_what_to_do(monkeypatch, tmp_path):
    import boto3

    from brewops.local import processes
    from brewops.local.state import CREDENTIALS

    gone = f"http://127.0.0.1:{processes.free_port()}"  # nothing listens there any more
    monkeypatch.setenv("AWS_ENDPOINT_URL", gone)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
    target = SimpleNamespace(
        name="local", outputs={"RawDeliveryStreamName": "raw"}, session=session
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    # one attempt (AWS_MAX_ATTEMPTS), not the local Firehose's patient retries
    monkeypatch.setattr("brewops.firehose_runtime._client", lambda s, service: s.client(service))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f'Error: Could not connect to the endpoint URL: "{gone}/"')
    assert "`brewops local status`" in result.output


def test_a_command_out_of_memory_is_one_line_naming_the_limit(monkeypatch):
    import resource

    monkeypatch.setattr(streaming_cli, "use_target", _raising(MemoryError()))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (600 << 20, resource.RLIM_INFINITY))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == (
        "Error: Out of memory: this shell allows 600 MB (`ulimit -v`). Raise the limit, or "
        "close other programs, and run it again.\n"
    )


def _raising(error: Exception) -> Any:
    def use_target(name: str) -> Any:
        raise error

    return use_target


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            OSError(errno.EACCES, "Permission denied", "/x/ids.json"),
            "/x/ids.json: Permission denied.",
        ),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded while writing a file"),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), "`brewops local up` starts it"),
        (EndpointConnectionError(endpoint_url="https://kinesis.example"), "Check the network"),
    ],
)
def test_a_refused_file_or_a_lost_endpoint_is_one_line(monkeypatch, error, said):
    monkeypatch.setattr(streaming_cli, "use_target", _raising(error))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ") and said in result.output
    assert "BREWOPS_BUILD_DIR" not in result.output  # none of them is in the build folder


def _answered_by_s3(code: str, status: int) -> Any:
    """A `use_target` whose first call to S3 gets AWS's error `code` (after botocore's
    retries, for one it retries)."""
    from brewops.target import aws_session
    from fixtures.faults import s3_error

    def use_target(name: str) -> Any:
        session = aws_session(
            region_name="eu-west-1", aws_access_key_id="AKIAUSER", aws_secret_access_key="k"
        )
        session.events.register("before-send", s3_error(code, status))
        session.client("s3", endpoint_url="http://127.0.0.1:1").list_objects_v2(Bucket="b")

    return use_target


@pytest.mark.parametrize(
    ("code", "status", "what_to_do"),
    [
        ("AccessDenied", 403, "may not call s3:ListBucket: `aws sts get-caller-identity`"),
        ("ExpiredToken", 400, "have expired or are not valid: renew them (`aws sso login`"),
        ("NoSuchBucket", 404, "does not exist in eu-west-1: check that the stack is deployed"),
        ("InvalidArgument", 400, "AWS refused the request: check the values given"),
        ("SlowDown", 503, "S3 asks for fewer requests a second on these keys: wait a minute"),
        ("InternalError", 500, "run it again in a minute"),
    ],
)
def test_an_aws_error_is_one_line_naming_the_call_the_code_and_what_to_do(
    monkeypatch, code, status, what_to_do
):
    monkeypatch.setattr(streaming_cli, "use_target", _answered_by_s3(code, status))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"Error: AWS S3 ListObjectsV2 failed with {code}. ")
    assert what_to_do in result.output and result.output.count("\n") == 1


def test_a_silent_endpoint_is_one_line_saying_it_did_not_answer(monkeypatch):
    from botocore.exceptions import ReadTimeoutError

    error = ReadTimeoutError(endpoint_url="https://kinesis.eu-west-1.amazonaws.com/")
    monkeypatch.setattr(streaming_cli, "use_target", _raising(error))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == (
        'Error: Read timeout on endpoint URL: "https://kinesis.eu-west-1.amazonaws.com/" (it '
        "took the connection, and did not answer in time). Check the network connection, a "
        "proxy (HTTPS_PROXY) and the region, then run it again.\n"
    )


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOENT, "No such file or directory", "/x/ids.json"),  # not a refusal
        OSError(errno.EACCES, "Permission denied"),  # names no file and is not about space
        ValueError("a bug"),
    ],
)
def test_other_errors_are_not_passed_off_as_the_users_to_fix(monkeypatch, error):
    monkeypatch.setattr(streaming_cli, "use_target", _raising(error))

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exception is error


@pytest.mark.parametrize(
    ("content", "said"),
    [("{not json", "catalogue.json"), ("[]", "catalogue.json holds no beers: nothing to serve")],
)
def test_a_bad_catalogue_file_is_one_line_too(tmp_path, content, said):
    broken = tmp_path / "catalogue.json"
    broken.write_text(content, encoding="utf-8")
    result = run_in_group(
        [BREWOPS, "api", "serve", "--catalog", str(broken), "--port", "0"],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: ") and said in result.stderr


def test_a_port_in_use_or_out_of_range_says_what_to_do(catalog_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = run_in_group(
            [BREWOPS, "api", "serve", "--catalog", str(catalog_path), "--port", str(port)],
            capture_output=True,
            encoding="locale",
            timeout=60,
        )
    too_high = run_in_group(
        [BREWOPS, "api", "serve", "--port", "70000"],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )

    assert in_use.returncode == 1
    [said] = in_use.stderr.splitlines()  # not werkzeug's own lines first
    assert said.startswith(f"Error: Cannot listen on 127.0.0.1:{port}: the port is in use")
    assert too_high.returncode == 2 and "70000 is not in the range" in too_high.stderr


def test_the_aws_target_without_a_region_is_one_line_saying_what_to_set(tmp_path):
    empty = tmp_path / "empty"
    empty.touch()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = run_in_group(
        [BREWOPS, "stream", "tick", "--target", "aws"],
        capture_output=True,
        encoding="locale",
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "AWS_DEFAULT_REGION" in result.stderr


class AcceptingKinesis:
    """A Kinesis client that takes every record and keeps the partition keys (beer ids)."""

    def __init__(self) -> None:
        self.partition_keys: list[str] = []

    def put_records(self, Records: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        self.partition_keys += [record["PartitionKey"] for record in Records]
        accepted = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in Records]
        return {"FailedRecordCount": 0, "Records": accepted}


def accepting_target(monkeypatch, tmp_path, **fields: Any) -> SimpleNamespace:
    """The target the stream commands get: its Kinesis (`.kinesis`) takes every record."""
    kinesis = AcceptingKinesis()
    target = SimpleNamespace(
        outputs={"StreamName": "beers"},
        session=SimpleNamespace(client=lambda service: kinesis),
        stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1",
        kinesis=kinesis,
        **fields,
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    # a bucket that holds nothing yet
    monkeypatch.setattr("brewops.reconcile.delivered_keys", lambda *a, **kw: frozenset())
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    return target


def test_backfill_speaks_the_api_version_of_the_target(punkapi_v3_url, monkeypatch, tmp_path):
    target = accepting_target(
        monkeypatch, tmp_path, name="local", punkapi_url=punkapi_v3_url, punkapi_version="v3"
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert "325 of 325 beers sent" in result.output
    assert len(set(target.kinesis.partition_keys)) == 325


@pytest.mark.parametrize(
    ("option", "stack_url", "said", "exit_code"),
    [
        (["--api-url", "notaurl"], None, "Invalid value for '--api-url': ", 2),
        ([], "ftp://punk.example/v2", "Error: the stack's PunkApiUrl: ", 1),
    ],
    ids=["given", "the stack's"],
)
def test_backfill_refuses_a_punk_api_url_that_is_not_http_in_one_line(
    option, stack_url, said, exit_code, monkeypatch, tmp_path
):
    target = accepting_target(
        monkeypatch, tmp_path, name="local", punkapi_url=stack_url, punkapi_version="v2"
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress", *option])

    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert result.exit_code == exit_code
    assert said in result.output
    assert target.kinesis.partition_keys == []


def test_backfill_takes_the_api_version_from_the_target_not_its_url(
    catalog_beers, monkeypatch, tmp_path
):
    # GIVEN a stack whose Punk API URL names no version, deployed with PunkApiVersion=v3
    asked: dict[str, Any] = {}

    class RecordingClient:
        def __init__(self, base_url: str, api_version: str, on_invalid: str) -> None:
            asked.update(url=base_url, api_version=api_version)
            self.schema_errors: list[str] = []

        def all_beers(self, progress: bool) -> list[dict[str, Any]]:
            return catalog_beers

    monkeypatch.setattr("brewops.punkapi.client.PunkApiClient", RecordingClient)
    accepting_target(
        monkeypatch,
        tmp_path,
        name="aws",
        punkapi_url="https://beers.example/api",
        punkapi_version="v3",
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert asked == {"url": "https://beers.example/api", "api_version": "v3"}


def test_a_backfill_names_each_beer_it_could_not_send_and_why(catalog_beers, monkeypatch, tmp_path):
    target = accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    # NaN is what Python's JSON reader takes, and no strict reader of raw/ would
    catalog.write_text(
        json.dumps([catalog_beers[0], {**catalog_beers[1], "ibu": float("nan")}]), encoding="utf-8"
    )

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert "1 of 2 beers sent in 1 call (" in result.output
    assert f"not sent: beer {catalog_beers[1]['id']}: NotSerialisable: " in result.output
    assert target.kinesis.partition_keys == [str(catalog_beers[0]["id"])]


def test_a_backfill_whose_ids_find_the_disk_full_says_the_beers_were_sent(
    catalog_beers, monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_beers[:2]), encoding="utf-8")

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "produced-ids-local.json")

    monkeypatch.setattr(streaming_cli, "remember_produced", full_disk)
    result = CliRunner().invoke(
        main, ["stream", "backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert result.output == (
        "2 of 2 beers sent, not recorded for `brewops stream reconcile` (the error below says "
        "why)\nError: produced-ids-local.json: No space left on device.\n"
    )


def test_a_backfill_sends_a_beer_that_fails_the_schema_and_says_so(
    punkapi_server, catalog_beers, monkeypatch, tmp_path
):
    malformed = {k: v for k, v in catalog_beers[1].items() if k != "tagline"}
    url = punkapi_server(beers=[catalog_beers[0], malformed])
    target = accepting_target(
        monkeypatch, tmp_path, name="local", punkapi_url=url, punkapi_version="v2"
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert "sent although it fails the schema: Beer 2: field 'tagline'" in result.output
    assert target.kinesis.partition_keys == ["1", "2"]


def test_a_beer_without_an_id_is_named_as_such_among_those_not_sent(capsys):
    report = ProduceReport(records=1, failed=[FailedRecord("", "MissingId", "not a beer")])

    streaming_cli._echo_not_sent(report)

    assert capsys.readouterr().err == "not sent: beer (no id): MissingId: not a beer\n"


def test_fill_delivers_without_a_backfill_what_this_stack_already_holds(monkeypatch, tmp_path):
    target = accepting_target(monkeypatch, tmp_path, name="local")
    streaming_cli.remember_produced("local", [1, 2], target.stack_id)
    drained = SimpleNamespace(drain=lambda: "2 records delivered")
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: drained
    )

    result = CliRunner().invoke(streaming_cli.stream, ["fill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert "2 records already produced into this stack: no backfill" in result.output
    assert "2 records delivered" in result.output
    assert target.kinesis.partition_keys == []


def test_fill_backfills_a_stack_whose_earlier_ticks_sent_no_beer(monkeypatch, tmp_path):
    # GIVEN a stack whose only tick failed: the record of what it was sent holds no id
    target = accepting_target(monkeypatch, tmp_path, name="local")
    streaming_cli.remember_produced("local", [], target.stack_id)

    class CatalogOfTwo:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.schema_errors: list[str] = []

        def all_beers(self, progress: bool) -> list[dict[str, Any]]:
            return [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]

    monkeypatch.setattr("brewops.punkapi.client.PunkApiClient", CatalogOfTwo)
    monkeypatch.setattr(
        "brewops.target.punkapi_endpoint", lambda *a: ("http://127.0.0.1:1/v2", "v2")
    )
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs",
        lambda *a, **kw: SimpleNamespace(drain=lambda: "2 records delivered"),
    )

    result = CliRunner().invoke(streaming_cli.stream, ["fill", "--no-progress"])

    # THEN the catalogue is sent: nothing produced is not what notebooks 04 and 05 read
    assert result.exit_code == 0, result.output
    assert "no backfill" not in result.output
    assert target.kinesis.partition_keys == ["1", "2"]
    assert streaming_cli.read_produced("local", target.stack_id)[0] == [1, 2]


def test_reconcile_without_remembered_ids_says_it_uses_those_in_raw(monkeypatch, tmp_path):
    accepting_target(monkeypatch, tmp_path, name="local")
    compared: list[Any] = []

    def compare(produced, outputs, session, delivered_before):
        compared.append(produced)
        return SimpleNamespace(ok=True, produced=1, figures=dict)

    monkeypatch.setattr("brewops.reconcile.reconcile", compare)

    result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--json"])

    assert result.exit_code == 0, result.output
    assert "(not found): reconciling with the ids found in raw" in result.output
    assert compared == [None]


def test_ids_remembered_from_several_threads_at_once_are_all_kept(monkeypatch, tmp_path):
    # `stream run --with-scheduler` ticks in a thread; a `stream tick` may run beside it
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"

    def remember(first: int) -> None:
        for beer_id in range(first, first + 40):
            streaming_cli.remember_produced("local", [beer_id], stack)

    threads = [threading.Thread(target=remember, args=(n * 1000,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids, _ = streaming_cli.read_produced("local", stack)
    assert len(ids) == 6 * 40


def test_ids_are_remembered_as_often_as_sent_and_only_for_their_stack(monkeypatch, tmp_path):
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"
    other = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/2"

    streaming_cli.remember_produced("local", [7, 3], stack)
    streaming_cli.remember_produced("local", [7], stack)  # a beer sent twice arrives twice

    assert streaming_cli.read_produced("local", stack)[0] == [3, 7, 7]
    ids, source = streaming_cli.read_produced("local", other)
    assert ids is None and source.endswith("(another stack's, ignored)")


def test_a_run_recorded_again_counts_its_beers_once_beside_the_other_runs(monkeypatch, tmp_path):
    # notebook 03's recording cell run twice recorded its ids twice: reconcile then
    # expected each beer twice and reported half of them lost
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"

    streaming_cli.remember_produced("local", [5], stack, frozenset({"raw/earlier"}))  # a tick
    streaming_cli.remember_produced("local", [1, 2], stack, run="first")
    streaming_cli.remember_produced("local", [1, 2], stack, run="first")  # the cell again
    streaming_cli.remember_produced("local", [1, 2, 2], stack, run="first")  # and its ticks
    streaming_cli.remember_produced("local", [1], stack, run="second")  # another run

    remembered, _ = streaming_cli.read_remembered("local", stack)
    assert remembered["ids"] == [1, 1, 2, 2, 5]
    assert remembered["delivered_before"] == {"raw/earlier"}
    streaming_cli.remember_produced("local", [1], stack)  # a command, as before: added
    assert streaming_cli.read_produced("local", stack)[0] == [1, 1, 1, 2, 2, 5]


def test_a_run_recorded_again_keeps_what_commands_and_other_runs_sent_meanwhile(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"

    streaming_cli.remember_produced("local", [1, 2], stack, run="first")
    streaming_cli.remember_produced("local", [2], stack)  # `stream tick` beside the notebook
    streaming_cli.remember_produced("local", [3], stack, run="second")
    streaming_cli.remember_produced("local", [1, 2, 2], stack, run="first")  # with its tick
    streaming_cli.remember_produced("local", [1, 2, 2], stack, run="first")  # the cell again

    assert streaming_cli.read_produced("local", stack)[0] == [1, 2, 2, 2, 3]


def test_the_objects_delivered_before_are_those_of_the_stacks_first_ids_and_its_own(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"
    other = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/2"

    streaming_cli.remember_produced("local", [7], stack, frozenset({"raw/earlier"}))
    streaming_cli.remember_produced("local", [8], stack)  # a later command: the list goes on

    remembered, _ = streaming_cli.read_remembered("local", stack)
    assert remembered["delivered_before"] == {"raw/earlier"}
    assert streaming_cli.read_remembered("local", other)[0] is None  # another stack's


class _OneTickScheduler:
    """A scheduler whose one tick sends beer 7, for `tick` and `run --with-scheduler`."""

    enabled = True  # the rule's State: ENABLED
    interval_seconds = 300.0  # rate(5 minutes)

    def __init__(self) -> None:
        self.ticked = threading.Event()

    def run(self, ticks: int = 1, interval: float = 0.0, stop=None, on_tick=None) -> list[Any]:
        from brewops.scheduler import Tick

        done = [Tick(1, "producer", {}, result={"sent": 1, "ids": [7]})]
        if on_tick is not None:
            on_tick(done)
        self.ticked.set()
        return done


class _RuntimeUntilTicked:
    """A Firehose runtime that delivers until the scheduler has ticked once."""

    def __init__(self, scheduler: _OneTickScheduler) -> None:
        self.scheduler = scheduler

    def run(self, stop: threading.Event, poll_seconds: float, flush_on_exit: bool) -> Any:
        self.scheduler.ticked.wait(timeout=30)
        return SimpleNamespace(seconds=0.0)

    def drain(self) -> Any:  # what the last tick sent, once the scheduler has stopped
        return SimpleNamespace(seconds=0.0)


class _TickRunningAtTheStop:
    """A scheduler whose one tick is running when delivery stops, and sends beer 7 (into
    `stream`) six seconds later, as when the Punk API answers slowly."""

    tick_timeout = 60.0  # the producer's Timeout in the template
    enabled = True
    interval_seconds = 300.0

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stream: list[int] = []

    def run(self, stop=None, on_tick=None) -> list[Any]:
        from brewops.scheduler import Tick

        self.started.set()
        # as a function run in this process does, the tick holds the process's output
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            stop.wait(timeout=30)
            threading.Event().wait(6)
            self.stream.append(7)
        done = [Tick(1, "producer", {}, result={"sent": 1, "ids": [7]})]
        on_tick(done)
        return done


@pytest.mark.slow
def test_stopping_a_run_delivers_the_beer_of_the_tick_still_running(monkeypatch, tmp_path):
    target = accepting_target(monkeypatch, tmp_path, name="local")
    scheduler = _TickRunningAtTheStop()
    drained: list[list[int]] = []

    class Runtime:
        def run(self, stop, poll_seconds, flush_on_exit):
            scheduler.started.wait(timeout=30)
            return SimpleNamespace(seconds=0.0)  # as after Ctrl-C

        def drain(self):
            drained.append(list(scheduler.stream))
            return SimpleNamespace(seconds=0.0)

    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: Runtime()
    )

    result = CliRunner().invoke(streaming_cli.stream, ["run", "--with-scheduler"])

    assert result.exit_code == 0, result.output
    # the beer recorded as produced was in the stream when the final drain delivered it
    assert drained == [[7]]
    assert streaming_cli.read_produced("local", target.stack_id)[0] == [7]
    assert result.output.startswith("delivering; Ctrl-C to stop\n")
    assert "waiting for the running tick to end (at most 65 s" in result.output


def test_a_tick_reported_while_the_transform_runs_is_on_the_commands_output(monkeypatch, tmp_path):
    # the scheduler's thread reports each tick; delivery may be calling the transform then,
    # whose capture holds the process's stdout for the function's log
    from brewops.firehose_runtime.functions import captured_output

    accepting_target(monkeypatch, tmp_path, name="local")
    capturing = threading.Event()
    transform_output: list[str] = []

    class TickingDuringTheCall(_OneTickScheduler):
        def run(self, **options: Any) -> list[Any]:
            capturing.wait(timeout=30)
            return super().run(**options)

    scheduler = TickingDuringTheCall()

    class Runtime:
        def run(self, stop, poll_seconds, flush_on_exit):
            with captured_output(None) as logs:  # as a call of the transform does
                capturing.set()
                scheduler.ticked.wait(timeout=30)
            transform_output.append(logs.output)
            return SimpleNamespace(seconds=0.0)

        def drain(self):
            return SimpleNamespace(seconds=0.0)

    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: Runtime()
    )

    result = CliRunner().invoke(streaming_cli.stream, ["run", "--with-scheduler"])

    assert result.exit_code == 0, result.output
    assert 'tick 1: ok: {"sent": 1, "ids": [7]}\n' in result.output
    assert transform_output == [""], "nothing of the command's in the function's log"


def test_a_scheduler_that_fails_ends_the_run_and_says_why(monkeypatch, tmp_path):
    # the ticks run in a thread: one that ends on an error (the produced ids cannot be
    # recorded) must not leave delivery running without ticks and the command succeeding
    accepting_target(monkeypatch, tmp_path, name="local")
    scheduler = _OneTickScheduler()
    stopped: list[bool] = []
    drained: list[bool] = []

    class Runtime:
        def run(self, stop, poll_seconds, flush_on_exit):
            stopped.append(stop.wait(timeout=10))  # until Ctrl-C, or the scheduler's failure
            return SimpleNamespace(seconds=0.0)

        def drain(self):
            drained.append(True)
            return SimpleNamespace(seconds=0.0)

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "produced-ids-local.json")

    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: Runtime()
    )
    monkeypatch.setattr(streaming_cli, "remember_produced", full_disk)

    result = CliRunner().invoke(streaming_cli.stream, ["run", "--with-scheduler"])

    assert stopped == [True]
    assert drained == [True]  # what the ticks before it sent is still delivered
    assert result.exit_code == 1
    assert "the scheduler stopped" in result.output
    assert "No space left on device" in result.output


def test_a_run_with_the_scheduler_of_a_disabled_rule_delivers_without_ticking(
    monkeypatch, tmp_path
):
    # ScheduleState DISABLED: on AWS the rule fires nothing, so the local run ticks nothing
    target = accepting_target(monkeypatch, tmp_path, name="local")
    scheduler = _OneTickScheduler()
    scheduler.enabled = False
    flushed: list[bool] = []

    class Runtime:
        def run(self, stop, poll_seconds, flush_on_exit):
            flushed.append(flush_on_exit)
            return SimpleNamespace(seconds=0.0)  # as after Ctrl-C

    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: Runtime()
    )

    result = CliRunner().invoke(streaming_cli.stream, ["run", "--with-scheduler"])

    assert result.exit_code == 0, result.output
    assert not scheduler.ticked.is_set()
    assert "is DISABLED (the template's ScheduleState): delivering without ticks" in result.output
    assert flushed == [True]  # a run of delivery alone
    assert streaming_cli.read_produced("local", target.stack_id)[0] is None


def test_a_run_with_the_scheduler_of_a_cron_rule_says_how_often_it_ticks(monkeypatch, tmp_path):
    accepting_target(monkeypatch, tmp_path, name="local")
    scheduler = _OneTickScheduler()
    scheduler.interval_seconds = None
    scheduler.schedule = "cron(0 12 * * ? *)"
    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs",
        lambda *a, **kw: _RuntimeUntilTicked(scheduler),
    )

    result = CliRunner().invoke(streaming_cli.stream, ["run", "--with-scheduler"])

    assert result.exit_code == 0, result.output
    assert "cron(0 12 * * ? *) is no rate(...): ticking every 60 s" in result.output


def test_ticks_cut_short_by_ctrl_c_are_recorded_and_the_command_fails(monkeypatch, tmp_path):
    # the scheduler ends a run on Ctrl-C (SIGTERM too) with the ticks done so far: the
    # command records and shows them, then ends as an interrupted command does, not with 0
    target = accepting_target(monkeypatch, tmp_path, name="local")
    monkeypatch.setattr(
        "brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: _OneTickScheduler()
    )

    result = CliRunner().invoke(streaming_cli.stream, ["tick", "--n", "3"])

    assert result.exit_code == 1
    assert result.output.startswith('tick 1: ok: {"sent": 1, "ids": [7]}\n')
    assert "Aborted" in result.output
    assert streaming_cli.read_produced("local", target.stack_id)[0] == [7]


def test_ticks_of_two_functions_cut_short_are_counted_as_ticks(monkeypatch, tmp_path):
    # a rule that targets two functions fires both each tick: 2 of 3 ticks are 4 firings
    from brewops.scheduler import Tick

    accepting_target(monkeypatch, tmp_path, name="local")
    fired = [Tick(n, name, {}, result={"sent": 0}) for n in (1, 2) for name in ("a", "b")]
    scheduler = SimpleNamespace(run=lambda ticks, interval: fired)
    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)

    result = CliRunner().invoke(streaming_cli.stream, ["tick", "--n", "3"])

    assert result.exit_code == 1
    assert "Aborted" in result.output


@pytest.mark.parametrize(
    "args",
    [["backfill", "--no-progress"], ["tick", "--n", "1"], ["run", "--with-scheduler"]],
    ids=["backfill", "tick", "run"],
)
def test_each_command_that_sends_beers_remembers_what_was_delivered_before(
    args, catalog_path, monkeypatch, tmp_path
):
    target = accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    monkeypatch.setattr(
        "brewops.reconcile.delivered_keys", lambda *a, **kw: frozenset({"raw/earlier"})
    )
    scheduler = _OneTickScheduler()
    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: scheduler)
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs",
        lambda *a, **kw: _RuntimeUntilTicked(scheduler),
    )
    if args[0] == "backfill":
        args = [*args, "--catalog", str(catalog_path)]

    result = CliRunner().invoke(streaming_cli.stream, args)

    assert result.exit_code == 0, result.output
    assert streaming_cli.read_produced("local", target.stack_id)[0]
    remembered, _ = streaming_cli.read_remembered("local", target.stack_id)
    assert remembered["delivered_before"] == {"raw/earlier"}


def test_reconcile_leaves_out_the_objects_an_ids_file_says_were_delivered_before(
    monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="local")
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(
        json.dumps({"ids": [1], "delivered_before": ["raw/earlier"]}), encoding="utf-8"
    )
    left_out: list[Any] = []

    def compare(produced, outputs, session, delivered_before):
        left_out.append(set(delivered_before))
        return SimpleNamespace(ok=True, produced=1, figures=dict)

    monkeypatch.setattr("brewops.reconcile.reconcile", compare)

    result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--ids-file", str(ids_file)])

    assert result.exit_code == 0, result.output
    assert left_out == [{"raw/earlier"}]


def test_reconcile_with_objects_it_could_not_read_says_so_not_that_records_were_lost(
    monkeypatch, tmp_path
):
    from brewops.reconcile import Reconciliation

    accepting_target(monkeypatch, tmp_path, name="local")
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(list(range(1, 326))), encoding="utf-8")
    refused = Reconciliation(
        produced=325,
        raw_records=325,
        raw_unique_ids=325,
        cleaned_rows=0,
        cleaned_unique_ids=0,
        errors=[],
        unreadable={"cleaned/x-1": "ClientError: AccessDenied"},
        missing_downstream=list(range(1, 326)),
    )
    monkeypatch.setattr("brewops.reconcile.reconcile", lambda *args, **kwargs: refused)

    result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--ids-file", str(ids_file)])

    assert result.exit_code == 1
    assert "RECORDS LOST" not in result.output and "records were lost, or" not in result.output
    assert result.output.endswith(
        "Error: 1 delivered object(s) could not be read, so whether records were lost is not "
        "known: the UNREADABLE lines say why (AccessDenied needs s3:GetObject on the bucket; "
        "a SlowDown, a 5xx or a timeout passes: reconcile again in a minute)\n"
    )


def test_a_bad_ids_file_is_refused_naming_the_file_and_what_is_wrong(monkeypatch, tmp_path):
    accepting_target(monkeypatch, tmp_path, name="local")
    not_json = tmp_path / "not-json.json"
    not_json.write_text("[1, 2", encoding="utf-8")
    not_ids = tmp_path / "not-ids.json"
    not_ids.write_text(json.dumps({"stack_id": "s", "ids": ["1", 2]}), encoding="utf-8")
    not_keys = tmp_path / "not-keys.json"
    not_keys.write_text(
        json.dumps({"stack_id": "s", "ids": [1], "delivered_before": "raw/a"}), encoding="utf-8"
    )
    too_deep = tmp_path / "too-deep.json"
    too_deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")

    for path, problem in (
        (not_json, "is not JSON"),
        (too_deep, "is not JSON"),
        (not_ids, "holds no list of integer ids"),
        (not_keys, "delivered_before is not a list of object keys"),
    ):
        result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--ids-file", str(path)])

        assert result.exit_code == 2, result.output
        assert problem in result.output and path.name in result.output
        assert "Traceback" not in result.output


def test_a_backfill_with_no_punk_api_says_what_to_pass(monkeypatch, tmp_path):
    target = accepting_target(monkeypatch, tmp_path, name="aws", punkapi_url=None)
    target.punkapi_version = "v2"

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 2
    assert "no Punk API URL for this target: pass --api-url or --catalog" in result.output
    assert target.kinesis.partition_keys == []


def test_a_backfill_names_ten_beers_not_sent_then_counts_the_rest(
    catalog_beers, monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    unsendable = [{**beer, "ibu": float("nan")} for beer in catalog_beers[:12]]
    huge = {**catalog_beers[12], "description": "x" * (1 << 20)}
    catalog.write_text(json.dumps([*unsendable, huge, catalog_beers[13]]), encoding="utf-8")

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert "1 of 14 beers sent" in result.output
    assert result.output.count("not sent: beer ") == 10
    assert "not sent: 3 more beers" in result.output
    assert "some beers were not sent; see the reasons above" in result.output


def test_a_backfill_kinesis_kept_throttling_says_to_give_the_stream_more_shards(
    catalog_beers, monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_beers[:2]), encoding="utf-8")
    throttled = FailedRecord("2", "ProvisionedThroughputExceededException", "Rate exceeded", 9)
    report = ProduceReport(records=2, sent=1, failed=[throttled])
    monkeypatch.setattr("brewops.producer.put_beers", lambda *args, **kwargs: report)

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert result.output.endswith(
        "some beers were not sent; see the reasons above. The stream's shards are at their "
        "write limit: raise the stack's ShardCount parameter (or deploy it with "
        "StreamMode=ON_DEMAND), then run it again.\n"
    )


def test_a_backfill_names_a_beer_over_the_kinesis_record_limit(
    catalog_beers, monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    huge = {**catalog_beers[0], "description": "x" * (1 << 20)}
    catalog.write_text(json.dumps([huge, catalog_beers[1]]), encoding="utf-8")

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert f"not sent: beer {huge['id']}: over the 1 MiB Kinesis record limit" in result.output


@pytest.mark.parametrize("command", ["drain", "run"])
def test_delivering_refuses_the_aws_target_where_firehose_delivers_by_itself(
    command, monkeypatch, tmp_path
):
    accepting_target(monkeypatch, tmp_path, name="aws")

    result = CliRunner().invoke(streaming_cli.stream, [command, "--target", "aws"])

    assert result.exit_code == 1
    assert f"{command} runs Firehose locally; on AWS, Firehose delivers by itself" in result.output
    assert "brewops stream reconcile --target aws" in result.output


def test_a_failed_tick_is_shown_whole_and_fails_the_command(monkeypatch, tmp_path):
    from brewops.scheduler import Scheduler, Tick

    built: dict[str, Any] = {}

    class FakeScheduler:
        def run(self, ticks: int, interval: float) -> list[Tick]:
            return [
                Tick(1, "producer", {}, result={"sent": 1, "ids": [7]}),
                Tick(2, "producer", {}, error="Unhandled: the Punk API answered 503"),
            ]

    def from_outputs(outputs, **kwargs):
        built.update(kwargs)
        return FakeScheduler()

    monkeypatch.setattr(Scheduler, "from_outputs", from_outputs)
    target = accepting_target(monkeypatch, tmp_path, name="aws")

    result = CliRunner().invoke(streaming_cli.stream, ["tick", "--n", "2", "--target", "aws"])

    assert result.exit_code == 1
    assert 'tick 1: ok: {"sent": 1, "ids": [7]}' in result.output
    assert "tick 2: failed: Unhandled: the Punk API answered 503" in result.output
    assert "some ticks failed" in result.output
    # on AWS the deployed function is invoked, not a copy run in this process
    assert built["in_process"] is False
    # the beer the good tick sent is remembered for `reconcile`
    assert streaming_cli.read_produced("aws", target.stack_id)[0] == [7]


def a_local_state(**fields: Any):
    from brewops.local.state import LocalState, Service

    return LocalState(
        endpoint_url="http://127.0.0.1:4566",
        region="eu-west-1",
        stack_name="brewops-dev",
        started_at="2024-01-01T00:00:00+00:00",
        services={"emulator": Service(4242, 4566, "http://127.0.0.1:4566", "e.log", 1.5)},
        **fields,
    )


def test_local_status_prints_what_runs_and_the_exports_a_shell_needs(monkeypatch, tmp_path):
    from brewops.local import runtime
    from brewops.local.cli import local as local_cli
    from brewops.local.state import CREDENTIALS

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    state = a_local_state(punkapi_url="http://127.0.0.1:8765/v2")
    monkeypatch.setattr(runtime, "status", lambda: state)

    result = CliRunner().invoke(local_cli, ["status"])

    assert result.exit_code == 0, result.output
    assert "Punk API      http://127.0.0.1:8765/v2" in result.output
    assert "Stack         brewops-dev (not deployed)" in result.output
    assert "emulator pid 4242" in result.output
    assert (
        "export AWS_ENDPOINT_URL=http://127.0.0.1:4566 "
        f"AWS_ACCESS_KEY_ID={CREDENTIALS['aws_access_key_id']} "
        f"AWS_SECRET_ACCESS_KEY={CREDENTIALS['aws_secret_access_key']} "
        "AWS_DEFAULT_REGION=eu-west-1"
    ) in result.output
    assert f"  State         {tmp_path / 'state.json'}\n" in result.output
    # where the functions' log lines are, readable without the emulator's CloudWatch Logs
    assert f"  Logs          {tmp_path / 'logs'}  (NAME.log per function" in result.output


def test_local_status_says_what_to_do_with_a_target_a_killed_run_left_running(
    monkeypatch, tmp_path
):
    from brewops.local import processes, runtime
    from brewops.local.cli import local as local_cli
    from brewops.local.state import RunProcess

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    killed_run = RunProcess(os.getpid(), create_time=1.5)  # its pid since given to another
    for run, said in [
        (None, None),  # `brewops local up`'s: runs until `brewops local down`
        (processes.this_run(), f"the `brewops run` in charge of it (pid {os.getpid()}), when"),
        (killed_run, f"nothing: the `brewops run` in charge of it (pid {os.getpid()}) ended"),
    ]:
        monkeypatch.setattr(runtime, "status", lambda run=run: a_local_state(run=run))

        result = CliRunner().invoke(local_cli, ["status"])

        assert result.exit_code == 0, result.output
        stopped_by = [line for line in result.output.splitlines() if "Stopped by" in line]
        if said is None:
            assert stopped_by == []
        else:
            assert len(stopped_by) == 1 and stopped_by[0].startswith(f"  Stopped by    {said}")
    assert "`brewops local down` stops it; the next `brewops run` takes it over" in result.output


@pytest.mark.parametrize(
    ("outputs", "listed"),
    [
        ({"StreamArn": "arn:s", "BucketName": "b"}, "    BucketName  b\n    StreamArn   arn:s\n"),
        ({}, ""),  # deployed all the same
    ],
)
def test_local_status_of_a_deployed_stack_lists_its_outputs_aligned(
    monkeypatch, tmp_path, outputs, listed
):
    from brewops.local import runtime
    from brewops.local.cli import local as local_cli

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "status", lambda: a_local_state(deployed=True, outputs=outputs))

    result = CliRunner().invoke(local_cli, ["status"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Running since 2024-01-01T00:00:00+00:00:\n")
    assert (
        f"  Stack         brewops-dev\n{listed}  Parameters    the template's Defaults\n  Processes"
    ) in result.output


def test_local_up_hands_its_options_to_the_runtime(monkeypatch, tmp_path):
    from brewops.local import runtime
    from brewops.local.cli import local as local_cli

    catalog, template = tmp_path / "catalog.json", tmp_path / "template.yaml"
    catalog.write_text("[]", encoding="utf-8")
    template.write_text("Resources: {}\n", encoding="utf-8")
    calls = []

    def up(**options: Any):
        calls.append(options)
        return a_local_state(already_running=True)

    monkeypatch.setattr(runtime, "up", up)

    result = CliRunner().invoke(
        local_cli, ["up", "--no-deploy", "--catalog", str(catalog), "--template", str(template)]
    )

    assert result.exit_code == 0, result.output
    assert calls == [{"deploy": False, "catalog": catalog, "template": template, "parameters": {}}]
    assert result.output.startswith("Already running:\n")


@pytest.mark.parametrize(
    ("stopped", "said"),
    [
        (None, r"Nothing to stop: the local target is not running\.\n"),
        (a_local_state, r"Stopped in \d+\.\d s\.\n"),
    ],
)
def test_local_down_says_what_it_stopped_and_succeeds(monkeypatch, stopped, said):
    from brewops.local import runtime
    from brewops.local.cli import local as local_cli

    monkeypatch.setattr(runtime, "down", stopped or (lambda: None))

    result = CliRunner().invoke(local_cli, ["down"])

    assert result.exit_code == 0, result.output
    assert re.fullmatch(said, result.output)


def test_expected_ids_that_are_not_integers_are_refused_in_one_line(monkeypatch):
    from brewops import validation
    from brewops.validation_cli import validate

    monkeypatch.setattr(validation, "resolve_target", lambda target: SimpleNamespace(name=target))

    result = CliRunner().invoke(validate, ["run", "--expected-ids", "1,two,3"])

    assert result.exit_code == 2
    assert "ids must be integers" in result.output and "--expected-ids" in result.output


def test_api_serve_injects_the_faults_asked_for_and_stops_cleanly_on_sigterm(catalog_path):
    import requests

    # each server started is stopped, though another fails to start, or to stop on SIGTERM
    with contextlib.ExitStack() as running:

        def serve(*options: str) -> ServedApi:
            return running.enter_context(ServedApi(catalog_path, *options))

        plain = serve("--rate-limit", "0")
        failing = serve("--fault-error-rate", "1")
        truncating = serve("--fault-truncate-rate", "1")
        seeded = [serve("--fault-error-rate", "0.5", "--fault-seed", "7") for _ in range(2)]
        servers = [plain, failing, truncating, *seeded]
        try:
            assert plain.banner.startswith("Punk API v2 serving ") and plain.url.startswith(
                "http://127.0.0.1:"
            ), plain.banner
            answer = requests.get(f"{plain.url}/beers/1", timeout=10)
            assert answer.ok and "X-RateLimit-Limit" not in answer.headers  # 0: no limit
            assert set(failing.statuses(5)) <= {500, 503}
            with pytest.raises(requests.exceptions.RequestException):
                requests.get(f"{truncating.url}/beers?per_page=80", timeout=10).json()
            # one seed, one sequence of faults: a run can be replayed
            sequences = [server.statuses(12) for server in seeded]
            assert sequences[0] == sequences[1] and len(set(sequences[0])) > 1
        finally:
            codes = [server.stop() for server in servers]
    assert codes == [0] * len(servers)  # SIGTERM ends it as Ctrl-C does, not killed


GIVE_A_HOST = (
    "Give --host an address of this machine: 127.0.0.1 (the default, this machine only) or "
    "0.0.0.0 (every interface)."
)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        # 203.0.113.1 is reserved for documentation: no interface of this machine has it
        ("203.0.113.1", "Cannot assign requested address"),
        ("256.1.1.1", ""),  # no address at all (the resolver's words vary by platform)
        ("a" * 64 + ".example", "is not a valid host name"),  # the idna codec refuses it
    ],
)
def test_a_host_this_machine_cannot_listen_on_is_one_line_saying_what_to_give(
    host: str, reason: str
):
    result = run_in_group(
        [BREWOPS, "api", "serve", "--host", host, "--port", "0"],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )

    assert result.returncode == 1
    [line] = result.stderr.splitlines()  # nothing of werkzeug's before it, no traceback
    assert line.startswith(f"Error: Cannot listen on {host}:0: ")
    assert reason in line and line.endswith(GIVE_A_HOST)
    assert "port is in use" not in line


_WHILE_BINDING = " (while attempting to bind on address ('h', 1))"  # socket.create_server's


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            OSError(errno.EADDRINUSE, "Address already in use" + _WHILE_BINDING),
            "the port is in use. Choose another --port (0 picks a free one).",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address" + _WHILE_BINDING),
            f"{os.strerror(errno.EADDRNOTAVAIL)}. {GIVE_A_HOST}",
        ),
        (
            OSError(errno.EINVAL, "Invalid argument" + _WHILE_BINDING),
            f"{os.strerror(errno.EINVAL)}. {GIVE_A_HOST}",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            f"Name or service not known. {GIVE_A_HOST}",
        ),
        (
            OSError(errno.EACCES, "Permission denied" + _WHILE_BINDING),
            os.strerror(errno.EACCES),
        ),
    ],
    ids=["in use", "no such address", "invalid", "no such name", "other"],
)
def test_why_serve_cannot_listen_names_the_address_once_and_what_to_give(error, said):
    from brewops.punkapi.cli import cannot_listen

    assert cannot_listen("h", 1, error) == f"Cannot listen on h:1: {said}"


def test_the_url_of_a_server_on_an_ipv6_address_is_one_a_client_can_use(catalog_beers):
    import requests

    from brewops.punkapi.server import PunkApiServer

    try:
        server = PunkApiServer(beers=catalog_beers[:3], host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server.start()
    try:
        answer = requests.get(f"{server.url}/beers/1", timeout=10)
    finally:
        server.stop()

    assert server.url == f"http://[::1]:{server.port}/v2"
    assert answer.ok and answer.json()[0]["id"] == 1


@pytest.mark.parametrize(
    "args",
    [
        # every request would be answered 429 "wait an hour"
        ["api", "serve", "--rate-limit", "-1"],
        # every request would be answered 500 (a negative sleep)
        ["api", "serve", "--fault-latency", "-1"],
        ["api", "serve", "--fault-burst-length", "0"],
        # requests refuses a timeout of 0 with a traceback
        ["data", "crawl", "--url", "http://127.0.0.1:9/v2", "--out", "x.json", "--timeout", "0"],
        ["data", "crawl", "--url", "http://127.0.0.1:9/v2", "--out", "x.json", "--retries", "-1"],
        # would tick nothing and succeed
        ["stream", "tick", "--n", "-3"],
        ["stream", "tick", "--interval", "-1"],
        # would read the stream in a busy loop
        ["stream", "run", "--poll", "0"],
    ],
    ids=lambda args: " ".join(args[:2] + args[-2:-1]),
)
def test_an_option_out_of_its_range_is_refused_before_anything_starts(args, monkeypatch):
    result = _invoked_until_started(args, monkeypatch)

    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and args[-2] in result.output
    assert "started anyway" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["api", "serve", "--fault-latency", "0"],
        ["api", "serve", "--fault-burst-length", "1"],  # a single 429
        ["stream", "tick", "--n", "0"],  # brings the target up, and nothing more
        ["stream", "tick", "--interval", "0"],
    ],
    ids=lambda args: " ".join(args[:2] + args[-2:-1]),
)
def test_an_option_at_the_end_of_its_range_is_taken(args, monkeypatch):
    result = _invoked_until_started(args, monkeypatch)

    assert "started anyway" in result.output, result.output


def _invoked_until_started(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The command's result, its server or target failing to start if it gets that far."""
    from brewops.catalog import CatalogError
    from brewops.punkapi import server

    def started(*args: Any, **kwargs: Any) -> None:
        raise CatalogError("started anyway")

    monkeypatch.setattr(server, "PunkApiServer", started)
    monkeypatch.setattr(streaming_cli, "use_target", started)
    return CliRunner().invoke(main, args)


def test_reconcile_json_prints_only_json_on_stdout(monkeypatch, tmp_path):
    accepting_target(monkeypatch, tmp_path, name="local")
    figures = {"produced": 1, "nothing_lost": True}
    monkeypatch.setattr(
        "brewops.reconcile.reconcile",
        lambda produced, outputs, session, delivered_before: SimpleNamespace(
            ok=True, produced=1, figures=lambda: figures
        ),
    )

    result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == figures
    assert "reconciling with the ids found in raw" in result.stderr


class _Unused:
    """A scheduler or runtime the command must not get as far as using."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"{name} used")


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        json.dumps({"stack_id": "s", "ids": ["1", None]}),
        json.dumps({"stack_id": "s", "ids": 5}),
        json.dumps({"stack_id": "s", "ids": [1], "delivered_before": "raw/a"}),
        json.dumps({"stack_id": "s", "ids": [1], "runs": {"r": ["1"]}}),
        json.dumps({"stack_id": "s", "ids": [1], "runs": {"r": [True]}}),
        json.dumps({"stack_id": "s", "ids": [1], "runs": {"r": 1}}),
        json.dumps({"stack_id": "s", "ids": [1], "runs": [[1]]}),
        "[" * 100_000 + "]" * 100_000,  # deeper than Python's JSON reader goes
    ],
    ids=[
        *("json", "ids", "no list", "delivered before", "runs", "run flags", "run", "runs list"),
        "nested too deeply",
    ],
)
@pytest.mark.parametrize("command", ["backfill", "tick", "reconcile", "run"])
def test_a_damaged_record_of_the_produced_ids_is_one_line_and_nothing_is_sent(
    command, damage, catalog_path, monkeypatch, tmp_path
):
    target = accepting_target(monkeypatch, tmp_path, name="local")
    target.stack_id = "s"
    path = streaming_cli.produced_ids_file("local")
    path.parent.mkdir(parents=True)
    path.write_text(damage, encoding="utf-8")
    monkeypatch.setattr("brewops.scheduler.Scheduler.from_outputs", lambda *a, **kw: _Unused())
    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs", lambda *a, **kw: _Unused()
    )
    args = {
        "backfill": ["--catalog", str(catalog_path), "--no-progress"],
        "run": ["--with-scheduler"],
    }.get(command, [])

    result = CliRunner().invoke(main, ["stream", command, *args])

    assert result.exit_code == 1, result.output
    assert f"Error: {path}, where `brewops stream backfill` and `tick` record" in result.output
    assert "is damaged" in result.output and "Delete it" in result.output
    assert target.kinesis.partition_keys == []
    assert path.read_text(encoding="utf-8") == damage  # left for the user to look at


def test_ids_given_as_booleans_are_refused(monkeypatch, tmp_path):
    accepting_target(monkeypatch, tmp_path, name="local")
    booleans = tmp_path / "ids.json"
    booleans.write_text("[true, 2]", encoding="utf-8")

    result = CliRunner().invoke(streaming_cli.stream, ["reconcile", "--ids-file", str(booleans)])

    assert result.exit_code == 2, result.output
    assert "holds no list of integer ids" in result.output


def test_a_command_out_of_memory_without_a_limit_says_to_close_other_programs(monkeypatch):
    import resource

    monkeypatch.setattr(streaming_cli, "use_target", _raising(MemoryError()))
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(resource, "getrlimit", lambda which: unlimited)

    result = CliRunner().invoke(main, ["stream", "drain", "--no-progress"])

    assert result.exit_code == 1
    assert result.output == "Error: Out of memory: close other programs and run it again.\n"


# options prose names that are another tool's: what `sam deploy` is given
OTHER_TOOLS_OPTIONS = {"--config-env", "--stack-name", "--s3-prefix"}


def _advice() -> list[tuple[str, str]]:
    """(file, text) for every string of the package, the notebook builders and the benchmarks
    (adjacent literals joined, an f-string's fields as `{}`), and for the README and the
    Makefile: where users are told what to run, set or pass. Runs of whitespace are one space,
    so advice wrapped over lines reads as typed."""
    root = repo_root()
    sources = [*root.glob("lib/brewops/**/*.py"), *root.glob("notebooks/_build/*.py")]
    texts = [
        (path, path.read_text(encoding="utf-8")) for path in (root / "README.md", root / "Makefile")
    ]
    for path in [*sources, *root.glob("benchmarks/*.py")]:
        pieces = set()  # an f-string's literal parts, read with it
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in pieces:
                    continue
                texts.append((path, node.value))
            elif isinstance(node, ast.JoinedStr):
                pieces |= {id(v) for v in node.values}
                parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
                texts.append((path, "".join(parts)))
    return [(str(path.relative_to(root)), re.sub(r"\s+", " ", text)) for path, text in texts]


def _options_a_message_reaches() -> dict[str, set[str]]:
    """For each module of the package, the options its messages may name: those of the commands
    it defines or a module importing it defines, those of its own command line (argparse) and
    those it gives a program it starts."""
    defined: dict[str, set[str]] = {}
    for ctx in _every_command():
        options = [(*p.opts, *p.secondary_opts) for p in ctx.command.params]
        module = getattr(ctx.command.callback, "__module__", "brewops.cli")
        defined.setdefault(module, set()).update(*options, ctx.help_option_names)
    reached: dict[str, set[str]] = {}
    lib = repo_root() / "lib"
    for path in lib.glob("brewops/**/*.py"):
        module = ".".join(path.relative_to(lib).with_suffix("").parts).removesuffix(".__init__")
        imported = {module}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            declares = (
                isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
            )
            if isinstance(node, ast.List) or declares:
                arguments = node.elts if isinstance(node, ast.List) else node.args
                reached.setdefault(module, set()).update(
                    a.value for a in arguments if isinstance(a, ast.Constant)
                )
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        for name in imported:
            reached.setdefault(name, set()).update(defined.get(module, ()))
    return reached


def _invocation_problems(words: list[str], commands: dict[str, click.Command]) -> list[str]:
    """What is wrong with `brewops WORDS…` as advised: a command that does not exist, an
    option it does not have, a required option left out when options are shown, a notebook
    parameter no chosen notebook defines. Words after the options are prose."""
    from brewops.runner import discover, notebook_parameters

    path = words[0]
    if isinstance(commands.get(path), click.Group) and len(words) > 1:
        path = f"{words[0]} {words[1].rstrip('.,;:)')}"
    command = commands.get(path)
    if command is None:
        return [f"no command `brewops {path}`"]
    if isinstance(command, click.Group):
        return []  # the group itself (`brewops stream`)
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    rest = words[len(path.split()) :]
    given: dict[str, list[list[str]]] = {}
    while rest and rest[0].startswith("-") and len(rest[0]) > 1:
        option = options.get(rest[0].rstrip(".,;:)"))
        if option is None:
            return [f"`brewops {path}` has no option {rest[0]}"]
        takes = 0 if getattr(option, "is_flag", False) else option.nargs
        given.setdefault(option.name or "", []).append(rest[1 : 1 + takes])
        rest = rest[1 + takes :]
    problems = [
        f"`brewops {path}` shown without its required {p.opts[0]}"
        for p in command.params
        if given and p.required and p.name not in given
    ]
    if path == "run":
        chosen = [value[0] for value in given.get("only", [])]
        notebooks = [nb for nb in discover(repo_root() / "notebooks") if nb.stem[:2] in chosen]
        defined = {
            name
            for nb in notebooks or discover(repo_root() / "notebooks")
            for name in notebook_parameters(nb)
        }
        problems += [
            f"no notebook of `brewops {' '.join(words)}` has the parameter {name}"
            for name, _ in given.get("parameters", [])
            if name not in defined
        ]
    return problems


def test_every_command_option_variable_and_output_the_project_advises_exists():
    """A renamed option, variable or Output breaks this test, not the users who follow a
    message still naming the old one."""
    commands = {ctx.command_path.removeprefix("brewops "): ctx.command for ctx in _every_command()}
    targets = set(
        re.findall(r"^([a-z][\w-]*):", (repo_root() / "Makefile").read_text(encoding="utf-8"), re.M)
    )
    # the stack's Outputs, and those of the access stack (infra/access.yaml)
    outputs = {
        **infra.load_template()["Outputs"],
        **infra.load_template(repo_root() / "infra" / "access.yaml")["Outputs"],
    }
    advice = _advice()
    # the strings the package's code uses whole: the environment variables it reads
    named = {text for where, text in advice if where.startswith("lib/")}
    reached = _options_a_message_reaches()
    root = repo_root()
    written = (
        (root / ".gitignore").read_text(encoding="utf-8").split()
    )  # build/, .venv/…: what the code makes
    folders = "|".join(re.escape(p.name) for p in root.iterdir() if p.is_dir())
    problems = []
    for where, text in advice:
        # `brewops local up | status | down` names three commands
        text = re.sub(
            r"brewops (\w+) (\w+(?: \| \w+)+)",
            lambda m: " ".join(f"brewops {m[1]} {name}" for name in m[2].split(" | ")),
            text,
        )
        # an invocation ends at its closing backquote, a comment or the end of the text
        for match in re.finditer(r"(?<!from )\bbrewops ([a-z][^`#|]*)", text):
            words = match[1].split()
            if re.fullmatch(r"[a-z][\w-]*", words[0]) and words[0] != "import":
                problems += [f"{where}: {p}" for p in _invocation_problems(words, commands)]
        problems += [
            f"{where}: no make target {target}"
            for target in re.findall(r"`make ([a-z][\w-]*)", text)
            if target not in targets
        ]
        problems += [
            f"{where}: the package reads no {variable}"
            for variable in re.findall(r"\b(BREWOPS_[A-Z_]*[A-Z])\b", text)
            if variable not in named
        ]
        problems += [
            f"{where}: the template has no Output {output}"
            for output in re.findall(r"\b`?([A-Z][A-Za-z]+)`? [Oo]utput\b", text)
            if output not in outputs and output not in {"Stack", "The"}
        ]
        if " " not in text.strip() and not re.fullmatch(r"--[a-z][\w-]*", text):
            continue  # a name the code uses (an argument, a file), not advice
        # an option named alone, outside an invocation (`brewops …` ones are checked above,
        # `sam …`, `npm …` name other tools'), exists on a command the message can reach
        module = where.removeprefix("lib/").removesuffix(".py").removesuffix("/__init__")
        prose = re.sub(r"`[a-z][^`]*`|\bbrewops [a-z][^`#|]*", "", text)
        problems += [
            f"{where}: no command it serves has the option {option}"
            for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", prose)
            if where.startswith("lib/")
            and option not in reached.get(module.replace("/", "."), ())
            and option not in OTHER_TOOLS_OPTIONS
        ]
        # a path in the repository is there, or is one the code writes
        problems += [
            f"{where}: no {path} in the repository"
            for path in re.findall(
                rf"(?<![\w./~:-])(?:(?:{folders})/[\w./{{}}*-]*|[\w-]+\.(?:toml|lock|ya?ml|txt)\b)",
                text,
            )
            if not any(root.glob(re.sub(r"\{\}|\b[A-Z]{2,}\b|NN_name", "*", path.rstrip("."))))
            and not any(fnmatch.fnmatch(path.split("/")[0] + "/", w) for w in written)
        ]
    assert problems == []


def test_the_benchmarks_usage_lines_name_only_their_options():
    for script in sorted((repo_root() / "benchmarks").glob("*.py")):
        usage = re.search(
            rf"python benchmarks/{script.name}(.*)", script.read_text(encoding="utf-8")
        )
        assert usage, f"{script.name}: no usage line"
        shown = re.findall(r"(--[\w-]+)", usage[1])
        result = subprocess.run(
            [sys.executable, script, "--help"], capture_output=True, encoding="locale", check=True
        )
        assert [opt for opt in shown if opt not in result.stdout] == [], script.name


def test_a_failed_command_in_a_failed_test_shows_its_output():
    from fixtures.cli_results import failed_results, shown

    refused = CliRunner().invoke(main, ["stream", "fill", "--no-such-option"])
    done = CliRunner().invoke(main, ["--help"])

    assert failed_results([{"result": refused, "again": refused, "help": done}]) == [refused]
    assert shown(refused).startswith("exit status 2; the command printed:\n")
    assert "No such option '--no-such-option'" in shown(refused)
