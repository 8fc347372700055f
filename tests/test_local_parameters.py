"""`brewops local up --parameter-overrides`: the template parameters of the local stack, given
as `sam deploy` takes them, checked before anything starts, recorded and kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner

from brewops import local, paths
from brewops.local import runtime
from brewops.local.cli import _describe
from brewops.local.cli import local as local_cli
from brewops.local.state import CREDENTIALS, LocalState, Service
from fixtures.local import local_command


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "local"
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(directory))
    return directory


def a_deployed_state(template: Path, **fields: object) -> LocalState:
    defaults: dict[str, object] = {
        "endpoint_url": "http://127.0.0.1:1",
        "region": "us-east-1",
        "stack_name": "brewops-dev",
        "started_at": "2024-01-01T00:00:00+00:00",
        "services": {"emulator": Service(1, 1, "http://127.0.0.1:1", "e.log", 1.5)},
        "deployed": True,
        "template": str(template),
    }
    return LocalState(**{**defaults, **fields})  # type: ignore[arg-type]


def test_the_option_reads_pairs_as_sam_deploy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, object]] = []

    def up(**kwargs: object) -> LocalState:
        asked.append(kwargs)
        return a_deployed_state(Path("t.yaml"), parameter_overrides=kwargs["parameters"])

    monkeypatch.setattr(runtime, "up", up)

    result = CliRunner().invoke(
        local_cli,
        [
            "up",
            "--parameter-overrides",
            'ShardCount=3 StreamMode=ON_DEMAND ScheduleRate="rate(2 minutes)"',
            "--parameter-overrides",
            "ParameterKey=BeersPerTick,ParameterValue=2",
            "--parameter-overrides",
            "ShardCount=2",  # a later pair wins, as in `sam deploy`
        ],
    )

    assert result.exit_code == 0, result.output
    assert asked[0]["parameters"] == {
        "ShardCount": "2",
        "StreamMode": "ON_DEMAND",
        "ScheduleRate": "rate(2 minutes)",
        "BeersPerTick": "2",
    }


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("ScheduleRate=rate(2 minutes)", "'minutes)' is not a parameter"),  # not quoted
        ('ShardCount="3', "cannot be read (No closing quotation)"),
        ("ShardCount=2 ParameterKey=Stage,ParameterValue=dev", "mixes Key=Value"),
    ],
)
def test_pairs_sam_deploy_would_misread_are_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, given: str, said: str
) -> None:
    monkeypatch.setattr(runtime, "up", lambda **kwargs: pytest.fail("nothing must start"))

    result = CliRunner().invoke(local_cli, ["up", "--parameter-overrides", given])

    assert result.exit_code == 2
    assert said in result.output


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        (
            {"ShardCount": "2", "ShardCuont": "3"},
            "the template declares no parameter ShardCuont; it declares Stage, PunkApiUrl, "
            "PunkApiVersion, BeersPerTick, ScheduleRate, ScheduleState, StreamMode, "
            "ShardCount, BufferSizeMiB, BufferIntervalSeconds, AlarmEmail, RoleBoundaryArn",
        ),
        (
            {"PunkApiUrl": "https://punkapi.online/v3"},
            "PunkApiUrl cannot be overridden on the local target: its stack reads the Punk "
            "API server `brewops local up` starts",
        ),
        ({"PunkApiVersion": "v3"}, "PunkApiVersion cannot be overridden on the local target"),
        ({"ShardCount": "0"}, "ShardCount='0' is less than its MinValue 1"),
    ],
    ids=["unknown", "PunkApiUrl", "PunkApiVersion", "refused-value"],
)
def test_a_parameter_the_local_stack_cannot_take_is_refused_before_anything_starts(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str], refusal: str
) -> None:
    monkeypatch.setattr(runtime, "_start", lambda *args: pytest.fail("nothing must start"))

    with pytest.raises(Exception, match=re.escape(refusal)):
        local.up(parameters=parameters)

    assert not (state_dir / "state.json").exists()


def test_parameters_without_a_deploy_are_refused(state_dir: Path) -> None:
    with pytest.raises(
        runtime.ParameterOverrideError, match=r"--no-deploy \(deploy=False\) deploys none"
    ):
        local.up(deploy=False, parameters={"ShardCount": "2"})
    assert not (state_dir / "state.json").exists()


def test_the_punk_api_parameters_need_no_default_in_the_template_given(tmp_path: Path) -> None:
    # the local target gives them their values at deploy, as it does without overrides
    path = tmp_path / "template.yaml"
    path.write_text(
        "Parameters:\n"
        "  PunkApiUrl: {Type: String, AllowedPattern: '^https?://.+'}\n"
        "  PunkApiVersion: {Type: String, AllowedValues: [v2, v3]}\n"
        "  ShardCount: {Type: Number, Default: 1, MinValue: 1}\n"
        "Resources: {}\n",
        encoding="utf-8",
    )
    template = yaml.safe_load(path.read_text(encoding="utf-8"))

    runtime._check_overrides(template, {"ShardCount": "2"})

    with pytest.raises(Exception, match=re.escape("ShardCount='0' is less than its MinValue")):
        runtime._check_overrides(template, {"ShardCount": "0"})


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Parameters:\n"
        "  ShardCount: {Type: Number, Default: 1}\n"
        "  BeersPerTick: {Type: Number, Default: 1}\n"
        "Resources: {}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("asked", "refusal"),
    [
        ({"ShardCount": "2"}, None),  # what it runs
        ({"BeersPerTick": "1"}, None),  # the Default it runs
        ({"ShardCount": "3"}, "ShardCount 2, not 3."),
        (
            {"BeersPerTick": "2", "ShardCount": "2"},
            "BeersPerTick 1 (its Default), not 2. The local target creates a stack, it does "
            "not update one: run `brewops local down`, then `brewops local up "
            "--parameter-overrides 'ShardCount=2 BeersPerTick=2'`",
        ),
    ],
)
def test_a_running_stack_asked_for_other_values_says_which_and_what_to_do(
    template: Path, asked: dict[str, str], refusal: str | None
) -> None:
    state = a_deployed_state(template, parameter_overrides={"ShardCount": "2"})

    if refusal is None:
        runtime._check_same_parameters(state, asked)
    else:
        with pytest.raises(runtime.LocalTargetConflict) as refused:
            runtime._check_same_parameters(state, asked)
        assert "The local target's stack brewops-dev was deployed with other values" in str(
            refused.value
        )
        assert refusal in str(refused.value)


def test_status_shows_the_parameters_the_stack_was_deployed_with(template: Path) -> None:
    given = a_deployed_state(
        template, parameter_overrides={"ShardCount": "2", "ScheduleRate": "rate(2 minutes)"}
    )
    defaults = a_deployed_state(template)

    assert (
        '  Parameters    ShardCount=2 ScheduleRate="rate(2 minutes)" (the others: the '
        "template's Defaults)"
    ) in _describe(given)
    assert "  Parameters    the template's Defaults\n" in _describe(defaults)
    assert given.to_dict()["parameter_overrides"] == {
        "ShardCount": "2",
        "ScheduleRate": "rate(2 minutes)",
    }


def test_a_state_recorded_before_parameters_were_loads_with_none(state_dir: Path) -> None:
    recorded = a_deployed_state(Path("t.yaml")).to_dict()
    del recorded["parameter_overrides"]
    state_dir.mkdir()
    (state_dir / "state.json").write_text(json.dumps(recorded), encoding="utf-8")

    loaded = LocalState.load()

    assert loaded is not None and loaded.parameter_overrides == {}


def test_the_pairs_shown_read_back_as_they_were_given() -> None:
    from brewops.infra import parse_parameter_overrides

    values = {"A": "rate(2 minutes)", "B": 'say "hi"', "C": "", "D": "a\\b c", "E": "x=y"}
    shown = " ".join(runtime.parameter_pair(k, v) for k, v in values.items())

    assert parse_parameter_overrides([shown], "status") == values


@pytest.mark.emulator
def test_up_deploys_the_overrides_records_them_and_keeps_them(
    state_dir: Path, catalog_path: Path
) -> None:
    if not paths.template_path().is_file():
        pytest.skip(f"no template at {paths.template_path()}")
    up = local_command(
        "up",
        "--catalog",
        str(catalog_path),
        "--parameter-overrides",
        'ShardCount=2 ScheduleRate="rate(2 minutes)"',
        env_dir=state_dir,
    )
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
        session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
        kinesis = session.client("kinesis", endpoint_url=state["endpoint_url"])
        events = session.client("events", endpoint_url=state["endpoint_url"])
        stream = kinesis.describe_stream(StreamName=state["outputs"]["StreamName"])
        assert len(stream["StreamDescription"]["Shards"]) == 2
        rule = events.describe_rule(Name=state["outputs"]["ScheduleRuleName"])
        assert rule["ScheduleExpression"] == "rate(2 minutes)"

        status = local_command("status", "--json", env_dir=state_dir)
        assert json.loads(status.stdout)["parameter_overrides"] == {
            "ShardCount": "2",
            "ScheduleRate": "rate(2 minutes)",
        }

        # as `sam deploy` without overrides: the stack keeps its values, and says so
        again = local_command("up", env_dir=state_dir)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("Already running")
        assert 'ShardCount=2 ScheduleRate="rate(2 minutes)"' in again.stdout
        assert "keeps the parameter values it was deployed with" in again.stdout

        other = local_command("up", "--parameter-overrides", "ShardCount=3", env_dir=state_dir)
        assert other.returncode == 1
        assert "ShardCount 2, not 3" in other.stderr
        assert "`brewops local down`, then `brewops local up --parameter-overrides" in (
            other.stderr
        )
    finally:
        local_command("down", env_dir=state_dir)


def test_the_command_a_conflict_suggests_reads_back_in_a_shell(template: Path) -> None:
    import shlex

    from brewops.infra import parse_parameter_overrides

    # an address with a quote is a valid AlarmEmail: the suggested command must hold it
    state = a_deployed_state(template, parameter_overrides={"AlarmEmail": "o'neil@example.com"})

    with pytest.raises(runtime.LocalTargetConflict) as refused:
        runtime._check_same_parameters(state, {"ShardCount": "3"})

    command = re.search(r"`(brewops local up --parameter-overrides [^`]+)`", str(refused.value))
    assert command is not None
    words = shlex.split(command[1])
    assert words[:4] == ["brewops", "local", "up", "--parameter-overrides"]
    assert parse_parameter_overrides(words[4:], "suggested") == {
        "AlarmEmail": "o'neil@example.com",
        "ShardCount": "3",
    }
