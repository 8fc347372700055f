"""The local Firehose runtime: prefixes and object names, the configuration it reads back,
the Lambda contract, the Parquet conversion, buffering, and restarts that neither lose nor
duplicate a record."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from brewops import schema
from brewops.firehose_runtime import FirehoseRuntime
from brewops.firehose_runtime.checkpoints import Checkpoint, CheckpointStore
from brewops.firehose_runtime.config import DeliveryStreamConfig, UnsupportedConfiguration
from brewops.firehose_runtime.conversion import ConversionError, HiveJsonDeserializer, arrow_type
from brewops.firehose_runtime.functions import Invocation, LocalFunction, split_function_arn
from brewops.firehose_runtime.prefixes import (
    PrefixError,
    effective_error_prefix,
    effective_prefix,
    evaluate_prefix,
    java_format,
    object_name,
    static_root,
)
from brewops.firehose_runtime.processing import (
    DUPLICATED_RECORD_ID,
    LambdaStage,
    Outcome,
    ProcessedBatch,
    SourceRecord,
)
from brewops.reconcile import logged_reasons

EVENTS = Path(__file__).parent / "events"
MOMENT = datetime(2024, 3, 7, 9, 5, 4, 321000, tzinfo=UTC)
ARN = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/brewops-dev-cleaned"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:brewops-dev-transform"


def description(**destination: Any) -> dict[str, Any]:
    """A describe_delivery_stream answer in the shape the emulator returns."""
    s3 = {
        "RoleARN": "arn:aws:iam::123456789012:role/r",
        "BucketARN": "arn:aws:s3:::bucket",
        "Prefix": "cleaned/ingest_date=!{timestamp:yyyy-MM-dd}/",
        "ErrorOutputPrefix": "errors/cleaned/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "CompressionFormat": "UNCOMPRESSED",
        **destination,
    }
    return {
        "DeliveryStreamName": "brewops-dev-cleaned",
        "DeliveryStreamARN": ARN,
        "DeliveryStreamType": "KinesisStreamAsSource",
        "VersionId": "1",
        "CreateTimestamp": MOMENT,
        "Source": {
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/beers",
                "RoleARN": "arn:aws:iam::123456789012:role/r",
            }
        },
        "Destinations": [
            {
                "DestinationId": "destinationId-000000000001",
                "S3DestinationDescription": {k: v for k, v in s3.items() if "Processing" not in k},
                "ExtendedS3DestinationDescription": s3,
            }
        ],
    }


PROCESSING = {
    "Enabled": True,
    "Processors": [
        {
            "Type": "Lambda",
            "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": FUNCTION_ARN + ":$LATEST"},
                {"ParameterName": "NumberOfRetries", "ParameterValue": "3"},
                {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
            ],
        }
    ],
}


# ------------------------------------------------------------------ prefixes and names


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd", "2024-03-07"),
        ("yyyy/MM/dd/HH", "2024/03/07/09"),
        ("yy'-'M'-'d", "24-3-7"),
        ("'year='yyyy'/hour='HH", "year=2024/hour=09"),
        ("HH:mm:ss.SSS", "09:05:04.321"),
        ("MMM MMMM EEE", "Mar March Thu"),
        ("D", "67"),
        ("h a", "9 AM"),
        ("'it''s' yyyy", "it's 2024"),
        ("'Q'Q", "Q1"),
    ],
)
def test_java_date_time_patterns(pattern, expected):
    assert java_format(MOMENT, pattern) == expected


@pytest.mark.parametrize(
    ("hour", "pattern", "expected"),
    [
        (0, "h a", "12 AM"),
        (0, "k K", "24 0"),
        (12, "h a", "12 PM"),
        (12, "k K", "12 0"),
        (23, "h a k", "11 PM 23"),
    ],
)
def test_clock_hours_at_midnight_and_noon(hour, pattern, expected):
    assert java_format(MOMENT.replace(hour=hour), pattern) == expected


def test_a_moment_in_another_zone_is_formatted_in_utc():
    # 01:30 in UTC+2 is still the day before in UTC: that day names the partition
    moment = datetime(2024, 3, 7, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert java_format(moment, "yyyy-MM-dd HH:mm") == "2024-03-06 23:30"


def test_every_timestamp_in_a_prefix_is_the_same_instant():
    prefix = "y=!{timestamp:yyyy}/d=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/"
    assert evaluate_prefix(prefix, MOMENT) == "y=2024/d=2024-03-07/h=09/"


def test_error_output_type_is_evaluated_in_the_error_prefix_only():
    error_prefix = "errors/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
    assert (
        evaluate_prefix(error_prefix, MOMENT, error_output_type="processing-failed")
        == "errors/processing-failed/ingest_date=2024-03-07/"
    )
    with pytest.raises(PrefixError):
        evaluate_prefix(error_prefix, MOMENT)
    with pytest.raises(PrefixError):
        effective_prefix("data/!{firehose:error-output-type}/")


def test_random_string_is_eleven_characters():
    first = evaluate_prefix("a/!{firehose:random-string}/", MOMENT)
    second = evaluate_prefix("a/!{firehose:random-string}/", MOMENT)
    assert re.fullmatch(r"a/[A-Za-z0-9]{11}/", first)
    assert first != second


def test_default_prefixes():
    assert evaluate_prefix(effective_prefix(""), MOMENT) == "2024/03/07/09/"
    assert evaluate_prefix(effective_prefix("plain/"), MOMENT) == "plain/2024/03/07/09/"
    assert (
        evaluate_prefix(
            effective_error_prefix(""), MOMENT, error_output_type="format-conversion-failed"
        )
        == "format-conversion-failed/2024/03/07/09/"
    )
    assert (
        evaluate_prefix(effective_error_prefix("errors/"), MOMENT, error_output_type="x")
        == "errors/2024/03/07/09/"
    )


@pytest.mark.parametrize(
    ("prefix", "root"),
    [
        ("cleaned/ingest_date=!{timestamp:yyyy-MM-dd}/", "cleaned/ingest_date="),
        ("errors/!{firehose:error-output-type}/!{timestamp:yyyy}/", "errors/"),
        ("raw/", "raw/"),
        ("!{timestamp:yyyy}/", ""),
        (None, ""),
    ],
)
def test_the_static_root_is_everything_before_the_first_expression(prefix, root):
    assert static_root(prefix) == root


@pytest.mark.parametrize(
    "prefix", ["a/!{timestamp:yyyy-MM-dd[}/", "a/!{partitionKeyFromQuery:id}/", "a/!{what:x}/"]
)
def test_unsupported_expressions_are_rejected(prefix):
    with pytest.raises(PrefixError):
        evaluate_prefix(prefix, MOMENT, error_output_type="processing-failed")


def test_object_name_has_the_firehose_shape():
    name = object_name(
        "brewops-dev-raw", "1", MOMENT, "0b9e7c2c-8f3e-4a8e-9a7e-5b0f0d7c1e21", ".gz"
    )
    assert name == "brewops-dev-raw-1-2024-03-07-09-05-04-0b9e7c2c-8f3e-4a8e-9a7e-5b0f0d7c1e21.gz"


# ------------------------------------------------------------------ configuration


def test_configuration_is_read_from_the_description():
    config = DeliveryStreamConfig.from_description(
        description(
            CompressionFormat="GZIP",
            BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 120},
        )
    )
    assert (config.bucket, config.source_stream_name) == ("bucket", "beers")
    assert (config.buffer_bytes, config.interval_seconds) == (5 * 1024 * 1024, 120)
    assert config.extension == ".gz"
    assert config.processor is None and config.conversion is None
    assert config.region == "eu-west-1"


def test_processor_and_conversion_are_read_from_the_description():
    config = DeliveryStreamConfig.from_description(
        description(
            ProcessingConfiguration=PROCESSING,
            DataFormatConversionConfiguration={
                "Enabled": True,
                "SchemaConfiguration": {
                    "DatabaseName": "db",
                    "TableName": "cleaned",
                    "VersionId": "LATEST",
                    "RoleARN": "arn:aws:iam::123456789012:role/r",
                },
                "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
            },
        )
    )
    assert config.processor.function_arn == FUNCTION_ARN + ":$LATEST"
    assert (config.processor.retries, config.processor.buffer_bytes) == (3, 1024 * 1024)
    assert (config.conversion.database, config.conversion.table) == ("db", "cleaned")
    assert config.conversion.compression == "SNAPPY"
    assert config.extension == ""  # Parquet objects carry no extension unless configured
    assert split_function_arn(config.processor.function_arn) == ("brewops-dev-transform", None)


def test_unsupported_configuration_is_an_error_not_a_silent_difference():
    with pytest.raises(UnsupportedConfiguration):
        DeliveryStreamConfig.from_description(description(CompressionFormat="Snappy"))


# ------------------------------------------------------------------ conversion


@pytest.mark.parametrize(
    ("glue_type", "arrow"),
    [
        ("bigint", pa.int64()),
        ("double", pa.float64()),
        ("string", pa.string()),
        ("varchar(20)", pa.string()),
        ("timestamp", pa.timestamp("ms")),
        ("decimal(5,2)", pa.decimal128(5, 2)),
        ("array<string>", pa.list_(pa.string())),
        ("map<string,int>", pa.map_(pa.string(), pa.int32())),
        (
            "struct<value:double,unit:string>",
            pa.struct([("value", pa.float64()), ("unit", pa.string())]),
        ),
    ],
)
def test_glue_types_map_to_arrow(glue_type, arrow):
    assert arrow_type(glue_type) == arrow


def cleaned_deserializer() -> HiveJsonDeserializer:
    from brewops.firehose_runtime.conversion import arrow_schema

    return HiveJsonDeserializer(arrow_schema(schema.glue_columns()))


def test_hive_json_reads_keys_case_insensitively_and_missing_keys_as_null():
    [row] = cleaned_deserializer().rows(
        b'{"ID": 7, "Name": "Punk IPA", "abv": 5.6, "extra": 1, '
        b'"ingested_at": "2024-03-07 09:05:04.321"}\n'
    )
    assert row["id"] == 7 and row["name"] == "Punk IPA" and row["ibu"] is None
    assert row["ingested_at"] == datetime(2024, 3, 7, 9, 5, 4, 321000)
    assert "extra" not in row


def test_hive_json_fails_a_value_of_the_wrong_type_with_the_column_named():
    with pytest.raises(ConversionError) as failure:
        cleaned_deserializer().rows(b'{"id": "seven", "name": "x"}')
    assert failure.value.code == "DataFormatConversion.MalformedData"
    assert "'id'" in str(failure.value)
    with pytest.raises(ConversionError) as failure:
        cleaned_deserializer().rows(b'{"id": 1, "name": ')
    assert failure.value.code == "DataFormatConversion.ParseError"


def test_hive_json_refuses_text_parquet_could_not_write():
    # A lone surrogate is valid JSON text; left in, it would fail the whole Parquet file.
    with pytest.raises(ConversionError) as failure:
        cleaned_deserializer().rows(b'{"id": 1, "name": "\\ud800"}')
    assert failure.value.code == "DataFormatConversion.MalformedData"
    assert "'name'" in str(failure.value)


def test_hive_json_refuses_epoch_millis_past_the_calendar():
    from brewops.firehose_runtime.conversion import arrow_schema

    millis = HiveJsonDeserializer(
        arrow_schema(schema.glue_columns()), timestamp_formats=("millis",)
    )
    with pytest.raises(ConversionError) as failure:
        millis.rows(b'{"id": 1, "name": "x", "ingested_at": 1e20}')
    assert failure.value.code == "DataFormatConversion.MalformedData"


# ------------------------------------------------------------------ the Lambda contract


class FakeFunction:
    """Stands in for LocalFunction: answers `answer(event)`, logs `logs(event)`, or fails."""

    def __init__(self, answer=None, error=None, logs=None):
        self.answer, self.error = answer, error
        self.logs = logs or (lambda event: [])
        self.events: list[dict[str, Any]] = []

    def invoke(self, event):
        self.events.append(event)
        invocation = Invocation("req", log_records=self.logs(event))
        if self.error:
            invocation.error = self.error
        else:
            invocation.result = self.answer(event)
        return invocation


def stage_for(function: FakeFunction) -> LambdaStage:
    config = DeliveryStreamConfig.from_description(description(ProcessingConfiguration=PROCESSING))
    return LambdaStage(config, function)


def source_records(*payloads: bytes) -> list[SourceRecord]:
    return [
        SourceRecord(f"shardId-00000000000{i % 2}", str(i + 1), str(i), data, 1714566600000 + i)
        for i, data in enumerate(payloads)
    ]


def test_the_event_has_the_firehose_kinesis_shape():
    function = FakeFunction(lambda e: {"records": []})
    stage_for(function).process(source_records(b'{"id": 1}\n'))
    [event] = function.events
    fixture = json.loads((EVENTS / "firehose_kinesis_transform.json").read_text())
    assert set(event) == set(fixture)
    assert set(event["records"][0]) == set(fixture["records"][0])
    assert set(event["records"][0]["kinesisRecordMetadata"]) == set(
        fixture["records"][0]["kinesisRecordMetadata"]
    )
    assert base64.b64decode(event["records"][0]["data"]) == b'{"id": 1}\n'
    assert event["deliveryStreamArn"] == ARN


def test_each_result_is_honoured_and_a_failure_says_only_what_firehose_says():
    def answer(event):
        ids = [r["recordId"] for r in event["records"]]
        ok = base64.b64encode(b'{"id":1}\n').decode()
        return {
            "records": [
                {"recordId": ids[0], "result": "Ok", "data": ok},
                {"recordId": ids[1], "result": "Dropped", "data": ""},
                {"recordId": ids[2], "result": "ProcessingFailed", "data": ""},
            ]
        }

    def logs(event):  # what the transform logs for the record it fails
        fields = {"reason": "bad JSON", "record_id": event["records"][2]["recordId"]}
        return [logging.makeLogRecord({"msg": "record not transformed", **fields})]

    function = FakeFunction(answer, logs=logs)  # the reason stays in the function's log
    outcomes = stage_for(function).process(source_records(b"a", b"b", b"c")).outcomes
    assert outcomes[0].data == b'{"id":1}\n'
    assert outcomes[1].dropped
    failure = outcomes[2].failure.document
    assert failure["errorCode"] == "Lambda.ProcessingFailedStatus"
    assert failure["errorMessage"] == "ProcessingFailed status set for record"
    assert base64.b64decode(failure["rawData"]) == b"c"
    assert failure["lambdaArn"] == FUNCTION_ARN + ":$LATEST"
    assert set(failure) == {
        "attemptsMade",
        "arrivalTimestamp",
        "errorCode",
        "errorMessage",
        "attemptEndingTimestamp",
        "rawData",
        "lambdaArn",
    }


def test_a_handler_exception_is_retried_then_fails_every_record():
    function = FakeFunction(error="RuntimeError: boom")
    batch = stage_for(function).process(source_records(b"a", b"b"))
    assert len(function.events) == 4  # NumberOfRetries 3 + the first attempt
    assert batch.attempts == 4
    assert {o.failure.document["errorCode"] for o in batch.outcomes} == {"Lambda.FunctionError"}
    assert all("boom" in o.failure.document["errorMessage"] for o in batch.outcomes)


def test_an_error_record_keeps_when_its_record_arrived():
    records = source_records(b"a", b"b")
    batch = stage_for(FakeFunction(error="RuntimeError: boom")).process(records)

    documents = [o.failure.document for o in batch.outcomes]
    assert [d["arrivalTimestamp"] for d in documents] == [r.arrival_ms for r in records]
    assert all(d["attemptEndingTimestamp"] >= d["arrivalTimestamp"] for d in documents)


def test_an_answer_over_the_lambda_payload_limit_is_a_failed_call():
    big = base64.b64encode(b"x" * (5 * 1024 * 1024)).decode()  # ~6.7 MB once encoded

    def answer(event):
        return {
            "records": [
                {"recordId": r["recordId"], "result": "Ok", "data": big} for r in event["records"]
            ]
        }

    function = FakeFunction(answer)
    batch = stage_for(function).process(source_records(b"a"))

    assert len(function.events) == 4, "retried like any failed call"
    [outcome] = batch.outcomes
    assert outcome.failure.document["errorCode"] == "Lambda.FunctionError"
    assert "Function.ResponseSizeTooLarge" in outcome.failure.document["errorMessage"]


def error_code(outcome: Outcome) -> str | None:
    return outcome.failure.document["errorCode"] if outcome.failure else None


def assert_one_outcome_per_record(batch: ProcessedBatch, records: list[SourceRecord]) -> None:
    """Nothing lost on the way: one outcome for each record, in input order."""
    assert [o.record for o in batch.outcomes] == records


OK_DATA = base64.b64encode(b'{"id":1}\n').decode()


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"records": []}, "Lambda.MissingRecordId"),
        ({"nothing": 1}, "Lambda.MissingRecordId"),
        (None, "Lambda.MissingRecordId"),
        (
            {"records": [{"recordId": str(i), "result": "Ok", "data": OK_DATA} for i in range(3)]},
            "Lambda.DuplicatedRecordId",
        ),
    ],
)
def test_an_answer_with_another_record_count_fails_every_record(answer, code):
    records = source_records(b"a", b"b")
    batch = stage_for(FakeFunction(lambda e: answer)).process(records)
    assert len(batch.outcomes) == 2
    assert [error_code(o) for o in batch.outcomes] == [code, code]
    assert_one_outcome_per_record(batch, records)


def test_a_record_id_answered_twice_fails_that_record_and_the_one_left_out():
    def answer(event):
        ids = [r["recordId"] for r in event["records"]]
        return {
            "records": [
                {"recordId": ids[0], "result": "Ok", "data": OK_DATA},
                {"recordId": ids[0], "result": "Ok", "data": OK_DATA},
                {"recordId": ids[2], "result": "Ok", "data": OK_DATA},
            ]
        }

    records = source_records(b"a", b"b", b"c")
    batch = stage_for(FakeFunction(answer)).process(records)
    assert [error_code(o) for o in batch.outcomes] == [
        "Lambda.DuplicatedRecordId",
        "Lambda.MissingRecordId",
        None,
    ]
    assert batch.outcomes[0].failure.document["errorMessage"] == DUPLICATED_RECORD_ID
    assert base64.b64decode(batch.outcomes[0].failure.document["rawData"]) == b"a"
    assert batch.outcomes[2].data == b'{"id":1}\n'
    assert_one_outcome_per_record(batch, records)


def answer_second_record_with(item: dict[str, Any]):
    """A transform answering Ok for the first and third records and `item` for the second."""

    def answer(event):
        ids = [r["recordId"] for r in event["records"]]
        return {
            "records": [
                {"recordId": ids[0], "result": "Ok", "data": OK_DATA},
                {"recordId": ids[1], **item},
                {"recordId": ids[2], "result": "Ok", "data": OK_DATA},
            ]
        }

    return answer


@pytest.mark.parametrize("result", ["OK", "Failed", "", None])
def test_a_result_outside_the_contract_fails_the_record(result):
    # the data is valid: only the result makes the record a failure
    item = {"result": result, "data": OK_DATA} if result is not None else {"data": OK_DATA}
    records = source_records(b"a", b"b", b"c")
    batch = stage_for(FakeFunction(answer_second_record_with(item))).process(records)
    assert [error_code(o) for o in batch.outcomes] == [None, "Lambda.InvalidReturnFormat", None]
    assert repr(result) in batch.outcomes[1].failure.document["errorMessage"]
    assert_one_outcome_per_record(batch, records)


# "YWJj!" decodes to b"abc" when invalid characters are skipped: the check must be strict
@pytest.mark.parametrize("data", ["YWJj!", "not base64 at all", "YWJ", "é", 42])
def test_ok_data_that_is_not_base64_fails_the_record(data):
    records = source_records(b"a", b"b", b"c")
    answer = answer_second_record_with({"result": "Ok", "data": data})
    batch = stage_for(FakeFunction(answer)).process(records)
    assert [error_code(o) for o in batch.outcomes] == [None, "Lambda.InvalidReturnFormat", None]
    assert "base64" in batch.outcomes[1].failure.document["errorMessage"]
    assert base64.b64decode(batch.outcomes[1].failure.document["rawData"]) == b"b"
    assert_one_outcome_per_record(batch, records)


# ------------------------------------------------------------------ checkpoints


def test_a_checkpoint_of_re_created_streams_is_discarded(tmp_path):
    store = CheckpointStore(tmp_path)
    old = Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01", {"shardId-0": "42"})
    store.save(old, "ds")
    assert store.load(Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01"), "ds") == old
    fresh = Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-06-01")
    assert store.load(fresh, "ds").shards == {}
    assert [p.name for p in tmp_path.iterdir()] == ["ds.json"]  # no temporary file left


# ------------------------------------------------------------------ against the emulator

OBJECT = r"{name}-1-\d{{4}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-[0-9a-f-]{{36}}"


def beer_lines(ids, pad: int = 0) -> list[bytes]:
    return [
        (json.dumps({"id": i, "name": f"Beer {i}", "abv": 5.0, "pad": "x" * pad}) + "\n").encode()
        for i in ids
    ]


def raw_ids(stack) -> list[int]:
    ids = []
    for key in stack.keys("raw/"):
        ids += [json.loads(line)["id"] for line in gzip.decompress(stack.read(key)).splitlines()]
    return ids


def cleaned_table(stack) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(stack.read(k))) for k in stack.keys("cleaned/")]
    return pa.concat_tables(tables)


def error_lines(stack, prefix: str) -> list[dict[str, Any]]:
    lines = []
    for key in stack.keys(prefix):
        body = stack.read(key)
        body = gzip.decompress(body) if key.endswith(".gz") else body
        lines += [json.loads(line) for line in body.splitlines()]
    return lines


def runtime(stack, *names: str, **kwargs) -> FirehoseRuntime:
    """The runtime for the stack's delivery streams (or those whose Output names are given)."""
    outputs = {n: stack.outputs[n] for n in names} if names else stack.outputs
    return FirehoseRuntime.from_outputs(
        outputs, session=stack.session, state_dir=stack.state_dir, **kwargs
    )


@pytest.mark.emulator
def test_drain_delivers_raw_ndjson_and_cleaned_parquet_named_as_firehose_does(streaming_stack):
    stack = streaming_stack()
    stack.put(beer_lines(range(1, 41)))

    report = runtime(stack).drain()

    assert [s.read for s in report.streams] == [40, 40]
    raw_pattern = re.compile(
        r"raw/ingest_date=\d{4}-\d{2}-\d{2}/"
        + OBJECT.format(name=stack.outputs["RawDeliveryStreamName"])
        + r"\.gz"
    )
    cleaned_pattern = re.compile(
        r"cleaned/ingest_date=\d{4}-\d{2}-\d{2}/"
        + OBJECT.format(name=stack.outputs["CleanedDeliveryStreamName"])
    )
    assert all(raw_pattern.fullmatch(k) for k in stack.keys("raw/")), stack.keys("raw/")
    assert all(cleaned_pattern.fullmatch(k) for k in stack.keys("cleaned/")), stack.keys("")
    assert sorted(raw_ids(stack)) == list(range(1, 41))
    table = cleaned_table(stack)
    assert table.schema.names == [c.name for c in schema.CLEANED_COLUMNS]
    assert table.schema.field("ingested_at").type == pa.timestamp("ms")
    assert sorted(table.column("id").to_pylist()) == list(range(1, 41))
    assert stack.keys("errors/") == []


@pytest.mark.emulator
def test_malformed_records_reach_the_error_prefix_with_their_reason(streaming_stack):
    stack = streaming_stack()
    malformed = [
        b"not json at all\n",
        b'{"name": "no id"}\n',
        b'{"id": 3, "name": "x", "abv": "strong"}\n',
    ]
    stack.put([*beer_lines([1, 2]), *malformed, b"   \n"])

    report = runtime(stack).drain()

    cleaned = report.streams[1]
    assert (cleaned.delivered, cleaned.failed, cleaned.dropped) == (2, 3, 1)
    errors = error_lines(stack, "errors/cleaned/processing-failed/ingest_date=")
    assert sorted(base64.b64decode(e["rawData"]) for e in errors) == sorted(malformed)
    assert {e["errorCode"] for e in errors} == {"Lambda.ProcessingFailedStatus"}
    # as on AWS, the error records do not say why: the function's log does
    assert {e["errorMessage"] for e in errors} == {"ProcessingFailed status set for record"}
    assert all(e["lambdaArn"].endswith(stack.outputs["TransformFunctionName"]) for e in errors)
    assert len(raw_ids_or_none(stack)) == 6  # raw keeps everything as received
    function = stack.outputs["TransformFunctionName"]
    logged = [
        json.loads(event["message"])
        for event in stack.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{function}")[
            "events"
        ]
    ]
    refused = [entry for entry in logged if entry.get("result") == "ProcessingFailed"]
    assert [entry.get("beer_id") for entry in refused] == [None, None, 3]
    assert "malformed JSON" in refused[0]["reason"] and "id: missing" in refused[1]["reason"]
    assert "abv" in refused[2]["reason"]
    assert "abv" in logged_reasons(stack.client("logs"), function)[3]
    function_log = stack.state_dir / "logs" / f"{function}.log"
    assert "record not transformed" in function_log.read_text()  # also kept in a file


def raw_ids_or_none(stack) -> list[bytes]:
    lines = []
    for key in stack.keys("raw/"):
        lines += gzip.decompress(stack.read(key)).splitlines()
    return lines


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("handler", "error"),
    [
        ("no_such_module.handler", "Runtime.ImportModuleError: Unable to import module"),
        ("fixtures.streaming.no_such_handler", "Runtime.HandlerNotFound: Handler"),
    ],
)
def test_a_handler_that_cannot_be_loaded_fails_its_records_not_the_drain(
    streaming_stack, handler, error
):
    stack = streaming_stack(transform_handler=handler)
    stack.put(beer_lines([1, 2]))

    report = runtime(stack, "CleanedDeliveryStreamName").drain()

    assert report.streams[0].failed == 2
    errors = error_lines(stack, "errors/cleaned/processing-failed/")
    assert {e["errorCode"] for e in errors} == {"Lambda.FunctionError"}
    assert all(error in e["errorMessage"] for e in errors), errors[0]["errorMessage"]


@pytest.mark.emulator
def test_records_the_table_schema_rejects_go_to_format_conversion_failed(streaming_stack):
    stack = streaming_stack(transform_handler="fixtures.streaming.bad_json_handler")
    stack.put(beer_lines([1, 2]))

    runtime(stack, "CleanedDeliveryStreamName").drain()

    errors = error_lines(stack, "errors/cleaned/format-conversion-failed/")
    assert len(errors) == 2
    assert {e["lastErrorCode"] for e in errors} == {"DataFormatConversion.MalformedData"}
    assert all("'id'" in e["lastErrorMessage"] for e in errors)
    assert errors[0]["dataCatalogTable"]["tableName"] == "cleaned"
    assert stack.keys("cleaned/") == []


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("handler", "code", "attempts"),
    [
        ("fixtures.streaming.raising_handler", "Lambda.FunctionError", 4),
        ("fixtures.streaming.short_answer_handler", "Lambda.MissingRecordId", 1),
    ],
)
def test_a_failed_invocation_sends_the_whole_batch_to_the_errors(
    streaming_stack, handler, code, attempts
):
    stack = streaming_stack(transform_handler=handler)
    stack.put(beer_lines([1, 2, 3]))

    runtime(stack, "CleanedDeliveryStreamName").drain()

    errors = error_lines(stack, "errors/cleaned/processing-failed/")
    assert len(errors) == 3
    assert {(e["errorCode"], e["attemptsMade"]) for e in errors} == {(code, attempts)}
    assert stack.keys("cleaned/") == []


@pytest.mark.emulator
def test_the_handler_runs_with_the_function_environment_and_a_lambda_context(streaming_stack):
    stack = streaming_stack(
        transform_handler="fixtures.streaming.environment_echo_handler",
        lambda_arn_qualifier=":$LATEST",
    )
    stack.put(beer_lines([1]))

    runtime(stack, "CleanedDeliveryStreamName").drain()

    names = cleaned_table(stack).column("name").to_pylist()
    assert names == [f"{stack.outputs['TransformFunctionName']}:brewops-transform"]


@pytest.mark.emulator
def test_the_buffer_size_splits_delivery_into_objects(streaming_stack):
    stack = streaming_stack(raw_buffer_mib=1)
    stack.put(beer_lines(range(26), pad=100_000))  # about 2.6 MB

    report = runtime(stack, "RawDeliveryStreamName").drain()

    sizes = [len(gzip.decompress(stack.read(k))) for k in stack.keys("raw/")]
    assert len(sizes) == report.streams[0].flushes == 3
    assert max(sizes) <= 1024 * 1024
    assert sum(sizes) == sum(len(line) for line in beer_lines(range(26), pad=100_000))


@pytest.mark.emulator
def test_the_buffer_interval_delivers_what_has_waited_long_enough(streaming_stack):
    stack = streaming_stack()
    now = [0.0]
    stream = runtime(stack, "RawDeliveryStreamName", clock=lambda: now[0]).streams[0]
    stack.put(beer_lines(range(5)))

    stream.poll()
    now[0] = 59.0
    stream.tick()
    assert stack.keys("raw/") == []  # far below 64 MiB, and not yet 60 s

    now[0] = 60.0
    stream.tick()
    assert len(stack.keys("raw/")) == 1
    assert sorted(raw_ids(stack)) == list(range(5))


@pytest.mark.emulator
def test_a_continuous_run_delivers_what_it_read_when_stopped(streaming_stack):
    stack = streaming_stack()
    continuous = runtime(stack)
    stack.put(beer_lines(range(1, 6)))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()

    report = continuous.run(stop, poll_seconds=0.05)

    assert [s.read for s in report.streams] == [5, 5]
    assert sorted(raw_ids(stack)) == [1, 2, 3, 4, 5]
    assert sorted(cleaned_table(stack).column("id").to_pylist()) == [1, 2, 3, 4, 5]


@pytest.mark.emulator
def test_draining_twice_delivers_new_records_once(streaming_stack):
    stack = streaming_stack()
    stack.put(beer_lines(range(1, 11)))
    runtime(stack).drain()
    stack.put(beer_lines(range(11, 21)))

    runtime(stack).drain()
    runtime(stack).drain()

    assert sorted(raw_ids(stack)) == list(range(1, 21))
    assert sorted(cleaned_table(stack).column("id").to_pylist()) == list(range(1, 21))


class FailingPuts:
    """An S3 client whose `fail_at`-th put_object raises, as if the process died there."""

    def __init__(self, client, fail_at: int):
        self.client, self.fail_at, self.puts = client, fail_at, 0

    def put_object(self, **kwargs):
        self.puts += 1
        if self.puts == self.fail_at:
            raise RuntimeError("killed")
        return self.client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.emulator
def test_a_run_killed_between_flushes_loses_and_duplicates_nothing(streaming_stack):
    stack = streaming_stack(raw_buffer_mib=1)
    lines = beer_lines(range(30), pad=100_000)
    stack.put(lines)
    crashed = runtime(stack, "RawDeliveryStreamName")
    crashed.streams[0].s3 = FailingPuts(crashed.streams[0].s3, fail_at=2)

    with pytest.raises(RuntimeError, match="killed"):
        crashed.drain()
    assert len(stack.keys("raw/")) == 1

    runtime(stack, "RawDeliveryStreamName").drain()

    assert sorted(raw_ids(stack)) == list(range(30))


class CommitFails:
    """A checkpoint store that dies right after the first S3 write, before the commit."""

    def __init__(self, store):
        self.store, self.failed = store, False

    def save(self, checkpoint, name):
        if checkpoint.pending is None and not self.failed and checkpoint.shards:
            self.failed = True
            raise RuntimeError("killed before the commit")
        self.store.save(checkpoint, name)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.mark.emulator
def test_a_run_killed_after_writing_but_before_committing_replays_onto_the_same_keys(
    streaming_stack,
):
    stack = streaming_stack()
    stack.put(beer_lines(range(5)))
    crashed = runtime(stack, "RawDeliveryStreamName")
    crashed.streams[0].store = CommitFails(crashed.streams[0].store)

    with pytest.raises(RuntimeError, match="before the commit"):
        crashed.drain()
    written = stack.keys("raw/")
    assert len(written) == 1
    # more records arrive before the restart: a fresh flush would cut elsewhere
    stack.put(beer_lines(range(5, 10)))

    report = runtime(stack, "RawDeliveryStreamName").drain()

    assert sorted(raw_ids(stack)) == list(range(10))  # the first five once, not twice
    assert set(written) < set(stack.keys("raw/"))  # the replay overwrote its own object
    assert report.streams[0].delivered == 10


@pytest.mark.emulator
def test_a_runtime_overtaken_by_another_refuses_to_deliver_the_same_records_again(
    streaming_stack,
):
    from brewops.firehose_runtime.runtime import DeliveryOvertaken

    stack = streaming_stack()
    stack.put(beer_lines(range(1, 11)))
    running = runtime(stack, "RawDeliveryStreamName")  # a `stream run` started earlier
    running.streams[0].poll()  # it has read (and buffered) ids 1-10
    stack.put(beer_lines(range(11, 21)))

    runtime(stack, "RawDeliveryStreamName").drain()  # a drain elsewhere delivers 1-20

    with pytest.raises(DeliveryOvertaken, match="nothing is delivered twice"):
        running.drain()
    assert sorted(raw_ids(stack)) == list(range(1, 21)), "each record once"


@pytest.mark.emulator
def test_a_checkpoint_left_by_earlier_streams_is_no_overtaking(streaming_stack):
    stack = streaming_stack()
    name = stack.outputs["RawDeliveryStreamName"]
    stale = Checkpoint("arn:old", "2024-01-01", "arn:old-stream", "2024-01-01", {"shard": "9"})
    CheckpointStore(stack.state_dir / "firehose").save(stale, name)  # an earlier emulator's
    stack.put(beer_lines(range(1, 6)))

    runtime(stack, "RawDeliveryStreamName").drain()

    assert sorted(raw_ids(stack)) == list(range(1, 6))


def _local_function(handler: str, **kwargs) -> LocalFunction:
    configuration = {"FunctionName": "f", "FunctionArn": FUNCTION_ARN, "Handler": handler}
    return LocalFunction(configuration, **kwargs)


def test_a_module_that_fails_on_import_is_an_import_error_not_a_missing_handler(
    tmp_path, monkeypatch
):
    (tmp_path / "breaks_on_import.py").write_text("import os\nos.no_such_attribute\n")
    (tmp_path / "has_no_handler.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    broken = _local_function("breaks_on_import.handler").invoke({})
    missing = _local_function("has_no_handler.handler").invoke({})
    malformed = _local_function("nodots").invoke({})

    assert broken.error.startswith("Runtime.ImportModuleError: Unable to import module")
    assert "no_such_attribute" in broken.error
    assert missing.error == (
        "Runtime.HandlerNotFound: Handler 'handler' missing on module 'has_no_handler'"
    )
    assert malformed.error.startswith("Runtime.MalformedHandlerName")


class _FlakyLogs:
    """A CloudWatch Logs client whose first CreateLogStream fails."""

    class exceptions:  # the shape of a boto3 client's
        class ResourceAlreadyExistsException(Exception):
            pass

    def __init__(self):
        self.streams: set[str] = set()
        self.events: list[str] = []
        self.failures = 1

    def create_log_group(self, logGroupName):
        pass

    def create_log_stream(self, logGroupName, logStreamName):
        if self.failures:
            self.failures -= 1
            raise TimeoutError("read timeout")
        self.streams.add(logStreamName)

    def put_log_events(self, logGroupName, logStreamName, logEvents):
        assert logStreamName in self.streams, "no such log stream"
        self.events += [event["message"] for event in logEvents]


def test_a_log_stream_that_failed_to_be_created_is_created_on_the_next_call(tmp_path, monkeypatch):
    (tmp_path / "prints.py").write_text(
        "def handler(event, context):\n    print('line', event['n'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    logs = _FlakyLogs()
    function = _local_function("prints.handler", logs_client=logs)

    for n in range(3):
        function.invoke({"n": n})

    assert logs.events == ["line 1", "line 2"], "only the first call's lines are lost"


@pytest.mark.emulator
def test_a_delivery_stream_reads_the_stream_from_when_it_was_created(streaming_stack):
    stack = streaming_stack()
    stack.put(beer_lines(range(1, 6)))  # in the stream before the new delivery stream exists
    firehose = stack.client("firehose")
    raw = firehose.describe_delivery_stream(
        DeliveryStreamName=stack.outputs["RawDeliveryStreamName"]
    )["DeliveryStreamDescription"]
    source = raw["Source"]["KinesisStreamSourceDescription"]
    firehose.create_delivery_stream(
        DeliveryStreamName="late-raw",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={
            "KinesisStreamARN": source["KinesisStreamARN"],
            "RoleARN": source["RoleARN"],
        },
        ExtendedS3DestinationConfiguration={
            "RoleARN": source["RoleARN"],
            "BucketARN": f"arn:aws:s3:::{stack.outputs['BucketName']}",
            "Prefix": "late/",
            "ErrorOutputPrefix": "late-errors/!{firehose:error-output-type}/",
            "CompressionFormat": "GZIP",
        },
    )
    stack.put(beer_lines(range(6, 9)))

    report = FirehoseRuntime(["late-raw"], session=stack.session, state_dir=stack.state_dir).drain()

    assert report.streams[0].delivered == 3, "only what arrived after it was created"
    ids = [
        json.loads(line)["id"]
        for key in stack.keys("late/")
        for line in gzip.decompress(stack.read(key)).splitlines()
    ]
    assert sorted(ids) == [6, 7, 8]


def test_a_call_that_runs_past_the_timeout_fails_and_its_answer_is_thrown_away(
    tmp_path, monkeypatch
):
    (tmp_path / "slow_handler.py").write_text(
        "import time\n\ndef handler(event, context):\n    time.sleep(1.1)\n    return event\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    log_file = tmp_path / "logs" / "f.log"

    slow = _local_function("slow_handler.handler", log_dir=log_file.parent)
    slow.configuration["Timeout"] = 1
    timed_out = slow.invoke({"records": []})
    slow.configuration["Timeout"] = 2
    in_time = slow.invoke({"records": []})

    assert timed_out.failed and timed_out.result is None
    assert timed_out.error.startswith(
        f"Sandbox.Timedout: RequestId: {timed_out.request_id} Error: Task timed out after 1.00 "
    )
    assert f"{timed_out.request_id} Task timed out after" in log_file.read_text()
    assert not in_time.failed and in_time.result == {"records": []}


def test_functions_called_from_two_threads_each_see_their_own_environment_and_logs(
    tmp_path, monkeypatch
):
    # the scheduler's producer runs in a thread beside the Firehose transform
    (tmp_path / "who_handler.py").write_text(
        "import os, time\n\n"
        "def handler(event, context):\n"
        "    print('start', os.environ['WHO'])\n"
        "    time.sleep(0.3)\n"
        "    print('end', os.environ['WHO'])\n"
        "    return os.environ['WHO']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    functions = {
        who: _local_function(
            "who_handler.handler", environment={"WHO": who}, log_dir=tmp_path / "logs"
        )
        for who in ("producer", "transform")
    }
    results: dict[str, Invocation] = {}

    def call(who: str) -> None:
        results[who] = functions[who].invoke({})

    threads = [threading.Thread(target=call, args=(who,)) for who in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {who: invocation.result for who, invocation in results.items()} == {
        "producer": "producer",
        "transform": "transform",
    }
    lines = (tmp_path / "logs" / "f.log").read_text().splitlines()
    first, second = lines[0].split()[1], lines[2].split()[1]
    assert lines == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]
