"""`brewops validate`: check the Glue tables from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click


class GatesFailed(click.ClickException):
    exit_code = 1


def _ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        ids = [int(part) for part in text.replace("|", ",").split(",") if part.strip()]
    except ValueError as exc:
        raise click.BadParameter(
            f"ids must be integers: {exc}", param_hint="--expected-ids"
        ) from exc
    if any(beer_id < 1 for beer_id in ids):
        raise click.BadParameter(f"beer ids start at 1: {text}", param_hint="--expected-ids")
    return ids


@click.group(
    "validate",
    help="Validate the Glue tables: schema, partitions, counts, duplicates and data quality.",
)
def validate() -> None:
    pass


@validate.command(
    "run",
    help="""Run every check and exit non-zero if a gate fails (schema drift, unreadable data,
    objects outside the partition layout, lost records). Findings never fail the run.""",
)
@click.option(
    "--target",
    type=click.Choice(["local", "aws"]),
    default="local",
    show_default=True,
    help="local: the embedded AWS emulator; aws: the deployed stack (read through Athena).",
)
@click.option(
    "--figures",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Notebook 03's figures file (records and ids sent) to reconcile with. Default: "
    "build/figures/03_produce_to_kinesis.json, and when it gives no ids, the ids the `brewops "
    "stream` commands recorded in build/streaming/produced-ids-TARGET.json; each only if "
    "recorded against the target's current stack (build/ is $BREWOPS_BUILD_DIR if set). "
    "--expected-ids overrides both.",
)
@click.option("--expected-ids", metavar="1,2,3", help="Reconcile with these ids instead.")
@click.option(
    "--table",
    "tables",
    type=click.Choice(["cleaned", "raw"]),
    multiple=True,
    help="Validate only this table (repeatable; default both).",
)
@click.option(
    "--require-reconciliation/--no-require-reconciliation",
    default=True,
    show_default=True,
    help="Fail when nothing says what was produced (no figures, no ids, no --expected-ids).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the whole report as JSON, a failed gate too (`brewops schema "
    "validation_report` prints its JSON Schema).",
)
def run(
    target: str,
    figures: Path | None,
    expected_ids: str | None,
    tables: tuple[str, ...],
    require_reconciliation: bool,
    as_json: bool,
) -> None:
    from brewops import validation

    tgt = validation.resolve_target(target)
    ids = _ids(expected_ids)
    expected = (
        ids
        if ids is not None or figures is None
        else validation.expectation_from_figures(figures, getattr(tgt, "stack_id", None))
    )
    report = validation.validate(tgt, expected=expected, tables=tables or ("cleaned", "raw"))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(report)
    if not report.ok:
        raise GatesFailed(f"validation failed:\n{report.failure_message()}")
    if require_reconciliation and report.unreconciled():
        # a backfill alone leaves the local records in the stream: fill delivers them too
        produce = (
            "`brewops stream fill`"
            if target == "local"
            else "`brewops stream backfill --target aws` (Firehose delivers in a few minutes)"
        )
        raise GatesFailed(
            f"nothing to reconcile against, so lost records cannot be checked: run notebook 03 "
            f"or {produce} first, pass --expected-ids, or --no-require-reconciliation to skip "
            "the check"
        )


SHOWN_IDS = 6  # ids printed per data quality finding, before "and N more"


def _print_report(report) -> None:
    import pandas as pd

    from brewops.validation import listing

    with pd.option_context("display.width", 120, "display.max_colwidth", 60):
        if report.schema is not None:
            click.echo("Schema (brewops.schema / Glue / Parquet)")
            click.echo(report.schema.frame.to_string(index=False))
        for name, partitions in report.partitions.items():
            click.echo(f"\nPartitions of {name}")
            click.echo(
                partitions.frame.to_string(index=False) if len(partitions.frame) else "  none"
            )
            if len(partitions.outside):
                click.echo(partitions.outside.to_string(index=False))
        if report.reconciliation:
            click.echo("\nReconciliation")
            click.echo(report.reconciliation_frame().to_string(index=False))
        quality = report.quality.summary
        if len(quality):
            # pandas prints up to 100 items of a list whatever max_colwidth says: a few ids
            # keep each finding on one line when a large catalogue has thousands
            shown = quality.assign(ids=[listing(ids, SHOWN_IDS) for ids in quality["ids"]])
            click.echo("\nData quality findings")
            click.echo(shown.to_string(index=False))
        click.echo("\nRules")
        click.echo(report.summary_frame().to_string(index=False))
        for note in report.notes:
            click.echo(f"note: {note}")
