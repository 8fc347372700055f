"""Where the project keeps its files: build outputs, caches and local runtime state."""

from __future__ import annotations

import os
from pathlib import Path

from brewops.errors import ActionableError

# The variables that place the project's folders, read whenever a path is asked for
FOLDER_VARIABLES = (
    "BREWOPS_HOME",
    "BREWOPS_BUILD_DIR",
    "BREWOPS_LOCAL_STATE_DIR",
    "BREWOPS_CACHE_DIR",
)


class FolderSettingError(ValueError, ActionableError):
    """A variable that places one of the project's folders holds no usable folder."""


def _folder_from(name: str) -> Path | None:
    """The folder variable `name` names; None when it is unset or empty. A relative path is
    refused: the notebooks' kernels and the servers run in other working folders, where it
    would name another folder. So is a path to something that is not a folder."""
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise FolderSettingError(
            f"{name}={value} is a relative path, which names another folder from each working "
            f"folder: set it to an absolute one ({name}={Path(value).absolute()}), or unset it"
        )
    if path.exists() and not path.is_dir():
        raise FolderSettingError(
            f"{name}={value} is a file, not a folder: set it to a folder, or unset it"
        )
    return path


def check_folder_variables() -> None:
    """Raise FolderSettingError for the first folder variable that names no usable folder,
    before a command has done anything with it."""
    for name in FOLDER_VARIABLES:
        _folder_from(name)
    home = _folder_from("BREWOPS_HOME")
    if home is not None and not home.is_dir():
        raise FolderSettingError(
            f"BREWOPS_HOME={home} does not exist: set it to the project's checkout (the folder "
            "of infra/ and notebooks/), or unset it"
        )


def repo_root() -> Path:
    """$BREWOPS_HOME if set, else the checkout this package was installed from (editable
    install), else the cwd."""
    home = _folder_from("BREWOPS_HOME")
    if home is not None:
        return home.resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "infra").is_dir():
            return parent
    return Path.cwd()


# a variable set empty counts as unset, as BREWOPS_HOME does: Path("") would be the cwd
def build_dir() -> Path:
    return _folder_from("BREWOPS_BUILD_DIR") or repo_root() / "build"


def cache_dir() -> Path:
    """Downloaded data (the catalogue) lives outside git, shared between checkouts. A
    relative XDG_CACHE_HOME is ignored, as the XDG base directory specification says."""
    xdg = os.environ.get("XDG_CACHE_HOME") or ""
    default = (Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache") / "brewops"
    return _folder_from("BREWOPS_CACHE_DIR") or default


def local_state_dir() -> Path:
    """State of the local target: emulator endpoint, server pids, Firehose checkpoints."""
    return _folder_from("BREWOPS_LOCAL_STATE_DIR") or build_dir() / "local"


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
