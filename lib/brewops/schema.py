"""The one definition of a cleaned beer record.

The Glue table in `infra/template.yaml`, the Firehose transform, the Parquet writer and the
data-quality rules are all derived from (or tested against) this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str
    glue_type: str  # Hive/Glue type name, as written in the template
    python_type: type
    comment: str
    minimum: float | None = None  # plausible range: values outside are reported, not dropped
    maximum: float | None = None
    nullable: bool = True  # False: the transform fails a record without it


# The field that names a record, in the source's records as in the cleaned table: the
# producer's partition key, and what reconcile, redrive and validation count records by.
# A positive integer (the bigint column of that name).
ID_COLUMN = "id"

CLEANED_COLUMNS: tuple[Column, ...] = (
    Column(ID_COLUMN, "bigint", int, "Punk API beer id", minimum=1, nullable=False),
    Column("name", "string", str, "Beer name", nullable=False),
    Column("abv", "double", float, "Alcohol by volume, %", 0, 20),
    Column("ibu", "double", float, "International Bitterness Units", 0, 300),
    Column("target_fg", "double", float, "Target final gravity (x1000)", 990, 1130),
    Column("target_og", "double", float, "Target original gravity (x1000)", 1000, 1200),
    Column("ebc", "double", float, "Colour, European Brewery Convention", 0, 600),
    Column("srm", "double", float, "Colour, Standard Reference Method", 0, 320),
    Column("ph", "double", float, "pH", 2.5, 7),
    Column(
        "ingested_at",
        "timestamp",
        str,
        "When the record entered the pipeline (UTC)",
        nullable=False,
    ),
)

# The nine columns of the original challenge, in order.
CHALLENGE_COLUMNS: tuple[str, ...] = tuple(c.name for c in CLEANED_COLUMNS[:9])

PARTITION_KEY = "ingest_date"  # string yyyy-MM-dd, from the Firehose prefix
PARTITION_GLUE_TYPE = "string"


def column(name: str) -> Column:
    for col in CLEANED_COLUMNS:
        if col.name == name:
            return col
    raise KeyError(name)


def glue_columns() -> list[dict[str, str]]:
    """Columns as the Glue API and the template spell them."""
    return [{"Name": c.name, "Type": c.glue_type, "Comment": c.comment} for c in CLEANED_COLUMNS]


def as_beer_ids(value: Any) -> list[int] | None:
    """`value` as a list of beer ids, or None when it is none: a string ("1,2") is
    iterable, but character by character; True is an int, but no id; ids start at 1."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        return None
    ids = list(value)
    if not all(isinstance(i, Integral) and not isinstance(i, bool) and int(i) >= 1 for i in ids):
        return None
    return [int(i) for i in ids]
