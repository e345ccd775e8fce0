"""The love bank's ledger and rewards as plain functions, and its invariants under Hypothesis."""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select, text

from kiosk import checkins, events, ledger, rewards, volunteers
from kiosk.db import begin_write, db
from kiosk.errors import DomainError
from kiosk.models import CheckIn, LedgerTxn, Posting, Reward, StockMove
from tests.conftest import FROZEN

pytestmark = pytest.mark.usefixtures("ctx")
START, END = FROZEN.replace(hour=9), FROZEN.replace(hour=11)


def make_volunteer(n=1):
    begin_write()
    v = volunteers.register("test", f"志愿者{n}", f"1380000{n:04d}", "258369")
    db.session.commit()
    return v


def make_event(start=START, end=END, bonus=0):
    begin_write()
    e = events.create_event("test", events.EventData(title="义诊", starts_at=start, ends_at=end))
    e.bonus_points = bonus
    db.session.commit()
    return e


def serve(v, e, minutes):
    begin_write()
    c, _ = checkins.check_in(v, e, "kiosk", at=e.starts_at)
    checkins.check_out(v, e, "kiosk", at=e.starts_at + timedelta(minutes=minutes))
    db.session.commit()
    return c


def make_reward(price=30, stock=5, **kw):
    begin_write()
    r = rewards.create_reward("manager:wang", rewards.RewardData(name="洗衣液", price_points=price, **kw), stock=stock)
    db.session.commit()
    return r


@pytest.mark.parametrize("minutes, points", [(0, 0), (29, 0), (30, 5), (59, 5), (60, 10), (119, 15), (120, 20)])
def test_points_per_full_half_hour(minutes, points):
    assert ledger.points_for(minutes) == points


def test_earn_on_checkout_once_and_bonus():
    v, e = make_volunteer(), make_event(bonus=3)
    c = serve(v, e, 90)
    assert ledger.balance(v) == 15 + 3
    begin_write()
    ledger.settle_checkin(c, "x")  # settling again changes nothing
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(LedgerTxn)) == 1


def test_correction_reverses_and_reearns_never_edits():
    v, e = make_volunteer(), make_event()
    c = serve(v, e, 60)
    begin_write()
    checkins.correct("manager:wang", c, START, END, "按纸质表更正")
    db.session.commit()
    assert ledger.balance(v) == 20
    kinds = db.session.scalars(select(LedgerTxn.kind).order_by(LedgerTxn.at, LedgerTxn.id)).all()
    assert sorted(kinds) == ["earn", "earn", "reverse"]
    begin_write()
    checkins.mark_no_show("manager:wang", c, "没来")
    db.session.commit()
    assert ledger.balance(v) == 0


def test_unconfirmed_earns_only_when_confirmed():
    v, e = make_volunteer(), make_event()
    begin_write()
    checkins.check_in(v, e, "kiosk", at=START)
    checkins.close_overdue(END + timedelta(hours=1))
    db.session.commit()
    assert ledger.balance(v) == 0
    begin_write()
    checkins.confirm("manager:wang", db.session.scalars(select(CheckIn)).all())
    db.session.commit()
    assert ledger.balance(v) == 20


def test_daily_cap():
    begin_write()
    events.get_station().daily_points_cap = 25
    db.session.commit()
    v = make_volunteer()
    serve(v, make_event(), 120)
    serve(v, make_event(START.replace(hour=12), START.replace(hour=14)), 120)
    assert ledger.balance(v) == 25


def test_ledger_rows_are_append_only():
    v, e = make_volunteer(), make_event()
    serve(v, e, 60)
    make_reward(stock=2)
    for sql in ("UPDATE posting SET amount = 1000", "DELETE FROM posting", "UPDATE ledger_txn SET points = 1",
                "DELETE FROM ledger_txn", "DELETE FROM stock_move", "UPDATE stock_move SET delta = 5"):
        begin_write()
        with pytest.raises(Exception, match="append-only"):
            db.session.execute(text(sql))
        db.session.rollback()


def test_adjust_and_award():
    v, w = make_volunteer(1), make_volunteer(2)
    e = make_event()
    serve(v, e, 60)
    serve(w, e, 60)
    begin_write()
    ledger.award_event("manager:wang", e, 50, "重阳节活动奖励")
    ledger.award_event("manager:wang", e, 50, "重阳节活动奖励")  # twice: once each
    db.session.commit()
    assert ledger.balance(v) == 60 and ledger.balance(w) == 60
    begin_write()
    with pytest.raises(ledger.InsufficientPoints):
        ledger.adjust("manager:wang", v, -61, "扣错了")
    with pytest.raises(DomainError):
        ledger.adjust("manager:wang", v, 5, "")
    ledger.adjust("manager:wang", v, -10, "重复发放，收回")
    db.session.commit()
    total, lines = ledger.passbook(v)
    assert total == 50
    assert [(line.amount, line.balance) for line in lines] == [(-10, 50), (50, 60), (10, 10)]
    assert lines[0].txn.reason == "重复发放，收回"


def test_redeem_hand_over_and_cancel():
    v, e = make_volunteer(), make_event()
    serve(v, e, 120)  # 20 points
    r = make_reward(price=15, stock=2)
    begin_write()
    red, new = rewards.redeem(v, r, "01900000-0000-7000-8000-00000000000a")
    again, new2 = rewards.redeem(v, r, "01900000-0000-7000-8000-00000000000a")  # double tap
    db.session.commit()
    assert new and not new2 and again.id == red.id
    assert ledger.balance(v) == 5 and r.stock == 1 and len(red.pickup_code) == 6
    begin_write()
    with pytest.raises(ledger.InsufficientPoints):
        rewards.redeem(v, r, None)
    db.session.rollback()
    begin_write()
    rewards.cancel("manager:wang", rewards.find_pending(red.pickup_code), "不要了")
    db.session.commit()
    assert ledger.balance(v) == 20 and r.stock == 2
    begin_write()
    red2, _ = rewards.redeem(v, r, None)
    rewards.hand_over("manager:wang", red2)
    with pytest.raises(rewards.NotPending):
        rewards.cancel("manager:wang", red2, "太晚了")
    db.session.commit()


def test_unclaimed_redemptions_expire(app):
    v, e = make_volunteer(), make_event()
    serve(v, e, 120)
    r = make_reward(price=10, stock=1)
    begin_write()
    rewards.redeem(v, r, None)
    db.session.commit()
    begin_write()
    assert rewards.expire_unclaimed(FROZEN + timedelta(days=13)) == 0
    assert rewards.expire_unclaimed(FROZEN + timedelta(days=15)) == 1
    db.session.commit()
    assert ledger.balance(v) == 20 and r.stock == 1


def test_limits_stars_dates_and_reasons():
    v, e = make_volunteer(), make_event()
    serve(v, e, 120)
    monthly = make_reward(price=1, stock=10, monthly_limit=1)
    starry = make_reward(price=1, stock=10, min_stars=1)
    empty = make_reward(price=1, stock=0)
    late = make_reward(price=1, stock=5, available_from=FROZEN.date() + timedelta(days=3))
    begin_write()
    rewards.redeem(v, monthly, None)
    db.session.commit()
    _bal, offers = rewards.offers(v)
    why = {o.reward.id: o.why_not for o in offers}
    assert "次数已经用完" in why[monthly.id]
    assert "1 星" in why[starry.id]
    assert "兑换完了" in why[empty.id]
    assert "现在不能兑换" in why[late.id]
    for r, err in ((monthly, rewards.MonthlyLimit), (starry, rewards.NotEnoughStars), (empty, rewards.OutOfStock)):
        begin_write()
        with pytest.raises(err):
            rewards.redeem(v, r, None)
        db.session.rollback()


def test_restock_and_write_off():
    r = make_reward(stock=3)
    begin_write()
    rewards.restock("manager:wang", r, 5, "新到货")
    with pytest.raises(DomainError):
        rewards.write_off("manager:wang", r, 9, "过期")
    rewards.write_off("manager:wang", r, 2, "包装破损")
    db.session.commit()
    assert r.stock == 6
    assert db.session.scalar(select(func.sum(StockMove.delta)).where(StockMove.reward_id == r.id)) == 6


# --- invariants under random operations -------------------------------------------------------

class LoveBank(RuleBasedStateMachine):
    """Random earns, adjustments, redemptions, cancellations, hand-overs, restocks and
    corrections; after every step the ledger's invariants hold."""

    @initialize()
    def setup(self):
        self.volunteers = [make_volunteer(n) for n in range(1, 4)]
        self.rewards = [make_reward(price=p, stock=s) for p, s in ((5, 2), (12, 1), (30, 3))]
        self.initial_stock = {r.id: r.stock for r in self.rewards}
        self.checkins = []
        self.day = 0

    @rule(who=st.integers(0, 2), minutes=st.integers(0, 240))
    def serve(self, who, minutes):
        self.day += 1
        start = START + timedelta(days=self.day)
        e = make_event(start, start + timedelta(hours=3))
        self.checkins.append(serve(self.volunteers[who], e, minutes))

    @rule(who=st.integers(0, 2), which=st.integers(0, 2), key=st.sampled_from([None, "same"]))
    def redeem(self, who, which, key):
        op = "01900000-0000-7000-8000-0000000000ff" if key else None
        begin_write()
        try:
            rewards.redeem(self.volunteers[who], self.rewards[which], op)
            db.session.commit()
        except DomainError:
            db.session.rollback()

    @rule(pick=st.integers(0, 50), cancel=st.booleans())
    def close_a_redemption(self, pick, cancel):
        pending = rewards.pending()
        if not pending:
            return
        begin_write()
        red = pending[pick % len(pending)]
        if cancel:
            rewards.cancel("m", red, "不要了")
        else:
            rewards.hand_over("m", red)
        db.session.commit()

    @rule(who=st.integers(0, 2), points=st.integers(-50, 50).filter(bool))
    def adjust(self, who, points):
        begin_write()
        try:
            ledger.adjust("m", self.volunteers[who], points, "调整")
            db.session.commit()
        except DomainError:
            db.session.rollback()

    @rule(pick=st.integers(0, 50), minutes=st.integers(0, 180), no_show=st.booleans())
    def correct(self, pick, minutes, no_show):
        if not self.checkins:
            return
        c = self.checkins[pick % len(self.checkins)]
        begin_write()
        c = db.session.get(CheckIn, c.id)
        if no_show:
            checkins.mark_no_show("m", c, "没来")
        else:
            checkins.correct("m", c, c.event.starts_at, c.event.starts_at + timedelta(minutes=minutes), "更正")
        db.session.commit()

    @rule(which=st.integers(0, 2), qty=st.integers(1, 3))
    def restock(self, which, qty):
        begin_write()
        rewards.restock("m", self.rewards[which], qty, "补货")
        db.session.commit()
        self.initial_stock[self.rewards[which].id] += qty

    @invariant()
    def postings_of_each_transaction_sum_to_zero(self):
        bad = db.session.execute(select(Posting.txn_id).group_by(Posting.txn_id)
                                 .having(func.sum(Posting.amount) != 0)).all()
        assert bad == []

    @invariant()
    def balances_are_sums_and_never_negative(self):
        for v in getattr(self, "volunteers", []):
            txn_total = db.session.scalar(select(func.coalesce(func.sum(LedgerTxn.points), 0))
                                          .where(LedgerTxn.volunteer_id == v.id))
            assert ledger.balance(v) == txn_total >= 0

    @invariant()
    def stock_is_initial_minus_redeemed_plus_returned(self):
        for r in getattr(self, "rewards", []):
            db.session.refresh(r)
            moves = db.session.scalar(select(func.coalesce(func.sum(StockMove.delta), 0))
                                      .where(StockMove.reward_id == r.id))
            redeemed = db.session.scalar(select(func.count()).select_from(rewards.Redemption).where(
                rewards.Redemption.reward_id == r.id, rewards.Redemption.status.in_(("pending", "handed_over"))))
            assert r.stock == moves == self.initial_stock[r.id] - redeemed >= 0

    @invariant()
    def at_most_one_live_earn_per_checkin(self):
        reversed_ids = select(LedgerTxn.reverses_id).where(LedgerTxn.reverses_id.is_not(None))
        rows = db.session.execute(select(LedgerTxn.checkin_id, func.count()).where(
            LedgerTxn.kind == "earn", LedgerTxn.id.not_in(reversed_ids)).group_by(LedgerTxn.checkin_id)
            .having(func.count() > 1)).all()
        assert rows == []

    @invariant()
    def at_most_one_open_checkin_per_volunteer(self):
        rows = db.session.execute(select(CheckIn.volunteer_id).where(CheckIn.status == "open")
                                  .group_by(CheckIn.volunteer_id).having(func.count() > 1)).all()
        assert rows == []


def test_love_bank_invariants(app, tmp_path, migrated_db):
    import shutil

    def fresh():
        db.session.remove()
        db.engine.dispose()
        shutil.copy(migrated_db, tmp_path / "kiosk.sqlite3")
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"kiosk.sqlite3{suffix}").unlink(missing_ok=True)
        return LoveBank()

    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(fresh, settings=settings(max_examples=25, stateful_step_count=20, deadline=None,
                                                       suppress_health_check=list(HealthCheck)))


def test_reward_stock_never_negative_in_the_database():
    r = make_reward(stock=0)
    begin_write()
    with pytest.raises(Exception, match="CHECK"):
        db.session.execute(text("UPDATE reward SET stock = -1 WHERE id = :id"), {"id": r.id})
    db.session.rollback()
    assert db.session.get(Reward, r.id).stock == 0


def test_spent_points_are_not_clawed_back_below_zero():
    v, e = make_volunteer(), make_event()
    c = serve(v, e, 120)  # 20 points
    r = make_reward(price=15, stock=1)
    begin_write()
    rewards.redeem(v, r, None)
    db.session.commit()
    begin_write()
    checkins.mark_no_show("manager:wang", c, "其实没来")
    db.session.commit()
    assert c.credited_minutes == 0  # the hours are corrected in full
    assert ledger.balance(v) == 0   # the points only as far as the balance goes
