"""SQLite as DESIGN.md §1 sets it: WAL, synchronous FULL, foreign keys, BEGIN IMMEDIATE writes."""

import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from kiosk import events
from kiosk.db import begin_write, db
from tests.conftest import FROZEN

pytestmark = pytest.mark.usefixtures("ctx")


def test_pragmas(app):
    conn = db.session.connection()
    assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 15000


def test_begin_write_holds_the_write_lock(app, tmp_path):
    begin_write()
    other = sqlite3.connect(tmp_path / "kiosk.sqlite3", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    db.session.rollback()
    other.execute("BEGIN IMMEDIATE")  # free again once we are done
    other.rollback()
    other.close()


def test_begin_write_refuses_pending_changes(app, make_category):
    cat = make_category("健康")
    cat.name = "changed"
    with pytest.raises(RuntimeError):
        begin_write()
    db.session.rollback()


def test_begin_write_ends_a_read_transaction_first(app, make_category):
    cat = make_category("健康")
    db.session.get(type(cat), cat.id)  # a read opens a deferred transaction
    begin_write()
    assert cat.name == "健康"  # reloaded inside the write transaction
    db.session.rollback()


def test_foreign_keys_are_enforced(app):
    begin_write()
    with pytest.raises(Exception, match="FOREIGN KEY"):
        db.session.execute(text(
            "INSERT INTO event (id, title, category_id, place, organiser, description, starts_at, ends_at,"
            " published, cancel_reason, version, created_at, updated_at) VALUES"
            " ('x', 't', 'missing', '', '', '', '2026-01-01 10:00', '2026-01-01 11:00', 1, '', 1,"
            " '2026-01-01', '2026-01-01')"))
    db.session.rollback()


def test_concurrent_writers_never_see_database_locked(app):
    """16 threads each writing 10 events through begin_write: no 'database is locked'."""
    flask_app = app
    errors, done = [], []

    def worker(n):
        with flask_app.app_context():
            try:
                for i in range(10):
                    begin_write()
                    # read-then-write inside the transaction, as real operations do
                    events.categories()
                    events.create_event("test", events.EventData(
                        title=f"活动 {n}-{i}", starts_at=FROZEN + timedelta(hours=i),
                        ends_at=FROZEN + timedelta(hours=i + 1)))
                    db.session.commit()
                    done.append(1)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(done) == 160
    assert db.session.execute(text("SELECT count(*) FROM event")).scalar() == 160


def test_migrations_build_the_models_schema(app):
    """The migrations and the models agree: autogenerate finds nothing to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, db.metadata)
    assert diff == []


def test_schema_head_constant_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from kiosk import MIGRATIONS
    from kiosk.models import SCHEMA_HEAD

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD
