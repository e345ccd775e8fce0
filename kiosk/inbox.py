"""The station's inbox (DESIGN.md §4, docs/sync.md): what the district sends back each night.

A batch arrives as the signed body of POST /api/v1/inbox and is applied in one write
transaction, once: its id is the idempotency key (the same id with the same body answers as the
first time; with another body, 409). It carries
- `balances`: for each volunteer, this station's allowance, the district-wide balance and
  confirmed minutes (all as of the district's snapshot, which counts this station's changes up
  to `mark_seq`). The allowances of all stations never add up to more than a volunteer's balance
  (escrow), so spending here what is "available here" can never take the district balance below
  zero:  available here = allowance + this station's own postings since the snapshot.
- `roster` (full batches): volunteers registered at other stations, so they can be found here;
- `events` (full batches): district-wide events, shown on the kiosk, read-only here;
- `thresholds` (full batches): the district's star thresholds.
A "topup" batch only raises allowances, with the same mark as the full batch before it.

Batches are numbered by the district (`issued`); an older one than the batch in force is
refused, so a delayed retry can never bring back an allowance the district has since moved.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, insert, select

from . import audit
from .clock import now
from .db import db
from .errors import DomainError
from .events import EARLIEST, LATEST, MAX_EVENT_LENGTH, get_station
from .ids import parse_id
from .models import Allowance, Category, ChangeLog, Event, InboxBatch, Posting, Volunteer
from .text import bad_characters, clean
from .volunteers import MOBILE, NUMBER

SCHEMA_VERSION = 1
MAX_BYTES = 64 * 1024 * 1024  # a district of ~80 stations sends a few MB; gzip-compressed far less
ACTOR = "district"
_CODE = re.compile(r"[A-Za-z0-9\-_]{1,32}")


class BadBatch(DomainError):
    status = 400
    message = _l("同步批次的格式不对。")


class BatchConflict(DomainError):
    status = 409
    message = _l("这个批次号已经用过，但内容不同：请区里换一个新的批次号。")


class WouldOverdraw(DomainError):
    status = 409
    message = _l("这个批次会让志愿者在本站的可用积分变成负数（区里统计之后本站又有支出），已拒收；下次同步会重新计算。")


class StaleBatch(DomainError):
    status = 409
    message = _l("这个批次比本站正在使用的批次旧，已拒收。")


# --- reading a batch --------------------------------------------------------------------------

def decode_body(raw: bytes, encoding: str | None) -> bytes:
    """The body as JSON bytes; a gzip body is inflated with a limit (no zip bombs)."""
    if not encoding or encoding == "identity":
        return raw
    if encoding != "gzip":
        raise BadBatch(_l("不支持这种压缩方式，请用 gzip 或不压缩。"))
    z = zlib.decompressobj(31)
    try:
        out = z.decompress(raw, MAX_BYTES + 1)
    except zlib.error:
        raise BadBatch(_l("压缩数据损坏。")) from None
    if len(out) > MAX_BYTES or z.unconsumed_tail:
        raise BadBatch(_l("同步批次太大。"))
    return out


def _fail(where: str, what: str):
    raise BadBatch(_l("同步批次的格式不对：%(w)s %(m)s", w=where, m=what))


def _int(doc: dict, key: str, where: str, lo: int = 0, hi: int = 2**53) -> int:
    v = doc.get(key)
    if type(v) is not int or not lo <= v <= hi:
        _fail(where, f"{key}: integer {lo}..{hi}")
    return v


def _text(doc: dict, key: str, where: str, limit: int, required: bool = True, multiline: bool = False) -> str:
    v = doc.get(key, "" if not required else None)
    if not isinstance(v, str):
        _fail(where, f"{key}: string")
    v = clean(v) if not multiline else v.strip()
    if (required and not v) or len(v) > limit or bad_characters(v, multiline=multiline):
        _fail(where, f"{key}: 1..{limit} characters, no control characters")
    return v


def _uuid(doc: dict, key: str, where: str) -> str:
    v = parse_id(doc.get(key)) if isinstance(doc.get(key), str) else None
    if v is None:
        _fail(where, f"{key}: a UUID")
    return v


def _time(doc: dict, key: str, where: str) -> datetime:
    try:
        v = datetime.fromisoformat(doc.get(key))
    except (TypeError, ValueError):
        v = None
    if v is None or v.tzinfo is not None or not EARLIEST <= v < LATEST:
        _fail(where, f"{key}: local time YYYY-MM-DDTHH:MM:SS")
    return v.replace(microsecond=0)


def _list(doc: dict, key: str, limit: int, optional: bool) -> list | None:
    v = doc.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, dict) for x in v):
        _fail(key, f"a list of at most {limit} objects")
    return v


@dataclass
class Batch:
    id: str
    issued: int
    kind: str
    station: str
    epoch: str
    mark_seq: int
    as_of: str
    thresholds: list[int] | None
    events: list[dict] | None
    roster: list[dict] | None
    balances: list[dict]


def parse(raw: bytes) -> Batch:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeError):
        raise BadBatch(_l("同步批次不是有效的 JSON。")) from None
    if not isinstance(doc, dict):
        _fail("batch", "a JSON object")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise BadBatch(_l("同步批次的版本（schema_version）本站不认识。"))
    kind = doc.get("kind")
    if kind not in ("full", "topup"):
        _fail("batch", "kind: full or topup")
    station = doc.get("station")
    epoch = doc.get("epoch")
    if not isinstance(station, str) or not _CODE.fullmatch(station):
        _fail("batch", "station: the station code")
    if not isinstance(epoch, str) or not re.fullmatch(r"[0-9a-f]{32}", epoch):
        _fail("batch", "epoch: 32 hex digits")
    thresholds = doc.get("thresholds")
    if thresholds is not None:
        if (not isinstance(thresholds, list) or not 1 <= len(thresholds) <= 10
                or not all(type(t) is int and 0 < t <= 100000 for t in thresholds)
                or thresholds != sorted(set(thresholds))):
            _fail("thresholds", "1-10 increasing positive integers (hours)")
    batch = Batch(
        id=_uuid(doc, "batch_id", "batch"), issued=_int(doc, "issued", "batch", 1),
        kind=kind, station=station, epoch=epoch, mark_seq=_int(doc, "mark_seq", "batch"),
        as_of=_text(doc, "as_of", "batch", 32), thresholds=thresholds,
        events=_list(doc, "events", 10000, optional=True),
        roster=_list(doc, "roster", 500000, optional=True),
        balances=_list(doc, "balances", 500000, optional=False),
    )
    if kind == "topup" and (batch.events is not None or batch.roster is not None or thresholds is not None):
        _fail("batch", "a topup batch carries balances only")
    batch.events = [_event(e, f"events[{i}]") for i, e in enumerate(batch.events)] if batch.events is not None else None
    batch.roster = [_member(m, f"roster[{i}]") for i, m in enumerate(batch.roster)] if batch.roster is not None else None
    batch.balances = [_balance(b, f"balances[{i}]") for i, b in enumerate(batch.balances)]
    if len({b["volunteer_id"] for b in batch.balances}) != len(batch.balances):
        _fail("balances", "a volunteer appears twice")
    for key, items in (("roster", batch.roster), ("events", batch.events)):
        if items is not None and len({x["id"] for x in items}) != len(items):
            _fail(key, "an id appears twice")
    if batch.roster is not None:
        for key in ("number", "mobile"):
            if len({m[key] for m in batch.roster}) != len(batch.roster):
                _fail("roster", f"two volunteers with the same {key}")
    return batch


def _event(e: dict, where: str) -> dict:
    out = {"id": _uuid(e, "id", where), "title": _text(e, "title", where, 100),
           "starts_at": _time(e, "starts_at", where), "ends_at": _time(e, "ends_at", where),
           "place": _text(e, "place", where, 100, required=False),
           "organiser": _text(e, "organiser", where, 100, required=False),
           "description": _text(e, "description", where, 4000, required=False, multiline=True),
           "category": _text(e, "category", where, 30, required=False),
           "cancelled": e.get("cancelled", False)}
    if not isinstance(out["cancelled"], bool):
        _fail(where, "cancelled: true or false")
    if not out["starts_at"] < out["ends_at"] <= out["starts_at"] + MAX_EVENT_LENGTH:
        _fail(where, "ends_at: after starts_at, at most 7 days later")
    return out


def _member(m: dict, where: str) -> dict:
    out = {"id": _uuid(m, "id", where), "number": _text(m, "number", where, 40),
           "name": _text(m, "name", where, 50), "mobile": _text(m, "mobile", where, 11),
           "status": m.get("status"), "home_station": _text(m, "home_station", where, 32)}
    if not NUMBER.fullmatch(out["number"]) or not MOBILE.match(out["mobile"]):
        _fail(where, "number / mobile")
    if out["status"] not in ("pending", "active", "suspended"):
        _fail(where, "status: pending, active or suspended")
    return out


def _balance(b: dict, where: str) -> dict:
    big = 10**12
    return {"volunteer_id": _uuid(b, "volunteer_id", where), "points": _int(b, "allowance", where, 0, big),
            "total": _int(b, "total", where, -big, big), "minutes_total": _int(b, "minutes_total", where, 0, big),
            "minutes_here": _int(b, "minutes_here", where, 0, big)}


# --- applying a batch -------------------------------------------------------------------------

def in_force() -> InboxBatch | None:
    return db.session.scalar(select(InboxBatch).order_by(InboxBatch.issued.desc()).limit(1))


def prepare(raw: bytes, encoding: str | None = None) -> tuple[Batch, str]:
    """Inflate, hash and check a batch: the slow part, done before taking the write lock."""
    body = decode_body(raw, encoding)
    return parse(body), hashlib.sha256(body).hexdigest()


def receive(raw: bytes, encoding: str | None = None, prepared: tuple[Batch, str] | None = None) -> tuple[dict, bool]:
    """Apply a batch in the caller's write transaction; returns (the answer, whether a replay).

    The caller has called begin_write() and commits; `prepared` is prepare()'s result when the
    caller did that before taking the lock.
    """
    from .sync import EpochChanged, current_epoch

    batch, digest = prepared or prepare(raw, encoding)
    same = db.session.get(InboxBatch, batch.id)
    if same is not None:
        if same.body_sha256 != digest:
            raise BatchConflict()
        return json.loads(same.result), True
    station = get_station()
    if batch.station != station.code:
        raise BadBatch(_l("这个批次是发给另一个站点（%(c)s）的。", c=batch.station))
    if batch.epoch != current_epoch():
        raise EpochChanged()
    top = db.session.scalar(select(func.max(ChangeLog.seq))) or 0
    if batch.mark_seq > top:
        raise BadBatch(_l("批次的同步位置超出了本站的记录，请先拉取本站数据。"))
    current = in_force()
    if current is not None and (batch.issued <= current.issued or batch.mark_seq < current.mark_seq):
        raise StaleBatch()
    mark_posting = _posting_mark(batch.mark_seq, current)
    _refuse_overdraw(batch.balances, mark_posting)
    result: dict = {"batch_id": batch.id, "kind": batch.kind, "station": station.code}
    if batch.thresholds is not None:
        result["thresholds"] = _apply_thresholds(station, batch.thresholds)
    if batch.events is not None:
        result["events"] = _apply_events(batch.events)
    if batch.roster is not None:
        result["roster"] = _apply_roster(batch.roster, station.code)
    result["balances"] = _apply_balances(batch.balances)
    db.session.add(InboxBatch(id=batch.id, issued=batch.issued, kind=batch.kind, epoch=batch.epoch,
                              mark_seq=batch.mark_seq, mark_posting=mark_posting, as_of=batch.as_of,
                              body_sha256=digest,
                              result=json.dumps(result, ensure_ascii=False, separators=(",", ":"))))
    audit.record(ACTOR, "inbox", "inbox_batch", batch.id, kind=batch.kind, issued=batch.issued,
                 mark_seq=batch.mark_seq, balances=len(batch.balances),
                 **{k: v for k, v in result.items() if k in ("events", "roster")})
    db.session.flush()
    return result, False


def _posting_mark(mark_seq: int, current: InboxBatch | None) -> int:
    """The highest posting id of the ledger transactions logged at or below mark_seq.

    Posting ids and seqs both grow in commit order (one writer), so postings above the mark are
    exactly this station's points since the snapshot. Counted from the previous batch's mark on.
    """
    since_seq, since_posting = (current.mark_seq, current.mark_posting) if current else (0, 0)
    found = db.session.scalar(
        select(func.max(Posting.id)).join(ChangeLog, ChangeLog.entity_id == Posting.txn_id).where(
            ChangeLog.entity == "ledger_txn", ChangeLog.seq > since_seq, ChangeLog.seq <= mark_seq))
    return max(since_posting, found or 0)


def _refuse_overdraw(balances: list[dict], mark_posting: int) -> None:
    """Refuse a batch under which someone could spend below zero here: points spent at this
    station after the district's snapshot, beyond the new allowance. The batch in force stays
    (it still covers that spending); the district counts this batch as not applied."""
    allowed = {b["volunteer_id"]: b["points"] for b in balances}
    spent = db.session.execute(
        select(Posting.account, func.sum(Posting.amount)).where(Posting.id > mark_posting, Posting.account.like("v:%"))
        .group_by(Posting.account).having(func.sum(Posting.amount) < 0))
    for account, net in spent:
        if allowed.get(account[2:], 0) + net < 0:
            raise WouldOverdraw()


def _apply_thresholds(station, thresholds: list[int]) -> bool:
    text = ",".join(str(t) for t in thresholds)
    if station.star_thresholds == text:
        return False
    audit.record(ACTOR, "update", "station", str(station.id), star_thresholds=[station.star_thresholds, text])
    station.star_thresholds = text
    station.version += 1
    station.updated_at = now()
    return True


def _category_id(name: str, cache: dict) -> str | None:
    if not name:
        return None
    if name.lower() not in cache:
        cat = db.session.scalar(select(Category).where(func.lower(Category.name) == name.lower()))
        if cat is None:
            cat = Category(name=name, position=1000)
            db.session.add(cat)
            db.session.flush()
            audit.record(ACTOR, "create", "category", cat.id, name=name)
        cache[name.lower()] = cat.id
    return cache[name.lower()]


EVENT_FIELDS = ("title", "starts_at", "ends_at", "place", "organiser", "description", "category_id")


def _apply_events(items: list[dict]) -> dict:
    held = {e.id: e for e in db.session.scalars(select(Event).where(Event.origin == "district")).unique()}
    added = updated = cancelled = skipped = 0
    cats: dict = {}
    at = now()
    for it in items:
        e = held.pop(it["id"], None)
        if e is None and db.session.get(Event, it["id"]) is not None:
            skipped += 1  # the id of one of this station's own events: never overwritten
            continue
        values = {k: it[k] for k in EVENT_FIELDS if k in it}
        values["category_id"] = _category_id(it["category"], cats)
        if e is None:
            e = Event(id=it["id"], origin="district", published=True, capacity=None, **values)
            db.session.add(e)
            added += 1
            audit.record(ACTOR, "create", "event", e.id, title=e.title, starts_at=e.starts_at, ends_at=e.ends_at)
        else:
            changes = {k: [getattr(e, k), v] for k, v in values.items() if getattr(e, k) != v}
            for k, (_old, v) in changes.items():
                setattr(e, k, v)
            if changes:
                updated += 1
                e.version += 1
                e.updated_at = at
                audit.record(ACTOR, "update", "event", e.id, **changes)
        if it["cancelled"] and e.cancelled_at is None:
            cancelled += _cancel(e, str(_l("区里已取消这个活动")), at)
        elif not it["cancelled"] and e.cancelled_at is not None:
            e.cancelled_at, e.cancel_reason = None, ""
            e.version += 1
            audit.record(ACTOR, "restore", "event", e.id)
    for e in held.values():  # no longer sent: the district took it back
        if e.cancelled_at is None:
            cancelled += _cancel(e, str(_l("区里已取消这个活动")), at)
    return {"added": added, "updated": updated, "cancelled": cancelled, "skipped": skipped}


def _cancel(e: Event, reason: str, at: datetime) -> int:
    e.cancelled_at, e.cancel_reason = at, reason
    e.version += 1
    e.updated_at = at
    audit.record(ACTOR, "cancel", "event", e.id, reason=reason)
    return 1


def _apply_roster(items: list[dict], own_code: str) -> dict:
    """Add or update volunteers registered elsewhere; this station's own are never touched.

    A volunteer whose number or mobile is already taken here by someone else (the same person
    registered twice) is skipped and reported, for the managers to sort out.
    """
    rows = db.session.execute(select(Volunteer.id, Volunteer.number, Volunteer.mobile, Volunteer.home_station)).all()
    by_id = {r.id: r for r in rows}
    by_number = {r.number: r.id for r in rows}
    by_mobile = {r.mobile: r.id for r in rows}
    number_of = {r.id: r.number for r in rows}
    added = updated = 0
    conflicts = []
    at = now()
    for m in items:
        if m["home_station"] == own_code:
            continue
        mine = by_id.get(m["id"])
        if mine is not None and mine.home_station is None:
            continue  # registered here: this station is its source of truth
        clash = [k for k, index in (("number", by_number), ("mobile", by_mobile))
                 if index.get(m[k], m["id"]) != m["id"]]
        if clash:
            other = (by_number if clash[0] == "number" else by_mobile)[m[clash[0]]]
            conflicts.append({"id": m["id"], "number": m["number"], "home_station": m["home_station"],
                              "field": clash[0], "local_number": number_of.get(other, "")})
            continue
        if mine is None:
            # (one audit row for all the additions, below: a district's first roster is thousands)
            db.session.add(Volunteer(id=m["id"], number=m["number"], name=m["name"], mobile=m["mobile"], pin_hash="",
                                     status=m["status"], registered_via="district", home_station=m["home_station"]))
            added += 1
        else:
            v = db.session.get(Volunteer, m["id"])
            wanted = dict(m)
            if v.status == "suspended" and m["status"] == "active" and _suspended_here(v.id):
                wanted["status"] = "suspended"  # this station's manager suspended them: that stands
            changes = {k: [getattr(v, k), wanted[k]] for k in ("number", "name", "mobile", "status", "home_station")
                       if getattr(v, k) != wanted[k]}
            if not changes:
                continue
            for k, (_old, new) in changes.items():
                setattr(v, k, new)
            v.version += 1
            v.updated_at = at
            updated += 1
            audit.record(ACTOR, "roster_update", "volunteer", v.id, **changes)
        for index, old in ((by_number, mine.number if mine else None), (by_mobile, mine.mobile if mine else None)):
            if old is not None:
                index.pop(old, None)
        by_number[m["number"]] = by_mobile[m["mobile"]] = m["id"]
        number_of[m["id"]] = m["number"]
    db.session.flush()
    if added:
        audit.record(ACTOR, "roster_add", "volunteer", "*", added=added)
    return {"added": added, "updated": updated, "conflicts": conflicts}


def _suspended_here(volunteer_id: str) -> bool:
    """Whether the last status change of this volunteer here was a manager's (not the roster's)."""
    from .models import AuditLog

    last = db.session.scalar(select(AuditLog).where(
        AuditLog.entity == "volunteer", AuditLog.entity_id == volunteer_id,
        AuditLog.action.in_(("status", "roster_update", "roster_add"))).order_by(AuditLog.at.desc(), AuditLog.id.desc())
        .limit(1))
    return last is not None and last.action == "status"


def _apply_balances(items: list[dict]) -> int:
    db.session.execute(delete(Allowance))
    for i in range(0, len(items), 2000):
        db.session.execute(insert(Allowance), items[i:i + 2000])
    return len(items)


# --- what a volunteer may spend here ----------------------------------------------------------

@dataclass
class Standing:
    """A volunteer's points as this station sees them."""

    here: int  # what they can spend here now
    total: int | None  # across the district as of the last snapshot (None: no snapshot yet)
    as_of: str | None
    since: int  # this station's own points since the snapshot (all of them when there is none)

    @property
    def elsewhere(self) -> bool:
        """Whether some of their points are held at other stations tonight."""
        return self.total is not None and self.total + self.since > self.here


def _snapshot() -> tuple[InboxBatch | None, bool, int]:
    """(the batch in force, whether it is void, the posting id after which this station's own
    points count).

    A batch from before the station's epoch changed (the database was restored from a backup)
    is void: it allows nothing, since the district may have moved those points elsewhere; until
    the next batch only this station's own points after the restore count (the district counts
    those after that batch's mark, which is more: kiosk/district/push.py, _base).
    """
    from .models import SyncState

    batch = in_force()
    if batch is None:
        return None, False, 0
    state = db.session.get(SyncState, 1)
    if state is not None and batch.epoch != state.epoch:
        return batch, True, max(batch.mark_posting, state.epoch_posting)
    return batch, False, batch.mark_posting


def standing(volunteer: Volunteer | str) -> Standing:
    """What the volunteer may spend here, and the district's total as of its snapshot."""
    vid = volunteer if isinstance(volunteer, str) else volunteer.id
    batch, void, mark = _snapshot()
    since = db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0)).where(
        Posting.account == f"v:{vid}", Posting.id > mark))
    if batch is None or void:
        return Standing(here=since, total=None, as_of=None, since=since)
    snap = db.session.get(Allowance, vid)
    allowance, total = (snap.points, snap.total) if snap else (0, 0)
    return Standing(here=allowance + since, total=total, as_of=batch.as_of, since=since)


def available_for(volunteer_ids: list[str]) -> dict[str, int] | None:
    """What each may spend here (standing().here for many at once); None with no snapshot."""
    batch, void, mark = _snapshot()
    if batch is None:
        return None
    accounts = [f"v:{v}" for v in volunteer_ids]
    since = dict(db.session.execute(select(Posting.account, func.sum(Posting.amount)).where(
        Posting.account.in_(accounts), Posting.id > mark).group_by(Posting.account)).all())
    allowed = {} if void else dict(db.session.execute(select(Allowance.volunteer_id, Allowance.points).where(
        Allowance.volunteer_id.in_(volunteer_ids))).all())
    return {v: allowed.get(v, 0) + since.get(f"v:{v}", 0) for v in volunteer_ids}


def available_here(volunteer: Volunteer | str) -> int:
    return standing(volunteer).here


def minutes_elsewhere(volunteer: Volunteer | str) -> int:
    """Confirmed minutes at other stations as of the snapshot (for stars)."""
    vid = volunteer if isinstance(volunteer, str) else volunteer.id
    snap = db.session.get(Allowance, vid)
    return max(0, snap.minutes_total - snap.minutes_here) if snap else 0


POINTS_HERE = "points_here"  # the audit action the district reads as "allow my points here"


def ask_points_here(volunteer: Volunteer) -> bool:
    """The volunteer asks for their points to be allowed at this station from tonight on.

    Written as an audit row (exported like every audit row): the district counts it as
    activity here, and allows the whole balance where the volunteer was last active. Once a day
    is enough; returns False when already asked today.
    """
    if asked_points_here(volunteer):
        return False
    audit.record(f"volunteer:{volunteer.number}", POINTS_HERE, "volunteer", volunteer.id)
    db.session.flush()
    return True


def asked_points_here(volunteer: Volunteer) -> bool:
    from datetime import time as dtime

    from .models import AuditLog

    start = datetime.combine(now().date(), dtime.min)
    return db.session.scalar(select(AuditLog.id).where(
        AuditLog.action == POINTS_HERE, AuditLog.entity_id == volunteer.id, AuditLog.at >= start).limit(1)) is not None


def batches(limit: int = 10) -> list[InboxBatch]:
    return list(db.session.scalars(select(InboxBatch).order_by(InboxBatch.issued.desc()).limit(limit)))


def result_of(batch: InboxBatch) -> dict:
    try:
        return json.loads(batch.result)
    except ValueError:
        return {}

