"""The station manager's back office: events, station settings, categories, the audit trail."""

from flask import Blueprint, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from .. import accounts, events
from ..auth import actor
from ..clock import now
from ..db import begin_write, db
from ..errors import DomainError, InvalidInput
from ..forms import CancelForm, CategoryForm, EmptyForm, EventForm, LoginForm, StationForm
from ..models import AuditLog, Category
from ..web import new_session, render

bp = Blueprint("manage", __name__, url_prefix="/manage")


@bp.before_request
def require_login():
    if request.endpoint in ("manage.login",):
        return None
    if not current_user.is_authenticated:
        from .. import login_manager

        return login_manager.unauthorized()
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    status = 200
    if request.method == "POST":
        if form.validate():
            # the slow hash outside the write lock, so guessing can't stall the kiosk's writes
            matched = accounts.password_matches(form.username.data, form.password.data)
            begin_write()
            try:
                manager = accounts.authenticate(form.username.data, form.password.data, request.remote_addr or "",
                                                matched)
            except DomainError as e:
                db.session.commit()  # keep the failed attempt: it is what throttles guessing
                form.password.errors = [str(e.message)]
                status = e.status
            else:
                db.session.commit()
                new_session()
                login_user(manager)
                return redirect(_next_or_home(), code=303)
        else:
            status = 422
    elif request.args.get("expired"):
        flash(_("您很久没有操作，已自动退出，请重新登录。"), "info")
    return render("manage/login.html", "manage/_login.html", status=status, form=form)


def _next_or_home():
    target = request.args.get("next", "")
    if target.startswith("/manage") and not target.startswith("//"):
        return target
    return url_for("manage.events_list")


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("manage.login"), code=303)


@bp.get("/")
def events_list():
    return render(
        "manage/events.html",
        "manage/_events.html",
        events=events.upcoming_for_manager(now()),
        action_form=EmptyForm(),
        cancel_form=CancelForm(),
    )


def _event_form(obj=None) -> EventForm:
    form = EventForm(obj=obj)
    form.category_id.choices = [("", _("（不分类）"))] + [(c.id, c.name) for c in events.categories()]
    if obj is not None and obj.category_id and obj.category_id not in {c for c, _n in form.category_id.choices}:
        form.category_id.choices.append((obj.category_id, obj.category.name))
    return form


def _data(form: EventForm) -> events.EventData:
    return events.EventData(
        title=form.title.data or "",
        starts_at=form.starts_at(),
        ends_at=form.ends_at(),
        category_id=form.category_id.data or None,
        place=form.place.data or "",
        organiser=form.organiser.data or "",
        description=form.description.data or "",
        capacity=form.capacity.data,
        published=bool(form.published.data),
    )


def _field_error(form, e: InvalidInput):
    field = {"starts_at": "start", "ends_at": "end"}.get(e.field or "", e.field or "title")
    target = getattr(form, field, None) or form.title
    target.errors = list(target.errors) + [str(e.message)]


@bp.route("/events/new", methods=["GET", "POST"])
def event_new():
    form = _event_form()
    if request.method == "GET":
        form.published.data = True
        day = request.args.get("day")
        if day:
            try:
                from datetime import date

                form.day.data = date.fromisoformat(day)
            except ValueError:
                pass
        return render("manage/event_form.html", "manage/_event_form.html", form=form, event=None)
    if not form.validate():
        return render("manage/event_form.html", "manage/_event_form.html", status=422, form=form, event=None)
    begin_write()
    try:
        if form.repeat.data:
            created = events.create_weekly_series(
                actor(), _data(form), {int(w) for w in form.weekdays.data}, form.until.data
            )
            flash(_("已经建好 %(n)d 场每周活动。", n=len(created)), "ok")
        else:
            created = [events.create_event(actor(), _data(form))]
            flash(_("活动“%(t)s”已保存。", t=created[0].title), "ok")
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return render("manage/event_form.html", "manage/_event_form.html", status=422, form=form, event=None)
    db.session.commit()
    return redirect(url_for("manage.events_list"), code=303)


@bp.route("/events/<event_id>/edit", methods=["GET", "POST"])
def event_edit(event_id: str):
    ev = events.own(events.get_event(event_id))
    if request.method == "GET":
        form = _event_form(obj=ev)
        form.day.data, form.start.data, form.end.data = ev.starts_at.date(), ev.starts_at.time(), ev.ends_at.time()
        form.category_id.data = ev.category_id or ""
        form.version.data = str(ev.version)
        return render("manage/event_form.html", "manage/_event_form.html", form=form, event=ev)
    form = _event_form(obj=ev)
    form.process(request.form)
    if not form.validate():
        return render("manage/event_form.html", "manage/_event_form.html", status=422, form=form, event=ev)
    begin_write()
    ev = events.get_event(event_id)
    try:
        version = int(form.version.data) if (form.version.data or "").isdigit() else None
        events.update_event(actor(), ev, _data(form), expected_version=version)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return render("manage/event_form.html", "manage/_event_form.html", status=422, form=form, event=ev)
    db.session.commit()
    flash(_("活动“%(t)s”已保存。", t=ev.title), "ok")
    return redirect(url_for("manage.events_list"), code=303)


def _event_action(event_id: str, change, message: str):
    begin_write()
    ev = events.get_event(event_id)
    change(ev)
    db.session.commit()
    flash(message % {"t": ev.title}, "ok")
    return redirect(request.form.get("back") == "edit" and url_for("manage.event_edit", event_id=ev.id)
                    or url_for("manage.events_list"), code=303)


@bp.post("/events/<event_id>/cancel")
def event_cancel(event_id: str):
    form = CancelForm()
    if not form.validate():
        raise InvalidInput(form.reason.errors[0] if form.reason.errors else None)
    return _event_action(event_id, lambda ev: events.cancel_event(actor(), ev, form.reason.data or ""),
                         _("活动“%(t)s”已取消，触摸屏上会显示“已取消”。"))


@bp.post("/events/<event_id>/restore")
def event_restore(event_id: str):
    return _event_action(event_id, lambda ev: events.restore_event(actor(), ev), _("活动“%(t)s”已恢复。"))


@bp.post("/events/<event_id>/publish")
def event_publish(event_id: str):
    return _event_action(event_id, lambda ev: events.set_published(actor(), ev, True),
                         _("活动“%(t)s”已在触摸屏上公布。"))


@bp.post("/events/<event_id>/unpublish")
def event_unpublish(event_id: str):
    return _event_action(event_id, lambda ev: events.set_published(actor(), ev, False),
                         _("活动“%(t)s”已从触摸屏上撤下。"))


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    station = events.get_station()
    form = StationForm(obj=station)
    status = 200
    if request.method == "POST":
        if form.validate():
            begin_write()
            try:
                events.update_station(actor(), form.name.data, form.code.data, form.idle_timeout_s.data,
                                      form.credit_cap_minutes.data, form.star_thresholds.data)
            except InvalidInput as e:
                db.session.rollback()
                getattr(form, e.field or "name").errors = [str(e.message)]
                status = 422
            else:
                db.session.commit()
                flash(_("站点设置已保存。"), "ok")
                return redirect(url_for("manage.settings"), code=303)
        else:
            status = 422
    return _settings_page(form, CategoryForm(formdata=None), status)


def _settings_page(station_form, category_form, status=200):
    return render(
        "manage/settings.html",
        "manage/_settings.html",
        status=status,
        form=station_form,
        category_form=category_form,
        categories=events.categories(active_only=False),
    )


@bp.post("/categories")
def category_add():
    form = CategoryForm()
    if form.validate():
        begin_write()
        try:
            events.add_category(actor(), form.name.data)
        except InvalidInput as e:
            db.session.rollback()
            form.name.errors = [str(e.message)]
        else:
            db.session.commit()
            flash(_("类别“%(n)s”已添加。", n=form.name.data.strip()), "ok")
            return redirect(url_for("manage.settings"), code=303)
    return _settings_page(StationForm(obj=events.get_station(), formdata=None), form, 422)


@bp.post("/categories/<category_id>")
def category_update(category_id: str):
    form = CategoryForm()
    if not form.validate():
        raise InvalidInput(next(iter(form.errors.values()))[0])
    begin_write()
    cat = db.session.get(Category, category_id)
    if cat is None:
        raise DomainError(_("没有这个类别，请刷新页面。"))
    events.update_category(actor(), cat, form.name.data, bool(form.active.data))
    db.session.commit()
    flash(_("类别已保存。"), "ok")
    return redirect(url_for("manage.settings"), code=303)


@bp.get("/audit")
def audit_log():
    rows = db.session.scalars(select(AuditLog).order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(200))
    return render("manage/audit.html", "manage/_audit.html", rows=list(rows))


# The other back-office pages register on the same blueprint.
from . import manage_attendance, manage_bank, manage_sync, manage_volunteers  # noqa: E402, F401
