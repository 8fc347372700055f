"""Project hygiene: lint, stripped notebooks, notebook conventions, pinned environments,
secrets, and light Lambda packages."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from brewops import lockfiles
from brewops.paths import repo_root
from brewops.runner import NOTEBOOK_NAME, discover, notebook_parameters
from fixtures.checkout import git_in
from fixtures.commands import run_in_group

ROOT = repo_root()
NOTEBOOKS = discover(ROOT / "notebooks")
BIN = Path(sys.executable).parent


def _tracked(*patterns: str) -> list[str]:
    out = git_in(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", *patterns)
    return [line for line in out.stdout.splitlines() if (ROOT / line).exists()]


def test_ruff_lints_python_and_notebooks():
    result = subprocess.run(
        [BIN / "ruff", "check", "."], cwd=ROOT, capture_output=True, encoding="locale"
    )
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\n`.venv/bin/ruff check --fix .` fixes those marked [*]"
    )


def test_ruff_flags_unsafe_calls_in_the_package():
    unsafe = (
        "import pickle\nimport subprocess\n\nimport requests\nimport yaml\n\n"
        'subprocess.run("ls", shell=True)\n'
        'yaml.load("a: 1", Loader=yaml.Loader)\n'
        'pickle.loads(b"")\n'
        'requests.get("http://127.0.0.1")\n'
        'open("notes.txt").read()\n'
    )
    check = [BIN / "ruff", "check", "--output-format", "json"]
    result = subprocess.run(
        [*check, "--stdin-filename", "lib/brewops/example.py", "-"],
        cwd=ROOT,
        input=unsafe,
        capture_output=True,
        encoding="locale",
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"S602", "S506", "S301", "S113", "PLW1514"} <= codes, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [BIN / "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, encoding="locale"
    )
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\n`.venv/bin/ruff format .` formats them"
    )


def test_mypy_checks_the_package():
    # [tool.mypy] in pyproject.toml: the files, and the libraries read without their types
    result = subprocess.run([BIN / "mypy"], cwd=ROOT, capture_output=True, encoding="locale")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning])
def test_a_deprecation_met_in_the_package_fails_the_suite(category: type[Warning]):
    """pyproject.toml's filterwarnings: the package's deprecations are errors, a library's
    own are left to the warnings summary."""

    def met_in(module: str) -> None:
        warnings.warn_explicit("deprecated", category, f"{module}.py", 1, module=module)

    with pytest.raises(category):
        met_in("brewops.punkapi.client")
    with warnings.catch_warnings(record=True) as reported:
        met_in("tenacity.wait")
    assert [w.category for w in reported] == [category]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux's CPU affinity")
@pytest.mark.parametrize("option", ["auto", "logical"])
def test_pytest_n_auto_starts_a_worker_per_cpu_the_suite_may_use(request, monkeypatch, option):
    # as a container's cpuset or `taskset -c 0` leaves it: pytest-xdist counted every core
    # of the machine, and each worker starts an emulator and a local stack of its own
    hook, config = request.config.hook, request.config
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(config.option, "numprocesses", option)
    assert hook.pytest_xdist_auto_num_workers(config=config) == 1
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")  # as pytest-xdist documents
    assert hook.pytest_xdist_auto_num_workers(config=config) == 3


def test_a_command_the_suite_times_out_ends_with_the_processes_it_started(tmp_path):
    # subprocess.run's timeout kills the command alone: the worker processes of a training
    # it timed out ran on for minutes, 0.2 GB each
    import psutil

    started = tmp_path / "grandchild"
    command = (
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"pathlib.Path({str(started)!r}).write_text(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_group([sys.executable, "-c", command], timeout=20)
    assert started.exists(), "the command had not started its child in 20 s"
    grandchild = psutil.Process(int(started.read_text()))
    try:
        _, alive = psutil.wait_procs([grandchild], timeout=10)
        assert alive == []
    finally:
        if grandchild.is_running():
            grandchild.kill()


def test_a_command_the_suite_times_out_has_its_sigterm_clean_up_first(tmp_path):
    # `brewops run` stops the local target it started on SIGTERM; SIGKILL would leave the
    # servers, which run in sessions of their own, out of the command's group
    ready, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    command = (
        "import pathlib, signal, sys, time\n"
        f"def clean_up(*_): pathlib.Path({str(cleaned)!r}).touch(); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, clean_up)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(300)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_group([sys.executable, "-c", command], timeout=20)
    assert ready.exists(), "the command had not set its handler in 20 s"
    assert cleaned.exists()


def test_a_command_the_suite_runs_gives_what_subprocess_run_gives(tmp_path):
    echo = [sys.executable, "-c", "import sys; print(sys.stdin.read()); sys.exit(3)"]
    done = run_in_group(echo, timeout=60, input="beer", capture_output=True, encoding="utf-8")
    assert (done.returncode, done.stdout) == (3, "beer\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_in_group(echo, timeout=60, input="", capture_output=True, check=True)


def test_there_are_numbered_notebooks():
    names = [nb.name for nb in NOTEBOOKS]
    assert names, "no numbered notebooks"
    assert all(NOTEBOOK_NAME.match(n) for n in names)
    assert len({n[:2] for n in names}) == len(names), "two notebooks share a number"
    others = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p not in NOTEBOOKS)
    assert not others, f"notebooks must be named NN_verb_object.ipynb, not {others}" + (
        executed_copies_said(others)
    )


def executed_copies_said(names: list[str]) -> str:
    """What to do when `names` hold executed copies: `jupyter nbconvert --execute` writes
    NAME.nbconvert.ipynb beside its source unless told where."""
    if not any(name.endswith(".nbconvert.ipynb") for name in names):
        return ""
    return (
        "; NAME.nbconvert.ipynb is an executed copy `jupyter nbconvert --execute` wrote beside "
        "its source: delete it, and give nbconvert --output-dir build/nbconvert"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_is_what_its_build_script_writes(notebook: Path, tmp_path: Path):
    """An edit made in Jupyter, or a build script changed without running it, would be
    lost or never shipped: the committed notebook must equal the script's output."""
    copy = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks" / "_build", copy / "_build")
    # ruff's settings, and the package it sorts imports as first-party
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "lib").symlink_to(ROOT / "lib")
    script = copy / "_build" / f"{notebook.stem}.py"
    assert script.exists(), f"{notebook.name} has no build script notebooks/_build/{script.name}"
    subprocess.run([sys.executable, script], cwd=tmp_path, check=True, capture_output=True)
    built = (copy / notebook.name).read_text(encoding="utf-8")
    assert built == notebook.read_text(encoding="utf-8"), (
        f"{notebook.name} differs from what {script.name} writes: edit the script, then run "
        f"`.venv/bin/python notebooks/_build/{script.name}`"
    )


def test_every_build_script_has_its_notebook():
    """A new build script that was never run ships no notebook, and nothing would run it."""
    scripts = sorted((ROOT / "notebooks" / "_build").glob("[0-9][0-9]_*.py"))
    missing = [s.name for s in scripts if not (ROOT / "notebooks" / f"{s.stem}.ipynb").exists()]
    assert not missing, (
        f"no notebook for notebooks/_build/{', '.join(missing)}: run "
        f"`.venv/bin/python notebooks/_build/{missing[0]}`"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_records_its_figures_under_its_own_name(notebook: Path):
    """Run by hand, a notebook writes `figures/<name>.json`: one copied from another and
    still naming it would overwrite that notebook's figures."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    named = [
        keyword.value.value
        for cell in cells
        if cell["cell_type"] == "code"
        for node in ast.walk(ast.parse("".join(cell["source"])))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "record"
        for keyword in node.keywords
        if keyword.arg == "notebook" and isinstance(keyword.value, ast.Constant)
    ]
    assert named, (
        f"{notebook.name} records no key figures: end it with summary.record(notebook=...)"
    )
    assert set(named) == {notebook.stem}, (
        f"{notebook.name} records its figures as {sorted(set(named))}: "
        f'use summary.record(notebook="{notebook.stem}", ...) in its build script'
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(notebook: Path):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, (
        f"{notebook.name}: cells {dirty} carry outputs. Write it again from its build script, "
        f"which leaves none: `.venv/bin/python notebooks/_build/{notebook.stem}.py` (plain "
        "`nbstripout` renumbers the cell ids too: `nbstripout --keep-id` keeps them)"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_conventions(notebook: Path):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and intro.startswith("# "), "H1 title first"
    badge = f"colab.research.google.com/github/brewops/brewops/blob/main/notebooks/{notebook.name}"
    assert badge in intro, "Colab badge must open this notebook"
    for section in ("## Overview", "## What you need", "## Costs"):
        assert section in intro, f"missing {section!r}"

    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    tree = ast.parse("".join(tagged[0]["source"]))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            continue  # the names the parameters' annotations use (`Optional`)
        assert isinstance(node, ast.Assign | ast.AnnAssign), (
            "parameters cell holds assignments only"
        )
        value = node.value
        ast.literal_eval(value)  # raises if a parameter is not a literal
    assert any(
        isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "target" for t in n.targets)
        for n in tree.body
    ), "every notebook takes a `target` parameter"

    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.lstrip().startswith(("%", "!")):
            pytest.fail(f"cell {i}: shell/magic lines do not run under papermill everywhere")
        defined = [
            n.name
            for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
        assert not defined, f"cell {i} defines {defined}: logic belongs in the package"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_says_what_it_does(notebook: Path):
    """`brewops run -p NAME VALUE` and Jupyter users read the comment beside each one."""
    from papermill import inspect_notebook

    parameters = inspect_notebook(notebook)
    assert parameters
    unread = [name for name in notebook_parameters(notebook) if name not in parameters]
    assert not unread, (
        f"papermill cannot read the parameters {unread} of {notebook.name}, and shows no help "
        "for them: write each as `name: type = value  # help`, with no `=` sign in the comment"
    )
    assert [name for name, p in parameters.items() if not p["help"].strip()] == []


def _colab_cells(notebook: Path, home: Path) -> tuple[str, str]:
    """The notebook's Colab cells: the install cell, with the clone going to `home`, and
    the cell after the parameters, which starts the local target."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    [parameters] = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    install, local_target = sources[1], sources[parameters + 1]
    assert '"google.colab" in sys.modules' in install
    assert '"google.colab" in sys.modules' in local_target
    return install.replace("/content/brewops", str(home)), local_target


def _brewops_commands(notebook: Path) -> list[list[str]]:
    """The `brewops` command lines the notebook's code cells run: subprocess.run(["brewops", ...])."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [
        [part.value for part in node.args[0].elts]
        for cell in cells
        if cell["cell_type"] == "code"
        for node in ast.walk(ast.parse("".join(cell["source"])))
        if isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.List)
        and all(isinstance(part, ast.Constant) for part in node.args[0].elts)
        and [part.value for part in node.args[0].elts][:1] == ["brewops"]
    ]


def _parse_command_line(args: list[str]) -> None:
    """Parse `brewops ARGS` as the CLI would, without running the command: a renamed
    command or option raises click's usage error."""
    import click

    from brewops.cli import main

    command: click.Command | None = main
    parent = None
    while isinstance(command, click.Group) and args:
        parent = click.Context(command, info_name=command.name, parent=parent)
        command, args = command.get_command(parent, args[0]), args[1:]
    assert command is not None, "no such command"
    command.make_context(command.name, list(args), parent=parent)


def test_the_brewops_commands_the_notebooks_run_are_ones_the_cli_takes():
    commands = {
        notebook.name: [" ".join(c) for c in _brewops_commands(notebook)] for notebook in NOTEBOOKS
    }
    assert "brewops stream fill --no-progress" in commands["04_validate_glue_table.ipynb"]
    refused = []
    for notebook, lines in commands.items():
        for line in lines:
            try:
                _parse_command_line(line.split()[1:])
            except Exception as error:  # click's UsageError, or any other
                refused.append(f"{notebook}: `{line}`: {str(error).rstrip('.')}")
    assert not refused, (
        "the notebooks run commands the CLI no longer takes (a command or option renamed?): "
        + "; ".join(refused)
        + ". Change notebooks/_build/common.py (or the build script) too, then regenerate"
    )


def test_a_command_line_the_cli_refuses_fails_to_parse():
    with pytest.raises(Exception, match="No such option '--no-such-option'"):
        _parse_command_line(["stream", "fill", "--no-such-option"])
    _parse_command_line(["stream", "fill", "--no-progress"])


@pytest.mark.parametrize(
    ("notebook", "target", "started"),
    [
        ("01_explore_api", "local", ["local up"]),
        ("04_validate_glue_table", "local", ["local up", "stream fill --no-progress"]),
        ("05_train_evaluate_model", "local", ["local up", "stream fill --no-progress"]),
        # the deployed stack: no emulator for nobody, and nothing of it to fill
        ("01_explore_api", "aws", []),
        ("05_train_evaluate_model", "aws", []),
    ],
)
def test_the_colab_cells_install_once_and_start_and_fill_the_local_target_only_if_used(
    notebook: str,
    target: str,
    started: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """Colab runs each notebook in a runtime of its own: one that reads what notebook 03
    produced fills the local stack (`brewops stream fill`). The target is the parameters'
    choice, so it is started after them. An interrupted install is tried again."""
    home = tmp_path / "brewops"
    install, local_target = _colab_cells(ROOT / "notebooks" / f"{notebook}.ipynb", home)
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv("BREWOPS_HOME", str(home))  # restored after the cell sets it
    ran: list[str] = []
    pip_failures = [1]  # the first install is interrupted

    def run(command, check=False):
        ran.append(" ".join(str(part) for part in command[1:4]))
        if command[0] == "git":
            Path(command[-1]).mkdir()
        elif "pip" in command and pip_failures[0]:
            pip_failures[0] -= 1
            raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(subprocess, "run", run)

    with pytest.raises(subprocess.CalledProcessError):
        exec(install, {})
    for _ in range(2):  # the notebook run twice from the top
        namespace: dict = {}
        exec(install, namespace)
        namespace["target"] = target  # what the parameters cell sets
        exec(local_target, namespace)

    assert ran == [
        "clone -q --depth",
        "-m pip install",
        "-m pip install",  # tried again, without cloning again
        *started,
        *started,  # once installed, a second run does not install again
    ]


def test_the_colab_cell_clones_again_after_a_clone_that_was_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A runtime restarted mid-clone leaves part of a clone behind: it must not be taken
    for the repository."""
    home = tmp_path / "brewops"
    cell, _ = _colab_cells(ROOT / "notebooks" / "01_explore_api.ipynb", home)
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv("BREWOPS_HOME", str(home))
    clones = []

    def run(command, check=False):
        if command[0] == "git":
            clones.append(Path(command[-1]))
            clones[-1].mkdir()
            (clones[-1] / ("README.md" if len(clones) > 1 else "half")).touch()
            if len(clones) == 1:
                raise subprocess.CalledProcessError(-9, command)  # killed

    monkeypatch.setattr(subprocess, "run", run)

    with pytest.raises(subprocess.CalledProcessError):
        exec(cell, {})
    exec(cell, {})

    assert len(clones) == 2
    assert sorted(p.name for p in home.iterdir()) == [".colab-installed", "README.md"]


@pytest.mark.parametrize("platform", sorted(lockfiles.PLATFORMS))
def test_environment_yml_pins_exactly_the_lock(platform: str):
    """On each platform: the lock is universal, and pins some packages for one only
    (appnope on macOS, pywin32 on Windows, pexpect everywhere else)."""
    lock = lockfiles.lock_pins(platform=platform)
    env = lockfiles.environment_pins(platform=platform)
    assert env == lock, {
        "only in lock": sorted(set(lock) - set(env)),
        "only in environment.yml": sorted(set(env) - set(lock)),
        "different": sorted(k for k in set(lock) & set(env) if lock[k] != env[k]),
    }


def test_environment_yml_is_what_make_lock_writes():
    # the pins above, and also its header, channels and the project itself (`-e .`)
    written = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert written == lockfiles.render_environment(lockfiles.lock_requirements()), "run `make lock`"
    assert written.rstrip().endswith("- -e .")


def test_constraints_txt_is_the_lock_without_its_hashes():
    written = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert written == lockfiles.render_constraints(lockfiles.lock_requirements()), "run `make lock`"
    # each pin with its markers, as the lock states it (hashes on the lines that follow)
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    pins = [line.removesuffix(" \\") for line in lock if line and line[0] not in "# "]
    assert [line for line in written.splitlines() if not line.startswith("#")] == pins
    assert "--hash" not in written


@pytest.mark.parametrize(
    "lock", ["requirements.lock", "lib/requirements.txt", "infra/sam-requirements.lock"]
)
def test_every_pin_in_the_lock_files_has_hashes(lock: str):
    """`make setup` (and `sam build` for the Lambda) install nothing but the files hashed here."""
    entries = (ROOT / lock).read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    pins = [line for line in entries if line and not line.startswith(("#", " "))]
    assert pins
    assert [line.split(" ")[0] for line in pins if "--hash=sha256:" not in line] == []


def test_the_lambda_requirements_pin_the_versions_of_the_lock():
    """The tests run the deployed code: `make lock` compiles lib/requirements.txt with the
    lock as constraints, for Python 3.13, and each of its pins must be the lock's there."""
    lock = lockfiles.lock_pins(python_version="3.13")
    deployed = lockfiles.lock_pins(ROOT / "lib" / "requirements.txt", python_version="3.13")
    assert deployed
    assert {name: version for name, version in deployed.items() if lock.get(name) != version} == {}


def test_the_colab_cell_installs_with_constraints_that_pip_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """pip puts a whole install in hash-checking mode when its constraints carry hashes, and
    then refuses the project's folder: the cell passes the clone's unhashed constraints."""
    home = tmp_path / "brewops"
    cell, _ = _colab_cells(ROOT / "notebooks" / "01_explore_api.ipynb", home)
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setenv("BREWOPS_HOME", str(home))  # restored after the cell sets it
    real_run = subprocess.run
    installs = []

    def run(command, check=False):
        if command[0] == "git":  # a clone: the lock files, and a project with no dependencies
            clone = Path(command[-1])
            clone.mkdir()
            for name in ("requirements.lock", "constraints.txt"):
                (clone / name).write_text(
                    (ROOT / name).read_text(encoding="utf-8"), encoding="utf-8"
                )
            (clone / "pyproject.toml").write_text(
                '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
                encoding="utf-8",
            )
            (clone / "backend.py").write_text(
                "import os\n"
                "def prepare_metadata_for_build_wheel(directory, settings=None):\n"
                "    os.mkdir(os.path.join(directory, 'brewops-0.dist-info'))\n"
                "    with open(os.path.join(directory, 'brewops-0.dist-info', 'METADATA'), 'w') as f:\n"
                "        f.write('Metadata-Version: 2.1\\nName: brewops\\nVersion: 0\\n')\n"
                "    return 'brewops-0.dist-info'\n",
                encoding="utf-8",
            )
            return None
        # pip as the cell calls it, resolving only: nothing downloaded, nothing installed
        arguments = [part for part in command[4:] if part != "-q"]  # to read what it would do
        pip = [*command[:4], "--isolated", "--dry-run", "--no-index", *arguments]
        installs.append(real_run(pip, capture_output=True, encoding="locale", timeout=120))
        return None

    monkeypatch.setattr(subprocess, "run", run)
    exec(cell, {})

    [install] = installs
    assert install.returncode == 0, install.stdout + install.stderr
    assert "Would install brewops-0" in install.stdout


A_HASHED_LOCK = """\
# This file was autogenerated by uv via the following command:
#    make lock
--index-url https://pypi.org/simple
boto3==1.35.0 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via brewops
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:cc
"""


def test_the_lock_requirements_are_its_pins_without_options_comments_or_hashes(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(A_HASHED_LOCK, encoding="utf-8")

    assert lockfiles.lock_requirements(lock) == [
        "boto3==1.35.0",
        "colorama==0.4.6 ; sys_platform == 'win32'",
    ]
    assert lockfiles.lock_pins(lock) == {"boto3": "1.35.0"}  # on Linux
    assert lockfiles.lock_pins(lock, platform="win32") == {"boto3": "1.35.0", "colorama": "0.4.6"}


@pytest.mark.parametrize(
    ("command", "written"),
    [("write-environment", "environment.yml"), ("write-constraints", "constraints.txt")],
)
def test_each_lockfiles_command_writes_its_own_file(
    tmp_path, monkeypatch, capsys, command, written
):
    monkeypatch.setattr(lockfiles, "repo_root", lambda: tmp_path)
    lock = tmp_path / "requirements.lock"
    lock.write_text(A_HASHED_LOCK, encoding="utf-8")

    assert lockfiles.main([command]) == 0

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([written, lock.name])
    assert capsys.readouterr().out == f"{tmp_path / written}\n"


def test_the_lockfiles_script_does_only_what_its_usage_says(capsys):
    assert lockfiles.main([]) == 2
    assert lockfiles.main(["write-environment", "extra"]) == 2
    assert lockfiles.main(["write-everything"]) == 2
    usage = "usage: python -m brewops.lockfiles {write-environment|write-constraints}"
    assert usage in capsys.readouterr().err


def test_the_environment_is_installed_from_the_lock():
    from importlib.metadata import version

    pins = lockfiles.lock_pins()
    for name in ("boto3", "moto", "pandas", "papermill", "nbval", "scikit-learn", "awswrangler"):
        assert version(name) == pins[name], (
            f"{name} {version(name)} is installed, and requirements.lock pins {pins[name]}: "
            "run `make setup`"
        )


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_lock_is_within_the_ranges_of_pyproject():
    # a bound or cap added to pyproject.toml by hand must hold for the pinned set too
    project = _pyproject()["project"]
    pins = lockfiles.lock_pins()
    extras = project["optional-dependencies"].values()
    wanted = [*project["dependencies"], *(entry for extra in extras for entry in extra)]
    outside = [
        f"{req} (lock: {pins.get(req.name.lower())})"
        for req in map(Requirement, wanted)
        if req.name.lower() not in pins or pins[req.name.lower()] not in req.specifier
    ]
    assert not outside, (
        f"requirements.lock does not satisfy pyproject.toml for {', '.join(outside)}: "
        "run `make lock` (it re-resolves the pins), then `make setup`"
    )


def test_the_licence_is_an_spdx_expression():
    # setuptools (77 and later) deprecates the `{ text = ... }` table, and stops building a
    # project that still has one after 2027-02-18
    pyproject = _pyproject()
    assert isinstance(pyproject["project"]["license"], str)
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]


def test_the_licence_text_ships_with_the_code():
    # MIT asks for its text to go with every copy; setuptools puts LICENSE* into the wheel
    # unless `license-files` says otherwise
    pyproject = _pyproject()
    declared = pyproject["project"]["license"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"{declared} License"
    assert "license-files" not in pyproject["project"]
    assert "(`LICENSE`)" in (ROOT / "README.md").read_text(encoding="utf-8")


def _distributions_imported_by_the_package() -> dict[str, set[str]]:
    """Distribution -> the modules of lib/ that import it, lazy imports included."""
    owners = importlib.metadata.packages_distributions()
    imported: dict[str, set[str]] = {}
    for path in (ROOT / "lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top == "brewops":
                    continue
                for dist in owners.get(top, [top]):
                    where = imported.setdefault(canonicalize_name(dist), set())
                    where.add(path.relative_to(ROOT).as_posix())
    return imported


def _declared(*requirements: str) -> set[str]:
    return {canonicalize_name(Requirement(entry).name) for entry in requirements}


def test_every_package_the_package_imports_is_declared_for_run_time():
    """One that only comes with another package (or with the dev extra) leaves the lock the
    day that one stops bringing it."""
    project = _pyproject()["project"]
    run_time = _declared(*project["dependencies"], *project["optional-dependencies"]["notebooks"])
    undeclared = {
        dist: sorted(modules)
        for dist, modules in _distributions_imported_by_the_package().items()
        if dist not in run_time
    }
    assert not undeclared, (
        "the package imports what pyproject.toml does not declare for run time: "
        + "; ".join(f"{dist} (in {', '.join(where)})" for dist, where in undeclared.items())
        + ". Add each to [project] dependencies (not the dev extra), then `make lock` "
        "and `make setup`"
    )


def test_every_run_time_dependency_is_imported_by_the_package():
    # one that only another package needs comes with it, at the versions that package asks
    unused = _declared(*_pyproject()["project"]["dependencies"]).difference(
        _distributions_imported_by_the_package()
    )
    assert not unused, "remove them from pyproject.toml, then `make lock`"


def test_no_secrets_in_the_repository():
    # Lock files hold hashes and the AWS event fixtures base64 payloads: high entropy by design.
    files = [
        f
        for f in _tracked()
        if not f.endswith((".lock", "package-lock.json", "requirements.txt"))
        and not f.startswith("tests/events/")
    ]
    result = subprocess.run(
        [BIN / "detect-secrets", "scan", *files],
        cwd=ROOT,
        capture_output=True,
        encoding="locale",
        check=True,
    )
    found = json.loads(result.stdout)["results"]
    assert not found, f"possible secrets: {found}"


@pytest.mark.slow
def test_the_pre_commit_hooks_pass_on_the_repository_and_change_nothing(tmp_path: Path):
    """The hooks a commit runs accept the repository as it is: a hook that fails on it,
    or rewrites a file (nbstripout renumbering the builders' cell ids), blocks every commit."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"nbstripout", "ruff", "mypy", "cfn-lint", "detect-secrets"} <= hooks, hooks

    copy = tmp_path / "repo"
    for name in _tracked():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(BIN.parent)  # the hooks run .venv/bin/<tool>
    git = ["git", "-c", "core.hooksPath=/dev/null"]
    subprocess.run([*git, "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A", "--", ":!.venv"], cwd=copy, check=True)
    result = subprocess.run(
        [BIN / "pre-commit", "run", "--all-files", "--show-diff-on-failure"],
        cwd=copy,
        capture_output=True,
        encoding="locale",
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "SKIP": ""},
    )
    failed = [line for line in result.stdout.splitlines() if line.endswith("Failed")]
    assert result.returncode == 0, "\n".join(
        [*failed, result.stdout[-3000:], result.stderr[-1000:]]
    )


# Libraries the Lambda package must not pull in: each is megabytes, or not installed there
HEAVY_LIBRARIES = frozenset(
    {"pandas", "numpy", "pyarrow", "sklearn", "scipy", "matplotlib", "awswrangler", "moto"}
)

# The Python 3.13 runtime's own distributions: boto3 and what it needs
LAMBDA_RUNTIME = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)

# A first invocation, in a process of its own: the modules each handler imports at its cold
# start, lazy ones included (the producer builds its API and Kinesis clients then), with
# only the distributions of the Lambda package importable, as on Lambda
FIRST_INVOCATION = """
import importlib.abc, importlib.metadata, json, sys
from pathlib import Path
from types import SimpleNamespace

module_name, event_file, deployed = sys.argv[1], sys.argv[2], set(json.loads(sys.argv[3]))
owners = importlib.metadata.packages_distributions()


class LambdaPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "brewops" or top not in owners:
            return None
        if not {d.lower().replace("_", "-") for d in owners[top]} & deployed:
            raise ImportError(f"{top} is not in the Lambda package")


sys.meta_path.insert(0, LambdaPackage())
module = __import__(module_name, fromlist=["handler"])
if module_name.endswith(".producer.app"):
    from botocore.stub import Stubber

    kinesis = module.kinesis_client(None, "us-east-1")
    stubber = Stubber(kinesis)
    accepted = {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
    stubber.add_response("put_records", {"Records": [accepted]})  # none failed
    stubber.activate()
context = SimpleNamespace(
    function_name="f",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    aws_request_id="r",
    get_remaining_time_in_millis=lambda: 60_000,
)
module.handler(json.loads(Path(event_file).read_text(encoding="utf-8")), context)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize(
    ("module_name", "event"),
    [
        ("brewops.lambdas.producer.app", "eventbridge_scheduled.json"),
        ("brewops.lambdas.transform.app", "firehose_kinesis_transform.json"),
    ],
)
def test_a_lambda_handler_cold_start_needs_only_its_package_and_no_heavy_library(
    punkapi_url, module_name, event
):
    """`sam build` installs lib/requirements.txt next to the code; the runtime adds boto3."""
    deployed = set(lockfiles.lock_pins(ROOT / "lib" / "requirements.txt", python_version="3.13"))
    result = run_in_group(
        [
            sys.executable,
            "-c",
            FIRST_INVOCATION,
            module_name,
            str(ROOT / "tests" / "events" / event),
            json.dumps(sorted(deployed | LAMBDA_RUNTIME)),
        ],
        capture_output=True,
        encoding="locale",
        timeout=120,
        env={
            "PATH": "",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PUNKAPI_URL": punkapi_url,
            "STREAM_NAME": "cold-start",
        },
    )
    assert result.returncode == 0, result.stderr
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))  # after the handler's logs
    assert "brewops" in imported
    assert not imported & HEAVY_LIBRARIES, (
        f"{module_name} imports {sorted(imported & HEAVY_LIBRARIES)}"
    )


def test_progress_bars_come_from_brewops_progress():
    """Its bar is tqdm.auto's: in a notebook one widget, where plain tqdm writes a stderr
    line per update into the executed copy, and whose saved text is its final state."""
    direct = []
    for path in sorted((ROOT / "lib" / "brewops").rglob("*.py")):
        if path == ROOT / "lib" / "brewops" / "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "tqdm" or name.startswith("tqdm.") for name in names):
                direct.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not direct, f"use brewops.progress.ProgressBar instead: {direct}"


@pytest.mark.parametrize(
    "group", ["", "data", "api", "local", "stream", "validate", "model", "run"]
)
def test_every_command_has_help(group: str):
    args = [BIN / "brewops", *([group] if group else []), "--help"]
    result = subprocess.run(args, capture_output=True, encoding="locale")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_the_readme_lists_every_notebook_then_its_sections_in_order():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    agreed = ["Quickstart", "How it works", "Deploy to AWS", "Testing", "Clean-up", "Costs"]
    assert [h for h in headings if h in agreed] == agreed, headings
    table = text[: text.index("## Quickstart")]
    assert "badge.svg" in text.split("## ", 1)[0], "badges under the title"
    rows = [line for line in table.splitlines() if re.match(r"\| \d\d \|", line)]
    listed = [row.split("|")[1].strip() for row in rows]
    assert listed == [nb.stem[:2] for nb in NOTEBOOKS], (
        f"the README's notebook table lists {listed}: give each notebook of notebooks/ a row, "
        "in order, as the others have (number, link, what it does, Colab badge)"
    )
    for row, notebook in zip(rows, NOTEBOOKS, strict=True):
        assert f"(notebooks/{notebook.name})" in row, row
        assert (
            f"colab.research.google.com/github/brewops/brewops/blob/main/notebooks/{notebook.name}"
            in row
        ), row


def test_the_readme_mentions_every_make_target_and_only_those():
    # the targets `make help` lists: the ones with a `## description`
    targets = set(
        re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    )
    mentioned = set(
        re.findall(r"\bmake ([a-z][a-z-]*)", (ROOT / "README.md").read_text(encoding="utf-8"))
    )
    assert {"run", "test", "clean"} <= targets
    assert sorted(targets - mentioned) == [], "targets the README never mentions"
    assert sorted(mentioned - targets) == [], "the README mentions targets that do not exist"


def _readme_diagram() -> str:
    """The mermaid block of the README's How it works."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## How it works\n")[1].split("\n## ")[0]
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", section, re.M | re.S)
    assert len(blocks) == 1, "How it works should hold one mermaid diagram"
    return blocks[0]


class _Flowchart(NamedTuple):
    labels: dict[str, str]  # of each node and subgraph
    parent: dict[str, str]  # the subgraph each node is drawn in
    prefixes: set[str]  # the nodes drawn as cylinders: S3 prefixes
    edges: list[tuple[str, str]]


def _parse_flowchart(block: str) -> _Flowchart:
    """A mermaid flowchart written in the subset the README uses, one statement a line:
    `flowchart LR`, `id["label"]`, `id[("label")]` (a cylinder), `subgraph id["label"]`
    ... `end`, and `a --> b` or `a -->|label| b`. Any other line is refused, so a diagram
    written past the subset fails here instead of going unchecked."""
    chart = _Flowchart({}, {}, set(), [])
    subgraph = None
    for line in filter(None, (line.strip() for line in block.splitlines())):
        if line == "flowchart LR":
            continue
        if line == "end":
            subgraph = None
        elif match := re.fullmatch(r'subgraph (\w+)\["([^"]*)"\]', line):
            subgraph, chart.labels[match[1]] = match[1], match[2]
        elif match := re.fullmatch(r'(\w+)\[(\(?)"([^"]*)"(\)?)\]', line):
            chart.labels[match[1]] = match[3]
            if match[2] and match[4]:
                chart.prefixes.add(match[1])
            if subgraph:
                chart.parent[match[1]] = subgraph
        elif match := re.fullmatch(r'(\w+) -->(?:\|"?[^|"]*"?\|)? (\w+)', line):
            chart.edges.append((match[1], match[2]))
        else:
            raise AssertionError(f"the diagram's line {line!r} is outside the subset read here")
    return chart


def _diagram_disagreements(block: str) -> list[str]:
    """Where the flowchart `block` and infra/template.yaml disagree.

    An id that starts with a capital letter is a logical id: a resource of the template,
    or a node of `infra.data_flow_graph` (which adds the schedule SAM makes of the
    producer's `Tick` event); the other ids name what the template does not hold. A
    cylinder is an S3 prefix of the template's bucket, the first word of its label with a
    `/` in it: it stands for the bucket in an edge, as a node drawn inside a resource's
    subgraph stands for that resource. An edge between two resources must be one the
    derived data flow has, in the same direction. A prefix must start one the template
    names: a delivery stream's `Prefix` or `ErrorOutputPrefix` (its own, for a delivery
    stream drawn into it) or an Output's `s3://${Bucket}/...`."""
    from brewops import infra

    template = infra.load_template()
    resources = template["Resources"]
    flow = infra.data_flow_graph(template)
    chart = _parse_flowchart(block)
    found = [
        f"{name} is no logical id of infra/template.yaml"
        for name in chart.labels
        if name[0].isupper() and name not in resources and name not in flow
    ]
    found += [
        f"the edge {source} --> {sink} ends at {end}, a node the diagram does not define"
        for source, sink in chart.edges
        for end in (source, sink)
        if end not in chart.labels or end in chart.parent.values()
    ]
    bucket = next(n for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket")

    def stands_for(node: str) -> str | None:
        if node in chart.prefixes:
            return bucket
        for name in (node, chart.parent.get(node, "")):
            if name in resources or name in flow:
                return name
        return None

    for source, sink in chart.edges:
        drawn = (stands_for(source), stands_for(sink))
        if None not in drawn and drawn[0] != drawn[1] and not flow.has_edge(*drawn):
            backwards = " (it runs the other way)" if flow.has_edge(*reversed(drawn)) else ""
            found.append(
                f"the edge {source} --> {sink} is not in the template's data flow{backwards}"
            )
    # and the other way: each edge of the data flow between two things the diagram draws
    drawn_edges = {(stands_for(source), stands_for(sink)) for source, sink in chart.edges}
    shown = {stands_for(node) for node in chart.labels if node not in chart.parent.values()}
    found += [
        f"the template's data flow has {source} --> {sink}, which the diagram does not draw"
        for source, sink in sorted(flow.edges)
        if {source, sink} <= shown and (source, sink) not in drawn_edges
    ]

    def static(prefix: str) -> str:  # up to Firehose's first !{...} expression
        return prefix.split("!{")[0]

    delivered = {
        name: {static(s3[key]) for key in ("Prefix", "ErrorOutputPrefix") if key in s3}
        for name, resource in resources.items()
        if resource["Type"] == "AWS::KinesisFirehose::DeliveryStream"
        for s3 in [resource["Properties"]["ExtendedS3DestinationConfiguration"]]
    }
    outputs = [output["Value"].get("Fn::Sub", "") for output in template["Outputs"].values()]
    named = set().union(*delivered.values()) | {
        value.removeprefix(f"s3://${{{bucket}}}/")
        for value in outputs
        if isinstance(value, str) and value.startswith(f"s3://${{{bucket}}}/")
    }
    for node in sorted(chart.prefixes):
        word = re.search(r"[a-z0-9_=.-]+/[a-z0-9_=/.-]*", chart.labels[node])
        prefix = word[0] if word else ""
        if not prefix or not any(name.startswith(prefix) for name in named):
            found.append(f"the prefix {prefix!r} of {node} is one the template does not name")
        for source in (s for s, sink in chart.edges if sink == node and s in delivered):
            if not any(name.startswith(prefix) for name in delivered[source]):
                found.append(f"{source} delivers to none of {prefix!r}: {delivered[source]}")
    return found


def test_the_readme_diagram_draws_what_the_template_holds():
    """How it works draws the data flow for the repository's page; notebook 02 derives it
    from the template (`infra.data_flow_graph`). The two agree on the resources, the
    direction of each edge between two of them and the S3 prefixes."""
    found = _diagram_disagreements(_readme_diagram())
    assert not found, "the README's diagram and infra/template.yaml disagree:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("old", "new", "disagreement"),
    [
        # a resource renamed in the diagram only
        (r"\bTransformFunction\b", "TransformLambda", "TransformLambda is no logical id"),
        # an edge reversed
        (
            r"Stream --> RawDeliveryStream",
            "RawDeliveryStream --> Stream",
            "RawDeliveryStream --> Stream is not in the template's data flow (it runs the "
            "other way)",
        ),
        # a delivery stream drawn into the other one's prefix
        (
            r"RawDeliveryStream --> raw",
            "RawDeliveryStream --> cleaned",
            "RawDeliveryStream delivers to none of 'cleaned/'",
        ),
        # a prefix the template does not name
        (r"errors/cleaned/", "failed/", "the prefix 'failed/' of errors"),
        # an edge to a node that is not defined, which mermaid would draw as a new one
        (r"raw --> RawTable", "raw --> RawTabel", "ends at RawTabel"),
        # a stage of the data flow left out
        (
            r"\n *Stream --> CleanedDeliveryStream\n",
            "\n",
            "has Stream --> CleanedDeliveryStream, which the diagram does not draw",
        ),
    ],
)
def test_the_readme_diagram_check_catches_a_diagram_the_template_disagrees_with(
    old, new, disagreement
):
    diagram = _readme_diagram()
    # GIVEN the README's diagram changed where the template is not
    changed = re.sub(old, new, diagram)
    assert changed != diagram

    # THEN the check names the disagreement
    found = _diagram_disagreements(changed)
    assert any(disagreement in line for line in found), found


def test_the_readme_diagram_check_refuses_mermaid_it_does_not_read():
    with pytest.raises(AssertionError, match="outside the subset"):
        _parse_flowchart("flowchart LR\n    Stream --> RawDeliveryStream --> raw\n")


# how How it works names each resource type that moto's CloudFormation skips
SKIPPED_TYPE_NAMES = {
    "AWS::KinesisFirehose::DeliveryStream": "Firehose delivery streams",
    "AWS::Glue::Database": "Glue database",
    "AWS::Glue::Table": "tables",
    "AWS::Athena::WorkGroup": "Athena workgroup",
    "AWS::S3::BucketPolicy": "bucket policy",
    "AWS::Logs::LogStream": "log streams",
    "AWS::Logs::QueryDefinition": "saved Logs Insights queries",
    "AWS::CloudWatch::Alarm": "alarms",
    "AWS::SNS::Subscription": "email subscription",
}


def test_the_readme_names_every_resource_type_the_local_target_teaches_moto():
    """How it works lists the resource types moto's CloudFormation skips, those the local
    target's models (`brewops.local.cfn_models`) create in its place."""
    from moto.cloudformation import parsing

    from brewops.local import cfn_models

    motos_own = {
        model.cloudformation_type()
        for model in parsing.get_model_list()
        if not model.__module__.startswith("brewops.")
    }
    skipped = sorted({model.cloudformation_type() for model in cfn_models.MODELS} - motos_own)
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    listed = re.search(r"CloudFormation the resource types it skips \(([^)]*)\)", text)
    assert listed, "How it works no longer lists the resource types moto skips"
    missing = [t for t in skipped if SKIPPED_TYPE_NAMES.get(t, t) not in listed[1]]
    assert not missing, (
        f"How it works does not name {missing}, which moto's CloudFormation skips: name "
        "each in its list and in SKIPPED_TYPE_NAMES"
    )


def _readme_findings(beers) -> tuple[dict[str, int], dict[str, int]]:
    """(the findings the README's Results quote for notebook 04, those validation finds in
    the cleaned records of `beers`), counted per rule."""
    import pandas as pd

    from brewops import schema, transform, validation

    row = next(line for line in _readme_results_rows() if line.startswith("| 04 validate"))
    stated = {
        rule: int(re.search(pattern, row)[1])
        for rule, pattern in (
            (validation.NULLS, r"(\d+) nulls"),
            (validation.RANGE, r"(\d+) out-of-range values"),
            (validation.FG_ABOVE_OG, r"(\d+) beers with fg > og"),
        )
    }
    # the records the transform writes to the cleaned table, every column of them
    cleaned = pd.DataFrame([transform.clean_beer(b, "2024-05-01 00:00:00.000") for b in beers])
    counts = validation.quality_report(cleaned, columns=schema.CLEANED_COLUMNS).counts()
    return stated, {rule: counts[rule] for rule in stated}


def _readme_results_rows() -> list[str]:
    return [
        line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| 0")
    ]


def test_the_readme_results_are_what_the_code_finds_in_the_real_catalogue(catalog_beers):
    """The Results table quotes notebook 01's figures and notebook 04's findings."""
    from brewops import explore
    from brewops.punkapi.client import MAX_PER_PAGE

    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in _readme_results_rows()}
    figures = explore.catalogue_figures(catalog_beers)
    stated = re.search(
        r"(\d+) beers crawled in (\d+) requests; (\d+) data quirks", rows["01 explore"]
    )
    pages = figures["beers_crawled"] // MAX_PER_PAGE + 1  # the last page is short
    assert [int(n) for n in stated.groups()] == [figures["beers_crawled"], pages, figures["quirks"]]

    stated_findings, found = _readme_findings(catalog_beers)
    assert stated_findings == found


def test_the_readme_spread_of_the_beers_over_shards_is_what_kinesis_hashes(catalog_beers):
    """Kinesis puts a record in the shard whose hash key range holds the MD5 of its
    partition key (the beer id); a new stream's shards split the 128-bit range evenly."""
    import hashlib

    from brewops.producer import serialise_beer

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for shards in (2, 3, 4):
        width = 2**128 // shards
        counts = [0] * shards
        for beer in catalog_beers:
            digest = int(
                hashlib.md5(str(beer["id"]).encode(), usedforsecurity=False).hexdigest(), 16
            )
            counts[min(digest // width, shards - 1)] += 1
        assert f"{'/'.join(map(str, counts))} on {shards}" in text, (shards, counts)
    mib = sum(len(serialise_beer(beer)) for beer in catalog_beers) / 2**20
    assert f"{len(catalog_beers)} records and {mib:.1f} MiB" in text


def test_the_readme_findings_follow_a_column_added_to_the_cleaned_record(
    catalog_beers, monkeypatch
):
    from brewops import schema, transform, validation

    _, before = _readme_findings(catalog_beers)
    # GIVEN a column added to the cleaned record, from a field no beer of the catalogue has
    added = schema.Column("hop_ratio", "double", float, "Hops per malt, g/kg", 0, 1000)
    assert not any(added.name in beer for beer in catalog_beers)
    *columns, ingested_at = schema.CLEANED_COLUMNS
    monkeypatch.setattr(schema, "CLEANED_COLUMNS", (*columns, added, ingested_at))
    monkeypatch.setattr(transform, "NUMERIC_COLUMNS", (*transform.NUMERIC_COLUMNS, added.name))

    # WHEN the README's findings are checked THEN they count a null more a beer, as
    # notebook 04 does
    _, after = _readme_findings(catalog_beers)
    beers = len(catalog_beers)
    assert after[validation.NULLS] == before[validation.NULLS] + beers


def _guide_steps(heading: str) -> list[str]:
    """The numbered steps of the README's section `heading`, each one line."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"the README's guide {heading!r} is gone"
    section = text.split(f"\n## {heading}\n")[1].split("\n## ")[0]
    # a numbered step runs until the next one, a blank line or the section's end, its
    # lines joined
    return [
        " ".join(step.split())
        for step in re.findall(r"^\d+\. (.+?)(?=^\d+\. |\n\n|\Z)", section, re.M | re.S)
    ]


def _adding_a_column_steps() -> list[str]:
    return _guide_steps("Adding a column")


def _adding_a_notebook_steps() -> list[str]:
    return _guide_steps("Adding a notebook")


def _check_guide_steps(steps: list[str]) -> None:
    """Each step names files of the checkout that exist (a quoted path under one of its
    top folders; `raw/` is a prefix of the bucket, `.venv/bin/python x.py` a command) and,
    in backquotes, names those files hold."""
    assert steps, "the guide lists no steps"
    tops = {path.name for path in ROOT.iterdir()}
    for step in steps:
        quoted = re.findall(r"`([^`]+)`", step)
        paths = [q for q in quoted if "/" in q and " " not in q and q.split("/")[0] in tops]
        assert paths, f"a step names no file: {step}"
        for path in paths:
            assert (ROOT / path).exists(), f"the guide names {path}, which does not exist"
        texts = [(ROOT / p).read_text(encoding="utf-8") for p in paths if (ROOT / p).is_file()]
        for name in (q for q in quoted if re.fullmatch(r"[A-Za-z_]\w*", q)):
            assert any(re.search(rf"\b{name}\b", t) for t in texts), (
                f"the guide says {name} is in {', '.join(paths)}, and it is in none of them"
            )


def test_the_readme_guide_to_adding_a_column_names_files_and_names_that_exist():
    """Each step of "Adding a column" names files that exist and, in backquotes, names
    those files hold; its first step is where the cleaned columns are defined."""
    from brewops import schema

    steps = _adding_a_column_steps()
    _check_guide_steps(steps)
    # the definition first, then the template's copy of it
    first = re.findall(r"`([^`]+)`", steps[0])[0]
    assert (ROOT / first).resolve() == Path(schema.__file__).resolve()
    assert "`CLEANED_COLUMNS`" in steps[0]
    assert "`infra/template.yaml`" in steps[1] and "`CleanedTable`" in steps[1]


def test_the_readme_guide_check_catches_a_name_no_longer_in_its_file(monkeypatch):
    # GIVEN the guide's step naming a function the transform no longer has
    steps = _adding_a_column_steps()
    renamed = [step.replace("`clean_beer`", "`clean_record`") for step in steps]
    assert renamed != steps
    monkeypatch.setattr(sys.modules[__name__], "_adding_a_column_steps", lambda: renamed)

    # THEN the check names it
    with pytest.raises(
        AssertionError, match=re.escape("clean_record is in lib/brewops/transform.py")
    ):
        test_the_readme_guide_to_adding_a_column_names_files_and_names_that_exist()


def test_the_readme_guide_to_adding_a_notebook_names_files_and_names_that_exist():
    """Each step of "Adding a notebook" names files that exist and names they hold: the
    build scripts' common code first, the stack Outputs' two copies last."""
    steps = _adding_a_notebook_steps()
    _check_guide_steps(steps)
    assert "`notebooks/_build/common.py`" in steps[0] and "`build`" in steps[0]
    assert "`infra/template.yaml`" in steps[-1] and "`STACK_OUTPUTS`" in steps[-1]


def test_the_readme_guide_to_adding_a_notebook_catches_a_name_no_longer_in_its_file(
    monkeypatch,
):
    # GIVEN the guide's step naming a contract the target no longer has
    steps = _adding_a_notebook_steps()
    renamed = [step.replace("`STACK_OUTPUTS`", "`OUTPUTS`") for step in steps]
    assert renamed != steps
    monkeypatch.setattr(sys.modules[__name__], "_adding_a_notebook_steps", lambda: renamed)

    # THEN the check names it
    with pytest.raises(AssertionError, match=re.escape("OUTPUTS is in infra/template.yaml")):
        test_the_readme_guide_to_adding_a_notebook_names_files_and_names_that_exist()


def _reusing_the_pipeline_steps() -> list[str]:
    return _guide_steps("Reusing the pipeline for another source")


def _reusing_the_pipeline_stays() -> list[str]:
    """The files the reuse guide says stay as they are: the paragraph after its steps."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Reusing the pipeline for another source\n")[1].split("\n## ")[0]
    stays = section.split("\nThe rest stays as it is:")[1].split("\n\n")[0]
    return [q for q in re.findall(r"`([^`]+)`", stays) if q.startswith("lib/brewops/")]


def _module_of(path: str) -> str:
    return path.removeprefix("lib/").removesuffix("/").removesuffix(".py").replace("/", ".")


def _changed_modules_imported(stays: list[str], steps: list[str]) -> dict[str, list[str]]:
    """For each module of `stays`, the modules of the files `steps` name that it imports,
    each in a fresh interpreter. The schema is left out: the steps change its content,
    and the modules that stay read it."""
    changed = {
        _module_of(q)
        for step in steps
        for q in re.findall(r"`([^`]+)`", step)
        if q.startswith("lib/brewops/") and q != "lib/brewops/schema.py"
    }
    imported = {}
    for module in map(_module_of, stays):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import json, sys, {module}; print(json.dumps(list(sys.modules)))",
            ],
            capture_output=True,
            encoding="utf-8",
            check=True,
        )
        names = json.loads(result.stdout)
        found = sorted({c for c in changed if c in names and c != module})
        if found:
            imported[module] = found
    return imported


def test_the_readme_guide_to_reusing_the_pipeline_names_files_and_names_that_exist():
    """Each step of "Reusing the pipeline for another source" names files that exist and
    names they hold: the record's definition first, the template's copy of it next."""
    steps = _reusing_the_pipeline_steps()
    _check_guide_steps(steps)
    assert "`lib/brewops/schema.py`" in steps[0]
    assert "`CLEANED_COLUMNS`" in steps[0] and "`ID_COLUMN`" in steps[0]
    assert "`infra/template.yaml`" in steps[1] and "`CleanedTable`" in steps[1]
    stays = _reusing_the_pipeline_stays()
    assert "lib/brewops/reconcile.py" in stays and "lib/brewops/firehose_runtime/" in stays
    for path in stays:
        assert (ROOT / path).exists(), f"the guide says {path} stays, and it does not exist"


def test_what_the_reuse_guide_says_stays_imports_nothing_its_steps_change():
    """A module that stays imports no module the steps change: one that did would break
    when the learner rewrites that module (reconcile once took its digest from the
    transform)."""
    imported = _changed_modules_imported(
        _reusing_the_pipeline_stays(), _reusing_the_pipeline_steps()
    )
    assert imported == {}, (
        f"modules the README's reuse guide says stay import what its steps change: {imported}"
    )


def test_the_reuse_guide_check_catches_a_module_that_imports_a_changed_one():
    # GIVEN the transform's handler, which calls the transform, said to stay
    stays = ["lib/brewops/batching.py", "lib/brewops/lambdas/transform/app.py"]

    # THEN the check names it and what it imports
    imported = _changed_modules_imported(stays, _reusing_the_pipeline_steps())
    assert imported == {"brewops.lambdas.transform.app": ["brewops.transform"]}


def test_the_notebooks_a_new_source_keeps_name_no_field_of_a_record():
    """Notebooks 02 to 04 read a record's key as the package does (`schema.ID_COLUMN`, the
    ids `sent_ids` gives): one that spelled "id" would fail for a source whose records
    another field names. Notebooks 01 and 05 are the beers' own (the reuse guide's step
    that names them has them written anew)."""
    steps = _reusing_the_pipeline_steps()
    rewritten = next(step for step in steps if "`FEATURE_COLUMNS`" in step)
    scripts = [
        path
        for path in sorted((ROOT / "notebooks" / "_build").glob("[0-9][0-9]_*.py"))
        if f"`notebooks/_build/{path.name}`" not in rewritten
    ]
    assert [path.name[:2] for path in scripts] == ["02", "03", "04"]
    spelled = [
        f"{path.name}:{number}"
        for path in scripts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"""\[["']id["']\]""", line)
    ]
    assert spelled == [], f"use schema.ID_COLUMN: {spelled}"


def test_the_readme_lists_the_bands_edges_sets(catalog_beers):
    """The bands are set in one place, EDGES: the README's list of them, and the beers it
    says sit on an edge, follow it."""
    from brewops.model import bands, features

    text = " ".join(
        (ROOT / "README.md").read_text(encoding="utf-8").split()
    )  # one line: phrases wrap
    stated = re.search(r"The IBU model \(bands ((?:`[^`]*`,? ?)+);", text)
    assert stated, "the README's Results no longer list the model's bands"
    listed = [label.replace("∞", "inf") for label in re.findall(r"`([^`]*)`", stated[1])]
    assert listed == [label.replace(" ", "") for label in bands.LABELS]
    ibu = [beer["ibu"] for beer in features.labelled(catalog_beers)]
    on_an_edge = sum(value in bands.EDGES[1:-1] for value in ibu)
    assert f"{on_an_edge} beers sit exactly on a band edge" in text


def test_the_readme_states_the_model_protocol_and_its_data(catalog_beers):
    import inspect

    from brewops.model import bands, features, train
    from brewops.producer import put_payloads

    text = " ".join(
        (ROOT / "README.md").read_text(encoding="utf-8").split()
    )  # one line: phrases wrap
    protocol, params = train.Protocol(), train.ModelParams()
    beers = features.labelled(catalog_beers)
    _, newest = train.time_split(beers, protocol.time_test_fraction)
    trees = (len(bands.LABELS) - 1) * params.n_estimators + params.regressor_estimators
    in_flight = inspect.signature(put_payloads).parameters["concurrency"].default
    for stated in (
        f"{len(beers)} beers with an IBU",
        f"repeated stratified {protocol.n_splits}-fold CV, {protocol.n_repeats} repeats",
        f"The newest fifth is {len(newest)} beers (one beer is {1 / len(newest):.3f})",
        f"over {protocol.time_split_seeds} seeds",
        f"({trees:,} trees)",
        f"(the producer keeps {in_flight} calls in flight)",
    ):
        assert stated in text


def test_the_readme_names_every_key_of_the_functions_log_lines():
    """The README's "Logs and errors" is how an operator learns what to search the logs
    for: a key the code adds must be named there too."""
    from brewops import transform
    from brewops.producer import FailedRecord, ProduceReport, SentRecord, tick_log_fields

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    producer_bullet = text.split("**ProducerFunction**, one line a tick:")[1].split("- **")[0]
    transform_bullet = text.split("**TransformFunction**, once for each record")[1].split("- **")[0]
    report = ProduceReport(
        failed=[FailedRecord("2", "InternalFailure", "", 1)],
        accepted=[SentRecord("1", "shardId-000000000000", "49")],
    )
    tick = tick_log_fields([1, 2], report, {})
    producer_keys = {*tick, *tick["records"][0], *tick["failed"][0]}
    outcome = transform.Outcome("r1", "ProcessingFailed", b"{}", "not a beer")
    transform_keys = set(transform.log_fields(outcome, {}))

    named = set(re.findall(r"`([a-z_0-9]+)`", producer_bullet))
    assert producer_keys - named == set()
    named = set(re.findall(r"`([a-z_0-9]+)`", transform_bullet))
    assert transform_keys - named == set()


def test_what_git_tracks_is_read_in_a_checkout_only_and_a_refusal_is_in_gits_words(
    tmp_path: Path,
):
    """A download of the project (no .git) skips the tests that list what git tracks; a
    checkout git cannot read fails them with what git says, not an exit status."""
    with pytest.raises(pytest.skip.Exception, match="no git checkout"):
        git_in(tmp_path, "ls-files")
    (tmp_path / ".git").write_text(f"gitdir: {tmp_path / 'gone'}\n", encoding="utf-8")
    (tmp_path / "lib").mkdir()
    with pytest.raises(pytest.fail.Exception, match="not a git repository"):
        git_in(tmp_path / "lib", "ls-files")
