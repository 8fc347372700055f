"""The notebook runner: order, parameters, figures, HTML, and stopping at a failure."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import nbformat
import pytest
from click.testing import CliRunner

from brewops import local, provenance, runner, summary
from brewops.files import exclusive, shared
from brewops.local.state import DEFAULT_STACK_NAME
from brewops.paths import repo_root
from brewops.runner import (
    RunSummary,
    _parse_value,
    check_parameters,
    discover,
    execute,
    remove_executed_copies,
)
from fixtures.commands import run_in_group
from fixtures.coverage_run import unmeasured
from fixtures.json_schemas import renamed, retyped, schema_errors
from fixtures.local import exited


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('target = "nowhere"\nvalue = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path: Path) -> Path:
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(
        src / "01_first_step.ipynb",
        "from brewops import summary\nsummary.record(seen_target=target, value=value * 2)",
    )
    _notebook(src / "02_breaks_here.ipynb", "raise ValueError('the second notebook fails')")
    _notebook(src / "03_never_reached.ipynb", "print('unreachable')")
    (src / "scratch.ipynb").write_text("{}", encoding="utf-8")  # not numbered: not part of a run
    return src


def test_discover_keeps_numbered_notebooks_in_order(notebooks: Path):
    assert [p.name[:2] for p in discover(notebooks)] == ["01", "02", "03"]
    assert [p.name[:2] for p in discover(notebooks, only=["3", "01"])] == ["01", "03"]
    with pytest.raises(click.BadParameter, match="07"):
        discover(notebooks, only=["07"])


def test_a_failing_notebook_stops_the_run_and_is_kept(notebooks: Path, tmp_path: Path):
    out = tmp_path / "build"
    run = execute(
        discover(notebooks), target="local", parameters={"value": 21}, out_dir=out, progress=False
    )

    assert run.status == "failed"
    first, second, third = run.notebooks
    assert (first.status, second.status, third.status) == ("ok", "failed", "skipped")
    assert first.figures == {"seen_target": "local", "value": 42}
    assert second.error == "ValueError: the second notebook fails"  # the line that says why
    kept = nbformat.read(second.executed, as_version=4)
    assert any(o.get("ename") == "ValueError" for c in kept.cells for o in c.get("outputs", []))
    assert Path(second.html).read_text(encoding="utf-8").count("the second notebook fails") >= 1
    assert not (out / "executed" / "03_never_reached.ipynb").exists()
    assert not (notebooks / "01_first_step.ipynb").read_text(encoding="utf-8").count('outputs": [{')

    written = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    assert written["status"] == "failed"
    assert written["parameters"] == {"target": "local", "value": 21}  # what the notebooks got
    assert written["seconds"] >= sum(nb["seconds"] for nb in written["notebooks"]) > 0
    assert [nb["status"] for nb in written["notebooks"]] == ["ok", "failed", "skipped"]
    assert written["notebooks"][0]["seconds"] > 0
    # the code that ran; no stack named to execute(), none written
    assert written["code"] == provenance.code_version()
    assert written["stack"] is None
    assert schema_errors("run_summary", written) == []
    assert schema_errors("run_summary", renamed(written, ("notebooks", 0, "seconds"), "secs"))
    assert schema_errors("run_summary", retyped(written, ("notebooks", 1, "status"), "error"))
    assert schema_errors("run_summary", retyped(written, ("notebooks", 2, "executed"), 0))


def test_a_parameter_no_notebook_defines_is_refused_before_any_runs(
    notebooks: Path, tmp_path: Path
):
    out = tmp_path / "build"
    with pytest.raises(click.BadParameter, match=r"valeu\. Valid names: target, value$"):
        execute(discover(notebooks), parameters={"valeu": 2}, out_dir=out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("parameter", "said"),
    [
        (["beers_per_tick", "2"], "not defined by 01_first_step: beers_per_tick"),
        # it would run the notebooks against AWS while the local target is brought up and
        # the summary says local
        (["target", "aws"], "the target is chosen with --target"),
        # the notebook would fail halfway (or, for notebook 03's ticks, tick forever)
        (["value", "two"], 'value of 01_first_step takes an integer, not "two"'),
        (["value", "null"], "value of 01_first_step takes an integer, not null"),
        # not a traceback from the YAML parser
        (["value", "[1,"], "'[1,' is not a YAML value"),
    ],
)
def test_the_command_refuses_it_before_starting_the_target(
    notebooks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parameter: list[str],
    said: str,
):
    monkeypatch.setattr(runner, "target_services", lambda target: pytest.fail("started"))
    # nor after seconds of importing papermill: the check does without it
    monkeypatch.setitem(sys.modules, "papermill", None)
    monkeypatch.setenv("BREWOPS_HOME", str(notebooks.parent))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    result = CliRunner().invoke(runner.run_command, ["--only", "01", "-p", *parameter])

    assert result.exit_code == 2
    assert said in result.output
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    ("value", "refused"),
    [(2, False), (True, True), (2.5, True), ("2", True), (None, True)],
)
def test_a_value_must_have_the_type_of_the_parameters_default(
    notebooks: Path, tmp_path: Path, value: Any, refused: bool
):
    if refused:
        with pytest.raises(click.BadParameter, match=r"value of 01_first_step takes an integer"):
            check_parameters(discover(notebooks), {"value": value})
    else:
        check_parameters(discover(notebooks), {"value": value})


@pytest.mark.parametrize(
    "default",
    [
        "None",
        "{1, 2}",  # a set: no rule for its type
        "len('ab')",  # an expression: no literal to take the type of
    ],
)
def test_a_parameter_whose_default_has_no_type_to_check_takes_any_value(
    tmp_path: Path, default: str
):
    nb = _notebook(tmp_path / "01_open.ipynb")
    source = nb.read_text(encoding="utf-8").replace("value = 1", f"value = {default}  # anything")
    nb.write_text(source, encoding="utf-8")

    for value in (None, 3, "text", [1, 2], {"a": 1}):
        check_parameters([nb], {"value": value})


@pytest.mark.parametrize(
    ("default", "taken", "refused", "said"),
    [
        ("'8080'", "8080", 8080, "a string"),
        ("(1, 2)", [3, 4], "3, 4", "a list"),
        ("{'a': 1}", {"a": 2}, ["a"], "a mapping"),
    ],
)
def test_a_value_of_another_type_than_the_default_is_refused(
    tmp_path: Path, default: str, taken: Any, refused: Any, said: str
):
    nb = _notebook(tmp_path / "01_typed.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", f"value = {default}  # typed"),
        encoding="utf-8",
    )

    check_parameters([nb], {"value": taken})
    with pytest.raises(click.BadParameter, match=f"value of 01_typed takes {said}"):
        check_parameters([nb], {"value": refused})


@pytest.mark.parametrize(
    ("declared", "taken", "refused", "said"),
    [
        ("Optional[int]", [None, 3], [1.5, "3", True], "an integer or null"),
        ("int | None", [None, 3], [1.5], "an integer or null"),
        ("Optional[str]", [None, "v2"], [2, ["a"]], r"a string \(quote .*\) or null"),
        ("Optional[list[int]]", [None, [1, 2]], [3, "1, 2"], "a list, e.g. '\\[1, 2\\]' or null"),
        ("Union[int, str]", ["a", 3], [None, 2.5], r"an integer or a string \(quote .*\)"),
        ("int", [3], [None, 2.5], "an integer"),
    ],
)
def test_a_none_default_takes_the_type_its_annotation_declares(
    tmp_path: Path, declared: str, taken: list[Any], refused: list[Any], said: str
):
    """`-p seed 1.5` would otherwise start the target and fail in the notebook, seconds
    later: a None default says nothing of the type, the annotation does."""
    nb = _notebook(tmp_path / "01_declared.ipynb")
    cell = f"from typing import Optional, Union\\nvalue: {declared} = None  # declared"
    nb.write_text(nb.read_text(encoding="utf-8").replace("value = 1", cell), encoding="utf-8")

    for value in taken:
        check_parameters([nb], {"value": value})
    for value in refused:
        with pytest.raises(click.BadParameter, match=f"value of 01_declared takes {said}, not"):
            check_parameters([nb], {"value": value})


@pytest.mark.parametrize("declared", ["Any", "Path", "Optional[Path]", "Literal['a', 'b']"])
def test_an_annotation_of_a_type_with_no_rule_leaves_the_default_to_say(
    tmp_path: Path, declared: str
):
    nb = _notebook(tmp_path / "01_open.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", f"value: {declared} = 1  # open"),
        encoding="utf-8",
    )

    check_parameters([nb], {"value": 2})
    with pytest.raises(click.BadParameter, match=r"takes an integer, not .*its default is 1\)"):
        check_parameters([nb], {"value": "two"})


def test_the_annotation_is_read_where_python_cannot_parse_the_cell(tmp_path: Path):
    path = _notebook(tmp_path / "01_magic.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = '%matplotlib inline\ntarget = "nowhere"\nvalue: Optional[int] = None'
    nbformat.write(nb, path)

    with pytest.raises(click.BadParameter, match="value of 01_magic takes an integer or null"):
        check_parameters([path], {"value": 1.5})


@pytest.mark.parametrize("notebook", discover(), ids=lambda p: p.stem)
def test_every_parameter_whose_default_is_none_declares_its_type(notebook: Path):
    """A None default says nothing of the type a value must have: the annotation does,
    and papermill reads it (`Optional[int]`; `int | None` it does not read)."""
    from papermill import inspect_notebook

    for name, parameter in inspect_notebook(notebook).items():
        if parameter["default"] == "None":
            assert parameter["inferred_type_name"] != "None", f"{notebook.stem}: {name}"
            kinds = runner._declared_types(parameter["inferred_type_name"])
            assert kinds and None in kinds and len(kinds) > 1, f"{notebook.stem}: {name}"


def test_a_fraction_for_the_seed_of_notebook_05_is_refused_before_the_target_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setattr(runner, "target_services", lambda target: pytest.fail("started"))
    monkeypatch.setitem(sys.modules, "papermill", None)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    result = CliRunner().invoke(runner.run_command, ["--only", "05", "-p", "seed", "1.5"])

    assert result.exit_code == 2
    assert "seed of 05_train_evaluate_model takes an integer or null, not 1.5" in result.output
    assert "declared Optional[int]" in result.output


def test_every_parameter_given_is_checked_not_only_the_first(tmp_path: Path):
    nb = _notebook(tmp_path / "01_two.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", "value = 1\\nlabel = 'a'"),
        encoding="utf-8",
    )

    check_parameters([nb], {"value": 2, "label": "b"})
    with pytest.raises(click.BadParameter, match="label of 01_two takes a string"):
        check_parameters([nb], {"value": 2, "label": 3})


def test_a_number_default_takes_an_integer_and_refuses_a_flag(tmp_path: Path):
    nb = _notebook(tmp_path / "01_seconds.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", "value = 0.5  # seconds"),
        encoding="utf-8",
    )

    for value in (3, 2.5):
        check_parameters([nb], {"value": value})
    for value in (True, "3"):
        with pytest.raises(click.BadParameter, match="value of 01_seconds takes a number"):
            check_parameters([nb], {"value": value})


def test_the_readme_runs_only_parameters_the_notebooks_define_with_their_types():
    commands = re.findall(
        r"brewops run [^`#\n]*", (repo_root() / "README.md").read_text(encoding="utf-8")
    )
    assert any("-p" in command for command in commands)
    for command in commands:
        only = re.findall(r"--only (\d+)", command)
        given = re.findall(r"-p (\w+) (\S+)", command)
        check_parameters(discover(only=only), {name: _parse_value(v) for name, v in given})


def test_a_parameter_in_seconds_takes_a_fraction_of_one():
    """`-p delivery_timeout 10.5` is a duration, not a typo: refusing it for not being an
    integer would only send the user back to round it."""
    from papermill import inspect_notebook

    in_seconds = {
        (notebook, name)
        for notebook in discover()
        for name, parameter in inspect_notebook(notebook).items()
        if "seconds" in parameter["help"]
    }
    assert in_seconds, "no parameter says it is in seconds"
    for notebook, name in in_seconds:
        check_parameters([notebook], {name: 10.5})


@pytest.mark.parametrize("notebook", discover(), ids=lambda p: p.stem)
def test_the_parameters_are_read_as_papermill_reads_them(notebook: Path):
    from papermill import inspect_notebook

    read = runner.notebook_parameters(notebook)

    assert read == {name: p["default"] for name, p in inspect_notebook(notebook).items()}
    assert read


@pytest.mark.parametrize("notebook", discover(), ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_without_a_warning(
    notebook: Path, caplog: pytest.LogCaptureFixture
):
    """papermill reads the parameters cell before each notebook of `brewops run`: a line it
    cannot parse prints "Unable to parse line" into the run's output."""
    from papermill import inspect_notebook

    with caplog.at_level(logging.WARNING, logger="papermill"):
        inspect_notebook(notebook)

    assert [record.getMessage() for record in caplog.records] == []


def test_a_default_with_a_hash_inside_a_string_is_read_whole(tmp_path: Path):
    nb = _notebook(tmp_path / "01_hash.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", "value = 'a#b'  # a label"),
        encoding="utf-8",
    )

    assert runner.notebook_parameters(nb) == {"target": '"nowhere"', "value": "'a#b'"}
    with pytest.raises(click.BadParameter, match="value of 01_hash takes a string"):
        check_parameters([nb], {"value": 3})


def test_the_first_parameters_cell_is_read_as_papermill_reads_it(tmp_path: Path):
    from papermill import inspect_notebook

    path = _notebook(tmp_path / "01_typed.ipynb")
    nb = nbformat.read(path, as_version=4)
    # papermill takes an annotated name, and leaves out one of several assigned at once
    nb.cells[1].source = 'target = "nowhere"\nvalue: int = 1\nfirst = second = 0'
    later = nbformat.v4.new_code_cell("other = 2")  # papermill reads the first tagged cell
    later.metadata["tags"] = ["parameters"]
    nb.cells.append(later)
    nbformat.write(nb, path)

    read = runner.notebook_parameters(path)

    assert read == {"target": '"nowhere"', "value": "1"}
    assert read == {name: p["default"] for name, p in inspect_notebook(path).items()}


def test_a_parameters_cell_python_cannot_parse_is_read_by_papermill(tmp_path: Path):
    path = _notebook(tmp_path / "01_magic.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = '%matplotlib inline\ntarget = "nowhere"\nvalue = 1'  # IPython, not Python
    nbformat.write(nb, path)

    assert runner.notebook_parameters(path) == {"target": '"nowhere"', "value": "1"}


def test_parameter_values_are_yaml_scalars():
    assert _parse_value("3") == 3
    assert _parse_value("0.5") == 0.5
    assert _parse_value("null") is None
    assert _parse_value("http://127.0.0.1:8080/v2") == "http://127.0.0.1:8080/v2"


def test_a_number_written_with_an_exponent_is_a_number(tmp_path: Path):
    # YAML 1.1 reads "1e3" as text (it wants "1.0e+3"): `-p delivery_timeout 1e3` was
    # refused as "not a number"; papermill's own -p reads it as one
    nb = _notebook(tmp_path / "01_seconds.ipynb")
    nb.write_text(
        nb.read_text(encoding="utf-8").replace("value = 1", "value = 0.5  # seconds"),
        encoding="utf-8",
    )

    assert _parse_value("1e3") == 1000.0
    assert _parse_value("-2.5E-1") == -0.25
    assert _parse_value(".5e1") == 5.0
    assert _parse_value("1e-3") == 0.001  # a signed exponent without a dot: text to YAML
    assert _parse_value(" 1e3 ") == 1000.0  # spaces around, as YAML leaves them out
    assert _parse_value("1e3s") == "1e3s"
    assert _parse_value("'1e3'") == "1e3"  # quoted: text, as YAML says
    check_parameters([nb], {"value": _parse_value("1e3")})


def _run_connection_notebook(tmp_path: Path) -> Any:
    """Runs a notebook that records how its kernel is connected (`transport`, `ip`)."""
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(
        src / "01_connection.ipynb",
        "from ipykernel.connect import get_connection_info\n"
        "from brewops import summary\n"
        "info = get_connection_info(unpack=True)\n"
        "summary.record(transport=info['transport'], ip=info['ip'])",
    )
    return execute(discover(src), out_dir=tmp_path / "build", progress=False)


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets are a POSIX transport")
def test_kernels_talk_over_private_unix_sockets(tmp_path: Path, capfd: pytest.CaptureFixture):
    run = _run_connection_notebook(tmp_path)

    assert run.status == "ok"
    figures = run.notebooks[0].figures
    assert figures["transport"] == "ipc"
    sockets = Path(figures["ip"]).parent
    assert sockets.is_absolute() and sockets.name.startswith("brewops-kernel-")
    assert not sockets.exists()  # removed with the run
    assert "without encryption" not in capfd.readouterr().err


SHORT_TMP = "/tmp"  # noqa: S108  (where the kernels' sockets go when $TMPDIR is too long)


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets are a POSIX transport")
def test_kernels_start_under_a_temporary_directory_too_long_for_a_socket(tmp_path: Path):
    # GIVEN a $TMPDIR whose path alone is near the 107 bytes a Unix socket path may have
    long_tmp = tmp_path / f"temporary files {'x' * 80}"
    long_tmp.mkdir()
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    _notebook(
        home / "notebooks" / "01_connection.ipynb",
        "from ipykernel.connect import get_connection_info\n"
        "from brewops import summary\n"
        "summary.record(ip=get_connection_info(unpack=True)['ip'])",
    )
    env = {**os.environ, "BREWOPS_HOME": str(home), "TMPDIR": str(long_tmp)}
    # WHEN a notebook runs (in a process of its own: a kernel that could not connect
    # once left the run hanging at exit)
    done = _run_within(["--target", "aws", "--no-progress"], env, seconds=120)
    # THEN its kernel starts, its sockets somewhere shorter
    assert done.returncode == 0, done.stderr
    ip = summary.read(home / "build" / "figures" / "01_connection.json")["ip"]
    assert len(os.fsencode(ip)) < 100
    assert ip.startswith(f"{SHORT_TMP}/brewops-kernel-"), "not TCP"


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets are a POSIX transport")
def test_the_sockets_stay_in_the_temporary_directory_while_its_longest_socket_path_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    zmq = pytest.importorskip("zmq")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # mkdtemp's 8 characters after the prefix; jupyter_client numbers the sockets up to 65535
    longest = len(os.fsencode(tmp_path / "brewops-kernel-12345678" / "kernel-65535"))

    monkeypatch.setattr(zmq, "IPC_PATH_MAX_LEN", longest)
    assert runner._socket_parent() == str(tmp_path)
    monkeypatch.setattr(zmq, "IPC_PATH_MAX_LEN", longest - 1)
    assert runner._socket_parent() == SHORT_TMP
    monkeypatch.setattr(os.path, "isdir", lambda path: path != SHORT_TMP)
    assert runner._socket_parent() is None, "no folder to put them in: TCP"


@pytest.mark.emulator
def test_the_command_runs_against_a_local_target_it_brings_up_and_takes_down(tmp_path: Path):
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    (home / "infra").symlink_to(repo_root() / "infra")
    _notebook(
        home / "notebooks" / "01_reads_the_stack.ipynb",
        "from brewops import summary\nfrom brewops import target as targets\n"
        "used = targets.use(target)\n"
        "summary.record(bucket=used.outputs['BucketName'], stack=used.stack_name)",
    )
    _notebook(home / "notebooks" / "02_breaks_here.ipynb", "raise ValueError('it fails')")
    state_dir = tmp_path / "local"
    env = {
        **os.environ,
        "BREWOPS_HOME": str(home),
        "BREWOPS_BUILD_DIR": str(tmp_path / "build"),
        "BREWOPS_LOCAL_STATE_DIR": str(state_dir),
    }

    result = run_in_group(
        [Path(sys.executable).parent / "brewops", "run", "--no-progress"],
        env=env,
        capture_output=True,
        encoding="locale",
        timeout=600,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: 02_breaks_here" in result.stderr and "failing cell" in result.stderr
    written = json.loads((tmp_path / "build" / "run-summary.json").read_text(encoding="utf-8"))
    first, second = written["notebooks"]
    assert first["status"] == "ok" and first["figures"]["bucket"]  # the stack was up
    assert written["stack"] == first["figures"]["stack"]  # the one the notebooks used
    assert schema_errors("run_summary", written) == []
    assert second["status"] == "failed"
    assert not list(state_dir.glob("*.json"))  # and taken down after the failure


@pytest.mark.emulator
def test_the_run_says_it_is_bringing_up_the_local_target_and_leaves_a_running_one_up(
    local_stack, local_state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))

    with runner.target_services("local"):
        pass

    said = capsys.readouterr().err
    assert said.startswith("==> local target: emulator, Punk API server and stack")
    assert "already running" in said and "stopping" not in said
    assert local.status() is not None


def test_the_aws_target_names_the_stack_its_notebooks_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-prod")
    with runner.target_services("aws") as stack:
        assert stack == "brewops-prod"
    monkeypatch.delenv("BREWOPS_STACK_NAME")
    with runner.target_services("aws") as stack:
        assert stack == DEFAULT_STACK_NAME


def test_without_the_notebooks_extra_run_says_how_to_install_it_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "papermill", None)  # as in a core-only install
    monkeypatch.setattr(runner, "target_services", lambda target: pytest.fail("started"))

    result = CliRunner().invoke(runner.run_command, ["--only", "01"])

    assert isinstance(result.exception, runner.NotebookStackMissing)
    assert "pip install -c constraints.txt '.[notebooks]'" in str(result.exception)


class _FakePapermill:
    """Stands in for papermill's executor: records each call; `raises` maps a notebook's
    file name to what executing it raises."""

    def __init__(self, raises: dict[str, BaseException] | None = None) -> None:
        self.raises = raises or {}
        self.calls: list[dict[str, Any]] = []

    def execute_notebook(self, source: str, executed: str, **kwargs: Any) -> None:
        self.calls.append({"source": source, **kwargs})
        error = self.raises.get(Path(source).name)
        if error is not None:
            raise error


class _WritesCopies(_FakePapermill):
    """papermill writing each executed copy (here the source as it is) before it runs."""

    def execute_notebook(self, source: str, executed: str, **kwargs: Any) -> None:
        shutil.copyfile(source, executed)
        super().execute_notebook(source, executed, **kwargs)


@pytest.mark.parametrize(
    ("only", "listed"),
    [
        (["01"], ["01_first_step"]),  # 02 and 03 left out
        ([], ["01_first_step", "02_breaks_here"]),  # 03 not reached after 02 fails
    ],
)
def test_the_executed_folder_holds_only_the_copies_of_this_run(
    notebooks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    only: list[str],
    listed: list[str],
):
    """A copy an earlier run left, beside a summary of this run, would pass for this run's."""
    out = tmp_path / "build"
    monkeypatch.setattr(runner, "notebook_executor", lambda: _WritesCopies())
    execute(discover(notebooks), out_dir=out, progress=False)  # every notebook, every copy
    fails = _WritesCopies({"02_breaks_here.ipynb": RuntimeError("fails this time")})
    monkeypatch.setattr(runner, "notebook_executor", lambda: fails)

    run = execute(discover(notebooks, only=only), out_dir=out, progress=False)

    summarised = [Path(p).name for nb in run.notebooks for p in (nb.executed, nb.html) if p]
    assert sorted(p.name for p in (out / "executed").iterdir()) == sorted(summarised)
    assert sorted(Path(name).stem for name in summarised) == sorted(listed * 2)


def test_only_the_copies_of_numbered_notebooks_are_removed_from_the_executed_folder(
    tmp_path: Path,
):
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in ("01_first.ipynb", "01_first.html", "01_first.json", "notes.html", "x.ipynb"):
        (executed / name).write_text("", encoding="utf-8")

    remove_executed_copies(executed)

    assert sorted(p.name for p in executed.iterdir()) == ["01_first.json", "notes.html", "x.ipynb"]


def test_each_notebook_is_given_the_target_and_only_the_parameters_it_defines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """papermill injects any parameter it is given, and warns that it is unknown to a
    notebook that does not define it: a run with `-p ticks 5` would seem not to take it."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    untargeted = nbformat.read(_notebook(notebooks / "01_first.ipynb"), as_version=4)
    untargeted.cells[1].source = "value = 1"  # the target is given even where not defined
    nbformat.write(untargeted, notebooks / "01_first.ipynb")
    ticking = nbformat.read(_notebook(notebooks / "02_ticks.ipynb"), as_version=4)
    ticking.cells[1].source += "\nticks = 3"
    nbformat.write(ticking, notebooks / "02_ticks.ipynb")
    fake = _FakePapermill()
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)

    run = execute(
        discover(notebooks), target="aws", parameters={"ticks": 5}, out_dir=tmp_path / "build"
    )

    given = [call["parameters"] for call in fake.calls]
    assert given == [{"target": "aws"}, {"target": "aws", "ticks": 5}]
    assert run.parameters == {"target": "aws", "ticks": 5}


def test_the_kernels_keep_their_checks_and_figures_whatever_the_shell_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")  # strips asserts (and docstrings)
    monkeypatch.setenv("MPLBACKEND", "TkAgg")  # a window this headless run has not got
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_draws.ipynb", "import matplotlib.pyplot as plt\nplt.plot([1, 2])")
    _notebook(src / "02_checks.ipynb", "assert value == 2, 'a check of the notebook'")

    run = execute(discover(src), out_dir=tmp_path / "build", progress=False)

    drew, checked = run.notebooks
    assert drew.status == "ok", drew.error
    copy = nbformat.read(drew.executed, as_version=4)
    outputs = [o for c in copy.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure is in the copy"
    assert (checked.status, checked.error) == ("failed", "AssertionError: a check of the notebook")
    assert (os.environ["PYTHONOPTIMIZE"], os.environ["MPLBACKEND"]) == ("2", "TkAgg")


def test_a_failure_without_a_message_is_named_by_its_type(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fake = _FakePapermill({"02_breaks_here.ipynb": RuntimeError()})
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)

    run = execute(discover(notebooks), out_dir=tmp_path / "build", progress=False)

    assert [nb.status for nb in run.notebooks] == ["ok", "failed", "skipped"]
    assert run.notebooks[1].error == "RuntimeError"


def test_a_failure_whose_message_has_several_lines_is_named_by_its_type_and_whole_message(
    tmp_path: Path,
):
    # GIVEN a cell failing as notebook 04's gates do: a heading, then one failure a line
    src = tmp_path / "notebooks"
    src.mkdir()
    message = "validation failed:\\nschema_drift: abv is a string\\nlost_records: ids 7, 9"
    _notebook(src / "01_gates.ipynb", f"raise LookupError('{message}')")

    # WHEN it runs
    run = execute(discover(src), out_dir=tmp_path / "build", progress=False)

    # THEN the summary names the error and every failure, the first one too
    assert run.notebooks[0].error == (
        "LookupError: validation failed:\nschema_drift: abv is a string\nlost_records: ids 7, 9"
    )


@pytest.mark.parametrize(
    ("cell", "error"),
    [
        ("assert 1 == 2", "AssertionError"),  # a notebook's check, no message
        ("raise ValueError(' ')", "ValueError"),
        ("raise ValueError(' too high\\n')", "ValueError: too high"),
    ],
)
def test_a_failure_is_named_by_its_type_and_its_message_if_it_has_one(
    tmp_path: Path, cell: str, error: str
):
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_check.ipynb", cell)

    run = execute(discover(src), out_dir=tmp_path / "build", progress=False)

    assert run.notebooks[0].error == error


def test_an_interrupted_run_leaves_a_summary_of_the_notebooks_that_ran(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    fake = _WritesCopies({"02_breaks_here.ipynb": KeyboardInterrupt()})
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)
    out = tmp_path / "build"

    with pytest.raises(KeyboardInterrupt):
        execute(discover(notebooks), out_dir=out, progress=False)

    said = capsys.readouterr().err.splitlines()[-2:]
    assert said == [
        f"    interrupted; run summary: {out / 'run-summary.json'}",
        "    its executed copy, up to the cell that was running, is "
        f"{out / 'executed' / '02_breaks_here.ipynb'}",
    ]

    written = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    assert written["status"] == "interrupted"
    assert [(nb["notebook"], nb["status"]) for nb in written["notebooks"]] == [
        ("01_first_step", "ok"),
        ("02_breaks_here", "interrupted"),
    ]
    assert schema_errors("run_summary", written) == []


def test_a_run_interrupted_while_clearing_the_last_runs_copies_says_so(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setattr(runner, "notebook_executor", lambda: _FakePapermill())

    def ctrl_c(executed_dir: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "remove_executed_copies", ctrl_c)
    out = tmp_path / "build"

    with pytest.raises(KeyboardInterrupt):
        execute(discover(notebooks), out_dir=out, progress=False)

    written = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    assert (written["status"], written["notebooks"]) == ("interrupted", [])  # not "running"
    assert schema_errors("run_summary", written) == []
    assert capsys.readouterr().err.endswith(
        f"    interrupted; run summary: {out / 'run-summary.json'}\n"
    )


# the ipywidgets release in requirements.lock -> its @jupyter-widgets/html-manager on npm
# (`npm view @jupyter-widgets/html-manager@VERSION gitHead` names the release's commit)
HTML_MANAGER_OF_IPYWIDGETS = {"8.1.9": "1.0.15"}


def test_a_rendering_loads_the_widget_script_of_the_locked_ipywidgets(tmp_path: Path):
    """A progress bar's widget state makes the HTML load a script from unpkg: an unpinned
    version would draw a rendering made today with whatever unpkg serves next year."""
    from brewops.lockfiles import lock_pins

    ipywidgets = lock_pins()["ipywidgets"]
    assert ipywidgets in HTML_MANAGER_OF_IPYWIDGETS, (
        f"ipywidgets is now {ipywidgets}: pin its html-manager in runner.WIDGETS_HTML_MANAGER"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    executed = tmp_path / "03_with_a_bar.ipynb"
    nbformat.write(nb, executed)

    html = runner.render_html(executed).read_text(encoding="utf-8")

    scripts = re.findall(r"@jupyter-widgets/html-manager@([^/']*)/", html)
    assert scripts == [HTML_MANAGER_OF_IPYWIDGETS[ipywidgets]]


def test_a_rendering_that_finds_the_disk_full_leaves_no_page_cut_short(tmp_path: Path):
    import resource

    executed = tmp_path / "01_first_step.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x")]), executed)

    def disk_full() -> None:  # files may grow no larger than 10 kB: a rendering is larger
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    rendering = (
        "import pathlib, sys; from brewops import runner; "
        "runner.render_html(pathlib.Path(sys.argv[1]))"
    )
    full = subprocess.run(  # -B: no bytecode cached cut short at the limit, for later imports
        [sys.executable, "-B", "-c", rendering, str(executed)],
        preexec_fn=disk_full,
        env=unmeasured(os.environ),  # no coverage data file to write either
        capture_output=True,
        encoding="locale",
        check=False,
    )

    assert "File too large" in full.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [executed.name]


def test_an_error_of_the_runner_itself_ends_the_summary_as_failed(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fake = _WritesCopies()
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)

    def full_disk(executed: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(executed.with_suffix(".html")))

    monkeypatch.setattr(runner, "render_html", full_disk)
    out = tmp_path / "build"

    with pytest.raises(OSError):
        execute(discover(notebooks), out_dir=out, progress=False)

    written = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    assert written["status"] == "failed"
    assert [(nb["notebook"], nb["status"]) for nb in written["notebooks"]] == [
        ("01_first_step", "failed")
    ]
    assert "No space left on device" in written["notebooks"][0]["error"]
    assert schema_errors("run_summary", written) == []


def test_a_run_whose_disk_fills_up_leaves_no_summary_saying_it_is_running(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    fake = _WritesCopies()
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)
    write = runner.RunSummary.write

    def first_write_only(self: runner.RunSummary, path: Path) -> None:
        if path.exists():  # the disk filled up after the run's first summary
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(self, path)

    monkeypatch.setattr(runner.RunSummary, "write", first_write_only)
    out = tmp_path / "build"

    with pytest.raises(OSError, match="No space left"):
        execute(discover(notebooks), out_dir=out, progress=False)

    assert not (out / "run-summary.json").exists()
    assert "run summary" not in capsys.readouterr().err  # it names none that is not there


def test_the_summary_of_a_run_that_has_not_ended_follows_its_schema(tmp_path: Path):
    path = tmp_path / "run-summary.json"
    started = RunSummary("local", "2026-01-01T00:00:00+00:00", parameters={"target": "local"})
    started.write(path)  # as `execute` writes it before the first notebook
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["status"] == "running"
    assert schema_errors("run_summary", written) == []


def test_a_parameter_that_is_not_a_finite_number_is_null_in_the_summary(tmp_path: Path):
    path = tmp_path / "run-summary.json"
    given = {"target": "local", "delivery_timeout": _parse_value(".inf"), "x": _parse_value(".nan")}
    RunSummary("local", "2026-01-01T00:00:00+00:00", parameters=given).write(path)
    written = json.loads(
        path.read_text(encoding="utf-8"), parse_constant=pytest.fail
    )  # strict JSON
    assert written["parameters"] == {"target": "local", "delivery_timeout": None, "x": None}
    assert schema_errors("run_summary", written) == []


def test_a_run_interrupted_in_its_first_notebook_leaves_its_own_summary(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask
):
    umask(0o022)
    out = tmp_path / "build"
    execute(discover(notebooks, only=["01"]), out_dir=out, progress=False)
    earlier = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    fake = _FakePapermill({"01_first_step.ipynb": KeyboardInterrupt()})
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)

    with pytest.raises(KeyboardInterrupt):
        execute(discover(notebooks), out_dir=out, progress=False)

    # not the earlier run's "ok" beside this run's half-executed copy
    written = json.loads((out / "run-summary.json").read_text(encoding="utf-8"))
    assert written["status"] == "interrupted"
    assert [(nb["notebook"], nb["status"]) for nb in written["notebooks"]] == [
        ("01_first_step", "interrupted")
    ]
    assert schema_errors("run_summary", written) == []
    assert written["started_at"] != earlier["started_at"]
    assert not (out / "executed" / "01_first_step.html").exists()
    assert stat.S_IMODE((out / "run-summary.json").stat().st_mode) == 0o644  # as it was


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=oct
)
def test_the_summary_and_figures_are_as_private_as_the_umask_makes_the_executed_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask, mask: int, mode: int
):
    from brewops import summary

    umask(mask)
    figures = tmp_path / "figures" / "01_first_step.json"
    monkeypatch.setenv(summary.FIGURES_ENV, str(figures))
    executed = tmp_path / "executed.ipynb"
    executed.write_text("{}", encoding="utf-8")  # as papermill writes an executed copy

    RunSummary(target="local", started_at="2024-01-01T00:00:00+00:00").write(
        tmp_path / "run-summary.json"
    )
    summary.record(value=1)

    for path in (executed, tmp_path / "run-summary.json", figures):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


class _CutShort(_FakePapermill):
    """papermill on a full disk: the executed copy is cut short and writing it fails."""

    def execute_notebook(self, source: str, executed: str, **kwargs: Any) -> None:
        Path(executed).write_text('{\n "cells": [\n  {\n   "cell_type": "m', encoding="utf-8")
        raise OSError(errno.EFBIG, "File too large")


def test_an_executed_copy_cut_short_is_a_failed_notebook_without_a_rendering(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runner, "notebook_executor", lambda: _CutShort())

    run = execute(discover(notebooks), out_dir=tmp_path / "build", progress=False)

    assert [nb.status for nb in run.notebooks] == ["failed", "skipped", "skipped"]
    assert run.notebooks[0].error == "[Errno 27] File too large"
    assert run.notebooks[0].html is None


class _NoKernel(_FakePapermill):
    """papermill failing before it writes anything."""

    def execute_notebook(self, source: str, executed: str, **kwargs: Any) -> None:
        raise RuntimeError("No such kernel named python3")


@pytest.mark.parametrize(
    ("executor", "said"),
    [
        (_CutShort, "01_first_step.ipynb, was cut short and is not a notebook"),
        (_NoKernel, "no executed copy was written"),
    ],
)
def test_the_command_says_when_the_failed_notebook_has_no_whole_executed_copy(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: type, said: str
):
    monkeypatch.setattr(runner, "notebook_executor", executor)
    monkeypatch.setenv("BREWOPS_HOME", str(notebooks.parent))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    result = CliRunner().invoke(runner.run_command, ["--target", "aws", "--only", "01"])

    assert result.exit_code == 1
    assert said in result.output
    assert "with the failing cell" not in result.output


def test_notebooks_run_in_their_folder_and_report_only_this_runs_figures(tmp_path: Path):
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(
        src / "01_where.ipynb",
        "import os\nfrom brewops import summary\nsummary.record(cwd=os.getcwd())",
    )
    out = tmp_path / "build"
    stale = out / "figures" / "01_where.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"left_by_an_earlier_run": 1}), encoding="utf-8")

    run = execute(discover(src), target="aws", out_dir=out, progress=False)

    assert run.notebooks[0].figures == {"cwd": str(src)}


def test_an_interrupted_run_takes_down_the_local_target_it_brought_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    monkeypatch.setattr(
        local,
        "up",
        lambda **kwargs: SimpleNamespace(
            already_running=False, left_by=None, stack_name="brewops-dev"
        ),
    )
    monkeypatch.setattr(local, "down", lambda: downs.append(True))

    with pytest.raises(KeyboardInterrupt), runner.target_services("local"):
        raise KeyboardInterrupt

    assert downs == [True]


def test_a_run_takes_over_and_stops_a_target_a_killed_run_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from brewops.local.state import RunProcess

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    asked: list[dict[str, Any]] = []
    downs: list[bool] = []
    said: list[str] = []
    killed_run = RunProcess(pid=4242, create_time=1.5)

    def up(**kwargs: Any) -> SimpleNamespace:
        asked.append(kwargs)
        return SimpleNamespace(already_running=True, left_by=killed_run, stack_name="brewops-dev")

    monkeypatch.setattr(local, "up", up)
    monkeypatch.setattr(local, "down", lambda: downs.append(True))
    monkeypatch.setattr(click, "echo", lambda message, **kwargs: said.append(message))

    with runner.target_services("local"):
        pass

    assert asked == [{"for_run": True}]
    assert downs == [True]
    assert "left by a `brewops run` (pid 4242) that ended without stopping it" in said[1]
    assert said[-1] == "==> local target: stopping what this run took over"


def test_a_run_says_it_stops_a_target_whose_run_in_charge_was_killed_while_it_used_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the killed run may have started it, or taken it over from one killed before it
    from brewops.local import runtime
    from brewops.local.state import RunProcess

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    said: list[str] = []
    killed_run = RunProcess(pid=4242, create_time=1.5)
    monkeypatch.setattr(
        local,
        "up",
        lambda **kwargs: SimpleNamespace(
            already_running=True, left_by=None, stack_name="brewops-dev"
        ),
    )
    monkeypatch.setattr(runtime, "take_over_if_left", lambda: killed_run)
    monkeypatch.setattr(local, "down", lambda: downs.append(True))
    monkeypatch.setattr(click, "echo", lambda message, **kwargs: said.append(message))

    with runner.target_services("local"):
        pass

    assert downs == [True]
    assert "the `brewops run` in charge of it (pid 4242) ended without stopping it" in said[-2]
    assert said[-1] == "==> local target: stopping what this run took over"


@pytest.mark.parametrize("anew_by", ["local-up", "another-run"])
def test_a_run_leaves_a_target_down_then_up_started_anew_while_it_used_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anew_by: str
):
    # a user's `up` runs until `local down`; another run's is that run's to stop
    from brewops.local.state import RunProcess

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    said: list[str] = []
    started_here = SimpleNamespace(already_running=False, left_by=None, stack_name="brewops-dev")
    monkeypatch.setattr(local, "up", lambda **kwargs: started_here)
    monkeypatch.setattr(local, "down", lambda: downs.append(True))
    monkeypatch.setattr(click, "echo", lambda message, **kwargs: said.append(message))

    with runner.target_services("local"):
        # `brewops local down`, then `up` (or another run's) while the notebooks run
        _saved_state(
            run=None if anew_by == "local-up" else RunProcess(pid=os.getpid() + 1, create_time=1.5)
        )

    assert downs == []
    assert said[-1].endswith("started it again while this run used it: left running")


def _saved_state(run: Any) -> None:
    """A local target recorded as running, stopped by `run` (None: a user's `local up`)."""
    from brewops.local.state import LocalState, Service

    LocalState(
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        stack_name="brewops-dev",
        started_at="2024-01-01T00:00:00+00:00",
        services={"emulator": Service(1, 1, "http://127.0.0.1:1", "e.log", 1.5)},
        run=run,
    ).save()


def test_a_run_stops_the_target_it_started_when_it_is_still_recorded_as_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from brewops.local import processes

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    started_here = SimpleNamespace(already_running=False, left_by=None, stack_name="brewops-dev")
    monkeypatch.setattr(local, "up", lambda **kwargs: started_here)
    monkeypatch.setattr(local, "down", lambda: downs.append(True))
    _saved_state(run=processes.this_run())

    with runner.target_services("local"):
        pass

    assert downs == [True]


def test_a_down_then_up_right_after_a_run_found_the_target_its_own_is_not_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the check and the stop are one hold of the state lock: a user's `local down` then
    # `up` landing right after the check waits for the run's stop, and its target stays
    import fcntl

    from brewops.local import processes, runtime
    from brewops.local.state import LocalState

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    started_here = SimpleNamespace(already_running=False, left_by=None, stack_name="brewops-dev")
    monkeypatch.setattr(local, "up", lambda **kwargs: started_here)
    _saved_state(run=processes.this_run())
    checked = runtime.started_anew_meanwhile
    users_turn: list[str] = []

    def down_then_up(wait: bool) -> None:  # `brewops local down`, then `up`
        with (tmp_path / ".lock").open("w", encoding="utf-8") as lock:  # as they take it
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return
            _saved_state(run=None)  # a user's `up`: it runs until `local down`
            users_turn.append("after the run's stop" if wait else "between check and stop")

    def checked_then_down_and_up() -> bool:
        anew = checked()
        down_then_up(wait=False)
        return anew

    monkeypatch.setattr(runtime, "started_anew_meanwhile", checked_then_down_and_up)

    with runner.target_services("local"):
        pass
    if not users_turn:
        down_then_up(wait=True)

    state = LocalState.load()
    assert state is not None
    assert state.run is None
    assert users_turn == ["after the run's stop"]


def _lock_takers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads that take the local state's lock file, in order (a stand-in that
    waits for no one)."""
    from brewops.local import runtime

    takers: list[str] = []

    @contextlib.contextmanager
    def taken(lock_file: Path, waiting: Any = None):
        takers.append(threading.current_thread().name)
        yield

    monkeypatch.setattr(runtime, "exclusive", taken)
    return takers


def test_the_state_lock_held_by_one_thread_is_taken_anew_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # held as it is only within the thread holding it: another thread of the run (a
    # notebook's, say) waits for the lock file as another process does
    from brewops.local import runtime

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    takers = _lock_takers(monkeypatch)

    def other_thread() -> None:
        with runtime.exclusively():
            pass

    with runtime.exclusively():
        with runtime.exclusively():  # `down` within the run's hold
            pass
        thread = threading.Thread(target=other_thread, name="other")
        thread.start()
        thread.join()

    assert takers == [threading.current_thread().name, "other"]


def test_the_state_lock_is_let_go_by_a_block_that_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from brewops.local import runtime

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    takers = _lock_takers(monkeypatch)

    with pytest.raises(OSError), runtime.exclusively():
        raise OSError("the stop failed")
    with runtime.exclusively():  # not taken as held still
        pass

    assert len(takers) == 2


def test_a_run_whose_output_is_closed_takes_down_the_local_target_it_brought_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    monkeypatch.setattr(
        local,
        "up",
        lambda **kwargs: SimpleNamespace(
            already_running=False, left_by=None, stack_name="brewops-dev"
        ),
    )
    monkeypatch.setattr(local, "down", lambda: downs.append(True))

    def closed(*args: Any, **kwargs: Any) -> None:  # `brewops run 2>&1 | head`, head gone
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(click, "echo", closed)

    with pytest.raises(BrokenPipeError), runner.target_services("local"):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")  # the notebook's own output

    assert downs == [True]


def test_a_run_stops_the_local_target_it_started_only_once_another_run_using_it_has_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two runs in one checkout: the second finds the target running and uses it; the
    first must not stop it under the second (whose notebooks would fail, or start another
    that no one stops)."""
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    other_run_ended = threading.Event()
    first_run_done = threading.Event()  # it has stopped the target, or waits to
    downs: list[bool] = []

    def down() -> None:
        downs.append(other_run_ended.is_set())
        first_run_done.set()

    def said(message: str, **kwargs: Any) -> None:
        if "another `brewops run` is using it" in message:
            first_run_done.set()

    monkeypatch.setattr(
        local,
        "up",
        lambda **kwargs: SimpleNamespace(
            already_running=False, left_by=None, stack_name="brewops-dev"
        ),
    )
    monkeypatch.setattr(local, "down", down)
    monkeypatch.setattr(click, "echo", said)

    def first_run() -> None:
        with runner.target_services("local"):
            pass

    with shared(tmp_path / runner.RUNS_LOCK):  # the second run, using the target
        first = threading.Thread(target=first_run)
        first.start()
        assert first_run_done.wait(timeout=120), "the first run neither stopped nor waited"
        other_run_ended.set()
    first.join()

    assert downs == [True]


def test_a_run_interrupted_while_waiting_for_another_says_the_target_is_left_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    downs: list[bool] = []
    said: list[str] = []
    monkeypatch.setattr(
        local,
        "up",
        lambda **kwargs: SimpleNamespace(
            already_running=False, left_by=None, stack_name="brewops-dev"
        ),
    )
    monkeypatch.setattr(local, "down", lambda: downs.append(True))
    monkeypatch.setattr(click, "echo", lambda message, **kwargs: said.append(message))

    def ctrl_c_while_waiting(handle: Any, wait: bool = True) -> bool:
        if wait:
            raise KeyboardInterrupt
        return False  # another run holds the target too

    monkeypatch.setattr(runner, "held_alone", ctrl_c_while_waiting)

    with pytest.raises(KeyboardInterrupt), runner.target_services("local"):
        pass

    # the other run found the target running and will not stop it: the last words say so
    assert downs == []
    assert "left running for the other `brewops run`" in said[-1]
    assert "`brewops local down` stops it once that run has ended" in said[-1]


def test_a_run_waits_for_another_writing_the_same_build_folder(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two runs in one checkout: the second must not remove the executed copies the first
    is writing, nor write over its summary; it waits for it, saying so."""
    fake = _FakePapermill()
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)
    monkeypatch.setenv("BREWOPS_HOME", str(notebooks.parent))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    results: list[Any] = []
    waiting = threading.Event()

    def reached_late(lock_file: Path, say_waiting: Any) -> Any:
        # as on a loaded machine, the second run comes to the lock well after it starts:
        # the first run lets go once the second says it waits, not after a guessed time
        time.sleep(1.5)
        return exclusive(lock_file, lambda: (say_waiting(), waiting.set()))

    monkeypatch.setattr(runner, "exclusive", reached_late)

    def second_run() -> None:
        args = ["--target", "aws", "--only", "01", "--no-progress"]
        results.append(CliRunner().invoke(runner.run_command, args))

    with exclusive(tmp_path / "build" / runner.OUTPUTS_LOCK):  # the first run
        second = threading.Thread(target=second_run)
        second.start()
        assert waiting.wait(timeout=60), "the second run did not wait"
        assert fake.calls == [], "the second run went on while the first held the folder"
    second.join(timeout=60)

    assert results[0].exit_code == 0, results[0].output
    assert "another `brewops run` is writing to" in results[0].output
    assert len(fake.calls) == 1
    # a run alone has nothing to wait for, and says nothing of it
    second_run()
    assert results[1].exit_code == 0, results[1].output
    assert "another `brewops run`" not in results[1].output


def test_the_command_says_when_there_are_no_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("BREWOPS_HOME", str(tmp_path))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(runner, "target_services", lambda target: pytest.fail("started"))

    result = CliRunner().invoke(runner.run_command, [])

    assert result.exit_code == 1
    assert "no numbered notebooks found in" in result.output


@pytest.mark.parametrize(
    ("flags", "progress"), [([], False), (["--progress"], True), (["--no-progress"], False)]
)
def test_the_progress_option_reaches_papermills_progress_bars(
    notebooks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    progress: bool,
):
    fake = _FakePapermill()
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)
    monkeypatch.setenv("BREWOPS_HOME", str(notebooks.parent))
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))

    result = CliRunner().invoke(runner.run_command, ["--target", "aws", "--only", "01", *flags])

    assert result.exit_code == 0, result.output
    assert [call["progress_bar"] for call in fake.calls] == [progress]
    assert fake.calls[0]["parameters"]["target"] == "aws"
    assert re.search(r"^  ok +\d+\.\d s  01_first_step$", result.output, re.MULTILINE)


def _kernelspec(jupyter_path: Path, *argv: str) -> Path:
    """A `python3` kernel spec of its own in `jupyter_path`, ahead of the installed one."""
    spec = jupyter_path / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(
        json.dumps({"argv": list(argv), "display_name": "P", "language": "python"}),
        encoding="utf-8",
    )
    return spec


def _run_within(
    args: list[str], env: dict[str, str], seconds: float
) -> subprocess.CompletedProcess:
    """`brewops run` in a process of its own, killed with its kernels if it has not ended in
    `seconds`: a run that hangs fails the test instead of stopping the suite."""
    process = subprocess.Popen(
        [sys.executable, "-m", "brewops.cli", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="locale",
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        out, err = process.communicate()
        pytest.fail(f"`brewops run` had not ended after {seconds} s:\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["/nonexistent/bin/python", "-f", "{connection_file}"], id="missing-program"),
        pytest.param(
            [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"], id="exits"
        ),
    ],
)
def test_a_kernel_that_does_not_start_ends_the_run_saying_so(tmp_path: Path, argv: list[str]):
    # GIVEN a notebook whose kernel spec runs no kernel
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    _notebook(home / "notebooks" / "01_first.ipynb", "print('never runs')")
    spec = _kernelspec(tmp_path / "jupyter", *argv)
    env = {**os.environ, "BREWOPS_HOME": str(home), "JUPYTER_PATH": str(spec.parents[2])}
    # WHEN it runs
    done = _run_within(["--target", "aws", "--no-progress"], env, seconds=120)
    # THEN the run ends, saying that no cell ran because the kernel of that spec did not start
    assert done.returncode == 1, done.stderr
    assert "01_first failed: its kernel did not start" in done.stderr
    assert str(spec) in done.stderr
    assert "no cell ran" in done.stderr and "failing cell" not in done.stderr


def _run_allowing_open_files(home: Path, allowed: int) -> subprocess.CompletedProcess[str]:
    """`brewops run` over the notebooks of `home`, in a process that may hold `allowed`
    open files (a kernel it starts inherits the limit)."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, allowed))

    return run_in_group(
        [sys.executable, "-m", "brewops.cli", "run", "--target", "aws", "--no-progress"],
        env={**os.environ, "BREWOPS_HOME": str(home)},
        preexec_fn=limited,
        capture_output=True,
        encoding="locale",
        timeout=120,
    )


def test_a_kernel_that_cannot_start_for_want_of_open_files_says_to_raise_the_limit(
    tmp_path: Path,
):
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    _notebook(home / "notebooks" / "01_first.ipynb", "print('never runs')")
    done = _run_allowing_open_files(home, 40)  # enough for the run, too few for its kernel

    assert done.returncode == 1, done.stderr
    assert "01_first failed: its kernel did not start" in done.stderr
    assert "Only 40 open files are allowed (`ulimit -n`)" in done.stderr


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("import os\nos._exit(1)", "it exited with status 1"),
        # as the OOM killer ends a kernel when memory runs out
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "it was killed (SIGKILL), which is what the system does to a process when memory "
            "runs out",
        ),
    ],
)
def test_a_kernel_that_dies_in_a_cell_ends_the_run_saying_how(tmp_path: Path, cell: str, said: str):
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    _notebook(home / "notebooks" / "01_first.ipynb", cell, "print('never')")
    env = {**os.environ, "BREWOPS_HOME": str(home)}

    done = _run_within(["--target", "aws", "--no-progress"], env, seconds=120)

    assert done.returncode == 1, done.stderr
    assert f"01_first failed: its kernel died while a cell ran: {said}" in done.stderr
    assert "up to the cell that was running" in done.stderr


@pytest.mark.skipif(os.name != "posix", reason="process groups")
def test_a_kernel_killed_in_a_cell_takes_the_processes_it_started_with_it(tmp_path: Path):
    # the training's workers outlived a kernel the OOM killer ended, holding their memory
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    pid_file = tmp_path / "child.pid"
    cell = (
        "import os, signal, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    _notebook(home / "notebooks" / "01_first.ipynb", cell)
    env = {**os.environ, "BREWOPS_HOME": str(home)}

    done = _run_within(["--target", "aws", "--no-progress"], env, seconds=120)

    assert "its kernel died while a cell ran: it was killed (SIGKILL)" in done.stderr
    child = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + 10
        while not exited(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exited(child), "the kernel's child runs on"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize(
    ("exit_status", "said"),
    [
        (None, "it crashed or was killed (out of memory?)"),  # not seen
        (-15, "it was ended by SIGTERM"),
        (-63, "it was ended by signal 63"),  # a real-time signal, which has no name
    ],
)
def test_a_kernel_death_is_told_by_what_its_exit_status_says(exit_status: int | None, said: str):
    assert runner.kernel_died(exit_status) == f"its kernel died while a cell ran: {said}"


@pytest.mark.parametrize(
    ("allowed", "said"),
    [(-1, False), (runner.FEW_OPEN_FILES, False), (runner.FEW_OPEN_FILES - 1, True)],
)
def test_only_a_limit_of_open_files_below_what_a_kernel_needs_is_named(
    monkeypatch: pytest.MonkeyPatch, allowed: int, said: bool
):
    import resource

    allowed = resource.RLIM_INFINITY if allowed == -1 else allowed
    monkeypatch.setattr(resource, "getrlimit", lambda which: (allowed, resource.RLIM_INFINITY))

    assert bool(runner._few_open_files()) == said
    if said:
        assert f"Only {allowed} open files are allowed" in runner._few_open_files()


def test_a_cell_that_fails_under_a_low_limit_of_open_files_says_to_raise_it(tmp_path: Path):
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    # a cell failing on something else than EMFILE, as one whose error came out garbled
    _notebook(home / "notebooks" / "01_first.ipynb", "raise ValueError('no beer')")
    done = _run_allowing_open_files(home, 100)  # enough for a kernel, fewer than 05 needs

    assert done.returncode == 1, done.stderr
    assert "01_first failed: " in done.stderr
    assert "Only 100 open files are allowed (`ulimit -n`), fewer than a notebook's" in done.stderr


@pytest.mark.parametrize(
    ("allowed", "error", "said"),
    [
        (1024, "OSError: [Errno 24] Too many open files: '/dev/null'", "1024 open files are"),
        (1024, "OSError: [Errno 23] Too many open files in system", ""),  # not the shell's
        (1024, "ValueError: no beer", ""),
        (100, "ValueError: no beer", "Only 100 open files are allowed"),
        (-1, "OSError: [Errno 24] Too many open files", ""),
    ],
)
def test_a_failed_cell_names_the_limit_of_open_files_when_it_may_be_the_cause(
    monkeypatch: pytest.MonkeyPatch, allowed: int, error: str, said: str
):
    import resource

    allowed = resource.RLIM_INFINITY if allowed == -1 else allowed
    monkeypatch.setattr(resource, "getrlimit", lambda which: (allowed, resource.RLIM_INFINITY))

    hint = runner._out_of_open_files(error)
    assert (said in hint) if said else hint == ""


def test_an_interrupted_run_names_no_executed_copy_that_was_not_written(
    notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    fake = _FakePapermill({"02_breaks_here.ipynb": KeyboardInterrupt()})  # writes no copy
    monkeypatch.setattr(runner, "notebook_executor", lambda: fake)
    out = tmp_path / "build"

    with pytest.raises(KeyboardInterrupt):
        execute(discover(notebooks), out_dir=out, progress=False)

    said = capsys.readouterr().err
    assert said.endswith(f"    interrupted; run summary: {out / 'run-summary.json'}\n")
    assert "executed copy" not in said
