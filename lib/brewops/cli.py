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
from click.shell_completion import CompletionItem

# name -> "module:attribute" of a click command or group
COMMANDS = {
    "data": ("brewops.catalog_cli:data", "Get, crawl or synthesise a Punk API catalogue."),
    "api": ("brewops.punkapi.cli:api", "Serve the Punk API locally (v2 or v3)."),
    "local": ("brewops.local.cli:local", "Start, stop and inspect the embedded AWS target."),
    "stream": ("brewops.streaming_cli:stream", "Produce beers, run the scheduler, drain Firehose."),
    "validate": ("brewops.validation_cli:validate", "Validate the Glue tables."),
    "model": ("brewops.model.cli:model", "Train, evaluate and use the IBU model."),
    "run": ("brewops.runner:run_command", "Execute the notebooks in order with papermill."),
    "schema": (
        "brewops.json_schemas.cli:schema",
        "Print the JSON Schema of an output scripts read.",
    ),
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
    from brewops.files import CannotCreate

    if error.errno not in _FILE_SYSTEM_REFUSALS and not isinstance(error, CannotCreate):
        return None
    limit = _file_size_limit() if error.errno == errno.EFBIG else None
    if not isinstance(error.filename, str):  # a write to an open file names none
        if error.errno not in _NO_ROOM:
            return None
        if limit:
            return f"{error.strerror} while writing a file. {limit}"
        return f"{error.strerror} while writing a file: free some space and run it again."
    from brewops import paths

    said = f"{error.filename}: {error.strerror}."
    if limit:
        said += f" {limit}"
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


def _shell_limit(which: str) -> int | None:
    """The shell's limit (`ulimit`) of the resource named `which` (RLIMIT_FSIZE, RLIMIT_AS)
    in bytes, or None when there is none (or no such limit, on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    limit, _ = resource.getrlimit(getattr(resource, which))
    return None if limit == resource.RLIM_INFINITY else limit


def _file_size_limit() -> str | None:
    """What to do about a file larger than the shell allows (`ulimit -f`), or None when no
    limit is set: then the file system itself takes no larger file."""
    limit = _shell_limit("RLIMIT_FSIZE")
    if limit is None:
        return None
    return (
        f"This shell allows files of {limit >> 10} kB at most (`ulimit -f`): raise the limit "
        "and run it again."
    )


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
        _point_at_dev_null(sys.stdout.fileno())


def _out_of_memory() -> str:
    """One line for a command that ran out of memory, naming the shell's limit if one is set."""
    limit = _shell_limit("RLIMIT_AS")
    if limit is None:
        return "Out of memory: close other programs and run it again."
    return (
        f"Out of memory: this shell allows {limit >> 20} MB (`ulimit -v`). Raise the limit, "
        "or close other programs, and run it again."
    )


def _endpoint_gone(error: Exception) -> str | None:
    """One line for an AWS endpoint that stopped answering mid-command: the local target's
    emulator when it is on this machine."""
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if not isinstance(error, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return None
    from brewops.target import on_this_machine

    said = str(error)
    if isinstance(error, ReadTimeoutError):
        said += " (it took the connection, and did not answer in time)"
    if not on_this_machine(str(error.kwargs.get("endpoint_url", ""))):
        return (
            f"{said}. Check the network connection, a proxy (HTTPS_PROXY) and the region, "
            "then run it again."
        )
    return (
        f"{said}: the AWS emulator there is not answering. `brewops local status` says "
        "whether the local target still runs; `brewops local up` starts it again."
    )


def _escape_what_the_terminal_cannot_show() -> None:
    """Write a character the output's encoding lacks ("…" to a Latin-1 terminal) as an
    escape (\\u2026), as Python's stderr does, instead of ending the command with a
    UnicodeEncodeError. Nothing changes for text the encoding has: all of it in UTF-8."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _point_at_dev_null(fd: int) -> None:
    """Descriptor `fd` writes to /dev/null from now on: what is written there is dropped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != fd:  # fd was closed, and the open took its number
        os.dup2(devnull, fd)
        os.close(devnull)


class _ClosedDescriptor(io.RawIOBase):
    """stdout as the shell closed it (`brewops … >&-`): the first write fails as a write to
    the closed descriptor does (EBADF); what comes after is dropped."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.refused = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size and not self.refused:
            self.refused = True
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return size


# descriptors found closed and opened on /dev/null: closed still for a later command in
# this process (`main` called again from Python)
_ON_DEV_NULL: set[int] = set()


def _open_on_dev_null(fd: int) -> bool:
    """Open `fd` on /dev/null if it is closed, so that no file opened later takes its number
    (and no process started later writes into that file); True when it was closed."""
    if fd in _ON_DEV_NULL:
        return True
    try:
        os.fstat(fd)
        return False
    except OSError:
        pass
    _point_at_dev_null(fd)
    os.set_inheritable(fd, True)  # opened as fd itself, it is not
    _ON_DEV_NULL.add(fd)
    return True


def _closed_outputs_reopened() -> _ClosedDescriptor | None:
    """stdout and stderr for a command the shell started with either closed (`>&-`,
    `2>&-`), where Python leaves None and click drops what is written to it. stderr only
    comments: it goes to /dev/null and the work goes on. stdout is what the command is for:
    writing to it fails as on the closed descriptor. Returns that stdout's descriptor."""
    if sys.stderr is None and _open_on_dev_null(2):
        # in the locale's encoding, as Python's own stderr
        sys.stderr = open(  # noqa: SIM115
            2, "w", buffering=1, closefd=False, encoding="locale", errors="backslashreplace"
        )
    if sys.stdout is None and _open_on_dev_null(1):
        closed = _ClosedDescriptor(1)
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(closed), encoding="locale", errors="backslashreplace"
        )
        return closed
    return None


# A write to stdout failed so: its reader went away (`| head`), or the shell closed it (`>&-`)
_OUTPUT_GONE = frozenset({errno.EPIPE, errno.EBADF})

_STDOUT_CLOSED = (
    "stdout is closed (Bad file descriptor): the output could not be written. Send it to a "
    "file, or to /dev/null, instead."
)


class _OutputItsReaderMayLeave:
    """stdout or stderr of a command whose reader may go away (`brewops … | head`, a closed
    terminal) or that the shell closed (`>&-`). Once it has, the descriptor points at
    /dev/null: what is written later (the clean-up's messages, the final flush, the
    processes started after) is dropped instead of failing again. stdout is what the
    command is for: the main thread's first write after its reader went raises
    BrokenPipeError (OSError EBADF for a closed stdout), which ends the command with status
    1 as SIGPIPE ends a shell's. Another thread's write does not raise: it would die before
    recording its work (a tick's, in `stream run`). stderr only comments: the work goes on
    without it."""

    def __init__(self, stream: TextIO, *, gone_ends_the_command: bool) -> None:
        self.stream = stream
        self.gone_ends_the_command = gone_ends_the_command
        self.gone = False
        self._why = errno.EPIPE
        self._ended = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except OSError as error:
                self._reader_left(error)
        self._end_the_command()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
                return
            except OSError as error:
                self._reader_left(error)
        self._end_the_command()

    def settle(self) -> bool:
        """Write what is held still (print() leaves it for the flush at exit); True when
        the reader went away at some point, so the output is not whole."""
        try:
            self.flush()
        except OSError as error:
            if error.errno not in _OUTPUT_GONE:
                raise
        return self.gone

    def _reader_left(self, error: OSError) -> None:
        if error.errno not in _OUTPUT_GONE:
            raise error
        self.gone = True
        self._why = error.errno
        _point_at_dev_null(self.stream.fileno())
        with contextlib.suppress(OSError):  # what the stream held goes to /dev/null too
            self.stream.flush()

    def _end_the_command(self) -> None:
        if (
            self.gone_ends_the_command
            and not self._ended
            and threading.current_thread() is threading.main_thread()
        ):
            self._ended = True
            # OSError gives BrokenPipeError for EPIPE, which click ends quietly
            raise OSError(self._why, os.strerror(self._why))

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


def _commands_taking(ctx: click.Context, group: click.Group, option: str) -> list[str]:
    """The commands under `group` (that of `ctx`) that take `option`, by their path from it."""
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if isinstance(command, click.Group):
            under = click.Context(command, parent=ctx, info_name=name)
            found += [f"{name} {path}" for path in _commands_taking(under, command, option)]
        elif any(option in (*p.opts, *p.secondary_opts) for p in command.params):
            found.append(name)
    return found


def _given_before_its_command(error: click.NoSuchOption) -> click.NoSuchOption:
    """For an option a group was given that only its commands take (`brewops --target aws
    run`), the error that names those commands, rather than the group's option whose name
    is closest (click's guess); else `error` as it is."""
    ctx = error.ctx
    if ctx is None or not isinstance(ctx.command, click.Group):
        return error
    takers = _commands_taking(ctx, ctx.command, error.option_name)
    if not takers:
        return error
    message = (
        f"No such option {error.option_name!r} of `{ctx.command_path}` itself. It is an "
        f"option of {', '.join(f'`{taker}`' for taker in takers)}: give it after the command's "
        "name."
    )
    return click.NoSuchOption(error.option_name, message, ctx=ctx)


class LazyGroup(click.Group):
    # set when Ctrl-C (SIGTERM, SIGHUP) ended the command, for its exit status
    _interrupted = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        given = sys.stdout, sys.stderr
        closed = _closed_outputs_reopened()
        self._interrupted = False
        try:
            _escape_what_the_terminal_cannot_show()
            if not (_on_a_descriptor(sys.stdout) and _on_a_descriptor(sys.stderr)):
                return super().main(*args, **kwargs)
            return self._main_on_descriptors(closed, *args, **kwargs)
        except SystemExit as exiting:
            # click ends an interrupted command with 1, a failure's status: a script could
            # not tell a failed check from Ctrl-C, a `timeout` or a cancelled job
            if self._interrupted and exiting.code == 1:
                from brewops.interrupts import exit_status

                raise SystemExit(exit_status()) from None
            raise
        finally:
            sys.stdout, sys.stderr = given

    def _main_on_descriptors(
        self, closed: _ClosedDescriptor | None, *args: Any, **kwargs: Any
    ) -> Any:
        output = _OutputItsReaderMayLeave(sys.stdout, gone_ends_the_command=True)
        sys.stdout = output
        sys.stderr = _OutputItsReaderMayLeave(sys.stderr, gone_ends_the_command=False)
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exiting:
            # a command whose output was lost has not done what it was asked: not a success
            lost = output.settle()
            refused = closed is not None and closed.refused
            if (lost or refused) and exiting.code in (0, None):
                if refused:
                    click.echo(f"Error: {_STDOUT_CLOSED}", err=True)
                raise SystemExit(1) from None
            raise
        except OSError as error:  # click ends quietly only a reader gone (EPIPE)
            if closed is None or not closed.refused or error.errno != errno.EBADF:
                raise
            click.echo(f"Error: {_STDOUT_CLOSED}", err=True)
            raise SystemExit(1) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        # click's would import every command's module for its help line: most of a second
        # on each Tab
        items = [
            CompletionItem(name, help=COMMANDS[name][1])
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)  # the options

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
        except click.NoSuchOption as error:
            raise _given_before_its_command(error) from None
        except OSError as error:
            if (one_line := _refusal_in_one_line(error)) is None:
                raise
            raise one_line from error

    def invoke(self, ctx: click.Context) -> object:
        from brewops.errors import ActionableError

        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):  # Ctrl-C, or how a command that caught it ends
            self._interrupted = True
            raise
        except click.NoSuchOption as error:  # given to a group: `brewops stream --target …`
            raise _given_before_its_command(error) from None
        except ActionableError as error:  # its message already says what to do
            raise click.ClickException(str(error)) from error
        except MemoryError as error:  # the stack it unwound is freed: enough to say so
            raise click.ClickException(_out_of_memory()) from error
        except OSError as error:  # botocore's timeouts are OSErrors too (through requests)
            if (one_line := _refusal_in_one_line(error)) is not None:
                raise one_line from error
            if (said := _endpoint_gone(error)) is None:
                raise
            raise click.ClickException(said) from error
        except Exception as error:
            from brewops.aws_errors import aws_refusal

            said = _endpoint_gone(error) or aws_refusal(error)
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


# what `brewops --help` ends with; the README's Exit status says when each is given
EXIT_STATUS = (
    "Exit status: 0 done, 1 failed (a check that fails too), 2 a usage error, 130 (Ctrl-C), "
    "143 (SIGTERM) or 129 (SIGHUP) interrupted. The README's Exit status says when."
)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_STATUS,
    help="""Punk API beers -> Kinesis -> Firehose -> S3 -> Glue -> an IBU model.

    Runs against the embedded AWS emulator (local, the default) or real AWS.
    """,
)
@click.version_option(package_name="brewops")
@click.option(STARTED_BY_BREWOPS, "started_by_brewops", is_flag=True, hidden=True)
@click.pass_context
def main(ctx: click.Context, started_by_brewops: bool) -> None:
    from brewops.installed import stale_venv_warning
    from brewops.interrupts import terminate_as_interrupt
    from brewops.paths import check_folder_variables

    check_folder_variables()  # before a command starts anything that would write there
    # after a `git pull` that changed the lock, before `make` installed it
    if not started_by_brewops and (warning := stale_venv_warning()) is not None:
        click.echo(warning, err=True)
    # SIGTERM and SIGHUP run the same clean-up as Ctrl-C: `run` stops the target it started
    ctx.with_resource(terminate_as_interrupt())


if __name__ == "__main__":
    main()
