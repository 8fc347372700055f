"""`brewops stream redrive`: which error records are sent again, what is sent, and what
moves out of the error prefix (so that a second redrive sends nothing)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import time
from typing import Any

import pytest

from brewops.digests import payload_sha256
from brewops.producer import FailedRecord, ProduceReport
from brewops.reconcile import LoggedReasons
from brewops.redrive import (
    FUNCTION_FAILED,
    REFUSED,
    UNUSABLE,
    ErrorLine,
    Redrive,
    RedriveRefused,
    chosen,
    error_line,
    processing_failed_root,
    redrive,
    sent_lines,
    split_object,
)
from fixtures.json_schemas import schema_errors

NO_REASONS = LoggedReasons()
TEMPLATE_ERROR_PREFIX = (
    "errors/cleaned/!{firehose:error-output-type}/ingest_date=!{timestamp:yyyy-MM-dd}/"
)
PREFIX = "errors/cleaned/processing-failed/"


def failure(data: bytes, code: str = "Lambda.FunctionError", key: str = "errorCode") -> bytes:
    return json.dumps(
        {key: code, "errorMessage": "m", "rawData": base64.b64encode(data).decode()}
    ).encode()


def beer(beer_id: int, **fields: Any) -> bytes:
    return json.dumps({"id": beer_id, "name": "Punk IPA", **fields}).encode() + b"\n"


def line(data: bytes, code: str = "Lambda.FunctionError", reasons=NO_REASONS) -> ErrorLine:
    return error_line("errors/cleaned/a", 1, failure(data, code), reasons)


# ------------------------------------------------------------------ what each line is


@pytest.mark.parametrize(
    "code",
    [
        "Lambda.FunctionError",
        "Lambda.MissingRecordId",
        "Lambda.InvokeLimitExceeded",
        "Lambda.FunctionTimedOut",
        "Lambda.InvalidReturnFormat",
    ],
)
def test_a_record_the_function_failed_is_sent_again_by_default(code):
    found = line(beer(5), code)

    assert (found.kind, found.beer_id, found.data) == (FUNCTION_FAILED, 5, beer(5))
    assert chosen([found]) == [found]


def test_a_record_the_transform_refused_is_sent_again_only_when_asked():
    refused = line(beer(5, abv="strong"), "Lambda.ProcessingFailedStatus")

    assert refused.kind == REFUSED
    assert chosen([refused]) == []
    assert chosen([refused], include_refused=True) == [refused]


def test_a_record_the_transform_failed_on_by_a_bug_is_a_failure_of_the_function():
    data = beer(5)
    logged = LoggedReasons(by_payload={payload_sha256(data): "unexpected error: KeyError: 'x'"})

    assert line(data, "Lambda.ProcessingFailedStatus", logged).kind == FUNCTION_FAILED
    judged = LoggedReasons(by_payload={payload_sha256(data): "not a beer: abv: ..."})
    assert line(data, "Lambda.ProcessingFailedStatus", judged).kind == REFUSED


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"not json", "is not JSON"),
        (b"[1]", "is not a JSON object"),
        (b'{"errorCode": "Lambda.FunctionError"}', "no base64 rawData"),
        (b'{"errorCode": "Lambda.FunctionError", "rawData": "not base64!"}', "no base64 rawData"),
        (
            failure(beer(5), "DataFormatConversion.MalformedData", key="lastErrorCode"),
            "not a failure of the transform function",
        ),
    ],
    ids=["not json", "not an object", "no rawData", "bad base64", "format conversion"],
)
def test_a_line_with_nothing_to_send_is_never_chosen(text, problem):
    found = error_line("errors/cleaned/a", 3, text, NO_REASONS)

    assert found.kind == UNUSABLE and problem in (found.problem or "")
    assert chosen([found], include_refused=True) == []


def test_records_are_keyed_by_beer_id_and_end_with_a_newline_as_the_producer_sends_them():
    sent_whole = line(beer(5))
    unnamed = line(b"\xff\xfe not a beer", "Lambda.FunctionError")

    assert (sent_whole.partition_key, sent_whole.payload) == ("5", beer(5))
    assert unnamed.partition_key == payload_sha256(b"\xff\xfe not a beer")
    assert unnamed.payload == b"\xff\xfe not a beer\n"  # else raw/ joins it to the next


def test_a_partition_key_kinesis_refused_keeps_every_line_with_that_key():
    five, five_again, six, seven = line(beer(5)), line(beer(5)), line(beer(6)), line(beer(7))
    report = ProduceReport(
        sent=1, failed=[FailedRecord("5", "ProvisionedThroughputExceededException", "")]
    )
    report.oversize = ["7"]

    assert sent_lines([five, five_again, six, seven], report) == [six]


def test_an_object_keeps_the_lines_not_sent_in_their_order():
    a, b, c = line(beer(1)), line(beer(2)), line(beer(3))

    assert split_object([a, b, c], [c, a]) == ([a, c], [b])


@pytest.mark.parametrize(
    ("error_prefix", "root"),
    [
        (TEMPLATE_ERROR_PREFIX, PREFIX),
        ("", "processing-failed/"),  # Firehose's default: the output type first
        ("failed/", "failed/"),  # no expression: both output types share it
    ],
)
def test_the_processing_failed_prefix_follows_the_stream_configuration(error_prefix, root):
    assert processing_failed_root(error_prefix) == root


def test_what_a_redrive_says_follows_its_schema():
    lines = [line(beer(5)), line(beer(6), "Lambda.ProcessingFailedStatus")]
    lines.append(error_line("k", 3, b"not json", NO_REASONS))
    dry = Redrive("bucket", PREFIX, lines)
    applied = Redrive("bucket", PREFIX, lines, applied=True, archive="errors/redriven/r/", moved=1)
    applied.produce = ProduceReport(records=1, sent=1, calls=1)

    figures = dry.figures()
    assert schema_errors("redrive", figures) == []
    assert schema_errors("redrive", applied.figures()) == []
    assert (figures["to_redrive"], figures["beer_ids"], figures["by_error_code"]) == (
        1,
        [5],
        {"Lambda.FunctionError": 1},
    )
    assert (figures["refused_left"], figures["unusable_left"], figures["sent"]) == (1, 1, 0)
    assert "dry run: nothing sent; --apply sends them" in str(dry)
    assert "left: UNUSABLE k: line 3 is not JSON" in str(dry)


# ------------------------------------------------------------------ against a bucket


class Kinesis:
    """Takes every record but those of the partition keys in `refusing`."""

    def __init__(self, refusing: frozenset[str] = frozenset()) -> None:
        self.refusing = refusing
        self.records: list[dict[str, Any]] = []

    def put_records(self, Records, **kwargs):
        answers = []
        for record in Records:
            if record["PartitionKey"] in self.refusing:
                answers.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try later"})
            else:
                self.records.append(record)
                answers.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        failed = sum("ErrorCode" in a for a in answers)
        return {"FailedRecordCount": failed, "Records": answers}


def _put(stack, key: str, *lines: bytes, gzipped: bool = False) -> None:
    body = b"".join(x + b"\n" for x in lines)
    stack.client("s3").put_object(
        Bucket=stack.outputs["BucketName"], Key=key, Body=gzip.compress(body) if gzipped else body
    )


def _lines(stack, key: str) -> list[bytes]:
    body = stack.read(key)
    return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).splitlines()


def test_an_applied_redrive_says_how_many_objects_the_records_moved_came_from():
    """Beside `objects_not_moved`: how many objects the archive holds, and were rewritten."""
    lines = [line(beer(5)), line(beer(6))]
    done = Redrive("bucket", PREFIX, lines, applied=True, archive="errors/redriven/r/", moved=2)
    done.produce, done.objects_moved = ProduceReport(records=2, sent=2, calls=1), 1

    assert done.figures()["objects_moved"] == 1
    assert "moved 2 sent records from 1 object to s3://bucket/errors/redriven/r/" in str(done)


@pytest.mark.emulator
def test_records_sent_move_out_of_the_error_prefix_and_the_rest_stay(streaming_stack):
    stack = streaming_stack()
    mixed, failed_only = f"{PREFIX}ingest_date=2024-05-01/a", f"{PREFIX}ingest_date=2024-05-01/b"
    refused = failure(beer(2, abv="strong"), "Lambda.ProcessingFailedStatus")
    _put(stack, mixed, failure(beer(1)), refused, b"not json")
    _put(stack, failed_only, failure(beer(3)), failure(beer(4)), gzipped=True)
    kinesis = Kinesis()

    dry = redrive(stack.outputs, session=stack.session, kinesis_client=kinesis)
    assert [x.beer_id for x in dry.to_send] == [1, 3, 4] and kinesis.records == []

    done = redrive(
        stack.outputs, session=stack.session, apply=True, kinesis_client=kinesis, run="r1"
    )
    again = redrive(stack.outputs, session=stack.session, apply=True, kinesis_client=kinesis)

    assert done.ok and (done.produce.sent, done.moved, done.objects_moved) == (3, 3, 2)
    assert [r["Data"] for r in kinesis.records] == [beer(1), beer(3), beer(4)]
    assert _lines(stack, mixed) == [refused, b"not json"]  # kept, in their order
    assert stack.keys(PREFIX) == [mixed]
    archive = "errors/redriven/r1/"
    assert _lines(stack, archive + mixed) == [failure(beer(1))]
    assert _lines(stack, archive + failed_only) == [failure(beer(3)), failure(beer(4))]
    assert stack.read(archive + failed_only)[:2] == b"\x1f\x8b"  # compressed as it was
    assert again.to_send == [] and again.produce is None and len(kinesis.records) == 3


@pytest.mark.emulator
def test_records_kinesis_did_not_take_stay_in_the_error_prefix(streaming_stack):
    stack = streaming_stack()
    key = f"{PREFIX}a"
    _put(stack, key, failure(beer(1)), failure(beer(2)))

    done = redrive(
        stack.outputs,
        session=stack.session,
        apply=True,
        kinesis_client=Kinesis(refusing=frozenset({"2"})),
    )

    assert not done.ok
    assert (done.figures()["sent"], done.figures()["not_sent"]) == (1, 1)
    assert _lines(stack, key) == [failure(beer(2))]
    assert "NOT SENT: 2: InternalFailure: try later" in str(done)


@pytest.mark.emulator
def test_an_object_that_cannot_be_read_is_named_and_left_where_it_is(streaming_stack):
    stack = streaming_stack()
    damaged = gzip.compress(failure(beer(1)) + b"\n")[:-12]
    stack.client("s3").put_object(
        Bucket=stack.outputs["BucketName"], Key=f"{PREFIX}a", Body=damaged
    )
    _put(stack, f"{PREFIX}b", failure(beer(2)))
    kinesis = Kinesis()

    done = redrive(stack.outputs, session=stack.session, apply=True, kinesis_client=kinesis)

    assert not done.ok and list(done.unreadable) == [f"{PREFIX}a"]
    assert stack.read(f"{PREFIX}a") == damaged
    assert [r["PartitionKey"] for r in kinesis.records] == ["2"]


@pytest.mark.emulator
def test_a_reason_logged_before_the_refused_records_arrived_is_not_read(streaming_stack):
    """The beer the transform failed on by a bug an hour before is refused for itself now:
    that older line is not about this record, and does not make it the function's failure."""
    stack = streaming_stack()
    now = int(time.time() * 1000)
    logs = stack.client("logs")
    group = f"/aws/lambda/{stack.outputs['TransformFunctionName']}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="earlier")
    bug = {"message": "record not transformed", "beer_id": 2, "reason": "unexpected error: x"}
    logs.put_log_events(
        logGroupName=group,
        logStreamName="earlier",
        logEvents=[{"timestamp": now - 3_600_000, "message": json.dumps(bug)}],
    )
    refused = json.loads(failure(beer(2, abv="strong"), "Lambda.ProcessingFailedStatus"))

    _put(stack, f"{PREFIX}a", json.dumps({**refused, "approximateArrivalTimestamp": now}).encode())
    found = redrive(stack.outputs, session=stack.session, kinesis_client=Kinesis())
    assert [x.kind for x in found.lines] == [REFUSED]
    # a record that does not say when it arrived: the whole log, the older line with it
    _put(stack, f"{PREFIX}a", json.dumps(refused).encode())
    found = redrive(stack.outputs, session=stack.session, kinesis_client=Kinesis())
    assert [x.kind for x in found.lines] == [FUNCTION_FAILED]


@pytest.mark.emulator
def test_a_stack_whose_delivered_data_would_hold_the_moved_records_is_refused(
    streaming_stack,
):
    stack = streaming_stack()
    firehose = stack.client("firehose")
    name = stack.outputs["RawDeliveryStreamName"]
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)
    stream = description["DeliveryStreamDescription"]
    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId=stream["VersionId"],
        DestinationId=stream["Destinations"][0]["DestinationId"],
        ExtendedS3DestinationUpdate={"ErrorOutputPrefix": "errors/"},
    )

    with pytest.raises(RedriveRefused, match="errors/redriven/"):
        redrive(stack.outputs, session=stack.session, kinesis_client=Kinesis())


# ------------------------------------------------------------------ the command


def _command(monkeypatch, outcome) -> Any:
    from types import SimpleNamespace

    from click.testing import CliRunner

    from brewops import redrive as redriving
    from brewops import streaming_cli

    target = SimpleNamespace(name="local", outputs={}, session=None)
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    asked: list[dict] = []

    def answer(outputs, **options):
        asked.append(options)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(redriving, "redrive", answer)

    def invoke(*args: str):
        return CliRunner().invoke(streaming_cli.stream, ["redrive", *args])

    invoke.asked = asked
    return invoke


def test_the_command_is_a_dry_run_of_the_functions_failures_unless_told(monkeypatch):
    command = _command(monkeypatch, Redrive("bucket", PREFIX, [line(beer(5))]))

    dry = command("--no-progress")
    command("--apply", "--all", "--no-progress")

    assert dry.exit_code == 0, dry.output
    assert ": 1 error record; 1 to re-drive (failed by the function)" in dry.output
    assert [(o["apply"], o["include_refused"]) for o in command.asked] == [
        (False, False),
        (True, True),
    ]


def test_records_not_sent_end_the_command_in_error_after_saying_what_was_done(monkeypatch):
    done = Redrive("bucket", PREFIX, [line(beer(5))], applied=True)
    done.produce = ProduceReport(records=1, failed=[FailedRecord("5", "InternalFailure", "")])
    command = _command(monkeypatch, done)

    result = command("--apply", "--json", "--no-progress")

    assert result.exit_code == 1
    printed = json.loads(result.stdout.splitlines()[0])
    assert (printed["sent"], printed["not_sent"]) == (0, 1)
    assert "stay in the error prefix" in result.output


def test_an_interrupted_redrive_says_nothing_was_moved(monkeypatch):
    from brewops.producer import ProduceInterrupted

    command = _command(monkeypatch, ProduceInterrupted(ProduceReport(records=3, sent=2)))

    result = command("--apply", "--no-progress")

    assert result.exit_code == 1
    assert "interrupted: 2 records sent, none moved out of the error prefix" in result.output


def test_records_sent_but_not_moved_are_said_to_be_sent_and_to_be_sent_again(monkeypatch):
    done = Redrive("bucket", PREFIX, [line(beer(5))], applied=True, archive="errors/redriven/r/")
    done.produce = ProduceReport(records=1, sent=1, calls=1)
    denied = "ClientError: An error occurred (AccessDenied) when calling the DeleteObject"
    done.not_moved = {f"{PREFIX}a": denied}
    command = _command(monkeypatch, done)

    result = command("--apply", "--no-progress")

    assert result.exit_code == 1
    assert f"NOT MOVED {PREFIX}a: {denied}" in result.output
    assert "not re-driven" not in result.output  # they were: Kinesis took them
    assert "the next redrive sends them again" in result.output
    assert "s3:DeleteObject" in result.output
    assert done.figures()["archive"] is None  # nothing is there: no line was moved
    assert "`brewops stream drain` delivers what was sent" in result.output
