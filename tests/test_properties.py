"""Properties of the pure functions, over inputs drawn at random (hypothesis): the Firehose
transform, the cleaning rules, the PutRecords batches, the Lambda request size, the beer
ids and the model's features. Derandomised, so every run draws the same inputs."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brewops import schema, transform
from brewops.batching import within_limits
from brewops.catalog import to_v3_shape
from brewops.firehose_runtime.processing import (
    SourceRecord,
    event_bytes,
    event_record_bytes,
    firehose_event,
    firehose_record_id,
)
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
