"""Deploy the SAM template to the embedded AWS, the way `sam build && sam deploy` does on AWS.

The template is translated offline with aws-sam-translator (its bundled managed-policy map
instead of IAM calls), the code of each function is zipped and uploaded to a local
artifacts bucket, and the result is created as a stack through moto's CloudFormation, so
resource names and stack Outputs come out as on AWS. The zips hold the package source only,
not the requirements `sam build` adds: moto stores a function's code, it never runs it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from brewops.errors import ActionableError
from brewops.local.state import CREDENTIALS

ARTIFACTS_BUCKET = "brewops-local-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]

# Left out of code packages: caches and build metadata, never imported by a handler.
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


class DeployError(RuntimeError, ActionableError):
    """The stack could not be created."""


# ----------------------------------------------------------------------------- template


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub, !GetAtt ...)."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    if tag_suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node).split(".", 1)}
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    # a SafeLoader subclass: only CloudFormation's tags added, no Python objects
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506


def template_digest(template: dict[str, Any]) -> str:
    """What a loaded template says, as a sha256: its comments and layout do not count."""
    text = json.dumps(template, sort_keys=True, default=str)  # default: unquoted YAML dates
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- packaging


def _packaged(path: Path, root: Path) -> bool:
    relative = path.relative_to(root)
    return not (
        EXCLUDED_PARTS.intersection(relative.parts)
        or any(part.endswith(EXCLUDED_SUFFIXES) for part in relative.parts)
    )


def package_code(source: Path) -> bytes:
    """A Lambda deployment zip of `source` (a directory), reproducible byte for byte: the
    same files give the same zip, so an unchanged package keeps its key."""
    source = Path(source)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file() and _packaged(p, source)):
            info = zipfile.ZipInfo(
                path.relative_to(source).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _is_local_path(code_uri: Any) -> bool:
    return isinstance(code_uri, str) and not code_uri.startswith("s3://")


def package_template(
    template: dict[str, Any], template_dir: Path, bucket: str, prefix: str
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A copy of `template` whose local CodeUri paths (in functions and in Globals) point
    at zips in `bucket`, as `sam package` does, and the zips to upload there by key."""
    template = copy.deepcopy(template)
    artifacts: dict[str, bytes] = {}
    locations: dict[Path, dict[str, str]] = {}

    def location(code_uri: str) -> dict[str, str]:
        source = (template_dir / code_uri).resolve()
        if source not in locations:
            if not source.is_dir():
                raise DeployError(f"CodeUri {code_uri!r} is not a directory: {source}")
            body = package_code(source)
            key = f"{prefix}/{hashlib.sha256(body).hexdigest()[:20]}.zip"
            artifacts[key] = body
            locations[source] = {"Bucket": bucket, "Key": key}
        return locations[source]

    globals_function = (template.get("Globals") or {}).get("Function") or {}
    if _is_local_path(globals_function.get("CodeUri")):
        globals_function["CodeUri"] = location(globals_function["CodeUri"])
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and _is_local_path(
            properties.get("CodeUri")
        ):
            properties["CodeUri"] = location(properties["CodeUri"])
    return template, artifacts


# ----------------------------------------------------------------------------- translation


class _BundledManagedPolicies:
    """Managed-policy names to ARNs from the map bundled with aws-sam-translator, in
    place of its loader that lists the policies through IAM."""

    def load(self) -> dict[str, str]:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        return get_bundled_managed_policy_map("aws") or {}


def translate(
    template: dict[str, Any], parameters: dict[str, str] | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """The SAM template as plain CloudFormation, translated offline."""
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    metrics = Metrics(metrics_publisher=DummyMetricsPublisher())
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        # dummy keys: translation is offline, and a call that tried AWS would be refused
        boto_session=boto3.session.Session(region_name=region, **CREDENTIALS),
        metrics=metrics,
    )
    try:
        return translator.translate(
            copy.deepcopy(template),
            parameter_values=dict(parameters or {}),
            get_managed_policy_map=_BundledManagedPolicies().load,
        )
    finally:
        metrics.publish()  # to nowhere; unpublished metrics are logged as a warning


# ----------------------------------------------------------------------------- stack


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@dataclass
class PreparedStack:
    """Everything `create_stack` sends, made without the emulator: the translated
    template, its parameters and the code packages it refers to."""

    stack_name: str
    template: dict[str, Any]
    parameters: dict[str, str]
    artifacts: dict[str, bytes]
    source_digest: str = ""  # template_digest() of the SAM template as read


def check_parameter_values(template: dict[str, Any], parameters: dict[str, str]) -> None:
    """Refuse, as CloudFormation does before it creates anything, a parameter whose value
    (given, else its Default) breaks its declaration: Type Number, MinValue, MaxValue,
    AllowedValues, AllowedPattern, MinLength, MaxLength. moto checks none of them, and
    creates the stack with the value, or fails half-way with a bare HTTP 500."""
    problems = []
    for name, declaration in (template.get("Parameters") or {}).items():
        value = parameters.get(name, declaration.get("Default"))
        if value is None:
            problems.append(f"{name} has no value and no Default")
            continue
        value = str(value)
        source = "" if name in parameters else " (its Default)"
        broken = _broken_constraint(declaration, value)
        if broken:
            explained = declaration.get("ConstraintDescription")
            problems.append(
                f"{name}={value!r}{source} {broken}" + (f": {explained}" if explained else "")
            )
    if problems:
        raise DeployError(
            "template parameters that CloudFormation would refuse: "
            + "; ".join(problems)
            + ". Nothing was deployed: correct the value in the template (or the override)"
        )


_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _broken_constraint(declaration: dict[str, Any], value: str) -> str | None:
    """What `value` breaks in a String or Number parameter's declaration, or None."""
    kind = declaration.get("Type", "String")
    if kind == "Number":
        # float() also reads "nan" (on which moto fails) and "1_0" (which moto deploys as 10)
        if _NUMBER.fullmatch(value) is None:
            return "is not a number"
        number = float(value)
        if "MinValue" in declaration and number < float(declaration["MinValue"]):
            return f"is less than its MinValue {declaration['MinValue']}"
        if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
            return f"is greater than its MaxValue {declaration['MaxValue']}"
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        return f"is not one of its AllowedValues {', '.join(str(a) for a in allowed)}"
    if kind != "String":
        return None
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return f"does not match its AllowedPattern {pattern}"
    if "MinLength" in declaration and len(value) < int(declaration["MinLength"]):
        return f"is shorter than its MinLength {declaration['MinLength']}"
    if "MaxLength" in declaration and len(value) > int(declaration["MaxLength"]):
        return f"is longer than its MaxLength {declaration['MaxLength']}"
    return None


def prepare(
    template_path: Path,
    stack_name: str,
    parameters: dict[str, str] | None = None,
    region: str = "us-east-1",
) -> PreparedStack:
    """Package the code and translate the template, offline."""
    template_path = Path(template_path)
    template = load_template(template_path)
    # CloudFormation rejects parameters a template does not declare
    declared = template.get("Parameters") or {}
    parameters = {k: str(v) for k, v in (parameters or {}).items() if k in declared}
    check_parameter_values(template, parameters)
    packaged, artifacts = package_template(
        template, template_path.parent, ARTIFACTS_BUCKET, stack_name
    )
    translated = translate(packaged, parameters, region)
    _check_no_metric_math_alarms(translated)
    for resource in translated["Resources"].values():
        # moto keeps only what says Retain; a local create that fails stops the emulator
        # with all it made, so the "except on create" part has nothing to do here
        if resource.get("DeletionPolicy") == "RetainExceptOnCreate":
            resource["DeletionPolicy"] = "Retain"
    return PreparedStack(stack_name, translated, parameters, artifacts, template_digest(template))


def _check_no_metric_math_alarms(template: dict[str, Any]) -> None:
    """moto's CloudWatch takes an alarm's metric queries only as its own request parser
    builds them, so the local model has none for them: refused here, before the emulator
    answers the whole stack with a bare HTTP 500."""
    metric_math = sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
        and (resource.get("Properties") or {}).get("Metrics")
    )
    if metric_math:
        raise DeployError(
            f"the local target does not support metric math alarms (`Metrics:`): "
            f"{', '.join(metric_math)}. Target 'aws' deploys them as they are; for the "
            "local target, alarm on one metric instead (MetricName, Namespace, Statistic, "
            "Dimensions)"
        )


def create_stack(
    session: boto3.session.Session, endpoint_url: str, prepared: PreparedStack
) -> dict[str, str]:
    """Upload the code packages and create the stack on the emulator; returns its Outputs."""
    s3 = session.client("s3", endpoint_url=endpoint_url)
    cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)  # idempotent in us-east-1
    for key, body in prepared.artifacts.items():
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=body)
    name = prepared.stack_name
    try:
        # moto creates the resources within this call, so their errors surface here
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps(prepared.template),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in prepared.parameters.items()
            ],
            Capabilities=CAPABILITIES,
        )
    except Exception as error:
        raise DeployError(f"stack {name} was not created: {error}") from error
    try:
        cloudformation.get_waiter("stack_create_complete").wait(
            StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    except Exception as error:
        reason = _failure(cloudformation, name)
        raise DeployError(f"stack {name} was not created: {reason}") from error
    _check_all_created(cloudformation, name, prepared.template)
    return stack_outputs(cloudformation, name)


def deploy(
    session: boto3.session.Session,
    endpoint_url: str,
    template_path: Path,
    stack_name: str,
    parameters: dict[str, str] | None = None,
) -> dict[str, str]:
    """Package, translate and create the stack on the emulator; returns its Outputs."""
    prepared = prepare(template_path, stack_name, parameters, session.region_name)
    return create_stack(session, endpoint_url, prepared)


def _check_all_created(cloudformation: Any, stack_name: str, template: dict[str, Any]) -> None:
    """moto's CloudFormation skips, with a log line only, resource types it has no model
    for; a stack missing a resource must fail loudly instead."""
    listed = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    created = {r.get("LogicalResourceId") for r in listed}
    missing = sorted(
        f"{logical_id} ({resource['Type']})"
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource and logical_id not in created
    )
    if missing:
        raise DeployError(
            f"the emulator created stack {stack_name} without {', '.join(missing)}: "
            "add a CloudFormation model for these types to brewops.local.cfn_models"
        )


def _failure(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
        for e in events
        if e.get("ResourceStatus", "").endswith("FAILED")
    ]
    return "; ".join(reasons) or "no failure reason recorded"


def delete_if_exists(session: boto3.session.Session, endpoint_url: str, stack_name: str) -> None:
    """Delete the stack if the emulator has one of that name (in any state)."""
    cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
    try:
        cloudformation.describe_stacks(StackName=stack_name)
    except cloudformation.exceptions.ClientError:
        return  # no such stack
    delete(session, endpoint_url, stack_name)


# `down` stops the emulator whatever happens: a hung one must not hold it for minutes
_IMPATIENT = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1})


def delete(
    session: boto3.session.Session, endpoint_url: str, stack_name: str, patient: bool = True
) -> None:
    """Delete the stack. Buckets it deletes are emptied first, as CloudFormation does not
    delete a bucket that holds objects; buckets with a Retain policy are kept whole.
    `patient=False` gives each call 10 s and no retry."""
    config = None if patient else _IMPATIENT
    cloudformation = session.client("cloudformation", endpoint_url=endpoint_url, config=config)
    body = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
    resources = (json.loads(body) if isinstance(body, str) else body)["Resources"]
    s3 = session.resource("s3", endpoint_url=endpoint_url, config=config)
    listed = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    for resource in listed:
        declared = resources.get(resource.get("LogicalResourceId"), {})
        if (
            declared.get("Type") == "AWS::S3::Bucket"
            and declared.get("DeletionPolicy") != "Retain"
            and resource.get("PhysicalResourceId")
        ):
            bucket = s3.Bucket(resource["PhysicalResourceId"])
            bucket.object_versions.delete()
            bucket.objects.delete()
    cloudformation.delete_stack(StackName=stack_name)
    cloudformation.get_waiter("stack_delete_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
