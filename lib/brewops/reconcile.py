"""Did every produced beer arrive? Raw, cleaned and errors, read back from S3.

Every produced id must be in raw, and in cleaned or in the errors (with the reason the
error record gives, and the one the transform function logged). Where to look comes from
the delivery streams' configuration (bucket, prefixes), the same on the local target and
on AWS.

A run that produces into a stack earlier runs filled lists the objects already delivered
before it produces (`delivered_keys`) and reconciles only the others: an earlier run's
copy of a beer must not stand in for the one this run lost. Keys, not LastModified times:
S3's clock is not this machine's and counts whole seconds, while Firehose gives every
object a key of its own.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from brewops import schema
from brewops.digests import payload_sha256
from brewops.errors import ActionableError, refused_deletions
from brewops.firehose_runtime import describe
from brewops.firehose_runtime.prefixes import static_root
from brewops.jsontext import parse_json

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# where `brewops stream redrive` moves the error lines of the records it sent again
REDRIVEN_ROOT = "errors/redriven/"


@dataclass(frozen=True)
class Locations:
    """Where the delivery streams write, as their configuration says."""

    bucket: str
    raw: str
    cleaned: str
    errors: tuple[str, ...]
    transform_function: str | None = None  # its log says why a record failed

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str], session: Any = None) -> Locations:
        firehose = session_or_default(session).client("firehose")
        raw = describe(firehose, outputs["RawDeliveryStreamName"])
        cleaned = describe(firehose, outputs["CleanedDeliveryStreamName"])
        error_roots = {static_root(raw.error_prefix), static_root(cleaned.error_prefix)}
        return cls(
            bucket=cleaned.bucket,
            raw=static_root(raw.prefix),
            cleaned=static_root(cleaned.prefix),
            errors=tuple(sorted(r for r in error_roots if r)),
            transform_function=cleaned.processor.function_arn if cleaned.processor else None,
        )

    def prefixes(self) -> dict[str, str]:
        named = {"raw": self.raw, "cleaned": self.cleaned}
        named.update({f"errors ({root})": root for root in self.errors})
        return named


@dataclass
class ErrorRecord:
    key: str
    beer_id: int | None
    code: str
    message: str
    # why, as the transform function logged it: Firehose's own message does not say
    logged_reason: str | None = None
    # `payload_sha256` of rawData: finds the logged reason of a record that names no beer
    payload_sha256: str | None = None
    # when Kinesis took the record (Firehose's approximateArrivalTimestamp, ms since epoch):
    # the function logged its reason after that
    arrived_ms: int | None = None

    @property
    def reason(self) -> str:
        text = f"{self.code}: {self.message}" if self.message else self.code
        return f"{text} ({self.logged_reason})" if self.logged_reason else text


@dataclass
class Reconciliation:
    """What `reconcile` found: counts of what was produced and delivered, the ids lost on
    the way, and the error records; `ok` when nothing was lost."""

    produced: int
    raw_records: int
    raw_unique_ids: int
    cleaned_rows: int
    cleaned_unique_ids: int
    errors: list[ErrorRecord]
    # objects that could not be read (key -> why): their records cannot be counted
    unreadable: dict[str, str] = field(default_factory=dict)
    missing_from_raw: list[int] = field(default_factory=list)
    missing_downstream: list[int] = field(default_factory=list)  # neither cleaned nor errors
    unexpected_ids: list[int] = field(default_factory=list)  # delivered, never produced
    earlier_objects: int = 0  # delivered before this run, left out

    @property
    def ok(self) -> bool:
        """Nothing lost: every produced id is in raw, and in cleaned or the errors. Never
        when nothing was produced: with nothing to reconcile, nothing is proven."""
        return self.produced > 0 and not self.missing_from_raw and not self.missing_downstream

    @property
    def unread(self) -> bool:
        """Records are missing, and objects that could not be read may hold them: not known
        to be lost."""
        return not self.ok and self.produced > 0 and bool(self.unreadable)

    @property
    def error_reasons(self) -> dict[str, int]:
        return dict(Counter(e.reason for e in self.errors).most_common())

    def figures(self) -> dict[str, Any]:
        """The counts for the run summary."""
        return {
            "produced": self.produced,
            "raw": self.raw_records,
            "raw_unique_ids": self.raw_unique_ids,
            "cleaned_rows": self.cleaned_rows,
            "cleaned_unique_ids": self.cleaned_unique_ids,
            "errors": len(self.errors),
            "unreadable_objects": len(self.unreadable),
            "missing_from_raw": len(self.missing_from_raw),
            "missing_downstream": len(self.missing_downstream),
            "nothing_lost": self.ok,
        }

    def __str__(self) -> str:
        lines = [
            f"produced {self.produced} records",
            f"raw: {self.raw_records} records, {self.raw_unique_ids} unique ids",
            f"cleaned: {self.cleaned_rows} rows, {self.cleaned_unique_ids} unique ids",
            f"errors: {len(self.errors)}",
        ]
        for reason, count in self.error_reasons.items():
            lines.append(f"  {count} x {reason}")
            lines += self._beer_ids_of(reason)
        if self.earlier_objects:
            lines.append(f"left out: {self.earlier_objects} objects delivered earlier")
        for key, why in list(self.unreadable.items())[:20]:
            lines.append(f"UNREADABLE {key}: {why}")
        if self.missing_from_raw:
            lines.append(f"MISSING from raw: {self.missing_from_raw[:20]}")
        if self.missing_downstream:
            lines.append(f"MISSING from cleaned and errors: {self.missing_downstream[:20]}")
        if not self.produced:
            lines.append("NOTHING TO RECONCILE: no records were produced")
        elif self.unread:
            lines.append(
                f"NOT CHECKED: {len(self.unreadable)} object(s) could not be read "
                "(UNREADABLE above) and may hold the records missing"
            )
        else:
            lines.append("nothing lost" if self.ok else "RECORDS LOST")
        return "\n".join(lines)

    def _beer_ids_of(self, reason: str) -> list[str]:
        """The beers of the error records of one reason, so that each can be looked up (its
        `beer_id` in the transform function's log gives the shard and sequence number)."""
        ids = sorted(
            {e.beer_id for e in self.errors if e.reason == reason and e.beer_id is not None}
        )
        if not ids:
            return []
        more = len(ids) - _IDS_SHOWN
        return [
            f"    beer ids: {', '.join(map(str, ids[:_IDS_SHOWN]))}"
            + (f" and {more} more" if more > 0 else "")
        ]


_IDS_SHOWN = 20  # beer ids named per error reason


def session_or_default(session: Any) -> Any:
    """`session`, or a boto3 Session of the environment's settings when None."""
    if session is not None:
        return session
    from brewops.target import aws_session

    return aws_session()


def iter_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def data_objects(
    s3: Any, bucket: str, prefix: str, skip: Collection[str] = ()
) -> Iterator[dict[str, Any]]:
    """The objects under `prefix` that hold records: not folder markers, and not hidden
    names (`_SUCCESS`, `.tmp`), which Athena skips too; nor the keys in `skip`."""
    for item in iter_objects(s3, bucket, prefix):
        name = item["Key"].rsplit("/", 1)[-1]
        if name and not name.startswith(("_", ".")) and item["Key"] not in skip:
            yield item


def _body(s3: Any, bucket: str, key: str) -> bytes:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return gzip.decompress(body) if body[:2] == GZIP_MAGIC else body


def _beer_id(value: Any) -> int | None:
    """The beer `value` names, or None: true, 1.5 or infinity name no beer (int() would
    read the first two as beer 1), as the transform refuses them."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# What makes one object unreadable: a truncated or corrupt gzip (zlib.error), bytes that
# are not Parquet, a GET that fails. It is reported against that object; the others are
# still read.
UNREADABLE_ERRORS = (OSError, EOFError, ValueError, ClientError, zlib.error)


def why_unreadable(exc: Exception) -> str:
    """An error that made an object unreadable, in one line: its type and message."""
    return f"{type(exc).__name__}: {exc}".strip()


def raw_ids(
    s3: Any,
    bucket: str,
    prefix: str,
    unreadable: dict[str, str] | None = None,
    skip: Collection[str] = (),
) -> list[int | None]:
    """The id of every raw record (None where a line is not a beer), outside the objects
    in `skip`. Objects that cannot be read are recorded in `unreadable` (key -> why)."""
    ids: list[int | None] = []
    for _, lines in _object_lines(s3, bucket, prefix, unreadable, skip):
        for line in lines:
            if not line.strip():
                continue
            try:
                document = parse_json(line)
            except ValueError:
                ids.append(None)
                continue
            key = document.get(schema.ID_COLUMN) if isinstance(document, dict) else None
            ids.append(_beer_id(key))
    return ids


def cleaned_ids(
    s3: Any,
    bucket: str,
    prefix: str,
    unreadable: dict[str, str] | None = None,
    skip: Collection[str] = (),
) -> list[int]:
    """The id of every cleaned row, outside the objects in `skip`. Objects that cannot be
    read as Parquet are recorded in `unreadable` (key -> why)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids: list[int] = []
    for item in data_objects(s3, bucket, prefix, skip):
        try:
            table = pq.read_table(
                io.BytesIO(_body(s3, bucket, item["Key"])), columns=[schema.ID_COLUMN]
            )
        except (*UNREADABLE_ERRORS, pa.ArrowException) as exc:
            _note(unreadable, item["Key"], exc)
            continue
        ids.extend(table.column(schema.ID_COLUMN).to_pylist())
    return ids


def _object_lines(
    s3: Any,
    bucket: str,
    prefix: str,
    unreadable: dict[str, str] | None,
    skip: Collection[str] = (),
) -> Iterator[tuple[str, list[bytes]]]:
    """(key, lines) of each data object under `prefix`, outside `skip`, whose body can be
    read."""
    for item in data_objects(s3, bucket, prefix, skip):
        try:
            lines = _body(s3, bucket, item["Key"]).splitlines()
        except UNREADABLE_ERRORS as exc:
            _note(unreadable, item["Key"], exc)
            continue
        yield item["Key"], lines  # outside the try: the caller's errors are its own


def _note(unreadable: dict[str, str] | None, key: str, exc: Exception) -> None:
    if unreadable is None:
        raise exc
    unreadable[key] = why_unreadable(exc)


def error_records(
    s3: Any,
    bucket: str,
    prefixes: Iterable[str],
    unreadable: dict[str, str] | None = None,
    skip: Collection[str] = (),
) -> list[ErrorRecord]:
    """Every failed record under the error prefixes (outside the objects in `skip`), with
    the beer id its data holds.

    A line that is not an error record still stands for one record Firehose failed: it is
    kept, without an id, with code `Unreadable`."""
    found = []
    for prefix in prefixes:
        for key, lines in _object_lines(s3, bucket, prefix, unreadable, skip):
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    found.append(parse_error_line(key, number, line))
    return found


def parse_error_line(key: str, number: int, line: bytes) -> ErrorRecord:
    """Line `number` of the error object `key`, as the error record it is (code
    `Unreadable` when it is none)."""
    try:
        document = parse_json(line)
    except ValueError as exc:
        return ErrorRecord(key, None, "Unreadable", f"line {number} is not JSON: {exc}")
    if not isinstance(document, dict):
        return ErrorRecord(key, None, "Unreadable", f"line {number} is not a JSON object")
    beer_id = digest = None
    try:
        data = base64.b64decode(document["rawData"], validate=True)
        digest = payload_sha256(data)
        payload = parse_json(data)
        beer_id = _beer_id(payload.get(schema.ID_COLUMN)) if isinstance(payload, dict) else None
    except (KeyError, ValueError, TypeError):  # the record failed: it may be anything
        pass
    code = (
        document.get("errorCode")
        or document.get("lastErrorCode")
        or document.get("ErrorCode")
        or "Unknown"
    )
    message = (
        document.get("errorMessage")
        or document.get("lastErrorMessage")
        or document.get("ErrorMessage")
        or ""
    )
    arrived = document.get("approximateArrivalTimestamp")
    return ErrorRecord(
        key,
        beer_id,
        str(code),
        str(message),
        payload_sha256=digest,
        arrived_ms=arrived if isinstance(arrived, int) and not isinstance(arrived, bool) else None,
    )


# Reasons are read from this long before the first refused record arrived: the log's clock
# and Kinesis's may differ a little
LOG_CLOCK_SLACK_MS = 5 * 60 * 1000


class Arrived(Protocol):
    arrived_ms: int | None  # when Kinesis took the record, ms since epoch


def logged_since(errors: Iterable[Arrived]) -> int | None:
    """Where the function's log of `errors` can start (ms since epoch): a little before the
    first of them arrived. None, the whole log, when one does not say when it arrived."""
    arrivals = [e.arrived_ms for e in errors]
    if not arrivals or None in arrivals:
        return None
    return max(min(a for a in arrivals if a is not None) - LOG_CLOCK_SLACK_MS, 0)


@dataclass
class LoggedReasons:
    """The reason the transform function last logged for each record it refused, by the
    digest of the record's bytes and by the beer id the bytes name."""

    by_beer_id: dict[int, str] = field(default_factory=dict)
    by_payload: dict[str, str] = field(default_factory=dict)  # payload_sha256 -> reason

    def reason_for(self, error: ErrorRecord) -> str | None:
        # the bytes first: they find a record without an id, and of a beer refused twice,
        # the copy refused for this reason; the id serves lines logged without a digest
        if error.payload_sha256 in self.by_payload:
            return self.by_payload[error.payload_sha256]
        return None if error.beer_id is None else self.by_beer_id.get(error.beer_id)


def logged_reasons(logs: Any, function: str | None, since_ms: int | None = None) -> LoggedReasons:
    """The reasons the transform function logged for not transforming records, read from
    its CloudWatch Logs group (where the local runtime puts its lines too), from `since_ms`
    (`logged_since`) on: a group keeps months of lines, and FilterLogEvents scans every
    one it is given. Empty when the log cannot be read: it explains failures, it never
    decides them."""
    from brewops.firehose_runtime.functions import split_function_arn

    reasons = LoggedReasons()
    if not function:
        return reasons
    group = f"/aws/lambda/{split_function_arn(function)[0]}"
    try:
        window = {} if since_ms is None else {"startTime": since_ms}
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, filterPattern='"record not transformed"', **window
        )
        for page in pages:
            for event in page.get("events", []):
                try:
                    entry = json.loads(event.get("message", ""))
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("reason"):
                    _keep(reasons, entry, str(entry["reason"]))
    except (ClientError, BotoCoreError) as error:
        logger.info("reasons not read from %s: %s", group, error)
    return reasons


def _keep(reasons: LoggedReasons, entry: Mapping[str, Any], reason: str) -> None:
    beer_id = _beer_id(entry.get("beer_id"))
    if beer_id is not None:
        reasons.by_beer_id[beer_id] = reason
    digest = entry.get("payload_sha256")
    if isinstance(digest, str) and digest:
        reasons.by_payload[digest] = reason


def explain(errors: Iterable[ErrorRecord], reasons: LoggedReasons) -> None:
    """Attach the logged reason to each error record the function refused."""
    for error in errors:
        if error.code.startswith("Lambda.ProcessingFailed"):
            error.logged_reason = reasons.reason_for(error)


def _explain_from_log(errors: list[ErrorRecord], where: Locations, session: Any) -> None:
    if errors:  # only then is the transform function's log worth reading
        logs = session_or_default(session).client("logs")
        explain(errors, logged_reasons(logs, where.transform_function, logged_since(errors)))


def reconcile(
    produced_ids: Iterable[int] | None,
    outputs: Mapping[str, str],
    *,
    session: Any = None,
    explain_errors: bool = True,
    delivered_before: Collection[str] = (),
) -> Reconciliation:
    """Compare what was produced with what was delivered.

    `produced_ids`: the ids the producer reported as sent (duplicates allowed: a beer
    produced twice is delivered twice). None takes the ids found in raw.
    `delivered_before`: the keys `delivered_keys` listed before these ids were produced;
    those objects are left out.
    """
    s3 = session_or_default(session).client("s3")
    where = Locations.from_outputs(outputs, session)
    unreadable: dict[str, str] = {}
    earlier = frozenset(delivered_before)
    raw = raw_ids(s3, where.bucket, where.raw, unreadable, earlier)
    cleaned = cleaned_ids(s3, where.bucket, where.cleaned, unreadable, earlier)
    errors = error_records(s3, where.bucket, where.errors, unreadable, earlier)
    if explain_errors:
        _explain_from_log(errors, where, session)
    # Counted, not collected in sets: a beer produced twice must arrive twice.
    produced = Counter(
        [i for i in raw if i is not None]
        if produced_ids is None
        else [int(i) for i in produced_ids]
    )
    in_raw = Counter(i for i in raw if i is not None)
    downstream = Counter(cleaned) + Counter(e.beer_id for e in errors if e.beer_id is not None)
    if produced_ids is None:
        # Raw then holds a re-driven record twice, as received and as sent again: the
        # first copy's error line is what redrive moved out of the error prefix.
        redriven = error_records(s3, where.bucket, [REDRIVEN_ROOT], unreadable, earlier)
        downstream += Counter(e.beer_id for e in redriven if e.beer_id is not None)
    return Reconciliation(
        produced=produced.total(),
        raw_records=len(raw),
        raw_unique_ids=len(in_raw),
        cleaned_rows=len(cleaned),
        cleaned_unique_ids=len(set(cleaned)),
        errors=errors,
        unreadable=unreadable,
        missing_from_raw=sorted((produced - in_raw).elements()),
        missing_downstream=sorted((produced - downstream).elements()),
        unexpected_ids=sorted((set(in_raw) | set(cleaned)) - set(produced)),
        earlier_objects=len(earlier),
    )


def delivered_keys(outputs: Mapping[str, str], session: Any = None) -> frozenset[str]:
    """The key of every object the delivery streams have written so far (raw, cleaned,
    errors): listed before a run produces, what `reconcile` leaves out."""
    s3 = session_or_default(session).client("s3")
    return frozenset(_keys_delivered(s3, Locations.from_outputs(outputs, session)))


def _keys_delivered(s3: Any, where: Locations) -> list[str]:
    return [
        item["Key"]
        for prefix in where.prefixes().values()
        for item in iter_objects(s3, where.bucket, prefix)
    ]


def object_counts(outputs: Mapping[str, str], session: Any = None) -> list[dict[str, Any]]:
    """Objects and bytes under each prefix the delivery streams write (a table's rows)."""
    s3 = session_or_default(session).client("s3")
    where = Locations.from_outputs(outputs, session)
    rows = []
    for name, prefix in where.prefixes().items():
        items = list(iter_objects(s3, where.bucket, prefix))
        rows.append(
            {
                "prefix": f"s3://{where.bucket}/{prefix}",
                "what": name,
                "objects": len(items),
                "bytes": sum(i["Size"] for i in items),
                "latest": max((i["LastModified"] for i in items), default=None),
            }
        )
    return rows


def sent_ids(beers: Iterable[Mapping[str, Any]], report: Any) -> list[int]:
    """Ids of the beers a `ProduceReport` says Kinesis accepted.

    A beer without an integer id is left out: the report already names it as failed, or
    (an id like "abc") reconciliation could not find it by id anyway.
    """
    rejected = {f.partition_key for f in report.failed} | set(report.oversize)
    ids = []
    for beer in beers:
        raw_id = beer.get(schema.ID_COLUMN) if isinstance(beer, Mapping) else None
        beer_id = _beer_id(raw_id)
        if beer_id is not None and str(raw_id) not in rejected:
            ids.append(beer_id)
    return ids


def tick_ids(ticks: Iterable[Any]) -> list[int]:
    """Ids the producer function reported for scheduler ticks that succeeded."""
    ids: list[int] = []
    for tick in ticks:
        if tick.ok and isinstance(tick.result, dict):
            # an id that is not a number could not be found by id anyway, as in sent_ids
            found = (_beer_id(i) for i in tick.result.get("ids") or [])
            ids.extend(i for i in found if i is not None)
    return ids


def checked_timeout(seconds: Any, name: str = "timeout") -> float:
    """`seconds` to wait for delivery, or a ValueError naming `name`: with 0 or less the
    wait would end before Firehose delivers and report every record lost."""
    # typeshed's numbers.Real declares no comparison with an int
    if isinstance(seconds, bool) or not isinstance(seconds, Real) or not seconds > 0:  # type: ignore[operator]
        raise ValueError(
            f"{name} must be a number of seconds above 0 (Firehose delivers after its 60 s "
            f"buffer interval), not {seconds!r}"
        )
    return float(seconds)


def wait_for_delivery(
    produced_ids: Iterable[int],
    outputs: Mapping[str, str],
    *,
    timeout: float = 600.0,
    poll: float = 15.0,
    session: Any = None,
    delivered_before: Collection[str] = (),
) -> Reconciliation:
    """On AWS: poll S3 every `poll` seconds until every produced id has arrived or
    `timeout` seconds have passed; returns the last reconciliation. With nothing produced
    there is nothing to wait for. `delivered_before` as for `reconcile`."""
    produced = list(produced_ids)
    deadline = time.monotonic() + checked_timeout(timeout)
    while True:
        # the function's log is read once, for the answer, not on every poll
        result = reconcile(
            produced,
            outputs,
            session=session,
            explain_errors=False,
            delivered_before=delivered_before,
        )
        if result.ok or not produced or time.monotonic() >= deadline:
            if result.errors:
                _explain_from_log(result.errors, Locations.from_outputs(outputs, session), session)
            return result
        logger.info(
            "waiting for delivery: %d missing from raw, %d from cleaned/errors",
            len(result.missing_from_raw),
            len(result.missing_downstream),
        )
        time.sleep(poll)


class ObjectsNotDeleted(RuntimeError, ActionableError):
    """Objects the bucket refused to delete (DeleteObjects lists them, it does not raise)."""


def delete_delivered(outputs: Mapping[str, str], session: Any = None) -> int:
    """Delete every object the delivery streams wrote (raw, cleaned, errors, and the error
    lines `brewops stream redrive` moved to errors/redriven/); returns how many. The stream
    and the delivery positions stay: deleted records are not re-delivered. Objects the
    bucket refuses to delete raise ObjectsNotDeleted, once the others are gone."""
    s3 = session_or_default(session).client("s3")
    where = Locations.from_outputs(outputs, session)
    # the moved lines too: left behind, they would stand for a later run's raw records
    # when `reconcile` takes the produced ids from raw
    moved = [item["Key"] for item in iter_objects(s3, where.bucket, REDRIVEN_ROOT)]
    keys = [{"Key": key} for key in dict.fromkeys(_keys_delivered(s3, where) + moved)]
    refused: list[dict[str, Any]] = []
    for start in range(0, len(keys), 1000):  # at most 1,000 keys a call
        answer = s3.delete_objects(
            Bucket=where.bucket, Delete={"Objects": keys[start : start + 1000]}
        )
        refused += answer.get("Errors", [])
    if refused:
        raise ObjectsNotDeleted(refused_deletions(refused, len(keys), f"in s3://{where.bucket}"))
    return len(keys)
