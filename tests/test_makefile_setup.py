"""`make setup` on a machine where the set-up went wrong before: it must recover by itself.

The Makefile runs in a scratch folder with stand-ins for python3, the venv's python and uv,
so nothing is downloaded; the stand-ins log what they were asked to do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.commands import run_in_group
from fixtures.make import make_environment

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# quoted for the stand-ins' shell: the checkout's path may hold spaces
PYTHON = shlex.quote(sys.executable)

# `python3 -m venv DIR` writes DIR/bin/python first and pip last: CUT_SHORT kills it between
FAKE_PYTHON3 = f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    cp "$(dirname "$0")/venv-python" "$3/bin/python"
    if [ -f "$(dirname "$0")/CUT_SHORT" ]; then rm "$(dirname "$0")/CUT_SHORT"; kill -9 $$; fi
    touch "$3/pip-installed"
    exit 0
fi
exec {PYTHON} "$@"
"""

# the venv's python: `-m pip install uv` writes a uv that logs its calls
FAKE_VENV_PYTHON = f"""#!/bin/sh
bin=$(dirname "$0")
if [ "$1" = -m ] && [ "$2" = pip ]; then
    [ -f "$bin/../pip-installed" ] || {{ echo "$0: No module named pip" >&2; exit 1; }}
    # pip leaves an installed uv of the asked version as it is, file dates and all
    grep -q uv.log "$bin/uv" 2>/dev/null && exit 0
    printf '#!/bin/sh\\necho "$*" >> "%s/../uv.log"\\n' "$bin" > "$bin/uv"
    chmod +x "$bin/uv"
    exit 0
fi
# as ipykernel, which stages the kernel spec in a folder of $TMPDIR and leaves it there
[ "$1" = -m ] && [ "$2" = ipykernel ] && {{ mktemp -d > /dev/null; exit 0; }}
exec {PYTHON} "$@"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements.lock", "pyproject.toml", "package.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("uv-requirements.in", "uv-requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "package-lock.json", tmp_path / "package-lock.json")
    (tmp_path / "infra").mkdir()
    shutil.copy(ROOT / "infra" / "sam-requirements.lock", tmp_path / "infra")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("python3", FAKE_PYTHON3), ("venv-python", FAKE_VENV_PYTHON)):
        (tools / name).write_text(text, encoding="utf-8")
        (tools / name).chmod(0o755)
    return tmp_path


def make_installed(checkout: Path) -> subprocess.CompletedProcess[str]:
    return run_make(checkout, ".venv/.installed")


def run_make(checkout: Path, *arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """make ARGUMENTS in `checkout`, with its stand-in python3 and environment `variables`."""
    return run_in_group(
        ["make", f"PYTHON={checkout / 'tools' / 'python3'}", *arguments],
        cwd=checkout,
        capture_output=True,
        encoding="locale",
        # make's messages in English; UTF-8, or Python 3.11 cannot read the .pth of an
        # editable install whose path is not ASCII, and the venv's python fails to start
        env=make_environment(LC_ALL="C.UTF-8", **variables),
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
    assert "pip sync --quiet --require-hashes" in (checkout / ".venv" / "uv.log").read_text(
        encoding="utf-8"
    )
    # and once it is made, make has nothing left to do
    assert "is up to date" in make_installed(checkout).stdout


# a python that says it is 3.12 to the code it runs
PYTHON_3_12 = f"""#!/bin/sh
[ "$1" = -c ] || exit 1
exec {PYTHON} -c "import sys; sys.version_info = (3, 12, 0, 'final', 0); exec(sys.argv[1])" "$2"
"""


@pytest.mark.parametrize("python", [PYTHON_3_12, "#!/bin/sh\nexit 1\n"], ids=["3.12", "broken"])
def test_a_venv_of_another_python_is_replaced(checkout: Path, python: str):
    # GIVEN a complete .venv of another Python (its python fails the 3.11 check)
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(python, encoding="utf-8")
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "uv").write_text("#!/bin/sh\n", encoding="utf-8")
    (bin_dir / "uv").chmod(0o755)
    (checkout / ".venv" / ".installed").touch()
    # WHEN make runs
    result = make_installed(checkout)
    # THEN the venv is made again with the 3.11 python3 and the lock installed into it
    assert result.returncode == 0, result.stderr
    assert (checkout / ".venv" / "pip-installed").exists()
    assert "pip sync" in (checkout / ".venv" / "uv.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("uv", ["another", "pinned"])
def test_a_complete_venv_of_python_3_11_is_kept(checkout: Path, uv: str):
    # GIVEN a .venv installed before the set-up marked the venvs it makes, with a uv
    # of another version than the Makefile's, or of that version
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(checkout / "tools" / "venv-python", bin_dir / "python")
    for name in ("pip-installed", "kept", ".installed"):
        (checkout / ".venv" / name).touch()
    uv_log = checkout / ".venv" / "uv.log"
    (bin_dir / "uv").write_text(
        f'#!/bin/sh\necho "$*" >> "{uv_log}"\n' if uv == "pinned" else "", encoding="utf-8"
    )
    (bin_dir / "uv").chmod(0o755)
    os.utime(bin_dir / "uv", (0, 0))
    # WHEN make runs
    result = make_installed(checkout)
    # THEN the venv is kept as it is, and the lock installed with the Makefile's uv
    assert result.returncode == 0, result.stderr
    assert (checkout / ".venv" / "kept").exists()
    assert "pip sync --quiet --require-hashes" in uv_log.read_text(encoding="utf-8")
    # and make has nothing left to do, though pip left the uv there was as it was
    assert "is up to date" in make_installed(checkout).stdout


def make_dry_run(checkout: Path, target: str, *variables: str) -> subprocess.CompletedProcess[str]:
    """The commands make would run for `target`, without running them."""
    return run_in_group(
        ["make", "--dry-run", f"PYTHON={checkout / 'tools' / 'python3'}", *variables, target],
        cwd=checkout,
        capture_output=True,
        encoding="locale",
        env=make_environment(),
        timeout=60,
        check=True,
    )


def test_the_sam_cli_venv_installs_only_hashed_files(checkout: Path):
    result = make_dry_run(checkout, ".venv-sam/.installed")
    assert "pip sync --quiet --require-hashes --python .venv-sam/bin/python" in result.stdout


@pytest.mark.parametrize(
    ("target", "needs_npm_ci"), [("run", False), ("lint", False), ("test", True)]
)
def test_only_the_tests_install_the_node_tools(checkout: Path, target: str, needs_npm_ci: bool):
    # without npm, `make run` gets as far as the fetch, which says what to do instead
    result = make_dry_run(checkout, target)
    assert ("npm ci" in result.stdout) == needs_npm_ci


def test_the_node_tools_are_installed_from_npms_cache_when_it_has_them(checkout: Path):
    result = make_dry_run(checkout, "node_modules/.installed")
    assert "npm ci --prefer-offline" in result.stdout


def test_a_python3_of_another_version_is_refused_before_anything_is_made(checkout: Path):
    python = checkout / "tools" / "python3.12"
    python.write_text(PYTHON_3_12, encoding="utf-8")
    python.chmod(0o755)
    result = run_in_group(
        ["make", f"PYTHON={python}", ".venv/.installed"],
        cwd=checkout,
        capture_output=True,
        encoding="locale",
        env=make_environment(),
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "is 3.12: run make with PYTHON=python3.11" in result.stderr
    assert not (checkout / ".venv").exists()


def test_make_lock_resolves_hashed_pins_and_writes_the_unhashed_constraints(checkout: Path):
    result = make_dry_run(checkout, "lock")
    commands = result.stdout.replace("\\\n", " ").splitlines()  # recipes continued over lines
    compiles = [line for line in commands if " pip compile " in line]
    assert len(compiles) == 4
    assert any(
        "uv-requirements.in" in line and "-o uv-requirements.lock" in line for line in compiles
    )
    assert [line for line in compiles if "--generate-hashes" not in line] == []
    assert "brewops.lockfiles write-environment" in result.stdout
    assert "brewops.lockfiles write-constraints" in result.stdout


def test_uv_is_installed_by_hash(checkout: Path):
    result = make_dry_run(checkout, ".venv/bin/uv")
    assert (
        "pip install --quiet --disable-pip-version-check --require-hashes -r uv-requirements.lock"
        in result.stdout
    )
    assert "uv==" not in result.stdout  # no unhashed pin


def test_the_uv_lock_pins_one_version_of_uv_by_the_hashes_of_its_files():
    text = (ROOT / "uv-requirements.lock").read_text(encoding="utf-8").replace("\\\n", " ")
    (pin,) = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    requirement, *hashes = pin.split(" --hash=")
    assert requirement.strip().startswith("uv==")
    # a wheel for each platform uv is built for (Linux, macOS, Windows), and the sdist
    assert len(hashes) > 10 and all(h.strip().startswith("sha256:") for h in hashes)
    assert requirement.strip() in (ROOT / "uv-requirements.in").read_text(encoding="utf-8").split()


def test_a_uv_file_not_matching_the_hashes_is_refused(tmp_path: Path):
    # GIVEN a file of the pinned name and version, with other contents than the locked ones
    text = (ROOT / "uv-requirements.lock").read_text(encoding="utf-8")
    version = text.split("uv==")[1].split()[0]
    (tmp_path / f"uv-{version}-py3-none-any.whl").write_bytes(b"not the real uv")
    # WHEN pip installs the lock from there, as the Makefile does
    result = run_in_group(
        [sys.executable, "-m", "pip", "--isolated", "install", "--no-index",
         "--find-links", str(tmp_path), "--target", str(tmp_path / "installed"),
         "--require-hashes", "-r", str(ROOT / "uv-requirements.lock")],
        capture_output=True, encoding="locale", timeout=120, check=False,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    # THEN it refuses the file
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr
    assert not (tmp_path / "installed" / "uv").exists()


def test_the_set_up_leaves_nothing_in_the_temporary_folder(checkout: Path):
    temporary = checkout / "tmp"  # /tmp, which every user shares
    temporary.mkdir()

    assert run_make(checkout, ".venv/.installed", TMPDIR=str(temporary)).returncode == 0

    assert (checkout / ".venv" / ".installed").exists()
    assert list(temporary.iterdir()) == []


def test_the_install_records_what_it_was_installed_from(checkout: Path):
    from brewops.installed import digest, stale_venv_warning

    # GIVEN a fresh set-up
    assert make_installed(checkout).returncode == 0
    venv = checkout / ".venv"
    assert (venv / ".installed").read_text(encoding="utf-8").split() == [digest(checkout)]
    # THEN brewops has nothing to say
    assert stale_venv_warning(venv, checkout) is None
    # WHEN a pull changes the lock
    with (checkout / "requirements.lock").open("a", encoding="utf-8") as lock:
        lock.write("# pulled\n")
    # seconds later, as a pull is: file dates tick coarsely, and make takes a lock dated
    # the same tick as .installed for one installed already
    later = (venv / ".installed").stat().st_mtime + 10
    os.utime(checkout / "requirements.lock", (later, later))
    # THEN brewops says to run make setup, until it has run
    assert "make setup" in stale_venv_warning(venv, checkout)
    assert make_installed(checkout).returncode == 0
    assert stale_venv_warning(venv, checkout) is None


def test_a_new_pin_of_uv_is_installed_by_the_next_set_up(checkout: Path):
    # GIVEN a set-up done
    assert make_installed(checkout).returncode == 0
    # WHEN `make lock` (or a pull) changes the pin of uv
    later = (checkout / ".venv" / "bin" / "uv").stat().st_mtime + 10
    os.utime(checkout / "uv-requirements.lock", (later, later))
    # THEN make installs uv again, from the lock
    result = make_dry_run(checkout, ".venv/bin/uv")
    assert "--require-hashes -r uv-requirements.lock" in result.stdout


@pytest.mark.parametrize("name", ["requirements.lock", "pyproject.toml"])
def test_a_changed_lock_or_pyproject_is_installed_by_the_next_set_up(checkout: Path, name: str):
    # GIVEN a set-up done
    assert make_installed(checkout).returncode == 0
    # WHEN a pull changes the lock or the project's dependencies
    with (checkout / name).open("a", encoding="utf-8") as changed:
        changed.write("# pulled\n")
    later = (checkout / ".venv" / ".installed").stat().st_mtime + 10
    os.utime(checkout / name, (later, later))
    # THEN make installs the lock again, and records it
    result = make_dry_run(checkout, ".venv/.installed")
    assert "pip sync --quiet --require-hashes" in result.stdout
    assert "brewops.installed record" in result.stdout


def test_a_set_up_without_the_network_says_it_needs_it(checkout: Path):
    # GIVEN no package index to reach: pip finds no uv, as it says offline
    venv_python = checkout / "tools" / "venv-python"
    venv_python.write_text(
        "#!/bin/sh\necho 'ERROR: No matching distribution found for uv==0.13.8' >&2\nexit 1\n",
        encoding="utf-8",
    )
    # WHEN make sets up
    result = make_installed(checkout)
    # THEN it fails, saying that the set-up needs the network
    assert result.returncode != 0
    assert "package index, which needs the network" in result.stderr


def test_a_lock_and_pyproject_only_touched_are_not_installed_again_offline(checkout: Path):
    # GIVEN a set-up done, then no package index to reach: uv fails whatever it is asked
    assert make_installed(checkout).returncode == 0
    uv = checkout / ".venv" / "bin" / "uv"
    uv.write_text(
        '#!/bin/sh\necho "uv $*" >&2\necho "error: Failed to fetch: dns error" >&2\nexit 2\n',
        encoding="utf-8",
    )
    # WHEN the lock and pyproject.toml are touched after the set-up, their text as
    # installed (a branch switched and back): dates in the past, so that the set-up's
    # own dates, now, come after them
    installed_at = time.time() - 100
    for name in ("uv-requirements.lock", ".venv/.created", ".venv/bin/uv", ".venv/.installed"):
        os.utime(checkout / name, (installed_at, installed_at))
    for name in ("requirements.lock", "pyproject.toml"):
        os.utime(checkout / name, (installed_at + 50, installed_at + 50))
    # THEN the set-up keeps the venv without asking uv, and is then up to date
    result = make_installed(checkout)
    assert result.returncode == 0, result.stderr
    assert "uv " not in result.stderr
    assert "keeping .venv: installed from" in result.stdout
    assert "is up to date" in make_installed(checkout).stdout


@pytest.mark.parametrize("target", ["bogus", "", "local aws"])
def test_make_run_refuses_another_target_before_setting_anything_up(checkout: Path, target: str):
    result = run_make(checkout, f"TARGET={target}", "run")
    assert result.returncode != 0
    assert f"TARGET={target}: make run takes TARGET=local or TARGET=aws" in result.stderr
    assert not (checkout / ".venv").exists()


@pytest.mark.parametrize("target", ["local", "aws"])
def test_make_run_runs_the_notebooks_against_the_target_given(checkout: Path, target: str):
    result = make_dry_run(checkout, "run", f"TARGET={target}")
    assert result.stdout.splitlines()[-1] == f".venv/bin/brewops run --target {target}"


def make_run_with_a_target_exported(checkout: Path, exported: str, *arguments: str):
    return run_in_group(
        ["make", "--dry-run", f"PYTHON={checkout / 'tools' / 'python3'}", "run", *arguments],
        cwd=checkout,
        capture_output=True,
        encoding="locale",
        env=make_environment(LC_ALL="C.UTF-8", TARGET=exported),
        timeout=60,
        check=False,
    )


def test_make_run_says_when_its_target_comes_from_the_shell(checkout: Path):
    # another project's TARGET=aws, left exported, would run the notebooks against AWS
    result = make_run_with_a_target_exported(checkout, "aws")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "make run: TARGET=aws, from the environment; unset it, or give make its own: "
        "make run TARGET=local"
    )
    assert result.stdout.splitlines()[-1] == ".venv/bin/brewops run --target aws"


def test_make_run_refuses_a_target_triple_exported_in_the_shell(checkout: Path):
    result = make_run_with_a_target_exported(checkout, "x86_64-unknown-linux-gnu")

    assert result.returncode != 0
    assert "TARGET=x86_64-unknown-linux-gnu: make run takes TARGET=local or TARGET=aws" in (
        result.stderr
    )


def test_make_run_takes_the_target_given_on_its_command_line_over_the_shells(checkout: Path):
    result = make_run_with_a_target_exported(checkout, "local", "TARGET=aws")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ".venv/bin/brewops run --target aws"
    assert "from the environment" not in result.stdout


def test_make_coverage_sets_up_as_make_test_does(checkout: Path):
    # the suite needs the same set-up under coverage: the catalogue, the node tools, the SAM CLI
    set_up_for_tests = make_dry_run(checkout, "test").stdout.split(".venv/bin/python -m pytest")[0]
    measured = make_dry_run(checkout, "coverage").stdout
    assert measured.startswith(f"{set_up_for_tests}rm -rf build/coverage\n")


# the venv's python once set up: logs its calls; `-m coverage run` fails when FAIL is there
FAKE_SET_UP_PYTHON = """#!/bin/sh
bin=$(dirname "$0")
echo "$*" >> "$bin/../python.log"
[ "$2 $3" = "coverage run" ] && [ -f "$bin/../FAIL" ] && exit 1
exit 0
"""


SET_UP = (".venv/.created", ".venv/bin/uv", ".venv/.installed", ".venv-sam/.installed",
          "node_modules/.installed")  # fmt: skip


@pytest.fixture
def set_up(checkout: Path) -> Path:
    """The checkout after `make setup` and the tests' tools: only recipes are left to run."""
    for name, text in (("python", FAKE_SET_UP_PYTHON), ("brewops", "#!/bin/sh\n")):
        (checkout / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
        (checkout / ".venv" / "bin" / name).write_text(text, encoding="utf-8")
        (checkout / ".venv" / "bin" / name).chmod(0o755)
    earlier = time.time() - 3600  # the lock files, older than what was installed from them
    for path in checkout.rglob("*"):
        os.utime(path, (earlier, earlier))
    for name in SET_UP:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).touch()
    return checkout


@pytest.mark.parametrize("tests_fail", [False, True], ids=["passed", "failed"])
def test_make_coverage_reports_after_the_tests_and_fails_as_they_do(set_up: Path, tests_fail: bool):
    if tests_fail:
        (set_up / ".venv" / "FAIL").touch()
    (set_up / "build" / "coverage").mkdir(parents=True)
    (set_up / "build" / "coverage" / ".coverage.of-an-earlier-run").touch()

    result = run_make(set_up, "coverage", "PYTEST_ARGS=tests/test_transform.py -x")

    assert (result.returncode != 0) == tests_fail, result.stderr
    # an earlier run's data gone first; the report and its HTML after the tests, either way
    assert not (set_up / "build" / "coverage").exists()
    assert (set_up / ".venv" / "python.log").read_text(encoding="utf-8").splitlines() == [
        "-m coverage run -m pytest -n 2 tests/test_transform.py -x",
        "-m coverage combine --quiet",
        "-m coverage report",
        "-m coverage html --quiet",
    ]
    assert result.stdout.endswith("HTML report: build/coverage/html/index.html\n")
