"""The touchscreen: public, no login; every screen is a full page or an htmx partial."""

from datetime import date

from flask import Blueprint, current_app, make_response, redirect, request, session, url_for
from flask_babel import get_locale
from flask_wtf.csrf import generate_csrf

from .. import checkins, events, qr
from ..clock import now
from ..errors import NotFound
from ..pagecache import CSRF_PLACEHOLDER, cache
from ..web import is_partial, render

bp = Blueprint("kiosk", __name__)

PREF_COOKIES = ("lang", "text")
_YEAR = 365 * 24 * 3600


@bp.get("/")
def home():
    at = now()
    category_id = request.args.get("category") or None
    day = _day_arg(at)
    key = None
    if set(request.args) <= {"category", "day"}:
        key = (str(get_locale()), request.cookies.get("text") == "large", category_id, day,
               is_partial(), at.strftime("%Y%m%d%H%M"))
        page = cache.get(key)
        if page is not None:
            return page.replace(CSRF_PLACEHOLDER, generate_csrf())
    board = events.board(at, category_id, day=day)
    page, status = render(
        "kiosk/board.html",
        "kiosk/_board.html",
        board=board,
        signed_in=checkins.signed_in_now([e.id for e in board.today if checkins.open_for_sign_in(e, at)]),
        categories=events.categories(),
        today=at.date(),
        csrf_token=lambda: CSRF_PLACEHOLDER,
    )
    if key is not None:
        cache.put(key, page)
    return page.replace(CSRF_PLACEHOLDER, generate_csrf()), status


def _day_arg(at):
    """The one day of the coming week asked for with ?day=YYYY-MM-DD, else None."""
    raw = request.args.get("day")
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise NotFound() from None
    if not 0 <= (day - at.date()).days <= 7:
        raise NotFound()
    return day


def _public_event(event_id: str):
    ev = events.get_event(event_id)
    if not ev.published:
        raise NotFound()
    return ev


@bp.get("/events/<event_id>")
def event(event_id: str):
    ev = _public_event(event_id)
    at = now()
    return render("kiosk/event.html", "kiosk/_event.html", event=ev, today=at.date(),
                  open_now=checkins.open_for_sign_in(ev, at),
                  signed_in=checkins.signed_in_now([ev.id]).get(ev.id, 0))


@bp.get("/events/<event_id>/signin")
def signin(event_id: str):
    """The sign-in screen: a big rotating QR code for phones, left on show during the event."""
    ev = _public_event(event_id)
    return render("kiosk/signin.html", "kiosk/_signin.html", event=ev, **_code_context(ev))


@bp.get("/events/<event_id>/signin/code")
def signin_code(event_id: str):
    """The QR and the count alone, polled by the sign-in screen every few seconds."""
    ev = _public_event(event_id)
    return render("kiosk/_signin_code.html", "kiosk/_signin_code.html", event=ev, **_code_context(ev))


def _code_context(ev) -> dict:
    at = now()
    ctx = {"open_now": checkins.open_for_sign_in(ev, at), "signed_in": checkins.signed_in_now([ev.id]).get(ev.id, 0)}
    if ctx["open_now"]:
        code = qr.event_code(events.get_station().code, ev.id, qr.current_step())
        base = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
        url = base + url_for("volunteer.scan", code=code)
        ctx.update(qr_svg=qr.svg(url), qr_url=url)
    return ctx


def _back():
    """Where to return after changing a preference: this site's own page, or home.

    Under htmx the page reloads in place instead (HX-Refresh), so the kiosk's history never
    grows and the idle reset leaves nothing to go back to.
    """
    if request.headers.get("HX-Request") == "true":
        resp = make_response("", 204)
        resp.headers["HX-Refresh"] = "true"
        return resp
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = url_for("kiosk.home")
    return redirect(target, code=303)


@bp.post("/prefs/language")
def language():
    lang = request.form.get("lang")
    resp = make_response(_back())
    if lang in ("zh_CN", "en"):
        resp.set_cookie("lang", lang, max_age=_YEAR, httponly=True, samesite="Lax")
    return resp


@bp.post("/prefs/text-size")
def text_size():
    resp = make_response(_back())
    if request.cookies.get("text") == "large":
        resp.delete_cookie("text")
    else:
        resp.set_cookie("text", "large", max_age=_YEAR, httponly=True, samesite="Lax")
    return resp


@bp.post("/reset")
def reset():
    """The idle reset: forget the last person (session, language, text size) and go home."""
    if "_user_id" not in session:  # a manager at the kiosk logs out through the back office
        session.clear()
    resp = make_response(redirect(url_for("kiosk.home"), code=303))
    for name in PREF_COOKIES:
        resp.delete_cookie(name)
    return resp
