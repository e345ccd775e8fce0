"""Manager sessions: Flask-Login wiring and an idle timeout for the back office."""

import time

from flask import Flask, redirect, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, logout_user

from .db import db
from .models import Manager


def init_app(app: Flask) -> None:
    from . import login_manager

    login_manager.login_view = "manage.login"
    login_manager.login_message = _l("请先登录管理后台。")
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_manager(manager_id: str):
        return db.session.get(Manager, manager_id)

    @app.before_request
    def expire_idle_manager():
        if request.endpoint == "static" or "_user_id" not in session:
            return None
        idle = app.config["MANAGER_IDLE_SECONDS"]
        last = session.get("seen", 0)
        now = int(time.time())
        if last and now - last > idle:
            logout_user()
            session.clear()
            return redirect(url_for("manage.login", expired=1), code=303)
        if now - last > 30:  # don't rewrite the cookie on every request
            session["seen"] = now
        return None


def actor() -> str:
    """How the audit trail names whoever is acting now."""
    if current_user.is_authenticated:
        return f"manager:{current_user.username}"
    return "kiosk"
