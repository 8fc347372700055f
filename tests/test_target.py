"""brewops.target: one switch between the local target and AWS."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from brewops import target as targets
from brewops.errors import ActionableError
from brewops.local.state import LocalState


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user's AWS settings, as they might be before use("local")."""
    values = {
        "AWS_ACCESS_KEY_ID": "AKIAUSERKEY",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-key",  # pragma: allowlist secret
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_SESSION_TOKEN": "user-token",
    }
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match="local, aws"):
        targets.use("staging")


def test_local_without_a_running_target_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path))
    before = dict(os.environ)

    with pytest.raises(targets.TargetNotReady, match="brewops local up"):
        targets.use("local")

    assert dict(os.environ) == before


def test_aws_uses_the_normal_chain_and_the_named_stack(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-prod")
    before = dict(os.environ)

    tgt = targets.use("aws")

    assert dict(os.environ) == before
    assert (tgt.name, tgt.stack_name, tgt.region, tgt.endpoint_url) == (
        "aws",
        "brewops-prod",
        "eu-west-1",
        None,
    )
    assert tgt.session.get_credentials().access_key == "AKIAUSERKEY"


@pytest.mark.parametrize(
    ("url", "version", "override", "expected"),
    [
        ("https://punkapi.example/v3", "v3", None, "v3"),
        ("https://beers.example/api", "v3", None, "v3"),  # no version segment in the URL
        ("https://beers.example/api", "v3", "http://127.0.0.1:1/v2", "v2"),
        # a stack without the PunkApiVersion parameter: the URL's last segment says it
        ("https://punkapi.example/v3", None, None, "v3"),
    ],
)
def test_aws_speaks_the_punk_api_version_the_stack_was_deployed_with(
    url: str,
    version: str | None,
    override: str | None,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if override:
        monkeypatch.setenv("BREWOPS_PUNKAPI_URL", override)
    else:
        monkeypatch.delenv("BREWOPS_PUNKAPI_URL", raising=False)
    parameters = {"PunkApiUrl": url, "PunkApiVersion": version}
    stack = {
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items() if v]
    }
    tgt = targets.Target(
        name="aws", stack_name="s", region="eu-west-1", _session=None, _stack=stack
    )

    assert tgt.punkapi_version == expected
    assert tgt.punkapi_url == (override or url)


def test_the_punk_api_to_read_is_the_url_given_else_the_targets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BREWOPS_PUNKAPI_URL", raising=False)
    tgt = targets.Target(name="aws", stack_name="s", region=None, _session=None)
    tgt._punkapi_url = "https://beers.example/api"
    tgt._stack = {"Parameters": [{"ParameterKey": "PunkApiVersion", "ParameterValue": "v3"}]}

    assert targets.punkapi_endpoint("http://127.0.0.1:1/v2", None, tgt) == (
        "http://127.0.0.1:1/v2",
        "v2",
    )
    assert targets.punkapi_endpoint(None, None, tgt) == ("https://beers.example/api", "v3")
    assert targets.punkapi_endpoint(None, "v2", tgt)[1] == "v2"
    assert targets.punkapi_endpoint("https://beers.example/api", "v3") == (
        "https://beers.example/api",
        "v3",
    )
    assert targets.punkapi_endpoint("http://127.0.0.1:1/v2", "v3")[1] == "v3"  # said wins
    # a notebook's api_version parameter, spelt as the client takes it
    assert targets.punkapi_endpoint("http://127.0.0.1:1/v2", "V3")[1] == "v3"
    with pytest.raises(ValueError, match="api_version must be one of"):
        targets.punkapi_endpoint("http://127.0.0.1:1/v2", "v4")
    with pytest.raises(ValueError, match="give api_url or a target"):
        targets.punkapi_endpoint()


def _stubbed_aws_target(stack_name: str, answer: dict[str, str]) -> targets.Target:
    """The aws target of `stack_name`, whose CloudFormation answers DescribeStacks with the
    error `answer` (code and message) as the service does (twice: the Punk API's URL and its
    version each ask while there is no stack to keep)."""
    from botocore.stub import Stubber

    cloudformation = boto3.client(
        "cloudformation",
        region_name="eu-west-1",
        endpoint_url="https://cloudformation.eu-west-1.amazonaws.com",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret
    )
    stubber = Stubber(cloudformation)
    for _ in range(2):
        stubber.add_client_error(
            "describe_stacks",
            service_error_code=answer["code"],
            service_message=answer["message"],
            http_status_code=400 if answer["code"] == "ValidationError" else 403,
            expected_params={"StackName": stack_name},
        )
    stubber.activate()
    return targets.Target(
        name="aws",
        stack_name=stack_name,
        region="eu-west-1",
        _session=SimpleNamespace(client=lambda service, **kwargs: cloudformation),
        _session_checked=True,
    )


def test_the_punk_api_of_a_stack_not_deployed_yet_is_the_one_its_deploy_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `make run TARGET=aws` reads the Punk API in notebook 01, before notebook 02 deploys
    monkeypatch.delenv("BREWOPS_PUNKAPI_URL", raising=False)
    missing = {"code": "ValidationError", "message": "Stack with id brewops-alice does not exist"}
    tgt = _stubbed_aws_target("brewops-alice", missing)

    assert targets.punkapi_endpoint(None, None, tgt) == ("https://punkapi.online/v3", "v3")

    # what the stack's samconfig.toml environment sets wins over the template's Default
    monkeypatch.setattr(
        "brewops.infra.sam_config_parameters",
        lambda env: {"Stage": "dev", "PunkApiUrl": "https://beers.example/api"},
    )
    tgt = _stubbed_aws_target("brewops-alice", missing)
    assert tgt.punkapi_url == "https://beers.example/api"


def test_a_stack_that_cannot_be_read_for_another_reason_gives_no_punk_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BREWOPS_PUNKAPI_URL", raising=False)
    denied = {"code": "AccessDenied", "message": "not authorized to perform DescribeStacks"}
    tgt = _stubbed_aws_target("brewops-alice", denied)

    with pytest.raises(targets.TargetNotReady, match="not authorized"):
        _ = tgt.punkapi_url


def test_the_stack_id_is_the_one_cloudformation_gave() -> None:
    stack_id = "arn:aws:cloudformation:eu-west-1:123456789012:stack/brewops-dev/abc-123"
    tgt = targets.Target(
        name="aws",
        stack_name="brewops-dev",
        region=None,
        _session=None,
        _stack={"StackId": stack_id},
    )
    assert tgt.stack_id == stack_id


def test_a_local_target_without_a_punk_api_does_not_take_the_aws_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BREWOPS_PUNKAPI_URL", "https://punkapi.example/v3")
    tgt = targets.Target(name="local", stack_name="s", region="us-east-1", _session=None)
    assert tgt.punkapi_url is None


def test_a_local_targets_clients_go_to_its_emulator_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    tgt = targets.Target(
        name="local",
        stack_name="s",
        region="us-east-1",
        _session=session,
        endpoint_url="http://127.0.0.1:4566",
    )
    assert tgt.client("s3").meta.endpoint_url == "http://127.0.0.1:4566"
    # an endpoint the caller names still wins
    other = tgt.client("s3", endpoint_url="http://127.0.0.1:4567")
    assert other.meta.endpoint_url == "http://127.0.0.1:4567"


def test_aws_stack_name_defaults_to_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BREWOPS_STACK_NAME", raising=False)
    assert targets.use("aws").stack_name == "brewops-dev"


def test_aws_without_a_region_says_what_to_set(
    no_aws_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the AWS CLI reads it; boto3 does not
    tgt = targets.use("aws")  # also how use("local") is undone: it must not fail here

    with pytest.raises(targets.TargetNotReady, match="set AWS_DEFAULT_REGION"):
        _ = tgt.outputs
    with pytest.raises(targets.TargetNotReady, match="AWS_PROFILE"):
        tgt.client("kinesis")


def test_aws_without_credentials_says_how_to_configure_them(
    no_aws_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    tgt = targets.use("aws")

    with pytest.raises(targets.TargetNotReady, match="aws configure"):
        _ = tgt.punkapi_url
    with pytest.raises(targets.TargetNotReady, match="aws configure"):
        tgt.session.client("kinesis")


def test_reading_stack_outputs_without_a_region_says_what_to_set(no_aws_settings: None) -> None:
    with pytest.raises(targets.TargetNotReady, match="set AWS_DEFAULT_REGION"):
        targets.stack_outputs("brewops-dev")


def test_credentials_that_cannot_be_obtained_make_the_target_not_ready(
    no_aws_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[default]\nregion = eu-west-1\ncredential_process = /bin/false\n", encoding="utf-8"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    tgt = targets.use("aws")

    with pytest.raises(targets.TargetNotReady, match="cannot be used"):
        tgt.client("kinesis")


def test_aws_with_a_profile_that_does_not_exist_is_not_ready(
    no_aws_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")

    with pytest.raises(targets.TargetNotReady, match="no-such-profile"):
        targets.use("aws")


class _FakeSession:
    """A session with a region and credentials whose CloudFormation knows `stacks`."""

    region_name = "eu-west-1"

    def __init__(self, stacks: dict[str, dict[str, Any]]) -> None:
        self.stacks = stacks

    def get_credentials(self) -> object:
        return object()

    def client(self, service_name: str) -> Any:
        assert service_name == "cloudformation"
        return SimpleNamespace(
            meta=SimpleNamespace(endpoint_url="https://cloudformation.example"),
            describe_stacks=self._describe_stacks,
        )

    def _describe_stacks(self, StackName: str) -> dict[str, Any]:
        if StackName not in self.stacks:
            error = {"Error": {"Code": "ValidationError", "Message": "does not exist"}}
            raise ClientError(error, "DescribeStacks")
        return {"Stacks": [self.stacks[StackName]]}


def test_stack_outputs_are_read_with_the_session_given(no_aws_settings: None) -> None:
    # the environment has no region: only the session given can read the stack
    outputs = [{"OutputKey": "BucketName", "OutputValue": "brewops-bucket"}]
    session = _FakeSession({"brewops-prod": {"Outputs": outputs}})

    assert targets.stack_outputs("brewops-prod", session=session) == {
        "BucketName": "brewops-bucket"
    }


def _aws_target(stacks: dict[str, dict[str, Any]]) -> targets.Target:
    """The aws target of the stack brewops-dev, reading `stacks` as CloudFormation."""
    return targets.Target(
        name="aws",
        stack_name="brewops-dev",
        region="eu-west-1",
        _session=_FakeSession(stacks),
        _session_checked=True,
    )


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "CREATE_IN_PROGRESS"])
def test_a_stack_without_outputs_says_its_status_instead_of_lacking_a_name(status: str) -> None:
    # a first deployment that failed leaves the stack, without Outputs, in ROLLBACK_COMPLETE
    stacks = {"brewops-dev": {"StackName": "brewops-dev", "StackStatus": status}}
    tgt = _aws_target(stacks)
    for read in (lambda: tgt.outputs, lambda: targets.stack_outputs(session=_FakeSession(stacks))):
        with pytest.raises(
            targets.TargetNotReady, match=f"brewops-dev is {status}, with no Outputs"
        ) as raised:
            read()
        # what deletes it is named: sam, or notebook 02 run only to delete it
        assert "`sam delete --stack-name brewops-dev --no-prompts`" in str(raised.value)
        assert "notebook 02 with deploy = False, cleanup = True" in str(raised.value)


@pytest.mark.parametrize("status", ["DELETE_IN_PROGRESS", "DELETE_FAILED"])
def test_a_stack_being_deleted_is_not_used_though_it_still_has_outputs(status: str) -> None:
    # CloudFormation describes a stack by name until its deletion ends, Outputs and all; a
    # deletion that failed half-way leaves it so, with some of the resources gone
    from botocore.stub import Stubber

    cloudformation = boto3.client(
        "cloudformation",
        region_name="eu-west-1",
        endpoint_url="https://cloudformation.eu-west-1.amazonaws.com",  # whatever the env says
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret
    )
    described = {
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/brewops-dev/1",
        "StackName": "brewops-dev",
        "CreationTime": "2026-01-01T00:00:00Z",
        "StackStatus": status,
        "Outputs": [{"OutputKey": "StreamName", "OutputValue": "brewops-dev-beers"}],
    }
    with Stubber(cloudformation) as stubber:
        stubber.add_response(
            "describe_stacks", {"Stacks": [described]}, {"StackName": "brewops-dev"}
        )
        with pytest.raises(targets.TargetNotReady) as raised:
            targets._read_outputs(cloudformation, "brewops-dev")
    message = str(raised.value)
    assert message.startswith(
        f"Stack brewops-dev is {status} at https://cloudformation.eu-west-1.amazonaws.com: "
    )
    assert "sam delete --stack-name brewops-dev" in message
    assert "on aws, `sam build && sam deploy`" in message


def test_an_output_the_stack_lacks_says_to_deploy_it_again_or_names_its_outputs() -> None:
    # a stack deployed before the template gave ModelRegistryUri
    outputs = [{"OutputKey": "BucketName", "OutputValue": "brewops-bucket"}]
    stacks = {"brewops-dev": {"StackName": "brewops-dev", "Outputs": outputs}}
    tgt = _aws_target(stacks)

    with pytest.raises(targets.MissingOutput) as older:
        tgt.outputs["ModelRegistryUri"]
    assert str(older.value).startswith(
        "The stack brewops-dev has no ModelRegistryUri Output: it was deployed from an older "
        "infra/template.yaml. Deploy it again: `brewops local down` then `brewops local up`"
    )
    with pytest.raises(KeyError, match=r"'BucketNmae' is not an Output .* are BucketName\."):
        tgt.outputs["BucketNmae"]
    assert tgt.outputs.get("ModelRegistryUri") is None
    assert "ModelRegistryUri" not in tgt.outputs


@pytest.mark.parametrize(
    ("stack", "on_aws"),
    [
        ("brewops-dev", "on aws, `sam build && sam deploy`."),
        ("brewops-prod", "on aws, `sam build && sam deploy --config-env prod`."),
        (
            "brewops-alice",
            "on aws, `sam build && sam deploy --stack-name brewops-alice "
            "--s3-prefix brewops-alice`.",
        ),
    ],
)
def test_a_stack_that_cannot_be_read_says_where_and_how_to_deploy_it(
    stack: str, on_aws: str
) -> None:
    with pytest.raises(targets.TargetNotReady) as raised:
        targets.stack_outputs(stack, session=_FakeSession({}))

    message = str(raised.value)
    assert message.startswith(f"Stack {stack} cannot be read at https://cloudformation.example: ")
    assert "does not exist" in message
    assert f"Deploy it with `brewops local up` (local); {on_aws}" in message


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:4566",
        "http://localhost:5000",
        "http://s3.localhost:4566",
        "http://[::1]:8080",
        "127.0.0.2:9000",
    ],
)
def test_aws_refuses_an_endpoint_on_this_machine_and_says_how_to_leave_it(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # the line `brewops local up` prints for shells, exported before starting Python
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    tgt = targets.use("aws")

    with pytest.raises(targets.TargetNotReady, match=r"unset AWS_ENDPOINT_URL"):
        _ = tgt.outputs
    with pytest.raises(targets.TargetNotReady, match=re.escape(endpoint)):
        tgt.client("s3")


def test_aws_refuses_a_service_endpoint_on_this_machine(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore prefers a service's own variable to AWS_ENDPOINT_URL
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4566")

    with pytest.raises(targets.TargetNotReady, match=r"unset AWS_ENDPOINT_URL_S3 "):
        targets.use("aws").client("s3")


def test_local_routes_every_service_to_the_emulator_and_puts_their_own_endpoints_back(
    fake_local: LocalState, aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example.com")

    targets.use("local")
    assert "AWS_ENDPOINT_URL_S3" not in os.environ
    assert boto3.client("s3").meta.endpoint_url == "http://127.0.0.1:4566"

    targets.use("aws")
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "https://minio.example.com"


def test_aws_keeps_an_endpoint_elsewhere(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a VPC or FIPS endpoint is the user's choice
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com")

    client = targets.use("aws").client("s3")

    assert client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"


def test_aws_clients_give_up_connecting_after_seconds_whatever_config_they_are_made_with(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore's own 60 s, tried three times: on a network that drops packets every command
    # would sit three minutes before saying it cannot connect
    session = targets.use("aws").session
    plain = session.client("kinesis")
    own_config = session.client("kinesis", config=Config(read_timeout=900))
    read_with = []
    monkeypatch.setattr(
        targets, "_read_outputs", lambda client, stack: read_with.append(client) or {}
    )
    targets.stack_outputs("brewops-dev")  # with a session of its own

    assert plain.meta.config.connect_timeout <= 10
    assert own_config.meta.config.connect_timeout <= 10
    assert read_with[0].meta.config.connect_timeout <= 10
    assert own_config.meta.config.read_timeout == 900


def _silent(session: Any) -> list[str]:
    """Each request sent from `session`'s clients from now on, answered by none: botocore
    sees a read timeout, as from an endpoint that takes the connection and never answers."""
    from botocore.exceptions import ReadTimeoutError

    sent: list[str] = []

    def never_answer(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    session.events.register("before-send", never_answer)
    return sent


def test_a_silent_endpoint_is_given_up_on_after_three_reads_of_bounded_silence(
    aws_environment: dict[str, str],
) -> None:
    # botocore's 60 s of silence per read: reading the stack from an endpoint that never
    # answered took 3 minutes before it said so
    session = targets.aws_session()
    sent = _silent(session)

    with pytest.raises(targets.TargetNotReady, match="Read timeout"):
        targets.stack_outputs("brewops-dev", session=session)

    assert len(sent) == 3
    assert session.client("cloudformation").meta.config.read_timeout <= 20


def test_an_emulator_that_takes_the_call_and_hangs_is_named_with_how_to_restart_it(
    aws_environment: dict[str, str],
) -> None:
    session = targets.aws_session()
    _silent(session)
    emulator = session.client("cloudformation", endpoint_url="http://127.0.0.1:4566")

    with pytest.raises(targets.TargetNotReady) as hung:
        targets._describe_stack(emulator, "brewops-dev")

    assert "Read timeout" in str(hung.value)
    assert "emulator there does not answer: `brewops local down`, then `brewops local up`" in (
        str(hung.value)
    )


def test_the_sdk_clients_made_without_a_target_have_the_same_bounds(
    aws_environment: dict[str, str], tmp_path: Path
) -> None:
    from brewops import reconcile, tables
    from brewops.model import registry

    local = LocalState(
        endpoint_url="http://127.0.0.1:1", region="us-east-1", stack_name="brewops-dev",
        started_at="2026-01-01T00:00:00Z", services={},
    )  # fmt: skip
    clients = {
        "the local target's": local.session().client("s3"),
        "tables' default": tables.aws_client(None, "glue"),
        "the model registry's default": registry._s3(),
        "reconcile's default": reconcile.session_or_default(None).client("s3"),
    }

    for made_by, client in clients.items():
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (10, 20), made_by
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}, made_by


def test_other_botocore_errors_while_reading_the_stack_say_what_to_check(
    aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://cloudformation.example")

    monkeypatch.setattr("botocore.httpsession.URLLib3Session.send", unreachable)

    with pytest.raises(targets.TargetNotReady, match=r"Could not connect.*AWS_DEFAULT_REGION"):
        _ = targets.use("aws").outputs


@pytest.mark.emulator
def test_local_routes_boto3_to_the_emulator_and_aws_routes_it_back(
    local_stack: LocalState,
    local_state_dir: Path,
    aws_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(local_state_dir))

    try:
        tgt = targets.use("local")

        assert os.environ["AWS_ENDPOINT_URL"] == local_stack.endpoint_url
        assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert "AWS_SESSION_TOKEN" not in os.environ
        assert (tgt.name, tgt.endpoint_url, tgt.punkapi_url) == (
            "local",
            local_stack.endpoint_url,
            local_stack.punkapi_url,
        )
        assert tgt.outputs == local_stack.outputs
        assert targets.stack_outputs() == local_stack.outputs
        # any client, made any way, with no endpoint argument
        bucket = local_stack.outputs["BucketName"]
        assert bucket in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        assert bucket in [b["Name"] for b in tgt.client("s3").list_buckets()["Buckets"]]
    finally:
        targets.use("aws")

    for name, value in aws_environment.items():
        assert os.environ[name] == value
    assert "AWS_ENDPOINT_URL" not in os.environ


@pytest.mark.emulator
def test_a_missing_stack_is_reported_with_the_endpoint(local_target: Any) -> None:
    with pytest.raises(targets.TargetNotReady, match=local_target.endpoint_url):
        targets.stack_outputs("no-such-stack")


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> LocalState:
    """A running local target as `brewops.local.status()` reports it; nothing is started."""
    from brewops import local

    state = LocalState(
        endpoint_url="http://127.0.0.1:4566",
        region="us-east-1",
        stack_name="brewops-local",
        started_at="2026-11-26T15:00:00+00:00",
        services={},
        punkapi_url="http://127.0.0.1:8080/v2",
    )
    monkeypatch.setattr(local, "status", lambda: state)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the switch replaces it; put it back
    monkeypatch.delenv("BREWOPS_STACK_NAME", raising=False)  # it would ask for another stack
    yield state
    targets.use("aws")  # put back whatever use("local") replaced


def test_switching_back_and_forth_puts_back_the_users_settings(
    fake_local: LocalState,
    no_aws_settings: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[profile dev]\nregion = eu-west-1\n[profile prod]\nregion = eu-central-1\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "dev")

    targets.use("local")
    targets.use("local")  # twice: still the user's settings that come back
    assert "AWS_PROFILE" not in os.environ
    assert targets.use("aws").region == "eu-west-1"
    assert os.environ["AWS_PROFILE"] == "dev"
    assert "AWS_ENDPOINT_URL" not in os.environ

    monkeypatch.setenv("AWS_PROFILE", "prod")  # the user changes profile in between
    targets.use("local")
    targets.use("aws")
    assert os.environ["AWS_PROFILE"] == "prod"


def test_the_local_target_is_the_running_one_and_keeps_its_dummy_keys(
    fake_local: LocalState, aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tgt = targets.use("local")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIALATERKEY")  # the environment changes later

    assert (tgt.name, tgt.stack_name, tgt.region, tgt.endpoint_url, tgt.punkapi_url) == (
        "local",
        "brewops-local",
        "us-east-1",
        "http://127.0.0.1:4566",
        "http://127.0.0.1:8080/v2",
    )
    assert tgt.session.get_credentials().access_key == "testing"
    assert tgt.started_at == "2026-11-26T15:00:00+00:00"  # what the registry's errors name


def test_local_refuses_to_stand_in_for_the_stack_brewops_stack_name_names(
    fake_local: LocalState, aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-prod")
    before = dict(os.environ)

    with pytest.raises(
        targets.TargetNotReady, match="runs the stack brewops-local, not brewops-prod"
    ):
        targets.use("local")
    assert dict(os.environ) == before

    monkeypatch.setenv("BREWOPS_STACK_NAME", "brewops-local")
    assert targets.use("local").stack_name == "brewops-local"


@pytest.mark.parametrize("name", ["Brewops-Dev", "brewops_dev", "2-brewops", "b" * 51])
def test_a_stack_name_the_template_cannot_deploy_is_refused(
    name: str, aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the database is the name with _ for -, folded to lower case by Glue: Brewops-Dev and
    # brewops_dev would both be brewops-dev's brewops_dev; past 50 characters, the tick
    # rule's name is past its 64
    monkeypatch.setenv("BREWOPS_STACK_NAME", name)

    with pytest.raises(ActionableError, match=f"BREWOPS_STACK_NAME='{name}'.* lower-case"):
        targets.use("aws")

    for allowed in ("brewops-alice-2", "b" * 50):
        monkeypatch.setenv("BREWOPS_STACK_NAME", allowed)
        assert targets.use("aws").stack_name == allowed


def test_boto3s_default_session_follows_the_switch(
    fake_local: LocalState, aws_environment: dict[str, str]
) -> None:
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "AKIAUSERKEY"

    targets.use("local")
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "testing"
    assert boto3.client("s3").meta.endpoint_url == fake_local.endpoint_url

    targets.use("aws")
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "AKIAUSERKEY"


def test_a_local_target_in_another_region_routes_everything_to_that_region(
    fake_local: LocalState, aws_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")  # the user's, which boto3 reads first
    fake_local.region = "ap-southeast-2"

    tgt = targets.use("local")

    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "ap-southeast-2"
    assert tgt.session.region_name == "ap-southeast-2"


@pytest.mark.parametrize("name", ["staging", "Local", "", None])
def test_an_unknown_target_is_said_in_one_line_naming_the_choices(name) -> None:
    # an ActionableError, as the target's other refusals: the commands print it as one line
    with pytest.raises(ActionableError, match=r"unknown target .*: choose one of local, aws"):
        targets.use(name)
