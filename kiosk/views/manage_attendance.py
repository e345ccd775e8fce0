"""The manager's attendance list per event: who came, when, how; corrections with a reason."""

import json
from datetime import datetime

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from .. import checkins, events, volunteers
from ..audit import actor_label
from ..auth import actor
from ..clock import now
from ..db import begin_write, db
from ..errors import InvalidInput, NotFound
from ..forms_attendance import ConfirmForm, CorrectForm, NoShowForm, PaperForm
from ..models import AuditLog, CheckIn, Event
from ..templating import duration
from ..web import render
from .manage import bp

# Where the domain's field names show up on the forms.
FIELDS = {"checked_in_at": "in_time", "checked_out_at": "out_time", "reason": "reason", "volunteer": "volunteer"}


def status_label(status: str) -> str:
    return {
        "open": _("签到中"),
        "confirmed": _("已确认"),
        "unconfirmed": _("待确认（未签退）"),
        "no_show": _("未到"),
    }.get(status, status)


def source_label(source: str) -> str:
    return {"kiosk": _("触摸屏"), "phone": _("手机"), "manager": _("站长补录"), "auto": _("自动")}.get(source, source)


who = actor_label


def action_label(action: str) -> str:
    return {
        "check_in": _("签到"),
        "check_out": _("签退"),
        "auto_close": _("活动结束，自动签退"),
        "add_paper": _("补录纸质签到"),
        "correct": _("更正时间"),
        "no_show": _("标记未到"),
        "confirm": _("确认"),
    }.get(action, action)


def _hm(value) -> str:
    return value[11:16] if isinstance(value, str) and len(value) >= 16 else "—"


def change_summary(row: AuditLog) -> str:
    """What a correction changed, in words: "签到 09:00 → 09:30，时长 1 小时 → 1 小时 30 分"."""
    try:
        d = json.loads(row.detail or "{}")
    except ValueError:
        return ""
    parts = []
    for key, label in (("checked_in_at", _("签到")), ("checked_out_at", _("签退"))):
        pair = d.get(key)
        if isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]:
            parts.append(f"{label} {_hm(pair[0])} → {_hm(pair[1])}")
        elif isinstance(pair, str):
            parts.append(f"{label} {_hm(pair)}")
    minutes = d.get("credited_minutes")
    if isinstance(minutes, list) and len(minutes) == 2 and all(isinstance(m, int) for m in minutes):
        if minutes[0] != minutes[1]:
            parts.append(_("时长 %(a)s → %(b)s", a=duration(minutes[0]), b=duration(minutes[1])))
    elif isinstance(minutes, int):
        parts.append(_("时长 %(d)s", d=duration(minutes)))
    return "，".join(parts)


HELPERS = dict(duration=duration, status_label=status_label, source_label=source_label, who=who,
               action_label=action_label, change_summary=change_summary)


def _close_overdue(event_id: str) -> None:
    """Show check-ins left open after the event as unconfirmed; write only when there are some."""
    ev = events.get_event(event_id)
    at = now()
    if ev.ends_at <= at and checkins.signed_in_now([ev.id]):
        begin_write()
        if checkins.close_overdue(at):
            db.session.commit()
        else:
            db.session.rollback()


def _counts(rows: list[CheckIn]) -> dict:
    by = {s: 0 for s in ("open", "confirmed", "unconfirmed", "no_show")}
    for c in rows:
        by[c.status] = by.get(c.status, 0) + 1
    by["minutes"] = sum(c.credited_minutes for c in rows if c.status == "confirmed")
    by["pending_minutes"] = sum(c.credited_minutes for c in rows if c.status == "unconfirmed")
    return by


def _paper_form(ev: Event) -> PaperForm:
    form = PaperForm(formdata=None)
    form.fill(ev.starts_at, ev.ends_at)
    return form


def _page(ev: Event, status: int = 200, paper: PaperForm | None = None, confirm: ConfirmForm | None = None):
    rows = checkins.attendance(ev)
    return render(
        "manage/attendance.html",
        "manage/_attendance.html",
        status=status,
        event=ev,
        rows=rows,
        counts=_counts(rows),
        paper=paper or _paper_form(ev),
        confirm=confirm or ConfirmForm(formdata=None),
        **HELPERS,
    )


def _back(ev: Event, c: CheckIn | None = None):
    anchor = f"c-{c.id}" if c is not None else None
    return redirect(url_for("manage.attendance", event_id=ev.id, _anchor=anchor), code=303)


def _field_error(form, e: InvalidInput) -> None:
    field = getattr(form, FIELDS.get(e.field or "", "reason"), None) or form.reason
    field.errors = list(field.errors) + [str(e.message)]


def _checkin(ev: Event, checkin_id: str) -> CheckIn:
    c = checkins.get_checkin(checkin_id)
    if c.event_id != ev.id:
        raise NotFound(_("没有找到这条签到记录，请刷新页面。"))
    return c


def _keep_seconds(typed: datetime, stored: datetime | None) -> datetime:
    # The form shows minutes only; a time left as it was keeps its seconds, so an unchanged
    # field changes neither the record nor the credited minutes.
    if stored is not None and typed == stored.replace(second=0, microsecond=0):
        return stored
    return typed


@bp.get("/events/<event_id>/attendance")
def attendance(event_id: str):
    _close_overdue(event_id)
    return _page(events.get_event(event_id))


@bp.post("/events/<event_id>/attendance/paper")
def attendance_paper(event_id: str):
    ev = events.get_event(event_id)
    form = PaperForm()
    if not form.validate():
        return _page(ev, 422, paper=form)
    begin_write()
    ev = events.get_event(event_id)
    try:
        v = volunteers.find(form.volunteer.data)
        c = checkins.add_from_paper(actor(), v, ev, form.checked_in_at(), form.checked_out_at(), form.reason.data)
    except volunteers.UnknownVolunteer as e:
        db.session.rollback()
        form.volunteer.errors = [str(e.message)]
        return _page(ev, 422, paper=form)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return _page(ev, 422, paper=form)
    done = _("已补录 %(n)s %(name)s，计入 %(d)s。", n=v.number, name=v.name, d=duration(c.credited_minutes))
    back = _back(ev, c)
    db.session.commit()
    flash(done, "ok")
    return back


@bp.post("/events/<event_id>/attendance/confirm")
def attendance_confirm(event_id: str):
    ev = events.get_event(event_id)
    form = ConfirmForm()
    if not form.validate():
        return _page(ev, 422, confirm=form)
    begin_write()
    ev = events.get_event(event_id)
    if form.all.data:
        chosen = [c for c in checkins.attendance(ev) if c.status == "unconfirmed"]
    else:
        ids = set(form.checkin.data)
        chosen = list(db.session.scalars(select(CheckIn).where(CheckIn.id.in_(ids), CheckIn.event_id == ev.id)).unique())
        if len(chosen) != len(ids):
            raise NotFound(_("没有找到所选的签到记录，请刷新页面后重新勾选。"))
    n = checkins.confirm(actor(), chosen)
    back = _back(ev)
    db.session.commit()
    if n:
        flash(_("已确认 %(n)d 条记录，时长已计入。", n=n), "ok")
    else:
        flash(_("没有需要确认的记录。"), "info")
    return back


def _checkin_page(partial: str, ev: Event, c: CheckIn, form, status: int = 200, stale: bool = False):
    history = db.session.scalars(select(AuditLog).where(AuditLog.entity == "checkin", AuditLog.entity_id == c.id)
                                 .order_by(AuditLog.at, AuditLog.id))
    return render("manage/attendance.html", partial, status=status, screen_partial=partial, event=ev, c=c, form=form,
                  history=list(history), stale=stale, **HELPERS)


def _correct_form(c: CheckIn, formdata=None) -> CorrectForm:
    form = CorrectForm(formdata=formdata)
    if formdata is None:
        form.fill(c.checked_in_at, c.checked_out_at or min(now(), c.event.ends_at))
    form.version.data = str(c.version)
    return form


def _stale(form, c: CheckIn) -> bool:
    return (form.version.data or "") != str(c.version)


@bp.route("/events/<event_id>/attendance/<checkin_id>/correct", methods=["GET", "POST"])
def attendance_correct(event_id: str, checkin_id: str):
    partial = "manage/_attendance_correct.html"
    ev = events.get_event(event_id)
    c = _checkin(ev, checkin_id)
    if request.method == "GET":
        return _checkin_page(partial, ev, c, _correct_form(c))
    form = CorrectForm()
    if not form.validate():
        return _checkin_page(partial, ev, c, form, 422)
    begin_write()
    ev = events.get_event(event_id)
    c = _checkin(ev, checkin_id)
    if _stale(form, c):
        # Someone (the volunteer signing out, another manager) changed it since the form opened.
        db.session.rollback()
        fresh = _correct_form(c)
        fresh.reason.data = form.reason.data
        return _checkin_page(partial, ev, c, fresh, 409, stale=True)
    try:
        checkins.correct(actor(), c, _keep_seconds(form.checked_in_at(), c.checked_in_at),
                         _keep_seconds(form.checked_out_at(), c.checked_out_at), form.reason.data)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return _checkin_page(partial, ev, c, form, 422)
    done = _("已更正 %(n)s %(name)s 的时间，计入 %(d)s。", n=c.volunteer.number, name=c.volunteer.name,
             d=duration(c.credited_minutes))
    back = _back(ev, c)
    db.session.commit()
    flash(done, "ok")
    return back


@bp.route("/events/<event_id>/attendance/<checkin_id>/no-show", methods=["GET", "POST"])
def attendance_no_show(event_id: str, checkin_id: str):
    partial = "manage/_attendance_no_show.html"
    ev = events.get_event(event_id)
    c = _checkin(ev, checkin_id)
    if request.method == "GET":
        form = NoShowForm(formdata=None)
        form.version.data = str(c.version)
        return _checkin_page(partial, ev, c, form)
    form = NoShowForm()
    if not form.validate():
        return _checkin_page(partial, ev, c, form, 422)
    begin_write()
    ev = events.get_event(event_id)
    c = _checkin(ev, checkin_id)
    if _stale(form, c):
        db.session.rollback()
        form.version.data = str(c.version)
        return _checkin_page(partial, ev, c, form, 409, stale=True)
    if c.status == "no_show":
        db.session.rollback()
        flash(_("这条记录已经是“未到”了。"), "info")
        return _back(ev, c)
    try:
        checkins.mark_no_show(actor(), c, form.reason.data)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return _checkin_page(partial, ev, c, form, 422)
    done = _("已把 %(n)s %(name)s 标记为未到，不计时长。", n=c.volunteer.number, name=c.volunteer.name)
    back = _back(ev, c)
    db.session.commit()
    flash(done, "ok")
    return back
