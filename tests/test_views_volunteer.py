"""The volunteer's phone and the kiosk's card + PIN flow, through HTTP."""

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kiosk import events, qr, volunteers
from kiosk.db import begin_write, db
from kiosk.models import CheckIn
from tests.conftest import FROZEN, csrf_token

HX = {"HX-Request": "true"}
PIN = "258369"


@pytest.fixture
def volunteer(app):
    with app.app_context():
        begin_write()
        v = volunteers.register("test", "张三", "13800000001", PIN, teams=["青年志愿服务队"])
        db.session.commit()
        db.session.refresh(v)
        return v


@pytest.fixture
def running(make_event):
    """An event running now (FROZEN is 10:00): 9:30-11:30."""
    return make_event(title="防疫志愿服务", start=FROZEN.replace(hour=9, minute=30), hours=2)


def code_for(app, event, step=None):
    with app.app_context():
        return qr.event_code(events.get_station().code, event.id, qr.current_step() if step is None else step)


def scan(client, app, event, step=None):
    return client.get(f"/v/s/{code_for(app, event, step)}")


def identify(client, who="13800000001", pin=PIN, next_url="/v/me"):
    token = csrf_token(client, "/v/me")
    return client.post("/v/identify", data={"who": who, "pin": pin, "next": next_url, "csrf_token": token})


def count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(CheckIn))


# --- the phone --------------------------------------------------------------------------------

def test_first_scan_identify_then_one_tap(app, client, volunteer, running):
    resp = scan(client, app, running)
    assert resp.status_code == 303 and resp.headers["Location"] == f"/v/events/{running.id}"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "请先确认身份" in page
    resp = identify(client, next_url=f"/v/events/{running.id}")
    assert resp.status_code == 303
    assert "kiosk_device=" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    page = client.get(f"/v/events/{running.id}").get_data(as_text=True)
    op = re.search(r'name="op" value="([^"]+)"', page).group(1)
    token = csrf_token(client, f"/v/events/{running.id}")
    resp = client.post(f"/v/events/{running.id}/checkin", data={"op": op, "csrf_token": token})
    assert resp.status_code == 303
    assert "签到成功" in client.get(f"/v/events/{running.id}").get_data(as_text=True)
    # the same POST again (a double tap, a retry): one check-in, same answer
    resp = client.post(f"/v/events/{running.id}/checkin", data={"op": op, "csrf_token": token})
    assert resp.status_code == 303 and count(app) == 1


def test_sign_out_needs_a_fresh_scan_and_credits_minutes(app, client, volunteer, running):
    with app.app_context():
        step = qr.current_step()
    scan(client, app, running, step)
    identify(client)
    token = csrf_token(client, f"/v/events/{running.id}")
    client.post(f"/v/events/{running.id}/checkin", data={"op": "", "csrf_token": token})
    # without a new scan the page asks for one, and signing out is refused
    assert "再扫一次屏幕上的二维码签退" in client.get(f"/v/events/{running.id}").get_data(as_text=True)
    assert client.post(f"/v/events/{running.id}/checkout", data={"csrf_token": token}).status_code == 410
    # the code of the same step again: a replay, refused with a plain message
    scan(client, app, running, step)
    resp = client.post(f"/v/events/{running.id}/checkout", data={"csrf_token": token})
    assert resp.status_code == 409 and "刚刚已经用过" in resp.get_data(as_text=True)
    # a code of another (still valid) step works
    app.config["FROZEN_NOW"] = FROZEN + timedelta(minutes=45)
    scan(client, app, running, step - 1)
    resp = client.post(f"/v/events/{running.id}/checkout", data={"csrf_token": token})
    assert resp.status_code == 303
    page = client.get(f"/v/events/{running.id}").get_data(as_text=True)
    assert "签退成功" in page and "这次服务记 45 分" in page


@pytest.mark.parametrize("mangle, status, words", [
    (lambda c: c[:-3] + "abc", 400, "请扫描屏幕上正在显示的签到二维码"),
    (lambda c: "not-a-code", 400, "请扫描屏幕上正在显示的签到二维码"),
    (lambda c: c.replace(".", "..", 1), 400, "请扫描"),
])
def test_forged_codes_are_refused(app, client, running, mangle, status, words):
    resp = client.get(f"/v/s/{mangle(code_for(app, running))}")
    assert resp.status_code == status and words in resp.get_data(as_text=True)


def test_expired_code_is_refused(app, client, running):
    with app.app_context():
        step = qr.current_step()
    resp = client.get(f"/v/s/{code_for(app, running, step - 2)}")
    assert resp.status_code == 410 and "已经过期" in resp.get_data(as_text=True)


def test_other_events_code_does_not_sign_into_this_one(app, client, volunteer, running, make_event):
    other = make_event(title="别的活动", start=FROZEN.replace(hour=9), hours=3)
    scan(client, app, other)
    identify(client)
    token = csrf_token(client, f"/v/events/{running.id}")
    resp = client.post(f"/v/events/{running.id}/checkin", data={"op": "", "csrf_token": token})
    assert resp.status_code == 410 and count(app) == 0


def test_code_of_a_stale_pass_is_refused(app, client, volunteer, running, monkeypatch):
    scan(client, app, running)
    identify(client)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 301)
    token = csrf_token(client, f"/v/events/{running.id}")
    resp = client.post(f"/v/events/{running.id}/checkin", data={"op": "", "csrf_token": token})
    assert resp.status_code == 410


def test_pin_lockout_on_the_phone(app, client, volunteer):
    for _ in range(5):
        assert identify(client, pin="000000").status_code == 401
    resp = identify(client)
    assert resp.status_code == 429 and "锁定" in resp.get_data(as_text=True)


@pytest.mark.parametrize("who, pin, status", [
    ("", PIN, 422), ("13800000001", "12", 422), ("nobody", PIN, 404), ("x" * 500, PIN, 422),
    ("13800000001", "abcdef", 422), ("\u202e13800000001", PIN, 404),
])
def test_identify_bad_input(client, volunteer, who, pin, status):
    assert identify(client, who=who, pin=pin).status_code == status


def test_pending_volunteer_cannot_sign_in(app, client, running):
    token = csrf_token(client, "/v/register")
    resp = client.post("/v/register", data={"name": "新来的", "mobile": "13900000009", "pin": PIN, "pin2": PIN,
                                            "csrf_token": token})
    assert resp.status_code == 200 and "登记成功" in resp.get_data(as_text=True)
    again = client.post("/v/register", data={"name": "新来的", "mobile": "13900000009", "pin": PIN, "pin2": PIN,
                                             "csrf_token": token})
    assert again.status_code == 422 and "已经登记过了" in again.get_data(as_text=True)
    scan(client, app, running)
    identify(client, who="13900000009")
    token = csrf_token(client, f"/v/events/{running.id}")
    resp = client.post(f"/v/events/{running.id}/checkin", data={"op": "", "csrf_token": token})
    assert resp.status_code == 403 and "等站长审核" in resp.get_data(as_text=True)


def test_my_page_and_forgetting_the_phone(app, client, volunteer):
    identify(client)
    page = client.get("/v/me").get_data(as_text=True)
    assert "张三" in page and "累计服务" in page and "还没有星级" in page
    assert "<html" not in client.get("/v/me", headers=HX).get_data(as_text=True)
    client.post("/v/forget", data={"csrf_token": csrf_token(client, "/v/me")})
    assert "请先确认身份" in client.get("/v/me").get_data(as_text=True)


# --- the kiosk: card + PIN --------------------------------------------------------------------

def badge_of(app, v):
    with app.app_context():
        return volunteers.badge(volunteers.get(v.id))


def card_login(app, client, v, pin=PIN):
    token = csrf_token(client, "/me")
    resp = client.post("/me/card", data={"badge": badge_of(app, v), "csrf_token": token}, headers=HX)
    assert resp.status_code == 200 and "请输入您的 6 位密码" in resp.get_data(as_text=True)
    return client.post("/me/pin", data={"pin": pin, "csrf_token": token}, headers=HX)


def test_card_pin_sign_in_and_out_at_the_kiosk(app, client, volunteer, running):
    resp = card_login(app, client, volunteer)
    assert resp.status_code == 303
    home = client.get("/me/home").get_data(as_text=True)
    assert "张三" in home and "防疫志愿服务" in home
    op = re.search(r'name="op" value="([^"]+)"', home).group(1)
    token = csrf_token(client, "/")
    resp = client.post(f"/me/events/{running.id}/checkin", data={"op": op, "csrf_token": token})
    assert resp.status_code == 200 and "签到成功" in resp.get_data(as_text=True)
    # the session ended right after
    assert client.get("/me/home").status_code == 303
    app.config["FROZEN_NOW"] = FROZEN + timedelta(minutes=50)
    card_login(app, client, volunteer)
    resp = client.post(f"/me/events/{running.id}/checkout", data={"csrf_token": csrf_token(client, "/")})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "签退成功" in body and "这次服务记 50 分" in body  # 10:00 -> 10:50


# --- the love bank at the kiosk ---------------------------------------------------------------

def test_redeem_at_the_kiosk_with_a_pickup_code(app, client, volunteer, running):
    from kiosk import ledger, rewards

    with app.app_context():
        begin_write()
        v = volunteers.get(volunteer.id)
        ledger.adjust("manager:wang", v, 40, "开户奖励")
        r = rewards.create_reward("manager:wang", rewards.RewardData(name="洗衣液", price_points=30), stock=1)
        rewards.create_reward("manager:wang", rewards.RewardData(name="电饭煲", price_points=500), stock=1)
        db.session.commit()
        rid = r.id
    card_login(app, client, volunteer)
    page = client.get("/me/rewards").get_data(as_text=True)
    assert "洗衣液" in page and "可以兑换" in page and "积分不够：需要 500 分" in page
    page = client.get(f"/me/rewards/{rid}").get_data(as_text=True)
    op = re.search(r'name="op" value="([^"]+)"', page).group(1)
    token = csrf_token(client, "/")
    resp = client.post(f"/me/rewards/{rid}", data={"op": op, "csrf_token": token}, headers=HX)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "兑换成功" in body and "取货码" in body
    code = re.search(r'class="code"[^>]*>(\d{3}) (\d{3})<', body)
    assert code
    assert resp.headers["HX-Replace-Url"].startswith("/pickup/")
    # a retry of the same confirm answers the same, without a second redemption
    again = client.post(f"/me/rewards/{rid}", data={"op": op, "csrf_token": token})
    assert again.status_code in (200, 303)
    with app.app_context():
        assert ledger.balance(volunteer.id) == 10
        assert db.session.scalar(select(func.count()).select_from(rewards.Redemption)) == 1
    # passbook at the kiosk
    card_login(app, client, volunteer)
    passbook = client.get("/me/passbook").get_data(as_text=True)
    assert "兑换：洗衣液" in passbook and "站长调整：开户奖励" in passbook


def test_out_of_stock_answer_is_a_sentence(app, client, volunteer):
    from kiosk import ledger, rewards

    with app.app_context():
        begin_write()
        ledger.adjust("manager:wang", volunteers.get(volunteer.id), 100, "奖励")
        r = rewards.create_reward("manager:wang", rewards.RewardData(name="雨伞", price_points=10), stock=1)
        other = volunteers.register("test", "李四", "13800000002", PIN)
        ledger.adjust("manager:wang", other, 100, "奖励")
        db.session.commit()
        rid = r.id
        rewards_other = other.id
    card_login(app, client, volunteer)
    page = client.get(f"/me/rewards/{rid}").get_data(as_text=True)
    op = re.search(r'name="op" value="([^"]+)"', page).group(1)
    with app.app_context():  # someone else takes the last one meanwhile
        begin_write()
        rewards.redeem(volunteers.get(rewards_other), rewards.get_reward(rid), None)
        db.session.commit()
    resp = client.post(f"/me/rewards/{rid}", data={"op": op, "csrf_token": csrf_token(client, "/")}, headers=HX)
    assert resp.status_code == 409 and "兑换完了" in resp.get_data(as_text=True)


def test_phone_passbook_and_print_views(app, client, volunteer):
    from kiosk import ledger

    with app.app_context():
        begin_write()
        ledger.adjust("manager:wang", volunteers.get(volunteer.id), 25, "重阳节活动奖励")
        db.session.commit()
    identify(client)
    page = client.get("/v/passbook").get_data(as_text=True)
    assert "站长调整：重阳节活动奖励" in page and "<b>25</b>" in page
    for size in ("a4", "a5"):
        html = client.get(f"/v/passbook?print={size}").get_data(as_text=True)
        assert f"print-{size}" in html and "付出 · 积累 · 回报" in html and volunteer.number in html
