"""Ctrl-C (SIGTERM too, through `brewops.interrupts`) while beers are being put: no call
or retry starts after it, and what Kinesis accepted before it is told, not lost with the
report. A command cut short says what to do next."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from brewops import producer, streaming_cli
from brewops.producer import ProduceInterrupted, ProduceReport, put_beers

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


def local_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kinesis: Any = None) -> Any:
    """The local target the stream commands see, its Kinesis client `kinesis`, with nothing
    delivered yet and its record of produced ids under `tmp_path`."""
    target = SimpleNamespace(
        name="local",
        outputs={"StreamName": "beers"},
        session=SimpleNamespace(client=lambda service: kinesis),
        stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1",
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setattr("brewops.reconcile.delivered_keys", lambda *a, **kw: frozenset())
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    return target


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
    assert str(caught.value).startswith("500 records accepted by Kinesis before the interruption")


def test_a_tick_cut_short_by_ctrl_c_logs_its_one_line(interrupted, caplog):
    kinesis = InterruptedDuringSecondCall(interrupted)

    class Api:
        def random(self, n: int = 1) -> list[dict[str, Any]]:
            return beers(n)

    with (
        caplog.at_level(logging.INFO, logger="brewops.producer"),
        pytest.raises(ProduceInterrupted),
    ):
        producer.produce_random_beers(Api(), "beers", count=2 * CALL, kinesis_client=kinesis)

    (line,) = [r for r in caplog.records if r.name == "brewops.producer"]
    assert (line.getMessage(), line.levelname, line.sent) == ("tick incomplete", "ERROR", CALL)
    assert len(line.records) == CALL and len(line.beer_ids) == 2 * CALL


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
    target = local_target(monkeypatch, tmp_path, kinesis)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(beers(2 * CALL)), encoding="utf-8"
    )  # two calls, both under way at once

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1, result.output
    assert "interrupted: 500 of 1000 beers sent" in result.stderr
    assert "run the command again" in result.stderr
    assert result.output.endswith("Aborted!\n")
    assert len(kinesis.calls) == 2  # the throttled call not again
    # not recorded: `fill` would take the stack as filled
    assert streaming_cli.read_produced("local", target.stack_id)[0] is None


@pytest.mark.parametrize("command", ["drain", "fill"])
def test_a_drain_cut_short_says_what_to_do(command, monkeypatch, tmp_path):
    target = local_target(monkeypatch, tmp_path)
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
        result.stderr
    )
    assert result.output.endswith("Aborted!\n")


class Accepting:
    """Accepts every call `seconds` after it starts (and once `release` is set, if given)."""

    def __init__(self, seconds: float = 0.0, release: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.release = release
        self.started = threading.Event()
        self.calls = 0

    def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        self.calls += 1
        self.started.set()
        if self.release is not None:
            self.release.wait(timeout=30)
        time.sleep(self.seconds)
        accepted = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in Records]
        return {"FailedRecordCount": 0, "Records": accepted}


def ctrl_c_as_the_pool_starts_a_thread(monkeypatch, call_under_way: threading.Event) -> None:
    """Ctrl-C after the pool started a thread for a call but before it counted the thread, so
    the pool's exit does not wait for it (the thread's call is under way by then)."""
    start_thread = ThreadPoolExecutor._adjust_thread_count

    def start_then_ctrl_c(pool: ThreadPoolExecutor) -> None:
        counted = set(pool._threads)
        start_thread(pool)
        pool._threads.intersection_update(counted)
        call_under_way.wait(timeout=10)
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadPoolExecutor, "_adjust_thread_count", start_then_ctrl_c)


def test_a_ctrl_c_as_a_thread_starts_waits_for_its_call(monkeypatch):
    kinesis = Accepting(seconds=0.3)
    ctrl_c_as_the_pool_starts_a_thread(monkeypatch, kinesis.started)

    with pytest.raises(KeyboardInterrupt) as caught:
        put_beers(beers(CALL), "beers", kinesis, concurrency=1)

    assert caught.value.report.sent == CALL  # the call under way ended, and is told


def test_a_ctrl_c_waits_for_no_call_of_another_run(monkeypatch):
    # names PutRecords-10 (the other run's threads) and then PutRecords-1 (this run's)
    monkeypatch.setattr(producer, "_POOLS", iter([10, 1]))
    release = threading.Event()
    other = Accepting(release=release)
    other_run = threading.Thread(target=put_beers, args=(beers(1), "beers", other))
    other_run.start()
    assert other.started.wait(timeout=10)
    kinesis = Accepting()
    ctrl_c_as_the_pool_starts_a_thread(monkeypatch, kinesis.started)
    timer = threading.Timer(5.0, release.set)  # a join of the other run's thread ends then
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            put_beers(beers(1), "beers", kinesis, concurrency=1)
        assert not release.is_set()  # ended with the other run's call still under way
    finally:
        release.set()
        timer.cancel()
        other_run.join()
    assert other.calls == 1


def test_ctrl_c_during_a_call_that_comes_back_throttled_waits_for_no_retry(
    interrupted, monkeypatch
):
    senders: list[Any] = []

    class Sender(producer._Sender):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            senders.append(self)

    monkeypatch.setattr(producer, "_Sender", Sender)

    class ThrottledAfterCtrlC:
        calls = 0

        def put_records(self, *, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
            self.calls += 1
            ctrl_c_until_taken(interrupted)
            assert senders[0].interrupted.wait(timeout=10)  # the main thread has taken it
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutRecords",
            )

    waits: list[float] = []
    kinesis = ThrottledAfterCtrlC()
    with pytest.raises(KeyboardInterrupt):
        put_beers(beers(CALL), "beers", kinesis, sleep=waits.append, max_backoff=30.0)

    assert waits == []  # a wait before a retry would hold the exit up to max_backoff
    assert kinesis.calls == 1


def test_a_backfill_cut_short_counts_the_whole_catalogue(monkeypatch, tmp_path):
    local_target(monkeypatch, tmp_path)

    def ctrl_c_in_the_second_call(*args: Any, **kwargs: Any) -> None:
        # the third call's records not yet read from the catalogue
        raise ProduceInterrupted(ProduceReport(records=2 * CALL, sent=CALL))

    monkeypatch.setattr("brewops.producer.put_beers", ctrl_c_in_the_second_call)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(beers(3 * CALL)), encoding="utf-8")

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1, result.output
    assert "interrupted: 500 of 1500 beers sent" in result.stderr


def test_progress_after_ctrl_c_counts_no_record_left_unsent(interrupted):
    kinesis = InterruptedDuringSecondCall(interrupted)
    settled: list[int] = []
    oversize = {"id": 0, "name": "x" * (1024 * 1024 + 1)}  # read first: never sent

    with pytest.raises(KeyboardInterrupt) as caught:
        put_beers(
            [oversize, *beers(3 * CALL)],
            "beers",
            kinesis,
            concurrency=1,
            progress=settled.append,
            sleep=lambda s: None,
        )

    assert caught.value.report.oversize == ["0"]
    assert settled == [CALL]  # the first call; not the oversize record as if all had settled
