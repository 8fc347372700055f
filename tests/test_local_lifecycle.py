"""`brewops local up | down | status`: processes that outlive the command, a recorded state,
idempotent starts, stale states cleaned up."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import botocore.utils
import psutil
import pytest
import requests
from click.testing import CliRunner

from brewops import local, paths
from brewops.environ import bypass_proxy_for_loopback
from brewops.local import processes
from brewops.local.cli import local as local_cli
from brewops.local.state import LocalState, Service, UnreadableStateError
from fixtures.commands import run_in_group
from fixtures.json_schemas import renamed, schema_errors
from fixtures.local import exited, local_command


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "local"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(directory))
    return directory


def kill(service: Service) -> None:
    """SIGKILL a server of the local target and wait until it has gone."""
    os.kill(service.pid, 9)
    psutil.Process(service.pid).wait(timeout=10)


def spawn_service(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[bytes], Service]:
    process = processes.spawn(
        [sys.executable, "-c", f"import time; time.sleep({seconds})"], tmp_path / "sleep.log"
    )
    return process, processes.service(process, 0, "http://127.0.0.1:9", tmp_path / "sleep.log")


def running_children() -> set[int]:
    children = psutil.Process().children(recursive=True)
    return {p.pid for p in children if p.status() != psutil.STATUS_ZOMBIE}


def a_state(**fields) -> LocalState:
    defaults = {
        "endpoint_url": "http://127.0.0.1:1",
        "region": "us-east-1",
        "stack_name": "brewops-dev",
        "started_at": "2024-01-01T00:00:00+00:00",
        "services": {"emulator": Service(1, 1, "http://127.0.0.1:1", "e.log", 1.5)},
    }
    return LocalState(**{**defaults, **fields})


def test_state_round_trips_through_its_file(state_dir: Path) -> None:
    from brewops.local.state import RunProcess

    state = a_state(
        outputs={"BucketName": "b"},
        already_running=True,
        run=RunProcess(7, 1.5, 0.5),
        left_by=RunProcess(6, 1.0),
    )
    path = state.save()
    assert path == state_dir / "state.json"
    assert {"already_running", "left_by"}.isdisjoint(json.loads(path.read_text(encoding="utf-8")))
    loaded = LocalState.load()
    assert loaded == LocalState(**{**state.__dict__, "already_running": False, "left_by": None})


@pytest.mark.emulator
def test_cli_up_leaves_the_servers_running_and_down_stops_them(
    state_dir: Path, catalog_path: Path
) -> None:
    checkpoint = paths.firehose_checkpoints_dir(state_dir) / "brewops-dev-raw.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}", encoding="utf-8")  # a drain's position in an emulator that died

    started = local_command("up", "--no-deploy", "--catalog", str(catalog_path), env_dir=state_dir)
    assert started.returncode == 0, started.stderr
    assert "Ready in" in started.stdout
    assert not checkpoint.exists(), "a new emulator's streams start without old positions"

    # the command has exited; its servers have not
    state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    pids = {name: service["pid"] for name, service in state["services"].items()}
    assert set(pids) == {"emulator", "punkapi"}
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    assert requests.get(f"{state['punkapi_url']}/beers?per_page=1", timeout=5).json()[0]["id"] == 1
    assert requests.get(f"{state['endpoint_url']}/moto-api/config", timeout=5).ok
    emulator_log = (state_dir / "logs" / "emulator.log").read_text(encoding="utf-8")
    assert "GET /moto-api/config" not in emulator_log, "no line per request: streams are long"
    assert state["region"] == "us-east-1" and state["deployed"] is False

    again = local_command("up", "--no-deploy", "--catalog", str(catalog_path), env_dir=state_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Already running")
    assert (
        json.loads((state_dir / "state.json").read_text(encoding="utf-8"))["services"]
        == state["services"]
    )

    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_text("{}", encoding="utf-8")  # a drain's position in this emulator's streams

    stopped = local_command("down", env_dir=state_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert not (state_dir / "state.json").exists()
    assert not checkpoint.exists(), "positions in the emulator's streams end with it"
    assert (state_dir / "logs" / "emulator.log").is_file(), "the logs are kept"
    assert all(exited(pid) for pid in pids.values())
    assert local_command("status", env_dir=state_dir).returncode == 1


def test_a_stale_state_is_cleaned_up(state_dir: Path, tmp_path: Path) -> None:
    dead, dead_service = spawn_service(tmp_path, 0)
    dead.wait()
    survivor, survivor_service = spawn_service(tmp_path, 60)
    LocalState(
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        stack_name="brewops-dev",
        started_at="2024-01-01T00:00:00+00:00",
        services={"emulator": dead_service, "punkapi": survivor_service},
    ).save()

    assert local.status() is None

    assert not (state_dir / "state.json").exists()
    assert survivor.wait(timeout=10) is not None  # stopped along with the state


@pytest.mark.parametrize(
    "recorded",
    [{"create_time": 1.0, "since_boot": 1.0}, {"create_time": 1.0, "since_boot": None}],
    ids=["started-another-time", "state-without-since-boot"],
)
def test_a_recycled_pid_is_not_taken_for_the_service(
    tmp_path: Path, recorded: dict[str, float | None]
) -> None:
    process, service = spawn_service(tmp_path, 60)
    try:
        assert processes.is_running(service)
        # a state written before since_boot was kept still finds its server
        assert processes.is_running(Service(**{**service.__dict__, "since_boot": None}))
        assert not processes.is_running(Service(**{**service.__dict__, **recorded}))
    finally:
        processes.stop(service)
    assert process.poll() is not None


@pytest.mark.parametrize("step", [3600.0, -3600.0], ids=["forward", "back"])
def test_a_step_of_the_wall_clock_leaves_the_service_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: float
) -> None:
    process, service = spawn_service(tmp_path, 60)
    # the wall clock set an hour on or back (NTP, by hand, a VM restored) moves the
    # machine's boot time as psutil tells it, and with it its processes' start times
    booted = psutil.boot_time()
    monkeypatch.setattr(psutil._psplatform, "boot_time", lambda: booted + step)
    try:
        assert processes.is_running(service)
        processes.stop(service)  # what `down` stops is found, not left running unrecorded
        assert process.poll() is not None
    finally:
        monkeypatch.undo()
        processes.stop(service)


def test_a_server_that_fails_to_start_leaves_nothing_behind(
    state_dir: Path, tmp_path: Path
) -> None:
    bad_catalog = tmp_path / "catalog.json"
    bad_catalog.write_text("not json", encoding="utf-8")
    before = running_children()

    with pytest.raises(processes.ServiceError, match="Punk API server exited"):
        local.up(catalog=bad_catalog)

    assert not (state_dir / "state.json").exists()
    assert running_children() - before == set()  # the emulator it had started is stopped too


def test_ctrl_c_while_the_servers_start_leaves_nothing_behind(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(processes, "wait_ready", interrupted)
    before = running_children()

    with pytest.raises(KeyboardInterrupt):
        local.up(deploy=False, catalog=catalog_path)

    assert not (state_dir / "state.json").exists()
    assert running_children() - before == set()


def test_ctrl_c_while_the_servers_start_stops_them_without_waiting_for_the_translation(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import deploy as deployment

    released, translated = threading.Event(), threading.Event()

    def slow_translation(*args: object, **kwargs: object) -> None:
        released.wait(30)  # the seconds SAM's translation takes, and more
        translated.set()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(deployment, "prepare", slow_translation)
    monkeypatch.setattr(processes, "wait_ready", interrupted)
    before = running_children()
    try:
        with pytest.raises(KeyboardInterrupt):
            local.up(catalog=catalog_path)

        assert not translated.is_set(), "Ctrl-C waited for the translation to end"
        assert not (state_dir / "state.json").exists()
        assert running_children() - before == set()
    finally:
        released.set()


def test_a_punk_api_server_that_cannot_be_spawned_leaves_no_emulator_behind(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_more_processes(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    from brewops.local import runtime

    monkeypatch.setattr(runtime, "_start_punkapi", no_more_processes)
    before = running_children()

    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        local.up(deploy=False, catalog=catalog_path)

    assert not (state_dir / "state.json").exists()
    assert running_children() - before == set()  # not recorded: `down` could not find it


def no_room_for_the_state(self: LocalState) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(paths.local_state_dir()))


def test_a_state_that_cannot_be_recorded_leaves_no_server_behind(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalState, "save", no_room_for_the_state)
    before = running_children()

    with pytest.raises(OSError, match="No space left"):
        local.up(deploy=False, catalog=catalog_path)

    assert running_children() - before == set()  # `down` could not have found them


def a_source_file_gone() -> str:  # a checkout that changes while it is read
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", "gone.py")


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("failing", "failure"),
    [
        ((LocalState, "save", no_room_for_the_state), OSError),
        (("brewops.local.runtime.code_digest", a_source_file_gone), FileNotFoundError),
    ],
    ids=["state-cannot-be-saved", "code-cannot-be-read"],
)
def test_a_restarted_server_that_cannot_be_recorded_is_not_left_behind(
    state_dir: Path,
    catalog_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: tuple[Any, ...],
    failure: type[Exception],
) -> None:
    state = local.up(deploy=False, catalog=catalog_path)
    try:
        kill(state.services["punkapi"])
        before = running_children()

        with monkeypatch.context() as patched:
            patched.setattr(*failing)
            with pytest.raises(failure):
                local.up(deploy=False)

        assert running_children() - before == set()  # not recorded: `down` could not find it
    finally:
        local.down()


def test_a_restarted_server_that_cannot_be_recorded_is_stopped_and_its_popen_let_go(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import runtime

    restarted: list[int] = []

    def a_sleeper(log_dir: Path, catalog: Path, port: int = 0):
        process, service = spawn_service(tmp_path, 60)
        restarted.append(process.pid)
        return process, service

    monkeypatch.setattr(runtime, "_start_punkapi", a_sleeper)
    monkeypatch.setattr(LocalState, "save", no_room_for_the_state)
    gone = Service(1, 9, "http://127.0.0.1:9", str(tmp_path / "punkapi.log"), 1.5)
    state = a_state(services={"punkapi": gone}, catalog="c.json")

    with warnings.catch_warnings(record=True) as reported:
        warnings.simplefilter("always")
        with pytest.raises(OSError, match="No space left"):
            runtime._restart_punkapi(state)
        gc.collect()  # the Popen of the server it stopped, with the failure's frames

    assert exited(restarted[0])
    # under `python -X dev`, a Popen collected before its child was waited for says the
    # child "is still running"
    assert [str(w.message) for w in reported if w.category is ResourceWarning] == []


def test_a_server_that_exits_without_a_word_on_a_full_disk_says_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "silent.log"
    process = processes.spawn([sys.executable, "-c", "raise SystemExit(1)"], log)
    process.wait()
    usage = shutil.disk_usage(tmp_path)

    def full(path: object) -> object:
        return usage._replace(free=8192)

    with pytest.raises(processes.ServiceError) as plenty:
        processes.wait_ready("Silent server", process, lambda: False, log, timeout=30)
    monkeypatch.setattr(shutil, "disk_usage", full)
    with pytest.raises(processes.ServiceError) as no_room:
        processes.wait_ready("Silent server", process, lambda: False, log, timeout=30)

    assert str(plenty.value).endswith(f"Its log {log} is empty.")
    assert f"Its log {log} is empty, and its disk has 8 kB free" in str(no_room.value)
    assert "BREWOPS_BUILD_DIR" in str(no_room.value)


def _stand_in_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two stand-in servers recorded as the running local target of `run`, both answering:
    (their processes and services by name, their services by name)."""
    from brewops.local import runtime

    (tmp_path / "emulator").mkdir()
    started = {
        "emulator": spawn_service(tmp_path / "emulator", 60),
        "punkapi": spawn_service(tmp_path, 60),
    }
    services = {name: service for name, (_, service) in started.items()}
    a_state(
        services=services,
        catalog="c.json",
        punkapi_code_digest=runtime.code_digest(),
        run=run,
    ).save()
    monkeypatch.setattr(processes, "answers", lambda url, timeout=1.0: True)
    return started, services


@pytest.mark.emulator
@pytest.mark.parametrize("for_run", [True, False], ids=["brewops-run", "local-up"])
def test_up_takes_over_a_target_whose_run_ended_without_stopping_it(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, for_run: bool
) -> None:
    from brewops.local import runtime
    from brewops.local.state import RunProcess

    # what a `brewops run` killed with SIGKILL leaves: its target up, recorded as its own
    killed_run = RunProcess(pid=os.getpid(), create_time=1.5)  # its pid since given to another
    started, services = _stand_in_target(tmp_path, monkeypatch, run=killed_run)
    try:
        state = runtime.up(deploy=False, for_run=for_run)
        again = runtime.up(deploy=False, for_run=for_run)
    finally:
        local.down()
        for process, _ in started.values():
            process.wait(timeout=10)

    assert state.already_running and state.left_by == killed_run
    assert state.services == services  # the same servers, not a second target
    # a run stops it when done; `brewops local up` keeps it running until `local down`
    assert state.run == (processes.this_run() if for_run else None)
    note = runtime.taken_over_note(state)
    if for_run:
        assert note is None
    else:
        assert note is not None and "`brewops run` (pid " in note
        assert "until `brewops local down`" in note
    assert again.run == state.run and again.left_by is None  # taken over once


def test_up_leaves_a_target_to_the_run_that_started_it_while_that_run_goes_on(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import runtime

    running_run = processes.this_run()
    started, _ = _stand_in_target(tmp_path, monkeypatch, run=running_run)
    try:
        state = runtime.up(deploy=False, for_run=True)
    finally:
        local.down()
        for process, _ in started.values():
            process.wait(timeout=10)

    assert state.left_by is None and state.run == running_run


@pytest.mark.parametrize("then", ["run-ends", "local-up", "starter-goes-on"])
def test_a_run_stops_a_target_whose_starter_was_killed_while_it_used_it(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """A run finds the target started by another run, still going; that run is killed
    (SIGKILL) while this one uses the target: no other run would stop it."""
    from brewops import runner
    from brewops.local import runtime
    from brewops.local.state import RunProcess

    (tmp_path / "starter").mkdir()
    starter_process, starter = spawn_service(tmp_path / "starter", 60)  # the other run
    starting_run = RunProcess(starter.pid, starter.create_time, starter.since_boot)
    started, services = _stand_in_target(tmp_path, monkeypatch, run=starting_run)
    # the stand-in servers take no stack
    monkeypatch.setattr(local, "up", lambda **kwargs: runtime.up(deploy=False, **kwargs))
    try:
        with runner.target_services("local"):
            if then != "starter-goes-on":
                kill(starter)
            if then == "local-up":
                runtime.up(deploy=False)  # a user's: it runs until `brewops local down`
        left = LocalState.load()
        running = {name: processes.is_running(s) for name, s in services.items()}
    finally:
        local.down()
        starter_process.kill()  # harmless once it has exited
        for process in [starter_process, *(process for process, _ in started.values())]:
            process.wait(timeout=10)

    if then == "run-ends":
        # THEN this run stopped it, as the killed one would have
        assert left is None
        assert running == {"emulator": False, "punkapi": False}
    else:
        assert left is not None and running == {"emulator": True, "punkapi": True}
        # a user's `up` holds it until `local down`; a run going on stops it itself
        assert left.run == (None if then == "local-up" else starting_run)


def test_up_again_is_harmless(
    local_stack: LocalState, local_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))

    again = local.up()

    assert again.already_running is True
    assert again.endpoint_url == local_stack.endpoint_url
    assert again.services == local_stack.services
    assert again.outputs == local_stack.outputs


@pytest.mark.emulator
def test_status_reports_the_running_target(
    local_stack: LocalState, local_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    runner = CliRunner()

    as_json = runner.invoke(local_cli, ["status", "--json"])
    assert as_json.exit_code == 0, as_json.output
    reported = json.loads(as_json.output)
    assert reported["running"] is True
    assert reported["endpoint_url"] == local_stack.endpoint_url
    assert reported["outputs"]["BucketName"] == local_stack.outputs["BucketName"]
    assert schema_errors("local_status", reported) == []
    assert schema_errors("local_status", renamed(reported, ("endpoint_url",), "endpoint"))
    assert schema_errors("local_status", renamed(reported, ("services", "emulator", "pid"), "id"))

    human = runner.invoke(local_cli, ["status"])
    assert human.exit_code == 0
    assert local_stack.endpoint_url in human.output
    assert local_stack.outputs["StreamName"] in human.output
    assert f"AWS_ENDPOINT_URL={local_stack.endpoint_url}" in human.output


DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing answers there
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")


@pytest.fixture
def shell_with_a_dead_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("no_proxy", "NO_PROXY"):  # put back after the test by shell_proxy_settings
        monkeypatch.delenv(name, raising=False)


def proxy_for(url: str) -> dict[str, str]:
    """The proxies requests and botocore would use for `url`, from the environment."""
    return {
        "requests": requests.utils.get_environ_proxies(url).get("http", ""),
        "botocore": botocore.utils.get_environ_proxies(url).get("http", ""),
    }


def test_reading_the_target_keeps_this_machine_off_the_shells_proxy(
    state_dir: Path, tmp_path: Path, shell_with_a_dead_proxy: None
) -> None:
    assert proxy_for("http://127.0.0.1:5000") == {"requests": DEAD_PROXY, "botocore": DEAD_PROXY}
    process, emulator = spawn_service(tmp_path, 60)
    try:
        a_state(services={"emulator": emulator}, deployed=True).save()

        assert local.status() is not None
    finally:
        process.kill()
        process.wait()

    for url in ("http://127.0.0.1:5000/v2", "http://localhost:5000"):
        assert proxy_for(url) == {"requests": "", "botocore": ""}, url
    # everything else, AWS on the aws target, still goes through it
    aws = "https://cloudformation.us-east-1.amazonaws.com"
    assert proxy_for(aws) == {"requests": DEAD_PROXY, "botocore": DEAD_PROXY}
    assert os.environ["no_proxy"] == os.environ["NO_PROXY"] == "127.0.0.1,localhost,::1"


def test_no_target_to_read_leaves_the_shells_proxy_settings_alone(
    state_dir: Path, shell_with_a_dead_proxy: None
) -> None:
    before = dict(os.environ)

    assert local.status() is None

    assert dict(os.environ) == before


@pytest.mark.parametrize("recorded", [False, True], ids=["nothing recorded", "emulator gone"])
def test_a_down_with_nothing_to_reach_leaves_the_shells_proxy_settings_alone(
    state_dir: Path, shell_with_a_dead_proxy: None, recorded: bool
) -> None:
    if recorded:  # its emulator (pid 1 started at another time) has exited: no stack to delete
        a_state(deployed=True).save()
    before = dict(os.environ)

    assert (local.down() is not None) == recorded

    assert dict(os.environ) == before


def test_an_up_that_fails_leaves_the_shells_proxy_settings_alone(
    state_dir: Path, tmp_path: Path, shell_with_a_dead_proxy: None
) -> None:
    before = dict(os.environ)

    with pytest.raises(FileNotFoundError, match="no SAM template"):
        local.up(template=tmp_path / "missing.yaml")

    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ({"NO_PROXY": "corp.example"}, "corp.example,127.0.0.1,localhost,::1"),
        ({"no_proxy": "corp.example, 127.0.0.1"}, "corp.example,127.0.0.1,localhost,::1"),
        ({"no_proxy": "", "NO_PROXY": ".corp.example"}, ".corp.example,127.0.0.1,localhost,::1"),
        ({"NO_PROXY": "localhost,::1,127.0.0.1"}, "localhost,::1,127.0.0.1"),
    ],
)
def test_the_shells_own_no_proxy_entries_are_kept(
    shell: dict[str, str],
    expected: str,
    shell_with_a_dead_proxy: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in shell.items():
        monkeypatch.setenv(name, value)

    bypass_proxy_for_loopback()
    bypass_proxy_for_loopback()  # once is enough: nothing is added twice

    assert os.environ["no_proxy"] == os.environ["NO_PROXY"] == expected


@pytest.mark.emulator
def test_up_reaches_its_own_servers_past_a_proxy_set_in_the_shell(
    state_dir: Path, catalog_path: Path
) -> None:
    shell = {name: DEAD_PROXY for name in PROXY_VARIABLES}
    environment = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    try:
        # without the proxy bypassed, `up` waits START_TIMEOUT (120 s) for servers it
        # asks through the dead proxy
        started = run_in_group(
            [sys.executable, "-m", "brewops.cli", "local", "up", "--no-deploy",
             "--catalog", str(catalog_path)],
            capture_output=True, encoding="locale", timeout=90,
            env={**environment, **shell, "BREWOPS_LOCAL_STATE_DIR": str(state_dir)},
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
    finally:
        assert local_command("down", env_dir=state_dir).returncode == 0


def test_status_without_a_target_exits_1(state_dir: Path) -> None:
    result = CliRunner().invoke(local_cli, ["status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {"running": False}
    assert schema_errors("local_status", json.loads(result.output)) == []
    assert schema_errors("local_status", {"running": False, "endpoint_url": None})
    assert "brewops local up" in CliRunner().invoke(local_cli, ["status"]).output


@pytest.mark.emulator
def test_a_running_target_is_repaired_by_up_and_never_torn_down_by_a_read(
    state_dir: Path, catalog_path: Path, tmp_path: Path
) -> None:
    from brewops.local import deploy as deployment
    from brewops.local import runtime

    state = local.up(deploy=False, catalog=catalog_path)
    try:
        emulator, punkapi = state.services["emulator"], state.services["punkapi"]
        kill(punkapi)
        with open(punkapi.log, "a", encoding="utf-8") as log:
            log.write("why it died\n")

        said = rf"Punk API server \(pid {punkapi.pid}, log {re.escape(punkapi.log)}\) has exited"
        with pytest.raises(runtime.LocalTargetBroken, match=said):
            local.status()
        assert processes.is_running(emulator), "a status call must not stop the emulator"

        other = tmp_path / "other.json"
        other.write_text(catalog_path.read_text(encoding="utf-8"), encoding="utf-8")
        with pytest.raises(runtime.LocalTargetConflict, match="brewops local down"):
            local.up(deploy=False, catalog=other)

        # a deploy interrupted after it created the stack, before the state recorded it
        prepared = deployment.prepare(
            runtime.paths.template_path(), state.stack_name, runtime._parameters(state), "us-east-1"
        )
        deployment.create_stack(state.session(), state.endpoint_url, prepared)

        repaired = local.up()

        assert repaired.services["emulator"] == emulator
        assert repaired.services["punkapi"].port == punkapi.port  # the producer has its URL
        assert "why it died" in Path(f"{punkapi.log}.1").read_text(encoding="utf-8"), (
            "the old log is kept"
        )
        assert requests.get(f"{repaired.punkapi_url}/beers?per_page=1", timeout=5).ok
        assert repaired.deployed and repaired.outputs["StreamName"]
        assert local.status() == LocalState(**{**repaired.__dict__, "already_running": False})

        # the stack stays deployed from the template it was deployed from
        assert local.up(template=runtime.paths.template_path()).deployed
        edited = tmp_path / "edited.yaml"
        edited.write_text(
            runtime.paths.template_path().read_text(encoding="utf-8"), encoding="utf-8"
        )
        with pytest.raises(runtime.LocalTargetConflict, match=r"template .*edited\.yaml"):
            local.up(template=edited)
    finally:
        local.down()


def test_up_after_an_up_that_was_killed_waits_for_the_servers_it_started(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import runtime

    # what a killed `up` leaves: its servers recorded, still starting, nothing deployed
    (tmp_path / "emulator").mkdir()
    started = {
        "emulator": spawn_service(tmp_path / "emulator", 60),
        "punkapi": spawn_service(tmp_path, 60),
    }
    services = {name: service for name, (_, service) in started.items()}
    a_state(services=services, catalog="c.json", punkapi_code_digest=runtime.code_digest()).save()
    asked: list[str] = []

    def answers_the_second_time(url: str, timeout: float = 1.0) -> bool:
        asked.append(url)
        return asked.count(url) > 1

    monkeypatch.setattr(processes, "answers", answers_the_second_time)
    try:
        assert runtime.up(deploy=False).already_running
    finally:
        local.down()
        for process, _ in started.values():
            process.wait(timeout=10)

    assert asked.count("http://127.0.0.1:9/moto-api/config") == 2
    assert asked.count("http://127.0.0.1:9/beers?per_page=1") == 2


def test_the_code_digest_follows_every_source_file_its_name_and_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import runtime

    package = tmp_path / "brewops"
    (package / "local").mkdir(parents=True)
    (package / "cli.py").write_text("print('a')\n", encoding="utf-8")
    (package / "local" / "runtime.py").write_text("", encoding="utf-8")
    monkeypatch.setattr(runtime, "__file__", str(package / "local" / "runtime.py"))
    digests = [runtime.code_digest()]

    (package / "cli.py").write_text(
        "print('b')\n", encoding="utf-8"
    )  # a `git pull` that edits a module
    digests.append(runtime.code_digest())
    (package / "cli.py").rename(package / "main.py")  # the same code under another name
    digests.append(runtime.code_digest())
    (package / "local" / "ports.py").write_text(
        "", encoding="utf-8"
    )  # a module added in a subpackage
    digests.append(runtime.code_digest())
    (package / "notes.txt").write_text("not code", encoding="utf-8")
    digests.append(runtime.code_digest())

    assert len(set(digests[:4])) == 4, "each change to the code is another digest"
    assert digests[4] == digests[3], "what is not Python is not the code the server runs"


def test_a_damaged_state_is_one_line_and_down_clears_it(state_dir: Path, tmp_path: Path) -> None:
    server, service = spawn_service(tmp_path, 60)
    state_dir.mkdir(parents=True)
    # readable JSON that is no longer a state: a field gone, the services still named
    (state_dir / "state.json").write_text(
        json.dumps({"services": {"punkapi": service.__dict__}}), encoding="utf-8"
    )

    status = local_command("status", env_dir=state_dir)
    stopped = CliRunner().invoke(local_cli, ["down"])

    assert status.returncode == 1 and "Traceback" not in status.stderr
    assert "is damaged" in status.stderr and "brewops local down" in status.stderr
    assert stopped.exit_code == 0, stopped.output
    assert "Nothing to stop" not in stopped.output and "Stopped in" in stopped.output
    assert server.wait(timeout=10) is not None, "the server it named is stopped"
    assert not (state_dir / "state.json").exists()


def test_a_state_with_a_field_of_the_wrong_type_is_damaged_too(state_dir: Path) -> None:
    written = json.loads(a_state().save().read_text(encoding="utf-8"))
    written["services"]["emulator"]["pid"] = "1"  # edited by hand
    (state_dir / "state.json").write_text(json.dumps(written), encoding="utf-8")

    result = local_command("status", env_dir=state_dir)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is damaged" in result.stderr
    with pytest.raises(UnreadableStateError, match="service pid is '1'"):
        LocalState.load()


def test_a_server_runs_in_a_session_of_its_own(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 60)
    try:
        # Ctrl-C in the terminal of `brewops local up` does not reach it
        assert os.getsid(process.pid) == process.pid
    finally:
        processes.stop(service)
        process.wait()


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = processes.spawn([sys.executable, "-c", script], log)
    try:
        processes.wait_ready(
            "Stubborn server", process, lambda: "ready" in log.read_text(encoding="utf-8"), log, 60
        )

        processes.stop(processes.service(process, 0, "http://127.0.0.1:9", log), timeout=0.2)

        assert process.poll() is not None
    finally:
        process.kill()
        process.wait()


def test_stop_waits_for_a_server_sigkill_does_not_end_at_once_only_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "stuck.log"
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = processes.spawn([sys.executable, "-c", script], log)
    # stuck in the kernel (a hung disk, say): SIGKILL ends it only when that returns
    monkeypatch.setattr(psutil.Process, "kill", lambda self: None)
    asked: list[float] = []  # the waits stop asks for; the wait after SIGKILL cut short here
    wait_exited = processes._wait_exited

    def recorded_wait(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        asked.append(timeout)
        return wait_exited(members, timeout if len(asked) == 1 else min(timeout, 0.1))

    monkeypatch.setattr(processes, "_wait_exited", recorded_wait)
    try:
        processes.wait_ready(
            "Stuck server", process, lambda: "ready" in log.read_text(encoding="utf-8"), log, 60
        )
        started = time.monotonic()

        processes.stop(processes.service(process, 0, "http://127.0.0.1:9", log), timeout=2)

        # not the timeout twice over (4 s): a second at most after the SIGKILL
        assert time.monotonic() - started < 3
        assert asked[0] == 2
        assert asked[1] <= 1.0
    finally:
        process.kill()
        process.wait()


def says_bye_on_sigterm(then: str) -> str:
    """A server script that on SIGTERM writes "bye" to its log after a pause (a SIGKILL
    sent without waiting for it comes first), then runs `then`."""
    return (
        "import signal, sys, time\n"
        "def bye(*args):\n"
        "    time.sleep(0.2)\n"
        "    print('bye', flush=True)\n"
        f"    {then}\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )


def start_ready(command: list[str], log: Path, own_session: bool = True) -> subprocess.Popen[bytes]:
    if own_session:
        process = processes.spawn(command, log)
    else:  # in this test's process group
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out)
    processes.wait_ready(
        "Server", process, lambda: "ready" in log.read_text(encoding="utf-8"), log, 60
    )
    return process


@pytest.mark.parametrize(
    ("paused", "own_session"),
    [(False, True), (True, True), (False, False)],
    ids=["running", "paused", "no session of its own"],
)
def test_stop_gives_a_server_the_time_to_exit_on_sigterm(
    tmp_path: Path, paused: bool, own_session: bool
) -> None:
    log = tmp_path / "server.log"
    command = [sys.executable, "-c", says_bye_on_sigterm("sys.exit(0)")]
    process = start_ready(command, log, own_session)
    try:
        if paused:  # Ctrl-Z in the terminal that runs it: stopped, SIGTERM waits
            os.kill(process.pid, signal.SIGSTOP)

        processes.stop(processes.service(process, 0, "http://127.0.0.1:9", log), timeout=5)

        assert process.poll() is not None
        assert "bye" in log.read_text(encoding="utf-8")
    finally:
        process.kill()
        process.wait()


def test_stop_ends_the_whole_process_group_of_a_server(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    child = says_bye_on_sigterm("pass")  # and lives on: only SIGKILL ends it
    parent = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
    process = start_ready([sys.executable, "-c", parent + "time.sleep(60)\n"], log)
    (worker,) = psutil.Process(process.pid).children()
    try:
        processes.stop(processes.service(process, 0, "http://127.0.0.1:9", log), timeout=2)

        assert "bye" in log.read_text(encoding="utf-8"), "the worker was sent SIGTERM first"
        assert exited(process.pid) and exited(worker.pid)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
        process.kill()
        process.wait()


def test_a_servers_output_reaches_its_log_unbuffered_and_replaces_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as in a plain shell
    log = tmp_path / "server.log"
    log.write_text("the last run's\n", encoding="utf-8")
    # no flush: Python buffers the output of a process writing to a file, unless told not to
    script = "import time\nprint('ready')\ntime.sleep(60)\n"
    process = processes.spawn([sys.executable, "-c", script], log)
    try:
        # unbuffered, print writes the text and the line's end in two writes: wait for both
        processes.wait_ready(
            "Server", process, lambda: "\n" in log.read_text(encoding="utf-8"), log, 60
        )
        assert log.read_text(encoding="utf-8") == "ready\n"
    finally:
        process.kill()
        process.wait()


# a server that answers one connection on the socket it inherits, and says so in its log
ONE_ANSWER_SERVER = """\
import socket, sys
with socket.socket(fileno=int(sys.argv[sys.argv.index("--fd") + 1])) as listening:
    print("serving")
    connection, _ = listening.accept()
    with connection:
        connection.sendall(b"hello")
"""

# spawns that server from a process started with descriptor N closed; writes what it answered
SPAWNED_WITH_A_CLOSED_DESCRIPTOR = """\
import os, socket, sys
from pathlib import Path
from brewops.local import processes
closed, answered, log = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
os.close(closed)
process, port = processes.spawn_server([sys.executable, "-c", sys.argv[4]], log)
with socket.create_connection((processes.HOST, port), timeout=30) as connection:
    answered.write_bytes(connection.recv(100))
process.wait(timeout=30)
"""


@pytest.mark.parametrize("closed", [0, 1, 2], ids=["stdin", "stdout", "stderr"])
def test_a_server_spawned_by_a_process_without_a_standard_stream_gets_its_socket(
    tmp_path: Path, closed: int
) -> None:
    # GIVEN a Python process whose descriptor 0, 1 or 2 is closed: a socket opened now takes it
    answered, log = tmp_path / "answered", tmp_path / "server.log"
    # WHEN it spawns a server
    run_in_group(
        [sys.executable, "-c", SPAWNED_WITH_A_CLOSED_DESCRIPTOR, str(closed), str(answered),
         str(log), ONE_ANSWER_SERVER],
        timeout=120,
    )  # fmt: skip
    # THEN the server answers on its socket, which its stdin, stdout or stderr did not replace
    assert answered.exists(), processes.log_tail(log)
    assert answered.read_bytes() == b"hello"
    assert log.read_text(encoding="utf-8") == "serving\n"


def test_stop_leaves_no_zombie_of_a_server_this_process_started(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 60)

    processes.stop(service)

    # reaped: a notebook that runs up() and down() again and again collects no zombies
    assert not psutil.pid_exists(process.pid)
    process.wait()  # finds it reaped


def test_every_start_of_the_local_punk_api_draws_the_same_random_beers(
    tmp_path: Path, catalog_path: Path
) -> None:
    from brewops.local import runtime

    # what the scheduled ticks of a run put: the same beers on every local target
    drawn = []
    for start in ("first", "second"):
        process, service = runtime._start_punkapi(tmp_path / start, catalog_path)
        try:
            processes.wait_ready(
                "Punk API server",
                process,
                lambda service=service: runtime._punkapi_answers(service),
                Path(service.log),
                runtime.START_TIMEOUT,
            )
            answers = [requests.get(f"{service.url}/beers/random", timeout=10) for _ in range(8)]
            drawn.append([answer.json()[0]["id"] for answer in answers])
        finally:
            processes.stop(service)
            process.wait()

    assert drawn[0] == drawn[1]
    assert len(set(drawn[0])) > 1  # still random beers, not one beer again and again


def test_a_missing_log_is_said_to_be_missing(tmp_path: Path) -> None:
    assert processes.log_tail(tmp_path / "never-written.log") == "(no log)"


def test_a_server_that_exits_while_starting_is_reported_with_its_last_words(
    tmp_path: Path,
) -> None:
    log = tmp_path / "failing.log"
    script = "import sys\nfor i in range(100):\n    print('line', i)\nsys.exit('the reason')\n"
    process = processes.spawn([sys.executable, "-c", script], log)

    with pytest.raises(processes.ServiceError, match=r"exited with code 1") as raised:
        processes.wait_ready("Failing server", process, lambda: False, log, timeout=60)

    message = str(raised.value)
    assert message.rstrip().endswith("the reason")  # its stderr, from the end of its log
    assert "line 0\n" not in message


def test_a_recorded_server_that_exits_while_starting_is_reported(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 1)
    process.wait()  # only its record is left, as for the servers of an `up` that was killed

    with pytest.raises(processes.ServiceError, match="Sleeper exited while starting"):
        processes.wait_ready("Sleeper", service, lambda: False, Path(service.log), timeout=30)


def test_a_server_that_never_answers_is_reported(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 60)
    try:
        with pytest.raises(processes.ServiceError, match="Silent server did not answer"):
            processes.wait_ready(
                "Silent server", process, lambda: False, Path(service.log), timeout=0.3
            )
    finally:
        processes.stop(service)
        process.wait()


def test_a_missing_catalogue_or_template_starts_nothing(
    state_dir: Path, tmp_path: Path, catalog_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="no Punk API catalogue"):
        local.up(deploy=False, catalog=tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="no SAM template"):
        local.up(catalog=catalog_path, template=tmp_path / "missing.yaml")
    assert not (state_dir / "state.json").exists()


@pytest.mark.emulator
def test_up_for_another_stack_is_a_conflict(
    local_stack: LocalState, local_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import runtime

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))

    with pytest.raises(runtime.LocalTargetConflict, match="the stack brewops-other"):
        local.up(stack_name="brewops-other")
    assert local.up(stack_name=local_stack.stack_name).already_running

    # BREWOPS_STACK_NAME asks for a stack as the argument does (`brewops local up`)
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-other")
    with pytest.raises(runtime.LocalTargetConflict, match="the stack brewops-other"):
        local.up()
    monkeypatch.setenv("BREWOPS_STACK_NAME", local_stack.stack_name)
    assert local.up().already_running


@pytest.mark.parametrize(
    "written",
    [
        "[]",
        "{}",
        '{"services": []}',
        "not json",
        "",
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deeply"),
    ],
)
def test_a_state_that_is_not_a_state_is_damaged(state_dir: Path, written: str) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(written, encoding="utf-8")
    with pytest.raises(UnreadableStateError, match="is damaged"):
        LocalState.load()
    assert local.down() is None  # it names no server: cleared all the same
    assert not (state_dir / "state.json").exists()


def test_a_whole_number_start_time_is_a_valid_one(state_dir: Path) -> None:
    written = json.loads(a_state().save().read_text(encoding="utf-8"))
    written["services"]["emulator"]["create_time"] = 1700000000  # as a hand edit may leave it
    (state_dir / "state.json").write_text(json.dumps(written), encoding="utf-8")
    assert LocalState.load().services["emulator"].create_time == 1700000000


def test_a_state_with_a_boolean_pid_is_damaged(state_dir: Path) -> None:
    written = json.loads(a_state().save().read_text(encoding="utf-8"))
    written["services"]["emulator"]["pid"] = True  # JSON true is no pid
    (state_dir / "state.json").write_text(json.dumps(written), encoding="utf-8")
    with pytest.raises(UnreadableStateError, match="service pid is True"):
        LocalState.load()


def test_down_stops_what_a_damaged_state_names_despite_a_broken_entry(
    state_dir: Path, tmp_path: Path
) -> None:
    server, service = spawn_service(tmp_path, 60)
    state_dir.mkdir(parents=True)
    services = {"emulator": {"pid": "not a pid"}, "punkapi": service.__dict__}
    (state_dir / "state.json").write_text(json.dumps({"services": services}), encoding="utf-8")

    assert local.down() is None

    assert server.wait(timeout=10) is not None, "the server it could still read is stopped"
    assert not (state_dir / "state.json").exists()


@pytest.mark.emulator
def test_a_port_is_the_servers_from_the_moment_it_is_chosen(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN another program that takes a server's port, if it can, just before the server starts
    taken: list[socket.socket] = []
    spawn = processes.spawn

    def another_program_takes_the_port(command: list[str], log: Path, **kwargs: object):
        port = int(command[command.index("--port") + 1])
        other = socket.socket()
        try:
            other.bind((processes.HOST, port))
            other.listen()
            taken.append(other)
        except OSError:  # the server holds it already
            other.close()
        return spawn(command, log, **kwargs)

    monkeypatch.setattr(processes, "spawn", another_program_takes_the_port)
    try:
        # WHEN the local target starts
        state = local.up(deploy=False, catalog=catalog_path)
        try:
            # THEN both servers listen on the ports recorded, which nobody else could take
            assert taken == []
            assert processes.answers(f"{state.endpoint_url}/moto-api/config")
            assert processes.answers(f"{state.punkapi_url}/beers?per_page=1")
            # and a Punk API server restarted on its port gets it again
            os.kill(state.services["punkapi"].pid, signal.SIGKILL)
            psutil.Process(state.services["punkapi"].pid).wait(timeout=10)
            again = local.up(deploy=False)
            assert again.services["punkapi"].port == state.services["punkapi"].port
            assert taken == []
            assert processes.answers(f"{again.punkapi_url}/beers?per_page=1")
            # and one whose port was taken while it was down says so
            os.kill(again.services["punkapi"].pid, signal.SIGKILL)
            psutil.Process(again.services["punkapi"].pid).wait(timeout=10)
            port = again.services["punkapi"].port
            with (
                socket.create_server((processes.HOST, port)),
                pytest.raises(processes.ServiceError, match="Cannot restart the Punk API"),
            ):
                local.up(deploy=False)
        finally:
            local.down()
    finally:
        for other in taken:
            other.close()


@pytest.mark.emulator
def test_up_restarts_a_punk_api_server_started_from_other_code(
    state_dir: Path, catalog_path: Path
) -> None:
    from brewops.local import runtime

    state = local.up(deploy=False, catalog=catalog_path)
    try:
        emulator, punkapi = state.services["emulator"], state.services["punkapi"]
        # the state an older checkout's `up` wrote: no code recorded for its Punk API server
        written = json.loads(
            paths.local_state_dir().joinpath("state.json").read_text(encoding="utf-8")
        )
        del written["punkapi_code_digest"]
        paths.local_state_dir().joinpath("state.json").write_text(
            json.dumps(written), encoding="utf-8"
        )

        again = local.up(deploy=False)

        restarted = again.services["punkapi"]
        assert again.already_running and again.services["emulator"].pid == emulator.pid
        assert restarted.pid != punkapi.pid and restarted.port == punkapi.port
        assert again.punkapi_code_digest == runtime.code_digest()
        assert exited(punkapi.pid)
        assert requests.get(f"{again.punkapi_url}/beers?per_page=1", timeout=5).ok
        # started from this code: left running
        assert local.up(deploy=False).services["punkapi"].pid == restarted.pid
    finally:
        local.down()


@pytest.mark.emulator
def test_a_restarted_server_that_never_answers_is_still_stopped_by_down(
    state_dir: Path, catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = local.up(deploy=False, catalog=catalog_path)
    try:
        punkapi = state.services["punkapi"]
        kill(punkapi)

        def never_ready(name: str, *args: object, **kwargs: object) -> None:
            raise processes.ServiceError(f"{name} did not answer")

        monkeypatch.setattr(processes, "wait_ready", never_ready)
        with pytest.raises(processes.ServiceError, match="did not answer"):
            local.up(deploy=False)

        restarted = LocalState.load().services["punkapi"]
        assert restarted.pid != punkapi.pid, "the restarted server is recorded at once"
    finally:
        local.down()
    assert exited(restarted.pid)


@pytest.mark.emulator
def test_up_runs_the_stack_it_is_given(state_dir: Path, catalog_path: Path) -> None:
    state = local.up(deploy=False, catalog=catalog_path, stack_name="brewops-feature")
    try:
        assert state.stack_name == "brewops-feature"
        assert local.status().stack_name == "brewops-feature"
    finally:
        local.down()


@pytest.mark.emulator
def test_up_knows_the_deployed_template_and_the_catalogue_by_relative_paths(
    local_stack: LocalState,
    local_state_dir: Path,
    catalog_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))
    monkeypatch.chdir(paths.template_path().parent)

    assert local.up(template=paths.template_path().name).already_running

    monkeypatch.chdir(catalog_path.parent)
    assert local.up(catalog=catalog_path.name).already_running


def test_a_server_that_exited_unreaped_is_not_running(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 0)
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped

    assert not processes.is_running(service)  # a zombie serves nothing
    process.wait()


@contextlib.contextmanager
def failing_server(status: int) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on the loopback interface that answers every request with `status`
    and an AWS error an SDK can read (so it may retry): its URL and the paths asked for."""
    asked: list[str] = []
    error = b"<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"

    class Failing(BaseHTTPRequestHandler):
        def answer(self) -> None:
            asked.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer((processes.HOST, 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{processes.HOST}:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_only_a_success_answer_means_ready() -> None:
    with failing_server(404) as (url, _):
        assert processes.answers(f"{url}/") is False


@pytest.mark.parametrize("emulator_alive", [True, False])
def test_down_stops_the_servers_whatever_the_stack_delete_does(
    state_dir: Path, tmp_path: Path, emulator_alive: bool
) -> None:
    emulator, emulator_service = spawn_service(tmp_path, 60 if emulator_alive else 0)
    if not emulator_alive:
        emulator.wait()
    with failing_server(500) as (url, asked):
        state = a_state(endpoint_url=url, services={"emulator": emulator_service}, deployed=True)
        state.save()

        assert local.down() == state

    # a failing emulator is asked once, without retries, so `down` is not held up; a dead
    # one is not asked at all
    assert len(asked) == (1 if emulator_alive else 0)
    assert emulator.wait(timeout=10) is not None
    assert not (state_dir / "state.json").exists()


@pytest.mark.emulator
def test_the_servers_listen_on_the_loopback_interface_only(
    local_stack: LocalState,
) -> None:
    for service in local_stack.services.values():
        listening = [
            c.laddr
            for c in psutil.Process(service.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, f"{service.url} is not listening"
        assert {address.ip for address in listening} == {"127.0.0.1"}, service.url


@pytest.mark.emulator
def test_up_deploys_the_template_it_is_given_and_keeps_it(
    state_dir: Path, catalog_path: Path, tmp_path: Path
) -> None:
    # nothing to deploy: no template is needed
    local.up(deploy=False, catalog=catalog_path, template=tmp_path / "missing.yaml")
    try:
        template = tmp_path / "template.yaml"
        template.write_text(
            "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
            "Outputs:\n  QueueName: {Value: !GetAtt Queue.QueueName}\n",
            encoding="utf-8",
        )

        deployed = local.up(template=template)

        assert deployed.deployed and deployed.template == str(template)
        assert set(deployed.outputs) == {"QueueName"}
        # asked for no template in particular: the deployed one stands
        assert local.up().already_running
    finally:
        local.down()


@pytest.mark.parametrize(
    ("written", "digest", "refused"),
    [
        (None, "0" * 64, False),  # nothing to compare with: the running stack stands
        ("Resources: [unclosed", "0" * 64, True),  # no longer YAML: not what was deployed
        ("Resources: {}\n", None, False),  # a state from before digests were recorded
    ],
    ids=["template-gone", "template-broken", "no-digest-recorded"],
)
def test_a_template_that_cannot_be_compared_is_refused_only_when_it_is_unreadable(
    tmp_path: Path, written: str | None, digest: str | None, refused: bool
) -> None:
    from brewops.local import runtime

    template = tmp_path / "template.yaml"
    if written is not None:
        template.write_text(written, encoding="utf-8")
    state = a_state(deployed=True, template=str(template), template_digest=digest)

    with (
        pytest.raises(runtime.LocalTargetConflict, match="has changed since")
        if refused
        else contextlib.nullcontext()
    ):
        runtime._check_template_unchanged(state)


@pytest.mark.emulator
def test_up_refuses_a_template_changed_since_it_was_deployed(
    state_dir: Path, catalog_path: Path, tmp_path: Path
) -> None:
    from brewops.local import runtime

    template = tmp_path / "template.yaml"
    template.write_text(
        "Parameters:\n  Delay: {Type: Number, Default: 0}\n"
        "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
        "    Properties: {DelaySeconds: !Ref Delay}\n"
        "Outputs:\n  QueueName: {Value: !GetAtt Queue.QueueName}\n",
        encoding="utf-8",
    )
    local.up(catalog=catalog_path, template=template)
    try:
        # a comment changes nothing that is deployed
        template.write_text(
            f"# the queue\n{template.read_text(encoding='utf-8')}", encoding="utf-8"
        )
        assert local.up(template=template).already_running

        template.write_text(
            template.read_text(encoding="utf-8").replace("Default: 0", "Default: 5"),
            encoding="utf-8",
        )

        with pytest.raises(runtime.LocalTargetConflict, match="has changed since") as refused:
            local.up()
        assert "`brewops local down`, then `brewops local up`" in str(refused.value)
    finally:
        local.down()


@pytest.mark.parametrize(
    ("log_text", "free", "said"),
    [
        ("", processes.LOW_DISK_SPACE, "Its log {log} is empty."),
        ("", processes.LOW_DISK_SPACE - 1, "Its log {log} is empty, and its disk has 1023 kB"),
        ("\n \n", 8192, "Its log {log} is empty, and its disk has 8 kB free"),
        ("", None, "Its log {log} is empty."),  # the disk cannot be measured
    ],
)
def test_an_empty_log_says_the_disk_is_full_only_below_a_megabyte_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_text: str, free: int | None, said: str
) -> None:
    log = tmp_path / "silent.log"
    log.write_text(log_text, encoding="utf-8")
    usage = shutil.disk_usage(tmp_path)

    def measured(path: object) -> object:
        if free is None:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return usage._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", measured)

    words = processes._last_words(log)

    assert words.startswith(said.format(log=log)), words
    assert ("BREWOPS_BUILD_DIR" in words) == ("disk has" in said)


def test_down_deletes_the_stack_past_the_shells_proxy(
    state_dir: Path, tmp_path: Path, shell_with_a_dead_proxy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brewops.local import deploy as deployment

    asked_through: list[dict[str, str]] = []
    monkeypatch.setattr(
        deployment, "delete", lambda *args, **kwargs: asked_through.append(proxy_for(args[1]))
    )
    process, emulator = spawn_service(tmp_path, 60)
    try:
        a_state(services={"emulator": emulator}, deployed=True).save()

        assert local.down() is not None
    finally:
        process.kill()
        process.wait()

    assert asked_through == [{"requests": "", "botocore": ""}]
