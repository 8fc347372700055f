"""Execute the numbered notebooks in order with papermill.

Executed copies go to `build/executed/` (sources are never overwritten) with an HTML
rendering beside each; the run stops at the first failing notebook and keeps its executed
copy, because that copy shows where it failed. `build/run-summary.json` records the stack and
the code's commit, and each notebook's status, seconds and the key figures it recorded
through `brewops.summary`.
`build/executed/` holds the copies of the last run only, as the summary describes it.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import re
import signal
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from click.shell_completion import CompletionItem

from brewops import provenance, summary
from brewops.environ import applied_environment
from brewops.errors import ActionableError
from brewops.files import SHARED, exclusive, held_alone, make_folder, shared, write_atomically
from brewops.paths import build_dir, local_state_dir, notebooks_dir
from brewops.progress_option import PROGRESS_OPTION

NOTEBOOK_NAME = re.compile(r"^(\d{2})_[a-z0-9_]+\.ipynb$")
TARGETS = ("local", "aws")


@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" | "failed" | "skipped" | "interrupted"
    seconds: float = 0.0
    executed: str | None = None
    html: str | None = None
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    target: str
    started_at: str
    stack: str | None = None  # the stack the notebooks used; None when not told
    # the code that ran: brewops.provenance.code_version()
    code: dict[str, Any] = field(default_factory=provenance.code_version)
    status: str = "running"  # then "ok" | "failed" | "interrupted"
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    notebooks: list[NotebookResult] = field(default_factory=list)

    def write(self, path: Path) -> None:
        # whole or not at all: a run killed while writing keeps the previous write
        text = summary.strict_json_text(asdict(self)) + "\n"
        write_atomically(path, text, mode=SHARED)  # as open() makes the executed copies


class RunFailed(click.ClickException):
    exit_code = 1


def discover(directory: Path | None = None, only: Sequence[str] = ()) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose number (e.g. "03") is listed."""
    directory = directory or notebooks_dir()
    found = sorted(p for p in directory.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if only:
        wanted = {n.zfill(2) for n in only}
        unknown = wanted - {p.name[:2] for p in found}
        if unknown:
            raise click.BadParameter(
                f"no notebook numbered {', '.join(sorted(unknown))} in {directory}",
                param_hint="--only",
            )
        found = [p for p in found if p.name[:2] in wanted]
    return found


def _complete_notebook_numbers(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The numbers `--only` takes, each with its notebook's name, for the shell's Tab."""
    return [
        CompletionItem(path.name[:2], help=path.stem[3:].replace("_", " "))
        for path in discover()
        if path.name.startswith(incomplete)
    ]


def check_parameters(
    notebooks: Sequence[Path], parameters: Mapping[str, Any]
) -> dict[Path, set[str]]:
    """Refuse a parameter no notebook's `parameters` cell defines: papermill would inject
    it anyway, and the notebook would run with its default as if nothing was said. Refuse
    `target` too: the run's target (what it brings up, what its summary says) is --target.
    Refuse a value whose type is not the one the cell declares for it (`seed:
    Optional[int] = None`), or else its default's, in a notebook that defines it: the
    notebook would fail halfway, or `ticks null` tick forever. Returns the names each
    notebook defines."""
    if "target" in parameters:
        raise click.BadParameter(
            "the target is chosen with --target, not as a parameter",
            param_hint="'-p' / '--parameter'",
        )
    defined = {nb: _read_parameters(nb) for nb in notebooks}
    known = list(dict.fromkeys(name for names in defined.values() for name in names))
    unknown = [name for name in parameters if name not in known]
    if unknown:
        which = ", ".join(nb.stem for nb in notebooks)
        raise click.BadParameter(
            f"not defined by {which}: {', '.join(unknown)}. Valid names: {', '.join(known)}",
            param_hint="'-p' / '--parameter'",
        )
    for nb, names in defined.items():
        for name, (default, declared) in names.items():
            if name in parameters:
                _check_type(nb, name, default, declared, parameters[name])
    return {nb: set(names) for nb, names in defined.items()}


def notebook_parameters(notebook: Path) -> dict[str, str]:
    """The names the notebook's `parameters` cell assigns, each with its default's source.
    Read with `ast`, not papermill's `inspect_notebook`: importing papermill takes seconds,
    which a mistyped `-p` should not wait for."""
    return {name: default for name, (default, _) in _read_parameters(notebook).items()}


def _read_parameters(notebook: Path) -> dict[str, tuple[str, str | None]]:
    """Each name of the `parameters` cell: its default's source and its annotation's, if
    it has one."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        return {}
    source = tagged[0]["source"]  # the first, as papermill injects after it
    source = "".join(source) if isinstance(source, list) else source
    try:
        statements = ast.parse(source).body
    except SyntaxError:  # papermill reads such a cell line by line: leave it to papermill
        from papermill import inspect_notebook

        return {
            name: (
                p["default"],
                None if p["inferred_type_name"] == "None" else p["inferred_type_name"],
            )
            for name, p in inspect_notebook(notebook).items()
        }
    read: dict[str, tuple[str, str | None]] = {}
    for statement in statements:
        annotation = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
            annotation = ast.get_source_segment(source, statement.annotation)
        else:
            continue
        if isinstance(target, ast.Name):
            read[target.id] = (ast.get_source_segment(source, value) or "", annotation)
    return read


# a default's type -> what a value must be to take its place, said as the refusal says it
_TYPES: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string (quote one YAML reads otherwise: '\"8080\"')"),
    list: ((list,), "a list, e.g. '[1, 2]'"),
    tuple: ((list,), "a list, e.g. '[1, 2]'"),
    dict: ((dict,), "a mapping, e.g. '{a: 1}'"),
}


_NAMED_TYPES = {kind.__name__: kind for kind in _TYPES}


def _declared_types(annotation: str) -> list[type | None] | None:
    """The types an annotation names (None for None), or None if it names one with no rule
    (a class of its own, `Any`): `int`, `list[int]` (a list), `Optional[int]`,
    `Union[int, str]`, `int | None`."""
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return None

    def named(node: ast.expr) -> list[type | None] | None:
        if isinstance(node, ast.Constant) and node.value is None:
            return [None]
        if isinstance(node, ast.Name):
            kind = _NAMED_TYPES.get(node.id)
            return None if kind is None else [kind]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = named(node.left), named(node.right)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if node.value.id in ("Optional", "Union"):
                kinds: list[type | None] = []
                for element in inner:
                    each = named(element)
                    if each is None:
                        return None
                    kinds += each
                return [*kinds, None] if node.value.id == "Optional" else kinds
            return named(node.value)  # list[int]: a list
        return None

    return named(node)


def _takes(kind: type | None, value: Any) -> bool:
    if kind is None:
        return value is None
    if isinstance(value, bool):  # a bool is an int to isinstance, not to the notebooks
        return kind is bool
    return isinstance(value, _TYPES[kind][0])


def _check_type(
    notebook: Path, name: str, default_source: str, declared: str | None, value: Any
) -> None:
    """A parameter takes the types its annotation declares; else its default's type; one
    with neither (a None default without an annotation, an expression) takes anything."""
    kinds = _declared_types(declared) if declared else None
    if kinds is None:
        try:
            default = ast.literal_eval(default_source)
        except (ValueError, SyntaxError):  # an expression: nothing to compare with
            return
        if default is None or type(default) not in _TYPES:
            return
        kinds = [type(default)]
    if any(_takes(kind, value) for kind in kinds):
        return
    said = " or ".join(dict.fromkeys("null" if kind is None else _TYPES[kind][1] for kind in kinds))
    # an annotation with no rule (`Any`) left the default to decide
    source = (
        f"it is declared {declared}"
        if declared and _declared_types(declared) is not None
        else f"its default is {default_source}"
    )
    raise click.BadParameter(
        f"{name} of {notebook.stem} takes {said}, not {json.dumps(value, default=str)} ({source})",
        param_hint="'-p' / '--parameter'",
    )


# The widget script of the ipywidgets release requirements.lock pins (8.1.9): nbconvert's
# default "*" would draw today's rendering with whatever unpkg serves next year
WIDGETS_HTML_MANAGER = "1.0.15"


def render_html(executed: Path) -> Path | None:
    """The HTML rendering beside `executed`, or None when that copy is not a whole notebook
    (its writing was cut short, by a full disk say)."""
    import nbformat
    from nbconvert import HTMLExporter

    try:
        notebook = nbformat.read(executed, as_version=4)
    except nbformat.reader.NotJSONError:
        return None
    exporter = HTMLExporter(html_manager_semver_range=WIDGETS_HTML_MANAGER)
    body, _ = exporter.from_notebook_node(notebook)
    html = executed.with_suffix(".html")
    # whole or not at all: a full disk must not leave a page cut short to be opened
    write_atomically(html, body, mode=SHARED)  # as open() makes the executed copies
    return html


class NotebookStackMissing(ImportError, ActionableError):
    """The package was installed without what runs notebooks (papermill, nbconvert)."""


def notebook_executor() -> Any:
    """papermill, or an error that says how to install it."""
    try:
        import nbconvert  # noqa: F401  (renders the executed copies)
        import papermill
    except ImportError as error:  # installed without the extra, as Colab's install cell does
        raise NotebookStackMissing(
            f"running notebooks needs the `notebooks` extra ({error.name} is missing): "
            "`make setup`, or `pip install -c constraints.txt '.[notebooks]'`"
        ) from error
    return papermill


# held shared by every run while it uses the local target
RUNS_LOCK = ".runs.lock"


@contextlib.contextmanager
def target_services(target: str) -> Iterator[str]:
    """The local target brings up the emulator, the Punk API and the stack, and takes
    down afterwards only what it started itself, or took over from a run that ended
    without stopping it (killed, before this run or while it ran), once no other run uses
    it; not one that `brewops local down` then `up` started anew meanwhile. Gives the name
    of the stack the notebooks will use."""
    if target != "local":
        from brewops.local.state import default_stack_name

        yield default_stack_name()  # as `brewops.target.use("aws")` chooses it
        return
    from brewops import local

    with shared(local_state_dir() / RUNS_LOCK) as runs:
        _say("==> local target: emulator, Punk API server and stack")
        started = time.perf_counter()
        state = local.up(for_run=True)
        took = f"running in {time.perf_counter() - started:.1f} s"
        # a target a killed run left running is this run's to stop: no other would
        left_by = state.left_by
        stops_it = not state.already_running or left_by is not None
        try:
            if left_by is not None:
                _say(
                    f"    already running, left by a `brewops run` (pid {left_by.pid}) "
                    "that ended without stopping it: this run stops it when done"
                )
            else:
                _say(f"    {'already running' if state.already_running else took}")
            yield state.stack_name
        finally:
            if not stops_it:
                # the run in charge of it (its starter, or one that took it over) may have
                # been killed since: then no other run would stop it
                from brewops.local.runtime import take_over_if_left

                if (ended := take_over_if_left()) is not None:
                    left_by, stops_it = ended, True
                    _say(
                        f"==> local target: the `brewops run` in charge of it (pid {ended.pid}) "
                        "ended without stopping it while this run used it: this run stops it"
                    )
            if stops_it:
                if not held_alone(runs, wait=False):
                    _say(
                        "==> local target: another `brewops run` is using it; stopping it "
                        "when that run ends"
                    )
                    try:
                        held_alone(runs)
                    except KeyboardInterrupt:
                        # the other run found it running: it will not stop it either
                        _say(
                            "==> local target: left running for the other `brewops run`; "
                            "`brewops local down` stops it once that run has ended"
                        )
                        raise
                from brewops.local import runtime

                # checked and stopped in one hold: a `local down` then `up` waits for it
                with runtime.exclusively():
                    if runtime.started_anew_meanwhile():
                        _say(
                            "==> local target: `brewops local down` then `up` started it "
                            "again while this run used it: left running"
                        )
                    else:
                        took_over = "took over" if left_by is not None else "started"
                        _say(f"==> local target: stopping what this run {took_over}")
                        local.down()


def _say(line: str) -> None:
    """`line` on stderr, if it can be written: one whose reader has gone (`brewops run 2>&1 |
    head`) must not keep the local target from being taken down."""
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


# What a notebook's kernel must not take from the shell. PYTHONOPTIMIZE strips the assert
# cells that are the notebooks' checks: the run would pass whatever they say. MPLBACKEND
# (a GUI one, or one that does not exist) keeps the figures out of the executed copies or
# fails the first plot; unset, ipykernel draws them inline.
KERNEL_ENVIRONMENT = {"PYTHONOPTIMIZE": None, "MPLBACKEND": None}


# held by the run writing the build folder: a second run there waits for it instead of
# removing the first one's executed copies and writing over its summary
OUTPUTS_LOCK = ".outputs.lock"


def outputs_held(out_dir: Path) -> contextlib.AbstractContextManager[None]:
    def waiting() -> None:
        click.echo(
            f"==> another `brewops run` is writing to {out_dir}: waiting for it to end "
            "(runs with BREWOPS_BUILD_DIR set to folders of their own run at once)",
            err=True,
        )

    return exclusive(out_dir / OUTPUTS_LOCK, waiting)


def execute(
    notebooks: Sequence[Path],
    target: str = "local",
    parameters: dict[str, Any] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    stack: str | None = None,
) -> RunSummary:
    """Run `notebooks` in order against `target` (`stack`: its stack's name, for the
    summary); stop at the first failure. A parameter none of them defines is refused
    before any runs."""
    papermill = notebook_executor()
    from nbclient.exceptions import DeadKernelError  # papermill's executor, loaded with it

    defined = check_parameters(notebooks, parameters or {})
    out_dir = out_dir or build_dir()
    executed_dir = out_dir / "executed"
    figures_dir = out_dir / "figures"
    make_folder(executed_dir)
    params = {"target": target, **(parameters or {})}
    run = RunSummary(
        target=target, started_at=datetime.now(UTC).isoformat(), stack=stack, parameters=params
    )
    summary_path = out_dir / "run-summary.json"
    # at once: a run killed in its first notebook must not leave the last run's summary
    run.write(summary_path)
    started = time.perf_counter()
    failed = False
    current: NotebookResult | None = None  # the notebook running, not yet recorded
    try:
        remove_executed_copies(executed_dir)  # in the try: cut short, the summary says so
        for source in notebooks:
            name = source.stem
            if failed:
                run.notebooks.append(NotebookResult(name, "skipped"))
                continue
            executed = executed_dir / source.name
            figures_file = figures_dir / f"{name}.json"
            figures_file.unlink(missing_ok=True)
            result = NotebookResult(name, "ok", executed=str(executed))
            click.echo(f"==> {source.name} ({target})", err=True)
            t0 = time.perf_counter()
            current = result
            kernel_manager = watched_kernel_manager()
            try:
                with (
                    applied_environment(
                        {summary.FIGURES_ENV: str(figures_file), **KERNEL_ENVIRONMENT}
                    ),
                    kernel_transport() as kernel_config,
                ):
                    papermill.execute_notebook(
                        str(source),
                        str(executed),
                        parameters=own_parameters(params, defined[source]),
                        kernel_name=KERNEL_NAME,
                        cwd=str(source.parent),
                        progress_bar=progress,
                        kernel_manager_class=kernel_manager,
                        **kernel_config,
                    )
            except Exception as exc:  # papermill raises on any failing cell; keep the copy
                result.status = "failed"
                if _while_starting_the_kernel(exc):
                    result.error = _kernel_not_started(exc)
                elif isinstance(exc, DeadKernelError):
                    result.error = kernel_died(kernel_manager.exit_status)
                else:
                    result.error = _cell_error(exc)
                    result.error += _out_of_open_files(result.error)
                failed = True
            result.seconds = round(time.perf_counter() - t0, 2)
            result.figures = summary.read(figures_file)
            html = render_html(executed) if executed.exists() else None
            result.html = str(html) if html else None
            run.notebooks.append(result)
            current = None
            click.echo(f"    {result.status} in {result.seconds:.1f} s", err=True)
            run.write(summary_path)
    except BaseException as exc:
        # Ctrl-C (SIGTERM too), or the runner's own error (its HTML on a full disk): the run
        # has ended, and its summary must not go on saying "running"
        run.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        if current is not None:
            current.status, current.error = run.status, _first_line(exc)
            current.seconds = round(time.perf_counter() - t0, 2)
            run.notebooks.append(current)
        run.seconds = round(time.perf_counter() - started, 2)
        try:
            run.write(summary_path)
        except OSError:  # the disk that failed takes no summary either: none, not "running"
            summary_path.unlink(missing_ok=True)
        click.echo(_ended_early(run.status, current, summary_path), err=True)
        raise
    run.status = "failed" if failed else "ok"
    run.seconds = round(time.perf_counter() - started, 2)
    run.write(summary_path)
    return run


def _ended_early(status: str, current: NotebookResult | None, summary_path: Path) -> str:
    """Where to look after a run that ended before its notebooks did (Ctrl-C, a cancelled
    job): the summary, and the copy of the notebook that was running, when written."""
    said = f"    {status}"
    if summary_path.exists():
        said += f"; run summary: {summary_path}"
    if current is not None and current.executed and Path(current.executed).exists():
        said += f"\n    its executed copy, up to the cell that was running, is {current.executed}"
    return said


KERNEL_NAME = "python3"
KERNEL_NOT_STARTED = "its kernel did not start"
KERNEL_DIED = "its kernel died while a cell ran"
# the peak of `make run`'s processes together, measured by benchmarks/run_memory.py
RUN_MEMORY = "1 GB"
SIGKILL = getattr(signal, "SIGKILL", 9)  # Windows has none, nor negative exit statuses


def watched_kernel_manager() -> Any:
    """A kernel manager class for one notebook that keeps, as `exit_status`, how its kernel
    ended when it ended on its own: nbclient says only "Kernel died"."""
    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        exit_status: int | None = None  # None: shut down as asked, or never started

        async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
            # a kernel shut down as asked has been waited for and its process let go;
            # one that died is still there, with its exit status
            process = getattr(self.provisioner, "process", None)
            if process is not None and not restart:
                type(self).exit_status = process.poll()
                if self.exit_status is not None and self.provisioner is not None:
                    # the processes it started (the training's workers) would run on
                    # without it, holding their memory: its process group goes, as at a
                    # shutdown
                    await self.provisioner.send_signal(SIGKILL)
            await super().cleanup_resources(restart)

    return WatchedKernelManager


def kernel_died(exit_status: int | None) -> str:
    """Why a kernel died, as far as its exit status tells: the system kills a process with
    SIGKILL when memory runs out (the Linux OOM killer, a container's or Colab's limit)."""
    if exit_status == -SIGKILL:
        return (
            f"{KERNEL_DIED}: it was killed (SIGKILL), which is what the system does to a "
            f"process when memory runs out. `make run` holds about {RUN_MEMORY} at its peak: "
            "close other programs, or give it more memory; notebook 05 takes 0.3 GB less "
            "without its two training workers (`brewops run -p n_jobs 1`)"
        )
    if exit_status is not None and exit_status < 0:
        try:
            ended_by = signal.Signals(-exit_status).name
        except ValueError:  # a number Python has no name for
            ended_by = f"signal {-exit_status}"
        return f"{KERNEL_DIED}: it was ended by {ended_by}"
    if exit_status is not None:
        return f"{KERNEL_DIED}: it exited with status {exit_status}"
    return f"{KERNEL_DIED}: it crashed or was killed (out of memory?)"


def _while_starting_the_kernel(exc: BaseException) -> bool:
    """Whether `exc` came from nbclient starting the kernel: papermill raises the same
    errors (a missing file, a RuntimeError) there as before and after."""
    starting = {"async_start_new_kernel", "async_start_new_kernel_client"}
    return any(f.f_code.co_name in starting for f, _ in traceback.walk_tb(exc.__traceback__))


def _kernel_not_started(exc: BaseException) -> str:
    """Says that no cell ran, and which kernel failed: the error alone (a missing file, a
    kernel that "died before replying to kernel_info") names neither."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = f"{KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir}/kernel.json"
    except NoSuchKernel:
        spec = "no kernel spec"
    return (
        f"{KERNEL_NOT_STARTED}: {_first_line(exc)} (kernel {KERNEL_NAME!r}: {spec}; "
        "`jupyter kernelspec list` shows where each kernel comes from)" + _few_open_files()
    )


# measured: the kernel of notebook 03 starts when 64 open files are allowed, not 40; that
# of notebook 05 holds up to 84 (its messaging alone about 60), and fails a cell at 64
FEW_OPEN_FILES = 128


def _open_files_allowed() -> int | None:
    """The shell's limit of open files (`ulimit -n`), or None when there is none."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    allowed, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if allowed == resource.RLIM_INFINITY else allowed


def _few_open_files() -> str:
    """What to do when the limit of open files is too low for a kernel to start, or ""."""
    allowed = _open_files_allowed()
    if allowed is None or allowed >= FEW_OPEN_FILES:
        return ""
    return (
        f". Only {allowed} open files are allowed (`ulimit -n`), too few for a kernel: "
        "raise the limit, e.g. `ulimit -n 1024`, and run it again"
    )


def _out_of_open_files(error: str) -> str:
    """What to do when a cell may have failed for want of open files, or "": its error says
    so (EMFILE), or the limit is below what a kernel needs. A kernel out of them may not
    even tell: IPython opens source files to format the error, leaving "CellExecutionError"."""
    allowed = _open_files_allowed()
    if allowed is None:
        return ""
    if allowed < FEW_OPEN_FILES:
        return (
            f". Only {allowed} open files are allowed (`ulimit -n`), fewer than a notebook's "
            "kernel may need: raise the limit, e.g. `ulimit -n 1024`, and run it again"
        )
    if f"[Errno {errno.EMFILE}]" in error:
        return f". {allowed} open files are allowed (`ulimit -n`): raise the limit and run it again"
    return ""


def own_parameters(parameters: Mapping[str, Any], defined: set[str]) -> dict[str, Any]:
    """The target and the parameters a notebook defines (`defined`): papermill would inject
    the others too, saying each is unknown, as if it had not been taken where it was meant."""
    return {name: v for name, v in parameters.items() if name == "target" or name in defined}


def remove_executed_copies(executed_dir: Path) -> None:
    """Remove the executed copies (and renderings) earlier runs left: one of a notebook
    this run leaves out (--only) or does not reach (after a failure) would pass for this
    run's, beside a summary that does not list it."""
    for path in executed_dir.iterdir():
        if path.suffix in (".ipynb", ".html") and NOTEBOOK_NAME.match(f"{path.stem}.ipynb"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def kernel_transport() -> Iterator[dict[str, Any]]:
    """papermill's keyword arguments for how it talks to the notebook's kernel.

    On POSIX the kernel listens on Unix sockets in a private temporary directory (mode
    0700) instead of localhost TCP ports, so only this user can reach it, and the kernel
    does not warn at every start that it runs over TCP without encryption. The socket
    path is absolute because the kernel runs in the notebook's folder, not ours.
    Windows has no IPC transport, so there papermill keeps its TCP default, as it does
    when no temporary directory has a path short enough for a socket.
    """
    parent = _socket_parent() if os.name == "posix" else None
    if parent is None:
        yield {}
        return
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix=_SOCKETS_PREFIX, dir=parent) as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})
        yield {"config": config}


_SOCKETS_PREFIX = "brewops-kernel-"


def _socket_parent() -> str | None:
    """$TMPDIR, or /tmp when $TMPDIR is too long a path for the kernel's Unix sockets (107
    bytes on Linux: the kernel would not start), or None when both are."""
    import zmq

    limit = getattr(zmq, "IPC_PATH_MAX_LEN", 103)
    for parent in (tempfile.gettempdir(), "/tmp"):  # noqa: S108  (only a private mkdtemp in it)
        # mkdtemp adds 8 characters to the prefix; jupyter_client numbers the sockets
        longest = os.path.join(parent, f"{_SOCKETS_PREFIX}12345678", "kernel-65535")
        if len(os.fsencode(longest)) <= limit and os.path.isdir(parent):
            return parent
    return None


def _cell_error(exc: BaseException) -> str:
    """The error a cell raised, as Python prints it: its type and its whole message. The
    last line of papermill's text is only the last line of a message of several (notebook
    04's gates put each failure on a line of its own, the first one first)."""
    name, message = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if not isinstance(name, str) or not name:  # not an error papermill took from a cell
        return _first_line(exc)
    message = str(message or "").strip()
    return f"{name}: {message}" if message else name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # papermill's message ends with the exception line, which is the useful one
    return lines[-1] if lines else type(exc).__name__


# a number with an exponent: YAML 1.1 reads one only with a dot and a signed exponent
_EXPONENT_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def _parse_value(raw: str) -> Any:
    """Parameter values are YAML scalars, as with papermill's own `-p`."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise click.BadParameter(
            f"{raw!r} is not a YAML value: {problem}",
            param_hint="'-p' / '--parameter'",
        ) from None
    # "1e3" is text to YAML 1.1, a number to papermill's -p and to whoever typed it
    # ("'1e3'", quoted, stays text)
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(raw.strip()):
        return float(value)
    return value


@click.command(
    "run",
    help="""Execute the notebooks in order into build/executed/ and write build/run-summary.json
    (its JSON Schema: `brewops schema run_summary`).

    build/executed/ then holds this run's copies only. Stops at the first failing notebook
    and keeps its executed copy. With the local target the emulator, the Punk API server
    and the stack are brought up first and taken down afterwards (unless they were already
    running, and not left by a run that ended without stopping them), once no other run is
    using them.

    \b
    Examples:
      brewops run                                # every notebook, local target
      brewops run --only 03 --only 04 -p ticks 5 # two notebooks, one parameter
    """,
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="local",
    show_default=True,
    help="local: the embedded AWS emulator and Punk API server; aws: the deployed stack.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="NN",
    shell_complete=_complete_notebook_numbers,
    help="Run only notebook NN (repeatable).",
)
@click.option(
    "-p",
    "--parameter",
    "parameters",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="Override a notebook parameter in every notebook that defines it (value parsed as "
    "YAML, of the type the parameters cell declares for it, else of its default's); a name "
    "no selected notebook defines is refused.",
)
@PROGRESS_OPTION
def run_command(
    target: str, only: tuple[str, ...], parameters: tuple[tuple[str, str], ...], progress: bool
) -> None:
    notebooks = discover(only=only)
    if not notebooks:
        raise click.ClickException(f"no numbered notebooks found in {notebooks_dir()}")
    params = {name: _parse_value(value) for name, value in parameters}
    # both before the local target is brought up; the parameters first: they need no
    # papermill, which takes seconds to import
    check_parameters(notebooks, params)
    notebook_executor()
    with target_services(target) as stack, outputs_held(build_dir()):
        run = execute(notebooks, target, params, progress=progress, stack=stack)
    click.echo(f"run summary: {build_dir() / 'run-summary.json'}")
    for nb in run.notebooks:
        click.echo(f"  {nb.status:8} {nb.seconds:7.1f} s  {nb.notebook}")
    if run.status != "ok":
        failed = next(nb for nb in run.notebooks if nb.status == "failed")
        raise RunFailed(f"{failed.notebook} failed: {failed.error}\n  {_executed_copy(failed)}")


def _executed_copy(failed: NotebookResult) -> str:
    """Where to look: the executed copy shows the failing cell only when it was written whole
    (it was rendered); a full disk can cut it short, or stop it being written at all."""
    if failed.html and (failed.error or "").startswith(KERNEL_NOT_STARTED):
        return f"no cell ran; its executed copy is {failed.executed}"
    if failed.html and (failed.error or "").startswith(KERNEL_DIED):
        return f"its executed copy, up to the cell that was running, is {failed.executed}"
    if failed.html:
        return f"its executed copy (with the failing cell) is {failed.executed}"
    if failed.executed and Path(failed.executed).exists():
        return f"its executed copy, {failed.executed}, was cut short and is not a notebook"
    return "no executed copy was written"
