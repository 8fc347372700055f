"""Validate the Glue tables: schema, partitions, counts, duplicates and data quality.

Two kinds of result:
- gates, which fail the pipeline with a typed error: schema drift, objects the table cannot
  read (unreadable data, or outside the partition layout) and lost records;
- findings, which are reported and never fail it: duplicates, nulls, values outside the
  plausible ranges of `brewops.schema`, target_fg above target_og and unparseable values.
  The real catalogue has such quirks (ph 79 on id 317, abv 55 on id 24, ...).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from numbers import Integral
from pathlib import Path
from typing import Any, cast

import pandas as pd

from brewops import schema, summary
from brewops.errors import ActionableError
from brewops.paths import build_dir
from brewops.reconcile import ErrorRecord
from brewops.tables import (
    TABLE_OUTPUTS,
    TableInfo,
    TableName,
    TableObject,
    UnreadableTableError,
    aws_client,
    cleaned_columns,
    describe_table,
    latest_per_id,
    list_table_objects,
    read_objects,
    read_table,
    resolve_target,
    split_s3_uri,
)

PRODUCE_NOTEBOOK = "03_produce_to_kinesis"
# figures notebook 03 records: how many records Kinesis accepted and which beer ids
RECORDS_SENT_KEYS = ("records_sent", "sent")
IDS_SENT_KEYS = ("ids_sent", "produced_ids")

SCHEMA_DRIFT = "schema drift"
UNREADABLE = "unreadable data"
PARTITION_LAYOUT = "partition layout"
LOST_RECORDS = "lost records"
GATES = (SCHEMA_DRIFT, UNREADABLE, PARTITION_LAYOUT, LOST_RECORDS)

NULLS = "nulls"
RANGE = "range"
FG_ABOVE_OG = "fg > og"
UNPARSEABLE = "unparseable"
DUPLICATES = "duplicates"
FINDING_RULES = (NULLS, RANGE, FG_ABOVE_OG, UNPARSEABLE, DUPLICATES)

_SHOWN = 20  # ids or objects named in one message before "and N more"


# ---------------------------------------------------------------- errors


class ValidationError(Exception):
    """A gate failed. `rule` names it; `failures` holds every gate that failed."""

    rule = "validation"

    def __init__(self, message: str, failures: Sequence[GateFailure] = ()):
        super().__init__(message)
        self.failures = list(failures)


class SchemaDriftError(ValidationError):
    rule = SCHEMA_DRIFT


class UnreadableDataError(ValidationError):
    rule = UNREADABLE


class PartitionLayoutError(UnreadableDataError):
    """Objects the table cannot see, so their records cannot be read through it."""

    rule = PARTITION_LAYOUT


class LostRecordsError(ValidationError):
    rule = LOST_RECORDS


class FiguresUnreadable(ValueError, ActionableError):
    """Notebook 03's figures file is not the JSON object it writes."""


_ERRORS = {
    SCHEMA_DRIFT: SchemaDriftError,
    UNREADABLE: UnreadableDataError,
    PARTITION_LAYOUT: PartitionLayoutError,
    LOST_RECORDS: LostRecordsError,
}


@dataclass(frozen=True)
class GateFailure:
    rule: str
    table: str
    message: str
    rows: tuple[Any, ...] = ()  # the ids, columns or objects at fault

    def __str__(self) -> str:
        return f"{self.rule} ({self.table}): {self.message}"


def listing(items: Iterable[Any], limit: int = _SHOWN) -> str:
    """The first `limit` items, then how many more: ids or objects named in a message."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------- schema


@dataclass(frozen=True)
class Drift:
    column: str
    source: str  # "Glue table" or "Parquet"
    expected: str  # the type brewops.schema defines, or "absent"
    found: str  # the type found, or "missing"
    objects: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.source}"
        if self.objects:
            where += f" ({len(self.objects)} object(s): {listing(self.objects, 5)})"
        if self.found == "missing":
            return f"column {self.column}: brewops.schema {self.expected}, {where} missing it"
        if self.expected == "absent":
            return f"column {self.column}: not in brewops.schema, {where} has {self.found}"
        return f"column {self.column}: brewops.schema {self.expected}, {where} {self.found}"


@dataclass
class SchemaComparison:
    """brewops.schema vs the Glue table vs the Parquet objects, one row per column."""

    frame: pd.DataFrame
    drifts: list[Drift]
    objects_read: int

    @property
    def ok(self) -> bool:
        return not self.drifts


def expected_schema() -> dict[str, str]:
    return {c.name: c.glue_type for c in schema.CLEANED_COLUMNS}


def compare_schema(
    info: TableInfo,
    parquet_schemas: dict[str, dict[str, str]],
    expected: dict[str, str] | None = None,
) -> SchemaComparison:
    """Three-way comparison; `parquet_schemas` maps object URI -> {column: Athena type}."""
    expected = expected or expected_schema()
    glue = info.column_types
    names = list(expected)
    names += [n for n in glue if n not in names]
    for columns in parquet_schemas.values():
        names += [n for n in columns if n not in names]

    drifts: list[Drift] = []
    rows = []
    for name in names:
        want = expected.get(name, "absent")
        in_glue = glue.get(name, "missing")
        per_object = {uri: cols.get(name, "missing") for uri, cols in parquet_schemas.items()}
        seen = Counter(per_object.values())
        if in_glue != want:
            drifts.append(Drift(name, "Glue table", want, in_glue))
        for found in sorted(seen):
            if found != want:
                bad = tuple(uri for uri, t in per_object.items() if t == found)
                drifts.append(Drift(name, "Parquet", want, found, bad))
        parquet = ", ".join(
            f"{t} in {n} object(s)" if len(seen) > 1 else t for t, n in sorted(seen.items())
        )
        rows.append(
            {
                "column": name,
                "brewops.schema": want,
                "glue": in_glue,
                "parquet": parquet or "(no objects)",
                "status": "ok" if in_glue == want and set(seen) <= {want} else "drift",
            }
        )

    partition = tuple(info.partition_keys)
    want_partition = ((schema.PARTITION_KEY, schema.PARTITION_GLUE_TYPE),)
    if partition != want_partition:
        found = ", ".join(f"{n} {t}" for n, t in partition) or "missing"
        drifts.append(Drift(schema.PARTITION_KEY, "Glue partition keys", "string", found))
    rows.append(
        {
            "column": f"{schema.PARTITION_KEY} (partition)",
            "brewops.schema": schema.PARTITION_GLUE_TYPE,
            "glue": ", ".join(t for _, t in partition) or "missing",
            "parquet": "(from the S3 prefix)",
            "status": "ok" if partition == want_partition else "drift",
        }
    )
    return SchemaComparison(pd.DataFrame(rows), drifts, len(parquet_schemas))


def read_parquet_schemas(
    objects: Sequence[TableObject], target: Any = None
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """({uri: {column: Athena type}}, {uri: error}) for each object's Parquet footer."""
    from brewops.target import awswrangler

    wr = awswrangler()

    session = getattr(resolve_target(target), "session", None)
    schemas, errors = {}, {}
    for obj in objects:
        if obj.size == 0:
            continue  # holds no rows and no footer; readers skip it too
        try:
            columns_types, _ = wr.s3.read_parquet_metadata(
                path=[obj.uri], ignore_empty=False, use_threads=False, boto3_session=session
            )
            schemas[obj.uri] = dict(columns_types)
        except Exception as exc:  # anything that stops a reader is what we report
            errors[obj.uri] = f"{type(exc).__name__}: {exc}".strip()
    return schemas, errors


# ---------------------------------------------------------------- partitions


@dataclass
class PartitionReport:
    table: str
    projection: dict[str, str | None]
    frame: pd.DataFrame  # one row per partition: objects, bytes, in projection
    outside: pd.DataFrame  # objects the table cannot see, with the reason
    config_issues: list[str]

    @property
    def ok(self) -> bool:
        return self.outside.empty and not self.config_issues


def check_partitions(
    info: TableInfo, objects: Sequence[TableObject], now: datetime | None = None
) -> PartitionReport:
    """The ingest_date partitions in S3 against the table's projection configuration."""
    projection = info.projection()
    issues = []
    config: dict[str, str | None] = {}
    if projection is None:
        issues.append(f"table {info.name} has no partition keys")
    else:
        bounds = projection.bounds(now)
        config = {
            "partition key": projection.key,
            "projection.enabled": str(projection.enabled).lower(),
            "type": projection.type,
            "format": projection.java_format,
            "range": projection.range_text,
            "range now": f"{bounds[0]} .. {bounds[1]}" if bounds else None,
            "storage.location.template": projection.template,
        }
        if not projection.enabled:
            issues.append("projection.enabled is not true: Athena sees no partitions")
        if projection.type != "date":
            issues.append(f"projection.{projection.key}.type is {projection.type!r}, not 'date'")
        if projection.java_format != "yyyy-MM-dd":
            issues.append(f"projection format is {projection.java_format!r}, not 'yyyy-MM-dd'")
        if bounds is None:
            issues.append(f"projection range {projection.range_text!r} cannot be parsed")
        elif bounds[0] > bounds[1]:
            # a NOW before the range's fixed start: a clock set wrong, or years back
            issues.append(
                f"projection range {projection.range_text!r} is empty today: it runs from "
                f"{bounds[0]} to {bounds[1]}, so no partition is in it. Is this machine's "
                "clock (UTC) right?"
            )
        if projection.template != info.expected_template():
            issues.append(
                f"storage.location.template is {projection.template!r}, "
                f"expected {info.expected_template()!r}"
            )

    inside: dict[str, list[TableObject]] = {}
    for obj in objects:
        if obj.in_layout:
            inside.setdefault(obj.partition or "", []).append(obj)
    frame = pd.DataFrame(
        [
            {
                "ingest_date": value,
                "objects": len(members),
                "bytes": sum(o.size for o in members),
                "first_object_at": min(o.last_modified for o in members),
                "last_object_at": max(o.last_modified for o in members),
            }
            for value, members in sorted(inside.items())
        ],
        columns=["ingest_date", "objects", "bytes", "first_object_at", "last_object_at"],
    )
    outside = pd.DataFrame(
        [
            {"object": o.uri, "bytes": o.size, "reason": o.outside_reason}
            for o in objects
            if not o.in_layout
        ],
        columns=["object", "bytes", "reason"],
    )
    return PartitionReport(info.name, config, frame, outside, issues)


# ---------------------------------------------------------------- counts and duplicates


@dataclass(frozen=True)
class Expectation:
    """What was produced: a number of records and/or the set of beer ids."""

    records: int | None = None
    ids: frozenset[int] | None = None
    source: str = "explicit"

    @property
    def known(self) -> bool:
        return self.records is not None or self.ids is not None


def produce_figures_path() -> Path:
    """Where notebook 03 recorded its figures: beside this run's figures file if the runner
    set one, else under the build directory."""
    env = os.environ.get(summary.FIGURES_ENV)
    folder = Path(env).parent if env else build_dir() / "figures"
    return folder / f"{PRODUCE_NOTEBOOK}.json"


def expectation_from_figures(path: Path | None = None, stack_id: str | None = None) -> Expectation:
    """What notebook 03 recorded it produced. With `stack_id`, figures recorded against
    another stack (a deleted one, an earlier `brewops local up`) are ignored: that stack's
    records are not in this one's tables."""
    path = path or produce_figures_path()
    try:
        figures = summary.read(path)
    except (OSError, ValueError) as error:
        raise _figures_unreadable(path, str(error)) from error
    if not isinstance(figures, dict):
        raise _figures_unreadable(path, f"a JSON {type(figures).__name__}, not an object")
    if not figures:
        return Expectation(source=f"{path} (not found)")
    if stack_id is not None and figures.get("stack_id") != stack_id:
        return Expectation(source=f"{path} (another stack's, ignored)")
    records = next(
        (figures[k] for k in RECORDS_SENT_KEYS if isinstance(figures.get(k), int | float)), None
    )
    # 4.0 is a whole number; NaN, 2.5 or true are not: int() would crash or mistake them
    if records is not None:
        if not (_whole(records) and records >= 0):
            raise _figures_unreadable(path, f"{records!r} records sent is not a count")
        records = int(records)
    ids = next((figures[k] for k in IDS_SENT_KEYS if isinstance(figures.get(k), list)), None)
    if ids is not None:
        # an id 0 or -1 may have been sent (the transform fails it); 1.5 is not beer 1
        if not all(_whole(i) for i in ids):
            raise _figures_unreadable(path, f"ids sent {listing(ids, 5)} are not all whole numbers")
        ids = frozenset(int(i) for i in ids)
    return Expectation(records, ids, source=str(path))


def _whole(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    )


def _figures_unreadable(path: Path, problem: str) -> FiguresUnreadable:
    return FiguresUnreadable(
        f"{path} is not a figures file notebook 03 wrote ({problem}). Run notebook 03 again "
        "to write it, or say what was produced with --expected-ids (expected= in Python)."
    )


def produced_ids_expectation(target_name: str, stack_id: str | None = None) -> Expectation:
    """The ids `brewops stream backfill` and `tick` remembered for this target's stack,
    and how many records that is (an id sent twice is two records)."""
    from brewops.streaming_cli import read_produced

    ids, source = read_produced(target_name, stack_id)
    if ids is None:
        return Expectation(source=source)
    return Expectation(records=len(ids), ids=frozenset(ids), source=source)


def as_expectation(
    expected: Expectation | Iterable[int] | int | None,
    target_name: str = "local",
    stack_id: str | None = None,
) -> Expectation:
    """None means: notebook 03's figures, with the ids the stream commands remembered when
    the figures hold none (both only if recorded against this stack)."""
    if expected is None:
        found = expectation_from_figures(stack_id=stack_id)
        if found.ids is None:
            remembered = produced_ids_expectation(target_name, stack_id)
            if remembered.ids is not None:
                records = found.records if found.records is not None else remembered.records
                found = Expectation(records, remembered.ids, f"{found.source}; {remembered.source}")
        return found
    if isinstance(expected, Expectation):
        return expected
    if isinstance(expected, Integral) and not isinstance(expected, bool) and int(expected) >= 0:
        return Expectation(records=int(expected))
    ids = schema.as_beer_ids(expected)
    if ids is None:
        raise ValueError(
            "the expected ids must be a list of beer ids such as [1, 2, 3] (or a number of "
            f"records, 0 or more), not {expected!r}"
        )
    return Expectation(ids=frozenset(ids))


@dataclass
class Reconciliation:
    table: str
    expectation: Expectation
    rows: int
    unique_ids: int
    lost_ids: list[int] = field(default_factory=list)
    unexpected_ids: list[int] = field(default_factory=list)
    missing_rows: int = 0
    # id -> reason, for records Firehose wrote to the error prefix instead: accounted for
    diverted: dict[int, str] = field(default_factory=dict)
    # every record in the error prefix, with or without a readable id
    diverted_records: int = 0
    # missing from the objects read while others were left out (unreadable, or of drifted
    # types): they may be in those, so they are unseen, not known to be lost
    unseen_ids: list[int] = field(default_factory=list)
    unseen_rows: int = 0

    @property
    def unseen(self) -> bool:
        """Records missing from what was read that objects left out may hold."""
        return bool(self.unseen_ids or self.unseen_rows)

    @property
    def checked(self) -> bool:
        return self.expectation.known

    @property
    def ok(self) -> bool:
        return not self.lost_ids and self.missing_rows == 0

    def as_row(self) -> dict[str, Any]:
        exp = self.expectation
        return {
            "table": self.table,
            "expected records": exp.records,
            "expected ids": len(exp.ids) if exp.ids is not None else None,
            "rows": self.rows,
            "unique ids": self.unique_ids,
            "lost ids": len(self.lost_ids),
            "missing rows": self.missing_rows,
            "unexpected ids": len(self.unexpected_ids),
            "diverted to errors": self.diverted_records,
            "status": (
                "not checked" if not self.checked or self.unseen else ("ok" if self.ok else "lost")
            ),
        }

    def failure(self) -> GateFailure | None:
        if self.ok:
            return None
        parts = []
        if self.lost_ids:
            parts.append(
                f"{len(self.lost_ids)} of {len(self.expectation.ids or ())} produced ids are "
                f"missing: ids {listing(self.lost_ids)}"
            )
        if self.missing_rows:
            parts.append(
                f"{self.rows} rows for {self.expectation.records} records produced "
                f"({self.missing_rows} missing)"
            )
        return GateFailure(LOST_RECORDS, self.table, "; ".join(parts), tuple(self.lost_ids))


def integer_ids(values: pd.Series) -> set[int]:
    """The whole-number ids among `values`; anything else ("abc", 1.5, null) is left out
    (the quality checks report it as unparseable)."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
    return {int(n) for n in numbers if float(n).is_integer()}


def reconcile(
    df: pd.DataFrame,
    expected: Expectation,
    table: str = "cleaned",
    diverted: Sequence[ErrorRecord] = (),
    objects_left_out: int = 0,
) -> Reconciliation:
    """Rows and ids in `df` against what was produced; `diverted` records went to the
    error prefix, so they are accounted for rather than lost. They are counted one by one:
    a beer that failed twice stands for two produced records. With `objects_left_out` of
    the table not in `df`, what is missing is unseen, not lost: it may be in those."""
    reasons = {e.beer_id: e.reason for e in diverted if e.beer_id is not None}
    key = schema.ID_COLUMN
    ids = integer_ids(df[key]) if key in df else set()
    result = Reconciliation(
        table, expected, rows=len(df), unique_ids=len(ids), diverted_records=len(diverted)
    )
    if expected.ids is not None:
        missing = expected.ids - ids
        result.diverted = {i: reasons[i] for i in sorted(missing) if i in reasons}
        result.lost_ids = sorted(missing - set(reasons))
        result.unexpected_ids = sorted(ids - expected.ids)
    else:
        result.diverted = reasons
    if expected.records is not None:
        result.missing_rows = max(expected.records - len(df) - len(diverted), 0)
    if objects_left_out:
        result.unseen_ids, result.lost_ids = result.lost_ids, []
        result.unseen_rows, result.missing_rows = result.missing_rows, 0
    return result


def diverted_records(
    info: TableInfo, target: Any = None, unreadable: dict[str, str] | None = None
) -> list[ErrorRecord]:
    """Every record of this table's delivery stream under errors/<folder>/ (objects that
    cannot be read go to `unreadable`, key -> why)."""
    from brewops.reconcile import error_records, explain, logged_reasons, logged_since

    tgt = resolve_target(target)
    bucket, prefix = split_s3_uri(info.location)
    folder = prefix.strip("/").rsplit("/", 1)[-1]
    found = error_records(aws_client(tgt, "s3"), bucket, [f"errors/{folder}/"], unreadable)
    if found:  # the error records say only that the function failed them; its log says why
        function = getattr(tgt, "outputs", {}).get("TransformFunctionName")
        explain(found, logged_reasons(aws_client(tgt, "logs"), function, logged_since(found)))
    return found


@dataclass
class Duplicates:
    rows: int
    unique_ids: int
    frame: pd.DataFrame  # one row per id seen more than once

    @property
    def surplus_rows(self) -> int:
        """Rows beyond the first per id: what deduplication removes."""
        return self.rows - self.unique_ids


def count_duplicates(df: pd.DataFrame) -> Duplicates:
    key = schema.ID_COLUMN
    with_id = df[df[key].notna()]
    grouped = with_id.groupby(key, sort=True)
    frame = grouped.size().rename("records").to_frame()
    if "ingested_at" in with_id:
        frame["first_ingested_at"] = grouped["ingested_at"].min()
        frame["last_ingested_at"] = grouped["ingested_at"].max()
    frame = frame[frame["records"] > 1].reset_index()
    return Duplicates(len(with_id), with_id[key].nunique(), frame)


# ---------------------------------------------------------------- data quality


@dataclass
class QualityReport:
    findings: pd.DataFrame  # one row per offending value: table, rule, column, id, value

    @property
    def summary(self) -> pd.DataFrame:
        """One row per rule and column: how many findings, and the offending ids."""
        cols = ["table", "rule", "column", "findings", "ids"]
        if self.findings.empty:
            return pd.DataFrame(columns=cols)
        grouped = self.findings.groupby(["table", "rule", "column"], sort=False)
        out = grouped["id"].agg(findings="size", ids=lambda s: sorted({int(i) for i in s.dropna()}))
        return out.reset_index()[cols]

    def counts(self) -> dict[str, int]:
        counted = self.findings.groupby("rule").size().to_dict()
        return {
            rule: int(counted.get(rule, 0)) for rule in (NULLS, RANGE, FG_ABOVE_OG, UNPARSEABLE)
        }

    def ids(self, rule: str, column: str | None = None) -> list[int]:
        hits = self.findings[self.findings["rule"] == rule]
        if column is not None:
            hits = hits[hits["column"] == column]
        return sorted({int(i) for i in hits["id"].dropna()})


# What validation must find in the real catalogue (punkapi-db 2.6.0): a beer's quirk when
# that beer is in the table, and the counts when the whole catalogue is.
KNOWN_QUIRKS = {(RANGE, "ph"): 317, (RANGE, "abv"): 24}
KNOWN_FG_ABOVE_OG = 13
KNOWN_NULLS = {"ibu": 5, "ebc": 6, "srm": 6, "ph": 2, "target_fg": 1, "target_og": 1}
CATALOGUE_IDS = frozenset(range(1, 326))


def known_quirks_missed(quality: QualityReport, present: Iterable[int]) -> str | None:
    """What the real catalogue's known quirks say validation should have found and it did
    not, in a table holding the beers `present`; None when it found them all."""
    present = set(present)
    missed = [
        f"beer {beer_id} not a {rule} finding of {column}"
        for (rule, column), beer_id in KNOWN_QUIRKS.items()
        if beer_id in present and beer_id not in quality.ids(rule, column)
    ]
    if present >= CATALOGUE_IDS:
        # counted over the catalogue's beers: newer ones past its ids have findings of
        # their own, no sign of another catalogue
        ours = quality.findings[quality.findings["id"].isin(CATALOGUE_IDS)]
        fg_above_og = ours["id"][ours["rule"] == FG_ABOVE_OG].nunique()
        if fg_above_og != KNOWN_FG_ABOVE_OG:
            missed.append(f"{fg_above_og} {FG_ABOVE_OG} findings, not {KNOWN_FG_ABOVE_OG}")
        nulls = ours[(ours["table"] == "cleaned") & (ours["rule"] == NULLS)]
        found = {
            column: count
            for column, count in nulls.groupby("column", sort=False).size().to_dict().items()
            # the counts known are of these columns: one added since has findings of its own
            if column in schema.CHALLENGE_COLUMNS
        }
        if found != KNOWN_NULLS:
            missed.append(f"nulls {found}, not {KNOWN_NULLS}")
    if not missed:
        return None
    return (
        "the real catalogue's known quirks are not what validation found: "
        + "; ".join(missed)
        + ". If the tables hold another catalogue, set real_catalogue = False"
    )


def known_quirks_unchecked(report: ValidationReport) -> str | None:
    """Why `known_quirks_missed` would have nothing to check in `report`, or None. The
    quirks are findings of the cleaned table's quality checks (the raw table gets none but
    unparseable values), asked of the beers it holds."""
    if "cleaned" not in report.frames:
        return (
            "the real catalogue's known quirks were not checked: they are findings of the "
            "cleaned table's data-quality checks, and the cleaned table was not read (validate "
            'it too: tables = ["cleaned", "raw"])'
        )
    present = integer_ids(report.latest[schema.ID_COLUMN])
    quirky = sorted(set(KNOWN_QUIRKS.values()))
    if not present & set(quirky) and not present >= CATALOGUE_IDS:
        return (
            "the real catalogue's known quirks were not checked: the cleaned table holds "
            f"{len(present)} of its {len(CATALOGUE_IDS)} beers, none of them a beer with a "
            f"known quirk (ids {', '.join(map(str, quirky))})"
        )
    return None


_FINDING_COLUMNS = ["table", "rule", "column", "id", "value", "check", "row"]


def _parse_numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _parse_whole_numbers(values: pd.Series) -> pd.Series:
    """A bigint read from JSON: 2.5 does not fit it (nor does reconciliation count it)."""
    numbers = _parse_numbers(values)
    return numbers.where(numbers.isna() | (numbers % 1 == 0))


def _parse_timestamps(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce")


_PARSERS = {
    "bigint": _parse_whole_numbers,
    "double": _parse_numbers,
    "timestamp": _parse_timestamps,
}


def _gravity_ok(df: pd.DataFrame) -> pd.Series:
    fg, og = df["target_fg"], df["target_og"]
    return fg.isna() | og.isna() | (fg <= og)


def quality_schemas(columns: Sequence[schema.Column] = schema.CLEANED_COLUMNS) -> tuple[Any, Any]:
    """Two pandera schemas: what must parse (on the values as read), then nulls and ranges
    (on the parsed values, so an unparseable value is not counted twice). The gravities are
    compared apart, by `gravity_rows`."""
    import pandera.pandas as pa

    parse_checks = {}
    rule_checks = {}
    for col in columns:
        parser = _PARSERS.get(col.glue_type)
        if parser is not None:
            parse_checks[col.name] = pa.Column(
                checks=pa.Check(
                    lambda s, parse=parser: s.isna() | parse(s).notna(),
                    name=UNPARSEABLE,
                ),
                nullable=True,
                required=False,
            )
        checks = []
        if col.minimum is not None and col.maximum is not None:
            checks.append(pa.Check.in_range(col.minimum, col.maximum))
        elif col.minimum is not None:
            checks.append(pa.Check.greater_than_or_equal_to(col.minimum))
        elif col.maximum is not None:
            checks.append(pa.Check.less_than_or_equal_to(col.maximum))
        # nullable=False makes pandera list every null: each one is a finding
        rule_checks[col.name] = pa.Column(checks=checks, nullable=False, required=False)
    parse_schema = pa.DataFrameSchema(parse_checks, name="parseable")
    rules_schema = pa.DataFrameSchema(rule_checks, name="quality")
    return parse_schema, rules_schema


def gravity_rows(parsed: pd.DataFrame, columns: Sequence[schema.Column]) -> list[int]:
    """The rows (by position) whose target_fg is above their target_og, in order.

    Not a pandera frame check: pandera reshapes the failures of one through a pandas
    unstack that loops over every failing row, most of the report's time once thousands of
    beers fail it."""
    if not {"target_fg", "target_og"} <= {c.name for c in columns}:
        return []
    try:
        ok = _gravity_ok(parsed.reset_index(drop=True))
    except (TypeError, ValueError):
        return []  # values that cannot be compared: no finding, as for a crashed check
    return [int(row) for row in ok.index[~ok.astype(bool)]]


def _rule_of(check: str) -> str:
    if check == "not_nullable":
        return NULLS
    if check.startswith(("in_range", "greater_than_or_equal_to", "less_than_or_equal_to")):
        return RANGE
    return check  # UNPARSEABLE and FG_ABOVE_OG are the checks' own names


def _failures(schema_: Any, df: pd.DataFrame) -> pd.DataFrame:
    import pandera.pandas as pa

    try:
        with warnings.catch_warnings():
            # pandera's own concat of failure cases trips a pandas deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            schema_.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(columns=["column", "check", "failure_case", "index"])


def quality_report(
    df: pd.DataFrame,
    table: str = "cleaned",
    columns: Sequence[schema.Column] = schema.CLEANED_COLUMNS,
    rules: Sequence[str] = (NULLS, RANGE, FG_ABOVE_OG, UNPARSEABLE),
) -> QualityReport:
    """Each value that breaks a data-quality rule, with the id of its row."""
    columns = [c for c in columns if c.name in df]
    frame = df.reset_index(drop=True)
    parse_schema, rules_schema = quality_schemas(columns)
    parsed = frame.copy()
    for col in columns:
        parser = _PARSERS.get(col.glue_type)
        if parser is not None and not (
            pd.api.types.is_numeric_dtype(parsed[col.name])
            or pd.api.types.is_datetime64_any_dtype(parsed[col.name])
        ):
            parsed[col.name] = parser(parsed[col.name])
    unparseable = _failures(parse_schema, frame)
    checked = _failures(rules_schema, parsed) if set(rules) - {UNPARSEABLE} else None
    broken = {
        (int(row), column)
        for row, column in unparseable[["index", "column"]].dropna().itertuples(index=False)
    }
    found = pd.concat(
        [f for f in (unparseable, checked) if f is not None and len(f)] or [unparseable],
        ignore_index=True,
    )
    # positional lookups in plain lists: one finding per value can be tens of thousands
    key = schema.ID_COLUMN
    ids: list[Any] = parsed[key].tolist() if key in parsed else [None] * len(parsed)

    def finding(rule: str, column: str, row: int, value: Any, check: str) -> dict[str, Any]:
        ident = ids[row]
        return {
            "table": table,
            "rule": rule,
            "column": column,
            "id": None if pd.isna(ident) else int(ident),
            "value": value,
            "check": check,
            "row": row,
        }

    rows = []
    for case in found.itertuples(index=False):
        if pd.isna(case.index):
            continue  # a failure of the whole column (e.g. a crash), not of a value
        row = int(case.index)
        rule = _rule_of(str(case.check))
        if rule not in rules:
            continue
        if rule == NULLS and (row, case.column) in broken:
            continue  # the value exists; it is counted as unparseable, not null
        rows.append(finding(rule, case.column, row, case.failure_case, str(case.check)))
    if FG_ABOVE_OG in rules:
        above = gravity_rows(parsed, columns)
        fg = parsed["target_fg"].take(above).tolist() if above else []
        og = parsed["target_og"].take(above).tolist() if above else []
        rows += [
            finding(FG_ABOVE_OG, "target_fg, target_og", row, f"{f} > {o}", FG_ABOVE_OG)
            for row, f, o in zip(above, fg, og, strict=True)
        ]
    findings = pd.DataFrame(rows, columns=_FINDING_COLUMNS)
    findings = findings.drop_duplicates(["table", "rule", "column", "row"])
    order = {rule: i for i, rule in enumerate(FINDING_RULES)}
    findings = findings.sort_values(
        ["rule", "column", "id"], key=lambda s: s.map(order) if s.name == "rule" else s
    ).reset_index(drop=True)
    findings = findings.astype({"id": "Int64", "row": "Int64"})
    return QualityReport(findings)


# ---------------------------------------------------------------- the whole run


@dataclass
class ValidationReport:
    """What `validate` found, section by section; `ok` when no gate failed (the findings of
    the quality checks are reported, not failed)."""

    target: str
    tables: dict[str, TableInfo] = field(default_factory=dict)
    schema: SchemaComparison | None = None
    partitions: dict[str, PartitionReport] = field(default_factory=dict)
    unreadable: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "object", "error"])
    )
    reconciliation: dict[str, Reconciliation] = field(default_factory=dict)
    duplicates: Duplicates | None = None
    quality: QualityReport = field(
        default_factory=lambda: QualityReport(pd.DataFrame(columns=_FINDING_COLUMNS))
    )
    # as read, all rows; of the raw table, only the columns its checks read (raw_checked_columns)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    # the cleaned table, latest record per id (empty, with its columns, when unreadable)
    latest: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=[name for name, _ in cleaned_columns()])
    )
    failures: list[GateFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def reconciliation_frame(self) -> pd.DataFrame:
        """One row per table validated: what was expected, found, lost and unexpected."""
        return pd.DataFrame([r.as_row() for r in self.reconciliation.values()])

    def findings_per_rule(self) -> dict[str, int]:
        counts = self.quality.counts()
        counts[DUPLICATES] = self.duplicates.surplus_rows if self.duplicates else 0
        return counts

    def gates(self) -> dict[str, int]:
        """How many failures each gate has (0 = passed)."""
        found = Counter(f.rule for f in self.failures)
        return {gate: found.get(gate, 0) for gate in GATES}

    def summary_frame(self) -> pd.DataFrame:
        """One row per gate (passed or failed) and per finding rule (reported), with counts."""
        rows = [
            {"rule": gate, "kind": "gate", "count": n, "status": "failed" if n else "passed"}
            for gate, n in self.gates().items()
        ]
        rows += [
            {"rule": rule, "kind": "finding", "count": n, "status": "reported"}
            for rule, n in self.findings_per_rule().items()
        ]
        return pd.DataFrame(rows)

    def failure_message(self) -> str:
        return "\n".join(str(f) for f in self.failures)

    def unreconciled(self) -> str | None:
        """Why lost records went unchecked in the tables read (nothing says what was
        produced), or None when each was reconciled. Only the tables validated count:
        with `tables=["raw"]` there is no cleaned reconciliation to ask for."""
        unchecked = [r for r in self.reconciliation.values() if not r.checked]
        if not unchecked:
            return None
        names = ", ".join(r.table for r in unchecked)
        return (
            f"nothing to reconcile {names} against ({unchecked[0].expectation.source}): "
            "run notebook 03 first, against this stack, or pass expected_ids"
        )

    def raise_for_gates(self) -> None:
        """Raise the typed error of the first failed gate; its message lists them all."""
        if not self.failures:
            return
        first = min(self.failures, key=lambda f: GATES.index(f.rule))
        error = _ERRORS[first.rule]
        raise error(f"validation failed:\n{self.failure_message()}", self.failures)

    def figures(self) -> dict[str, Any]:
        """Key figures for the run summary."""
        cleaned = self.frames.get("cleaned", pd.DataFrame())
        figures: dict[str, Any] = {
            f"findings_{_key(rule)}": n for rule, n in self.findings_per_rule().items()
        }
        figures.update({f"gate_{_key(g)}": n for g, n in self.gates().items()})
        figures.update(
            {
                "cleaned_rows": len(cleaned),
                "cleaned_unique_ids": len(self.latest),
                "partitions": len(self.partitions["cleaned"].frame)
                if "cleaned" in self.partitions
                else 0,
                "gates_passed": self.ok,
                # a separate check: the gates can pass with nothing to reconcile against
                "reconciliation_checked": self.unreconciled() is None,
            }
        )
        return figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "gates": self.gates(),
            "failures": [
                {"rule": f.rule, "table": f.table, "message": f.message, "rows": list(f.rows)}
                for f in self.failures
            ],
            "findings": self.findings_per_rule(),
            "schema": _records(self.schema.frame) if self.schema else [],
            "partitions": {
                name: {
                    "projection": p.projection,
                    "partitions": _records(p.frame),
                    "outside": _records(p.outside),
                    "config_issues": p.config_issues,
                }
                for name, p in self.partitions.items()
            },
            "unreadable": _records(self.unreadable),
            "reconciliation": _records(self.reconciliation_frame()),
            "duplicates": _records(self.duplicates.frame) if self.duplicates else [],
            "quality": _records(self.quality.summary),
            "notes": self.notes,
        }


def _key(rule: str) -> str:
    return rule.replace(" > ", "_above_").replace(" ", "_")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def raw_checked_columns(info: TableInfo) -> list[str]:
    """The raw table's columns its checks read: the ids (counts, duplicates, reconciliation)
    and the values `quality_report` parses. Its nested fields, most of a record, none."""
    parsed = {c.name for c in schema.CLEANED_COLUMNS if c.glue_type in _PARSERS}
    return [name for name, _ in info.columns if name == schema.ID_COLUMN or name in parsed]


def checked_tables(tables: Sequence[str]) -> list[TableName]:
    """`tables` as a list of table names, or a ValueError saying which names there are:
    validating no table would pass every gate having checked nothing."""
    if isinstance(tables, str):  # "cleaned" would be read letter by letter
        tables = [tables]
    names = list(tables)
    unknown = [t for t in names if t not in TABLE_OUTPUTS]
    if unknown or not names:
        raise ValueError(
            f"tables must list one or more of {', '.join(map(repr, TABLE_OUTPUTS))}, not {names!r}"
        )
    return cast(list[TableName], names)


def validate(
    target: Any = None,
    *,
    expected: Expectation | Iterable[int] | int | None = None,
    tables: Sequence[str] = ("cleaned", "raw"),
    engine: str | None = None,
    now: datetime | None = None,
) -> ValidationReport:
    """Run every check; never raises for a failed gate (see `ValidationReport.raise_for_gates`).

    `expected` is what was produced: an `Expectation`, a set of ids, a number of records, or
    None to take it from notebook 03's recorded figures. `engine` is how rows are read:
    "athena" (the AWS default) or "s3" (Glue + S3, the local default).
    """
    tables = checked_tables(tables)
    tgt = resolve_target(target)
    name = getattr(tgt, "name", "local")
    engine = engine or ("athena" if name == "aws" else "s3")
    report = ValidationReport(target=name)
    expectation = as_expectation(expected, name, getattr(tgt, "stack_id", None))
    if expectation.known:
        report.notes.append(f"what was produced comes from {expectation.source}")
    else:
        report.notes.append(
            f"nothing to reconcile against: no produced records or ids in {expectation.source}"
        )
    unreadable_rows: list[dict[str, str]] = []
    for table in tables:
        _validate_table(report, tgt, table, expectation, engine, now, unreadable_rows)
    report.unreadable = pd.DataFrame(unreadable_rows, columns=["table", "object", "error"])

    if "cleaned" in report.frames:
        cleaned = report.frames["cleaned"]
        report.duplicates = count_duplicates(cleaned)
        report.latest = latest_per_id(cleaned)
        report.quality = quality_report(report.latest, "cleaned")
    if "raw" in report.frames:
        # Parquet types make the cleaned values parseable by construction; JSON does not
        raw = report.frames["raw"]
        raw_report = quality_report(raw, "raw", rules=(UNPARSEABLE,))
        malformed = pd.DataFrame(
            [
                {
                    "table": "raw",
                    "rule": UNPARSEABLE,
                    "column": "(line)",
                    "id": pd.NA,
                    "value": line,
                    "check": "malformed JSON, skipped by the SerDe",
                    "row": pd.NA,
                }
                for line in report.frames["raw"].attrs.get("malformed_lines", [])
            ],
            columns=_FINDING_COLUMNS,
        ).astype({"id": "Int64", "row": "Int64"})
        parts = [f for f in (report.quality.findings, raw_report.findings, malformed) if len(f)]
        if parts:
            findings = pd.concat(parts, ignore_index=True)
            findings["id"] = findings["id"].astype("Int64")
            report.quality = QualityReport(findings)
        if "cleaned" in report.frames:
            key = schema.ID_COLUMN
            dropped = sorted(integer_ids(raw[key]) - integer_ids(report.latest[key]))
            if dropped:
                report.notes.append(
                    f"ids in raw but not in cleaned (dropped by the transform): {listing(dropped)}"
                )
    return report


def _validate_table(
    report: ValidationReport,
    tgt: Any,
    table: TableName,
    expectation: Expectation,
    engine: str,
    now: datetime | None,
    unreadable_rows: list[dict[str, str]],
) -> None:
    fail = report.failures.append
    try:
        info = describe_table(table, tgt)
    except UnreadableTableError as exc:
        fail(GateFailure(UNREADABLE, table, str(exc)))
        return
    report.tables[table] = info
    try:
        objects = list_table_objects(info, tgt, now=now)
    except UnreadableTableError as exc:
        fail(GateFailure(UNREADABLE, table, str(exc)))
        return
    partitions = check_partitions(info, objects, now=now)
    report.partitions[table] = partitions
    if not partitions.outside.empty:
        listed = [f"{o} ({r})" for o, r in partitions.outside[["object", "reason"]].values]
        fail(
            GateFailure(
                PARTITION_LAYOUT,
                table,
                f"{len(listed)} object(s) outside the partition layout, invisible to the "
                f"table: {listing(listed, 10)}",
                tuple(partitions.outside["object"]),
            )
        )
    if partitions.config_issues:
        fail(GateFailure(PARTITION_LAYOUT, table, "; ".join(partitions.config_issues)))

    inside = [o for o in objects if o.in_layout]
    excluded: set[str] = set()
    if table == "cleaned":
        schemas, errors = read_parquet_schemas(inside, tgt) if info.is_parquet else ({}, {})
        for uri, error in errors.items():
            unreadable_rows.append({"table": table, "object": uri, "error": error})
        if errors:
            fail(
                GateFailure(
                    UNREADABLE,
                    table,
                    f"{len(errors)} object(s) cannot be read as Parquet: "
                    + listing([f"{u} ({e})" for u, e in errors.items()], 5),
                    tuple(errors),
                )
            )
        report.schema = compare_schema(info, schemas)
        if report.schema.drifts:
            fail(
                GateFailure(
                    SCHEMA_DRIFT,
                    table,
                    "; ".join(str(d) for d in report.schema.drifts),
                    tuple(sorted({d.column for d in report.schema.drifts})),
                )
            )
        # an object whose types differ from the others breaks every query; read the rest
        want = expected_schema()
        excluded = set(errors) | {
            uri
            for uri, cols in schemas.items()
            if any(want.get(c, t) != t for c, t in cols.items())
        }
        if excluded - set(errors):
            report.notes.append(
                f"{len(excluded - set(errors))} object(s) with drifted types left out of the "
                "counts and quality checks"
            )

    # the raw table's nested fields are most of each record and no check reads them
    columns = raw_checked_columns(info) if table == "raw" else None
    try:
        if engine == "athena":
            frame = read_table(table, tgt, engine="athena", columns=columns)
        else:
            kept = [o for o in inside if o.uri not in excluded]
            frame = read_objects(info, kept, tgt, columns)
    except UnreadableTableError as exc:
        for uri in exc.objects:
            unreadable_rows.append({"table": table, "object": uri, "error": str(exc)})
        fail(GateFailure(UNREADABLE, table, str(exc), tuple(exc.objects)))
        return
    report.frames[table] = frame
    diverted: list[ErrorRecord] = []
    unreadable_errors: dict[str, str] = {}
    try:
        diverted = diverted_records(info, tgt, unreadable_errors)
    except Exception as exc:  # the error objects only explain losses; never block on them
        report.notes.append(f"errors/ of {table} not read: {exc}")
    if unreadable_errors:
        report.notes.append(
            f"{len(unreadable_errors)} object(s) under errors/ of {table} cannot be read: "
            + listing([f"{k} ({why})" for k, why in unreadable_errors.items()], 5)
        )
    reconciliation = reconcile(frame, expectation, table, diverted, len(excluded))
    if reconciliation.unseen:
        missing = (
            f"{len(reconciliation.unseen_ids)} of {len(expectation.ids or ())} produced ids are"
            if reconciliation.unseen_ids
            else f"{reconciliation.unseen_rows} of {expectation.records} produced records are"
        )
        report.notes.append(
            f"lost records of {table} not checked: {missing} not in the objects read, and the "
            f"{len(excluded)} object(s) left out (unreadable, or of drifted types) may hold them"
        )
    if reconciliation.diverted:
        report.notes.append(
            f"{len(reconciliation.diverted)} {table} record(s) went to the error prefix: "
            + listing([f"id {i} ({r})" for i, r in reconciliation.diverted.items()], 5)
        )
    report.reconciliation[table] = reconciliation
    lost = reconciliation.failure()
    if lost:
        fail(lost)


def run(target: Any = None, **kwargs: Any) -> ValidationReport:
    """`validate`, then raise the typed error of a failed gate."""
    report = validate(target, **kwargs)
    report.raise_for_gates()
    return report
