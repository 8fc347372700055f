"""Where the project's files go, from the environment: a variable set empty is one not set,
as for BREWOPS_HOME and as the XDG base directory specification says of XDG_CACHE_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from brewops import paths


@pytest.mark.parametrize("variable", ["BREWOPS_CACHE_DIR", "XDG_CACHE_HOME"])
def test_an_empty_cache_variable_is_not_the_working_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
):
    monkeypatch.delenv("BREWOPS_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(variable, "")
    assert paths.cache_dir() == tmp_path / ".cache" / "brewops"


@pytest.mark.parametrize("variable", ["BREWOPS_BUILD_DIR", "BREWOPS_LOCAL_STATE_DIR"])
def test_an_empty_build_or_state_variable_is_not_the_working_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
):
    monkeypatch.delenv("BREWOPS_BUILD_DIR", raising=False)
    monkeypatch.delenv("BREWOPS_LOCAL_STATE_DIR", raising=False)
    monkeypatch.setenv("BREWOPS_HOME", str(tmp_path))
    monkeypatch.setenv(variable, "")
    assert paths.build_dir() == tmp_path.resolve() / "build"
    assert paths.local_state_dir() == tmp_path.resolve() / "build" / "local"
