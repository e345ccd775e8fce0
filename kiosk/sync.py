"""The station's side of the nightly sync (DESIGN.md §4): epoch, cursors, the export, the key.

The epoch rule. The epoch is a random id of this database's history; the district keys what it
stores by (station, epoch, seq), and a cursor from another epoch gets 409 "full resync". It is
minted when the database is created (the migration that adds the change log) and again
whenever the database may have been restored or moved, which is decided cheaply at every app
start by comparing the database with `instance/epoch`, a file holding the epoch and the highest
`seq` ever handed to the district:
- the database has no epoch yet (not migrated): nothing to do;
- the file is missing, or names another epoch (a database copied here, or a backup swapped in),
  or the database's highest `seq` is below what was already exported (rows the district holds
  are gone): mint a new epoch, in the database and in the file;
- otherwise keep it.
`kiosk backup` also gives the copy an epoch of its own, so a restored backup is always caught.
"""

import base64
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from . import audit, signing
from .clock import now
from .db import db
from .errors import DomainError
from .models import SCHEMA_VERSION, ChangeLog, Posting, Station, SyncKey, SyncNonce, SyncPull, SyncState

EPOCH_FILE = "epoch"
CURSOR_VERSION = "1"
DEFAULT_LIMIT, MAX_LIMIT = 1000, 5000
_mark_lock = threading.Lock()


class CursorInvalid(DomainError):
    status = 400
    message = _l("同步游标无效，请不带游标重新开始。")


class EpochChanged(DomainError):
    status = 409
    message = _l("本站数据库已更换或从备份恢复，请重新全量同步（不带游标）。")


# --- the epoch ------------------------------------------------------------------------------------

def _epoch_path(app: Flask) -> Path:
    return Path(app.instance_path) / EPOCH_FILE


def _read_mark(path: Path) -> dict | None:
    try:
        mark = json.loads(path.read_text())
        return {"epoch": str(mark["epoch"]), "exported_upto": int(mark["exported_upto"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_mark(path: Path, epoch: str, exported_upto: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps({"epoch": epoch, "exported_upto": exported_upto}) + "\n")
    os.replace(tmp, path)


def _mark_stale(mark: dict | None, epoch: str, max_seq: int) -> bool:
    return mark is None or mark["epoch"] != epoch or max_seq < mark["exported_upto"]


def check_epoch(app: Flask) -> str | None:
    """Apply the epoch rule (module docstring); return the epoch in force (None: no schema yet)."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return None  # don't create an empty database file as a side effect of starting
    path = _epoch_path(app)
    try:
        with db.engine.connect() as conn:
            epoch = conn.execute(select(SyncState.epoch)).scalar()
            max_seq = conn.execute(select(func.max(ChangeLog.seq))).scalar() or 0
    except OperationalError:  # no tables yet
        return None
    if epoch is None or not _mark_stale(_read_mark(path), epoch, max_seq):
        return epoch
    with db.engine.connect().execution_options(kiosk_begin_immediate=True) as conn, conn.begin():
        epoch = conn.execute(select(SyncState.epoch)).scalar()
        if _mark_stale(_read_mark(path), epoch, max_seq):  # another process may have just done it
            epoch = os.urandom(16).hex()
            top_posting = conn.execute(select(func.max(Posting.id))).scalar() or 0
            conn.execute(SyncState.__table__.update().values(epoch=epoch, changed_at=now(), epoch_posting=top_posting))
            _write_mark(path, epoch, 0)
    return epoch


def renew_epoch() -> str:
    """Mint a new epoch now, in its own commit (the caller's transaction is the write lock's)."""
    epoch = os.urandom(16).hex()
    state = db.session.get(SyncState, 1)
    state.epoch, state.changed_at = epoch, now()
    state.epoch_posting = db.session.scalar(select(func.max(Posting.id))) or 0
    db.session.commit()
    _write_mark(_epoch_path(current_app), epoch, 0)
    return epoch


def note_exported(epoch: str, upto: int) -> None:
    """Remember in instance/epoch the highest seq handed out, for the restore check."""
    path = _epoch_path(current_app)
    with _mark_lock:
        mark = _read_mark(path)
        if mark is None or mark["epoch"] != epoch or mark["exported_upto"] < upto:
            _write_mark(path, epoch, max(upto, mark["exported_upto"] if mark and mark["epoch"] == epoch else 0))


def mark_copy(database: Path) -> None:
    """Give a copied database (a backup) an epoch of its own, so restoring it is detected."""
    import sqlite3

    conn = sqlite3.connect(database)
    try:
        with conn:
            conn.execute("UPDATE sync_state SET epoch = ?, epoch_posting = (SELECT coalesce(max(id), 0) FROM posting)",
                         (os.urandom(16).hex(),))
    except sqlite3.OperationalError:
        pass  # a database from before the sync tables: it has no epoch to copy
    finally:
        conn.close()


def after_upgrade(app: Flask) -> None:
    """After the migrations: log rows that predate the change log, then settle the epoch."""
    from . import changelog
    from .db import begin_write

    begin_write()
    changelog.backfill(db.session())
    db.session.commit()
    check_epoch(app)


def current_epoch() -> str:
    return db.session.scalar(select(SyncState.epoch))


# --- cursors --------------------------------------------------------------------------------------

def _cursor_key() -> bytes:
    return hmac.new(current_app.config["SECRET_KEY"].encode(), b"kiosk-sync-cursor", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(station: str, epoch: str, after: int, upto: int | None) -> str:
    """An opaque cursor: version, payload and a tag only this station can make."""
    payload = _b64(json.dumps([station, epoch, after, upto], separators=(",", ":")).encode())
    body = f"{CURSOR_VERSION}.{payload}"
    return f"{body}.{_b64(hmac.new(_cursor_key(), body.encode(), hashlib.sha256).digest()[:16])}"


def decode_cursor(cursor: str) -> tuple[str, str, int, int | None]:
    try:
        version, payload, tag = cursor.split(".")
        body = f"{version}.{payload}"
        good = _b64(hmac.new(_cursor_key(), body.encode(), hashlib.sha256).digest()[:16])
        if version != CURSOR_VERSION or len(cursor) > 400 or not hmac.compare_digest(tag, good):
            raise ValueError
        station, epoch, after, upto = json.loads(_unb64(payload))
        if not (isinstance(station, str) and isinstance(epoch, str) and type(after) is int and after >= 0
                and (upto is None or (type(upto) is int and upto >= after))):
            raise ValueError
    except (ValueError, TypeError, UnicodeError):
        raise CursorInvalid() from None
    return station, epoch, after, upto


# --- the export -----------------------------------------------------------------------------------

@dataclass
class Page:
    station: str
    epoch: str
    after: int
    last: int  # the page ends here (inclusive)
    upto: int
    rows: int
    next_cursor: str | None
    resume_cursor: str


def plan_page(cursor: str | None, limit: int) -> Page:
    """Where this page starts and ends, checked against this station and its epoch.

    No cursor starts a full export; a cursor with an open end (a resume cursor) starts a new run
    from a checkpoint. Either way the run's end (`upto`) is frozen now, at the highest committed
    seq: with SQLite's single writer, seqs become visible in commit order, so nothing below it
    can appear later.

    One statement (this runs once per page, and a full export is hundreds of pages): the station,
    the epoch, the highest seq, and the page's size and end from one pass over its first `limit`
    seqs (with no cursor end, that range ends at the highest seq of the same snapshot).
    """
    after, upto = 0, None
    if cursor is not None:
        c_station, c_epoch, after, upto = decode_cursor(cursor)
    first = select(ChangeLog.seq).where(ChangeLog.seq > after)
    if upto is not None:
        first = first.where(ChangeLog.seq <= upto)
    first = first.order_by(ChangeLog.seq).limit(limit).subquery()
    station, epoch, top, rows, last = db.session.connection().execute(
        select(select(Station.code).limit(1).scalar_subquery(),
               select(SyncState.epoch).limit(1).scalar_subquery(),
               select(func.max(ChangeLog.seq)).scalar_subquery(),
               func.count(), func.max(first.c.seq))
        .select_from(first)).one()
    if cursor is not None:
        if c_station != station:
            raise CursorInvalid(_l("这个同步游标属于另一个站点。"))
        if c_epoch != epoch:
            raise EpochChanged()
        if max(after, upto or 0) > (top or 0):
            # The cursor knows changes this database doesn't have: it went back (a copy swapped in
            # without the epoch file noticing, e.g. mid-run). What the district holds beyond here
            # may be rows the station lost, and new changes would reuse those seqs: a new epoch.
            renew_epoch()
            raise EpochChanged()
    if upto is None:
        upto = max(after, top or 0)
    last = last if rows == limit else upto
    return Page(station, epoch, after, last, upto, rows,
                encode_cursor(station, epoch, last, upto) if last < upto else None,
                encode_cursor(station, epoch, last, None))


PULLS_KEPT_DAYS = 90


def record_pull(page: Page, remote_addr: str) -> None:
    """Note this export call for the manager's page (kept for PULLS_KEPT_DAYS)."""
    db.session.execute(delete(SyncPull).where(SyncPull.at < now() - timedelta(days=PULLS_KEPT_DAYS)))
    db.session.add(SyncPull(remote_addr=(remote_addr or "")[:64], epoch=page.epoch, after=page.after,
                            upto=page.upto, rows=page.rows, done=page.next_cursor is None))


def stream_page(page: Page, batch: int = 500):
    """The page as UTF-8 JSON, in chunks of `batch` rows (never all of the log at once).

    On SQLite each change's JSON is built by the SELECT itself and read as bytes, so Python only
    joins a batch (no per-row work, no decode and re-encode: about 1.5x the rows/s of building
    it here); `batch` 500 makes ~250 KB chunks (2000 measured slower). Elsewhere it is built
    here. Both give the same bytes: `at` as "YYYY-MM-DDTHH:MM:SS", `data` the stored JSON text or
    null, `id` as json.dumps gives it (SQLite's json_quote is the same for ASCII without DEL;
    other ids are passed to json.dumps from the query).
    """
    from itertools import chain

    head = {"schema_version": SCHEMA_VERSION, "station": page.station, "epoch": page.epoch,
            "after": page.after, "upto": page.upto, "next_cursor": page.next_cursor,
            "resume_cursor": page.resume_cursor}
    yield (json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"changes":[').encode()
    sep = b""
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            raw.create_function("kiosk_json_quote", 1, json.dumps, deterministic=True)
            cur = raw.cursor()
            try:
                cur.execute(
                    "SELECT CAST(printf("
                    "'{\"seq\":%d,\"entity\":\"%s\",\"id\":%s,\"op\":\"%s\",\"at\":\"%s\",\"data\":%s}',"
                    " seq, entity,"
                    " CASE WHEN length(entity_id) = length(CAST(entity_id AS BLOB))"
                    " AND instr(entity_id, char(127)) = 0"
                    " THEN json_quote(entity_id) ELSE kiosk_json_quote(entity_id) END,"
                    " op, replace(substr(at, 1, 19), ' ', 'T'), coalesce(nullif(data, ''), 'null')) AS BLOB)"
                    " FROM change_log WHERE seq > ? AND seq <= ? ORDER BY seq",
                    (page.after, page.last))
                while rows := cur.fetchmany(batch):
                    yield sep + b",".join(chain.from_iterable(rows))
                    sep = b","
            finally:
                cur.close()
        else:
            dumps = json.dumps
            result = conn.execute(
                select(ChangeLog.seq, ChangeLog.entity, ChangeLog.entity_id, ChangeLog.op, ChangeLog.at,
                       ChangeLog.data)
                .where(ChangeLog.seq > page.after, ChangeLog.seq <= page.last).order_by(ChangeLog.seq))
            while rows := result.fetchmany(batch):
                parts = [f'{{"seq":{seq},"entity":"{entity}","id":{dumps(eid)},"op":"{op}",'
                         f'"at":"{str(at)[:19].replace(" ", "T")}","data":{data or "null"}}}'
                         for seq, entity, eid, op, at, data in rows]
                yield sep + ",".join(parts).encode()
                sep = b","
    yield b"]}"


# --- the key and the nonces -----------------------------------------------------------------------

def station_key() -> SyncKey | None:
    return db.session.scalar(select(SyncKey).order_by(SyncKey.id.desc()).limit(1))


def rotate_key(actor: str) -> str:
    """Issue a new key (the old one stops working at once); return it: it is shown only once."""
    secret = signing.new_key()
    key = SyncKey(secret=secret, created_by=actor)
    db.session.add(key)
    db.session.flush()
    db.session.execute(delete(SyncKey).where(SyncKey.id != key.id))
    audit.record(actor, "rotate_key", "sync_key", str(key.id))
    return secret


def remember_nonce(nonce: str) -> bool:
    """Store a nonce until it can no longer be replayed; False if it was seen already."""
    at = now()
    db.session.execute(delete(SyncNonce).where(SyncNonce.expires_at < at))
    try:
        with db.session.begin_nested():
            db.session.add(SyncNonce(nonce=nonce, expires_at=at + timedelta(seconds=2 * signing.WINDOW + 60)))
    except IntegrityError:
        return False
    return True


def last_pulls(n: int = 20) -> list[SyncPull]:
    return list(db.session.scalars(select(SyncPull).order_by(SyncPull.id.desc()).limit(n)))


def status() -> dict:
    key = station_key()
    return {
        "epoch": current_epoch(),
        "max_seq": db.session.scalar(select(func.max(ChangeLog.seq))) or 0,
        "key_created_at": key.created_at if key else None,
        "key_created_by": key.created_by if key else None,
        "pulls": last_pulls(),
    }
