"""我是志愿者 at the kiosk: scan the personal card, type the PIN, sign in or out, see my hours.

The volunteer's kiosk session lives in the server-signed session cookie for at most a minute
without a tap, and ends right after a sign-in or sign-out.
"""

import time

from flask import redirect, request, session, url_for
from flask_babel import gettext as _

from .. import checkins, events, inbox, ledger, qr, rewards, volunteers
from ..clock import now
from ..db import begin_write, db
from ..errors import DomainError
from ..forms_phone import CardForm, PinForm
from ..ids import new_id
from ..templating import duration
from ..web import new_session, render
from .kiosk import bp

VOLUNTEER_IDLE = 60  # seconds


def _fresh(key: str):
    entry = session.get(key)
    if entry and time.time() - entry.get("t", 0) <= VOLUNTEER_IDLE:
        return entry
    session.pop(key, None)
    return None


def kiosk_volunteer():
    """The volunteer identified at this kiosk (card + PIN) in the last minute, or None."""
    entry = _fresh("kv")
    if entry is None:
        return None
    entry["t"] = int(time.time())
    session["kv"] = entry
    return db.session.get(volunteers.Volunteer, entry["v"])


@bp.get("/me")
def me_start():
    session.pop("card", None)
    return render("kiosk/me.html", "kiosk/_me_card.html", form=CardForm(formdata=None))


@bp.post("/me/card")
def me_card():
    form = CardForm()
    if not form.validate():
        return render("kiosk/me.html", "kiosk/_me_card.html", status=422, form=form)
    try:
        v = volunteers.from_badge(form.badge.data)
        if v.status == "suspended":
            raise volunteers.Suspended()
    except DomainError as e:
        form.badge.errors = [str(e.message)]
        form.badge.data = ""
        return render("kiosk/me.html", "kiosk/_me_card.html", status=e.status, form=form)
    session["card"] = {"v": v.id, "t": int(time.time())}
    return render("kiosk/me_pin.html", "kiosk/_me_pin.html", form=PinForm(formdata=None), volunteer=v)


@bp.post("/me/pin")
def me_pin():
    card = _fresh("card")
    if card is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    form = PinForm()
    valid = form.validate()
    # The slow hash first, outside the write lock; the lockout is decided inside it.
    matched = volunteers.pin_matches(volunteers.get(card["v"]), form.pin.data) if valid else False
    begin_write()
    v = volunteers.get(card["v"])
    if valid:
        try:
            volunteers.verify_pin(v, form.pin.data, matched)
        except DomainError as e:
            form.pin.errors = [str(e.message)]
            status = e.status
        else:
            db.session.commit()
            new_session()  # a PIN login starts a new session
            session["kv"] = {"v": v.id, "t": int(time.time())}
            return redirect(url_for("kiosk.me_home"), code=303)
    else:
        status = 422
    db.session.commit()  # keep the failed attempt: it is what locks out guessing
    return render("kiosk/me_pin.html", "kiosk/_me_pin.html", status=status, form=form, volunteer=v)


@bp.get("/me/home")
def me_home():
    v = kiosk_volunteer()
    if v is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    at = now()
    open_events = checkins.events_open_now(at)
    mine = {e.id: checkins.status_of(v, e) for e in open_events}
    return render("kiosk/me_home.html", "kiosk/_me_home.html", volunteer=v, hours=checkins.hours(v, at),
                  open_events=open_events, mine=mine, op=new_id())


@bp.post("/me/events/<event_id>/<direction>")
def me_act(event_id: str, direction: str):
    if direction not in ("checkin", "checkout"):
        return redirect(url_for("kiosk.me_home"), code=303)
    entry = _fresh("kv")
    if entry is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    begin_write()
    v = volunteers.get(entry["v"])
    ev = events.get_event(event_id)
    try:
        if direction == "checkin":
            c, _new = checkins.check_in(v, ev, "kiosk", request.form.get("op"))
            message = _("签到成功！%(t)s 开始服务。", t=c.checked_in_at.strftime("%H:%M"))
        else:
            c, _new = checkins.check_out(v, ev, "kiosk")
            message = _("签退成功！这次服务记 %(d)s。", d=duration(c.credited_minutes))
    except DomainError as e:
        db.session.rollback()
        return render("kiosk/me_done.html", "kiosk/_me_done.html", status=e.status, ok=False,
                      message=str(e.message), volunteer=v, hours=checkins.hours(v), event=ev)
    db.session.commit()
    session.pop("kv", None)  # the session ends right after
    return render("kiosk/me_done.html", "kiosk/_me_done.html", ok=True, message=message, volunteer=v,
                  hours=checkins.hours(v), event=ev)


# --- the love bank at the kiosk ---------------------------------------------------------------

@bp.get("/me/passbook")
def me_passbook():
    v = kiosk_volunteer()
    if v is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    st, lines = ledger.passbook_here(v, limit=50)
    return render("kiosk/me_passbook.html", "kiosk/_me_passbook.html", volunteer=v, standing=st, lines=lines)


@bp.get("/me/rewards")
def me_rewards():
    v = kiosk_volunteer()
    if v is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    standing = inbox.standing(v)
    balance, offers = rewards.offers(v, available=standing.here)
    return render("kiosk/me_rewards.html", "kiosk/_me_rewards.html", volunteer=v, balance=balance, offers=offers,
                  standing=standing, asked=inbox.asked_points_here(v))


@bp.post("/me/points-here")
def me_points_here():
    """Ask for the points held at other stations to be allowed here from tonight."""
    v = kiosk_volunteer()
    if v is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    begin_write()
    v = volunteers.get(v.id)
    inbox.ask_points_here(v)
    db.session.commit()
    page, status = me_rewards()
    return page, status, {"HX-Replace-Url": url_for("kiosk.me_rewards")}


@bp.get("/me/rewards/<reward_id>")
def me_reward(reward_id: str):
    v = kiosk_volunteer()
    if v is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    balance, offers = rewards.offers(v)
    offer = next((o for o in offers if o.reward.id == reward_id), None)
    if offer is None:
        raise rewards.NotAvailable()
    return render("kiosk/me_reward.html", "kiosk/_me_reward.html", volunteer=v, balance=balance, offer=offer,
                  op=new_id())


@bp.post("/me/rewards/<reward_id>")
def me_redeem(reward_id: str):
    entry = _fresh("kv")
    if entry is None:
        return redirect(url_for("kiosk.me_start"), code=303)
    begin_write()
    v = volunteers.get(entry["v"])
    reward = rewards.get_reward(reward_id)
    try:
        red, _new = rewards.redeem(v, reward, request.form.get("op"))
    except DomainError as e:
        db.session.rollback()
        balance, offers = rewards.offers(v)
        offer = next((o for o in offers if o.reward.id == reward_id), None) or rewards.Offer(reward, False, "")
        return render("kiosk/me_reward.html", "kiosk/_me_reward.html", status=e.status, volunteer=v,
                      balance=balance, offer=offer, op=new_id(), error=str(e.message))
    db.session.commit()
    session.pop("kv", None)  # the session ends right after
    page, status = _pickup_page(red)
    # The answer is the pickup screen itself (a retried POST answers the same, by its id).
    return page, status, {"HX-Replace-Url": url_for("kiosk.pickup", redemption_id=red.id)}


@bp.get("/pickup/<redemption_id>")
def pickup(redemption_id: str):
    """The pickup code of a fresh redemption: big digits, a QR, a printable slip. Shown only
    for a few minutes after redeeming, so the next person can't read it."""
    red = db.session.get(rewards.Redemption, redemption_id)
    if red is None or red.status != "pending" or (now() - red.created_at).total_seconds() > 600:
        raise rewards.UnknownCode()
    return _pickup_page(red)


def _pickup_page(red):
    return render("kiosk/pickup.html", "kiosk/_pickup.html", red=red, qr_svg=qr.svg(red.pickup_code),
                  balance=ledger.spendable(red.volunteer_id))
