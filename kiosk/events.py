"""Events, categories and station settings: plain operations over the session.

They take models and values, never the request; they flush, audit and raise DomainError, and
never commit (the view or CLI command commits once).
"""

from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import defer

from . import audit
from .clock import now
from .db import db
from .errors import DomainError, InvalidInput, NotFound, StaleEdit
from .models import Category, Event, EventSeries, Station
from .text import bad_characters, clean

EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2100, 1, 1)
MAX_EVENT_LENGTH = timedelta(days=7)
MAX_SERIES_SPAN = timedelta(days=366)
MAX_SERIES_EVENTS = 200


@dataclass
class EventData:
    """What a manager enters for an event."""

    title: str
    starts_at: datetime
    ends_at: datetime
    category_id: str | None = None
    place: str = ""
    organiser: str = ""
    description: str = ""
    capacity: int | None = None
    published: bool = True

    def checked(self) -> "EventData":
        """The same data, cleaned, or InvalidInput naming the first bad field."""
        d = EventData(**{f.name: getattr(self, f.name) for f in fields(self)})
        d.title, d.place, d.organiser = clean(d.title), clean(d.place), clean(d.organiser)
        d.description = (d.description or "").strip()
        if not d.title:
            raise InvalidInput(_l("请填写活动名称。"), field="title")
        for name, limit in (("title", 100), ("place", 100), ("organiser", 100), ("description", 4000)):
            value = getattr(d, name)
            if len(value) > limit:
                raise InvalidInput(_l("这一项最多 %(n)d 个字。", n=limit), field=name)
            if bad_characters(value, multiline=(name == "description")):
                raise InvalidInput(_l("这一项里有不能显示的特殊字符，请删掉后再保存。"), field=name)
        if not (EARLIEST <= d.starts_at < LATEST):
            raise InvalidInput(_l("开始时间不对，请选择 2000 年到 2099 年之间的日期。"), field="starts_at")
        if not (EARLIEST <= d.ends_at < LATEST):
            raise InvalidInput(_l("结束时间不对，请选择 2000 年到 2099 年之间的日期。"), field="ends_at")
        if d.ends_at <= d.starts_at:
            raise InvalidInput(_l("结束时间要晚于开始时间。"), field="ends_at")
        if d.ends_at - d.starts_at > MAX_EVENT_LENGTH:
            raise InvalidInput(_l("一个活动最长 7 天，更长的请分成几次。"), field="ends_at")
        if d.capacity is not None and not (1 <= d.capacity <= 100000):
            raise InvalidInput(_l("人数上限要在 1 到 100000 之间，不限人数请留空。"), field="capacity")
        if d.category_id is not None:
            cat = db.session.get(Category, d.category_id)
            if cat is None:
                raise InvalidInput(_l("请选择一个活动类别。"), field="category_id")
        return d


def get_station() -> Station:
    station = db.session.get(Station, 1)
    if station is None:
        raise NotFound(_l("站点还没有设置，请管理员先运行 kiosk init。"))
    return station


def ensure_station(code: str = "STATION", name: str = "新时代文明实践站") -> Station:
    """The settings row, created with defaults on a new database."""
    station = db.session.get(Station, 1)
    if station is None:
        station = Station(id=1, code=code, name=name)
        db.session.add(station)
        db.session.flush()
    return station


def update_station(actor: str, name: str, code: str, idle_timeout_s: int, credit_cap_minutes: int | None = None,
                   star_thresholds: str | None = None) -> Station:
    """Change the station's settings; the hours rules (cap, star thresholds) when given."""
    station = get_station()
    name, code = clean(name), clean(code).upper()
    if not name or len(name) > 100 or bad_characters(name):
        raise InvalidInput(_l("请填写站点名称（最多 100 个字，不能有特殊字符）。"), field="name")
    if not code or len(code) > 32 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in code):
        raise InvalidInput(_l("站点编码只能用字母、数字和短横线，最多 32 个字符。"), field="code")
    if not 15 <= idle_timeout_s <= 3600:
        raise InvalidInput(_l("无人操作返回首页的时间要在 15 到 3600 秒之间。"), field="idle_timeout_s")
    values = dict(name=name, code=code, idle_timeout_s=idle_timeout_s)
    if credit_cap_minutes is not None:
        if not 30 <= credit_cap_minutes <= 24 * 60:
            raise InvalidInput(_l("每次最多计入的时长要在 30 到 1440 分钟之间。"), field="credit_cap_minutes")
        values["credit_cap_minutes"] = credit_cap_minutes
    if star_thresholds is not None:
        values["star_thresholds"] = parse_star_thresholds(star_thresholds)
    changes = _diff(station, **values)
    if changes:
        station.version += 1
        station.updated_at = now()
        audit.record(actor, "update", "station", str(station.id), **changes)
    db.session.flush()
    return station


def parse_star_thresholds(text: str) -> str:
    """Five rising hour counts for 1★…5★, as typed ("100, 300，600 1000 1500"), normalised."""
    parts = [p for p in text.replace("，", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        hours = [int(p) for p in parts]
    except ValueError:
        hours = []
    if len(hours) != 5 or any(h <= 0 or h > 100000 for h in hours) or hours != sorted(set(hours)):
        raise InvalidInput(_l("请填写 5 个从小到大的小时数，例如 100,300,600,1000,1500。"), field="star_thresholds")
    return ",".join(str(h) for h in hours)


def _diff(obj, **values) -> dict:
    """Apply values to obj; return {field: [old, new]} for those that changed."""
    changes = {}
    for key, new in values.items():
        old = getattr(obj, key)
        if old != new:
            changes[key] = [_plain(old), _plain(new)]
            setattr(obj, key, new)
    return changes


def _plain(v):
    return v.isoformat() if isinstance(v, (date, datetime)) else v


# --- categories -------------------------------------------------------------------------------

def categories(active_only: bool = True) -> list[Category]:
    q = select(Category).order_by(Category.position, Category.name)
    if active_only:
        q = q.where(Category.active.is_(True))
    return list(db.session.scalars(q))


def _check_category_name(name: str, exclude_id: str | None = None) -> str:
    name = clean(name)
    if not name or len(name) > 30 or bad_characters(name):
        raise InvalidInput(_l("类别名称要填写，最多 30 个字，不能有特殊字符。"), field="name")
    q = select(Category.id).where(func.lower(Category.name) == name.lower())
    if exclude_id:
        q = q.where(Category.id != exclude_id)
    if db.session.scalar(q):
        raise InvalidInput(_l("已经有这个类别了。"), field="name")
    return name


def add_category(actor: str, name: str) -> Category:
    name = _check_category_name(name)
    position = (db.session.scalar(select(func.max(Category.position))) or 0) + 1
    cat = Category(name=name, position=position)
    db.session.add(cat)
    db.session.flush()
    audit.record(actor, "create", "category", cat.id, name=name)
    return cat


def update_category(actor: str, cat: Category, name: str, active: bool) -> Category:
    name = _check_category_name(name, exclude_id=cat.id)
    changes = _diff(cat, name=name, active=active)
    if changes:
        cat.version += 1
        cat.updated_at = now()
        audit.record(actor, "update", "category", cat.id, **changes)
    db.session.flush()
    return cat


# --- events -----------------------------------------------------------------------------------

def get_event(event_id: str) -> Event:
    event = db.session.get(Event, event_id) if event_id else None
    if event is None:
        raise NotFound(_l("没有找到这个活动，它可能已被删除。请返回首页。"))
    return event


def create_event(actor: str, data: EventData, series: EventSeries | None = None) -> Event:
    d = data.checked()
    event = Event(**{f.name: getattr(d, f.name) for f in fields(d)}, series=series)
    db.session.add(event)
    db.session.flush()
    audit.record(actor, "create", "event", event.id, title=d.title, starts_at=d.starts_at, ends_at=d.ends_at)
    return event


def create_weekly_series(actor: str, data: EventData, weekdays: set[int], until: date) -> list[Event]:
    """One event per chosen ISO weekday from the first event's date up to and including `until`.

    The first occurrence is the first chosen weekday on or after `data.starts_at`; each copy
    keeps the same clock times and length.
    """
    d = data.checked()
    if not weekdays or not weekdays <= set(range(1, 8)):
        raise InvalidInput(_l("请至少选择一周中的一天。"), field="weekdays")
    first_day = d.starts_at.date()
    if until is None:
        raise InvalidInput(_l("请选择重复到哪天为止。"), field="until")
    if until < first_day:
        raise InvalidInput(_l("重复的截止日期要在第一次活动之后。"), field="until")
    if until - first_day > MAX_SERIES_SPAN:
        raise InvalidInput(_l("每周重复最长一年，请把截止日期提前。"), field="until")
    length = d.ends_at - d.starts_at
    starts = []
    day = first_day
    while day <= until:
        if day.isoweekday() in weekdays:
            starts.append(datetime.combine(day, d.starts_at.time()))
        day += timedelta(days=1)
    if not starts:
        raise InvalidInput(_l("在截止日期前没有所选的星期几，请检查日期。"), field="until")
    if len(starts) > MAX_SERIES_EVENTS:
        raise InvalidInput(_l("一次最多生成 200 场活动。"), field="until")
    series = EventSeries(weekdays=",".join(str(w) for w in sorted(weekdays)), until=until)
    db.session.add(series)
    db.session.flush()
    audit.record(actor, "create", "event_series", series.id, weekdays=series.weekdays, until=until, count=len(starts))
    events = []
    for start in starts:
        one = EventData(**{f.name: getattr(d, f.name) for f in fields(d)})
        one.starts_at, one.ends_at = start, start + length
        events.append(create_event(actor, one, series=series))
    return events


class DistrictEvent(DomainError):
    message = _l("这是区里统一发布的活动，本站不能修改；有问题请联系区文明实践中心。")


def own(event: Event) -> Event:
    """The event, if this station may change it (district events are read-only here)."""
    if event.origin == "district":
        raise DistrictEvent()
    return event


def update_event(actor: str, event: Event, data: EventData, expected_version: int | None = None) -> Event:
    own(event)
    if expected_version is not None and expected_version != event.version:
        raise StaleEdit()
    d = data.checked()
    changes = _diff(event, **{f.name: getattr(d, f.name) for f in fields(d)})
    if changes:
        event.version += 1
        event.updated_at = now()
        audit.record(actor, "update", "event", event.id, **changes)
    db.session.flush()
    return event


def cancel_event(actor: str, event: Event, reason: str) -> Event:
    """Mark an event cancelled; it stays on the kiosk, shown as cancelled."""
    own(event)
    reason = clean(reason)
    if len(reason) > 200 or bad_characters(reason):
        raise InvalidInput(_l("取消原因最多 200 个字，不能有特殊字符。"), field="reason")
    if event.cancelled_at is None:
        event.cancelled_at = now()
        event.cancel_reason = reason
        event.version += 1
        event.updated_at = event.cancelled_at
        audit.record(actor, "cancel", "event", event.id, reason=reason)
        db.session.flush()
    return event


def restore_event(actor: str, event: Event) -> Event:
    own(event)
    if event.cancelled_at is not None:
        event.cancelled_at = None
        event.cancel_reason = ""
        event.version += 1
        event.updated_at = now()
        audit.record(actor, "restore", "event", event.id)
        db.session.flush()
    return event


def set_published(actor: str, event: Event, published: bool) -> Event:
    own(event)
    if event.published != published:
        event.published = published
        event.version += 1
        event.updated_at = now()
        audit.record(actor, "publish" if published else "unpublish", "event", event.id)
        db.session.flush()
    return event


# --- the kiosk board --------------------------------------------------------------------------

WEEK_PER_DAY = 5  # the week column shows this many a day, then "N more" opens the day


@dataclass
class Board:
    today: list[Event]
    week: list[Event]
    category: Category | None
    day: date | None = None

    @property
    def week_by_day(self) -> list[tuple[date, list[Event], int]]:
        """(day, the first events of it, how many more) for the week column."""
        days: dict[date, list[Event]] = {}
        for e in self.week:
            days.setdefault(e.starts_at.date(), []).append(e)
        return [(d, evs[:WEEK_PER_DAY], max(0, len(evs) - WEEK_PER_DAY)) for d, evs in days.items()]


def board(at: datetime, category_id: str | None = None, day: date | None = None) -> Board:
    """Published events of today (finished ones too, shown as such) and of the next seven days.

    Cancelled events stay on the board, marked, so nobody comes in vain. With `day`, the week
    column is that one day in full.
    """
    day_start = datetime.combine(at.date(), time.min)
    tomorrow = day_start + timedelta(days=1)
    week_start, week_end = tomorrow, day_start + timedelta(days=8)
    if day is not None and day > at.date():
        week_start = datetime.combine(day, time.min)
        week_end = week_start + timedelta(days=1)
    q = (
        select(Event)
        .options(defer(Event.description))
        .where(Event.published.is_(True), Event.starts_at < week_end,
               Event.starts_at >= day_start - MAX_EVENT_LENGTH,  # lets the index bound the scan
               or_(and_(Event.ends_at > day_start, Event.starts_at < tomorrow), Event.starts_at >= week_start))
        .order_by(Event.starts_at, Event.title)
    )
    category = None
    if category_id:
        category = db.session.get(Category, category_id)
        if category is None:
            raise NotFound(_l("没有这个类别，请在上方重新选择。"))
        q = q.where(Event.category_id == category_id)
    rows = list(db.session.scalars(q).unique())
    today = [e for e in rows if e.starts_at < tomorrow]
    today.sort(key=lambda e: e.ends_at <= at)  # stable: what is still to come first, then what is over
    return Board(
        today=today,
        week=[e for e in rows if e.starts_at >= tomorrow],
        category=category,
        day=day if day is not None and day > at.date() else None,
    )


def upcoming_for_manager(at: datetime, days_back: int = 7) -> list[Event]:
    q = (
        select(Event)
        .where(Event.ends_at > at - timedelta(days=days_back))
        .order_by(Event.starts_at, Event.title)
    )
    return list(db.session.scalars(q).unique())
