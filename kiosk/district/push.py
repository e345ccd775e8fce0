"""`kiosk district push` (docs/district.md): the roster, district events, star thresholds and each
volunteer's balance with this station's allowance, sent to every station's inbox (kiosk/inbox.py).

What the district knows comes from the pulled entity rows (store.entity_row):
- a volunteer's balance: the sum of their ledger transactions at every station;
- confirmed minutes per station; where they were last active (newest check-in, points earned
  or redeemed, or "把我的积分转到本站" tapped at a kiosk; by station time minus its clock offset);
- the roster: every station's own volunteers (home_station empty there), with their status;
- which batch each station has applied: its exported inbox_batch rows, and our acknowledgements.
Allowances follow kiosk/district/allocate.py (escrow, two phases). Every batch and its
allowances are written to push_batch / push_allowance BEFORE it is sent, so a crash or a lost
answer leaves it "unknown", which later claims count as possibly in force.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, select, update

from .. import signing
from . import allocate
from .pull import RETRYABLE, StationConf, _problem
from .store import Store, checkpoint, entity_row, now_utc, push_allowance, push_batch

INBOX_PATH = "/api/v1/inbox"
SCHEMA_VERSION = 1


class EventsFileError(Exception):
    """The district events file can't be read or lists an event wrongly."""


def load_events(path: Path) -> list[dict]:
    """District events from TOML ([[events]]) or JSON (a list, or {"events": [...]})."""
    raw = Path(path).read_bytes()
    try:
        doc = json.loads(raw) if Path(path).suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        raise EventsFileError(f"{path}: {e}") from None
    items = doc.get("events", []) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise EventsFileError(f"{path}: expected a list of events ([[events]] in TOML)")
    out, ids = [], set()
    for i, e in enumerate(items, 1):
        if not isinstance(e, dict):
            raise EventsFileError(f"{path}: event #{i} is not a table/object")
        try:
            eid = str(uuid.UUID(str(e.get("id"))))
        except ValueError:
            raise EventsFileError(f"{path}: event #{i} needs an id (a UUID; keep it when you edit the event)") from None
        if eid in ids:
            raise EventsFileError(f"{path}: event id {eid} appears twice")
        ids.add(eid)
        ev = {"id": eid, "title": str(e.get("title") or "").strip()}
        for k in ("starts_at", "ends_at"):
            v = e.get(k)
            try:
                ev[k] = (v if isinstance(v, datetime) else datetime.fromisoformat(str(v))).replace(
                    tzinfo=None).isoformat(timespec="minutes")
            except ValueError:
                raise EventsFileError(f"{path}: event #{i}: {k} must be a local time like 2026-12-05T09:00") from None
        if not ev["title"] or ev["ends_at"] <= ev["starts_at"]:
            raise EventsFileError(f"{path}: event #{i} needs a title and an end after its start")
        for k in ("place", "organiser", "description", "category"):
            ev[k] = str(e.get(k) or "")
        ev["cancelled"] = bool(e.get("cancelled", False))
        out.append(ev)
    return out


def parse_thresholds(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace("，", ",").split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or values != sorted(set(values)) or values[0] <= 0 or len(values) > 10:
        raise ValueError("thresholds: 1-10 increasing positive whole hours, e.g. 100,300,600,1000,1500")
    return values


# --- what the district knows ------------------------------------------------------------------

@dataclass
class Knowledge:
    codes: dict[str, str]  # station name -> its code
    epochs: dict[str, str]
    marks: dict[str, int]  # applied_upto per station
    balance: dict[str, int]
    minutes: dict[str, dict[str, int]]  # station -> volunteer -> confirmed minutes
    target: dict[str, str]  # volunteer -> station where last active
    roster: list[dict]
    seen_issued: int = 0  # the highest batch number any station says it has applied
    # Volunteers registered at two stations under the same number or mobile (the same person
    # twice, or two stations with the same code): left out of the roster, named in the summary.
    duplicates: list[dict] = field(default_factory=list)


def _j(key: str):
    return entity_row.c.data[key]


def know(store: Store) -> Knowledge:
    with store.engine.connect() as conn:
        cps = conn.execute(select(checkpoint.c.station, checkpoint.c.code, checkpoint.c.epoch,
                                  checkpoint.c.applied_upto, checkpoint.c.clock_offset_s)).all()
        live = and_(entity_row.c.deleted.is_(False))
        vid = _j("volunteer_id").as_string()
        balance = {v: int(n) for v, n in conn.execute(
            select(vid, func.sum(_j("points").as_integer())).where(live, entity_row.c.entity == "ledger_txn")
            .group_by(vid)) if v}
        minutes: dict[str, dict[str, int]] = {}
        for st, v, m in conn.execute(
                select(entity_row.c.station, vid, func.sum(_j("credited_minutes").as_integer()))
                .where(live, entity_row.c.entity == "checkin", _j("status").as_string() == "confirmed")
                .group_by(entity_row.c.station, vid)):
            minutes.setdefault(st, {})[v] = int(m or 0)
        # Where the volunteer was last active: what they did themselves (a check-in, points
        # earned by it, a redemption, "把我的积分转到本站"), not a manager's award or a nightly
        # expiry. Station times are corrected by each station's measured clock offset.
        asked = _j("entity_id").as_string()
        activity = [
            select(entity_row.c.station, vid, func.max(_j("at").as_string()))
            .where(live, entity_row.c.entity == "ledger_txn", _j("kind").as_string().in_(("earn", "redeem")))
            .group_by(entity_row.c.station, vid),
            select(entity_row.c.station, vid, func.max(_j("checked_in_at").as_string()))
            .where(live, entity_row.c.entity == "checkin").group_by(entity_row.c.station, vid),
            select(entity_row.c.station, asked, func.max(_j("at").as_string()))
            .where(live, entity_row.c.entity == "audit_log", _j("action").as_string() == "points_here")
            .group_by(entity_row.c.station, asked),
        ]
        offsets = {c.station: c.clock_offset_s or 0.0 for c in cps}
        last: dict[str, tuple[datetime, str]] = {}
        for q in activity:
            for st, v, at in conn.execute(q):
                if not (v and at):
                    continue
                try:
                    when = datetime.fromisoformat(at) - timedelta(seconds=offsets.get(st, 0.0))
                except ValueError:
                    continue
                if v not in last or (when, st) > last[v]:
                    last[v] = (when, st)
        codes = {c.station: c.code for c in cps}
        roster = []
        for st, data in conn.execute(select(entity_row.c.station, entity_row.c.data).where(
                live, entity_row.c.entity == "volunteer").order_by(entity_row.c.station, entity_row.c.entity_id)):
            if data.get("home_station") or not codes.get(st):
                continue
            roster.append({"id": data["id"], "number": data["number"], "name": data["name"],
                           "mobile": data["mobile"], "status": data["status"], "home_station": codes[st]})
        seen = conn.execute(select(func.max(_j("issued").as_integer())).where(
            entity_row.c.entity == "inbox_batch")).scalar() or 0
    roster, duplicates = _without_duplicates(roster)
    return Knowledge(seen_issued=int(seen), duplicates=duplicates, codes=codes, epochs={c.station: c.epoch for c in cps},
                     marks={c.station: int(c.applied_upto or 0) for c in cps}, balance=balance, minutes=minutes,
                     target={v: st for v, (_at, st) in last.items()}, roster=roster)


def _without_duplicates(roster: list[dict]) -> tuple[list[dict], list[dict]]:
    clash: set[str] = set()
    for key in ("number", "mobile"):
        seen: dict[str, str] = {}
        for m in roster:
            if m[key] in seen:
                clash.update((m["id"], seen[m[key]]))
            else:
                seen[m[key]] = m["id"]
    return ([m for m in roster if m["id"] not in clash],
            [m for m in roster if m["id"] in clash])


def net_after(store: Store, station: str, mark: int) -> dict[str, int]:
    vid = _j("volunteer_id").as_string()
    with store.engine.connect() as conn:
        return {v: int(n) for v, n in conn.execute(
            select(vid, func.sum(_j("points").as_integer())).where(
                entity_row.c.station == station, entity_row.c.entity == "ledger_txn",
                entity_row.c.deleted.is_(False), entity_row.c.last_seq > mark).group_by(vid)) if v}


def _grant(conn, issued: int, mark: int) -> allocate.Grant:
    rows = conn.execute(select(push_allowance.c.volunteer_id, push_allowance.c.points)
                        .where(push_allowance.c.issued == issued)).all()
    return allocate.Grant(issued, mark, {v: int(p) for v, p in rows})


def _base(conn, station: str, epoch: str) -> tuple[allocate.Grant | None, bool]:
    """The batch surely in force at the station: (its grant, whether the district can tell).

    Known applied: the newest batch the station exported (what the pull brought), or the newest
    the station acknowledged in its current epoch. A batch exported from an older epoch (the
    station was restored from a backup made after applying it) allows nothing any more, at its
    mark (kiosk/inbox.py: standing). Batches sent in an older epoch are not in the restored
    database at all.
    """
    applied = conn.execute(select(_j("issued").as_integer(), _j("epoch").as_string(), _j("mark_seq").as_integer())
                           .where(entity_row.c.station == station, entity_row.c.entity == "inbox_batch",
                                  entity_row.c.deleted.is_(False))
                           .order_by(_j("issued").as_integer().desc()).limit(1)).first()
    acked = conn.execute(select(func.max(push_batch.c.issued)).where(
        push_batch.c.station == station, push_batch.c.status == "acked", push_batch.c.epoch == epoch)).scalar() or 0
    if acked and (applied is None or acked >= applied[0]):
        issued = acked
    elif applied is not None:
        issued, batch_epoch, mark = int(applied[0]), applied[1], int(applied[2])
        if batch_epoch != epoch:
            return allocate.Grant(issued, mark, {}), True
    else:
        return allocate.NO_GRANT, True
    row = conn.execute(select(push_batch.c.mark_seq).where(push_batch.c.issued == issued,
                                                           push_batch.c.station == station)).first()
    if row is None:  # the station applied a batch this district database has no record of
        return None, False
    return _grant(conn, issued, int(row.mark_seq)), True


def _unsettled(conn, station: str, epoch: str, base: allocate.Grant) -> list:
    """Batches sent after the one surely in force whose fate is unknown (they may be in force)."""
    return conn.execute(select(push_batch.c.issued, push_batch.c.mark_seq).where(
        push_batch.c.station == station, push_batch.c.epoch == epoch, push_batch.c.issued > base.issued,
        push_batch.c.status.in_(("unknown", "sending"))).order_by(push_batch.c.issued)).all()


def candidates(store: Store, station: str, epoch: str) -> list[allocate.Grant] | None:
    """The batches the station may have in force; None when the district can't tell (it lost
    the allowances of a batch the station says it applied)."""
    with store.engine.connect() as conn:
        base, known = _base(conn, station, epoch)
        if not known:
            return None
        return [base] + [_grant(conn, r.issued, int(r.mark_seq)) for r in _unsettled(conn, station, epoch, base)]


def station_claims(store: Store, station: str, k: Knowledge) -> dict[str, int]:
    cands = candidates(store, station, k.epochs[station])
    if cands is None:  # can't tell: assume it may let anyone spend everything
        return {v: max(0, g) for v, g in k.balance.items()}
    return allocate.claims(cands, lambda mark: net_after(store, station, mark))


# --- batches ----------------------------------------------------------------------------------

def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def in_force_hashes(store: Store, station: str, epoch: str) -> tuple[str | None, str | None]:
    """(balances hash of the batch surely in force, extras hash of the full batch behind it);
    (None, None) when a later batch's fate is unknown, the one in force is void (restored
    station), the station has points moving since its mark (then its claims differ from the
    allowances: it must get the new batch, so the top-ups can count on it), or the district
    can't tell."""
    with store.engine.connect() as conn:
        base, known = _base(conn, station, epoch)
        if not known or not base.issued or _unsettled(conn, station, epoch, base):
            return None, None
    if any(net_after(store, station, base.mark).values()):
        return None, None
    with store.engine.connect() as conn:
        row = conn.execute(select(push_batch.c.balances_sha256, push_batch.c.epoch).where(
            push_batch.c.issued == base.issued)).first()
        if row is None or row.epoch != epoch:
            return None, None
        extras = conn.execute(select(push_batch.c.extras_sha256).where(
            push_batch.c.station == station, push_batch.c.kind == "full", push_batch.c.issued <= base.issued,
            push_batch.c.epoch == epoch, push_batch.c.status.in_(("acked", "unknown")))
            .order_by(push_batch.c.issued.desc()).limit(1)).scalar()
        return row.balances_sha256, extras


@dataclass
class Sent:
    station: str
    kind: str
    issued: int
    status: str = "sending"
    answer: dict | None = None
    error: str | None = None
    nbytes: int = 0
    allowance_points: int = 0
    volunteers: int = 0
    unchanged: bool = False  # not sent: the station already has exactly this


_issue_lock = threading.Lock()


def _record(store: Store, station: str, kind: str, epoch: str, mark: int, allowances: dict[str, int],
            body_for, hashes: tuple[str, str | None], seen_issued: int = 0) -> tuple[int, str, bytes]:
    """Write the batch and its allowances (status 'sending') before sending it."""
    batch_id = str(uuid.uuid4())
    with _issue_lock, store._write_lock, store.engine.begin() as conn:
        issued = max(conn.execute(select(func.max(push_batch.c.issued))).scalar() or 0, seen_issued) + 1
        conn.execute(push_batch.insert().values(
            issued=issued, batch_id=batch_id, station=station, kind=kind, epoch=epoch, mark_seq=mark,
            created_at=now_utc(), status="sending", body_sha256="", balances_sha256=hashes[0],
            extras_sha256=hashes[1]))
        body = body_for(batch_id, issued)
        conn.execute(update(push_batch).where(push_batch.c.issued == issued).values(
            body_sha256=hashlib.sha256(body).hexdigest()))
        rows = [{"issued": issued, "volunteer_id": v, "points": p} for v, p in allowances.items() if p > 0]
        for i in range(0, len(rows), 1000):
            conn.execute(push_allowance.insert(), rows[i:i + 1000])
    return issued, batch_id, body


def _finish(store: Store, sent: Sent) -> None:
    with store._write_lock, store.engine.begin() as conn:
        conn.execute(update(push_batch).where(push_batch.c.issued == sent.issued).values(
            status=sent.status, answer=sent.answer, error=sent.error))


def post_batch(conf: StationConf, body: bytes, retries: int = 4, backoff: float = 0.5, timeout: float = 600.0,
               sleep=time.sleep) -> tuple[str, dict | None, str | None]:
    """POST a batch (gzip); returns (acked | rejected | unknown, the answer, an error)."""
    payload = gzip.compress(body, 6)
    url = conf.url + INBOX_PATH
    attempt = 0
    while True:
        headers = {**signing.signed_headers(conf.key, "POST", url, payload), "Content-Type": "application/json",
                   "Content-Encoding": "gzip", "User-Agent": "kiosk-district-push"}
        try:
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return "acked", json.loads(resp.read()), None
        except urllib.error.HTTPError as e:
            detail = _problem(e.read())
            if e.code < 500:  # the station answered no: the batch is not applied
                return "rejected", None, f"HTTP {e.code}: {detail}"
            error = f"HTTP {e.code}: {detail}"
        except RETRYABLE as e:
            error = f"{type(e).__name__}: {e}"
        if attempt >= retries:
            return "unknown", None, error
        sleep(backoff * (2 ** attempt))
        attempt += 1


@dataclass
class PushResult:
    station: str
    ok: bool = False
    batches: list[Sent] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    # Volunteers whom the stations may let spend more than their balance: only possible after a
    # station restored from a backup lost points that were already allowed elsewhere.
    overdrawn: list[str] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)


def overdrawn(balance: dict[str, int], claims: dict[str, dict[str, int]]) -> list[str]:
    exposure: dict[str, int] = {}
    for per in claims.values():
        for v, c in per.items():
            exposure[v] = exposure.get(v, 0) + max(0, c)
    return sorted(v for v, x in exposure.items() if x > max(0, balance.get(v, 0)))


def push_all(store: Store, stations: list[StationConf], only: set[str] | None = None,
             events: list[dict] | None = None, thresholds: list[int] | None = None, parallel: int = 4,
             retries: int = 4, backoff: float = 0.5, as_of: str | None = None, deliver=None,
             skip_unchanged: bool = True) -> list[PushResult]:
    """Push every station (those in `only`, when given: the ones pulled tonight).

    A station whose batch in force already says exactly this (same balances, roster, events,
    thresholds) is not sent a new one. `deliver(conf, body)` replaces post_batch in tests (it
    returns the same triple).
    """
    deliver = deliver or (lambda conf, body: post_batch(conf, body, retries=retries, backoff=backoff))
    t0 = time.perf_counter()
    k = know(store)
    as_of = as_of or datetime.now(UTC).isoformat(timespec="seconds")  # shown in each station's time zone
    results = {c.name: PushResult(c.name) for c in stations}
    pushable = [c for c in stations if c.name in k.codes and (only is None or c.name in only)]
    for c in stations:
        if c.name not in k.codes:
            results[c.name].error = "never pulled: nothing to send yet"
        elif only is not None and c.name not in only:
            results[c.name].error = "not pulled tonight: skipped"
    claims = {s: station_claims(store, s, k) for s in k.codes}
    over = overdrawn(k.balance, claims)
    want = allocate.desired(k.balance, k.target)
    first = allocate.phase_one(want, claims, [c.name for c in pushable])
    minutes_total: dict[str, int] = {}
    for per in k.minutes.values():
        for v, m in per.items():
            minutes_total[v] = minutes_total.get(v, 0) + m
    people = sorted(set(k.balance) | set(minutes_total))

    extras = {"thresholds": thresholds, "events": events, "roster": k.roster}
    extras_sha = _sha(extras)

    def balances_of(conf: StationConf, allowances: dict[str, int]) -> list[dict]:
        here = k.minutes.get(conf.name, {})
        return [{"volunteer_id": v, "allowance": allowances.get(v, 0), "total": k.balance.get(v, 0),
                 "minutes_total": minutes_total.get(v, 0), "minutes_here": here.get(v, 0)} for v in people]

    def body_for(conf: StationConf, kind: str, balances: list[dict]):
        def make(batch_id: str, issued: int) -> bytes:
            doc = {"schema_version": SCHEMA_VERSION, "batch_id": batch_id, "issued": issued, "kind": kind,
                   "station": k.codes[conf.name], "epoch": k.epochs[conf.name], "mark_seq": k.marks[conf.name],
                   "as_of": as_of, "balances": balances}
            if kind == "full":
                doc.update(extras)
            return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return make

    def send(conf: StationConf, kind: str, allowances: dict[str, int]) -> Sent:
        try:
            return _send(conf, kind, allowances)
        except Exception as e:  # noqa: BLE001 - one station's failure is reported, the others go on
            sent = Sent(conf.name, kind, 0, status="failed", error=f"{type(e).__name__}: {e}")
            results[conf.name].batches.append(sent)
            return sent

    def _send(conf: StationConf, kind: str, allowances: dict[str, int]) -> Sent:
        balances = balances_of(conf, allowances)
        hashes = (_sha(balances), extras_sha if kind == "full" else None)
        if kind == "full" and skip_unchanged and in_force_hashes(store, conf.name, k.epochs[conf.name]) == hashes:
            sent = Sent(conf.name, kind, 0, status="acked", unchanged=True, volunteers=len(people),
                        allowance_points=sum(allowances.values()))
            results[conf.name].batches.append(sent)
            return sent
        issued, _bid, body = _record(store, conf.name, kind, k.epochs[conf.name], k.marks[conf.name],
                                     allowances, body_for(conf, kind, balances), hashes, k.seen_issued)
        sent = Sent(conf.name, kind, issued, nbytes=len(body), allowance_points=sum(allowances.values()),
                    volunteers=len(people))
        try:
            sent.status, sent.answer, sent.error = deliver(conf, body)
        except Exception as e:  # noqa: BLE001 - whatever happened, the answer is unknown
            sent.status, sent.error = "unknown", f"{type(e).__name__}: {e}"
        _finish(store, sent)
        results[conf.name].batches.append(sent)
        return sent

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="district-push") as pool:
        phase1 = list(pool.map(lambda c: send(c, "full", first[c.name]), pushable))
        acked = {s.station for s in phase1 if s.status == "acked"}
        more = allocate.top_up(k.balance, want, claims, first, acked)
        by_name = {c.name: c for c in pushable}
        list(pool.map(lambda name: send(by_name[name], "topup", more[name]), sorted(more)))
    for r in results.values():
        r.overdrawn = over
        r.duplicates = k.duplicates
        if r.batches:
            bad = [b for b in r.batches if b.status != "acked"]
            r.ok = not bad
            r.error = r.error or (f"{bad[0].kind} batch {bad[0].status}: {bad[0].error}" if bad else None)
        r.seconds = time.perf_counter() - t0
    return [results[c.name] for c in stations]


def summary(results: list[PushResult]) -> str:
    lines = [f"{'station':<20} {'push':<7} {'roster+':>7} {'conflicts':>9} {'events':>7} {'people':>7} "
             f"{'allowed':>9} {'topup':>7}"]
    for r in results:
        full = next((b for b in r.batches if b.kind == "full"), None)
        top = next((b for b in r.batches if b.kind == "topup"), None)
        ans = (full.answer or {}) if full else {}
        roster = ans.get("roster") or {}
        ev = ans.get("events") or {}
        name = r.station if len(r.station) <= 20 else r.station[:19] + "…"
        status = "FAILED" if not r.ok else ("same" if full and full.unchanged and not top else "ok")
        line = (f"{name:<20} {status:<7} {roster.get('added', 0) + roster.get('updated', 0):>7} "
                f"{len(roster.get('conflicts', [])):>9} {ev.get('added', 0) + ev.get('updated', 0):>7} "
                f"{full.volunteers if full else 0:>7} "
                f"{(top or full).allowance_points if full else 0:>9} {top.allowance_points if top else 0:>7}")
        if r.error:
            line += f"  {r.error}"
        for c in roster.get("conflicts", [])[:5]:
            line += f"\n    conflict: {c.get('number')} (from {c.get('home_station')}) has the {c.get('field')} of {c.get('local_number')} here"
        lines.append(line)
    failed = sum(not r.ok for r in results)
    same = sum(1 for r in results if r.ok and all(b.unchanged for b in r.batches))
    lines.append(f"{len(results)} station(s) pushed, {failed} failed, {same} unchanged (nothing sent)")
    dup = results[0].duplicates if results else []
    if dup:
        lines.append(f"WARNING: {len(dup)} volunteer(s) registered at two stations under the same number or mobile "
                     "were left out of the roster: " + ", ".join(f"{m['number']} ({m['home_station']}, {m['mobile']})"
                                                                for m in dup[:10]) + (" …" if len(dup) > 10 else ""))
    over = results[0].overdrawn if results else []
    if over:
        lines.append(f"WARNING: {len(over)} volunteer(s) may spend more than their balance (a station restored from "
                     f"a backup lost points already allowed elsewhere): {', '.join(over[:10])}"
                     + (" …" if len(over) > 10 else ""))
    return "\n".join(lines)
