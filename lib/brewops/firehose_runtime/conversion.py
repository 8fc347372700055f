"""Record format conversion: JSON records -> Parquet with the Glue table's schema.

The schema is read from the Data Catalog table named in the delivery stream's
SchemaConfiguration, as Firehose does; its Hive type names map to Arrow types. Records are
read the way the Hive JSON SerDe reads them: keys match columns case-insensitively, missing
keys are null, extra keys are ignored, and a value that cannot become its column's type
fails the record (it goes to the ``format-conversion-failed`` error output).
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from brewops.firehose_runtime.config import FormatConversion

PARQUET_CODECS = {"SNAPPY": "snappy", "GZIP": "gzip", "UNCOMPRESSED": "none"}
_SQL_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$"
)
_INTEGER_RANGES = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)  # Python also reads 20240307, 2024-W10-4
_JODA_TO_STRPTIME = (
    ("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"),
    ("SSS", "%f"), ("ZZ", "%z"), ("Z", "%z"),
)  # fmt: skip
_JODA_QUOTED = re.compile(r"'((?:[^']|'')*)'")  # literal text; '' is a quote


class ConversionError(ValueError):
    """A record the Hive JSON SerDe would not deserialise into the table's schema."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- Glue types


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def arrow_type(glue_type: str) -> pa.DataType:
    """The Arrow type of a Hive/Glue column type, e.g. ``map<string,array<int>>``."""
    text = glue_type.strip()
    lowered = text.lower()
    simple = {
        "tinyint": pa.int8(),
        "smallint": pa.int16(),
        "int": pa.int32(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("ms"),
        "date": pa.date32(),
        "binary": pa.binary(),
    }
    if lowered in simple:
        return simple[lowered]
    if lowered.startswith(("varchar(", "char(")):
        return pa.string()
    if lowered == "decimal":
        return pa.decimal128(10, 0)  # Hive's default precision and scale
    if lowered.startswith("decimal("):
        numbers = [int(x) for x in _split_top_level(text[8:-1])]
        if len(numbers) == 1:  # decimal(p): Hive's scale is then 0
            numbers.append(0)
        precision, scale = numbers
        return pa.decimal128(precision, scale)
    if lowered.startswith("array<") and text.endswith(">"):
        return pa.list_(arrow_type(text[6:-1]))
    if lowered.startswith("map<") and text.endswith(">"):
        key, value = _split_top_level(text[4:-1])
        return pa.map_(arrow_type(key), arrow_type(value))
    if lowered.startswith("struct<") and text.endswith(">"):
        fields = []
        for member in _split_top_level(text[7:-1]):
            name, _, member_type = member.partition(":")
            fields.append(pa.field(name.strip().lower(), arrow_type(member_type)))
        return pa.struct(fields)
    raise ValueError(f"unsupported Glue type {glue_type!r}")


def arrow_schema(columns: list[dict[str, Any]]) -> pa.Schema:
    """Arrow schema of Glue ``StorageDescriptor.Columns`` (partition keys stay in the path)."""
    return pa.schema([pa.field(c["Name"].lower(), arrow_type(c["Type"])) for c in columns])


def read_table_schema(glue: Any, conversion: FormatConversion) -> pa.Schema:
    """The schema of the table the SchemaConfiguration names, at its configured version."""
    request: dict[str, Any] = {"DatabaseName": conversion.database}
    if conversion.catalog_id:
        request["CatalogId"] = conversion.catalog_id
    if conversion.table_version.upper() == "LATEST":
        table = glue.get_table(Name=conversion.table, **request)["Table"]
    else:
        table = glue.get_table_version(
            TableName=conversion.table, VersionId=conversion.table_version, **request
        )["TableVersion"]["Table"]
    return arrow_schema(table["StorageDescriptor"]["Columns"])


# ----------------------------------------------------------------------------- values


def _joda_to_strptime(pattern: str) -> str:
    # re.split alternates the text outside quotes with what was quoted: only the outside
    # holds fields, so a quoted 'Z' stays the letter Z, not a zone offset
    parts = _JODA_QUOTED.split(pattern)
    for i, part in enumerate(parts):
        if i % 2:
            parts[i] = (part.replace("''", "'") or "'").replace("%", "%%")
            continue
        part = part.replace("%", "%%")
        for joda, directive in _JODA_TO_STRPTIME:
            part = part.replace(joda, directive)
        parts[i] = part
    return "".join(parts)


def _number_text(value: Any) -> Any:
    """`value`, refused when it is text only Python reads as a number (1_000: Java does not)."""
    if isinstance(value, str) and "_" in value:
        raise ValueError(f"{value!r} is not a number")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class HiveJsonDeserializer:
    """Turns one record's bytes into rows for `schema`."""

    def __init__(self, schema: pa.Schema, timestamp_formats: tuple[str, ...] = ()) -> None:
        self.schema = schema
        self.accept_millis = "millis" in timestamp_formats
        self.timestamp_patterns = [_joda_to_strptime(f) for f in timestamp_formats if f != "millis"]

    def rows(self, data: bytes) -> list[dict[str, Any]]:
        """Every JSON object in the record (one or more, whitespace-separated)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConversionError(
                "DataFormatConversion.ParseError", f"not UTF-8: {error}"
            ) from None
        # NaN and Infinity are not JSON: Python reads them, the SerDe's parser does not
        decoder = json.JSONDecoder(parse_constant=_not_json)
        rows, position = [], 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position == len(text):
                break
            try:
                value, position = decoder.raw_decode(text, position)
            except ValueError as error:  # json.JSONDecodeError, or a constant refused
                raise ConversionError(
                    "DataFormatConversion.ParseError", f"Encountered malformed JSON. {error}"
                ) from None
            except RecursionError:  # a record of arrays in arrays deeper than Python reads
                raise ConversionError(
                    "DataFormatConversion.ParseError", "Encountered JSON nested too deeply"
                ) from None
            if not isinstance(value, dict):
                raise ConversionError(
                    "DataFormatConversion.ParseError",
                    f"Expected a JSON object, got {type(value).__name__}",
                )
            rows.append(self.row(value))
        if not rows:
            raise ConversionError("DataFormatConversion.ParseError", "Empty record")
        return rows

    def row(self, document: dict[str, Any]) -> dict[str, Any]:
        lowered = {str(k).lower(): v for k, v in document.items()}
        row = {}
        for field in self.schema:
            try:
                row[field.name] = self.value(lowered.get(field.name), field.type)
            # OSError: a timestamp in millis past what the platform's clock can hold;
            # RecursionError: a value nested too deeply to write as a string column's JSON.
            except (
                TypeError,
                ValueError,
                InvalidOperation,
                OverflowError,
                OSError,
                RecursionError,
            ) as error:
                raise ConversionError(
                    "DataFormatConversion.MalformedData",
                    f"column {field.name!r} ({field.type}): {error}",
                ) from None
        return row

    def value(self, value: Any, kind: pa.DataType) -> Any:
        if value is None:
            return None
        if pa.types.is_string(kind):
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            # A lone surrogate ("\ud800" in the JSON) would only fail when the Parquet file
            # is written, and take the whole buffer with it: refuse the record here.
            text.encode("utf-8")
            return text
        if pa.types.is_boolean(kind):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"expected a boolean, got {value!r}")
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            # the SerDe reads these columns as JSON numbers only: {"a": "123"} fails
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected a JSON number, got {value!r}")
            if pa.types.is_integer(kind):
                return self._integer(value, kind.bit_width)
            return float(value)
        if pa.types.is_decimal(kind):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            # decimal(38, s) holds more digits than the default context's 28: round in a
            # context with room for them, and for the carry of rounding up. Hive rounds a
            # tie away from zero (HiveDecimal: HALF_UP), not to even as Python does.
            room = Context(prec=kind.precision + 1, rounding=ROUND_HALF_UP)
            try:
                text = _number_text(str(value))
                number = Decimal(text).quantize(Decimal(1).scaleb(-kind.scale), context=room)
            except InvalidOperation:  # more digits than the column holds, or not a number
                raise ValueError(f"{value!r} is not a number {kind} can hold") from None
            # Like a lone surrogate, a value the column cannot hold would only fail when the
            # Parquet file is written, taking the whole buffer with it: refuse the record.
            if not number.is_finite() or number.adjusted() >= kind.precision - kind.scale:
                raise ValueError(f"{value} out of range for {kind}")
            return number
        if pa.types.is_timestamp(kind):
            return self._timestamp(value)
        if pa.types.is_date(kind):
            if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
                raise ValueError(f"expected a date as yyyy-MM-dd, got {value!r}")
            return date.fromisoformat(value)
        if pa.types.is_binary(kind):
            if not isinstance(value, str):  # bytes(n) would be n zero bytes
                raise ValueError(f"expected a string, got {value!r}")
            return value.encode("utf-8")
        if pa.types.is_list(kind):
            if not isinstance(value, list):
                raise ValueError(f"expected an array, got {value!r}")
            return [self.value(v, kind.value_type) for v in value]
        if pa.types.is_map(kind):
            if not isinstance(value, dict):
                raise ValueError(f"expected an object, got {value!r}")
            return [
                (self._map_key(k, kind.key_type), self.value(v, kind.item_type))
                for k, v in value.items()
            ]
        if pa.types.is_struct(kind):
            if not isinstance(value, dict):
                raise ValueError(f"expected an object, got {value!r}")
            lowered = {str(k).lower(): v for k, v in value.items()}
            return {f.name: self.value(lowered.get(f.name), f.type) for f in kind}
        raise ValueError(f"unsupported type {kind}")

    def _map_key(self, key: str, kind: pa.DataType) -> Any:
        """A map key: JSON keys are text, which the SerDe parses as the key type."""
        if pa.types.is_integer(kind):
            return self._integer(key, kind.bit_width)
        if pa.types.is_floating(kind):
            return float(_number_text(key))
        return self.value(key, kind)

    @staticmethod
    def _integer(value: Any, bits: int) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        number = int(value) if not isinstance(value, str) else int(_number_text(value).strip())
        limit = _INTEGER_RANGES[bits]
        if not -limit <= number < limit:
            raise ValueError(f"{number} out of range for a {bits}-bit integer")
        return number

    def _timestamp(self, value: Any) -> datetime:
        if isinstance(value, int | float) and not isinstance(value, bool) and self.accept_millis:
            return datetime.fromtimestamp(value / 1000, tz=UTC).replace(tzinfo=None)
        if not isinstance(value, str):
            raise ValueError(f"expected a timestamp, got {value!r}")
        match = _SQL_TIMESTAMP.match(value.strip())
        if match:  # java.sql.Timestamp.valueOf, the SerDe's default
            *parts, fraction = match.groups()
            year, month, day, hour, minute, second = map(int, parts)
            micros = int((fraction or "0").ljust(9, "0")[:6])
            return datetime(year, month, day, hour, minute, second, micros)
        for pattern in self.timestamp_patterns:
            try:
                parsed = datetime.strptime(value, pattern)
            except ValueError:
                continue
            return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
        raise ValueError(f"unparseable timestamp {value!r}")


# ----------------------------------------------------------------------------- Parquet


class ParquetBuffer:
    """Rows accumulated as Arrow record batches (compact), written as one Parquet object."""

    def __init__(self, schema: pa.Schema, compression: str, chunk_rows: int = 4096) -> None:
        self.schema = schema
        self.codec = PARQUET_CODECS.get(compression.upper(), "snappy")
        self.chunk_rows = chunk_rows
        self._pending: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= self.chunk_rows:
            self._seal()

    def _seal(self) -> None:
        if self._pending:
            self._batches.append(pa.RecordBatch.from_pylist(self._pending, schema=self.schema))
            self._pending = []

    def to_bytes(self) -> bytes:
        self._seal()
        sink = io.BytesIO()
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        pq.write_table(table, sink, compression=self.codec)
        return sink.getvalue()
