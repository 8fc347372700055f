"""The CloudFormation models taught to moto: what a stack creates through them exists with
its full configuration, and goes when the stack is deleted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from brewops.local import cfn_models, deploy, emulator
from fixtures.local import deployed_template, emulator_session

MINI_TEMPLATE = Path(__file__).parent / "data" / "mini_template.yaml"


def deploy_mini(endpoint: str) -> SimpleNamespace:
    stage = "t" + uuid.uuid4().hex[:8]
    name = f"brewops-{stage}"
    session = emulator_session()
    outputs = deploy.deploy(
        session, endpoint, MINI_TEMPLATE, name, {"Stage": stage, "BufferSizeMiB": "96"}
    )
    return SimpleNamespace(name=name, stage=stage, outputs=outputs, session=session)


@pytest.fixture(scope="module")
def mini(emulator_endpoint: str) -> Iterator[SimpleNamespace]:
    stack = deploy_mini(emulator_endpoint)
    stack.client = lambda service: stack.session.client(service, endpoint_url=emulator_endpoint)
    yield stack
    deploy.delete(stack.session, emulator_endpoint, stack.name)


# ----------------------------------------------------------------------------- unit


def test_properties_become_typed_api_parameters() -> None:
    params = cfn_models.api_params(
        "firehose",
        "CreateDeliveryStream",
        {
            "DeliveryStreamName": "s",
            "ExtendedS3DestinationConfiguration": {
                "BucketARN": "arn:aws:s3:::b",
                "RoleARN": "arn:aws:iam::123456789012:role/r",
                "BufferingHints": {"SizeInMBs": "64", "IntervalInSeconds": 60},
                "DataFormatConversionConfiguration": {
                    "Enabled": "true",
                    "OutputFormatConfiguration": {
                        "Serializer": {"OrcSerDe": {"BloomFilterFalsePositiveProbability": "0.05"}}
                    },
                },
                "ProcessingConfiguration": {
                    "Processors": [{"Type": "Lambda", "NotAnApiMember": "dropped"}]
                },
                "Prefix": None,  # a property !Ref AWS::NoValue took away
            },
            "NotAnApiMember": "dropped",
        },
    )
    destination = params["ExtendedS3DestinationConfiguration"]
    assert destination["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 60}
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert conversion["OutputFormatConfiguration"]["Serializer"]["OrcSerDe"] == {
        "BloomFilterFalsePositiveProbability": 0.05
    }
    assert destination["ProcessingConfiguration"] == {"Processors": [{"Type": "Lambda"}]}
    assert "Prefix" not in destination
    assert "NotAnApiMember" not in params


def test_lifecycle_rules_take_the_s3_api_shape() -> None:
    rule = cfn_models._lifecycle_rule(
        {
            "Id": "raw",
            "Status": "Enabled",
            "Prefix": "raw/",
            "ExpirationInDays": 90,
            "Transitions": [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}],
        }
    )
    assert rule == {
        "ID": "raw",
        "Status": "Enabled",
        "Filter": {"Prefix": "raw/"},
        "Expiration": {"Days": "90"},
        "Transition": [{"StorageClass": "STANDARD_IA", "Days": "30"}],
    }


def test_insecure_transport_conditions_do_not_hold_on_the_loopback_endpoint() -> None:
    deny_http = {"Bool": {"aws:SecureTransport": "false"}}
    assert emulator.condition_holds(deny_http) is False
    assert emulator.condition_holds({"Bool": {"aws:SecureTransport": ["true"]}}) is True
    assert emulator.condition_holds(deny_http, {"aws:securetransport": "false"}) is True
    assert emulator.condition_holds({"StringEquals": {"aws:SourceVpce": "v"}}) is None

    policy = {
        "Statement": [
            {"Effect": "Deny", "Action": "s3:*", "Condition": deny_http},
            {"Effect": "Deny", "Action": "s3:DeleteBucket"},
            {
                "Effect": "Deny",
                "Action": "s3:Get*",
                "Condition": {"IpAddress": {"aws:SourceIp": "1"}},
            },
        ]
    }
    kept = emulator.applicable_statements(policy)
    assert [s["Action"] for s in kept] == ["s3:DeleteBucket", "s3:Get*"]
    assert kept[1]["Condition"] == {"IpAddress": {"aws:SourceIp": "1"}}  # left to moto


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"Status": "Enabled", "ExpirationDate": "2030-01-01T00:00:00Z"},
            {"Filter": {"Prefix": ""}, "Expiration": {"Date": "2030-01-01T00:00:00Z"}},
        ),
        (
            {"Status": "Enabled", "NoncurrentVersionExpirationInDays": 7},
            {"Filter": {"Prefix": ""}, "NoncurrentVersionExpiration": {"NoncurrentDays": "7"}},
        ),
        (
            {"Status": "Disabled", "TagFilters": [{"Key": "tier", "Value": "cold"}]},
            {"Filter": {"Tag": {"Key": "tier", "Value": "cold"}}},
        ),
        (
            {
                "Status": "Enabled",
                "Prefix": "",
                "Transitions": [{"StorageClass": "GLACIER", "TransitionDate": "2030-01-01"}],
            },
            {
                "Filter": {"Prefix": ""},
                "Transition": [{"StorageClass": "GLACIER", "Date": "2030-01-01"}],
            },
        ),
    ],
)
def test_lifecycle_rules_in_their_other_forms(rule: dict, expected: dict) -> None:
    assert cfn_models._lifecycle_rule(rule) == {"ID": None, "Status": rule["Status"], **expected}


@pytest.mark.parametrize(
    "tags",
    [
        [{"Key": "tier", "Value": "cold"}, {"Key": "team", "Value": "data"}],
        [{"Key": "tier", "Value": "cold"}],  # a prefix and one tag are two conditions too
    ],
)
def test_a_lifecycle_rule_filtering_by_prefix_and_tags_keeps_all_of_them(tags: list) -> None:
    from moto.s3.models import FakeBucket

    cfn_rule = {"Status": "Enabled", "Prefix": "raw/", "TagFilters": tags, "ExpirationInDays": 3}

    rule = cfn_models._lifecycle_rule(cfn_rule)

    assert rule["Filter"] == {"And": {"Prefix": "raw/", "Tag": tags}}
    bucket = FakeBucket(name="b", account_id="123456789012", region_name="us-east-1")
    bucket.set_lifecycle([rule])  # S3 takes more than one condition only under And
    assert bucket.rules[0].filter.and_filter.tags == {tag["Key"]: tag["Value"] for tag in tags}


@pytest.mark.parametrize(
    "error",
    [
        KeyError("EntityNotFoundException: Database brewops_x not found"),
        type("ResourceNotFoundException", (Exception,), {})("gone"),
        type("ClientError", (Exception,), {"code": "NoSuchBucketPolicy"})("no policy"),
    ],
)
def test_deleting_what_is_already_gone_succeeds(error: Exception) -> None:
    def delete() -> None:
        raise error

    cfn_models._ignore_missing(delete)


def test_a_delete_that_fails_otherwise_fails() -> None:
    def delete() -> None:
        raise RuntimeError("InternalFailure: the backend broke")

    with pytest.raises(RuntimeError, match="InternalFailure"):
        cfn_models._ignore_missing(delete)


# ----------------------------------------------------------------------------- emulator


@pytest.mark.emulator
def test_delivery_streams_keep_their_full_configuration(mini: SimpleNamespace) -> None:
    firehose = mini.client("firehose")
    outputs = mini.outputs
    stream_arn = outputs["StreamArn"]

    raw = firehose.describe_delivery_stream(DeliveryStreamName=outputs["RawDeliveryStreamName"])
    raw = raw["DeliveryStreamDescription"]
    assert raw["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert raw["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == stream_arn
    destination = raw["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BucketARN"] == f"arn:aws:s3:::{outputs['BucketName']}"
    assert destination["Prefix"] == "raw/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert destination["ErrorOutputPrefix"].startswith("errors/raw/!{firehose:error-output-type}/")
    assert destination["CompressionFormat"] == "GZIP"
    assert destination["BufferingHints"] == {"SizeInMBs": 96, "IntervalInSeconds": 60}

    cleaned = firehose.describe_delivery_stream(
        DeliveryStreamName=outputs["CleanedDeliveryStreamName"]
    )["DeliveryStreamDescription"]
    destination = cleaned["Destinations"][0]["ExtendedS3DestinationDescription"]
    (processor,) = destination["ProcessingConfiguration"]["Processors"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    transform = mini.client("lambda").get_function(FunctionName=outputs["TransformFunctionName"])
    assert parameters["LambdaArn"] == transform["Configuration"]["FunctionArn"]
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert conversion["SchemaConfiguration"]["DatabaseName"] == outputs["GlueDatabaseName"]
    assert conversion["SchemaConfiguration"]["TableName"] == outputs["CleanedTableName"]
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    assert "HiveJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]


@pytest.mark.emulator
def test_glue_tables_keep_columns_partition_keys_and_parameters(mini: SimpleNamespace) -> None:
    glue = mini.client("glue")
    database = mini.outputs["GlueDatabaseName"]
    assert database == f"brewops_{mini.stage}"
    assert glue.get_database(Name=database)["Database"]["Description"] == "Punk API beers"

    table = glue.get_table(DatabaseName=database, Name=mini.outputs["CleanedTableName"])["Table"]
    columns = table["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns][:3] == ["id", "name", "abv"]
    assert columns[0] == {"Name": "id", "Type": "bigint", "Comment": "Punk API beer id"}
    assert table["PartitionKeys"] == [{"Name": "ingest_date", "Type": "string"}]
    assert table["Parameters"]["projection.enabled"] == "true"
    # ${!ingest_date} is CloudFormation's escape for a literal ${ingest_date}
    assert table["Parameters"]["storage.location.template"].endswith(
        "/cleaned/ingest_date=${ingest_date}/"
    )
    serde = table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert serde.endswith("ParquetHiveSerDe")

    raw = glue.get_table(DatabaseName=database, Name=mini.outputs["RawTableName"])["Table"]
    assert raw["StorageDescriptor"]["Compressed"] is True
    assert raw["StorageDescriptor"]["SerdeInfo"]["Parameters"] == {"ignore.malformed.json": "true"}


@pytest.mark.emulator
def test_athena_workgroup_stream_and_bucket_configuration(mini: SimpleNamespace) -> None:
    outputs = mini.outputs
    work_group = mini.client("athena").get_work_group(WorkGroup=outputs["AthenaWorkGroupName"])
    configuration = work_group["WorkGroup"]["Configuration"]
    assert configuration["ResultConfiguration"]["OutputLocation"] == (
        f"s3://{outputs['BucketName']}/athena-results/"
    )

    summary = mini.client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])
    summary = summary["StreamDescriptionSummary"]
    assert summary["EncryptionType"] == "KMS"
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}

    s3 = mini.client("s3")
    bucket = outputs["BucketName"]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {r["ID"]: r["Expiration"]["Days"] for r in rules} == {
        "expire-raw": 90,
        "expire-errors": 30,
    }
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Sid"] == "DenyInsecureTransport"
    # the TLS-only policy is in force, and the loopback endpoint counts as secure
    s3.put_object(Bucket=bucket, Key="raw/probe.json", Body=b"{}")
    assert s3.get_object(Bucket=bucket, Key="raw/probe.json")["Body"].read() == b"{}"


@pytest.mark.emulator
def test_alarms_keep_their_metric_and_notify_the_topic(mini: SimpleNamespace) -> None:
    topic = mini.outputs["AlarmTopicArn"]
    name = f"brewops-{mini.stage}-stream-records-waiting"

    (alarm,) = mini.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]

    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
    )
    assert alarm["Dimensions"] == [{"Name": "StreamName", "Value": mini.outputs["StreamName"]}]
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Maximum", 300, 900000.0)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == alarm["OKActions"] == [topic]
    subscriptions = mini.client("sns").list_subscriptions_by_topic(TopicArn=topic)
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions["Subscriptions"]] == [
        ("email", "ops@example.com")
    ]


@pytest.mark.emulator
def test_a_deny_without_conditions_is_still_enforced(mini: SimpleNamespace) -> None:
    s3 = mini.client("s3")
    bucket = f"brewops-deny-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )
    with pytest.raises(s3.exceptions.ClientError, match=r"403|Forbidden|AccessDenied"):
        s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.emulator
def test_deleting_the_stack_deletes_what_the_models_created(emulator_endpoint: str) -> None:
    stack = deploy_mini(emulator_endpoint)
    outputs = stack.outputs

    def client(service: str) -> Any:
        return stack.session.client(service, endpoint_url=emulator_endpoint)

    client("s3").put_object(Bucket=outputs["BucketName"], Key="raw/x", Body=b"x")
    deploy.delete(stack.session, emulator_endpoint, stack.name)

    streams = client("firehose").list_delivery_streams()["DeliveryStreamNames"]
    assert outputs["RawDeliveryStreamName"] not in streams
    assert outputs["CleanedDeliveryStreamName"] not in streams
    databases = [d["Name"] for d in client("glue").get_databases()["DatabaseList"]]
    assert outputs["GlueDatabaseName"] not in databases
    groups = [g["Name"] for g in client("athena").list_work_groups()["WorkGroups"]]
    assert outputs["AthenaWorkGroupName"] not in groups
    buckets = [b["Name"] for b in client("s3").list_buckets()["Buckets"]]
    assert outputs["BucketName"] not in buckets  # emptied, then deleted
    assert outputs["StreamName"] not in client("kinesis").list_streams()["StreamNames"]
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix=f"brewops-{stack.stage}-")
    assert alarms["MetricAlarms"] == []
    assert outputs["AlarmTopicArn"] not in [
        s["TopicArn"] for s in client("sns").list_subscriptions()["Subscriptions"]
    ]


@pytest.mark.emulator
def test_a_resource_type_the_emulator_cannot_create_fails_the_deploy(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Topic:\n"
        "    Type: AWS::SNS::Topic\n"
        "  TopicPolicy:\n"
        "    Type: AWS::SNS::TopicPolicy\n"
        "    Properties:\n"
        "      Topics: [!Ref Topic]\n"
        "      PolicyDocument: {Version: '2012-10-17', Statement: []}\n",
        encoding="utf-8",
    )
    name = f"brewops-unsupported-{uuid.uuid4().hex[:8]}"
    with pytest.raises(deploy.DeployError, match=r"TopicPolicy \(AWS::SNS::TopicPolicy\)"):
        deploy.deploy(emulator_session(), emulator_endpoint, template, name)


def test_boolean_properties_given_as_strings_keep_their_value() -> None:
    params = cfn_models.api_params(
        "athena",
        "CreateWorkGroup",
        {
            "Name": "w",
            "Configuration": {
                "EnforceWorkGroupConfiguration": "false",
                "PublishCloudWatchMetricsEnabled": "True",
            },
        },
    )
    assert params["Configuration"] == {
        "EnforceWorkGroupConfiguration": False,
        "PublishCloudWatchMetricsEnabled": True,
    }


def test_a_lifecycle_rule_without_a_prefix_covers_the_whole_bucket() -> None:
    rule = cfn_models._lifecycle_rule(
        {
            "Id": "archive",
            "Status": "Enabled",
            "Transition": {"StorageClass": "GLACIER", "TransitionInDays": 365},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    )
    assert rule == {
        "ID": "archive",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": "1"},
        "Transition": [{"StorageClass": "GLACIER", "Days": "365"}],
    }


@pytest.mark.emulator
def test_a_delivery_stream_gives_its_arn_in_the_stack_region(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Resources:\n"
        "  Bucket:\n    Type: AWS::S3::Bucket\n"
        "  Delivery:\n"
        "    Type: AWS::KinesisFirehose::DeliveryStream\n"
        "    Properties:\n"
        "      ExtendedS3DestinationConfiguration:\n"
        "        BucketARN: !GetAtt Bucket.Arn\n"
        "        RoleARN: arn:aws:iam::123456789012:role/delivery\n"
        "Outputs:\n"
        "  DeliveryName: {Value: !Ref Delivery}\n"
        "  DeliveryArn: {Value: !GetAtt Delivery.Arn}\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template) as stack:
        outputs = stack.outputs
        described = stack.client("firehose").describe_delivery_stream(
            DeliveryStreamName=outputs["DeliveryName"]
        )

    arn = described["DeliveryStreamDescription"]["DeliveryStreamARN"]
    assert arn == (
        f"arn:aws:firehose:us-east-1:123456789012:deliverystream/{outputs['DeliveryName']}"
    )
    assert outputs["DeliveryArn"] == arn  # what !GetAtt gives other resources


@pytest.mark.emulator
def test_glue_names_cloudformation_generates_are_lower_case_as_in_glue(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Resources:\n"
        "  BeerDatabase:\n"
        "    Type: AWS::Glue::Database\n"
        "    Properties:\n"
        "      CatalogId: !Ref AWS::AccountId\n"
        "      DatabaseInput: {Description: unnamed}\n"
        "  BeerTable:\n"
        "    Type: AWS::Glue::Table\n"
        "    Properties:\n"
        "      CatalogId: !Ref AWS::AccountId\n"
        "      DatabaseName: !Ref BeerDatabase\n"
        "      TableInput:\n"
        "        StorageDescriptor:\n"
        "          Columns: [{Name: id, Type: bigint}]\n"
        "Outputs:\n"
        "  Database: {Value: !Ref BeerDatabase}\n"
        "  Table: {Value: !Ref BeerTable}\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template) as stack:
        database, table = stack.outputs["Database"], stack.outputs["Table"]
        found = stack.client("glue").get_table(DatabaseName=database, Name=table)["Table"]

    assert database == database.lower() and table == table.lower()
    assert [c["Name"] for c in found["StorageDescriptor"]["Columns"]] == ["id"]


@pytest.mark.emulator
def test_a_stream_without_a_mode_is_provisioned_as_the_template_says(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Resources:\n"
        "  Stream:\n"
        "    Type: AWS::Kinesis::Stream\n"
        "    Properties: {ShardCount: 2, RetentionPeriodHours: 48}\n"
        "Outputs:\n"
        "  StreamName: {Value: !Ref Stream}\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template) as stack:
        described = stack.client("kinesis").describe_stream_summary(
            StreamName=stack.outputs["StreamName"]
        )

    summary = described["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}  # CloudFormation's
    assert summary["OpenShardCount"] == 2
    assert summary["RetentionPeriodHours"] == 48


def test_string_properties_get_booleans_and_objects_as_cloudformation_writes_them() -> None:
    params = cfn_models.api_params(
        "glue",
        "CreateTable",
        {
            "DatabaseName": "d",
            "TableInput": {
                "Name": "t",
                "Parameters": {"projection.enabled": True, "classification": {"kind": "json"}},
            },
        },
    )
    # an unquoted YAML true reaches Glue as "true", as CloudFormation passes it
    assert params["TableInput"]["Parameters"] == {
        "projection.enabled": "true",
        "classification": '{"kind": "json"}',
    }


def test_policy_conditions_in_their_other_forms() -> None:
    assert emulator.condition_holds({"BoolIfExists": {"aws:SecureTransport": "false"}}) is False
    assert emulator.condition_holds({"Bool": {"aws:SecureTransport": True}}) is True  # JSON true
    assert emulator.condition_holds({"StringNotEquals": {"aws:SecureTransport": "true"}}) is False
    assert emulator.condition_holds({"StringNotEquals": {"aws:SecureTransport": "no"}}) is True

    deny_http = {"Bool": {"aws:SecureTransport": "false"}}
    one_statement = {"Statement": {"Effect": "Deny", "Action": "s3:*", "Condition": deny_http}}
    assert emulator.applicable_statements(one_statement) == []
    deny_https = {"Bool": {"aws:SecureTransport": "true"}}
    holds = {"Statement": [{"Effect": "Deny", "Action": "s3:Delete*", "Condition": deny_https}]}
    # a condition that holds is met by every request: the Deny applies unconditionally
    assert emulator.applicable_statements(holds) == [{"Effect": "Deny", "Action": "s3:Delete*"}]


@pytest.mark.parametrize("unknown_first", [True, False])
def test_a_condition_one_test_of_which_fails_never_holds_whatever_else_it_tests(
    unknown_first: bool,
) -> None:
    # every test of a Condition must hold: on the loopback endpoint, as over HTTPS on AWS,
    # a Deny of insecure transport does not apply, however many other keys it names
    unknown = {"StringEquals": {"aws:SourceVpce": "vpce-1"}}
    insecure = {"Bool": {"aws:SecureTransport": "false"}}
    condition = {**unknown, **insecure} if unknown_first else {**insecure, **unknown}
    policy = {"Statement": [{"Effect": "Deny", "Action": "s3:*", "Condition": condition}]}

    assert emulator.condition_holds(condition) is False
    assert emulator.applicable_statements(policy) == []


@pytest.mark.emulator
def test_a_workgroup_keeps_its_state_description_and_tags(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Resources:\n"
        "  Queries:\n"
        "    Type: AWS::Athena::WorkGroup\n"
        "    Properties:\n"
        "      Name: !Sub '${AWS::StackName}-queries'\n"
        "      Description: paused for now\n"
        "      State: DISABLED\n"
        "      Tags: [{Key: project, Value: brewops}]\n"
        "Outputs:\n"
        "  WorkGroup: {Value: !Ref Queries}\n"
        "  Created: {Value: !GetAtt Queries.CreationTime}\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template) as stack:
        assert stack.outputs["Created"]
        athena = stack.client("athena")
        name = stack.outputs["WorkGroup"]
        work_group = athena.get_work_group(WorkGroup=name)["WorkGroup"]
        arn = f"arn:aws:athena:us-east-1:123456789012:workgroup/{name}"
        tags = athena.list_tags_for_resource(ResourceARN=arn)["Tags"]

    assert work_group["State"] == "DISABLED"
    assert work_group["Description"] == "paused for now"
    assert tags == [{"Key": "project", "Value": "brewops"}]


@pytest.mark.emulator
def test_glue_resources_keep_the_names_and_format_given_and_go_with_their_stack(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    shared = f"brewops_shared_{uuid.uuid4().hex[:8]}"  # made outside the stack
    glue = emulator_session().client("glue", endpoint_url=emulator_endpoint)
    glue.create_database(DatabaseInput={"Name": shared})
    template = (
        "Parameters:\n  Shared: {Type: String}\n"
        "Resources:\n"
        "  NamedDatabase:\n"
        "    Type: AWS::Glue::Database\n"
        "    Properties:\n"
        "      CatalogId: !Ref AWS::AccountId\n"
        "      DatabaseName: !Sub '${Shared}_named'\n"
        "      DatabaseInput: {Description: named by the property}\n"
        "  SharedTable:\n"
        "    Type: AWS::Glue::Table\n"
        "    Properties:\n"
        "      CatalogId: !Ref AWS::AccountId\n"
        "      DatabaseName: !Ref Shared\n"
        "      TableInput: {Name: beers}\n"
        "      OpenTableFormatInput:\n"
        "        IcebergInput: {MetadataOperation: CREATE, Version: '2'}\n"
        "Outputs:\n"
        "  Named: {Value: !Ref NamedDatabase}\n"
    )
    with deployed_template(emulator_endpoint, tmp_path, template, {"Shared": shared}) as stack:
        assert stack.outputs["Named"] == f"{shared}_named"
        assert glue.get_database(Name=f"{shared}_named")["Database"]["Description"] == (
            "named by the property"
        )
        table = glue.get_table(DatabaseName=shared, Name="beers")["Table"]
        assert table["Parameters"]["table_type"] == "ICEBERG"

    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_table(DatabaseName=shared, Name="beers")  # the stack's, in a database not
    glue.delete_database(Name=shared)


@pytest.mark.emulator
def test_a_log_stream_in_a_group_of_its_own_goes_with_its_stack(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    group = f"/brewops/shared-{uuid.uuid4().hex[:8]}"  # made outside the stack
    logs = emulator_session().client("logs", endpoint_url=emulator_endpoint)
    logs.create_log_group(logGroupName=group)
    template = (
        "Parameters:\n  Group: {Type: String}\n"
        "Resources:\n"
        "  Deliveries:\n"
        "    Type: AWS::Logs::LogStream\n"
        "    Properties: {LogGroupName: !Ref Group, LogStreamName: deliveries}\n"
    )

    def streams() -> list[str]:
        found = logs.describe_log_streams(logGroupName=group)["logStreams"]
        return [s["logStreamName"] for s in found]

    with deployed_template(emulator_endpoint, tmp_path, template, {"Group": group}):
        assert streams() == ["deliveries"]

    assert streams() == []
    logs.delete_log_group(logGroupName=group)


@pytest.mark.emulator
def test_an_alarm_keeps_each_of_its_actions_and_a_subscription_goes_with_its_stack(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    sns = emulator_session().client("sns", endpoint_url=emulator_endpoint)
    shared = sns.create_topic(Name=f"brewops-shared-{uuid.uuid4().hex[:8]}")["TopicArn"]
    template = (
        "Parameters:\n  Shared: {Type: String}\n"
        "Resources:\n"
        "  Topic:\n    Type: AWS::SNS::Topic\n"
        "  Subscription:\n"
        "    Type: AWS::SNS::Subscription\n"
        "    Properties: {TopicArn: !Ref Shared, Protocol: email, Endpoint: ops@example.com}\n"
        "  Errors:\n"
        "    Type: AWS::CloudWatch::Alarm\n"
        "    Properties:\n"
        "      Namespace: AWS/Lambda\n"
        "      MetricName: Errors\n"
        "      Statistic: Sum\n"
        "      Period: 60\n"
        "      EvaluationPeriods: 1\n"
        "      Threshold: 0\n"
        "      ComparisonOperator: GreaterThanThreshold\n"
        "      AlarmActions: [!Ref Topic]\n"
        "      OKActions: [!Ref Shared]\n"
        "      InsufficientDataActions: []\n"
        "Outputs:\n"
        "  Alarm: {Value: !Ref Errors}\n"
        "  Topic: {Value: !Ref Topic}\n"
    )

    def subscribed() -> list[str]:
        found = sns.list_subscriptions_by_topic(TopicArn=shared)["Subscriptions"]
        return [s["Endpoint"] for s in found]

    with deployed_template(emulator_endpoint, tmp_path, template, {"Shared": shared}) as stack:
        cloudwatch = stack.client("cloudwatch")
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[stack.outputs["Alarm"]])["MetricAlarms"]
        assert alarm["AlarmActions"] == [stack.outputs["Topic"]]
        assert alarm["OKActions"] == [shared]
        assert alarm["InsufficientDataActions"] == []
        assert subscribed() == ["ops@example.com"]

    assert subscribed() == []  # the topic made outside the stack stays, without it
    sns.delete_topic(TopicArn=shared)


@pytest.mark.emulator
def test_a_saved_query_is_kept_with_its_stack_under_an_id(
    emulator_endpoint: str, tmp_path: Path
) -> None:
    template = (
        "Resources:\n"
        "  Group:\n    Type: AWS::Logs::LogGroup\n"
        "  Errors:\n"
        "    Type: AWS::Logs::QueryDefinition\n"
        "    Properties:\n"
        "      Name: !Sub '${AWS::StackName}/errors'\n"
        "      LogGroupNames: [!Ref Group]\n"
        "      QueryString: 'fields @message | filter level = \"ERROR\"'\n"
        "Outputs:\n"
        "  Id: {Value: !Ref Errors}\n"
        "  Attribute: {Value: !GetAtt Errors.QueryDefinitionId}\n"
    )

    with deployed_template(emulator_endpoint, tmp_path, template) as stack:
        (resource,) = stack.client("cloudformation").describe_stack_resources(
            StackName=stack.name, LogicalResourceId="Errors"
        )["StackResources"]
        # Ref and GetAtt give the query definition's id, as on AWS: not its name
        assert stack.outputs["Id"] == stack.outputs["Attribute"]
        assert str(uuid.UUID(stack.outputs["Id"])) == resource["PhysicalResourceId"]
