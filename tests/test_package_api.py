"""The package as the notebooks' readers meet it: `help()` on what a notebook calls, and the
types their own code gets when it imports the package."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _notebook_names() -> set[str]:
    """Dotted names of the package the notebooks import, or reach through a module they
    import (`explore.beers_frame`, `Scheduler.from_outputs`)."""
    names: set[str] = set()
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        tree = ast.parse(source)
        imported: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("brewops"):
                for alias in node.names:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        names |= set(imported.values())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported
            ):
                names.add(f"{imported[node.value.id]}.{node.attr}")
    return names


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part)
        return found
    raise ImportError(dotted)


def _own_doc(obj: Any) -> str:
    """The docstring written for `obj`; a dataclass's generated signature is none."""
    doc = obj.__doc__ or ""
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc.strip()


def _callables() -> dict[str, Any]:
    found = {name: _resolve(name) for name in sorted(_notebook_names())}
    return {name: obj for name, obj in found.items() if callable(obj)}


def _returned_classes(function: Any) -> set[type]:
    """The package's classes a function or class method says it returns."""
    try:
        returned = typing.get_type_hints(function).get("return")
    except (NameError, TypeError):  # a name imported only for type checkers
        return set()
    candidates = {returned, *typing.get_args(returned)}
    return {c for c in candidates if inspect.isclass(c) and c.__module__.startswith("brewops.")}


def test_the_notebooks_call_the_package():
    names = _notebook_names()
    # the list below must see the notebooks' calls, or it checks nothing
    assert {"brewops.target.use", "brewops.model.train.train"} <= names, names
    assert len(_callables()) > 50


def test_what_the_notebooks_call_says_what_it_does_in_help():
    undocumented = [name for name, obj in _callables().items() if not _own_doc(obj)]
    assert not undocumented, f"no docstring for help() to show: {undocumented}"


def test_what_the_notebooks_get_back_says_what_it_is_in_help():
    returned = {cls for obj in _callables().values() for cls in _returned_classes(obj)}
    assert returned, "no class of the package among the return types"
    undocumented = sorted(c.__qualname__ for c in returned if not _own_doc(c))
    assert not undocumented, f"no docstring for help() to show: {undocumented}"


def test_the_installed_package_is_marked_as_typed():
    # PEP 561: without the marker a user's mypy reads every brewops name as Any
    assert importlib.resources.files("brewops").joinpath("py.typed").is_file()


@pytest.mark.slow
def test_a_users_mypy_checks_calls_into_the_package(tmp_path: Path):
    script = tmp_path / "analysis.py"
    # a path as text, as a notebook writes it, is what these take at run time too
    script.write_text(
        "from brewops import infra\n"
        "from brewops.catalog import load_catalog\n"
        "from brewops.firehose_runtime import FirehoseRuntime\n"
        "from brewops.scheduler import Scheduler\n"
        "\n"
        "infra.lint('template.yaml')\n"
        "infra.load_template('template.yaml')\n"
        "FirehoseRuntime(state_dir='state')\n"
        "Scheduler(log_dir='logs')\n"
        "beers: int = load_catalog('catalog.json')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [Path(sys.executable).parent / "mypy", "--config-file=", "--no-incremental", script.name],
        cwd=tmp_path,
        capture_output=True,
        encoding="locale",
    )
    assert "import-untyped" not in result.stdout, result.stdout
    # the one wrong line, and only it
    assert 'has type "list[dict[str, Any]]", variable has type "int"' in result.stdout, (
        result.stdout
    )
    assert "Found 1 error" in result.stdout, result.stdout


def _plot_functions() -> dict[str, tuple[ast.FunctionDef, ast.Module]]:
    """The package's public `plot_*` functions, by dotted name, read from the source
    (importing every module would start what some of them start)."""
    package = ROOT / "lib" / "brewops"
    found = {}
    for source in sorted(package.rglob("*.py")):
        module = ast.parse(source.read_text(encoding="utf-8"))
        dotted = ".".join(source.relative_to(package.parent).with_suffix("").parts)
        for node in module.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("plot_"):
                found[f"{dotted}.{node.name}"] = (node, module)
    return found


def _imports_figure(module: ast.Module) -> bool:
    """Whether `module` imports matplotlib's Figure (for type checkers only, or at run time)."""
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "matplotlib.figure"
        and any(alias.name == "Figure" and alias.asname is None for alias in node.names)
        for node in ast.walk(module)
    )


def test_every_plot_function_says_it_returns_a_figure():
    functions = _plot_functions()
    assert {"brewops.model.plots.plot_reliability", "brewops.explore.plot_ibu_vs_abv"} <= set(
        functions
    ), sorted(functions)
    # mypy checks the function returns what it says: here, that it says Figure
    not_a_figure = {
        name: ast.unparse(node.returns) if node.returns else None
        for name, (node, module) in functions.items()
        if not (node.returns and ast.unparse(node.returns) == "Figure" and _imports_figure(module))
    }
    assert not not_a_figure, (
        f"a notebook's mypy could check nothing done with these: {not_a_figure}"
    )
