"""Sending the records the transform could not process through the pipeline again.

Firehose writes them under the cleaned stream's error prefix, in `processing-failed/`, one
JSON line each, with the record's bytes as they were sent (`rawData`). Once the cause is
gone (a transform bug fixed and deployed, a timeout or a throttle over), `redrive` puts
those bytes back into the Kinesis stream, with the producer's batching and retries, and
moves each line it sent out of the error prefix, under `errors/redriven/<run>/<its key>`
(still under the bucket's `errors/` expiry): a second redrive does not send it again, and
`reconcile` then looks for the beer in cleaned, where the next delivery puts it.

Records differ in what sending them again can do:

- `function_failed`: the function failed, not the record (an error, a timeout, a throttle,
  an answer Firehose could not read, or an unexpected error the transform logged for the
  record): sent by default.
- `refused`: the transform judged the record not a beer (`ProcessingFailed`, with the reason
  it logged): sent unchanged it fails again unless the transform changed, so only when asked.
- `unusable`: a line with no bytes to send (not JSON, no base64 `rawData`), or not a failure
  of the transform: never sent, never moved.

Only lines sent are moved; a line whose record Kinesis did not take stays where it was, in
an object that then holds what was not sent.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from brewops.digests import payload_sha256
from brewops.errors import ActionableError
from brewops.firehose_runtime import describe
from brewops.firehose_runtime.prefixes import effective_error_prefix, static_root
from brewops.firehose_runtime.processing import PROCESSING_FAILED
from brewops.jsontext import parse_json
from brewops.producer import ProduceReport, put_payloads
from brewops.reconcile import (
    GZIP_MAGIC,
    REDRIVEN_ROOT,
    UNREADABLE_ERRORS,
    Locations,
    LoggedReasons,
    data_objects,
    logged_reasons,
    logged_since,
    parse_error_line,
    session_or_default,
    why_unreadable,
)

FUNCTION_FAILED = "function_failed"
REFUSED = "refused"
UNUSABLE = "unusable"
# the transform's own words for a record it failed by a bug, not by judging it
UNEXPECTED_ERROR = "unexpected error"
SHOWN = 20  # lines of one kind the report shows


class RedriveRefused(RuntimeError, ActionableError):
    """Where the re-driven lines would go is read as delivered data."""


@dataclass
class ErrorLine:
    """One line of an error object, with what re-driving it can do."""

    key: str
    line: bytes
    code: str
    kind: str
    beer_id: int | None = None
    data: bytes | None = None  # the record's bytes as sent; None when unusable
    problem: str | None = None  # why a line is unusable
    arrived_ms: int | None = None  # when Kinesis took the record (`ErrorRecord.arrived_ms`)

    @property
    def partition_key(self) -> str:
        """The beer id, as the producer keys a beer; the digest of the bytes otherwise."""
        if self.beer_id is not None:
            return str(self.beer_id)
        return payload_sha256(self.data or b"")

    @property
    def payload(self) -> bytes:
        """The bytes to put: as sent, ended by a newline when they are not, since raw/
        joins records as they are (the producer ends each with one)."""
        data = self.data or b""
        return data if data.endswith(b"\n") else data + b"\n"


def error_line(key: str, number: int, line: bytes, reasons: LoggedReasons) -> ErrorLine:
    """What line `number` of the error object `key` is, and whether to send it again."""
    record = parse_error_line(key, number, line)
    record.logged_reason = reasons.reason_for(record)
    data = _raw_data(line)
    if data is None:
        why = record.message if record.code == "Unreadable" else "no base64 rawData"
        return ErrorLine(key, line, record.code, UNUSABLE, problem=why)
    if not record.code.startswith("Lambda."):
        problem = f"{record.code}: not a failure of the transform function"
        return ErrorLine(key, line, record.code, UNUSABLE, record.beer_id, data, problem)
    refused = record.code.startswith("Lambda.ProcessingFailed") and not (
        record.logged_reason or ""
    ).startswith(UNEXPECTED_ERROR)
    kind = REFUSED if refused else FUNCTION_FAILED
    return ErrorLine(
        key, line, record.code, kind, record.beer_id, data, arrived_ms=record.arrived_ms
    )


def _raw_data(line: bytes) -> bytes | None:
    try:
        document = parse_json(line)
        return base64.b64decode(document["rawData"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None


def chosen(lines: Iterable[ErrorLine], include_refused: bool = False) -> list[ErrorLine]:
    """The lines to send: the function's failures, and the refused ones when asked."""
    kinds = {FUNCTION_FAILED, REFUSED} if include_refused else {FUNCTION_FAILED}
    return [line for line in lines if line.kind in kinds]


def sent_lines(lines: list[ErrorLine], report: ProduceReport) -> list[ErrorLine]:
    """The lines whose record Kinesis took. The report names what it refused by partition
    key: a key refused once keeps every line with that key (one may be sent again, a copy
    readers dedupe), never loses one."""
    refused = {f.partition_key for f in report.failed} | set(report.oversize)
    return [line for line in lines if line.partition_key not in refused]


def split_object(
    lines: list[ErrorLine], sent: Iterable[ErrorLine]
) -> tuple[list[ErrorLine], list[ErrorLine]]:
    """(the lines to move, the lines to keep) of one object, in its order."""
    moved = {id(line) for line in sent}
    return [x for x in lines if id(x) in moved], [x for x in lines if id(x) not in moved]


def processing_failed_root(error_prefix: str | None) -> str:
    """Where a delivery stream's records the transform failed are written: the folder of
    its error prefix with `processing-failed` in place of the error output type, up to the
    first expression it cannot know (a date)."""
    prefix = effective_error_prefix(error_prefix)
    root = static_root(prefix.replace("!{firehose:error-output-type}", PROCESSING_FAILED))
    return root[: root.rfind("/") + 1] or root  # the folder, as said: not ".../ingest_date="


@dataclass
class Redrive:
    """What a redrive found under the error prefix, and, applied, what it sent and moved."""

    bucket: str
    prefix: str
    lines: list[ErrorLine]
    include_refused: bool = False
    applied: bool = False
    archive: str | None = None  # where the sent lines went
    produce: ProduceReport | None = None
    moved: int = 0  # lines moved out of the error prefix
    objects_moved: int = 0  # objects they came from
    unreadable: dict[str, str] = field(default_factory=dict)  # key -> why, kept
    not_moved: dict[str, str] = field(default_factory=dict)  # key -> why, kept

    @property
    def to_send(self) -> list[ErrorLine]:
        return chosen(self.lines, self.include_refused)

    @property
    def ok(self) -> bool:
        """Every object was read and, applied, every record chosen was sent and moved."""
        sent = self.produce is None or self.produce.ok
        return sent and not self.not_moved and not self.unreadable

    def what_to_do(self) -> str:
        """What is not `ok`, and what to do about it, in one message."""
        said = []
        if self.produce is not None and not self.produce.ok:
            said.append(
                "the records Kinesis did not take stay in the error prefix (NOT SENT above): "
                "run the command again"
            )
        if self.not_moved:
            said.append(
                f"the records sent from {_objects(len(self.not_moved))} are still in the "
                "error prefix too (NOT MOVED above), so the next redrive sends them again, a "
                "copy readers dedupe: moving them takes s3:PutObject and s3:DeleteObject there"
            )
        if self.unreadable:
            said.append(
                f"{_objects(len(self.unreadable))} could not be read and are left where "
                "they are (UNREADABLE above)"
            )
        return "; ".join(said)

    def figures(self) -> dict[str, Any]:
        """The JSON of `brewops stream redrive --json` (`brewops schema redrive`)."""
        chosen_lines = self.to_send
        left = Counter(line.kind for line in self.lines)
        if self.include_refused:
            left[REFUSED] = 0
        produce = self.produce
        return {
            "applied": self.applied,
            "error_prefix": f"s3://{self.bucket}/{self.prefix}",
            "records": len(self.lines),
            "to_redrive": len(chosen_lines),
            "by_error_code": dict(Counter(line.code for line in chosen_lines).most_common()),
            "beer_ids": sorted(x.beer_id for x in chosen_lines if x.beer_id is not None),
            "without_id": sum(1 for x in chosen_lines if x.beer_id is None),
            "refused_left": left[REFUSED],
            "unusable_left": left[UNUSABLE],
            "sent": produce.sent if produce else 0,
            "not_sent": len(chosen_lines) - produce.sent if produce else 0,
            "moved": self.moved,
            "objects_moved": self.objects_moved,
            # where the moved lines are: none when every move failed
            "archive": f"s3://{self.bucket}/{self.archive}" if self.moved else None,
            "unreadable_objects": len(self.unreadable),
            "objects_not_moved": len(self.not_moved),
        }

    def __str__(self) -> str:
        figures = self.figures()
        chosen_lines = self.to_send
        what = "failed by the function" + (
            " or refused by the transform" if self.include_refused else ""
        )
        said = [
            f"{figures['error_prefix']}: {len(self.lines)} error "
            f"record{'' if len(self.lines) == 1 else 's'}; "
            f"{len(chosen_lines)} to re-drive ({what})",
            *(f"  {count} x {code}" for code, count in figures["by_error_code"].items()),
        ]
        if chosen_lines:
            ids = ", ".join(map(str, figures["beer_ids"][:50]))
            more = len(figures["beer_ids"]) - 50
            said.append(f"  beer ids: {ids}{f' and {more} more' if more > 0 else ''}")
        if figures["without_id"]:
            said.append(f"  {figures['without_id']} naming no beer")
        if figures["refused_left"]:
            said.append(
                f"left: {figures['refused_left']} refused by the transform (--all sends them; "
                "unchanged they fail again unless the transform now takes them)"
            )
        unusable = [x for x in self.lines if x.kind == UNUSABLE]
        said += [f"left: UNUSABLE {x.key}: {x.problem}" for x in unusable[:SHOWN]]
        said += [f"left: UNREADABLE {k}: {why}" for k, why in list(self.unreadable.items())[:SHOWN]]
        if len(unusable) > SHOWN or len(self.unreadable) > SHOWN:
            said.append(
                f"left: {len(unusable)} unusable records, {len(self.unreadable)} "
                "unreadable objects in all (--json counts them)"
            )
        if not self.applied:
            if chosen_lines:
                said.append("dry run: nothing sent; --apply sends them")
            return "\n".join(said)
        produce = self.produce
        if produce is not None:
            said.append(
                f"sent {produce.sent} of {len(chosen_lines)} in {produce.calls} "
                f"call{'' if produce.calls == 1 else 's'}; retried {produce.retried}"
            )
            for failed in produce.failed[:SHOWN]:
                said.append(
                    f"NOT SENT: {failed.partition_key}: {failed.error_code}: {failed.error_message}"
                )
        if self.moved:
            said.append(
                f"moved {self.moved} sent records from {_objects(self.objects_moved)} to "
                f"s3://{self.bucket}/{self.archive}"
            )
        for key, why in list(self.not_moved.items())[:SHOWN]:
            said.append(f"NOT MOVED {key}: {why}")
        return "\n".join(said)


def _objects(count: int) -> str:
    return f"{count} object{'' if count == 1 else 's'}"


def read_error_lines(
    s3: Any, bucket: str, prefix: str, reasons: Callable[[int | None], LoggedReasons]
) -> tuple[dict[str, list[ErrorLine]], dict[str, str], set[str]]:
    """(lines by object key, unreadable objects, keys of the gzip objects) under `prefix`.
    `reasons` is called once, when a record the function refused is found, with where its
    log can start (`logged_since` the refused records): the log says whether the transform
    judged the record or failed on it."""
    unreadable: dict[str, str] = {}
    gzipped: set[str] = set()
    read: dict[str, list[bytes]] = {}
    for item in data_objects(s3, bucket, prefix):
        key = item["Key"]
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if body[:2] == GZIP_MAGIC:
                body = gzip.decompress(body)
                gzipped.add(key)
        except UNREADABLE_ERRORS as exc:
            unreadable[key] = why_unreadable(exc)
            continue
        read[key] = body.splitlines()

    def classified(logged: LoggedReasons) -> dict[str, list[ErrorLine]]:
        return {
            key: [
                error_line(key, number, line, logged)
                for number, line in enumerate(lines, start=1)
                if line.strip()
            ]
            for key, lines in read.items()
        }

    by_key = classified(LoggedReasons())
    refused = [line for lines in by_key.values() for line in lines if line.kind == REFUSED]
    if refused:
        by_key = classified(reasons(logged_since(refused)))
    return by_key, unreadable, gzipped


def redrive(
    outputs: Mapping[str, str],
    *,
    session: Any = None,
    apply: bool = False,
    include_refused: bool = False,
    progress: bool = False,
    kinesis_client: Any = None,
    run: str | None = None,
) -> Redrive:
    """Find the records the transform failed; with `apply`, send the chosen ones again and
    move the lines sent under `errors/redriven/<run>/`. `run` names the folder (default:
    the UTC time and a few random characters, so no run overwrites another's)."""
    session = session_or_default(session)
    s3 = session.client("s3")
    firehose = session.client("firehose")
    cleaned = describe(firehose, outputs["CleanedDeliveryStreamName"])
    prefix = processing_failed_root(cleaned.error_prefix)
    where = Locations.from_outputs(outputs, session)
    _refuse_archive_read_as_delivered(where)
    function = where.transform_function
    by_key, unreadable, gzipped = read_error_lines(
        s3,
        where.bucket,
        prefix,
        lambda since_ms: logged_reasons(session.client("logs"), function, since_ms),
    )
    found = Redrive(
        where.bucket,
        prefix,
        [line for lines in by_key.values() for line in lines],
        include_refused=include_refused,
        unreadable=unreadable,
    )
    if not apply:
        return found
    found.applied = True
    to_send = found.to_send
    if not to_send:
        return found
    kinesis = kinesis_client or session.client("kinesis")
    found.produce = put_payloads(
        [(line.partition_key, line.payload) for line in to_send],
        outputs["StreamName"],
        kinesis,
        progress=progress,
    )
    sent = sent_lines(to_send, found.produce)
    if not sent:
        return found
    run = run or f"{datetime.now(UTC):%Y-%m-%dT%H-%M-%SZ}-{uuid.uuid4().hex[:6]}"
    found.archive = f"{REDRIVEN_ROOT}{run}/"
    for key, lines in by_key.items():
        moving, keeping = split_object(lines, sent)
        if not moving:
            continue
        try:
            _move(s3, where.bucket, key, found.archive + key, moving, keeping, key in gzipped)
        except (ClientError, BotoCoreError) as error:
            found.not_moved[key] = why_unreadable(error)
            continue
        found.moved += len(moving)
        found.objects_moved += 1
    return found


def _refuse_archive_read_as_delivered(where: Locations) -> None:
    for name, root in where.prefixes().items():
        if REDRIVEN_ROOT.startswith(root) or root.startswith(REDRIVEN_ROOT):
            raise RedriveRefused(
                f"the {name} prefix s3://{where.bucket}/{root} holds {REDRIVEN_ROOT}, where "
                "redrive moves what it sent: `brewops stream reconcile` would count it again. "
                "Give that delivery stream a prefix of its own (the template's raw/, cleaned/, "
                "errors/raw/ and errors/cleaned/)."
            )


def _move(
    s3: Any,
    bucket: str,
    key: str,
    archive_key: str,
    moving: list[ErrorLine],
    keeping: list[ErrorLine],
    gzipped: bool,
) -> None:
    """The lines sent to `archive_key`, first; then the object keeps only the others, or
    goes. Stopped in between, the lines are in both: the next redrive sends them again, a
    copy readers dedupe, none lost."""
    s3.put_object(Bucket=bucket, Key=archive_key, Body=_joined(moving, gzipped))
    if keeping:
        s3.put_object(Bucket=bucket, Key=key, Body=_joined(keeping, gzipped))
    else:
        s3.delete_object(Bucket=bucket, Key=key)


def _joined(lines: list[ErrorLine], gzipped: bool) -> bytes:
    body = b"".join(line.line + b"\n" for line in lines)
    return gzip.compress(body) if gzipped else body
