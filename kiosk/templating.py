"""Template helpers: dates in plain Chinese, the kiosk's preferences, the htmx file."""

from datetime import datetime

from flask import Flask, request
from flask_babel import get_locale
from flask_babel import gettext as _

HTMX = "vendor/htmx-2.0.11.min.js"


def weekday_name(d) -> str:
    names = [_("星期一"), _("星期二"), _("星期三"), _("星期四"), _("星期五"), _("星期六"), _("星期日")]
    return names[d.weekday()]


def day_label(d, today) -> str:
    delta = (d.date() if isinstance(d, datetime) else d) - today
    if delta.days == 0:
        return _("今天")
    if delta.days == 1:
        return _("明天")
    if delta.days == 2:
        return _("后天")
    return weekday_name(d)


def date_long(d) -> str:
    if str(get_locale()) == "en":
        return d.strftime("%a %d %b %Y")
    return f"{d.year}年{d.month}月{d.day}日 {weekday_name(d)}"


def date_short(d) -> str:
    if str(get_locale()) == "en":
        return d.strftime("%d %b")
    return f"{d.month}月{d.day}日"


def duration(minutes: int) -> str:
    """Minutes as people say them: "2 小时 30 分", "2 小时", "45 分"."""
    h, m = divmod(max(0, minutes or 0), 60)
    if h and m:
        return _("%(h)d 小时 %(m)d 分", h=h, m=m)
    if h:
        return _("%(h)d 小时", h=h)
    return _("%(m)d 分", m=m)


def hm(d) -> str:
    return d.strftime("%H:%M")


def _station():
    """The settings row for the header, or None before `kiosk init` (error pages still render)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .db import db
    from .models import Station

    try:
        return db.session.get(Station, 1)
    except SQLAlchemyError:
        db.session.rollback()
        return None


def as_of(text: str | None) -> str:
    """The district's snapshot time (ISO, with an offset) in the station's time zone."""
    from datetime import datetime

    from .clock import station_tz

    try:
        at = datetime.fromisoformat(text or "")
    except ValueError:
        return (text or "")[:16].replace("T", " ")
    if at.tzinfo is not None:
        at = at.astimezone(station_tz()).replace(tzinfo=None)
    return at.strftime("%Y-%m-%d %H:%M")


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(date_long=date_long, date_short=date_short, hm=hm, weekday=weekday_name,
                                 as_of=as_of)
    from .audit import actor_label
    from .web import is_partial

    # a partial carries its own <title> for htmx; a whole page has it in <head> already
    app.jinja_env.globals.update(duration=duration, actor_label=actor_label, htmx_partial=is_partial)

    @app.context_processor
    def kiosk_context():
        from .clock import now

        return {
            "station": _station(),
            "htmx_file": HTMX,
            "large_text": request.cookies.get("text") == "large",
            "locale": str(get_locale()),
            "now": now(),
            "day_label": day_label,
        }
