"""Put beers into the Kinesis stream with PutRecords, losing none of them silently.

Used by the producer Lambda (a few beers per tick) and by the backfill (the whole catalogue).
Each record is serialised once, as the calls fill, and packed into calls that respect the
Kinesis limits (500 records and 5 MiB per call, 1 MiB per record); nothing is done per
record after that (no per-record logging or copies). Entries that come back with an
`ErrorCode`, and calls rejected for throttling, are retried with exponential backoff and
full jitter, for as long as the retries get records in (a shard takes 1 MiB or 1,000
records a second: a backfill goes at its pace); nothing else is re-sent, so these retries
never duplicate an accepted record. botocore's own retry of a call whose answer was lost
(a read timeout) sends the whole call again, so a record can arrive twice: readers keep
the latest record per beer id (`tables.latest_per_id`).
With a deadline, no call starts unless the longest it can take (its client's timeouts and
retries) ends before then. Whatever could not be sent is in the `ProduceReport`, with its
reason. After Ctrl-C (or SIGTERM) no call or retry starts: the calls under way end, and
the KeyboardInterrupt raised then (`ProduceInterrupted`) carries the report.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    stop_never,
    wait_random_exponential,
)

from brewops import schema
from brewops.batching import within_limits

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024  # data + partition key, as Kinesis counts it
MAX_PARTITION_KEY_LENGTH = 256  # Unicode characters; a longer key fails the whole call
# A tick stops retrying its puts this long after the first: with the last wait and call it
# stays within the producer Lambda's reserve for Kinesis (KINESIS_RESERVE_SECONDS)
TICK_RETRY_SECONDS = 10.0

# botocore's longest wait between the attempts of one call: its backoff is capped at 20 s,
# and an answer with x-amz-retry-after adds up to 5 s to it
BOTOCORE_MAX_BACKOFF_SECONDS = 20.0
BOTOCORE_RETRY_AFTER_EXTRA_SECONDS = 5.0

# Whole-call errors worth another attempt: the stream (or its KMS key) is busy, not wrong.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)

Entry = dict[str, Any]  # {"Data": bytes, "PartitionKey": str}, as PutRecords takes it
_POOLS = itertools.count(1)  # names each run's threads apart
Progress = Callable[[int], Any]


# A Kinesis error message quoted in a log line is cut to this many characters
MAX_LOGGED_MESSAGE_CHARS = 200


@dataclass
class FailedRecord:
    partition_key: str  # the beer id for put_beers
    error_code: str
    error_message: str
    attempts: int = 0  # PutRecords calls that carried it (0: never sent)


@dataclass(frozen=True)
class SentRecord:
    """Where Kinesis put one record: the keys the transform logs for it too."""

    partition_key: str  # the beer id for put_beers
    shard_id: str
    sequence_number: str


@dataclass
class ProduceReport:
    """What a produce run did. `ok` only when every record was accepted by Kinesis."""

    records: int = 0  # records handed to the producer
    sent: int = 0  # accepted by Kinesis
    retried: int = 0  # record re-sends after a failed entry or a throttled call
    throttled_calls: int = 0  # calls rejected as a whole with a retryable error
    failed: list[FailedRecord] = field(default_factory=list)  # given up, with the last reason
    oversize: list[str] = field(default_factory=list)  # partition keys of records over 1 MiB
    # where each accepted record went, kept only when asked (`receipts=True`): a tick's few
    accepted: list[SentRecord] = field(default_factory=list)
    calls: int = 0  # PutRecords calls made
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.oversize and self.sent == self.records

    @property
    def records_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain values, with `ok` and `records_per_second`."""
        summary = asdict(self)
        summary["ok"] = self.ok
        summary["records_per_second"] = round(self.records_per_second, 1)
        return summary

    def raise_for_failures(self) -> ProduceReport:
        if not self.ok:
            raise ProduceError(self)
        return self


class ProduceError(RuntimeError):
    """Some records were not accepted; `report` says which and why."""

    def __init__(self, report: ProduceReport) -> None:
        self.report = report
        message = (
            f"{report.records - report.sent} of {report.records} records not sent: "
            f"{len(report.failed)} failed, {len(report.oversize)} over 1 MiB"
        )
        if report.failed:
            # The message is all a Lambda error or a failed tick shows: name the reasons.
            codes = ", ".join(sorted({f.error_code for f in report.failed}))
            message += f" ({codes}; first: {report.failed[0].error_message:.200})"
        super().__init__(message)


class ProduceInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) came while records were being put. No call or retry started after
    it; `report` says what Kinesis accepted before it (`sent`). Records not yet in a call are
    counted in neither `sent` nor `failed`."""

    def __init__(self, report: ProduceReport) -> None:
        self.report = report
        super().__init__(
            f"{report.sent} records accepted by Kinesis before the interruption; no call was "
            "made after it"
        )


class _EntriesFailed(Exception):
    """Some entries of a PutRecords call came back with an ErrorCode."""


class _OutOfTime(Exception):
    """Too little time is left before the deadline for a call to end by it."""


class _Interrupted(Exception):
    """Ctrl-C came in the main thread: no call starts any more."""


def longest_call_seconds(config: Any) -> float:
    """The longest one boto3 call can take under `config` (a botocore Config): every attempt
    waiting its connect and read timeouts out, with botocore's longest waits between them
    (1, 2, 4... s, capped at 20 s, each up to 5 s longer when the answer asks for it).
    A read timeout bounds each wait for a byte of the answer, not the whole exchange: an
    endpoint that trickles its answer is not bounded by this."""
    retries = config.retries or {}
    if "total_max_attempts" in retries:
        attempts = retries["total_max_attempts"]
    elif "max_attempts" in retries:  # retries, not counting the first attempt
        attempts = retries["max_attempts"] + 1
    else:  # botocore's defaults: 5 attempts in legacy mode, 3 in standard and adaptive
        attempts = 5 if retries.get("mode", "legacy") == "legacy" else 3
    waits = sum(
        min(2.0**retry, BOTOCORE_MAX_BACKOFF_SECONDS) + BOTOCORE_RETRY_AFTER_EXTRA_SECONDS
        for retry in range(attempts - 1)
    )
    return attempts * (config.connect_timeout + config.read_timeout) + waits


def _longest_call_of(client: Any) -> float:
    """The longest a call of `client` can take; 0 for a double without a botocore config."""
    config = getattr(getattr(client, "meta", None), "config", None)
    return longest_call_seconds(config) if config is not None else 0.0


def _retryable(error: BaseException) -> bool:
    if isinstance(error, _EntriesFailed):
        return True
    return (
        isinstance(error, ClientError)
        and error.response.get("Error", {}).get("Code") in RETRYABLE_ERROR_CODES
    )


def serialise_beer(beer: Mapping[str, Any]) -> bytes:
    """One beer as one NDJSON line, so the raw delivery stream writes NDJSON.

    NaN and infinities raise ValueError: Python would write them as bare `NaN`, which is
    not JSON and which strict readers of the raw prefix (Athena among them) refuse."""
    line = json.dumps(beer, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (line + "\n").encode("utf-8")


def _record_size(entry: Entry) -> int:
    return len(entry["Data"]) + len(entry["PartitionKey"].encode("utf-8"))


@dataclass
class _Tally:
    """What one batch did; merged into the report under a lock (batches run in threads)."""

    sent: int = 0
    retried: int = 0
    throttled_calls: int = 0
    calls: int = 0
    failed: list[FailedRecord] = field(default_factory=list)
    accepted: list[SentRecord] = field(default_factory=list)


class _Sender:
    def __init__(
        self,
        stream: str,
        client: Any,
        report: ProduceReport,
        *,
        max_attempts: int,
        max_seconds: float | None,
        deadline: float | None,
        backoff: float,
        max_backoff: float,
        sleep: Callable[[float], None],
        log: Any,  # None: the caller logs the report
        receipts: bool = False,
    ) -> None:
        self.receipts = receipts
        key = "StreamARN" if stream.startswith("arn:") else "StreamName"
        self.target = {key: stream}
        self.client = client
        self.report = report
        self.lock = threading.Lock()
        self.log = log
        self.max_attempts = max_attempts
        self.out_of_time = stop_never if max_seconds is None else stop_after_delay(max_seconds)
        self.deadline = deadline
        self.longest_call = _longest_call_of(client) if deadline is not None else 0.0
        self.interrupted = threading.Event()  # set by the main thread on Ctrl-C
        self.retrying = Retrying(
            wait=wait_random_exponential(multiplier=backoff, max=max_backoff),
            retry=retry_if_exception(_retryable),
            sleep=sleep,
            reraise=True,
        )

    def _call_would_end_past_deadline(self, state: RetryCallState) -> bool:
        """True when a call started after the coming wait could end past the deadline."""
        return self._past_deadline(state.upcoming_sleep)

    def _past_deadline(self, wait: float) -> bool:
        if self.deadline is None:
            return False
        return time.monotonic() + wait + self.longest_call > self.deadline

    def _put(
        self, entries: list[Entry], tally: _Tally, errors: dict[int, tuple[str, str]]
    ) -> list[Entry]:
        """One PutRecords call; returns the entries that came back with an ErrorCode."""
        tally.calls += 1
        try:
            response = self.client.put_records(Records=entries, **self.target)
        except ClientError as error:
            if _retryable(error):
                tally.throttled_calls += 1
            raise
        if not response.get("FailedRecordCount"):
            tally.sent += len(entries)
            if self.receipts:
                tally.accepted.extend(map(_receipt, entries, response["Records"]))
            return []
        failed = []
        for entry, result in zip(entries, response["Records"], strict=True):
            code = result.get("ErrorCode")
            if code:
                errors[id(entry)] = (code, result.get("ErrorMessage", ""))
                failed.append(entry)
            elif self.receipts:
                tally.accepted.append(_receipt(entry, result))
        tally.sent += len(entries) - len(failed)
        return failed

    def send(self, batch: list[Entry]) -> int:
        """Put one batch, retrying what failed; returns how many records it settled."""
        tally = _Tally()
        errors: dict[int, tuple[str, str]] = {}  # id(entry) -> its last error
        pending = batch
        # A shard at its write limit takes part of each call: tries are counted from the
        # last one that got records in, so a backfill slowed to the shard's pace goes in whole.
        counted_from = 1

        def stalled(state: RetryCallState) -> bool:
            return state.attempt_number - counted_from + 1 >= self.max_attempts

        try:
            # tenacity calls any callable as a stop condition; stop_any is annotated for its own
            stop = stop_any(
                stalled,  # type: ignore[arg-type]
                self.out_of_time,
                self._call_would_end_past_deadline,  # type: ignore[arg-type]
                lambda state: self.interrupted.is_set(),  # type: ignore[arg-type]
            )
            for attempt in self.retrying.copy(stop=stop):
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if self.interrupted.is_set():  # also after a wait begun before Ctrl-C
                        raise _Interrupted
                    if number == 1 and self._past_deadline(0.0):
                        raise _OutOfTime  # the retries check before their wait
                    if number > 1:
                        tally.retried += len(pending)
                    left = len(pending)
                    pending = self._put(pending, tally, errors)
                    if len(pending) < left:
                        counted_from = number
                    if pending:
                        raise _EntriesFailed
        except _EntriesFailed:
            pass
        except _OutOfTime:
            seconds_left = max((self.deadline or 0.0) - time.monotonic(), 0.0)
            reason = (
                "OutOfTime",
                f"{seconds_left:.1f} s left before the deadline, and a PutRecords call may take "
                f"{self.longest_call:.1f} s: not sent",
            )
            errors.update((id(entry), reason) for entry in pending)
        except _Interrupted:
            reason = ("Interrupted", "Ctrl-C (or SIGTERM) came before it was sent: not sent")
            errors.update((id(entry), reason) for entry in pending)
        except ClientError as error:
            details = error.response.get("Error", {})
            reason = (details.get("Code", "ClientError"), details.get("Message", ""))
            errors.update((id(entry), reason) for entry in pending)
        except BotoCoreError as error:
            # No answer from Kinesis (connection, timeout after botocore's own retries) or
            # a request it could not even build: the records may or may not be in.
            reason = (type(error).__name__, str(error))
            errors.update((id(entry), reason) for entry in pending)
        if pending:
            # every call of this batch carried the entries still pending
            tally.failed = [
                FailedRecord(
                    entry["PartitionKey"], *errors.get(id(entry), ("Unknown", "")), tally.calls
                )
                for entry in pending
            ]
        if pending and self.log is not None:
            self.log.error(
                "records not accepted by Kinesis",
                extra={
                    "failed": len(tally.failed),
                    "error_codes": sorted({f.error_code for f in tally.failed}),
                },
            )
        with self.lock:
            report = self.report
            report.sent += tally.sent
            report.retried += tally.retried
            report.throttled_calls += tally.throttled_calls
            report.calls += tally.calls
            report.failed.extend(tally.failed)
            report.accepted.extend(tally.accepted)
        return len(batch)


def _receipt(entry: Entry, result: Mapping[str, Any]) -> SentRecord:
    return SentRecord(
        entry["PartitionKey"], str(result.get("ShardId")), str(result.get("SequenceNumber"))
    )


def _key_problem(key: Any) -> str | None:
    """Why Kinesis would reject a partition key (and with it the whole call), or None."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARTITION_KEY_LENGTH:
        return f"a partition key is 1 to {MAX_PARTITION_KEY_LENGTH} characters: {key!r:.80}"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"a partition key is valid Unicode: {error}"
    return None


def _batches(
    payloads: Iterable[tuple[str, bytes] | FailedRecord],
    report: ProduceReport,
    rejected: list[FailedRecord],
) -> Iterable[list[Entry]]:
    """Pack payloads into calls within the Kinesis limits. Oversize records go to the
    report; records the caller could not build, and records with a key Kinesis would
    refuse, go to `rejected`, never into a call."""
    return within_limits(
        _sendable(payloads, report, rejected),
        _record_size,
        most_items=MAX_RECORDS_PER_CALL,
        most_bytes=MAX_BYTES_PER_CALL,
    )


def _sendable(
    payloads: Iterable[tuple[str, bytes] | FailedRecord],
    report: ProduceReport,
    rejected: list[FailedRecord],
) -> Iterator[Entry]:
    for payload in payloads:
        report.records += 1
        if isinstance(payload, FailedRecord):
            rejected.append(payload)
            continue
        key, data = payload
        entry: Entry = {"Data": data, "PartitionKey": key}
        problem = _key_problem(key)
        if problem:
            rejected.append(
                FailedRecord(str(entry["PartitionKey"]), "InvalidPartitionKey", problem)
            )
            continue
        if _record_size(entry) > MAX_BYTES_PER_RECORD:
            report.oversize.append(entry["PartitionKey"])
            continue
        yield entry


def _progress_callback(progress: bool | Progress, total: int | None) -> tuple[Progress | None, Any]:
    if not progress:
        return None, None
    if callable(progress):
        return progress, None
    from brewops.progress import ProgressBar

    bar = ProgressBar(total=total, unit=" records", desc="PutRecords")
    return bar.update, bar


def put_payloads(
    payloads: Iterable[tuple[str, bytes] | FailedRecord],
    stream_name: str,
    kinesis_client: Any = None,
    *,
    progress: bool | Progress = False,
    total: int | None = None,
    concurrency: int = 4,
    max_attempts: int = 8,
    max_seconds: float | None = None,
    deadline: float | None = None,
    backoff: float = 0.1,
    max_backoff: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Any = None,
    receipts: bool = False,
    log_report: bool = True,
) -> ProduceReport:
    """Put (partition key, data) pairs as they are; the engine under `put_beers`.

    A `FailedRecord` among the pairs is a record the caller could not build: it is counted
    and reported with the others, never sent.

    `stream_name` may also be a stream ARN. Calls go out from worker threads, up to
    `concurrency` at once, so the next batches are serialised and packed while others are
    in flight. Records with the same partition key keep their order only within one call
    (and retried entries go after the others): pass `concurrency=1` to keep the order of
    a key's records across calls.
    `progress` is True for a tqdm bar (of `total` records) or a callable that receives
    the number of records settled after each call. `max_attempts` counts the tries of a
    batch from the first, or from the last one that got records in: a shard at its write
    limit slows a backfill down without failing it. With `max_seconds`, no retry of a batch
    starts that long after its first try. With `deadline` (a time.monotonic() value), no
    call starts, and no wait before one, unless the longest the call can take under the
    client's botocore Config (`longest_call_seconds`) ends by then: the records it would
    have sent are reported as failed, with the last reason or "OutOfTime". The wait after
    try n is random in [0, min(max_backoff, backoff * 2**(n - 1))]. With `receipts`, the
    report's `accepted` says which shard and sequence number each accepted record got (for
    a tick's few records; a backfill keeps none). With `log_report=False` nothing is
    logged: the caller logs the report (a tick, in its one line).
    """
    log = log or logger
    client = kinesis_client or _default_client()
    report = ProduceReport()
    started = time.perf_counter()
    if total is None and isinstance(payloads, Sized):
        total = len(payloads)
    callback, bar = _progress_callback(progress, total)
    sender = _Sender(
        stream_name,
        client,
        report,
        max_attempts=max_attempts,
        max_seconds=max_seconds,
        deadline=deadline,
        backoff=backoff,
        max_backoff=max_backoff,
        sleep=sleep,
        log=log if log_report else None,
        receipts=receipts,
    )
    rejected: list[FailedRecord] = []
    interrupted: KeyboardInterrupt | None = None
    threads = f"PutRecords-{next(_POOLS)}"
    try:
        with ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix=threads
        ) as pool:
            in_flight: set[Future[int]] = set()
            try:
                for batch in _batches(payloads, report, rejected):
                    if len(in_flight) >= max(1, concurrency):
                        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        _settle(done, callback)
                    in_flight.add(pool.submit(sender.send, batch))
                _settle(wait(in_flight).done, callback)
            except KeyboardInterrupt as error:
                # no call or retry starts now; the pool's exit waits for those under way
                sender.interrupted.set()
                interrupted = error
        if interrupted is not None:
            # a Ctrl-C that came as the pool started a thread left it out of the pool's wait
            for thread in threading.enumerate():
                if thread.name.startswith(f"{threads}_"):
                    thread.join()
        if callback is not None and (rejected or report.oversize) and interrupted is None:
            callback(len(rejected) + len(report.oversize))  # settled too: never sent
    finally:
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - started
        report.failed.extend(rejected)
    if log_report:
        _log_report(log, report, rejected)
    if interrupted is not None:
        raise ProduceInterrupted(report) from interrupted
    return report


def _log_report(log: Any, report: ProduceReport, rejected: list[FailedRecord]) -> None:
    if rejected:
        log.error(
            "records that cannot be sent",
            extra={
                "not_sendable": len(rejected),
                "reasons": [
                    f"{r.partition_key}: {r.error_code}: {r.error_message}" for r in rejected[:5]
                ],
            },
        )
    if report.oversize:
        log.error(
            "records over 1 MiB not sent",
            extra={"oversize": len(report.oversize), "partition_keys": report.oversize[:20]},
        )
    log.info(
        "records produced",
        extra={
            k: v for k, v in report.as_dict().items() if k not in ("failed", "oversize", "accepted")
        },
    )


def _settle(done: Iterable[Future[int]], callback: Progress | None) -> None:
    for future in done:
        settled = future.result()  # an unexpected error surfaces here, not lost in a thread
        if callback:
            callback(settled)


def put_beers(
    beers: Iterable[Mapping[str, Any]],
    stream_name: str,
    kinesis_client: Any = None,
    **options: Any,
) -> ProduceReport:
    """Put beers (v2-shaped dicts) into the stream, partition key = beer id.

    Each beer becomes one record: its JSON plus a newline. Options as for `put_payloads`.
    A beer without an id cannot be keyed, and one that is not JSON (a lone surrogate in a
    string, a value JSON has no type for) cannot be sent: both are reported as failed.
    """

    def payloads() -> Iterator[tuple[str, bytes] | FailedRecord]:
        # Serialised as the batches fill, so a large backfill is never held twice in memory.
        for beer in beers:
            beer_id = beer.get(schema.ID_COLUMN) if isinstance(beer, Mapping) else None
            if beer_id is None or beer_id == "":
                yield FailedRecord("", "MissingId", f"not a beer with an id: {beer!r:.80}")
                continue
            try:
                data = serialise_beer(beer)
            except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
                yield FailedRecord(str(beer_id), "NotSerialisable", str(error))
                continue
            except RecursionError:  # read near the depth JSON is read to: too deep to write
                yield FailedRecord(str(beer_id), "NotSerialisable", "nested too deeply")
                continue
            yield str(beer_id), data

    if isinstance(beers, Sized):
        options.setdefault("total", len(beers))
    return put_payloads(payloads(), stream_name, kinesis_client, **options)


def produce_random_beers(
    api: Any,
    stream_name: str,
    count: int = 1,
    kinesis_client: Any = None,
    log: Any = None,
    deadline: float | None = None,
    **context: Any,
) -> dict[str, Any]:
    """One scheduled tick: fetch `count` random beers from the API and put them.

    Returns a summary for the logs; raises `ProduceError` when a beer was not accepted,
    so the invocation counts as failed and is visible in the function's error metric.
    With `deadline` (a time.monotonic() value, before the function's timeout) the puts end
    by then, whatever Kinesis does; the API client keeps its own deadline.
    """
    log = log or logger
    try:
        beers = api.random(n=count)
    except Exception:
        log.exception("no beers from the Punk API", extra={"requested": count, **context})
        raise
    ids = [beer.get(schema.ID_COLUMN) if isinstance(beer, Mapping) else None for beer in beers]
    try:
        report = put_beers(
            beers,
            stream_name,
            kinesis_client,
            max_seconds=TICK_RETRY_SECONDS,
            deadline=deadline,
            receipts=True,
            log_report=False,  # the tick's own line holds the report: one line a tick
        )
    except ProduceInterrupted as interrupted:
        log.error("tick incomplete", extra=tick_log_fields(ids, interrupted.report, context))
        raise
    summary = {
        **context,
        "requested": count,
        "fetched": len(beers),
        "ids": ids,
        **report.as_dict(),
    }
    fields = tick_log_fields(ids, report, context)
    if not report.ok:
        log.error("tick incomplete", extra=fields)
        raise ProduceError(report)
    log.info("tick produced", extra=fields)
    return summary


def _logged_id(partition_key: str) -> int | str:
    """A beer id as the transform logs it (a number), when the key is one ("07" is not)."""
    number = partition_key.isascii() and partition_key.isdigit() and int(partition_key)
    return number if number and str(number) == partition_key else partition_key


def tick_log_fields(
    beer_ids: list[Any], report: ProduceReport, context: Mapping[str, Any]
) -> dict[str, Any]:
    """The keys of a tick's log line: the beers it fetched, where Kinesis put each one
    (shard_id, sequence_number: the transform logs the same keys), and what failed, why and
    after how many PutRecords calls, and how many calls the tick made in how long. No beer's
    content and no message over 200 characters."""
    return {
        **context,
        "beer_ids": beer_ids,
        "sent": report.sent,
        "retried": report.retried,
        "records": [
            {
                "beer_id": _logged_id(r.partition_key),
                "shard_id": r.shard_id,
                "sequence_number": r.sequence_number,
            }
            for r in report.accepted
        ],
        "failed": [
            {
                "beer_id": _logged_id(f.partition_key),
                "error_code": f.error_code,
                "error_message": f"{f.error_message:.{MAX_LOGGED_MESSAGE_CHARS}}",
                "attempts": f.attempts,
            }
            for f in report.failed
        ],
        "oversize": [_logged_id(key) for key in report.oversize],
        # how hard Kinesis made it: calls, whole calls throttled, and the time they took
        "calls": report.calls,
        "throttled_calls": report.throttled_calls,
        "seconds": round(report.seconds, 3),
    }


def _default_client() -> Any:
    import boto3

    return boto3.client("kinesis")
