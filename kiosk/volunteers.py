"""Volunteers: registration, PINs with lockout, personal cards, remembered phones.

Plain operations over the session: they flush, audit and raise DomainError; never commit.
"""

import re
import unicodedata
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, or_, select
from werkzeug.security import check_password_hash, generate_password_hash

from . import audit
from .clock import now
from .db import db
from .errors import DomainError, InvalidInput
from .events import get_station
from .models import Device, PinAttempt, Team, Volunteer
from .text import bad_characters, clean

MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
PIN = re.compile(r"^[0-9]{6}$")
NUMBER = re.compile(r"[A-Z0-9\-]{2,40}")
PIN_MAX_FAILURES = 5
PIN_LOCK = timedelta(minutes=15)
STATUSES = ("pending", "active", "suspended")
BADGE_PREFIX = "KV1:"
_HASH = "scrypt"


class PinLocked(DomainError):
    status = 429
    message = _l("密码输错太多次，已锁定 15 分钟。请稍后再试，或请站长帮忙。")


class WrongPin(DomainError):
    status = 401
    message = _l("密码不对，请再输一次。")


class NoPinHere(DomainError):
    """A volunteer from another station (the district's roster) has no PIN at this station yet."""

    status = 403
    message = _l("您是在其他站点登记的志愿者。第一次在本站使用，请带上身份证找站长核对，设置本站密码后就能用了。")


class UnknownVolunteer(DomainError):
    status = 404
    message = _l("没有找到这位志愿者，请检查编号或手机号。")


class NotActive(DomainError):
    status = 403
    message = _l("您的志愿者登记还没有生效，请等站长审核。")


class Suspended(DomainError):
    status = 403
    message = _l("您的志愿者资格已暂停，请联系站长。")


class BadCard(DomainError):
    status = 400
    message = _l("这张卡读不出来或已经作废，请再刷一次，或请站长补办新卡。")


class OtherStationCard(BadCard):
    message = _l("这是您在其他站点办的志愿者卡，本站读不了。请找本站站长核对身份，办一张本站的卡。")


# --- registration -----------------------------------------------------------------------------

def check_name(name: str) -> str:
    name = clean(name)
    if not 1 <= len(name) <= 50 or bad_characters(name):
        raise InvalidInput(_l("请填写姓名（1 到 50 个字，不能有特殊字符）。"), field="name")
    return name


def normalise_mobile(mobile: str) -> str:
    """Digits only as people type them: full-width digits folded (NFKC), spaces and dashes gone."""
    digits = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", clean(mobile)))
    if digits.startswith("+86"):
        digits = digits[3:]
    return digits


def check_mobile(mobile: str, exclude_id: str | None = None) -> str:
    mobile = normalise_mobile(mobile)
    if not MOBILE.match(mobile):
        raise InvalidInput(_l("手机号要是 11 位数字，以 1 开头。"), field="mobile")
    q = select(Volunteer.number).where(Volunteer.mobile == mobile)
    if exclude_id:
        q = q.where(Volunteer.id != exclude_id)
    existing = db.session.scalar(q)
    if existing:
        raise InvalidInput(_l("这个手机号已经登记过了（志愿者编号 %(n)s），不用再登记。", n=existing), field="mobile")
    return mobile


def check_pin(pin: str) -> str:
    if not PIN.match(pin or ""):
        raise InvalidInput(_l("密码要是 6 位数字。"), field="pin")
    if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
        raise InvalidInput(_l("这个密码太容易猜了，请换一个（不要 6 个相同数字或连号）。"), field="pin")
    return pin


def check_team_name(name: str) -> str:
    name = clean(name)
    if len(name) > 50 or bad_characters(name):
        raise InvalidInput(_l("服务队名称最多 50 个字，不能有特殊字符。"), field="teams")
    return name


def check_number(number: str) -> str:
    """A volunteer number typed by the manager: letters, digits and dashes, not yet taken."""
    number = clean(number).upper()
    if not NUMBER.fullmatch(number):
        raise InvalidInput(_l("志愿者编号只能用字母、数字和短横线。"), field="number")
    if db.session.scalar(select(Volunteer.id).where(Volunteer.number == number)):
        raise InvalidInput(_l("志愿者编号 %(n)s 已经有人用了。", n=number), field="number")
    return number


def hash_pin(pin: str) -> str:
    """The slow hash of a checked PIN; callers importing many can hash before the write lock."""
    return generate_password_hash(check_pin(pin), method=_HASH)


def teams_from_names(names: list[str]) -> list[Team]:
    """The teams with these names, created when new."""
    result = []
    for raw in names:
        name = check_team_name(raw)
        if not name:
            continue
        team = db.session.scalar(select(Team).where(Team.name == name))
        if team is None:
            team = Team(name=name)
            db.session.add(team)
            db.session.flush()
        if team not in result:
            result.append(team)
    return result


def _next_number() -> str:
    """District-unique, short enough to read out: the station code and a running number."""
    station = get_station()
    while True:  # skip numbers a manager typed by hand
        seq = station.next_volunteer_seq
        station.next_volunteer_seq = seq + 1
        number = f"{station.code}-{seq:04d}"
        if db.session.scalar(select(Volunteer.id).where(Volunteer.number == number)) is None:
            return number


def register(actor: str, name: str, mobile: str, pin: str | None, teams: list[str] | None = None,
             via: str = "manager", status: str | None = None, number: str | None = None,
             pin_hash: str | None = None) -> Volunteer:
    """A new volunteer. Walk-ins (via kiosk or phone) stay pending until the manager approves.

    `pin_hash` (from hash_pin) instead of `pin` lets an import hash before taking the lock.
    """
    name = check_name(name)
    mobile = check_mobile(mobile)
    pin_hash = pin_hash or hash_pin(pin or "")
    status = status or ("active" if via in ("manager", "import") else "pending")
    if status not in STATUSES:
        raise InvalidInput(_l("状态不对。"), field="status")
    if number is not None:
        number = check_number(number)
    v = Volunteer(
        number=number or _next_number(), name=name, mobile=mobile,
        pin_hash=pin_hash, status=status, registered_via=via,
        teams=teams_from_names(teams or []),
    )
    db.session.add(v)
    db.session.flush()
    audit.record(actor, "register", "volunteer", v.id, number=v.number, via=via, status=status)
    return v


class VisitingDetails(InvalidInput):
    message = _l("这位志愿者是在其他站点登记的，姓名和手机号以登记的站为准，请到那个站修改。")


def update(actor: str, v: Volunteer, name: str, mobile: str, teams: list[str]) -> Volunteer:
    if v.visiting and (clean(name) != v.name or normalise_mobile(mobile) != v.mobile):
        raise VisitingDetails(field="name")
    name = check_name(name)
    mobile = check_mobile(mobile, exclude_id=v.id)
    new_teams = teams_from_names(teams)
    changes = {}
    if v.name != name:
        changes["name"] = [v.name, name]
        v.name = name
    if v.mobile != mobile:
        changes["mobile"] = [v.mobile, mobile]
        v.mobile = mobile
    if [t.name for t in v.teams] != [t.name for t in sorted(new_teams, key=lambda t: t.name)]:
        changes["teams"] = [[t.name for t in v.teams], sorted(t.name for t in new_teams)]
        v.teams = new_teams
    if changes:
        v.version += 1
        v.updated_at = now()
        audit.record(actor, "update", "volunteer", v.id, **changes)
    db.session.flush()
    return v


def set_status(actor: str, v: Volunteer, status: str, reason: str = "") -> Volunteer:
    """Approve (active), suspend, or put back to pending; suspending forgets remembered phones."""
    if status not in STATUSES:
        raise InvalidInput(_l("状态不对。"), field="status")
    reason = clean(reason)[:200]
    if v.status != status:
        old, v.status = v.status, status
        v.version += 1
        v.updated_at = now()
        audit.record(actor, "status", "volunteer", v.id, reason=reason, status=[old, status])
        if status == "suspended":
            for d in db.session.scalars(select(Device).where(Device.volunteer_id == v.id, Device.revoked_at.is_(None))):
                d.revoked_at = now()
        db.session.flush()
    return v


def reset_pin(actor: str, v: Volunteer, pin: str) -> Volunteer:
    v.pin_hash = hash_pin(pin)
    v.version += 1
    v.updated_at = now()
    audit.record(actor, "reset_pin", "volunteer", v.id)
    db.session.flush()
    return v


def get(volunteer_id: str) -> Volunteer:
    v = db.session.get(Volunteer, volunteer_id) if volunteer_id else None
    if v is None:
        raise UnknownVolunteer()
    return v


def find(number_or_mobile: str) -> Volunteer:
    """The volunteer with this number or mobile, as typed by a person."""
    key = clean(number_or_mobile)
    if not key or len(key) > 40:
        raise UnknownVolunteer()
    v = db.session.scalar(select(Volunteer).where(or_(
        Volunteer.number == key.upper(), Volunteer.mobile == normalise_mobile(key))))
    if v is None:
        raise UnknownVolunteer()
    return v


def search(text: str = "", status: str | None = None, limit: int = 200) -> list[Volunteer]:
    q = select(Volunteer).order_by(Volunteer.number)
    text = clean(text)
    if text:
        like = f"%{text.replace('%', '').replace('_', '')}%"
        q = q.where(or_(Volunteer.name.like(like), Volunteer.number.like(like.upper()), Volunteer.mobile.like(like)))
    if status in STATUSES:
        q = q.where(Volunteer.status == status)
    return list(db.session.scalars(q.limit(limit)))


# --- PINs -------------------------------------------------------------------------------------

def pin_failures(v: Volunteer) -> int:
    since = now() - PIN_LOCK
    last_ok = db.session.scalar(select(func.max(PinAttempt.at)).where(
        PinAttempt.volunteer_id == v.id, PinAttempt.ok.is_(True)))
    if last_ok and last_ok > since:
        since = last_ok
    return db.session.scalar(select(func.count()).where(
        PinAttempt.volunteer_id == v.id, PinAttempt.ok.is_(False), PinAttempt.at > since))


def pin_matches(v: Volunteer, pin: str) -> bool:
    """The slow hash comparison alone (~70 ms): views do it before taking the write lock."""
    return bool(v.pin_hash) and check_password_hash(v.pin_hash, (pin or "")[:20])


def verify_pin(v: Volunteer, pin: str, matched: bool | None = None) -> Volunteer:
    """Check a PIN; five wrong ones in 15 minutes lock this volunteer whatever is typed next.

    `matched` is pin_matches() computed earlier outside the write transaction, so that the
    slow hash doesn't hold the station's write lock; the lockout is still decided in here.
    The caller commits even when this raises: the failed attempt is what counts.
    """
    if not v.pin_hash:
        raise NoPinHere()
    if pin_failures(v) >= PIN_MAX_FAILURES:
        raise PinLocked()
    ok = pin_matches(v, pin) if matched is None else matched
    db.session.add(PinAttempt(volunteer_id=v.id, ok=ok))
    db.session.flush()
    if not ok:
        raise WrongPin()
    return v


def require_active(v: Volunteer) -> Volunteer:
    if v.status == "pending":
        raise NotActive()
    if v.status == "suspended":
        raise Suspended()
    return v


# --- personal cards ---------------------------------------------------------------------------

def _badge_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="kiosk.volunteer-badge")


def badge(v: Volunteer) -> str:
    """What the card's QR holds: a signed (volunteer, card serial); reissuing revokes old cards."""
    return BADGE_PREFIX + _badge_serializer().dumps([v.id, v.card_serial])


def from_badge(text: str) -> Volunteer:
    text = (text or "").strip()
    if not text.startswith(BADGE_PREFIX) or len(text) > 300:
        raise BadCard()
    try:
        volunteer_id, serial = _badge_serializer().loads(text[len(BADGE_PREFIX):])
    except (BadSignature, ValueError, TypeError):
        raise _unreadable(text[len(BADGE_PREFIX):]) from None
    v = db.session.get(Volunteer, volunteer_id) if isinstance(volunteer_id, str) else None
    if v is None or v.card_serial != serial:
        raise BadCard()
    return v


def _unreadable(payload: str) -> BadCard:
    """Which sentence to say for a card this station can't verify: a card of another station
    (whose key signed it) for a volunteer on the roster here gets its own. The unverified
    content only chooses the message; it identifies no one."""
    try:
        _ok, value = _badge_serializer().loads_unsafe(payload)
        volunteer_id = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
    except Exception:  # noqa: BLE001 - any garbage: the plain message
        volunteer_id = None
    v = db.session.get(Volunteer, volunteer_id) if volunteer_id and len(volunteer_id) <= 36 else None
    return OtherStationCard() if v is not None and v.visiting else BadCard()


def reissue_card(actor: str, v: Volunteer) -> Volunteer:
    v.card_serial += 1
    v.version += 1
    v.updated_at = now()
    audit.record(actor, "reissue_card", "volunteer", v.id, card_serial=v.card_serial)
    db.session.flush()
    return v


# --- remembered phones ------------------------------------------------------------------------

def remember_device(v: Volunteer) -> Device:
    d = Device(volunteer_id=v.id)
    db.session.add(d)
    db.session.flush()
    return d


def device_volunteer(device_id: str | None) -> Volunteer | None:
    """The volunteer a remembered phone belongs to, or None if forgotten or revoked."""
    if not device_id:
        return None
    return db.session.scalar(select(Volunteer).join(Device, Device.volunteer_id == Volunteer.id).where(
        Device.id == device_id, Device.revoked_at.is_(None)))


def forget_device(device_id: str) -> None:
    d = db.session.get(Device, device_id) if device_id else None
    if d is not None and d.revoked_at is None:
        d.revoked_at = now()
        db.session.flush()

