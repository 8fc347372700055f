"""Read the catalogued tables (cleaned Parquet, raw NDJSON) into typed pandas frames.

On AWS, Athena reads the table. Locally there is no Athena, so the table's Glue definition
decides what belongs to it the way Athena would: the location, the partition projection
(`storage.location.template`, `projection.ingest_date.range`) and the Hive rule that names
starting with `_` or `.` are ignored. awswrangler reads the objects that qualify.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from packaging.version import Version

from brewops import schema
from brewops.errors import ActionableError
from brewops.jsontext import parse_json

TableName = Literal["cleaned", "raw"]

# the stack Output that names each table
TABLE_OUTPUTS = {"cleaned": "CleanedTableName", "raw": "RawTableName"}

GZIP_MAGIC = b"\x1f\x8b"

# Java date pattern letters (as Athena projection formats use them) -> strftime
_JAVA_TO_STRFTIME = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"))
_NOW_EXPRESSION = re.compile(
    r"^NOW(?:\s*([+-])\s*(\d+)\s*(YEAR|MONTH|WEEK|DAY|HOUR|MINUTE|SECOND)S?)?$", re.IGNORECASE
)


class UnreadableTableError(RuntimeError, ActionableError):
    """A table, or some of its objects, cannot be read."""

    def __init__(self, message: str, objects: Sequence[str] = ()):
        super().__init__(message)
        self.objects = list(objects)


@dataclass(frozen=True)
class Projection:
    """Athena partition projection of a date partition key."""

    key: str
    enabled: bool
    type: str | None
    java_format: str | None
    range_text: str | None
    template: str | None

    @property
    def strftime(self) -> str | None:
        if not self.java_format:
            return None
        fmt = self.java_format
        for java, python in _JAVA_TO_STRFTIME:
            fmt = fmt.replace(java, python)
        return fmt

    def parse(self, value: str) -> date | None:
        """The partition value as a date, or None when it does not match the format."""
        if not self.strftime:
            return None
        try:
            parsed = datetime.strptime(value, self.strftime)
        except ValueError:
            return None
        # strptime accepts "2026-1-5" for %m/%d; Athena's projection does not
        return parsed.date() if parsed.strftime(self.strftime) == value else None

    def bounds(self, now: datetime | None = None) -> tuple[date, date] | None:
        if not self.range_text or "," not in self.range_text:
            return None
        now = now or datetime.now(UTC)
        ends = []
        for part in self.range_text.split(",", 1):
            end = self._bound(part.strip(), now)
            if end is None:
                return None
            ends.append(end)
        return ends[0], ends[1]

    def _bound(self, text: str, now: datetime) -> date | None:
        match = _NOW_EXPRESSION.match(text)
        if not match:
            return self.parse(text)
        sign, amount, unit = match.groups()
        if not sign:
            return now.date()
        offset = pd.DateOffset(**{unit.lower() + "s": int(amount)})
        moved = pd.Timestamp(now) + offset if sign == "+" else pd.Timestamp(now) - offset
        return moved.date()

    def covers(self, day: date, now: datetime | None = None) -> bool:
        bounds = self.bounds(now)
        return bounds is not None and bounds[0] <= day <= bounds[1]


@dataclass(frozen=True)
class TableInfo:
    """What the Glue catalog says about a table."""

    database: str
    name: str
    location: str
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[tuple[str, str], ...]
    parameters: dict[str, str] = field(default_factory=dict)
    input_format: str = ""
    serde: str = ""
    serde_parameters: dict[str, str] = field(default_factory=dict)

    @property
    def is_parquet(self) -> bool:
        return "parquet" in f"{self.input_format} {self.serde} {self.parameters}".lower()

    @property
    def skips_malformed_json(self) -> bool:
        return self.serde_parameters.get("ignore.malformed.json", "").lower() == "true"

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)

    def projection(self) -> Projection | None:
        """The projection of the first partition key, if the table has partition keys."""
        if not self.partition_keys:
            return None
        key = self.partition_keys[0][0]
        params = self.parameters
        return Projection(
            key=key,
            enabled=params.get("projection.enabled", "").lower() == "true",
            type=params.get(f"projection.{key}.type"),
            java_format=params.get(f"projection.{key}.format"),
            range_text=params.get(f"projection.{key}.range"),
            template=params.get("storage.location.template"),
        )

    def expected_template(self) -> str | None:
        if not self.partition_keys:
            return None
        key = self.partition_keys[0][0]
        return f"{self.location.rstrip('/')}/{key}=${{{key}}}/"


@dataclass(frozen=True)
class TableObject:
    """One S3 object under a table's location and where it sits in the partition layout."""

    uri: str
    size: int
    last_modified: datetime
    partition: str | None = None  # the partition value when the object is inside the layout
    outside_reason: str | None = None  # why the table cannot see it

    @property
    def in_layout(self) -> bool:
        return self.outside_reason is None


def resolve_target(target: Any = None) -> Any:
    """A `brewops.target.Target` from a name ("local", "aws"), None (local) or a Target."""
    if target is None or isinstance(target, str):
        from brewops import target as targets

        return targets.use(target or "local")
    return target


def _session(tgt: Any) -> Any:
    return getattr(tgt, "session", None)


def aws_client(tgt: Any, service: str) -> Any:
    """A boto3 client from the target's session (default session without one)."""
    session = _session(tgt)
    if session is not None:
        return session.client(service)
    from brewops.target import aws_session

    return aws_session().client(service)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def describe_table(name: TableName, target: Any = None) -> TableInfo:
    """The Glue definition of the `cleaned` or `raw` table of the target's stack."""
    tgt = resolve_target(target)
    outputs = tgt.outputs
    database, table = outputs["GlueDatabaseName"], outputs[TABLE_OUTPUTS[name]]
    try:
        found = aws_client(tgt, "glue").get_table(DatabaseName=database, Name=table)["Table"]
    except Exception as exc:
        raise UnreadableTableError(
            f"Glue table {database}.{table} cannot be read: {exc}. {_DEPLOY_HINT}"
        ) from exc
    storage = found.get("StorageDescriptor", {})
    return TableInfo(
        database=database,
        name=table,
        location=storage.get("Location", ""),
        columns=tuple((c["Name"], c["Type"].lower()) for c in storage.get("Columns", [])),
        partition_keys=tuple(
            (c["Name"], c["Type"].lower()) for c in found.get("PartitionKeys", [])
        ),
        parameters=dict(found.get("Parameters", {})),
        input_format=storage.get("InputFormat", ""),
        serde=storage.get("SerdeInfo", {}).get("SerializationLibrary", ""),
        serde_parameters=dict(storage.get("SerdeInfo", {}).get("Parameters", {})),
    )


def table_source(name: TableName, target: Any = None) -> dict[str, str]:
    """Where `read_table(name, target)` reads, as a model card's `data.source` names it: the
    stack, the Glue database and table, and the table's S3 location. The objects read are
    not listed: Athena reads them on AWS, so a listing of ours could name others, and the
    card's `data.sha256` already fixes the rows trained on."""
    tgt = resolve_target(target)
    info = describe_table(name, tgt)
    return {
        "stack": tgt.stack_name,
        "database": info.database,
        "table": info.name,
        "location": info.location,
    }


def list_table_objects(
    info: TableInfo, target: Any = None, now: datetime | None = None
) -> list[TableObject]:
    """Every object under the table's location, each placed in (or outside) its layout."""
    tgt = resolve_target(target)
    bucket, prefix = split_s3_uri(info.location)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    paginator = aws_client(tgt, "s3").get_paginator("list_objects_v2")
    objects = []
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if _is_marker(item):
                    continue
                uri = f"s3://{bucket}/{item['Key']}"
                partition, reason = place_in_layout(info, uri, now)
                objects.append(
                    TableObject(uri, item["Size"], item["LastModified"], partition, reason)
                )
    except (ClientError, BotoCoreError) as exc:
        raise UnreadableTableError(
            f"objects of table {info.name} under s3://{bucket}/{prefix} cannot be listed: "
            f"{exc}. {_DEPLOY_HINT} On AWS, the credentials also need s3:ListBucket on it."
        ) from exc
    return sorted(objects, key=lambda o: o.uri)


_DEPLOY_HINT = "Is the stack deployed? (notebook 02, or `brewops local up` locally)"


def _is_marker(item: Mapping[str, Any]) -> bool:
    """A console "folder" or an empty hidden file such as `_SUCCESS`: it holds no data."""
    name = item["Key"].rsplit("/", 1)[-1]
    return not name or (name.startswith(("_", ".")) and item["Size"] == 0)


def place_in_layout(
    info: TableInfo, uri: str, now: datetime | None = None
) -> tuple[str | None, str | None]:
    """(partition value, None) for an object the table reads, else (None, reason)."""
    name = uri.rsplit("/", 1)[-1]
    if name.startswith(("_", ".")):
        return None, "hidden file name (Athena ignores names starting with _ or .)"
    base = info.location.rstrip("/") + "/"
    if not info.partition_keys:
        return ("", None) if "/" not in uri[len(base) :] else (None, "in a sub-folder")
    projection = info.projection()
    key = info.partition_keys[0][0]
    template = (projection.template if projection else None) or info.expected_template()
    head, _, tail = template.partition(f"${{{key}}}")  # type: ignore[union-attr]  # partitioned
    if not uri.startswith(head):
        return None, f"not under a {key}=… partition folder"
    value, sep, rest = uri[len(head) :].partition(tail or "/")
    if not sep or not value or "/" in value:
        return None, f"not under a {key}=… partition folder"
    if "/" in rest:
        return None, f"in a sub-folder of partition {key}={value}"
    if projection and projection.enabled and projection.type == "date":
        day = projection.parse(value)
        if day is None:
            return None, f"partition value {value!r} does not match {projection.java_format}"
        if not projection.covers(day, now):
            return (
                None,
                f"partition {value} is outside the projection range {projection.range_text}",
            )
    return value, None


# Glue/Hive type -> the pandas dtype a typed frame carries
_PANDAS_TYPES = {
    "bigint": "Int64",
    "int": "Int64",
    "smallint": "Int64",
    "tinyint": "Int64",
    "double": "float64",
    "float": "float64",
    "string": "string",
    "boolean": "boolean",
    "timestamp": "datetime64[ns]",
    "date": "datetime64[ns]",
}


def typed(df: pd.DataFrame, columns: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """`df` with exactly `columns` (name, Glue type) in that order and pandas dtypes.

    A missing column comes back all-null; a value that does not fit its Glue type leaves the
    column as object dtype so data-quality checks can name it (nothing is coerced away).
    """
    out = {}
    for name, glue_type in columns:
        dtype = _PANDAS_TYPES.get(glue_type.split("(")[0])
        values = df[name] if name in df else pd.Series(pd.NA, index=df.index, dtype="object")
        out[name] = _cast(values, dtype) if dtype else values
    return pd.DataFrame(out, index=df.index)


def _cast(values: pd.Series, dtype: str) -> pd.Series:
    try:
        if dtype.startswith("datetime64"):
            if isinstance(values.dtype, pd.DatetimeTZDtype):
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            # timestamps are UTC; Athena returns them naive, so do we
            return pd.to_datetime(values, errors="raise").astype(dtype)
        # text is object dtype in pandas 2, a StringDtype in pandas 3 (or when read as one)
        text = values.dtype == object or isinstance(values.dtype, pd.StringDtype)
        if dtype == "Int64" and text:
            values = pd.to_numeric(values, errors="raise")
        return values.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return values.astype(object)


def table_columns(info: TableInfo, columns: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The table's (name, Glue type) columns, then its partition keys; with `columns`, only
    those of them (the partition keys always)."""
    wanted = None if columns is None else set(columns)
    chosen = [c for c in info.columns if wanted is None or c[0] in wanted]
    return [*chosen, *info.partition_keys]


def checked_columns(info: TableInfo, columns: Sequence[str] | None) -> list[str] | None:
    """`columns` as a list of the table's column names, or a ValueError naming those it has:
    a name it lacks would be left out unsaid, and a lone name read letter by letter."""
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    known = [name for name, _ in (*info.columns, *info.partition_keys)]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{info.name} has no column {', '.join(map(repr, unknown))}; "
            f"its columns: {', '.join(known)}"
        )
    return names


# JSON lines parsed at once when only some columns are read: each holds its whole record
# (nested recipe and all) until the chunk is cut down to those columns
JSON_CHUNK_LINES = 1_000


def read_objects(
    info: TableInfo,
    objects: Sequence[TableObject],
    target: Any = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read `objects` of a table with awswrangler, one partition at a time, typed.

    Rows keep the order of the object keys (Firehose names objects by arrival time), so
    later rows are later deliveries. JSON lines the SerDe would skip
    (`ignore.malformed.json`) are skipped too and listed in `frame.attrs["malformed_lines"]`.
    `columns` keeps only those of the table's columns (and its partition key): JSON is
    then parsed `JSON_CHUNK_LINES` lines at a time, so whole records are never all held.
    """
    from brewops.target import awswrangler

    wr = awswrangler()

    tgt = resolve_target(target)
    session = _session(tgt)
    by_partition: dict[str, list[TableObject]] = {}
    for obj in objects:
        by_partition.setdefault(obj.partition or "", []).append(obj)
    frames = []
    malformed: list[str] = []
    for partition, members in sorted(by_partition.items()):
        paths = [o.uri for o in sorted(members, key=lambda o: o.uri) if o.size > 0]
        if not paths:
            continue
        frame, skipped = _read_paths(wr, info, paths, session, tgt, columns)
        malformed += skipped
        if info.partition_keys:
            frame[info.partition_keys[0][0]] = partition
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    result = typed(frame, table_columns(info, columns))
    result.attrs["malformed_lines"] = malformed
    return result


def _read_paths(
    wr: Any,
    info: TableInfo,
    paths: list[str],
    session: Any,
    tgt: Any,
    columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    try:
        return _read_with_awswrangler(wr, info, paths, session, tgt, columns), []
    except Exception as exc:
        if not info.is_parquet and info.skips_malformed_json:
            return _read_json_skipping_malformed(paths, tgt, columns)
        if len(paths) == 1:
            raise UnreadableTableError(f"{paths[0]}: {exc}", paths) from exc
        # find which objects are at fault, so the message can name them
        bad = {}
        for path in paths:
            try:
                _read_with_awswrangler(wr, info, [path], session, tgt, columns)
            except Exception as one:
                bad[path] = one
        detail = "; ".join(f"{path}: {error}" for path, error in bad.items())
        raise UnreadableTableError(
            f"table {info.name}: {detail or f'objects readable alone, not together: {exc}'}",
            list(bad) or paths,
        ) from exc


# dtype=False keeps every value as delivered; before pandas 3.1 it still parsed the columns
# named like dates unless convert_dates=False, a keyword pandas 3.1 deprecates
_NO_DATE_PARSING = {"convert_dates": False} if Version(pd.__version__) < Version("3.1") else {}


def _read_with_awswrangler(
    wr: Any,
    info: TableInfo,
    paths: list[str],
    session: Any,
    tgt: Any,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    if info.is_parquet:
        return wr.s3.read_parquet(path=paths, boto3_session=session, ignore_empty=True)
    frames = []
    # one compression per call: Firehose adds ".gz", other writers may not
    for compression, group in _runs_by_compression(paths, tgt):
        read = wr.s3.read_json(
            path=group,
            lines=True,
            orient="records",
            compression=compression,
            dtype=False,
            **_NO_DATE_PARSING,
            # pandas' default parser gives 0.30000000000000004 for a recipe's 0.3
            precise_float=True,
            boto3_session=session,
            chunksize=None if columns is None else JSON_CHUNK_LINES,
        )
        if columns is None:
            frames.append(read)
        else:
            frames += [_chunk_columns(chunk, columns) for chunk in read]
    if not frames:  # read in chunks, an object without a line gives none
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _chunk_columns(chunk: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    # JSON keys are text: a label such as 0 means a chunk of lines that are not objects
    # (pandas makes a column of them), for the SerDe's rules to deal with line by line
    if any(not isinstance(label, str) for label in chunk.columns):
        raise ValueError("JSON lines that are not objects")
    return chunk[[c for c in columns if c in chunk]]


def _read_json_skipping_malformed(
    paths: list[str], tgt: Any, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """What the JSON SerDe does with `ignore.malformed.json`: keep the lines that parse
    (with `columns`, only those fields of each)."""
    s3 = aws_client(tgt, "s3")
    records, malformed = [], []
    for path in paths:
        body = _object_bytes(s3, path)
        try:
            text = (gzip.decompress(body) if body[:2] == GZIP_MAGIC else body).decode("utf-8")
        # zlib.error: a gzip whose compressed data is corrupt, not only cut short
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
            raise UnreadableTableError(f"{path}: {exc}", [path]) from exc
        # only "\n" ends a JSON line: splitlines() also splits at U+2028, "\x85" and the
        # like, which text written unescaped may hold inside a string
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = parse_json(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                if columns is not None:
                    record = {c: record[c] for c in columns if c in record}
                records.append(record)
            else:
                malformed.append(f"{path}:{number}")
    # not from_records: it makes no rows of records that are all empty dicts
    return pd.DataFrame(records), malformed


def _object_bytes(s3: Any, path: str, **kwargs: Any) -> bytes:
    """The bytes of the object at `path` (`kwargs` go to GetObject); UnreadableTableError,
    naming the object, when S3 does not give them after botocore's retries."""
    bucket, key = split_s3_uri(path)
    try:
        return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise UnreadableTableError(
            f"{path} cannot be read from S3: {exc}. A SlowDown, a 5xx or a timeout passes: "
            "run again in a minute; AccessDenied needs s3:GetObject on the bucket.",
            [path],
        ) from exc


def _runs_by_compression(paths: list[str], tgt: Any) -> list[tuple[str | None, list[str]]]:
    """`paths` cut into runs of one compression, in their order (rows keep delivery order)."""
    runs: list[tuple[str | None, list[str]]] = []
    s3 = None
    for path in paths:
        if path.endswith(".gz"):
            compression: str | None = "gzip"
        else:
            s3 = s3 or aws_client(tgt, "s3")
            head = _object_bytes(s3, path, Range="bytes=0-1")
            compression = "gzip" if head == GZIP_MAGIC else None
        if runs and runs[-1][0] == compression:
            runs[-1][1].append(path)
        else:
            runs.append((compression, [path]))
    return runs


def read_table(
    name: TableName,
    target: Any = None,
    *,
    engine: Literal["athena", "s3"] | None = None,
    columns: Sequence[str] | None = None,
    **athena_kwargs: Any,
) -> pd.DataFrame:
    """The `cleaned` or `raw` table as a typed frame: the Glue columns, then `ingest_date`.

    `engine` defaults to Athena on AWS and to Glue + S3 locally (no Athena there);
    `columns` reads only those Glue columns (and `ingest_date`); `athena_kwargs` go to
    `wr.athena.read_sql_table` for a Parquet table read whole, else to `read_sql_query`
    (e.g. `ctas_approach=False`). Either engine leaves the lines of a JSON table that skips
    malformed lines out of the rows and lists them in `frame.attrs["malformed_lines"]`. A
    column the table does not have raises ValueError.
    """
    tgt = resolve_target(target)
    info = describe_table(name, tgt)
    columns = checked_columns(info, columns)
    engine = engine or ("athena" if getattr(tgt, "name", "local") == "aws" else "s3")
    if engine == "athena":
        return _read_with_athena(info, tgt, columns, **athena_kwargs)
    objects = [o for o in list_table_objects(info, tgt) if o.in_layout]
    return read_objects(info, objects, tgt, columns)


# the column an Athena read of a JSON table adds: the object of a line the SerDe could not parse
MALFORMED_OBJECT = "malformed_object"
# and the object every row was read from, to put the rows in delivery order
SOURCE_OBJECT = "source_object"


def _malformed_object(info: TableInfo) -> str:
    """SQL naming the object of a line the JSON SerDe could not parse, NULL for the others.

    With `ignore.malformed.json` the OpenX SerDe reads such a line as an empty object: a row
    whose every column is NULL (its partition key aside). A line that parses to an object
    with none of the table's keys (`{}`) reads the same, and is counted with them.
    """
    unset = " AND ".join(f"{_quoted(name)} IS NULL" for name, _ in info.columns)
    return f'CASE WHEN {unset} THEN "$path" END AS {_quoted(MALFORMED_OBJECT)}'


def _read_with_athena(
    info: TableInfo, tgt: Any, columns: Sequence[str] | None = None, **kwargs: Any
) -> pd.DataFrame:
    """Athena's rows of the table, typed; like `read_objects`, the lines of a JSON table its
    SerDe skips (`ignore.malformed.json`) are left out and listed, each by its object, in
    `frame.attrs["malformed_lines"]` (Athena does not say which line of the object).

    Row order, which `latest_per_id` falls back on for the raw table: each row of a JSON
    table carries its object (`"$path"`) and the rows are sorted here, stably, by
    partition, then by object key, as `read_objects` reads them (Firehose names objects
    by arrival time). Certain: a row of an earlier object comes before a row of a later
    one. Not certain: the order of one object's lines. The sort keeps the order Athena
    gave them; Athena reads a gzip object whole, line by line, in one split, but neither
    SQL nor awswrangler's default result (CTAS: Parquet files read in no set order)
    promises to hand the rows on in that order. A copy in the same object as another
    copy of the beer may therefore come before or after it.
    """
    from brewops.target import awswrangler

    wr = awswrangler()

    kwargs.setdefault("workgroup", tgt.outputs["AthenaWorkGroupName"])
    selected = table_columns(info, columns)
    try:
        if columns is None and info.is_parquet:
            frame = wr.athena.read_sql_table(
                table=info.name, database=info.database, boto3_session=_session(tgt), **kwargs
            )
        else:
            frame = wr.athena.read_sql_query(
                sql=_athena_query(info, selected),
                database=info.database,
                boto3_session=_session(tgt),
                **kwargs,
            )
    except Exception as exc:
        raise UnreadableTableError(
            f"Athena cannot read {info.database}.{info.name}: {exc}"
        ) from exc
    if SOURCE_OBJECT in frame:
        frame = _in_delivery_order(frame, info)
    malformed: list[str] = []
    if MALFORMED_OBJECT in frame:
        objects = frame[MALFORMED_OBJECT]
        malformed = [str(uri) for uri in objects[objects.notna()]]
        frame = frame[objects.isna()].reset_index(drop=True)
    result = typed(frame, selected)
    result.attrs["malformed_lines"] = malformed
    return result


def _athena_query(info: TableInfo, selected: Sequence[tuple[str, str]]) -> str:
    """The SELECT of the `selected` columns (`table_columns`) that `_read_with_athena` asks."""
    listed = [_quoted(name) for name, _ in selected]
    if not info.is_parquet and info.skips_malformed_json and info.columns:
        listed.append(_malformed_object(info))
    if not info.is_parquet or not listed:
        # sorted here, not by ORDER BY: a CTAS result would not keep that order, and a sort
        # may reorder the lines of one object (rows of equal keys). Selected alone when
        # there is no column to select (a table without columns or partition keys).
        listed.append(f'"$path" AS {_quoted(SOURCE_OBJECT)}')
    # only the Glue definition's own names, each a quoted identifier
    return f"SELECT {', '.join(listed)} FROM {_quoted(info.name)}"  # noqa: S608


def _in_delivery_order(frame: pd.DataFrame, info: TableInfo) -> pd.DataFrame:
    """`frame` by partition, then by `SOURCE_OBJECT`, keeping the order of equal rows."""
    order = [key for key, _ in info.partition_keys[:1] if key in frame] + [SOURCE_OBJECT]
    ordered = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return ordered.drop(columns=SOURCE_OBJECT)


def _quoted(name: str) -> str:
    """A SQL identifier for Athena, quoted."""
    return '"' + name.replace('"', '""') + '"'


def latest_per_id(df: pd.DataFrame, id_column: str | None = None) -> pd.DataFrame:
    """One row per id (`id_column`, by default `schema.ID_COLUMN`): the latest record.

    Latest by `ingested_at` (when Kinesis took the record), then by the partition key
    (the day Firehose delivered it: a copy delivered again after midnight), then by row
    order. The raw table has no `ingested_at`: its latest record of a beer is one of the
    latest day, from the latest object as `read_table` orders the rows with either engine
    (within one object, see `_read_with_athena` for what Athena keeps of line order).
    Rows without an id are left out: nothing can say which beer they are.
    """
    id_column = id_column or schema.ID_COLUMN
    ranked = df[df[id_column].notna()].reset_index(drop=True)
    order = [c for c in ("ingested_at", schema.PARTITION_KEY) if c in ranked]
    if order:
        # a stable sort keeps delivery order among equal values
        ranked = ranked.sort_values(order, kind="stable", na_position="first")
    latest = ranked.drop_duplicates(id_column, keep="last")
    return latest.sort_values(id_column, kind="stable").reset_index(drop=True)


def cleaned_columns() -> list[tuple[str, str]]:
    """The cleaned table's columns as brewops.schema defines them, partition key last."""
    return [(c.name, c.glue_type) for c in schema.CLEANED_COLUMNS] + [
        (schema.PARTITION_KEY, schema.PARTITION_GLUE_TYPE)
    ]
