"""The settings a user changes from outside the code: every environment variable the package
reads, and every variable the Makefile takes, is in the README's table of settings or is
named as one the project sets itself; and a bad value is refused in one line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from brewops.cli import main
from brewops.paths import FOLDER_VARIABLES

ROOT = Path(__file__).resolve().parents[1]

# Read by the package but set by the project or the platform, not by a user: the runner for
# each kernel, the template for the producer function, Lambda, and the emulator's process.
SET_FOR_THE_PACKAGE = {
    "BREWOPS_FIGURES_FILE",
    "PUNKAPI_URL",
    "PUNKAPI_VERSION",
    "STREAM_NAME",
    "BEERS_PER_TICK",
    "MOTO_PORT",
}
# Other tools' own, documented by them: the AWS SDK's (AWS_…) and the proxies' (the README
# says what the local target does with them)
OTHER_TOOLS = {"NO_PROXY"}


def _environ_read(node: ast.AST) -> str | None:
    """The variable `node` reads: os.environ.get("X"), os.environ["X"], os.getenv("X")."""
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        called = ast.unparse(node.func)
        if called in {"os.environ.get", "os.getenv", "os.environ.setdefault"}:
            return node.args[0].value
    if (
        isinstance(node, ast.Subscript)
        and ast.unparse(node.value) == "os.environ"
        and isinstance(node.slice, ast.Constant)
    ):
        return node.slice.value
    return None


def _named_in(node: ast.AST) -> list[object]:
    """The names a constant holds when its own name says it names variables: `X_ENV = "NAME"`,
    `X_VARIABLES = ("NAME", …)`."""
    if not isinstance(node, ast.Assign):
        return []
    targets = [getattr(t, "id", "") for t in node.targets]
    if isinstance(node.value, ast.Constant) and any(t.endswith("_ENV") for t in targets):
        return [node.value.value]
    if isinstance(node.value, ast.Tuple | ast.List | ast.Set) and any(
        t.endswith("_VARIABLES") for t in targets
    ):
        return [getattr(element, "value", None) for element in node.value.elts]
    return []


def variables_the_package_reads() -> dict[str, str]:
    """Variable -> the file that reads it: os.environ reads with the name written out, click
    options' `envvar`, and the constants that name variables read elsewhere."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "lib" / "brewops").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [_environ_read(node)]
            if isinstance(node, ast.keyword) and node.arg == "envvar":
                names.append(getattr(node.value, "value", None))
            names += _named_in(node)
            for name in names:
                if isinstance(name, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                    found.setdefault(name, where)
    return found


def variables_the_makefile_takes() -> set[str]:
    """The Makefile's variables a user may give: those it sets with ?=."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*) \?=", text, re.M))


def readme_settings() -> set[str]:
    """The variables the README's table of settings names, one a row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", section, re.M))


def test_the_readme_lists_every_setting_the_package_and_the_makefile_read():
    read = variables_the_package_reads()
    assert "BREWOPS_CACHE_DIR" in read and "BREWOPS_TARGET" in read  # the search finds them
    missing = {
        name: where
        for name, where in read.items()
        if name not in readme_settings() | SET_FOR_THE_PACKAGE | OTHER_TOOLS
        and not name.startswith("AWS_")
    }
    missing.update(
        {name: "Makefile" for name in variables_the_makefile_takes() - readme_settings()}
    )
    assert missing == {}, "add them to the table of README.md's Settings section"


def test_every_setting_the_readme_lists_is_read():
    taken = set(variables_the_package_reads()) | variables_the_makefile_takes()
    assert readme_settings() - taken == set()


@pytest.mark.parametrize("variable", FOLDER_VARIABLES)
def test_a_relative_folder_is_refused_before_the_command_runs(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the kernels run in notebooks/, the servers elsewhere: "build2" would be another folder
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["data", "fetch"], env={variable: "build2"})
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {variable}=build2 is a relative path, which names another folder from each "
        f"working folder: set it to an absolute one ({variable}={tmp_path / 'build2'}), or "
        "unset it"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was written there


@pytest.mark.parametrize("variable", FOLDER_VARIABLES)
def test_a_file_given_as_a_folder_is_refused_in_one_line(variable: str, tmp_path: Path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["data", "fetch"], env={variable: str(a_file)})
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {variable}={a_file} is a file, not a folder: set it to a folder, or unset it"
    )


def test_a_home_that_does_not_exist_is_refused(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["local", "status"], env={"BREWOPS_HOME": str(tmp_path / "gone")}
    )
    assert result.exit_code == 1
    assert f"Error: BREWOPS_HOME={tmp_path / 'gone'} does not exist" in result.output
    assert not (tmp_path / "gone").exists()  # no build/ made under it


def test_a_home_without_the_template_is_named_when_local_up_finds_none(tmp_path: Path):
    result = CliRunner().invoke(main, ["local", "up"], env={"BREWOPS_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: no SAM template at {tmp_path / 'infra' / 'template.yaml'}: "
        f"BREWOPS_HOME={tmp_path} must be the project's checkout (the folder of "
        "infra/template.yaml); set it to that, or unset it"
    )


def test_a_relative_xdg_cache_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BREWOPS_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    from brewops import paths

    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "brewops"


def test_a_bad_target_variable_is_named_in_the_error():
    result = CliRunner().invoke(main, ["stream", "reconcile"], env={"BREWOPS_TARGET": "prod"})
    assert result.exit_code == 2
    assert "'--target' (env var: 'BREWOPS_TARGET'): 'prod' is not one of" in result.output


def test_the_target_variable_is_shown_in_the_help():
    result = CliRunner().invoke(main, ["stream", "backfill", "--help"])
    assert "env var: BREWOPS_TARGET" in re.sub(r"\s+", " ", result.output)


@pytest.mark.parametrize("url", ["punkapi.example/v3", "ftp://punkapi.example/v3", "https:///v3"])
def test_an_unusable_punk_api_variable_is_refused_naming_it(
    url: str, monkeypatch: pytest.MonkeyPatch
):
    from brewops import target as targets
    from brewops.errors import ActionableError

    monkeypatch.setenv("BREWOPS_PUNKAPI_URL", url)
    tgt = targets.Target(name="aws", stack_name="s", region="eu-west-1", _session=None)
    with pytest.raises(ActionableError) as refused:
        targets.punkapi_endpoint(None, None, tgt)
    assert str(refused.value) == (
        "BREWOPS_PUNKAPI_URL must be an http:// or https:// URL with a host and no spaces "
        f"(e.g. http://127.0.0.1:8080/v2), not {url!r}"
    )
