"""The love bank (爱心银行): a double-entry, append-only points ledger.

Every transaction posts to a volunteer's account and to one of the station's accounts, and its
postings sum to zero; a balance is the sum of an account's postings. Nothing is ever edited or
deleted (database triggers refuse it): a correction is a new transaction, a reversal is the
exact negation of an earlier one. Operations flush and audit; the caller commits.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from . import audit
from .db import db
from .errors import DomainError, InvalidInput
from .events import get_station
from .ids import parse_id
from .models import CheckIn, LedgerTxn, Posting, Volunteer
from .text import bad_characters, clean

ISSUED = "station:issued"      # where earned and awarded points come from
REDEEMED = "station:redeemed"  # where spent points go
KINDS = ("earn", "redeem", "adjust", "reverse", "expire")


class InsufficientPoints(DomainError):
    def __init__(self, balance: int, price: int):
        super().__init__(_l("积分不够：需要 %(p)d 分，本站现在可用 %(b)d 分。", p=price, b=balance))


class TxnConflict(DomainError):
    message = _l("这次操作和之前的一次冲突了，请返回重新操作。")


def account(volunteer: Volunteer | str) -> str:
    return f"v:{volunteer if isinstance(volunteer, str) else volunteer.id}"


def balance(volunteer: Volunteer | str) -> int:
    """The volunteer's points: the sum of the postings on their account."""
    return db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0)).where(
        Posting.account == account(volunteer)))


def spendable(volunteer: Volunteer | str) -> int:
    """What the volunteer may spend at this station now (kiosk/inbox.py): with no district
    snapshot yet, their balance here; with one, this station's allowance plus its own points since."""
    from .inbox import available_here

    return available_here(volunteer)


def post(kind: str, volunteer: Volunteer, points: int, actor: str, reason: str = "", *, txn_id: str | None = None,
         counter: str = ISSUED, **links) -> LedgerTxn:
    """Write one balanced transaction: `points` to the volunteer, the opposite to `counter`.

    With a txn_id that already exists, the same content is a no-op answering with the first
    transaction, different content a TxnConflict.
    """
    if kind not in KINDS or not isinstance(points, int) or points == 0:
        raise InvalidInput(_l("积分数要是不为 0 的整数。"), field="points")
    txn_id = parse_id(txn_id) if txn_id else None
    if txn_id:
        same = db.session.get(LedgerTxn, txn_id)
        if same is not None:
            if (same.kind, same.volunteer_id, same.points) != (kind, volunteer.id, points):
                raise TxnConflict()
            return same
    txn = LedgerTxn(kind=kind, volunteer_id=volunteer.id, points=points, actor=actor, reason=reason,
                    station_code=get_station().code, **links)
    if txn_id:
        txn.id = txn_id
    txn.postings = [Posting(account=account(volunteer), amount=points), Posting(account=counter, amount=-points)]
    db.session.add(txn)
    db.session.flush()
    audit.record(actor, kind, "ledger_txn", txn.id, reason=reason, volunteer=volunteer.number, points=points)
    return txn


def reverse(txn: LedgerTxn, actor: str, reason: str) -> LedgerTxn:
    """The exact negation of an earlier transaction (once: a reversal can't be reversed twice)."""
    if txn.kind == "reverse":
        raise InvalidInput(_l("冲正记录不能再冲正。"))
    existing = db.session.scalar(select(LedgerTxn).where(LedgerTxn.reverses_id == txn.id))
    if existing is not None:
        return existing
    rev = LedgerTxn(kind="reverse", volunteer_id=txn.volunteer_id, points=-txn.points, actor=actor, reason=reason,
                    station_code=get_station().code, checkin_id=txn.checkin_id, event_id=txn.event_id,
                    redemption_id=txn.redemption_id, reverses_id=txn.id)
    rev.postings = [Posting(account=p.account, amount=-p.amount) for p in txn.postings]
    db.session.add(rev)
    db.session.flush()
    audit.record(actor, "reverse", "ledger_txn", rev.id, reason=reason, reverses=txn.id, points=rev.points)
    return rev


# --- earning ----------------------------------------------------------------------------------

def points_for(minutes: int, bonus: int = 0) -> int:
    """Points for credited minutes by the station's rule, e.g. 10 per hour counted per full
    30 minutes (so 59 minutes earn 5, 60 earn 10); plus the event's bonus when any time counts."""
    st = get_station()
    if minutes <= 0:
        return 0
    units = minutes // st.points_unit_minutes
    return units * st.points_per_hour * st.points_unit_minutes // 60 + bonus


def _earned_on(volunteer_id: str, day: date) -> int:
    start = datetime.combine(day, time.min)
    return db.session.scalar(select(func.coalesce(func.sum(LedgerTxn.points), 0)).where(
        LedgerTxn.volunteer_id == volunteer_id, LedgerTxn.kind.in_(("earn", "reverse")),
        LedgerTxn.checkin_id.is_not(None), LedgerTxn.at >= start, LedgerTxn.at < start + timedelta(days=1)))


def _live_earn(checkin_id: str) -> LedgerTxn | None:
    """The earn of a check-in that has not been reversed, if any (at most one, by construction)."""
    reversed_ids = select(LedgerTxn.reverses_id).where(LedgerTxn.reverses_id.is_not(None))
    return db.session.scalar(select(LedgerTxn).where(
        LedgerTxn.checkin_id == checkin_id, LedgerTxn.kind == "earn", LedgerTxn.id.not_in(reversed_ids)))


def settle_checkin(c: CheckIn, actor: str) -> LedgerTxn | None:
    """Bring a check-in's points in line with its hours: earn when confirmed; when the hours
    change later, reverse the old earn and earn again; a no-show gets its earn reversed."""
    live = _live_earn(c.id)
    wanted = points_for(c.credited_minutes, c.event.bonus_points) if c.status == "confirmed" else 0
    if live is not None:
        # Points already spent are not clawed back below zero: the new earn keeps at least what
        # the balance can't give back (the passbook shows the reversal and the new earn).
        wanted = max(wanted, live.points - max(0, spendable(c.volunteer_id)))
    if live is not None and live.points == wanted:
        return live
    if live is not None:
        reverse(live, actor, str(_l("服务时长更正")))
    if wanted <= 0:
        return None
    cap = get_station().daily_points_cap
    if cap > 0:
        wanted = min(wanted, max(0, cap - _earned_on(c.volunteer_id, c.checked_in_at.date())))
        if wanted <= 0:
            return None
    return post("earn", c.volunteer, wanted, actor, c.event.title, checkin_id=c.id, event_id=c.event_id)


def adjust(actor: str, volunteer: Volunteer, points: int, reason: str, txn_id: str | None = None,
           event_id: str | None = None) -> LedgerTxn:
    """A manager's adjustment (an award or a correction), with the reason shown in the passbook.

    A deduction can't take the balance below zero.
    """
    reason = clean(reason)
    if not reason or len(reason) > 200 or bad_characters(reason):
        raise InvalidInput(_l("请写明原因（最多 200 个字，不能有特殊字符）。"), field="reason")
    if not isinstance(points, int) or points == 0 or abs(points) > 100000:
        raise InvalidInput(_l("积分要是 -100000 到 100000 之间、不为 0 的整数。"), field="points")
    if points < 0 and not (txn_id and db.session.get(LedgerTxn, parse_id(txn_id) or "")):
        # (a retry of a deduction already made answers with it, whatever the balance is now)
        current = spendable(volunteer)
        if current + points < 0:
            raise InsufficientPoints(current, -points)
    return post("adjust", volunteer, points, actor, reason, txn_id=txn_id, event_id=event_id)


def award_event(actor: str, event, points: int, reason: str) -> list[LedgerTxn]:
    """Award the same points to everyone whose attendance at the event is confirmed, once each."""
    attendees = db.session.scalars(select(CheckIn).where(
        CheckIn.event_id == event.id, CheckIn.status == "confirmed")).unique().all()
    done = []
    for c in attendees:
        already = db.session.scalar(select(LedgerTxn.id).where(
            LedgerTxn.kind == "adjust", LedgerTxn.event_id == event.id, LedgerTxn.volunteer_id == c.volunteer_id))
        if already is None:
            done.append(adjust(actor, c.volunteer, points, reason, event_id=event.id))
    return done


# --- the passbook -----------------------------------------------------------------------------

@dataclass
class PassbookLine:
    txn: LedgerTxn
    amount: int
    balance: int


def passbook(volunteer: Volunteer, limit: int = 200) -> tuple[int, list[PassbookLine]]:
    """(balance, the latest lines newest first, each with the running balance after it)."""
    rows = db.session.execute(
        select(Posting.amount, LedgerTxn).join(LedgerTxn, Posting.txn_id == LedgerTxn.id)
        .where(Posting.account == account(volunteer)).order_by(Posting.id.desc()).limit(limit)
    ).all()
    running = balance(volunteer)
    total = running
    lines = []
    for amount, txn in rows:
        lines.append(PassbookLine(txn, amount, running))
        running -= amount
    return total, lines


def passbook_here(volunteer: Volunteer, limit: int = 200):
    """(the volunteer's standing here (kiosk/inbox.py), this station's passbook lines with the
    running balance of this station's book)."""
    from .inbox import standing

    _total, lines = passbook(volunteer, limit)
    return standing(volunteer), lines


def volunteer_balances() -> dict[str, int]:
    rows = db.session.execute(select(Posting.account, func.sum(Posting.amount)).where(
        Posting.account.like("v:%")).group_by(Posting.account))
    return {acc[2:]: total for acc, total in rows}


def station_totals() -> dict[str, int]:
    rows = db.session.execute(select(Posting.account, func.sum(Posting.amount)).where(
        Posting.account.like("station:%")).group_by(Posting.account))
    return dict(rows.all())


