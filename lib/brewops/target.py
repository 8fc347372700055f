"""Where the pipeline runs: the local target (the embedded AWS emulator and Punk API
server) or real AWS. Notebooks and tests start with

    from brewops import target as targets
    tgt = targets.use("local")     # or "aws"
    tgt.outputs["BucketName"], tgt.punkapi_url, tgt.session.client("s3")

`use("local")` points the AWS SDK at the emulator through environment variables, so
boto3 and awswrangler need no endpoint arguments anywhere else. `use("aws")` uses the
normal credential chain and region.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from brewops.errors import ActionableError
from brewops.local.state import default_stack_name, emulator_environment

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


class TargetNotReady(RuntimeError, ActionableError):
    """The target has nothing running or deployed to use."""


def stack_outputs(stack_name: str | None = None, session: Any = None) -> dict[str, str]:
    """Outputs of the stack, by OutputKey, from CloudFormation wherever the environment
    points (the emulator after `use("local")`)."""
    cloudformation = (session or boto3.session.Session()).client("cloudformation")
    return _read_outputs(cloudformation, stack_name or default_stack_name())


def _read_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        raise TargetNotReady(
            f"Stack {stack_name} cannot be read at {cloudformation.meta.endpoint_url}: {error}. "
            "Deploy it with `brewops local up` (local) or `sam deploy` (aws)."
        ) from error
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@dataclass
class Target:
    name: str
    stack_name: str
    region: str | None
    session: Any  # boto3.session.Session
    endpoint_url: str | None = None
    _punkapi_url: str | None = None
    _outputs: dict[str, str] | None = field(default=None, repr=False)

    @property
    def outputs(self) -> dict[str, str]:
        """The stack Outputs (read once, then kept)."""
        if self._outputs is None:
            self._outputs = _read_outputs(self.client("cloudformation"), self.stack_name)
        return self._outputs

    @property
    def punkapi_url(self) -> str | None:
        """Base URL of the Punk API the target's producer uses, version prefix included.
        On AWS: BREWOPS_PUNKAPI_URL, else the stack's PunkApiUrl parameter."""
        if self._punkapi_url is None and self.name == "aws":
            self._punkapi_url = os.environ.get("BREWOPS_PUNKAPI_URL") or self._stack_parameter(
                "PunkApiUrl"
            )
        return self._punkapi_url

    def client(self, service_name: str, **kwargs: Any) -> Any:
        if self.endpoint_url:
            kwargs.setdefault("endpoint_url", self.endpoint_url)
        return self.session.client(service_name, **kwargs)

    def _stack_parameter(self, key: str) -> str | None:
        stack = self.client("cloudformation").describe_stacks(StackName=self.stack_name)
        for parameter in stack["Stacks"][0].get("Parameters", []):
            if parameter["ParameterKey"] == key:
                return parameter["ParameterValue"]
        return None


def _route_to_emulator(endpoint_url: str, region: str) -> None:
    global _saved_environment
    if _saved_environment is None:
        _saved_environment = {name: os.environ.get(name) for name in _LOCAL_VARIABLES}
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
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
    """Select the target for this process: "local" or "aws"."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if target == "local":
        from brewops import local

        state = local.status()
        if state is None:
            raise TargetNotReady(
                "The local target is not running. Start it with `brewops local up` "
                "(or brewops.local.up())."
            )
        _route_to_emulator(state.endpoint_url, state.region)
        # the default session caches credentials and region from before the switch
        boto3.setup_default_session()
        return Target(
            name="local",
            stack_name=state.stack_name,
            region=state.region,
            session=state.session(),  # the dummy keys, whatever the environment says later
            endpoint_url=state.endpoint_url,
            _punkapi_url=state.punkapi_url,
        )
    if _restore_environment():
        boto3.setup_default_session()
    session = boto3.session.Session()
    return Target(
        name="aws", stack_name=default_stack_name(), region=session.region_name, session=session
    )
