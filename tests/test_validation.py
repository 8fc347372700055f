"""Validation rules on frames and catalog definitions (no emulator)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest

from brewops import schema, summary, validation
from brewops.reconcile import ErrorRecord
from brewops.tables import TableObject, place_in_layout
from brewops.validation import (
    Drift,
    Expectation,
    check_partitions,
    compare_schema,
    count_duplicates,
    quality_report,
    reconcile,
)
from fixtures.validation import table_info

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
EXPECTED = validation.expected_schema()

# the real catalogue's known quirks
FG_ABOVE_OG_IDS = [28, 70, 127, 131, 193, 214, 221, 222, 223, 224, 225, 227, 228]
NULL_COUNTS = {"ibu": 5, "ebc": 6, "srm": 6, "ph": 2, "target_fg": 1, "target_og": 1}


def _catalogue_frame(beers) -> pd.DataFrame:
    frame = pd.DataFrame([{c.name: b.get(c.name) for c in schema.CLEANED_COLUMNS} for b in beers])
    frame["ingested_at"] = pd.Timestamp("2026-11-26 15:04:05")
    frame["id"] = frame["id"].astype("Int64")
    return frame


# ------------------------------------------------------------------ schema


def test_schema_agreeing_three_ways_has_no_drift():
    files = {"s3://bkt/cleaned/ingest_date=2026-11-26/a": dict(EXPECTED)}
    result = compare_schema(table_info(), files)
    assert result.ok, result.drifts
    assert set(result.frame["status"]) == {"ok"}
    assert result.frame["column"].tolist()[: len(EXPECTED)] == list(EXPECTED)


def test_a_type_changed_in_one_parquet_object_names_column_types_and_object():
    good = "s3://bkt/cleaned/ingest_date=2026-11-26/good"
    bad = "s3://bkt/cleaned/ingest_date=2026-11-26/bad"
    result = compare_schema(
        table_info(), {good: dict(EXPECTED), bad: {**EXPECTED, "abv": "string"}}
    )
    assert not result.ok
    (drift,) = result.drifts
    assert (drift.column, drift.source, drift.expected, drift.found) == (
        "abv",
        "Parquet",
        "double",
        "string",
    )
    assert drift.objects == (bad,)
    assert "abv" in str(drift) and "double" in str(drift) and "string" in str(drift)
    row = result.frame.set_index("column").loc["abv"]
    assert row["status"] == "drift" and "string in 1" in row["parquet"]


def test_a_column_missing_from_the_glue_table_is_drift():
    columns = [(n, t) for n, t in EXPECTED.items() if n != "ph"]
    result = compare_schema(table_info(columns=columns), {"s3://o": dict(EXPECTED)})
    assert [str(d) for d in result.drifts] == [
        "column ph: brewops.schema double, Glue table missing it"
    ]


def test_glue_type_and_extra_parquet_column_and_partition_key_drifts():
    columns = [(n, "int" if n == "id" else t) for n, t in EXPECTED.items()]
    files = {"s3://o": {**EXPECTED, "colour": "string"}}
    result = compare_schema(table_info(columns=columns, partition_keys=(("dt", "date"),)), files)
    found = {(d.column, d.source, d.expected, d.found) for d in result.drifts}
    assert found == {
        ("id", "Glue table", "bigint", "int"),
        ("colour", "Parquet", "absent", "string"),
        ("colour", "Glue table", "absent", "missing"),
        ("ingest_date", "Glue partition keys", "string", "dt date"),
    }


@pytest.mark.parametrize(
    ("drift", "text"),
    [
        (
            Drift("ph", "Glue table", "double", "missing"),
            "column ph: brewops.schema double, Glue table missing it",
        ),
        (
            Drift("colour", "Parquet", "absent", "string", ("s3://o",)),
            "column colour: not in brewops.schema, Parquet (1 object(s): s3://o) has string",
        ),
        (
            Drift("abv", "Parquet", "double", "string", tuple(f"s3://o{i}" for i in range(6))),
            "column abv: brewops.schema double, Parquet (6 object(s): "
            "s3://o0, s3://o1, s3://o2, s3://o3, s3://o4 and 1 more) string",
        ),
    ],
)
def test_a_drift_says_what_the_schema_and_the_source_have(drift, text):
    assert str(drift) == text


def test_a_column_only_the_glue_table_has_is_drift():
    columns = [*EXPECTED.items(), ("colour", "string")]
    result = compare_schema(table_info(columns=columns), {"s3://o": dict(EXPECTED)})
    found = {(d.column, d.source, d.expected, d.found) for d in result.drifts}
    assert found == {
        ("colour", "Glue table", "absent", "string"),
        ("colour", "Parquet", "absent", "missing"),
    }


def test_the_schema_compared_with_can_be_given():
    expected = {"id": "bigint", "name": "string"}
    info = table_info(columns=list(expected.items()))

    result = compare_schema(info, {"s3://o": dict(expected)}, expected=expected)

    assert result.ok, result.drifts
    assert result.frame["column"].tolist() == ["id", "name", "ingest_date (partition)"]


def test_the_parquet_column_counts_objects_only_when_they_disagree():
    one = compare_schema(table_info(), {"s3://o": dict(EXPECTED)}).frame.set_index("column")
    none = compare_schema(table_info(), {}).frame.set_index("column")
    assert one.loc["abv", "parquet"] == "double"
    assert none.loc["abv", "parquet"] == "(no objects)"
    assert none.loc["abv", "status"] == "ok", "no objects cannot disagree"


def test_the_objects_whose_schemas_were_read_are_counted():
    files = {f"s3://o{i}": dict(EXPECTED) for i in range(3)}
    assert compare_schema(table_info(), files).objects_read == 3


def test_a_table_without_partition_keys_is_drift():
    result = compare_schema(table_info(partition_keys=()), {"s3://o": dict(EXPECTED)})

    assert [str(d) for d in result.drifts] == [
        "column ingest_date: brewops.schema string, Glue partition keys missing it"
    ]
    row = result.frame.set_index("column").loc["ingest_date (partition)"]
    assert (row["glue"], row["status"]) == ("missing", "drift")


# ------------------------------------------------------------------ partitions


def _objects(info, *keys):
    objects = []
    for key in keys:
        uri = f"s3://bkt/cleaned/{key}"
        partition, reason = place_in_layout(info, uri, NOW)
        objects.append(TableObject(uri, 100, NOW, partition, reason))
    return objects


def test_partitions_are_listed_and_objects_outside_reported():
    info = table_info()
    objects = _objects(
        info,
        "ingest_date=2026-11-25/a",
        "ingest_date=2026-11-26/b",
        "ingest_date=2026-11-26/c",
        "loose-object",
    )
    report = check_partitions(info, objects, now=NOW)
    assert report.frame[["ingest_date", "objects", "bytes"]].values.tolist() == [
        ["2026-11-25", 1, 100],
        ["2026-11-26", 2, 200],
    ]
    assert report.outside["object"].tolist() == ["s3://bkt/cleaned/loose-object"]
    assert not report.ok and not report.config_issues
    assert report.projection["range now"] == "2024-01-01 .. 2026-11-26"


def test_projection_configuration_problems_are_reported():
    info = table_info(
        **{
            "projection.enabled": "false",
            "projection.ingest_date.format": "yyyy/MM/dd",
            "storage.location.template": "s3://other/cleaned/ingest_date=${ingest_date}/",
        }
    )
    issues = check_partitions(info, [], now=NOW).config_issues
    assert any("projection.enabled" in i for i in issues)
    assert any("yyyy/MM/dd" in i for i in issues)
    assert any("s3://other/cleaned/" in i for i in issues)


@pytest.mark.parametrize(
    ("info", "issue"),
    [
        (table_info(partition_keys=()), "table beers_cleaned has no partition keys"),
        (
            table_info(**{"projection.ingest_date.type": "integer"}),
            "projection.ingest_date.type is 'integer', not 'date'",
        ),
        (
            table_info(**{"projection.ingest_date.range": "2024-01-01"}),
            "projection range '2024-01-01' cannot be parsed",
        ),
    ],
)
def test_each_projection_problem_is_a_configuration_issue(info, issue):
    report = check_partitions(info, [], now=NOW)

    assert report.config_issues == [issue]
    assert not report.ok, "a projection Athena cannot use hides every partition"


def test_a_clock_before_the_range_starts_is_said_not_only_each_partition_outside_it():
    """The template's range starts 2024-01-01 and ends NOW: with the clock in 2015 every
    object lies outside it, which alone reads as if the data, not the clock, were wrong."""
    info = table_info()
    before = datetime(2015, 6, 1, 12, 0, tzinfo=UTC)
    objects = [
        TableObject(uri, 100, before, *place_in_layout(info, uri, before))
        for uri in ["s3://bkt/cleaned/ingest_date=2015-06-01/a"]
    ]

    report = check_partitions(info, objects, now=before)

    assert report.config_issues == [
        "projection range '2024-01-01,NOW' is empty today: it runs from 2024-01-01 to "
        "2015-06-01, so no partition is in it. Is this machine's clock (UTC) right?"
    ]
    assert report.projection["range now"] == "2024-01-01 .. 2015-06-01"


def test_a_partition_spans_its_first_and_last_object():
    info = table_info()
    early, late = _objects(info, "ingest_date=2026-11-26/a", "ingest_date=2026-11-26/b")
    late = TableObject(late.uri, late.size, NOW + timedelta(hours=1), late.partition)

    frame = check_partitions(info, [late, early], now=NOW).frame

    row = frame.iloc[0]
    assert (row["first_object_at"], row["last_object_at"]) == (NOW, NOW + timedelta(hours=1))


# ------------------------------------------------------------------ counts and duplicates


def test_reconcile_names_lost_ids_and_missing_rows():
    df = pd.DataFrame({"id": pd.array([1, 2, 2, 4], dtype="Int64")})
    result = reconcile(df, Expectation(records=6, ids=frozenset({1, 2, 3, 4, 5})))
    assert result.lost_ids == [3, 5] and result.missing_rows == 2
    failure = result.failure()
    assert failure.rule == "lost records" and failure.rows == (3, 5)
    assert "ids 3, 5" in failure.message and "(2 missing)" in failure.message


def test_reconcile_passes_extra_rows_and_reports_unexpected_ids():
    df = pd.DataFrame({"id": pd.array([1, 2, 2, 9], dtype="Int64")})
    result = reconcile(df, Expectation(records=3, ids=frozenset({1, 2})))
    assert result.ok and result.unexpected_ids == [9]
    assert result.as_row()["status"] == "ok"


def test_diverted_records_count_against_missing_rows():
    df = pd.DataFrame({"id": pd.array([1, 2, 3], dtype="Int64")})
    expected = Expectation(records=4, ids=frozenset({1, 2, 3, 4}))

    lost = reconcile(df, expected)
    assert (lost.missing_rows, lost.lost_ids, lost.ok) == (1, [4], False)

    diverted = reconcile(df, expected, diverted=[_failed(4, "abv")])
    assert (diverted.missing_rows, diverted.lost_ids, diverted.ok) == (0, [], True)
    assert diverted.diverted == {4: "Lambda.ProcessingFailed: abv"}
    assert diverted.failure() is None


def test_diverted_records_count_against_missing_rows_without_known_ids():
    df = pd.DataFrame({"id": pd.array([1, 2, 3], dtype="Int64")})
    assert reconcile(df, Expectation(records=5)).missing_rows == 2
    result = reconcile(df, Expectation(records=5), diverted=[_failed(4), _failed(5)])
    assert result.missing_rows == 0 and result.ok
    assert result.as_row()["diverted to errors"] == 2


def test_only_ids_missing_from_the_table_are_diverted():
    # beer 2 failed once and was delivered later: it is in the table, not diverted
    df = pd.DataFrame({"id": pd.array([1, 2, 3], dtype="Int64")})
    expected = Expectation(ids=frozenset({1, 2, 3, 4}))

    result = reconcile(df, expected, diverted=[_failed(2, "ph"), _failed(4, "abv")])

    assert result.diverted == {4: "Lambda.ProcessingFailed: abv"}
    assert result.ok and result.diverted_records == 2


def _failed(beer_id, message="bad"):
    return ErrorRecord("errors/cleaned/x", beer_id, "Lambda.ProcessingFailed", message)


def test_each_diverted_record_counts_even_when_its_id_repeats_or_is_unreadable():
    df = pd.DataFrame({"id": pd.array([1, 2, 3], dtype="Int64")})
    expected = Expectation(records=6, ids=frozenset({1, 2, 3, 4}))
    # beer 4 produced twice and failed twice; one error line too broken to name its beer
    diverted = [_failed(4), _failed(4), ErrorRecord("errors/cleaned/y", None, "Unreadable", "")]

    result = reconcile(df, expected, diverted=diverted)

    assert (result.missing_rows, result.lost_ids, result.ok) == (0, [], True)
    assert result.as_row()["diverted to errors"] == 3
    assert reconcile(df, expected, diverted=diverted[:2]).missing_rows == 1


def test_ids_that_are_not_whole_numbers_are_left_out_of_the_reconciliation():
    df = pd.DataFrame({"id": pd.Series([1, "2", "abc", 2.5, None], dtype=object)})

    result = reconcile(df, Expectation(ids=frozenset({1, 2, 3})))

    assert result.unique_ids == 2 and result.lost_ids == [3]


def test_a_fractional_id_does_not_stand_for_the_whole_id_below_it():
    # 3.5 is not beer 3: reading it as 3 would hide beer 3's loss
    df = pd.DataFrame({"id": pd.Series([1, 3.5], dtype=object)})

    result = reconcile(df, Expectation(ids=frozenset({1, 3})))

    assert result.lost_ids == [3] and not result.ok


def test_nothing_to_reconcile_is_not_checked():
    result = reconcile(pd.DataFrame({"id": [1]}), Expectation())
    assert result.ok and not result.checked and result.as_row()["status"] == "not checked"


def test_duplicates_are_counted_per_id():
    df = pd.DataFrame(
        {
            "id": pd.array([1, 2, 2, 3, 3, 3], dtype="Int64"),
            "ingested_at": pd.to_datetime([f"2026-11-26 10:0{i}" for i in range(6)]),
        }
    )
    result = count_duplicates(df)
    assert result.surplus_rows == 3
    assert result.frame[["id", "records"]].values.tolist() == [[2, 2], [3, 3]]
    assert result.frame["last_ingested_at"].tolist()[1] == pd.Timestamp("2026-11-26 10:05")


def test_the_expectation_comes_from_notebook_03s_figures(tmp_path, monkeypatch):
    monkeypatch.setenv(summary.FIGURES_ENV, str(tmp_path / "04_validate_glue_table.json"))
    path = validation.produce_figures_path()
    assert path == tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps({"records_sent": 328, "ids_sent": [3, 1, 2, 1]}), encoding="utf-8")
    assert validation.expectation_from_figures() == Expectation(
        records=328, ids=frozenset({1, 2, 3}), source=str(path)
    )
    path.unlink()
    assert not validation.expectation_from_figures().known


def test_figures_and_ids_recorded_against_another_stack_are_ignored(tmp_path, monkeypatch):
    from brewops.streaming_cli import remember_produced

    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv(summary.FIGURES_ENV, str(tmp_path / "04_validate_glue_table.json"))
    validation.produce_figures_path().write_text(
        json.dumps({"stack_id": "stack/old", "records_sent": 328, "ids_sent": [1, 2]}),
        encoding="utf-8",
    )
    remember_produced("local", [1, 2, 3], "stack/old")

    stale = validation.as_expectation(None, "local", stack_id="stack/new")
    current = validation.as_expectation(None, "local", stack_id="stack/old")

    assert not stale.known and "another stack's, ignored" in stale.source
    assert current == Expectation(
        records=328, ids=frozenset({1, 2}), source=str(validation.produce_figures_path())
    )
    remember_produced("local", [7], "stack/new")  # a new stack starts its own list
    assert validation.produced_ids_expectation("local", "stack/new").ids == frozenset({7})


def test_an_id_the_stream_commands_sent_twice_is_expected_as_two_records(tmp_path, monkeypatch):
    from brewops.streaming_cli import remember_produced

    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv(summary.FIGURES_ENV, str(tmp_path / "04_validate_glue_table.json"))
    remember_produced("local", [1, 2, 3], "stack/a")  # a backfill
    remember_produced("local", [2], "stack/a")  # a tick that drew beer 2 again

    expected = validation.as_expectation(None, "local", stack_id="stack/a")

    assert (expected.records, expected.ids) == (4, frozenset({1, 2, 3}))


def test_without_a_runner_notebook_03s_figures_are_under_the_build_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(summary.FIGURES_ENV, raising=False)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))

    path = validation.produce_figures_path()

    assert path == tmp_path / "figures" / "03_produce_to_kinesis.json"
    assert path == summary.figures_file(validation.PRODUCE_NOTEBOOK), "where notebook 03 writes"


@pytest.mark.parametrize(
    "figures",
    [
        {"records_sent": 4.0, "ids_sent": [1, 2, 3]},
        {"sent": 4, "produced_ids": [1, 2, 3]},
    ],
)
def test_the_figures_may_name_what_was_sent_either_way(tmp_path, figures):
    path = tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps(figures), encoding="utf-8")

    expected = validation.expectation_from_figures(path)

    assert (expected.records, expected.ids) == (4, frozenset({1, 2, 3}))


def test_figures_of_a_run_that_sent_nothing_are_read(tmp_path):
    path = tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps({"records_sent": 0, "ids_sent": []}), encoding="utf-8")

    expected = validation.expectation_from_figures(path)

    assert (expected.records, expected.ids) == (0, frozenset())


@pytest.mark.parametrize(
    "figures",
    [
        {"records_sent": 3, "ids_sent": ["a"]},
        {"records_sent": 3, "ids_sent": [None]},
        {"records_sent": 3, "ids_sent": [1.5, 2]},  # not beer 1
        {"records_sent": 3, "ids_sent": [True]},
        {"records_sent": float("nan")},
        {"records_sent": -5},
        {"records_sent": 2.5},
        {"records_sent": True},
    ],
)
def test_figures_that_do_not_count_records_or_name_whole_ids_are_refused(tmp_path, figures):
    path = tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps(figures), encoding="utf-8")

    with pytest.raises(validation.FiguresUnreadable, match="is not a figures file notebook 03"):
        validation.expectation_from_figures(path)


def test_figures_may_name_ids_below_one_that_were_sent(tmp_path):
    # the producer sends what the API serves; the transform fails such a record
    path = tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps({"records_sent": 2, "ids_sent": [0, 2.0]}), encoding="utf-8")

    assert validation.expectation_from_figures(path).ids == frozenset({0, 2})


def test_figures_are_used_when_there_is_no_stack_to_compare_them_with(tmp_path):
    path = tmp_path / "03_produce_to_kinesis.json"
    path.write_text(json.dumps({"stack_id": "stack/a", "records_sent": 3}), encoding="utf-8")

    assert validation.expectation_from_figures(path, stack_id=None).records == 3
    assert validation.expectation_from_figures(path, stack_id="stack/b").records is None


def test_figures_without_ids_take_the_ids_the_stream_commands_remembered(tmp_path, monkeypatch):
    from brewops.streaming_cli import remember_produced

    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv(summary.FIGURES_ENV, str(tmp_path / "04_validate_glue_table.json"))
    validation.produce_figures_path().write_text(
        json.dumps({"stack_id": "stack/a", "records_sent": 5}), encoding="utf-8"
    )
    remember_produced("local", [1, 2, 3], "stack/a")

    expected = validation.as_expectation(None, "local", stack_id="stack/a")

    assert (expected.records, expected.ids) == (5, frozenset({1, 2, 3})), "records: the figures'"


@pytest.mark.parametrize(("lost", "more"), [(20, ""), (21, " and 1 more")])
def test_a_message_names_twenty_ids_then_says_how_many_more(lost, more):
    produced = frozenset(range(1, lost + 1))
    result = reconcile(pd.DataFrame({"id": pd.array([], dtype="Int64")}), Expectation(ids=produced))

    message = result.failure().message

    named = ", ".join(str(i) for i in range(1, 21))
    assert message == f"{lost} of {lost} produced ids are missing: ids {named}{more}"


def test_the_reconciliation_row_counts_each_kind_of_id():
    df = pd.DataFrame({"id": pd.array([1, 8, 9], dtype="Int64")})

    row = reconcile(df, Expectation(records=5, ids=frozenset({1, 2}))).as_row()

    assert row["expected ids"] == 2 and row["expected records"] == 5
    assert (row["lost ids"], row["unexpected ids"], row["missing rows"]) == (1, 2, 2)
    assert reconcile(df, Expectation(records=3)).as_row()["expected ids"] is None


def test_a_table_read_as_nothing_has_lost_every_produced_record():
    result = reconcile(pd.DataFrame(), Expectation(records=2, ids=frozenset({1, 2})))

    assert (result.rows, result.unique_ids, result.lost_ids) == (0, 0, [1, 2])
    assert result.missing_rows == 2


def test_without_known_ids_every_named_diverted_record_is_reported():
    df = pd.DataFrame({"id": pd.array([1], dtype="Int64")})
    unnamed = ErrorRecord("errors/cleaned/y", None, "Unreadable", "line 1 is not JSON")

    result = reconcile(df, Expectation(records=4), diverted=[_failed(2, "abv"), unnamed])

    assert result.diverted == {2: "Lambda.ProcessingFailed: abv"}


def test_rows_without_an_id_are_not_duplicates():
    df = pd.DataFrame(
        {
            "id": pd.array([1, 1, None, None], dtype="Int64"),
            "ingested_at": pd.to_datetime([f"2026-11-26 10:0{i}" for i in range(4)]),
        }
    )

    result = count_duplicates(df)

    assert (result.rows, result.unique_ids, result.surplus_rows) == (2, 1, 1)
    row = result.frame.iloc[0]
    assert (row["first_ingested_at"], row["last_ingested_at"]) == (
        pd.Timestamp("2026-11-26 10:00"),
        pd.Timestamp("2026-11-26 10:01"),
    )


# ------------------------------------------------------------------ data quality


def test_the_catalogue_quirks_are_findings(catalog_beers):
    report = quality_report(_catalogue_frame(catalog_beers))

    assert report.ids("range", "abv") == [24, 137, 185]
    assert report.ids("range", "ibu") == [137, 185]
    assert report.ids("range", "ph") == [317]
    assert report.ids("fg > og") == FG_ABOVE_OG_IDS
    nulls = report.summary[report.summary["rule"] == "nulls"].set_index("column")["findings"]
    assert nulls.to_dict() == NULL_COUNTS
    assert report.counts() == {"nulls": 21, "range": 6, "fg > og": 13, "unparseable": 0}
    ph = report.findings[(report.findings["rule"] == "range") & (report.findings["column"] == "ph")]
    assert ph[["id", "value"]].values.tolist() == [[317, 79.0]]


def test_the_known_quirks_are_checked_as_far_as_the_table_holds_the_catalogue(
    catalog_beers,
):
    frame = _catalogue_frame(catalog_beers)
    assert validation.known_quirks_missed(quality_report(frame), frame["id"]) is None

    frame.loc[frame["id"] == 317, "ph"] = 4.4  # the quirks corrected at the source
    frame.loc[frame["id"] == 24, "abv"] = 5.0
    frame.loc[frame["id"] == 1, "ibu"] = None
    frame.loc[frame["id"] == 2, "target_fg"] = frame["target_og"] + 1  # one more fg > og
    problem = validation.known_quirks_missed(quality_report(frame), frame["id"])
    assert problem.startswith("the real catalogue's known quirks are not what validation found")
    assert "beer 317 not a range finding of ph" in problem
    assert "beer 24 not a range finding of abv" in problem
    assert "'ibu': 6" in problem and "14 fg > og findings, not 13" in problem
    assert problem.endswith("set real_catalogue = False")

    part = frame[frame["id"] > 317]  # neither beer 317 nor the whole catalogue: nothing to ask
    assert validation.known_quirks_missed(quality_report(part), part["id"]) is None
    but_the_last = frame[frame["id"] != 325]  # beer 317 asked about, the counts not
    problem = validation.known_quirks_missed(quality_report(but_the_last), but_the_last["id"])
    assert "beer 317" in problem and "nulls" not in problem and "fg > og" not in problem


def test_newer_beers_beside_the_catalogue_have_findings_of_their_own_not_a_missed_quirk(
    catalog_beers,
):
    """Beers numbered past the catalogue's 325 (newer recipes streamed in beside it): their
    nulls and fg > og are findings, and the catalogue's own quirks are still all there."""
    frame = _catalogue_frame(catalog_beers)
    newer = frame[frame["id"].isin([1, 2])].copy()
    newer["id"] = pd.array([326, 327], dtype="Int64")
    newer["ibu"] = pd.array([None, None], dtype=frame["ibu"].dtype)
    newer["target_fg"] = newer["target_og"] + 1
    both = pd.concat([frame, newer], ignore_index=True)

    report = quality_report(both)

    assert {326, 327} <= set(report.ids("nulls", "ibu")) & set(report.ids("fg > og"))
    assert validation.known_quirks_missed(report, both["id"]) is None


def test_known_quirks_of_beers_the_cleaned_table_does_not_hold_are_said_to_be_unchecked(
    catalog_beers,
):
    frame = _catalogue_frame(catalog_beers)

    def report_of(latest: pd.DataFrame) -> validation.ValidationReport:
        return validation.ValidationReport(
            target="local", frames={"cleaned": latest}, latest=latest
        )

    assert validation.known_quirks_unchecked(report_of(frame)) is None
    assert validation.known_quirks_unchecked(report_of(frame[frame["id"] == 24])) is None
    # neither beer 24 nor 317, nor the whole catalogue: known_quirks_missed asks nothing
    for part in (frame[frame["id"] > 317], frame.iloc[:0]):
        unchecked = validation.known_quirks_unchecked(report_of(part))
        assert unchecked is not None
        assert f"holds {len(part)} of its 325 beers, none of them" in unchecked
        assert unchecked.endswith("(ids 24, 317)")


def test_nulls_of_a_column_added_to_the_schema_are_findings_not_a_missed_quirk(
    catalog_beers,
):
    """The real catalogue in a table with one more column: its nulls are reported, and not
    taken for a sign that the table holds another catalogue."""
    added = schema.Column("attenuation_level", "double", float, "Attenuation level, %", 0, 100)
    frame = _catalogue_frame(catalog_beers)
    frame[added.name] = 75.0
    frame.loc[frame["id"] == 1, added.name] = None

    report = quality_report(frame, columns=[*schema.CLEANED_COLUMNS, added])

    assert report.ids("nulls", added.name) == [1]
    assert validation.known_quirks_missed(report, frame["id"]) is None


def test_unparseable_values_are_named_and_not_counted_as_nulls():
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["a", "b", None],
            "abv": ["4.5", "4.5%", None],
            "target_fg": [1010, 1060, 1005],
            "target_og": [1050, 1050, None],
        }
    )
    report = quality_report(frame, table="raw")
    found = report.findings[["rule", "column", "id", "value"]].values.tolist()
    assert ["unparseable", "abv", 2, "4.5%"] in found
    assert ["nulls", "abv", 3, None] in found or any(r[:3] == ["nulls", "abv", 3] for r in found)
    assert not any(r[:3] == ["nulls", "abv", 2] for r in found)
    assert ["nulls", "name", 3] in [r[:3] for r in found]
    assert report.ids("fg > og") == [2]
    assert report.counts()["unparseable"] == 1


def test_a_raw_id_that_is_not_a_whole_number_is_unparseable():
    # reconcile leaves id 2.5 out, so it must be a finding (and never stand for beer 2)
    frame = pd.DataFrame({"id": pd.Series([1.0, 2.5, "x"], dtype=object), "name": ["a", "b", "c"]})

    report = quality_report(frame, table="raw", rules=("unparseable",))

    found = report.findings[["rule", "column", "id", "value"]].values.tolist()
    assert found == [["unparseable", "id", pd.NA, 2.5], ["unparseable", "id", pd.NA, "x"]]


def test_a_final_gravity_equal_to_the_original_is_not_above_it():
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "target_fg": [1050.0, 1051.0, 1010.0], "target_og": [1050.0] * 3}
    )

    report = quality_report(frame)

    assert report.ids("fg > og") == [2]


def test_an_id_below_one_is_out_of_range():
    frame = pd.DataFrame({"id": pd.array([0, 1, -3], dtype="Int64"), "name": ["a", "b", "c"]})

    report = quality_report(frame)

    assert report.ids("range", "id") == [-3, 0]


def test_rules_can_be_selected():
    frame = pd.DataFrame({"id": [1, 2], "abv": ["x", None]})
    report = quality_report(frame, rules=("unparseable",))
    assert set(report.findings["rule"]) == {"unparseable"}


@pytest.mark.parametrize("name", ["abv", "ph", "target_fg"])
def test_the_ends_of_a_plausible_range_are_inside_it(name):
    column = schema.column(name)
    values = [column.minimum, column.maximum, column.minimum - 1, column.maximum + 1]
    frame = pd.DataFrame({"id": [1, 2, 3, 4], name: values})

    assert quality_report(frame).ids("range", name) == [3, 4]


def test_a_column_with_only_a_maximum_allows_values_up_to_it():
    top = schema.Column("colour", "double", float, "Colour", maximum=10)
    frame = pd.DataFrame({"id": [1, 2, 3], "colour": [-5.0, 10.0, 10.5]})

    report = quality_report(frame, columns=[schema.column("id"), top])

    assert report.ids("range", "colour") == [3]


def test_a_gravity_finding_names_both_gravities():
    frame = pd.DataFrame({"id": [7], "target_fg": [1051.0], "target_og": [1050.0]})

    (finding,) = quality_report(frame).findings.to_dict("records")

    assert (finding["column"], finding["value"]) == ("target_fg, target_og", "1051.0 > 1050.0")


def test_every_record_with_a_final_gravity_above_the_original_is_one_finding():
    """Named by its row's id (none without one), with both gravities as parsed and its row
    position, whatever the frame's index; an id recorded twice gives two findings."""
    frame = pd.DataFrame(
        {
            "id": pd.array([5, 3, None, 5, 4, 6], dtype="Int64"),
            "target_fg": [1060.0, 1010.0, 1070.0, 1061.5, None, 1050.0],
            "target_og": ["1050", "1050", "1040", "1050", "1040", "1050"],  # as JSON text
        },
        index=[10, 7, 3, 99, 0, 1],
    )

    findings = quality_report(frame, table="raw").findings
    above = findings[findings["rule"] == "fg > og"].astype(object)

    assert above.where(above.notna(), None)[
        ["column", "id", "value", "check", "row"]
    ].values.tolist() == [
        ["target_fg, target_og", 5, "1060.0 > 1050", "fg > og", 0],
        ["target_fg, target_og", 5, "1061.5 > 1050", "fg > og", 3],
        ["target_fg, target_og", None, "1070.0 > 1040", "fg > og", 2],
    ]
    assert quality_report(frame, rules=("nulls", "range")).ids("fg > og") == []


def test_findings_are_in_rule_order_then_by_column_and_id():
    frame = pd.DataFrame(
        {
            "id": [2, 1],
            "name": [None, "b"],
            "abv": ["x", 99.0],
            "target_fg": [1060.0, 1000.0],
            "target_og": [1050.0, 1050.0],
        }
    )

    findings = quality_report(frame).findings

    assert findings[["rule", "column", "id"]].values.tolist() == [
        ["nulls", "name", 2],
        ["range", "abv", 1],
        ["fg > og", "target_fg, target_og", 2],
        ["unparseable", "abv", 2],
    ]


def test_the_summary_counts_findings_without_an_id_too():
    frame = pd.DataFrame({"id": [None, 2], "name": ["a", "b"], "abv": [99.0, 98.0]})

    summary_ = quality_report(frame).summary.set_index(["rule", "column"])

    assert summary_.loc[("range", "abv"), "findings"] == 2
    assert summary_.loc[("range", "abv"), "ids"] == [2]


def test_errors_name_their_rule_and_list_every_failure():
    report = validation.ValidationReport(target="local")
    report.failures = [
        validation.GateFailure("lost records", "cleaned", "ids 7", (7,)),
        validation.GateFailure("schema drift", "cleaned", "column abv: ...", ("abv",)),
    ]
    with pytest.raises(validation.SchemaDriftError) as caught:
        report.raise_for_gates()
    assert caught.value.rule == "schema drift"
    assert "lost records (cleaned): ids 7" in str(caught.value)
    assert report.gates() == {
        "schema drift": 1,
        "unreadable data": 0,
        "partition layout": 0,
        "lost records": 1,
    }
    assert issubclass(validation.PartitionLayoutError, validation.UnreadableDataError)


def test_only_the_tables_validated_need_reconciling():
    produced = validation.Expectation(records=2, ids=frozenset({1, 2}), source="figures")
    unknown = validation.Expectation(source="03_produce_to_kinesis.json (not found)")
    report = validation.ValidationReport(target="local")
    report.reconciliation["raw"] = validation.Reconciliation("raw", produced, rows=2, unique_ids=2)

    assert report.unreconciled() is None, "no cleaned table was asked for"

    report.reconciliation["raw"] = validation.Reconciliation("raw", unknown, rows=2, unique_ids=2)
    problem = report.unreconciled()
    assert problem is not None
    assert problem.startswith("nothing to reconcile raw against (03_produce_to_kinesis.json")
    assert "run notebook 03 first" in problem


def test_plots_mark_the_out_of_range_values(catalog_beers):
    from brewops import validation_plots

    latest = pd.DataFrame(
        [{c.name: b.get(c.name) for c in schema.CLEANED_COLUMNS[:9]} for b in catalog_beers]
    )
    fig = validation_plots.plot_distributions(latest)
    titles = {ax.get_title() for ax in fig.axes if ax.get_visible()}
    assert "ph: 1 out of range, 2 null" in titles
    assert "abv: 3 out of range, 0 null" in titles
    ph_axis = next(ax for ax in fig.axes if ax.get_title().startswith("ph:"))
    assert [t.get_text() for t in ph_axis.texts] == ["id 317: 79"]
    gravity = validation_plots.plot_gravities(latest)
    assert "fg > og (13)" in [t.get_text() for t in gravity.axes[0].get_legend().get_texts()]


def test_a_value_just_below_the_range_is_marked_at_the_low_edge():
    from brewops import validation_plots

    ph = next(c for c in schema.CLEANED_COLUMNS if c.name == "ph")
    below = ph.minimum - 0.05  # inside the axis margin, outside the plausible range
    latest = pd.DataFrame({"id": [1, 2, 3, 4], "ph": [4.0, 5.0, 6.0, below]})

    fig = validation_plots.plot_distributions(latest, columns=[ph])

    [text] = fig.axes[0].texts
    low, _ = fig.axes[0].get_xlim()
    assert text.get_text() == f"id 4: {below:g}"
    # pinned to the low edge, beside the minimum it is below, hanging from the panel's top
    assert text.xy == (low, 1)


# ------------------------------------------------------------------ the whole run


def _report_with(failures=(), duplicates=3) -> validation.ValidationReport:
    report = validation.ValidationReport(target="local", failures=list(failures))
    cleaned = pd.DataFrame({"id": pd.array([1, 2, 2, 3, 3, 3], dtype="Int64")})
    report.frames["cleaned"] = cleaned
    report.latest = cleaned.drop_duplicates()
    report.duplicates = count_duplicates(cleaned)
    info = table_info()
    report.partitions["cleaned"] = check_partitions(
        info, _objects(info, "ingest_date=2026-11-25/a", "ingest_date=2026-11-26/b"), now=NOW
    )
    return report


def test_the_run_summary_figures_count_rows_ids_partitions_findings_and_gates():
    lost = validation.GateFailure("lost records", "cleaned", "ids 7", (7,))

    figures = _report_with([lost]).figures()

    assert figures == {
        "findings_nulls": 0,
        "findings_range": 0,
        "findings_fg_above_og": 0,
        "findings_unparseable": 0,
        "findings_duplicates": 3,
        "gate_schema_drift": 0,
        "gate_unreadable_data": 0,
        "gate_partition_layout": 0,
        "gate_lost_records": 1,
        "cleaned_rows": 6,
        "cleaned_unique_ids": 3,
        "partitions": 2,
        "gates_passed": False,
        "reconciliation_checked": True,
    }
    unchecked = _report_with()
    nothing = validation.Expectation(source="03_produce_to_kinesis.json (not found)")
    unchecked.reconciliation["cleaned"] = validation.Reconciliation(
        "cleaned", nothing, rows=6, unique_ids=3
    )
    assert unchecked.figures()["reconciliation_checked"] is False


def test_the_rule_summary_and_the_json_say_which_gate_failed_and_on_what():
    lost = validation.GateFailure("lost records", "cleaned", "ids 7", (7,))
    report = _report_with([lost])

    rules = report.summary_frame().set_index("rule")
    failures = report.to_dict()["failures"]

    assert rules.loc["lost records", "status"] == "failed"
    assert rules.loc["schema drift", "status"] == "passed"
    assert rules.loc["duplicates", ["kind", "count"]].tolist() == ["finding", 3]
    assert failures == [
        {"rule": "lost records", "table": "cleaned", "message": "ids 7", "rows": [7]}
    ]


def test_a_column_the_schema_does_not_define_is_a_key_error():
    assert schema.column("ph").maximum == 7
    with pytest.raises(KeyError, match="colour"):
        schema.column("colour")


@pytest.mark.parametrize(
    "expected", ["1,2", "12", b"12", 3.5, True, -1, [1, "2"], [1.0], [1, True]]
)
def test_expected_ids_of_the_wrong_type_are_refused_saying_what_they_must_be(expected):
    # a string was read character by character: "1,2" ended in int(",")
    with pytest.raises(ValueError, match=r"list of beer ids such as \[1, 2, 3\]"):
        validation.as_expectation(expected)


def test_expected_ids_and_records_of_the_right_types_are_taken():
    assert validation.as_expectation([3, 1, 3]).ids == {1, 3}
    assert validation.as_expectation(range(1, 4)).ids == {1, 2, 3}
    assert validation.as_expectation(328).records == 328
    assert validation.as_expectation(0).records == 0  # a run that was to send nothing


@pytest.mark.parametrize("tables", [[], ["clean"], ["cleaned", "raws"], "c"])
def test_validating_no_table_or_an_unknown_one_is_refused_before_any_call(tables):
    # no table validated would pass every gate having checked nothing; "clean" was a KeyError
    with pytest.raises(ValueError, match=r"one or more of 'cleaned', 'raw'"):
        validation.validate(object(), expected=[1], tables=tables)


def test_one_table_may_be_named_as_a_string():
    assert validation.checked_tables("cleaned") == ["cleaned"]
    assert validation.checked_tables(("raw", "cleaned")) == ["raw", "cleaned"]


def test_awswranglers_reads_of_a_silent_endpoint_stop_at_three_attempts(monkeypatch):
    # awswrangler makes its clients with 6 attempts of its own, each a read waiting 60 s:
    # a Parquet footer from an endpoint that never answered took 6 minutes to give up on
    from botocore.exceptions import ReadTimeoutError

    from brewops.target import aws_session

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "k")
    session = aws_session(region_name="eu-west-1")
    sent: list[str] = []

    def never_answer(request, **_):
        sent.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    session.events.register("before-send", never_answer)
    footer = TableObject("s3://b/cleaned/x.parquet", 100, datetime.now(UTC))

    schemas, errors = validation.read_parquet_schemas([footer], SimpleNamespace(session=session))

    assert schemas == {} and "ReadTimeoutError" in errors[footer.uri]
    assert len(sent) == 3
