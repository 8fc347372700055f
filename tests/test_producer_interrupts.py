"""Ctrl-C (SIGTERM too, through `brewops.interrupts`) while beers are being put: no call
or retry starts after it, and what Kinesis accepted before it is told, not lost with the
report. A command cut short says what to do next."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from brewops import streaming_cli
from brewops.producer import put_beers

CALL = 500  # records in a full PutRecords call


class InterruptedDuringSecondCall:
    """Accepts the first call. The second is under way when Ctrl-C comes, then comes back
    throttled: a retry of it would be sent after Ctrl-C. Any later call is accepted."""

    def __init__(self, interrupted: threading.Event) -> None:
        self.interrupted = interrupted
        self.calls: list[list[str]] = []

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        self.calls.append([record["PartitionKey"] for record in Records])
        if len(self.calls) == 2:
            ctrl_c_until_taken(self.interrupted)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutRecords",
            )
        accepted = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in Records]
        return {"FailedRecordCount": 0, "Records": accepted}


def ctrl_c_until_taken(taken: threading.Event) -> None:
    """SIGINT to the main thread until its handler has run: one that comes just before the
    main thread blocks on a lock waits there, unseen, until the lock is let go."""
    for _ in range(200):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if taken.wait(timeout=0.05):
            return
    raise AssertionError("the main thread never took the SIGINT")


@pytest.fixture
def interrupted() -> Iterator[threading.Event]:
    """Set once the main thread has taken a SIGINT, which then raises KeyboardInterrupt."""
    taken = threading.Event()

    def ctrl_c(signum: int, frame: Any) -> None:
        if not taken.is_set():  # once: the SIGINTs sent until then are one Ctrl-C
            taken.set()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        yield taken
    finally:
        signal.signal(signal.SIGINT, previous)


def beers(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"Beer {i}"} for i in range(1, n + 1)]


def test_ctrl_c_starts_no_retry_and_carries_what_was_accepted(interrupted):
    kinesis = InterruptedDuringSecondCall(interrupted)

    # one call at a time: the first is settled, the second under way, the third never starts
    with pytest.raises(KeyboardInterrupt) as caught:
        put_beers(beers(3 * CALL), "beers", kinesis, concurrency=1, sleep=lambda s: None)

    assert [len(call) for call in kinesis.calls] == [CALL, CALL]  # the throttled one not again
    report = caught.value.report
    assert report.sent == CALL
    assert not report.ok
    assert "500 records accepted by Kinesis before the interruption" in str(caught.value)


def test_ctrl_c_during_the_wait_before_a_retry_starts_no_retry(interrupted):
    calls: list[int] = []

    class Throttled:
        def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
            calls.append(len(Records))
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutRecords",
            )

    waits: list[float] = []

    def wait_then_ctrl_c(seconds: float) -> None:
        waits.append(seconds)
        ctrl_c_until_taken(interrupted)

    # the first call is throttled; Ctrl-C comes in the wait before its retry
    with pytest.raises(KeyboardInterrupt) as caught:
        put_beers(beers(CALL), "beers", Throttled(), sleep=wait_then_ctrl_c)

    assert len(waits) == 1
    assert calls == [CALL]
    report = caught.value.report
    assert report.sent == 0
    assert {(f.error_code, f.error_message) for f in report.failed} == {
        ("Interrupted", "Ctrl-C (or SIGTERM) came before it was sent: not sent")
    }


def test_a_backfill_cut_short_says_what_was_sent_and_what_to_do(interrupted, monkeypatch, tmp_path):
    kinesis = InterruptedDuringSecondCall(interrupted)
    target = SimpleNamespace(
        name="local",
        outputs={"StreamName": "beers"},
        session=SimpleNamespace(client=lambda service: kinesis),
        stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1",
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setattr("brewops.reconcile.delivered_keys", lambda *a, **kw: frozenset())
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(beers(2 * CALL)))  # two calls, both under way at once

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1, result.output
    assert "interrupted: 500 of 1000 beers sent" in result.output
    assert "run the command again" in result.output
    assert result.output.endswith("Aborted!\n")
    assert len(kinesis.calls) == 2  # the throttled call not again


@pytest.mark.parametrize("command", ["drain", "fill"])
def test_a_drain_cut_short_says_what_to_do(command, monkeypatch, tmp_path):
    target = SimpleNamespace(
        name="local",
        outputs={"StreamName": "beers"},
        session=None,
        stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1",
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    streaming_cli.remember_produced("local", [1], target.stack_id)  # fill: no backfill

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(
        "brewops.firehose_runtime.FirehoseRuntime.from_outputs",
        lambda *a, **kw: SimpleNamespace(drain=ctrl_c),
    )

    result = CliRunner().invoke(streaming_cli.stream, [command, "--no-progress"])

    assert result.exit_code == 1
    assert "interrupted: what was delivered stays delivered; run the command again" in (
        result.output
    )
    assert result.output.endswith("Aborted!\n")
