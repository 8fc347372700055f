"""Reconciliation: the ids the producer sent, the records read back from S3 (counted
exactly), the error records and the reasons the transform logged for them."""

from __future__ import annotations

import base64
import gzip
import io
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from brewops.producer import FailedRecord, ProduceReport
from brewops.reconcile import (
    ErrorRecord,
    Locations,
    delete_delivered,
    explain,
    logged_reasons,
    reconcile,
    sent_ids,
    tick_ids,
)
from brewops.scheduler import Tick


def test_sent_ids_leave_out_failed_oversize_and_unkeyed_beers():
    beers = [{"id": 1}, {"id": 2}, {"id": 3}, {"name": "no id"}, None, {"id": "abc"}, {"id": 1}]
    report = ProduceReport(
        failed=[FailedRecord("2", "ProvisionedThroughputExceededException", "slow down")],
        oversize=["3"],
    )

    assert sent_ids(beers, report) == [1, 1]


def test_tick_ids_are_the_numeric_ids_of_the_ticks_that_succeeded():
    ticks = [
        Tick(1, "producer", {}, {"ids": [1, "7", None, "abc"]}),
        Tick(2, "producer", {}, None, "ProduceError: 1 of 1 records not sent"),
        Tick(3, "producer", {}, {"ids": None}),
    ]

    assert tick_ids(ticks) == [1, 7]


def test_the_logged_reason_explains_only_records_the_function_refused():
    refused = ErrorRecord("errors/cleaned/a", 5, "Lambda.ProcessingFailedStatus", "status set")
    unconverted = ErrorRecord("errors/cleaned/b", 6, "DataFormatConversion.MalformedData", "")
    unnamed = ErrorRecord("errors/cleaned/c", None, "Lambda.ProcessingFailedStatus", "")

    explain([refused, unconverted, unnamed], {5: "abv: not a number", 6: "ph: not a number"})

    assert refused.logged_reason == "abv: not a number"
    assert unconverted.logged_reason is None, "the function did not refuse it: Firehose did"
    assert unnamed.logged_reason is None


def _put_log_lines(logs, function: str, entries: list[dict]) -> None:
    group = f"/aws/lambda/{function}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)  # older events are refused, as by CloudWatch Logs
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": json.dumps(e)} for i, e in enumerate(entries)],
    )


@pytest.mark.emulator
def test_the_reason_logged_last_for_a_beer_is_the_one_kept(streaming_stack):
    stack = streaming_stack()
    function = f"{stack.outputs['TransformFunctionName']}-reasons"
    entry = {"message": "record not transformed", "beer_id": 7, "result": "ProcessingFailed"}
    _put_log_lines(
        stack.client("logs"),
        function,
        [{**entry, "reason": "first try"}, {**entry, "reason": "second try"}],
    )

    assert logged_reasons(stack.client("logs"), function) == {7: "second try"}


def _gzip_lines(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def _parquet_ids(ids: list[int]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array(ids, type=pa.int64())}), buffer)
    return buffer.getvalue()


def _error_line(beer: dict) -> bytes:
    return json.dumps(
        {
            "errorCode": "Lambda.ProcessingFailedStatus",
            "errorMessage": "ProcessingFailed status set for record",
            "rawData": base64.b64encode(json.dumps(beer).encode()).decode(),
        }
    ).encode()


@pytest.mark.emulator
def test_counts_are_exact_whatever_blank_lines_the_objects_hold(streaming_stack):
    stack = streaming_stack()
    s3, bucket = stack.client("s3"), stack.outputs["BucketName"]
    day = "ingest_date=2024-05-01/"
    s3.put_object(
        Bucket=bucket,
        Key=f"raw/{day}raw-1.gz",
        Body=_gzip_lines(b'{"id": 1}', b"", b'{"id": 2}', b"   ", b'{"id": 3}', b"not json"),
    )
    s3.put_object(Bucket=bucket, Key=f"cleaned/{day}cleaned-1", Body=_parquet_ids([1, 2, 99, 2]))
    s3.put_object(
        Bucket=bucket,
        Key=f"errors/cleaned/processing-failed/{day}errors-1",
        Body=b"\n" + _error_line({"id": 3, "abv": "strong"}) + b"\n\n  \n",
    )

    result = reconcile([1, 2, 3], stack.outputs, session=stack.session, explain_errors=False)

    assert result.figures() == {
        "produced": 3,
        "raw": 4,  # three beers and a line that is not one; blank lines are no records
        "raw_unique_ids": 3,
        "cleaned_rows": 4,  # beer 2 delivered twice
        "cleaned_unique_ids": 3,
        "errors": 1,
        "unreadable_objects": 0,
        "missing_from_raw": 0,
        "missing_downstream": 0,
        "nothing_lost": True,
    }
    assert [(e.beer_id, e.code) for e in result.errors] == [(3, "Lambda.ProcessingFailedStatus")]
    assert result.unexpected_ids == [99], "a cleaned id nobody produced is named"


@pytest.mark.emulator
def test_both_delivery_streams_error_prefixes_are_read_and_deleted(streaming_stack):
    stack = streaming_stack()
    s3, bucket = stack.client("s3"), stack.outputs["BucketName"]
    keys = [
        "errors/raw/processing-failed/ingest_date=2024-05-01/raw-errors-1",
        "errors/cleaned/processing-failed/ingest_date=2024-05-01/cleaned-errors-1",
    ]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=_error_line({"id": 1}) + b"\n")

    where = Locations.from_outputs(stack.outputs, stack.session)

    assert where.errors == ("errors/cleaned/", "errors/raw/")
    assert delete_delivered(stack.outputs, stack.session) == 2
    assert stack.keys("errors/") == []
