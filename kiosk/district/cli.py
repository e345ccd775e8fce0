"""`kiosk district ...`: the district's jobs (docs/district.md). Needs no station app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.group("district")
def district_group():
    """The district's side of the nightly sync (run at the district, not at a station)."""


@district_group.command("pull")
@click.option("--stations", "stations_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML or JSON list of stations: name, url, key.")
@click.option("--db", "db_url", default=lambda: os.environ.get("KIOSK_DISTRICT_DB"),
              help="SQLAlchemy URL of the district database (postgresql://… or sqlite:///…); "
                   "default $KIOSK_DISTRICT_DB.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Stations pulled at the same time.")
@click.option("--page-size", default=1000, show_default=True, type=click.IntRange(1, 5000),
              help="Changes per request.")
@click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a request after a network error or a 5xx (exponential backoff).")
def pull_command(stations_file: Path, db_url: str | None, parallel: int, page_size: int, retries: int):
    """Pull every station's changes into the district database; exit 1 if any station failed."""
    from .pull import StationsFileError, load_stations, pull_all, summary
    from .store import LockBusy, Store

    if not db_url:
        raise click.UsageError("give --db URL or set KIOSK_DISTRICT_DB")
    try:
        stations = load_stations(stations_file)
    except (StationsFileError, OSError) as e:
        raise click.ClickException(str(e)) from e
    store = Store(db_url, pool_size=parallel)
    try:
        store.create()
        with store.lock():
            results = pull_all(store, stations, parallel=parallel, limit=page_size, retries=retries)
    except LockBusy as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    finally:
        store.dispose()
    click.echo(summary(results))
    sys.exit(0 if all(r.ok for r in results) else 1)
