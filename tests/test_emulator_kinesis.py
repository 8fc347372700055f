"""The emulator's Kinesis shards: concurrent PutRecords lose nothing, reads return exactly
what moto's own scan of a shard returns, and a reshard keeps records where Kinesis does."""

from __future__ import annotations

import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.kinesis.models import Shard

from brewops.local import emulator
from brewops.local.state import REGION

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


# ----------------------------------------------------------------- resharding


def shard_records(client: Any, stream_name: str) -> dict[str, tuple[list[str], bool]]:
    """Each shard's record data, and whether GetRecords at its end gives a next iterator."""
    found = {}
    for shard in client.list_shards(StreamName=stream_name)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        response = client.get_records(ShardIterator=iterator, Limit=10_000)
        data = [r["Data"].decode() for r in response["Records"]]
        found[shard["ShardId"]] = (data, response.get("NextShardIterator") is not None)
    return found


@pytest.mark.emulator
@pytest.mark.parametrize(("start", "target"), [(1, 2), (2, 1), (2, 3)])
def test_a_reshard_leaves_records_in_the_closed_shards_and_sends_new_ones_to_the_open(
    kinesis_client: Any, start: int, target: int
) -> None:
    # as on Kinesis: moto moved a split parent's records, copied merged parents' into
    # the child (read twice), and sent later records to the closed parent
    name = f"test-reshard-{uuid.uuid4().hex[:10]}"
    kinesis_client.create_stream(StreamName=name, ShardCount=start)

    def put(prefix: str) -> None:
        records = [{"Data": f"{prefix}-{i}".encode(), "PartitionKey": str(i)} for i in range(40)]
        answer = kinesis_client.put_records(StreamName=name, Records=records)
        assert answer["FailedRecordCount"] == 0

    try:
        put("before")
        kinesis_client.update_shard_count(
            StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
        )
        put("after")
        shards = shard_records(kinesis_client, name)
        summary = kinesis_client.describe_stream_summary(StreamName=name)
    finally:
        kinesis_client.delete_stream(StreamName=name)

    closed = {shard: data for shard, (data, more) in shards.items() if not more}
    still_open = {shard: data for shard, (data, more) in shards.items() if more}
    assert len(still_open) == summary["StreamDescriptionSummary"]["OpenShardCount"] == target
    assert sorted(d for data in closed.values() for d in data) == sorted(
        f"before-{i}" for i in range(40)
    )
    assert sorted(d for data in still_open.values() for d in data) == sorted(
        f"after-{i}" for i in range(40)
    )


@pytest.mark.emulator
@pytest.mark.parametrize("target", [5, 1])
def test_update_shard_count_refuses_past_double_or_below_half(
    kinesis_endpoint: str, target: int
) -> None:
    # moto split 2 shards into 4 when asked for 5, and said 5 were open
    client = boto3.client(
        "kinesis",
        endpoint_url=kinesis_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret (moto accepts any)
        config=Config(retries={"total_max_attempts": 1}),
    )
    name = f"test-reshard-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=3 if target == 1 else 2)
    try:
        with pytest.raises(client.exceptions.LimitExceededException, match="scale in steps"):
            client.update_shard_count(
                StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
            )
        shards = client.list_shards(StreamName=name)["Shards"]
    finally:
        client.delete_stream(StreamName=name)
    assert all("ParentShardId" not in shard for shard in shards), "resharded all the same"
