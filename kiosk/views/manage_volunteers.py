"""The manager's volunteer pages: the list, registration, edits, approval, PINs, cards, import."""

from flask import Response, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import importer, qr, volunteers
from ..auth import actor
from ..db import begin_write, db
from ..errors import DomainError, InvalidInput
from ..forms_volunteers import (
    ImportForm,
    ImportGoodRowsForm,
    PinForm,
    ReissueForm,
    StatusForm,
    VolunteerEditForm,
    VolunteerForm,
)
from ..ids import parse_id
from ..models import Volunteer
from ..web import render
from .manage import bp

LIST_LIMIT = 200
MAX_CARDS = 1000  # 100 A4 pages; more is a job for several print runs
FILTERS = [("", _l("全部")), ("pending", _l("待审核")), ("active", _l("在册")), ("suspended", _l("已暂停"))]
IMPORT_SESSION_KEY = "volunteer_import"


# --- the list ---------------------------------------------------------------------------------

@bp.get("/volunteers", endpoint="volunteers")
def volunteer_list():
    q = request.args.get("q", "")[:50]
    status = request.args.get("status", "")
    if status not in volunteers.STATUSES:
        status = ""
    rows = volunteers.search(q, status or None, limit=LIST_LIMIT)
    counts = dict(db.session.execute(select(Volunteer.status, func.count()).group_by(Volunteer.status)).all())
    counts[""] = sum(counts.values())
    return render("manage/volunteers.html", "manage/_volunteers.html", rows=rows, q=q, shown=status,
                  filters=FILTERS, counts=counts, limit=LIST_LIMIT)


def _list_url():
    """Back to the list as the manager left it (the filter and search travel in the form)."""
    status = request.form.get("filter", "")
    q = request.form.get("q", "")[:50]
    return url_for("manage.volunteers", status=status if status in volunteers.STATUSES else None, q=q or None)


# --- registering and editing ------------------------------------------------------------------

def _field_error(form, e: InvalidInput, default: str = "name"):
    target = getattr(form, e.field or "", None) or getattr(form, default)
    target.errors = list(target.errors) + [str(e.message)]


@bp.route("/volunteers/new", methods=["GET", "POST"])
def volunteer_new():
    form = VolunteerForm()
    if request.method == "GET":
        return render("manage/volunteers_new.html", "manage/_volunteers_new.html", form=form)
    if not form.validate():
        return render("manage/volunteers_new.html", "manage/_volunteers_new.html", status=422, form=form)
    begin_write()
    try:
        v = volunteers.register(actor(), form.name.data, form.mobile.data, form.pin.data, teams=form.teams.names(),
                                via="manager", number=form.number.data or None)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return render("manage/volunteers_new.html", "manage/_volunteers_new.html", status=422, form=form)
    db.session.commit()
    flash(_("已登记志愿者 %(name)s，编号 %(n)s。可以打印证卡了。", name=v.name, n=v.number), "ok")
    return redirect(url_for("manage.volunteer_edit", volunteer_id=v.id), code=303)


def _edit_page(v: Volunteer, status: int = 200, form=None, status_form=None, pin_form=None, card_form=None):
    """The edit page with its four forms; the one that was just sent keeps its input and errors."""
    if form is None:
        form = VolunteerEditForm(formdata=None, data={
            "name": v.name, "mobile": v.mobile, "teams": "、".join(t.name for t in v.teams)})
    return render(
        "manage/volunteers_edit.html", "manage/_volunteers_edit.html", status=status, v=v, form=form,
        status_form=status_form or StatusForm(formdata=None), pin_form=pin_form or PinForm(formdata=None),
        card_form=card_form or ReissueForm(formdata=None),
    )


@bp.route("/volunteers/<volunteer_id>/edit", methods=["GET", "POST"])
def volunteer_edit(volunteer_id: str):
    v = volunteers.get(volunteer_id)
    if request.method == "GET":
        return _edit_page(v)
    form = VolunteerEditForm()
    if not form.validate():
        return _edit_page(v, 422, form=form)
    begin_write()
    v = volunteers.get(volunteer_id)
    try:
        volunteers.update(actor(), v, form.name.data, form.mobile.data, form.teams.names())
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e)
        return _edit_page(volunteers.get(volunteer_id), 422, form=form)
    db.session.commit()
    flash(_("%(name)s 的资料已保存。", name=v.name), "ok")
    return redirect(url_for("manage.volunteer_edit", volunteer_id=v.id), code=303)


STATUS_MESSAGES = {
    ("pending", "active"): _l("%(name)s 已通过审核，现在可以签到了。"),
    ("suspended", "active"): _l("%(name)s 的志愿者资格已恢复。"),
    ("active", "suspended"): _l("%(name)s 的志愿者资格已暂停，TA 记住的手机也已退出。"),
    ("pending", "suspended"): _l("%(name)s 的登记没有通过，已暂停。"),
}


@bp.post("/volunteers/<volunteer_id>/status")
def volunteer_status(volunteer_id: str):
    form = StatusForm()
    if not form.validate():
        return _edit_page(volunteers.get(volunteer_id), 422, status_form=form)
    begin_write()
    v = volunteers.get(volunteer_id)
    old = v.status
    volunteers.set_status(actor(), v, form.status.data, form.reason.data or "")
    db.session.commit()
    message = STATUS_MESSAGES.get((old, v.status), _l("%(name)s 的状态已更新。"))
    flash(str(message) % {"name": v.name}, "ok")
    if form.back.data == "list":
        return redirect(_list_url(), code=303)
    return redirect(url_for("manage.volunteer_edit", volunteer_id=v.id), code=303)


@bp.post("/volunteers/<volunteer_id>/pin")
def volunteer_pin(volunteer_id: str):
    form = PinForm()
    if not form.validate():
        return _edit_page(volunteers.get(volunteer_id), 422, pin_form=form)
    begin_write()
    v = volunteers.get(volunteer_id)
    try:
        volunteers.reset_pin(actor(), v, form.new_pin.data)
    except InvalidInput as e:
        db.session.rollback()
        form.new_pin.errors = list(form.new_pin.errors) + [str(e.message)]
        return _edit_page(volunteers.get(volunteer_id), 422, pin_form=form)
    db.session.commit()
    flash(_("已为 %(name)s 设好新密码。请把新密码当面告诉本人。", name=v.name), "ok")
    return redirect(url_for("manage.volunteer_edit", volunteer_id=v.id), code=303)


@bp.post("/volunteers/<volunteer_id>/card/reissue")
def volunteer_card_reissue(volunteer_id: str):
    form = ReissueForm()
    if not form.validate():
        return _edit_page(volunteers.get(volunteer_id), 422, card_form=form)
    begin_write()
    v = volunteers.get(volunteer_id)
    volunteers.reissue_card(actor(), v)
    db.session.commit()
    flash(_("已为 %(name)s 补办新卡。旧卡从现在起不能用了，请打印这张新卡交给本人。", name=v.name), "ok")
    return redirect(url_for("manage.volunteer_card", volunteer_id=v.id), code=303)


# --- cards ------------------------------------------------------------------------------------

def _cards(people: list[Volunteer]) -> list[dict]:
    # qr.svg names its path id="qr-path": drop it, ids must be unique on a sheet of many cards.
    return [{"v": v, "qr": qr.svg(volunteers.badge(v)).replace(' id="qr-path"', "")} for v in people]


@bp.get("/volunteers/<volunteer_id>/card")
def volunteer_card(volunteer_id: str):
    v = volunteers.get(volunteer_id)
    return render("manage/card.html", "manage/_card.html", v=v, cards=_cards([v]))


@bp.get("/volunteers/cards")
def volunteer_cards():
    """A4 sheets of cards: the volunteers named in ?ids= (repeated or comma-separated), else all active."""
    raw = ",".join(request.args.getlist("ids"))[:MAX_CARDS * 40]
    ids = list(dict.fromkeys(i for i in map(parse_id, raw.split(",")) if i))[:MAX_CARDS]
    if ids:
        people = list(db.session.scalars(select(Volunteer).where(Volunteer.id.in_(ids)).order_by(Volunteer.number)))
    else:
        people = volunteers.search("", "active", limit=MAX_CARDS + 1)
    more = len(people) > MAX_CARDS
    people = people[:MAX_CARDS]
    return render("manage/cards.html", "manage/_cards.html", cards=_cards(people), chosen=bool(ids), more=more,
                  inactive=[v for v in people if v.status != "active"], limit=MAX_CARDS)


# --- import -----------------------------------------------------------------------------------

def _import_page(form, status=200, report=None, token=None, message=None):
    return render("manage/import.html", "manage/_import.html", status=status, form=form, report=report,
                  token=token, message=message, good_form=ImportGoodRowsForm(formdata=None))


@bp.route("/volunteers/import", methods=["GET", "POST"])
def volunteer_import():
    form = ImportForm()
    if request.method == "GET":
        return _import_page(form)
    if not form.validate():
        return _import_page(form, 422)
    upload = form.file.data
    data = upload.read()
    try:
        rows = importer.parse_file(upload.filename or "", data)
    except InvalidInput as e:
        form.file.errors = [str(e.message)]
        return _import_page(form, 422)
    hashes = _hash_good_pins(rows)
    begin_write()  # checked and imported in one transaction: nobody registers a mobile in between
    report = importer.check_rows(rows)
    if report.bad:
        db.session.rollback()
        token = importer.stash(current_app.instance_path, data) if report.good else None
        session[IMPORT_SESSION_KEY] = token
        return _import_page(ImportForm(formdata=None), 422, report=report, token=token)
    return _import(report, None, hashes)


def _hash_good_pins(rows) -> dict[int, str]:
    """Hash the PINs of the rows that look good before taking the write lock: scrypt is slow on
    purpose and a big file would otherwise hold the lock (and stall the kiosk) for minutes."""
    report = importer.check_rows(rows)
    db.session.rollback()  # end the read transaction
    return {r.line: volunteers.hash_pin(r.pin) for r in report.good}


@bp.post("/volunteers/import/good")
def volunteer_import_good():
    """Import only the rows without problems from the file the report was made from."""
    form = ImportGoodRowsForm()
    token = form.token.data or ""
    gone = _("这份名单已经导入过了，或者放得太久已经失效。请重新选择文件上传。")
    stashed = None
    if form.validate() and token == session.get(IMPORT_SESSION_KEY):
        stashed = importer.unstash(current_app.instance_path, token)
    if stashed is None:
        return _import_page(ImportForm(formdata=None), 409, message=gone)
    name, data = stashed
    try:
        rows = importer.parse_file(name, data)
    except InvalidInput:
        return _import_page(ImportForm(formdata=None), 409, message=gone)
    hashes = _hash_good_pins(rows)
    begin_write()
    report = importer.check_rows(rows)
    if len(report.good) != int(form.expected.data) or not report.good:
        db.session.rollback()
        return _import_page(ImportForm(formdata=None), 409, report=report, token=token, message=_(
            "名单检查的结果和刚才不一样了（可能有人刚登记了其中的手机号）。请再看一遍下面的结果。"))
    return _import(report, token, hashes)


def _import(report: importer.Report, token: str | None, hashes: dict[int, str]):
    """Register the good rows, all or none, and show them once with any PINs made up for them.

    The answer is the page itself, not a redirect: generated PINs are shown this once and are
    never stored anywhere in plain text.
    """
    good = report.good
    try:
        created = importer.import_rows(actor(), good, [hashes.get(r.line) for r in good])
    except (DomainError, IntegrityError) as e:
        db.session.rollback()
        message = str(e.message) if isinstance(e, DomainError) else _("有两位志愿者的编号冲突了。")
        return _import_page(ImportForm(formdata=None), 409, report=report, token=token, message=_(
            "导入没有完成，一行也没有导入：%(m)s", m=message))
    done = [{"line": r.line, "id": v.id, "number": v.number, "name": v.name, "mobile": v.mobile,
             "teams": "、".join(t.name for t in v.teams), "pin": r.pin if r.pin_generated else None}
            for r, v in zip(good, created, strict=True)]
    db.session.commit()
    if token:
        importer.discard(current_app.instance_path, token)
        session.pop(IMPORT_SESSION_KEY, None)
    return render("manage/import_done.html", "manage/_import_done.html", done=done, skipped=report.bad,
                  generated=any(d["pin"] for d in done))


@bp.get("/volunteers/import/template.csv")
def volunteer_import_template():
    return Response(importer.TEMPLATE_CSV.encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=volunteers-template.csv"})
