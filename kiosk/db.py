"""The database handle and the SQLite settings every station relies on (DESIGN.md §1)."""

import sqlite3
import threading

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base, session_options={"autoflush": False})

_IMMEDIATE = "kiosk_begin_immediate"


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection, connection_record):
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Take transaction control away from pysqlite so that we emit BEGIN ourselves
    # (SQLAlchemy's documented recipe); then a write can start with BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    if conn.dialect.name != "sqlite":
        return
    if conn.get_execution_options().get(_IMMEDIATE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


# Writers in this process queue on a lock of their own before asking SQLite for its write lock:
# SQLite's busy handler sleeps between retries (up to 100 ms), which leaves its lock idle while
# waiters sleep; a threading.Lock wakes the next writer the moment the last one ends.
_write_lock = threading.Lock()
_HOLDS_LOCK = "kiosk_holds_write_lock"
WRITE_WAIT_SECONDS = 15


class Busy(Exception):
    """The station's database stayed busy longer than a person should wait."""


@event.listens_for(Session, "after_transaction_end")
def _release_write_lock(session, transaction):
    if transaction.parent is None and session.info.pop(_HOLDS_LOCK, False):
        _write_lock.release()


def begin_write():
    """Start this unit of work's write transaction with BEGIN IMMEDIATE.

    Deferred transactions upgrade to the write lock late and then fail with "database is
    locked" under concurrency (DESIGN.md §1), so every write path calls this before it reads
    what it checks. A read transaction already open (e.g. the login loader) is ended first;
    objects loaded in it are expired and reload inside the write transaction.
    """
    session = db.session()
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("begin_write() must come before any change in the session")
        session.commit()
    if db.engine.dialect.name != "sqlite":
        session.connection()
        return
    if not _write_lock.acquire(timeout=WRITE_WAIT_SECONDS):
        raise Busy()
    session.info[_HOLDS_LOCK] = True
    try:
        session.connection(execution_options={_IMMEDIATE: True})
    except BaseException:
        if session.info.pop(_HOLDS_LOCK, False):
            _write_lock.release()
        raise
