"""S3 prefix expressions and object names, evaluated the way Firehose does.

- ``!{timestamp:<Java DateTimeFormatter pattern>}``: the approximate arrival time of the
  oldest record in the object, in UTC; every instance in one prefix is the same instant.
- ``!{firehose:error-output-type}`` (error prefix only) and ``!{firehose:random-string}``
  (11 characters).
- No prefix: ``yyyy/MM/dd/HH/``. A prefix without any expression gets ``yyyy/MM/dd/HH/``
  appended; an empty error prefix becomes ``<error-output-type>/yyyy/MM/dd/HH/``.

Object names: ``<prefix><stream>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid><extension>``.
"""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime

EXPRESSION = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
DEFAULT_TIME_PREFIX = "!{timestamp:yyyy/MM/dd/HH}/"
RANDOM_STRING_LENGTH = 11

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class PrefixError(ValueError):
    """A prefix that Firehose would reject, or an expression this runtime cannot evaluate."""


def _pattern_tokens(pattern: str) -> list[tuple[str, str]]:
    """Split a DateTimeFormatter pattern into ("field", "yyyy") and ("text", "-") tokens."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            end = i + 1
            text = []
            while end < len(pattern):
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            else:
                raise PrefixError(f"unterminated quote in pattern {pattern!r}")
            tokens.append(("text", "".join(text) if end > i + 1 else "'"))
            i = end + 1
        elif char.isascii() and char.isalpha():
            end = i
            while end < len(pattern) and pattern[end] == char:
                end += 1
            tokens.append(("field", pattern[i:end]))
            i = end
        elif char in "[]{}#":
            raise PrefixError(f"reserved character {char!r} in pattern {pattern!r}")
        else:
            tokens.append(("text", char))
            i += 1
    return tokens


def _text(value: str, width: int) -> str:
    """TEXT fields: 4 letters = full form, 5 = narrow, fewer = short."""
    if width == 4:
        return value
    if width == 5:
        return value[0]
    return value[:3]


def _field(letters: str, moment: datetime) -> str:
    letter, width = letters[0], len(letters)
    if letter in "yu":
        return f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:0{width}d}"
    if letter in "ML":
        return (
            _text(_MONTHS[moment.month - 1], width) if width >= 3 else f"{moment.month:0{width}d}"
        )
    if letter in "EeC" or (letter == "c" and width >= 3):
        return _text(_DAYS[moment.weekday()], max(width, 3))
    numbers = {
        "d": moment.day,
        "D": moment.timetuple().tm_yday,
        "H": moment.hour,
        "k": moment.hour or 24,
        "K": moment.hour % 12,
        "h": moment.hour % 12 or 12,
        "m": moment.minute,
        "s": moment.second,
        "Q": (moment.month - 1) // 3 + 1,
        "e": moment.isoweekday(),
        "c": moment.isoweekday(),
    }
    if letter in numbers:
        return f"{numbers[letter]:0{width}d}"
    if letter == "S":
        return f"{moment.microsecond:06d}000"[:width] if width <= 9 else f"{moment.microsecond:06d}"
    if letter == "a":
        return "AM" if moment.hour < 12 else "PM"
    if letter == "G":
        return "AD" if width < 4 else "Anno Domini"
    if letter in "XZx":  # the instant is UTC
        return "Z" if letter == "X" else "+0000"
    if letter in "VzO":
        return "UTC" if letter != "O" else "GMT"
    raise PrefixError(f"unsupported DateTimeFormatter field {letters!r}")


def java_format(moment: datetime, pattern: str) -> str:
    """Format `moment` (converted to UTC) with a Java DateTimeFormatter pattern."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return "".join(
        value if kind == "text" else _field(value, moment)
        for kind, value in _pattern_tokens(pattern)
    )


def random_string(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(RANDOM_STRING_LENGTH))


def has_expression(prefix: str) -> bool:
    return bool(EXPRESSION.search(prefix))


def effective_prefix(prefix: str | None) -> str:
    """The prefix Firehose actually evaluates for delivered objects."""
    if not prefix:
        return DEFAULT_TIME_PREFIX
    if "!{firehose:error-output-type}" in prefix:
        raise PrefixError("only the error output prefix may use !{firehose:error-output-type}")
    return prefix if has_expression(prefix) else prefix + DEFAULT_TIME_PREFIX


def effective_error_prefix(error_prefix: str | None) -> str:
    """The prefix Firehose evaluates for failed records."""
    if not error_prefix:
        return "!{firehose:error-output-type}/" + DEFAULT_TIME_PREFIX
    return error_prefix if has_expression(error_prefix) else error_prefix + DEFAULT_TIME_PREFIX


def evaluate_prefix(
    prefix: str,
    moment: datetime,
    *,
    error_output_type: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """Replace every expression of `prefix`; unknown namespaces are an error, as in Firehose."""

    def replace(match: re.Match[str]) -> str:
        namespace, value = match.group(1), match.group(2)
        if namespace == "timestamp":
            return java_format(moment, value)
        if namespace == "firehose" and value == "error-output-type":
            if error_output_type is None:
                raise PrefixError("!{firehose:error-output-type} outside the error prefix")
            return error_output_type
        if namespace == "firehose" and value == "random-string":
            return random_string(rng)
        if namespace in ("partitionKeyFromQuery", "partitionKeyFromLambda"):
            raise PrefixError(f"dynamic partitioning (!{{{namespace}:…}}) is not supported locally")
        raise PrefixError(f"unknown expression !{{{namespace}:{value}}}")

    return EXPRESSION.sub(replace, prefix)


def object_name(
    stream_name: str, version_id: str | int, moment: datetime, uid: str, extension: str = ""
) -> str:
    """``<stream>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid><extension>``."""
    stamp = java_format(moment, "yyyy-MM-dd-HH-mm-ss")
    return f"{stream_name}-{version_id}-{stamp}-{uid}{extension}"


def static_root(prefix: str | None) -> str:
    """The part of a prefix before its first expression, to list what was delivered."""
    if not prefix:
        return ""
    match = EXPRESSION.search(prefix)
    return prefix[: match.start()] if match else prefix
