"""`brewops local up | down | status`: processes that outlive the command, a recorded state,
idempotent starts, stale states cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests
from click.testing import CliRunner

from brewops import local, paths
from brewops.local import processes
from brewops.local.cli import local as local_cli
from brewops.local.state import LocalState, Service, UnreadableStateError
from fixtures.local import exited


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "local"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(directory))
    return directory


def brewops(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brewops.cli", "local", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BREWOPS_LOCAL_STATE_DIR": str(env_dir)},
    )


def spawn_service(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[bytes], Service]:
    process = processes.spawn(
        [sys.executable, "-c", f"import time; time.sleep({seconds})"], tmp_path / "sleep.log"
    )
    return process, processes.service(process, 0, "http://127.0.0.1:9", tmp_path / "sleep.log")


def a_state(**fields) -> LocalState:
    return LocalState(
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        stack_name="brewops-dev",
        started_at="2024-01-01T00:00:00+00:00",
        services={"emulator": Service(1, 1, "http://127.0.0.1:1", "e.log", 1.5)},
        **fields,
    )


def test_state_round_trips_through_its_file(state_dir: Path) -> None:
    state = a_state(outputs={"BucketName": "b"}, already_running=True)
    path = state.save()
    assert path == state_dir / "state.json"
    assert "already_running" not in json.loads(path.read_text())
    loaded = LocalState.load()
    assert loaded == LocalState(**{**state.__dict__, "already_running": False})


@pytest.mark.emulator
def test_cli_up_leaves_the_servers_running_and_down_stops_them(
    state_dir: Path, catalog_path: Path
) -> None:
    checkpoint = paths.firehose_checkpoints_dir(state_dir) / "brewops-dev-raw.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")  # a drain's position in an emulator that died

    started = brewops("up", "--no-deploy", "--catalog", str(catalog_path), env_dir=state_dir)
    assert started.returncode == 0, started.stderr
    assert "Ready in" in started.stdout
    assert not checkpoint.exists(), "a new emulator's streams start without old positions"

    # the command has exited; its servers have not
    state = json.loads((state_dir / "state.json").read_text())
    pids = {name: service["pid"] for name, service in state["services"].items()}
    assert set(pids) == {"emulator", "punkapi"}
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    assert requests.get(f"{state['punkapi_url']}/beers?per_page=1", timeout=5).json()[0]["id"] == 1
    assert requests.get(f"{state['endpoint_url']}/moto-api/config", timeout=5).ok
    assert (state_dir / "logs" / "emulator.log").is_file()
    assert state["region"] == "us-east-1" and state["deployed"] is False

    again = brewops("up", "--no-deploy", "--catalog", str(catalog_path), env_dir=state_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Already running")
    assert json.loads((state_dir / "state.json").read_text())["services"] == state["services"]

    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_text("{}")  # a drain's position in this emulator's streams

    stopped = brewops("down", env_dir=state_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert not (state_dir / "state.json").exists()
    assert not checkpoint.exists(), "positions in the emulator's streams end with it"
    assert (state_dir / "logs" / "emulator.log").is_file(), "the logs are kept"
    assert all(exited(pid) for pid in pids.values())
    assert brewops("status", env_dir=state_dir).returncode == 1


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


def test_a_recycled_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    process, service = spawn_service(tmp_path, 60)
    try:
        assert processes.is_running(service)
        assert not processes.is_running(Service(**{**service.__dict__, "create_time": 1.0}))
    finally:
        processes.stop(service)
    assert process.poll() is not None


def test_a_server_that_fails_to_start_leaves_nothing_behind(
    state_dir: Path, tmp_path: Path
) -> None:
    bad_catalog = tmp_path / "catalog.json"
    bad_catalog.write_text("not json")

    def servers() -> set[int]:
        children = psutil.Process().children(recursive=True)
        return {p.pid for p in children if p.status() != psutil.STATUS_ZOMBIE}

    before = servers()

    with pytest.raises(processes.ServiceError, match="Punk API server exited"):
        local.up(catalog=bad_catalog)

    assert not (state_dir / "state.json").exists()
    assert servers() - before == set()  # the emulator it had started is stopped too


@pytest.mark.emulator
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

    human = runner.invoke(local_cli, ["status"])
    assert human.exit_code == 0
    assert local_stack.endpoint_url in human.output
    assert local_stack.outputs["StreamName"] in human.output
    assert f"AWS_ENDPOINT_URL={local_stack.endpoint_url}" in human.output


def test_status_without_a_target_exits_1(state_dir: Path) -> None:
    result = CliRunner().invoke(local_cli, ["status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {"running": False}
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
        os.kill(punkapi.pid, 9)
        psutil.Process(punkapi.pid).wait(timeout=10)
        with open(punkapi.log, "a") as log:
            log.write("why it died\n")

        with pytest.raises(runtime.LocalTargetBroken, match=r"Punk API server .* has exited"):
            local.status()
        assert processes.is_running(emulator), "a status call must not stop the emulator"

        other = tmp_path / "other.json"
        other.write_text(catalog_path.read_text())
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
        assert "why it died" in Path(f"{punkapi.log}.1").read_text(), "the old log is kept"
        assert requests.get(f"{repaired.punkapi_url}/beers?per_page=1", timeout=5).ok
        assert repaired.deployed and repaired.outputs["StreamName"]
        assert local.status() == LocalState(**{**repaired.__dict__, "already_running": False})

        # the stack stays deployed from the template it was deployed from
        assert local.up(template=runtime.paths.template_path()).deployed
        edited = tmp_path / "edited.yaml"
        edited.write_text(runtime.paths.template_path().read_text())
        with pytest.raises(runtime.LocalTargetConflict, match=r"template .*edited\.yaml"):
            local.up(template=edited)
    finally:
        local.down()


def test_a_damaged_state_is_one_line_and_down_clears_it(state_dir: Path, tmp_path: Path) -> None:
    server, service = spawn_service(tmp_path, 60)
    state_dir.mkdir(parents=True)
    # readable JSON that is no longer a state: a field gone, the services still named
    (state_dir / "state.json").write_text(json.dumps({"services": {"punkapi": service.__dict__}}))

    status = brewops("status", env_dir=state_dir)
    stopped = CliRunner().invoke(local_cli, ["down"])

    assert status.returncode == 1 and "Traceback" not in status.stderr
    assert "is damaged" in status.stderr and "brewops local down" in status.stderr
    assert stopped.exit_code == 0, stopped.output
    assert server.wait(timeout=10) is not None, "the server it named is stopped"
    assert not (state_dir / "state.json").exists()


def test_a_state_with_a_field_of_the_wrong_type_is_damaged_too(state_dir: Path) -> None:
    written = json.loads(a_state().save().read_text())
    written["services"]["emulator"]["pid"] = "1"  # edited by hand
    (state_dir / "state.json").write_text(json.dumps(written))

    result = brewops("status", env_dir=state_dir)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is damaged" in result.stderr
    with pytest.raises(UnreadableStateError, match="service pid is '1'"):
        LocalState.load()
