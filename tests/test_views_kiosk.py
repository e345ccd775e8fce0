"""The touchscreen pages, whole and as htmx partials."""

from datetime import timedelta

import pytest

from kiosk import events
from kiosk.db import begin_write, db
from tests.conftest import FROZEN, csrf_token

HX = {"HX-Request": "true"}


def test_home_is_a_full_page_or_a_partial(client, make_event):
    make_event(title="写春联送春联")
    full = client.get("/")
    assert full.status_code == 200
    html = full.get_data(as_text=True)
    assert '<html lang="zh-CN"' in html and "写春联送春联" in html and "今天的活动" in html
    assert "HX-Request" in full.headers["Vary"]
    part = client.get("/", headers=HX)
    body = part.get_data(as_text=True)
    assert "<html" not in body and "写春联送春联" in body
    assert "HX-Request" in part.headers["Vary"]


def test_history_restore_gets_the_whole_page(client):
    resp = client.get("/", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in resp.get_data(as_text=True)


def test_event_page_full_and_partial(client, make_event):
    ev = make_event(title="义诊", place="卫生服务站", organiser="医院志愿服务队", capacity=30, description="带医保卡")
    for headers, whole in (({}, True), (HX, False)):
        html = client.get(f"/events/{ev.id}", headers=headers).get_data(as_text=True)
        assert ("<html" in html) is whole
        for text in ("义诊", "卫生服务站", "医院志愿服务队", "限 30 人", "带医保卡"):
            assert text in html


def test_category_filter(client, make_event, make_category):
    cat = make_category("助老")
    make_event(title="送粥", category_id=cat.id)
    make_event(title="讲座")
    html = client.get(f"/?category={cat.id}", headers=HX).get_data(as_text=True)
    assert "送粥" in html and "讲座" not in html


@pytest.mark.parametrize("path", ["/events/nope", "/?category=nope", "/events/%E2%80%AE", "/no-such-page"])
def test_unknown_things_get_a_chinese_404(client, path):
    resp = client.get(path)
    assert resp.status_code == 404
    assert "回到首页" in resp.get_data(as_text=True)


def test_unpublished_event_is_not_shown(client, make_event):
    ev = make_event(published=False)
    assert client.get(f"/events/{ev.id}").status_code == 404


def test_cancelled_event_says_so(app, client, make_event):
    ev = make_event(title="露天电影")
    with app.app_context():
        begin_write()
        events.cancel_event("m", events.get_event(ev.id), "下雨改期")
        db.session.commit()
    assert "已取消" in client.get("/").get_data(as_text=True)
    html = client.get(f"/events/{ev.id}").get_data(as_text=True)
    assert "这个活动已取消" in html and "下雨改期" in html


def test_stored_html_renders_inert(client, make_event):
    make_event(title="<script>alert(1)</script>", place="<img src=x onerror=alert(1)>")
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html


def test_security_headers(client):
    resp = client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"


def test_no_page_loads_anything_from_elsewhere(client, make_event):
    make_event()
    for path in ("/", "/manage/login"):
        html = client.get(path).get_data(as_text=True)
        assert "http://" not in html and "https://" not in html and "//cdn" not in html


def test_language_switch_and_back(client):
    token = csrf_token(client)
    resp = client.post("/prefs/language", data={"lang": "en", "next": "/", "csrf_token": token})
    assert resp.status_code == 303
    html = client.get("/").get_data(as_text=True)
    assert '<html lang="en"' in html and "Today" in html
    client.post("/prefs/language", data={"lang": "zh_CN", "csrf_token": token})
    assert '<html lang="zh-CN"' in client.get("/").get_data(as_text=True)


def test_large_text_toggle(client):
    token = csrf_token(client)
    client.post("/prefs/text-size", data={"csrf_token": token, "next": "/"})
    assert "text-large" in client.get("/").get_data(as_text=True)
    client.post("/prefs/text-size", data={"csrf_token": token, "next": "/"})
    assert "text-large" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil"])
def test_preference_redirects_stay_on_the_station(client, target):
    token = csrf_token(client)
    resp = client.post("/prefs/text-size", data={"csrf_token": token, "next": target})
    assert resp.headers["Location"] == "/"


def test_reset_forgets_the_last_person(client):
    token = csrf_token(client)
    client.post("/prefs/language", data={"lang": "en", "csrf_token": token})
    client.post("/prefs/text-size", data={"csrf_token": token})
    resp = client.post("/reset", headers={"X-CSRFToken": token})
    assert resp.status_code == 303
    html = client.get("/").get_data(as_text=True)
    assert '<html lang="zh-CN"' in html and "text-large" not in html


def test_idle_timeout_reaches_the_page(app, client):
    with app.app_context():
        begin_write()
        events.update_station("m", "中山社区", "GL-ZS", 45)
        db.session.commit()
    assert 'data-idle="45"' in client.get("/").get_data(as_text=True)


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["database"] == "ok" and body["schema_revision"] and body["version"]


def test_finished_and_running_events_are_marked(client, make_event):
    make_event(title="早上的", start=FROZEN.replace(hour=7), hours=1)
    make_event(title="正在的", start=FROZEN - timedelta(minutes=30))
    html = client.get("/").get_data(as_text=True)
    assert "已结束" in html and "正在进行" in html


def test_preferences_under_htmx_reload_in_place(client):
    token = csrf_token(client)
    resp = client.post("/prefs/text-size", data={"csrf_token": token}, headers=HX)
    assert resp.status_code == 204 and resp.headers["HX-Refresh"] == "true"


def test_day_view_and_bad_days(client, make_event):
    for i in range(7):
        make_event(title=f"义诊{i}", start=FROZEN.replace(hour=8 + i) + timedelta(days=2))
    html = client.get("/").get_data(as_text=True)
    assert "这一天还有 2 个活动" in html and "义诊6" not in html
    day = (FROZEN + timedelta(days=2)).date().isoformat()
    html = client.get(f"/?day={day}", headers=HX).get_data(as_text=True)
    assert "义诊6" in html and "返回未来七天" in html
    for bad in ("2026-13-01", "yesterday", "2020-01-01", (FROZEN + timedelta(days=30)).date().isoformat()):
        assert client.get(f"/?day={bad}").status_code == 404


def test_home_page_cache_sees_a_managers_change_at_once(app, manager_client, make_event):
    make_event(title="第一个")
    assert "第一个" in manager_client.get("/").get_data(as_text=True)
    manager_client.post("/manage/events/new", data={
        "csrf_token": manager_client.csrf, "title": "第二个", "day": "2026-11-30", "start": "15:00", "end": "16:00",
        "published": "y"})
    assert "第二个" in manager_client.get("/").get_data(as_text=True)


def test_cached_home_carries_each_visitors_own_csrf_token(app, make_event):
    make_event()
    a, b = app.test_client(), app.test_client()
    ta, tb = csrf_token(a), csrf_token(b)
    assert ta != tb
    assert a.post("/prefs/text-size", data={"csrf_token": ta}).status_code == 303
    assert b.post("/prefs/text-size", data={"csrf_token": ta}).status_code == 400
