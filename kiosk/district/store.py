"""The district database: schema, lock, and the one-transaction apply of a page (DESIGN.md §4).

Tables (their own MetaData, never the station's):
- raw_change: every change as received, keyed by (station, epoch, seq); history across epochs;
- entity_row: the current row of each (station, entity, entity_id), replaced only by a newer seq;
- checkpoint: per station, the epoch and resume cursor to start the next run from;
- pull_log: one row per station per run (items, bytes, status, error).

apply_page() writes a page's raw changes, entity rows and the moved checkpoint in ONE
transaction: a crash loses all of it or none, and applying a page again changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

metadata = MetaData()
JSONDOC = JSON().with_variant(postgresql.JSONB(), "postgresql")

raw_change = Table(
    "raw_change", metadata,
    Column("station", String(64), primary_key=True),
    Column("epoch", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("op", String(8), nullable=False),
    Column("data", JSONDOC, nullable=True),
    Column("at", String(32), nullable=False),  # the station's local time, as sent
)

entity_row = Table(
    "entity_row", metadata,
    Column("station", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("entity_id", String(64), primary_key=True),
    Column("data", JSONDOC, nullable=True),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("last_seq", BigInteger, nullable=False),
)

checkpoint = Table(
    "checkpoint", metadata,
    Column("station", String(64), primary_key=True),
    Column("code", String(64), nullable=True),  # the station's own code, as its pages say
    Column("epoch", String(64), nullable=False),
    Column("resume_cursor", Text, nullable=False),
    Column("last_pull_at", DateTime(timezone=True), nullable=False),
    Column("clock_offset_s", Float, nullable=True),
    # Everything up to this seq of the epoch is applied (the mark of the push's snapshot).
    Column("applied_upto", BigInteger, nullable=True),
)

pull_log = Table(
    "pull_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station", String(64), nullable=False, index=True),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("items", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
)

push_batch = Table(
    "push_batch", metadata,
    # Newer batches: larger. Chosen above every number any station says it has seen, so a
    # district database rebuilt from scratch can't send numbers the stations take as stale.
    Column("issued", BigInteger, primary_key=True, autoincrement=False),
    Column("batch_id", String(36), nullable=False, unique=True),
    Column("station", String(64), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # full | topup
    Column("epoch", String(64), nullable=False),
    Column("mark_seq", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # sending → acked (applied) | rejected (a 4xx: surely not applied) | unknown (no answer)
    Column("status", String(10), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    # What the batch says, without its id, number, mark and time: a night with nothing new
    # sends nothing (the station already has the same balances and the same roster/events).
    Column("balances_sha256", String(64), nullable=True),
    Column("extras_sha256", String(64), nullable=True),
    Column("answer", JSONDOC, nullable=True),
    Column("error", Text, nullable=True),
)

push_allowance = Table(
    "push_allowance", metadata,
    Column("issued", BigInteger, primary_key=True, autoincrement=False),
    Column("volunteer_id", String(64), primary_key=True),
    Column("points", BigInteger, nullable=False),
)

CHUNK = 500  # rows per multi-row INSERT (well under the bind-parameter limits)
LOCK_KEY = 0x4B494F534B  # "KIOSK": the advisory lock id of `kiosk district pull`


class ApplyError(Exception):
    """A page cannot be applied (e.g. a stored change differs from the one received again)."""


class LockBusy(Exception):
    """Another `kiosk district pull` holds the lock."""


@dataclass
class Applied:
    new_raw: int  # raw changes stored now (0 when the page was applied before)
    rows: int  # entity rows inserted or replaced
    resync: bool  # the page started a new epoch: the station's old entity rows were dropped


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (psycopg2 is not a dependency)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


class Store:
    def __init__(self, url: str, pool_size: int = 5):
        self.url = normalize_url(url)
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "postgresql":
            self.engine: Engine = create_engine(self.url, pool_size=pool_size + 1, max_overflow=2,
                                                pool_pre_ping=True)
            self._insert = postgresql.insert
        elif self.dialect == "sqlite":
            self.engine = create_engine(self.url, connect_args={"timeout": 60})
            self._insert = sqlite.insert
        else:
            raise ValueError(f"unsupported district database {u.drivername!r}: use postgresql or sqlite")
        self.database = u.database
        # SQLite has one writer: serialise our own page transactions instead of fighting for it.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()

    def create(self) -> None:
        metadata.create_all(self.engine)
        self._upgrade()

    def _upgrade(self) -> None:
        """Add columns that came after a district database was first created (create_all adds
        whole tables only). New columns are always nullable, so this is all an upgrade needs."""
        from sqlalchemy import inspect

        insp = inspect(self.engine)
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:
                have = {c["name"] for c in insp.get_columns(table.name)}
                for col in table.columns:
                    if col.name not in have:
                        kind = col.type.compile(dialect=self.engine.dialect)
                        conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {col.name} {kind}'))

    def dispose(self) -> None:
        self.engine.dispose()

    # --- the run lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self):
        """Hold the district-wide lock for a run; raise LockBusy if another run has it."""
        if self.dialect == "postgresql":
            conn = self.engine.connect()
            try:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
                conn.commit()
                if not got:
                    raise LockBusy("another `kiosk district pull` is running on this database")
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    conn.commit()
            finally:
                conn.close()
            return
        if not self.database or self.database == ":memory:":
            yield
            return
        import fcntl

        path = Path(self.database).with_name(Path(self.database).name + ".lock")
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockBusy(f"another `kiosk district pull` is running (lock file {path})") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # --- checkpoints and the log ----------------------------------------------------------------

    def checkpoint_of(self, station: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoint).where(checkpoint.c.station == station)).mappings().first()
            return dict(row) if row else None

    def log_start(self, station: str) -> int:
        with self._write_lock, self.engine.begin() as conn:
            return conn.execute(pull_log.insert().values(station=station, started=now_utc(), items=0, bytes=0,
                                                         status="running").returning(pull_log.c.id)).scalar()

    def log_finish(self, log_id: int, items: int, nbytes: int, status: str, error: str | None = None) -> None:
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(pull_log.update().where(pull_log.c.id == log_id).values(
                finished=now_utc(), items=items, bytes=nbytes, status=status, error=(error or None)))

    # --- the apply ------------------------------------------------------------------------------

    def apply_page(self, station: str, page: dict, clock_offset_s: float | None = None,
                   fault=None) -> Applied:
        """Apply one page and move the station's checkpoint, in one transaction.

        `fault`, if given, is called inside the transaction after the rows are written and
        before the checkpoint moves (tests use it to simulate a crash there).
        """
        epoch, code = page["epoch"], page.get("station")
        changes = page["changes"]
        with self._write_lock, self.engine.begin() as conn:
            cp = conn.execute(select(checkpoint.c.epoch, checkpoint.c.code)
                              .where(checkpoint.c.station == station)).first()
            if cp is not None and cp.code and code and cp.code != code:
                raise ApplyError(f"station {station!r} answered as {code!r}, but it was {cp.code!r} before; "
                                 "check its URL in the stations file")
            resync = cp is not None and cp.epoch != epoch
            if resync:  # a new epoch: what we hold from the old one may be rows the station lost
                conn.execute(delete(entity_row).where(entity_row.c.station == station))
            new_raw = self._store_raw(conn, station, epoch, changes)
            rows = self._upsert_rows(conn, station, changes)
            if fault is not None:
                fault()
            applied_upto = page["upto"] if not page.get("next_cursor") else max(
                (c["seq"] for c in changes), default=page.get("after", 0))
            values = {"code": code, "epoch": epoch, "resume_cursor": page["resume_cursor"],
                      "last_pull_at": now_utc(), "clock_offset_s": clock_offset_s, "applied_upto": applied_upto}
            ins = self._insert(checkpoint).values(station=station, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=[checkpoint.c.station], set_=values))
        return Applied(new_raw, rows, resync)

    def _store_raw(self, conn, station: str, epoch: str, changes: list[dict]) -> int:
        """Insert-or-verify: a change already stored must be the same change."""
        if not changes:
            return 0
        received = {c["seq"]: c for c in changes}
        held = conn.execute(
            select(raw_change).where(raw_change.c.station == station, raw_change.c.epoch == epoch,
                                     raw_change.c.seq.between(min(received), max(received)))).mappings().all()
        for row in held:
            c = received.get(row["seq"])
            if c is None:
                continue
            if (row["entity"], row["entity_id"], row["op"], row["at"], _canon(row["data"])) != (
                    c["entity"], _entity_id(c), c["op"], c["at"], _canon(c["data"])):
                raise ApplyError(f"station {station!r} epoch {epoch} seq {row['seq']}: the change received "
                                 "differs from the one stored before")
        seen = {row["seq"] for row in held}
        fresh = [{"station": station, "epoch": epoch, "seq": c["seq"], "entity": c["entity"],
                  "entity_id": _entity_id(c), "op": c["op"], "data": c["data"], "at": c["at"]}
                 for seq, c in received.items() if seq not in seen]
        for i in range(0, len(fresh), CHUNK):  # one multi-row INSERT per chunk, not a row at a time
            conn.execute(self._insert(raw_change).values(fresh[i:i + CHUNK]).on_conflict_do_nothing())
        return len(fresh)

    def _upsert_rows(self, conn, station: str, changes: list[dict]) -> int:
        """Upsert the newest change of each row in the page, only over an older last_seq."""
        newest: dict[tuple[str, str], dict] = {}
        for c in changes:
            k = (c["entity"], _entity_id(c))
            if k not in newest or newest[k]["seq"] < c["seq"]:
                newest[k] = c
        if not newest:
            return 0
        keys = list(newest)
        held = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            held.update(((r.entity, r.entity_id), r.last_seq) for r in conn.execute(
                select(entity_row.c.entity, entity_row.c.entity_id, entity_row.c.last_seq).where(
                    entity_row.c.station == station,
                    tuple_(entity_row.c.entity, entity_row.c.entity_id).in_(chunk))))
        rows = [{"station": station, "entity": k[0], "entity_id": k[1],
                 "data": None if c["op"] == "delete" else c["data"], "deleted": c["op"] == "delete",
                 "last_seq": c["seq"]}
                for k, c in newest.items() if held.get(k, -1) < c["seq"]]
        for i in range(0, len(rows), CHUNK):
            ins = self._insert(entity_row).values(rows[i:i + CHUNK])
            conn.execute(ins.on_conflict_do_update(
                index_elements=[entity_row.c.station, entity_row.c.entity, entity_row.c.entity_id],
                set_={"data": ins.excluded.data, "deleted": ins.excluded.deleted,
                      "last_seq": ins.excluded.last_seq},
                where=entity_row.c.last_seq < ins.excluded.last_seq))
        return len(rows)

    # --- inspection -----------------------------------------------------------------------------

    def table_hashes(self) -> dict[str, str]:
        """A content hash of raw_change, entity_row and the checkpoints' (epoch, cursor)."""
        out = {}
        with self.engine.connect() as conn:
            for table, cols in ((raw_change, list(raw_change.c)), (entity_row, list(entity_row.c)),
                                (checkpoint, [checkpoint.c.station, checkpoint.c.code, checkpoint.c.epoch,
                                              checkpoint.c.resume_cursor])):
                h = hashlib.sha256()
                pk = list(table.primary_key.columns)
                for row in conn.execute(select(*cols).order_by(*pk)):
                    h.update(_canon(list(row)).encode() + b"\n")
                out[table.name] = h.hexdigest()
        return out

    def count(self, table: Table, station: str | None = None) -> int:
        from sqlalchemy import func

        q = select(func.count()).select_from(table)
        if station is not None:
            q = q.where(and_(table.c.station == station))
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()


def _entity_id(change: dict) -> str:
    return str(change["id"] if "id" in change else change["entity_id"])
