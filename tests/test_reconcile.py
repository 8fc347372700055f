"""Reconciliation: the ids the producer sent, the records read back from S3 (counted
exactly), the error records and the reasons the transform logged for them."""

from __future__ import annotations

import base64
import gzip
import io
import json
import time
import zlib
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from brewops import reconcile as reconciling
from brewops.digests import payload_sha256
from brewops.producer import FailedRecord, ProduceReport
from brewops.reconcile import (
    ErrorRecord,
    Locations,
    LoggedReasons,
    Reconciliation,
    cleaned_ids,
    delete_delivered,
    error_records,
    explain,
    logged_reasons,
    object_counts,
    raw_ids,
    reconcile,
    sent_ids,
    tick_ids,
    wait_for_delivery,
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


@pytest.mark.parametrize("beer_id", [1.5, True, float("inf"), float("nan")])
def test_an_id_that_is_not_a_whole_number_names_no_beer_that_was_sent(beer_id):
    # 1.5 and true are not beer 1: the transform refuses both, so neither may count as it
    beers = [{"id": beer_id}, {"id": 2.0}]
    ticks = [Tick(1, "producer", {}, {"ids": [beer_id, 2.0]})]

    assert sent_ids(beers, ProduceReport()) == [2]
    assert tick_ids(ticks) == [2]


def test_the_logged_reason_explains_only_records_the_function_refused():
    refused = ErrorRecord("errors/cleaned/a", 5, "Lambda.ProcessingFailedStatus", "status set")
    unconverted = ErrorRecord("errors/cleaned/b", 6, "DataFormatConversion.MalformedData", "")
    unnamed = ErrorRecord("errors/cleaned/c", None, "Lambda.ProcessingFailedStatus", "")

    explain(
        [refused, unconverted, unnamed],
        LoggedReasons(by_beer_id={5: "abv: not a number", 6: "ph: not a number"}),
    )

    assert refused.logged_reason == "abv: not a number"
    assert unconverted.logged_reason is None, "the function did not refuse it: Firehose did"
    assert unnamed.logged_reason is None


def test_the_digest_of_its_bytes_explains_an_error_record_that_names_no_beer():
    # GIVEN two copies of beer 5 refused for different reasons, and records without an id
    bad_json = ErrorRecord("a", None, "Lambda.ProcessingFailedStatus", "", payload_sha256="d1")
    binary = ErrorRecord("b", None, "Lambda.ProcessingFailedStatus", "", payload_sha256="d2")
    first = ErrorRecord("c", 5, "Lambda.ProcessingFailedStatus", "", payload_sha256="d3")
    second = ErrorRecord("d", 5, "Lambda.ProcessingFailedStatus", "", payload_sha256="d4")
    unlogged = ErrorRecord("e", None, "Lambda.ProcessingFailedStatus", "", payload_sha256="d5")
    reasons = LoggedReasons(
        by_beer_id={5: "name: missing"},
        by_payload={"d1": "malformed JSON", "d2": "not UTF-8", "d3": "abv", "d4": "name: missing"},
    )

    explain([bad_json, binary, first, second, unlogged], reasons)

    assert [e.logged_reason for e in (bad_json, binary, first, second, unlogged)] == [
        "malformed JSON",
        "not UTF-8",
        "abv",  # by its bytes, not the reason logged last for beer 5
        "name: missing",
        None,
    ]


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

    assert logged_reasons(stack.client("logs"), function).by_beer_id == {7: "second try"}


def _gzip_lines(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def _parquet_ids(ids: list[int]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array(ids, type=pa.int64())}), buffer)
    return buffer.getvalue()


def _b64(value) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _error_line(beer: dict) -> bytes:
    return json.dumps(
        {
            "errorCode": "Lambda.ProcessingFailedStatus",
            "errorMessage": "ProcessingFailed status set for record",
            "rawData": _b64(beer),
        }
    ).encode()


DAY = "ingest_date=2024-05-01/"


def _delivered(stack, raw_lines: tuple[bytes, ...], cleaned_ids: list[int]) -> tuple[Any, str]:
    """One raw and one cleaned object in a day's partition, as the delivery streams write
    them; returns the S3 client and the bucket."""
    s3, bucket = stack.client("s3"), stack.outputs["BucketName"]
    s3.put_object(Bucket=bucket, Key=f"raw/{DAY}raw-1.gz", Body=_gzip_lines(*raw_lines))
    s3.put_object(Bucket=bucket, Key=f"cleaned/{DAY}cleaned-1", Body=_parquet_ids(cleaned_ids))
    return s3, bucket


@pytest.mark.emulator
def test_counts_are_exact_whatever_blank_lines_the_objects_hold(streaming_stack):
    stack = streaming_stack()
    raw = (b'{"id": 1}', b"", b'{"id": 2}', b"   ", b'{"id": 3}', b"not json")
    s3, bucket = _delivered(stack, raw, cleaned_ids=[1, 2, 99, 2])
    s3.put_object(
        Bucket=bucket,
        Key=f"errors/cleaned/processing-failed/{DAY}errors-1",
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
        "errors/redriven/r1/errors/cleaned/processing-failed/ingest_date=2024-05-01/e",
    ]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=_error_line({"id": 1}) + b"\n")

    where = Locations.from_outputs(stack.outputs, stack.session)

    assert where.errors == ("errors/cleaned/", "errors/raw/")
    # what redrive moved goes too: it would stand for raw records of a later run
    assert delete_delivered(stack.outputs, stack.session) == 3
    assert stack.keys("errors/") == []


def test_an_error_without_a_message_is_named_by_its_code_alone():
    assert ErrorRecord("k", None, "Unreadable", "").reason == "Unreadable"
    assert ErrorRecord("k", 1, "Lambda.ProcessingFailed", "abv").reason == (
        "Lambda.ProcessingFailed: abv"
    )


def test_a_record_in_raw_but_in_neither_cleaned_nor_the_errors_is_lost():
    result = Reconciliation(
        produced=2,
        raw_records=2,
        raw_unique_ids=2,
        cleaned_rows=1,
        cleaned_unique_ids=1,
        errors=[],
        missing_downstream=[2],
    )

    assert not result.ok and not result.figures()["nothing_lost"]
    assert str(result).splitlines()[-2:] == ["MISSING from cleaned and errors: [2]", "RECORDS LOST"]


def test_records_missing_while_objects_could_not_be_read_are_not_called_lost():
    # S3 refused every cleaned object: their records are there, only not counted
    result = Reconciliation(
        produced=325,
        raw_records=325,
        raw_unique_ids=325,
        cleaned_rows=0,
        cleaned_unique_ids=0,
        errors=[],
        unreadable={"cleaned/x-1": "ClientError: AccessDenied"},
        missing_downstream=list(range(1, 326)),
    )

    assert result.unread and not result.ok and not result.figures()["nothing_lost"]
    assert str(result).splitlines()[-1] == (
        "NOT CHECKED: 1 object(s) could not be read (UNREADABLE above) and may hold the "
        "records missing"
    )


def test_records_produced_of_which_none_arrived_are_lost_not_nothing_to_reconcile():
    result = Reconciliation(
        produced=2,
        raw_records=0,
        raw_unique_ids=0,
        cleaned_rows=0,
        cleaned_unique_ids=0,
        errors=[],
        missing_from_raw=[1, 2],
        missing_downstream=[1, 2],
    )

    assert str(result).splitlines()[-1] == "RECORDS LOST"


def test_with_nothing_produced_there_is_nothing_to_reconcile_and_nothing_is_proven():
    result = Reconciliation(
        produced=0, raw_records=0, raw_unique_ids=0, cleaned_rows=0, cleaned_unique_ids=0, errors=[]
    )

    assert not result.ok and not result.figures()["nothing_lost"]
    assert str(result).splitlines()[-1] == "NOTHING TO RECONCILE: no records were produced"


def test_without_a_transform_function_no_reason_is_looked_up():
    assert logged_reasons(logs=None, function=None) == LoggedReasons()


def _result(ok: bool, errors=()) -> Reconciliation:
    return Reconciliation(
        1, 1, 1, int(ok), int(ok), list(errors), missing_downstream=[] if ok else [1]
    )


def test_waiting_for_delivery_stops_as_soon_as_nothing_is_lost(monkeypatch):
    polls = iter([_result(False), _result(True, [ErrorRecord("k", 1, "Lambda.X", "")])])
    slept, explained = [], []
    monkeypatch.setattr(reconciling, "reconcile", lambda *a, **kw: next(polls))
    monkeypatch.setattr(reconciling.time, "sleep", slept.append)
    monkeypatch.setattr(reconciling.Locations, "from_outputs", lambda outputs, session: None)
    monkeypatch.setattr(
        reconciling, "_explain_from_log", lambda errors, *_: explained.extend(errors)
    )

    result = wait_for_delivery([1], {}, timeout=600, poll=15)

    assert result.ok and slept == [15]
    assert [e.key for e in explained] == ["k"], "the log explains the last answer's errors"


def test_waiting_for_nothing_produced_does_not_wait(monkeypatch):
    nothing = Reconciliation(0, 0, 0, 0, 0, [])

    def sleep(seconds: float) -> None:  # fails at once, not after the 600 s of polls
        pytest.fail("waited, but nothing was produced, so nothing will arrive")

    monkeypatch.setattr(reconciling, "reconcile", lambda *a, **kw: nothing)
    monkeypatch.setattr(reconciling.time, "sleep", sleep)

    result = wait_for_delivery([], {}, timeout=600, poll=15)

    assert result is nothing and not result.ok


def test_waiting_for_delivery_leaves_out_what_was_delivered_before_the_run(monkeypatch):
    left_out = []

    def compare(produced, outputs, **kwargs):
        left_out.append(kwargs.get("delivered_before"))
        return _result(True)

    monkeypatch.setattr(reconciling, "reconcile", compare)

    wait_for_delivery([1], {}, delivered_before=frozenset({"raw/earlier"}))

    assert left_out == [frozenset({"raw/earlier"})]


# ------------------------------------------------------------------ objects in S3


@pytest.fixture
def bucket(aws_env):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="edges", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return s3


@pytest.mark.emulator
def test_hidden_and_folder_objects_hold_no_records(bucket):
    bucket.put_object(Bucket="edges", Key="raw/", Body=b"")
    bucket.put_object(Bucket="edges", Key="raw/_tmp", Body=b'{"id": 9}\n')
    bucket.put_object(Bucket="edges", Key="raw/.part", Body=b'{"id": 9}\n')
    bucket.put_object(Bucket="edges", Key="raw/a.gz", Body=_gzip_lines(b'{"id": 1}'))
    bucket.put_object(Bucket="edges", Key="cleaned/", Body=b"")
    bucket.put_object(Bucket="edges", Key="cleaned/a", Body=_parquet_ids([1]))
    unreadable: dict[str, str] = {}

    assert raw_ids(bucket, "edges", "raw/", unreadable) == [1]
    assert cleaned_ids(bucket, "edges", "cleaned/", unreadable) == [1]
    assert unreadable == {}


@pytest.mark.emulator
def test_raw_lines_that_are_json_but_not_a_beer_have_no_id(bucket):
    body = _gzip_lines(b'{"id": 1}', b"[1, 2]", b'"text"', b'{"id": "x"}', b"7")
    bucket.put_object(Bucket="edges", Key="raw/a.gz", Body=body)

    assert raw_ids(bucket, "edges", "raw/") == [1, None, None, None, None]


@pytest.mark.emulator
def test_raw_and_error_records_whose_id_is_not_a_whole_number_have_no_id(bucket):
    lines = (b'{"id": 1.5}', b'{"id": true}', b'{"id": Infinity}', b'{"id": 2.0}')
    bucket.put_object(Bucket="edges", Key="raw/a.gz", Body=_gzip_lines(*lines))
    errors = b"\n".join(_error_line({"id": i}) for i in (1.5, True, float("inf")))
    bucket.put_object(Bucket="edges", Key="errors/cleaned/a", Body=errors)

    assert raw_ids(bucket, "edges", "raw/") == [None, None, None, 2]
    assert [e.beer_id for e in error_records(bucket, "edges", ["errors/cleaned/"])] == [None] * 3


def _corrupt(body: bytes) -> bytes:
    """A gzip object whose compressed data, past its header, is damaged."""
    return body[:10] + b"\xff" * 8 + body[18:]


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("damage", "raised"),
    [(lambda body: body[:-20], EOFError), (_corrupt, zlib.error)],
    ids=["truncated", "corrupt"],
)
def test_an_object_that_cannot_be_read_is_named_and_the_others_counted(bucket, damage, raised):
    bucket.put_object(Bucket="edges", Key="raw/a.gz", Body=_gzip_lines(b'{"id": 1}'))
    bucket.put_object(Bucket="edges", Key="raw/b.gz", Body=damage(_gzip_lines(b'{"id": 2}' * 40)))
    bucket.put_object(Bucket="edges", Key="raw/c.gz", Body=_gzip_lines(b'{"id": 3}'))
    unreadable: dict[str, str] = {}

    assert raw_ids(bucket, "edges", "raw/", unreadable) == [1, 3]
    assert list(unreadable) == ["raw/b.gz"]
    with pytest.raises(raised):
        raw_ids(bucket, "edges", "raw/")  # nowhere to note it: the caller hears of it


@pytest.mark.emulator
def test_objects_delivered_before_the_run_are_left_out_of_raw_cleaned_and_errors(bucket):
    for key, body in {
        "raw/earlier.gz": _gzip_lines(b'{"id": 1}'),
        "raw/now.gz": _gzip_lines(b'{"id": 2}'),
        "cleaned/earlier": _parquet_ids([1]),
        "cleaned/now": _parquet_ids([2]),
        "errors/cleaned/earlier": _error_line({"id": 1}),
        "errors/cleaned/now": _error_line({"id": 3}),
    }.items():
        bucket.put_object(Bucket="edges", Key=key, Body=body)
    earlier = frozenset({"raw/earlier.gz", "cleaned/earlier", "errors/cleaned/earlier"})

    assert raw_ids(bucket, "edges", "raw/", skip=earlier) == [2]
    assert cleaned_ids(bucket, "edges", "cleaned/", skip=earlier) == [2]
    errors = error_records(bucket, "edges", ["errors/cleaned/"], skip=earlier)
    assert [e.beer_id for e in errors] == [3]


@pytest.mark.emulator
def test_error_records_of_every_shape_are_kept_with_what_they_say(bucket):
    lines = [
        _error_line({"id": 1}),
        b"[1]",
        b"not json",
        json.dumps({"lastErrorCode": "Old", "lastErrorMessage": "m", "rawData": _b64({"id": 2})}),
        json.dumps({"ErrorCode": "Conversion", "ErrorMessage": "n", "rawData": _b64([3])}),
        json.dumps({"rawData": "not base64!"}),
    ]
    body = b"\n".join(line.encode() if isinstance(line, str) else line for line in lines)
    bucket.put_object(Bucket="edges", Key="errors/cleaned/a", Body=body)

    found = error_records(bucket, "edges", ["errors/cleaned/"])

    assert [e.payload_sha256 for e in found] == [
        payload_sha256(json.dumps({"id": 1}).encode()),
        None,
        None,
        payload_sha256(json.dumps({"id": 2}).encode()),
        payload_sha256(json.dumps([3]).encode()),
        None,  # no bytes to digest
    ]
    assert [(e.beer_id, e.code, e.message) for e in found] == [
        (1, "Lambda.ProcessingFailedStatus", "ProcessingFailed status set for record"),
        (None, "Unreadable", "line 2 is not a JSON object"),
        (None, "Unreadable", "line 3 is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (2, "Old", "m"),
        (None, "Conversion", "n"),
        (None, "Unknown", ""),
    ]


@pytest.mark.emulator
def test_reasons_are_not_looked_up_where_there_is_no_log_or_no_reason(aws_env):
    import boto3

    logs = boto3.client("logs")
    assert logged_reasons(logs, "brewops-no-such-function") == LoggedReasons()

    entry = {"message": "record not transformed", "beer_id": 7}
    _put_log_lines(logs, "brewops-transform", [entry, {**entry, "beer_id": 8, "reason": "abv"}])
    assert logged_reasons(logs, "brewops-transform") == LoggedReasons(by_beer_id={8: "abv"})


# ------------------------------------------------------------------ the whole reconciliation


@pytest.mark.emulator
def test_a_beer_produced_twice_must_arrive_twice(streaming_stack):
    stack = streaming_stack()
    _delivered(stack, (b'{"id": 1}', b'{"id": 2}', b'{"id": 7}'), cleaned_ids=[1, 2])

    twice = reconcile([1, 1, 2], stack.outputs, session=stack.session, explain_errors=False)
    from_raw = reconcile(None, stack.outputs, session=stack.session, explain_errors=False)

    assert (twice.produced, twice.missing_from_raw, twice.missing_downstream) == (3, [1], [1])
    assert twice.unexpected_ids == [7], "an id only raw holds was never produced either"
    assert (from_raw.produced, from_raw.missing_downstream) == (3, [7])
    sizes = {row["what"]: row["bytes"] for row in object_counts(stack.outputs, stack.session)}
    assert sizes["cleaned"] == len(_parquet_ids([1, 2]))


@pytest.mark.emulator
def test_ids_taken_from_raw_count_the_line_redrive_moved_for_a_records_first_copy(
    streaming_stack,
):
    stack = streaming_stack()
    # beers 1 and 2 failed and were re-driven: raw holds each twice; 1 is now in cleaned,
    # 2 failed again; their first error lines were moved under errors/redriven/
    raw = (b'{"id": 1}', b'{"id": 2}', b'{"id": 1}', b'{"id": 2}')
    s3, bucket = _delivered(stack, raw, cleaned_ids=[1])
    s3.put_object(
        Bucket=bucket,
        Key=f"errors/cleaned/processing-failed/{DAY}errors-2",
        Body=_error_line({"id": 2}) + b"\n",
    )
    s3.put_object(
        Bucket=bucket,
        Key=f"errors/redriven/r1/errors/cleaned/processing-failed/{DAY}errors-1",
        Body=_error_line({"id": 1}) + b"\n" + _error_line({"id": 2}) + b"\n",
    )

    from_raw = reconcile(None, stack.outputs, session=stack.session, explain_errors=False)
    produced = reconcile([1, 2], stack.outputs, session=stack.session, explain_errors=False)

    assert (from_raw.produced, from_raw.missing_downstream) == (4, [])
    assert [e.beer_id for e in from_raw.errors] == [2], "a moved line is no error record"
    assert (produced.ok, produced.missing_downstream) == (True, [])


@pytest.mark.emulator
def test_the_reason_the_transform_logged_explains_its_error_record(streaming_stack):
    stack = streaming_stack()
    s3, bucket = stack.client("s3"), stack.outputs["BucketName"]
    s3.put_object(
        Bucket=bucket,
        Key="errors/cleaned/processing-failed/ingest_date=2024-05-01/errors-1",
        Body=_error_line({"id": 3, "abv": "strong"}) + b"\n",
    )
    entry = {"message": "record not transformed", "beer_id": 3, "reason": "abv: not a number"}
    _put_log_lines(stack.client("logs"), stack.outputs["TransformFunctionName"], [entry])

    result = reconcile([3], stack.outputs, session=stack.session)

    assert [e.logged_reason for e in result.errors] == ["abv: not a number"]


@pytest.mark.emulator
def test_a_record_that_names_no_beer_is_explained_by_the_digest_of_its_bytes(streaming_stack):
    # GIVEN error records of bytes that name no beer, and the lines the transform logged
    stack = streaming_stack()
    s3, bucket = stack.client("s3"), stack.outputs["BucketName"]
    payloads = [b'{"id": 4, "name": "cut', b'{"name": "no id"}\n', b"\xff\xfe binary"]
    lines = [
        json.dumps(
            {
                "errorCode": "Lambda.ProcessingFailedStatus",
                "errorMessage": "ProcessingFailed status set for record",
                "rawData": base64.b64encode(data).decode(),
            }
        ).encode()
        for data in payloads
    ]
    s3.put_object(
        Bucket=bucket,
        Key="errors/cleaned/processing-failed/ingest_date=2024-05-01/errors-1",
        Body=b"\n".join(lines) + b"\n",
    )
    reasons = ["malformed JSON", "id: missing", "data: not UTF-8 text"]
    entries = [
        {
            "message": "record not transformed",
            "payload_sha256": payload_sha256(data),
            "reason": reason,
        }
        for data, reason in zip(payloads, reasons, strict=True)
    ]
    _put_log_lines(stack.client("logs"), stack.outputs["TransformFunctionName"], entries)

    result = reconcile([1], stack.outputs, session=stack.session)

    assert [e.logged_reason for e in result.errors] == reasons


@pytest.mark.parametrize("timeout", [0, -5, "900", None, True, float("nan")])
def test_a_delivery_timeout_that_cannot_wait_is_refused_before_any_read(monkeypatch, timeout):
    # 0 or less stopped at the first read and reported every record lost; "900" a TypeError
    monkeypatch.setattr(reconciling, "reconcile", lambda *a, **kw: pytest.fail("read S3"))
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds above 0"):
        wait_for_delivery([1], {}, timeout=timeout, poll=15)


def test_a_delivery_timeout_is_named_as_the_caller_calls_it():
    assert reconciling.checked_timeout(900) == 900.0
    assert reconciling.checked_timeout(0.5) == 0.5
    with pytest.raises(ValueError, match=r"^delivery_timeout must be .* not -1$"):
        reconciling.checked_timeout(-1, "delivery_timeout")


class _BucketRefusingSomeDeletes:
    """An S3 client whose bucket refuses to delete some keys, as a bucket policy, an object
    lock or a missing s3:DeleteObject permission does: DeleteObjects answers 200 and lists
    them under Errors."""

    def __init__(self, keys: list[str], refused: set[str]) -> None:
        self.keys, self.refused = keys, refused

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        keys = self.keys

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> Any:
                yield {"Contents": [{"Key": k, "Size": 1} for k in keys if k.startswith(Prefix)]}

        return Pages()

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:
        asked = [o["Key"] for o in Delete["Objects"]]
        self.keys = [k for k in self.keys if k not in asked or k in self.refused]
        return {
            "Deleted": [{"Key": k} for k in asked if k not in self.refused],
            "Errors": [
                {"Key": k, "Code": "AccessDenied", "Message": "Access Denied"}
                for k in asked
                if k in self.refused
            ],
        }


def test_objects_the_bucket_refuses_to_delete_are_named_not_counted_deleted(monkeypatch):
    s3 = _BucketRefusingSomeDeletes(["raw/a.gz", "cleaned/b", "errors/raw/c"], {"cleaned/b"})
    session = type("Session", (), {"client": lambda self, name: s3})()
    where = Locations(bucket="b", raw="raw/", cleaned="cleaned/", errors=("errors/raw/",))
    monkeypatch.setattr(reconciling.Locations, "from_outputs", lambda outputs, session: where)

    with pytest.raises(reconciling.ObjectsNotDeleted, match=r"1 of 3 .*cleaned/b: AccessDenied"):
        delete_delivered({}, session)

    assert s3.keys == ["cleaned/b"]  # the others are deleted all the same


def test_many_refused_deletions_name_the_first_five_and_count_them_all():
    from brewops.errors import refused_deletions

    refused = [{"Key": f"cleaned/{n}", "Code": "AccessDenied"} for n in range(7)]

    message = refused_deletions(refused, 9, "in s3://b")

    assert message.startswith("7 of 9 objects in s3://b were not deleted (cleaned/0: AccessDenied;")
    assert "cleaned/4: AccessDenied)" in message and "cleaned/5" not in message
    assert "s3:DeleteObject" in message and "object lock" in message


@pytest.mark.emulator
def test_an_error_line_nested_too_deeply_is_one_unreadable_record(bucket):
    too_deep = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's JSON reader goes
    body = b"\n".join([_error_line({"id": 1}), too_deep])
    bucket.put_object(Bucket="edges", Key="errors/cleaned/a", Body=body)

    found = error_records(bucket, "edges", ["errors/cleaned/"])

    assert [(e.beer_id, e.code) for e in found] == [
        (1, "Lambda.ProcessingFailedStatus"),
        (None, "Unreadable"),
    ]
    assert found[1].message.startswith("line 2 is not JSON")


def test_the_error_records_of_each_reason_name_their_beers():
    refused = "Lambda.ProcessingFailedStatus"
    errors = [
        ErrorRecord(f"errors/cleaned/{i}", beer_id, refused, "", logged_reason="abv")
        for i, beer_id in enumerate([9, 3, 9, None])
    ]
    errors += [ErrorRecord(f"errors/cleaned/p{i}", i, "Parquet", "") for i in range(100, 125)]
    result = Reconciliation(
        produced=29,
        raw_records=29,
        raw_unique_ids=28,
        cleaned_rows=0,
        cleaned_unique_ids=0,
        errors=errors,
    )

    lines = str(result).splitlines()
    assert lines[4:8] == [
        "  25 x Parquet",
        "    beer ids: " + ", ".join(map(str, range(100, 120))) + " and 5 more",
        f"  4 x {refused} (abv)",
        "    beer ids: 3, 9",  # each beer once; a record naming none is only counted
    ]


class _AcceptsAll:
    """A Kinesis client that accepts every record and keeps their partition keys."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        self.keys += [entry["PartitionKey"] for entry in Records]
        results = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * len(Records)
        return {"FailedRecordCount": 0, "Records": results}


@pytest.mark.emulator
def test_records_named_by_another_field_are_keyed_cleaned_and_counted_by_it(bucket, monkeypatch):
    """Another source's records name themselves by another field: `schema.ID_COLUMN` is the
    one place that says which, for the producer, the transform, reconcile and the tables."""
    from brewops import schema, tables, transform, validation
    from brewops.producer import put_beers

    # GIVEN a source whose records are named by `coffee_id`
    monkeypatch.setattr(schema, "ID_COLUMN", "coffee_id")
    coffees = [{"coffee_id": 7, "name": "Kenya AA"}, {"coffee_id": 8, "name": "Sidamo"}]

    # WHEN they are produced, cleaned, delivered and read back
    kinesis = _AcceptsAll()
    report = put_beers(coffees, "coffees", kinesis)
    cleaned = transform.clean_beer(coffees[0], "2024-05-01 12:30:00.000")
    bucket.put_object(Bucket="edges", Key="raw/a.gz", Body=_gzip_lines(b'{"coffee_id": 7}'))
    table = pa.table({"coffee_id": pa.array([7], type=pa.int64())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    bucket.put_object(Bucket="edges", Key="cleaned/a", Body=buffer.getvalue())
    bucket.put_object(Bucket="edges", Key="errors/cleaned/a", Body=_error_line(coffees[1]))
    frame = pd.DataFrame({"coffee_id": [7, 7, 8], "ingested_at": ["b", "a", "a"]})

    # THEN each step finds them by it
    assert report.ok and kinesis.keys == ["7", "8"]
    assert cleaned["coffee_id"] == 7 and "id" not in cleaned
    with pytest.raises(transform.InvalidBeer, match=r"^coffee_id: missing$"):
        transform.clean_beer({"id": 7, "name": "Kenya AA"}, "2024-05-01 12:30:00.000")
    assert sent_ids(coffees, report) == [7, 8]
    assert raw_ids(bucket, "edges", "raw/") == [7]
    assert cleaned_ids(bucket, "edges", "cleaned/") == [7]
    assert [e.beer_id for e in error_records(bucket, "edges", ["errors/cleaned/"])] == [8]
    assert tables.latest_per_id(frame)["ingested_at"].tolist() == ["b", "a"]
    assert validation.count_duplicates(frame).surplus_rows == 1


# ------------------------------------------------------------------ where the log is read from


def _refused_line(**fields: Any) -> bytes:
    raw = base64.b64encode(json.dumps({"id": 7}).encode()).decode()
    return json.dumps({"rawData": raw, "errorCode": "Lambda.ProcessingFailed", **fields}).encode()


@pytest.mark.parametrize(
    ("given", "kept"), [(1767225600123, 1767225600123), ("1767225600123", None), (True, None)]
)
def test_an_error_record_keeps_when_kinesis_took_it(given, kept):
    line = _refused_line(approximateArrivalTimestamp=given)
    assert reconciling.parse_error_line("errors/x", 1, line).arrived_ms == kept


def test_the_log_is_read_from_a_little_before_the_first_refused_record_arrived():
    slack = reconciling.LOG_CLOCK_SLACK_MS
    first, later = 1767225600000, 1767229200000
    errors = [
        reconciling.parse_error_line("errors/x", n, _refused_line(approximateArrivalTimestamp=t))
        for n, t in enumerate((later, first), start=1)
    ]
    assert reconciling.logged_since(errors) == first - slack
    # one record that does not say when it arrived: the whole log
    errors.append(reconciling.parse_error_line("errors/x", 3, _refused_line()))
    assert reconciling.logged_since(errors) is None
    assert reconciling.logged_since([]) is None


@pytest.mark.emulator
def test_reasons_logged_before_the_window_are_not_read(aws_env):
    import boto3

    logs = boto3.client("logs")
    group = "/aws/lambda/brewops-transform"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    entry = {"message": "record not transformed"}
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {
                "timestamp": now - 3_600_000,
                "message": json.dumps({**entry, "beer_id": 7, "reason": "old"}),
            },
            {"timestamp": now, "message": json.dumps({**entry, "beer_id": 8, "reason": "abv"})},
        ],
    )

    assert logged_reasons(logs, "brewops-transform").by_beer_id == {7: "old", 8: "abv"}
    since = now - 60_000
    assert logged_reasons(logs, "brewops-transform", since).by_beer_id == {8: "abv"}


def test_reconcile_and_validation_read_the_log_from_the_first_refused_record_on(monkeypatch):
    from types import SimpleNamespace

    from brewops import validation

    arrived = 1767225600000
    refused = [
        reconciling.parse_error_line(
            "errors/x", 1, _refused_line(approximateArrivalTimestamp=arrived)
        )
    ]
    asked = []
    monkeypatch.setattr(
        reconciling,
        "logged_reasons",
        lambda logs, function, since_ms=None: asked.append(since_ms) or LoggedReasons(),
    )
    session = SimpleNamespace(client=lambda service: None)
    reconciling._explain_from_log(refused, SimpleNamespace(transform_function="f"), session)

    monkeypatch.setattr(reconciling, "error_records", lambda *args, **kwargs: refused)
    monkeypatch.setattr(validation, "aws_client", lambda tgt, service: None)
    table = SimpleNamespace(location="s3://bucket/cleaned/")
    target = SimpleNamespace(outputs={"TransformFunctionName": "f"})
    validation.diverted_records(table, target)

    assert asked == [arrived - reconciling.LOG_CLOCK_SLACK_MS] * 2
