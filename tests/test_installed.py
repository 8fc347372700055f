"""`brewops` says when the checkout's .venv no longer matches the requirements.lock and
pyproject.toml `make setup` installed it from (a `git pull` without `make` since)."""

from __future__ import annotations

import os
import sys
import timeit
from pathlib import Path

import pytest
from click.testing import CliRunner

from brewops import installed
from brewops.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout whose .venv `make setup` has just installed."""
    for name in installed.INSTALLED_FROM:
        (tmp_path / name).write_text(f"{name} as installed\n", encoding="utf-8")
    (tmp_path / ".venv").mkdir()
    installed.record(tmp_path / ".venv" / ".installed")
    return tmp_path.resolve()


def pull(checkout: Path, name: str) -> None:
    with (checkout / name).open("a", encoding="utf-8") as changed:
        changed.write("changed by a pull\n")


def test_a_fresh_install_says_nothing(checkout: Path):
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is None


@pytest.mark.parametrize("name", installed.INSTALLED_FROM)
def test_a_changed_lock_or_pyproject_is_told_with_the_command_to_run(checkout: Path, name: str):
    pull(checkout, name)
    warning = installed.stale_venv_warning(checkout / ".venv", checkout)
    assert warning is not None and "`make setup`" in warning


def test_the_same_contents_written_again_are_no_change(checkout: Path):
    # a checkout of another branch and back rewrites the files, dates and all
    for name in installed.INSTALLED_FROM:
        (checkout / name).write_text(
            (checkout / name).read_text(encoding="utf-8"), encoding="utf-8"
        )
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is None


def test_a_line_moved_from_one_file_to_the_other_is_a_change(checkout: Path):
    lock, pyproject = (checkout / name for name in installed.INSTALLED_FROM)
    lock.write_text("a\n", encoding="utf-8")
    pyproject.write_text("b\n", encoding="utf-8")
    installed.record(checkout / ".venv" / ".installed")
    lock.write_text("a\nb\n", encoding="utf-8")
    pyproject.write_text("", encoding="utf-8")
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is not None


def test_without_a_record_nothing_is_compared(checkout: Path):
    # a venv made otherwise (pip install in Colab, conda)
    (checkout / ".venv" / ".installed").unlink()
    pull(checkout, "requirements.lock")
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is None


def test_another_venv_than_the_checkouts_is_not_compared(checkout: Path, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / ".installed").write_text("0" * 64, encoding="utf-8")
    assert installed.stale_venv_warning(other, checkout) is None


def test_an_empty_record_made_before_the_digest_compares_dates(checkout: Path):
    stamp = checkout / ".venv" / ".installed"
    stamp.write_text("", encoding="utf-8")
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is None
    pull(checkout, "pyproject.toml")
    os.utime(checkout / "requirements.lock", (0, 0))  # not pulled: older than the install
    os.utime(stamp, (1, 1))  # installed before the pull
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is not None


def test_the_command_line_warns_once_on_stderr(checkout: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(installed, "CHECKOUT", checkout)
    monkeypatch.setattr(sys, "prefix", str(checkout / ".venv"))
    pull(checkout, "requirements.lock")
    result = CliRunner().invoke(main, ["data", "--help"])
    assert result.exit_code == 0
    assert result.stderr.count("make setup") == 1
    assert "make setup" not in result.stdout


@pytest.mark.skipif(
    not (ROOT / "requirements.lock").is_file(), reason="needs the checkout's requirements.lock"
)
def test_the_check_costs_milliseconds(checkout: Path):
    for name in installed.INSTALLED_FROM:
        (checkout / name).write_bytes((ROOT / name).read_bytes())
    installed.record(checkout / ".venv" / ".installed")
    seconds = min(
        timeit.repeat(
            lambda: installed.stale_venv_warning(checkout / ".venv", checkout), number=1, repeat=5
        )
    )
    assert seconds < 0.05


def test_the_punk_api_server_brewops_starts_does_not_repeat_it_in_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from click.testing import CliRunner

    from brewops import cli
    from brewops.local import processes, runtime

    monkeypatch.setattr(installed, "stale_venv_warning", lambda: "Warning: stale .venv")
    started = []

    def spawn_server(command: list[str], log: Path, port: int = 0) -> None:
        started.append(list(command))
        raise RuntimeError("not started: its command is all this needs")

    monkeypatch.setattr(processes, "spawn_server", spawn_server)
    with pytest.raises(RuntimeError, match="not started"):
        runtime._start_punkapi(tmp_path, tmp_path / "catalog.json")
    (command,) = started
    options = command[command.index("brewops.cli") + 1 : command.index("api")]

    typed = CliRunner().invoke(cli.main, ["api", "--help"])
    spawned = CliRunner().invoke(cli.main, [*options, "api", "--help"])

    assert typed.exit_code == spawned.exit_code == 0
    assert "Warning: stale .venv" in typed.stderr  # the user's own command says it
    assert "Warning: stale .venv" not in spawned.stderr  # the server's log does not


def test_a_venv_linked_from_elsewhere_is_recorded_and_compared(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    # .venv a symbolic link to a folder on another disk: the checkout is where the link is
    checkout = tmp_path.resolve()
    for name in installed.INSTALLED_FROM:
        (checkout / name).write_text(f"{name} as installed\n", encoding="utf-8")
    elsewhere = tmp_path_factory.mktemp("venv-disk").resolve() / "venv"
    elsewhere.mkdir()
    (checkout / ".venv").symlink_to(elsewhere)

    installed.record(checkout / ".venv" / ".installed")
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is None
    pull(checkout, "requirements.lock")
    assert installed.stale_venv_warning(checkout / ".venv", checkout) is not None
