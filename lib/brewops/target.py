"""Where the pipeline runs: the local target (the embedded AWS emulator and Punk API
server) or real AWS. Notebooks and tests start with

    from brewops import target as targets
    tgt = targets.use("local")     # or "aws"
    tgt.outputs["BucketName"], tgt.punkapi_url, tgt.session.client("s3")

`use("local")` points the AWS SDK at the emulator through environment variables, so
boto3 and awswrangler need no endpoint arguments anywhere else. `use("aws")` uses the
normal credential chain and region; a missing region or credentials is reported as
TargetNotReady, saying what to set, before the first call to AWS.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from brewops.errors import ActionableError
from brewops.local.state import chosen_stack_name, default_stack_name, emulator_environment

TARGETS = ("local", "aws")

# The stack Outputs every notebook and test reads: the contract of infra/template.yaml.
STACK_OUTPUTS = frozenset(
    {
        "BucketName",
        "StreamName",
        "StreamArn",
        "RawDeliveryStreamName",
        "CleanedDeliveryStreamName",
        "GlueDatabaseName",
        "CleanedTableName",
        "RawTableName",
        "ProducerFunctionName",
        "TransformFunctionName",
        "ScheduleRuleName",
        "AthenaWorkGroupName",
        "AlarmTopicArn",
        "DashboardUrl",
        "ModelRegistryUri",
    }
)

# What use("local") sets; use("aws") puts back what was there before.
_LOCAL_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    # a session token or profile meant for AWS would travel with the dummy keys
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
_saved_environment: dict[str, str | None] | None = None


# botocore's own words for these are a traceback ending in NoRegionError or
# NoCredentialsError; these say what to set.
NO_REGION = (
    "No AWS region for the aws target: set AWS_DEFAULT_REGION (boto3 does not read "
    "AWS_REGION), or choose a profile that has a region with AWS_PROFILE."
)
NO_CREDENTIALS = (
    "No AWS credentials for the aws target: run `aws configure` (or `aws sso login`), "
    "or choose a profile with AWS_PROFILE."
)


# botocore's own: 60 s to connect and 60 s for each read, 3 attempts (awswrangler asks for
# 6): an endpoint that takes the connection and never answers (a proxy or firewall that
# swallows requests, a hung emulator) held a command 3 to 6 minutes per call. AWS answers
# these calls within seconds; the read timeout is the longest silence between two reads,
# not the time a whole answer may take, so a large S3 object still streams in whole.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 20
MAX_ATTEMPTS = 3  # botocore's standard mode: throttling and 5xx are retried with backoff
AWS_CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
)


def aws_session(**kwargs: Any) -> Any:
    """A boto3 session (`kwargs`: region and keys, else the normal credential chain) whose
    clients take AWS_CLIENT_CONFIG for whatever the config they are created with leaves
    unset: every client the package and awswrangler make goes through one."""
    core = botocore.session.get_session()
    core.set_default_client_config(AWS_CLIENT_CONFIG)
    return boto3.session.Session(botocore_session=core, **kwargs)


def awswrangler() -> Any:
    """awswrangler, its clients made with AWS_CLIENT_CONFIG unless a config was given it
    (`wr.config.botocore_config`): its own asks for 5 retries, 6 attempts, which would win
    over the session's."""
    import awswrangler as wr

    if wr.config.botocore_config is None:
        # its own pool size: its readers run threads
        wr.config.botocore_config = Config(max_pool_connections=10).merge(AWS_CLIENT_CONFIG)
    return wr


class TargetNotReady(RuntimeError, ActionableError):
    """The target has nothing running or deployed to use."""


class UnknownTarget(ValueError, ActionableError):
    """A target name that is neither "local" nor "aws"."""


def check_session(session: Any) -> None:
    """Raise TargetNotReady unless `session` has a region and credentials; no request is
    sent to AWS (on EC2 the credential chain may ask the instance metadata service)."""
    try:
        region = session.region_name
        credentials = session.get_credentials()
    except BotoCoreError as error:  # e.g. a profile that is not in the config files
        raise TargetNotReady(f"The AWS configuration cannot be used: {error}.") from error
    if not region:
        raise TargetNotReady(NO_REGION)
    if credentials is None:
        raise TargetNotReady(NO_CREDENTIALS)


def _service_endpoint_variables() -> list[str]:
    """AWS_ENDPOINT_URL_<SERVICE> variables set: each wins over AWS_ENDPOINT_URL for its
    service."""
    return sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_"))


def check_not_routed_to_this_machine() -> None:
    """Raise TargetNotReady if AWS_ENDPOINT_URL (or a service's own AWS_ENDPOINT_URL_<SERVICE>)
    sends the aws target to a server on this machine, as the line `brewops local up` prints
    for shells sets it to the emulator."""
    for name in ("AWS_ENDPOINT_URL", *_service_endpoint_variables()):
        endpoint = os.environ.get(name)
        if not endpoint:
            continue
        if on_this_machine(endpoint):
            raise TargetNotReady(
                f"{name}={endpoint} sends the aws target to this machine, not to AWS "
                "(the shell line `brewops local up` prints sets AWS_ENDPOINT_URL for the "
                f"emulator). Run `unset {name} AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY` in "
                "that shell, or use the local target."
            )


def on_this_machine(endpoint: str) -> bool:
    """Whether an endpoint URL (or bare host:port) names this machine: localhost or a
    loopback address."""
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    return host == "localhost" or host.endswith(".localhost") or _is_loopback(host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stack_outputs(stack_name: str | None = None, session: Any = None) -> StackOutputs:
    """Outputs of the stack, by OutputKey, from CloudFormation wherever the environment
    points (the emulator after `use("local")`)."""
    session = session or aws_session()
    check_session(session)
    cloudformation = session.client("cloudformation")
    return _read_outputs(cloudformation, stack_name or default_stack_name())


def _read_outputs(cloudformation: Any, stack_name: str) -> StackOutputs:
    stack = _describe_stack(cloudformation, stack_name)
    return _outputs_of(stack, stack_name, cloudformation.meta.endpoint_url)


class MissingOutput(KeyError, ActionableError):
    """A stack Output the stack does not have: it was deployed from an older template, or
    the name is not one the template gives."""

    def __str__(self) -> str:  # KeyError's would show the message quoted
        return str(self.args[0])


class StackOutputs(dict[str, str]):
    """The stack's Outputs by OutputKey. A key it lacks raises MissingOutput, which says
    whether the stack predates the template (deploy it again) or the name is not an Output."""

    def __init__(self, outputs: dict[str, str], stack_name: str) -> None:
        super().__init__(outputs)
        self.stack_name = stack_name

    def __missing__(self, key: str) -> str:
        if key in STACK_OUTPUTS:
            raise MissingOutput(
                f"The stack {self.stack_name} has no {key} Output: it was deployed from an "
                "older infra/template.yaml. Deploy it again: `brewops local down` then "
                f"`brewops local up` (local); {_how_to_deploy_to_aws(self.stack_name)}."
            )
        raise MissingOutput(
            f"{key!r} is not an Output of the stack {self.stack_name}; its Outputs are "
            f"{', '.join(sorted(self))}. A new one goes in the template's Outputs and in "
            "brewops.target.STACK_OUTPUTS."
        )


# A stack being deleted, or whose deletion stopped half-way, still has its Outputs, which
# name resources that may be gone: the records sent there would be lost
DELETED_STATES = frozenset({"DELETE_IN_PROGRESS", "DELETE_FAILED"})


def _outputs_of(stack: dict[str, Any], stack_name: str, where: str | None) -> StackOutputs:
    """The stack's Outputs by OutputKey; TargetNotReady, with its status, if it has none
    (CloudFormation still describes a stack whose first deployment failed) or is being
    deleted."""
    status = stack.get("StackStatus")
    if status in DELETED_STATES:
        raise TargetNotReady(
            f"Stack {stack_name} is {status} at {where}: its resources are being deleted, or "
            "some are gone. Wait for the deletion to end (DELETE_FAILED: `aws cloudformation "
            f"describe-stack-events --stack-name {stack_name}` names the resource that could "
            f"not be deleted; remove what holds it and delete the stack again with `sam delete "
            f"--stack-name {stack_name}`), then deploy it: "
            f"{_how_to_deploy_to_aws(stack_name)}."
        )
    outputs = StackOutputs(
        {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}, stack_name
    )
    if not outputs:
        status = stack.get("StackStatus", "in an unknown state")
        raise TargetNotReady(
            f"Stack {stack_name} is {status}, with no Outputs, at {where}. A first deployment "
            "that failed (ROLLBACK_COMPLETE) must be deleted (`sam delete --stack-name "
            f"{stack_name} --no-prompts`, or notebook 02 with deploy = False, cleanup = True) and "
            "deployed again; one in progress, waited for. Deploy with `brewops local up` "
            "(local); "
            f"{_how_to_deploy_to_aws(stack_name)}."
        )
    return outputs


def _how_to_deploy_to_aws(stack_name: str) -> str:
    """The deploy command of the samconfig.toml environment that deploys `stack_name`."""
    from brewops import infra

    try:
        config_env = infra.sam_config_env(stack_name)
        own_s3_prefix = infra.sam_own_s3_prefix(stack_name)
    except ValueError as error:  # no environment deploys it: say which stacks can be
        return f"on aws, {error}"
    option = "" if config_env == infra.DEFAULT_CONFIG_ENV else f" --config-env {config_env}"
    if own_s3_prefix:  # a stack of one's own, with the default environment's settings
        option += f" --stack-name {stack_name} --s3-prefix {own_s3_prefix}"
    return f"on aws, `sam build && sam deploy{option}`"


def _describe_stack(cloudformation: Any, stack_name: str) -> dict[str, Any]:
    where = cloudformation.meta.endpoint_url
    try:
        return cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        raise TargetNotReady(
            f"Stack {stack_name} cannot be read at {where}: {error}. "
            f"Deploy it with `brewops local up` (local); {_how_to_deploy_to_aws(stack_name)}."
        ) from error
    except BotoCoreError as error:  # no credentials, no connection, an expired SSO login…
        if on_this_machine(where or ""):  # the emulator took the call and hung, say
            raise TargetNotReady(
                f"Stack {stack_name} cannot be read at {where}: {error}. The AWS emulator "
                "there does not answer: `brewops local down`, then `brewops local up`, "
                "starts it again."
            ) from error
        raise TargetNotReady(
            f"Stack {stack_name} cannot be read at {where}: {error}. Check the region and "
            "credentials (AWS_DEFAULT_REGION, AWS_PROFILE, `aws configure`) and the connection."
        ) from error


@dataclass
class Target:
    """The target `use` selected: its name, stack and boto3 session; `outputs` are the stack
    Outputs every notebook reads."""

    name: str
    stack_name: str
    region: str | None
    _session: Any  # boto3.session.Session
    endpoint_url: str | None = None
    _punkapi_url: str | None = None
    started_at: str | None = None  # when the local target started; None on AWS
    _outputs: dict[str, str] | None = field(default=None, repr=False)
    _stack: dict[str, Any] | None = field(default=None, repr=False)
    _session_checked: bool = field(default=False, repr=False)

    @property
    def session(self) -> Any:
        """The boto3 session, checked for a region and credentials on first use.

        Not checked in `use("aws")`: that also puts back the environment `use("local")`
        replaced, which must work on a machine with no AWS settings at all."""
        if not self._session_checked:
            if self.name == "aws":
                check_not_routed_to_this_machine()
            check_session(self._session)
            self._session_checked = True
        return self._session

    @property
    def outputs(self) -> dict[str, str]:
        """The stack Outputs (read once, then kept); one the stack lacks raises
        MissingOutput, saying what to do."""
        if self._outputs is None:
            self._outputs = _outputs_of(self.stack, self.stack_name, self.endpoint_url or "AWS")
        return self._outputs

    @property
    def stack(self) -> dict[str, Any]:
        """The stack as CloudFormation describes it (read once, then kept)."""
        if self._stack is None:
            self._stack = _describe_stack(self.client("cloudformation"), self.stack_name)
        return self._stack

    @property
    def stack_id(self) -> str:
        """The stack's own id: a stack deleted and created again (or a fresh `brewops local
        up`) gets a new one, so records of what was produced can be told apart."""
        return self.stack["StackId"]

    @property
    def punkapi_url(self) -> str | None:
        """Base URL of the Punk API the target's producer uses, version prefix included.
        On AWS: BREWOPS_PUNKAPI_URL, else the stack's PunkApiUrl parameter."""
        if self._punkapi_url is None and self.name == "aws":
            from brewops.punkapi.client import check_base_url

            if given := os.environ.get("BREWOPS_PUNKAPI_URL"):
                self._punkapi_url = check_base_url(given, "BREWOPS_PUNKAPI_URL")
            else:
                self._punkapi_url = self._stack_parameter("PunkApiUrl")
        return self._punkapi_url

    @property
    def punkapi_version(self) -> str:
        """The contract the target's Punk API speaks (v2 or v3). On AWS, the stack's
        PunkApiVersion parameter, since its PunkApiUrl need not end in /v2 or /v3; a URL
        given in BREWOPS_PUNKAPI_URL speaks the version its last segment names."""
        from brewops.punkapi.client import api_version_of

        url = self.punkapi_url or ""
        if self.name == "aws" and not os.environ.get("BREWOPS_PUNKAPI_URL"):
            return self._stack_parameter("PunkApiVersion") or api_version_of(url)
        return api_version_of(url)

    def client(self, service_name: str, **kwargs: Any) -> Any:
        """A boto3 client of the target's session (the emulator's endpoint locally)."""
        if self.endpoint_url:
            kwargs.setdefault("endpoint_url", self.endpoint_url)
        return self.session.client(service_name, **kwargs)

    def _stack_parameter(self, key: str) -> str | None:
        """The stack's parameter `key`. On AWS, for a stack not deployed yet, the value its
        first deploy gives it: `make run TARGET=aws` reads the Punk API in notebook 01,
        before notebook 02 deploys the stack."""
        try:
            stack = self.stack
        except TargetNotReady as error:
            if self.name != "aws" or not _not_deployed(error.__cause__):
                raise
            try:
                return _first_deploy_parameter(self.stack_name, key)
            except ValueError:  # samconfig.toml cannot deploy it: the stack's error says so
                raise error from error.__cause__
        for parameter in stack.get("Parameters", []):
            if parameter["ParameterKey"] == key:
                return parameter["ParameterValue"]
        return None


def _not_deployed(error: BaseException | None) -> bool:
    """Whether DescribeStacks said the stack does not exist (CloudFormation's answer is a
    ValidationError, "Stack with id NAME does not exist")."""
    if not isinstance(error, ClientError):
        return False
    said = error.response.get("Error", {})
    return said.get("Code") == "ValidationError" and "does not exist" in said.get("Message", "")


def _first_deploy_parameter(stack_name: str, key: str) -> str | None:
    """The value of the template parameter `key` that deploying `stack_name` gives it: its
    samconfig.toml environment's, else the template's Default."""
    from brewops import infra

    given = infra.sam_config_parameters(infra.sam_config_env(stack_name))
    if key in given:
        return given[key]
    default = (infra.load_template().get("Parameters") or {}).get(key, {}).get("Default")
    return None if default is None else str(default)


def punkapi_endpoint(
    api_url: str | None = None, api_version: str | None = None, tgt: Target | None = None
) -> tuple[str | None, str]:
    """(base URL, API version) of the Punk API to read: `api_url` with the version its last
    segment names (…/v2 or …/v3), else the target's own, on AWS its stack's PunkApiVersion.
    `api_version` overrides either."""
    from brewops.punkapi import canonical_api_version
    from brewops.punkapi.client import api_version_of

    if api_version:
        api_version = canonical_api_version(api_version)
    if api_url:
        return api_url, api_version or api_version_of(api_url)
    if tgt is None:
        raise ValueError("no Punk API: give api_url or a target")
    return tgt.punkapi_url, api_version or tgt.punkapi_version


def _route_to_emulator(endpoint_url: str, region: str) -> None:
    global _saved_environment
    if _saved_environment is None:
        _saved_environment = {name: os.environ.get(name) for name in _LOCAL_VARIABLES}
    # a service's own endpoint would send that service's calls past the emulator
    service_endpoints = _service_endpoint_variables()
    for name in service_endpoints:
        _saved_environment.setdefault(name, os.environ[name])
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", *service_endpoints):
        os.environ.pop(name, None)
    os.environ.update(emulator_environment(endpoint_url, region))


def _restore_environment() -> bool:
    """Put back what `_route_to_emulator` replaced; False if it had replaced nothing."""
    global _saved_environment
    if _saved_environment is None:
        return False
    for name, value in _saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_environment = None
    return True


def use(target: str = "local") -> Target:
    """Select the target for this process, "local" or "aws", and return it.

    Another name raises UnknownTarget; a local target that is not running, or an AWS
    configuration that cannot be used, raises TargetNotReady.

    Switching unsets variables of the process's environment: select the target before
    starting threads that make requests, which read it (for proxies) as they go."""
    if target not in TARGETS:
        raise UnknownTarget(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if target == "local":
        from brewops import local

        state = local.status()
        if state is None:
            raise TargetNotReady(
                "The local target is not running. Start it with `brewops local up` "
                "(or brewops.local.up())."
            )
        chosen = chosen_stack_name()
        if chosen and chosen != state.stack_name:
            raise TargetNotReady(
                f"The local target runs the stack {state.stack_name}, not {chosen} "
                f"(BREWOPS_STACK_NAME). Unset BREWOPS_STACK_NAME to use {state.stack_name}, or "
                f"run `brewops local down`, then `brewops local up` with it set to run {chosen}."
            )
        _route_to_emulator(state.endpoint_url, state.region)
        # the default session caches credentials and region from before the switch
        boto3.setup_default_session()
        return Target(
            name="local",
            stack_name=state.stack_name,
            region=state.region,
            _session=state.session(),  # the dummy keys, whatever the environment says later
            endpoint_url=state.endpoint_url,
            _punkapi_url=state.punkapi_url,
            started_at=state.started_at,
        )
    try:
        if _restore_environment():
            boto3.setup_default_session()
        session = aws_session()
        region = session.region_name
    except BotoCoreError as error:  # e.g. AWS_PROFILE names a profile that does not exist
        raise TargetNotReady(f"The AWS configuration cannot be used: {error}.") from error
    return Target(name="aws", stack_name=default_stack_name(), region=region, _session=session)
