"""The Firehose transformation of the cleaned stream, as pure functions.

One Kinesis record holds one beer (v2-shaped JSON, newline-terminated). Each record gets
exactly one answer, in the Firehose data-transformation contract:

- ``Ok``: the cleaned record (the columns of `brewops.schema.CLEANED_COLUMNS`) as one JSON
  line, ready for the Hive JSON SerDe and the Parquet conversion.
- ``ProcessingFailed``: anything that should have been a beer and is not (undecodable
  base64 or UTF-8, malformed JSON, no id or name, a number that is not a number). Firehose
  writes these to the ``processing-failed`` error prefix with the original bytes, so they
  are never lost; the reason is logged (WARNING) with the record id.
- ``Dropped``: only records deliberately filtered: empty or whitespace-only payloads
  (heartbeats, stray newlines). AWS writes Dropped records nowhere, so the reason is
  logged too (INFO: a drop by design, not a failure).

Each record not Ok is logged once, with the keys of `log_fields`; an offending value is
quoted to at most MAX_QUOTED_CHARS characters, so no log line carries a whole beer. The
line's `payload_sha256` (see `payload_sha256`) finds the record in the error prefix when
its bytes name no beer.

Out-of-range values (pH 79, ABV 55, IBU 1157) are real data and pass through unchanged;
data-quality checks report them downstream.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from brewops import schema
from brewops.digests import payload_sha256
from brewops.jsontext import parse_json
from brewops.schema import CLEANED_COLUMNS

logger = logging.getLogger(__name__)

Result = Literal["Ok", "Dropped", "ProcessingFailed"]

NUMERIC_COLUMNS: tuple[str, ...] = tuple(c.name for c in CLEANED_COLUMNS if c.python_type is float)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # + ".mmm": the Hive JSON SerDe default
BIGINT_MAX = 2**63 - 1  # the id column is a Glue bigint
# "1,157": a decimal comma ("4,5" is 4.5) or a thousands separator? Refused, not guessed.
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+")
# An offending value is quoted in a reason (and a log line) up to this many characters:
# enough to see it, and a 1 MiB string in a numeric field stays out of the logs
MAX_QUOTED_CHARS = 200
# A whole logged reason, whatever produced it (an unexpected error's message too)
MAX_REASON_CHARS = 400


class InvalidBeer(ValueError):
    """A payload that should be a beer but cannot be cleaned into one."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one record; `reason` says why when the result is not Ok."""

    record_id: str
    result: Result
    data: bytes
    reason: str | None = None

    def response(self) -> dict[str, str]:
        """The record as Firehose expects it back from the Lambda."""
        return {
            "recordId": self.record_id,
            "result": self.result,
            "data": base64.b64encode(self.data).decode("ascii"),
        }


def shorten(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """`text`, cut to `limit` characters with a note of its full length when longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quoted(value: Any) -> str:
    """The repr of an offending value, cut to MAX_QUOTED_CHARS characters."""
    if isinstance(value, str) and len(value) > MAX_QUOTED_CHARS:  # no repr of a megabyte
        # an escape is up to ten characters ("\x00" four): cut the repr too, its quotes aside
        shown = repr(value[:MAX_QUOTED_CHARS])[: MAX_QUOTED_CHARS + 2]
        return f"{shown}... ({len(value)} characters)"
    return shorten(repr(value))


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, e.g. ``2024-05-01 12:30:00.123``."""
    moment = moment.astimezone(UTC)
    # glibc does not zero-pad %Y: the year 702 would be "702", which no SerDe reads
    text = moment.strftime(TIMESTAMP_FORMAT.replace("%Y", f"{moment.year:04d}"))
    return f"{text}.{moment.microsecond // 1000:03d}"


def timestamp_from_millis(millis: int | float | str) -> str:
    return format_timestamp(datetime.fromtimestamp(int(millis) / 1000, tz=UTC))


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int in Python, never a measurement
        raise InvalidBeer(f"{name}: expected a number, got {quoted(value)}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer past the largest double: no finite number
            digits = len(str(abs(value)))
            raise InvalidBeer(
                f"{name}: expected a finite number, got an integer of {digits} digits"
            ) from None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _THOUSANDS.fullmatch(text):
            raise InvalidBeer(
                f"{name}: {quoted(value)} is ambiguous (a thousands separator or a decimal comma?)"
            )
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            raise InvalidBeer(f"{name}: expected a number, got {quoted(value)}") from None
    else:
        raise InvalidBeer(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise InvalidBeer(f"{name}: expected a finite number, got {quoted(value)}")
    return number


def _beer_id(value: Any) -> int:
    key = schema.ID_COLUMN  # the field the reasons name
    if value is None:
        raise InvalidBeer(f"{key}: missing")
    if isinstance(value, bool):
        raise InvalidBeer(f"{key}: expected a positive integer, got {quoted(value)}")
    if isinstance(value, int):
        beer_id = value
    else:
        try:  # Decimal, not float: an id past 2**53 keeps every digit
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise InvalidBeer(f"{key}: expected a positive integer, got {quoted(value)}") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise InvalidBeer(f"{key}: expected a positive integer, got {quoted(value)}")
        # compared before int(): "1e999999999" as an int has a billion digits to compute
        if not 1 <= number <= BIGINT_MAX:
            raise InvalidBeer(f"{key}: expected a positive integer, got {quoted(value)}")
        beer_id = int(number)
    if not 1 <= beer_id <= BIGINT_MAX:
        raise InvalidBeer(f"{key}: expected a positive integer, got {quoted(value)}")
    return beer_id


def _name(value: Any) -> str:
    if value is None:
        raise InvalidBeer("name: missing")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidBeer(f"name: expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise InvalidBeer("name: empty")
    return text


def clean_beer(beer: Mapping[str, Any], ingested_at: str) -> dict[str, Any]:
    """The cleaned record of one beer: the columns of `CLEANED_COLUMNS`, typed, in order.

    Raises `InvalidBeer` when the beer has no usable id or name, or a numeric field holds
    something that is not a number. Nulls stay null.
    """
    if not isinstance(beer, Mapping):
        raise InvalidBeer(f"expected a JSON object, got {type(beer).__name__}")
    key = schema.ID_COLUMN
    cleaned: dict[str, Any] = {key: _beer_id(beer.get(key)), "name": _name(beer.get("name"))}
    for name in NUMERIC_COLUMNS:
        cleaned[name] = _number(name, beer.get(name))
    cleaned["ingested_at"] = ingested_at
    return cleaned


def _kinesis_metadata(record: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = record.get("kinesisRecordMetadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _arrival_millis(record: Mapping[str, Any]) -> Any:
    """When the record entered Kinesis, else when it reached Firehose, else None."""
    return _kinesis_metadata(record).get("approximateArrivalTimestamp") or record.get(
        "approximateArrivalTimestamp"
    )


def _ingested_at(record: Mapping[str, Any], now: str) -> str:
    millis = _arrival_millis(record)
    if millis is None:
        return now
    try:
        return timestamp_from_millis(millis)
    except (TypeError, ValueError, OverflowError, OSError):
        return now


def _payload(record: Mapping[str, Any]) -> bytes:
    raw = record.get("data")
    if not isinstance(raw, str):
        raise InvalidBeer("data: missing or not base64 text")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBeer("data: not valid base64") from None


def _original_bytes(record: Any) -> bytes:
    """The payload as received: decoded if it is base64, else the text itself."""
    if not isinstance(record, Mapping):
        return b""
    try:
        return _payload(record)
    except InvalidBeer:
        raw = record.get("data")
        return raw.encode("utf-8", "replace") if isinstance(raw, str) else b""


def _beer_id_of(payload: bytes) -> Any:
    """The id the payload's JSON names, if any: the key that ties a logged reason to the
    record in the error prefix (whose rawData is this payload). An id that is not a number
    or a short text is quoted, cut short: the log shows it, never a whole object."""
    try:
        document = parse_json(payload)
    except ValueError:
        return None
    beer_id = document.get(schema.ID_COLUMN) if isinstance(document, dict) else None
    if beer_id is None or (isinstance(beer_id, int | float) and not isinstance(beer_id, bool)):
        return beer_id
    if isinstance(beer_id, str) and len(beer_id) <= MAX_QUOTED_CHARS:
        return beer_id
    return quoted(beer_id)


def _record_id(record: Any) -> str:
    return str(record.get("recordId", "")) if isinstance(record, Mapping) else ""


def transform_record(record: Mapping[str, Any], now: str | None = None) -> Outcome:
    """Clean one Firehose record. Never raises for bad input: it becomes an Outcome.

    A record that is not Ok carries its original bytes back, so whatever Firehose or the
    local runtime writes to the error prefix is the payload as received.
    """
    record_id = _record_id(record)
    if not isinstance(record, Mapping):  # an event edited by hand, or not from Firehose
        reason = f"record: expected an object, got {type(record).__name__}"
        return Outcome(record_id, "ProcessingFailed", b"", reason)
    try:
        payload = _payload(record)
    except InvalidBeer as error:
        return Outcome(record_id, "ProcessingFailed", _original_bytes(record), str(error))
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Outcome(record_id, "ProcessingFailed", payload, "data: not UTF-8 text")
    if not text.strip():
        return Outcome(record_id, "Dropped", payload, "empty payload")
    try:
        beer = parse_json(text)
    except ValueError as error:
        return Outcome(record_id, "ProcessingFailed", payload, f"malformed JSON: {error}")
    try:
        cleaned = clean_beer(beer, _ingested_at(record, now or format_timestamp(datetime.now(UTC))))
    except InvalidBeer as error:
        return Outcome(record_id, "ProcessingFailed", payload, f"not a beer: {error}")
    line = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        return Outcome(record_id, "Ok", line.encode("utf-8"))
    except UnicodeEncodeError as error:  # JSON may escape half a surrogate pair ("\ud800")
        bad = error.object[error.start : error.end].encode("unicode_escape").decode("ascii")
        return Outcome(
            record_id, "ProcessingFailed", payload, f"not a beer: {bad} is not a character"
        )


def log_fields(outcome: Outcome, record: Any) -> dict[str, Any]:
    """The keys of the log line of a record not Ok; the producer logs the same names
    (beer_id, shard_id, sequence_number), so one beer can be followed through both.
    `payload_sha256` is that of the bytes Firehose writes to the error prefix."""
    metadata = _kinesis_metadata(record) if isinstance(record, Mapping) else {}
    return {
        "record_id": outcome.record_id,  # Firehose's recordId
        "beer_id": _beer_id_of(outcome.data),
        "payload_sha256": payload_sha256(outcome.data),
        "result": outcome.result,
        "reason": shorten(outcome.reason or "", MAX_REASON_CHARS),
        "shard_id": metadata.get("shardId"),
        "sequence_number": metadata.get("sequenceNumber"),
    }


def transform_records(
    records: Iterable[Mapping[str, Any]], log: logging.Logger | Any = None
) -> list[Outcome]:
    """One Outcome per record, in order; the reasons are logged, never swallowed.

    `log` is any logger with the stdlib interface (the Lambda passes its Powertools Logger
    so the reasons land in CloudWatch as structured JSON); default: this module's logger.
    """
    log = log or logger
    now = format_timestamp(datetime.now(UTC))
    outcomes: list[Outcome] = []
    for record in records:
        try:
            outcome = transform_record(record, now)
        except Exception as error:  # a bug must not take the batch down; the record is kept
            outcome = Outcome(
                _record_id(record),
                "ProcessingFailed",
                _original_bytes(record),
                f"unexpected error: {type(error).__name__}: {shorten(str(error))}",
            )
            # one line, at ERROR with the traceback: a bug, not a refused beer
            log.exception("record not transformed", extra=log_fields(outcome, record))
        else:
            if outcome.result == "Dropped":
                log.info("record dropped", extra=log_fields(outcome, record))
            elif outcome.reason:
                log.warning("record not transformed", extra=log_fields(outcome, record))
        outcomes.append(outcome)
    counts: Counter[str] = Counter(o.result for o in outcomes)
    log.info("batch transformed", extra={"records": len(outcomes), **counts})
    return outcomes


def firehose_transform(
    records: Iterable[Mapping[str, Any]], log: logging.Logger | Any = None
) -> list[dict[str, str]]:
    """Firehose response records for Firehose input records: same ids, same count, same order."""
    return [outcome.response() for outcome in transform_records(records, log)]
