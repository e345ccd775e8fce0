"""The love bank (爱心银行) in the back office: the rewards catalog and its stock, pickups,
balances and the ledger with its exports, adjustments, awards for an event, and the rules."""

import re
import secrets
from datetime import timedelta
from pathlib import Path

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    request,
    send_from_directory,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import func, select

from .. import bank_settings, events, exports, inbox, ledger, rewards, volunteers
from ..auth import actor
from ..clock import now
from ..db import begin_write, db
from ..errors import DomainError, InvalidInput, NotFound
from ..forms_bank import (
    AdjustForm,
    AwardForm,
    BankSettingsForm,
    CancelRedemptionForm,
    HandOverForm,
    LedgerFilterForm,
    PickupCodeForm,
    RestockForm,
    RewardForm,
    WriteOffForm,
)
from ..ids import new_id, parse_id
from ..models import CheckIn, Event, LedgerTxn, Redemption, Reward, StockMove
from ..web import render
from .manage import bp
from .manage_attendance import duration

PICTURE_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg)$")
AWARD_DAYS = 30          # events of the last 30 days can be awarded from the bank page
CLOSED_SHOWN = 30        # recent handed-over, cancelled and expired redemptions under the pending ones
BALANCES_SHOWN = 200


def _field_error(form, e: DomainError, default: str):
    target = getattr(form, e.field or "", None) or getattr(form, default)
    target.errors = list(target.errors) + [str(e.message)]


HELPERS = dict(kind_label=exports.kind_label, actor_label=exports.actor_label)


# --- pictures: stored under instance/rewards/ with a random name, served only by that name -------

def _picture_folder() -> Path:
    return Path(current_app.instance_path) / "rewards"


def _save_picture(form: RewardForm) -> str:
    """Writes an accepted upload under a fresh random name; "" when there is none."""
    content = getattr(form.picture, "content", None)
    if not content:
        return ""
    folder = _picture_folder()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{form.picture.ext}"
    with open(folder / name, "xb") as f:
        f.write(content)
    return name


def _drop_picture(name: str) -> None:
    if name and PICTURE_NAME.match(name):
        (_picture_folder() / name).unlink(missing_ok=True)


@bp.get("/rewards/<reward_id>/picture")
def reward_picture(reward_id: str):
    r = db.session.get(Reward, reward_id)
    if r is None or not PICTURE_NAME.match(r.picture or ""):
        abort(404)
    return send_from_directory(_picture_folder(), r.picture, max_age=3600)


# --- the rewards catalog ---------------------------------------------------------------------

def _pending_counts() -> dict[str, int]:
    return dict(db.session.execute(select(Redemption.reward_id, func.count()).where(
        Redemption.status == "pending").group_by(Redemption.reward_id)).all())


@bp.get("/rewards", endpoint="rewards")
def reward_list():
    rows = rewards.catalog(active_only=False)
    low = [r for r in rows if r.active and r.stock <= r.low_stock]
    return render("manage/bank_rewards.html", "manage/_bank_rewards.html", rows=rows, low=low,
                  pending=_pending_counts(), today=now().date())


def _reward_data(form: RewardForm, picture: str) -> rewards.RewardData:
    return rewards.RewardData(
        name=form.name.data or "",
        price_points=form.price_points.data,
        description=form.description.data or "",
        monthly_limit=form.monthly_limit.data,
        min_stars=form.min_stars.data or 0,
        available_from=form.available_from.data,
        available_until=form.available_until.data,
        active=bool(form.active.data),
        low_stock=form.low_stock.data,
        picture=picture,
    )


def _edit_form(r: Reward) -> RewardForm:
    form = RewardForm(formdata=None, obj=r)
    form.version.data = str(r.version)
    return form


def _reward_page(form: RewardForm, r: Reward | None, status: int = 200, stale: bool = False,
                 restock: RestockForm | None = None, writeoff: WriteOffForm | None = None):
    moves = []
    if r is not None:
        moves = list(db.session.scalars(select(StockMove).where(StockMove.reward_id == r.id)
                                        .order_by(StockMove.at.desc(), StockMove.id.desc()).limit(30)))
    return render("manage/bank_reward_form.html", "manage/_bank_reward_form.html", status=status, form=form,
                  reward=r, stale=stale, moves=moves, pending=_pending_counts().get(r.id, 0) if r else 0,
                  restock=restock or RestockForm(formdata=None, prefix="restock"),
                  writeoff=writeoff or WriteOffForm(formdata=None, prefix="writeoff"),
                  **HELPERS)


@bp.route("/rewards/new", methods=["GET", "POST"])
def reward_new():
    form = RewardForm()
    if request.method == "GET":
        return _reward_page(form, None)
    if not form.validate():
        return _reward_page(form, None, 422)
    picture = _save_picture(form)
    begin_write()
    try:
        r = rewards.create_reward(actor(), _reward_data(form, picture), stock=form.stock.data or 0)
    except InvalidInput as e:
        db.session.rollback()
        _drop_picture(picture)
        _field_error(form, e, "name")
        return _reward_page(form, None, 422)
    done = _("“%(n)s”已加入兑换目录，现有 %(s)d 件。", n=r.name, s=r.stock)
    db.session.commit()
    flash(done, "ok")
    return redirect(url_for("manage.rewards"), code=303)


@bp.route("/rewards/<reward_id>/edit", methods=["GET", "POST"])
def reward_edit(reward_id: str):
    r = rewards.get_reward(reward_id)
    if request.method == "GET":
        return _reward_page(_edit_form(r), r)
    form = RewardForm()
    if not form.validate():
        return _reward_page(form, r, 422)
    picture = _save_picture(form)
    begin_write()
    r = rewards.get_reward(reward_id)
    if (form.version.data or "") != str(r.version):
        # Someone else saved it since this form opened: show their version's number, keep the typing.
        db.session.rollback()
        _drop_picture(picture)
        form.version.data = str(r.version)
        return _reward_page(form, r, 409, stale=True)
    old_picture = r.picture
    keep = "" if form.remove_picture.data else old_picture
    try:
        rewards.update_reward(actor(), r, _reward_data(form, picture or keep))
    except InvalidInput as e:
        db.session.rollback()
        _drop_picture(picture)
        _field_error(form, e, "name")
        return _reward_page(form, r, 422)
    done = _("“%(n)s”已保存。", n=r.name)
    db.session.commit()
    if old_picture != r.picture:
        _drop_picture(old_picture)
    flash(done, "ok")
    return redirect(url_for("manage.rewards"), code=303)


def _stock_change(reward_id: str, form, change, message, which: str):
    r = rewards.get_reward(reward_id)
    if not form.validate():
        return _reward_page(_edit_form(r), r, 422, **{which: form})
    begin_write()
    r = rewards.get_reward(reward_id)
    try:
        change(r)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e, "quantity")
        return _reward_page(_edit_form(r), r, 422, **{which: form})
    done = message % {"n": form.quantity.data, "name": r.name, "s": r.stock}
    db.session.commit()
    flash(done, "ok")
    return redirect(url_for("manage.reward_edit", reward_id=reward_id, _anchor="stock"), code=303)


@bp.post("/rewards/<reward_id>/restock")
def reward_restock(reward_id: str):
    form = RestockForm(prefix="restock")
    return _stock_change(reward_id, form, lambda r: rewards.restock(actor(), r, form.quantity.data, form.reason.data or ""),
                         _("“%(name)s”补货 %(n)d 件，现在有 %(s)d 件。"), "restock")


@bp.post("/rewards/<reward_id>/writeoff")
def reward_writeoff(reward_id: str):
    form = WriteOffForm(prefix="writeoff")
    return _stock_change(reward_id, form, lambda r: rewards.write_off(actor(), r, form.quantity.data, form.reason.data),
                         _("“%(name)s”报损 %(n)d 件，现在有 %(s)d 件。"), "writeoff")


# --- pickups (取货) -----------------------------------------------------------------------------

def _expire_due() -> int:
    """Expire redemptions past their pickup days: a write only when there are some."""
    at = now()
    due = db.session.scalar(select(Redemption.id).where(Redemption.status == "pending",
                                                        Redemption.expires_at <= at).limit(1))
    if due is None:
        return 0
    begin_write()
    n = rewards.expire_unclaimed(at)
    if n:
        db.session.commit()
        flash(_("有 %(n)d 个兑换超过取货期限没有领取，已自动取消，积分和物品已退回。", n=n), "info")
    else:
        db.session.rollback()
    return n


def _redemptions_page(form: PickupCodeForm, status: int = 200):
    closed = db.session.scalars(select(Redemption).where(Redemption.status != "pending")
                                .order_by(Redemption.closed_at.desc(), Redemption.id.desc()).limit(CLOSED_SHOWN))
    return render("manage/bank_redemptions.html", "manage/_bank_redemptions.html", status=status, form=form,
                  rows=rewards.pending(), closed=list(closed.unique()), **HELPERS)


def _redemption(redemption_id: str) -> Redemption:
    key = parse_id(redemption_id)
    red = db.session.get(Redemption, key) if key else None
    if red is None:
        raise NotFound(_("没有找到这个兑换记录，请返回取货页重新查找。"))
    return red


def _redemption_page(red: Redemption, status: int = 200, cancel: CancelRedemptionForm | None = None,
                     error: str = "", cancelling: bool = False):
    return render("manage/bank_redemption.html", "manage/_bank_redemption.html", status=status, red=red,
                  cancel=cancel or CancelRedemptionForm(formdata=None), error=error,
                  cancelling=cancelling or bool(cancel and cancel.errors), balance=ledger.balance(red.volunteer_id),
                  overdue=red.status == "pending" and red.expires_at <= now(), **HELPERS)


@bp.get("/redemptions", endpoint="redemptions")
def redemption_list():
    _expire_due()
    return _redemptions_page(PickupCodeForm(formdata=None))


@bp.post("/redemptions/handover")
def redemption_find():
    """The code a volunteer shows (typed, or scanned from the slip): show whose it is and what."""
    form = PickupCodeForm()
    if not form.validate():
        return _redemptions_page(form, 422)
    try:
        red = rewards.find_pending(form.code.data)
    except rewards.UnknownCode as e:
        form.code.errors = [str(e.message)]
        return _redemptions_page(form, 404)
    return _redemption_page(red)


@bp.route("/redemptions/<redemption_id>/handover", methods=["GET", "POST"])
def redemption_handover(redemption_id: str):
    if request.method == "GET":
        return _redemption_page(_redemption(redemption_id))
    if not HandOverForm().validate():
        raise InvalidInput()
    begin_write()
    red = _redemption(redemption_id)
    if red.status == "handed_over":  # a double tap: it was handed over a moment ago
        db.session.rollback()
        flash(_("这件物品已经交付过了。"), "info")
        return redirect(url_for("manage.redemptions"), code=303)
    if red.status == "pending" and red.expires_at <= now():
        db.session.rollback()
        return _redemption_page(red, 409, error=_("这个兑换已经超过取货期限，不能再交付；积分会自动退回给志愿者。"))
    try:
        rewards.hand_over(actor(), red)
    except rewards.NotPending as e:
        db.session.rollback()
        return _redemption_page(red, e.status, error=str(e.message))
    done = _("已把“%(r)s”交给 %(name)s（%(n)s）。", r=red.reward.name, name=red.volunteer.name, n=red.volunteer.number)
    db.session.commit()
    flash(done, "ok")
    return redirect(url_for("manage.redemptions"), code=303)


@bp.route("/redemptions/<redemption_id>/cancel", methods=["GET", "POST"])
def redemption_cancel(redemption_id: str):
    if request.method == "GET":
        return _redemption_page(_redemption(redemption_id), cancelling=True)
    form = CancelRedemptionForm()
    if not form.validate():
        return _redemption_page(_redemption(redemption_id), 422, cancel=form)
    begin_write()
    red = _redemption(redemption_id)
    try:
        rewards.cancel(actor(), red, form.reason.data)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e, "reason")
        return _redemption_page(red, 422, cancel=form)
    except rewards.NotPending as e:
        db.session.rollback()
        return _redemption_page(red, e.status, error=str(e.message))
    done = _("已取消 %(name)s 兑换的“%(r)s”：%(p)d 分已退回，物品已放回库存。", name=red.volunteer.name,
             r=red.reward.name, p=red.points)
    db.session.commit()
    flash(done, "ok")
    return redirect(url_for("manage.redemptions"), code=303)


# --- balances --------------------------------------------------------------------------------

def _recent_events() -> list[tuple[Event, int]]:
    """Events of the last 30 days that have begun and were not cancelled, with their confirmed count."""
    at = now()
    evs = list(db.session.scalars(select(Event).where(
        Event.starts_at >= at - timedelta(days=AWARD_DAYS), Event.starts_at <= at, Event.cancelled_at.is_(None))
        .order_by(Event.starts_at.desc()).limit(200)).unique())
    counts = dict(db.session.execute(select(CheckIn.event_id, func.count()).where(
        CheckIn.status == "confirmed", CheckIn.event_id.in_([e.id for e in evs])).group_by(CheckIn.event_id)).all())
    return [(e, counts.get(e.id, 0)) for e in evs]


@bp.get("/bank", endpoint="bank")
def bank_overview():
    q = request.args.get("q", "")[:50]
    accounts = ledger.station_totals()
    balances = ledger.volunteer_balances()
    outstanding = sum(balances.values())
    totals = {
        "issued": -accounts.get(ledger.ISSUED, 0),
        "redeemed": accounts.get(ledger.REDEEMED, 0),
        "outstanding": outstanding,
        # Any other station account (none yet: "expire" would bring one) counts as taken back.
        "other": sum(v for k, v in accounts.items() if k not in (ledger.ISSUED, ledger.REDEEMED)),
        # Double entry: the station's accounts and the volunteers' add up to zero.
        "balanced": sum(accounts.values()) + outstanding == 0,
    }
    people = volunteers.search(q, limit=BALANCES_SHOWN)
    here = inbox.available_for([v.id for v in people])
    rows = [(v, balances.get(v.id, 0), here.get(v.id) if here is not None else None) for v in people]
    return render("manage/bank.html", "manage/_bank.html", totals=totals, rows=rows, q=q, limit=BALANCES_SHOWN,
                  district=here is not None,
                  recent=_recent_events(), pending_count=db.session.scalar(
                      select(func.count()).where(Redemption.status == "pending")))


# --- the ledger and its exports --------------------------------------------------------------

def _ledger_filter() -> tuple[LedgerFilterForm, exports.LedgerFilter | None]:
    form = LedgerFilterForm(formdata=request.args)
    form.kind.choices = [("", _("全部类型"))] + [(k, exports.kind_label(k)) for k in ledger.KINDS]
    if not form.validate():
        return form, None
    return form, exports.LedgerFilter(q=form.q.data or "", kind=form.kind.data or "",
                                      date_from=form.date_from.data, date_to=form.date_to.data)


def _ledger_page(form, f, status=200):
    totals = exports.ledger_totals(f) if f else exports.Totals()
    pages = max(1, -(-totals.count // exports.PAGE_SIZE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    rows = exports.ledger_page(f, page) if f else []
    args = {k: v for k, v in request.args.items() if k in ("q", "kind", "date_from", "date_to") and v}
    return render("manage/bank_ledger.html", "manage/_bank_ledger.html", status=status, form=form, rows=rows,
                  totals=totals, page_no=page, pages=pages, args=args, **HELPERS)


@bp.get("/bank/ledger")
def bank_ledger():
    form, f = _ledger_filter()
    return _ledger_page(form, f, 200 if f else 422)


def _export_name(ext: str) -> str:
    code = re.sub(r"[^A-Za-z0-9_-]", "", events.get_station().code) or "station"
    return f"ledger-{code}-{now():%Y%m%d}.{ext}"


@bp.get("/bank/ledger.csv")
def bank_ledger_csv():
    form, f = _ledger_filter()
    if f is None:
        return _ledger_page(form, f, 422)
    body = exports.to_csv(exports.ledger_table(exports.ledger_lines(f)))
    return Response(stream_with_context(body), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{_export_name("csv")}"'})


@bp.get("/bank/ledger.xlsx")
def bank_ledger_xlsx():
    form, f = _ledger_filter()
    if f is None:
        return _ledger_page(form, f, 422)
    data = exports.to_xlsx(exports.ledger_table(exports.ledger_lines(f)), _("积分流水"))
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{_export_name("xlsx")}"'})


# --- adjusting one volunteer -----------------------------------------------------------------

def _adjust_page(form: AdjustForm, status: int = 200):
    return render("manage/bank_adjust.html", "manage/_bank_adjust.html", status=status, form=form)


@bp.route("/bank/adjust", methods=["GET", "POST"])
def bank_adjust():
    if request.method == "GET":
        form = AdjustForm(formdata=None)
        form.volunteer.data = request.args.get("volunteer", "")[:40]
        form.op.data = new_id()  # this form's idempotency key: a double tap or a retry adjusts once
        return _adjust_page(form)
    form = AdjustForm()
    op = parse_id(form.op.data)
    if op is None:
        form.op.data = op = new_id()
    if not form.validate():
        return _adjust_page(form, 422)
    begin_write()
    try:
        v = volunteers.find(form.volunteer.data)
        same = db.session.get(LedgerTxn, op)
        if same is None:
            ledger.adjust(actor(), v, form.points.data, form.reason.data, txn_id=op)
        elif (same.kind, same.volunteer_id, same.points) != ("adjust", v.id, form.points.data):
            raise ledger.TxnConflict()
    except volunteers.UnknownVolunteer as e:
        db.session.rollback()
        form.volunteer.errors = [str(e.message)]
        return _adjust_page(form, 422)
    except ledger.TxnConflict as e:
        db.session.rollback()
        form.op.data = new_id()
        form.points.errors = [str(e.message)]
        return _adjust_page(form, e.status)
    except DomainError as e:  # a bad reason or points; a deduction below zero
        db.session.rollback()
        _field_error(form, e, "points")
        return _adjust_page(form, e.status)
    points = form.points.data
    done = (_("已给 %(name)s（%(n)s）加 %(p)d 分。", name=v.name, n=v.number, p=points) if points > 0 else
            _("已从 %(name)s（%(n)s）扣 %(p)d 分。", name=v.name, n=v.number, p=-points))
    db.session.commit()
    flash(done, "ok")
    return redirect(url_for("manage.bank_ledger", q=v.number), code=303)


# --- awarding everyone confirmed at an event -------------------------------------------------

@bp.get("/bank/award")
def bank_award_pick():
    """The bank page's event picker (a GET form) leads to that event's award page."""
    event_id = parse_id(request.args.get("event_id", ""))
    if not event_id:
        flash(_("请先选择一个活动。"), "info")
        return redirect(url_for("manage.bank", _anchor="award"), code=303)
    return redirect(url_for("manage.event_award", event_id=event_id), code=303)


def _award_page(ev: Event, form: AwardForm, status: int = 200):
    attendees = list(db.session.scalars(select(CheckIn).where(
        CheckIn.event_id == ev.id, CheckIn.status == "confirmed").order_by(CheckIn.checked_in_at)).unique())
    awarded = dict(db.session.execute(select(LedgerTxn.volunteer_id, LedgerTxn.points).where(
        LedgerTxn.kind == "adjust", LedgerTxn.event_id == ev.id)).all())
    return render("manage/bank_award.html", "manage/_bank_award.html", status=status, event=ev, form=form,
                  attendees=attendees, awarded=awarded, todo=sum(1 for c in attendees if c.volunteer_id not in awarded))


@bp.route("/events/<event_id>/award", methods=["GET", "POST"])
def event_award(event_id: str):
    ev = events.get_event(event_id)
    if request.method == "GET":
        form = AwardForm(formdata=None)
        form.reason.data = _("参加“%(t)s”的奖励", t=ev.title)
        return _award_page(ev, form)
    form = AwardForm()
    if not form.validate():
        return _award_page(ev, form, 422)
    begin_write()
    ev = events.get_event(event_id)
    try:
        done = ledger.award_event(actor(), ev, form.points.data, form.reason.data)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e, "reason")
        return _award_page(ev, form, 422)
    db.session.commit()
    if done:
        flash(_("已给 %(n)d 位志愿者每人加 %(p)d 分。", n=len(done), p=form.points.data), "ok")
    else:
        flash(_("没有要奖励的人：已确认的志愿者都奖励过了，或者还没有已确认的签到。"), "info")
    return redirect(url_for("manage.event_award", event_id=ev.id), code=303)


# --- the love bank's rules -------------------------------------------------------------------

def _settings_page(form: BankSettingsForm, status: int = 200):
    return render("manage/bank_settings.html", "manage/_bank_settings.html", status=status, form=form,
                  examples=bank_settings.example_points(), duration=duration)


@bp.route("/bank/settings", methods=["GET", "POST"], endpoint="bank_settings")
def bank_settings_page():
    if request.method == "GET":
        return _settings_page(BankSettingsForm(formdata=None, obj=events.get_station()))
    form = BankSettingsForm()
    if not form.validate():
        return _settings_page(form, 422)
    begin_write()
    try:
        bank_settings.update_bank_settings(actor(), form.points_per_hour.data, form.points_unit_minutes.data,
                                           form.daily_points_cap.data, form.pickup_days.data)
    except InvalidInput as e:
        db.session.rollback()
        _field_error(form, e, "points_per_hour")
        return _settings_page(form, 422)
    db.session.commit()
    flash(_("积分规则已保存，从现在起按新规则计分。"), "ok")
    return redirect(url_for("manage.bank_settings"), code=303)
