"""Signing in and out, credited hours and stars, as plain functions."""

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from kiosk import checkins, events, volunteers
from kiosk.db import begin_write, db
from kiosk.errors import InvalidInput
from kiosk.models import AuditLog, CheckIn
from tests.conftest import FROZEN

pytestmark = pytest.mark.usefixtures("ctx")

START = FROZEN.replace(hour=9)  # events here run 9:00-11:00 unless said otherwise
END = FROZEN.replace(hour=11)


# --- the credited-hours rule ------------------------------------------------------------------

times = st.datetimes(min_value=datetime(2026, 11, 30, 0, 0), max_value=datetime(2026, 12, 2, 0, 0))


@given(start=times, length=st.integers(1, 7 * 24 * 60), cin=times, stay=st.integers(0, 3 * 24 * 60),
       later=st.integers(0, 600), cap=st.integers(1, 24 * 60))
def test_credit_rule_invariants(start, length, cin, stay, later, cap):
    end = start + timedelta(minutes=length)
    cout = cin + timedelta(minutes=stay)
    m = checkins.credited_minutes(start, end, cin, cout, cap)
    assert 0 <= m <= cap
    assert m <= length  # never beyond the scheduled window
    assert m <= max(0, (cout - cin).total_seconds() // 60)  # never more than was spent there
    assert isinstance(m, int)
    # monotone in the check-out time
    assert checkins.credited_minutes(start, end, cin, cout + timedelta(minutes=later), cap) >= m


@pytest.mark.parametrize("cin, cout, expected", [
    ("08:30", "11:00", 120),   # early: counts from the start
    ("09:20", "11:00", 100),   # late: counts from arrival
    ("09:00", "12:30", 120),   # stays late: counts to the end
    ("09:00", "10:00", 60),
    ("09:00", "09:00", 0),
    ("11:30", "12:00", 0),     # after the end
    ("09:00", "09:00:59", 0),  # seconds are dropped
])
def test_credit_rule_examples(cin, cout, expected):
    def t(s):
        return datetime.combine(START.date(), datetime.strptime(s, "%H:%M:%S" if s.count(":") == 2 else "%H:%M").time())
    assert checkins.credited_minutes(START, END, t(cin), t(cout), 720) == expected


def test_cap_per_checkin():
    assert checkins.credited_minutes(START, START + timedelta(hours=20), START, START + timedelta(hours=20), 720) == 720


@pytest.mark.parametrize("hours, level", [(0, 0), (99.9, 0), (100, 1), (299, 1), (300, 2), (1500, 5), (9999, 5)])
def test_stars(hours, level):
    assert checkins.stars(int(hours * 60), [100, 300, 600, 1000, 1500]) == level


# --- signing in and out -----------------------------------------------------------------------

def volunteer(name="张三", mobile="13800000001", status=None):
    begin_write()
    v = volunteers.register("test", name, mobile, "258369", via="manager", status=status)
    db.session.commit()
    return v


def event(start=START, end=END, **kw):
    begin_write()
    e = events.create_event("test", events.EventData(title="防疫志愿服务", starts_at=start, ends_at=end, **kw))
    db.session.commit()
    return e


def test_sign_in_then_out_credits_minutes():
    v, e = volunteer(), event()
    begin_write()
    c, new = checkins.check_in(v, e, "phone", at=START - timedelta(minutes=10))
    db.session.commit()
    assert new and c.status == "open"
    begin_write()
    c, changed = checkins.check_out(v, e, "phone", at=END - timedelta(minutes=5))
    db.session.commit()
    assert changed and c.status == "confirmed" and c.credited_minutes == 115
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.entity_id == c.id)).all()
    assert actions == ["check_in", "check_out"]


def test_double_tap_and_same_id_make_one_checkin():
    v, e = volunteer(), event()
    op = "01900000-0000-7000-8000-000000000001"
    for _ in range(3):
        begin_write()
        checkins.check_in(v, e, "kiosk", checkin_id=op, at=START)
        db.session.commit()
    begin_write()
    again, new = checkins.check_in(v, e, "phone", at=START)  # another device, another id
    db.session.commit()
    assert not new and again.id == op
    assert db.session.scalar(select(func.count()).select_from(CheckIn)) == 1


def test_same_id_for_other_content_is_a_conflict():
    v, e = volunteer(), event()
    w = volunteer("李四", "13800000002")
    op = "01900000-0000-7000-8000-000000000002"
    begin_write()
    checkins.check_in(v, e, "kiosk", checkin_id=op, at=START)
    db.session.commit()
    begin_write()
    with pytest.raises(checkins.IdConflict):
        checkins.check_in(w, e, "kiosk", checkin_id=op, at=START)
    db.session.rollback()


def test_sign_out_twice_answers_with_the_first():
    v, e = volunteer(), event()
    begin_write()
    checkins.check_in(v, e, "kiosk", at=START)
    checkins.check_out(v, e, "kiosk", at=START + timedelta(minutes=30))
    c, changed = checkins.check_out(v, e, "kiosk", at=START + timedelta(minutes=90))
    db.session.commit()
    assert not changed and c.credited_minutes == 30
    begin_write()
    with pytest.raises(checkins.AlreadyCheckedOut):
        checkins.check_in(v, e, "kiosk", at=START + timedelta(minutes=95))
    db.session.rollback()


@pytest.mark.parametrize("at", [START - timedelta(minutes=61), END, END + timedelta(hours=1)])
def test_sign_in_only_from_an_hour_before_to_the_end(at):
    v, e = volunteer(), event()
    begin_write()
    with pytest.raises(checkins.NotOpenForSignIn):
        checkins.check_in(v, e, "kiosk", at=at)
    db.session.rollback()


def test_cancelled_and_unpublished_events_refuse():
    v = volunteer()
    e = event()
    begin_write()
    events.cancel_event("m", e, "下雨")
    db.session.commit()
    begin_write()
    with pytest.raises(checkins.NotOpenForSignIn):
        checkins.check_in(v, e, "kiosk", at=START)
    db.session.rollback()


@pytest.mark.parametrize("status, error", [("pending", volunteers.NotActive), ("suspended", volunteers.Suspended)])
def test_only_active_volunteers_sign_in(status, error):
    v, e = volunteer(status=status), event()
    begin_write()
    with pytest.raises(error):
        checkins.check_in(v, e, "kiosk", at=START)
    db.session.rollback()


def test_one_open_checkin_per_volunteer():
    v = volunteer()
    a = event()
    b = event(start=START + timedelta(minutes=30), end=END + timedelta(hours=1))
    begin_write()
    checkins.check_in(v, a, "kiosk", at=START)
    with pytest.raises(checkins.BusyElsewhere):
        checkins.check_in(v, b, "kiosk", at=START + timedelta(minutes=40))
    db.session.rollback()


def test_the_database_refuses_a_second_open_checkin_too():
    v, a = volunteer(), event()
    b = event(start=START, end=END)
    begin_write()
    db.session.add(CheckIn(event_id=a.id, volunteer_id=v.id, checked_in_at=START, source_in="kiosk"))
    db.session.add(CheckIn(event_id=b.id, volunteer_id=v.id, checked_in_at=START, source_in="kiosk"))
    with pytest.raises(Exception, match="UNIQUE"):
        db.session.flush()
    db.session.rollback()


def test_capacity():
    e = event(capacity=1)
    v, w = volunteer(), volunteer("李四", "13800000002")
    begin_write()
    checkins.check_in(v, e, "kiosk", at=START)
    with pytest.raises(checkins.EventFull):
        checkins.check_in(w, e, "kiosk", at=START)
    db.session.rollback()


def test_missing_checkout_is_closed_unconfirmed_at_the_end():
    v, e = volunteer(), event()
    begin_write()
    checkins.check_in(v, e, "kiosk", at=START + timedelta(minutes=15))
    db.session.commit()
    begin_write()
    assert checkins.close_overdue(END - timedelta(minutes=1)) == 0
    assert checkins.close_overdue(END + timedelta(hours=3)) == 1
    db.session.commit()
    c = db.session.scalar(select(CheckIn))
    assert (c.status, c.checked_out_at, c.credited_minutes, c.source_out) == ("unconfirmed", END, 105, "auto")
    assert checkins.hours(v, END).total_minutes == 0  # not counted until confirmed
    begin_write()
    assert checkins.confirm("manager:wang", [c]) == 1
    db.session.commit()
    assert checkins.hours(v, END).total_minutes == 105


def test_signing_in_elsewhere_closes_a_forgotten_checkin_first():
    v = volunteer()
    a = event()
    b = event(start=END + timedelta(hours=1), end=END + timedelta(hours=3))
    begin_write()
    checkins.check_in(v, a, "kiosk", at=START)
    c, new = checkins.check_in(v, b, "kiosk", at=END + timedelta(hours=1))
    db.session.commit()
    assert new
    statuses = sorted(db.session.scalars(select(CheckIn.status)).all())
    assert statuses == ["open", "unconfirmed"]


def test_manager_corrections_are_audited():
    v, e = volunteer(), event()
    begin_write()
    c, _ = checkins.check_in(v, e, "kiosk", at=START)
    checkins.check_out(v, e, "kiosk", at=START + timedelta(minutes=20))
    db.session.commit()
    begin_write()
    with pytest.raises(InvalidInput):
        checkins.correct("manager:wang", c, START, END, "")
    db.session.rollback()
    begin_write()
    checkins.correct("manager:wang", c, START, END, "扫码失败，按纸质签到表更正")
    db.session.commit()
    assert c.credited_minutes == 120
    row = db.session.scalars(select(AuditLog).where(AuditLog.action == "correct")).one()
    assert row.actor == "manager:wang" and "纸质" in row.reason
    begin_write()
    checkins.mark_no_show("manager:wang", c, "实际没来")
    db.session.commit()
    assert c.credited_minutes == 0 and c.status == "no_show"


def test_paper_sheet_entry():
    v, e = volunteer(), event()
    begin_write()
    c = checkins.add_from_paper("manager:wang", v, e, START, END, "纸质签到表")
    db.session.commit()
    assert c.status == "confirmed" and c.credited_minutes == 120 and c.source_in == "manager"
    begin_write()
    with pytest.raises(InvalidInput):
        checkins.add_from_paper("manager:wang", v, e, START, END, "again")
    with pytest.raises(InvalidInput):
        checkins.add_from_paper("manager:wang", volunteer("李四", "13800000002"), e, END, START, "倒了")
    db.session.rollback()


def test_hours_and_stars_for_the_volunteer():
    begin_write()
    events.get_station().star_thresholds = "1,2,3,4,5"
    db.session.commit()
    v = volunteer()
    for day in range(3):
        e = event(start=START - timedelta(days=day), end=END - timedelta(days=day))
        begin_write()
        checkins.check_in(v, e, "kiosk", at=e.starts_at, )
        checkins.check_out(v, e, "kiosk", at=e.ends_at)
        db.session.commit()
    h = checkins.hours(v, END)
    assert h.total_minutes == 360 and h.year_minutes == 360 and h.stars == 5 and h.next_threshold_hours is None
    assert len(h.records) == 3


def test_code_used_once_per_volunteer_and_step():
    v, e = volunteer(), event()
    begin_write()
    checkins.use_code(v, e, 100)
    with pytest.raises(checkins.CodeUsed):
        checkins.use_code(v, e, 100)
    checkins.use_code(v, e, 101)
    db.session.rollback()
