"""infra/access.yaml: the policies for whoever deploys the stacks and whoever runs the pipeline
on them allow what CloudFormation's resource handlers, the SAM CLI and the package call, on
the resources a stack of the pattern gives, and nothing of another stack.

What IAM scopes each action to (and which strings are actions at all) comes from cfn-lint's
IAM data; what each resource type's handlers call, from its provider schema, which cfn-lint
ships too. The policies are evaluated by `allows` below: Allow statements only, Action and
Resource wildcards, StringEquals and StringLike conditions."""

from __future__ import annotations

import ast
import copy
import json
import re
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from cfnlint.api import ManualArgs, lint_file
from cfnlint.data import AdditionalSpecs
from cfnlint.decode import decode
from cfnlint.helpers import load_resource
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from brewops.infra import load_template
from brewops.local.deploy import translate
from brewops.paths import repo_root

ROOT = repo_root()
ACCESS = ROOT / "infra" / "access.yaml"
PARTITION, REGION, ACCOUNT = "aws", "eu-west-1", "123456789012"
STACK, OTHER_STACK = "brewops-dev", "otherapp-dev"
DEPLOYER = ("DeployerPolicy", "DeployerDataPolicy")
OPERATOR = ("OperatorPolicy",)
BOUNDARY = ("StackRoleBoundary",)
# CloudFormation's generated names end in 12 characters of its own; any will do
SUFFIX = "abcdefghijkl"
# StackRoleBoundary's ARN, the access stack deployed as the README deploys it
BOUNDARY_ARN = (
    f"arn:{PARTITION}:iam::{ACCOUNT}:policy/access-brewops-StackRoleBoundary-{SUFFIX.upper()}"
)
# The actions on a role IAM gives the key iam:PermissionsBoundary (the boundary the request
# sets, or the role has), from AWS's Service Authorization Reference: cfn-lint's IAM data
# names no condition keys of IAM's actions
BOUNDARY_KEYED = {
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
}
# What the role's update handler calls when the boundary is taken off: refused to deployers
NEVER_ALLOWED = {"iam:DeleteRolePermissionsBoundary"}
SAM_BUCKET = f"aws-sam-cli-managed-default-samclisourcebucket-{SUFFIX}"
SAM_STACK = "aws-sam-cli-managed-default"
# what sam deploy --resolve-s3 creates once per account and region (samcli.lib.bootstrap)
SAM_STACK_TYPES = ("AWS::S3::Bucket", "AWS::S3::BucketPolicy")
# Handlers: create, read, update and delete are what a stack's deploy, update and delete run.
# `list` is not: CloudFormation lists resources for the IaC generator and Cloud Control's
# ListResources, which sam deploy and sam delete never call.
HANDLERS = ("create", "read", "update", "delete")

# Permissions the handler schemas name that are S3 API operations, not IAM actions: S3
# authorizes each with the Put action of its configuration.
S3_OPERATION_ACTIONS = {
    "s3:DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "s3:DeleteBucketCors": "s3:PutBucketCORS",
    "s3:DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "s3:DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
}
# The resource a few actions act on that is none of the stack's, with what it is
ACTION_RESOURCES = {
    # Athena's own service-linked role, under a path of AWS's
    "iam:CreateServiceLinkedRole": [
        f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/athena.amazonaws.com/AWSServiceRoleForAthena"
    ],
}

# The resource of a type a handler acts on when it is not the stack's own
TYPE_RESOURCES = {
    # Lambda reads the functions' code where sam deploy uploaded it
    "AWS::Lambda::Function": {"s3:object": "sam:object"},
}

# What the SAM CLI calls itself for sam deploy --resolve-s3 and sam delete (samcli.lib.deploy,
# samcli.lib.delete, samcli.lib.package.s3_uploader, samcli.lib.utils.managed_cloudformation_stack),
# and .github/workflows/deploy.yml's `aws cloudformation describe-stacks`. Each on (a
# resource type key of `arns`, or "*").
SAM_CALLS: dict[str, tuple[str, ...]] = {
    "cloudformation:GetTemplateSummary": ("*",),
    "cloudformation:ValidateTemplate": ("*",),
    "cloudformation:DescribeStacks": ("cloudformation:stack", "sam:stack"),
    "cloudformation:CreateChangeSet": ("cloudformation:stack", "sam:stack", "sam:transform"),
    "cloudformation:DescribeChangeSet": ("cloudformation:stack", "sam:stack"),
    "cloudformation:ExecuteChangeSet": ("cloudformation:stack", "sam:stack"),
    "cloudformation:DeleteChangeSet": ("cloudformation:stack",),
    "cloudformation:ListChangeSets": ("cloudformation:stack",),
    "cloudformation:DescribeStackEvents": ("cloudformation:stack", "sam:stack"),
    "cloudformation:DescribeStackResource": ("cloudformation:stack",),
    "cloudformation:DescribeStackResources": ("cloudformation:stack",),
    "cloudformation:ListStackResources": ("cloudformation:stack",),
    "cloudformation:GetTemplate": ("cloudformation:stack",),
    "cloudformation:DeleteStack": ("cloudformation:stack",),
    # the stacks' tags (samconfig.toml's, and the SAM stack's ManagedStackSource)
    "cloudformation:TagResource": ("cloudformation:stack", "sam:stack"),
    "cloudformation:UntagResource": ("cloudformation:stack",),
    "s3:PutObject": ("sam:object",),
    "s3:GetObject": ("sam:object",),  # HeadObject; CloudFormation reading the template
    "s3:GetObjectVersion": ("sam:object",),  # Lambda reading the code of a versioned bucket
    "s3:GetObjectTagging": ("sam:object",),
    "s3:DeleteObject": ("sam:object",),
    "s3:ListBucket": ("sam:bucket",),
}

# What the package calls on the aws target and the static scan below cannot see:
# awswrangler's calls for an Athena read (awswrangler/athena: the workgroup's settings, the
# query, its state and results, the CTAS table of the result read back and dropped), what
# Athena does with the caller's credentials for it (the catalogue, the data, the results
# location), and `describe` of the local Firehose package, which reconcile and redrive call.
# Each action on (a resource type key of `arns`); S3 objects under OPERATOR_OBJECT_PREFIXES.
ALSO_CALLED: dict[str, tuple[str, ...]] = {
    "athena:GetWorkGroup": ("athena:workgroup",),
    "athena:StartQueryExecution": ("athena:workgroup",),
    "athena:GetQueryExecution": ("athena:workgroup",),
    "athena:GetQueryResults": ("athena:workgroup",),
    "athena:StopQueryExecution": ("athena:workgroup",),
    "glue:GetDatabase": ("glue:rootcatalog", "glue:database"),
    "glue:GetTable": ("glue:rootcatalog", "glue:database", "glue:table"),
    "glue:GetPartition": ("glue:rootcatalog", "glue:database", "glue:table"),
    "glue:GetPartitions": ("glue:rootcatalog", "glue:database", "glue:table"),
    "glue:BatchGetPartition": ("glue:rootcatalog", "glue:database", "glue:table"),
    "glue:CreateTable": ("glue:rootcatalog", "glue:database", "glue:ctas-table"),
    "glue:DeleteTable": ("glue:rootcatalog", "glue:database", "glue:ctas-table"),
    "s3:GetBucketLocation": ("s3:bucket",),
    "s3:ListBucket": ("s3:bucket",),
    "s3:ListBucketMultipartUploads": ("s3:bucket",),
    "s3:AbortMultipartUpload": ("s3:object",),
    "s3:ListMultipartUploadParts": ("s3:object",),
    "firehose:DescribeDeliveryStream": ("firehose:deliverystream",),
}
# What the README sends an operator to in the console, beside the package's calls: the
# dashboard (its metrics and alarms) and the saved Logs Insights queries
WATCHED: dict[str, tuple[str, ...]] = {
    "cloudwatch:GetDashboard": ("cloudwatch:dashboard",),
    "cloudwatch:GetMetricData": ("*",),  # a metric has no ARN
    "cloudwatch:DescribeAlarms": ("cloudwatch:alarm",),
    "logs:DescribeQueryDefinitions": ("*",),
    "logs:StartQuery": ("logs:function-log-group",),
    "logs:GetQueryResults": ("logs:function-log-group",),
    "logs:StopQuery": ("*",),
}
# The resources of a scanned call narrower than every resource of its type
OPERATOR_RESOURCES = {
    "logs:FilterLogEvents": ("logs:function-log-group",),  # why the transform failed a record
    "lambda:InvokeFunction": ("lambda:scheduled-function",),  # a tick by hand, not the transform
}
# Where in the bucket the package reads, writes and deletes objects on the aws target
OPERATOR_OBJECT_PREFIXES = {
    "s3:GetObject": ("raw/", "cleaned/", "errors/", "models/ibu/", "athena-results/"),
    # the model registry, redrive's moved and kept lines, Athena's results
    "s3:PutObject": ("models/ibu/", "errors/", "athena-results/"),
    "s3:AbortMultipartUpload": ("athena-results/",),
    "s3:ListMultipartUploadParts": ("athena-results/",),
    # a model version, redrive's moved lines, notebook 03's clean-up of what was delivered
    "s3:DeleteObject": ("raw/", "cleaned/", "errors/", "models/ibu/"),
}
# Boto3 operations whose IAM action has another name
OPERATION_ACTIONS = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "lambda:Invoke": "lambda:InvokeFunction",
}
# Folders of lib/brewops whose AWS calls are not the aws target's: the emulator and its
# CloudFormation, the local Firehose, and the Lambda handlers (under the stack's own roles)
NOT_SCANNED = ("local", "firehose_runtime", "lambdas")
# Method names the scan matches that are no AWS operation
NOT_OPERATIONS = {"get_session"}  # botocore.session.get_session, not Glue's GetSession


# ------------------------------------------------------------------ evaluation


def resolve(node: Any, values: dict[str, str]) -> Any:
    """`node` with Ref, Fn::Sub, Fn::Join and Fn::Split worked out from `values`."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if "Ref" in node:
        return values[node["Ref"]]
    if "Fn::GetAtt" in node:
        return values[".".join(node["Fn::GetAtt"])]
    if "Fn::Sub" in node:
        text, own = (
            (node["Fn::Sub"], {})
            if isinstance(node["Fn::Sub"], str)
            else (node["Fn::Sub"][0], node["Fn::Sub"][1])
        )
        scope = {**values, **{k: resolve(v, values) for k, v in own.items()}}
        return re.sub(r"\$\{(?!!)([^}]+)\}", lambda m: scope[m.group(1)], text).replace("${!", "${")
    if "Fn::Join" in node:
        separator, items = node["Fn::Join"]
        return separator.join(resolve(items, values))
    if "Fn::Split" in node:
        separator, text = node["Fn::Split"]
        return resolve(text, values).split(separator)
    return {key: resolve(value, values) for key, value in node.items()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_allows(
    statement: dict[str, Any], action: str, resource: str, context: dict[str, str]
) -> bool:
    assert statement["Effect"] == "Allow" and "NotAction" not in statement, statement
    assert "NotResource" not in statement, statement
    # IAM compares actions without case, resources with it
    if not any(fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in as_list(statement["Resource"])):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        assert operator in ("StringEquals", "StringLike"), operator
        for key, expected in keys.items():
            given = context.get(key)
            if given is None:
                return False
            if operator == "StringEquals" and given not in as_list(expected):
                return False
            if operator == "StringLike" and not any(
                fnmatchcase(given, e) for e in as_list(expected)
            ):
                return False
    return True


def allows(
    documents: list[dict[str, Any]],
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
) -> bool:
    return any(
        statement_allows(statement, action, resource, context or {})
        for document in documents
        for statement in as_list(document["Statement"])
    )


# ------------------------------------------------------------------ the templates


@cache
def access_template() -> dict[str, Any]:
    template, errors = decode(str(ACCESS))
    assert not errors, errors
    return json.loads(json.dumps(template))


def policies(
    names: tuple[str, ...], pattern: str = "brewops-*", region: str = REGION
) -> list[dict[str, Any]]:
    values = {
        "AWS::Partition": PARTITION,
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "StackNamePattern": pattern,
        "StackRoleBoundary": BOUNDARY_ARN,
    }
    resources = access_template()["Resources"]
    return [resolve(resources[name]["Properties"]["PolicyDocument"], values) for name in names]


@cache
def stack_template() -> dict[str, Any]:
    """infra/template.yaml after the SAM transform, as CloudFormation deploys it."""
    sam = copy.deepcopy(load_template())
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{SAM_BUCKET}/{STACK}/code.zip"
    return json.loads(json.dumps(translate(sam, region=REGION)))


# the property that names each resource of the template
NAME_PROPERTIES = {
    "AWS::Kinesis::Stream": ("Name",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Events::Rule": ("Name",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::Logs::LogStream": ("LogStreamName",),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName",),
    "AWS::Glue::Database": ("DatabaseInput", "Name"),
    "AWS::Glue::Table": ("TableInput", "Name"),
    "AWS::Athena::WorkGroup": ("Name",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::CloudWatch::Dashboard": ("DashboardName",),
}


def physical_names(stack: str) -> dict[str, tuple[str, str]]:
    """(type, name) of each resource the template names, for a stack called `stack`; the
    bucket and the roles get CloudFormation's generated names."""
    resources = stack_template()["Resources"]
    names: dict[str, str] = {"AWS::StackName": stack, "AWS::Region": REGION}
    found = {}
    for logical_id, resource in resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            names[logical_id] = f"{stack}-{logical_id.lower()}-{SUFFIX}"
        elif kind == "AWS::IAM::Role":
            names[logical_id] = f"{stack}-{logical_id}-{SUFFIX.upper()}"
        elif kind in NAME_PROPERTIES:
            value = props
            for key in NAME_PROPERTIES[kind]:
                value = value[key]
            names[logical_id] = value  # resolved below, once every name is known
        else:
            continue
        found[logical_id] = kind
    for logical_id in found:
        names[logical_id] = resolve(names[logical_id], names)
    return {logical_id: (kind, names[logical_id]) for logical_id, kind in found.items()}


def arns(stack: str) -> dict[str, list[str]]:
    """The ARNs of a stack called `stack`, by resource type as cfn-lint's IAM data names it
    (service:type); sam:* are the SAM CLI's stack and bucket, glue:ctas-table a table
    awswrangler makes for a query's result."""
    resources = stack_template()["Resources"]
    names = physical_names(stack)
    base = f"{REGION}:{ACCOUNT}"
    found: dict[str, list[str]] = {}

    def add(key: str, *values: str) -> None:
        found.setdefault(key, []).extend(values)

    database = next(name for kind, name in names.values() if kind == "AWS::Glue::Database")
    # the functions a schedule rule runs (brewops.scheduler invokes them by hand)
    scheduled = {
        target["Arn"]["Fn::GetAtt"][0]
        for resource in resources.values()
        if resource["Type"] == "AWS::Events::Rule"
        for target in resource["Properties"]["Targets"]
    }
    for logical_id, (kind, name) in names.items():
        props = resources[logical_id].get("Properties", {})
        if kind == "AWS::Kinesis::Stream":
            add("kinesis:stream", f"arn:{PARTITION}:kinesis:{base}:stream/{name}")
        elif kind == "AWS::Lambda::Function":
            add("lambda:function", f"arn:{PARTITION}:lambda:{base}:function:{name}")
            if logical_id in scheduled:
                add("lambda:scheduled-function", f"arn:{PARTITION}:lambda:{base}:function:{name}")
        elif kind == "AWS::Events::Rule":
            add("events:rule-on-default-event-bus", f"arn:{PARTITION}:events:{base}:rule/{name}")
        elif kind == "AWS::Logs::LogGroup":
            group = f"arn:{PARTITION}:logs:{base}:log-group:{name}"
            add("logs:log-group", group, f"{group}:*")
            if name.startswith("/aws/lambda/"):
                add("logs:function-log-group", group, f"{group}:*")
        elif kind == "AWS::Logs::LogStream":
            group = resolve(props["LogGroupName"], {k: v for k, (_, v) in names.items()})
            add(
                "logs:log-stream",
                f"arn:{PARTITION}:logs:{base}:log-group:{group}:log-stream:{name}",
            )
        elif kind == "AWS::KinesisFirehose::DeliveryStream":
            add("firehose:deliverystream", f"arn:{PARTITION}:firehose:{base}:deliverystream/{name}")
        elif kind == "AWS::Glue::Database":
            add("glue:database", f"arn:{PARTITION}:glue:{base}:database/{name}")
        elif kind == "AWS::Glue::Table":
            add("glue:table", f"arn:{PARTITION}:glue:{base}:table/{database}/{name}")
        elif kind == "AWS::Athena::WorkGroup":
            add("athena:workgroup", f"arn:{PARTITION}:athena:{base}:workgroup/{name}")
        elif kind == "AWS::SNS::Topic":
            topic = f"arn:{PARTITION}:sns:{base}:{name}"
            add("sns:topic", topic, f"{topic}:0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
        elif kind == "AWS::CloudWatch::Alarm":
            add("cloudwatch:alarm", f"arn:{PARTITION}:cloudwatch:{base}:alarm:{name}")
        elif kind == "AWS::CloudWatch::Dashboard":  # global: no region in its ARN
            add("cloudwatch:dashboard", f"arn:{PARTITION}:cloudwatch::{ACCOUNT}:dashboard/{name}")
        elif kind == "AWS::IAM::Role":
            add("iam:role", f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}")
        elif kind == "AWS::S3::Bucket":
            add("s3:bucket", f"arn:{PARTITION}:s3:::{name}")
            add("s3:object", f"arn:{PARTITION}:s3:::{name}/athena-results/result.csv")
    add("glue:ctas-table", f"arn:{PARTITION}:glue:{base}:table/{database}/temp_table_0123abcd")
    add("cloudformation:stack", f"arn:{PARTITION}:cloudformation:{base}:stack/{stack}/0a1b2c3d")
    add("sam:object", f"arn:{PARTITION}:s3:::{SAM_BUCKET}/{stack}/0123456789abcdef.template")
    return found


# the same for every stack of the account and region
SHARED_ARNS = {
    "glue:rootcatalog": [f"arn:{PARTITION}:glue:{REGION}:{ACCOUNT}:catalog"],
    # the AWS managed key the stream is encrypted with (alias/aws/kinesis)
    "kinesis:kmsKey": [
        f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
    ],
    "sam:stack": [f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{SAM_STACK}/0a1b2c3d"],
    "sam:bucket": [f"arn:{PARTITION}:s3:::{SAM_BUCKET}"],
    "sam:transform": [
        f"arn:{PARTITION}:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"
    ],
}


def the_arns(stack: str) -> dict[str, list[str]]:
    return {**arns(stack), **SHARED_ARNS}


@cache
def iam_actions() -> dict[str, dict[str, Any]]:
    """cfn-lint's IAM data: each service's actions (lower case) and the resource types each
    is scoped to (none: only Resource "*")."""
    return load_resource(AdditionalSpecs, "Policies.json")


def iam_action(action: str) -> dict[str, Any] | None:
    service, name = action.split(":", 1)
    return iam_actions().get(service, {}).get("Actions", {}).get(name.lower())


def handler_permissions(kind: str) -> set[str]:
    handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, kind).schema["handlers"]
    return {p for h in HANDLERS for p in handlers.get(h, {}).get("permissions", [])}


def passed_roles(resource: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The service a resource of the template passes roles of the stack to, and their
    logical ids (each a !GetAtt of a role's Arn in its properties); None if it passes none."""
    resources = stack_template()["Resources"]
    text = json.dumps(resource.get("Properties", {}))
    targets = re.findall(r'"Fn::GetAtt": \["(\w+)", "Arn"\]', text)
    roles = sorted({t for t in targets if resources[t]["Type"] == "AWS::IAM::Role"})
    if not roles:
        return None
    service = {
        "AWS::Lambda::Function": "lambda.amazonaws.com",
        "AWS::KinesisFirehose::DeliveryStream": "firehose.amazonaws.com",
    }[resource["Type"]]
    return service, roles


def required(
    kind: str, resource: dict[str, Any] | None, named: dict[str, list[str]]
) -> tuple[list[tuple[str, str, dict[str, str]]], set[str]]:
    """(action, resource ARN, condition context) the handlers of `kind` need allowed on the
    resources `named`, and the actions they name that act only on resource types the
    template has none of."""
    checks: list[tuple[str, str, dict[str, str]]] = []
    elsewhere = set()
    for permission in sorted(handler_permissions(kind)):
        action = S3_OPERATION_ACTIONS.get(permission, permission)
        if action in NEVER_ALLOWED:
            continue
        known = iam_action(action)
        if known is None:  # no IAM action (lambda:AssociateRuntimeAlias, s3:REST.PUT.OBJECT)
            continue
        if action == "iam:PassRole":
            passed = passed_roles(resource) if resource else None
            if passed is None:  # the handler passes a role only when given one
                continue
            service, roles = passed
            checks += [
                (action, arn, {"iam:PassedToService": service})
                for arn in named["iam:role"]
                if any(f"-{role}-" in arn for role in roles)
            ]
            continue
        types = known.get("Resources", [])
        if not types:
            checks.append((action, "*", {}))
            continue
        service = action.split(":")[0]
        keys = [TYPE_RESOURCES.get(kind, {}).get(f"{service}:{t}", f"{service}:{t}") for t in types]
        # an action on a connection also names the catalogue: it acts on the stack only
        # through a resource of the stack's own
        if not any(key in named and key not in SHARED_ARNS for key in keys):
            keys = []
        targets = ACTION_RESOURCES.get(action) or [
            arn for key in keys for arn in named.get(key, [])
        ]
        if not targets:
            elsewhere.add(action)
        # a deployer's role has the boundary, and is given it
        context = {"iam:PermissionsBoundary": BOUNDARY_ARN} if action in BOUNDARY_KEYED else {}
        checks += [(action, arn, context) for arn in targets]
    return checks, elsewhere


def deploy_checks(stack: str) -> list[tuple[str, str, dict[str, str]]]:
    """Every (action, ARN, context) deploying and deleting a stack called `stack` needs."""
    named = the_arns(stack)
    checks = []
    for resource in stack_template()["Resources"].values():
        checks += required(resource["Type"], resource, named)[0]
    sam_named = {
        **named,
        "s3:bucket": named["sam:bucket"],
        "s3:object": named["sam:object"],
        "cloudformation:stack": named["sam:stack"],
    }
    for kind in SAM_STACK_TYPES:
        checks += required(kind, None, sam_named)[0]
    for action, keys in SAM_CALLS.items():
        checks += [(action, arn, {}) for key in keys for arn in (named.get(key) or [key])]
    return checks


# ------------------------------------------------------------------ the package's calls


def scanned_files() -> list[Path]:
    package = ROOT / "lib" / "brewops"
    files = [
        path
        for path in package.rglob("*.py")
        if path.relative_to(package).parts[0] not in NOT_SCANNED
    ]
    return files + sorted((ROOT / "notebooks" / "_build").glob("*.py"))


@cache
def package_operations() -> set[str]:
    """service:Operation of every AWS call the package and the notebooks make on the aws
    target: each method called (or paginator asked for) whose name is an operation of a
    service the same code makes clients of."""
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in scanned_files()]
    calls = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Call)]

    def called(node: ast.Call) -> str:
        function = node.func
        return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")

    services = {
        arg.value
        for node in calls
        if called(node) in ("client", "aws_client")
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    }
    session = botocore.session.get_session()
    by_method = {
        xform_name(operation): f"{service}:{operation}"
        for service in sorted(services)
        for operation in session.get_service_model(service).operation_names
    }
    found = set()
    for node in calls:
        name = called(node)
        if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
            name = node.args[0].value
        if name in by_method and name not in NOT_OPERATIONS:
            found.add(by_method[name])
    return found


def operator_checks(stack: str) -> list[tuple[str, str]]:
    """Every (action, ARN) running the pipeline on a stack called `stack` needs."""
    named = the_arns(stack)
    bucket = named["s3:bucket"][0]
    actions: dict[str, tuple[str, ...] | None] = {
        OPERATION_ACTIONS.get(operation, operation): None for operation in package_operations()
    }
    actions.update(OPERATOR_RESOURCES)
    actions.update(ALSO_CALLED)
    actions.update(WATCHED)
    checks = []
    for action, keys in actions.items():
        known = iam_action(action)
        assert known is not None, f"{action} is no IAM action: name it in OPERATION_ACTIONS"
        if action in OPERATOR_OBJECT_PREFIXES:
            checks += [(action, f"{bucket}/{p}object") for p in OPERATOR_OBJECT_PREFIXES[action]]
            continue
        service = action.split(":")[0]
        keys = keys or tuple(f"{service}:{t}" for t in known.get("Resources", [])) or ("*",)
        targets = [arn for key in keys for arn in (named.get(key) or ([key] if key == "*" else []))]
        assert targets, f"{action}: no resource of the stack for {keys}"
        checks += [(action, arn) for arn in targets]
    return checks


def stack_specific(arn: str, stack: str) -> bool:
    return stack in arn or stack.replace("-", "_") in arn


def role_permissions(stack: str) -> list[tuple[str, str, str]]:
    """(role, action, resource ARN) of every Allow of the inline policies of a stack called
    `stack`'s roles."""
    resources = stack_template()["Resources"]
    base = f"{REGION}:{ACCOUNT}"
    values = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    arn_formats = {
        "AWS::Kinesis::Stream": f"arn:{PARTITION}:kinesis:{base}:stream/{{}}",
        "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{base}:log-group:{{}}:*",
        "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{base}:function:{{}}",
        "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{{}}",
    }
    for logical_id, (kind, name) in physical_names(stack).items():
        values[logical_id] = name
        if kind in arn_formats:
            values[f"{logical_id}.Arn"] = arn_formats[kind].format(name)
    found = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"]["Policies"]:
            for statement in as_list(resolve(policy["PolicyDocument"], values)["Statement"]):
                assert statement["Effect"] == "Allow", statement
                found += [
                    (logical_id, action, arn)
                    for action in as_list(statement["Action"])
                    for arn in as_list(statement["Resource"])
                ]
    return found


# ------------------------------------------------------------------ lint and shape


def test_cfn_lint_finds_no_errors_or_warnings():
    matches = lint_file(ACCESS, ManualArgs(regions=["us-east-1", "eu-west-1"]))

    assert [str(m) for m in matches] == []


def test_cfn_lint_would_catch_an_action_iam_does_not_have(tmp_path):
    broken = tmp_path / "access.yaml"
    broken.write_text(
        ACCESS.read_text(encoding="utf-8").replace("kinesis:PutRecords", "kinesis:PutRecord5"),
        encoding="utf-8",
    )

    assert lint_file(broken, ManualArgs(regions=["eu-west-1"]))


def test_no_policy_grants_every_action_or_a_whole_service():
    resources = access_template()["Resources"]
    documents = policies(DEPLOYER + OPERATOR + BOUNDARY)
    actions = [a for d in documents for s in as_list(d["Statement"]) for a in as_list(s["Action"])]
    attached = [
        arn for r in resources.values() for arn in r["Properties"].get("ManagedPolicyArns", [])
    ]

    assert [a for a in actions if "*" in a] == []
    assert not [a for a in attached if "FullAccess" in json.dumps(a)], attached
    assert {r["Type"] for r in resources.values()} == {"AWS::IAM::ManagedPolicy", "AWS::IAM::Role"}


@pytest.mark.parametrize("name", DEPLOYER + OPERATOR + BOUNDARY)
def test_each_policy_fits_in_an_iam_managed_policy(name):
    # IAM counts the characters of the JSON document without its whitespace; the longest
    # partition and region names give the longest ARNs
    [document] = policies((name,), region="ap-southeast-5")

    assert len(re.sub(r"\s", "", json.dumps(document))) <= 6144


# ------------------------------------------------------------------ deploying


@pytest.mark.parametrize("pattern", ["brewops-*", STACK])
def test_the_deployer_may_do_what_deploying_and_deleting_the_stack_takes(pattern):
    documents = policies(DEPLOYER, pattern)

    refused = [
        (action, arn, context)
        for action, arn, context in deploy_checks(STACK)
        if not allows(documents, action, arn, context)
    ]

    assert refused == []


def test_the_check_covers_every_resource_type_of_the_translated_template():
    kinds = {r["Type"] for r in stack_template()["Resources"].values()}
    checked = {a for a, _, _ in deploy_checks(STACK)}

    # the Schedule event's rule and permission, the functions the SAM transform makes
    assert {"AWS::Events::Rule", "AWS::Lambda::Permission", "AWS::Lambda::Function"} <= kinds
    assert not any(kind.startswith("AWS::Serverless::") for kind in kinds)
    for kind in kinds:
        assert handler_permissions(kind) & (checked | set(S3_OPERATION_ACTIONS)), kind


def test_the_deployer_may_not_touch_another_applications_stack():
    documents = policies(DEPLOYER)
    other = [c for c in deploy_checks(OTHER_STACK) if stack_specific(c[1], OTHER_STACK)]

    allowed = [c for c in other if allows(documents, *c)]

    assert len(other) > 200  # every scoped check is made for the other stack too
    assert allowed == []


def test_a_deployer_of_one_stack_may_not_deploy_another_of_the_project():
    documents = policies(DEPLOYER, STACK)
    other = [c for c in deploy_checks("brewops-prod") if stack_specific(c[1], "brewops-prod")]

    assert [c for c in other if allows(documents, *c)] == []


def test_the_deployer_passes_the_stacks_roles_only_to_the_services_the_template_names():
    documents = policies(DEPLOYER)
    role = the_arns(STACK)["iam:role"][0]

    def passes(service: str, arn: str = role) -> bool:
        return allows(documents, "iam:PassRole", arn, {"iam:PassedToService": service})

    assert passes("lambda.amazonaws.com") and passes("firehose.amazonaws.com")
    assert not passes("ec2.amazonaws.com")
    assert not passes("lambda.amazonaws.com", f"arn:aws:iam::{ACCOUNT}:role/Admin")
    assert not allows(documents, "iam:PassRole", role)  # no service named: refused


# The resource types (as cfn-lint's IAM data names them) that handlers of the template's
# types may act on and the template makes none of. A type missing here that a handler acts
# on is one the template makes and `arns` does not name yet: its checks would be skipped.
NOT_IN_THE_TEMPLATE = {
    "elasticfilesystem:access-point",
    "elasticfilesystem:file-system",
    "glue:connection",
    "glue:connectionType",
    "glue:registry",
    "glue:rootcatalog",  # named, but only beside a connection here
    "glue:schema",
    "kms:key",
    "lambda:capacityProvider",
    "lambda:code signing config",
    "lambda:layerVersion",
    "s3files:file-system",
    "s3tables:Table",
    "s3tables:TableBucket",
}


def test_every_resource_the_handlers_act_on_is_named_or_one_the_template_makes_none_of():
    named = the_arns(STACK)
    unnamed = set()
    for resource in stack_template()["Resources"].values():
        for action in required(resource["Type"], resource, named)[1]:
            service = action.split(":")[0]
            known = iam_action(S3_OPERATION_ACTIONS.get(action, action)) or {}
            unnamed |= {f"{service}:{kind}" for kind in known.get("Resources", [])}

    assert unnamed - NOT_IN_THE_TEMPLATE == set()


def test_the_deployer_grants_only_what_deploying_takes():
    needed = {a.lower() for a, _, _ in deploy_checks(STACK)}
    kinds = {r["Type"] for r in stack_template()["Resources"].values()} | set(SAM_STACK_TYPES)
    elsewhere = set().union(*(required(k, None, the_arns(STACK))[1] for k in kinds))
    granted = {
        a.lower() for d in policies(DEPLOYER) for s in d["Statement"] for a in as_list(s["Action"])
    }

    assert granted - needed == set()
    # what acts only on what the template has none of (layers, connections, keys, table
    # buckets) is not granted at all
    assert granted & {a.lower() for a in elsewhere} == set()
    assert "kms:decrypt" in {a.lower() for a in elsewhere}


# ------------------------------------------------------------------ the roles' boundary

STACK_ROLES = {"ProducerRole", "TransformRole", "RawDeliveryRole", "CleanedDeliveryRole"}


def test_every_role_of_the_stack_takes_the_boundary_when_given():
    template = stack_template()
    roles = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    parameter = template["Parameters"]["RoleBoundaryArn"]
    pattern = re.compile(parameter["AllowedPattern"])

    # the functions name their roles: the SAM transform adds none (nor the Schedule event)
    declared = load_template()["Resources"]
    assert set(roles) == {k for k, r in declared.items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == STACK_ROLES
    for logical_id, role in roles.items():
        assert role["Properties"]["PermissionsBoundary"] == {
            "Fn::If": ["HasRoleBoundary", {"Ref": "RoleBoundaryArn"}, {"Ref": "AWS::NoValue"}]
        }, logical_id
    assert template["Conditions"]["HasRoleBoundary"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "RoleBoundaryArn"}, ""]}]
    }
    assert parameter["Default"] == ""  # who deploys without infra/access.yaml gives none
    assert pattern.fullmatch(BOUNDARY_ARN) and pattern.fullmatch("")
    assert not pattern.fullmatch("StackRoleBoundary")  # the ARN, not the name
    outputs = access_template()["Outputs"]
    assert outputs["StackRoleBoundaryArn"]["Value"] == {"Ref": "StackRoleBoundary"}


@pytest.mark.parametrize("pattern", ["brewops-*", STACK])
def test_the_deployer_creates_and_changes_a_stacks_role_only_with_the_boundary(pattern):
    documents = policies(DEPLOYER, pattern)
    role = the_arns(STACK)["iam:role"][0]

    def allowed(action: str, boundary: str | None) -> bool:
        context = {"iam:PermissionsBoundary": boundary} if boundary else {}
        return allows(documents, action, role, context)

    # the constant names what the role's handlers call
    assert handler_permissions("AWS::IAM::Role") >= BOUNDARY_KEYED
    for action in sorted(BOUNDARY_KEYED - NEVER_ALLOWED):
        assert allowed(action, BOUNDARY_ARN), action
        assert not allowed(action, None), f"{action} without a boundary"
        assert not allowed(action, f"arn:aws:iam::{ACCOUNT}:policy/brewops-dev-boundary"), action
        assert not allowed(action, "arn:aws:iam::aws:policy/AdministratorAccess"), action
    for action in NEVER_ALLOWED:
        assert not allowed(action, BOUNDARY_ARN) and not allowed(action, None), action


@pytest.mark.parametrize("pattern", ["brewops-*", STACK])
def test_the_boundary_holds_every_permission_the_stacks_roles_are_given(pattern):
    boundary = policies(BOUNDARY, pattern)
    permissions = role_permissions(STACK)

    outside = [p for p in permissions if not allows(boundary, p[1], p[2])]

    assert {role for role, _, _ in permissions} == STACK_ROLES
    assert outside == []  # with the boundary, each role may do what its policies say


def test_the_boundary_allows_no_action_the_stacks_roles_are_not_given():
    [boundary] = policies(BOUNDARY)
    granted = {a.lower() for s in boundary["Statement"] for a in as_list(s["Action"])}
    given = {action.lower() for _, action, _ in role_permissions(STACK)}

    assert granted == given
    assert not any(a.startswith(("iam:", "sts:")) for a in granted)
    role = the_arns(STACK)["iam:role"][0]
    for action in ("iam:PassRole", "iam:CreateRole", "iam:PutRolePolicy", "sts:AssumeRole"):
        assert not allows([boundary], action, role), action


@pytest.mark.parametrize(
    ("pattern", "other"), [("brewops-*", OTHER_STACK), (STACK, "brewops-prod")]
)
def test_the_boundary_allows_nothing_on_another_stack(pattern, other):
    boundary = policies(BOUNDARY, pattern)
    theirs = [(a, arn) for _, a, arn in role_permissions(other) if stack_specific(arn, other)]

    assert len(theirs) > 30  # all but the account's Glue catalogue
    assert [c for c in theirs if allows(boundary, *c)] == []


# ------------------------------------------------------------------ running


def test_the_scan_finds_the_calls_the_package_makes():
    operations = package_operations()

    # one from each module that calls AWS on the aws target
    assert {
        "cloudformation:DescribeStacks",  # target
        "kinesis:PutRecords",  # producer
        "s3:ListObjectsV2",  # tables, reconcile, the model registry
        "s3:DeleteObjects",  # reconcile, the model registry
        "s3:PutObject",  # redrive, the model registry
        "logs:FilterLogEvents",  # reconcile
        "lambda:Invoke",  # scheduler
        "events:DescribeRule",  # scheduler
        "glue:GetTable",  # tables
        "firehose:DescribeDeliveryStream",  # infra
    } <= operations
    assert not any(op.startswith(("sns:", "cloudwatch:", "iam:")) for op in operations)


def test_the_operator_may_do_every_call_of_the_package_on_the_aws_target():
    documents = policies(OPERATOR)

    refused = [(a, arn) for a, arn in operator_checks(STACK) if not allows(documents, a, arn)]

    assert refused == []


def test_the_operator_may_not_touch_another_applications_stack():
    documents = policies(OPERATOR)
    other = [c for c in operator_checks(OTHER_STACK) if stack_specific(c[1], OTHER_STACK)]

    assert len(other) > 20
    assert [c for c in other if allows(documents, *c)] == []


def test_the_operator_may_not_write_what_the_delivery_streams_write_nor_the_stacks_tables():
    documents = policies(OPERATOR)
    named = the_arns(STACK)
    bucket = named["s3:bucket"][0]

    for prefix in ("raw/", "cleaned/"):
        assert not allows(documents, "s3:PutObject", f"{bucket}/{prefix}ingest_date=2026-01-01/x")
    for table in named["glue:table"]:
        assert not allows(documents, "glue:CreateTable", table)
        assert not allows(documents, "glue:DeleteTable", table)
    assert not allows(documents, "kinesis:CreateStream", named["kinesis:stream"][0])
    assert not allows(documents, "lambda:UpdateFunctionCode", named["lambda:function"][0])


def test_the_operator_invokes_only_the_function_the_schedule_runs():
    # a tick by hand (brewops.scheduler); the transform is Firehose's to call
    documents = policies(OPERATOR)
    named = the_arns(STACK)

    invoked = [a for a in named["lambda:function"] if allows(documents, "lambda:InvokeFunction", a)]

    assert invoked == named["lambda:scheduled-function"]
    assert len(invoked) < len(named["lambda:function"])


def test_the_operator_may_watch_the_dashboard_and_run_the_saved_queries_and_no_more():
    documents = policies(OPERATOR)
    named = the_arns(STACK)
    [dashboard] = named["cloudwatch:dashboard"]

    assert allows(documents, "cloudwatch:GetDashboard", dashboard)
    assert not allows(documents, "cloudwatch:PutDashboard", dashboard)
    assert not allows(documents, "cloudwatch:GetDashboard", dashboard.replace(STACK, OTHER_STACK))
    for group in named["logs:function-log-group"]:
        assert allows(documents, "logs:StartQuery", group)
    firehose_group = next(g for g in named["logs:log-group"] if "kinesisfirehose" in g)
    assert not allows(documents, "logs:StartQuery", firehose_group)


def test_the_operator_grants_only_what_the_package_calls():
    needed = {a.lower() for a, _ in operator_checks(STACK)}
    granted = {
        a.lower() for d in policies(OPERATOR) for s in d["Statement"] for a in as_list(s["Action"])
    }

    assert granted == needed


# ------------------------------------------------------------------ GitHub


def test_the_github_role_is_made_only_for_a_repository_and_only_its_environments_take_it():
    resources = access_template()["Resources"]
    role = resources["GitHubDeployRole"]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    values = {"AWS::Partition": PARTITION, "AWS::AccountId": ACCOUNT, "GitHubRepository": "o/r"}
    claims = resolve(trust["Condition"]["StringEquals"], values)

    assert role["Condition"] == "HasGitHubRepository"
    assert access_template()["Outputs"]["GitHubDeployRoleArn"]["Condition"] == role["Condition"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert resolve(trust["Principal"]["Federated"], values) == (
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    )
    assert claims == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": [
            "repo:o/r:environment:dev",
            "repo:o/r:environment:prod",
        ],
    }
    # what the Deploy workflow runs: sam validate and sam build offline, sam deploy, and
    # aws cloudformation describe-stacks, all in the deployer's policies
    assert role["Properties"]["ManagedPolicyArns"] == [{"Ref": name} for name in DEPLOYER]
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    assert "environment: ${{ inputs.stage }}" in workflow
    assert "aws cloudformation describe-stacks" in workflow


def test_the_outputs_name_every_policy():
    outputs = access_template()["Outputs"]

    for name in DEPLOYER + OPERATOR:
        assert {"Ref": name} in [o["Value"] for o in outputs.values()], name


def test_the_readme_deploys_the_access_stack_under_a_name_its_policies_do_not_cover():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [name] = set(re.findall(r"--template-file infra/access\.yaml --stack-name (\S+)", readme))
    documents = policies(DEPLOYER)
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0a1b2c3d"
    role = f"arn:aws:iam::{ACCOUNT}:role/{name}-GitHubDeployRole-{SUFFIX.upper()}"

    assert not allows(documents, "cloudformation:DeleteStack", stack)
    assert not allows(documents, "iam:UpdateAssumeRolePolicy", role)
