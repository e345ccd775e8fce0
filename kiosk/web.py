"""What every view shares: one URL rendered whole or as a partial, errors as sentences."""

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .db import Busy, db
from .errors import DomainError

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def is_partial() -> bool:
    """An htmx request wants only the piece of page; a history restore wants it all."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def render(page: str, partial: str, status: int = 200, **ctx):
    return render_template(partial if is_partial() else page, **ctx), status


def new_session() -> None:
    """Start a new session after a login (no fixation), keeping the CSRF secret so that the
    page on screen, partly swapped by htmx, can still send its forms."""
    from flask import session

    csrf = session.get("csrf_token")
    session.clear()
    if csrf:
        session["csrf_token"] = csrf


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _problem(status: int, title: str, detail: str):
    resp = jsonify(type="about:blank", title=title, status=status, detail=detail)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


MESSAGES = {
    400: lambda: _("请求的内容不对，请返回上一页重新操作。"),
    401: lambda: _("请先登录。"),
    403: lambda: _("您没有权限做这件事。"),
    404: lambda: _("没有找到这个页面，请点“回到首页”。"),
    405: lambda: _("这个页面不能这样打开，请点“回到首页”。"),
    413: lambda: _("提交的内容太大了，请减少一些再试。"),
    422: lambda: _("填写的内容有误，请检查后再提交。"),
    429: lambda: _("操作太频繁了，请稍等一会儿再试。"),
    503: lambda: _("现在办理的人太多了，请稍等一下再试一次。"),
    500: lambda: _("系统出了点问题，请稍后再试；如果一直这样，请告诉站点管理员。"),
}


def error_page(status: int, message: str | None = None):
    message = message or MESSAGES.get(status, MESSAGES[500])()
    if wants_json():
        return _problem(status, MESSAGES.get(status, MESSAGES[500])(), message)
    if request.path.startswith("/v/"):  # the volunteer's phone: its own small layout
        return render("errors/error_phone.html", "errors/_error.html", status=status, message=message, code=status,
                      home="volunteer.me_page")
    if request.path.startswith("/manage/"):
        return render("errors/error_manage.html", "errors/_error.html", status=status, message=message, code=status,
                      home="manage.events_list")
    return render("errors/error.html", "errors/_error.html", status=status, message=message, code=status)


def init_app(app: Flask) -> None:
    @app.after_request
    def headers(resp):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
        resp.vary.add("HX-Request")
        if request.endpoint != "static":
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(CSRFError)
    def csrf_error(e):
        db.session.rollback()
        return error_page(400, _("页面停留太久已经失效，请返回首页重新操作。"))

    @app.errorhandler(DomainError)
    def domain_error(e):
        db.session.rollback()
        return error_page(e.status, str(e.message))

    @app.errorhandler(Busy)
    def busy(e):
        db.session.rollback()
        return error_page(503, _("现在办理的人太多了，请稍等一下再试一次。"))

    @app.errorhandler(HTTPException)
    def http_error(e):
        db.session.rollback()
        return error_page(e.code or 500)

    @app.errorhandler(Exception)
    def unexpected(e):
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(500)
