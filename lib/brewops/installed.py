"""Whether the checkout's .venv still matches the files `make setup` installed it from.

A `git pull` can change requirements.lock or pyproject.toml; `make` then installs them,
but `.venv/bin/brewops` run straight away would use the packages of before. `make setup`
records a digest of those files in .venv/.installed (`python -m brewops.installed record
.venv/.installed`); the command line compares it with the files on start, which costs a
hash of about 300 kB. `make` asks the record too (`python -m brewops.installed check
.venv/.installed`): files only touched since (a branch switched and back, a save without
a change) are installed already, and it then asks no package index, offline too.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

INSTALLED_FROM = ("requirements.lock", "pyproject.toml")
RECORD = ".installed"  # in the venv; the Makefile's $(STAMP)
# lib/brewops/installed.py: the checkout an editable install runs from
CHECKOUT = Path(__file__).resolve().parents[2]


def digest(checkout: Path) -> str:
    """sha256 of the files the venv is installed from."""
    hashed = hashlib.sha256()
    for name in INSTALLED_FROM:
        hashed.update(f"{name}\0".encode())
        hashed.update((checkout / name).read_bytes())
    return hashed.hexdigest()


def record(stamp: Path) -> None:
    """Write the digest of the checkout's files into `stamp`, .venv/.installed."""
    # absolute, not resolved: a .venv linked to another disk is still the checkout's
    stamp.write_text(digest(stamp.absolute().parent.parent) + "\n", encoding="utf-8")


def is_current(stamp: Path) -> bool:
    """Whether `stamp`, .venv/.installed, records the digest of the checkout's files as
    they are: the venv is installed from them. False without a record or a digest in it."""
    try:
        recorded = stamp.read_text(encoding="utf-8").strip()
        return recorded == digest(stamp.absolute().parent.parent)
    except OSError:
        return False


def is_stale(venv: Path, checkout: Path) -> bool:
    """Whether `venv`, made by `make setup` in `checkout`, was installed from other
    versions of the files than the checkout's. False when there is nothing to compare:
    no record (a venv made otherwise: pip, Colab) or no such files."""
    stamp = venv / RECORD
    try:
        recorded = stamp.read_text(encoding="utf-8").strip()
        if re.fullmatch(r"[0-9a-f]{64}", recorded):
            return recorded != digest(checkout)
        # an empty record, made before the digest was: compare dates, as make does
        installed_at = stamp.stat().st_mtime
        return any((checkout / name).stat().st_mtime > installed_at for name in INSTALLED_FROM)
    except OSError:
        return False


def stale_venv_warning(venv: Path | None = None, checkout: Path | None = None) -> str | None:
    """A line to show when the running venv (`venv`) is the checkout's .venv and no
    longer matches its requirements.lock or pyproject.toml; None otherwise."""
    venv = Path(sys.prefix) if venv is None else venv
    checkout = CHECKOUT if checkout is None else checkout
    if venv.resolve() != (checkout / ".venv").resolve() or not is_stale(venv, checkout):
        return None
    names = " or ".join(INSTALLED_FROM)
    return (
        f"Warning: {venv} was installed from another {names} than the checkout's (changed "
        "since, by a git pull?): its packages may not be the pinned ones. Run `make setup` "
        f"in {checkout} to install them."
    )


if __name__ == "__main__":
    if sys.argv[1:2] not in (["record"], ["check"]) or len(sys.argv) != 3:
        sys.exit("usage: python -m brewops.installed record|check .venv/.installed")
    if sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif not is_current(Path(sys.argv[2])):
        sys.exit(1)
