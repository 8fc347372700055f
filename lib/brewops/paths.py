"""Where the project keeps its files: build outputs, caches and local runtime state."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """$BREWOPS_HOME if set, else the checkout this package was installed from (editable
    install), else the cwd."""
    env = os.environ.get("BREWOPS_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "infra").is_dir():
            return parent
    return Path.cwd()


# a variable set empty counts as unset, as BREWOPS_HOME does: Path("") would be the cwd
def build_dir() -> Path:
    return Path(os.environ.get("BREWOPS_BUILD_DIR") or repo_root() / "build")


def cache_dir() -> Path:
    """Downloaded data (the catalogue) lives outside git, shared between checkouts."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "brewops"
    return Path(os.environ.get("BREWOPS_CACHE_DIR") or default)


def local_state_dir() -> Path:
    """State of the local target: emulator endpoint, server pids, Firehose checkpoints."""
    return Path(os.environ.get("BREWOPS_LOCAL_STATE_DIR") or build_dir() / "local")


def local_log_dir(state_dir: Path | None = None) -> Path:
    """Where the local target keeps its logs: a file per Lambda function (NAME.log, the lines
    it also puts into the emulator's CloudWatch Logs) and per server."""
    return (state_dir or local_state_dir()) / "logs"


def firehose_checkpoints_dir(state_dir: Path | None = None) -> Path:
    """Where the local Firehose keeps its positions in the emulator's streams, which end
    with the emulator."""
    return (state_dir or local_state_dir()) / "firehose"


def template_path() -> Path:
    return repo_root() / "infra" / "template.yaml"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"
