"""Reading the catalogued tables: layout rules, typing, deduplication and the two engines."""

from __future__ import annotations

import gzip
import io
import json
import warnings
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest

from brewops import tables
from brewops.tables import Projection, latest_per_id, place_in_layout, read_objects, typed
from fixtures.validation import table_info

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


# ------------------------------------------------------------------ unit


@pytest.mark.parametrize(
    ("range_text", "expected"),
    [
        ("2024-01-01,NOW", (date(2024, 1, 1), date(2026, 11, 26))),
        ("NOW-3DAYS,NOW", (date(2026, 11, 23), date(2026, 11, 26))),
        ("NOW-1YEARS,NOW+2DAYS", (date(2025, 11, 26), date(2026, 11, 28))),
        ("2024-01-01", None),
        ("yesterday,NOW", None),
    ],
)
def test_projection_bounds_follow_athena_range_syntax(range_text, expected):
    projection = Projection("ingest_date", True, "date", "yyyy-MM-dd", range_text, None)
    assert projection.bounds(NOW) == expected


def test_projection_parses_only_exact_dates():
    projection = Projection("ingest_date", True, "date", "yyyy-MM-dd", "2024-01-01,NOW", None)
    assert projection.parse("2026-11-26") == date(2026, 11, 26)
    assert projection.parse("2026-1-5") is None
    assert projection.parse("2026-11-26T00") is None


@pytest.mark.parametrize(
    ("key", "partition", "reason"),
    [
        (
            "ingest_date=2026-11-26/brewops-cleaned-dev-1-2026-11-26-15-04-05-abc",
            "2026-11-26",
            None,
        ),
        ("stray-object", None, "not under a ingest_date=… partition folder"),
        ("ingest_date=2026-11-26/sub/object", None, "in a sub-folder of partition"),
        ("ingest_date=26-11-2026/object", None, "does not match yyyy-MM-dd"),
        ("ingest_date=2023-12-31/object", None, "outside the projection range"),
        ("ingest_date=2024-01-01/object", "2024-01-01", None),  # the range's first day
        ("ingest_date=2026-11-27/object", None, "outside the projection range"),
        ("ingest_date=2026-11-26/_SUCCESS", None, "hidden file name"),
        ("ingest_date=2026-11-26/.brewops-cleaned.tmp", None, "hidden file name"),
        ("year=2026/object", None, "not under a ingest_date=… partition folder"),
    ],
)
def test_objects_are_placed_in_the_partition_layout(key, partition, reason):
    found_partition, found_reason = place_in_layout(
        table_info(columns=(("id", "bigint"), ("abv", "double"))), f"s3://bkt/cleaned/{key}", NOW
    )
    assert found_partition == partition
    if reason is None:
        assert found_reason is None
    else:
        assert reason in found_reason


def test_typed_frames_carry_the_glue_types_and_keep_what_does_not_fit():
    raw = pd.DataFrame(
        {
            "id": [1, 2],
            "abv": ["4.5", "n/a"],
            "ibu": [10.0, None],
            "ingested_at": ["2026-11-26 15:04:05.123", "2026-11-26 15:04:06.000"],
            "extra": ["dropped", "dropped"],
        }
    )
    columns = [
        ("id", "bigint"),
        ("abv", "double"),
        ("ibu", "double"),
        ("ingested_at", "timestamp"),
        ("name", "string"),
        ("ingest_date", "string"),
    ]
    out = typed(raw, columns)
    assert list(out.columns) == [name for name, _ in columns]
    assert str(out["id"].dtype) == "Int64"
    assert out["abv"].dtype == object, "an unparseable value must not be coerced away"
    assert out["ibu"].dtype == "float64"
    assert out["ingested_at"].dtype == "datetime64[ns]"
    assert out["ingested_at"][0] == pd.Timestamp("2026-11-26 15:04:05.123")
    assert out["name"].isna().all() and str(out["name"].dtype) == "string"


def test_ids_given_as_numbers_and_as_text_are_still_bigints():
    # JSON lines where one writer quoted the id: "2" fits a bigint as well as 2 does
    out = typed(pd.DataFrame({"id": pd.Series([1, "2", None], dtype=object)}), [("id", "bigint")])

    assert str(out["id"].dtype) == "Int64"
    assert out["id"].tolist() == [1, 2, pd.NA]


@pytest.mark.parametrize("dtype", [None, "string"], ids=["inferred", "string"])
def test_ids_that_are_all_text_are_still_bigints(dtype):
    # every writer quoted the id: pandas 3 infers a string dtype for such a column, not object
    ids = pd.Series(["12.0", " 7", None], dtype=dtype)
    out = typed(pd.DataFrame({"id": ids}), [("id", "bigint")])

    assert str(out["id"].dtype) == "Int64"
    assert out["id"].tolist() == [12, 7, pd.NA]


@pytest.mark.parametrize(
    ("key", "partition", "reason"),
    [("object", "", None), ("sub/object", None, "in a sub-folder"), ("_tmp", None, "hidden")],
)
def test_a_table_without_partitions_reads_only_its_own_folder(key, partition, reason):
    info = table_info(partition_keys=())

    found_partition, found_reason = place_in_layout(info, f"s3://bkt/cleaned/{key}", NOW)

    assert found_partition == partition
    assert (found_reason is None) if reason is None else (reason in found_reason)


def test_latest_per_id_keeps_the_last_ingested_record():
    df = pd.DataFrame(
        {
            "id": pd.array([2, 1, 2, 1, None], dtype="Int64"),
            "abv": [2.0, 1.0, 2.5, 1.5, 9.9],
            "ingested_at": pd.to_datetime(
                [
                    "2026-11-26 10:00",
                    "2026-11-26 12:00",
                    "2026-11-26 11:00",
                    "2026-11-26 09:00",
                    "2026-11-26 13:00",
                ]
            ),
        }
    )
    latest = latest_per_id(df)
    assert latest["id"].tolist() == [1, 2]
    assert latest["abv"].tolist() == [1.0, 2.5]


def test_a_record_without_an_ingestion_time_is_not_the_latest():
    df = pd.DataFrame(
        {
            "id": pd.array([1, 1], dtype="Int64"),
            "abv": [4.5, 9.9],
            "ingested_at": pd.to_datetime(["2026-11-26 10:00", None]),
        }
    )
    assert latest_per_id(df)["abv"].tolist() == [4.5]


def test_latest_per_id_falls_back_to_delivery_order():
    df = pd.DataFrame({"id": [3, 3, 4], "name": ["first", "second", "only"]})
    assert latest_per_id(df)["name"].tolist() == ["second", "only"]


@pytest.mark.parametrize("rows", [slice(None), slice(None, None, -1)], ids=["read", "reversed"])
def test_the_latest_record_does_not_hang_on_the_order_athena_returns_rows_in(rows):
    # raw has no ingestion time: the later delivery day wins; cleaned copies of one Kinesis
    # record (a Firehose retry) share it, and the copy delivered after midnight wins
    raw = pd.DataFrame(
        {"id": [5, 5], "name": ["earlier", "later"], "ingest_date": ["2026-11-26", "2026-11-27"]}
    )
    cleaned = raw.assign(ingested_at=pd.Timestamp("2026-11-26 23:59:59.900"))

    assert latest_per_id(raw.iloc[rows])["name"].tolist() == ["later"]
    assert latest_per_id(cleaned.iloc[rows])["ingest_date"].tolist() == ["2026-11-27"]


def test_a_projection_without_a_format_matches_no_partition_value():
    projection = Projection("ingest_date", True, "date", None, "2024-01-01,NOW", None)

    assert projection.parse("2026-11-26") is None
    assert projection.bounds(NOW) is None, "the range's dates cannot be read either"


def test_projection_ranges_and_switches_are_read_in_any_case():
    projection = Projection("ingest_date", True, "date", "yyyy-MM-dd", "now-3days,now", None)
    info = table_info(**{"projection.enabled": "TRUE"})

    assert projection.bounds(NOW) == (date(2026, 11, 23), date(2026, 11, 26))
    assert info.projection().enabled


@pytest.mark.parametrize(
    ("key", "partition"),
    [("day=2026-11-26/object", "2026-11-26"), ("ingest_date=2026-11-26/object", None)],
)
def test_objects_are_placed_by_the_tables_location_template(key, partition):
    info = table_info(**{"storage.location.template": "s3://bkt/cleaned/day=${ingest_date}/"})

    assert place_in_layout(info, f"s3://bkt/cleaned/{key}", NOW)[0] == partition


def test_a_partition_folder_of_another_key_is_outside_the_layout():
    # as long as "ingest_date=", so only its name tells them apart
    info = table_info()
    found = place_in_layout(info, "s3://bkt/cleaned/ingest_hour=2026-11-26/object", NOW)

    assert found == (None, "not under a ingest_date=… partition folder")


def test_timestamps_with_a_time_zone_become_naive_utc():
    stamps = pd.Series(pd.to_datetime(["2026-11-26 16:00"]).tz_localize("Europe/Madrid"))

    out = typed(pd.DataFrame({"ingested_at": stamps}), [("ingested_at", "timestamp")])

    assert out["ingested_at"].tolist() == [pd.Timestamp("2026-11-26 15:00")]


def test_a_table_with_no_objects_reads_as_an_empty_typed_frame():
    info = table_info()

    frame = read_objects(info, [], SimpleNamespace(session=None))

    assert frame.empty and list(frame.columns) == [n for n, _ in tables.table_columns(info)]
    assert str(frame["id"].dtype) == "Int64" and frame.attrs["malformed_lines"] == []


def _read_without_aws(monkeypatch, **kwargs):
    """`read_table` of a table that holds no objects, its definition `table_info`'s."""
    monkeypatch.setattr(tables, "describe_table", lambda name, tgt: table_info())
    monkeypatch.setattr(tables, "list_table_objects", lambda info, tgt: [])
    return tables.read_table("cleaned", SimpleNamespace(name="local", session=None), **kwargs)


def test_a_table_source_names_the_stack_and_where_the_table_lies(monkeypatch):
    """What a model card trained on the table records of it, beside the rows' checksum."""
    monkeypatch.setattr(tables, "describe_table", lambda name, tgt: table_info())

    source = tables.table_source("cleaned", SimpleNamespace(stack_name="brewops-dev"))

    assert source == {
        "stack": "brewops-dev",
        "database": "db",
        "table": "beers_cleaned",
        "location": "s3://bkt/cleaned/",
    }


def test_one_column_named_as_text_is_read_as_that_column(monkeypatch):
    frame = _read_without_aws(monkeypatch, columns="abv")

    assert list(frame.columns) == ["abv", "ingest_date"]


def test_a_column_the_table_lacks_is_named_not_left_out(monkeypatch):
    with pytest.raises(ValueError, match=r"no column 'abvv'.*: id, name, abv"):
        _read_without_aws(monkeypatch, columns=["id", "abvv"])


def test_only_s3_uris_name_objects():
    assert tables.split_s3_uri("s3://bkt/cleaned/a") == ("bkt", "cleaned/a")
    with pytest.raises(ValueError, match="not an s3:// URI"):
        tables.split_s3_uri("https://bkt.s3.amazonaws.com/cleaned/a")


def test_records_ingested_at_the_same_time_keep_their_delivery_order():
    ids = list(range(1, 11))  # enough rows for an unstable sort to reorder equal times
    df = pd.DataFrame(
        {
            "id": pd.array(ids * 2, dtype="Int64"),
            "name": ["first"] * 10 + ["second"] * 10,
            "ingested_at": pd.Timestamp("2026-11-26 10:00"),
        }
    )

    assert latest_per_id(df)["name"].tolist() == ["second"] * 10


def test_json_fields_named_like_dates_are_read_as_delivered_without_deprecated_keywords():
    # pandas 2 parses a column named like a date unless told not to; pandas 3.1 deprecates
    # the keyword that says so (convert_dates), and dtype=False alone then reads as delivered
    lines = '{"id": 1, "brewed_at": "1410393600000", "date": "09/2007"}\n'

    def read_json(path, boto3_session, compression, **kwargs):
        return pd.read_json(io.StringIO(lines), **kwargs)

    wr = SimpleNamespace(s3=SimpleNamespace(read_json=read_json))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        frame = tables._read_with_awswrangler(wr, table_info(), ["s3://bkt/raw/a.gz"], None, None)

    assert frame.to_dict("records") == [{"id": 1, "brewed_at": "1410393600000", "date": "09/2007"}]


def test_json_objects_of_mixed_compression_are_read_each_with_its_own(monkeypatch):
    # Firehose writes gzip with ".gz"; another writer may leave an object plain, or gzip
    # without the extension: each run of one compression is one read, in delivery order
    bodies = {"raw/b": gzip.compress(b'{"id": 2}\n'), "raw/c": b'{"id": 3}\n'}
    heads = SimpleNamespace(
        get_object=lambda Bucket, Key, Range: {"Body": io.BytesIO(bodies[Key][:2])}
    )
    monkeypatch.setattr(tables, "aws_client", lambda tgt, service: heads)
    reads = []

    def read_json(path, compression, **kwargs):
        reads.append((compression, path))
        return pd.DataFrame({"id": [len(reads)]})

    wr = SimpleNamespace(s3=SimpleNamespace(read_json=read_json))
    paths = ["s3://bkt/raw/a.gz", "s3://bkt/raw/b", "s3://bkt/raw/c", "s3://bkt/raw/d.gz"]

    frame = tables._read_with_awswrangler(wr, table_info(), paths, None, None)

    assert reads == [("gzip", paths[:2]), (None, paths[2:3]), ("gzip", paths[3:])]
    assert frame["id"].tolist() == [1, 2, 3]


# ------------------------------------------------------------------ against the emulator


@pytest.mark.emulator
def test_read_cleaned_table_returns_every_delivered_row_typed(delivered):
    frame = tables.read_table("cleaned", delivered.tables)

    assert len(frame) == delivered.records
    assert list(frame.columns) == [name for name, _ in tables.cleaned_columns()]
    assert str(frame["id"].dtype) == "Int64"
    assert frame["abv"].dtype == "float64"
    assert frame["ingested_at"].dtype == "datetime64[ns]"
    assert str(frame["ingest_date"].dtype) == "string"
    assert set(frame["ingest_date"]) == {d.strftime("%Y-%m-%d") for d in delivered.days}
    assert frame.loc[frame["id"] == 317, "ph"].tolist() == [79.0, 79.0]
    latest = latest_per_id(frame)
    assert latest["id"].tolist() == list(range(1, 326))


@pytest.mark.emulator
def test_read_raw_table_reads_gzip_ndjson_with_or_without_extension(delivered):
    frame = tables.read_table("raw", delivered.tables)

    assert len(frame) == delivered.records
    assert "ingested_at" not in frame
    assert str(frame["id"].dtype) == "Int64" and frame["abv"].dtype == "float64"
    assert isinstance(frame["volume"].iloc[0], dict)
    # the redelivered beers came last, in an object without ".gz"
    assert frame["id"].tail(3).tolist() == list(delivered.redelivered)


@pytest.mark.emulator
def test_the_raw_table_gives_back_every_number_as_it_was_delivered(delivered):
    frame = latest_per_id(tables.read_table("raw", delivered.tables)).set_index("id")

    for beer in delivered.beers:
        read_back = frame.loc[beer["id"]]
        for column in ("abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph", "ingredients"):
            if beer[column] is not None:
                assert read_back[column] == beer[column], (beer["id"], column)


@pytest.mark.emulator
def test_objects_outside_the_layout_are_not_read(delivered):
    local = delivered.tables
    beer = delivered.beers[0]
    from fixtures.validation import cleaned_record

    local.put_cleaned(
        [cleaned_record(beer, datetime.now(UTC))], datetime.now(UTC), key="cleaned/stray-object"
    )
    frame = tables.read_table("cleaned", local)
    assert len(frame) == delivered.records


@pytest.mark.emulator
def test_an_unreadable_object_is_named(delivered):
    local = delivered.tables
    day = delivered.days[1].strftime("%Y-%m-%d")
    uri = local.put(f"cleaned/ingest_date={day}/not-parquet", b"this is not parquet")
    with pytest.raises(tables.UnreadableTableError) as caught:
        tables.read_table("cleaned", local)
    assert uri in str(caught.value)
    assert caught.value.objects == [uri]


@pytest.mark.emulator
def test_malformed_json_lines_are_skipped_as_the_serde_does(delivered):
    local = delivered.tables
    beer = delivered.beers[4]
    import json

    too_deep = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON reader goes
    lines = [json.dumps(beer), "{not json", "[1, 2]", too_deep]
    uri = local.put_raw([], delivered.days[1], lines=lines)
    frame = tables.read_table("raw", local)
    assert len(frame) == delivered.records + 1
    assert frame.attrs["malformed_lines"] == [f"{uri}:2", f"{uri}:3", f"{uri}:4"]


@pytest.mark.emulator
@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_record_holding_a_unicode_line_separator_is_one_line_beside_a_malformed_one(
    delivered, separator
):
    # the producer writes text unescaped (ensure_ascii=False); only "\n" ends a JSON line
    local = delivered.tables
    beer = {**delivered.beers[4], "description": f"Hoppy{separator}and dry"}
    lines = [json.dumps(beer, ensure_ascii=False), "{not json"]
    uri = local.put_raw([], delivered.days[1], lines=lines)

    frame = tables.read_table("raw", local)

    assert frame.attrs["malformed_lines"] == [f"{uri}:2"]
    assert len(frame) == delivered.records + 1
    assert f"Hoppy{separator}and dry" in set(frame["description"])


@pytest.mark.emulator
@pytest.mark.parametrize(
    "odd_lines",
    [[], ["{not json", "[1, 2]"], ["5"]],
    ids=["well-formed", "malformed", "not-an-object"],
)
def test_some_columns_read_chunk_by_chunk_hold_what_the_whole_read_holds(
    delivered, monkeypatch, odd_lines
):
    local = delivered.tables
    # the odd lines make a chunk of their own: pandas reads a lone "5" as a column named 0
    lines = [json.dumps(beer) for beer in delivered.beers[:2]] + odd_lines
    local.put_raw([], delivered.days[1], lines=lines)
    monkeypatch.setattr(tables, "JSON_CHUNK_LINES", 2)
    columns = ["id", "abv", "ph"]

    whole = tables.read_table("raw", local)
    some = tables.read_table("raw", local, columns=columns)

    assert list(some.columns) == [*columns, "ingest_date"]
    pd.testing.assert_frame_equal(some, whole[list(some.columns)])
    assert some.attrs["malformed_lines"] == whole.attrs["malformed_lines"]


@pytest.mark.parametrize("parquet", [False, True], ids=["json", "parquet"])
def test_an_athena_read_with_no_column_to_select_selects_the_rows_objects(parquet):
    # a table whose Glue definition names no column and no partition key (or none asked
    # for, without partition keys): no `SELECT , "$path"` nor `SELECT  FROM`
    info = table_info(columns=(), partition_keys=())
    if parquet:
        info = replace(
            info, input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
        )

    sql = tables._athena_query(info, tables.table_columns(info, columns=[]))

    assert sql == 'SELECT "$path" AS "source_object" FROM "beers_cleaned"'


@pytest.mark.emulator
def test_the_aws_target_reads_only_the_columns_asked_for(delivered, monkeypatch):
    import awswrangler as wr

    asked = []

    def read_sql_query(sql, **kwargs):
        asked.append(sql)
        return pd.DataFrame({"id": [1], "abv": [4.7], "ingest_date": ["2026-11-26"]})

    monkeypatch.setattr(wr.athena, "read_sql_query", read_sql_query)
    monkeypatch.setattr(delivered.tables, "name", "aws")
    frame = tables.read_table("raw", delivered.tables, columns=["abv", "id"])

    # the table's order, not the order asked: the typed frame follows the Glue columns
    assert len(asked) == 1 and asked[0].startswith('SELECT "id", "abv", "ingest_date", CASE ')
    assert asked[0].endswith(' FROM "beers_raw"')
    assert list(frame.columns) == ["id", "abv", "ingest_date"]


@pytest.mark.emulator
@pytest.mark.parametrize("columns", [None, ["id", "abv"]], ids=["all-columns", "some"])
def test_athena_rows_of_malformed_raw_lines_are_listed_not_read(delivered, monkeypatch, columns):
    import awswrangler as wr

    uri = "s3://bucket/raw/ingest_date=2026-11-26/brewops-raw-1.gz"
    asked = []

    # Athena's answer: with ignore.malformed.json the OpenX SerDe reads a line it cannot
    # parse as an empty object, so its row is NULL in every column but the partition key
    def read_sql_query(sql, **kwargs):
        asked.append(sql)
        answer = pd.DataFrame(
            {"id": [1, None, 2], "abv": [4.7, None, 5.0], "ingest_date": ["2026-11-26"] * 3}
        )
        if '"$path"' in sql:
            answer[tables.MALFORMED_OBJECT] = [None, uri, None]
        return answer

    monkeypatch.setattr(wr.athena, "read_sql_query", read_sql_query)
    monkeypatch.setattr(delivered.tables, "name", "aws")
    frame = tables.read_table("raw", delivered.tables, columns=columns)

    # every data column is asked about, not only those read: a line holding just a name
    # parsed, and stays a row
    assert '"name" IS NULL AND' in asked[0] and '"ingest_date" IS NULL' not in asked[0]
    assert frame["id"].tolist() == [1, 2]
    assert frame.attrs["malformed_lines"] == [uri]
    assert tables.MALFORMED_OBJECT not in frame


@pytest.mark.emulator
def test_the_aws_target_reads_through_athena_with_the_stack_workgroup(delivered, monkeypatch):
    import awswrangler as wr

    # The emulator keeps the Glue catalog but runs no SQL: Athena's answer is stood in for,
    # and the test checks what is asked of it and what is made of the answer.
    calls = []

    def read_sql_table(**kwargs):
        calls.append(kwargs)
        return pd.DataFrame({"id": [1], "abv": [4.7], "ingest_date": ["2026-11-26"]})

    monkeypatch.setattr(wr.athena, "read_sql_table", read_sql_table)
    monkeypatch.setattr(delivered.tables, "name", "aws")
    frame = tables.read_table("cleaned", delivered.tables)

    assert calls[0]["table"] == "beers_cleaned"
    assert calls[0]["database"] == delivered.tables.outputs["GlueDatabaseName"]
    assert calls[0]["workgroup"] == "brewops-test-workgroup"
    assert list(frame.columns) == [name for name, _ in tables.cleaned_columns()]
    assert str(frame["id"].dtype) == "Int64"


@pytest.mark.emulator
def test_a_location_without_a_trailing_slash_lists_only_its_own_folder(delivered):
    local = delivered.tables
    info = tables.describe_table("cleaned", local)
    local.put(f"{local.object_name('cleaned-old', delivered.days[0])}", b"PAR1 old copy")

    listed = tables.list_table_objects(replace(info, location=info.location.rstrip("/")), local)

    assert [o.uri for o in listed] == [o.uri for o in tables.list_table_objects(info, local)]
    assert not any("cleaned-old" in o.uri for o in listed)


@pytest.mark.emulator
@pytest.mark.parametrize("name", ["cleaned", "raw"])
def test_a_partition_holding_only_empty_objects_adds_no_rows(delivered, name):
    local = delivered.tables
    day = (delivered.days[0] - timedelta(days=1)).strftime("%Y-%m-%d")
    local.put(f"{name}/ingest_date={day}/brewops-{name}-dev-1-empty", b"")

    frame = tables.read_table(name, local)

    assert len(frame) == delivered.records


@pytest.mark.emulator
def test_uncompressed_raw_objects_are_read_skipping_blank_and_malformed_lines(delivered):
    local = delivered.tables
    lines = [json.dumps({"id": 400, "name": "Plain"}), "", "{not json", json.dumps({"id": 401})]
    uri = local.put(local.object_name("raw", delivered.days[1]), "\n".join(lines).encode() + b"\n")

    frame = tables.read_table("raw", local)

    assert frame.attrs["malformed_lines"] == [f"{uri}:3"]
    assert len(frame) == delivered.records + 2 and {400, 401} <= set(frame["id"])


@pytest.mark.emulator
def test_raw_objects_compressed_and_not_keep_their_delivery_order(delivered):
    # without an ingestion time, the latest record of a beer is the last one delivered
    local = delivered.tables
    first = datetime.combine(delivered.days[0] - timedelta(days=1), datetime.min.time(), UTC)
    local.put_raw([], first, lines=[json.dumps({"id": 900, "name": "First"})])
    plain = local.object_name("raw", first + timedelta(seconds=1))
    local.put(plain, b'{"id": 900, "name": "Second"}\n')
    local.put_raw(
        [], first + timedelta(seconds=2), lines=[json.dumps({"id": 900, "name": "Third"})]
    )

    frame = tables.read_table("raw", local)

    assert frame.loc[frame["id"] == 900, "name"].tolist() == ["First", "Second", "Third"]
    assert latest_per_id(frame).set_index("id").loc[900, "name"] == "Third"


@pytest.mark.emulator
@pytest.mark.parametrize("columns", [None, ["id", "name"]], ids=["all-columns", "some"])
def test_athena_reads_of_raw_keep_delivery_order_whatever_order_athena_returns(
    delivered, monkeypatch, columns
):
    # two copies of a beer in two objects of one day: the later object's is the latest,
    # however Athena orders its rows
    from fixtures.validation import AthenaStandIn

    local = delivered.tables
    for seconds, name in ((1, "Earlier"), (2, "Later")):
        at = delivered.days[1] + timedelta(seconds=seconds)
        local.put_raw([], at, lines=[json.dumps({"id": 900, "name": name})])
    by_s3 = tables.read_table("raw", local, columns=columns)

    AthenaStandIn(local).install(monkeypatch)
    by_athena = tables.read_table("raw", local, columns=columns)

    assert latest_per_id(by_athena).set_index("id").loc[900, "name"] == "Later"
    pd.testing.assert_frame_equal(by_athena, by_s3)
    assert tables.SOURCE_OBJECT not in by_athena


@pytest.mark.emulator
def test_uncompressed_json_is_read_by_a_table_that_skips_nothing(delivered):
    local = delivered.tables
    uri = local.put(
        local.object_name("raw", delivered.days[1]),
        b'{"id": 400, "name": "Plain"}\n{"id": 401, "name": "Text"}\n',
    )
    info = tables.describe_table("raw", local)
    strict = replace(info, serde_parameters={})
    objects = [o for o in tables.list_table_objects(strict, local) if o.uri == uri]

    frame = read_objects(strict, objects, local)

    assert frame["id"].tolist() == [400, 401]


@pytest.mark.emulator
@pytest.mark.parametrize(
    "damage",
    [lambda body: body[:-20], lambda body: body[:10] + b"\xff" * 8 + body[18:]],
    ids=["truncated", "corrupt"],
)
def test_a_damaged_gzip_object_is_named_as_unreadable(delivered, damage):
    local = delivered.tables
    body = damage(gzip.compress(b'{"id": 400}\n' * 50))
    uri = local.put(local.object_name("raw", delivered.days[1], ".gz"), body)

    with pytest.raises(tables.UnreadableTableError) as caught:
        tables.read_table("raw", local)

    assert uri in str(caught.value) and caught.value.objects == [uri]


@pytest.mark.emulator
def test_an_object_s3_keeps_refusing_is_named_as_unreadable(delivered, monkeypatch):
    from fixtures.faults import s3_error

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries would only add waits
    local = delivered.tables
    local.session.events.register("before-send.s3.GetObject", s3_error("SlowDown", 503))

    with pytest.raises(tables.UnreadableTableError, match=r"SlowDown.*run again") as caught:
        tables.read_table("raw", local)

    assert caught.value.objects and all(o.startswith("s3://") for o in caught.value.objects)


@pytest.mark.emulator
def test_an_athena_failure_is_an_unreadable_table(delivered, monkeypatch):
    import awswrangler as wr

    def read_sql_table(**kwargs):
        raise RuntimeError("QUERY_FAILED: HIVE_BAD_DATA")

    monkeypatch.setattr(wr.athena, "read_sql_table", read_sql_table)

    with pytest.raises(tables.UnreadableTableError, match=r"Athena cannot read .*HIVE_BAD_DATA"):
        tables.read_table("cleaned", delivered.tables, engine="athena")
