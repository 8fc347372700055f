"""Properties of the pure functions, over inputs drawn at random (hypothesis): the Firehose
transform, the cleaning rules, the PutRecords batches, the Lambda request size, the beer
ids, the model's features; the local Firehose's buffer, object keys, Parquet conversion
and restarts, and reconciliation. Derandomised, so every run draws the same inputs."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import itertools
import json
import math
import os
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brewops import schema, transform
from brewops.batching import within_limits
from brewops.catalog import to_v3_shape
from brewops.firehose_runtime.checkpoints import CheckpointStore
from brewops.firehose_runtime.config import DeliveryStreamConfig, FormatConversion, LambdaProcessor
from brewops.firehose_runtime.conversion import (
    ConversionError,
    HiveJsonDeserializer,
    ParquetBuffer,
    arrow_schema,
    arrow_type,
)
from brewops.firehose_runtime.functions import Invocation, LocalFunction
from brewops.firehose_runtime.processing import (
    SourceRecord,
    event_bytes,
    event_record_bytes,
    firehose_event,
    firehose_record_id,
)
from brewops.firehose_runtime.runtime import DeliveryStreamRuntime
from brewops.model import features
from brewops.producer import (
    MAX_BYTES_PER_CALL,
    MAX_BYTES_PER_RECORD,
    MAX_PARTITION_KEY_LENGTH,
    MAX_RECORDS_PER_CALL,
    FailedRecord,
    ProduceReport,
    _batches,
)
from brewops.reconcile import reconcile
from brewops.tables import TableInfo, place_in_layout

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,  # nothing to replay: every run draws the same inputs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COLUMNS = [c.name for c in schema.CLEANED_COLUMNS]
NOW = "2024-05-01 12:30:00.000"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")  # the Hive SerDe's

# ------------------------------------------------------------------ what is drawn

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# What a numeric field of a beer holds, right or nearly so
numeric_like = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: str(f).replace(".", ",")),
    st.sampled_from(["", " ", "4,5", "1,157", "1e5", "1e999999999", "NaN", "-Infinity", "n/a"]),
    # the edges of a double: tiny, huge, past it as an integer and as text
    st.sampled_from([1e-300, -1e-300, 5e-324, 1e308, -1e308, 10**400, "9" * 400, "1e-400"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)
id_like = st.one_of(
    st.integers(min_value=-5, max_value=2**64),
    numeric_like,
    st.integers(min_value=1, max_value=10**6).map(str),
    st.sampled_from(["1e999999999", "1e5", "9223372036854775808", " 7 ", "7.0", "sNaN"]),
)
name_like = st.one_of(st.text(max_size=20), st.none(), st.integers(), st.booleans(), json_values)


@st.composite
def near_valid_beers(draw: Any) -> dict[str, Any]:
    beer: dict[str, Any] = {"id": draw(id_like), "name": draw(name_like)}
    for name in transform.NUMERIC_COLUMNS:
        if draw(st.booleans()):
            beer[name] = draw(numeric_like)
    beer.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3)))
    return beer


def encoded_beer(beer: dict[str, Any]) -> bytes:
    # allow_nan: a payload may hold NaN, which Python's json reads back
    return (json.dumps(beer, allow_nan=True) + "\n").encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid_beers().map(encoded_beer),
    st.sampled_from(
        [b"", b"  \n", b'{"id":"1e999999999","name":"x"}', b'{"id":1,"name":"\\ud800"}']
    ),
)


@st.composite
def firehose_records(draw: Any, record_id: str) -> Any:
    shape = draw(st.sampled_from(["base64", "base64", "base64", "text", "other"]))
    if shape == "other":  # a record in a shape nobody sent
        return draw(json_values)
    if shape == "base64":
        data: Any = base64.b64encode(draw(payloads)).decode("ascii")
    else:
        data = draw(st.text(max_size=30) | json_values)
    record: dict[str, Any] = {"recordId": record_id, "data": data}
    if draw(st.booleans()):
        record["approximateArrivalTimestamp"] = draw(
            st.integers(min_value=-(2**46), max_value=2**46) | json_values
        )
    if draw(st.booleans()):
        record["kinesisRecordMetadata"] = draw(
            st.fixed_dictionaries(
                {
                    "approximateArrivalTimestamp": st.integers(min_value=-(2**46), max_value=2**46)
                    | json_values
                }
            )
            | json_values
        )
    return record


@st.composite
def firehose_batches(draw: Any) -> list[Any]:
    count = draw(st.integers(min_value=0, max_value=12))
    return [draw(firehose_records(f"id-{position}")) for position in range(count)]


def assert_a_cleaned_record(cleaned: Any) -> None:
    assert isinstance(cleaned, dict)
    assert list(cleaned) == COLUMNS
    assert type(cleaned["id"]) is int and 1 <= cleaned["id"] <= transform.BIGINT_MAX
    assert isinstance(cleaned["name"], str) and cleaned["name"] == cleaned["name"].strip() != ""
    for name in transform.NUMERIC_COLUMNS:
        value = cleaned[name]
        assert value is None or (type(value) is float and math.isfinite(value))
    assert TIMESTAMP.match(cleaned["ingested_at"]), cleaned["ingested_at"]


# ------------------------------------------------------------------ the Firehose transform


@PROPERTIES
@given(firehose_batches())
def test_every_record_of_any_batch_gets_one_answer_of_the_contract(records):
    answers = transform.firehose_transform(records)

    expected_ids = [transform._record_id(record) for record in records]
    assert [answer["recordId"] for answer in answers] == expected_ids
    for answer in answers:
        assert set(answer) == {"recordId", "result", "data"}
        assert answer["result"] in ("Ok", "Dropped", "ProcessingFailed")
        data = base64.b64decode(answer["data"], validate=True)
        if answer["result"] == "Ok":
            assert data.endswith(b"\n") and data.count(b"\n") == 1
            assert_a_cleaned_record(json.loads(data))


@PROPERTIES
@given(payloads)
@example(b'{"id":"1e999999999","name":"a number of a billion digits"}')
def test_a_record_that_is_not_ok_carries_its_payload_back(payload):
    outcome = transform.transform_record(
        {"recordId": "r", "data": base64.b64encode(payload).decode()}, NOW
    )
    if outcome.result == "Ok":
        assert_a_cleaned_record(json.loads(outcome.data))
    else:
        assert outcome.data == payload and outcome.reason
        assert not outcome.reason.startswith("unexpected error")


@pytest.mark.parametrize(
    ("millis", "ingested_at"),
    [
        (-40_000_000_000_000, "0702-06-15 00:53:20.000"),
        (-62_135_596_800_000, "0001-01-01 00:00:00.000"),
    ],
)
def test_an_arrival_before_the_year_1000_keeps_a_four_digit_year(millis, ingested_at):
    # "702-06-15 ..." would be Ok here and fail the Parquet conversion downstream
    beer = {"recordId": "r", "data": base64.b64encode(b'{"id":1,"name":"Buzz"}').decode()}
    outcome = transform.transform_record({**beer, "approximateArrivalTimestamp": millis}, NOW)

    assert json.loads(outcome.data)["ingested_at"] == ingested_at


# ------------------------------------------------------------------ cleaning


@PROPERTIES
@given(near_valid_beers())
@example({"id": "1e999999999", "name": "x"})
def test_cleaning_raises_only_invalid_beer_and_a_cleaned_beer_cleans_to_itself(beer):
    try:
        cleaned = transform.clean_beer(beer, NOW)
    except transform.InvalidBeer:
        return
    assert_a_cleaned_record(cleaned)
    assert transform.clean_beer(cleaned, NOW) == cleaned
    assert transform.clean_beer(json.loads(json.dumps(cleaned)), NOW) == cleaned


def test_an_id_written_with_a_huge_exponent_is_refused_at_once():
    # as an int, "1e999999999" would take hours to compute: the Lambda would time out
    with pytest.raises(transform.InvalidBeer, match="id: expected a positive"):
        transform.clean_beer({"id": "1e999999999", "name": "x"}, NOW)


# ------------------------------------------------------------------ PutRecords batches

MIB = 1024 * 1024
record_sizes = st.one_of(
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=MIB - 300, max_value=MIB + 300),
    st.integers(min_value=0, max_value=MIB),
)
partition_keys = st.one_of(
    st.integers(min_value=1, max_value=10**6).map(str),
    st.text(max_size=MAX_PARTITION_KEY_LENGTH + 2),
    st.sampled_from(["", "\ud800", "k" * MAX_PARTITION_KEY_LENGTH, "é" * MAX_PARTITION_KEY_LENGTH]),
)


def key_is_valid(key: str) -> bool:
    if not 1 <= len(key) <= MAX_PARTITION_KEY_LENGTH:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(PROPERTIES, max_examples=60)
@given(
    st.lists(
        st.tuples(partition_keys, record_sizes) | st.just("failed"),
        max_size=40,
    )
)
def test_every_payload_is_in_one_call_or_reported_and_calls_keep_the_kinesis_limits(drawn):
    payloads = [
        FailedRecord("", "MissingId", "x") if item == "failed" else (item[0], bytes(item[1]))
        for item in drawn
    ]
    report, rejected = ProduceReport(), []

    calls = list(_batches(iter(payloads), report, rejected))

    sent = [entry for call in calls for entry in call]
    for call in calls:
        assert 1 <= len(call) <= MAX_RECORDS_PER_CALL
        sizes = [len(e["Data"]) + len(e["PartitionKey"].encode()) for e in call]
        assert sum(sizes) <= MAX_BYTES_PER_CALL and max(sizes) <= MAX_BYTES_PER_RECORD
    expected_sent = [
        p
        for p in payloads
        if not isinstance(p, FailedRecord)
        and key_is_valid(p[0])
        and len(p[1]) + len(p[0].encode()) <= MAX_BYTES_PER_RECORD
    ]
    assert [(e["PartitionKey"], e["Data"]) for e in sent] == expected_sent  # once each, in order
    assert report.records == len(payloads)
    assert len(sent) + len(rejected) + len(report.oversize) == len(payloads)
    assert all(key_is_valid(e["PartitionKey"]) for e in sent)


@settings(PROPERTIES, max_examples=60)
@given(
    st.lists(st.integers(min_value=0, max_value=20), max_size=1200),
    st.integers(min_value=1, max_value=600),
    st.integers(min_value=20, max_value=5000),
)
def test_batches_of_any_sizes_keep_order_and_both_limits(sizes, most_items, most_bytes):
    batches = list(within_limits(sizes, int, most_items=most_items, most_bytes=most_bytes))

    assert [size for batch in batches for size in batch] == sizes
    for batch in batches:
        assert 1 <= len(batch) <= most_items and sum(batch) <= most_bytes
    for before, after in itertools.pairwise(batches):  # a call is cut only when full
        assert len(before) == most_items or sum(before) + after[0] > most_bytes


# ------------------------------------------------------------------ Lambda request size

source_records = st.builds(
    SourceRecord,
    shard_id=st.text(max_size=30),
    sequence_number=st.text(max_size=60),
    partition_key=st.text(max_size=MAX_PARTITION_KEY_LENGTH),
    data=st.binary(max_size=300),
    arrival_ms=st.integers(min_value=-(2**63), max_value=2**63),
)


@PROPERTIES
@given(
    st.lists(source_records, max_size=8),
    st.builds(SimpleNamespace, arn=st.text(), source_stream_arn=st.text(), region=st.text()),
)
def test_the_request_size_is_counted_as_lambda_counts_the_event(records, config):
    ids = [firehose_record_id(r, i) for i, r in enumerate(records)]
    event = firehose_event(config, records, ids)

    counted = event_bytes(config) + sum(event_record_bytes(r) for r in records)
    separators = len(", ") * max(len(records) - 1, 0)
    assert counted - len(", ") * len(records) + separators == len(json.dumps(event).encode())


# ------------------------------------------------------------------ beer ids


@PROPERTIES
@given(
    json_values
    | st.lists(st.integers())
    | st.sets(st.integers(min_value=-3, max_value=10**20))
    | st.tuples(st.integers(), st.booleans())
    | st.text()
    | st.binary()
)
@example([0])
@example([-1, 2])
@example(np.array([1, 2], dtype=np.int64))
def test_beer_ids_are_a_list_of_positive_integers_or_none(value):
    ids = schema.as_beer_ids(value)

    assert ids is None or all(type(i) is int and i >= 1 for i in ids)


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ([1, 2], [1, 2]),
        ((7,), [7]),
        (np.array([1, 3], dtype=np.int64), [1, 3]),
        ([], []),
        ([0, 1], None),
        ([True], None),
        ([1.0], None),
        ("12", None),
    ],
)
def test_beer_ids_are_the_positive_integers_given_in_order(value, ids):
    assert schema.as_beer_ids(value) == ids


# ------------------------------------------------------------------ model features

amounts = st.one_of(
    numeric_like,
    st.fixed_dictionaries(
        {
            "value": numeric_like,
            "unit": st.sampled_from(
                ["grams", "kilograms", "g", "oz", "lbs", "ml", "total", "", None]
            ),
        }
    ),
)
volumes = st.one_of(
    numeric_like,
    st.fixed_dictionaries(
        {
            "value": numeric_like,
            "unit": st.sampled_from(["litres", "ml", "gallons", "l", "cups", None]),
        }
    ),
)
hop_additions = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Cascade", "Citra", "Magnum", "Hop Extract", "Honey", "x"])
        | st.text(max_size=10)
        | json_scalars,
        "amount": amounts,
        "add": st.sampled_from(["start", "middle", "end", "dry hop", "whirlpool", "60 min", "FWH"])
        | numeric_like,
        "attribute": st.sampled_from(["bitter", "flavour", "aroma"]) | json_scalars,
    }
)
malts = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Extra Pale", "Crystal 150", "Wheat", "Honey"]) | json_scalars,
        "amount": amounts,
    }
)


@st.composite
def near_valid_recipes(draw: Any) -> dict[str, Any]:
    beer: dict[str, Any] = {"id": draw(id_like), "name": draw(name_like)}
    for name in ("abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph", "attenuation_level"):
        beer[name] = draw(numeric_like)
    beer["tagline"] = draw(st.text(max_size=20) | json_scalars)
    beer["image_url"] = draw(st.none() | st.just("https://images.example/keg.png"))
    beer["volume"] = draw(volumes)
    beer["boil_volume"] = draw(volumes)
    temp = st.fixed_dictionaries(
        {"value": numeric_like, "unit": st.sampled_from(["celsius", "fahrenheit", "F", None])}
    )
    beer["method"] = draw(
        st.fixed_dictionaries(
            {
                "mash_temp": st.lists(
                    st.fixed_dictionaries({"temp": temp | json_values, "duration": numeric_like})
                    | json_values,
                    max_size=2,
                ),
                "fermentation": st.fixed_dictionaries({"temp": temp}) | json_values,
            }
        )
        | json_values
    )
    beer["ingredients"] = draw(
        st.fixed_dictionaries(
            {
                "hops": st.lists(hop_additions | json_values, max_size=5) | json_values,
                "malt": st.lists(malts | json_values, max_size=3) | json_values,
                "yeast": st.text(max_size=20) | json_scalars,
            }
        )
        | json_values
    )
    return beer


def assert_a_feature_row(frame: Any) -> None:
    assert list(frame.columns) == list(features.FEATURE_COLUMNS) and len(frame) == 1
    values = frame.to_numpy(dtype=float)
    finite = values[~np.isnan(values)]
    # what is not missing (to be imputed) is what the float32 forests take
    assert np.isfinite(finite).all() and (np.abs(finite) <= np.finfo(np.float32).max).all()


@settings(PROPERTIES, max_examples=120)
@given(near_valid_recipes())
def test_any_near_valid_beer_gives_one_row_of_finite_features_or_missing_values(beer):
    row = features.beer_features(beer)
    assert sorted(row) == sorted(features.FEATURE_COLUMNS)
    assert all(isinstance(value, float) for value in row.values())

    v2 = features.build_features([beer])
    assert_a_feature_row(v2)
    v3 = features.build_features([to_v3_shape(beer)])
    assert v3.equals(v2)


# ------------------------------------------------------------------ the local Firehose buffer

FIREHOSE_ARN = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/brewops-dev-cleaned"
TRANSFORM_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:brewops-dev-transform"
SHARDS = ("shardId-000000000000", "shardId-000000000001")
ARRIVED_MS = 1714566600000  # 2024-05-01 12:30 UTC
# as infra/template.yaml configures the cleaned delivery stream and its Glue table
CLEANED_PREFIX = "cleaned/ingest_date=!{timestamp:yyyy-MM-dd}/"
CLEANED_ERROR_PREFIX = (
    "errors/cleaned/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
)
CLEANED_TABLE = TableInfo(
    database="brewops_dev",
    name="beers_cleaned",
    location="s3://bucket/cleaned/",
    columns=(("n", "bigint"), ("id", "bigint"), ("pad", "string")),
    partition_keys=(("ingest_date", "string"),),
    parameters={
        "projection.enabled": "true",
        "projection.ingest_date.type": "date",
        "projection.ingest_date.format": "yyyy-MM-dd",
        "projection.ingest_date.range": "2024-01-01,NOW",
        "storage.location.template": "s3://bucket/cleaned/ingest_date=${ingest_date}/",
    },
)
# what the transformation does with a record, as the record asks
RESULTS = {"ok": "Ok", "unconvertible": "Ok", "drop": "Dropped", "fail": "ProcessingFailed"}


class InMemoryAWS:
    """The clients a delivery stream's runtime uses: a source stream of two shards, the
    Glue table, and a bucket that keeps what is written, in order, and overwrites nothing."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def describe_stream_summary(self, StreamName):
        return {"StreamDescriptionSummary": {"StreamCreationTimestamp": datetime(2024, 5, 1)}}

    def list_shards(self, StreamName=None, NextToken=None):
        return {"Shards": [{"ShardId": shard} for shard in SHARDS]}

    def get_table(self, DatabaseName, Name, **catalog):
        columns = [{"Name": name, "Type": kind} for name, kind in CLEANED_TABLE.columns]
        return {"Table": {"StorageDescriptor": {"Columns": columns}}}

    def put_object(self, Bucket, Key, Body):
        assert Key not in self.objects, f"{Key} written twice: the first object is lost"
        self.objects[Key] = Body


class FatesFunction:
    """A transformation that answers each record as its "fate" asks, and fails the whole
    call when one of them asks to crash."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def invoke(self, event: dict[str, Any]) -> Invocation:
        records = [(r["recordId"], base64.b64decode(r["data"])) for r in event["records"]]
        self.batches.append([data for _, data in records])
        fates = [json.loads(data)["fate"] for _, data in records]
        invocation = Invocation("request")
        if "crash" in fates:
            invocation.error = "RuntimeError: crash"
            return invocation
        invocation.result = {
            "records": [
                {
                    "recordId": record_id,
                    "result": RESULTS[fate],
                    "data": base64.b64encode(data).decode(),
                }
                for (record_id, data), fate in zip(records, fates, strict=True)
            ]
        }
        return invocation


def delivery_config(case: Any) -> DeliveryStreamConfig:
    return DeliveryStreamConfig(
        name="brewops-dev-cleaned",
        arn=FIREHOSE_ARN,
        version_id="1",
        created="2024-05-01T00:00:00+00:00",
        region="eu-west-1",
        source_stream_arn="arn:aws:kinesis:eu-west-1:123456789012:stream/beers",
        bucket="bucket",
        prefix=CLEANED_PREFIX,
        error_prefix=CLEANED_ERROR_PREFIX,
        buffer_bytes=case.buffer_bytes,
        interval_seconds=case.interval,
        compression="UNCOMPRESSED",
        file_extension="",
        append_delimiter=False,
        processor=(
            LambdaProcessor(TRANSFORM_ARN, case.lambda_bytes, case.lambda_interval, retries=0)
            if case.transformed
            else None
        ),
        conversion=(
            FormatConversion("db", "beers_cleaned", "LATEST", None, "eu-west-1", None, "SNAPPY")
            if case.converted
            else None
        ),
    )


@contextlib.contextmanager
def delivery_runtime(case: Any, clock: Any) -> Any:
    """The runtime of one delivery stream over in-memory AWS; yields it, its AWS, its
    function and its checkpoint store."""
    aws, function = InMemoryAWS(), FatesFunction()
    with (
        tempfile.TemporaryDirectory() as state,
        mock.patch.object(LocalFunction, "lookup", return_value=function),
    ):
        store = CheckpointStore(Path(state))
        runtime = DeliveryStreamRuntime(
            delivery_config(case),
            kinesis=aws,
            s3=aws,
            glue=aws,
            lambda_client=None,
            store=store,
            clock=clock,
        )
        yield runtime, aws, function, store


record_step = st.tuples(
    st.just("record"),
    st.sampled_from(SHARDS),
    st.integers(min_value=0, max_value=150),  # padding: records of 50 to 200 bytes
    st.sampled_from(["ok", "ok", "unconvertible", "drop", "fail", "crash"]),
)
delivery_steps = st.lists(
    record_step | st.tuples(st.just("wait"), st.integers(0, 90)) | st.just(("flush",)),
    max_size=30,
)


@st.composite
def deliveries(draw: Any) -> Any:
    case = SimpleNamespace(
        transformed=draw(st.booleans()),
        converted=draw(st.booleans()),
        buffer_bytes=draw(st.integers(min_value=1, max_value=500)),
        interval=draw(st.integers(min_value=0, max_value=120)),
        lambda_bytes=draw(st.integers(min_value=1, max_value=500)),
        lambda_interval=draw(st.integers(min_value=0, max_value=120)),
        steps=draw(delivery_steps),
    )
    if not case.transformed:  # without a function, only the table can refuse a record
        case.steps = [
            (*step[:3], "unconvertible" if step[3] == "unconvertible" else "ok")
            if step[0] == "record"
            else step
            for step in case.steps
        ]
    return case


def beer_record(n: int, pad: int, fate: str) -> bytes:
    beer = {"n": n, "id": "x" if fate == "unconvertible" else n, "fate": fate, "pad": "x" * pad}
    return json.dumps(beer).encode() + b"\n"


def expected_fate(case: Any, n: int, fate: str, crashed: set[int]) -> str:
    """Where record `n` must end: delivered, dropped, or an error output type."""
    if case.transformed and (n in crashed or fate == "fail"):
        return "processing-failed"
    if case.transformed and fate == "drop":
        return "dropped"
    if case.converted and fate == "unconvertible":
        return "format-conversion-failed"
    return "delivered"


def delivered_records(case: Any, aws: InMemoryAWS) -> tuple[list[list[int]], dict[str, list[int]]]:
    """The records of each data object, and of each error output type, in writing order."""
    objects, errors = [], {}
    for key, body in aws.objects.items():
        if key.startswith("errors/"):
            output_type = key.split("/")[2]
            for line in body.splitlines():
                data = base64.b64decode(json.loads(line)["rawData"])
                errors.setdefault(output_type, []).append(json.loads(data)["n"])
        elif case.converted:
            objects.append(pq.read_table(io.BytesIO(body)).column("n").to_pylist())
        else:
            objects.append([json.loads(line)["n"] for line in body.splitlines()])
    return objects, errors


@settings(PROPERTIES, max_examples=80)
@given(deliveries())
@example(  # one record over the buffer size alone is an object of its own
    SimpleNamespace(
        transformed=False,
        converted=True,
        buffer_bytes=60,
        interval=60,
        lambda_bytes=1,
        lambda_interval=0,
        steps=[("record", SHARDS[0], 0, "ok"), ("record", SHARDS[0], 150, "ok")],
    )
)
def test_every_record_is_delivered_dropped_or_failed_once_in_order_within_the_buffer(case):
    now = [0.0]
    with delivery_runtime(case, lambda: now[0]) as (runtime, aws, function, store):
        fed, last = [], {}
        for step in case.steps:
            if step[0] == "record":
                _, shard, pad, fate = step
                n = len(fed)
                data = beer_record(n, pad, fate)
                last[shard] = str(n + 1)
                runtime.feed(SourceRecord(shard, str(n + 1), "k", data, ARRIVED_MS + n))
                fed.append((n, fate, len(data)))
            elif step[0] == "wait":
                now[0] += step[1]
                runtime.tick()
            else:
                runtime.flush()
        runtime.flush()
        checkpoint = store.read("brewops-dev-cleaned")

    crashed = {
        json.loads(data)["n"]
        for batch in function.batches
        if any(json.loads(data)["fate"] == "crash" for data in batch)
        for data in batch
    }
    fates = {n: expected_fate(case, n, fate, crashed) for n, fate, _ in fed}
    objects, errors = delivered_records(case, aws)
    # each record once, where its fate sends it, in the order it was read
    assert [n for records in objects for n in records] == [
        n for n, where in fates.items() if where == "delivered"
    ]
    assert errors == {
        output_type: [n for n, where in fates.items() if where == output_type]
        for output_type in ("processing-failed", "format-conversion-failed")
        if output_type in fates.values()
    }
    stats = runtime.stats
    assert (stats.delivered, stats.failed, stats.dropped) == (
        sum(len(records) for records in objects),
        sum(len(records) for records in errors.values()),
        list(fates.values()).count("dropped"),
    )
    # an object over the buffer size holds one record, which alone is over it
    size = {n: size for n, _, size in fed}
    for records in objects:
        assert len(records) == 1 or sum(size[n] for n in records) <= case.buffer_bytes
    for batch in function.batches:
        assert len(batch) == 1 or sum(map(len, batch)) <= case.lambda_bytes
    # the checkpoint holds the last record of each shard, and no flush left half-done
    if fed:
        assert checkpoint is not None and (checkpoint.shards, checkpoint.pending) == (last, None)


# ------------------------------------------------------------------ object keys


@contextlib.contextmanager
def local_time_zone(zone: str) -> Any:
    """The machine's local time zone set to `zone` (POSIX TZ syntax) meanwhile."""
    try:
        with mock.patch.dict(os.environ, {"TZ": zone}):
            time.tzset()
            yield
    finally:
        time.tzset()


arrival_millis = st.integers(
    min_value=int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000),
    max_value=int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000),
)
S3_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!_.*'()=/-]*$")  # S3's safe characters


@settings(PROPERTIES, max_examples=60)
@given(arrival_millis, st.integers(min_value=0, max_value=999))
@example(int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000), 0)  # the range's first day
@example(int(datetime(2024, 3, 7, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000), 1)
def test_objects_are_keyed_by_the_utc_arrival_in_the_partition_the_table_reads(arrival, later):
    # a record the table takes and one it refuses, the second `later` ms after the first,
    # on a machine ten hours behind UTC
    case = SimpleNamespace(
        transformed=False, converted=True, buffer_bytes=10**6, interval=60, steps=[]
    )
    with local_time_zone("HST10"), delivery_runtime(case, lambda: 0.0) as (runtime, aws, _, _):
        runtime.feed(SourceRecord(SHARDS[0], "1", "k", beer_record(1, 0, "ok"), arrival))
        refused = beer_record(2, 0, "unconvertible")
        runtime.feed(SourceRecord(SHARDS[1], "2", "k", refused, arrival + later))
        runtime.flush()

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=arrival)
    data_key, error_key = aws.objects
    for key, at in [(data_key, moment), (error_key, moment + timedelta(milliseconds=later))]:
        assert S3_KEY.match(key) and "//" not in key and len(key.encode()) <= 1024, key
        assert f"-{at:%Y-%m-%d-%H-%M-%S}-" in key.rsplit("/", 1)[1]
        assert f"/ingest_date={at:%Y-%m-%d}/" in key
    # the data object in the partition of its day, the error object outside the table
    partition, reason = place_in_layout(CLEANED_TABLE, f"s3://bucket/{data_key}", now=moment)
    assert (partition, reason) == (f"{moment:%Y-%m-%d}", None)
    assert error_key.startswith("errors/cleaned/format-conversion-failed/ingest_date=")
    assert place_in_layout(CLEANED_TABLE, f"s3://bucket/{error_key}", now=moment)[0] is None


# ------------------------------------------------------------------ the Parquet conversion

GLUE_TYPES = [
    "tinyint", "smallint", "int", "bigint", "float", "double", "boolean", "string",
    "varchar(10)", "timestamp", "date", "binary", "decimal", "decimal(5,2)", "decimal(38,6)",
    "array<int>", "map<string,double>", "map<int,string>", "struct<A:int,b:string>",
    "array<struct<x:bigint,y:array<date>>>",
]  # fmt: skip
TIMESTAMP_FORMATS = [(), ("millis",), ("yyyy-MM-dd'T'HH:mm:ss",), ("millis", "yyyy-MM-ddZ")]


def values_for(glue_type: str) -> st.SearchStrategy[Any]:
    """Values a column of `glue_type` takes, values that nearly fit, and any JSON."""
    kind = arrow_type(glue_type)
    if pa.types.is_integer(kind):
        limit = 2 ** (kind.bit_width - 1)
        fitting: Any = st.integers(-limit - 1, limit) | st.integers(-limit, limit - 1).map(str)
    elif pa.types.is_floating(kind):
        fitting = st.floats() | st.integers() | st.floats().map(str)
    elif pa.types.is_boolean(kind):
        fitting = st.booleans() | st.sampled_from(["true", "FALSE", "yes"])
    elif pa.types.is_timestamp(kind):
        fitting = (
            st.datetimes().map(lambda d: f"{d:%Y-%m-%d %H:%M:%S.%f}"[: 19 + d.microsecond % 8])
            | st.datetimes().map(lambda d: f"{d:%Y-%m-%dT%H:%M:%S}")
            | st.integers(-(2**62), 2**62)
        )
    elif pa.types.is_date(kind):
        fitting = st.dates().map(str)
    elif pa.types.is_decimal(kind):
        fitting = (
            st.decimals(allow_nan=False, places=kind.scale + 1).map(str)
            | st.decimals(places=kind.scale, max_value=10 ** (kind.precision - kind.scale))
            | st.floats()
            | st.integers()
        ).map(lambda v: str(v) if not isinstance(v, int | float) else v)
    elif pa.types.is_list(kind):
        fitting = st.lists(values_for(glue_type[6:-1]), max_size=3)
    elif pa.types.is_map(kind):
        key_type, value_type = glue_type[4:-1].split(",", 1)
        keys = values_for(key_type).map(lambda k: k if isinstance(k, str) else json.dumps(k))
        fitting = st.dictionaries(keys, values_for(value_type), max_size=3)
    elif pa.types.is_struct(kind):
        members = dict(m.split(":", 1) for m in conversion_split(glue_type[7:-1]))
        fitting = st.fixed_dictionaries({}, optional={k: values_for(v) for k, v in members.items()})
    else:  # string, varchar, binary
        fitting = st.text(max_size=12)
    return fitting | json_values


def conversion_split(members: str) -> list[str]:
    depth, parts, start = 0, [], 0
    for i, char in enumerate(members):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and not depth:
            parts.append(members[start:i])
            start = i + 1
    return [*parts, members[start:]]


@st.composite
def tables_and_records(draw: Any) -> tuple[list[tuple[str, str]], tuple[str, ...], bytes]:
    columns = draw(
        st.lists(
            st.tuples(st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(GLUE_TYPES)),
            min_size=1,
            max_size=4,
            unique_by=lambda c: c[0],
        )
    )
    document = {}
    for name, glue_type in columns:
        if draw(st.integers(0, 5)):  # a column now and then missing
            key = draw(st.sampled_from([name, name.upper()]))  # keys match in any case
            document[key] = draw(values_for(glue_type))
    document.update(draw(st.dictionaries(st.sampled_from(["x", "C9"]), json_values, max_size=1)))
    data = json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")
    return columns, draw(st.sampled_from(TIMESTAMP_FORMATS)), data


def as_stored(value: Any, kind: Any) -> Any:
    """`value` as a Parquet column of `kind` gives it back."""
    if value is None:
        return None
    if pa.types.is_floating(kind):
        with np.errstate(over="ignore"):  # past a float's range is infinity
            stored = float(np.float32(value)) if kind.bit_width == 32 else value
        return "nan" if math.isnan(stored) else stored
    if pa.types.is_timestamp(kind):  # milliseconds
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if pa.types.is_list(kind):
        return [as_stored(v, kind.value_type) for v in value]
    if pa.types.is_map(kind):
        return [(as_stored(k, kind.key_type), as_stored(v, kind.item_type)) for k, v in value]
    if pa.types.is_struct(kind):
        return {f.name: as_stored(value[f.name], f.type) for f in kind}
    return value


def without_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    if isinstance(value, tuple):
        return tuple(without_nan(v) for v in value)
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    return value


@settings(PROPERTIES, max_examples=150)
@given(tables_and_records())
@example(([("c1", "decimal(38,6)")], (), b'{"c1": "12345678901234567890123456789.5"}'))
def test_a_record_converts_to_rows_parquet_keeps_or_fails_with_a_conversion_error(drawn):
    columns, timestamp_formats, data = drawn
    schema = arrow_schema([{"Name": name, "Type": kind} for name, kind in columns])
    deserializer = HiveJsonDeserializer(schema, timestamp_formats)
    try:
        rows = deserializer.rows(data)
    except ConversionError as error:
        assert error.code.startswith("DataFormatConversion.") and str(error)
        return

    buffer = ParquetBuffer(schema, "SNAPPY")
    for row in rows:
        assert list(row) == schema.names
        buffer.add(row)
    stored = pq.read_table(io.BytesIO(buffer.to_bytes()))
    assert stored.schema.equals(schema)
    expected = [{f.name: as_stored(row[f.name], f.type) for f in schema} for row in rows]
    assert without_nan(stored.to_pylist()) == without_nan(expected)


def test_a_record_nested_deeper_than_python_reads_fails_its_conversion_not_the_drain():
    # a 1 MB Kinesis record holds arrays nested far deeper than Python's JSON reader goes
    case = SimpleNamespace(
        transformed=False, converted=True, buffer_bytes=10**6, interval=60, steps=[]
    )
    too_deep = b"[" * 100_000 + b"]" * 100_000
    with delivery_runtime(case, lambda: 0.0) as (runtime, aws, _, _):
        for n, data in enumerate([beer_record(0, 0, "ok"), too_deep, beer_record(2, 0, "ok")]):
            runtime.feed(SourceRecord(SHARDS[0], str(n + 1), "k", data, ARRIVED_MS))
        runtime.flush()

    data, errors = aws.objects.values()
    assert pq.read_table(io.BytesIO(data)).column("n").to_pylist() == [0, 2]
    [failed] = [json.loads(line) for line in errors.splitlines()]
    assert base64.b64decode(failed["rawData"]) == too_deep
    assert failed["lastErrorCode"] == "DataFormatConversion.ParseError"


def test_a_value_nested_too_deeply_for_a_string_column_fails_its_record():
    # one that decodes, only just, is still too deep to write back as the column's JSON
    schema = arrow_schema([{"Name": "pad", "Type": "string"}])
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]

    with pytest.raises(ConversionError) as failed:
        HiveJsonDeserializer(schema).row({"pad": nested})
    assert failed.value.code == "DataFormatConversion.MalformedData"


def test_a_decimal_of_more_digits_than_python_rounds_by_default_is_kept():
    # decimal(38, 6) holds 38 digits; Python's default context rounds to 28
    schema = arrow_schema([{"Name": "price", "Type": "decimal(38,6)"}])
    deserializer = HiveJsonDeserializer(schema)
    value = "12345678901234567890123456789012.5"

    [row] = deserializer.rows(b'{"price": "%s"}' % value.encode())

    assert row == {"price": Decimal(value)}
    buffer = ParquetBuffer(schema, "SNAPPY")
    buffer.add(row)
    assert pq.read_table(io.BytesIO(buffer.to_bytes())).to_pylist() == [row]


# ------------------------------------------------------------------ reconciliation

RAW_PREFIX = "raw/ingest_date=!{timestamp:yyyy-MM-dd}/"
RAW_ERROR_PREFIX = "errors/raw/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
DAY = "ingest_date=2024-05-01/"


class DeliveredBucket:
    """The clients reconcile reads: the two delivery streams, configured as
    infra/template.yaml has them, and the objects in their bucket."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def client(self, service, config=None):
        return self

    def describe_delivery_stream(self, DeliveryStreamName):
        raw = DeliveryStreamName.endswith("-raw")
        destination = {
            "BucketARN": "arn:aws:s3:::bucket",
            "Prefix": RAW_PREFIX if raw else CLEANED_PREFIX,
            "ErrorOutputPrefix": RAW_ERROR_PREFIX if raw else CLEANED_ERROR_PREFIX,
            "CompressionFormat": "GZIP" if raw else "UNCOMPRESSED",
        }
        source = {"KinesisStreamARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/beers"}
        return {
            "DeliveryStreamDescription": {
                "DeliveryStreamName": DeliveryStreamName,
                "DeliveryStreamARN": f"{FIREHOSE_ARN}-{DeliveryStreamName}",
                "CreateTimestamp": datetime(2024, 5, 1, tzinfo=UTC),
                "Source": {"KinesisStreamSourceDescription": source},
                "Destinations": [{"ExtendedS3DestinationDescription": destination}],
            }
        }

    def get_paginator(self, operation):
        return self

    def paginate(self, Bucket, Prefix):
        keys = sorted(key for key in self.objects if key.startswith(Prefix))
        yield {"Contents": [{"Key": key, "Size": len(self.objects[key])} for key in keys]}

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Key])}


OUTPUTS = {"RawDeliveryStreamName": "brewops-dev-raw", "CleanedDeliveryStreamName": "b-cleaned"}
FATES = ("delivered", "failed", "not converted", "lost downstream", "lost")


def error_line(code_field: str, code: str, beer: dict[str, Any]) -> bytes:
    data = base64.b64encode(json.dumps(beer).encode()).decode()
    return json.dumps({code_field: code, "rawData": data}).encode()


def parquet_ids(ids: list[int]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array(ids, type=pa.int64())}), sink)
    return sink.getvalue()


@st.composite
def deliveries_of_produced_ids(draw: Any) -> Any:
    produced = draw(st.lists(st.integers(1, 30), max_size=25))  # a beer may be produced twice
    return SimpleNamespace(
        produced=produced,
        fates=[draw(st.sampled_from(FATES)) for _ in produced],
        objects=[draw(st.integers(0, 2)) for _ in produced],  # which object of each kind
        unexpected=draw(st.lists(st.integers(1000, 1005), max_size=3)),
        noise=draw(st.lists(st.sampled_from([b"", b"  ", b"not json", b"[1]", b'{"id": "x"}']))),
        earlier=draw(st.lists(st.sampled_from(produced or [1]), max_size=4)),
    )


def bucket_of(case: Any) -> tuple[dict[str, bytes], list[str]]:
    """The objects the delivery streams wrote for `case`; and those of an earlier run."""
    raw: dict[int, list[bytes]] = {}
    cleaned: dict[int, list[int]] = {}
    errors: dict[tuple[str, int], list[bytes]] = {}
    for beer_id, fate, where in zip(case.produced, case.fates, case.objects, strict=True):
        beer = {"id": beer_id, "name": f"beer {beer_id}"}
        if fate != "lost":
            raw.setdefault(where, []).append(json.dumps(beer).encode())
        if fate == "delivered":
            cleaned.setdefault(where, []).append(beer_id)
        elif fate == "failed":
            line = error_line("errorCode", "Lambda.ProcessingFailedStatus", beer)
            errors.setdefault(("processing-failed", where), []).append(line)
        elif fate == "not converted":
            line = error_line("lastErrorCode", "DataFormatConversion.MalformedData", beer)
            errors.setdefault(("format-conversion-failed", where), []).append(line)
    for beer_id in case.unexpected:
        raw.setdefault(0, []).append(json.dumps({"id": beer_id}).encode())
        cleaned.setdefault(0, []).append(beer_id)
    raw.setdefault(1, []).extend(case.noise)

    objects = {f"raw/{DAY}raw-{n}.gz": gzip_lines(lines) for n, lines in raw.items()}
    objects.update({f"cleaned/{DAY}cleaned-{n}": parquet_ids(ids) for n, ids in cleaned.items()})
    for (output_type, n), lines in errors.items():
        objects[f"errors/cleaned/{output_type}/{DAY}errors-{n}"] = b"\n".join(lines) + b"\n"
    earlier = {
        f"raw/{DAY}earlier.gz": gzip_lines([json.dumps({"id": i}).encode() for i in case.earlier]),
        f"cleaned/{DAY}earlier": parquet_ids(case.earlier),
    }
    return {**objects, **earlier}, list(earlier)


def gzip_lines(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


@settings(PROPERTIES, max_examples=60)
@given(deliveries_of_produced_ids())
def test_reconciliation_accounts_for_every_produced_id_and_names_exactly_the_lost(case):
    objects, earlier = bucket_of(case)

    result = reconcile(
        case.produced,
        OUTPUTS,
        session=DeliveredBucket(objects),
        explain_errors=False,
        delivered_before=earlier,
    )

    def ids(*fates: str) -> list[int]:
        return sorted(i for i, fate in zip(case.produced, case.fates, strict=True) if fate in fates)

    assert result.missing_from_raw == ids("lost")
    assert result.missing_downstream == ids("lost", "lost downstream")
    assert result.ok == (bool(case.produced) and not ids("lost", "lost downstream"))
    assert sorted(e.beer_id for e in result.errors) == ids("failed", "not converted")
    assert result.produced == len(case.produced)
    assert result.cleaned_rows == len(ids("delivered")) + len(case.unexpected)
    beers_in_raw = len(case.produced) - len(ids("lost")) + len(case.unexpected)
    assert result.raw_records == beers_in_raw + sum(1 for line in case.noise if line.strip())
    assert result.unexpected_ids == sorted(set(case.unexpected))
    assert result.earlier_objects == len(earlier) and not result.unreadable


def test_a_line_nested_deeper_than_python_reads_is_a_record_without_an_id():
    # anything a producer put is in raw; a record the transform failed is in the errors
    too_deep = b"[" * 100_000 + b"]" * 100_000
    refused = base64.b64encode(too_deep).decode()
    objects = {
        f"raw/{DAY}raw-0.gz": gzip_lines([b'{"id": 1}', too_deep, b'{"id": 2}']),
        f"cleaned/{DAY}cleaned-0": parquet_ids([1]),
        f"errors/cleaned/processing-failed/{DAY}errors-0": b"\n".join(
            [
                error_line("errorCode", "Lambda.ProcessingFailedStatus", {"id": 2}),
                json.dumps(
                    {"errorCode": "Lambda.ProcessingFailedStatus", "rawData": refused}
                ).encode(),
            ]
        ),
    }

    result = reconcile([1, 2], OUTPUTS, session=DeliveredBucket(objects), explain_errors=False)

    assert (result.raw_records, result.raw_unique_ids) == (3, 2)
    assert [e.beer_id for e in result.errors] == [2, None]
    assert result.ok


# ------------------------------------------------------------------ restarts


class Died(Exception):
    """The process ended here (a kill, a power cut)."""


class InMemoryKinesis(InMemoryAWS):
    """InMemoryAWS whose source stream holds records, and whose bucket dies on write
    `die_at` (after writing when positive, before when negative); a write after a restart
    may replace an object, as a replay does."""

    class exceptions:
        ExpiredIteratorException = Died  # never raised: iterators here do not expire

    def __init__(self, shards: dict[str, list[tuple[str, bytes, int]]], die_at: int) -> None:
        super().__init__()
        self.shards, self.die_at, self.writes = shards, die_at, 0

    def put_object(self, Bucket, Key, Body):
        self.writes += 1
        if self.writes == abs(self.die_at):
            if self.die_at > 0:  # after the object is written, before the answer
                self.objects[Key] = Body
            raise Died(Key)
        self.objects[Key] = Body

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, **where):
        records = self.shards[ShardId]
        start = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            sequences = [sequence for sequence, _, _ in records]
            start = sequences.index(where["StartingSequenceNumber"]) + 1
        return {"ShardIterator": f"{ShardId}|{start}"}

    def get_records(self, ShardIterator, Limit):
        shard, start = ShardIterator.split("|")
        records = self.shards[shard][int(start) : int(start) + Limit]
        end = int(start) + len(records)
        return {
            "Records": [
                {
                    "SequenceNumber": s,
                    "PartitionKey": "k",
                    "Data": d,
                    "ApproximateArrivalTimestamp": a,
                }
                for s, d, a in records
            ],
            "NextShardIterator": f"{shard}|{end}",
            "MillisBehindLatest": 0 if end == len(self.shards[shard]) else 1000,
        }


def drain(runtime: DeliveryStreamRuntime) -> None:
    while True:
        runtime.poll()
        if runtime.caught_up:
            break
    runtime.flush()


@settings(PROPERTIES, max_examples=60)
@given(deliveries(), st.integers(-8, 8).filter(bool), st.integers(1, 5), st.integers(0, 30))
@example(  # the flush that died is replayed as it was, without the record read since
    SimpleNamespace(
        transformed=False,
        converted=False,
        buffer_bytes=1,
        interval=0,
        lambda_bytes=1,
        lambda_interval=0,
        steps=[("record", SHARDS[1], 0, "ok"), ("record", SHARDS[0], 0, "ok")],
    ),
    1,  # dies after its first write
    1,  # a record a read
    1,  # of the two records, one is there for the drain that dies
)
def test_a_drain_that_dies_writing_is_finished_by_the_next_without_loss_or_duplicates(
    case, die_at, read_limit, arrived_before
):
    # the first `arrived_before` records are there for the drain that dies, the others
    # arrive before the next one
    shards: dict[str, list[tuple[str, bytes, int]]] = {shard: [] for shard in SHARDS}
    later: list[tuple[str, tuple[str, bytes, int]]] = []
    fates = {}
    for step in case.steps:
        if step[0] == "record":
            _, shard, pad, fate = step
            n = len(fates)
            record = (str(n + 1), beer_record(n, pad, fate), ARRIVED_MS + n)
            if n < arrived_before:
                shards[shard].append(record)
            else:
                later.append((shard, record))
            fates[n] = fate
    aws = InMemoryKinesis(shards, die_at)
    function = FatesFunction()
    with (
        tempfile.TemporaryDirectory() as state,
        mock.patch.object(LocalFunction, "lookup", return_value=function),
    ):

        def runtime() -> DeliveryStreamRuntime:
            return DeliveryStreamRuntime(
                delivery_config(case),
                kinesis=aws,
                s3=aws,
                glue=aws,
                lambda_client=None,
                store=CheckpointStore(Path(state)),
                clock=lambda: 0.0,
                read_limit=read_limit,
            )

        with contextlib.suppress(Died):
            drain(runtime())
        aws.die_at = 0  # the next drain lives
        for shard, record in later:
            shards[shard].append(record)
        drain(runtime())

    crashed = {
        json.loads(data)["n"]
        for batch in function.batches
        if any(json.loads(data)["fate"] == "crash" for data in batch)
        for data in batch
    }
    where = {n: expected_fate(case, n, fate, crashed) for n, fate in fates.items()}
    objects, errors = delivered_records(case, aws)
    assert sorted(n for records in objects for n in records) == [
        n for n, fate in where.items() if fate == "delivered"
    ]
    for output_type, records in errors.items():
        assert sorted(records) == [n for n, fate in where.items() if fate == output_type]
