"""Signing in and out as volunteers do it: a phone scanning the kiosk's rotating QR code, and a
personal card with a PIN at the kiosk itself. Real Chromium against the real waitress server."""

import re
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kiosk import checkins, qr, volunteers
from kiosk.db import begin_write, db
from kiosk.demo import DEMO_PIN
from kiosk.models import Event
from tests.browser.conftest import shot

DUTY = "文明实践站值班：接待居民、整理图书"  # the demo event running whenever the demo loads
KIOSK = {"width": 1920, "height": 1080}
PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN",
             timezone_id="Asia/Shanghai")
POLL = 6_500  # ms: the sign-in screen polls its code and count every 5 s


# --- helpers ----------------------------------------------------------------------------------

def _watch(page, seen):
    """The same watch as conftest's, for pages of other browser contexts."""
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "data:")) or seen["offsite"].append(r.url))


@pytest.fixture
def phones(browser, watch):
    """Makes volunteers' phones: each a fresh browser context (own cookies) at a phone's size."""
    made = []

    def new_phone():
        context = browser.new_context(**PHONE)
        made.append(context)
        phone = context.new_page()
        _watch(phone, watch)
        return phone

    yield new_phone
    for context in made:
        context.close()


def duty_event(live_server):
    with live_server.app.app_context():
        ev = db.session.scalar(select(Event).where(Event.title == DUTY))
        db.session.expunge(ev)
        db.session.remove()
    return ev


def badge_of(live_server, mobile):
    with live_server.app.app_context():
        text = volunteers.badge(volunteers.find(mobile))
        db.session.remove()
    return text


def checkin_row(live_server, mobile, event_id):
    """The volunteer's check-in at the event as stored: (checked in, checked out, minutes, status, source)."""
    with live_server.app.app_context():
        c = checkins.status_of(volunteers.find(mobile), db.session.get(Event, event_id))
        row = None if c is None else (c.checked_in_at, c.checked_out_at, c.credited_minutes, c.status, c.source_in)
        db.session.remove()
    return row


@contextmanager
def server_qr_clock_ahead(app, seconds):
    """The server's QR steps as they will be `seconds` from now (qr.current_step honours
    FROZEN_UNIX): lets a code expire without waiting 40 s. The kiosk's code stops rotating
    meanwhile."""
    app.config["FROZEN_UNIX"] = time.time() + seconds
    try:
        yield
    finally:
        app.config.pop("FROZEN_UNIX", None)


def open_signin(page, live_server):
    """At the kiosk: the running demo event, then its sign-in screen with the QR code."""
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    page.locator(".today .card", has_text=DUTY).click()
    expect(page.locator(".event-detail h1")).to_have_text(DUTY)
    page.get_by_role("link", name="显示签到二维码").click()
    expect(page.locator(".signin h1")).to_have_text(DUTY)
    expect(page.locator(".qr svg")).to_be_visible()


def qr_url(page):
    url = page.locator(".qr").get_attribute("data-url")
    assert url
    return url


def next_qr_url(page, old):
    """Waits for the kiosk's code to rotate (every 20 s, seen by the 5 s poll), then reads it."""
    expect(page.locator(".qr")).not_to_have_attribute("data-url", old, timeout=27_000)
    return qr_url(page)


def assert_fits_phone(phone):
    """Nothing wider than the phone: else a mobile browser zooms the page out to tiny text."""
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{phone.url} is {width} px wide on a 390 px phone"


def identify(phone, who, pin=DEMO_PIN, screenshot=None):
    assert_fits_phone(phone)
    phone.get_by_label("志愿者编号或手机号").fill(who)
    phone.get_by_label("6 位密码").fill(pin)
    if screenshot:
        shot(phone, screenshot)
    phone.get_by_role("button", name="确认").tap()


def scan_card(page, text):
    """What a USB card scanner does: types the card's text into the focused field and Enter."""
    expect(page.locator("#badge")).to_be_focused()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def tap_pin(page, digits):
    for d in digits:
        page.locator(f'.keypad [data-key="{d}"]').click()


def card_and_pin(page, live_server, mobile, name):
    page.get_by_role("link", name="我是志愿者").click()
    expect(page.get_by_role("heading", name="请刷志愿者卡")).to_be_visible()
    scan_card(page, badge_of(live_server, mobile))
    expect(page.get_by_text("请输入您的 6 位密码")).to_be_visible()
    expect(page.get_by_role("heading", name=f"{name}，您好")).to_be_visible()
    tap_pin(page, DEMO_PIN)
    expect(page.locator(".pin-input")).to_have_value(DEMO_PIN)
    page.get_by_role("button", name="确定").click()
    expect(page.get_by_role("heading", name="现在可以签到的活动")).to_be_visible()
    expect(page.locator(".me h1")).to_contain_text(f"{name}，您好")


# --- the phone --------------------------------------------------------------------------------

def test_phone_scans_the_kiosk_code_signs_in_and_out(page, live_server, phones, watch):
    ev = duty_event(live_server)
    open_signin(page, live_server)
    code_svg = page.locator(".qr svg")
    box = code_svg.bounding_box()
    assert box["width"] >= 400 and box["height"] >= 400, box
    count = page.locator(".signin-count")
    expect(count).to_contain_text("现在已签到 0 人")
    shot(page, "kiosk-signin")
    url = qr_url(page)
    assert url.startswith(live_server(f"/v/s/{ev.id}."))

    # The volunteer's phone opens what the QR holds, identifies once, taps 签到.
    phone = phones()
    started = time.perf_counter()
    phone.goto(url)
    expect(phone.locator(".hint", has_text=DUTY)).to_be_visible()
    identify(phone, "13805910001")
    expect(phone.get_by_text("林秀英（")).to_be_visible()
    phone.get_by_role("button", name="签到").tap()
    expect(phone.locator(".flash-ok")).to_contain_text("签到成功")
    scan_to_signed_in = time.perf_counter() - started
    print(f"\nphone: scan → 签到成功 in {scan_to_signed_in:.2f} s")
    assert scan_to_signed_in < 10
    expect(phone.locator(".banner-ok")).to_contain_text("已签到")
    expect(phone.get_by_text("走的时候，请再扫一次屏幕上的二维码签退。")).to_be_visible()
    shot(phone, "phone-signed-in")
    assert_fits_phone(phone)

    # The kiosk's count follows within one poll.
    expect(count).to_contain_text("现在已签到 1 人", timeout=POLL)
    _in, _out, _minutes, status, source = checkin_row(live_server, "13805910001", ev.id)
    assert (status, source) == ("open", "phone")

    # Half an hour of service: move the sign-in back 30 minutes (still inside the event, which
    # started an hour before the current hour), so the credited time is known.
    with live_server.app.app_context():
        begin_write()
        c = checkins.status_of(volunteers.find("13805910001"), db.session.get(Event, ev.id))
        c.checked_in_at -= timedelta(minutes=30)
        assert c.checked_in_at >= c.event.starts_at
        db.session.commit()
        db.session.remove()

    # Leaving: the same code was spent on the sign-in, so scan the next one.
    url2 = next_qr_url(page, url)
    started = time.perf_counter()
    phone.goto(url2)
    phone.get_by_role("button", name="签退").tap()
    flash = phone.locator(".flash-ok")
    expect(flash).to_contain_text("签退成功")
    print(f"phone: second scan → 签退成功 in {time.perf_counter() - started:.2f} s (phone remembered)")
    checked_in, checked_out, minutes, status, _source = checkin_row(live_server, "13805910001", ev.id)
    assert status == "confirmed"
    assert minutes == int((checked_out - checked_in).total_seconds() // 60)
    assert 30 <= minutes <= 31
    credited = f"{minutes} 分"  # under an hour: said as minutes only
    expect(flash).to_have_text(f"签退成功！这次服务记 {credited}。")
    expect(phone.locator(".banner-ok")).to_have_text(f"您已签退。这次服务记 {credited}。")
    shot(phone, "phone-signed-out")
    expect(count).to_contain_text("现在已签到 0 人", timeout=POLL)

    # My hours list it.
    phone.get_by_role("link", name="我的服务时长").tap()
    row = phone.locator("table tr", has_text=DUTY)
    expect(row).to_contain_text(credited)
    expect(phone.get_by_role("heading", name=re.compile("林秀英，您好"))).to_be_visible()
    shot(phone, "phone-me")
    assert_fits_phone(phone)
    # (the sign-in screen's 5 s poll must not log anything either: it runs all day)
    assert watch["errors"] == [] and watch["offsite"] == []


def test_a_replayed_expired_or_garbled_code_is_refused_in_plain_words(page, live_server, phones, watch):
    ev = duty_event(live_server)
    open_signin(page, live_server)
    url = qr_url(page)

    # The same volunteer, the same code again in the same 20 s step: refused.
    phone = phones()
    phone.goto(url)
    identify(phone, "13805910003", screenshot="phone-identify")
    phone.get_by_role("button", name="签到").tap()
    expect(phone.locator(".flash-ok")).to_contain_text("签到成功")
    phone.goto(url)
    phone.get_by_role("button", name="签退").tap()
    expect(phone.locator(".flash-error")).to_contain_text("这个二维码您刚刚已经用过了")
    expect(phone.locator(".flash-error")).to_contain_text("二维码变化后再扫")
    assert checkin_row(live_server, "13805910003", ev.id)[3] == "open"  # still signed in
    shot(phone, "phone-code-used")

    # A photo of the code forwarded to a friend, opened after it expired (two steps later).
    friend = phones()
    with server_qr_clock_ahead(live_server.app, 2 * qr.STEP):
        friend.goto(url)
    message = friend.locator(".problem-message")
    expect(message).to_contain_text("二维码")
    expect(message).to_contain_text("过期")
    # in the phone's own layout: on the first screen, not pushed down by a kiosk's header
    assert_fits_phone(friend)
    box = message.bounding_box()
    assert box["y"] + box["height"] <= PHONE["viewport"]["height"], box
    expect(friend.get_by_text("林秀英")).to_have_count(0)
    shot(friend, "phone-code-expired")

    # A code with a wrong signature: also a plain sentence, no technical words.
    event_id, step, tag = url.rsplit("/", 1)[1].split(".")
    forged = live_server(f"/v/s/{event_id}.{step}.{'A' * len(tag)}")
    friend.goto(forged)
    expect(friend.locator(".problem-message")).to_contain_text("这个二维码不对")
    # Nothing signed the friend in.
    assert checkin_row(live_server, "13805910004", ev.id) is None
    # the browser logs each deliberate 4xx answer as a failed load; nothing else may appear
    assert all("status of 4" in e for e in watch["errors"]), watch["errors"]
    watch["errors"].clear()
    assert watch["offsite"] == []


# --- the card at the kiosk --------------------------------------------------------------------

def test_card_and_pin_at_the_kiosk(page, live_server, watch):
    ev = duty_event(live_server)
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    page.get_by_role("link", name="我是志愿者").click()
    expect(page.get_by_role("heading", name="请刷志愿者卡")).to_be_visible()

    # Something that is not a volunteer card (a WeChat code, say).
    scan_card(page, "https://u.wechat.com/EFs3kq9Zf0")
    expect(page.locator("#badge-err")).to_contain_text("这张卡读不出来")
    expect(page.locator("#badge")).to_have_value("")
    watch["errors"].clear()

    # The real card, then a wrong PIN, then the right one.
    scan_card(page, badge_of(live_server, "13805910002"))
    expect(page.get_by_role("heading", name="陈建国，您好")).to_be_visible()
    tap_pin(page, "258360")
    expect(page.locator(".pin-input")).to_have_value("258360")
    page.get_by_role("button", name="确定").click()
    expect(page.locator("#pin-err")).to_contain_text("密码不对")
    expect(page.locator(".pin-input")).to_have_value("")
    watch["errors"].clear()
    tap_pin(page, "25836")
    page.get_by_role("button", name="删除一位").click()
    expect(page.locator(".pin-input")).to_have_value("2583")
    tap_pin(page, "69")
    expect(page.locator(".pin-input")).to_have_value("258369")
    shot(page, "kiosk-keypad")
    page.get_by_role("button", name="确定").click()

    expect(page.get_by_role("heading", name="现在可以签到的活动")).to_be_visible()
    expect(page.locator(".me h1")).to_contain_text("陈建国，您好")
    shot(page, "kiosk-me-home")
    row = page.locator(".act-row", has_text=DUTY)
    row.get_by_role("button", name="签到").click()
    expect(page.locator(".banner-ok")).to_contain_text("签到成功")
    expect(page.locator(".me h1")).to_have_text(DUTY)
    shot(page, "kiosk-me-done")
    _in, _out, _minutes, status, source = checkin_row(live_server, "13805910002", ev.id)
    assert (status, source) == ("open", "kiosk")

    resets = []
    page.on("request", lambda r: r.url.endswith("/reset") and resets.append(r))
    with page.expect_response(lambda r: r.url.endswith("/reset")) as reset:
        page.get_by_role("button", name="完成").click()
    expect(page.locator("#today-h")).to_have_text("今天的活动")
    assert reset.value.status == 303, f"完成 could not end the visit: /reset answered {reset.value.status}"
    assert len(resets) == 1, f"完成 sent {len(resets)} resets"
    expect(page.get_by_text("陈建国")).to_have_count(0)
    assert page.url == live_server("/")
    # the kiosk's session is over: the volunteer screen asks for a card again
    page.goto(live_server("/me/home"))
    expect(page.get_by_role("heading", name="请刷志愿者卡")).to_be_visible()
    assert watch["errors"] == [] and watch["offsite"] == []


def test_volunteer_screen_resets_after_a_minute_idle(page, live_server, watch):
    page.clock.install()
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    card_and_pin(page, live_server, "13805910005", "王淑珍")
    page.get_by_role("button", name="大字").click()  # the volunteer wants bigger text
    expect(page.locator("html")).to_have_class(re.compile("text-large"))
    expect(page.get_by_role("heading", name="现在可以签到的活动")).to_be_visible()
    page.clock.run_for(45_000)  # the volunteer reads their hours: not idle long enough yet
    expect(page.get_by_role("heading", name="现在可以签到的活动")).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/reset")) as reset:
        page.clock.run_for(16_000)
    expect(page.locator("#today-h")).to_have_text("今天的活动")
    assert reset.value.status == 303, f"the idle reset was refused: /reset answered {reset.value.status}"
    assert page.url == live_server("/")
    expect(page.locator("html")).not_to_have_class(re.compile("text-large"))
    expect(page.get_by_text("王淑珍")).to_have_count(0)
    expect(page.get_by_text("GL-SFQX-0005")).to_have_count(0)
    assert "王淑珍" not in page.content()
    page.goto(live_server("/me/home"))  # and the server forgot them too
    expect(page.get_by_role("heading", name="请刷志愿者卡")).to_be_visible()
    assert watch["errors"] == [] and watch["offsite"] == []


# --- a walk-in registers ----------------------------------------------------------------------

def test_walk_in_registers_on_a_phone(live_server, phones, watch):
    phone = phones()
    phone.goto(live_server("/v/register"))
    expect(phone.get_by_role("heading", name="登记成为志愿者")).to_be_visible()
    phone.get_by_label("姓名").fill("钱伯伯")
    phone.get_by_label("手机号").fill("138 0591 0010")
    phone.get_by_label("设一个 6 位数字密码").fill("147258")
    phone.get_by_label("再输一次密码").fill("147285")
    phone.get_by_role("button", name="提交登记").tap()
    expect(phone.get_by_text("两次输入的密码不一样")).to_be_visible()
    watch["errors"].clear()  # the deliberate 422
    phone.get_by_label("设一个 6 位数字密码").fill("147258")
    phone.get_by_label("再输一次密码").fill("147258")
    phone.get_by_role("button", name="提交登记").tap()
    expect(phone.get_by_role("heading", name="登记成功")).to_be_visible()
    banner = phone.locator(".banner-ok")
    expect(banner).to_contain_text(re.compile(r"您的志愿者编号是 GL-SFQX-\d{4}"))
    shot(phone, "phone-registered")
    assert_fits_phone(phone)
    number = re.search(r"GL-SFQX-\d{4}", banner.inner_text()).group(0)
    with live_server.app.app_context():
        v = volunteers.find("13805910010")
        assert (v.number, v.name, v.status, v.registered_via) == (number, "钱伯伯", "pending", "phone")
        db.session.remove()
    assert watch["errors"] == [] and watch["offsite"] == []
