"""The change log (DESIGN.md §4): every business write appends its rows in the same transaction.

Hooked on the Session's after_flush, so no operation can forget it: each new or changed row of
an exported model becomes an 'upsert' carrying the row as exported, each deleted row a 'delete'
tombstone. Postings travel inside their ledger transaction, team membership inside the
volunteer. Bulk UPDATE/DELETE statements on exported tables would bypass the hook, so they are
refused. Secrets (PIN and password hashes, keys) and the station's private tables are never
exported: only the models in EXPORTED are, and only their columns not in OMIT.
"""

import json
from datetime import date, datetime

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from .clock import now
from .models import (
    AuditLog,
    Category,
    ChangeLog,
    CheckIn,
    Event,
    EventSeries,
    InboxBatch,
    LedgerTxn,
    Posting,
    Redemption,
    Reward,
    Station,
    StockMove,
    SyncState,
    Team,
    Volunteer,
    volunteer_team,
)

EXPORTED = {
    Station: "station",
    Category: "category",
    EventSeries: "event_series",
    Event: "event",
    Team: "team",
    Volunteer: "volunteer",
    CheckIn: "checkin",
    LedgerTxn: "ledger_txn",
    Reward: "reward",
    StockMove: "stock_move",
    Redemption: "redemption",
    AuditLog: "audit_log",
    InboxBatch: "inbox_batch",
}
OMIT = {Volunteer: {"pin_hash"}, InboxBatch: {"result"}}
# Tables whose rows reach the log only through their parent's row.
CARRIED = {Posting.__tablename__, volunteer_team.name}
LOGGED_TABLES = {m.__tablename__ for m in EXPORTED} | CARRIED


def _plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def row_data(obj) -> dict:
    """The row as exported: its columns (minus OMIT), plus what it carries."""
    model = type(obj)
    omit = OMIT.get(model, ())
    data = {a.key: _plain(getattr(obj, a.key)) for a in inspect(model).column_attrs if a.key not in omit}
    if model is Volunteer:
        data["team_ids"] = sorted(t.id for t in obj.teams)
    elif model is LedgerTxn:
        data["postings"] = [{"id": p.id, "account": p.account, "amount": p.amount}
                            for p in sorted(obj.postings, key=lambda p: p.id)]
    return data


def entry(obj, op: str, at: datetime) -> dict:
    data = None if op == "delete" else json.dumps(row_data(obj), ensure_ascii=False, separators=(",", ":"))
    return {"entity": EXPORTED[type(obj)], "entity_id": str(obj.id), "op": op, "data": data, "at": at}


@event.listens_for(Session, "after_flush")
def _log_changes(session, flush_context):
    upserts, deletes = {}, {}
    for obj in session.new:
        if type(obj) in EXPORTED:
            upserts[id(obj)] = obj
        elif isinstance(obj, Posting):
            txn = obj.txn
            upserts[id(txn)] = txn
    for obj in session.dirty:
        if type(obj) in EXPORTED and session.is_modified(obj, include_collections=True):
            upserts[id(obj)] = obj
    for obj in session.deleted:
        if type(obj) in EXPORTED:
            upserts.pop(id(obj), None)
            deletes[id(obj)] = obj
        elif isinstance(obj, Posting):
            raise RuntimeError("postings are append-only")
    if not upserts and not deletes:
        return
    at = now()
    rows = [entry(o, "upsert", at) for o in upserts.values()] + [entry(o, "delete", at) for o in deletes.values()]
    session.connection().execute(ChangeLog.__table__.insert(), rows)


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_dml(state):
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in LOGGED_TABLES:
        raise RuntimeError(f"bulk DML on {table.name} would bypass the change log; change rows through the ORM")


def backfill(session) -> int:
    """Log every exported row once (after the migration that added the log); returns the count.

    Rows already logged are logged again, which is harmless: the district applies upserts
    idempotently. Runs in the caller's write transaction, in batches, and marks itself done.
    """
    state = session.get(SyncState, 1)
    if state is None or state.backfilled:
        return 0
    at, count = now(), 0
    conn = session.connection()
    for model in EXPORTED:
        for chunk in session.scalars(select(model).execution_options(yield_per=500)).partitions():
            conn.execute(ChangeLog.__table__.insert(), [entry(o, "upsert", at) for o in chunk])
            count += len(chunk)
    state.backfilled = True
    return count


def compact(begin, commit, step: int = 20000) -> int:
    """Drop log rows superseded by a newer row of the same entity; returns how many.

    The newest row of every entity (its current state, or its tombstone) is always kept, so a
    district pulling from any cursor, or from the start, still ends with every row as it is now;
    it only no longer sees the states in between. The highest seq is never dropped (it is the
    newest of its entity), so the epoch's restore check is unaffected. Ledger transactions,
    postings and stock moves are never superseded (append-only). Works through the log in seq
    ranges, one short write transaction each (`begin()` starts one, `commit()` ends it).
    """
    from sqlalchemy import func, text

    from .db import db

    top = db.session.scalar(select(func.max(ChangeLog.seq))) or 0
    db.session.rollback()
    dropped = 0
    for lo in range(0, top, step):
        begin()
        dropped += db.session.execute(text(
            "DELETE FROM change_log WHERE seq > :lo AND seq <= :hi AND EXISTS ("
            " SELECT 1 FROM change_log AS newer WHERE newer.entity = change_log.entity"
            " AND newer.entity_id = change_log.entity_id AND newer.seq > change_log.seq)"),
            {"lo": lo, "hi": min(lo + step, top)}).rowcount
        commit()
    return dropped
