"""Notebook 04: validate the Glue tables notebook 03 filled."""

from common import build, code, md

build(
    "04_validate_glue_table",
    "Validate the Glue tables",
    overview="""
Checks what Firehose delivered, through the Glue catalog, the way the model will read it:

- **schema**: the package's definition of a cleaned record (`brewops.schema`), the Glue
  table's columns and every Parquet object's own schema must agree, column by column;
- **partitions**: the `ingest_date=` partitions in S3 against the table's partition
  projection; objects the table cannot see are listed with the reason;
- **counts**: rows reconciled with what notebook 03 produced; duplicates (the schedule
  produces random beers again) counted, and the deduplicated view (latest record per id)
  that later notebooks use;
- **data quality**: nulls, values outside the plausible ranges and unparseable values (with
  pandera), `target_fg` above `target_og`, as a table per rule with the offending ids, and as
  distributions with the out-of-range values marked.

Schema drift, unreadable data (including objects outside the partition layout) and lost
records fail the notebook. The catalogue's quirks (ph 79 on id 317, abv 55 on id 24, 13
beers with `target_fg` above `target_og`, the nulls) are findings: reported, never failing.
""",
    needs="""
The stack deployed (notebook 02) and filled (notebook 03; in Colab, whose runtime runs this
notebook alone, the cell after the parameters fills it the same way). Locally the tables are read
through Glue and S3 with awswrangler (there is no Athena in the emulator); with
`target = "aws"` through Athena, in the stack's workgroup.
""",
    costs="""
None locally. On AWS: Athena scans the two tables once (a few MB, well under a cent) plus
S3 list and GET requests.
""",
    parameters="""
from typing import Optional  # papermill reads `Optional[int]`, not `int | None`

target = "local"  # "local" (embedded emulator) or "aws"
expected_ids: Optional[list[int]] = None  # None: what notebook 03 produced; else a list of beer ids
tables = ["cleaned", "raw"]  # the tables to validate: "cleaned", "raw" or both
require_reconciliation = True  # fail when nothing says what was produced
real_catalogue = True  # the tables hold the real catalogue: its known quirks must show
""",
    cells=[
        code("""
import pandas as pd

from brewops import schema, summary, validation, validation_plots
from brewops import target as targets
from brewops.parameters import checked_flags

pd.set_option("display.max_colwidth", None)  # S3 URIs and ARNs in full, not cut at 50
checked_flags(require_reconciliation=require_reconciliation, real_catalogue=real_catalogue)
tgt = targets.use(target)
shown = ("BucketName", "GlueDatabaseName", "CleanedTableName", "RawTableName")
pd.Series({key: tgt.outputs[key] for key in (*shown, "AthenaWorkGroupName")})
"""),
        md("""
## Run every check

One call reads the catalog, lists the objects, reads each Parquet footer and the tables, and
applies the rules. Nothing is raised yet: the gates are asserted at the end, after the
report has been shown.
"""),
        code("""
report = validation.validate(tgt, expected=expected_ids, tables=tables)
cleaned_read = "cleaned" in report.frames  # the sections on the cleaned table need it
for failure in report.failures:
    print("FAILED", failure)
report.summary_frame()
"""),
        md("""
## Schema: `brewops.schema` vs the Glue table vs the Parquet objects

One row per column. When Parquet objects disagree among themselves, the column shows each
type with how many objects carry it.
"""),
        code("""
if report.schema is not None:
    print(f"{report.schema.objects_read} Parquet objects read")
    for drift in report.schema.drifts:
        print("DRIFT", drift)
    display(report.schema.frame)
"""),
        md("""
## Partitions

The projection configuration of each table, then its partitions as found in S3, then any
object the table cannot see (outside `ingest_date=yyyy-MM-dd/`, outside the projection
range, in a sub-folder, or a hidden name).
"""),
        code("""
pd.DataFrame({name: p.projection for name, p in report.partitions.items()})
"""),
        code("""
for name, partitions in report.partitions.items():
    print(f"{name}: {len(partitions.frame)} partition(s)")
    display(partitions.frame)
    if len(partitions.outside):
        print(f"{name}: objects outside the layout")
        display(partitions.outside)
    for issue in partitions.config_issues:
        print(f"{name}: {issue}")
"""),
        md("""
## Reconciliation

What was produced comes from notebook 03's recorded figures (`build/figures/`), or from the
ids the stream commands remembered, or from `expected_ids`. Records Firehose sent to the
error prefix are accounted for, not lost.
"""),
        code("""
for note in report.notes:
    print("note:", note)
report.reconciliation_frame()
"""),
        md("""
## Duplicates

Scheduled ticks produce random beers again, so an id can have several records; Kinesis and
Firehose, which deliver at least once, can add copies too. They are counted here, as
findings, not failures; `report.latest` keeps the latest record of each id, and that is
the view later notebooks use (`brewops.tables.latest_per_id`): the latest `ingested_at`
(when Kinesis took the record), then the latest `ingest_date`. The README's "Copies, order
and retention" says what that can and cannot tell apart.
"""),
        code("""
if report.duplicates is not None:
    print(
        f"{report.duplicates.rows} rows, {report.duplicates.unique_ids} ids, "
        f"{report.duplicates.surplus_rows} surplus rows"
    )
    display(report.duplicates.frame)
"""),
        md("""
## Data quality

Pandera checks from `brewops.schema`: nulls, the plausible range of each column, and values
that do not parse as their column type; then `target_fg` not above `target_og`, compared
row by row. One row per
rule and column with the offending ids, then every finding.
"""),
        code("""
report.quality.summary
"""),
        code("""
report.quality.findings
"""),
        md("""
## Distributions with the out-of-range values marked

Histograms of the values inside each column's plausible range (shaded); values outside
it are red triangles pinned to the edge of the axis on the side of the range they fall
outside, and listed from the top of the panel down on that side with the beer id and the
value. Then the gravities: a beer above the dashed diagonal claims to end its fermentation
heavier than it started it, which fermentation cannot do (the two figures often look swapped);
beers too close to label apart share one label.
"""),
        code("""
if cleaned_read:
    distributions = validation_plots.plot_distributions(report.latest)
"""),
        code("""
if cleaned_read:
    gravities = validation_plots.plot_gravities(report.latest)
"""),
        md("## Key figures"),
        code("""
figures = summary.record(notebook="04_validate_glue_table", **report.figures())
pd.Series(figures)
"""),
        md("""
## Gates

Schema drift, unreadable data (including objects outside the partition layout) and lost
records fail the notebook, with an error that names the rule and the columns, objects or
ids. Findings never do; on the real catalogue its known quirks must be among them. They are
findings of the cleaned table: without it (`tables = ["raw"]`), or without any beer that has
one, the check says it was skipped and why.
"""),
        code("""
report.raise_for_gates()
assert report.ok
if require_reconciliation:
    unreconciled = report.unreconciled()
    assert unreconciled is None, unreconciled
"""),
        code("""
if real_catalogue:
    unchecked = validation.known_quirks_unchecked(report)
    if unchecked:
        print("SKIPPED", unchecked)
    else:
        missed = validation.known_quirks_missed(
            report.quality, report.latest[schema.ID_COLUMN]
        )
        assert missed is None, missed
        print("the real catalogue's known quirks are among the findings")
"""),
        md("## Clean-up\n\nNothing to clean up: this notebook only reads."),
    ],
    reads_produced_data=True,
)
