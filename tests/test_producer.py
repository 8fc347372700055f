"""The Kinesis producer against a real moto server process: batching within the Kinesis
limits, retries of only the failed entries, throttling, oversize records, and the producer
Lambda on a local Punk API server."""

from __future__ import annotations

import http.server
import inspect
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from brewops import producer
from brewops.lambdas.producer import app
from brewops.producer import (
    FailedRecord,
    ProduceError,
    ProduceReport,
    produce_random_beers,
    put_beers,
    put_payloads,
    serialise_beer,
)
from brewops.punkapi.errors import ServerError
from brewops.reconcile import sent_ids
from fixtures.infra import LambdaContext

THROTTLED = "ProvisionedThroughputExceededException"


def beers(n: int, start: int = 1, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"Beer {i}", "abv": 5.0, **fields} for i in range(start, start + n)]


def no_sleep(waits: list[float] | None = None):
    return waits.append if waits is not None else lambda seconds: None


class Recording:
    """Passes calls through to a real client and remembers each PutRecords request.
    The producer calls from several threads: the doubles' bookkeeping holds `lock`."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append(Records)
        return self.client.put_records(Records=Records, **target)


class FailingEntries(Recording):
    """Answers the entries with the given partition keys with an ErrorCode (without sending
    them) the given number of times, as Kinesis does when a shard is over its limits."""

    def __init__(self, client: Any, failures: dict[str, int], code: str = THROTTLED) -> None:
        super().__init__(client)
        self.failures = dict(failures)
        self.code = code

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        failing = []
        with self.lock:
            self.requests.append(Records)
            for entry in Records:
                failing.append(self.failures.get(entry["PartitionKey"], 0) > 0)
                if failing[-1]:
                    self.failures[entry["PartitionKey"]] -= 1
        passing = [e for e, fails in zip(Records, failing, strict=True) if not fails]
        accepted = iter(
            self.client.put_records(Records=passing, **target)["Records"] if passing else []
        )
        results = [
            {"ErrorCode": self.code, "ErrorMessage": f"Rate exceeded for shard in {target}"}
            if fails
            else next(accepted)
            for fails in failing
        ]
        return {"FailedRecordCount": sum(failing), "Records": results}


class ThrottledCalls(Recording):
    """Rejects the first `times` calls as a whole, as a throttled stream does."""

    def __init__(self, client: Any, times: int, code: str = THROTTLED) -> None:
        super().__init__(client)
        self.times = times
        self.code = code

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        with self.lock:
            throttled = self.times > 0
            if throttled:
                self.times -= 1
                self.requests.append(Records)
        if throttled:
            raise ClientError(
                {"Error": {"Code": self.code, "Message": "Rate exceeded"}}, "PutRecords"
            )
        return super().put_records(Records=Records, **target)


class TakesEverything:
    """Accepts every entry of every call and remembers the calls: how records are packed
    into calls, checked without the emulator."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append(Records)
        results = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * len(Records)
        return {"FailedRecordCount": 0, "Records": results}

    def keys(self) -> list[list[str]]:
        return [[entry["PartitionKey"] for entry in call] for call in self.requests]


@pytest.fixture
def stream_ids(stream_records):
    """`stream_ids(name)`: the sorted beer ids in the stream."""
    return lambda stream: sorted(json.loads(r["Data"])["id"] for r in stream_records(stream))


# ------------------------------------------------------------------ sending


@pytest.mark.emulator
def test_the_real_catalogue_goes_in_once_keyed_by_id(
    kinesis_client, kinesis_stream, catalog_beers, stream_records
):
    report = put_beers(catalog_beers, kinesis_stream, kinesis_client)

    assert report.ok
    assert (report.records, report.sent, report.calls) == (325, 325, 1)
    assert report.failed == [] and report.oversize == [] and report.retried == 0
    records = stream_records(kinesis_stream)
    assert sorted(int(r["PartitionKey"]) for r in records) == list(range(1, 326))
    by_id = {json.loads(r["Data"])["id"]: r for r in records}
    assert by_id[1]["Data"] == serialise_beer(catalog_beers[0])
    assert all(r["Data"].endswith(b"\n") and r["Data"].count(b"\n") == 1 for r in records)


@pytest.mark.emulator
def test_a_stream_arn_works_as_well_as_a_name(kinesis_client, kinesis_stream, stream_ids):
    arn = kinesis_client.describe_stream_summary(StreamName=kinesis_stream)[
        "StreamDescriptionSummary"
    ]["StreamARN"]

    report = put_beers(beers(3), arn, kinesis_client)

    assert report.sent == 3
    assert stream_ids(kinesis_stream) == [1, 2, 3]


@pytest.mark.emulator
def test_calls_hold_at_most_500_records(kinesis_client, kinesis_stream, stream_ids):
    client = Recording(kinesis_client)

    report = put_beers(beers(1201), kinesis_stream, client)

    assert sorted(len(r) for r in client.requests) == [201, 500, 500]
    assert report.calls == 3 and report.sent == 1201
    assert stream_ids(kinesis_stream) == list(range(1, 1202))


@pytest.mark.emulator
def test_one_call_at_a_time_keeps_the_order_of_a_keys_records(
    kinesis_client, kinesis_stream, stream_records
):
    first, later = beers(1, name="first"), beers(1, name="later")
    report = put_beers(
        first + beers(600, start=2) + later, kinesis_stream, kinesis_client, concurrency=1
    )

    assert report.ok and report.calls == 2
    names = [json.loads(r["Data"])["name"] for r in stream_records(kinesis_stream)]
    assert [n for n in names if n in ("first", "later")] == ["first", "later"]


@pytest.mark.emulator
def test_calls_hold_at_most_5_mib(kinesis_client, kinesis_stream):
    client = Recording(kinesis_client)
    big = beers(12, description="x" * 900_000)  # ~0.86 MiB each: five fit in 5 MiB, six do not

    report = put_beers(big, kinesis_stream, client)

    sizes = [sum(len(e["Data"]) + len(e["PartitionKey"]) for e in r) for r in client.requests]
    assert sorted(len(r) for r in client.requests) == [2, 5, 5]
    assert all(size <= producer.MAX_BYTES_PER_CALL for size in sizes)
    assert report.sent == 12


@pytest.mark.emulator
def test_a_call_fills_to_exactly_5_mib_and_not_a_byte_more(kinesis_client, kinesis_stream):
    client = Recording(kinesis_client)
    mib = 1024 * 1024
    # five records of exactly 1 MiB (data + key) fill a call; a sixth of 1 byte does not fit
    payloads = [(f"k{i}", b"x" * (mib - 2)) for i in range(5)] + [("5", b"")]

    report = put_payloads(payloads, kinesis_stream, client)

    assert sorted(len(r) for r in client.requests) == [1, 5]
    assert report.ok and report.sent == 6


@pytest.mark.emulator
@pytest.mark.parametrize(("fits", "over"), [("fits", "over"), ("fité", "ovér")])
def test_a_record_of_exactly_1_mib_is_sent_one_byte_more_is_oversize(
    kinesis_client, kinesis_stream, stream_records, fits, over
):
    mib = 1024 * 1024
    # data + key, the key in UTF-8 bytes (é is two), not in characters
    data = {key: mib - len(key.encode()) for key in (fits, over)}
    payloads = [(fits, b"x" * data[fits]), (over, b"x" * (data[over] + 1))]

    report = put_payloads(payloads, kinesis_stream, kinesis_client)

    assert report.oversize == [over] and report.sent == 1
    assert [r["PartitionKey"] for r in stream_records(kinesis_stream)] == [fits]


@pytest.mark.emulator
def test_an_oversize_record_is_reported_not_sent(
    kinesis_client, kinesis_stream, stream_ids, caplog
):
    caplog.set_level(logging.INFO, logger="brewops.producer")
    batch = [*beers(3), {"id": 99, "name": "Huge", "description": "x" * (1024 * 1024)}]

    report = put_beers(batch, kinesis_stream, kinesis_client)

    assert report.oversize == ["99"]
    assert (report.records, report.sent) == (4, 3)
    (logged,) = [r for r in caplog.records if r.getMessage() == "records over 1 MiB not sent"]
    assert (logged.levelno, logged.oversize, logged.partition_keys) == (logging.ERROR, 1, ["99"])
    assert not report.ok
    assert stream_ids(kinesis_stream) == [1, 2, 3]
    with pytest.raises(ProduceError, match="1 over 1 MiB"):
        report.raise_for_failures()


@pytest.mark.emulator
def test_a_beer_without_id_is_reported_not_sent(kinesis_client, kinesis_stream):
    report = put_beers([*beers(2), {"name": "Anonymous"}], kinesis_stream, kinesis_client)

    assert report.sent == 2 and report.records == 3
    assert [(f.partition_key, f.error_code) for f in report.failed] == [("", "MissingId")]


@pytest.mark.emulator
def test_a_beer_with_an_empty_id_is_missing_its_id(kinesis_client, kinesis_stream, stream_ids):
    batch = [*beers(2), {"id": "", "name": "Blank"}, {"id": 0, "name": "Zero"}]

    report = put_beers(batch, kinesis_stream, kinesis_client)

    assert (report.records, report.sent) == (4, 3)
    assert [(f.partition_key, f.error_code) for f in report.failed] == [("", "MissingId")]
    assert stream_ids(kinesis_stream) == [0, 1, 2]  # 0 is an id: the transform judges it


@pytest.mark.emulator
def test_an_empty_key_is_reported_and_the_call_goes_ahead(
    kinesis_client, kinesis_stream, stream_records
):
    # Kinesis refuses a whole call over one empty partition key
    recording = Recording(kinesis_client)

    report = put_payloads([("k1", b"a"), ("", b"b")], kinesis_stream, recording)

    assert (report.records, report.sent) == (2, 1)
    assert [(f.partition_key, f.error_code) for f in report.failed] == [("", "InvalidPartitionKey")]
    assert [[e["PartitionKey"] for e in call] for call in recording.requests] == [["k1"]]
    assert [r["PartitionKey"] for r in stream_records(kinesis_stream)] == ["k1"]


@pytest.mark.emulator
def test_the_logged_summary_counts_the_beers_that_cannot_be_sent(
    kinesis_client, kinesis_stream, caplog
):
    with caplog.at_level(logging.INFO, logger="brewops.producer"):
        put_beers([*beers(2), {"name": "Anonymous"}], kinesis_stream, kinesis_client)

    (summary,) = [r for r in caplog.records if r.getMessage() == "records produced"]
    assert (summary.records, summary.sent, summary.ok) == (3, 2, False)
    (not_sent,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert not_sent.reasons == [": MissingId: not a beer with an id: {'name': 'Anonymous'}"]


@pytest.mark.emulator
def test_a_key_kinesis_would_refuse_is_reported_and_the_call_goes_ahead(
    kinesis_client, kinesis_stream, stream_ids
):
    # Kinesis refuses a whole call over one key longer than 256 characters.
    long_id = int("9" * 300)
    recording = Recording(kinesis_client)

    batch = [*beers(3), {"id": long_id, "name": "Long"}]
    report = put_beers(batch, kinesis_stream, recording)

    assert (report.records, report.sent) == (4, 3)
    assert sent_ids(batch, report) == [1, 2, 3]
    assert [f.error_code for f in report.failed] == ["InvalidPartitionKey"]
    assert "1 to 256 characters" in report.failed[0].error_message
    assert all(len(e["PartitionKey"]) <= 256 for call in recording.requests for e in call)
    assert stream_ids(kinesis_stream) == [1, 2, 3]


@pytest.mark.emulator
def test_a_key_of_256_characters_is_sent_one_longer_or_not_unicode_is_not(
    kinesis_client, kinesis_stream, stream_records
):
    lone_surrogate = json.loads('"\\ud800"')  # a str, but no UTF-8 for Kinesis
    payloads = [("k" * 256, b"a"), ("k" * 257, b"b"), (lone_surrogate, b"c")]

    report = put_payloads(payloads, kinesis_stream, kinesis_client)

    assert (report.records, report.sent) == (3, 1)
    assert [f.error_code for f in report.failed] == ["InvalidPartitionKey"] * 2
    assert "valid Unicode" in report.failed[1].error_message
    assert [r["PartitionKey"] for r in stream_records(kinesis_stream)] == ["k" * 256]


@pytest.mark.emulator
def test_a_beer_that_is_not_json_is_reported_not_sent(kinesis_client, kinesis_stream, stream_ids):
    lone_surrogate = json.loads('"\\ud800"')  # valid JSON text, not encodable as UTF-8
    batch = [*beers(2), {"id": 8, "name": lone_surrogate}, {"id": 9, "abv": Decimal("5.2")}]

    report = put_beers(batch, kinesis_stream, kinesis_client)

    assert (report.records, report.sent) == (4, 2)
    assert [(f.partition_key, f.error_code) for f in report.failed] == [
        ("8", "NotSerialisable"),
        ("9", "NotSerialisable"),
    ]
    assert sent_ids(batch, report) == [1, 2]
    assert "surrogate" in report.failed[0].error_message
    assert "Decimal" in report.failed[1].error_message
    assert stream_ids(kinesis_stream) == [1, 2]


@pytest.mark.emulator
def test_a_beer_with_nan_is_reported_not_sent_as_invalid_json(
    kinesis_client, kinesis_stream, stream_ids
):
    # Python writes NaN as a bare `NaN`, which no strict JSON reader of raw/ accepts
    batch = [*beers(2), {"id": 7, "name": "Unmeasured", "ibu": float("nan")}]

    report = put_beers(batch, kinesis_stream, kinesis_client)

    assert (report.records, report.sent) == (3, 2)
    assert [(f.partition_key, f.error_code) for f in report.failed] == [("7", "NotSerialisable")]
    assert "not JSON compliant" in report.failed[0].error_message
    assert stream_ids(kinesis_stream) == [1, 2]


@pytest.mark.emulator
def test_a_beer_nested_too_deeply_to_write_is_reported_not_sent(
    kinesis_client, kinesis_stream, stream_ids
):
    nested: list[Any] = []
    for _ in range(5000):  # the depth reading JSON allows is less than writing it needs
        nested = [nested]
    batch = [*beers(2), {"id": 7, "name": "Deep", "ingredients": nested}, *beers(1, start=3)]

    report = put_beers(batch, kinesis_stream, kinesis_client)

    assert (report.records, report.sent) == (4, 3)
    assert [(f.partition_key, f.error_code, f.error_message) for f in report.failed] == [
        ("7", "NotSerialisable", "nested too deeply")
    ]
    assert stream_ids(kinesis_stream) == [1, 2, 3]


def test_a_beer_is_one_compact_line_of_utf8_json():
    # every byte counts against the 1 MiB and 5 MiB limits: no spaces, no \u escapes
    assert serialise_beer({"id": 1, "name": "Bière", "abv": 4.5}) == (
        '{"id":1,"name":"Bière","abv":4.5}\n'.encode()
    )


def test_no_answer_from_kinesis_fails_the_batch_with_the_reason():
    class Unreachable:
        def put_records(self, **request):
            raise EndpointConnectionError(endpoint_url="https://kinesis.example")

    report = put_beers(beers(4), "stream", Unreachable(), sleep=no_sleep())

    assert report.sent == 0 and report.records == 4
    assert {f.error_code for f in report.failed} == {"EndpointConnectionError"}
    assert "kinesis.example" in report.failed[0].error_message
    assert not report.ok


@pytest.mark.emulator
def test_progress_callback_sees_every_record(kinesis_client, kinesis_stream):
    seen: list[int] = []

    put_beers(beers(1100), kinesis_stream, kinesis_client, progress=seen.append)

    assert sorted(seen) == [100, 500, 500]


@pytest.mark.emulator
def test_progress_counts_the_beers_that_are_never_sent(kinesis_client, kinesis_stream):
    seen: list[int] = []
    oversize = {"id": 10, "description": "x" * (1024 * 1024)}
    batch = [*beers(2), {"name": "Anonymous"}, {"id": 9, "ibu": float("nan")}, oversize]

    put_beers(batch, kinesis_stream, kinesis_client, progress=seen.append)

    assert sum(seen) == 5  # a bar of 5 ends full


@pytest.mark.emulator
def test_progress_bar(kinesis_client, kinesis_stream, capsys):
    report = put_beers(beers(10), kinesis_stream, kinesis_client, progress=True)

    assert report.sent == 10
    assert "PutRecords" in (err := capsys.readouterr().err)
    assert "10/10" in err  # the bar knows the total of a list of beers


def test_the_error_names_the_reasons_and_cuts_the_first_message():
    failed = [FailedRecord("1", "B", "m" * 500), FailedRecord("2", "A", "short")]

    error = ProduceError(ProduceReport(records=3, sent=1, failed=failed))

    reasons = f"(A, B; first: {'m' * 200})"  # the codes sorted, the first message cut
    assert str(error) == f"2 of 3 records not sent: 2 failed, 0 over 1 MiB {reasons}"


def test_records_per_second_is_zero_before_any_time_has_passed():
    assert ProduceReport(sent=10, seconds=2.0).records_per_second == 5.0
    assert ProduceReport(sent=10).records_per_second == 0.0


MIB = 1024 * 1024


def test_a_call_holds_500_records_and_not_one_more():
    kinesis = TakesEverything()

    report = put_payloads([(str(i), b"x") for i in range(1001)], "beers", kinesis)

    assert report.ok and sorted(len(call) for call in kinesis.requests) == [1, 500, 500]


def test_a_call_fills_to_5_mib_with_the_keys_and_not_one_byte_more():
    kinesis = TakesEverything()
    # five records of exactly 1 MiB (data + key) fill a call; a sixth of 1 byte does not fit
    payloads = [(f"k{i}", b"x" * (MIB - 2)) for i in range(5)] + [("5", b"")]

    report = put_payloads(payloads, "beers", kinesis)

    assert report.ok and sorted(len(call) for call in kinesis.requests) == [1, 5]


@pytest.mark.parametrize(("fits", "over"), [("fits", "over"), ("fité", "ovér")])
def test_a_record_of_1_mib_with_its_key_in_utf8_goes_one_byte_more_is_oversize(fits, over):
    kinesis = TakesEverything()
    data = {key: MIB - len(key.encode()) for key in (fits, over)}

    report = put_payloads(
        [(fits, b"x" * data[fits]), (over, b"x" * (data[over] + 1))], "beers", kinesis
    )

    assert (report.oversize, report.sent, kinesis.keys()) == ([over], 1, [[fits]])


def test_every_key_kinesis_would_refuse_is_reported_and_never_in_a_call():
    kinesis = TakesEverything()
    lone_surrogate = json.loads('"\\ud800"')
    refused = ["k" * 257, "", lone_surrogate, 7]  # a key that is no string at all too

    report = put_payloads([("k" * 256, b"a"), *((key, b"b") for key in refused)], "beers", kinesis)

    assert kinesis.keys() == [["k" * 256]]
    assert [(f.partition_key, f.error_code) for f in report.failed] == [
        (str(key), "InvalidPartitionKey") for key in refused
    ]
    assert "1 to 256 characters" in report.failed[0].error_message
    assert "valid Unicode" in report.failed[2].error_message


# ------------------------------------------------------------------ retries


@pytest.mark.emulator
def test_only_failed_entries_are_retried(kinesis_client, kinesis_stream, stream_ids):
    # GIVEN a stream that rejects beers 3 and 7 on the first try
    client = FailingEntries(kinesis_client, {"3": 1, "7": 1})
    waits: list[float] = []

    # WHEN ten beers are put
    report = put_beers(beers(10), kinesis_stream, client, sleep=no_sleep(waits))

    # THEN the second call carries only the two failed entries, and each beer is in once
    assert [[e["PartitionKey"] for e in r] for r in client.requests][1] == ["3", "7"]
    assert (report.sent, report.retried, report.calls) == (10, 2, 2)
    assert report.ok and len(waits) == 1
    assert stream_ids(kinesis_stream) == list(range(1, 11))


@pytest.mark.emulator
def test_entries_failing_every_time_are_reported_with_their_reason(
    kinesis_client, kinesis_stream, stream_ids, monkeypatch
):
    client = FailingEntries(kinesis_client, {"2": 10**6}, code="InternalFailure")
    waits: list[float] = []
    settled: list[int] = []
    # full jitter draws each wait in [0, cap]: drawing the top shows the caps
    monkeypatch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: high))

    report = put_beers(
        beers(3),
        kinesis_stream,
        client,
        max_attempts=5,
        backoff=0.5,
        max_backoff=2.0,
        sleep=no_sleep(waits),
        progress=settled.append,
    )

    assert report.sent == 2
    assert [(f.partition_key, f.error_code) for f in report.failed] == [("2", "InternalFailure")]
    assert "Rate exceeded" in report.failed[0].error_message
    assert report.calls == 5 and report.retried == 4
    # exponential from the backoff, capped: min(max_backoff, backoff * 2**(n - 1))
    assert waits == [0.5, 1.0, 2.0, 2.0]
    assert settled == [3]  # the beer given up is settled too: a bar ends full
    assert stream_ids(kinesis_stream) == [1, 3]


@pytest.mark.emulator
@pytest.mark.parametrize(
    "code",
    [
        THROTTLED,
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    ],
)
def test_throttled_calls_are_retried(kinesis_client, kinesis_stream, stream_ids, code):
    client = ThrottledCalls(kinesis_client, times=2, code=code)

    report = put_beers(beers(5), kinesis_stream, client, sleep=no_sleep())

    assert report.ok
    assert (report.throttled_calls, report.calls, report.retried) == (2, 3, 10)
    assert stream_ids(kinesis_stream) == [1, 2, 3, 4, 5]


@pytest.mark.emulator
def test_throttling_that_never_ends_is_reported(kinesis_client, kinesis_stream, caplog):
    client = ThrottledCalls(kinesis_client, times=10**6)

    with caplog.at_level(logging.ERROR, logger="brewops.producer"):
        report = put_beers(beers(5), kinesis_stream, client, max_attempts=3, sleep=no_sleep())

    assert report.sent == 0 and report.calls == 3
    assert {f.error_code for f in report.failed} == {THROTTLED}
    assert sorted(f.partition_key for f in report.failed) == ["1", "2", "3", "4", "5"]
    (logged,) = [r for r in caplog.records if r.getMessage() == "records not accepted by Kinesis"]
    assert (logged.levelno, logged.failed, logged.error_codes) == (logging.ERROR, 5, [THROTTLED])


class ShardAtItsLimit:
    """A provisioned shard kept at its write limit (1 MiB or 1,000 records a second): each
    call gets `per_call` entries in and the rest back as ProvisionedThroughputExceeded."""

    def __init__(self, per_call: int) -> None:
        self.per_call = per_call
        self.accepted: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            taken = Records[: self.per_call]
            self.accepted += [entry["PartitionKey"] for entry in taken]
        throttled = len(Records) - len(taken)
        results = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * len(taken)
        results += [{"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}] * throttled
        return {"FailedRecordCount": throttled, "Records": results}


def test_a_backfill_into_a_shard_at_its_limit_goes_in_whole_and_once():
    # GIVEN a shard that takes 50 of the entries of each call, throttling the rest
    shard = ShardAtItsLimit(per_call=50)

    # WHEN a full call of 500 beers is put: ten tries, more than max_attempts
    report = put_beers(beers(500), "beers", shard, max_attempts=3, sleep=no_sleep())

    # THEN tries that get records in do not count against max_attempts: all go in, once
    assert report.ok and report.sent == 500 and report.calls == shard.calls == 10
    assert sorted(map(int, shard.accepted)) == list(range(1, 501))


def test_a_shard_that_stops_taking_records_is_given_up_max_attempts_tries_later():
    # GIVEN a shard that takes 10 entries of the first call and none after
    shard = ShardAtItsLimit(per_call=10)
    put_records = shard.put_records

    def then_nothing(**request: Any) -> dict[str, Any]:
        # a producer that never gave up would call for ever
        assert shard.calls < 10, "still retrying a shard that takes nothing"
        answer = put_records(**request)
        shard.per_call = 0
        return answer

    shard.put_records = then_nothing  # type: ignore[method-assign]

    report = put_beers(beers(30), "beers", shard, max_attempts=3, sleep=no_sleep())

    # THEN the try that got records in and two more without: three calls, 20 reported
    assert (report.sent, report.calls, len(report.failed)) == (10, 3, 20)
    assert {f.error_code for f in report.failed} == {THROTTLED}


def test_a_tick_with_a_beer_over_1_mib_puts_the_others_and_fails_saying_why(caplog):
    # GIVEN an API that answers a beer with a 1.5 MB description between two others
    huge = {"id": 2, "name": "Huge", "description": "x" * 1_500_000}
    shard = ShardAtItsLimit(per_call=500)

    class Api:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            return [*beers(1), huge, *beers(1, start=3)]

    # WHEN a tick puts them
    with pytest.raises(ProduceError, match="1 of 3 records not sent: 0 failed, 1 over 1 MiB"):
        produce_random_beers(Api(), "beers", count=3, kinesis_client=shard)

    # THEN the others went in, in one call, and the tick's one line names the beer left out
    assert (shard.calls, shard.accepted) == (1, ["1", "3"])
    (logged,) = [r for r in caplog.records if r.name == "brewops.producer"]
    assert (logged.getMessage(), logged.oversize, logged.beer_ids) == (
        "tick incomplete",
        [2],
        [1, 2, 3],
    )


def test_a_tick_into_a_shard_at_its_limit_stops_retrying_in_time(monkeypatch):
    # GIVEN a shard that takes one entry of each call, and a clock one second on per reading
    shard = ShardAtItsLimit(per_call=1)
    seconds = itertools.count()
    monkeypatch.setattr("tenacity.time", SimpleNamespace(monotonic=lambda: float(next(seconds))))
    monkeypatch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: 0.0))

    class Api:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            return beers(n)

    # WHEN a tick puts 30 beers
    with pytest.raises(ProduceError) as raised:
        produce_random_beers(Api(), "beers", count=30, kinesis_client=shard)

    # THEN it gives up TICK_RETRY_SECONDS after its first try, with the reason, the rest kept
    report = raised.value.report
    assert report.calls == shard.calls == report.sent == producer.TICK_RETRY_SECONDS
    assert len(report.failed) == 30 - report.sent
    assert {f.error_code for f in report.failed} == {THROTTLED}


def test_a_tick_gives_up_retrying_within_the_lambdas_reserve_for_kinesis():
    # the last retry may start TICK_RETRY_SECONDS after the first try, after a wait of
    # up to max_backoff: both must fit in what the Lambda keeps for Kinesis
    max_backoff = inspect.signature(producer.put_payloads).parameters["max_backoff"].default
    assert producer.TICK_RETRY_SECONDS + max_backoff < app.KINESIS_RESERVE_SECONDS


def test_a_ticks_kinesis_reserve_holds_its_longest_call_and_the_time_to_report_it():
    # the API stops before the reserve: the first put of a tick must fit in what is left
    longest = producer.longest_call_seconds(app.KINESIS_CLIENT_CONFIG)
    assert longest == 2 * (2 + 5) + 1 + 5  # two attempts, a wait and its retry-after
    assert longest + app.TICK_END_SECONDS <= app.KINESIS_RESERVE_SECONDS


@pytest.mark.parametrize(
    ("retries", "longest"),
    [
        ({"total_max_attempts": 1}, 3),
        ({"mode": "standard", "max_attempts": 2}, 3 * 3 + (1 + 5) + (2 + 5)),
        ({"mode": "standard"}, 3 * 3 + (1 + 5) + (2 + 5)),
        (None, 5 * 3 + (1 + 5) + (2 + 5) + (4 + 5) + (8 + 5)),  # legacy: 4 retries
        ({"total_max_attempts": 8}, 8 * 3 + 1 + 2 + 4 + 8 + 16 + 20 + 20 + 7 * 5),
    ],
)
def test_the_longest_call_waits_out_every_attempt_and_botocores_longest_backoff(retries, longest):
    config = Config(connect_timeout=1, read_timeout=2, retries=retries)

    assert producer.longest_call_seconds(config) == longest


class ConfiguredClient(TakesEverything):
    """Takes everything, with the botocore configuration of a client."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.meta = SimpleNamespace(config=config)


def test_no_call_starts_that_could_end_past_the_deadline():
    # GIVEN a client whose call may take 7 s
    client = ConfiguredClient(
        Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 1})
    )

    # WHEN beers are put with 6 s, then with 8 s, left
    short = put_beers(beers(3), "beers", client, deadline=time.monotonic() + 6)
    ample = put_beers(beers(3), "beers", client, deadline=time.monotonic() + 8)

    # THEN the first makes no call and reports every record, saying why
    assert (short.calls, short.sent, len(short.failed)) == (0, 0, 3)
    assert {f.error_code for f in short.failed} == {"OutOfTime"}
    assert "a PutRecords call may take 7.0 s" in short.failed[0].error_message
    with pytest.raises(ProduceError, match=r"3 of 3 records not sent.*OutOfTime"):
        short.raise_for_failures()
    assert ample.ok and ample.calls == 1 and len(client.requests) == 1


def test_records_put_past_the_deadline_say_no_time_is_left_not_a_negative_time():
    client = ConfiguredClient(
        Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 1})
    )

    report = put_beers(beers(1), "beers", client, deadline=time.monotonic() - 5)

    (failed,) = report.failed
    assert failed.error_message.startswith("0.0 s left before the deadline")
    assert not client.requests


def test_no_retry_waits_for_a_call_that_could_end_past_the_deadline():
    # GIVEN a stream that throttles every call, through a client whose call may take 1 s
    class Throttling(ConfiguredClient):
        def put_records(self, **request: Any) -> dict[str, Any]:
            super().put_records(**request)
            raise ClientError({"Error": {"Code": THROTTLED, "Message": "Rate exceeded"}}, "")

    client = Throttling(
        Config(connect_timeout=0.5, read_timeout=0.5, retries={"total_max_attempts": 1})
    )
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    # WHEN beers are put with 2 s left, each wait of the retries as long as it may be
    deadline = time.monotonic() + 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: high))
        report = put_beers(beers(2), "beers", client, deadline=deadline, sleep=sleep)

    # THEN it retries while the wait and the longest call end by the deadline: after
    # 0.1, 0.2 and 0.4 s, not after 0.8 s more (0.7 + 0.8 + 1 > 2)
    assert waits == [0.1, 0.2, 0.4][: len(waits)] and waits
    assert report.calls == len(waits) + 1 and time.monotonic() < deadline
    assert {f.error_code for f in report.failed} == {THROTTLED}


@pytest.mark.emulator
def test_errors_that_retrying_cannot_fix_are_not_retried(kinesis_client):
    report = put_beers(beers(5), "no-such-stream", kinesis_client, sleep=no_sleep())

    assert (report.calls, report.retried, report.throttled_calls) == (1, 0, 0)
    assert {f.error_code for f in report.failed} == {"ResourceNotFoundException"}
    with pytest.raises(ProduceError, match="5 of 5 records not sent"):
        report.raise_for_failures()


@pytest.mark.emulator
def test_payloads_are_sent_as_given(kinesis_client, kinesis_stream, stream_records):
    report = put_payloads([("k1", b"not json\n"), ("k2", b"")], kinesis_stream, kinesis_client)

    assert report.sent == 2
    data = sorted(r["Data"] for r in stream_records(kinesis_stream))
    assert data == [b"", b"not json\n"]


# ------------------------------------------------------------------ the producer Lambda


def test_a_failed_tick_logs_each_beer_with_its_error_and_attempts_once(caplog, monkeypatch):
    # GIVEN a Kinesis that refuses beer 2 every time, with a long message, and takes the rest
    class RefusesBeer2:
        def __init__(self) -> None:
            self.calls = 0

        def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict:
            self.calls += 1
            results = [
                {"ErrorCode": "InternalFailure", "ErrorMessage": "m" * 1000}
                if entry["PartitionKey"] == "2"
                else {"ShardId": "shardId-000000000001", "SequenceNumber": f"{self.calls}{n}"}
                for n, entry in enumerate(Records)
            ]
            return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}

    class Api:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            return beers(3)

    monkeypatch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: 0))

    # WHEN a tick puts them
    with caplog.at_level(logging.INFO, logger="brewops.producer"), pytest.raises(ProduceError):
        produce_random_beers(Api(), "beers", count=3, kinesis_client=RefusesBeer2())

    # THEN one line says which beers went where, and which failed, why and after how many tries
    (line,) = [r for r in caplog.records if r.name == "brewops.producer"]
    assert (line.getMessage(), line.levelname) == ("tick incomplete", "ERROR")
    assert (line.beer_ids, line.sent, line.retried) == ([1, 2, 3], 2, 7)
    assert (line.calls, line.throttled_calls) == (8, 0) and line.seconds >= 0
    assert line.records == [
        {"beer_id": 1, "shard_id": "shardId-000000000001", "sequence_number": "10"},
        {"beer_id": 3, "shard_id": "shardId-000000000001", "sequence_number": "12"},
    ]
    assert line.failed == [
        {"beer_id": 2, "error_code": "InternalFailure", "error_message": "m" * 200, "attempts": 8}
    ]
    assert "description" not in str(line.__dict__)  # no beer's content


@dataclass
class ShortOnTime(LambdaContext):
    """An invocation with only `remaining_ms` left before the function's timeout."""

    remaining_ms: int = 0

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_env(monkeypatch, kinesis_endpoint, kinesis_client, kinesis_stream):
    """The environment the template gives the function, pointed at the local servers."""
    monkeypatch.setenv("STREAM_NAME", kinesis_stream)
    monkeypatch.setenv("AWS_ENDPOINT_URL", kinesis_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", kinesis_client.meta.region_name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("BEERS_PER_TICK", raising=False)
    # a fresh execution environment: the clients kept for a URL may be an earlier test's,
    # whose server had the port this test's server was given (and another client config)
    app.punkapi_client.cache_clear()
    app.kinesis_client.cache_clear()
    return monkeypatch


@pytest.mark.emulator
def test_a_tick_puts_random_beers_from_the_api(
    lambda_env,
    punkapi_url,
    load_event,
    lambda_context,
    lambda_logs,
    kinesis_client,
    kinesis_stream,
    stream_ids,
):
    # GIVEN the function configured for three beers per tick against a local v2 server
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    lambda_env.setenv("PUNKAPI_VERSION", "v2")
    lambda_env.setenv("BEERS_PER_TICK", "3")
    logs = lambda_logs(app.logger)

    # WHEN EventBridge invokes it
    summary = app.handler(load_event("eventbridge_scheduled"), lambda_context)

    # THEN three beers are in the stream, and the summary and the logs say which
    assert summary["sent"] == 3 and summary["ok"] and summary["fetched"] == 3
    assert summary["scheduled_at"] == "2024-05-01T12:30:00Z"
    assert sorted(summary["ids"]) == stream_ids(kinesis_stream)
    produced = next(line for line in logs() if line["message"] == "tick produced")
    assert produced["beer_ids"] == summary["ids"]
    assert produced["function_request_id"] == lambda_context.aws_request_id
    # AND where each beer went, under the keys the transform logs it with
    assert [r["beer_id"] for r in produced["records"]] == summary["ids"]
    assert all(r["shard_id"].startswith("shardId-") for r in produced["records"])
    assert all(r["sequence_number"] for r in produced["records"])


@pytest.mark.emulator
def test_a_tick_on_a_v3_server_puts_v2_shaped_beers(
    lambda_env,
    punkapi_v3_url,
    load_event,
    lambda_context,
    kinesis_client,
    kinesis_stream,
    stream_records,
):
    lambda_env.setenv("PUNKAPI_URL", punkapi_v3_url)
    lambda_env.setenv("PUNKAPI_VERSION", "v3")

    summary = app.handler(load_event("eventbridge_scheduled"), lambda_context)

    assert summary["sent"] == 1  # BEERS_PER_TICK defaults to one
    (record,) = stream_records(kinesis_stream)
    beer = json.loads(record["Data"])
    assert "image_url" in beer and "image" not in beer
    assert record["PartitionKey"] == str(beer["id"])


@pytest.mark.emulator
def test_a_tick_sends_a_beer_that_fails_the_schema_on_for_the_transform_to_judge(
    lambda_env,
    punkapi_server,
    catalog_beers,
    load_event,
    lambda_context,
    kinesis_stream,
    stream_records,
    caplog,
):
    malformed = {k: v for k, v in catalog_beers[0].items() if k != "tagline"}
    lambda_env.setenv("PUNKAPI_URL", punkapi_server(beers=[malformed]))

    with caplog.at_level(logging.WARNING, logger="brewops.punkapi.client"):
        summary = app.handler(load_event("eventbridge_scheduled"), lambda_context)

    assert summary["sent"] == 1 and summary["ok"]
    (record,) = stream_records(kinesis_stream)
    assert json.loads(record["Data"]) == malformed
    assert any("'tagline'" in r.getMessage() for r in caplog.records)
    # the client lives across ticks; what it kept is this tick's only
    app.handler(load_event("eventbridge_scheduled"), lambda_context)
    api = app.punkapi_client(os.environ["PUNKAPI_URL"], "v2")
    assert [e.field for e in api.schema_errors] == ["tagline"]


@pytest.mark.emulator
def test_a_tick_short_of_time_stops_retrying_the_api_and_says_why(
    lambda_env, punkapi_server, load_event, caplog
):
    lambda_env.setenv("PUNKAPI_URL", punkapi_server(error_rate=1.0, error_statuses=(503,)))
    # no more time left than the Kinesis puts keep for themselves
    context = ShortOnTime(remaining_ms=int(app.KINESIS_RESERVE_SECONDS * 1000))

    with pytest.raises(ServerError), caplog.at_level(logging.ERROR, logger="brewops.producer"):
        app.handler(load_event("eventbridge_scheduled"), context)

    api = app.punkapi_client(os.environ["PUNKAPI_URL"], "v2")
    assert api.requests_made == 1  # not the five retries a client with time to spare makes
    assert any(r.getMessage() == "no beers from the Punk API" for r in caplog.records)


@pytest.mark.emulator
def test_a_tick_that_cannot_put_fails_the_invocation(
    lambda_env, punkapi_url, load_event, lambda_context
):
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    lambda_env.setenv("STREAM_NAME", "no-such-stream")

    with pytest.raises(ProduceError) as raised:
        app.handler(load_event("eventbridge_scheduled"), lambda_context)

    assert {f.error_code for f in raised.value.report.failed} == {"ResourceNotFoundException"}
    # the message is what the Lambda error and the failed tick show: it says why
    assert "(ResourceNotFoundException; first: " in str(raised.value)
    assert "no-such-stream" in str(raised.value)


@pytest.mark.emulator
def test_the_region_lambda_sets_comes_before_the_default_one(
    lambda_env, punkapi_url, lambda_context, kinesis_client, kinesis_stream, stream_ids
):
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    lambda_env.setenv("AWS_REGION", kinesis_client.meta.region_name)  # the runtime sets it
    lambda_env.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")  # where the stream is not

    summary = app.handler({}, lambda_context)

    assert summary["ok"] and stream_ids(kinesis_stream) == summary["ids"]


@pytest.mark.emulator
def test_an_invocation_without_a_scheduled_time_is_still_a_tick(
    lambda_env, punkapi_url, lambda_context, kinesis_stream, stream_ids
):
    # GIVEN an event without "time": the rule's constant Input, or a test invocation
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)

    summary = app.handler({"beers": 2}, lambda_context)

    assert summary["ok"] and summary["scheduled_at"] is None
    assert stream_ids(kinesis_stream) == summary["ids"]


@pytest.mark.emulator
def test_a_tick_whose_kinesis_never_answers_fails_with_the_reason_in_time(
    lambda_env, punkapi_url, load_event, lambda_context
):
    # GIVEN a Kinesis endpoint that takes connections and never answers
    silent = socket.create_server(("127.0.0.1", 0))
    lambda_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    raised: list[BaseException] = []

    def invoke() -> None:
        try:
            app.handler(load_event("eventbridge_scheduled"), lambda_context)
        except Exception as error:
            raised.append(error)

    # WHEN a tick runs
    tick = threading.Thread(target=invoke, daemon=True)
    tick.start()
    tick.join(timeout=app.KINESIS_RESERVE_SECONDS)
    finished_in_time = not tick.is_alive()
    silent.close()  # lets a tick still waiting on it finish

    # THEN it fails within the time kept for Kinesis, saying why, before Lambda's timeout
    assert finished_in_time
    (error,) = raised
    assert isinstance(error, ProduceError)
    assert {f.error_code for f in error.report.failed} == {"ReadTimeoutError"}


@pytest.mark.emulator
def test_a_tick_starts_no_put_that_could_end_in_the_second_kept_to_report(
    lambda_env, punkapi_url, load_event, kinesis_stream, stream_ids, monkeypatch
):
    # GIVEN a function with its longest put and 0.9 s left: less than the second a tick
    # keeps to log and return the failure, and all of it the API's
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    monkeypatch.setattr(app, "KINESIS_RESERVE_SECONDS", 0.0)
    longest = producer.longest_call_seconds(app.KINESIS_CLIENT_CONFIG)
    context = ShortOnTime(remaining_ms=int((longest + 0.9) * 1000))

    # WHEN a tick runs
    with pytest.raises(ProduceError) as raised:
        app.handler(load_event("eventbridge_scheduled"), context)

    # THEN the beer is not put, and the tick says why
    assert {f.error_code for f in raised.value.report.failed} == {"OutOfTime"}
    assert stream_ids(kinesis_stream) == []


class ThrottlingThenSilent(http.server.BaseHTTPRequestHandler):
    """A Kinesis endpoint that throttles every call at once for `throttling_seconds` after
    the first, then takes calls and never answers them (until `release` is set)."""

    throttling_seconds = 3.5
    release = threading.Event()
    calls: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append(time.monotonic())
        if self.calls[-1] - self.calls[0] > self.throttling_seconds:
            self.release.wait(60)
            return
        body = json.dumps({"__type": THROTTLED, "message": "Rate exceeded for shard"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def throttling_then_silent_kinesis() -> Iterator[type[ThrottlingThenSilent]]:
    handler = type("Endpoint", (ThrottlingThenSilent,), {"calls": [], "release": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.emulator
def test_a_tick_into_a_throttling_then_silent_kinesis_ends_before_the_functions_timeout(
    lambda_env, punkapi_url, load_event, throttling_then_silent_kinesis, monkeypatch
):
    # GIVEN a function with 4 s left, keeping 3 s for Kinesis, whose client waits at most
    # 1.5 s for an answer (the template's 60 s, scaled down)
    kinesis = throttling_then_silent_kinesis
    lambda_env.setenv("AWS_ENDPOINT_URL", kinesis.url)
    lambda_env.setenv("PUNKAPI_URL", punkapi_url)
    quick = Config(connect_timeout=0.5, read_timeout=1.0, retries={"total_max_attempts": 1})
    monkeypatch.setattr(app, "KINESIS_CLIENT_CONFIG", quick)
    monkeypatch.setattr(app, "KINESIS_RESERVE_SECONDS", 3.0)
    context = ShortOnTime(remaining_ms=4000)
    # each wait between tries as long as it may be: eight quick throttles in a row would
    # end the tick (max_attempts) before the endpoint falls silent
    monkeypatch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: high))

    # WHEN a tick runs
    started = time.monotonic()
    with pytest.raises(ProduceError) as raised:
        app.handler(load_event("eventbridge_scheduled"), context)
    took = time.monotonic() - started

    # THEN it retries while a call still fits in the time left, then gives up in time,
    # with the reason of its last call
    assert took < 4.0, f"the tick took {took:.1f} s of the 4 s left"
    assert len(kinesis.calls) > 1
    assert {f.error_code for f in raised.value.report.failed} == {THROTTLED}


@pytest.mark.emulator
def test_a_tick_without_beers_from_the_api_is_logged_and_fails(
    kinesis_client, kinesis_stream, caplog
):
    class ApiDown:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            raise ServerError("Service Unavailable", status=503, url="http://127.0.0.1/v2")

    with pytest.raises(ServerError), caplog.at_level(logging.ERROR, logger="brewops.producer"):
        produce_random_beers(ApiDown(), kinesis_stream, 2, kinesis_client, scheduled_at="t")

    (logged,) = [r for r in caplog.records if r.getMessage() == "no beers from the Punk API"]
    assert logged.exc_info and logged.requested == 2 and logged.scheduled_at == "t"


@pytest.mark.emulator
def test_a_tick_counts_the_beers_it_fetched_not_those_it_asked_for(
    kinesis_client, kinesis_stream, catalog_beers
):
    class OneAtMost:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            return catalog_beers[:1]

    summary = produce_random_beers(OneAtMost(), kinesis_stream, 2, kinesis_client)

    assert (summary["requested"], summary["fetched"], summary["ids"]) == (2, 1, [1])


@pytest.mark.emulator
def test_a_tick_with_an_api_answer_that_is_not_a_beer_reports_it(
    kinesis_client, kinesis_stream, catalog_beers, stream_ids
):
    class OddAnswers:
        """Answers as a client that keeps what fails the schema (on_invalid="keep") can."""

        def random(self, n: int = 1) -> list[Any]:
            return [catalog_beers[0], "Not Found"][:n]

    with pytest.raises(ProduceError) as raised:
        produce_random_beers(OddAnswers(), kinesis_stream, 2, kinesis_client)

    assert [f.error_code for f in raised.value.report.failed] == ["MissingId"]
    assert stream_ids(kinesis_stream) == [1]


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PUNKAPI_URL", "http://127.0.0.1:1/v2")
    monkeypatch.setenv("STREAM_NAME", "beers")
    monkeypatch.delenv("PUNKAPI_VERSION", raising=False)
    monkeypatch.delenv("BEERS_PER_TICK", raising=False)

    assert app.Settings.from_env() == app.Settings("http://127.0.0.1:1/v2", "v2", "beers", 1)
