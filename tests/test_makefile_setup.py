"""`make setup` on a machine where the set-up went wrong before: it must recover by itself.

The Makefile runs in a scratch folder with stand-ins for python3, the venv's python and uv,
so nothing is downloaded; the stand-ins log what they were asked to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# `python3 -m venv DIR` writes DIR/bin/python first and pip last: CUT_SHORT kills it between
FAKE_PYTHON3 = f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    cp "$(dirname "$0")/venv-python" "$3/bin/python"
    if [ -f "$(dirname "$0")/CUT_SHORT" ]; then rm "$(dirname "$0")/CUT_SHORT"; kill -9 $$; fi
    touch "$3/pip-installed"
    exit 0
fi
exec {sys.executable} "$@"
"""

# the venv's python: `-m pip install uv` writes a uv that logs its calls
FAKE_VENV_PYTHON = f"""#!/bin/sh
bin=$(dirname "$0")
if [ "$1" = -m ] && [ "$2" = pip ]; then
    [ -f "$bin/../pip-installed" ] || {{ echo "$0: No module named pip" >&2; exit 1; }}
    printf '#!/bin/sh\\necho "$*" >> "%s/../uv.log"\\n' "$bin" > "$bin/uv"
    chmod +x "$bin/uv"
    exit 0
fi
[ "$1" = -m ] && [ "$2" = ipykernel ] && exit 0
exec {sys.executable} "$@"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements.lock", "pyproject.toml", "package.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "package-lock.json", tmp_path / "package-lock.json")
    (tmp_path / "infra").mkdir()
    shutil.copy(ROOT / "infra" / "sam-requirements.lock", tmp_path / "infra")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("python3", FAKE_PYTHON3), ("venv-python", FAKE_VENV_PYTHON)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return tmp_path


def make_installed(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", f"PYTHON={checkout / 'tools' / 'python3'}", ".venv/.installed"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},  # make's messages in English
        timeout=60,
        check=False,
    )


def test_a_venv_cut_short_while_being_made_is_made_again(checkout: Path):
    # GIVEN a first set-up killed while `python3 -m venv` was installing pip
    (checkout / "tools" / "CUT_SHORT").touch()
    first = make_installed(checkout)
    assert first.returncode != 0 and (checkout / ".venv" / "bin" / "python").exists()
    # WHEN make runs again
    again = make_installed(checkout)
    # THEN it makes the venv again and installs the lock into it
    assert again.returncode == 0, again.stderr
    assert "No module named pip" not in again.stderr
    assert "pip sync" in (checkout / ".venv" / "uv.log").read_text()
    # and once it is made, make has nothing left to do
    assert "is up to date" in make_installed(checkout).stdout


def test_a_venv_of_another_python_is_replaced(checkout: Path):
    # GIVEN a complete .venv of another Python (its python fails the 3.11 check)
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "uv").write_text("#!/bin/sh\n")
    (bin_dir / "uv").chmod(0o755)
    (checkout / ".venv" / ".installed").touch()
    # WHEN make runs
    result = make_installed(checkout)
    # THEN the venv is made again with the 3.11 python3 and the lock installed into it
    assert result.returncode == 0, result.stderr
    assert (checkout / ".venv" / "pip-installed").exists()
    assert "pip sync" in (checkout / ".venv" / "uv.log").read_text()


def test_a_complete_venv_of_python_3_11_is_kept(checkout: Path):
    # GIVEN a .venv installed before the set-up marked the venvs it makes
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(checkout / "tools" / "venv-python", bin_dir / "python")
    for name in ("pip-installed", "kept", ".installed"):
        (checkout / ".venv" / name).touch()
    # WHEN make runs
    result = make_installed(checkout)
    # THEN the venv is kept as it is
    assert result.returncode == 0, result.stderr
    assert (checkout / ".venv" / "kept").exists()


@pytest.mark.parametrize(("target", "needs_npm_ci"), [("run", False), ("test", True)])
def test_only_the_tests_install_the_node_tools(checkout: Path, target: str, needs_npm_ci: bool):
    # without npm, `make run` gets as far as the fetch, which says what to do instead
    result = subprocess.run(
        ["make", "--dry-run", f"PYTHON={checkout / 'tools' / 'python3'}", target],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ("npm ci" in result.stdout) == needs_npm_ci
