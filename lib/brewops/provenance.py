"""Which code made an artefact (a model card, a run summary): the package's version and
the git commit of the checkout it runs from.

The version alone names no code: it stays 0.1.0 from commit to commit. The commit does,
when the package runs from a git checkout (`make setup` installs it editable); an installed
copy (pip without -e, Colab's install cell) runs from site-packages, which names no commit.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import brewops

PACKAGE_DIR = Path(brewops.__file__).resolve().parent
_GIT_SECONDS = 10  # a git that hangs (a lock, a network mount) must not hold up training


def code_version(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """`brewops`: the package's version; `commit`: the HEAD of the git checkout the package
    runs from; `modified`: whether tracked files differ from that commit (the code that ran
    is then not the commit's; in a repository that holds other projects too, this project's
    files only). Both None when the package is no tracked file of a git checkout, or git
    cannot be run."""
    return {"brewops": brewops.__version__, **_git_state(package_dir)}


def _git_state(package_dir: Path) -> dict[str, Any]:
    unknown: dict[str, Any] = {"commit": None, "modified": None}
    # tracked: a copy installed into a .venv inside a checkout is no file of it
    tracked = _git(package_dir, ["ls-files", "--error-unmatch", "--", "__init__.py"])
    if tracked is None:
        return unknown
    top = _git(package_dir, ["rev-parse", "--show-toplevel"])
    if top is None:
        return unknown
    project = _project_folder(package_dir.resolve(), Path(top.removesuffix("\n")).resolve())
    changes = ["status", "--porcelain=v2", "--branch", "--untracked-files=no"]
    status = _git(package_dir, [*changes, "--", f":(literal){project}"])
    if status is None:
        return unknown
    lines = status.splitlines()
    heads = [line.split()[2] for line in lines if line.startswith("# branch.oid ")]
    if not heads or heads[0] == "(initial)":  # a repository with no commit yet
        return unknown
    changed = [line for line in lines if not line.startswith("#")]
    return {"commit": heads[0], "modified": bool(changed)}


def _project_folder(package_dir: Path, top: Path) -> Path:
    """The folder of the pyproject.toml the package is built from, within the checkout: in
    a repository that holds other projects too, a change to theirs is no change to this code."""
    for folder in (package_dir, *package_dir.parents):
        if folder == top or (folder / "pyproject.toml").is_file():
            return folder
    return top


def _git(folder: Path, args: list[str]) -> str | None:
    """git's output, or None when it fails (not a checkout, one git refuses, no git installed)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(folder), *args],
            capture_output=True,
            encoding="utf-8",  # git's own: commit messages, and paths as the repository holds them
            errors="replace",
            timeout=_GIT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
