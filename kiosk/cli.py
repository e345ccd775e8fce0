"""The `kiosk` command: serve, init, demo, create-manager, backup, sync-key."""

import getpass
import sqlite3
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .db import db


def _upgrade() -> str:
    """Create or upgrade the schema with the migrations; return the revision now in force."""
    from alembic.runtime.migration import MigrationContext
    from flask_migrate import upgrade

    from . import MIGRATIONS, init_migrate

    init_migrate(current_app)
    upgrade(directory=MIGRATIONS)
    from . import events

    events.ensure_station()
    db.session.commit()
    from . import sync

    sync.after_upgrade(current_app)
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _needs_upgrade() -> bool:
    """Cheap check at start, without loading Alembic: is the database at SCHEMA_HEAD?"""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from .models import SCHEMA_HEAD

    try:
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() != SCHEMA_HEAD
    except OperationalError:  # no table yet: a new database
        return True


@click.command("init")
@with_appcontext
def init_command():
    """Create the database, or upgrade it to the newest schema keeping its data."""
    rev = _upgrade()
    click.echo(f"database ready at {db.engine.url.render_as_string(hide_password=True)} (schema {rev})")


@click.command("demo")
@click.option("--reset", is_flag=True, help="Remove all events and categories first.")
@click.option("--station", "which", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Which of three demo stations of the district (own code, volunteers and mobiles).")
@with_appcontext
def demo_command(reset: bool, which: int):
    """Load demo data from Gulou District (events over two weeks around today) and a demo manager."""
    from . import demo

    _upgrade()
    password = demo.load(reset=reset, which=which)
    db.session.commit()
    name, code, prefix, _names = demo.STATIONS[which]
    click.echo(f"demo data loaded: station {name} ({code}), events over two weeks around today, "
               f"volunteers {prefix}0001-{prefix}0008 with PIN 258369")
    if password:
        click.echo(f"demo manager: username 'demo', password '{password}' (also in instance/demo-manager.txt)")


@click.command("create-manager")
@click.argument("username")
@click.option("--name", "display_name", default="", help="The name shown in the audit trail.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_manager_command(username: str, display_name: str, password_stdin: bool):
    """Add a station manager who logs in at /manage."""
    from . import accounts
    from .db import begin_write
    from .errors import InvalidInput

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise click.ClickException("the two passwords differ")
    begin_write()
    try:
        accounts.create_manager("cli", username, password, display_name)
    except InvalidInput as e:
        db.session.rollback()
        raise click.ClickException(str(e.message)) from e
    db.session.commit()
    click.echo(f"manager {username} created")


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_command(target: Path):
    """Copy the live database safely (SQLite's backup API) into TARGET."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        raise click.ClickException("backup only handles the station's SQLite database")
    if target.exists():
        raise click.ClickException(f"{target} exists; choose a new file name")
    src = sqlite3.connect(url.database)
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    from . import sync

    sync.mark_copy(target)  # restoring this copy must be detectable (a new epoch, kiosk/sync.py)
    ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
    dst.close()
    src.close()
    if ok != "ok":
        raise click.ClickException(f"backup written to {target} but integrity_check says: {ok}")
    click.echo(f"backup written to {target} (integrity_check: {ok})")


@click.command("sync-key")
@with_appcontext
def sync_key_command():
    """Issue or rotate the key the district signs its requests with; prints it once."""
    from . import sync
    from .db import begin_write

    begin_write()
    secret = sync.rotate_key("cli")
    db.session.commit()
    click.echo("new sync key (give it to the district; the old key no longer works):")
    click.echo(secret)


@click.command("tidy")
@with_appcontext
def tidy_command():
    """Close check-ins left open after their event (unconfirmed, for the manager), expire
    pickups not collected in time (points and stock return), and compact the change log (drop
    states superseded by a newer one). Run it nightly from a timer."""
    from . import changelog, checkins, rewards
    from .clock import now
    from .db import begin_write

    begin_write()
    closed = checkins.close_overdue(now())
    expired = rewards.expire_unclaimed(now())
    db.session.commit()
    dropped = changelog.compact(begin_write, db.session.commit)
    click.echo(f"closed {closed} open check-ins, expired {expired} uncollected redemptions, "
               f"compacted the change log by {dropped} superseded rows")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int, threads: int):
    """Serve the kiosk with waitress, upgrading the database first if needed."""
    from waitress import serve

    app = current_app._get_current_object()
    if _needs_upgrade():
        _upgrade()
    if db.engine.dialect.name == "sqlite":
        # Query-planner statistics, bounded so a big database doesn't slow the start.
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=400")
            conn.exec_driver_sql("PRAGMA optimize")
    db.session.remove()
    click.echo(f"kiosk serving on http://{host}:{port}/ (manager: http://{host}:{port}/manage/)")
    sys.stdout.flush()
    serve(app, host=host, port=port, threads=threads, ident="kiosk", channel_timeout=30)


from .district.cli import district_group  # noqa: E402 - the district's jobs (kiosk/district)

COMMANDS = [init_command, demo_command, create_manager_command, backup_command, sync_key_command, tidy_command,
            serve_command,
            district_group]


def init_app(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


@click.group()
@click.pass_context
def main(ctx):
    """The practice-station kiosk."""
    from flask.cli import ScriptInfo

    from . import create_app

    ctx.obj = ScriptInfo(create_app=lambda: create_app(), set_debug_flag=False)


for _command in COMMANDS:
    main.add_command(_command)

