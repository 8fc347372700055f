"""What Python's development mode (`python -X dev -X warn_default_encoding`) shows of the
package and a default run hides: text read or written in the locale's encoding where no
encoding was said (EncodingWarning), and child processes left running (ResourceWarning)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import psutil

from brewops.local import processes
from brewops.paths import repo_root

# Each call the package makes to read or write text, on files of a temporary folder, and
# to the tools it runs with text output (a stand-in that says nothing: only the encoding
# matters). An EncodingWarning raised in the package's code is an error; what a call makes
# of a stand-in otherwise is none of this test's business.
READS_AND_WRITES = textwrap.dedent(
    """
    import os, shutil, sys, warnings
    from pathlib import Path

    warnings.filterwarnings("error", category=EncodingWarning, module=r"brewops(\\.|$)")
    folder = Path(sys.argv[1])
    os.environ["BREWOPS_BUILD_DIR"] = str(folder / "build")
    os.environ["BREWOPS_LOCAL_STATE_DIR"] = str(folder / "state")
    true = shutil.which("true")

    def quietly(call, *args):
        try:
            call(*args)
        except Warning:
            raise
        except Exception:
            pass

    from brewops import catalog, files, infra, installed, lockfiles, provenance, summary
    from brewops import streaming_cli
    from brewops.local import deploy, processes
    from brewops.local.state import LocalState

    checkout = folder / "checkout"
    (checkout / ".venv").mkdir(parents=True)
    for name in installed.INSTALLED_FROM:
        shutil.copy(name, checkout)
    stamp = checkout / ".venv" / ".installed"
    installed.record(stamp)
    installed.is_current(stamp)
    installed.is_stale(stamp.parent, checkout)
    with files.exclusive(folder / "lock"):
        pass
    with files.shared(folder / "lock"):
        pass
    summary.record("01_notebook", beers=1)
    summary.record("01_notebook", styles=1)  # merged into what the file holds
    summary.read(summary.figures_file("01_notebook"))
    (folder / "state").mkdir()
    (folder / "state" / "state.json").write_text("{}", encoding="utf-8")
    quietly(LocalState.load)
    LocalState.recorded_services()
    (folder / "ids.json").write_text("[1]", encoding="utf-8")
    streaming_cli._ids_from_file(folder / "ids.json")
    remembered = streaming_cli.produced_ids_file("local")
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text("{}", encoding="utf-8")
    quietly(streaming_cli.read_remembered, "local", None)
    deploy.load_template(infra.repo_root() / "infra" / "template.yaml")
    infra._samconfig(None)
    lockfiles.lock_requirements()
    lockfiles.environment_pins()
    processes.log_tail(folder / "server.log")
    provenance.code_version()
    quietly(catalog._npm_pack, true, "punkapi-db@2.6.0", folder)
    quietly(infra._run_sam, [true, "deploy"], "stack")
    """
)


def test_the_package_says_the_encoding_of_the_text_it_reads_and_writes(tmp_path: Path):
    """Without one, text is read in the locale's encoding: on a machine whose locale is not
    UTF-8 (Windows, latin-1) the same file reads as other characters, or not at all."""
    result = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", "-c", READS_AND_WRITES, tmp_path],
        cwd=repo_root(),
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "EncodingWarning" not in result.stderr, result.stderr


def test_a_server_let_go_runs_on_without_a_warning_for_its_popen():
    """`local up` leaves its servers running, recorded in the local state: their Popen
    objects, collected, must not warn that their child still runs."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    pid = process.pid
    try:
        processes.let_go(process)
        with warnings.catch_warnings(record=True) as reported:
            warnings.simplefilter("always")
            del process
            gc.collect()
        assert [str(w.message) for w in reported if w.category is ResourceWarning] == []
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE, "it still runs"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_server_that_exited_is_let_go_with_its_exit_code():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    processes.let_go(process)
    assert process.returncode == 3
