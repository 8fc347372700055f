"""The emulator's Kinesis shards: concurrent PutRecords lose nothing, and reads return
exactly what moto's own scan of a shard returns."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from moto.kinesis.models import Shard

from brewops.local import emulator

MOTO_GET_RECORDS = Shard.get_records


@pytest.fixture
def patched_shard(monkeypatch: pytest.MonkeyPatch) -> type[Shard]:
    """moto's Shard with the emulator's methods, put back after the test."""
    monkeypatch.setattr(Shard, "put_record", Shard.put_record)
    monkeypatch.setattr(Shard, "get_records", Shard.get_records)
    emulator.make_kinesis_shards_thread_safe()
    return Shard


@pytest.mark.emulator
def test_concurrent_put_records_lose_nothing(
    kinesis_client: Any, kinesis_stream: str, stream_records: Any
) -> None:
    # moto alone loses some of these: concurrent calls can take the same sequence number
    def put(batch: int) -> None:
        records = [
            {"Data": f"{batch}-{i}".encode(), "PartitionKey": f"{batch}-{i}"} for i in range(200)
        ]
        response = kinesis_client.put_records(StreamName=kinesis_stream, Records=records)
        assert response["FailedRecordCount"] == 0

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(40)))

    records = stream_records(kinesis_stream)
    assert len(records) == 40 * 200
    assert {r["Data"].decode() for r in records} == {
        f"{b}-{i}" for b in range(40) for i in range(200)
    }


def put_many(shard: Shard, n: int) -> None:
    for i in range(n):
        shard.put_record(f"key-{i}", f"data-{i}", "")


def test_put_record_numbers_consecutively(patched_shard: type[Shard]) -> None:
    shard = patched_shard(0, 0, 2**128)
    numbers = [shard.put_record(f"k{i}", f"d{i}", "") for i in range(5)]
    assert numbers == ["1", "2", "3", "4", "5"]
    assert [r.data for r in shard.records.values()] == [f"d{i}" for i in range(5)]


def test_get_records_matches_the_scan(patched_shard: type[Shard]) -> None:
    shard = patched_shard(0, 0, 2**128)
    put_many(shard, 60)
    for number, record in shard.records.items():
        record.created_at = 1000.0 + number  # a second apart: the reader's lag is known
    for last, limit in itertools.product([0, 1, 7, 59, 60, 75], [None, 0, 1, 10, 100]):
        expected = MOTO_GET_RECORDS(shard, str(last), limit)
        actual = shard.get_records(str(last), limit)
        assert [r.sequence_number for r in actual[0]] == [r.sequence_number for r in expected[0]], (
            last,
            limit,
        )
        assert actual[1] == expected[1], (last, limit)
        assert actual[2] == expected[2], (last, limit)


def test_get_records_after_gaps_falls_back_to_the_scan(patched_shard: type[Shard]) -> None:
    shard = patched_shard(0, 0, 2**128)
    put_many(shard, 10)
    del shard.records[4]  # not something moto does, but reads must stay right
    records, last, _ = shard.get_records("2", None)
    assert [r.sequence_number for r in records] == [3, 5, 6, 7, 8, 9, 10]
    assert last == 10


def test_get_records_after_the_oldest_records_are_gone(patched_shard: type[Shard]) -> None:
    shard = patched_shard(0, 0, 2**128)
    put_many(shard, 10)
    for number in (1, 2, 3):
        del shard.records[number]  # trimmed from the start, as by a retention period
    records, last, _ = shard.get_records("0", 2)
    assert [r.sequence_number for r in records] == [4, 5]
    assert last == 5
