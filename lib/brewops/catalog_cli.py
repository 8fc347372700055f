"""`brewops data`: get, crawl or synthesise a Punk API catalogue."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from brewops.catalog import CatalogError
from brewops.progress_option import PROGRESS_OPTION
from brewops.punkapi import API_VERSIONS

OUT_OPTION = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Catalogue file to write (JSON array of beers, v2 shape).",
)
CATALOG_OPTION = click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue file to read (v2 or v3 shape). Default: the real catalogue.",
)


def _echo_written(path: Path) -> None:
    """Print the path written last, unless it is this stdout (`--out /dev/stdout`), where
    the line would follow the catalogue's JSON."""
    try:
        if os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(path)):
            return
    except (OSError, ValueError):  # no stdout file (a test runner's), or a path gone
        pass
    click.echo(str(path))


@click.group(help="Get, crawl or synthesise a Punk API catalogue.")
def data() -> None:
    pass


@data.command(
    help="""Fetch the real catalogue (npm punkapi-db@2.6.0, sha256-checked) into the cache.

    The last line printed is the path of the catalogue file.
    """
)
@click.option("--force", is_flag=True, help="Fetch again even if a good copy is cached.")
def fetch(force: bool) -> None:
    from brewops.catalog import fetch_catalog

    try:
        path = fetch_catalog(force=force)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))


@data.command(help="Snapshot a live Punk API into a catalogue file (v2 shape), page by page.")
@click.option("--url", "base_url", required=True, help="Base URL with version, e.g. http://host/v2")
@click.option(
    "--api-version",
    type=click.Choice(API_VERSIONS, case_sensitive=False),
    help="Punk API version. Default: the URL's last segment (…/v2 or …/v3), else v2.",
)
@OUT_OPTION
@click.option(
    "--per-page",
    type=int,
    default=80,
    show_default=True,
    help="Beers asked for per request (v2 takes 1-80, v3 10-80).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries per request after a timeout, a broken or non-JSON answer, a 429 or a 5xx.",
)
@PROGRESS_OPTION
def crawl(
    base_url: str,
    api_version: str | None,
    out: Path,
    per_page: int,
    timeout: float,
    retries: int,
    progress: bool,
) -> None:
    from brewops.catalog import write_catalog
    from brewops.punkapi.client import PunkApiClient, api_version_of
    from brewops.punkapi.errors import PunkApiError, PunkApiUrlError

    api_version = api_version or api_version_of(base_url)
    try:
        client = PunkApiClient(base_url, api_version, timeout=timeout, retries=retries)
    except PunkApiUrlError as exc:  # not http(s)://HOST…, or with spaces
        raise click.BadParameter(str(exc), param_hint="'--url'") from exc
    try:
        beers = list(client.iter_beers(per_page=per_page, progress=progress))
    except PunkApiError as exc:
        raise click.ClickException(f"Crawl of {base_url} failed: {exc}") from exc
    ids = [b["id"] for b in beers]
    if len(set(ids)) != len(ids):
        raise click.ClickException(f"{base_url} served duplicate ids; nothing written.")
    path = write_catalog(sorted(beers, key=lambda b: b["id"]), out)
    click.echo(f"{len(beers)} beers from {base_url} ({client.requests_made} requests)", err=True)
    _echo_written(path)


@data.command(
    help="Write N synthetic beers (real ones resampled, new ids, jittered numbers), streaming."
)
@click.option("--n", "count", type=click.IntRange(min=0), required=True, help="Number of beers.")
@OUT_OPTION
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the resampling and jitter."
)
@click.option(
    "--jitter",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Relative std dev.",
)
@CATALOG_OPTION
def synth(count: int, out: Path, seed: int, jitter: float, catalog: Path | None) -> None:
    from brewops.synth import synthesize

    try:
        report = synthesize(count, out, seed=seed, catalog=catalog, jitter=jitter)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{report.beers} beers from {report.source_beers} (seed {report.seed})", err=True)
    _echo_written(report.path)
