"""The rewards catalog, stock, and redemption (兑换) of points at the kiosk.

Redeeming checks balance, stock, limits and stars inside the caller's write transaction
(BEGIN IMMEDIATE), then writes the redemption, the ledger transaction and the stock move
together. Cancelling or expiring reverses the points and returns the stock.
"""

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from . import audit, checkins, ledger
from .clock import now
from .db import db
from .errors import DomainError, InvalidInput, NotFound
from .events import get_station
from .ids import new_id, parse_id
from .models import Redemption, Reward, StockMove, Volunteer
from .text import bad_characters, clean
from .volunteers import require_active

CODE_ALPHABET = "23456789"  # read aloud without confusion; 6 digits


class OutOfStock(DomainError):
    message = _l("这件物品刚刚兑换完了，请选别的。")


class NotAvailable(DomainError):
    message = _l("这件物品现在不能兑换。")


class MonthlyLimit(DomainError):
    message = _l("这件物品每人每月能兑换的次数已经用完了，下个月再来。")


class NotEnoughStars(DomainError):
    def __init__(self, needed: int):
        super().__init__(_l("这件物品要 %(n)d 星志愿者才能兑换。", n=needed))


class NotPending(DomainError):
    message = _l("这个兑换已经领取、取消或过期了。")


class UnknownCode(DomainError):
    status = 404
    message = _l("没有找到这个取货码，请核对后再输入。")


# --- the catalog ------------------------------------------------------------------------------

@dataclass
class RewardData:
    name: str
    price_points: int
    description: str = ""
    monthly_limit: int | None = None
    min_stars: int = 0
    available_from: date | None = None
    available_until: date | None = None
    active: bool = True
    low_stock: int = 3
    picture: str = ""

    def checked(self) -> "RewardData":
        self.name, self.description = clean(self.name), clean(self.description)
        if not self.name or len(self.name) > 50 or bad_characters(self.name):
            raise InvalidInput(_l("请填写物品名称（最多 50 个字，不能有特殊字符）。"), field="name")
        if len(self.description) > 500 or bad_characters(self.description, multiline=True):
            raise InvalidInput(_l("说明最多 500 个字，不能有特殊字符。"), field="description")
        if not isinstance(self.price_points, int) or not 1 <= self.price_points <= 1_000_000:
            raise InvalidInput(_l("所需积分要在 1 到 1000000 之间。"), field="price_points")
        if self.monthly_limit is not None and not 1 <= self.monthly_limit <= 1000:
            raise InvalidInput(_l("每月限兑要在 1 到 1000 之间，不限请留空。"), field="monthly_limit")
        if not 0 <= self.min_stars <= 5:
            raise InvalidInput(_l("星级要求要在 0 到 5 之间。"), field="min_stars")
        if self.available_from and self.available_until and self.available_until < self.available_from:
            raise InvalidInput(_l("结束日期不能早于开始日期。"), field="available_until")
        if not 0 <= self.low_stock <= 10000:
            raise InvalidInput(_l("库存提醒要在 0 到 10000 之间。"), field="low_stock")
        return self


def create_reward(actor: str, data: RewardData, stock: int = 0) -> Reward:
    d = data.checked()
    r = Reward(**d.__dict__)
    db.session.add(r)
    db.session.flush()
    audit.record(actor, "create", "reward", r.id, name=d.name, price_points=d.price_points)
    if stock:
        restock(actor, r, stock, str(_l("初始库存")))
    return r


def update_reward(actor: str, r: Reward, data: RewardData) -> Reward:
    d = data.checked()
    changes = {}
    for k, v in d.__dict__.items():
        if getattr(r, k) != v:
            old = getattr(r, k)
            changes[k] = [old.isoformat() if hasattr(old, "isoformat") else old,
                          v.isoformat() if hasattr(v, "isoformat") else v]
            setattr(r, k, v)
    if changes:
        r.version += 1
        r.updated_at = now()
        audit.record(actor, "update", "reward", r.id, **changes)
    db.session.flush()
    return r


def _move(actor: str, r: Reward, kind: str, delta: int, reason: str = "", redemption_id: str | None = None):
    if r.stock + delta < 0:
        raise OutOfStock()
    r.stock += delta
    db.session.add(StockMove(reward_id=r.id, kind=kind, delta=delta, actor=actor, reason=reason,
                             redemption_id=redemption_id))
    db.session.flush()


def restock(actor: str, r: Reward, quantity: int, reason: str = "") -> Reward:
    if not isinstance(quantity, int) or not 1 <= quantity <= 100000:
        raise InvalidInput(_l("数量要在 1 到 100000 之间。"), field="quantity")
    reason = clean(reason)[:200]
    _move(actor, r, "restock", quantity, reason)
    audit.record(actor, "restock", "reward", r.id, reason=reason, quantity=quantity, stock=r.stock)
    return r


def write_off(actor: str, r: Reward, quantity: int, reason: str) -> Reward:
    reason = clean(reason)
    if not reason or len(reason) > 200 or bad_characters(reason):
        raise InvalidInput(_l("请写明报损原因（最多 200 个字）。"), field="reason")
    if not isinstance(quantity, int) or quantity < 1:
        raise InvalidInput(_l("数量要是正整数。"), field="quantity")
    if quantity > r.stock:
        raise InvalidInput(_l("报损数量不能超过现有库存（%(n)d 件）。", n=r.stock), field="quantity")
    _move(actor, r, "writeoff", -quantity, reason)
    audit.record(actor, "writeoff", "reward", r.id, reason=reason, quantity=quantity, stock=r.stock)
    return r


def get_reward(reward_id: str) -> Reward:
    r = db.session.get(Reward, reward_id) if reward_id else None
    if r is None:
        raise NotFound(_l("没有找到这件物品，请返回重新选择。"))
    return r


def catalog(active_only: bool = True) -> list[Reward]:
    q = select(Reward).order_by(Reward.price_points, Reward.name)
    if active_only:
        q = q.where(Reward.active.is_(True))
    return list(db.session.scalars(q))


def _month_start(at: datetime) -> datetime:
    return datetime.combine(date(at.year, at.month, 1), time.min)


def _this_month(volunteer: Volunteer, reward: Reward, at: datetime) -> int:
    return db.session.scalar(select(func.count()).where(
        Redemption.volunteer_id == volunteer.id, Redemption.reward_id == reward.id,
        Redemption.status.in_(("pending", "handed_over")), Redemption.created_at >= _month_start(at)))


@dataclass
class Offer:
    reward: Reward
    ok: bool
    why_not: str = ""


def offers(volunteer: Volunteer, at: datetime | None = None, available: int | None = None) -> tuple[int, list[Offer]]:
    """(points available here, each active reward with whether this volunteer can take it now and
    why not); `available` when the caller has it already (inbox.standing(...).here)."""
    at = at or now()
    bal = ledger.spendable(volunteer) if available is None else available
    level = checkins.hours(volunteer, at).stars
    result = []
    for r in catalog():
        refusal = _refusal(volunteer, r, at, bal, level)
        result.append(Offer(r, refusal is None, str(refusal.message) if refusal else ""))
    return bal, result


def _refusal(volunteer: Volunteer, r: Reward, at: datetime, bal: int, level: int) -> DomainError | None:
    """Why this volunteer can't take this reward now, or None."""
    today = at.date()
    if not r.active or (r.available_from and today < r.available_from) or (r.available_until and today > r.available_until):
        return NotAvailable()
    if r.stock <= 0:
        return OutOfStock()
    if level < r.min_stars:
        return NotEnoughStars(r.min_stars)
    if r.monthly_limit is not None and _this_month(volunteer, r, at) >= r.monthly_limit:
        return MonthlyLimit()
    if bal < r.price_points:
        return ledger.InsufficientPoints(bal, r.price_points)
    return None


# --- redeeming --------------------------------------------------------------------------------

def _pickup_code() -> str:
    for _ in range(50):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        if db.session.scalar(select(Redemption.id).where(Redemption.pickup_code == code,
                                                         Redemption.status == "pending")) is None:
            return code
    raise DomainError()


def redeem(volunteer: Volunteer, reward: Reward, redemption_id: str | None, actor: str | None = None,
           at: datetime | None = None) -> tuple[Redemption, bool]:
    """Spend points on a reward; returns (the redemption, whether it is new).

    The id minted with the confirm button is the idempotency key: a double tap or a retry
    answers with the first redemption; the same id for something else is a conflict.
    """
    at = at or now()
    actor = actor or f"volunteer:{volunteer.number}"
    rid = parse_id(redemption_id) if redemption_id else None
    if rid:
        same = db.session.get(Redemption, rid)
        if same is not None:
            if same.volunteer_id != volunteer.id or same.reward_id != reward.id:
                raise ledger.TxnConflict()
            return same, False
    require_active(volunteer)
    refusal = _refusal(volunteer, reward, at, ledger.spendable(volunteer), checkins.hours(volunteer, at).stars)
    if refusal is not None:
        raise refusal
    red = Redemption(id=rid or new_id(), volunteer_id=volunteer.id, reward_id=reward.id, points=reward.price_points,
                     pickup_code=_pickup_code(), created_at=at,
                     expires_at=at + timedelta(days=get_station().pickup_days), txn_id="")
    txn = ledger.post("redeem", volunteer, -reward.price_points, actor, reward.name, counter=ledger.REDEEMED,
                      redemption_id=red.id)
    red.txn_id = txn.id
    db.session.add(red)
    _move(actor, reward, "redeem", -1, redemption_id=red.id)
    db.session.flush()
    audit.record(actor, "redeem", "redemption", red.id, reward=reward.name, points=reward.price_points,
                 pickup_code=red.pickup_code)
    return red, True


def find_pending(code: str) -> Redemption:
    code = "".join(ch for ch in clean(code) if ch.isdigit())
    red = db.session.scalar(select(Redemption).where(Redemption.pickup_code == code, Redemption.status == "pending"))
    if red is None:
        raise UnknownCode()
    return red


class PickupExpired(DomainError):
    message = _l("这个取货码已经过了领取期限，积分会自动退回。")


def hand_over(actor: str, red: Redemption) -> Redemption:
    if red.status != "pending":
        raise NotPending()
    if red.expires_at <= now():
        raise PickupExpired()
    red.status, red.closed_at, red.closed_by = "handed_over", now(), actor
    red.version += 1
    audit.record(actor, "hand_over", "redemption", red.id, reward=red.reward.name)
    db.session.flush()
    return red


def _undo(actor: str, red: Redemption, status: str, reason: str) -> Redemption:
    if red.status != "pending":
        raise NotPending()
    txn = db.session.get(ledger.LedgerTxn, red.txn_id)
    ledger.reverse(txn, actor, reason)
    _move(actor, red.reward, "return", 1, reason, redemption_id=red.id)
    red.status, red.closed_at, red.closed_by, red.close_reason = status, now(), actor, reason
    red.version += 1
    audit.record(actor, status, "redemption", red.id, reason=reason, reward=red.reward.name)
    db.session.flush()
    return red


def cancel(actor: str, red: Redemption, reason: str) -> Redemption:
    """Cancel a redemption not yet handed over: the points come back, and so does the stock."""
    reason = clean(reason)
    if not reason or len(reason) > 200 or bad_characters(reason):
        raise InvalidInput(_l("请写明取消原因（最多 200 个字）。"), field="reason")
    return _undo(actor, red, "cancelled", reason)


def expire_unclaimed(at: datetime | None = None) -> int:
    """Redemptions not picked up within the station's days expire like a cancellation."""
    at = at or now()
    due = db.session.scalars(select(Redemption).where(Redemption.status == "pending",
                                                      Redemption.expires_at <= at)).unique().all()
    for red in due:
        _undo("system", red, "expired", str(_l("超过取货期限未领取")))
    return len(due)


def pending(limit: int = 200) -> list[Redemption]:
    return list(db.session.scalars(select(Redemption).where(Redemption.status == "pending")
                                   .order_by(Redemption.created_at).limit(limit)).unique())


def of_volunteer(volunteer: Volunteer, limit: int = 50) -> list[Redemption]:
    return list(db.session.scalars(select(Redemption).where(Redemption.volunteer_id == volunteer.id)
                                   .order_by(Redemption.created_at.desc()).limit(limit)).unique())
