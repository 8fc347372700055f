"""`brewops api`: serve the Punk API locally."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import click

from brewops.catalog import CatalogError
from brewops.punkapi import API_VERSIONS


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """Why `serve` cannot listen on host:port, and what to give instead."""
    # socket.create_server adds the address to strerror; the message names it already
    reason = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror
    if error.errno == errno.EADDRINUSE:
        return (
            f"Cannot listen on {host}:{port}: the port is in use. Choose another --port "
            "(0 picks a free one)."
        )
    if isinstance(error, socket.gaierror) or error.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
        return (
            f"Cannot listen on {host}:{port}: {reason}. Give --host an address of "
            "this machine: 127.0.0.1 (the default, this machine only) or 0.0.0.0 (every "
            "interface)."
        )
    return f"Cannot listen on {host}:{port}: {reason}"


@click.group(help="Serve the Punk API locally (v2 or v3).")
def api() -> None:
    pass


@api.command(
    help="""Serve a catalogue on HOST:PORT until interrupted.

    Prints "Punk API VERSION serving <N> beers at http://HOST:PORT/VERSION" once listening,
    VERSION being the --api-version (v2 or v3).
    """
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue file (v2 or v3 shape). Default: the real catalogue, fetched if missing.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 listens on every interface.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--api-version",
    type=click.Choice(API_VERSIONS, case_sensitive=False),
    default="v2",
    show_default=True,
    help="v3 serves the same catalogue in the v3 contract, with its ids. The community v3 "
    "service has 415 newer beers, renumbered: do not rely on ids matching across versions.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=0),
    default=3600,
    show_default=True,
    help="Requests per client IP per hour (v2); 0 turns the limit and its headers off.",
)
@click.option("--rate-window", type=float, default=3600.0, show_default=True, hidden=True)
@click.option(
    "--fault-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of answers that are 500/503.",
)
@click.option(
    "--fault-latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Extra delay per answer, uniform between 0 and this many seconds.",
)
@click.option(
    "--fault-burst-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Chance per request that a burst of 429 answers starts.",
)
@click.option(
    "--fault-burst-length",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="429 answers in a row per burst, the first included.",
)
@click.option(
    "--fault-truncate-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of answers whose body is cut short of its Content-Length.",
)
@click.option(
    "--fault-seed",
    type=int,
    default=None,
    help="Seed for a replayable fault sequence. Default: none, a new sequence each run.",
)
@click.option(
    "--random-seed",
    type=int,
    default=None,
    help="Seed of the beers /beers/random answers with, for a replayable sequence. "
    "Default: none, a new sequence each run.",
)
@click.option("--verbose", is_flag=True, help="Log every request.")
# the local target binds the port itself and hands the socket over: no other program can
# take the port between its choice and the server's start
@click.option("--fd", type=int, default=None, hidden=True)
def serve(
    catalog: Path | None,
    host: str,
    port: int,
    api_version: str,
    rate_limit: int,
    rate_window: float,
    fault_error_rate: float,
    fault_latency: float,
    fault_burst_rate: float,
    fault_burst_length: int,
    fault_truncate_rate: float,
    fault_seed: int | None,
    random_seed: int | None,
    verbose: bool,
    fd: int | None,
) -> None:
    from brewops.punkapi.server import Faults, PunkApiServer

    faults = Faults(
        error_rate=fault_error_rate,
        latency=fault_latency,
        burst_rate=fault_burst_rate,
        burst_length=fault_burst_length,
        truncate_rate=fault_truncate_rate,
        seed=fault_seed,
    )
    try:
        server = PunkApiServer(
            catalog,
            api_version,
            host=host,
            port=port,
            rate_limit=rate_limit or None,
            rate_window=rate_window,
            faults=faults,
            random_seed=random_seed,
            verbose=verbose,
            fd=fd,
        )
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(cannot_listen(host, port, exc)) from exc

    click.echo(f"Punk API {api_version} serving {server.beer_count} beers at {server.url}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
