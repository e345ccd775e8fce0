"""Signing in and out of events, credited hours and star levels.

Plain operations over the session: call them inside a write transaction (db.begin_write());
they check what they need inside it, flush, audit and raise DomainError; never commit.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import extract, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from . import audit, inbox, ledger
from .clock import now
from .db import db
from .errors import DomainError, InvalidInput, NotFound
from .events import MAX_EVENT_LENGTH, get_station
from .ids import parse_id
from .models import CheckIn, Event, QrUse, Volunteer
from .text import bad_characters, clean
from .volunteers import require_active

SIGN_IN_OPENS = timedelta(minutes=60)  # before the scheduled start
SOURCES = ("kiosk", "phone", "manager")


class NotOpenForSignIn(DomainError):
    message = _l("这个活动现在不能签到：签到从开始前 1 小时到活动结束。")


class EventFull(DomainError):
    message = _l("这个活动的名额已经满了。")


class AlreadyCheckedOut(DomainError):
    message = _l("您已经签退过这个活动了，不用再签。")


class NotCheckedIn(DomainError):
    message = _l("您还没有签到这个活动，请先签到。")


class BusyElsewhere(DomainError):
    def __init__(self, title: str):
        super().__init__(_l("您还在“%(t)s”签到中，请先在那里签退。", t=title))


class IdConflict(DomainError):
    message = _l("这次操作和之前的一次冲突了，请返回重新操作。")


class CodeUsed(DomainError):
    status = 409
    message = _l("这个二维码您刚刚已经用过了，请等屏幕上的二维码变化后再扫。")


# --- the rule ---------------------------------------------------------------------------------

def credited_minutes(starts_at: datetime, ends_at: datetime, checked_in_at: datetime,
                     checked_out_at: datetime, cap_minutes: int) -> int:
    """Whole minutes of service credited for one check-in.

    Arriving before the scheduled start counts from the start, arriving late counts from
    arrival; leaving after the scheduled end counts to the end; never negative, never more than
    the scheduled window nor the station's cap per check-in. Seconds are dropped.
    """
    begin = max(checked_in_at, starts_at)
    finish = min(checked_out_at, ends_at)
    minutes = int((finish - begin).total_seconds() // 60)
    return max(0, min(minutes, cap_minutes))


def _credit(c: CheckIn) -> int:
    return credited_minutes(c.event.starts_at, c.event.ends_at, c.checked_in_at, c.checked_out_at,
                            get_station().credit_cap_minutes)


def star_thresholds() -> list[int]:
    """Hours for 1★…5★ (station data, e.g. "100,300,600,1000,1500")."""
    return [int(x) for x in get_station().star_thresholds.split(",") if x.strip()]


def stars(minutes: int, thresholds: list[int]) -> int:
    hours = minutes / 60
    return sum(1 for t in thresholds if hours >= t)


# --- signing in and out -----------------------------------------------------------------------

def open_for_sign_in(event: Event, at: datetime) -> bool:
    return (event.published and not event.cancelled
            and event.starts_at - SIGN_IN_OPENS <= at < event.ends_at)


def _existing(volunteer: Volunteer, event: Event) -> CheckIn | None:
    return db.session.scalar(select(CheckIn).where(
        CheckIn.volunteer_id == volunteer.id, CheckIn.event_id == event.id))


def close_overdue(at: datetime, volunteer: Volunteer | None = None) -> int:
    """Close check-ins whose event is over without a sign-out: at the scheduled end, as
    "unconfirmed", for the manager to confirm or correct. Returns how many."""
    q = select(CheckIn).join(Event, CheckIn.event_id == Event.id).where(
        CheckIn.status == "open", Event.ends_at <= at)
    if volunteer is not None:
        q = q.where(CheckIn.volunteer_id == volunteer.id)
    n = 0
    for c in db.session.scalars(q).unique():
        c.checked_out_at = max(c.event.ends_at, c.checked_in_at)
        c.source_out = "auto"
        c.status = "unconfirmed"
        c.credited_minutes = _credit(c)
        c.version += 1
        c.updated_at = at
        audit.record("system", "auto_close", "checkin", c.id, credited_minutes=c.credited_minutes)
        n += 1
    db.session.flush()
    return n


def use_code(volunteer: Volunteer, event: Event, step: int) -> None:
    """A rotating code counts once per volunteer and time step: a replay is refused."""
    if db.session.get(QrUse, (event.id, volunteer.id, step)) is not None:
        raise CodeUsed()
    db.session.add(QrUse(event_id=event.id, volunteer_id=volunteer.id, step=step))
    db.session.flush()


def check_in_with_code(volunteer: Volunteer, event: Event, step: int, source: str, checkin_id: str | None,
                       at: datetime | None = None) -> tuple[CheckIn, bool]:
    """Sign in with a scanned event code: a retry of the same request (same id) or a second tap
    answers like the first time; otherwise the code is spent (once per volunteer and step) and
    the sign-in made."""
    existing = _existing(volunteer, event)
    if existing is not None and (existing.status == "open" or existing.id == checkin_id):
        return check_in(volunteer, event, source, checkin_id, at, existing=existing)
    use_code(volunteer, event, step)
    return check_in(volunteer, event, source, checkin_id, at, existing=existing)


def check_out_with_code(volunteer: Volunteer, event: Event, step: int, source: str,
                        at: datetime | None = None) -> tuple[CheckIn, bool]:
    """Sign out with a scanned event code; signing out again answers with the first sign-out."""
    existing = _existing(volunteer, event)
    if existing is not None and existing.status != "open":
        return check_out(volunteer, event, source, at)
    use_code(volunteer, event, step)
    return check_out(volunteer, event, source, at)


def status_of(volunteer: Volunteer, event: Event) -> CheckIn | None:
    """This volunteer's check-in at this event, if any."""
    return _existing(volunteer, event)


_UNKNOWN = object()


def check_in(volunteer: Volunteer, event: Event, source: str, checkin_id: str | None = None,
             at: datetime | None = None, existing=_UNKNOWN) -> tuple[CheckIn, bool]:
    """Sign a volunteer in; returns (the check-in, whether it is new).

    Idempotent: the same id again, a double tap or a second device answer with the existing
    check-in instead of making another.
    """
    at = at or now()
    if source not in SOURCES:
        raise InvalidInput(_l("签到方式不对。"))
    checkin_id = parse_id(checkin_id) if checkin_id else None
    if existing is _UNKNOWN:
        existing = _existing(volunteer, event)
    # An id already used for someone or something else fails the primary key at the flush below.
    if existing is not None and existing.id == checkin_id:
        return existing, False
    require_active(volunteer)
    if existing is not None:
        if existing.status == "open":
            return existing, False
        raise AlreadyCheckedOut()
    if not open_for_sign_in(event, at):
        raise NotOpenForSignIn()
    elsewhere = db.session.scalar(select(CheckIn).where(
        CheckIn.volunteer_id == volunteer.id, CheckIn.status == "open"))
    if elsewhere is not None and close_overdue(at, volunteer):
        elsewhere = None  # it was a forgotten one at an event that is over: closed just now
    if elsewhere is not None:
        raise BusyElsewhere(elsewhere.event.title)
    if event.capacity is not None:
        taken = db.session.scalar(select(func.count()).where(
            CheckIn.event_id == event.id, CheckIn.status != "no_show"))
        if taken >= event.capacity:
            raise EventFull()
    c = CheckIn(event_id=event.id, volunteer_id=volunteer.id, checked_in_at=at, source_in=source, status="open")
    if checkin_id:
        c.id = checkin_id
    db.session.add(c)
    try:
        db.session.flush()
    except IntegrityError:
        # Only reachable without BEGIN IMMEDIATE (e.g. another database): the unique indexes
        # are the last line of defence against a second open check-in.
        db.session.rollback()
        raise IdConflict() from None
    audit.record(f"volunteer:{volunteer.number}", "check_in", "checkin", c.id, source=source,
                 event_id=event.id, at=at)
    return c, True


def check_out(volunteer: Volunteer, event: Event, source: str, at: datetime | None = None) -> tuple[CheckIn, bool]:
    """Sign a volunteer out and credit the minutes; returns (the check-in, whether it changed).

    Signing out twice answers with the first sign-out.
    """
    at = at or now()
    c = _existing(volunteer, event)
    if c is None:
        raise NotCheckedIn()
    if c.status != "open":
        if c.source_out in SOURCES:
            return c, False
        raise AlreadyCheckedOut()
    c.checked_out_at = max(at, c.checked_in_at)
    c.source_out = source
    c.status = "confirmed"
    c.credited_minutes = _credit(c)
    c.version += 1
    c.updated_at = at
    audit.record(f"volunteer:{volunteer.number}", "check_out", "checkin", c.id, source=source,
                 at=at, credited_minutes=c.credited_minutes)
    db.session.flush()
    ledger.settle_checkin(c, f"volunteer:{volunteer.number}")
    return c, True


# --- the manager ------------------------------------------------------------------------------

def _reason(reason: str) -> str:
    reason = clean(reason)
    if not reason:
        raise InvalidInput(_l("请写一下原因，方便以后查对。"), field="reason")
    if len(reason) > 200 or bad_characters(reason):
        raise InvalidInput(_l("原因最多 200 个字，不能有特殊字符。"), field="reason")
    return reason


def _check_times(event: Event, checked_in_at: datetime, checked_out_at: datetime) -> None:
    if checked_out_at < checked_in_at:
        raise InvalidInput(_l("签退时间不能早于签到时间。"), field="checked_out_at")
    day = timedelta(days=1)
    if not (event.starts_at - day <= checked_in_at <= event.ends_at + day):
        raise InvalidInput(_l("时间要在活动前后一天之内。"), field="checked_in_at")
    if checked_out_at > event.ends_at + day:
        raise InvalidInput(_l("时间要在活动前后一天之内。"), field="checked_out_at")


def add_from_paper(actor: str, volunteer: Volunteer, event: Event, checked_in_at: datetime,
                   checked_out_at: datetime, reason: str) -> CheckIn:
    """Record someone from a paper sign-in sheet; confirmed at once."""
    reason = _reason(reason)
    _check_times(event, checked_in_at, checked_out_at)
    if _existing(volunteer, event) is not None:
        raise InvalidInput(_l("这位志愿者已经有这个活动的签到记录了，请直接修改那一条。"), field="volunteer")
    c = CheckIn(event_id=event.id, volunteer_id=volunteer.id, checked_in_at=checked_in_at,
                checked_out_at=checked_out_at, source_in="manager", source_out="manager",
                status="confirmed", note=reason)
    db.session.add(c)
    db.session.flush()
    db.session.refresh(c)
    c.credited_minutes = _credit(c)
    audit.record(actor, "add_paper", "checkin", c.id, reason=reason, volunteer=volunteer.number,
                 checked_in_at=checked_in_at, checked_out_at=checked_out_at, credited_minutes=c.credited_minutes)
    db.session.flush()
    ledger.settle_checkin(c, actor)
    return c


def correct(actor: str, c: CheckIn, checked_in_at: datetime, checked_out_at: datetime, reason: str) -> CheckIn:
    """Correct the times of a check-in (and so its credited minutes); it becomes confirmed."""
    reason = _reason(reason)
    _check_times(c.event, checked_in_at, checked_out_at)
    old = (c.checked_in_at, c.checked_out_at, c.credited_minutes, c.status)
    if checked_in_at != c.checked_in_at:
        c.source_in = "manager"
    if checked_out_at != c.checked_out_at or c.status == "open":
        c.source_out = "manager"
    c.checked_in_at, c.checked_out_at = checked_in_at, checked_out_at
    c.status = "confirmed"
    c.credited_minutes = _credit(c)
    c.note = reason
    c.version += 1
    c.updated_at = now()
    audit.record(actor, "correct", "checkin", c.id, reason=reason,
                 checked_in_at=[old[0], checked_in_at], checked_out_at=[old[1], checked_out_at],
                 credited_minutes=[old[2], c.credited_minutes], status=[old[3], c.status])
    db.session.flush()
    ledger.settle_checkin(c, actor)
    return c


def mark_no_show(actor: str, c: CheckIn, reason: str) -> CheckIn:
    reason = _reason(reason)
    if c.status == "no_show":
        return c
    old = (c.status, c.credited_minutes)
    c.status = "no_show"
    c.credited_minutes = 0
    if c.checked_out_at is None:
        c.checked_out_at = c.checked_in_at
        c.source_out = "manager"
    c.note = reason
    c.version += 1
    c.updated_at = now()
    audit.record(actor, "no_show", "checkin", c.id, reason=reason, status=[old[0], "no_show"],
                 credited_minutes=[old[1], 0])
    db.session.flush()
    ledger.settle_checkin(c, actor)
    return c


def confirm(actor: str, checkins: list[CheckIn]) -> int:
    """Confirm unconfirmed check-ins as they stand; returns how many changed."""
    n = 0
    for c in checkins:
        if c.status == "unconfirmed":
            c.status = "confirmed"
            c.version += 1
            c.updated_at = now()
            audit.record(actor, "confirm", "checkin", c.id, credited_minutes=c.credited_minutes)
            db.session.flush()
            ledger.settle_checkin(c, actor)
            n += 1
    db.session.flush()
    return n


def get_checkin(checkin_id: str) -> CheckIn:
    c = db.session.get(CheckIn, checkin_id) if checkin_id else None
    if c is None:
        raise NotFound(_l("没有找到这条签到记录，请刷新页面。"))
    return c


def attendance(event: Event) -> list[CheckIn]:
    return list(db.session.scalars(select(CheckIn).options(joinedload(CheckIn.volunteer))
                                   .where(CheckIn.event_id == event.id).order_by(CheckIn.checked_in_at)).unique())


def signed_in_now(event_ids: list[str]) -> dict[str, int]:
    """How many are signed in (open) now, per event."""
    if not event_ids:
        return {}
    rows = db.session.execute(select(CheckIn.event_id, func.count()).where(
        CheckIn.event_id.in_(event_ids), CheckIn.status == "open").group_by(CheckIn.event_id))
    return dict(rows.all())


# --- what a volunteer sees --------------------------------------------------------------------

@dataclass
class Hours:
    total_minutes: int
    year_minutes: int
    stars: int
    next_threshold_hours: int | None
    records: list[CheckIn]
    open: CheckIn | None


def hours(volunteer: Volunteer, at: datetime | None = None) -> Hours:
    """Confirmed hours in total and this year, stars, and the volunteer's records, newest first."""
    at = at or now()
    confirmed = (CheckIn.volunteer_id == volunteer.id, CheckIn.status == "confirmed")
    total = db.session.scalar(select(func.coalesce(func.sum(CheckIn.credited_minutes), 0)).where(*confirmed))
    total += inbox.minutes_elsewhere(volunteer)  # other stations' hours, as of the district's snapshot
    year = db.session.scalar(select(func.coalesce(func.sum(CheckIn.credited_minutes), 0)).where(
        *confirmed, extract("year", CheckIn.checked_in_at) == at.year))
    thresholds = star_thresholds()
    level = stars(total, thresholds)
    records = list(db.session.scalars(select(CheckIn).options(joinedload(CheckIn.event))
                                      .where(CheckIn.volunteer_id == volunteer.id)
                                      .order_by(CheckIn.checked_in_at.desc()).limit(100)).unique())
    open_one = next((c for c in records if c.status == "open"), None)
    return Hours(total, year, level, thresholds[level] if level < len(thresholds) else None, records, open_one)


def events_open_now(at: datetime) -> list[Event]:
    """Events a volunteer can sign in to or out of right now, at this station."""
    q = select(Event).where(Event.published.is_(True), Event.cancelled_at.is_(None),
                            Event.starts_at <= at + SIGN_IN_OPENS, Event.ends_at > at,
                            Event.starts_at >= at - MAX_EVENT_LENGTH).order_by(Event.starts_at)
    return list(db.session.scalars(q).unique())


def upcoming(at: datetime, days: int = 14) -> list[Event]:
    q = select(Event).where(Event.published.is_(True), Event.ends_at > at, Event.starts_at >= at - MAX_EVENT_LENGTH,
                            Event.starts_at < datetime.combine(at.date(), datetime.min.time()) + timedelta(days=days)
                            ).order_by(Event.starts_at)
    return list(db.session.scalars(q).unique())

