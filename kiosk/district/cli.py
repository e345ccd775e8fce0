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
@click.option("--push/--no-push", default=True, show_default=True,
              help="Then push the roster, events, thresholds and balances to the stations pulled.")
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="District events to send (TOML [[events]] or JSON); without it, stations keep theirs.")
@click.option("--thresholds", help="Star thresholds in hours for every station, e.g. 100,300,600,1000,1500.")
def pull_command(stations_file: Path, db_url: str | None, parallel: int, page_size: int, retries: int, push: bool,
                 events_file: Path | None, thresholds: str | None):
    """Pull every station's changes into the district database, then push (unless --no-push).

    Exit 1 if any station failed (pull or push).
    """
    from .pull import pull_all, summary

    store, stations, extra = _setup(stations_file, db_url, parallel, events_file, thresholds)
    try:
        with store.lock():
            results = pull_all(store, stations, parallel=parallel, limit=page_size, retries=retries)
            click.echo(summary(results))
            pushed = None
            if push:
                from .push import push_all
                from .push import summary as push_summary

                pushed = push_all(store, stations, only={r.station for r in results if r.ok}, parallel=parallel,
                                  retries=retries, **extra)
                click.echo(push_summary(pushed))
                # What the batches changed at the stations (the batch in force, roster rows) comes
                # back now rather than tomorrow, so a second run finds nothing new.
                sent = {r.station for r in pushed if any(b.status == "acked" and not b.unchanged for b in r.batches)}
                again = pull_all(store, [c for c in stations if c.name in sent], parallel=parallel, limit=page_size,
                                 retries=retries)
                if again:
                    click.echo(f"after the push: {sum(r.items for r in again)} item(s) pulled back from "
                               f"{len(again)} station(s), {sum(not r.ok for r in again)} failed")
                results += [r for r in again if not r.ok]
    except _lock_busy() as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    finally:
        store.dispose()
    ok = all(r.ok for r in results) and (pushed is None or all(r.ok for r in pushed))
    sys.exit(0 if ok else 1)


@district_group.command("push")
@click.option("--stations", "stations_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML or JSON list of stations: name, url, key.")
@click.option("--db", "db_url", default=lambda: os.environ.get("KIOSK_DISTRICT_DB"),
              help="SQLAlchemy URL of the district database; default $KIOSK_DISTRICT_DB.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--retries", default=4, show_default=True, type=click.IntRange(0, 20))
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="District events to send (TOML [[events]] or JSON); without it, stations keep theirs.")
@click.option("--thresholds", help="Star thresholds in hours for every station, e.g. 100,300,600,1000,1500.")
def push_command(stations_file: Path, db_url: str | None, parallel: int, retries: int, events_file: Path | None,
                 thresholds: str | None):
    """Push the roster, events, thresholds and balances from what was pulled; exit 1 on a failure."""
    from .push import push_all, summary

    store, stations, extra = _setup(stations_file, db_url, parallel, events_file, thresholds)
    try:
        with store.lock():
            results = push_all(store, stations, parallel=parallel, retries=retries, **extra)
    except _lock_busy() as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    finally:
        store.dispose()
    click.echo(summary(results))
    sys.exit(0 if all(r.ok for r in results) else 1)


def _lock_busy():
    from .store import LockBusy

    return LockBusy


def _setup(stations_file: Path, db_url: str | None, parallel: int, events_file: Path | None,
           thresholds: str | None):
    from .pull import StationsFileError, load_stations
    from .push import EventsFileError, load_events, parse_thresholds
    from .store import Store

    if not db_url:
        raise click.UsageError("give --db URL or set KIOSK_DISTRICT_DB")
    try:
        stations = load_stations(stations_file)
        extra = {"events": load_events(events_file) if events_file else None,
                 "thresholds": parse_thresholds(thresholds) if thresholds else None}
    except (StationsFileError, EventsFileError, OSError) as e:
        raise click.ClickException(str(e)) from e
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--thresholds") from e
    store = Store(db_url, pool_size=parallel)
    store.create()
    return store, stations, extra
