"""After `brewops local up`, any AWS client pointed at the emulator sees what
infra/template.yaml creates, configured as the template says."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from brewops import schema
from brewops.firehose_runtime.config import DeliveryStreamConfig
from brewops.infra import load_template
from brewops.local import deploy
from brewops.target import STACK_OUTPUTS

pytestmark = pytest.mark.emulator


@pytest.fixture
def client(local_target: Any) -> Any:
    """Plain boto3 clients, no endpoint argument: use("local") routes them."""
    return boto3.client


@pytest.fixture
def outputs(local_target: Any) -> dict[str, str]:
    return local_target.outputs


def test_stack_outputs_are_the_contract(outputs: dict[str, str]) -> None:
    assert set(outputs) == STACK_OUTPUTS
    assert outputs["ModelRegistryUri"] == f"s3://{outputs['BucketName']}/models/ibu/"


def test_bucket_exists_with_its_protection(client: Any, outputs: dict[str, str]) -> None:
    s3 = client("s3")
    bucket = outputs["BucketName"]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    prefixes = {
        r["Filter"].get("Prefix")
        for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    assert {"raw/", "errors/"} <= prefixes
    assert "aws:SecureTransport" in s3.get_bucket_policy(Bucket=bucket)["Policy"]
    s3.put_object(Bucket=bucket, Key="models/ibu/probe.txt", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="models/ibu/probe.txt")["Body"].read() == b"ok"
    s3.delete_object(Bucket=bucket, Key="models/ibu/probe.txt")


def test_stream_exists_encrypted(client: Any, outputs: dict[str, str]) -> None:
    summary = client("kinesis").describe_stream_summary(StreamName=outputs["StreamName"])
    summary = summary["StreamDescriptionSummary"]
    assert summary["StreamARN"] == outputs["StreamArn"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["EncryptionType"] == "KMS"
    assert summary["OpenShardCount"] >= 1


def describe(client: Any, name: str) -> dict[str, Any]:
    return client("firehose").describe_delivery_stream(DeliveryStreamName=name)[
        "DeliveryStreamDescription"
    ]


def test_raw_delivery_stream_reads_the_stream_into_raw(
    client: Any, outputs: dict[str, str]
) -> None:
    raw = describe(client, outputs["RawDeliveryStreamName"])
    assert raw["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert (
        raw["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == outputs["StreamArn"]
    )
    destination = raw["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BucketARN"] == f"arn:aws:s3:::{outputs['BucketName']}"
    assert destination["Prefix"] == "raw/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert destination["ErrorOutputPrefix"] == (
        "errors/raw/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
    )
    assert destination["CompressionFormat"] == "GZIP"
    assert destination["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 60}
    assert "ProcessingConfiguration" not in destination


def test_cleaned_delivery_stream_transforms_and_converts_to_parquet(
    client: Any, outputs: dict[str, str]
) -> None:
    cleaned = describe(client, outputs["CleanedDeliveryStreamName"])
    assert (
        cleaned["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"]
        == outputs["StreamArn"]
    )
    destination = cleaned["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["Prefix"] == "cleaned/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert destination["ErrorOutputPrefix"].startswith(
        "errors/cleaned/!{firehose:error-output-type}/"
    )

    processing = destination["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    (processor,) = processing["Processors"]
    assert processor["Type"] == "Lambda"
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    transform = client("lambda").get_function_configuration(
        FunctionName=outputs["TransformFunctionName"]
    )
    assert parameters["LambdaArn"] == transform["FunctionArn"]
    # the local runtime sizes its calls by the processor's hints as the template sets them
    template = load_template()["Resources"]["CleanedDeliveryStream"]["Properties"]
    (declared,) = template["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"][
        "Processors"
    ]
    hints = {p["ParameterName"]: p["ParameterValue"] for p in declared["Parameters"]}
    runtime_processor = DeliveryStreamConfig.from_description(cleaned).processor
    assert runtime_processor.buffer_bytes == float(hints["BufferSizeInMBs"]) * 1024 * 1024
    assert runtime_processor.interval_seconds == int(hints["BufferIntervalInSeconds"])

    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "HiveJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    schema_configuration = conversion["SchemaConfiguration"]
    assert schema_configuration["DatabaseName"] == outputs["GlueDatabaseName"]
    assert schema_configuration["TableName"] == outputs["CleanedTableName"]
    assert schema_configuration["Region"] == "us-east-1"


def test_glue_tables_have_the_columns_of_the_schema(
    client: Any, outputs: dict[str, str], local_target: Any
) -> None:
    glue = client("glue")
    database = outputs["GlueDatabaseName"]
    # the stack's name in the characters Glue and Athena allow: brewops-dev, brewops_dev
    assert (local_target.stack_name, database) == ("brewops-dev", "brewops_dev")
    assert glue.get_database(Name=database)["Database"]["Name"] == database

    cleaned = glue.get_table(DatabaseName=database, Name=outputs["CleanedTableName"])["Table"]
    columns = [(c["Name"], c["Type"]) for c in cleaned["StorageDescriptor"]["Columns"]]
    assert columns == [(c.name, c.glue_type) for c in schema.CLEANED_COLUMNS]
    assert [k["Name"] for k in cleaned["PartitionKeys"]] == [schema.PARTITION_KEY]
    assert cleaned["StorageDescriptor"]["Location"] == f"s3://{outputs['BucketName']}/cleaned/"
    assert cleaned["Parameters"]["projection.enabled"] == "true"

    raw = glue.get_table(DatabaseName=database, Name=outputs["RawTableName"])["Table"]
    raw_columns = {c["Name"] for c in raw["StorageDescriptor"]["Columns"]}
    assert set(schema.CHALLENGE_COLUMNS) <= raw_columns
    assert raw["StorageDescriptor"]["Location"] == f"s3://{outputs['BucketName']}/raw/"


def test_functions_exist_with_their_handlers_and_a_small_package(
    client: Any, outputs: dict[str, str], local_target: Any
) -> None:
    lam = client("lambda")
    producer = lam.get_function_configuration(FunctionName=outputs["ProducerFunctionName"])
    transform = lam.get_function_configuration(FunctionName=outputs["TransformFunctionName"])
    assert producer["Handler"] == "brewops.lambdas.producer.app.handler"
    assert transform["Handler"] == "brewops.lambdas.transform.app.handler"
    variables = producer["Environment"]["Variables"]
    assert variables["STREAM_NAME"] == outputs["StreamName"]
    assert variables["PUNKAPI_URL"] == local_target.punkapi_url
    assert variables["PUNKAPI_VERSION"] == "v2"

    s3 = client("s3")
    (package,) = s3.list_objects_v2(Bucket=deploy.ARTIFACTS_BUCKET, Prefix=local_target.stack_name)[
        "Contents"
    ]
    body = s3.get_object(Bucket=deploy.ARTIFACTS_BUCKET, Key=package["Key"])["Body"].read()
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "brewops/lambdas/producer/app.py" in names
    assert producer["CodeSize"] == len(body) < 2 * 1024 * 1024


def test_schedule_rule_invokes_the_producer(client: Any, outputs: dict[str, str]) -> None:
    events = client("events")
    rule = events.describe_rule(Name=outputs["ScheduleRuleName"])
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["State"] == "ENABLED"
    producer = client("lambda").get_function_configuration(
        FunctionName=outputs["ProducerFunctionName"]
    )
    targets = events.list_targets_by_rule(Rule=outputs["ScheduleRuleName"])["Targets"]
    assert [t["Arn"] for t in targets] == [producer["FunctionArn"]]


def test_athena_workgroup_writes_under_athena_results(client: Any, outputs: dict[str, str]) -> None:
    work_group = client("athena").get_work_group(WorkGroup=outputs["AthenaWorkGroupName"])
    location = work_group["WorkGroup"]["Configuration"]["ResultConfiguration"]["OutputLocation"]
    assert location == f"s3://{outputs['BucketName']}/athena-results/"


def test_awswrangler_reaches_the_emulator_without_an_endpoint_argument(
    outputs: dict[str, str],
) -> None:
    import awswrangler as wr

    assert outputs["GlueDatabaseName"] in wr.catalog.databases()["Database"].tolist()
    columns = wr.catalog.get_table_types(
        database=outputs["GlueDatabaseName"], table=outputs["CleanedTableName"]
    )
    assert list(columns) == [c.name for c in schema.CLEANED_COLUMNS] + [schema.PARTITION_KEY]


def test_bucket_lifecycle_and_ownership_are_those_of_the_template(
    client: Any, outputs: dict[str, str]
) -> None:
    s3 = client("s3")
    bucket = outputs["BucketName"]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    raw = rules["raw-to-cheaper-storage"]
    assert raw["Filter"] == {"Prefix": "raw/"}
    assert [(t["StorageClass"], t["Days"]) for t in raw["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER_IR", 180),
    ]
    assert "Expiration" not in raw  # raw/ is the record of everything received
    assert rules["expire-errors"]["Expiration"] == {"Days": 30}  # not prod
    assert rules["expire-athena-results"]["Expiration"] == {"Days": 7}
    uploads = rules["abort-incomplete-uploads"]
    assert uploads["Filter"] == {"Prefix": ""}  # the whole bucket
    assert uploads["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_stream_keeps_records_a_day_and_carries_the_tags(
    client: Any, outputs: dict[str, str]
) -> None:
    kinesis = client("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=outputs["StreamName"])
    assert summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    tags = kinesis.list_tags_for_stream(StreamName=outputs["StreamName"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"project": "brewops", "stage": "dev"}


def test_delivery_streams_log_to_log_streams_that_exist(
    client: Any, outputs: dict[str, str]
) -> None:
    logs = client("logs")
    for name in (outputs["RawDeliveryStreamName"], outputs["CleanedDeliveryStreamName"]):
        destination = describe(client, name)["Destinations"][0]
        options = destination["ExtendedS3DestinationDescription"]["CloudWatchLoggingOptions"]
        assert options["Enabled"] is True
        streams = logs.describe_log_streams(logGroupName=options["LogGroupName"])["logStreams"]
        assert options["LogStreamName"] in [s["logStreamName"] for s in streams]


def test_athena_workgroup_is_enabled_and_caps_the_bytes_a_query_scans(
    client: Any, outputs: dict[str, str]
) -> None:
    work_group = client("athena").get_work_group(WorkGroup=outputs["AthenaWorkGroupName"])
    assert work_group["WorkGroup"]["State"] == "ENABLED"
    configuration = work_group["WorkGroup"]["Configuration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["BytesScannedCutoffPerQuery"] == 1024**3


def test_alarms_watch_the_stack_resources_and_notify_its_topic(
    client: Any, outputs: dict[str, str], local_target: Any
) -> None:
    """The emulator keeps the alarms (it publishes no metrics, so none of them changes
    state); each watches a resource of this stack and notifies the stack's topic."""
    prefix = f"{local_target.stack_name}-"
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]

    watched = {
        (a["Namespace"], a["MetricName"], d["Value"]) for a in alarms for d in a["Dimensions"]
    }
    producer, transform = outputs["ProducerFunctionName"], outputs["TransformFunctionName"]
    raw, cleaned = outputs["RawDeliveryStreamName"], outputs["CleanedDeliveryStreamName"]
    assert watched == {
        ("AWS/Lambda", "Errors", producer),
        ("AWS/Lambda", "Throttles", producer),
        ("AWS/Lambda", "Errors", transform),
        ("AWS/Lambda", "Throttles", transform),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness", raw),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness", cleaned),
        ("AWS/Firehose", "DeliveryToS3.Success", raw),
        ("AWS/Firehose", "DeliveryToS3.Success", cleaned),
        ("AWS/Firehose", "ExecuteProcessing.Success", cleaned),
        ("AWS/Firehose", "FailedConversion.Records", cleaned),
        ("AWS/Kinesis", "WriteProvisionedThroughputExceeded", outputs["StreamName"]),
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", outputs["StreamName"]),
    }
    assert len(alarms) == len(watched)
    topic = outputs["AlarmTopicArn"]
    assert all(a["AlarmActions"] == a["OKActions"] == [topic] for a in alarms)
    sns = client("sns")
    assert topic in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    # no AlarmEmail given: nothing subscribed
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_the_dashboard_and_the_saved_queries_are_the_stack_s(
    client: Any, outputs: dict[str, str], local_target: Any
) -> None:
    """The emulator keeps the dashboard (it draws nothing: no metrics) and records the saved
    Logs Insights queries with the stack (moto's Logs has no query definitions)."""
    stack = local_target.stack_name
    name = f"{stack}-pipeline"
    assert outputs["DashboardUrl"].endswith(f"#dashboards:name={name}")
    body = json.loads(client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])

    widgets = body["widgets"]
    shown = {
        value
        for widget in widgets
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        for value in metric[3::2]  # the dimensions' values
        if isinstance(value, str)
    }
    watched = ("StreamName", "ProducerFunctionName", "TransformFunctionName")
    watched += ("RawDeliveryStreamName", "CleanedDeliveryStreamName")
    assert shown == {outputs[key] for key in watched}
    (alarm_widget,) = [widget for widget in widgets if widget["type"] == "alarm"]
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{stack}-")["MetricAlarms"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(a["AlarmArn"] for a in alarms)

    resources = client("cloudformation").describe_stack_resources(StackName=stack)
    queries = [
        r
        for r in resources["StackResources"]
        if r.get("ResourceType") == "AWS::Logs::QueryDefinition"  # moto types not all
    ]
    assert sorted(r["LogicalResourceId"] for r in queries) == [
        "FailedTicksQuery",
        "FollowBeerQuery",
        "RefusedRecordsQuery",
    ]
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in queries)
    assert len({r["PhysicalResourceId"] for r in queries}) == len(queries)  # ids, as on AWS
