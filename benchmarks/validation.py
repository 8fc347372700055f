"""Notebook 04's data-quality checks and plots on a large cleaned table: time and memory.

    .venv/bin/python benchmarks/validation.py [--beers 32500] [--catalog FILE] [--no-plots]

Builds the cleaned table's frame in memory, as `brewops.tables` reads it (the transform's
`clean_beer` on synthetic beers from `brewops.synth`: real ones resampled, numbers
jittered, so many values fall outside the plausible ranges), then runs what `validate`
and notebook 04 do with it:

- latest_seconds: `latest_per_id`, the deduplicated view.
- quality_seconds: `quality_report` (pandera: nulls, ranges, unparseable values; and
  target_fg above target_og), pandera's import excluded; findings: how many it reports.
- distributions_seconds, gravities_seconds: `plot_distributions` and `plot_gravities`,
  drawn once (Agg); skipped with `--no-plots`.
- peak_rss_mb: peak resident memory of this process.

No emulator: the S3 reads and Glue calls of `validate` are left out. The last line
printed is one JSON object with the figures.
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
    args = parser.parse_args()
    if args.beers < 1:
        parser.error("--beers must be at least 1")

    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import pandera.pandas  # noqa: F401  (imported here so its import is not timed below)

    from brewops import tables, validation, validation_plots
    from brewops.catalog import CatalogError, load_catalog
    from brewops.synth import iter_synthetic_beers
    from brewops.transform import clean_beer

    try:
        catalogue = load_catalog(args.catalog)
    except CatalogError as error:  # its message says what to do
        parser.error(str(error))
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


if __name__ == "__main__":
    main()
