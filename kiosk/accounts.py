"""Station managers: creation, and password login throttled against guessing."""

from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from . import audit
from .clock import now
from .db import db
from .errors import DomainError, InvalidInput
from .models import LoginAttempt, Manager
from .text import bad_characters, clean

MAX_FAILURES = 5
LOCK_WINDOW = timedelta(minutes=15)
# scrypt, werkzeug's default slow hash; one check costs ~50 ms, which is the point.
_HASH = "scrypt"
# Checked against when the username is unknown, so both paths cost the same.
_DUMMY_HASH = generate_password_hash("not-a-password", method=_HASH)


class LoginThrottled(DomainError):
    status = 429
    message = _l("密码输错次数太多，请 15 分钟后再试，或请其他管理员帮忙。")


class BadCredentials(DomainError):
    status = 401
    message = _l("用户名或密码不对，请再试一次。")


def create_manager(actor: str, username: str, password: str, display_name: str = "") -> Manager:
    username = clean(username).lower()
    display_name = clean(display_name)
    if not (3 <= len(username) <= 50) or not all(c.isascii() and (c.isalnum() or c in "._-") for c in username):
        raise InvalidInput(_l("用户名用 3 到 50 个字母、数字或 . _ -。"), field="username")
    if len(password) < 10 or len(password) > 200:
        raise InvalidInput(_l("密码至少 10 个字符。"), field="password")
    if len(display_name) > 50 or bad_characters(display_name):
        raise InvalidInput(_l("姓名最多 50 个字，不能有特殊字符。"), field="display_name")
    if db.session.scalar(select(Manager.id).where(Manager.username == username)):
        raise InvalidInput(_l("这个用户名已经有人用了。"), field="username")
    manager = Manager(
        username=username,
        display_name=display_name or username,
        password_hash=generate_password_hash(password, method=_HASH),
    )
    db.session.add(manager)
    db.session.flush()
    audit.record(actor, "create", "manager", manager.id, username=username)
    return manager


def recent_failures(username: str) -> int:
    since = now() - LOCK_WINDOW
    last_ok = db.session.scalar(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.username == username, LoginAttempt.ok.is_(True))
    )
    if last_ok and last_ok > since:
        since = last_ok
    return db.session.scalar(
        select(func.count()).where(
            LoginAttempt.username == username, LoginAttempt.ok.is_(False), LoginAttempt.at > since
        )
    )


def password_matches(username: str, password: str) -> bool:
    """The slow hash comparison alone (~70 ms), done before the write lock is taken; an
    unknown username costs the same as a known one."""
    username = clean(username).lower()[:50]
    manager = db.session.scalar(select(Manager).where(Manager.username == username))
    ok = check_password_hash(manager.password_hash if manager else _DUMMY_HASH, password[:200])
    return ok and manager is not None


def authenticate(username: str, password: str, remote_addr: str = "", matched: bool | None = None) -> Manager:
    """The manager for these credentials; every attempt is recorded, and after five failures
    in 15 minutes the username is locked for the rest of that window whatever is typed.

    `matched` is password_matches() computed earlier outside the write transaction.
    """
    username = clean(username).lower()[:50]
    if recent_failures(username) >= MAX_FAILURES:
        raise LoginThrottled()
    if matched is None:
        matched = password_matches(username, password)
    manager = db.session.scalar(select(Manager).where(Manager.username == username))
    ok = matched and manager is not None and manager.active
    db.session.add(LoginAttempt(username=username, remote_addr=remote_addr[:64], ok=ok))
    db.session.flush()
    if not ok:
        raise BadCredentials()
    return manager
