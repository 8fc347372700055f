"""Notebook 04's data-quality checks and plots on a large table: time and memory.

    .venv/bin/python benchmarks/validation.py [--beers 32500] [--catalog FILE] [--no-plots]
        [--raw-columns checked|all|none]

First the raw table's read: the synthetic beers (`brewops.synth`: real ones resampled,
numbers jittered, so many values fall outside the plausible ranges) as one GZIP NDJSON
object, as Firehose delivers them, in an in-process moto S3, read by `tables.read_objects`:

- raw_read_seconds: the read, of the columns `validate` checks (`--raw-columns checked`),
  or of every column, nested recipes too (`all`, as notebook 05 reads it); `none` skips it.
- raw_read_peak_rss_mb: peak resident memory of this process once the raw table is read.

Then builds the cleaned table's frame in memory, as `brewops.tables` reads it (the
transform's `clean_beer` on the same beers), and runs what `validate` and notebook 04 do
with it:

- latest_seconds: `latest_per_id`, the deduplicated view.
- quality_seconds: `quality_report` (pandera: nulls, ranges, unparseable values; and
  target_fg above target_og), pandera's import excluded; findings: how many it reports.
- distributions_seconds, gravities_seconds: `plot_distributions` and `plot_gravities`,
  drawn once (Agg); skipped with `--no-plots`.
- peak_rss_mb: peak resident memory of this process.

No emulator: the Glue calls of `validate` and the cleaned table's S3 reads are left out.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--beers", type=int, default=32_500, help="beers in the table (default: 32500)"
    )
    parser.add_argument(
        "--catalog", help="catalogue to resample (default: the downloaded punkapi-db file)"
    )
    parser.add_argument(
        "--no-plots", dest="plots", action="store_false", help="skip the two figures"
    )
    parser.add_argument(
        "--raw-columns",
        choices=["checked", "all", "none"],
        default="checked",
        help="raw table columns read: those validate checks, all of them, or no raw read",
    )
    args = parser.parse_args()
    if args.beers < 1:
        parser.error("--beers must be at least 1")

    from brewops.catalog import CatalogError, load_catalog

    try:
        catalogue = load_catalog(args.catalog)
    except CatalogError as error:  # its message says what to do
        parser.error(str(error))
    # after the catalogue: a refusal need not wait seconds for these to import
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import pandera.pandas  # noqa: F401  (imported here so its import is not timed below)

    from brewops import tables, validation, validation_plots
    from brewops.synth import iter_synthetic_beers
    from brewops.transform import clean_beer

    figures: dict[str, object] = {}
    if args.raw_columns != "none":
        figures.update(_read_raw(catalogue, args.beers, args.raw_columns == "all"))

    ingested_at = "2026-11-26 15:04:05.000"
    rows = [clean_beer(b, ingested_at) for b in iter_synthetic_beers(catalogue, args.beers)]
    frame = tables.typed(pd.DataFrame(rows), tables.cleaned_columns())
    print(f"{len(frame):,} rows in the cleaned table", flush=True)

    started = time.perf_counter()
    latest = tables.latest_per_id(frame)
    latest_seconds = time.perf_counter() - started

    started = time.perf_counter()
    quality = validation.quality_report(latest, "cleaned")
    quality_seconds = time.perf_counter() - started
    print(f"{len(quality.findings):,} findings in {quality_seconds:.1f} s", flush=True)

    figures = {
        **figures,
        "beers": len(frame),
        "latest_seconds": round(latest_seconds, 2),
        "quality_seconds": round(quality_seconds, 2),
        "findings": len(quality.findings),
    }
    if args.plots:
        for name in ("distributions", "gravities"):
            started = time.perf_counter()
            figure = getattr(validation_plots, f"plot_{name}")(latest)
            figure.canvas.draw()
            seconds = time.perf_counter() - started
            matplotlib.pyplot.close(figure)
            print(f"plot_{name} drawn in {seconds:.1f} s", flush=True)
            figures[f"{name}_seconds"] = round(seconds, 2)

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures["peak_rss_mb"] = round(peak_kib / 1024, 1)
    print(json.dumps(figures))


def _read_raw(catalogue: list, beers: int, every_column: bool) -> dict[str, object]:
    """The raw table of `beers` synthetic beers read from an in-process S3: seconds, peak RSS."""
    import gzip
    import os
    from types import SimpleNamespace

    import boto3
    from moto import mock_aws

    from brewops import validation
    from brewops.infra import load_template
    from brewops.producer import serialise_beer
    from brewops.synth import iter_synthetic_beers
    from brewops.tables import TableInfo, list_table_objects, read_objects

    template = load_template()["Resources"]["RawTable"]["Properties"]["TableInput"]
    storage = template["StorageDescriptor"]
    info = TableInfo(
        database="brewops",
        name=template["Name"],
        location="s3://brewops-benchmark/raw/",
        columns=tuple((c["Name"], c["Type"].lower()) for c in storage["Columns"]),
        partition_keys=(("ingest_date", "string"),),
        parameters={"projection.enabled": "false"},
        input_format=storage["InputFormat"],
        serde=storage["SerdeInfo"]["SerializationLibrary"],
        serde_parameters=storage["SerdeInfo"]["Parameters"],
    )
    body = gzip.compress(
        b"".join(serialise_beer(b) for b in iter_synthetic_beers(catalogue, beers))
    )
    # the in-process S3 only: the caller's profile or endpoint would send the calls elsewhere
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="brewops-benchmark")
        key = "raw/ingest_date=2026-11-26/brewops-raw-dev-1-2026-11-26-15-04-05-benchmark.gz"
        s3.put_object(Bucket="brewops-benchmark", Key=key, Body=body)
        del body
        target = SimpleNamespace(name="local", session=session)
        objects = list_table_objects(info, target)
        columns = None if every_column else validation.raw_checked_columns(info)
        started = time.perf_counter()
        raw = read_objects(info, objects, target, columns)
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{len(raw):,} rows of the raw table read in {seconds:.1f} s", flush=True)
    return {
        "raw_columns": len(raw.columns),
        "raw_read_seconds": round(seconds, 2),
        "raw_read_peak_rss_mb": round(peak_kib / 1024, 1),
    }


if __name__ == "__main__":
    main()
