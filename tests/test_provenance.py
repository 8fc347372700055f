"""Which code made an artefact: the package's version and its checkout's git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import brewops
from brewops import provenance
from fixtures.checkout import git_in


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=a", "-c", "user.email=a@b.c", *args],
        capture_output=True,
        encoding="locale",
        check=True,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding a package folder, committed."""
    repo = tmp_path / "repo"
    package = repo / "lib" / "brewops"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n', encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_the_code_of_this_checkout_is_its_head_commit():
    head = git_in(provenance.PACKAGE_DIR, "rev-parse", "HEAD").stdout.strip()
    code = provenance.code_version()
    assert code["brewops"] == brewops.__version__
    assert code["commit"] == head
    assert isinstance(code["modified"], bool)


def test_a_committed_checkout_is_its_commit_unmodified(checkout: Path):
    code = provenance.code_version(checkout / "lib" / "brewops")
    assert code == {
        "brewops": brewops.__version__,
        "commit": git(checkout, "rev-parse", "HEAD"),
        "modified": False,
    }


def test_a_tracked_file_changed_since_the_commit_is_said(checkout: Path):
    (checkout / "lib" / "brewops" / "__init__.py").write_text(
        '__version__ = "0.2.0"\n', encoding="utf-8"
    )
    assert provenance.code_version(checkout / "lib" / "brewops")["modified"] is True


def test_an_untracked_file_is_no_change_of_the_code_that_ran(checkout: Path):
    (checkout / "notes.txt").write_text("a file of the user's, not of the code\n", encoding="utf-8")
    assert provenance.code_version(checkout / "lib" / "brewops")["modified"] is False


@pytest.mark.parametrize("where", ["no checkout", "untracked copy", "no commit yet"])
def test_code_run_from_no_commit_names_none(tmp_path: Path, checkout: Path, where: str):
    if where == "no checkout":
        package = tmp_path / "site-packages" / "brewops"
    elif where == "untracked copy":  # installed into a .venv inside the checkout
        package = checkout / ".venv" / "site-packages" / "brewops"
    else:
        package = tmp_path / "new" / "brewops"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n', encoding="utf-8")
    if where == "no commit yet":
        git(package.parent, "init", "-q")
        git(package.parent, "add", ".")
    assert provenance.code_version(package) == {
        "brewops": brewops.__version__,
        "commit": None,
        "modified": None,
    }


def test_without_git_the_commit_is_unknown(checkout: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(checkout))  # no git on it
    code = provenance.code_version(checkout / "lib" / "brewops")
    assert (code["commit"], code["modified"]) == (None, None)


@pytest.fixture
def monorepo(tmp_path: Path) -> Path:
    """A repository holding the project in a folder of its own (its name a glob pattern's
    characters) beside another one."""
    repo = tmp_path / "repo"
    package = repo / "projects" / "brew[ops]*" / "lib" / "brewops"
    package.mkdir(parents=True)
    (package.parent.parent / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n', encoding="utf-8")
    (repo / "projects" / "other").mkdir()
    (repo / "projects" / "other" / "app.py").write_text("", encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


@pytest.mark.parametrize(
    ("changed", "modified"),
    [
        ("projects/other/app.py", False),  # another project's code
        ("projects/brew[ops]*/pyproject.toml", True),  # this project's, out of the package
    ],
)
def test_in_a_repository_of_several_projects_only_this_ones_changes_count(
    monorepo: Path, changed: str, modified: bool
):
    (monorepo / changed).write_text("# changed\n", encoding="utf-8")
    code = provenance.code_version(monorepo / "projects" / "brew[ops]*" / "lib" / "brewops")
    assert code["commit"] == git(monorepo, "rev-parse", "HEAD")
    assert code["modified"] is modified
