"""The manager's attendance list per event through HTTP: list, correct, no-show, paper, confirm."""

import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kiosk import checkins, volunteers
from kiosk.db import begin_write, db
from kiosk.models import AuditLog, CheckIn
from tests.conftest import FROZEN

HX = {"HX-Request": "true"}
START = FROZEN.replace(hour=9)  # the event here runs 9:00-11:00; "now" is 10:00


@pytest.fixture
def make_volunteer(app):
    def make(name="张三", mobile="13800000001"):
        with app.app_context():
            begin_write()
            v = volunteers.register("test", name, mobile, "258369", via="manager")
            db.session.commit()
            return v.id, v.number

    return make


@pytest.fixture
def sign(app):
    """Check a volunteer in (and out) through the domain; returns the check-in's id."""
    def sign(volunteer_id, event, at=START, out=None, source="kiosk", out_source="phone"):
        with app.app_context():
            begin_write()
            v = volunteers.get(volunteer_id)
            ev = db.session.get(type(event), event.id)
            c, _new = checkins.check_in(v, ev, source, at=at)
            if out is not None:
                checkins.check_out(v, ev, out_source, at=out)
            db.session.commit()
            return c.id

    return sign


@pytest.fixture
def event(make_event):
    return make_event(title="社区环境大扫除", start=START, hours=2)


def get_checkin(app, checkin_id):
    with app.app_context():
        c = db.session.get(CheckIn, checkin_id)
        return {k: getattr(c, k) for k in ("status", "credited_minutes", "checked_in_at", "checked_out_at",
                                            "source_in", "source_out", "note", "version")}


def audit_rows(app, checkin_id, action):
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.entity_id == checkin_id, AuditLog.action == action))
        return [(r.actor, r.reason, r.detail) for r in rows]


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def url(event, checkin_id=None, action=""):
    base = f"/manage/events/{event.id}/attendance"
    return f"{base}/{checkin_id}/{action}" if checkin_id else base + (f"/{action}" if action else "")


def times(client, **kw):
    form = {"csrf_token": client.csrf, "in_day": "2026-11-30", "in_time": "09:00",
            "out_day": "2026-11-30", "out_time": "10:30", "reason": "志愿者忘了签退，按纸质签到表更正"}
    form.update(kw)
    return form


# --- the list ---------------------------------------------------------------------------------

def test_attendance_needs_login(client, event):
    resp = client.get(url(event))
    assert resp.status_code == 302 and "/manage/login" in resp.headers["Location"]


def test_events_list_links_to_the_attendance(manager_client, event):
    assert url(event) in manager_client.get("/manage/").get_data(as_text=True)


def test_list_full_and_partial(app, manager_client, event, make_volunteer, sign):
    zhang, zhang_no = make_volunteer()
    li, li_no = make_volunteer("李四", "13800000002")
    sign(zhang, event, at=START - timedelta(minutes=10), out=START + timedelta(minutes=90))
    sign(li, event, at=START + timedelta(minutes=30), source="phone")
    page = manager_client.get(url(event))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html
    assert "社区环境大扫除" in html and "09:00–11:00" in html
    assert zhang_no in html and "张三" in html and li_no in html and "李四" in html
    assert "08:50" in html and "10:30" in html and "09:30" in html
    assert "已确认" in html and "签到中" in html
    assert "触摸屏" in html and "手机" in html
    assert "1 小时 30 分" in html  # credited: from the start 9:00 to 10:30
    assert 'name="checkin"' not in html  # nothing to confirm yet
    partial = manager_client.get(url(event), headers=HX)
    assert partial.status_code == 200
    assert "<html" not in partial.get_data(as_text=True) and "张三" in partial.get_data(as_text=True)
    assert "HX-Request" in partial.headers.get("Vary", "")


def test_empty_list_says_so(manager_client, event):
    assert "还没有人签到" in manager_client.get(url(event)).get_data(as_text=True)


def test_get_writes_nothing_when_nothing_is_overdue(app, manager_client, event, make_volunteer, sign):
    sign(make_volunteer()[0], event)
    before = count(app, AuditLog)
    assert manager_client.get(url(event)).status_code == 200
    assert count(app, AuditLog) == before


def test_missing_event_or_checkin_is_404(app, manager_client, event, make_event, make_volunteer, sign):
    other = make_event(title="别的活动", start=START, hours=3)
    cid = sign(make_volunteer()[0], other)
    c = manager_client
    assert c.get("/manage/events/missing/attendance").status_code == 404
    assert c.get(url(event, "missing", "correct")).status_code == 404
    assert c.get(url(event, cid, "correct")).status_code == 404  # a check-in of another event
    assert c.post(url(event, "missing", "correct"), data=times(c)).status_code == 404
    assert c.post(url(event, cid, "no-show"), data={"csrf_token": c.csrf, "reason": "没来"}).status_code == 404
    assert c.post("/manage/events/missing/attendance/paper", data=times(c, volunteer="x")).status_code == 404
    resp = c.post(url(event, action="confirm"), data={"csrf_token": c.csrf, "checkin": cid})
    assert resp.status_code == 404
    assert get_checkin(app, cid)["status"] == "open"


def test_posts_need_the_csrf_token(manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event)
    for path in (url(event, action="paper"), url(event, action="confirm"),
                 url(event, cid, "correct"), url(event, cid, "no-show")):
        resp = manager_client.post(path, data={"reason": "x", "all": "1"})
        assert resp.status_code == 400, path


# --- correcting times -------------------------------------------------------------------------

def test_correct_page_full_and_partial(manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event, at=START + timedelta(minutes=5))
    html = manager_client.get(url(event, cid, "correct")).get_data(as_text=True)
    assert "<html" in html and "更正时间" in html
    assert 'value="09:05"' in html and 'value="10:00"' in html  # still open: out defaults to now
    assert "<html" not in manager_client.get(url(event, cid, "correct"), headers=HX).get_data(as_text=True)


def test_correct_with_a_reason(app, manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event, at=START + timedelta(minutes=20), out=START + timedelta(minutes=50))
    assert get_checkin(app, cid)["credited_minutes"] == 30
    resp = manager_client.post(url(event, cid, "correct"), data=times(manager_client, version="2"))
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith(url(event) + f"#c-{cid}")
    c = get_checkin(app, cid)
    assert c["credited_minutes"] == 90 and c["status"] == "confirmed"
    assert c["checked_in_at"] == START and c["checked_out_at"] == START + timedelta(minutes=90)
    assert c["note"] == "志愿者忘了签退，按纸质签到表更正"
    [(who, reason, detail)] = audit_rows(app, cid, "correct")
    assert who == "manager:wang" and reason == "志愿者忘了签退，按纸质签到表更正"
    assert '"credited_minutes": [30, 90]' in detail
    page = manager_client.get(url(event)).get_data(as_text=True)
    assert "已更正" in page and "1 小时 30 分" in page
    history = manager_client.get(url(event, cid, "correct")).get_data(as_text=True)
    assert "站长 wang" in history and "时长 30 分 → 1 小时 30 分" in history


def test_correct_an_open_checkin_signs_it_out(app, manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event)
    resp = manager_client.post(url(event, cid, "correct"), data=times(manager_client, out_time="11:00", version="1"))
    assert resp.status_code == 303
    c = get_checkin(app, cid)
    assert c["status"] == "confirmed" and c["source_out"] == "manager" and c["credited_minutes"] == 120


def test_unchanged_times_keep_their_seconds(app, manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event, at=START.replace(second=40), out=START.replace(minute=30, second=10))
    before = get_checkin(app, cid)
    resp = manager_client.post(url(event, cid, "correct"), data=times(
        manager_client, out_time="09:30", reason="核对无误", version=str(before["version"])))
    assert resp.status_code == 303
    after = get_checkin(app, cid)
    assert after["checked_in_at"] == before["checked_in_at"] and after["checked_out_at"] == before["checked_out_at"]
    assert after["credited_minutes"] == before["credited_minutes"] == 29


def test_correct_after_someone_else_changed_it_is_409(app, manager_client, event, make_volunteer, sign):
    vid = make_volunteer()[0]
    cid = sign(vid, event)
    page = manager_client.get(url(event, cid, "correct")).get_data(as_text=True)
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    with app.app_context():  # meanwhile the volunteer signs out at the kiosk
        begin_write()
        checkins.check_out(volunteers.get(vid), db.session.get(CheckIn, cid).event, "kiosk",
                           at=START + timedelta(minutes=45))
        db.session.commit()
    resp = manager_client.post(url(event, cid, "correct"), data=times(manager_client, version=version))
    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "刚刚有了变化" in html and 'value="09:45"' in html and "志愿者忘了签退" in html
    assert get_checkin(app, cid)["credited_minutes"] == 45
    assert audit_rows(app, cid, "correct") == []


BAD_TIMES = [
    (dict(out_time="08:00"), "签退时间不能早于签到时间"),
    (dict(out_day="2026-11-29"), "签退时间不能早于签到时间"),
    (dict(reason=""), "请写一下原因"),
    (dict(reason="   "), "请写一下原因"),
    (dict(reason="理" * 300), "原因最多 200 个字"),
    (dict(reason="铃\x07声"), "特殊字符"),
    (dict(reason="abc\u202etxt.exe"), "特殊字符"),
    (dict(reason="a\x00b"), "特殊字符"),
    (dict(in_time="25:99"), "时间格式不对"),
    (dict(out_time="下午三点"), "时间格式不对"),
    (dict(in_time=""), "请选择签到时间"),
    (dict(in_day="2026-02-30"), "日期格式不对"),
    (dict(in_day="1900-01-01", out_day="1900-01-01"), "2000 年到 2099 年"),
    (dict(in_day="2026-12-07", out_day="2026-12-07"), "时间要在活动前后一天之内"),
    (dict(in_day="2026-11-23"), "时间要在活动前后一天之内"),
]


@pytest.mark.parametrize("change, message", BAD_TIMES)
def test_bad_correction_is_422_next_to_the_field(app, manager_client, event, make_volunteer, sign, change, message):
    cid = sign(make_volunteer()[0], event, out=START + timedelta(minutes=30))
    before = get_checkin(app, cid)
    resp = manager_client.post(url(event, cid, "correct"), data=times(manager_client, version="2", **change))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'class="error"' in html and message in html and "Traceback" not in html
    assert get_checkin(app, cid) == before
    assert audit_rows(app, cid, "correct") == []


# --- no-show ----------------------------------------------------------------------------------

def test_mark_no_show(app, manager_client, event, make_volunteer, sign):
    cid = sign(make_volunteer()[0], event, out=START + timedelta(minutes=60))
    assert "标记未到" in manager_client.get(url(event, cid, "no-show")).get_data(as_text=True)
    resp = manager_client.post(url(event, cid, "no-show"),
                               data={"csrf_token": manager_client.csrf, "reason": "代签，本人未到", "version": "2"})
    assert resp.status_code == 303
    c = get_checkin(app, cid)
    assert c["status"] == "no_show" and c["credited_minutes"] == 0
    [(who, reason, _detail)] = audit_rows(app, cid, "no_show")
    assert who == "manager:wang" and reason == "代签，本人未到"
    page = manager_client.get(url(event)).get_data(as_text=True)
    assert "未到" in page and url(event, cid, "no-show") not in page
    # again: nothing changes, nothing more in the audit trail
    resp = manager_client.post(url(event, cid, "no-show"),
                               data={"csrf_token": manager_client.csrf, "reason": "再点一次", "version": "3"})
    assert resp.status_code == 303 and len(audit_rows(app, cid, "no_show")) == 1


@pytest.mark.parametrize("reason, message", [
    ("", "请写一下原因"), ("x" * 300, "原因最多 200 个字"), ("\x1b[31m", "特殊字符"),
])
def test_bad_no_show_reason_is_422(app, manager_client, event, make_volunteer, sign, reason, message):
    cid = sign(make_volunteer()[0], event)
    resp = manager_client.post(url(event, cid, "no-show"),
                               data={"csrf_token": manager_client.csrf, "reason": reason, "version": "1"})
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    assert get_checkin(app, cid)["status"] == "open"


# --- from a paper sheet -----------------------------------------------------------------------

def test_add_from_paper_by_number_and_by_mobile(app, manager_client, event, make_volunteer):
    zhang, zhang_no = make_volunteer()
    make_volunteer("李四", "13800000002")
    resp = manager_client.post(url(event, action="paper"), data=times(
        manager_client, volunteer=zhang_no.lower(), reason="纸质签到表第 3 行"))
    assert resp.status_code == 303
    resp = manager_client.post(url(event, action="paper"), data=times(
        manager_client, volunteer=" 138-0000-0002 ", in_time="09:30", out_time="11:30", reason="纸质签到表第 4 行"))
    assert resp.status_code == 303
    with app.app_context():
        rows = checkins.attendance(db.session.get(type(event), event.id))
        assert [(c.volunteer.name, c.credited_minutes, c.status, c.source_in) for c in rows] == [
            ("张三", 90, "confirmed", "manager"), ("李四", 90, "confirmed", "manager")]
        [who] = db.session.scalars(select(AuditLog.actor).where(AuditLog.action == "add_paper",
                                                                AuditLog.entity_id == rows[0].id))
        assert who == "manager:wang"
    page = manager_client.get(url(event)).get_data(as_text=True)
    assert "已补录" in page and "站长补录" in page and "3 小时" in page


def test_paper_for_an_unknown_volunteer_is_422(app, manager_client, event):
    resp = manager_client.post(url(event, action="paper"), data=times(manager_client, volunteer="13900000009"))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert re.search(r'id="volunteer-err">没有找到这位志愿者', html)
    assert "<details class=\"att-paper\" id=\"paper\" open" in html
    assert count(app, CheckIn) == 0


def test_paper_twice_is_422(app, manager_client, event, make_volunteer, sign):
    vid, number = make_volunteer()
    sign(vid, event)
    resp = manager_client.post(url(event, action="paper"), data=times(manager_client, volunteer=number))
    assert resp.status_code == 422 and "已经有这个活动的签到记录" in resp.get_data(as_text=True)
    assert count(app, CheckIn) == 1


@pytest.mark.parametrize("change, message", BAD_TIMES + [
    (dict(volunteer=""), "请填写志愿者编号或手机号"),
    (dict(volunteer="9" * 400), "最多 40 个字符"),
    (dict(volunteer="'; DROP TABLE checkin; --"), "没有找到这位志愿者"),
])
def test_bad_paper_input_is_422(app, manager_client, event, make_volunteer, change, message):
    number = make_volunteer()[1]
    resp = manager_client.post(url(event, action="paper"), data=times(manager_client, **{"volunteer": number, **change}))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'class="error"' in html and message in html and "Traceback" not in html
    assert count(app, CheckIn) == 0


def test_stored_reasons_render_inert(manager_client, event, make_volunteer):
    number = make_volunteer()[1]
    resp = manager_client.post(url(event, action="paper"), data=times(
        manager_client, volunteer=number, reason="<script>alert(1)</script>"))
    assert resp.status_code == 303
    html = manager_client.get(url(event)).get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


NASTY = st.one_of(st.text(max_size=300), st.sampled_from([
    "", " ", "\x00", "\u202e", "<b>x</b>", "' OR 1=1 --", "9" * 400, "24:61", "０９:００", "２０２６-１１-３０",
    "2026-11-30", "09:00", "12:00", "🙂" * 60,
]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional={f: NASTY for f in (
    "volunteer", "in_day", "in_time", "out_day", "out_time", "reason")}))
def test_paper_form_never_500(manager_client, event, values):
    resp = manager_client.post(url(event, action="paper"), data={"csrf_token": manager_client.csrf, **values})
    assert resp.status_code in (303, 422), resp.status_code


# --- confirming -------------------------------------------------------------------------------

@pytest.fixture
def unconfirmed(app, manager_client, event, make_volunteer, sign):
    """Three signed in and left without signing out; the event is over now."""
    ids = [sign(make_volunteer(name, f"1380000001{i}")[0], event, at=START + timedelta(minutes=10 * i))
           for i, name in enumerate(("张三", "李四", "王五"))]
    app.config["FROZEN_NOW"] = START + timedelta(hours=3)
    return ids


def test_overdue_checkins_show_as_unconfirmed(app, manager_client, event, unconfirmed):
    html = manager_client.get(url(event)).get_data(as_text=True)
    assert html.count("待确认（未签退）") == 3 and "自动" in html
    assert html.count('name="checkin"') == 3 and "全部确认（3 条）" in html
    c = get_checkin(app, unconfirmed[1])
    assert c["status"] == "unconfirmed" and c["checked_out_at"] == START + timedelta(hours=2)
    assert c["credited_minutes"] == 110 and c["source_out"] == "auto"


def test_confirm_selected(app, manager_client, event, unconfirmed):
    manager_client.get(url(event))
    resp = manager_client.post(url(event, action="confirm"),
                               data={"csrf_token": manager_client.csrf, "checkin": unconfirmed[:2]})
    assert resp.status_code == 303
    assert [get_checkin(app, cid)["status"] for cid in unconfirmed] == ["confirmed", "confirmed", "unconfirmed"]
    assert [who for who, _r, _d in audit_rows(app, unconfirmed[0], "confirm")] == ["manager:wang"]
    page = manager_client.get(url(event)).get_data(as_text=True)
    assert "已确认 2 条记录" in page and "3 小时 50 分" in page  # 120 + 110 minutes


def test_confirm_all(app, manager_client, event, unconfirmed):
    manager_client.get(url(event))
    resp = manager_client.post(url(event, action="confirm"), data={"csrf_token": manager_client.csrf, "all": "1"})
    assert resp.status_code == 303
    assert {get_checkin(app, cid)["status"] for cid in unconfirmed} == {"confirmed"}
    assert count(app, AuditLog, AuditLog.action == "confirm") == 3
    resp = manager_client.post(url(event, action="confirm"), data={"csrf_token": manager_client.csrf, "all": "1"})
    assert resp.status_code == 303
    assert "没有需要确认的记录" in manager_client.get(url(event)).get_data(as_text=True)
    assert count(app, AuditLog, AuditLog.action == "confirm") == 3


def test_confirm_nothing_selected_is_422(app, manager_client, event, unconfirmed):
    resp = manager_client.post(url(event, action="confirm"), data={"csrf_token": manager_client.csrf})
    assert resp.status_code == 422 and "请先勾选" in resp.get_data(as_text=True)
    resp = manager_client.post(url(event, action="confirm"),
                               data={"csrf_token": manager_client.csrf, "checkin": "x" * 500})
    assert resp.status_code == 422
    resp = manager_client.post(url(event, action="confirm"),
                               data={"csrf_token": manager_client.csrf, "checkin": [unconfirmed[0], "nope"]})
    assert resp.status_code == 404
    assert count(app, AuditLog, AuditLog.action == "confirm") == 0
