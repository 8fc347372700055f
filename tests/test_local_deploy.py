"""The local deploy: template loading, code packages and the SAM translation, offline; then
the creation and deletion of small stacks on the emulator."""

from __future__ import annotations

import io
import json
import os
import socket
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import WaiterError

from brewops import paths
from brewops.local import deploy
from fixtures.local import deployed_template, emulator_session

MINI_TEMPLATE = Path(__file__).parent / "data" / "mini_template.yaml"
LIB = paths.repo_root() / "lib"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline translation opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_template_loader_reads_short_form_intrinsics(tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        "A: !Ref Stage\n"
        "B: !GetAtt Stream.Arn\n"
        'C: !Sub "${AWS::StackName}-x"\n'
        "D: !If [IsProd, !Ref X, !Ref AWS::NoValue]\n"
        'E: !Sub ["${A}", {A: !Ref B}]\n',
        encoding="utf-8",
    )
    loaded = deploy.load_template(source)
    assert loaded["A"] == {"Ref": "Stage"}
    assert loaded["B"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert loaded["C"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert loaded["D"] == {"Fn::If": ["IsProd", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]}
    assert loaded["E"] == {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]}


def test_a_templates_digest_is_what_it_says_not_how_it_is_written(tmp_path: Path) -> None:
    def digest(text: str) -> str:
        (tmp_path / "template.yaml").write_text(text, encoding="utf-8")
        return deploy.template_digest(deploy.load_template(tmp_path / "template.yaml"))

    # an unquoted version is a YAML date
    written = (
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n  Queue: {Type: AWS::SQS::Queue}\n"
        "Outputs:\n  QueueName: {Value: !GetAtt Queue.QueueName}\n"
    )
    rewritten = (
        "# the queue, its outputs first\n"
        "Outputs:\n  QueueName:\n    Value: !GetAtt Queue.QueueName\n"
        "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"
        "AWSTemplateFormatVersion: 2010-09-09\n"
    )

    assert digest(written) == digest(rewritten)
    assert digest(written) != digest(written.replace("SQS::Queue", "SNS::Topic"))


def test_code_package_is_the_package_source_without_caches(tmp_path: Path) -> None:
    source = tmp_path / "lib"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (source / "pkg" / "app.py").write_text(
        "def handler(event, context):\n    return event\n", encoding="utf-8"
    )
    (source / "pkg" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (source / "pkg.egg-info").mkdir()
    (source / "pkg.egg-info" / "PKG-INFO").write_text("x", encoding="utf-8")

    body = deploy.package_code(source)

    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert sorted(names) == ["pkg/__init__.py", "pkg/app.py"]
    assert deploy.package_code(source) == body  # reproducible: same files, same key
    os.utime(source / "pkg" / "app.py", (1e9, 1e9))  # checked out again, or touched
    assert deploy.package_code(source) == body


def test_the_project_package_is_small_and_holds_the_handlers() -> None:
    body = deploy.package_code(LIB)
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    assert "brewops/__init__.py" in names
    assert "brewops/lambdas/transform/app.py" in names
    assert "brewops/lambdas/producer/app.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("pandas/", "sklearn/", "pyarrow/")) for n in names)
    assert len(body) < 2 * 1024 * 1024


def test_packaging_points_code_uris_at_one_uploaded_zip() -> None:
    template = deploy.load_template(MINI_TEMPLATE)

    packaged, artifacts = deploy.package_template(
        template, MINI_TEMPLATE.parent, "artifacts", "stack"
    )

    assert len(artifacts) == 1  # both functions and Globals share ../../lib
    (key,) = artifacts
    location = {"Bucket": "artifacts", "Key": key}
    assert packaged["Globals"]["Function"]["CodeUri"] == location
    assert key.startswith("stack/") and key.endswith(".zip")
    assert template["Globals"]["Function"]["CodeUri"] == "../../lib"  # input left alone


def test_missing_code_directory_is_reported(tmp_path: Path) -> None:
    template = {
        "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "nowhere"}}
        }
    }
    with pytest.raises(deploy.DeployError, match="nowhere"):
        deploy.package_template(template, tmp_path, "artifacts", "stack")


@pytest.mark.usefixtures("no_network")
def test_translation_is_offline_and_leaves_no_sam_resources() -> None:
    template = deploy.load_template(MINI_TEMPLATE)
    packaged, _ = deploy.package_template(template, MINI_TEMPLATE.parent, "artifacts", "stack")

    translated = deploy.translate(packaged, {"Stage": "dev"})

    resources = translated["Resources"]
    assert not [r for r in resources.values() if r["Type"].startswith("AWS::Serverless::")]
    producer = resources["ProducerFunction"]
    assert producer["Type"] == "AWS::Lambda::Function"
    assert producer["Properties"]["Code"] == {
        "S3Bucket": "artifacts",
        "S3Key": packaged["Globals"]["Function"]["CodeUri"]["Key"],
    }
    assert producer["Properties"]["Handler"] == "brewops.lambdas.producer.app.handler"
    assert resources["ProducerFunctionSchedule"]["Type"] == "AWS::Events::Rule"
    # a SAM policy template expanded without asking IAM
    role_policies = resources["ProducerFunctionRole"]["Properties"]["Policies"]
    assert any("kinesis:PutRecord" in str(p) for p in role_policies)
    assert "Transform" not in translated


@pytest.mark.usefixtures("no_network")
def test_the_real_template_translates_offline() -> None:
    if not paths.template_path().is_file():
        pytest.skip("no infra/template.yaml")
    prepared = deploy.prepare(
        paths.template_path(),
        "brewops-dev",
        {"PunkApiUrl": "http://127.0.0.1:1/v2", "NotATemplateParameter": "x"},
    )
    types = {r["Type"] for r in prepared.template["Resources"].values()}
    assert "AWS::Lambda::Function" in types
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    # only parameters the template declares are sent
    assert prepared.parameters == {"PunkApiUrl": "http://127.0.0.1:1/v2"}
    assert len(prepared.artifacts) == 1
    # in the words moto honours, so a deleted local stack keeps its bucket as AWS does
    assert prepared.template["Resources"]["Bucket"]["DeletionPolicy"] == "Retain"


@pytest.mark.emulator
def test_two_stacks_of_the_real_template_and_one_stage_share_an_account(
    emulator_endpoint: str,
) -> None:
    # a teammate's stack next to one's own, both with the default Stage
    if not paths.template_path().is_file():
        pytest.skip("no infra/template.yaml")
    session = emulator_session()
    mine = f"brewops-{uuid.uuid4().hex[:8]}"
    names = [mine, f"{mine}-alice"]
    created = []
    try:
        for name in names:
            outputs = deploy.deploy(session, emulator_endpoint, paths.template_path(), name)
            created.append(name)
            assert outputs["GlueDatabaseName"] == name.replace("-", "_")
    finally:
        for name in created:
            deploy.delete(session, emulator_endpoint, name)
    assert created == names


def test_template_loader_reads_condition_references_and_nested_attributes(tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        "A: !And [!Condition IsProd, !Not [!Condition IsProvisioned]]\n"
        "B: !GetAtt Nested.Outputs.BucketName\n",
        encoding="utf-8",
    )
    loaded = deploy.load_template(source)
    assert loaded["A"] == {
        "Fn::And": [{"Condition": "IsProd"}, {"Fn::Not": [{"Condition": "IsProvisioned"}]}]
    }
    # only the first dot separates the resource from its attribute
    assert loaded["B"] == {"Fn::GetAtt": ["Nested", "Outputs.BucketName"]}


def test_code_package_files_are_readable_by_the_lambda_runtime(tmp_path: Path) -> None:
    source = tmp_path / "lib"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "app.py").write_text(
        "def handler(event, context):\n    return event\n", encoding="utf-8"
    )
    (source / "pkg" / "app.py").chmod(0o600)  # private in the working tree

    infos = zipfile.ZipFile(io.BytesIO(deploy.package_code(source))).infolist()

    assert [(i.filename, (i.external_attr >> 16) & 0o777) for i in infos] == [("pkg/app.py", 0o644)]
    assert [i.compress_type for i in infos] == [zipfile.ZIP_DEFLATED]


@pytest.mark.parametrize(
    "code_uri", ["s3://elsewhere/code.zip", {"Bucket": "elsewhere", "Key": "code.zip"}]
)
def test_code_already_in_s3_is_left_as_it_is(tmp_path: Path, code_uri: str | dict) -> None:
    template = {
        "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": code_uri}}
        }
    }
    packaged, artifacts = deploy.package_template(template, tmp_path, "artifacts", "stack")
    assert artifacts == {}
    assert packaged["Resources"]["F"]["Properties"]["CodeUri"] == code_uri


def test_each_code_directory_gets_a_zip_of_its_own(tmp_path: Path) -> None:
    functions = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(f"NAME = {name!r}\n", encoding="utf-8")
        functions[name] = {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": name}}

    packaged, artifacts = deploy.package_template(
        {"Resources": functions}, tmp_path, "artifacts", "stack"
    )

    keys = {name: f["Properties"]["CodeUri"]["Key"] for name, f in packaged["Resources"].items()}
    assert keys["a"] != keys["b"]
    assert set(artifacts) == set(keys.values())
    names = zipfile.ZipFile(io.BytesIO(artifacts[keys["b"]])).namelist()
    assert names == ["app.py"]
    assert zipfile.ZipFile(io.BytesIO(artifacts[keys["b"]])).read("app.py") == b"NAME = 'b'\n"


def test_parameter_values_are_sent_as_strings() -> None:
    prepared = deploy.prepare(MINI_TEMPLATE, "stack", {"ShardCount": 2, "Stage": "dev"})
    # CloudFormation takes every ParameterValue as a string, numbers included
    assert prepared.parameters == {"ShardCount": "2", "Stage": "dev"}


@pytest.mark.usefixtures("no_network")
def test_translation_resolves_the_parameters_sam_needs_before_deploying() -> None:
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"Alias": {"Type": "String", "Default": "dev"}},
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": {"Bucket": "artifacts", "Key": "stack/code.zip"},
                    "Handler": "app.handler",
                    "Runtime": "python3.13",
                    "AutoPublishAlias": {"Ref": "Alias"},
                },
            }
        },
    }

    resources = deploy.translate(template, {"Alias": "live"})["Resources"]

    aliases = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Alias"]
    assert [a["Properties"]["Name"] for a in aliases] == ["live"]  # not the default


def test_create_stack_sends_what_aws_needs_and_says_why_a_creation_failed() -> None:
    events = [
        {"LogicalResourceId": "Stack", "ResourceStatus": "ROLLBACK_COMPLETE"},
        {"LogicalResourceId": "Queue", "ResourceStatus": "CREATE_COMPLETE"},
        {"LogicalResourceId": "Topic", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "quota exceeded"},
        {"LogicalResourceId": "Table", "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": "bad schema"},
    ]  # fmt: skip

    def failing_wait(**kwargs: object) -> None:
        raise WaiterError("StackCreateComplete", "Waiter encountered a terminal state", {})

    sent: list[dict] = []
    cloudformation = SimpleNamespace(
        create_stack=lambda **kwargs: sent.append(kwargs),
        get_waiter=lambda name: SimpleNamespace(wait=failing_wait),
        describe_stack_events=lambda StackName: {"StackEvents": events},
    )
    s3 = SimpleNamespace(create_bucket=lambda **kwargs: {}, put_object=lambda **kwargs: {})
    clients = {"s3": s3, "cloudformation": cloudformation}
    session = SimpleNamespace(client=lambda service, **kwargs: clients[service])
    prepared = deploy.PreparedStack("brewops-x", {"Resources": {}}, {"Stage": "dev"}, {})

    with pytest.raises(deploy.DeployError) as raised:
        deploy.create_stack(session, "http://127.0.0.1:1", prepared)

    assert str(raised.value) == (
        "stack brewops-x was not created: Topic: quota exceeded; Table: bad schema"
    )
    assert sent[0]["Parameters"] == [{"ParameterKey": "Stage", "ParameterValue": "dev"}]
    # on AWS a stack that creates IAM roles, named or not, needs these
    assert {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} <= set(sent[0]["Capabilities"])
    events.clear()
    with pytest.raises(deploy.DeployError, match=r"created: no failure reason recorded$"):
        deploy.create_stack(session, "http://127.0.0.1:1", prepared)


# ----------------------------------------------------------------------------- emulator

QUEUE = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n"


def a_stack(tmp_path: Path, template: str) -> tuple[Path, str]:
    """A template file of `template` and a stack name of its own."""
    path = tmp_path / "template.yaml"
    path.write_text(template, encoding="utf-8")
    return path, f"brewops-tiny-{uuid.uuid4().hex[:8]}"


@pytest.mark.emulator
def test_a_resource_left_out_by_its_condition_is_not_missing(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Parameters:\n  Stage: {Type: String}\n"
        "Conditions:\n  IsProd: !Equals [!Ref Stage, prod]\n"
        + QUEUE
        + "  ProdQueue:\n    Type: AWS::SQS::Queue\n    Condition: IsProd\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template, {"Stage": "dev"}) as stack:
        listed = stack.client("cloudformation").list_stack_resources(StackName=stack.name)

    created = {r["LogicalResourceId"] for r in listed["StackResourceSummaries"]}
    assert "Queue" in created and "ProdQueue" not in created


@pytest.mark.emulator
@pytest.mark.parametrize(
    "boundary", ["arn:aws:iam::123456789012:policy/access-brewops-StackRoleBoundary-ABC", ""]
)
def test_the_templates_roles_take_the_boundary_parameter_on_the_emulator(
    emulator_endpoint: str, tmp_path: Path, boundary: str
) -> None:
    # the template's parameter, condition and a role as it declares them
    template = deploy.load_template(paths.repo_root() / "infra" / "template.yaml")
    role = template["Resources"]["TransformRole"]
    tiny = {
        "Parameters": {"RoleBoundaryArn": template["Parameters"]["RoleBoundaryArn"]},
        "Conditions": {"HasRoleBoundary": template["Conditions"]["HasRoleBoundary"]},
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "PermissionsBoundary": role["Properties"]["PermissionsBoundary"],
                    "AssumeRolePolicyDocument": role["Properties"]["AssumeRolePolicyDocument"],
                },
            }
        },
    }
    given = {"RoleBoundaryArn": boundary} if boundary else None
    with deployed_template(emulator_endpoint, tmp_path, json.dumps(tiny), given) as stack:
        [made] = stack.client("cloudformation").list_stack_resources(StackName=stack.name)[
            "StackResourceSummaries"
        ]
        read = stack.client("iam").get_role(RoleName=made["PhysicalResourceId"])["Role"]

    if boundary:
        assert read["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    else:
        assert "PermissionsBoundary" not in read


@pytest.mark.emulator
def test_a_stack_that_cannot_be_created_is_a_deploy_error(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    with deployed_template(emulator_endpoint, tmp_path, QUEUE) as stack:
        again = deploy.prepare(tmp_path / "template.yaml", stack.name)  # the same stack
        with pytest.raises(
            deploy.DeployError, match=f"stack {stack.name} was not created: .*exists"
        ):
            deploy.create_stack(stack.session, emulator_endpoint, again)


@pytest.mark.emulator
def test_delete_if_exists_deletes_a_stack_once_and_then_does_nothing(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template, name = a_stack(tmp_path, QUEUE)
    session = emulator_session()
    deploy.deploy(session, emulator_endpoint, template, name)
    cloudformation = session.client("cloudformation", endpoint_url=emulator_endpoint)

    deploy.delete_if_exists(session, emulator_endpoint, name)
    deploy.delete_if_exists(session, emulator_endpoint, name)  # none left: harmless

    with pytest.raises(cloudformation.exceptions.ClientError, match="does not exist"):
        cloudformation.describe_stacks(StackName=name)


@pytest.mark.emulator
def test_deleting_the_stack_deletes_a_versioned_bucket_with_old_versions(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template, name = a_stack(
        tmp_path,
        "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n"
        "      VersioningConfiguration: {Status: Enabled}\n"
        "Outputs:\n  BucketName: {Value: !Ref Bucket}\n",
    )
    session = emulator_session()
    bucket = deploy.deploy(session, emulator_endpoint, template, name)["BucketName"]
    s3 = session.client("s3", endpoint_url=emulator_endpoint)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_object(Bucket=bucket, Key="raw/x", Body=b"1")
    s3.put_object(Bucket=bucket, Key="raw/x", Body=b"2")  # the first is now an old version

    deploy.delete(session, emulator_endpoint, name)

    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.emulator
def test_deleting_the_stack_keeps_a_retained_bucket_whole_but_not_its_policy(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template, name = a_stack(
        tmp_path,
        "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: Retain\n"
        "  Policy:\n    Type: AWS::S3::BucketPolicy\n    Properties:\n"
        "      Bucket: !Ref Bucket\n"
        "      PolicyDocument:\n        Version: '2012-10-17'\n        Statement:\n"
        "          - {Effect: Deny, Principal: '*', Action: 's3:PutBucketAcl',"
        " Resource: !GetAtt Bucket.Arn}\n"
        "Outputs:\n  BucketName: {Value: !Ref Bucket}\n",
    )
    session = emulator_session()
    bucket = deploy.deploy(session, emulator_endpoint, template, name)["BucketName"]
    s3 = session.client("s3", endpoint_url=emulator_endpoint)
    s3.put_object(Bucket=bucket, Key="raw/x", Body=b"1")

    deploy.delete(session, emulator_endpoint, name)

    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["raw/x"]
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)  # the stack's, gone with the stack
    s3.delete_object(Bucket=bucket, Key="raw/x")
    s3.delete_bucket(Bucket=bucket)


def test_a_metric_math_alarm_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  ErrorRateAlarm:\n"
        "    Type: AWS::CloudWatch::Alarm\n"
        "    Properties:\n"
        "      ComparisonOperator: GreaterThanThreshold\n"
        "      EvaluationPeriods: 1\n"
        "      Threshold: 0.05\n"
        "      Metrics:\n"
        "        - {Id: rate, Expression: errors / invocations}\n"
        "        - Id: errors\n"
        "          ReturnData: false\n"
        "          MetricStat:\n"
        "            Metric: {Namespace: AWS/Lambda, MetricName: Errors}\n"
        "            Period: 300\n"
        "            Stat: Sum\n"
        "        - Id: invocations\n"
        "          ReturnData: false\n"
        "          MetricStat:\n"
        "            Metric: {Namespace: AWS/Lambda, MetricName: Invocations}\n"
        "            Period: 300\n"
        "            Stat: Sum\n",
        encoding="utf-8",
    )

    # offline, before the emulator would answer the stack with a bare HTTP 500
    with pytest.raises(deploy.DeployError) as refused:
        deploy.prepare(tmp_path / "template.yaml", "stack")

    message = str(refused.value)
    assert "metric math alarms" in message and "ErrorRateAlarm" in message
    assert "Target 'aws'" in message and "alarm on one metric" in message


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({"ShardCount": "0"}, "ShardCount='0' is less than its MinValue 1"),
        ({"ShardCount": "65"}, "ShardCount='65' is greater than its MaxValue 64"),
        ({"ShardCount": "three"}, "ShardCount='three' is not a number"),
        # what float() reads but is no number: moto fails on NaN and makes 10 shards of 1_0
        ({"ShardCount": "nan"}, "ShardCount='nan' is not a number"),
        ({"ShardCount": "1_0"}, "ShardCount='1_0' is not a number"),
        ({"BufferSizeMiB": "32"}, "BufferSizeMiB='32' is less than its MinValue 64"),
        ({"StreamMode": "on-demand"}, "StreamMode='on-demand' is not one of its AllowedValues"),
        ({"ScheduleRate": "every 5 minutes"}, "ScheduleRate='every 5 minutes' does not match"),
        ({"ScheduleRate": "rate(5 minute)"}, "an EventBridge schedule expression"),
        ({"Stage": "Prod"}, "Stage='Prod' does not match its AllowedPattern"),
        ({"AlarmEmail": "me"}, "AlarmEmail='me' does not match"),
    ],
)
def test_a_parameter_value_cloudformation_refuses_is_refused_before_deploying(
    parameters: dict[str, str], refused: str
) -> None:
    # moto checks no constraint: ShardCount 0 failed half-way with a bare HTTP 500, and
    # StreamMode or BufferSizeMiB out of bounds deployed as if valid
    with pytest.raises(deploy.DeployError, match="CloudFormation would refuse") as error:
        deploy.prepare(paths.template_path(), "brewops-dev", parameters)

    assert refused in str(error.value)
    assert "Nothing was deployed" in str(error.value)


def test_a_template_default_that_breaks_its_constraint_is_refused(tmp_path: Path) -> None:
    # a user changes a Default in the template: `brewops local up` deploys the Defaults
    (tmp_path / "template.yaml").write_text(
        "Parameters:\n"
        "  ShardCount: {Type: Number, Default: 0, MinValue: 1}\n"
        "  Name: {Type: String, Default: ab, MinLength: 3, ConstraintDescription: 3 letters}\n"
        "  Given: {Type: String}\n"
        "Resources:\n"
        "  Topic: {Type: AWS::SNS::Topic}\n",
        encoding="utf-8",
    )

    with pytest.raises(deploy.DeployError) as error:
        deploy.prepare(tmp_path / "template.yaml", "stack", {"Given": "x"})

    assert "ShardCount='0' (its Default) is less than its MinValue 1" in str(error.value)
    assert "Name='ab' (its Default) is shorter than its MinLength 3: 3 letters" in str(error.value)
    assert "Given" not in str(error.value)


@pytest.mark.usefixtures("no_network")
def test_values_other_than_the_defaults_within_their_constraints_are_deployed() -> None:
    values = {
        "Stage": "prod",
        "PunkApiVersion": "v3",
        "BeersPerTick": "80",
        "ScheduleRate": "rate(1 minute)",
        "ScheduleState": "DISABLED",
        "StreamMode": "ON_DEMAND",
        "ShardCount": "64",
        "BufferSizeMiB": "128",
        "BufferIntervalSeconds": "900",
        "AlarmEmail": "me@example.com",
    }

    prepared = deploy.prepare(paths.template_path(), "brewops-dev", values)

    assert prepared.parameters == values
