"""End to end on the real catalogue: Punk API -> producer -> Kinesis -> local Firehose -> S3,
reconciled; with faults injected in the Punk API and in Kinesis, still nothing lost."""

from __future__ import annotations

import errno
import json
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from brewops import streaming_cli
from brewops.firehose_runtime import FirehoseRuntime
from brewops.producer import put_beers
from brewops.punkapi.client import PunkApiClient
from brewops.reconcile import (
    delivered_keys,
    object_counts,
    reconcile,
    sent_ids,
    wait_for_delivery,
)
from fixtures.infra import read_stream
from fixtures.json_schemas import renamed, retyped, schema_errors
from fixtures.streaming import TRANSFORM_HANDLER, FlakyKinesis

pytestmark = pytest.mark.emulator

CATALOGUE_SIZE = 325


def deliver_and_reconcile(stack, beers, report):
    FirehoseRuntime.from_outputs(
        stack.outputs, session=stack.session, state_dir=stack.state_dir
    ).drain()
    return reconcile(sent_ids(beers, report), stack.outputs, session=stack.session)


def test_the_whole_catalogue_arrives_in_raw_and_cleaned(streaming_stack, punkapi_url):
    stack = streaming_stack()
    beers = PunkApiClient(punkapi_url).all_beers(progress=False)

    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    result = deliver_and_reconcile(stack, beers, report)

    assert report.ok
    assert result.produced == CATALOGUE_SIZE
    assert result.raw_records == result.raw_unique_ids == CATALOGUE_SIZE
    assert result.cleaned_rows == result.cleaned_unique_ids == CATALOGUE_SIZE
    assert result.errors == []
    assert result.ok, str(result)


def test_nothing_is_lost_when_the_api_and_kinesis_fail_one_call_in_ten(
    streaming_stack, punkapi_server
):
    stack = streaming_stack()
    api = PunkApiClient(punkapi_server(error_rate=0.1, seed=7), backoff=0.01)
    kinesis = FlakyKinesis(stack.client("kinesis"), failure_rate=0.1, seed=7)

    beers, report = [], None
    for beers_page in _pages(api):  # put each page as it is crawled, as a backfill does
        beers += beers_page
        page_report = put_beers(beers_page, stack.outputs["StreamName"], kinesis, backoff=0.01)
        assert page_report.ok, page_report.as_dict()
        report = _merge(report, page_report)
    result = deliver_and_reconcile(stack, beers, report)

    assert api.requests_made > 5, "the Punk API never failed: the test proves nothing"
    assert kinesis.failed_calls > 0, "Kinesis never failed: the test proves nothing"
    assert result.produced == result.raw_unique_ids == result.cleaned_unique_ids == CATALOGUE_SIZE
    assert result.raw_records == CATALOGUE_SIZE  # a retry never duplicated an accepted record
    assert result.ok, str(result)


def _pages(api):
    page = 1
    while True:
        beers = api.beers(page=page, per_page=80)
        if beers:
            yield beers
        if len(beers) < 80:
            return
        page += 1


def _merge(total, report):
    if total is None:
        return report
    total.records += report.records
    total.sent += report.sent
    total.failed += report.failed
    total.oversize += report.oversize
    return total


def test_malformed_records_are_reconciled_with_their_reason(streaming_stack, catalog_beers):
    stack = streaming_stack()
    beers = [dict(b) for b in catalog_beers[:20]]
    beers[3]["name"] = None  # not a beer the cleaned table can hold
    beers[7]["abv"] = "strong"

    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    result = deliver_and_reconcile(stack, beers, report)

    assert result.ok, str(result)
    assert result.cleaned_unique_ids == 18
    failed = {e.beer_id: e.reason for e in result.errors}
    assert set(failed) == {beers[3]["id"], beers[7]["id"]}
    assert "name" in failed[beers[3]["id"]] and "abv" in failed[beers[7]["id"]]
    rows = {row["what"]: row for row in object_counts(stack.outputs, session=stack.session)}
    assert rows["raw"]["objects"] == rows["cleaned"]["objects"] == 1


def test_records_that_name_no_beer_are_reconciled_with_the_reason_the_transform_logged(
    streaming_stack,
):
    # GIVEN bytes no producer should send, which name no beer, beside a beer
    stack = streaming_stack()
    stack.put(
        [
            b'{"id": 1, "name": "Buzz"}\n',
            b'{"id": 2, "name": "cut off',
            b'{"name": "no id"}\n',
            b"\xff\xfe\x00 binary\n",
            b"[1, 2, 3]\n",
        ]
    )

    result = deliver_and_reconcile(stack, [], SimpleNamespace(failed=[], oversize=[]))

    # THEN each error record carries the reason logged for its bytes, though none has an id
    assert [e.beer_id for e in result.errors] == [None] * 4
    reasons = sorted(e.logged_reason or "none" for e in result.errors)
    assert [reason[:26] for reason in reasons] == [
        "data: not UTF-8 text",
        "malformed JSON: Unterminat",
        "not a beer: expected a JSO",
        "not a beer: id: missing",
    ]


def test_a_lost_record_is_reported(streaming_stack, catalog_beers):
    stack = streaming_stack()
    beers = catalog_beers[:5]
    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))

    result = deliver_and_reconcile(stack, beers, report)
    claimed = reconcile([*sent_ids(beers, report), 999_999], stack.outputs, session=stack.session)

    assert result.ok
    assert not claimed.ok
    assert claimed.missing_from_raw == claimed.missing_downstream == [999_999]


def test_a_beer_produced_twice_but_delivered_once_is_reported(streaming_stack, catalog_beers):
    stack = streaming_stack()
    beers = catalog_beers[:5]
    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))

    deliver_and_reconcile(stack, beers, report)
    twice = beers[2]["id"]
    claimed = reconcile([*sent_ids(beers, report), twice], stack.outputs, session=stack.session)

    assert not claimed.ok
    assert claimed.produced == 6
    assert claimed.missing_from_raw == claimed.missing_downstream == [twice]


def test_what_an_earlier_run_delivered_does_not_stand_in_for_what_this_run_lost(
    streaming_stack, catalog_beers
):
    stack = streaming_stack()
    beers = catalog_beers[:5]
    first = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    assert deliver_and_reconcile(stack, beers, first).ok  # the earlier run
    earlier = delivered_keys(stack.outputs, session=stack.session)

    again = beers[:1]
    second = put_beers(again, stack.outputs["StreamName"], stack.client("kinesis"))
    FirehoseRuntime.from_outputs(
        stack.outputs, session=stack.session, state_dir=stack.state_dir
    ).drain()
    [delivered] = set(stack.keys("cleaned/")) - earlier
    stack.client("s3").delete_object(Bucket=stack.outputs["BucketName"], Key=delivered)
    result = reconcile(
        sent_ids(again, second), stack.outputs, session=stack.session, delivered_before=earlier
    )

    assert not result.ok, "the earlier run's copy of the beer is no proof of this run's"
    assert result.missing_downstream == [again[0]["id"]]
    assert (result.raw_records, result.cleaned_rows) == (1, 0)
    assert f"left out: {len(earlier)} objects delivered earlier" in str(result)


@pytest.mark.parametrize(("start", "target"), [(1, 2), (2, 1)])
def test_beers_put_before_and_after_a_reshard_are_each_delivered_once(
    streaming_stack, catalog_beers, start, target
):
    # no drain between: the closed shards still hold the first beers when the reshard comes
    stack = streaming_stack(shards=start)
    kinesis, name = stack.client("kinesis"), stack.outputs["StreamName"]
    before, after = catalog_beers[:40], catalog_beers[40:80]
    first = put_beers(before, name, kinesis)
    kinesis.update_shard_count(
        StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
    )
    second = put_beers(after, name, kinesis)

    FirehoseRuntime.from_outputs(
        stack.outputs, session=stack.session, state_dir=stack.state_dir
    ).drain()
    sent = sent_ids(before, first) + sent_ids(after, second)
    result = reconcile(sent, stack.outputs, session=stack.session)

    assert result.ok, str(result)
    assert result.raw_records == result.raw_unique_ids == 80
    assert result.cleaned_rows == result.cleaned_unique_ids == 80


def test_objects_that_cannot_be_read_are_reported_and_the_rest_still_counted(
    streaming_stack, catalog_beers
):
    stack = streaming_stack()
    beers = catalog_beers[:5]
    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    deliver_and_reconcile(stack, beers, report)
    s3 = stack.client("s3")
    bucket = stack.outputs["BucketName"]
    [partition, raw_partition] = [
        s3.list_objects_v2(Bucket=bucket, Prefix=folder)["Contents"][0]["Key"].rsplit("/", 1)[0]
        for folder in ("cleaned/", "raw/")
    ]
    s3.put_object(Bucket=bucket, Key=f"{partition}/_SUCCESS", Body=b"")
    s3.put_object(Bucket=bucket, Key=f"{partition}/not-parquet", Body=b"PAR1 but no footer")
    s3.put_object(Bucket=bucket, Key=f"{raw_partition}/truncated.gz", Body=b"\x1f\x8b\x08")
    truncated_line = b'{"errorCode": "Lambda.ProcessingFailed", "rawData": '
    s3.put_object(Bucket=bucket, Key="errors/cleaned/processing-failed/x", Body=truncated_line)

    result = reconcile(sent_ids(beers, report), stack.outputs, session=stack.session)

    assert set(result.unreadable) == {
        f"{partition}/not-parquet",
        f"{raw_partition}/truncated.gz",
    }, "the hidden marker is skipped; each broken object is named"
    assert result.cleaned_unique_ids == result.raw_unique_ids == 5, "the rest is still read"
    [unreadable_error] = result.errors
    assert (unreadable_error.beer_id, unreadable_error.code) == (None, "Unreadable")
    assert "line 1 is not JSON" in unreadable_error.message
    assert result.ok, "every produced beer is still accounted for"
    assert f"UNREADABLE {raw_partition}/truncated.gz" in str(result)
    assert result.figures()["unreadable_objects"] == 2


def test_waiting_for_delivery_ends_when_everything_arrived_or_at_the_timeout(
    streaming_stack, catalog_beers
):
    stack = streaming_stack()
    beers = catalog_beers[:5]
    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    ids = sent_ids(beers, report)
    runtime = FirehoseRuntime.from_outputs(
        stack.outputs, session=stack.session, state_dir=stack.state_dir
    )
    delivery = threading.Timer(0.5, runtime.drain)  # delivers while the wait polls, as AWS does

    delivery.start()
    arrived = wait_for_delivery(ids, stack.outputs, timeout=120, poll=0.1, session=stack.session)
    delivery.join()
    given_up = wait_for_delivery(
        [*ids, 999_999], stack.outputs, timeout=0.3, poll=0.1, session=stack.session
    )

    assert arrived.ok and arrived.cleaned_unique_ids == 5
    assert not given_up.ok and given_up.missing_from_raw == [999_999]


# ------------------------------------------------------------------ the `stream` commands


@pytest.fixture
def cli(streaming_stack, punkapi_url, monkeypatch, tmp_path):
    stack = streaming_stack(producer_environment={"PUNKAPI_URL": punkapi_url})
    target = SimpleNamespace(
        name="local",
        outputs=stack.outputs,
        session=stack.session,
        punkapi_url=punkapi_url,
        punkapi_version="v2",
        stack_id=f"arn:aws:cloudformation:us-east-1:123456789012:stack/test/{uuid.uuid4()}",
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(streaming_cli.stream, list(args), catch_exceptions=False)
        return result

    invoke.target = target
    return invoke


def test_backfill_tick_drain_and_reconcile_commands(cli):
    backfilled = cli("backfill", "--no-progress")
    ticked = cli("tick", "--n", "2")
    drained = cli("drain", "--no-progress")
    reconciled = cli("reconcile", "--json")

    assert backfilled.exit_code == 0, backfilled.output
    assert "325 of 325 beers sent" in backfilled.output
    assert ticked.exit_code == 0 and ticked.output.count("tick ") == 2, ticked.output
    answers = [json.loads(line.split(": ok: ", 1)[1]) for line in ticked.output.splitlines()]
    assert [answer["sent"] for answer in answers] == [1, 1]  # each answer whole, not cut short
    assert drained.exit_code == 0, drained.output
    figures = json.loads(reconciled.output)
    # the ticks' random beers were sent once more each, so they must arrive once more each
    assert figures["nothing_lost"] and figures["produced"] == CATALOGUE_SIZE + 2
    assert figures["raw"] == CATALOGUE_SIZE + 2
    assert schema_errors("reconciliation", figures) == []
    assert schema_errors("reconciliation", renamed(figures, ("raw",), "raw_records"))
    assert schema_errors("reconciliation", retyped(figures, ("errors",), []))


def test_a_backfill_sends_beers_that_fail_the_schema_and_the_transform_judges_them(
    cli, punkapi_server, catalog_beers
):
    beers = [dict(b) for b in catalog_beers]
    del beers[4]["tagline"]  # not a column of the cleaned table: still cleaned
    beers[9]["abv"] = "strong"  # not a number: the transform refuses it
    url = punkapi_server(beers=beers)

    backfilled = cli("backfill", "--api-url", url, "--no-progress")
    drained = cli("drain", "--no-progress")
    reconciled = cli("reconcile", "--json")

    assert backfilled.exit_code == 0, backfilled.output
    assert "325 of 325 beers sent" in backfilled.output
    assert backfilled.output.count("sent although it fails the schema") == 2
    assert drained.exit_code == 0, drained.output
    figures = json.loads(reconciled.output)
    assert figures["nothing_lost"]
    assert (figures["cleaned_unique_ids"], figures["errors"]) == (CATALOGUE_SIZE - 1, 1)


def test_fill_backfills_and_delivers_once_per_stack(cli):
    filled = cli("fill", "--no-progress")
    again = cli("fill", "--no-progress")
    figures = json.loads(cli("reconcile", "--json").output)

    assert filled.exit_code == 0 and "325 of 325 beers sent" in filled.output, filled.output
    assert again.exit_code == 0 and "no backfill" in again.output, again.output
    assert figures["nothing_lost"]
    assert (figures["produced"], figures["raw"]) == (CATALOGUE_SIZE, CATALOGUE_SIZE)

    cli.target.stack_id += "-deployed-again"  # a new stack holds nothing yet
    assert "325 of 325 beers sent" in cli("fill", "--no-progress").output


def test_fill_after_another_run_reconciles_only_what_it_delivered(cli, catalog_beers):
    # a run that remembered nothing for the stream commands (notebook 03) filled the stack
    target = cli.target
    put_beers(catalog_beers, target.outputs["StreamName"], target.session.client("kinesis"))
    cli("drain", "--no-progress")
    earlier = delivered_keys(target.outputs, session=target.session)

    filled = cli("fill", "--no-progress")
    s3, bucket = target.session.client("s3"), target.outputs["BucketName"]
    for key in delivered_keys(target.outputs, session=target.session) - earlier:
        if key.startswith("cleaned/"):  # the fill's cleaned rows are lost
            s3.delete_object(Bucket=bucket, Key=key)
    reconciled = cli("reconcile", "--json")

    assert "325 of 325 beers sent" in filled.output, filled.output
    assert reconciled.exit_code == 1, reconciled.output
    figures = json.loads(reconciled.stdout)
    assert (figures["raw"], figures["cleaned_rows"]) == (CATALOGUE_SIZE, 0)
    assert figures["missing_downstream"] == CATALOGUE_SIZE
    assert "records were lost" in reconciled.output
    assert schema_errors("reconciliation", figures) == []


def test_reconciling_a_stack_nothing_was_produced_into_is_refused(cli):
    reconciled = cli("reconcile")

    assert reconciled.exit_code == 1, reconciled.output
    assert "NOTHING TO RECONCILE" in reconciled.output
    assert "nothing lost" not in reconciled.output
    assert "`brewops stream backfill`, `tick` or `fill` produce them" in reconciled.output


def test_drain_refuses_the_aws_target(cli, monkeypatch):
    monkeypatch.setattr(
        streaming_cli, "use_target", lambda name: SimpleNamespace(name="aws", outputs={})
    )
    result = cli("drain", "--target", "aws")
    assert result.exit_code != 0
    assert "Firehose delivers by itself" in result.output


def test_ids_remembered_for_another_stack_are_not_reconciled_against(cli):
    cli("backfill", "--no-progress")
    cli("drain", "--no-progress")
    first = json.loads(cli("reconcile", "--json").output)

    cli.target.stack_id += "-deployed-again"  # the stack was deleted and created again
    again = cli("reconcile")

    assert first["produced"] == CATALOGUE_SIZE and first["nothing_lost"]
    assert "(another stack's, ignored): reconciling with the ids found in raw" in again.output
    assert again.exit_code == 0, again.output
    cli("tick")
    path = streaming_cli.produced_ids_file("local")
    remembered = json.loads(path.read_text(encoding="utf-8"))
    assert remembered["stack_id"] == cli.target.stack_id and len(remembered["ids"]) == 1
    cli("drain", "--no-progress")
    given = cli("reconcile", "--json", "--ids-file", str(path))  # the file as written
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["produced"] == 1


def test_ticks_whose_report_cannot_be_written_are_recorded_all_the_same(cli, monkeypatch):
    def reader_gone(ticks):  # `brewops stream tick | head -c 1`, head done
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(streaming_cli, "_echo_ticks", reader_gone)

    ticked = cli("tick", "--n", "2")

    assert ticked.exit_code == 1  # click's own ending for a reader that has gone
    # the beers were sent: `reconcile` must expect them
    remembered = json.loads(streaming_cli.produced_ids_file("local").read_text(encoding="utf-8"))
    assert len(remembered["ids"]) == 2


def test_run_records_a_tick_whose_report_cannot_be_written(cli, monkeypatch):
    import time

    path = streaming_cli.produced_ids_file("local")
    original_run = FirehoseRuntime.run

    def terminal_gone(ticks, file=None):  # the scheduler's thread cannot say it: a hung-up terminal
        raise OSError(errno.EIO, "Input/output error")

    def run_until_a_tick_is_remembered(self, stop, **options):
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        return original_run(self, stop, **options)

    monkeypatch.setattr(streaming_cli, "_echo_ticks", terminal_gone)
    monkeypatch.setattr(FirehoseRuntime, "run", run_until_a_tick_is_remembered)

    cli("run", "--with-scheduler", "--poll", "0.1")

    # the beer was sent: `reconcile` must expect it
    assert path.exists() and len(json.loads(path.read_text(encoding="utf-8"))["ids"]) == 1


def test_run_with_the_scheduler_ticks_the_producer_and_delivers_its_beers_before_it_stops(
    cli, monkeypatch
):
    import time

    path = streaming_cli.produced_ids_file("local")
    original_run = FirehoseRuntime.run

    def run_until_a_tick_is_remembered(self, stop, **options):
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()  # as Ctrl-C would, before delivery has read the tick's beer
        return original_run(self, stop, **options)

    monkeypatch.setattr(FirehoseRuntime, "run", run_until_a_tick_is_remembered)

    result = cli("run", "--with-scheduler", "--poll", "0.1")
    reconciled = cli("reconcile", "--json")

    assert result.exit_code == 0, result.output
    assert "tick 1: ok: {" in result.output and '"sent": 1' in result.output, result.output
    assert len(json.loads(path.read_text(encoding="utf-8"))["ids"]) == 1
    assert reconciled.exit_code == 0, reconciled.output  # the beer was delivered, not lost
    assert json.loads(reconciled.output)["raw"] == 1


def test_waiting_reads_the_function_log_once_for_the_answer(
    streaming_stack, catalog_beers, monkeypatch
):
    from brewops import reconcile as reconciling

    stack = streaming_stack()
    beers = [dict(b) for b in catalog_beers[:5]]
    beers[2]["abv"] = "strong"
    report = put_beers(beers, stack.outputs["StreamName"], stack.client("kinesis"))
    runtime = FirehoseRuntime.from_outputs(
        stack.outputs, session=stack.session, state_dir=stack.state_dir
    )
    runtime.drain()
    reads = []
    real = reconciling.logged_reasons
    monkeypatch.setattr(reconciling, "logged_reasons", lambda *a: reads.append(a) or real(*a))

    claimed = [*sent_ids(beers, report), 999_999]  # never arrives: the wait polls on
    result = wait_for_delivery(claimed, stack.outputs, timeout=0.5, poll=0.1, session=stack.session)

    assert len(reads) == 1, "once, for the answer, not on every poll"
    [error] = result.errors
    assert error.beer_id == beers[2]["id"] and "abv" in error.reason


def test_records_the_function_failed_are_redriven_once_fixed_and_sent_once(
    cli, catalog_beers, tmp_path
):
    target = cli.target
    function = target.outputs["TransformFunctionName"]
    lambdas = target.session.client("lambda")
    beers = [dict(b) for b in catalog_beers[:6]]
    beers[1]["abv"] = "strong"  # refused by the transform, whatever runs it
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(beers[:3]), encoding="utf-8")
    second.write_text(json.dumps(beers[3:]), encoding="utf-8")

    def backfill_and_drain(catalogue: Path) -> None:
        assert cli("backfill", "--catalog", str(catalogue), "--no-progress").exit_code == 0
        assert cli("drain", "--no-progress").exit_code == 0

    def redrive(*options: str) -> dict:
        result = cli("redrive", "--json", *options)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def stream_records() -> int:
        return len(read_stream(target.session.client("kinesis"), target.outputs["StreamName"]))

    backfill_and_drain(first)
    lambdas.update_function_configuration(
        FunctionName=function, Handler="fixtures.streaming.raising_handler"
    )
    backfill_and_drain(second)  # the function fails: its three beers go to the errors
    failed = json.loads(cli("reconcile", "--json").stdout)
    dry = redrive()
    assert stream_records() == 6  # a dry run sends nothing

    lambdas.update_function_configuration(FunctionName=function, Handler=TRANSFORM_HANDLER)
    applied = redrive("--apply")
    assert cli("drain", "--no-progress").exit_code == 0
    reconciled = json.loads(cli("reconcile", "--json").stdout)
    again = redrive("--apply")

    assert (failed["nothing_lost"], failed["cleaned_unique_ids"], failed["errors"]) == (True, 2, 4)
    second_ids = sorted(b["id"] for b in beers[3:])
    assert (dry["applied"], dry["to_redrive"], dry["beer_ids"]) == (False, 3, second_ids)
    assert (dry["by_error_code"], dry["refused_left"]) == ({"Lambda.FunctionError": 3}, 1)
    assert (applied["sent"], applied["moved"], applied["not_sent"]) == (3, 3, 0)
    assert schema_errors("redrive", applied) == []
    # each re-driven beer is now in cleaned, its error gone; the refused one is still an error
    assert reconciled["nothing_lost"], reconciled
    assert (reconciled["cleaned_unique_ids"], reconciled["errors"]) == (5, 1)
    assert (again["to_redrive"], again["sent"], again["refused_left"]) == (0, 0, 1)
    assert stream_records() == 6 + 3
