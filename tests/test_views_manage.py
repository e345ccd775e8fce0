"""The station manager's back office through HTTP: login, events, settings, bad input."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kiosk import events
from kiosk.db import db
from kiosk.models import AuditLog, Event, LoginAttempt
from tests.conftest import FROZEN, csrf_token

HX = {"HX-Request": "true"}


def event_form(client, **kw):
    form = {
        "csrf_token": client.csrf, "title": "“五进五学”理论宣讲", "category_id": "", "day": "2026-11-30",
        "start": "14:30", "end": "16:00", "place": "社区二楼会议室", "organiser": "区委宣讲团",
        "description": "宣讲后答疑", "capacity": "60", "published": "y",
    }
    form.update(kw)
    return form


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.parametrize("path", ["/manage/", "/manage/events/new", "/manage/settings", "/manage/audit"])
def test_back_office_needs_login(client, path):
    resp = client.get(path)
    assert resp.status_code == 302 and "/manage/login" in resp.headers["Location"]


def test_login_page_full_and_partial(client):
    assert "<html" in client.get("/manage/login").get_data(as_text=True)
    assert "<html" not in client.get("/manage/login", headers=HX).get_data(as_text=True)


def test_wrong_password_then_throttled(app, client, make_manager):
    make_manager()
    token = csrf_token(client, "/manage/login")
    for _ in range(5):
        resp = client.post("/manage/login", data={"username": "wang", "password": "guess", "csrf_token": token})
        assert resp.status_code == 401
        assert "用户名或密码不对" in resp.get_data(as_text=True)
    resp = client.post("/manage/login", data={"username": "wang", "password": "correct horse battery",
                                               "csrf_token": token})
    assert resp.status_code == 429
    assert "15 分钟后再试" in resp.get_data(as_text=True)
    assert count(app, LoginAttempt, LoginAttempt.ok.is_(False)) == 5


def test_throttle_lifts_after_the_window(app, client, make_manager):
    make_manager()
    token = csrf_token(client, "/manage/login")
    for _ in range(5):
        client.post("/manage/login", data={"username": "wang", "password": "guess", "csrf_token": token})
    app.config["FROZEN_NOW"] = FROZEN + timedelta(minutes=16)
    resp = client.post("/manage/login", data={"username": "wang", "password": "correct horse battery",
                                               "csrf_token": token})
    assert resp.status_code == 303


def test_unknown_user_gets_the_same_answer(client):
    token = csrf_token(client, "/manage/login")
    resp = client.post("/manage/login", data={"username": "nobody", "password": "x", "csrf_token": token})
    assert resp.status_code == 401 and "用户名或密码不对" in resp.get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(client, make_manager):
    make_manager()
    token = csrf_token(client, "/manage/login")
    resp = client.post("/manage/login", data={"username": "wang", "password": "correct horse battery",
                                               "csrf_token": token})
    cookie = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("kiosk_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_logout(manager_client):
    resp = manager_client.post("/manage/logout", data={"csrf_token": manager_client.csrf})
    assert resp.status_code == 303
    assert manager_client.get("/manage/").status_code == 302


def test_manager_creates_an_event_and_the_kiosk_shows_it(app, manager_client, make_category):
    cat = make_category("理论宣讲")
    resp = manager_client.post("/manage/events/new", data=event_form(manager_client, category_id=cat.id))
    assert resp.status_code == 303
    kiosk = manager_client.get("/").get_data(as_text=True)
    assert "“五进五学”理论宣讲" in kiosk and "理论宣讲" in kiosk
    with app.app_context():
        ev = db.session.scalar(select(Event))
        assert ev.capacity == 60 and ev.starts_at == FROZEN.replace(hour=14, minute=30)
        row = db.session.scalar(select(AuditLog).where(AuditLog.entity_id == ev.id))
        assert row.actor == "manager:wang"


def test_new_event_form_full_and_partial(manager_client):
    assert "<html" in manager_client.get("/manage/events/new").get_data(as_text=True)
    assert "<html" not in manager_client.get("/manage/events/new", headers=HX).get_data(as_text=True)


@pytest.mark.parametrize("change, message", [
    (dict(end="13:00"), "结束时间要晚于开始时间"),
    (dict(title=""), "请填写活动名称"),
    (dict(title="长" * 10_000), "最多 100 个字"),
    (dict(title="名字\x07响铃"), "特殊字符"),
    (dict(title="abc\u202eexe.txt"), "特殊字符"),
    (dict(day="1900-01-01"), "2000 年到 2099 年"),
    (dict(day="2026-02-30"), "日期格式不对"),
    (dict(day="明天"), "日期格式不对"),
    (dict(start="25:00"), "时间格式不对"),
    (dict(capacity="很多"), "请填写一个整数"),
    (dict(capacity="0"), "1 到 100000"),
    (dict(capacity="9" * 400), "太大"),
    (dict(category_id="not-a-category"), ""),
    (dict(description="x" * 5000), "4000"),
    (dict(repeat="y"), "请至少选择一周中的一天"),
    (dict(repeat="y", weekdays="2"), "请选择重复到哪天为止"),
    (dict(repeat="y", weekdays="2", until="2026-01-01"), "截止日期要在第一次活动之后"),
    (dict(repeat="y", weekdays="2", until="2030-01-01"), "最长一年"),
    (dict(title="'; DROP TABLE event; --", end="09:00"), "结束时间要晚于开始时间"),
])
def test_bad_event_input_is_refused_next_to_the_field(app, manager_client, change, message):
    resp = manager_client.post("/manage/events/new", data=event_form(manager_client, **change))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'class="error"' in html and message in html
    assert "Traceback" not in html
    assert count(app, Event) == 0


def test_weekly_series_from_the_form(app, manager_client):
    resp = manager_client.post("/manage/events/new", data=event_form(
        manager_client, title="太极拳晨练", day="2026-12-01", start="09:00", end="11:00",
        repeat="y", weekdays="2", until="2027-01-31"))
    assert resp.status_code == 303
    assert count(app, Event) == 9
    listing = manager_client.get("/manage/").get_data(as_text=True)
    assert "已经建好 9 场每周活动" in listing


def test_edit_event(app, manager_client, make_event):
    ev = make_event(title="旧名字")
    page = manager_client.get(f"/manage/events/{ev.id}/edit").get_data(as_text=True)
    assert 'value="旧名字"' in page
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    resp = manager_client.post(f"/manage/events/{ev.id}/edit", data=event_form(
        manager_client, title="新名字", day="2026-11-30", start="14:00", end="16:00", version=version))
    assert resp.status_code == 303
    assert "新名字" in manager_client.get("/").get_data(as_text=True)
    # the same form again, with the old version: someone else changed it meanwhile
    resp = manager_client.post(f"/manage/events/{ev.id}/edit", data=event_form(manager_client, version=version))
    assert resp.status_code == 409
    assert "别人刚刚修改过" in resp.get_data(as_text=True)


def test_edit_bad_input_is_422(manager_client, make_event):
    ev = make_event()
    resp = manager_client.post(f"/manage/events/{ev.id}/edit", data=event_form(manager_client, end="01:00"))
    assert resp.status_code == 422


def test_cancel_restore_publish_unpublish(app, manager_client, make_event):
    ev = make_event(title="露天电影")
    c = manager_client
    assert c.post(f"/manage/events/{ev.id}/cancel", data={"csrf_token": c.csrf, "reason": "下雨"}).status_code == 303
    assert "已取消" in c.get("/").get_data(as_text=True)
    assert c.post(f"/manage/events/{ev.id}/restore", data={"csrf_token": c.csrf}).status_code == 303
    assert c.post(f"/manage/events/{ev.id}/unpublish", data={"csrf_token": c.csrf}).status_code == 303
    assert "露天电影" not in c.get("/").get_data(as_text=True)
    assert c.post(f"/manage/events/{ev.id}/publish", data={"csrf_token": c.csrf}).status_code == 303
    assert "露天电影" in c.get("/").get_data(as_text=True)
    actions = c.get("/manage/audit").get_data(as_text=True)
    for action in ("cancel", "restore", "unpublish", "publish"):
        assert f"<td>{action}</td>" in actions


def test_cancel_with_a_bad_reason(manager_client, make_event):
    ev = make_event()
    resp = manager_client.post(f"/manage/events/{ev.id}/cancel",
                               data={"csrf_token": manager_client.csrf, "reason": "x" * 500})
    assert resp.status_code == 422


def test_actions_on_a_missing_event_are_404(manager_client):
    for action in ("cancel", "restore", "publish", "unpublish"):
        resp = manager_client.post(f"/manage/events/missing/{action}", data={"csrf_token": manager_client.csrf})
        assert resp.status_code == 404
    assert manager_client.get("/manage/events/missing/edit").status_code == 404


def test_station_settings(app, manager_client):
    c = manager_client
    resp = c.post("/manage/settings", data={"csrf_token": c.csrf, "name": "中山社区新时代文明实践站",
                                            "code": "GL-ZS", "idle_timeout_s": "60", "credit_cap_minutes": "480",
                                            "star_thresholds": "50，150 300,500,800"})
    assert resp.status_code == 303
    with app.app_context():
        st = events.get_station()
        assert (st.credit_cap_minutes, st.star_thresholds) == (480, "50,150,300,500,800")
    assert "中山社区新时代文明实践站" in c.get("/").get_data(as_text=True)
    for bad in ({"idle_timeout_s": "5"}, {"idle_timeout_s": "abc"}, {"code": "有 空格"}, {"name": ""},
                {"star_thresholds": "1,2,3"}, {"star_thresholds": "500,300,600,1000,1500"},
                {"star_thresholds": "a,b,c,d,e"}, {"credit_cap_minutes": "5"}):
        form = {"csrf_token": c.csrf, "name": "站", "code": "A", "idle_timeout_s": "60", "credit_cap_minutes": "720",
                "star_thresholds": "100,300,600,1000,1500", **bad}
        assert c.post("/manage/settings", data=form).status_code == 422


def test_categories(app, manager_client):
    c = manager_client
    assert c.post("/manage/categories", data={"csrf_token": c.csrf, "name": "助老"}).status_code == 303
    resp = c.post("/manage/categories", data={"csrf_token": c.csrf, "name": "助老"})
    assert resp.status_code == 422 and "已经有这个类别了" in resp.get_data(as_text=True)
    with app.app_context():
        cat = events.categories()[0]
    assert c.post(f"/manage/categories/{cat.id}", data={"csrf_token": c.csrf, "name": "敬老助老"}).status_code == 303
    with app.app_context():
        assert [x.name for x in events.categories(active_only=False)] == ["敬老助老"]
        assert events.categories() == []  # unticked "active" retires it
    assert c.post("/manage/categories/missing", data={"csrf_token": c.csrf, "name": "x"}).status_code == 409


def test_audit_page_full_and_partial(manager_client, make_event):
    make_event(title="有记录的活动")
    assert "<html" in manager_client.get("/manage/audit").get_data(as_text=True)
    assert "<html" not in manager_client.get("/manage/audit", headers=HX).get_data(as_text=True)


def test_oversized_request_is_413(manager_client):
    resp = manager_client.post("/manage/events/new", data=event_form(manager_client, description="x" * 2_000_000))
    assert resp.status_code == 413
    assert "太大" in resp.get_data(as_text=True)
