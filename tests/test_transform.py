"""The Firehose transform: the contract (one answer per record, same ids, same order), the
cleaning rules on the real catalogue and its quirks, and every kind of bad record."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from typing import Any

import pytest

from brewops import schema, transform
from brewops.lambdas.transform import app
from brewops.producer import serialise_beer

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
COLUMNS = [c.name for c in schema.CLEANED_COLUMNS]


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def record(data: bytes | str, record_id: str = "r1", **extra: Any) -> dict[str, Any]:
    return {"recordId": record_id, "data": b64(data), **extra}


def decoded(response: dict[str, str]) -> Any:
    return json.loads(base64.b64decode(response["data"]))


def assert_schema_columns(cleaned: dict[str, Any]) -> None:
    """The keys of a cleaned record are the columns of `schema.CLEANED_COLUMNS`, in order;
    when not, the failure names the columns apart and the places that must agree."""
    keys = list(cleaned)
    if keys == COLUMNS:
        return
    missing = [c for c in COLUMNS if c not in keys]
    unexpected = [k for k in keys if k not in COLUMNS]
    apart = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "order"
    pytest.fail(
        f"the cleaned record's keys are not the columns of schema.CLEANED_COLUMNS ({apart}):\n"
        f"  cleaned: {keys}\n  schema:  {COLUMNS}\n"
        "A column is named in three places that must agree: schema.CLEANED_COLUMNS, "
        "transform.clean_beer and the Glue table in infra/template.yaml",
        pytrace=False,
    )


FIREHOSE_KEYS = ["recordId", "result", "data"]


def assert_firehose_answers(response: dict[str, Any]) -> None:
    """The Lambda's answer has the shape Firehose reads: {"records": [...]}, each record with
    exactly the keys of FIREHOSE_KEYS; when not, the failure says which and where it is built."""
    records = response.get("records") if isinstance(response, dict) else None
    if not isinstance(records, list):
        pytest.fail(
            f'the handler answered {shorten(response)}: Firehose reads {{"records": [...]}}, one '
            "per record it sent (brewops/lambdas/transform/app.py)",
            pytrace=False,
        )
    for record in records:
        if sorted(record) != sorted(FIREHOSE_KEYS):
            missing = [k for k in FIREHOSE_KEYS if k not in record]
            unexpected = [k for k in record if k not in FIREHOSE_KEYS]
            pytest.fail(
                f"an answered record has the keys {list(record)} (missing {missing}, unexpected "
                f"{unexpected}): Firehose reads exactly {FIREHOSE_KEYS} and fails the whole "
                "batch otherwise. Outcome.response in brewops/transform.py builds it",
                pytrace=False,
            )


def shorten(value: Any) -> str:
    return transform.shorten(repr(value), 200)


def firehose_event(records: list[dict[str, Any]], template: dict[str, Any]) -> dict[str, Any]:
    return {**template, "records": records}


# ------------------------------------------------------------------ the event fixture


def test_handler_answers_the_firehose_fixture(load_event, lambda_context):
    # GIVEN the Firehose event of three real beers read from Kinesis
    event = load_event("firehose_kinesis_transform")

    # WHEN Firehose invokes the function
    response = app.handler(event, lambda_context)

    # THEN every record comes back Ok, with its id, in order, as a cleaned JSON line
    assert_firehose_answers(response)
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in event["records"]]
    assert {r["result"] for r in response["records"]} == {"Ok"}
    cleaned = [decoded(r) for r in response["records"]]
    assert [c["id"] for c in cleaned] == [1, 24, 185]
    for c in cleaned:
        assert_schema_columns(c)
    assert all(base64.b64decode(r["data"]).endswith(b"\n") for r in response["records"])
    assert cleaned[1]["abv"] == 55.0  # a real outlier passes through, to be reported later


def test_ingested_at_is_the_kinesis_arrival_time(load_event):
    event = load_event("firehose_kinesis_transform")

    cleaned = [decoded(r) for r in transform.firehose_transform(event["records"])]

    # 1714566600123 ms = 2024-05-01 12:30:00.123 UTC, from kinesisRecordMetadata
    assert cleaned[0]["ingested_at"] == "2024-05-01 12:30:00.123"
    assert all(TIMESTAMP.match(c["ingested_at"]) for c in cleaned)


def test_ingested_at_falls_back_to_firehose_arrival_then_now():
    beer = '{"id": 1, "name": "Buzz"}'
    firehose_only = record(beer, approximateArrivalTimestamp=1714566600999)
    no_time = record(beer, "r2")

    first, second = (decoded(r) for r in transform.firehose_transform([firehose_only, no_time]))

    assert first["ingested_at"] == "2024-05-01 12:30:00.999"
    assert TIMESTAMP.match(second["ingested_at"])
    assert TIMESTAMP.match(json.loads(transform.transform_record(no_time).data)["ingested_at"])


def test_ingested_at_is_utc_whatever_the_local_time_zone(monkeypatch):
    # GIVEN a machine nine hours ahead of UTC (the local runtime runs on any machine)
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    try:
        # WHEN a record that entered Kinesis at 12:30:00.123 UTC is transformed
        arrived = record(
            '{"id": 1, "name": "Buzz"}',
            kinesisRecordMetadata={"approximateArrivalTimestamp": 1714566600123},
        )
        [outcome] = transform.transform_records([arrived])
    finally:
        monkeypatch.undo()  # the zone of the machine again, before the next test
        time.tzset()

    # THEN its ingested_at is in UTC, as the column says
    assert json.loads(outcome.data)["ingested_at"] == "2024-05-01 12:30:00.123"


@pytest.mark.parametrize("arrival", ["soon", 10**20, [1714566600123], -(10**20)])
def test_an_unusable_arrival_time_falls_back_to_now_and_the_beer_is_still_ok(arrival):
    # a good beer with odd metadata is still a beer: only its ingested_at is a guess
    odd = record(
        '{"id": 1, "name": "Buzz"}', kinesisRecordMetadata={"approximateArrivalTimestamp": arrival}
    )

    [outcome] = transform.transform_records([odd])

    assert outcome.result == "Ok", outcome.reason
    assert TIMESTAMP.match(json.loads(outcome.data)["ingested_at"])


def test_the_handler_returns_the_powertools_event_records_unchanged_in_number(
    load_event, lambda_context
):
    template = load_event("firehose_kinesis_transform")
    records = [record("{}", f"id-{i}") for i in range(50)] + template["records"]

    response = app.handler(firehose_event(records, template), lambda_context)

    assert len(response["records"]) == 53
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in records]


# ------------------------------------------------------------------ the real catalogue


def test_every_beer_of_the_real_catalogue_is_ok(catalog_beers):
    records = [record(serialise_beer(b), str(b["id"])) for b in catalog_beers]

    outcomes = transform.transform_records(records)

    assert len(catalog_beers) == 325
    assert [o.result for o in outcomes].count("Ok") == 325, [o.reason for o in outcomes if o.reason]
    by_id = {c["id"]: c for c in (json.loads(o.data) for o in outcomes)}
    assert sorted(by_id) == list(range(1, 326))
    for beer in catalog_beers:
        cleaned = by_id[beer["id"]]
        assert cleaned["name"] == beer["name"]
        for column in transform.NUMERIC_COLUMNS:
            expected = None if beer[column] is None else float(beer[column])
            assert cleaned[column] == expected, (beer["id"], column)


def test_the_quirks_of_the_real_data_survive(catalog_beers):
    outcomes = transform.transform_records(
        [record(serialise_beer(b), str(b["id"])) for b in catalog_beers]
    )
    cleaned = {c["id"]: c for c in (json.loads(o.data) for o in outcomes)}

    def count_null(column: str) -> int:
        return sum(c[column] is None for c in cleaned.values())

    assert count_null("ibu") == 5
    assert count_null("ebc") == 6 and count_null("srm") == 6
    assert count_null("ph") == 2
    assert count_null("target_og") == 1 and count_null("target_fg") == 1
    assert cleaned[317]["ph"] == 79.0
    assert cleaned[24]["abv"] == 55.0
    assert cleaned[185]["ibu"] == 1157.0 and cleaned[137]["ibu"] == 1085.0
    inverted = [
        c
        for c in cleaned.values()
        if None not in (c["target_fg"], c["target_og"]) and c["target_fg"] > c["target_og"]
    ]
    assert len(inverted) == 13


def test_cleaned_records_follow_the_schema(catalog_beers):
    outcome = transform.transform_record(record(serialise_beer(catalog_beers[0])))
    cleaned = json.loads(outcome.data)

    assert_schema_columns(cleaned)
    for column in schema.CLEANED_COLUMNS:
        value = cleaned[column.name]
        assert value is None or isinstance(value, column.python_type), column.name


@pytest.mark.parametrize(
    ("response", "named"),
    [
        ({"records": [{"recordId": "r1", "data": "e30="}]}, "missing ['result'], unexpected []"),
        ({"records": [{"recordId": "r1", "result": "Ok", "data": "", "x": 1}]}, "unexpected ['x']"),
        ([{"recordId": "r1", "result": "Ok", "data": ""}], 'Firehose reads {"records": [...]}'),
    ],
)
def test_an_answer_firehose_cannot_read_fails_with_what_is_wrong(response, named):
    with pytest.raises(pytest.fail.Exception, match=re.escape(named)):
        assert_firehose_answers(response)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (
            [*COLUMNS[:-1], "ingestion_time"],
            "missing ['ingested_at'], unexpected ['ingestion_time']",
        ),
        ([COLUMNS[1], COLUMNS[0], *COLUMNS[2:]], "(order)"),
    ],
)
def test_a_renamed_column_fails_with_the_places_that_must_agree(keys, named):
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_schema_columns(dict.fromkeys(keys))

    assert named in str(failed.value)
    assert "transform.clean_beer and the Glue table in infra/template.yaml" in str(failed.value)


@pytest.mark.parametrize(
    "column",
    [c for c in schema.CLEANED_COLUMNS if c.name != "ingested_at"],  # the transform sets it
    ids=lambda c: c.name,
)
def test_a_beer_without_a_column_is_refused_exactly_when_the_schema_says_not_nullable(column):
    beer = {"id": 1, "name": "Buzz", "abv": 4.5, "ibu": 60}
    beer.pop(column.name, None)

    if column.nullable:
        assert transform.clean_beer(beer, "2024-05-01 00:00:00.000")[column.name] is None
    else:
        with pytest.raises(transform.InvalidBeer, match=f"^{column.name}: missing$"):
            transform.clean_beer(beer, "2024-05-01 00:00:00.000")


def test_the_cleaned_record_holds_the_nine_challenge_columns_then_ingested_at():
    nine = ["id", "name", "abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph"]

    assert list(schema.CHALLENGE_COLUMNS) == nine
    assert [c.name for c in schema.CLEANED_COLUMNS] == [*nine, "ingested_at"]


def test_a_payload_nested_too_deeply_fails_as_malformed_json_and_spares_the_batch():
    # GIVEN arrays in arrays deeper than Python's JSON reader goes, well within 1 MiB
    deep = "[" * 100_000 + "]" * 100_000
    # WHEN it comes in a batch with a good record
    outcomes = transform.transform_records([record(deep), record('{"id": 1, "name": "Buzz"}')])
    # THEN it fails with its reason and its bytes, and the batch goes on
    assert [(o.result, o.reason) for o in outcomes] == [
        ("ProcessingFailed", "malformed JSON: nested too deeply"),
        ("Ok", None),
    ]
    assert outcomes[0].data == deep.encode()


@pytest.mark.parametrize("odd", [None, "data", ["data"]])
def test_a_record_that_is_not_an_object_fails_with_a_reason(odd):
    good = record('{"id": 1, "name": "Buzz"}')

    outcomes = transform.transform_records([odd, good])

    assert [o.result for o in outcomes] == ["ProcessingFailed", "Ok"]
    expected = f"record: expected an object, got {type(odd).__name__}"
    assert (outcomes[0].record_id, outcomes[0].reason) == ("", expected)


def test_an_ok_record_is_one_compact_json_line():
    outcome = transform.transform_record(
        record('{"id": 1, "name": "Bière", "abv": "4,5"}'), now="2024-05-01 12:30:00.000"
    )

    line = (
        '{"id":1,"name":"Bière","abv":4.5,"ibu":null,"target_fg":null,"target_og":null,'
        '"ebc":null,"srm":null,"ph":null,"ingested_at":"2024-05-01 12:30:00.000"}\n'
    )
    assert outcome.data == line.encode()


def test_a_column_is_found_by_its_name():
    assert (schema.column("ibu").name, schema.column("ibu").maximum) == ("ibu", 300)
    with pytest.raises(KeyError, match="colour"):
        schema.column("colour")


# ------------------------------------------------------------------ coercion


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("4.5", 4.5),
        (" 7 ", 7.0),
        ("4,5", 4.5),
        (4, 4.0),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_numbers_are_coerced_and_nulls_stay_null(given, expected):
    cleaned = transform.clean_beer(
        {"id": 1, "name": "Buzz", "abv": given}, "2024-05-01 00:00:00.000"
    )

    assert cleaned["abv"] == expected
    assert cleaned["ibu"] is None  # absent fields are null, not an error


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("12", 12),
        ("1", 1),  # the first id, as text too
        (12.0, 12),
        (" 7 ", 7),
        ("12.0", 12),
        ("9007199254740993", 2**53 + 1),
        (2**63 - 1, 2**63 - 1),  # the largest Glue bigint is still an id
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_ids_are_coerced_to_integers(given, expected):
    assert transform.clean_beer({"id": given, "name": "Buzz"}, "t")["id"] == expected


def test_names_are_trimmed_and_numbers_become_text():
    assert transform.clean_beer({"id": 1, "name": "  Buzz "}, "t")["name"] == "Buzz"
    assert transform.clean_beer({"id": 1, "name": 1664}, "t")["name"] == "1664"


# ------------------------------------------------------------------ bad records

BAD_RECORDS = {
    "malformed JSON": ("{not json", "malformed JSON"),
    "truncated JSON": ('{"id": 1, "name": "Bu', "malformed JSON"),
    "a JSON array": ('[{"id": 1, "name": "Buzz"}]', "expected a JSON object, got list"),
    "a JSON string": ('"Buzz"', "expected a JSON object"),
    "a JSON null": ("null", "expected a JSON object"),
    "no id": ('{"name": "Buzz"}', "id: missing"),
    "null id": ('{"id": null, "name": "Buzz"}', "id: missing"),
    "zero id": ('{"id": 0, "name": "Buzz"}', "id: expected a positive integer"),
    "fractional id": ('{"id": 1.5, "name": "Buzz"}', "id: expected a positive integer"),
    "text id": ('{"id": "one", "name": "Buzz"}', "id: expected a positive integer"),
    "boolean id": ('{"id": true, "name": "Buzz"}', "id: expected a positive integer"),
    "id past bigint": ('{"id": 9223372036854775808, "name": "Buzz"}', "id: expected a positive"),
    "no name": ('{"id": 1}', "name: missing"),
    "empty name": ('{"id": 1, "name": " "}', "name: empty"),
    "object name": ('{"id": 1, "name": {"en": "Buzz"}}', "name: expected text, got dict"),
    "boolean name": ('{"id": 1, "name": true}', "name: expected text"),
    "text abv": ('{"id": 1, "name": "Buzz", "abv": "strong"}', "abv: expected a number"),
    "boolean ibu": ('{"id": 1, "name": "Buzz", "ibu": false}', "ibu: expected a number"),
    "list ph": ('{"id": 1, "name": "Buzz", "ph": [4.4]}', "ph: expected a number, got list"),
    "NaN ebc": ('{"id": 1, "name": "Buzz", "ebc": NaN}', "ebc: expected a finite number"),
    "infinite srm": ('{"id": 1, "name": "Buzz", "srm": "inf"}', "srm: expected a finite number"),
    "thousands ibu": ('{"id": 1, "name": "Buzz", "ibu": "1,157"}', "ibu: '1,157' is ambiguous"),
    "integer ibu past any double": (
        '{"id": 1, "name": "Buzz", "ibu": 1' + "0" * 400 + "}",
        "ibu: expected a finite number",
    ),
    "infinite text id": ('{"id": "Infinity", "name": "Buzz"}', "id: expected a positive integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_record_that_is_not_a_beer_fails_with_its_reason(case):
    payload, reason = BAD_RECORDS[case]

    outcome = transform.transform_record(record(payload))

    assert outcome.result == "ProcessingFailed"
    assert reason in outcome.reason
    assert outcome.data == payload.encode()  # the original bytes, for the error prefix


def test_base64_garbage_and_binary_fail_with_their_reason():
    garbage = {"recordId": "g", "data": "!!! not base64 !!!"}
    binary = record(b"\xff\xfe\x00beer", "b")
    no_data = {"recordId": "n"}
    # an event's JSON may escape half a surrogate pair: the text is not even UTF-8
    lone_surrogate = {"recordId": "s", "data": "\ud800 not base64"}

    outcomes = transform.transform_records([garbage, binary, no_data, lone_surrogate])

    assert [o.result for o in outcomes] == ["ProcessingFailed"] * 4
    assert outcomes[0].reason == "data: not valid base64"
    assert outcomes[0].data == b"!!! not base64 !!!"
    assert outcomes[1].reason == "data: not UTF-8 text"
    assert outcomes[1].data == b"\xff\xfe\x00beer"
    assert outcomes[2].reason == "data: missing or not base64 text"
    assert outcomes[2].data == b""
    assert outcomes[3].reason == "data: not valid base64"
    assert outcomes[3].data == b"? not base64"


@pytest.mark.parametrize("payload", ["", "\n", "  \r\n\t"])
def test_empty_payloads_are_dropped_with_a_reason(payload):
    outcome = transform.transform_record(record(payload))

    assert outcome.result == "Dropped"
    assert outcome.reason == "empty payload"


def test_a_mixed_batch_never_crashes_and_keeps_count_and_order(load_event, lambda_context):
    template = load_event("firehose_kinesis_transform")
    good = template["records"][0]
    records = [
        good,
        record("{oops", "bad-json"),
        record("", "empty"),
        {"recordId": "garbage", "data": "%%%"},
        record('{"name": "no id"}', "not-a-beer"),
        record(b"\x80\x81", "binary"),
        {**good, "recordId": "good-again"},
    ]

    response = app.handler(firehose_event(records, template), lambda_context)

    results = [(r["recordId"], r["result"]) for r in response["records"]]
    assert results == [
        (good["recordId"], "Ok"),
        ("bad-json", "ProcessingFailed"),
        ("empty", "Dropped"),
        ("garbage", "ProcessingFailed"),
        ("not-a-beer", "ProcessingFailed"),
        ("binary", "ProcessingFailed"),
        ("good-again", "Ok"),
    ]
    assert_firehose_answers(response)


def test_the_answer_to_a_request_of_6_mb_is_smaller_though_small_beers_grow(
    load_event, lambda_context
):
    # GIVEN a request near Lambda's 6 MB limit, of the smallest beers (that grow the most:
    # nulls for every missing column, and ingested_at)
    payload = b'{"id":1,"name":"x"}\n'
    template = load_event("firehose_kinesis_transform")
    (sample, *_) = template["records"]

    def nth(n: int) -> dict[str, Any]:
        return {**sample, "recordId": f"{sample['recordId']}{n:06d}", "data": b64(payload)}

    count = (6 * 1024 * 1024 - len(json.dumps(template))) // (len(json.dumps(nth(0))) + 2)
    event = firehose_event([nth(n) for n in range(count)], template)
    assert len(json.dumps(event)) <= 6 * 1024 * 1024

    # WHEN the function answers it
    response = app.handler(event, lambda_context)

    # THEN the answer fits Lambda's 6 MB response limit too, even where records grow
    assert len(response["records"]) == count
    assert len(json.dumps(response)) < len(json.dumps(event))


def test_records_in_a_shape_nobody_sent_still_get_an_answer():
    odd_metadata = record('{"id": 1, "name": "B"}', "odd", kinesisRecordMetadata="?")
    no_record_id = {"data": b64('{"id": 2, "name": "C"}')}

    outcomes = transform.transform_records([odd_metadata, None, "text", no_record_id])

    assert [o.result for o in outcomes] == ["Ok", "ProcessingFailed", "ProcessingFailed", "Ok"]
    assert [o.record_id for o in outcomes] == ["odd", "", "", ""]
    assert TIMESTAMP.match(json.loads(outcomes[0].data)["ingested_at"])
    assert outcomes[1].data == outcomes[2].data == b""  # no payload to carry back


def test_an_unexpected_error_fails_one_record_not_the_batch(monkeypatch):
    real_clean = transform.clean_beer

    def clean_or_explode(beer, ingested_at):
        if beer.get("id") == 2:
            raise RuntimeError("bug")
        return real_clean(beer, ingested_at)

    monkeypatch.setattr(transform, "clean_beer", clean_or_explode)
    records = [record(json.dumps({"id": i, "name": f"B{i}"}), f"r{i}") for i in (1, 2, 3)]

    outcomes = transform.transform_records(records)

    assert [o.result for o in outcomes] == ["Ok", "ProcessingFailed", "Ok"]
    assert [o.record_id for o in outcomes] == ["r1", "r2", "r3"]  # how Firehose pairs answers
    assert outcomes[1].reason == "unexpected error: RuntimeError: bug"
    assert json.loads(outcomes[1].data) == {"id": 2, "name": "B2"}


def test_every_record_not_ok_is_logged_with_its_id_and_reason(caplog):
    records = [
        record("{oops", "bad"),
        record("", "empty"),
        record('{"id": 1, "name": "B"}', "ok"),
        record('{"id": 7, "name": ""}', "nameless", kinesisRecordMetadata={"sequenceNumber": "49"}),
    ]

    with caplog.at_level(logging.INFO, logger="brewops.transform"):
        transform.transform_records(records)

    per_record = [r for r in caplog.records if hasattr(r, "record_id")]
    assert [(r.levelname, r.record_id, r.beer_id, r.result) for r in per_record] == [
        ("WARNING", "bad", None, "ProcessingFailed"),
        ("INFO", "empty", None, "Dropped"),  # a drop by design is no failure
        ("WARNING", "nameless", 7, "ProcessingFailed"),  # the beer's id, as in the error prefix
    ]
    assert [r.sequence_number for r in per_record] == [None, None, "49"]
    assert all(r.reason for r in per_record)
    summary = [r for r in caplog.records if r.getMessage() == "batch transformed"]
    assert summary and summary[0].records == 4
    assert (summary[0].Ok, summary[0].Dropped, summary[0].ProcessingFailed) == (1, 1, 2)


def test_the_payload_digest_is_the_first_16_hex_digits_of_the_sha256_of_the_bytes():
    # pragma: allowlist nextline secret (the SHA-256 of nothing, cut short)
    assert transform.payload_sha256(b"") == "e3b0c44298fc1c14"
    assert transform.payload_sha256(b"{oops") == "935aaf3a54c0648c"  # pragma: allowlist secret
    assert transform.payload_sha256(b"\xff\xfe") != transform.payload_sha256(b"\xff\xfd")


def test_each_log_line_names_the_digest_of_the_bytes_the_error_prefix_keeps(caplog):
    # GIVEN records whose bytes name no beer: only their bytes reach the error prefix
    payloads = [b"{oops", b'{"name": "no id"}', b"\xff\xfe binary", b"  \n"]
    records = [record(data, f"r{n}") for n, data in enumerate(payloads)]

    with caplog.at_level(logging.INFO, logger="brewops.transform"):
        outcomes = transform.transform_records(records)

    per_record = [r for r in caplog.records if hasattr(r, "record_id")]
    assert [r.beer_id for r in per_record] == [None] * 4
    # THEN each line holds the digest of the record's bytes, as rawData holds them
    assert [r.payload_sha256 for r in per_record] == [
        transform.payload_sha256(data) for data in payloads
    ]
    assert [transform.payload_sha256(o.data) for o in outcomes] == [
        r.payload_sha256 for r in per_record
    ]


def test_the_handler_logs_reasons_as_structured_json(load_event, lambda_context, lambda_logs):
    template = load_event("firehose_kinesis_transform")
    logs = lambda_logs(app.logger)

    app.handler(firehose_event([record("{oops", "bad-1")], template), lambda_context)

    failure = next(line for line in logs() if line["level"] == "WARNING")
    assert failure["message"] == "record not transformed"
    assert failure["record_id"] == "bad-1"
    assert failure["result"] == "ProcessingFailed"
    assert failure["reason"].startswith("malformed JSON")
    assert failure["payload_sha256"] == transform.payload_sha256(b"{oops")
    assert failure["function_request_id"] == lambda_context.aws_request_id


def test_an_escaped_lone_surrogate_fails_with_its_reason_not_as_unexpected(caplog):
    # valid JSON, and valid UTF-8 on the wire, but half a character once decoded
    payload = b'{"id": 7, "name": "Bad \\ud800 Beer", "abv": 5}'

    with caplog.at_level(logging.ERROR):
        [outcome] = transform.transform_records([record(payload, "s")])

    assert outcome.result == "ProcessingFailed"
    assert outcome.reason == "not a beer: \\ud800 is not a character"
    assert outcome.data == payload
    assert not [r for r in caplog.records if r.exc_info], "refused with a reason, no traceback"


def test_an_offending_value_is_quoted_to_200_characters_in_the_reason_and_the_log(caplog):
    # GIVEN beers whose offending values are far longer than a log line should be
    long_abv = record(json.dumps({"id": 9, "name": "B", "abv": "x" * 5000}), "abv")
    long_id = record(json.dumps({"id": "y" * 3000, "name": "B"}), "id")
    object_id = record(json.dumps({"id": {"nested": "z" * 3000}, "name": "B"}), "object")

    # WHEN they are transformed
    with caplog.at_level(logging.INFO, logger="brewops.transform"):
        outcomes = transform.transform_records([long_abv, long_id, object_id])

    # THEN each fails with its reason, quoting at most 200 characters of the value
    assert [o.result for o in outcomes] == ["ProcessingFailed"] * 3
    assert outcomes[0].reason.startswith("not a beer: abv: expected a number, got 'xxx")
    assert all(len(o.reason) < 300 for o in outcomes)
    assert "x" * 200 in outcomes[0].reason and "x" * 201 not in outcomes[0].reason
    assert outcomes[0].reason.endswith("'... (5000 characters)")
    # AND the log lines, beer_id too, hold no value in full; the records keep their bytes
    logged = [r for r in caplog.records if hasattr(r, "record_id")]
    assert logged[0].beer_id == 9
    assert all(len(str(r.beer_id)) < 300 and len(r.reason) < 300 for r in logged)
    assert outcomes[1].data == base64.b64decode(long_id["data"])


def test_an_unexpected_error_is_logged_once_at_error_with_the_record_keys(monkeypatch, caplog):
    def explode(beer, ingested_at):
        raise RuntimeError("bug " + "b" * 5000)

    monkeypatch.setattr(transform, "clean_beer", explode)
    metadata = {"shardId": "shardId-000000000000", "sequenceNumber": "49"}

    with caplog.at_level(logging.INFO, logger="brewops.transform"):
        transform.transform_records(
            [record('{"id": 2, "name": "B"}', "r2", kinesisRecordMetadata=metadata)]
        )

    (line,) = [r for r in caplog.records if hasattr(r, "record_id")]
    assert (line.levelname, line.record_id, line.beer_id) == ("ERROR", "r2", 2)
    assert (line.shard_id, line.sequence_number) == ("shardId-000000000000", "49")
    assert line.exc_info and len(line.reason) < 300


def test_the_handler_logs_the_kinesis_keys_the_producer_logs(
    load_event, lambda_context, lambda_logs
):
    # GIVEN a record as Firehose reads it from Kinesis, with the shard and sequence number
    template = load_event("firehose_kinesis_transform")
    (sample, *_) = template["records"]
    bad = {**sample, "recordId": "bad-2", "data": b64('{"id": 5, "name": ""}')}
    logs = lambda_logs(app.logger)

    app.handler(firehose_event([bad], template), lambda_context)

    # THEN its line names them under the producer's keys (shard_id, sequence_number)
    failure = next(line for line in logs() if line.get("record_id") == "bad-2")
    metadata = sample["kinesisRecordMetadata"]
    assert failure["beer_id"] == 5
    assert failure["shard_id"] == metadata["shardId"]
    assert failure["sequence_number"] == metadata["sequenceNumber"]


def test_a_value_of_escaped_characters_is_quoted_to_200_characters_too(caplog):
    # GIVEN values whose repr is four times their length: each NUL is written \x00
    nuls = "\x00" * 5000
    long_abv = record(json.dumps({"id": 9, "name": "B", "abv": nuls}), "abv")
    long_id = record(json.dumps({"id": nuls, "name": "B"}), "id")

    with caplog.at_level(logging.INFO, logger="brewops.transform"):
        outcomes = transform.transform_records([long_abv, long_id])

    # THEN the reason and the logged beer_id quote at most 200 characters of the repr
    assert all(len(o.reason) < 300 for o in outcomes), [len(o.reason) for o in outcomes]
    assert outcomes[0].reason.endswith("... (5000 characters)")
    logged = [r for r in caplog.records if hasattr(r, "record_id")]
    assert all(len(str(r.beer_id)) < 300 for r in logged)
