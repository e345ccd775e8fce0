"""The event rules as plain functions, without HTTP."""

import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from kiosk import events
from kiosk.db import begin_write, db
from kiosk.errors import InvalidInput, StaleEdit
from kiosk.models import AuditLog, Event
from tests.conftest import FROZEN

pytestmark = pytest.mark.usefixtures("ctx")


def data(**kw):
    base = dict(title="义诊", starts_at=FROZEN.replace(hour=9), ends_at=FROZEN.replace(hour=11))
    base.update(kw)
    return events.EventData(**base)


def audit_rows(entity_id):
    return list(db.session.scalars(select(AuditLog).where(AuditLog.entity_id == entity_id).order_by(AuditLog.at)))


def test_create_event_writes_an_audit_row(app, make_category):
    cat = make_category("健康")
    begin_write()
    ev = events.create_event("manager:wang", data(category_id=cat.id, place="卫生服务站", capacity=20))
    db.session.commit()
    assert ev.version == 1 and ev.category.name == "健康"
    [row] = audit_rows(ev.id)
    assert (row.actor, row.action, row.entity) == ("manager:wang", "create", "event")


@pytest.mark.parametrize("change, field", [
    (dict(title=""), "title"),
    (dict(title="   "), "title"),
    (dict(title="长" * 10_000), "title"),
    (dict(title="bad\x00title"), "title"),
    (dict(title="evil\u202etxt.exe"), "title"),
    (dict(place="x\x1b[31m"), "place"),
    (dict(starts_at=datetime(1900, 1, 1, 9), ends_at=datetime(1900, 1, 1, 10)), "starts_at"),
    (dict(ends_at=FROZEN.replace(hour=8)), "ends_at"),
    (dict(ends_at=FROZEN.replace(hour=9)), "ends_at"),
    (dict(ends_at=FROZEN + timedelta(days=9)), "ends_at"),
    (dict(capacity=0), "capacity"),
    (dict(capacity=-5), "capacity"),
    (dict(category_id="no-such-category"), "category_id"),
])
def test_bad_event_data_is_refused_naming_the_field(app, change, field):
    begin_write()
    with pytest.raises(InvalidInput) as exc:
        events.create_event("test", data(**change))
    db.session.rollback()
    assert exc.value.field == field
    assert str(exc.value.message)  # a sentence to show next to the field
    assert db.session.scalar(select(Event.id)) is None


def test_text_is_trimmed_and_description_keeps_lines(app):
    begin_write()
    ev = events.create_event("test", data(title="  拗九节送粥  ", description="第一行\n第二行"))
    db.session.commit()
    assert ev.title == "拗九节送粥"
    assert ev.description == "第一行\n第二行"


def test_weekly_series_every_tuesday_until_a_date(app):
    first = datetime(2026, 12, 1, 9, 0)  # a Tuesday
    begin_write()
    made = events.create_weekly_series("test", data(title="太极拳", starts_at=first, ends_at=first.replace(hour=11)),
                                       {2}, date(2027, 1, 31))
    db.session.commit()
    assert [e.starts_at.date() for e in made][:2] == [date(2026, 12, 1), date(2026, 12, 8)]
    assert made[-1].starts_at.date() == date(2027, 1, 26)
    assert len(made) == 9
    assert all(e.starts_at.isoweekday() == 2 and e.ends_at - e.starts_at == timedelta(hours=2) for e in made)
    assert len({e.series_id for e in made}) == 1


def test_series_on_two_weekdays_starts_on_the_first_matching_day(app):
    first = datetime(2026, 11, 30, 7, 30)  # Monday; Tuesdays and Thursdays chosen
    begin_write()
    made = events.create_weekly_series("test", data(starts_at=first, ends_at=first.replace(hour=8, minute=30)),
                                       {2, 4}, date(2026, 12, 10))
    db.session.commit()
    assert [e.starts_at.day for e in made] == [1, 3, 8, 10]


@pytest.mark.parametrize("weekdays, until", [
    (set(), date(2027, 1, 1)),
    ({8}, date(2027, 1, 1)),
    ({2}, date(2026, 11, 1)),
    ({2}, date(2030, 1, 1)),
])
def test_bad_series_is_refused(app, weekdays, until):
    begin_write()
    with pytest.raises(InvalidInput):
        events.create_weekly_series("test", data(), weekdays, until)
    db.session.rollback()


def test_update_audits_only_what_changed_and_bumps_version(app, make_event):
    ev = make_event(title="旧名字")
    begin_write()
    events.update_event("manager:wang", ev, data(title="新名字", starts_at=ev.starts_at, ends_at=ev.ends_at),
                        expected_version=1)
    db.session.commit()
    assert ev.version == 2
    row = audit_rows(ev.id)[-1]
    assert row.action == "update"
    assert json.loads(row.detail)["title"] == ["旧名字", "新名字"]


def test_stale_edit_is_refused(app, make_event):
    ev = make_event()
    begin_write()
    events.update_event("a", ev, data(title="一"), expected_version=1)
    db.session.commit()
    begin_write()
    with pytest.raises(StaleEdit):
        events.update_event("b", ev, data(title="二"), expected_version=1)
    db.session.rollback()


def test_cancelled_event_stays_on_the_board_marked(app, make_event):
    ev = make_event(title="露天电影", start=FROZEN.replace(hour=19))
    begin_write()
    events.cancel_event("manager:wang", ev, "下雨")
    events.cancel_event("manager:wang", ev, "again")  # twice is harmless
    db.session.commit()
    board = events.board(FROZEN)
    assert [e.title for e in board.today] == ["露天电影"]
    assert board.today[0].cancelled and board.today[0].cancel_reason == "下雨"
    assert [r.action for r in audit_rows(ev.id)] == ["create", "cancel"]
    begin_write()
    events.restore_event("manager:wang", ev)
    db.session.commit()
    assert not ev.cancelled


def test_unpublished_events_are_not_on_the_board(app, make_event):
    ev = make_event(title="草稿")
    begin_write()
    events.set_published("m", ev, False)
    db.session.commit()
    assert events.board(FROZEN).today == []
    begin_write()
    events.set_published("m", ev, True)
    db.session.commit()
    assert [e.title for e in events.board(FROZEN).today] == ["草稿"]


def test_board_splits_today_and_the_coming_week(app, make_event, make_category):
    health = make_category("健康")
    make_event(title="昨天", start=FROZEN - timedelta(days=1))
    make_event(title="今天早上已结束", start=FROZEN.replace(hour=7), hours=1)
    make_event(title="今天下午", start=FROZEN.replace(hour=15), category_id=health.id)
    make_event(title="明天", start=FROZEN + timedelta(days=1))
    make_event(title="第七天", start=FROZEN + timedelta(days=7))
    make_event(title="第八天", start=FROZEN + timedelta(days=8))
    board = events.board(FROZEN)
    assert [e.title for e in board.today] == ["今天下午", "今天早上已结束"]  # what is over goes last
    assert [e.title for e in board.week] == ["明天", "第七天"]
    assert [d for d, _, _more in board.week_by_day] == [(FROZEN + timedelta(days=n)).date() for n in (1, 7)]
    only = events.board(FROZEN, health.id)
    assert [e.title for e in only.today] == ["今天下午"] and only.week == []


def test_categories_unique_and_checked(app, make_category):
    make_category("助老")
    begin_write()
    with pytest.raises(InvalidInput):
        events.add_category("t", " 助老 ")
    with pytest.raises(InvalidInput):
        events.add_category("t", "")
    with pytest.raises(InvalidInput):
        events.add_category("t", "x" * 31)
    db.session.rollback()


def test_station_settings_are_checked_and_audited(app):
    begin_write()
    events.ensure_station()
    events.update_station("m", "中山社区新时代文明实践站", "gl-zs", 120)
    db.session.commit()
    st = events.get_station()
    assert (st.code, st.idle_timeout_s, st.version) == ("GL-ZS", 120, 2)
    for name, code, idle in [("", "A", 60), ("站", "含 空格", 60), ("站", "A", 5), ("站", "A", 99999)]:
        begin_write()
        with pytest.raises(InvalidInput):
            events.update_station("m", name, code, idle)
        db.session.rollback()


def test_week_column_shows_five_a_day_and_the_day_in_full(app, make_event):
    tomorrow = FROZEN + timedelta(days=1)
    for i in range(8):
        make_event(title=f"活动{i}", start=tomorrow.replace(hour=8 + i))
    [(day, shown, more)] = events.board(FROZEN).week_by_day
    assert day == tomorrow.date() and len(shown) == 5 and more == 3
    full = events.board(FROZEN, day=tomorrow.date())
    assert len(full.week) == 8 and full.day == tomorrow.date()
