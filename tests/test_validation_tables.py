"""Validating filled tables in the emulator: good data passes, each broken case fails with a
message naming the rule and the rows."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from click.testing import CliRunner

from brewops import schema, validation
from brewops.validation import Expectation
from fixtures.json_schemas import renamed, retyped, schema_errors

pytestmark = pytest.mark.emulator

ALL_IDS = frozenset(range(1, 326))


def _expectation(delivered) -> Expectation:
    return Expectation(records=delivered.records, ids=ALL_IDS)


def _run(delivered, **kwargs):
    kwargs.setdefault("expected", _expectation(delivered))
    return validation.run(delivered.tables, **kwargs)


def test_good_data_passes_and_reports_the_catalogue_quirks(delivered):
    report = _run(delivered)

    assert report.ok and report.failure_message() == ""
    assert report.schema.ok and set(report.schema.frame["status"]) == {"ok"}
    assert len(report.partitions["cleaned"].frame) == 2
    assert report.partitions["cleaned"].outside.empty
    assert report.reconciliation_frame()["status"].tolist() == ["ok", "ok"]
    assert report.duplicates.frame["id"].tolist() == list(delivered.redelivered)
    assert report.findings_per_rule() == {
        "nulls": 21,
        "range": 6,
        "fg > og": 13,
        "unparseable": 0,
        "duplicates": 3,
    }
    assert report.quality.ids("range", "ph") == [317]
    assert report.quality.ids("range", "abv") == [24, 137, 185]
    assert len(report.latest) == 325
    json.dumps(report.to_dict(), default=str)  # serialisable for --json


def test_the_known_quirks_say_they_went_unchecked_when_the_cleaned_table_is_not_read(delivered):
    # GIVEN the real catalogue delivered, validated through the raw table alone
    raw_only = validation.validate(
        delivered.tables, expected=_expectation(delivered), tables=["raw"]
    )
    assert raw_only.ok

    # THEN asking for the quirks would pass having checked nothing, and the check says so
    assert validation.known_quirks_missed(raw_only.quality, raw_only.latest["id"]) is None
    unchecked = validation.known_quirks_unchecked(raw_only)
    assert unchecked is not None
    assert unchecked.startswith("the real catalogue's known quirks were not checked")
    assert "the cleaned table was not read" in unchecked

    # WHEN the cleaned table is validated too THEN there is something to check
    assert validation.known_quirks_unchecked(validation.validate(delivered.tables)) is None


def test_a_column_type_changed_in_the_parquet_is_schema_drift(delivered):
    from fixtures.validation import arrow_schema, cleaned_record

    local = delivered.tables
    columns = [
        (c.name, "string" if c.name == "abv" else c.glue_type) for c in schema.CLEANED_COLUMNS
    ]
    at = delivered.days[1] + timedelta(minutes=2)
    records = [{**cleaned_record(b, at), "abv": str(b["abv"])} for b in delivered.beers[10:12]]
    bad = local.put_cleaned(records, at, arrow=arrow_schema(columns))

    report = validation.validate(local, expected=_expectation(delivered))
    with pytest.raises(validation.SchemaDriftError) as caught:
        report.raise_for_gates()
    message = str(caught.value)
    assert "schema drift (cleaned): column abv: brewops.schema double, Parquet" in message
    assert "string" in message and bad in message
    assert report.gates()["lost records"] == 0, "the other objects are still read and counted"
    assert any("drifted types" in note for note in report.notes)


def test_a_column_missing_from_the_glue_table_is_schema_drift(aws_env, catalog_beers):
    import boto3

    from fixtures.validation import LocalTables, deliver

    local = LocalTables(session=boto3.Session())
    local.create(cleaned_columns=[c for c in schema.glue_columns() if c["Name"] != "ph"])
    delivered = deliver(local, catalog_beers)

    with pytest.raises(validation.SchemaDriftError) as caught:
        _run(delivered)
    assert "column ph: brewops.schema double, Glue table missing it" in str(caught.value)
    assert caught.value.failures[0].rows == ("ph",)


def test_an_object_outside_the_partition_layout_fails(delivered):
    from fixtures.validation import cleaned_record

    local = delivered.tables
    now = datetime.now(UTC)
    stray = local.put_cleaned(
        [cleaned_record(delivered.beers[0], now)], now, key="cleaned/brewops-cleaned-dev-1-loose"
    )
    future = (now + timedelta(days=3)).strftime("%Y-%m-%d")
    ahead = local.put_cleaned(
        [cleaned_record(delivered.beers[1], now)],
        now,
        key=f"cleaned/ingest_date={future}/brewops-cleaned-dev-1-ahead",
    )

    with pytest.raises(validation.PartitionLayoutError) as caught:
        _run(delivered)
    message = str(caught.value)
    assert "partition layout (cleaned): 2 object(s) outside the partition layout" in message
    assert f"{stray} (not under a ingest_date=… partition folder)" in message
    assert f"{ahead} (partition {future} is outside the projection range 2024-01-01,NOW)" in message
    assert caught.value.failures[0].rows == (stray, ahead)


def test_a_projection_athena_cannot_use_fails_the_partition_layout_gate(delivered):
    local = delivered.tables
    database, name = local.outputs["GlueDatabaseName"], local.outputs["CleanedTableName"]
    table = local.glue.get_table(DatabaseName=database, Name=name)["Table"]
    table_input = {
        key: table[key]
        for key in ("Name", "TableType", "Parameters", "PartitionKeys", "StorageDescriptor")
    }
    table_input["Parameters"] = {**table["Parameters"], "projection.enabled": "false"}
    local.glue.update_table(DatabaseName=database, TableInput=table_input)

    with pytest.raises(validation.PartitionLayoutError) as caught:
        _run(delivered)
    assert "partition layout (cleaned): projection.enabled is not true" in str(caught.value)
    assert caught.value.failures[0].table == "cleaned"


def test_a_lost_record_fails_naming_its_id(delivered):
    with pytest.raises(validation.LostRecordsError) as caught:
        _run(delivered, expected=Expectation(ids=ALL_IDS | {326, 400}))
    message = str(caught.value)
    assert "lost records (cleaned): 2 of 327 produced ids are missing: ids 326, 400" in message
    assert "lost records (raw)" in message
    assert caught.value.failures[0].rows == (326, 400)


def test_fewer_rows_than_records_produced_is_a_loss(delivered):
    with pytest.raises(validation.LostRecordsError, match=r"330 records produced \(2 missing\)"):
        _run(delivered, expected=delivered.records + 2)


def test_an_unreadable_object_fails_naming_it(delivered):
    local = delivered.tables
    day = delivered.days[0].strftime("%Y-%m-%d")
    junk = local.put(f"cleaned/ingest_date={day}/brewops-cleaned-dev-1-junk", b"PAR1 broken")

    with pytest.raises(validation.UnreadableDataError) as caught:
        _run(delivered)
    assert "unreadable data (cleaned): 1 object(s) cannot be read as Parquet" in str(caught.value)
    assert junk in str(caught.value)
    assert type(caught.value) is validation.UnreadableDataError


def test_out_of_range_values_are_reported_not_failing(delivered):
    from fixtures.validation import cleaned_record

    local = delivered.tables
    at = delivered.days[1] + timedelta(minutes=3)
    beer = {**delivered.beers[4], "abv": 99.0, "ph": 1.0}  # id 5, a later record of it
    local.put_cleaned([cleaned_record(beer, at)], at)

    report = _run(delivered, expected=Expectation(ids=ALL_IDS))
    assert report.ok
    assert report.quality.ids("range", "abv") == [5, 24, 137, 185]
    assert report.quality.ids("range", "ph") == [5, 317]
    summary = report.quality.summary.set_index(["table", "rule", "column"])
    assert summary.loc[("cleaned", "range", "abv"), "ids"] == [5, 24, 137, 185]


def test_malformed_raw_lines_are_unparseable_findings(delivered):
    local = delivered.tables
    uri = local.put_raw([], delivered.days[1], lines=['{"id": 5, "abv": "4.5%"}', "{oops"])

    report = _run(delivered)
    found = report.quality.findings
    raw = found[(found["table"] == "raw") & (found["rule"] == "unparseable")]
    assert raw[["column", "value"]].values.tolist() == [["abv", "4.5%"], ["(line)", f"{uri}:2"]]
    assert report.findings_per_rule()["unparseable"] == 2


def test_the_command_line_reports_and_exits_by_the_gates(delivered, monkeypatch, tmp_path):
    from brewops.validation_cli import validate

    monkeypatch.setattr(validation, "resolve_target", lambda target: delivered.tables)
    figures = tmp_path / "03_produce_to_kinesis.json"
    figures.write_text(
        json.dumps({"records_sent": delivered.records, "ids_sent": sorted(ALL_IDS)}),
        encoding="utf-8",
    )
    runner = CliRunner()

    result = runner.invoke(validate, ["run", "--json", "--figures", str(figures)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["findings"]["fg > og"] == 13
    assert schema_errors("validation_report", report) == []
    assert schema_errors("validation_report", renamed(report, ("gates", "lost records"), "lost"))
    assert schema_errors("validation_report", renamed(report, ("quality", 0, "ids"), "rows"))
    assert schema_errors("validation_report", retyped(report, ("ok",), "true"))

    # a gate failing: failures, a lost status, the raw table left out
    args = ["run", "--json", "--table", "cleaned", "--expected-ids", "1,2,999"]
    failed = runner.invoke(validate, args)
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert report["failures"] and report["reconciliation"][0]["status"] == "lost"
    assert schema_errors("validation_report", report) == []

    result = runner.invoke(validate, ["run", "--table", "cleaned", "--expected-ids", "1,2,999"])
    assert result.exit_code == 1
    assert "Reconciliation" in result.output and "Schema" in result.output
    assert "lost records (cleaned): 1 of 3 produced ids are missing: ids 999" in result.output


def test_the_command_line_refuses_to_pass_without_knowing_what_was_produced(
    delivered, monkeypatch, tmp_path
):
    from brewops.validation_cli import validate

    monkeypatch.setattr(validation, "resolve_target", lambda target: delivered.tables)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "empty-build"))
    monkeypatch.delenv("BREWOPS_FIGURES_FILE", raising=False)
    runner = CliRunner()

    typo = runner.invoke(validate, ["run", "--figures", str(tmp_path / "03_typo.json")])
    unknown = runner.invoke(validate, ["run"])
    skipped = runner.invoke(validate, ["run", "--no-require-reconciliation"])

    assert typo.exit_code == 2 and "does not exist" in typo.output
    assert unknown.exit_code == 1
    assert "nothing to reconcile against, so lost records cannot be checked" in unknown.output
    # a backfill alone would leave the records undelivered, then called lost
    assert "run notebook 03 or `brewops stream fill` first" in unknown.output
    assert skipped.exit_code == 0, skipped.output


def test_records_sent_to_the_error_prefix_are_accounted_for_not_lost(delivered):
    import base64

    local = delivered.tables
    day = delivered.days[1].strftime("%Y-%m-%d")
    failed = {  # as Firehose writes it: the reason is not in the record
        "attemptsMade": 4,
        "errorCode": "Lambda.ProcessingFailedStatus",
        "errorMessage": "ProcessingFailed status set for record",
        "rawData": base64.b64encode(json.dumps({"id": 326, "abv": "strong"}).encode()).decode(),
    }
    local.put(
        f"errors/cleaned/processing-failed/ingest_date={day}/brewops-cleaned-dev-1-failed",
        (json.dumps(failed) + "\n").encode(),
    )
    # the transform function logged why, in its log group
    function = f"brewops-test-{local.suffix}-transform"
    local.outputs["TransformFunctionName"] = function
    logs = local.session.client("logs")
    logs.create_log_group(logGroupName=f"/aws/lambda/{function}")
    logs.create_log_stream(logGroupName=f"/aws/lambda/{function}", logStreamName="s")
    logged = {
        "message": "record not transformed",
        "beer_id": 326,
        "result": "ProcessingFailed",
        "reason": "abv is not a number",
    }
    logs.put_log_events(
        logGroupName=f"/aws/lambda/{function}",
        logStreamName="s",
        logEvents=[
            {"timestamp": int(datetime.now(UTC).timestamp() * 1000), "message": json.dumps(logged)}
        ],
    )

    report = _run(delivered, expected=Expectation(ids=ALL_IDS | {326}), tables=("cleaned",))
    reconciliation = report.reconciliation["cleaned"]
    assert reconciliation.lost_ids == []
    assert reconciliation.diverted == {
        326: "Lambda.ProcessingFailedStatus: ProcessingFailed status set for record "
        "(abv is not a number)"
    }
    assert any("id 326 (Lambda.ProcessingFailedStatus" in note for note in report.notes)
    with pytest.raises(validation.LostRecordsError, match="ids 327"):
        _run(delivered, expected=Expectation(ids=ALL_IDS | {326, 327}), tables=("cleaned",))


def test_a_beer_that_failed_twice_is_two_records_accounted_for(delivered):
    import base64

    local = delivered.tables
    day = delivered.days[1].strftime("%Y-%m-%d")
    failed = json.dumps(
        {
            "errorCode": "Lambda.ProcessingFailed",
            "errorMessage": "abv is not a number",
            "rawData": base64.b64encode(json.dumps({"id": 326, "abv": "x"}).encode()).decode(),
        }
    )
    truncated = '{"errorCode": "Lambda.ProcessingFailed", "rawData": '
    local.put(
        f"errors/cleaned/processing-failed/ingest_date={day}/brewops-cleaned-dev-1-failed",
        "\n".join([failed, failed, truncated]).encode(),
    )
    produced = Expectation(records=delivered.records + 3, ids=ALL_IDS | {326})

    report = _run(delivered, expected=produced, tables=("cleaned",))

    row = report.reconciliation_frame().iloc[0]
    assert (row["missing rows"], row["diverted to errors"], row["status"]) == (0, 3, "ok")
    with pytest.raises(validation.LostRecordsError, match=r"\(1 missing\)"):
        _run(
            delivered,
            expected=Expectation(records=delivered.records + 4, ids=ALL_IDS | {326}),
            tables=("cleaned",),
        )


def test_empty_markers_and_empty_objects_hold_no_rows_and_fail_nothing(delivered):
    local = delivered.tables
    day = delivered.days[0].strftime("%Y-%m-%d")
    local.put(f"cleaned/ingest_date={day}/_SUCCESS", b"")
    local.put(f"cleaned/ingest_date={day}/brewops-cleaned-dev-1-empty", b"")

    report = _run(delivered)
    assert report.ok and report.unreadable.empty

    hidden = local.put(f"cleaned/ingest_date={day}/_part-0", b"PAR1 rows Athena never reads")
    with pytest.raises(validation.PartitionLayoutError, match="hidden file name") as caught:
        _run(delivered)
    assert caught.value.failures[0].rows == (hidden,)


def test_a_raw_record_whose_id_is_not_a_number_is_a_finding_not_a_crash(delivered):
    local = delivered.tables
    local.put_raw([], delivered.days[1], lines=['{"id": "abc", "name": "Not A Beer"}'])

    report = _run(delivered)

    found = report.quality.findings
    raw = found[(found["table"] == "raw") & (found["column"] == "id")]
    assert raw[["rule", "value"]].values.tolist() == [["unparseable", "abc"]]
    assert report.reconciliation["raw"].unique_ids == 325


def test_a_bucket_that_cannot_be_listed_fails_with_what_to_do(delivered):
    local = delivered.tables
    for key in [o["Key"] for o in local.s3.list_objects_v2(Bucket=local.bucket)["Contents"]]:
        local.s3.delete_object(Bucket=local.bucket, Key=key)
    local.s3.delete_bucket(Bucket=local.bucket)

    report = validation.validate(local, expected=_expectation(delivered))

    assert report.gates()["unreadable data"] == 2
    message = report.failure_message()
    assert "objects of table beers_cleaned under s3://" in message and "NoSuchBucket" in message
    assert "Is the stack deployed?" in message


def test_empty_tables_are_validated_and_every_produced_record_is_lost(local_tables):
    report = validation.validate(
        local_tables, expected=Expectation(records=2, ids=frozenset({1, 2}))
    )

    assert report.gates() == {
        "schema drift": 0,
        "unreadable data": 0,
        "partition layout": 0,
        "lost records": 2,
    }
    assert report.reconciliation["cleaned"].lost_ids == [1, 2]
    assert report.latest.empty and report.partitions["cleaned"].frame.empty


def test_console_folders_hold_nothing_and_fail_nothing(delivered):
    local = delivered.tables
    day = delivered.days[0].strftime("%Y-%m-%d")
    for key in ("cleaned/", f"cleaned/ingest_date={day}/", "raw/"):
        local.put(key, b"")

    report = _run(delivered)

    assert report.partitions["cleaned"].frame["objects"].tolist() == [2, 2]


def test_a_table_missing_from_the_catalog_fails_and_the_other_is_still_validated(delivered):
    local = delivered.tables
    local.glue.delete_table(
        DatabaseName=local.outputs["GlueDatabaseName"], Name=local.outputs["RawTableName"]
    )

    report = validation.validate(local, expected=_expectation(delivered))

    (failure,) = report.failures
    assert (failure.rule, failure.table) == ("unreadable data", "raw")
    assert "beers_raw cannot be read" in failure.message
    assert "Is the stack deployed?" in failure.message
    assert list(report.reconciliation) == ["cleaned"] and report.reconciliation["cleaned"].ok


def test_records_in_objects_outside_the_layout_are_not_counted(delivered):
    from fixtures.validation import cleaned_record

    local = delivered.tables
    now = datetime.now(UTC)
    beer = {**delivered.beers[0], "id": 400}
    local.put_cleaned([cleaned_record(beer, now)], now, key="cleaned/brewops-cleaned-dev-1-loose")

    report = validation.validate(local, expected=Expectation(ids=ALL_IDS | {400}))

    assert report.gates()["partition layout"] == 1
    assert report.reconciliation["cleaned"].lost_ids == [400]


def test_an_unreadable_parquet_object_is_listed_and_the_others_are_counted(delivered):
    local = delivered.tables
    day = delivered.days[0].strftime("%Y-%m-%d")
    junk = local.put(f"cleaned/ingest_date={day}/brewops-cleaned-dev-1-junk", b"PAR1 broken")

    report = validation.validate(local, expected=_expectation(delivered))

    assert report.gates()["unreadable data"] == 1
    assert report.unreadable[["table", "object"]].values.tolist() == [["cleaned", junk]]
    assert report.reconciliation["cleaned"].ok and len(report.latest) == 325


def test_a_raw_object_that_cannot_be_decompressed_is_listed_as_unreadable(delivered):
    local = delivered.tables
    body = gzip.compress(b'{"id": 400}\n' * 50)[:-20]
    truncated = local.put(local.object_name("raw", delivered.days[1], ".gz"), body)

    report = validation.validate(local, expected=_expectation(delivered))

    (failure,) = report.failures
    assert (failure.rule, failure.table, failure.rows) == ("unreadable data", "raw", (truncated,))
    assert report.unreadable[["table", "object"]].values.tolist() == [["raw", truncated]]


def test_a_raw_table_s3_keeps_refusing_to_give_fails_its_gate(delivered, monkeypatch):
    from fixtures.faults import s3_error

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries would only add waits
    local = delivered.tables
    local.session.events.register("before-send.s3.GetObject", s3_error("InternalError", 500))

    report = validation.validate(local, expected=_expectation(delivered), tables=["raw"])

    (failure,) = report.failures
    assert (failure.rule, failure.table) == ("unreadable data", "raw")
    assert "InternalError" in failure.message and failure.rows


def test_records_in_objects_s3_refuses_to_give_are_not_called_lost(delivered):
    # every cleaned object unreadable (AccessDenied): its 325 records were reported as
    # "lost records (cleaned): 325 of 325 produced ids are missing", which they are not
    from fixtures.faults import s3_error

    local = delivered.tables
    local.session.events.register("before-send.s3.GetObject", s3_error("AccessDenied", 403))

    report = validation.validate(local, expected=_expectation(delivered), tables=["cleaned"])

    assert [f.rule for f in report.failures] == ["unreadable data"]
    row = report.reconciliation["cleaned"].as_row()
    assert (row["status"], row["lost ids"]) == ("not checked", 0)
    assert any(
        note.startswith(
            "lost records of cleaned not checked: 325 of 325 produced ids are not in the "
            "objects read, and the "
        )
        for note in report.notes
    ), report.notes


def test_an_error_object_that_cannot_be_read_is_noted_not_failed(delivered):
    local = delivered.tables
    key = "errors/cleaned/processing-failed/ingest_date=2026-11-26/brewops-cleaned-dev-1-x.gz"
    local.put(key, gzip.compress(b'{"errorCode": "x"}\n' * 50)[:-20])

    report = _run(delivered)

    assert any(
        note.startswith(f"1 object(s) under errors/ of cleaned cannot be read: {key} (")
        for note in report.notes
    ), report.notes


def test_the_notes_say_where_the_expectation_came_from_and_what_the_transform_dropped(
    delivered,
):
    local = delivered.tables
    local.put_raw([{"id": 400, "name": "Dropped"}], delivered.days[1])

    report = _run(delivered)

    assert report.notes[0] == "what was produced comes from explicit"
    assert "ids in raw but not in cleaned (dropped by the transform): 400" in report.notes


def test_the_raw_table_is_read_without_the_nested_fields_no_check_reads(delivered):
    report = _run(delivered)

    raw = report.frames["raw"]
    assert {"method", "ingredients", "food_pairing"}.isdisjoint(raw.columns)
    assert list(raw.columns) == [
        *validation.raw_checked_columns(report.tables["raw"]),
        "ingest_date",
    ]
    assert len(raw) == delivered.records


def test_the_aws_target_counts_the_rows_athena_reads(delivered, monkeypatch):
    import awswrangler as wr

    asked = []

    def read_sql_table(table, **kwargs):
        asked.append(table)
        return pd.DataFrame({"id": [1, 2, 2], "name": ["a", "b", "b"]})

    def read_sql_query(sql, **kwargs):
        asked.append(sql)
        return pd.DataFrame({"id": [1, 2, 2]})

    monkeypatch.setattr(wr.athena, "read_sql_table", read_sql_table)
    monkeypatch.setattr(wr.athena, "read_sql_query", read_sql_query)
    monkeypatch.setattr(delivered.tables, "name", "aws")

    report = validation.validate(
        delivered.tables, expected=Expectation(records=3, ids=frozenset({1, 2}))
    )

    # the raw table's checks need its ids and numbers, not its nested recipes
    assert asked[0] == "beers_cleaned"
    assert asked[1].startswith(
        'SELECT "id", "abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph", "ingest_date", '
    )
    assert len(asked) == 2
    assert report.ok, report.failure_message()
    assert report.reconciliation["cleaned"].rows == 3 and report.duplicates.surplus_rows == 1


def test_both_engines_report_a_malformed_raw_line_as_an_unparseable_line_not_a_row(
    delivered, monkeypatch
):
    from fixtures.validation import AthenaStandIn

    local = delivered.tables
    uri = local.put_raw([], delivered.days[1], lines=["{oops"])
    by_s3 = _run(delivered)

    AthenaStandIn(local).install(monkeypatch)
    by_athena = _run(delivered)

    for report in (by_s3, by_athena):
        assert report.reconciliation["raw"].rows == delivered.records
        assert report.findings_per_rule()["unparseable"] == 1
    found = by_athena.quality.findings
    assert found.loc[found["rule"] == "unparseable", "value"].tolist() == [uri]
