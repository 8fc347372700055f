"""The scheduler invokes the producer the way its EventBridge rule does."""

from __future__ import annotations

import http.server
import io
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from brewops import scheduler as scheduler_module
from brewops.reconcile import tick_ids
from brewops.scheduler import Scheduler, _RemoteFunction, rate_seconds, scheduled_event

EVENTS = Path(__file__).parent / "events"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:brewops-dev-producer"


def _session() -> boto3.Session:
    """A session for a deployed producer; the tests give it an endpoint of their own."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )


RULE_ARN = "arn:aws:events:eu-west-1:123456789012:rule/brewops-dev-producer-tick"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 hour)", 3600),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 259200),
        (" rate(10 minutes) ", 600),
        ("cron(0 * * * ? *)", None),
    ],
)
def test_rate_expressions(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_the_scheduled_event_has_eventbridge_shape():
    fixture = json.loads((EVENTS / "eventbridge_scheduled.json").read_text(encoding="utf-8"))
    event = scheduled_event(RULE_ARN)
    assert set(event) == set(fixture)
    assert event["resources"] == [RULE_ARN]
    assert (event["region"], event["account"]) == ("eu-west-1", "123456789012")
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", event["time"])


def test_the_scheduled_time_is_in_utc_whatever_the_zone_given():
    paris_summer = timezone(timedelta(hours=2))
    moment = datetime(2024, 5, 1, 14, 30, tzinfo=paris_summer)
    assert scheduled_event(RULE_ARN, moment)["time"] == "2024-05-01T12:30:00Z"
    assert scheduled_event(RULE_ARN, moment.astimezone(UTC))["time"] == "2024-05-01T12:30:00Z"


class RuleSession:
    """A session whose EventBridge holds one rule with the given targets."""

    def __init__(self, *targets: dict, **rule: str) -> None:
        self.targets = list(targets)
        self.rule = {"Arn": RULE_ARN, "ScheduleExpression": "rate(1 minute)", **rule}

    def client(self, service: str, **kw) -> SimpleNamespace:
        return SimpleNamespace(
            describe_rule=lambda Name: self.rule,
            list_targets_by_rule=lambda Rule: {"Targets": self.targets},
        )


def test_only_the_lambda_targets_of_a_rule_are_ticked():
    queue = {"Id": "q", "Arn": "arn:aws:sqs:eu-west-1:123456789012:beers"}
    function = {"Id": "f", "Arn": FUNCTION_ARN, "Input": '{"beers": 2}'}

    scheduler = Scheduler("tick", session=RuleSession(queue, function), in_process=False)

    assert [(f.name, constant) for f, constant in scheduler.targets] == [
        (FUNCTION_ARN, {"beers": 2})
    ]


@pytest.mark.parametrize(
    ("rule", "enabled"),
    [({"State": "ENABLED"}, True), ({"State": "DISABLED"}, False), ({}, True)],
)
def test_the_rules_state_says_whether_its_schedule_fires(rule, enabled):
    function = {"Id": "f", "Arn": FUNCTION_ARN}

    scheduler = Scheduler("tick", session=RuleSession(function, **rule), in_process=False)

    assert scheduler.enabled is enabled


@pytest.mark.parametrize(
    "extra", [{"InputPath": "$.detail"}, {"InputTransformer": {"InputTemplate": "{}"}}]
)
def test_a_target_whose_input_is_taken_from_the_event_is_refused(extra):
    target = {"Id": "f", "Arn": FUNCTION_ARN, **extra}
    with pytest.raises(ValueError, match="only constant or default input"):
        Scheduler("tick", session=RuleSession(target), in_process=False)


def test_neither_a_rule_with_a_lambda_target_nor_a_function_is_refused():
    with pytest.raises(ValueError, match="no Lambda target and no function given"):
        Scheduler("tick", session=RuleSession(), in_process=False)


@pytest.mark.emulator
class DeployedFunction:
    """Answers Invoke as the Lambda API does; moto cannot run a function without Docker."""

    def __init__(self, payload: bytes, function_error: str | None = None) -> None:
        self.payload, self.function_error = payload, function_error
        self.events: list[dict] = []

    def invoke(self, FunctionName: str, Payload: str) -> dict:
        self.events.append(json.loads(Payload))
        response = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


@pytest.mark.parametrize(
    ("payload", "function_error", "error"),
    [
        (b'{"sent": 1, "ids": [7]}', None, None),
        (
            b'{"errorType": "ProduceError", "errorMessage": "1 of 1 records not sent"}',
            "Unhandled",
            "ProduceError: 1 of 1 records not sent",
        ),
        (
            b'{"errorMessage": "Task timed out after 60.00 seconds"}',
            "Unhandled",
            "Unhandled: Task timed out after 60.00 seconds",
        ),
        (b'"out of memory"', "Unhandled", "Unhandled: 'out of memory'"),
    ],
)
def test_a_deployed_function_answers_with_its_result_or_its_error(payload, function_error, error):
    function = DeployedFunction(payload, function_error)
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/tick")

    result, failure = _RemoteFunction("brewops-producer", function).invoke(event)

    assert failure == error
    assert function.events == [event]
    assert result == json.loads(payload)


def test_a_deployed_function_that_answers_nothing_answers_none():
    result, failure = _RemoteFunction("brewops-producer", DeployedFunction(b"")).invoke({})
    assert (result, failure) == (None, None)


def test_a_deployed_function_is_awaited_as_long_as_a_function_can_run():
    # botocore retries a timed-out read: a shorter wait would invoke the producer again

    [(function, _)] = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False).targets

    assert function.lambda_client.meta.config.read_timeout > 900  # Lambda's longest Timeout


def test_a_deployed_function_is_invoked_once_per_tick_even_when_lambda_fails(monkeypatch):
    # GIVEN a Lambda endpoint that answers every Invoke with a server error
    calls: list[str] = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            calls.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"Type": "Service", "message": "internal error"}'
            self.send_response(500)
            self.send_header("x-amzn-ErrorType", "ServiceException")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        # WHEN the schedule fires once
        [tick] = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False).tick()
    finally:
        server.shutdown()
        server.server_close()

    # THEN the producer ran at most once: a retried Invoke would produce the tick twice
    assert len(calls) == 1
    assert not tick.ok and "ServiceException" in tick.error


def test_ticks_keep_the_interval_however_long_a_tick_takes(monkeypatch):
    # GIVEN a clock of our own, and ticks that each take 0.5 s of it
    clock = [0.0]
    monkeypatch.setattr(scheduler_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    starts: list[float] = []

    def tick() -> list:
        starts.append(clock[0])
        clock[0] += 0.5
        return []

    waits: list[float] = []

    class Waits(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            clock[0] += timeout
            return False

    monkeypatch.setattr(scheduler, "tick", tick)

    # WHEN three ticks run 0.6 s apart
    scheduler.run(3, interval=0.6, stop=Waits())

    # THEN they start 0.6 s apart, not 0.6 s after the previous one ended
    assert starts == pytest.approx([0.0, 0.6, 1.2])
    assert len(waits) == 2  # and the run ends with the last tick, not an interval later


def test_a_pause_past_many_ticks_fires_one_tick_on_waking_not_the_missed_ones(monkeypatch):
    # GIVEN a clock of our own, and a run stopped for 6.5 intervals in its first wait (a
    # laptop asleep, Ctrl-Z then fg)
    clock = [0.0]
    monkeypatch.setattr(scheduler_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    starts: list[float] = []
    monkeypatch.setattr(scheduler, "tick", lambda: starts.append(clock[0]) or [])
    pauses = [6.5 * 60]

    class Waits(threading.Event):
        def wait(self, timeout=None):
            clock[0] += timeout + (pauses.pop() if pauses else 0)
            return False

    # WHEN three ticks run a minute apart
    scheduler.run(3, interval=60, stop=Waits())

    # THEN the run ticks once on waking and a minute later: EventBridge does not fire the
    # schedule's slots it missed either, and a burst of them would put a burst of beers
    assert starts == pytest.approx([0.0, 450.0, 510.0])


def test_ctrl_c_ends_a_run_with_the_ticks_done_so_far(monkeypatch):
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    fired = iter([["first"], KeyboardInterrupt()])

    def tick() -> list:
        outcome = next(fired)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(scheduler, "tick", tick)

    try:
        done = scheduler.run(3)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the run")  # not raised on: pytest would stop the session
    assert done == ["first"]


def test_an_open_ended_run_follows_the_rules_rate(monkeypatch):
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    scheduler.schedule = "rate(5 minutes)"  # as read back from the rule
    monkeypatch.setattr(scheduler, "tick", lambda: [])
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            self.set()
            return True

    scheduler.run(stop=Stop())

    assert len(waits) == 1 and 299 < waits[0] <= 300


def test_a_tick_lasts_at_most_its_functions_timeouts(monkeypatch):
    from brewops.firehose_runtime.functions import LocalFunction

    def lookup(function, lambda_client, **kwargs):
        return LocalFunction(
            {"FunctionName": "p", "FunctionArn": function, "Handler": "a.b", "Timeout": 60}
        )

    monkeypatch.setattr(scheduler_module.LocalFunction, "lookup", lookup)
    local = Scheduler(function=FUNCTION_ARN, session=_session(), log_dir=Path("logs"))
    deployed = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)

    assert local.tick_timeout == 60  # the function's Timeout, as the template sets it
    assert deployed.tick_timeout == 910  # as long as an Invoke is waited for
    # a rule with several targets calls them one after the other
    deployed.targets = [(SimpleNamespace(timeout=60), None), (SimpleNamespace(timeout=30), None)]
    assert deployed.tick_timeout == 90


def test_an_open_ended_run_keeps_its_recent_ticks_only_and_a_counted_run_all(monkeypatch):
    """`stream run --with-scheduler` may stay up for days: its ticks must not pile up."""
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    monkeypatch.setattr(scheduler_module, "RECENT_TICKS", 5)
    numbers = iter(range(1, 1000))
    monkeypatch.setattr(scheduler, "tick", lambda: [next(numbers)])
    seen: list[int] = []
    stop = threading.Event()

    def count(fired: list[int]) -> None:
        seen.extend(fired)
        if len(seen) == 12:
            stop.set()

    kept = scheduler.run(interval=0.0, stop=stop, on_tick=count)

    assert seen == list(range(1, 13))  # each tick was seen as it fired
    assert kept == list(range(8, 13))
    assert scheduler.run(12) == list(range(13, 25))  # a number of ticks: every one


@pytest.mark.emulator
def test_a_function_that_cannot_be_invoked_fails_its_tick_and_the_schedule_goes_on(
    moto_endpoint, boto_session, monkeypatch, caplog
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    scheduler = Scheduler(function="no-such-producer", session=boto_session, in_process=False)

    with caplog.at_level(logging.WARNING, logger="brewops.scheduler"):
        ticks = scheduler.run(2)

    assert [t.number for t in ticks] == [1, 2]
    assert all(t.error.startswith("ResourceNotFoundException: ") for t in ticks), ticks
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(": Resource")[0] for w in warnings] == [
        "tick 1: no-such-producer failed",
        "tick 2: no-such-producer failed",
    ]


def test_ticks_run_the_producer_and_put_random_beers(streaming_stack, punkapi_url):
    stack = streaming_stack(producer_environment={"PUNKAPI_URL": punkapi_url})
    scheduler = Scheduler.from_outputs(stack.outputs, session=stack.session)

    ticks = scheduler.run(3)

    assert [t.number for t in ticks] == [1, 2, 3]
    assert all(t.ok for t in ticks), [t.error for t in ticks]
    assert all(t.event["resources"] == [scheduler.rule_arn] for t in ticks)
    assert scheduler.interval_seconds == 60
    ids = tick_ids(ticks)
    assert len(ids) == 3
    kinesis = stack.client("kinesis")
    stream = stack.outputs["StreamName"]
    put = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        put += [
            json.loads(r["Data"])["id"]
            for r in kinesis.get_records(ShardIterator=iterator)["Records"]
        ]
    assert sorted(put) == sorted(ids)


@pytest.mark.emulator
@pytest.mark.parametrize("constant", [{"beers": 2}, {}])  # an empty constant is still one
def test_a_constant_input_replaces_the_event_and_the_environment_applies(streaming_stack, constant):
    stack = streaming_stack(
        producer_handler="fixtures.streaming.event_echo_handler", schedule_input=constant
    )
    [tick] = Scheduler.from_outputs(stack.outputs, session=stack.session).tick()

    assert tick.result["event"] == constant
    assert tick.result["stream"] == stack.outputs["StreamName"]


@pytest.mark.emulator
def test_an_open_ended_run_ticks_until_stopped(streaming_stack):
    stack = streaming_stack(producer_handler="fixtures.streaming.event_echo_handler")
    scheduler = Scheduler.from_outputs(stack.outputs, session=stack.session)
    stop = threading.Event()
    seen = []

    def count(fired):
        seen.extend(fired)
        if len(seen) == 2:
            stop.set()

    ticks = scheduler.run(interval=0.01, stop=stop, on_tick=count)

    assert len(ticks) == 2
    assert ticks[0].event["detail-type"] == "Scheduled Event"


@pytest.mark.parametrize("ticks", [-1, 2.5, "3", True])
def test_a_number_of_ticks_that_is_no_whole_number_of_zero_or_more_is_refused(monkeypatch, ticks):
    # -1 ran none, 2.5 ran three, "3" was a TypeError after the backfill
    scheduler = Scheduler(function=FUNCTION_ARN, session=_session(), in_process=False)
    monkeypatch.setattr(scheduler, "tick", lambda: pytest.fail("ticked"))

    with pytest.raises(ValueError, match=r"ticks must be a whole number of ticks, 0 or more"):
        scheduler.run(ticks)


def test_whole_numbers_of_ticks_are_taken():
    assert scheduler_module.checked_ticks(0) == 0
    assert scheduler_module.checked_ticks(3) == 3
