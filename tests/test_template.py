"""infra/template.yaml: lint-clean, least privilege, in agreement with the schema and the
package, its Outputs the contract of PLAN, and translatable offline by aws-sam-translator."""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from brewops import schema
from brewops.paths import repo_root, template_path
from brewops.target import STACK_OUTPUTS

ROOT = repo_root()
TEMPLATE = template_path()


# cfn-lint informational findings that are understood and accepted, with the reason.
ACCEPTED_INFO = {
    # Experimental rule asking for an AI-oriented Metadata block on every resource; the
    # template documents itself with comments and Descriptions instead.
    "I4010": "architecture Metadata.com.aws.cloudformation.Context blocks not used",
}

# Allow statements that may use Resource "*", with the reason AWS requires it. None today.
STAR_RESOURCE_ALLOWED: dict[tuple[str, str], str] = {}


def load_template() -> dict[str, Any]:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return json.loads(json.dumps(template))  # plain dicts and strings


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template) -> dict[str, Any]:
    return template["Resources"]


def translate(template: dict[str, Any], region: str = "eu-west-1") -> dict[str, Any]:
    """The SAM template as CloudFormation, translated offline, with code already uploaded."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/brewops/lib.zip"

    def no_managed_policy_lookup() -> dict[str, str]:
        raise AssertionError("the template needs no managed-policy lookup through IAM")

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    return Translator(None, Parser(), boto_session=session).translate(
        sam, parameter_values={}, get_managed_policy_map=no_managed_policy_lookup
    )


@pytest.fixture(scope="module")
def translated(template) -> dict[str, Any]:
    return translate(template)


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_policies(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(resource name, policy document) of every identity policy in the resources."""
    found = []
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            found += [(name, p["PolicyDocument"]) for p in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found.append((name, props["PolicyDocument"]))
    return found


def role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for name, doc in iam_policies(resources) if name == role for s in statements(doc)]


# ------------------------------------------------------------------ lint


def test_cfn_lint_finds_no_errors_or_warnings():
    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1", "eu-west-1"]))

    assert [str(m) for m in matches] == []


def test_cfn_lint_informational_findings_are_all_explained():
    config = ManualArgs(regions=["eu-west-1"], include_checks=["I"], include_experimental=True)

    found = {m.rule.id for m in lint_file(TEMPLATE, config)}

    assert found <= set(ACCEPTED_INFO), found - set(ACCEPTED_INFO)


def test_cfn_lint_would_catch_a_broken_template(tmp_path):
    broken = tmp_path / "template.yaml"
    broken.write_text(
        TEMPLATE.read_text(encoding="utf-8").replace("!GetAtt Stream.Arn", "!GetAtt Streem.Arn"),
        encoding="utf-8",
    )

    assert lint_file(broken, ManualArgs(regions=["eu-west-1"]))


# ------------------------------------------------------------------ shape


def test_the_template_has_the_agreed_shape(template):
    text = TEMPLATE.read_text(encoding="utf-8")

    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert template["Globals"]["Function"]["Runtime"] == "python3.13"
    assert template["Conditions"]
    assert all("Default" in p and p.get("Description") for p in template["Parameters"].values())
    banners = re.findall(r"^\s*# ={20,}\n\s*# (.+)\n\s*# ={20,}$", text, re.MULTILINE)
    assert len(banners) >= 8, banners


def test_parameters_and_their_defaults(template):
    parameters = template["Parameters"]

    assert parameters["Stage"]["Default"] == "dev"
    assert parameters["ScheduleRate"]["Default"] == "rate(5 minutes)"
    schedule = re.compile(parameters["ScheduleRate"]["AllowedPattern"])
    assert schedule.fullmatch("cron(0 12 * * ? *)") and not schedule.fullmatch("5 minutes")
    assert set(parameters["PunkApiVersion"]["AllowedValues"]) == {"v2", "v3"}
    assert set(parameters["StreamMode"]["AllowedValues"]) == {"PROVISIONED", "ON_DEMAND"}
    assert {"PunkApiUrl", "ShardCount", "BufferIntervalSeconds"} <= set(parameters)
    # Firehose refuses record format conversion with a buffer under 64 MiB
    assert parameters["BufferSizeMiB"]["MinValue"] >= 64
    assert parameters["BufferSizeMiB"]["Default"] >= 64


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("rate(1 minute)", True),
        ("rate(5 minutes)", True),
        ("rate(12 hours)", True),
        ("rate(1 day)", True),
        ("cron(0 12 * * ? *)", True),
        # EventBridge refuses these when it creates the rule, after CloudFormation began
        ("rate(5 minute)", False),
        ("rate(1 minutes)", False),
        ("rate(0 minutes)", False),
        ("rate(5 weeks)", False),
    ],
)
def test_a_schedule_rate_eventbridge_refuses_is_refused_as_a_parameter(template, expression, valid):
    pattern = template["Parameters"]["ScheduleRate"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, expression)) is valid


def test_every_output_of_the_contract_is_there_and_described(template):
    outputs = template["Outputs"]

    assert set(outputs) == STACK_OUTPUTS, (
        "the template's Outputs and brewops.target.STACK_OUTPUTS differ: a new Output goes "
        "in both (the README's Adding a notebook)"
    )
    assert all(o.get("Description", "").strip() for o in outputs.values())
    assert outputs["ModelRegistryUri"]["Value"] == {"Fn::Sub": "s3://${Bucket}/models/ibu/"}


# ------------------------------------------------------------------ functions


@pytest.mark.parametrize(
    ("function", "handler"),
    [
        ("ProducerFunction", "brewops.lambdas.producer.app.handler"),
        ("TransformFunction", "brewops.lambdas.transform.app.handler"),
    ],
)
def test_functions_deploy_the_package_handlers(resources, function, handler):
    props = resources[function]["Properties"]

    assert props["Handler"] == handler
    code = (TEMPLATE.parent / props["CodeUri"]).resolve()
    assert code == (ROOT / "lib").resolve()
    assert (code / "requirements.txt").is_file()
    module, attribute = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), attribute))
    assert (code / Path(*module.split("."))).with_suffix(".py").is_file()


def test_the_producer_runs_on_the_schedule_with_its_settings(resources):
    props = resources["ProducerFunction"]["Properties"]

    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "ScheduleRate"}
    # created after both delivery streams, which start reading the stream at LATEST
    assert set(resources["ProducerFunction"]["DependsOn"]) == {
        "RawDeliveryStream",
        "CleanedDeliveryStream",
    }
    variables = props["Environment"]["Variables"]
    assert variables == {
        "PUNKAPI_URL": {"Ref": "PunkApiUrl"},
        "PUNKAPI_VERSION": {"Ref": "PunkApiVersion"},
        "STREAM_NAME": {"Ref": "Stream"},
        "BEERS_PER_TICK": {"Ref": "BeersPerTick"},
    }


# ------------------------------------------------------------------ storage and stream


def test_the_bucket_is_encrypted_private_and_tls_only(resources):
    props = resources["Bucket"]["Properties"]

    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    (deny,) = statements(resources["BucketPolicy"]["Properties"]["PolicyDocument"])
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    prefixes = {r.get("Prefix") for r in props["LifecycleConfiguration"]["Rules"]}
    assert {"raw/", "errors/"} <= prefixes


def test_the_bucket_outlives_the_stack_but_not_a_failed_first_deploy(resources):
    bucket = resources["Bucket"]
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert bucket["UpdateReplacePolicy"] == "Retain"  # the only kind of keeping it allows


def test_the_stream_is_encrypted_with_the_kinesis_key(resources):
    props = resources["Stream"]["Properties"]

    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert props["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}


# ------------------------------------------------------------------ delivery


def destination(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]["ExtendedS3DestinationConfiguration"]


def test_a_stream_that_writes_parquet_buffers_at_least_64_mib(template):
    resources = template["Resources"]
    converting = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::KinesisFirehose::DeliveryStream"
        and destination(resources, name).get("DataFormatConversionConfiguration", {}).get("Enabled")
    ]
    assert converting == ["CleanedDeliveryStream"]
    for stream in converting:
        size = destination(resources, stream)["BufferingHints"]["SizeInMBs"]
        if isinstance(size, dict) and "Ref" in size:  # a parameter: its least value
            size = template["Parameters"][size["Ref"]]["MinValue"]
        assert int(size) >= 64, (
            f"{stream} buffers {size} MiB, and Firehose refuses a stream that converts records "
            "to Parquet with less than 64 MiB (the deployment fails): use "
            "`SizeInMBs: !Ref BufferSizeMiB`, whose MinValue is 64"
        )


@pytest.mark.parametrize(
    ("stream", "role"),
    [("RawDeliveryStream", "RawDeliveryRole"), ("CleanedDeliveryStream", "CleanedDeliveryRole")],
)
def test_both_delivery_streams_read_the_kinesis_stream(resources, stream, role):
    props = resources[stream]["Properties"]

    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert props["KinesisStreamSourceConfiguration"] == {
        "KinesisStreamARN": {"Fn::GetAtt": ["Stream", "Arn"]},
        "RoleARN": {"Fn::GetAtt": [role, "Arn"]},
    }
    reads = [s for s in role_statements(resources, role) if "kinesis:GetRecords" in s["Action"]]
    assert [s["Resource"] for s in reads] == [{"Fn::GetAtt": ["Stream", "Arn"]}]


def test_the_raw_stream_writes_gzip_ndjson_under_raw(resources):
    dest = destination(resources, "RawDeliveryStream")

    assert dest["Prefix"] == "raw/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert dest["ErrorOutputPrefix"] == (
        "errors/raw/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
    )
    assert dest["CompressionFormat"] == "GZIP"
    assert "ProcessingConfiguration" not in dest and "DataFormatConversionConfiguration" not in dest


def test_the_cleaned_stream_transforms_and_converts_to_parquet(resources):
    dest = destination(resources, "CleanedDeliveryStream")

    assert dest["Prefix"] == "cleaned/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert dest["ErrorOutputPrefix"] == (
        "errors/cleaned/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
    )
    (processor,) = dest["ProcessingConfiguration"]["Processors"]
    assert dest["ProcessingConfiguration"]["Enabled"] is True
    assert processor["Type"] == "Lambda"
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    assert parameters["LambdaArn"] == {"Fn::GetAtt": ["TransformFunction", "Arn"]}
    conversion = dest["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert conversion["InputFormatConfiguration"] == {"Deserializer": {"HiveJsonSerDe": {}}}
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    assert conversion["SchemaConfiguration"]["DatabaseName"] == {"Ref": "GlueDatabase"}
    assert conversion["SchemaConfiguration"]["TableName"] == {"Ref": "CleanedTable"}
    assert conversion["SchemaConfiguration"]["VersionId"] == "LATEST"
    assert dest["CompressionFormat"] == "UNCOMPRESSED"  # required with format conversion


def test_the_transform_is_called_within_the_limits_firehose_and_lambda_set(resources):
    dest = destination(resources, "CleanedDeliveryStream")
    (processor,) = dest["ProcessingConfiguration"]["Processors"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}

    # Firehose buffers 0.2 to 3 MB and 0 to 900 seconds for a Lambda processor (and sends
    # no request over Lambda's 6 MB, however small the records); it waits at most 5 minutes
    assert 0.2 <= float(parameters["BufferSizeInMBs"]) <= 3
    assert 0 <= int(parameters["BufferIntervalInSeconds"]) <= 900
    assert resources["TransformFunction"]["Properties"]["Timeout"] <= 300


# ------------------------------------------------------------------ catalogue


def table_input(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]["TableInput"]


def assert_columns_are_the_schema(columns: list[dict[str, str]]) -> None:
    """The CleanedTable's columns are `schema.glue_columns()`; when not, the failure shows
    the template entries that differ, as YAML to write in infra/template.yaml."""
    wanted = schema.glue_columns()
    if columns == wanted:
        return

    def entry(column: dict[str, str]) -> str:
        return "".join(
            f"\n    {'- ' if i == 0 else '  '}{key}: {value}"
            for i, (key, value) in enumerate(column.items())
        )

    lines = [
        "CleanedTable's columns in infra/template.yaml are not schema.CLEANED_COLUMNS: "
        "the two change together."
    ]
    lines += [f"  to add or correct in the template:{entry(c)}" for c in wanted if c not in columns]
    lines += [f"  in the template, not the schema:{entry(c)}" for c in columns if c not in wanted]
    if len(lines) == 1:
        lines.append(
            f"  same columns, another order: the schema's is {[c['Name'] for c in wanted]}"
        )
    pytest.fail("\n".join(lines), pytrace=False)


def test_a_column_apart_from_the_schema_fails_with_the_yaml_to_write():
    columns = [c for c in schema.glue_columns() if c["Name"] != "ph"]
    columns.append({"Name": "style", "Type": "string", "Comment": "Style"})

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_columns_are_the_schema(columns)

    message = str(failed.value)
    assert "to add or correct in the template:\n    - Name: ph\n      Type: double" in message
    assert "in the template, not the schema:\n    - Name: style" in message
    with pytest.raises(pytest.fail.Exception, match="another order"):
        assert_columns_are_the_schema(schema.glue_columns()[::-1])


def test_the_cleaned_table_columns_are_the_schema(resources):
    table = table_input(resources, "CleanedTable")

    assert_columns_are_the_schema(table["StorageDescriptor"]["Columns"])
    (partition,) = table["PartitionKeys"]
    assert (partition["Name"], partition["Type"]) == (
        schema.PARTITION_KEY,
        schema.PARTITION_GLUE_TYPE,
    )
    serde = table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert serde == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@pytest.mark.parametrize(("table", "folder"), [("CleanedTable", "cleaned"), ("RawTable", "raw")])
def test_tables_use_partition_projection_on_ingest_date(resources, table, folder):
    props = table_input(resources, table)
    parameters = props["Parameters"]

    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.ingest_date.type"] == "date"
    assert parameters["projection.ingest_date.format"] == "yyyy-MM-dd"
    assert parameters["projection.ingest_date.range"].endswith(",NOW")
    assert parameters["storage.location.template"] == {
        "Fn::Sub": f"s3://${{Bucket}}/{folder}/ingest_date=${{!ingest_date}}/"
    }
    assert props["StorageDescriptor"]["Location"] == {"Fn::Sub": f"s3://${{Bucket}}/{folder}/"}


def _field_names(hive_type: str) -> list[str]:
    """The field names of the structs in a Hive type, nested ones too."""
    return re.findall(r"[<,]\s*(\w+)\s*:", hive_type)


@pytest.mark.parametrize("table", ["CleanedTable", "RawTable"])
def test_table_and_column_names_are_what_athena_queries_as_written(resources, table):
    props = table_input(resources, table)
    columns = props["StorageDescriptor"]["Columns"] + props["PartitionKeys"]
    names = [props["Name"]] + [c["Name"] for c in columns]
    names += [field for c in columns for field in _field_names(c["Type"])]

    # lower case (Athena lowers what it runs), 1 to 255 bytes, no character to quote
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names), names
    assert all(len(name.encode()) <= 255 for name in names)


def test_the_raw_table_covers_every_top_level_field_of_a_beer(resources, catalog_beers):
    columns = table_input(resources, "RawTable")["StorageDescriptor"]["Columns"]

    assert [c["Name"] for c in columns] == list(catalog_beers[0])
    types = {c["Name"]: c["Type"] for c in columns}
    assert types["volume"] == "struct<value:double,unit:string>"
    assert types["food_pairing"] == "array<string>"


def test_the_athena_workgroup_writes_under_athena_results(resources):
    config = resources["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]

    location = config["ResultConfiguration"]["OutputLocation"]
    assert location == {"Fn::Sub": "s3://${Bucket}/athena-results/"}
    assert config["EnforceWorkGroupConfiguration"] is True


# ------------------------------------------------------------------ names

# Where each resource type of the stack takes a name that is unique in the account and
# region, and the longest such name AWS documents for it. None: its name is unique only
# within its parent (a table, a log stream), or it has none. A type the stack gains must be
# added here.
ACCOUNT_WIDE_NAME: dict[str, tuple[tuple[str, ...], int] | None] = {
    "AWS::Athena::WorkGroup": (("Name",), 128),
    "AWS::CloudWatch::Alarm": (("AlarmName",), 255),
    "AWS::CloudWatch::Dashboard": (("DashboardName",), 255),
    "AWS::Events::Rule": (("Name",), 64),
    "AWS::Glue::Database": (("DatabaseInput", "Name"), 255),
    "AWS::IAM::Role": (("RoleName",), 64),
    "AWS::Kinesis::Stream": (("Name",), 128),
    "AWS::KinesisFirehose::DeliveryStream": (("DeliveryStreamName",), 64),
    "AWS::Lambda::Function": (("FunctionName",), 64),
    "AWS::Logs::LogGroup": (("LogGroupName",), 512),
    "AWS::S3::Bucket": (("BucketName",), 63),
    "AWS::SNS::Topic": (("TopicName",), 256),
    "AWS::Glue::Table": None,
    "AWS::Lambda::Permission": None,
    "AWS::Logs::LogStream": None,
    "AWS::Logs::QueryDefinition": None,  # an id is its identity; names may repeat
    "AWS::S3::BucketPolicy": None,
    "AWS::SNS::Subscription": None,
}


def resolve(value: Any, stack_name: str, **names: str) -> Any:
    """`value` as the local deploy's CloudFormation (moto's) resolves it in the stack
    `stack_name`, with the parameters' defaults; `names`: the resources' Ref values."""
    from moto.cloudformation.parsing import clean_json

    defaults = {name: str(p["Default"]) for name, p in load_template()["Parameters"].items()}
    pseudo = {
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
    }
    return clean_json(value, {**defaults, **pseudo, **names})


def account_wide_names(template: dict[str, Any]) -> dict[str, tuple[Any, int]]:
    """logical id -> the name it is given in the account and region, unresolved, and the
    longest its type takes."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        path, limit = ACCOUNT_WIDE_NAME[resource["Type"]] or ((), 0)
        value = resource.get("Properties", {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if path and value is not None:  # without one, CloudFormation makes one of the stack's
            found[logical_id] = (value, limit)
    return found


def test_every_resource_type_says_where_its_account_wide_name_is(translated):
    types = {resource["Type"] for resource in translated["Resources"].values()}
    assert not types - set(ACCOUNT_WIDE_NAME), "add them to ACCOUNT_WIDE_NAME"


def test_every_account_wide_name_is_the_stack_s_so_two_stacks_of_a_stage_never_collide(
    translated,
):
    names = account_wide_names(translated)
    assert {"Stream", "GlueDatabase", "AthenaWorkGroup", "ProducerFunctionTick"} <= set(names)

    for logical_id, (name, _) in names.items():
        # both stacks with the default Stage, as a teammate's next to brewops-dev
        dev, alice = (resolve(name, stack) for stack in ("brewops-dev", "brewops-alice"))
        assert dev != alice, (logical_id, name)
        assert "dev" in dev and "alice" in alice, (logical_id, dev, alice)


def test_the_longest_stack_name_brewops_takes_is_the_longest_the_names_it_gives_allow(
    translated,
):
    from brewops.local.state import STACK_NAME, STACK_NAME_LIMIT

    def too_long(stack: str) -> list[str]:
        return [
            f"{logical_id}: {resolved}"
            for logical_id, (name, limit) in account_wide_names(translated).items()
            if len(resolved := resolve(name, stack)) > limit
        ]

    longest = "b" * STACK_NAME_LIMIT
    assert STACK_NAME.fullmatch(longest) and not STACK_NAME.fullmatch(longest + "b")
    assert too_long(longest) == []
    assert too_long(longest + "b") != [], "the limit can be raised"


@pytest.mark.parametrize(
    ("stack", "database"),
    [
        ("brewops-dev", "brewops_dev"),
        ("brewops-prod", "brewops_prod"),
        ("brewops-ci-2-x", "brewops_ci_2_x"),
    ],
)
def test_the_glue_database_is_the_stack_name_in_athena_s_characters(resources, stack, database):
    name = resolve(resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"], stack)

    assert name == database
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name) and len(name.encode()) <= 255


def test_the_cleaned_stream_reads_the_schema_of_its_own_stack_s_database_only(resources):
    (statement,) = [
        s
        for s in role_statements(resources, "CleanedDeliveryRole")
        if "glue:GetTable" in as_list(s["Action"])
    ]
    database = resolve(
        resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"], "brewops-alice"
    )
    arns = [
        resolve(arn, "brewops-alice", GlueDatabase=database, CleanedTable="beers_cleaned")
        for arn in as_list(statement["Resource"])
    ]

    glue = "arn:aws:glue:eu-west-1:123456789012"
    assert arns == [
        f"{glue}:catalog",
        f"{glue}:database/brewops_alice",
        f"{glue}:table/brewops_alice/beers_cleaned",
    ]


# ------------------------------------------------------------------ alarms

# logical id -> "namespace metric dimension=resource watched statistic operator threshold"
ALARMS = {
    "ProducerErrorsAlarm": "AWS/Lambda Errors FunctionName=ProducerFunction Sum > 0",
    "ProducerThrottlesAlarm": "AWS/Lambda Throttles FunctionName=ProducerFunction Sum > 0",
    "TransformErrorsAlarm": "AWS/Lambda Errors FunctionName=TransformFunction Sum > 0",
    "TransformThrottlesAlarm": "AWS/Lambda Throttles FunctionName=TransformFunction Sum > 0",
    "CleanedTransformFailedAlarm": (
        "AWS/Firehose ExecuteProcessing.Success DeliveryStreamName=CleanedDeliveryStream"
        " Average < 1"
    ),
    "CleanedConversionFailedAlarm": (
        "AWS/Firehose FailedConversion.Records DeliveryStreamName=CleanedDeliveryStream Sum > 0"
    ),
    "RawDeliveryFailedAlarm": (
        "AWS/Firehose DeliveryToS3.Success DeliveryStreamName=RawDeliveryStream Average < 1"
    ),
    "CleanedDeliveryFailedAlarm": (
        "AWS/Firehose DeliveryToS3.Success DeliveryStreamName=CleanedDeliveryStream Average < 1"
    ),
    "RawDeliveryLateAlarm": (
        "AWS/Firehose DeliveryToS3.DataFreshness DeliveryStreamName=RawDeliveryStream"
        " Maximum > 1800"
    ),
    "CleanedDeliveryLateAlarm": (
        "AWS/Firehose DeliveryToS3.DataFreshness DeliveryStreamName=CleanedDeliveryStream"
        " Maximum > 1800"
    ),
    "StreamWriteThrottledAlarm": (
        "AWS/Kinesis WriteProvisionedThroughputExceeded StreamName=Stream Sum > 0"
    ),
    "StreamIteratorAgeAlarm": (
        "AWS/Kinesis GetRecords.IteratorAgeMilliseconds StreamName=Stream Maximum > 900000"
    ),
}
OPERATORS = {">": "GreaterThanThreshold", "<": "LessThanThreshold"}

# The metrics the stack watches, by namespace, as AWS's documentation names them (Lambda,
# Kinesis Data Streams and Firehose "Monitoring with CloudWatch"), the one dimension each
# is published under for this stack, and the type of resource that dimension names.
METRICS = {
    "AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration"},
    "AWS/Kinesis": {
        "IncomingRecords",
        "PutRecords.ThrottledRecords",
        "WriteProvisionedThroughputExceeded",
        "GetRecords.IteratorAgeMilliseconds",
    },
    "AWS/Firehose": {
        "DeliveryToS3.Records",
        "DeliveryToS3.Success",
        "DeliveryToS3.DataFreshness",
        "ExecuteProcessing.Success",
        "FailedConversion.Records",
    },
}
DIMENSIONS = {
    "AWS/Lambda": ("FunctionName", "AWS::Serverless::Function"),
    "AWS/Kinesis": ("StreamName", "AWS::Kinesis::Stream"),
    "AWS/Firehose": ("DeliveryStreamName", "AWS::KinesisFirehose::DeliveryStream"),
}


def watched_resource(
    resources: dict[str, Any], namespace: str, metric: str, dimensions: dict[str, str]
) -> str:
    """The logical id of the resource of the template a metric is published for, given its
    dimensions as {name: logical id}; fails unless the service publishes that metric under
    that dimension for a resource of that type."""
    where = f"{namespace} {metric} {dimensions}"
    assert metric in METRICS.get(namespace, set()), f"{where}: a metric AWS does not publish"
    dimension, resource_type = DIMENSIONS[namespace]
    assert list(dimensions) == [dimension], f"{where}: published per {dimension} only"
    watched = dimensions[dimension]
    assert resources.get(watched, {}).get("Type") == resource_type, f"{where}: no {resource_type}"
    return watched


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_every_alarm_watches_its_metric_on_a_resource_of_the_stack(resources):
    found = alarms(resources)
    assert set(found) == set(ALARMS)

    for name, props in found.items():
        namespace, metric, watches, statistic, operator, threshold = ALARMS[name].split()
        dimension, watched = watches.split("=")
        assert (props["Namespace"], props["MetricName"]) == (namespace, metric), name
        assert props["Dimensions"] == [{"Name": dimension, "Value": {"Ref": watched}}], name
        named = {d["Name"]: d["Value"]["Ref"] for d in props["Dimensions"]}
        assert watched_resource(resources, namespace, metric, named) == watched, name
        assert props["Statistic"] == statistic, name
        assert props["ComparisonOperator"] == OPERATORS[operator], name
        assert props["Threshold"] == int(threshold), name
        # the metrics are published per minute; a 5-minute period suits the 5-minute ticks
        assert props["Period"] in (60, 300), name
        assert props["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name
        assert props["AlarmDescription"].strip(), name


def test_alarms_notify_the_topic_and_read_no_traffic_as_healthy(resources):
    for name, props in alarms(resources).items():
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        # the services publish nothing while the pipeline is idle
        assert props["TreatMissingData"] == "notBreaching", name
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_an_alarm_notifies_on_the_first_period_in_breach(resources):
    # but the throttling one, which waits for five (below)
    for name, props in alarms(resources).items():
        if name != "StreamWriteThrottledAlarm":
            assert props["EvaluationPeriods"] == 1 and "DatapointsToAlarm" not in props, name


def test_a_late_delivery_is_not_an_ordinary_buffer_wait(template, resources):
    # DataFreshness reaches the buffer interval before every delivery
    longest_buffer = template["Parameters"]["BufferIntervalSeconds"]["MaxValue"]
    for name in ("RawDeliveryLateAlarm", "CleanedDeliveryLateAlarm"):
        assert alarms(resources)[name]["Threshold"] > longest_buffer


def test_records_waiting_alarm_fires_long_before_the_stream_drops_them(resources):
    retention_ms = resources["Stream"]["Properties"]["RetentionPeriodHours"] * 3600 * 1000
    assert alarms(resources)["StreamIteratorAgeAlarm"]["Threshold"] <= retention_ms / 24


def test_a_short_throttled_backfill_does_not_fire_the_throttling_alarm(resources):
    props = alarms(resources)["StreamWriteThrottledAlarm"]
    assert props["Period"] * props["DatapointsToAlarm"] >= 300
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]


def test_the_alarm_email_is_optional(template, resources):
    parameter = template["Parameters"]["AlarmEmail"]
    pattern = re.compile(parameter["AllowedPattern"])

    assert parameter["Default"] == ""
    assert pattern.fullmatch("") and pattern.fullmatch("ops@example.com")
    assert not pattern.fullmatch("ops") and not pattern.fullmatch("a@b.io, c@d.io")
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


# ------------------------------------------------------------------ dashboard


def dashboard_body(resources: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's body as CloudFormation substitutes it, read as JSON: ${Name} (a
    resource's name) becomes the logical id Name, ${Name.Arn} becomes arn:Name."""
    text = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]

    def value(match: re.Match[str]) -> str:
        name, _, attribute = match[1].partition(".")
        if name == "AWS::Region":
            return "eu-west-1"
        assert name in resources, f"${{{match[1]}}} names no resource of the template"
        assert attribute in ("", "Arn"), match[0]
        return f"arn:{name}" if attribute else name

    return json.loads(re.sub(r"\$\{([^}!]+)\}", value, text))


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict]]:
    """(namespace, metric, dimensions, widget properties) of every metric of the body."""
    found = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        for line in widget["properties"]["metrics"]:
            options = line[-1] if isinstance(line[-1], dict) else {}
            namespace, metric, *pairs = line[:-1] if options else line
            assert len(pairs) % 2 == 0 and "." not in (namespace, metric), line
            dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
            found.append((namespace, metric, dimensions, {**widget["properties"], **options}))
    return found


def test_the_dashboard_body_is_json_once_substituted(resources):
    body = dashboard_body(resources)

    assert {widget["type"] for widget in body["widgets"]} == {"alarm", "metric"}
    for widget in body["widgets"]:
        # CloudWatch's grid is 24 units wide
        assert widget["x"] + widget["width"] <= 24, widget["properties"]["title"]


def test_every_dashboard_metric_is_one_aws_publishes_for_a_resource_of_the_stack(resources):
    metrics = dashboard_metrics(dashboard_body(resources))
    watched = {
        watched_resource(resources, namespace, metric, dimensions)
        for namespace, metric, dimensions, _ in metrics
    }

    # every function, the stream and both delivery streams are on it
    types = {resource_type for _, resource_type in DIMENSIONS.values()}
    assert watched == {name for name, r in resources.items() if r["Type"] in types}
    for _, metric, _, properties in metrics:
        assert properties["stat"] in ("Sum", "Average", "Maximum"), metric
        assert properties["region"] == "eu-west-1" and properties["period"] == 300, metric


def test_the_dashboard_shows_every_alarm_of_the_stack(resources):
    (widget,) = [w for w in dashboard_body(resources)["widgets"] if w["type"] == "alarm"]

    shown = widget["properties"]["alarms"]
    assert sorted(shown) == sorted(f"arn:{name}" for name in alarms(resources)), (
        "the dashboard's alarm widget must list every alarm of the template"
    )


def test_the_dashboard_url_output_opens_the_stack_s_dashboard(template, resources):
    url = template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]

    assert url.endswith("#dashboards:name=${Dashboard}")
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?")
    name = resources["Dashboard"]["Properties"]["DashboardName"]["Fn::Sub"]
    assert name.startswith("${AWS::StackName}-")


# ------------------------------------------------------------------ saved queries


def query_definitions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::Logs::QueryDefinition"
    }


def query_commands(query: str) -> dict[str, str]:
    """The commands of a Logs Insights query of one command a line, by command."""
    commands = {}
    for line in query.strip().splitlines():
        command, _, argument = line.removeprefix("| ").partition(" ")
        assert command in ("fields", "filter", "sort") and command not in commands, line
        commands[command] = argument
    return commands


def query_selects(query: str, line: str) -> bool:
    """Whether the query's filter keeps the log line `line` (its JSON as written). It reads
    the subset of the filter syntax the template's queries use: clauses joined by `or`,
    each `field = "text"` or `@message like /regex/`."""
    event = json.loads(line) if line.startswith("{") else {}
    for clause in query_commands(query)["filter"].split(" or "):
        if equals := re.fullmatch(r'([a-z_]+) = "([^"]*)"', clause):
            if event.get(equals[1]) == equals[2]:
                return True
        elif like := re.fullmatch(r"@message like /(.+)/", clause):
            if re.search(like[1], line):
                return True
        else:
            raise AssertionError(f"{clause!r} is outside the filter syntax this test reads")
    return False


def logged_keys(lines: list[str]) -> set[str]:
    """The fields Logs Insights finds in JSON log lines: nested keys joined by dots,
    array items by their index."""
    found: set[str] = set()

    def walk(value: Any, prefix: str) -> None:
        if prefix:
            found.add(prefix)
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return
        for key, item in items:
            walk(item, f"{prefix}.{key}" if prefix else str(key))

    for line in lines:
        if line.startswith("{"):
            walk(json.loads(line), "")
    return found


@pytest.fixture
def function_log_lines(lambda_logs, monkeypatch) -> dict[str, dict[str, list[str]]]:
    """The lines both functions write, as CloudWatch Logs receives them, by function and
    message: their own Powertools loggers, fed ticks and records about beer 9001 and
    others (90011, 19001: the same digits), a Punk API that is down, and a Kinesis that
    refuses 9001."""
    from brewops import producer, transform
    from brewops.lambdas.producer import app as producer_app
    from brewops.lambdas.transform import app as transform_app

    class Api:
        def __init__(self, *ids: int) -> None:
            self.ids = ids

        def random(self, n: int = 1) -> list[dict[str, Any]]:
            if not self.ids:
                raise ConnectionError("the Punk API is down")
            return [{"id": beer_id, "name": f"Beer {beer_id}"} for beer_id in self.ids]

    class Kinesis:
        def __init__(self, refused: str = "") -> None:
            self.refused = refused

        def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict:
            results = [
                {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal Service Failure"}
                if entry["PartitionKey"] == self.refused
                else {"ShardId": "shardId-000000000000", "SequenceNumber": "49"}
                for entry in Records
            ]
            failed = sum("ErrorCode" in r for r in results)
            return {"FailedRecordCount": failed, "Records": results}

    def firehose_record(payload: bytes, record_id: str) -> dict[str, Any]:
        metadata = {"shardId": "shardId-000000000000", "sequenceNumber": "49"}
        data = base64.b64encode(payload).decode()
        return {"recordId": record_id, "data": data, "kinesisRecordMetadata": metadata}

    monkeypatch.setattr(producer, "TICK_RETRY_SECONDS", 0.0)  # the refusal is final
    written = {
        "producer": lambda_logs(producer_app.logger, raw=True),
        "transform": lambda_logs(transform_app.logger, raw=True),
    }
    for api, kinesis in (
        (Api(9001, 2), Kinesis()),
        (Api(90011, 19001), Kinesis()),
        (Api(2, 9001), Kinesis(refused="9001")),
        (Api(), Kinesis()),
    ):
        with contextlib.suppress(Exception):  # a failed tick fails its invocation
            producer.produce_random_beers(api, "beers", 2, kinesis, producer_app.logger)
    records = [
        firehose_record(b'{"id": 9001, "name": ""}', "r1"),
        firehose_record(b'{"id": 90011, "name": ""}', "r2"),
        firehose_record(b"{oops", "r3"),
        firehose_record(b"", "r4"),
    ]
    transform.transform_records(records, transform_app.logger)

    lines: dict[str, dict[str, list[str]]] = {}
    for function, capture in written.items():
        for line in capture():
            lines.setdefault(function, {}).setdefault(json.loads(line)["message"], []).append(line)
    return lines


# the log group each function writes to
LOG_GROUPS = {"producer": "ProducerLogGroup", "transform": "TransformLogGroup"}


def test_saved_queries_are_the_stack_s_and_read_its_functions_log_groups(resources):
    found = query_definitions(resources)
    assert set(found) == {"FollowBeerQuery", "RefusedRecordsQuery", "FailedTicksQuery"}

    for name, props in found.items():
        assert props["Name"]["Fn::Sub"].startswith("${AWS::StackName}/"), name
        groups = [group["Ref"] for group in props["LogGroupNames"]]
        assert groups and set(groups) <= set(LOG_GROUPS.values()), name
    # one beer is followed across both functions
    assert len(found["FollowBeerQuery"]["LogGroupNames"]) == len(LOG_GROUPS)


@pytest.mark.parametrize(
    ("query", "kept", "left"),
    [
        # one beer through both functions, by its id: not another whose id holds its digits
        (
            "FollowBeerQuery",
            {
                ("producer", "tick produced", 0),
                ("producer", "tick incomplete", 0),
                ("transform", "record not transformed", 0),
            },
            {
                ("producer", "tick produced", 1),
                ("transform", "record not transformed", 1),
                ("transform", "record not transformed", 2),
                ("transform", "batch transformed", 0),
            },
        ),
        (
            "RefusedRecordsQuery",
            {("transform", "record not transformed", n) for n in range(3)},
            {("transform", "record dropped", 0), ("transform", "batch transformed", 0)},
        ),
        (
            "FailedTicksQuery",
            {("producer", "tick incomplete", 0), ("producer", "no beers from the Punk API", 0)},
            {("producer", "tick produced", 0), ("producer", "tick produced", 1)},
        ),
    ],
)
def test_each_saved_query_reads_the_keys_the_functions_log(
    resources, function_log_lines, query, kept, left
):
    props = query_definitions(resources)[query]
    text = props["QueryString"]
    groups = {group["Ref"] for group in props["LogGroupNames"]}
    read = [
        line
        for function, by_message in function_log_lines.items()
        if LOG_GROUPS[function] in groups
        for lines in by_message.values()
        for line in lines
    ]

    def line(function: str, message: str, n: int) -> str:
        return function_log_lines[function][message][n]

    # the fields it shows are keys the functions log (or Logs Insights' own, @...)
    fields = [f.strip() for f in query_commands(text)["fields"].split(",")]
    unknown = {f for f in fields if not f.startswith("@")} - logged_keys(read)
    assert not unknown, f"{query} shows {unknown}, which no line of its log groups holds"
    # its filter keeps the lines it is for, and only those
    assert {LOG_GROUPS[function] for function, _, _ in kept} <= groups
    assert all(query_selects(text, line(*k)) for k in kept), query
    assert not any(query_selects(text, line(*k)) for k in left), query


# ------------------------------------------------------------------ least privilege


def test_no_allow_statement_uses_wildcard_actions_or_resources(translated):
    policies = iam_policies(translated["Resources"])
    assert len(policies) >= 4

    for name, document in policies:
        for statement in statements(document):
            if statement["Effect"] != "Allow":
                continue
            actions = as_list(statement.get("Action", []))
            assert actions and not any("*" in a for a in actions), (name, actions)
            assert "NotAction" not in statement and "NotResource" not in statement
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    assert (name, statement.get("Sid", "")) in STAR_RESOURCE_ALLOWED, name
                else:
                    assert "*" not in str(resource).split("/")[0], (name, resource)


def test_no_full_access_or_admin_managed_policies(translated):
    for name, resource in translated["Resources"].items():
        for arn in resource.get("Properties", {}).get("ManagedPolicyArns", []):
            assert "FullAccess" not in json.dumps(arn), (name, arn)
            assert "AdministratorAccess" not in json.dumps(arn), (name, arn)


def test_the_producer_may_only_put_records_into_the_stream(resources):
    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in role_statements(resources, "ProducerRole"):
        service = {a.split(":")[0] for a in as_list(statement["Action"])}
        assert len(service) == 1
        by_service.setdefault(service.pop(), []).append(statement)

    assert set(by_service) == {"kinesis", "logs"}
    (kinesis,) = by_service["kinesis"]
    assert as_list(kinesis["Action"]) == ["kinesis:PutRecords"]
    assert kinesis["Resource"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert resources["ProducerFunction"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["ProducerRole", "Arn"]
    }


def test_the_transform_may_only_write_its_logs(resources):
    actions = {a for s in role_statements(resources, "TransformRole") for a in as_list(s["Action"])}

    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_roles_trust_only_the_service_that_uses_them(resources):
    trusted = {
        name: statements(r["Properties"]["AssumeRolePolicyDocument"])[0]["Principal"]["Service"]
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Role"
    }

    assert trusted == {
        "ProducerRole": "lambda.amazonaws.com",
        "TransformRole": "lambda.amazonaws.com",
        "RawDeliveryRole": "firehose.amazonaws.com",
        "CleanedDeliveryRole": "firehose.amazonaws.com",
    }


def test_firehose_writes_only_its_own_prefixes(resources):
    def writes(role: str) -> list[Any]:
        return [
            r
            for s in role_statements(resources, role)
            if "s3:PutObject" in as_list(s["Action"])
            for r in as_list(s["Resource"])
        ]

    assert writes("RawDeliveryRole") == [
        {"Fn::Sub": "${Bucket.Arn}/raw/*"},
        {"Fn::Sub": "${Bucket.Arn}/errors/raw/*"},
    ]
    assert writes("CleanedDeliveryRole") == [
        {"Fn::Sub": "${Bucket.Arn}/cleaned/*"},
        {"Fn::Sub": "${Bucket.Arn}/errors/cleaned/*"},
    ]


def test_no_role_of_the_stack_may_write_the_model_registry(translated):
    # a model is a pickle: whoever may write models/ runs code where it is loaded
    prefixes = []
    for name, document in iam_policies(translated["Resources"]):
        for statement in statements(document):
            actions = as_list(statement["Action"])
            writes = [
                a for a in actions if a.startswith("s3:") and not a[3:].startswith(("Get", "List"))
            ]
            if statement["Effect"] != "Allow" or not writes:
                continue
            for resource in as_list(statement["Resource"]):
                arn = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
                prefixes.append((name, arn.partition("/")[2]))  # after the bucket

    assert prefixes and all(p.endswith("/*") for _, p in prefixes), prefixes
    folders = [(n, p.removesuffix("*")) for n, p in prefixes]
    assert not [f for f in folders if f[1].startswith("models/") or "models/".startswith(f[1])]


# ------------------------------------------------------------------ translation


def test_aws_sam_translator_translates_it_offline(template, monkeypatch):
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("translation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)

    cfn = translate(template)

    assert "Transform" not in cfn and "Globals" not in cfn
    types = {name: r["Type"] for name, r in cfn["Resources"].items()}
    assert not [t for t in types.values() if t.startswith("AWS::Serverless::")]
    assert types["ProducerFunction"] == types["TransformFunction"] == "AWS::Lambda::Function"
    assert types["ProducerFunctionTick"] == "AWS::Events::Rule"
    assert cfn["Outputs"]["ScheduleRuleName"]["Value"] == {"Ref": "ProducerFunctionTick"}
    for name in ("ProducerFunction", "TransformFunction"):
        props = cfn["Resources"][name]["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Code"] == {"S3Bucket": "artifacts", "S3Key": "brewops/lib.zip"}
    rule = cfn["Resources"]["ProducerFunctionTick"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ProducerFunction", "Arn"]}
    assert set(cfn["Outputs"]) == STACK_OUTPUTS
