"""The `brewops` command line. Each command group lives beside the code it drives and is
imported only when used, so `brewops --help` stays fast."""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import click

# name -> "module:attribute" of a click command or group
COMMANDS = {
    "data": ("brewops.catalog_cli:data", "Get, crawl or synthesise a Punk API catalogue."),
    "api": ("brewops.punkapi.cli:api", "Serve the Punk API locally (v2 or v3)."),
    "local": ("brewops.local.cli:local", "Start, stop and inspect the embedded AWS target."),
    "stream": ("brewops.streaming_cli:stream", "Produce beers, run the scheduler, drain Firehose."),
    "validate": ("brewops.validation_cli:validate", "Validate the Glue tables."),
    "model": ("brewops.model.cli:model", "Train, evaluate and use the IBU model."),
    "run": ("brewops.runner:run_command", "Execute the notebooks in order with papermill."),
}


# The system refusing a file (full disk, no permission, a file where a folder should be):
# the user's to fix, not a bug, so one line naming the file rather than a traceback.
_FILE_SYSTEM_REFUSALS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
    }
)


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _file_system_refusal(error: OSError) -> str | None:
    if error.errno not in _FILE_SYSTEM_REFUSALS:
        return None
    if not isinstance(error.filename, str):  # a write to an open file names none
        if error.errno not in _NO_ROOM:
            return None
        return f"{error.strerror} while writing a file: free some space and run it again."
    from brewops import paths

    said = f"{error.filename}: {error.strerror}."
    build = paths.build_dir().absolute()
    if build in (path := Path(error.filename).absolute(), *path.parents):
        said += (
            f" Outputs and the local target's state go to {build} (BREWOPS_BUILD_DIR): it "
            "must be a writable folder with free space."
        )
    cache = paths.cache_dir().absolute()
    if cache in (path, *path.parents) or path in cache.parents:  # in it, or on the way to it
        said += (
            f" The catalogue is cached in {cache} (BREWOPS_CACHE_DIR, else "
            "$XDG_CACHE_HOME/brewops, else ~/.cache/brewops): it must be a writable folder."
        )
    return said


def _refusal_in_one_line(error: OSError) -> click.ClickException | None:
    """The one-line error for a refusal of the file system, or None for another OSError."""
    said = _file_system_refusal(error)
    if said is None:
        return None
    _drop_what_stdout_refused()
    return click.ClickException(said)


def _drop_what_stdout_refused() -> None:
    """Send to /dev/null what stdout holds still because writing it was refused (a full disk):
    Python's flush at exit would fail again, after the one-line error, with a traceback."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _out_of_memory() -> str:
    """One line for a command that ran out of memory, naming the shell's limit if one is set."""
    unlimited = "Out of memory: close other programs and run it again."
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return unlimited
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY:
        return unlimited
    return (
        f"Out of memory: this shell allows {limit >> 20} MB (`ulimit -v`). Raise the limit, "
        "or close other programs, and run it again."
    )


def _endpoint_gone(error: Exception) -> str | None:
    """One line for an AWS endpoint that stopped answering mid-command: the local target's
    emulator when it is on this machine."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    if not isinstance(error, EndpointConnectionError | ConnectionClosedError):
        return None
    from brewops.target import on_this_machine

    if not on_this_machine(str(error.kwargs.get("endpoint_url", ""))):
        return f"{error}. Check the network connection and the region."
    return (
        f"{error}: the AWS emulator there is not answering. `brewops local status` says "
        "whether the local target still runs; `brewops local up` starts it again."
    )


def _escape_what_the_terminal_cannot_show() -> None:
    """Write a character the output's encoding lacks ("…" to a Latin-1 terminal) as an
    escape (\\u2026), as Python's stderr does, instead of ending the command with a
    UnicodeEncodeError. Nothing changes for text the encoding has: all of it in UTF-8."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


class _OutputItsReaderMayLeave:
    """stdout or stderr of a command whose reader may go away (`brewops … | head`, a closed
    terminal). Once it has, the descriptor points at /dev/null: what is written later (the
    clean-up's messages, the final flush, the processes started after) is dropped instead of
    raising BrokenPipeError again. stdout is what the command is for: the main thread's
    first write after its reader went raises BrokenPipeError, which ends the command with
    status 1 as SIGPIPE ends a shell's. Another thread's write does not raise: it would die
    before recording its work (a tick's, in `stream run`). stderr only comments: the work
    goes on without it."""

    def __init__(self, stream: TextIO, *, gone_ends_the_command: bool) -> None:
        self.stream = stream
        self.gone_ends_the_command = gone_ends_the_command
        self.gone = False
        self._ended = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        self._end_the_command()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
                return
            except BrokenPipeError:
                self._reader_left()
        self._end_the_command()

    def settle(self) -> bool:
        """Write what is held still (print() leaves it for the flush at exit); True when
        the reader went away at some point, so the output is not whole."""
        with contextlib.suppress(BrokenPipeError):
            self.flush()
        return self.gone

    def _reader_left(self) -> None:
        self.gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)
        with contextlib.suppress(OSError):  # what the stream held goes to /dev/null too
            self.stream.flush()

    def _end_the_command(self) -> None:
        if (
            self.gone_ends_the_command
            and not self._ended
            and threading.current_thread() is threading.main_thread()
        ):
            self._ended = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _on_a_descriptor(stream: Any) -> bool:
    if not isinstance(stream, io.TextIOWrapper):
        return False
    try:
        stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: a test runner's capture
        return False
    return True


class LazyGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        _escape_what_the_terminal_cannot_show()
        if not (_on_a_descriptor(sys.stdout) and _on_a_descriptor(sys.stderr)):
            return super().main(*args, **kwargs)
        stdout, stderr = sys.stdout, sys.stderr
        output = _OutputItsReaderMayLeave(stdout, gone_ends_the_command=True)
        sys.stdout = output
        sys.stderr = _OutputItsReaderMayLeave(stderr, gone_ends_the_command=False)
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exiting:
            # a command whose output was lost has not done what it was asked: not a success
            if output.settle() and exiting.code in (0, None):
                raise SystemExit(1) from None
            raise
        finally:
            sys.stdout, sys.stderr = stdout, stderr

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.NoSuchCommand as error:  # click suggests from loaded commands: none here
            raise click.NoSuchCommand(error.command_name, possibilities=COMMANDS, ctx=ctx) from None

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        # --help and --version print while the options are read, before invoke
        try:
            return super().make_context(*args, **kwargs)
        except OSError as error:
            if (one_line := _refusal_in_one_line(error)) is None:
                raise
            raise one_line from error

    def invoke(self, ctx: click.Context) -> object:
        from brewops.errors import ActionableError

        try:
            return super().invoke(ctx)
        except ActionableError as error:  # its message already says what to do
            raise click.ClickException(str(error)) from error
        except MemoryError as error:  # the stack it unwound is freed: enough to say so
            raise click.ClickException(_out_of_memory()) from error
        except OSError as error:
            if (one_line := _refusal_in_one_line(error)) is None:
                raise
            raise one_line from error
        except Exception as error:
            said = _endpoint_gone(error)
            if said is None:
                raise
            raise click.ClickException(said) from error

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


# Given to the servers brewops starts itself (the Punk API's): the command that started them
# has shown its warnings already, which would otherwise be repeated in their logs.
STARTED_BY_BREWOPS = "--started-by-brewops"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="brewops")
@click.option(STARTED_BY_BREWOPS, "started_by_brewops", is_flag=True, hidden=True)
@click.pass_context
def main(ctx: click.Context, started_by_brewops: bool) -> None:
    """Punk API beers -> Kinesis -> Firehose -> S3 -> Glue -> an IBU model.

    Runs against the embedded AWS emulator (local, the default) or real AWS.
    """
    from brewops.installed import stale_venv_warning
    from brewops.interrupts import terminate_as_interrupt

    # after a `git pull` that changed the lock, before `make` installed it
    if not started_by_brewops and (warning := stale_venv_warning()) is not None:
        click.echo(warning, err=True)
    # SIGTERM and SIGHUP run the same clean-up as Ctrl-C: `run` stops the target it started
    ctx.with_resource(terminate_as_interrupt())


if __name__ == "__main__":
    main()
