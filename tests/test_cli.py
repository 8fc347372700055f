"""The command line turns errors a user can act on into one clean line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BREWOPS = Path(sys.executable).parent / "brewops"


def test_a_target_that_is_not_running_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "nothing-here"))
    result = subprocess.run([BREWOPS, "stream", "drain"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "brewops local up" in result.stderr


def test_a_bad_catalogue_file_is_one_line_too(tmp_path):
    broken = tmp_path / "catalogue.json"
    broken.write_text("{not json")
    result = subprocess.run(
        [BREWOPS, "api", "serve", "--catalog", str(broken), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
