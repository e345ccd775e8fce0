"""The volunteer's phone: scan the kiosk's code, identify once, sign in and out, see my hours."""

import time

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer

from .. import checkins, events, ledger, qr, rewards, volunteers
from ..clock import now
from ..db import begin_write, db
from ..errors import DomainError, InvalidInput
from ..forms_phone import IdentifyForm, RegisterForm
from ..ids import new_id, parse_id
from ..templating import duration
from ..web import new_session, render

bp = Blueprint("volunteer", __name__, url_prefix="/v")

DEVICE_COOKIE = "kiosk_device"
DEVICE_MAX_AGE = 400 * 24 * 3600
PASS_SECONDS = 300  # after a scan, this long to identify and tap


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="kiosk.device")


def device_id() -> str | None:
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    try:
        return _signer().loads(raw)
    except BadSignature:
        return None


def me():
    """The volunteer whose remembered phone this is, or None."""
    return volunteers.device_volunteer(device_id())


def scan_pass(event_id: str) -> dict | None:
    p = session.get("scan")
    if p and p.get("e") == event_id and time.time() - p.get("t", 0) <= PASS_SECONDS:
        return p
    return None


@bp.get("/s/<code>")
def scan(code: str):
    """The URL inside the kiosk's rotating QR: check it, keep a short pass, go to the event."""
    station = events.get_station()
    event_id, step = qr.read_event_code(station.code, code)
    ev = events.get_event(event_id)
    session["scan"] = {"e": ev.id, "s": step, "t": int(time.time())}
    return redirect(url_for("volunteer.event", event_id=ev.id), code=303)


@bp.get("/events/<event_id>")
def event(event_id: str):
    ev = events.get_event(event_id)
    v = me()
    if v is None:
        form = IdentifyForm(next=url_for("volunteer.event", event_id=ev.id))
        return render("volunteer/identify.html", "volunteer/_identify.html", form=form, event=ev)
    return _event_page(ev, v)


def _event_page(ev, v, status=200):
    return render("volunteer/event.html", "volunteer/_event.html", status=status, event=ev, volunteer=v,
                  checkin=checkins.status_of(v, ev), has_pass=scan_pass(ev.id) is not None,
                  open_now=checkins.open_for_sign_in(ev, now()), op=new_id())


@bp.post("/identify")
def identify():
    form = IdentifyForm()
    target = form.next.data if (form.next.data or "").startswith("/v/") else url_for("volunteer.me_page")
    if not form.validate():
        return render("volunteer/identify.html", "volunteer/_identify.html", status=422, form=form, event=None)
    try:
        found = volunteers.find(form.who.data)
        matched = volunteers.pin_matches(found, form.pin.data)  # the slow hash, outside the write lock
    except DomainError as e:
        form.who.errors = [str(e.message)]
        return render("volunteer/identify.html", "volunteer/_identify.html", status=e.status, form=form, event=None)
    begin_write()
    try:
        v = volunteers.get(found.id)
        volunteers.verify_pin(v, form.pin.data, matched)
    except DomainError as e:
        db.session.commit()  # a failed PIN counts towards the lockout
        form.pin.errors = [str(e.message)]
        return render("volunteer/identify.html", "volunteer/_identify.html", status=e.status, form=form, event=None)
    device = volunteers.remember_device(v)
    db.session.commit()
    scan = session.get("scan")
    new_session()  # a PIN login starts a new session
    if scan:
        session["scan"] = scan
    resp = make_response(redirect(target, code=303))
    resp.set_cookie(DEVICE_COOKIE, _signer().dumps(device.id), max_age=DEVICE_MAX_AGE, httponly=True,
                    samesite="Lax", secure=request.is_secure)
    return resp


@bp.post("/events/<event_id>/checkin")
def checkin(event_id: str):
    return _act(event_id, "in")


@bp.post("/events/<event_id>/checkout")
def checkout(event_id: str):
    return _act(event_id, "out")


def _act(event_id: str, direction: str):
    if device_id() is None:  # the cookie alone: no database work for a phone we don't know
        return redirect(url_for("volunteer.event", event_id=event_id), code=303)
    begin_write()
    v = me()
    if v is None:
        db.session.rollback()
        return redirect(url_for("volunteer.event", event_id=event_id), code=303)
    ev = events.get_event(event_id)
    p = scan_pass(ev.id)
    op = parse_id(request.form.get("op") or "")
    try:
        if p is None:
            # A retry of a sign-in that already happened still answers; anything else needs a scan.
            done = checkins.status_of(v, ev)
            if not (done and ((direction == "in" and done.id == op) or (direction == "out" and done.status != "open"))):
                raise qr.ExpiredCode()
            c = done
        elif direction == "in":
            c, _new = checkins.check_in_with_code(v, ev, p["s"], "phone", op)
        else:
            c, _new = checkins.check_out_with_code(v, ev, p["s"], "phone")
    except DomainError as e:
        db.session.rollback()
        if isinstance(e, (checkins.CodeUsed, qr.ExpiredCode)):
            session.pop("scan", None)  # the page then asks for a fresh scan instead of a dead button
        flash(str(e.message), "error")
        return _event_page(ev, v, status=e.status)
    # Say it before committing: the commit expires the objects, and reloading them costs queries.
    if direction == "in":
        message = _("签到成功！%(t)s 开始服务。", t=c.checked_in_at.strftime("%H:%M"))
    else:
        message = _("签退成功！这次服务记 %(d)s。", d=duration(c.credited_minutes))
    db.session.commit()
    session.pop("scan", None)
    flash(message, "ok")
    return redirect(url_for("volunteer.event", event_id=event_id), code=303)


@bp.get("/me")
def me_page():
    v = me()
    if v is None:
        form = IdentifyForm(next=url_for("volunteer.me_page"))
        return render("volunteer/identify.html", "volunteer/_identify.html", form=form, event=None)
    at = now()
    return render("volunteer/me.html", "volunteer/_me.html", volunteer=v, hours=checkins.hours(v, at),
                  upcoming=checkins.upcoming(at))


@bp.post("/forget")
def forget():
    dev = device_id()
    if dev:
        begin_write()
        volunteers.forget_device(dev)
        db.session.commit()
    session.clear()
    flash(_("这台手机已经不再记住您了。"), "ok")
    resp = make_response(redirect(url_for("volunteer.me_page"), code=303))
    resp.delete_cookie(DEVICE_COOKIE)
    return resp


@bp.route("/register", methods=["GET", "POST"])
def register():
    """A walk-in registers on the phone or at the kiosk (?at=kiosk); pending until approved."""
    form = RegisterForm()
    at_kiosk = (request.values.get("at") == "kiosk")
    page = dict(kiosk_mode=at_kiosk)
    if request.method == "GET":
        return render("volunteer/register.html", "volunteer/_register.html", form=form, volunteer=None, **page)
    if not form.validate():
        return render("volunteer/register.html", "volunteer/_register.html", status=422, form=form, volunteer=None,
                      **page)
    begin_write()
    try:
        via = "kiosk" if at_kiosk else "phone"
        v = volunteers.register(f"walk-in:{via}", form.name.data, form.mobile.data, form.pin.data, via=via)
    except InvalidInput as e:
        db.session.rollback()
        getattr(form, e.field or "name", form.name).errors = [str(e.message)]
        return render("volunteer/register.html", "volunteer/_register.html", status=422, form=form, volunteer=None,
                      **page)
    db.session.commit()
    return render("volunteer/register.html", "volunteer/_register.html", form=None, volunteer=v, **page)


@bp.get("/passbook")
def passbook():
    """The volunteer's love-bank passbook (存折) on the phone; ?print=a4|a5 for a statement."""
    v = me()
    if v is None:
        form = IdentifyForm(next=url_for("volunteer.passbook"))
        return render("volunteer/identify.html", "volunteer/_identify.html", form=form, event=None)
    size = request.args.get("print")
    st, lines = ledger.passbook_here(v, limit=500 if size else 100)
    if size in ("a4", "a5"):
        return render_template("volunteer/passbook_print.html", volunteer=v, balance=ledger.balance(v), standing=st,
                               lines=list(reversed(lines)), size=size, printed_at=now())
    return render("volunteer/passbook.html", "volunteer/_passbook.html", volunteer=v, standing=st, lines=lines,
                  redemptions=rewards.of_volunteer(v, limit=10))
