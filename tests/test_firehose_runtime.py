"""The local Firehose runtime: prefixes and object names, the configuration it reads back,
the Lambda contract, the Parquet conversion, buffering, and restarts that neither lose nor
duplicate a record."""

from __future__ import annotations

import base64
import contextlib
import gzip
import importlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from brewops import schema
from brewops.environ import forget_function_environments
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
    LAMBDA_PAYLOAD_LIMIT,
    LambdaStage,
    Outcome,
    ProcessedBatch,
    SourceRecord,
    event_bytes,
    event_record_bytes,
    firehose_event,
    firehose_record_id,
)
from brewops.reconcile import logged_reasons
from fixtures.commands import run_in_group

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
        ("y", "2024"),
        ("HH''mm", "09'05"),  # '' outside quotes is a quote too
        ("SSSSSSSSS", "321000000"),  # nanoseconds
        ("MMMMM EEEEE cccc", "M T Thursday"),  # narrow, narrow, full
        ("G GGGG", "AD Anno Domini"),
        ("X Z O", "Z +0000 GMT"),  # the instant is UTC
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
    "prefix",
    [
        "a/!{timestamp:yyyy-MM-dd[}/",
        "a/!{timestamp:yyyy#}/",
        "a/!{timestamp:yyyy'}/",  # an unterminated quote
        "a/!{timestamp:w}/",  # a field this runtime cannot evaluate
        "a/!{partitionKeyFromQuery:id}/",
        "a/!{what:x}/",
    ],
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


def _lambda_processing(*parameters: tuple[str, str]) -> dict[str, Any]:
    return {
        "Enabled": True,
        "Processors": [
            {
                "Type": "Lambda",
                "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": FUNCTION_ARN},
                    *({"ParameterName": n, "ParameterValue": v} for n, v in parameters),
                ],
            }
        ],
    }


def _conversion(**overrides: Any) -> dict[str, Any]:
    configuration = {
        "SchemaConfiguration": {"DatabaseName": "db", "TableName": "cleaned"},
        "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
    }
    return {**configuration, **overrides}


def test_what_is_not_configured_takes_the_firehose_defaults():
    config = DeliveryStreamConfig.from_description(
        {
            **description(
                BufferingHints=None,
                CompressionFormat=None,
                ProcessingConfiguration=_lambda_processing(),
            ),
            "VersionId": None,
        }
    )
    # destination buffer 5 MiB / 300 s; Lambda processor 1 MB / 60 s, 3 retries
    assert (config.buffer_bytes, config.interval_seconds) == (5 * 1024 * 1024, 300)
    assert (config.compression, config.extension, config.version_id) == ("UNCOMPRESSED", "", "1")
    processor = config.processor
    assert (processor.buffer_bytes, processor.interval_seconds, processor.retries) == (
        1024 * 1024,
        60,
        3,
    )


def test_configured_buffering_and_retries_are_honoured_including_zero():
    config = DeliveryStreamConfig.from_description(
        description(
            BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0},  # zero buffering
            ProcessingConfiguration=_lambda_processing(
                ("NumberOfRetries", "0"),
                ("BufferSizeInMBs", "0.25"),
                ("BufferIntervalInSeconds", "900"),
            ),
        )
    )
    assert (config.buffer_bytes, config.interval_seconds) == (1024 * 1024, 0)
    processor = config.processor
    assert (processor.buffer_bytes, processor.interval_seconds, processor.retries) == (
        1024 * 1024 // 4,
        900,
        0,
    )


def test_processing_that_is_disabled_or_only_appends_a_delimiter_runs_no_lambda():
    disabled = DeliveryStreamConfig.from_description(
        description(ProcessingConfiguration={**PROCESSING, "Enabled": False})
    )
    assert (disabled.processor, disabled.append_delimiter) == (None, False)
    delimited = DeliveryStreamConfig.from_description(
        description(
            ProcessingConfiguration={
                "Enabled": True,
                "Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": []}],
            }
        )
    )
    assert (delimited.processor, delimited.append_delimiter) == (None, True)


def test_a_format_conversion_that_is_disabled_converts_nothing():
    config = DeliveryStreamConfig.from_description(
        description(DataFormatConversionConfiguration={**_conversion(), "Enabled": False})
    )
    assert config.conversion is None


VERSIONED_SCHEMA = {
    "DatabaseName": "db",
    "TableName": "cleaned",
    "VersionId": "3",
    "CatalogId": "123456789012",
    "Region": "eu-west-1",
    "RoleARN": "arn:aws:iam::1:role/glue",
}


def test_the_conversion_settings_are_read_from_the_description():
    config = DeliveryStreamConfig.from_description(
        description(
            FileExtension=".parquet",
            DataFormatConversionConfiguration=_conversion(  # no "Enabled": on, as on AWS
                SchemaConfiguration=VERSIONED_SCHEMA,
                InputFormatConfiguration={
                    "Deserializer": {"HiveJsonSerDe": {"TimestampFormats": ["millis"]}}
                },
                OutputFormatConfiguration={"Serializer": {"ParquetSerDe": {"Compression": "gzip"}}},
            ),
        )
    )
    conversion = config.conversion
    assert (conversion.table_version, conversion.catalog_id) == ("3", "123456789012")
    assert (conversion.region, conversion.role_arn) == ("eu-west-1", "arn:aws:iam::1:role/glue")
    assert (conversion.compression, conversion.timestamp_formats) == ("GZIP", ("millis",))
    assert config.extension == ".parquet"  # a configured FileExtension wins
    assert config.error_prefix == "errors/cleaned/!{firehose:error-output-type}/"


@pytest.mark.parametrize(
    "changes",
    [
        {"Source": None},  # a Direct PUT delivery stream
        {"Destinations": [{"DestinationId": "d", "RedshiftDestinationDescription": {}}]},
        {"DynamicPartitioningConfiguration": {"Enabled": True}},
        {"CustomTimeZone": "Asia/Tokyo"},  # prefixes and names in another zone's day and hour
        {"S3BackupMode": "Enabled"},  # a copy of the source records in another bucket
        {"ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Decompression"}]}},
        {"CompressionFormat": "GZIP", "DataFormatConversionConfiguration": _conversion()},
        {
            "DataFormatConversionConfiguration": _conversion(
                OutputFormatConfiguration={"Serializer": {"OrcSerDe": {}}}
            )
        },
        {
            "DataFormatConversionConfiguration": _conversion(
                InputFormatConfiguration={"Deserializer": {"OpenXJsonSerDe": {}}}
            )
        },
    ],
)
def test_each_feature_the_runtime_lacks_is_refused(changes):
    stream = {k: v for k, v in changes.items() if k in ("Source", "Destinations")}
    answer = {**description(**{k: v for k, v in changes.items() if k not in stream}), **stream}
    with pytest.raises(UnsupportedConfiguration):
        DeliveryStreamConfig.from_description(answer)


@pytest.mark.parametrize("time_zone", ["UTC", ""])  # the API takes "" for its default, UTC
def test_the_defaults_of_what_the_runtime_lacks_are_accepted(time_zone):
    stream = description(CustomTimeZone=time_zone, S3BackupMode="Disabled")
    assert DeliveryStreamConfig.from_description(stream).prefix.startswith("cleaned/")


def test_a_custom_time_zone_is_refused_naming_the_zone():
    with pytest.raises(UnsupportedConfiguration, match="CustomTimeZone Asia/Tokyo"):
        DeliveryStreamConfig.from_description(description(CustomTimeZone="Asia/Tokyo"))


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


# past the calendar; not a number; "millis" names the epoch format, it is no pattern
@pytest.mark.parametrize("value", [b"1e20", b"true", b'"millis"'])
def test_hive_json_refuses_epoch_millis_it_cannot_read(value):
    from brewops.firehose_runtime.conversion import arrow_schema

    millis = HiveJsonDeserializer(
        arrow_schema(schema.glue_columns()), timestamp_formats=("millis",)
    )
    with pytest.raises(ConversionError) as failure:
        millis.rows(b'{"id": 1, "name": "x", "ingested_at": %s}' % value)
    assert failure.value.code == "DataFormatConversion.MalformedData"


@pytest.mark.parametrize(
    ("glue_type", "arrow"),
    [
        ("tinyint", pa.int8()),
        ("smallint", pa.int16()),
        ("int", pa.int32()),
        ("integer", pa.int32()),
        ("float", pa.float32()),
        ("boolean", pa.bool_()),
        ("date", pa.date32()),
        ("binary", pa.binary()),
        ("char(3)", pa.string()),
        ("decimal", pa.decimal128(10, 0)),  # Hive's default precision and scale
        ("decimal(15)", pa.decimal128(15, 0)),  # a precision alone: scale 0
        (
            "struct<Price:decimal(5,2),tags:array<string>>",
            pa.struct([("price", pa.decimal128(5, 2)), ("tags", pa.list_(pa.string()))]),
        ),
    ],
)
def test_every_hive_type_keeps_its_width_in_parquet(glue_type, arrow):
    assert arrow_type(glue_type) == arrow


@pytest.mark.parametrize("glue_type", ["uniontype<int,string>", "interval", "struct<a:int"])
def test_a_glue_type_without_an_arrow_type_is_an_error(glue_type):
    with pytest.raises(ValueError, match="unsupported Glue type"):
        arrow_type(glue_type)


def _deserializer(*columns: tuple[str, str], formats: tuple[str, ...] = ()) -> HiveJsonDeserializer:
    from brewops.firehose_runtime.conversion import arrow_schema

    schema_ = arrow_schema([{"Name": name, "Type": kind} for name, kind in columns])
    return HiveJsonDeserializer(schema_, formats)


def test_column_names_are_lower_case_as_glue_stores_them():
    from brewops.firehose_runtime.conversion import arrow_schema

    assert arrow_schema([{"Name": "BeerId", "Type": "bigint"}]).names == ["beerid"]


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("int", 2**31 - 1, 2**31 - 1),
        ("int", -(2**31), -(2**31)),
        ("int", 7.0, 7),
        ("tinyint", -128, -128),
        ("boolean", "TRUE", True),
        ("boolean", "false", False),
        ("smallint", -(2**15), -(2**15)),
        ("decimal(5,2)", 1.234, Decimal("1.23")),
        ("decimal(5,2)", -999.99, Decimal("-999.99")),  # the widest decimal(5,2) holds
        # a tie rounds away from zero, as Hive's decimals do (Python's default is to even)
        ("decimal(5,2)", "12.345", Decimal("12.35")),
        ("decimal(5,2)", -12.345, Decimal("-12.35")),
        ("decimal(3,0)", 2.5, Decimal("3")),
        ("map<int,string>", {"1": "a"}, [(1, "a")]),  # JSON keys are text: read as the type
        ("map<string,int>", {"a": 2}, [("a", 2)]),
        ("date", "2024-03-07", date(2024, 3, 7)),
        ("string", {"b": [1, 2]}, '{"b":[1,2]}'),  # nested JSON is kept as JSON text
        ("struct<Value:double>", {"VALUE": 1}, {"value": 1.0}),
        ("array<int>", [1, 2], [1, 2]),
    ],
)
def test_hive_json_turns_json_values_into_the_column_type(kind, value, expected):
    [row] = _deserializer(("c", kind)).rows(json.dumps({"c": value}).encode())
    assert row["c"] == expected and type(row["c"]) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", 2**31),  # one past the 32-bit range
        ("tinyint", 128),
        ("smallint", 2**15),
        ("bigint", 2**63),
        ("bigint", 2.5),
        ("bigint", True),
        ("double", True),
        ("double", [1.0]),
        ("boolean", "yes"),
        ("timestamp", 1709802304321),  # epoch millis only with the "millis" format
        ("array<int>", 1),
        ("array<string>", "ab"),  # a string is not a list of its characters
        ("struct<value:double>", [1]),
        ("map<string,int>", [1]),
        ("decimal(5,2)", "abc"),
        ("decimal(5,2)", 1e30),  # more digits than the decimal context holds
        ("date", "7 March"),
        # what Python reads as a number or a date, and Java does not
        ("bigint", "1_000"),
        ("double", "4_5"),
        ("decimal(5,2)", "1_0"),
        ("map<int,string>", {"1_0": "a"}),
        ("date", 20240307),
        ("date", "20240307"),
        ("date", "2024-W10-4"),
        ("binary", 10**9),  # not a gigabyte of zero bytes
        ("binary", [1, 2]),
        # a number as JSON text, which the SerDe does not read into a number column
        ("int", "7"),
        ("bigint", " 7 "),
        ("double", "4.5"),
        ("float", "NaN"),
        ("array<int>", [1, "2"]),
        ("map<string,int>", {"a": "2"}),
        ("struct<value:double>", {"value": "1.5"}),
    ],
)
def test_hive_json_fails_a_value_its_column_cannot_hold(kind, value):
    with pytest.raises(ConversionError) as failure:
        _deserializer(("c", kind)).rows(json.dumps({"c": value}).encode())
    assert failure.value.code == "DataFormatConversion.MalformedData"


@pytest.mark.parametrize(
    "data",
    [
        b"   \n",
        b"[1, 2]\n",
        b'{"c": 1} [1, 2]',
        b'"text"',
        b"\xff\xfe",
        b'{"c": NaN}',  # Python reads these constants; they are not JSON
        b'{"c": -Infinity}',
    ],
)
def test_a_record_that_is_not_json_objects_is_a_parse_error(data):
    with pytest.raises(ConversionError) as failure:
        _deserializer(("c", "int")).rows(data)
    assert failure.value.code == "DataFormatConversion.ParseError"


def test_a_record_of_several_json_objects_becomes_several_rows():
    rows = _deserializer(("c", "int")).rows(b'{"c": 1} {"c": 2}\n{"c": 3}')
    assert [row["c"] for row in rows] == [1, 2, 3]


def test_timestamps_are_read_with_the_configured_formats_and_kept_in_utc():
    deserializer = _deserializer(
        ("t", "timestamp"),
        formats=("millis", "yyyy-MM-dd'T'HH:mm:ssZ", "dd/MM/yyyy HH:mm:ssZZ"),
    )
    expected = datetime(2024, 3, 7, 9, 5, 4)
    values = [
        1709802304000,
        "2024-03-07T11:05:04+0200",
        "07/03/2024 04:05:04-05:00",
        "2024-03-07 09:05:04",  # java.sql.Timestamp's form is always understood
        " 2024-03-07 09:05:04 ",  # and trimmed, as Timestamp.valueOf does
        "2024-03-07 09:05:04.5",
        1709802304500,
    ]
    rows = [deserializer.rows(json.dumps({"t": v}).encode())[0]["t"] for v in values]
    assert rows == [expected] * 5 + [expected.replace(microsecond=500000)] * 2


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("yyyy-MM-dd'T'HH:mm:ss'Z'", "2024-03-07T09:05:04Z"),  # 'Z' is the letter, not a zone
        ("'day' dd/MM/yyyy 'at' HH:mm:ss", "day 07/03/2024 at 09:05:04"),
        ("yyyy-MM-dd HH:mm:ss '(100%)'", "2024-03-07 09:05:04 (100%)"),
        ("yyyy-MM-dd HH:mm:ss %", "2024-03-07 09:05:04 %"),  # unquoted, still no directive
        ("yyyy-MM-dd HH:mm:ss'h''s'", "2024-03-07 09:05:04h's"),  # '' is a quote
        ("yyyy-MM-dd''HH:mm:ss", "2024-03-07'09:05:04"),  # outside quoted text too
    ],
)
def test_quoted_text_in_a_timestamp_format_is_literal(pattern, value):
    [row] = _deserializer(("t", "timestamp"), formats=(pattern,)).rows(
        json.dumps({"t": value}).encode()
    )
    assert row["t"] == datetime(2024, 3, 7, 9, 5, 4)


@pytest.mark.parametrize(
    ("compression", "codec"),
    [("GZIP", "GZIP"), ("gzip", "GZIP"), ("UNCOMPRESSED", "UNCOMPRESSED"), ("SNAPPY", "SNAPPY")],
)
def test_parquet_is_written_with_the_configured_codec_and_the_table_types(compression, codec):
    from brewops.firehose_runtime.conversion import ParquetBuffer, arrow_schema

    table_schema = arrow_schema(
        [{"Name": "id", "Type": "int"}, {"Name": "at", "Type": "timestamp"}]
    )
    parquet = ParquetBuffer(table_schema, compression)
    parquet.add({"id": 1, "at": datetime(2024, 3, 7, 9, 5, 4)})
    parquet.add({"id": None, "at": None})

    written = pq.ParquetFile(io.BytesIO(parquet.to_bytes()))
    assert written.metadata.row_group(0).column(0).compression == codec
    table = written.read()
    assert table.schema.types == [pa.int32(), pa.timestamp("ms")]
    assert table.column("id").to_pylist() == [1, None]


# Glue type -> (Parquet physical type, logical type) as Athena reads it into that type.
# Timestamps are INT64 milliseconds, not adjusted to UTC: Athena's timestamp is
# millisecond-precise and zone-less (Firehose itself writes INT96, which Athena also reads).
ATHENA_PARQUET_TYPES = {
    "tinyint": ("INT32", {"Type": "Int", "bitWidth": 8, "isSigned": True}),
    "smallint": ("INT32", {"Type": "Int", "bitWidth": 16, "isSigned": True}),
    "int": ("INT32", {"Type": "None"}),
    "bigint": ("INT64", {"Type": "None"}),
    "float": ("FLOAT", {"Type": "None"}),
    "double": ("DOUBLE", {"Type": "None"}),
    "decimal(10,2)": ("FIXED_LEN_BYTE_ARRAY", {"Type": "Decimal", "precision": 10, "scale": 2}),
    "boolean": ("BOOLEAN", {"Type": "None"}),
    "string": ("BYTE_ARRAY", {"Type": "String"}),
    "varchar(10)": ("BYTE_ARRAY", {"Type": "String"}),
    "date": ("INT32", {"Type": "Date"}),
    "timestamp": (
        "INT64",
        {"Type": "Timestamp", "isAdjustedToUTC": False, "timeUnit": "milliseconds"},
    ),
    "binary": ("BYTE_ARRAY", {"Type": "None"}),
}


def test_parquet_columns_have_the_physical_and_logical_types_athena_reads_as_the_glue_types():
    from brewops.firehose_runtime.conversion import ParquetBuffer, arrow_schema

    glue_columns = [{"Name": f"C_{i}", "Type": kind} for i, kind in enumerate(ATHENA_PARQUET_TYPES)]
    parquet = ParquetBuffer(arrow_schema(glue_columns), "SNAPPY")
    parquet.add(dict.fromkeys(f"c_{i}" for i in range(len(glue_columns))))

    written = pq.ParquetFile(io.BytesIO(parquet.to_bytes())).schema
    found = {}
    for i in range(len(written)):
        column = written.column(i)
        logical = json.loads(column.logical_type.to_json())
        logical.pop("is_from_converted_type", None)
        logical.pop("force_set_converted_type", None)
        found[column.path] = (column.physical_type, logical)
    # column names in lower case, as Glue keeps them and Athena matches them
    assert found == {f"c_{i}": types for i, types in enumerate(ATHENA_PARQUET_TYPES.values())}


def test_the_schema_is_read_at_the_configured_table_version_and_catalog():
    from brewops.firehose_runtime.conversion import read_table_schema

    columns = {"LATEST": [{"Name": "id", "Type": "bigint"}], "3": [{"Name": "id", "Type": "int"}]}

    class Glue:
        def __init__(self):
            self.calls: list[tuple[str, dict[str, Any]]] = []

        def get_table(self, **request):
            self.calls.append(("get_table", request))
            return {"Table": {"StorageDescriptor": {"Columns": columns["LATEST"]}}}

        def get_table_version(self, **request):
            self.calls.append(("get_table_version", request))
            table = {"StorageDescriptor": {"Columns": columns[request["VersionId"]]}}
            return {"TableVersion": {"Table": table}}

    versioned = DeliveryStreamConfig.from_description(
        description(
            DataFormatConversionConfiguration=_conversion(
                SchemaConfiguration={
                    "DatabaseName": "db",
                    "TableName": "cleaned",
                    "VersionId": "3",
                    "CatalogId": "123456789012",
                }
            )
        )
    ).conversion
    glue = Glue()
    assert read_table_schema(glue, versioned).types == [pa.int32()]
    assert glue.calls == [
        (
            "get_table_version",
            {
                "DatabaseName": "db",
                "TableName": "cleaned",
                "VersionId": "3",
                "CatalogId": "123456789012",
            },
        )
    ]
    for version in ({}, {"VersionId": "latest"}):  # LATEST is not case-sensitive
        schema_configuration = {"DatabaseName": "db", "TableName": "cleaned", **version}
        latest = DeliveryStreamConfig.from_description(
            description(
                DataFormatConversionConfiguration=_conversion(
                    SchemaConfiguration=schema_configuration
                )
            )
        ).conversion
        assert read_table_schema(Glue(), latest).types == [pa.int64()]


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
    fixture = json.loads((EVENTS / "firehose_kinesis_transform.json").read_text(encoding="utf-8"))
    assert set(event) == set(fixture)
    assert set(event["records"][0]) == set(fixture["records"][0])
    assert set(event["records"][0]["kinesisRecordMetadata"]) == set(
        fixture["records"][0]["kinesisRecordMetadata"]
    )
    assert base64.b64decode(event["records"][0]["data"]) == b'{"id": 1}\n'
    assert event["deliveryStreamArn"] == ARN
    assert event["sourceKinesisStreamArn"] == "arn:aws:kinesis:eu-west-1:123456789012:stream/beers"
    assert event["region"] == "eu-west-1"
    assert uuid.UUID(event["invocationId"])
    assert event["records"][0]["recordId"] == "1" + "0" * 12  # sequence number, position
    assert event["records"][0]["approximateArrivalTimestamp"] == 1714566600000
    assert event["records"][0]["kinesisRecordMetadata"] == {
        "shardId": "shardId-000000000000",
        "partitionKey": "0",
        "approximateArrivalTimestamp": 1714566600000,
        "sequenceNumber": "1",
        "subsequenceNumber": "",
    }


def test_records_of_two_shards_with_the_same_sequence_number_get_their_own_ids():
    # sequence numbers are unique per shard only: the emulator numbers each shard from 1
    records = [
        SourceRecord("shardId-000000000000", "1", "a", b"a", 1714566600000),
        SourceRecord("shardId-000000000001", "1", "b", b"b", 1714566600000),
    ]
    function = FakeFunction(
        lambda e: {
            "records": [
                {"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in e["records"]
            ]
        }
    )
    outcomes = stage_for(function).process(records).outcomes
    assert [o.data for o in outcomes] == [b"a", b"b"]


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


def answer_of_size(size: int):
    """A transform answering Ok for its one record in exactly `size` bytes of JSON."""

    def answer(event):
        item = {"recordId": event["records"][0]["recordId"], "result": "Ok", "data": ""}
        room = size - len(json.dumps({"records": [{**item, "padding": ""}]}).encode())
        data = "A" * (room - room % 4)  # valid base64 needs whole groups of four
        return {"records": [{**item, "data": data, "padding": " " * (room % 4)}]}

    return answer


@pytest.mark.parametrize(("over", "attempts"), [(0, 1), (1, 4)])
def test_an_answer_exactly_at_the_lambda_payload_limit_is_accepted(over, attempts):
    function = FakeFunction(answer_of_size(6 * 1024 * 1024 + over))  # Lambda's 6 MB
    batch = stage_for(function).process(source_records(b"a"))
    assert (len(function.events), batch.attempts) == (attempts, attempts)
    assert error_code(batch.outcomes[0]) == (None if not over else "Lambda.FunctionError")


class FailsThenAnswers(FakeFunction):
    """A function whose first call raises; the retry answers."""

    def invoke(self, event):
        invocation = super().invoke(event)
        if len(self.events) == 1:
            invocation.result, invocation.error = None, "RuntimeError: cold start"
        return invocation


def test_a_record_failed_by_the_answer_to_a_retry_counts_every_attempt():
    answer = answer_second_record_with({"result": "ProcessingFailed", "data": ""})
    batch = stage_for(FailsThenAnswers(answer)).process(source_records(b"a", b"b", b"c"))
    assert batch.attempts == 2
    assert error_code(batch.outcomes[1]) == "Lambda.ProcessingFailedStatus"
    assert batch.outcomes[1].failure.document["attemptsMade"] == 2


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
@pytest.mark.parametrize("data", ["YWJj!", "not base64 at all", "YWJ", "é", 42, None])
def test_ok_data_that_is_not_base64_fails_the_record(data):
    records = source_records(b"a", b"b", b"c")
    answer = answer_second_record_with({"result": "Ok", "data": data})
    batch = stage_for(FakeFunction(answer)).process(records)
    assert [error_code(o) for o in batch.outcomes] == [None, "Lambda.InvalidReturnFormat", None]
    assert "base64" in batch.outcomes[1].failure.document["errorMessage"]
    assert base64.b64decode(batch.outcomes[1].failure.document["rawData"]) == b"b"
    assert_one_outcome_per_record(batch, records)


def test_an_ok_record_without_data_fails_the_record():
    # Firehose requires recordId, result and data of every record it gets back
    records = source_records(b"a", b"b", b"c")
    batch = stage_for(FakeFunction(answer_second_record_with({"result": "Ok"}))).process(records)
    assert [error_code(o) for o in batch.outcomes] == [None, "Lambda.InvalidReturnFormat", None]


# ------------------------------------------------------------------ checkpoints


def test_a_checkpoint_of_re_created_streams_is_discarded(tmp_path):
    store = CheckpointStore(tmp_path)
    old = Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01", {"shardId-0": "42"})
    store.save(old, "ds")
    assert store.load(Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01"), "ds") == old
    fresh = Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-06-01")
    assert store.load(fresh, "ds").shards == {}
    assert [p.name for p in tmp_path.iterdir()] == ["ds.json"]  # no temporary file left


@pytest.mark.parametrize(
    "recreated",
    [
        Checkpoint("arn:ds", "2024-06-01", "arn:stream", "2024-01-01"),  # the delivery stream
        Checkpoint("arn:ds", "2024-01-01", "arn:other-stream", "2024-01-01"),  # its source
        Checkpoint("arn:other-ds", "2024-01-01", "arn:stream", "2024-01-01"),  # another one
    ],
)
def test_a_checkpoint_is_kept_only_for_the_same_incarnation_of_both_streams(tmp_path, recreated):
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01", {"s": "42"}), "ds")
    assert store.load(recreated, "ds") == recreated


def test_creation_times_that_are_no_moments_are_compared_as_written(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint("arn:ds", "first", "arn:stream", "first", {"shardId-0": "42"}), "ds")

    kept = store.load(Checkpoint("arn:ds", "first", "arn:stream", "first"), "ds")
    assert kept.shards == {"shardId-0": "42"}
    assert store.load(Checkpoint("arn:ds", "first", "arn:stream", "second"), "ds").shards == {}


def test_a_checkpoint_that_holds_its_creation_times_in_another_zone_is_kept(tmp_path):
    # as versions that wrote the machine's zone left it, from a shell at UTC+1
    store = CheckpointStore(tmp_path)
    paris = MOMENT.astimezone(timezone(timedelta(hours=1))).isoformat()
    store.save(Checkpoint("arn:ds", paris, "arn:stream", paris, {"shardId-0": "42"}), "ds")
    utc = MOMENT.isoformat()

    assert store.load(Checkpoint("arn:ds", utc, "arn:stream", utc), "ds").shards == {
        "shardId-0": "42"
    }
    later = (MOMENT + timedelta(seconds=1)).isoformat()
    assert store.load(Checkpoint("arn:ds", utc, "arn:stream", later), "ds").shards == {}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('{"shards": {"shardId-0', "Unterminated string"),
        ("[]", "must be a mapping"),
        ("[" * 100_000 + "]" * 100_000, r"damaged \(nested too deeply\)"),
    ],
    ids=["cut short", "a list", "nested too deeply"],
)
def test_a_damaged_checkpoint_says_what_deleting_it_does(tmp_path, content, said):
    from brewops.firehose_runtime.checkpoints import CheckpointUnreadable

    store = CheckpointStore(tmp_path)
    store.path("ds").write_text(content, encoding="utf-8")

    with pytest.raises(CheckpointUnreadable, match=said) as error:
        store.load(Checkpoint("arn:ds", "2024-01-01", "arn:stream", "2024-01-01"), "ds")
    assert "Delete it: delivery then starts again" in str(error.value)


def test_one_delivery_at_a_time_holds_the_checkpoint_lock(tmp_path):
    store = CheckpointStore(tmp_path)
    entered = threading.Event()

    def other_delivery() -> None:
        with store.lock("ds"):
            entered.set()

    with store.lock("ds"):
        other = threading.Thread(target=other_delivery)
        other.start()
        assert not entered.wait(0.3), "a second delivery ran while the first held the lock"
    other.join()
    assert entered.is_set()


# ------------------------------------------------------------------ against a scripted Kinesis
# What Kinesis does that the emulator never does: empty pages behind the tip, expired
# iterators, closed shards, listings in pages. Records arrive after MOMENT, the delivery
# stream's creation, one second apart unless given a time.


class ExpiredIteratorException(Exception):
    pass


class ScriptedKinesis:
    """A Kinesis client over fixed shards: {shard id: [(data, arrival), ...]}."""

    class exceptions:
        ExpiredIteratorException = ExpiredIteratorException

    def __init__(self, shards, *, empty_pages=0, expire_after_reads=None, closed=(), page=None):
        self.shards = {
            shard: [
                {
                    "SequenceNumber": str(1000 * n + i + 1),
                    "PartitionKey": "k",
                    "Data": data,
                    "ApproximateArrivalTimestamp": at or MOMENT + timedelta(seconds=i + 1),
                }
                for i, (data, at) in enumerate(records)
            ]
            for n, (shard, records) in enumerate(shards.items())
        }
        self.empty_pages = empty_pages  # pages behind the tip that hold no record
        self.expire_after_reads = expire_after_reads
        self.closed, self.page, self.reads = set(closed), page, 0

    def add(self, shard: str, *records: tuple[bytes, datetime | None]) -> None:
        have = self.shards[shard]
        last = have[-1]
        for i, (data, at) in enumerate(records, start=1):
            have.append(
                {
                    **last,
                    "SequenceNumber": str(int(last["SequenceNumber"]) + i),
                    "Data": data,
                    "ApproximateArrivalTimestamp": at
                    or last["ApproximateArrivalTimestamp"] + timedelta(seconds=i),
                }
            )

    def describe_stream_summary(self, StreamName):
        return {"StreamDescriptionSummary": {"StreamCreationTimestamp": MOMENT}}

    def list_shards(self, StreamName=None, NextToken=None):
        names = sorted(self.shards)
        start = int(NextToken or 0)
        end = start + (self.page or len(names))
        answer = {"Shards": [{"ShardId": shard} for shard in names[start:end]]}
        return {**answer, "NextToken": str(end)} if end < len(names) else answer

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, **where):
        records = self.shards[ShardId]
        if ShardIteratorType == "AT_TIMESTAMP":
            start = next(
                (
                    i
                    for i, r in enumerate(records)
                    if r["ApproximateArrivalTimestamp"] >= where["Timestamp"]
                ),
                len(records),
            )
        elif ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            sequences = [r["SequenceNumber"] for r in records]
            start = sequences.index(where["StartingSequenceNumber"]) + 1
        else:
            start = 0
        return {"ShardIterator": f"{ShardId}|{start}"}

    def get_records(self, ShardIterator, Limit):
        self.reads += 1
        if self.reads == self.expire_after_reads:
            raise ExpiredIteratorException("Iterator expired")
        shard, start = ShardIterator.split("|")
        records = self.shards[shard]
        if self.empty_pages:
            self.empty_pages -= 1
            return {"Records": [], "NextShardIterator": ShardIterator, "MillisBehindLatest": 5000}
        end = min(int(start) + Limit, len(records))
        at_end = end == len(records)
        return {
            "Records": records[int(start) : end],
            "NextShardIterator": None if at_end and shard in self.closed else f"{shard}|{end}",
            "MillisBehindLatest": 0 if at_end else 1000,
        }


class ScriptedAWS:
    """A boto3 Session whose clients are the scripted Kinesis, an S3 that keeps objects,
    and the delivery stream's description."""

    def __init__(self, kinesis, stream, glue=None, lambda_client=None):
        self.kinesis, self.stream = kinesis, stream
        self.glue, self.lambda_client = glue, lambda_client
        self.objects: dict[str, bytes] = {}

    def client(self, service, config=None):
        if service == "kinesis":
            return self.kinesis
        if service == "glue":
            return self.glue
        if service == "lambda":
            return self.lambda_client
        if service == "firehose":
            return self
        return self  # s3, logs

    def describe_delivery_stream(self, DeliveryStreamName):
        if DeliveryStreamName == "direct-put":
            direct = {**self.stream, "DeliveryStreamName": "direct-put", "Source": None}
            return {"DeliveryStreamDescription": {**direct, "DeliveryStreamType": "DirectPut"}}
        return {"DeliveryStreamDescription": self.stream}

    def list_delivery_streams(self, DeliveryStreamType=None):
        kinesis_sourced = ["brewops-dev-cleaned"]
        every = ["direct-put", *kinesis_sourced]
        names = kinesis_sourced if DeliveryStreamType == "KinesisStreamAsSource" else every
        return {"DeliveryStreamNames": names, "HasMoreDeliveryStreams": False}

    def put_object(self, Bucket, Key, Body):
        self.objects[Key] = Body

    def lines(self, prefix: str = "cleaned/") -> list[bytes]:
        bodies = [body for key, body in self.objects.items() if key.startswith(prefix)]
        return [line for body in bodies for line in body.splitlines()]


def scripted_drain(aws: ScriptedAWS, tmp_path: Path, **kwargs) -> Any:
    return FirehoseRuntime(
        ["brewops-dev-cleaned"], session=aws, state_dir=tmp_path, **kwargs
    ).drain()


def numbered(*ids: int) -> list[tuple[bytes, None]]:
    return [(json.dumps({"id": i}).encode() + b"\n", None) for i in ids]


def test_a_drain_reads_past_empty_pages_and_expired_iterators_to_the_tip(tmp_path):
    # an empty page behind the tip is not the end; an iterator that expired (after the
    # first page) is renewed after the last record read, neither skipping nor repeating
    kinesis = ScriptedKinesis(
        {"shardId-000000000000": numbered(1, 2, 3, 4, 5)}, empty_pages=2, expire_after_reads=4
    )
    aws = ScriptedAWS(kinesis, description())

    report = scripted_drain(aws, tmp_path, read_limit=2)

    assert [json.loads(line)["id"] for line in aws.lines()] == [1, 2, 3, 4, 5]
    assert report.streams[0].delivered == 5


def test_a_drain_in_another_time_zone_keeps_the_checkpoint(tmp_path, monkeypatch):
    # botocore gives creation times in the machine's zone: a shell with another TZ must
    # find the same streams, not deliver everything again
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    aws = ScriptedAWS(kinesis, description())
    scripted_drain(aws, tmp_path)

    kiritimati = MOMENT.astimezone(timezone(timedelta(hours=14)))
    aws.stream = {**aws.stream, "CreateTimestamp": kiritimati}
    summary = {"StreamDescriptionSummary": {"StreamCreationTimestamp": kiritimati}}
    monkeypatch.setattr(kinesis, "describe_stream_summary", lambda StreamName: summary)
    kinesis.add("shardId-000000000000", *numbered(3))
    report = scripted_drain(aws, tmp_path)

    assert [json.loads(line)["id"] for line in aws.lines()] == [1, 2, 3]
    assert report.streams[0].delivered == 1


def test_without_names_every_kinesis_sourced_delivery_stream_is_delivered(tmp_path):
    # a Direct PUT delivery stream beside them is none of the runtime's business
    aws = ScriptedAWS(ScriptedKinesis({"shardId-000000000000": numbered(1)}), description())

    report = FirehoseRuntime(session=aws, state_dir=tmp_path).drain()

    assert [s.name for s in report.streams] == ["brewops-dev-cleaned"]
    assert [json.loads(line)["id"] for line in aws.lines()] == [1]


def test_outputs_naming_no_delivery_stream_deliver_none_of_another_stacks(tmp_path):
    # a stack without the delivery stream outputs: the emulator's other stacks are not its
    aws = ScriptedAWS(ScriptedKinesis({"shardId-000000000000": numbered(1)}), description())

    report = FirehoseRuntime.from_outputs(
        {"BucketName": "brewops-other"}, session=aws, state_dir=tmp_path
    ).drain()

    assert report.streams == [] and aws.lines() == []


def test_a_hung_emulator_is_given_up_on_after_as_many_attempts_as_by_every_other_client(
    tmp_path,
):
    # 11 attempts of 20 s of silence each held a drain 4 minutes before it said so
    from botocore.exceptions import ReadTimeoutError

    from brewops.target import MAX_ATTEMPTS, aws_session

    session = aws_session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    sent = []

    def never_answer(request, **_):
        sent.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    session.events.register("before-send", never_answer)

    with pytest.raises(ReadTimeoutError):
        FirehoseRuntime(session=session, state_dir=tmp_path)
    assert len(sent) == MAX_ATTEMPTS


def test_without_names_every_page_of_delivery_streams_is_listed():
    from brewops.firehose_runtime import kinesis_sourced_delivery_streams

    names = [f"stream-{n:02d}" for n in range(25)]
    calls = []

    class Listing:  # ten names a page, as the service gives by default
        def list_delivery_streams(self, DeliveryStreamType, ExclusiveStartDeliveryStreamName=""):
            calls.append((DeliveryStreamType, ExclusiveStartDeliveryStreamName))
            rest = [name for name in names if name > ExclusiveStartDeliveryStreamName]
            return {"DeliveryStreamNames": rest[:10], "HasMoreDeliveryStreams": len(rest) > 10}

    assert kinesis_sourced_delivery_streams(Listing()) == names
    assert calls == [
        ("KinesisStreamAsSource", ""),
        ("KinesisStreamAsSource", "stream-09"),
        ("KinesisStreamAsSource", "stream-19"),
    ]


def test_a_listing_that_says_there_is_more_but_gives_no_names_ends():
    from brewops.firehose_runtime import kinesis_sourced_delivery_streams

    calls = []

    class Listing:  # no name to start the next page after: asking again would loop
        def list_delivery_streams(self, DeliveryStreamType, ExclusiveStartDeliveryStreamName=""):
            calls.append(ExclusiveStartDeliveryStreamName)
            assert len(calls) <= 2, "listed again after a page without names"
            names = [] if ExclusiveStartDeliveryStreamName else ["stream-a"]
            return {"DeliveryStreamNames": names, "HasMoreDeliveryStreams": True}

    assert kinesis_sourced_delivery_streams(Listing()) == ["stream-a"]


def test_every_shard_of_a_resharded_stream_is_delivered(tmp_path):
    # the closed parent and its children, listed one shard per page
    kinesis = ScriptedKinesis(
        {
            "shardId-000000000000": numbered(1, 2),
            "shardId-000000000001": numbered(3, 4),
            "shardId-000000000002": numbered(5, 6),
        },
        closed={"shardId-000000000000"},
        page=1,
    )
    aws = ScriptedAWS(kinesis, description())

    scripted_drain(aws, tmp_path)

    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3, 4, 5, 6]


def test_append_delimiter_to_record_puts_each_record_on_its_own_line(tmp_path):
    kinesis = ScriptedKinesis({"shardId-000000000000": [(b'{"id":1}', None), (b'{"id":2}', None)]})
    processing = {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}
    aws = ScriptedAWS(kinesis, description(ProcessingConfiguration=processing))

    scripted_drain(aws, tmp_path)

    [body] = aws.objects.values()
    assert body == b'{"id":1}\n{"id":2}\n'


class ScriptedGlue:
    def __init__(self, **columns: str):
        self.columns = [
            {"Name": name, "Type": kind}
            for name, kind in (columns or {"id": "bigint", "name": "string"}).items()
        ]

    def get_table(self, DatabaseName, Name, **catalog):
        return {"Table": {"StorageDescriptor": {"Columns": self.columns}}}

    def get_table_version(self, DatabaseName, TableName, VersionId, **catalog):
        return {"TableVersion": self.get_table(DatabaseName, TableName)}


def test_objects_are_filed_under_the_arrival_of_their_oldest_record(tmp_path):
    # one flush across midnight: the data and the error object each take the day of the
    # oldest record they hold, as Firehose evaluates !{timestamp} for an object
    def at(hour, minute, second):
        day = 7 if hour else 8
        return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)

    kinesis = ScriptedKinesis(
        {
            "shardId-000000000000": [
                (b'{"id": 1, "name": "a"} {"id": 3, "name": "c"}', at(23, 59, 57)),
                (b'{"id": "one"}', at(23, 59, 58)),
                (b'{"id": 2, "name": "b"}', at(0, 0, 1)),
                (b'{"id": "two"}', at(0, 0, 2)),
            ]
        }
    )
    aws = ScriptedAWS(
        kinesis,
        description(DataFormatConversionConfiguration=_conversion()),
        glue=ScriptedGlue(),
    )

    report = scripted_drain(aws, tmp_path)

    assert (report.streams[0].delivered, report.streams[0].failed) == (3, 2)  # rows, records
    [data] = [body for key, body in aws.objects.items() if key.startswith("cleaned/")]
    assert pq.read_table(io.BytesIO(data)).column("id").to_pylist() == [1, 3, 2]
    errors = [json.loads(line) for line in aws.lines("errors/")]
    assert [(e["attemptsMade"], e["lastErrorCode"]) for e in errors] == [
        (1, "DataFormatConversion.MalformedData")
    ] * 2
    assert [base64.b64decode(e["rawData"]) for e in errors] == [b'{"id": "one"}', b'{"id": "two"}']
    prefixes = sorted(key.rsplit("/", 1)[0] for key in aws.objects)
    assert prefixes == [
        "cleaned/ingest_date=2024-03-07",
        "errors/cleaned/format-conversion-failed",
    ]
    names = sorted(key.rsplit("/", 1)[1] for key in aws.objects)
    assert all("-2024-03-07-23-59-5" in name for name in names), names


def test_a_format_conversion_error_record_names_the_record_and_the_table(tmp_path):
    kinesis = ScriptedKinesis({"shardId-000000000000": [(b'{"id": "one"}', None)]})
    stream = description(
        DataFormatConversionConfiguration=_conversion(SchemaConfiguration=VERSIONED_SCHEMA)
    )
    aws = ScriptedAWS(kinesis, stream, glue=ScriptedGlue())

    scripted_drain(aws, tmp_path)

    [error] = [json.loads(line) for line in aws.lines("errors/")]
    arrived = int((MOMENT + timedelta(seconds=1)).timestamp() * 1000)  # to the millisecond
    assert error.pop("attemptEndingTimestamp") >= arrived
    assert "'id'" in error.pop("lastErrorMessage")
    assert error == {
        "attemptsMade": 1,
        "arrivalTimestamp": arrived,
        "lastErrorCode": "DataFormatConversion.MalformedData",
        "rawData": base64.b64encode(b'{"id": "one"}').decode(),
        "sequenceNumber": "1",
        "subSequenceNumber": None,
        "dataCatalogTable": {
            "catalogId": "123456789012",
            "databaseName": "db",
            "tableName": "cleaned",
            "region": "eu-west-1",
            "versionId": "3",
            "roleArn": "arn:aws:iam::1:role/glue",
        },
    }


def test_an_object_is_named_after_its_oldest_record_whichever_shard_it_came_from(tmp_path):
    # the second shard's record is older, and settled after the first shard's
    kinesis = ScriptedKinesis(
        {
            "shardId-000000000000": [(b"new\n", datetime(2024, 3, 7, 10, 0, 0, tzinfo=UTC))],
            "shardId-000000000001": [(b"old\n", datetime(2024, 3, 7, 9, 30, 0, tzinfo=UTC))],
        }
    )
    aws = ScriptedAWS(kinesis, description())

    scripted_drain(aws, tmp_path)

    [key] = aws.objects
    assert "-2024-03-07-09-30-00-" in key


@pytest.mark.parametrize(
    ("price", "code"),
    [
        ("123456.7", "DataFormatConversion.MalformedData"),
        ("999.995", "DataFormatConversion.MalformedData"),
        ('"NaN"', "DataFormatConversion.MalformedData"),
        ("-Infinity", "DataFormatConversion.ParseError"),  # not JSON: the parser refuses it
    ],
)
def test_a_decimal_its_column_cannot_hold_fails_that_record_not_the_buffer(tmp_path, price, code):
    # decimal(5,2) holds up to 999.99: the record goes to format-conversion-failed, and the
    # records beside it are still delivered (a value only Parquet refused would sink them all)
    records = [b'{"id": 1, "price": 1.5}', b'{"id": 2, "price": %s}' % price.encode()]
    kinesis = ScriptedKinesis({"shardId-000000000000": [(r, None) for r in records]})
    aws = ScriptedAWS(
        kinesis,
        description(DataFormatConversionConfiguration=_conversion()),
        glue=ScriptedGlue(id="bigint", price="decimal(5,2)"),
    )

    report = scripted_drain(aws, tmp_path)

    assert (report.streams[0].delivered, report.streams[0].failed) == (1, 1)
    [data] = [body for key, body in aws.objects.items() if key.startswith("cleaned/")]
    assert pq.read_table(io.BytesIO(data)).column("price").to_pylist() == [Decimal("1.50")]
    [error] = [json.loads(line) for line in aws.lines("errors/")]
    assert error["lastErrorCode"] == code
    assert base64.b64decode(error["rawData"]) == records[1]


def test_a_table_without_columns_is_written_as_parquet(tmp_path):
    # an Arrow schema of no columns is falsy, yet the deserializer still turns records into rows
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    glue = ScriptedGlue()
    glue.columns = []
    aws = ScriptedAWS(
        kinesis, description(DataFormatConversionConfiguration=_conversion()), glue=glue
    )

    report = scripted_drain(aws, tmp_path)

    assert (report.streams[0].delivered, report.streams[0].failed) == (2, 0)
    [data] = [body for key, body in aws.objects.items() if key.startswith("cleaned/")]
    assert pq.read_table(io.BytesIO(data)).schema.names == []


SCRIPTED_TRANSFORMS = """
import base64
import os
import threading

RELEASE = threading.Event()  # what `hang` waits for

def ok(event, context):
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]}
                        for r in event["records"]]}

def drop(event, context):
    return {"records": [{"recordId": r["recordId"], "result": "Dropped", "data": ""}
                        for r in event["records"]]}

def fail_first(event, context):
    first, *rest = event["records"]
    return {"records": [{"recordId": first["recordId"], "result": "ProcessingFailed", "data": ""}]
            + [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in rest]}

def inflate(event, context):  # 4 MiB of data per record: 11 MB of answer for two
    data = base64.b64encode(b"x" * 4 * 1024 * 1024).decode()
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": data}
                        for r in event["records"]]}

def fail(event, context):
    return {"records": [{"recordId": r["recordId"], "result": "ProcessingFailed", "data": ""}
                        for r in event["records"]]}

def boom(event, context):
    raise RuntimeError("boom")

def hang(event, context):
    RELEASE.wait()
    return ok(event, context)

def who(event, context):
    data = base64.b64encode(os.environ.get("WHO", "nobody").encode()).decode()
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": data}
                        for r in event["records"]]}

def where(event, context):
    def said(r):
        m = r["kinesisRecordMetadata"]
        fields = (m["shardId"], m["sequenceNumber"], m["partitionKey"], m["approximateArrivalTimestamp"])
        return base64.b64encode(" ".join(map(str, fields)).encode() + b"\\n").decode()
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": said(r)}
                        for r in event["records"]]}
"""


@pytest.fixture
def scripted_lambda(tmp_path, monkeypatch):
    """A Lambda client whose function runs `scripted_transforms.<handler>`."""
    (tmp_path / "scripted_transforms.py").write_text(SCRIPTED_TRANSFORMS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Lambda:
        def __init__(self, handler: str, **configuration: Any):
            self.handler = handler
            self.configuration = configuration  # e.g. Timeout

        def get_function_configuration(self, FunctionName, Qualifier=None):
            handler = f"scripted_transforms.{self.handler}"
            return {
                "FunctionName": FunctionName,
                "FunctionArn": FUNCTION_ARN,
                "Handler": handler,
                **self.configuration,
            }

    return Lambda


def processed(
    buffer_mib: str = "1", interval: str = "60", retries: str | None = None
) -> dict[str, Any]:
    return _lambda_processing(
        ("BufferSizeInMBs", buffer_mib),
        ("BufferIntervalInSeconds", interval),
        *([("NumberOfRetries", retries)] if retries is not None else []),
    )


def test_the_lambda_gets_batches_up_to_its_buffer_size(tmp_path, scripted_lambda):
    # 0.25 MiB holds exactly two records of 128 KiB: a third starts the next batch
    kinesis = ScriptedKinesis({"shardId-000000000000": [(b"x" * 128 * 1024, None)] * 5})
    aws = ScriptedAWS(
        kinesis,
        description(ProcessingConfiguration=processed(buffer_mib="0.25")),
        lambda_client=scripted_lambda("ok"),
    )

    report = scripted_drain(aws, tmp_path)

    assert report.streams[0].invocations == 3
    assert report.streams[0].delivered == 5


class TemplateTransform:
    """A Lambda client whose function is the transform the template deploys."""

    def get_function_configuration(self, FunctionName, Qualifier=None):
        return {
            "FunctionName": FunctionName,
            "FunctionArn": FUNCTION_ARN,
            "Handler": "brewops.lambdas.transform.app.handler",
            "Timeout": 120,
        }


@pytest.fixture
def request_sizes(monkeypatch) -> list[int]:
    """The serialised size of every event the runtime sends a function."""
    sizes: list[int] = []
    invoke = LocalFunction.invoke

    def measured(self, event):
        sizes.append(len(json.dumps(event).encode()))
        return invoke(self, event)

    monkeypatch.setattr(LocalFunction, "invoke", measured)
    return sizes


def test_a_flood_of_tiny_records_is_split_into_calls_lambda_accepts(tmp_path, request_sizes):
    # 1.3 MB of 20-byte beers: by data alone a first call of 1 MiB, whose event (base64
    # and each record's metadata) would be ~16 MB and its answer ~12 MB
    beers = [(b'{"id":%d,"name":"b"}' % i, None) for i in range(1, 60_001)]
    kinesis = ScriptedKinesis({"shardId-000000000000": beers})
    stream = description(ProcessingConfiguration=processed(buffer_mib="1"))
    aws = ScriptedAWS(kinesis, stream, lambda_client=TemplateTransform())

    [stats] = scripted_drain(aws, tmp_path).streams

    assert (stats.read, stats.delivered, stats.failed, stats.dropped) == (60_000, 60_000, 0, 0)
    assert stats.invocations == len(request_sizes) > 1
    assert max(request_sizes) <= LAMBDA_PAYLOAD_LIMIT
    assert min(request_sizes[:-1]) > LAMBDA_PAYLOAD_LIMIT - 1024, "calls are filled, not cut short"
    assert sorted(json.loads(line)["id"] for line in aws.lines()) == list(range(1, 60_001))


def test_the_event_size_is_counted_as_lambda_counts_the_request():
    config = DeliveryStreamConfig.from_description(description(ProcessingConfiguration=PROCESSING))
    records = [
        SourceRecord("shardId-000000000001", "4" * 56, 'k"\u00e9', bytes(range(n)), 1714566600000)
        for n in (0, 1, 2, 3, 200)
    ]
    ids = [firehose_record_id(r, i) for i, r in enumerate(records)]

    event = firehose_event(config, records, ids)

    counted = event_bytes(config) + sum(event_record_bytes(r) for r in records) - len(", ")
    assert counted == len(json.dumps(event).encode())


def test_a_call_takes_records_up_to_the_request_limit_and_not_a_byte_over(
    tmp_path, request_sizes, scripted_lambda, monkeypatch
):
    def calls_under(limit: int) -> list[int]:
        monkeypatch.setattr("brewops.firehose_runtime.runtime.LAMBDA_PAYLOAD_LIMIT", limit)
        request_sizes.clear()
        kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3)})
        stream = description(ProcessingConfiguration=processed())
        aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("ok"))
        scripted_drain(aws, tmp_path / str(limit))
        return list(request_sizes)

    [whole] = calls_under(LAMBDA_PAYLOAD_LIMIT)
    # counted with a separator after each record, the last one's too
    assert calls_under(whole + len(", ")) == [whole]
    assert len(calls_under(whole + len(", ") - 1)) == 2


def test_an_answer_over_the_lambda_payload_limit_sends_its_batch_to_the_errors(
    tmp_path, scripted_lambda
):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    aws = ScriptedAWS(
        kinesis,
        description(ProcessingConfiguration=processed()),
        lambda_client=scripted_lambda("inflate"),
    )

    [stats] = scripted_drain(aws, tmp_path).streams

    assert (stats.invocations, stats.delivered, stats.failed) == (4, 0, 2)  # 3 retries
    [(key, body)] = aws.objects.items()
    assert key.startswith("errors/cleaned/processing-failed/")
    errors = [json.loads(line) for line in body.splitlines()]
    codes = [(e["errorCode"], e["attemptsMade"]) for e in errors]
    assert codes == [("Lambda.FunctionError", 4)] * 2
    assert all("Function.ResponseSizeTooLarge" in e["errorMessage"] for e in errors)
    assert [base64.b64decode(e["rawData"]) for e in errors] == [d for d, _ in numbered(1, 2)]


def test_dropped_records_are_done_with_and_not_transformed_again(tmp_path, scripted_lambda):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3)})
    aws = ScriptedAWS(
        kinesis,
        description(ProcessingConfiguration=processed()),
        lambda_client=scripted_lambda("drop"),
    )

    first = scripted_drain(aws, tmp_path)
    second = scripted_drain(aws, tmp_path)

    assert (first.streams[0].dropped, first.streams[0].invocations) == (3, 1)
    assert (second.streams[0].read, second.streams[0].invocations) == (0, 0)
    assert aws.objects == {}


def test_a_call_that_keeps_failing_sends_its_records_to_the_errors_after_every_retry(
    tmp_path, scripted_lambda
):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    stream = description(ProcessingConfiguration=processed())  # NumberOfRetries: 3 by default
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("boom"))

    report = scripted_drain(aws, tmp_path)

    assert (report.streams[0].invocations, report.streams[0].failed) == (4, 2)
    [(key, body)] = aws.objects.items()
    assert key.startswith("errors/cleaned/processing-failed/")
    errors = [json.loads(line) for line in body.splitlines()]
    codes = [(e["errorCode"], e["attemptsMade"]) for e in errors]
    assert codes == [("Lambda.FunctionError", 4)] * 2
    assert all(e["errorMessage"].endswith("RuntimeError: boom") for e in errors)
    assert report.streams[0].keys == [key]
    assert report.streams[0].bytes_written == len(body)


def test_a_call_still_running_at_its_timeout_sends_its_batch_to_the_errors(
    tmp_path, scripted_lambda, monkeypatch
):
    release = threading.Event()
    monkeypatch.setattr(importlib.import_module("scripted_transforms"), "RELEASE", release)
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    stream = description(ProcessingConfiguration=processed(retries="1"))
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("hang", Timeout=1))

    with released_at_the_latest(release):
        report = scripted_drain(aws, tmp_path)
        assert not release.is_set(), "the drain ends while the handler is still blocked"

    assert (report.streams[0].invocations, report.streams[0].failed) == (2, 2)
    [(key, body)] = aws.objects.items()
    assert key.startswith("errors/cleaned/processing-failed/")
    errors = [json.loads(line) for line in body.splitlines()]
    codes = [(e["errorCode"], e["attemptsMade"]) for e in errors]
    assert codes == [("Lambda.FunctionError", 2)] * 2  # tried again, as a failed call is
    assert all("Sandbox.Timedout" in e["errorMessage"] for e in errors)
    assert all(e["errorMessage"].endswith("Task timed out after 1.00 seconds") for e in errors)


def test_the_function_runs_with_the_environment_the_runtime_is_given(tmp_path, scripted_lambda):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1)})
    stream = description(ProcessingConfiguration=processed())
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("who"))

    scripted_drain(aws, tmp_path, function_environment={"WHO": "local"})

    assert aws.lines() == [b"local"]


def test_the_lambda_is_told_where_each_record_came_from(tmp_path, scripted_lambda):
    at = MOMENT + timedelta(seconds=2)
    kinesis = ScriptedKinesis(
        {"shardId-000000000000": [(b"a", at)], "shardId-000000000001": [(b"b", at)]}
    )
    kinesis.shards["shardId-000000000001"][0]["PartitionKey"] = "beer-2"
    stream = description(ProcessingConfiguration=processed())
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("where"))

    scripted_drain(aws, tmp_path)

    millis = int(at.timestamp() * 1000)  # to the millisecond
    assert aws.lines() == [
        f"shardId-000000000000 1 k {millis}".encode(),
        f"shardId-000000000001 1001 beer-2 {millis}".encode(),
    ]


def test_error_output_of_a_gzip_stream_is_compressed_like_its_data(tmp_path, scripted_lambda):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    stream = description(CompressionFormat="GZIP", ProcessingConfiguration=processed())
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("fail"))

    scripted_drain(aws, tmp_path)

    [(key, body)] = aws.objects.items()
    assert key.startswith("errors/cleaned/processing-failed/") and key.endswith(".gz")
    errors = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    assert [base64.b64decode(e["rawData"]) for e in errors] == [d for d, _ in numbered(1, 2)]


@pytest.mark.parametrize("lambda_interval", [None, "60"])
def test_an_interval_runs_from_the_first_record_of_its_buffer(
    tmp_path, scripted_lambda, lambda_interval
):
    # the Lambda's batch, else the destination buffer, waits 60 s from its first record
    processing = processed(interval=lambda_interval) if lambda_interval else None
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    aws = ScriptedAWS(
        kinesis,
        description(
            BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 300 if processing else 60},
            ProcessingConfiguration=processing,
        ),
        lambda_client=scripted_lambda("ok"),
    )
    now = [0.0]
    [stream] = FirehoseRuntime(
        ["brewops-dev-cleaned"], session=aws, state_dir=tmp_path, clock=lambda: now[0], read_limit=1
    ).streams

    stream.poll()
    now[0] = 30
    stream.poll()  # joins what the first record started
    now[0] = 60
    stream.tick()
    if processing:
        assert (stream.stats.invocations, aws.objects) == (1, {})
    else:
        assert list(aws.objects.values()) == [b"".join(d for d, _ in numbered(1, 2))]


def test_the_lambda_and_the_destination_each_wait_their_own_interval(tmp_path, scripted_lambda):
    # the processor's 60 s, then the destination's 300 s, counted from when the failed
    # records were settled: an error-only buffer is delivered by interval like any other
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    aws = ScriptedAWS(
        kinesis,
        description(
            BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 300},
            ProcessingConfiguration=processed(interval="60"),
        ),
        lambda_client=scripted_lambda("fail"),
    )
    now = [0.0]
    [stream] = FirehoseRuntime(
        ["brewops-dev-cleaned"], session=aws, state_dir=tmp_path, clock=lambda: now[0]
    ).streams

    stream.poll()
    for now[0], invocations, objects in [(59, 0, 0), (60, 1, 0), (359, 1, 0), (360, 1, 1)]:
        stream.tick()
        assert (stream.stats.invocations, len(aws.objects)) == (invocations, objects), now[0]


def test_each_error_output_type_gets_its_own_object_under_one_error_prefix(
    tmp_path, scripted_lambda
):
    # one record the Lambda fails, one the table refuses, in the same flush and second
    at = MOMENT + timedelta(seconds=1)
    kinesis = ScriptedKinesis({"shardId-000000000000": [(b"x", at), (b'{"id": "x"}', at)]})
    stream = description(
        ErrorOutputPrefix="errors/",
        ProcessingConfiguration=processed(),
        DataFormatConversionConfiguration=_conversion(),
    )
    aws = ScriptedAWS(
        kinesis, stream, glue=ScriptedGlue(), lambda_client=scripted_lambda("fail_first")
    )

    report = scripted_drain(aws, tmp_path)

    assert report.streams[0].failed == 2
    errors = [json.loads(line) for line in aws.lines("errors/")]
    assert sorted(e.get("errorCode") or e.get("lastErrorCode") for e in errors) == [
        "DataFormatConversion.MalformedData",
        "Lambda.ProcessingFailedStatus",
    ]


def test_a_full_buffer_is_delivered_at_once_and_the_interval_restarts_after_it(tmp_path):
    half = b"x" * 512 * 1024
    kinesis = ScriptedKinesis({"shardId-000000000000": [(half, None), (half, None), (b"y", None)]})
    aws = ScriptedAWS(
        kinesis, description(BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    )
    now = [0.0]
    [stream] = FirehoseRuntime(
        ["brewops-dev-cleaned"], session=aws, state_dir=tmp_path, clock=lambda: now[0], read_limit=2
    ).streams

    stream.poll()  # two records make exactly 1 MiB: delivered without waiting for more
    assert list(aws.objects.values()) == [half + half]
    now[0] = 30
    stream.poll()  # the next record starts the next buffer's 60 s
    now[0] = 60
    stream.tick()
    assert len(aws.objects) == 1
    now[0] = 90
    stream.tick()
    assert sorted(aws.objects.values()) == [half + half, b"y"]


class StopAfter(threading.Event):
    """A stop event set once the run has looked at it `checks` times."""

    def __init__(self, checks: int):
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_a_continuous_run_picks_up_shards_that_appear_and_rereads_none(tmp_path, monkeypatch):
    import brewops.firehose_runtime

    kinesis = ScriptedKinesis(
        {"shardId-000000000000": numbered(1), "shardId-000000000001": numbered(2)}
    )
    later = kinesis.shards.pop("shardId-000000000001")
    aws = ScriptedAWS(kinesis, description())
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)
    kinesis.shards["shardId-000000000001"] = later  # a reshard after the run started
    monkeypatch.setattr(brewops.firehose_runtime, "SHARD_REFRESH_SECONDS", 0)

    report = continuous.run(StopAfter(3), poll_seconds=0)

    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2]
    assert report.streams[0].read == 2


class InterruptedPut(ScriptedAWS):
    """An S3 whose first put_object is interrupted (Ctrl-C) before it is written."""

    interrupted = False

    def put_object(self, Bucket, Key, Body):
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        super().put_object(Bucket, Key, Body)


def test_ctrl_c_during_a_gzip_write_still_delivers_what_was_read(tmp_path):
    # the run ends on Ctrl-C and writes what it read: the compressed object a second time
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    hints = {"SizeInMBs": 64, "IntervalInSeconds": 0}  # each poll's records written at once
    aws = InterruptedPut(kinesis, description(CompressionFormat="GZIP", BufferingHints=hints))
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)

    report = continuous.run(StopAfter(1), poll_seconds=0)

    [body] = aws.objects.values()
    assert [json.loads(line)["id"] for line in gzip.decompress(body).splitlines()] == [1, 2]
    assert report.streams[0].delivered == 2


def ctrl_c_at_call(original, number, *, after_it=False):
    """`original` (a function or method) whose `number`-th call raises KeyboardInterrupt,
    as Ctrl-C landing there would: before it runs, or just after it with `after_it`."""
    calls = 0

    def interrupted(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == number:
            if after_it:
                original(*args, **kwargs)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    return interrupted


@pytest.mark.parametrize("at_save", [1, 2], ids=["pending", "commit"])
@pytest.mark.parametrize("replaced", [False, True], ids=["before-replace", "after-replace"])
def test_ctrl_c_during_a_checkpoint_save_still_delivers_what_was_read_once(
    tmp_path, monkeypatch, at_save, replaced
):
    # Ctrl-C lands in the save of the flush's pending position (1) or of its commit (2),
    # before the file is replaced or after it (in the fsync of its folder): the run's
    # closing flush delivers the same records, once, and counts them
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    hints = {"SizeInMBs": 64, "IntervalInSeconds": 0}  # each poll's records written at once
    aws = ScriptedAWS(kinesis, description(BufferingHints=hints))
    interrupted_save = ctrl_c_at_call(CheckpointStore.save, at_save, after_it=replaced)
    monkeypatch.setattr(CheckpointStore, "save", interrupted_save)
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)

    report = continuous.run(StopAfter(1), poll_seconds=0)

    assert [json.loads(line)["id"] for line in aws.lines()] == [1, 2]
    assert report.streams[0].delivered == 2
    assert len(report.streams[0].keys) == 1
    stored = continuous.streams[0].store.read("brewops-dev-cleaned")
    assert (stored.shards, stored.pending) == ({"shardId-000000000000": "2"}, None)


def test_ctrl_c_during_the_first_save_over_earlier_streams_checkpoint_still_delivers(
    tmp_path, monkeypatch
):
    # the store holds the positions of streams that no longer exist when Ctrl-C stops the
    # first save: the runtime keeps its own (none), not theirs, and its closing flush delivers
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    hints = {"SizeInMBs": 64, "IntervalInSeconds": 0}
    aws = ScriptedAWS(kinesis, description(BufferingHints=hints))
    stale = Checkpoint("arn:old", "2024-01-01", "arn:old-stream", "2024-01-01", {"shard": "9"})
    CheckpointStore(tmp_path / "firehose").save(stale, "brewops-dev-cleaned")
    monkeypatch.setattr(CheckpointStore, "save", ctrl_c_at_call(CheckpointStore.save, 1))
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)

    report = continuous.run(StopAfter(1), poll_seconds=0)

    assert [json.loads(line)["id"] for line in aws.lines()] == [1, 2]
    assert report.streams[0].delivered == 2


def test_ctrl_c_while_a_page_is_fed_loses_none_of_it_to_the_drain_that_follows(
    tmp_path, monkeypatch
):
    # `stream run --with-scheduler` drains after Ctrl-C with the same runtime: the records
    # of the page that Ctrl-C stopped half-way (in a Lambda call, say) are not skipped
    from brewops.firehose_runtime.runtime import DeliveryStreamRuntime

    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3, 4)})
    aws = ScriptedAWS(kinesis, description())
    interrupted_settle = ctrl_c_at_call(DeliveryStreamRuntime._settle_data, 2)
    monkeypatch.setattr(DeliveryStreamRuntime, "_settle_data", interrupted_settle)
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)
    continuous.run(StopAfter(1), poll_seconds=0, flush_on_exit=False)
    kinesis.add("shardId-000000000000", *numbered(5))  # the last tick's beer
    continuous.drain()
    scripted_drain(aws, tmp_path)

    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3, 4, 5]


def test_ctrl_c_while_records_wait_for_the_lambda_sends_each_of_them_once(
    tmp_path, monkeypatch, scripted_lambda
):
    # the records waiting for a Lambda call when Ctrl-C lands are read again: they are not
    # also kept waiting, to be sent twice, and the next call's size starts from nothing
    from brewops.firehose_runtime.runtime import DeliveryStreamRuntime

    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3, 4)})
    processing = {"ProcessingConfiguration": processed()}  # records wait for 60 s or 1 MiB
    aws = ScriptedAWS(kinesis, description(**processing), lambda_client=scripted_lambda("ok"))
    # at the third record: 1 and 2 are waiting
    monkeypatch.setattr(
        DeliveryStreamRuntime, "feed", ctrl_c_at_call(DeliveryStreamRuntime.feed, 3)
    )
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)
    continuous.run(StopAfter(1), poll_seconds=0, flush_on_exit=False)
    stream = continuous.streams[0]
    assert (stream.pending, stream.request_size) == ([], stream.empty_request_size)
    continuous.drain()

    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3, 4]


@pytest.mark.parametrize("drained_by_it", [False, True], ids=["drained-anew", "drained-by-it"])
@pytest.mark.parametrize("handler", [None, "ok", "fail"], ids=["read", "transformed", "failed"])
def test_ctrl_c_between_buffering_a_record_and_settling_it_delivers_it_once(
    tmp_path, monkeypatch, scripted_lambda, handler, drained_by_it
):
    # the record is in the buffer (or among its errors), its position not yet settled: the
    # closing flush must not write it while the checkpoint leaves it to be read again.
    # Without a Lambda a record is buffered as it is read; with one, as its answer comes
    from brewops.firehose_runtime.runtime import DeliveryStreamRuntime

    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    processing = {"ProcessingConfiguration": processed(interval="0")} if handler else {}
    aws = ScriptedAWS(kinesis, description(**processing), lambda_client=scripted_lambda(handler))
    interrupted = ctrl_c_at_call(DeliveryStreamRuntime._settled, 2)  # the second record's
    monkeypatch.setattr(DeliveryStreamRuntime, "_settled", interrupted)
    continuous = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)
    continuous.run(StopAfter(1), poll_seconds=0)
    if drained_by_it:  # as `stream run --with-scheduler` does after Ctrl-C
        continuous.drain()
    else:
        scripted_drain(aws, tmp_path)

    if handler == "fail":
        assert len(aws.lines("errors/")) == 2
    else:
        assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2]


def test_ctrl_c_while_parquet_seals_its_rows_writes_each_row_once(tmp_path, monkeypatch):
    from brewops.firehose_runtime.conversion import ParquetBuffer

    kinesis = ScriptedKinesis(
        {"shardId-000000000000": [(b'{"id": 1, "name": "a"}', None), (b'{"id": 2}', None)]}
    )
    conversion = {"DataFormatConversionConfiguration": _conversion()}
    hints = {"SizeInMBs": 64, "IntervalInSeconds": 0}
    aws = ScriptedAWS(kinesis, description(BufferingHints=hints, **conversion), glue=ScriptedGlue())
    seal = ParquetBuffer._seal

    def interrupted(buffer):  # the rows are in a batch and still waiting to be sealed
        monkeypatch.setattr(ParquetBuffer, "_seal", seal)
        buffer._batches.append(pa.RecordBatch.from_pylist(buffer._pending, schema=buffer.schema))
        raise KeyboardInterrupt

    monkeypatch.setattr(ParquetBuffer, "_seal", interrupted)
    FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path).run(
        StopAfter(1), poll_seconds=0
    )
    scripted_drain(aws, tmp_path)

    ids = [
        pq.read_table(io.BytesIO(body)).column("id").to_pylist() for body in aws.objects.values()
    ]
    assert sorted(i for object_ids in ids for i in object_ids) == [1, 2]


def test_a_runtime_whose_checkpoint_was_removed_refuses_to_deliver(tmp_path):
    from brewops.firehose_runtime.runtime import DeliveryOvertaken

    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1)})
    aws = ScriptedAWS(kinesis, description())
    scripted_drain(aws, tmp_path)
    [stream] = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path).streams
    stream.store.path("brewops-dev-cleaned").unlink()  # what it started from is gone
    kinesis.add("shardId-000000000000", *numbered(2))
    stream.poll()

    with pytest.raises(DeliveryOvertaken):
        stream.flush()


def test_a_runtime_refuses_to_deliver_what_a_crashed_flush_will_replay(tmp_path):
    # another runtime wrote the same records and died before its commit: its restart
    # replays them, so delivering them here too would duplicate them
    from brewops.firehose_runtime.runtime import DeliveryOvertaken

    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2)})
    aws = ScriptedAWS(kinesis, description())
    [running] = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path).streams
    running.poll()
    crash_before_commit(aws, tmp_path)

    with pytest.raises(DeliveryOvertaken):
        running.flush()
    assert len(aws.objects) == 1


def test_a_replay_with_random_strings_in_the_prefix_lands_on_the_same_keys(tmp_path):
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3)})
    aws = ScriptedAWS(kinesis, description(Prefix="cleaned/!{firehose:random-string}/"))
    written = crash_before_commit(aws, tmp_path)
    kinesis.add("shardId-000000000000", *numbered(4))  # arrived before the restart

    scripted_drain(aws, tmp_path)

    assert {key: aws.objects[key] for key in written} == written  # replayed onto its keys
    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3, 4]


def test_a_replay_through_the_lambda_ends_once_its_batch_is_transformed(tmp_path, scripted_lambda):
    # the replayed records wait in the Lambda's batch, not yet settled, when the last of
    # them has been read: the replay is done reading then, and its flush settles them
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3)})
    stream = description(ProcessingConfiguration=processed())
    aws = ScriptedAWS(kinesis, stream, lambda_client=scripted_lambda("ok"))
    written = crash_before_commit(aws, tmp_path)
    kinesis.add("shardId-000000000000", *numbered(4))
    [restarted] = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path).streams

    for _ in range(10):  # what drain() does, in a bounded number of polls
        restarted.poll()
        if restarted.caught_up:
            break
    restarted.flush()

    assert restarted.caught_up
    assert {key: aws.objects[key] for key in written} == written
    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3, 4]


def test_a_replay_reads_only_the_shards_of_the_flush_it_replays(tmp_path):
    # the second shard had nothing for the crashed flush (its record came before the
    # delivery stream); what it gets since is the next flush's, not the replay's
    kinesis = ScriptedKinesis(
        {
            "shardId-000000000000": numbered(1, 2),
            "shardId-000000000001": [(b'{"id": 0}\n', MOMENT - timedelta(seconds=1))],
        }
    )
    aws = ScriptedAWS(kinesis, description())
    written = crash_before_commit(aws, tmp_path)
    kinesis.add("shardId-000000000001", (b'{"id": 3}\n', MOMENT + timedelta(seconds=10)))

    scripted_drain(aws, tmp_path)

    assert {key: aws.objects[key] for key in written} == written
    assert sorted(json.loads(line)["id"] for line in aws.lines()) == [1, 2, 3]


def test_a_replay_is_not_cut_short_by_the_buffer_interval(tmp_path):
    # a continuous run that restarts after the crash replays the whole flush onto its
    # object, however long reading it back takes
    kinesis = ScriptedKinesis({"shardId-000000000000": numbered(1, 2, 3)})
    aws = ScriptedAWS(kinesis, description())
    written = crash_before_commit(aws, tmp_path)
    now = [0.0]
    [stream] = FirehoseRuntime(
        ["brewops-dev-cleaned"],
        session=aws,
        state_dir=tmp_path,
        clock=lambda: now[0],
        read_limit=1,
    ).streams

    for _ in range(5):  # one record a poll, each an interval after the last
        stream.poll()
        now[0] += 100
        stream.tick()
    stream.flush()

    assert aws.objects == written


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
    assert "abv" in logged_reasons(stack.client("logs"), function).by_beer_id[3]
    function_log = stack.state_dir / "logs" / f"{function}.log"
    assert "record not transformed" in function_log.read_text(
        encoding="utf-8"
    )  # also kept in a file


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
def test_a_continuous_run_delivers_a_buffer_once_its_interval_has_passed(streaming_stack):
    stack = streaming_stack()
    readings = iter(range(0, 10**6, 100))  # each reading of the clock is 100 s on
    continuous = runtime(stack, "RawDeliveryStreamName", clock=lambda: float(next(readings)))
    stack.put(beer_lines(range(1, 6)))

    continuous.run(max_seconds=0, flush_on_exit=False)  # one poll, one tick, no final flush

    assert sorted(raw_ids(stack)) == [1, 2, 3, 4, 5]


@pytest.mark.emulator
def test_a_run_ended_without_its_flush_leaves_what_it_read_to_the_next_delivery(
    streaming_stack,
):
    stack = streaming_stack()
    stack.put(beer_lines(range(1, 6)))

    report = runtime(stack, "RawDeliveryStreamName").run(max_seconds=0, flush_on_exit=False)
    assert (report.streams[0].read, stack.keys("raw/")) == (5, [])

    runtime(stack, "RawDeliveryStreamName").drain()
    assert sorted(raw_ids(stack)) == [1, 2, 3, 4, 5]


class _CtrlC(threading.Event):
    """A stop event the user interrupts (Ctrl-C) once the run has polled."""

    def is_set(self) -> bool:
        if self.checked:
            raise KeyboardInterrupt
        self.checked = True
        return False

    checked = False


@pytest.mark.emulator
def test_ctrl_c_ends_a_continuous_run_and_delivers_what_it_read(streaming_stack):
    stack = streaming_stack()
    stack.put(beer_lines(range(1, 6)))

    report = runtime(stack, "RawDeliveryStreamName").run(_CtrlC(), poll_seconds=0)

    assert report.streams[0].delivered == 5
    assert sorted(raw_ids(stack)) == [1, 2, 3, 4, 5]


def test_a_drain_report_adds_up_the_streams_and_says_what_each_did():
    from brewops.firehose_runtime import DeliveryStats, DrainReport

    report = DrainReport(
        [
            DeliveryStats("raw", read=3, delivered=3, keys=["a"]),
            DeliveryStats("cleaned", read=3, delivered=1, dropped=1, failed=1, keys=["b", "c"]),
        ],
        seconds=1.5,
    )
    assert report.read == 6
    assert str(report).splitlines() == [
        "raw: read 3, delivered 3, dropped 0, failed 0, 1 object",
        "cleaned: read 3, delivered 1, dropped 1, failed 1, 2 objects",
        "(1.5 s)",
    ]


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


def crash_before_commit(aws: ScriptedAWS, tmp_path: Path) -> dict[str, bytes]:
    """A drain killed right after its S3 write, before its commit; the objects it left."""
    crashed = FirehoseRuntime(["brewops-dev-cleaned"], session=aws, state_dir=tmp_path)
    crashed.streams[0].store = CommitFails(crashed.streams[0].store)
    with pytest.raises(RuntimeError, match="before the commit"):
        crashed.drain()
    return dict(aws.objects)


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
    (tmp_path / "breaks_on_import.py").write_text(
        "import os\nos.no_such_attribute\n", encoding="utf-8"
    )
    (tmp_path / "has_no_handler.py").write_text("x = 1\n", encoding="utf-8")
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
        "def handler(event, context):\n    print('line', event['n'])\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    logs = _FlakyLogs()
    function = _local_function("prints.handler", logs_client=logs)

    for n in range(3):
        function.invoke({"n": n})

    assert logs.events == ["line 1", "line 2"], "only the first call's lines are lost"


def test_the_log_stream_is_named_by_the_utc_date_as_lambda_names_it(tmp_path, monkeypatch):
    (tmp_path / "prints_a_line.py").write_text(
        "def handler(event, context):\n    print('line')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # a time zone whose date is not UTC's now: 14 hours ahead from 10:00 UTC, else 12 behind
    utc = time.gmtime()
    monkeypatch.setenv("TZ", "Etc/GMT-14" if utc.tm_hour >= 10 else "Etc/GMT+12")
    time.tzset()
    try:
        assert time.strftime("%Y/%m/%d") != time.strftime("%Y/%m/%d", utc)
        logs = _FlakyLogs()
        logs.failures = 0

        _local_function("prints_a_line.handler", logs_client=logs).invoke({})
    finally:
        monkeypatch.undo()
        time.tzset()

    (stream,) = logs.streams
    assert stream.startswith(time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()))


def test_a_function_log_file_moves_aside_before_it_grows_past_its_size(tmp_path, monkeypatch):
    """A `stream run` left up for days: the log keeps the latest lines in bounded files."""
    from brewops.firehose_runtime import functions

    (tmp_path / "prints_its_number.py").write_text(
        "def handler(event, context):\n    print(f\"line {event['n']:03d}\")\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(functions, "LOG_FILE_BYTES", 100)  # 12 lines of 9 bytes pass it
    function = _local_function("prints_its_number.handler", log_dir=tmp_path / "logs")

    for n in range(50):
        function.invoke({"n": n})

    log = tmp_path / "logs" / "f.log"
    kept = [log.with_name("f.log.2"), log.with_name("f.log.1"), log]
    assert sorted(p.name for p in log.parent.iterdir() if p.suffix != ".lock") == [
        "f.log",
        "f.log.1",
        "f.log.2",
    ]
    assert all(p.stat().st_size <= 100 for p in kept)
    lines = [line for p in kept for line in p.read_text(encoding="utf-8").splitlines()]
    # the latest lines, in order, none lost between the files
    assert lines == [f"line {n:03d}" for n in range(50 - len(lines), 50)]
    assert len(lines) == 11 + 11 + 6


def test_a_log_file_is_measured_in_bytes_and_may_reach_its_size(tmp_path, monkeypatch):
    from brewops.firehose_runtime import functions

    monkeypatch.setattr(functions, "LOG_FILE_BYTES", 10)
    log = tmp_path / "f.log"

    functions.append_to_log(log, "ab\n")
    functions.append_to_log(log, "éééé\n")  # 5 characters, 9 bytes: 12 bytes would pass 10
    assert (
        log.with_name("f.log.1").read_text(encoding="utf-8"),
        log.read_text(encoding="utf-8"),
    ) == ("ab\n", "éééé\n")
    functions.append_to_log(log, "x")  # 10 bytes: at the size, not past it
    assert log.read_text(encoding="utf-8") == "éééé\nx"
    assert not log.with_name("f.log.2").exists()


def test_a_call_whose_log_finds_the_disk_full_keeps_its_result(tmp_path, monkeypatch, caplog):
    import errno

    from brewops.firehose_runtime import functions

    (tmp_path / "sends_a_beer.py").write_text(
        "def handler(event, context):\n    print('sent 7')\n    return {'ids': [7]}\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "logs" / "f.log"

    def disk_full(log_file: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(log_file))

    monkeypatch.setattr(functions, "append_to_log", disk_full)
    invocation = _local_function("sends_a_beer.handler", log_dir=log.parent).invoke({})

    assert (invocation.result, invocation.error) == ({"ids": [7]}, None)
    assert f"log lines not written to {log}" in caplog.text
    assert "No space left on device" in caplog.text


def test_a_log_that_finds_the_disk_full_names_its_file(tmp_path, monkeypatch):
    import errno

    from brewops.firehose_runtime import functions

    log = tmp_path / "f.log"

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    opened = Path.open
    monkeypatch.setattr(
        Path,
        "open",
        lambda self, *args, **kw: FullDisk() if self == log else opened(self, *args, **kw),
    )
    with pytest.raises(OSError) as raised:
        functions.append_to_log(log, "a line\n")

    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(log)


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


@contextlib.contextmanager
def released_at_the_latest(event: threading.Event, seconds: float = 10) -> Any:
    """Sets `event` when the block ends, or after `seconds`: a runtime that waits for a
    handler blocked on it fails the test instead of hanging it."""
    guard = threading.Timer(seconds, event.set)
    guard.start()
    try:
        yield
    finally:
        guard.cancel()
        event.set()


BLOCKING_HANDLER = """
import logging
import os
import threading

RELEASE = threading.Event()
CALLS = []  # (thread, context) of each call
LATE = []  # what the first call saw once released

def handler(event, context):
    CALLS.append((threading.current_thread(), context))
    print("started", event["n"])
    if event["n"] == 1:
        RELEASE.wait()
        LATE.append(context.get_remaining_time_in_millis())
        print("late line of call 1")
        logging.getLogger("blocking").warning("late record of call 1")
        return "late answer"
    RELEASE.set()
    CALLS[0][0].join()  # the first call prints and logs while this one runs
    logging.getLogger("blocking").warning("record of call %s", event["n"])
    return "answer"
"""


def test_a_call_still_running_at_its_timeout_is_given_up_and_the_next_call_runs(
    tmp_path, monkeypatch
):
    (tmp_path / "blocking_handler.py").write_text(BLOCKING_HANDLER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "blocking_handler", raising=False)
    handler = importlib.import_module("blocking_handler")
    log_file = tmp_path / "logs" / "f.log"
    function = _local_function("blocking_handler.handler", log_dir=log_file.parent)

    with released_at_the_latest(handler.RELEASE):
        function.configuration["Timeout"] = 1
        timed_out = function.invoke({"n": 1})
        assert not handler.RELEASE.is_set(), "given up while the handler is still blocked"
        assert handler.CALLS[0][0].is_alive()
        function.configuration["Timeout"] = 60
        following = function.invoke({"n": 2})  # releases the first call, which ends during it

    assert timed_out.failed and timed_out.result is None and timed_out.error_trace is None
    assert timed_out.error == (
        f"Sandbox.Timedout: RequestId: {timed_out.request_id} Error: "
        "Task timed out after 1.00 seconds"
    )
    assert handler.LATE == [0], "given up no sooner than the deadline its context gave"
    assert (following.failed, following.result) == (False, "answer")
    assert [r.getMessage() for r in following.log_records] == ["record of call 2"]
    assert log_file.read_text(encoding="utf-8").splitlines() == [
        "started 1",
        f"{timed_out.request_id} Task timed out after 1.00 seconds",
        "started 2",
    ]


WALL_CLOCK_JUMPING_HANDLER = """
def handler(event, context):
    event["jump"]()  # the wall clock moves while the call runs: NTP, a laptop waking up
    return context.get_remaining_time_in_millis()
"""


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_a_call_has_its_timeout_whichever_way_the_wall_clock_jumps(tmp_path, monkeypatch, jump):
    (tmp_path / "wall_clock_handler.py").write_text(WALL_CLOCK_JUMPING_HANDLER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    function = _local_function("wall_clock_handler.handler")
    function.configuration["Timeout"] = 3
    wall = time.time

    def jump_the_wall_clock() -> None:
        monkeypatch.setattr(time, "time", lambda: wall() + jump)

    invocation = function.invoke({"jump": jump_the_wall_clock})

    # forward, the call still has its time; back, it is not given an hour more
    assert not invocation.failed, invocation.error
    assert 2_000 < invocation.result <= 3_000


def test_a_handler_exception_fails_the_call_with_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "raising_handler.py").write_text(
        "def handler(event, context):\n    raise ValueError('bad event')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    invocation = _local_function("raising_handler.handler").invoke({})

    assert invocation.error == "ValueError: bad event"
    assert 'raising_handler.py", line 2, in handler' in invocation.error_trace


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_a_handler_that_exits_or_is_interrupted_ends_the_caller_too(tmp_path, monkeypatch, raised):
    # not a function error Lambda would report: what the caller's own code would raise
    (tmp_path / "exiting_handler.py").write_text(
        f"def handler(event, context):\n    raise {raised.__name__}()\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "exiting_handler", raising=False)

    with pytest.raises(raised):
        _local_function("exiting_handler.handler").invoke({})


def test_a_call_given_up_on_does_not_keep_the_process_from_ending(tmp_path):
    # a handler that never returns must not hang `brewops stream drain` when it is done
    (tmp_path / "forever.py").write_text(
        "import threading\n\ndef handler(event, context):\n    threading.Event().wait()\n",
        encoding="utf-8",
    )
    configuration = {
        "FunctionName": "f",
        "FunctionArn": FUNCTION_ARN,
        "Handler": "forever.handler",
        "Timeout": 1,
    }
    script = (
        "from brewops.firehose_runtime.functions import LocalFunction\n"
        f"print(LocalFunction({configuration!r}).invoke({{}}).error)\n"
    )

    done = run_in_group(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        encoding="locale",
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("Task timed out after 1.00 seconds")


def test_a_call_past_its_deadline_has_no_time_left_not_less_than_none():
    from brewops.firehose_runtime.functions import LambdaContext

    context = LambdaContext("f", "$LATEST", FUNCTION_ARN, 128, "r", "g", "s", deadline_ms=1000)
    assert context.get_remaining_time_in_millis() == 0


def test_a_call_that_printed_nothing_gives_the_console_back_and_logs_nothing(tmp_path, monkeypatch):
    (tmp_path / "silent.py").write_text(
        "def handler(event, context):\n    return 1\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    console = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("a-console-logger")
    logger.addHandler(console)
    logs = _Logs()
    try:
        _local_function("silent.handler", log_dir=tmp_path / "logs", logs_client=logs).invoke({})
        assert console.stream is sys.stderr
    finally:
        logger.removeHandler(console)
    assert not (tmp_path / "logs" / "f.log").exists()
    assert (logs.streams, logs.calls) == (set(), [])


def test_a_logger_made_at_import_beside_a_stand_in_console_logs_into_later_calls_logs(
    tmp_path, monkeypatch
):
    # Powertools' Logger keeps the sys.stdout it is made with: first imported while a
    # stand-in held that place (click's CliRunner, a redirect), it would keep the stand-in,
    # and the calls made once it is gone would log into it instead of the function's log
    (tmp_path / "logs_at_import.py").write_text(
        "import logging, sys\n"
        "logger = logging.getLogger('logs-at-import')\n"
        "logger.addHandler(logging.StreamHandler(sys.stdout))\n"
        "logger.setLevel(logging.INFO)\n\n"
        "def handler(event, context):\n"
        "    logger.info('record not transformed')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "logs_at_import", raising=False)
    first = _local_function("logs_at_import.handler", log_dir=tmp_path / "first")
    later = _local_function("logs_at_import.handler", log_dir=tmp_path / "later")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            first.invoke({})
        later.invoke({})
    finally:
        logging.getLogger("logs-at-import").handlers.clear()
        sys.modules.pop("logs_at_import", None)

    for function in (first, later):
        assert function.log_file.read_text(encoding="utf-8") == "record not transformed\n"


HANDLER_LOGS_AT_EACH_CALL = """
import contextlib, importlib, io, json, sys
at_import, at_call = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(at_import):
    app = importlib.import_module(sys.argv[1])
with contextlib.redirect_stdout(at_call):
    app.logger.warning("record not transformed")
print(json.dumps([at_import.getvalue(), at_call.getvalue()]))
"""


@pytest.mark.parametrize(
    "module_name", ["brewops.lambdas.transform.app", "brewops.lambdas.producer.app"]
)
def test_a_deployed_handler_logs_to_the_stdout_of_each_call_not_of_its_import(module_name):
    # pytest imports the handlers at collection, beside its capture: a logger that kept the
    # stdout of its import would write a later call's lines there, not in the function's log
    result = run_in_group(
        [sys.executable, "-c", HANDLER_LOGS_AT_EACH_CALL, module_name],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    at_import, at_call = json.loads(result.stdout)
    assert at_import == ""
    assert json.loads(at_call)["message"] == "record not transformed"


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
        "    return os.environ['WHO']\n",
        encoding="utf-8",
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
    lines = (tmp_path / "logs" / "f.log").read_text(encoding="utf-8").splitlines()
    first, second = lines[0].split()[1], lines[2].split()[1]
    assert lines == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]


class _MakesALoggerWhenChecked:
    """An entry of logging's table of loggers whose type check makes a logger, as another
    thread may at that moment (one importing a module whose logger is new)."""

    @property
    def __class__(self) -> type:  # what isinstance() reads of an object of another type
        logging.getLogger("made.meanwhile")
        return _MakesALoggerWhenChecked


def test_a_logger_made_by_another_thread_as_a_call_starts_fails_no_call(tmp_path, monkeypatch):
    # the call looks for the loggers that write to the console, whose streams it swaps; a
    # logger made meanwhile changes the table it goes through
    (tmp_path / "plain_handler.py").write_text(
        "def handler(event, context):\n    return 'done'\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loggers = {**logging.Logger.manager.loggerDict, "checked": _MakesALoggerWhenChecked()}
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", loggers)

    invocation = _local_function("plain_handler.handler").invoke({})

    assert (invocation.result, invocation.error) == ("done", None)
    assert "made.meanwhile" in loggers, "the logger was made while the call listed them"


def test_a_thread_walking_the_environment_through_a_call_meets_no_missing_variable(
    tmp_path, monkeypatch
):
    # botocore and requests walk os.environ on every request (for proxies), in whatever
    # thread they run, while the other thread's function call starts and ends
    (tmp_path / "walker_handler.py").write_text(
        "import os\n\n"
        "def handler(event, context):\n"
        "    walk = iter(os.environ.items())\n"
        "    next(walk)  # the keys are listed on the first step\n"
        "    return walk\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    function = _local_function("walker_handler.handler", environment={"WHO": "walker"})
    monkeypatch.delenv("WHO", raising=False)
    before = dict(os.environ)

    walk = function.invoke({}).result
    walked = dict(walk)  # the rest of the walk, after the call has ended

    assert walked["WHO"] == "walker", "a variable the process lacked stays while in use"
    assert {name: os.environ.get(name) for name in before} == before, "the rest is put back"
    forget_function_environments()
    assert dict(os.environ) == before, "forgotten once no other thread runs"


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (FUNCTION_ARN, ("brewops-dev-transform", None)),
        (FUNCTION_ARN + ":7", ("brewops-dev-transform", "7")),
        (FUNCTION_ARN + ":live", ("brewops-dev-transform", "live")),
        ("brewops-dev-transform:live", ("brewops-dev-transform", "live")),
        ("brewops-dev-transform", ("brewops-dev-transform", None)),
    ],
)
def test_a_function_name_or_arn_gives_the_function_and_its_qualifier(function, expected):
    assert split_function_arn(function) == expected


def test_a_qualified_lambda_arn_runs_that_version_of_the_function():
    class Lambda:
        def __init__(self):
            self.requests: list[dict[str, str]] = []

        def get_function_configuration(self, **request):
            self.requests.append(request)
            return {"FunctionName": "f", "FunctionArn": FUNCTION_ARN, "Handler": "m.handler"}

    client = Lambda()
    LocalFunction.lookup(FUNCTION_ARN + ":7", client)
    LocalFunction.lookup(FUNCTION_ARN + ":$LATEST", client)
    assert client.requests == [
        {"FunctionName": "brewops-dev-transform", "Qualifier": "7"},
        {"FunctionName": "brewops-dev-transform"},
    ]


def test_the_handler_sees_the_function_configuration_from_import_to_return(tmp_path, monkeypatch):
    (tmp_path / "config_echo.py").write_text(
        "import os\n\n"
        "AT_IMPORT = os.environ.get('TABLE')\n\n"
        "def handler(event, context):\n"
        "    return {\n"
        "        'at_import': AT_IMPORT,\n"
        "        'table': os.environ.get('TABLE'),\n"
        "        'region': os.environ.get('AWS_REGION'),\n"
        "        'memory': context.memory_limit_in_mb,\n"
        "        'remaining_ms': context.get_remaining_time_in_millis(),\n"
        "        'memory_variable': os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE'),\n"
        "        'log_group': os.environ.get('AWS_LAMBDA_LOG_GROUP_NAME'),\n"
        "        'log_stream': context.log_stream_name,\n"
        "    }\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "config_echo", raising=False)
    configuration = {
        "FunctionName": "f",
        "FunctionArn": "arn:aws:lambda:ap-south-1:123456789012:function:f",
        "Handler": "config_echo.handler",
        "MemorySize": 512,
        "Environment": {"Variables": {"TABLE": "deployed"}},
    }

    deployed_call = LocalFunction(dict(configuration)).invoke({})
    deployed = deployed_call.result
    overridden = LocalFunction(dict(configuration), environment={"TABLE": "local"}).invoke({})
    longer = LocalFunction({**configuration, "Timeout": 60}).invoke({}).result

    assert deployed["at_import"] == "deployed"  # module code runs with the environment too
    assert (deployed["table"], deployed["region"], deployed["memory"]) == (
        "deployed",
        "ap-south-1",
        512,
    )
    assert (deployed["memory_variable"], deployed["log_group"]) == ("512", "/aws/lambda/f")
    assert deployed["log_stream"] == f"local/{deployed_call.request_id}"
    assert overridden.result["table"] == "local"  # the runtime's variables win
    assert 0 < deployed["remaining_ms"] <= 3000, "Lambda's default timeout is 3 s"
    assert 3000 < longer["remaining_ms"] <= 60000


class _Logs:
    """A CloudWatch Logs client that keeps what it is given and checks it as the service."""

    class exceptions:
        class ResourceAlreadyExistsException(Exception):
            pass

    def __init__(self):
        self.groups: set[str] = set()
        self.streams: set[str] = set()
        self.calls: list[list[str]] = []

    def create_log_group(self, logGroupName):
        if logGroupName in self.groups:
            raise self.exceptions.ResourceAlreadyExistsException(logGroupName)
        self.groups.add(logGroupName)

    def create_log_stream(self, logGroupName, logStreamName):
        assert logGroupName in self.groups
        self.streams.add(logStreamName)

    def put_log_events(self, logGroupName, logStreamName, logEvents):
        assert logStreamName in self.streams, "no such log stream"
        assert 1 <= len(logEvents) <= 10_000, "PutLogEvents takes 1 to 10,000 events"
        size = sum(len(event["message"].encode()) + 26 for event in logEvents)
        assert size <= 1_048_576, "and at most 1 MB"
        assert all(len(event["message"].encode()) + 26 <= 262_144 for event in logEvents)
        assert all(event["message"] for event in logEvents), "an empty message is refused"
        self.calls.append([event["message"] for event in logEvents])

    @property
    def messages(self) -> list[str]:
        return [message for call in self.calls for message in call]


def test_every_printed_line_reaches_the_log_group_within_the_service_limits(tmp_path, monkeypatch):
    (tmp_path / "chatty.py").write_text(
        "def handler(event, context):\n"
        "    for n in range(event['lines']):\n"
        "        print(f'line {n}')\n"
        "        print()\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    logs = _Logs()

    _local_function("chatty.handler", logs_client=logs).invoke({"lines": 10_001})
    # another instance of the function (a later drain) logs into the same log group
    _local_function("chatty.handler", logs_client=logs).invoke({"lines": 1})

    assert logs.messages == [f"line {n}" for n in range(10_001)] + ["line 0"]
    assert len(logs.streams) == 2


def test_long_lines_reach_the_log_group_in_calls_within_one_megabyte(tmp_path, monkeypatch):
    (tmp_path / "verbose.py").write_text(
        "def handler(event, context):\n"
        "    print('short')\n"
        "    for n in range(5):\n"
        "        print(str(n) * 200_000)\n"
        "    print('é' * 200_000)\n"  # two bytes each: cut at a character's edge, encoding="utf-8", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    logs = _Logs()

    _local_function("verbose.handler", logs_client=logs).invoke({})

    longest = 262_144 - 26
    assert logs.messages == ["short", *(str(n) * 200_000 for n in range(5)), "é" * (longest // 2)]
    assert len(logs.calls) == 2  # five lines of 200 KB fill one megabyte


@pytest.mark.parametrize(
    ("lines", "logged"),
    [
        # six lines within a megabyte of characters, not of UTF-8 bytes
        (["é" * 90_000] * 6, ["é" * 90_000] * 6),
        # five lines within a megabyte but for the 26 bytes the service adds to each
        (["a" * 209_700] * 5, ["a" * 209_700] * 5),
        # a line cut inside a character: the character is left out whole
        (["x" + "é" * 200_000], ["x" + "é" * 131_058]),
    ],
    ids=["utf-8", "overhead", "cut"],
)
def test_log_lines_are_put_as_the_service_counts_their_bytes(tmp_path, monkeypatch, lines, logged):
    (tmp_path / "printing_handler.py").write_text(
        "def handler(event, context):\n    for line in event['lines']:\n        print(line)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    logs = _Logs()  # refuses a call the service would refuse

    _local_function("printing_handler.handler", logs_client=logs).invoke({"lines": lines})

    assert logs.messages == logged


def test_an_invocation_keeps_the_log_records_its_handler_emitted(tmp_path, monkeypatch):
    (tmp_path / "logging_handler.py").write_text(
        "import logging\n\n"
        "def handler(event, context):\n"
        "    logging.getLogger('transform').warning('record %s not transformed', event['n'])\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    invocation = _local_function("logging_handler.handler").invoke({"n": 3})

    assert [r.getMessage() for r in invocation.log_records] == ["record 3 not transformed"]
