"""A station manager at the office PC: logs in, creates an event, and it appears on the kiosk."""

import re
from datetime import timedelta

from playwright.sync_api import expect

from kiosk.clock import now
from tests.browser.conftest import shot


def login(page, live_server, password):
    page.goto(live_server("/manage/"))
    expect(page.get_by_role("heading", name="管理员登录")).to_be_visible()
    page.get_by_label("用户名").fill("demo")
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="活动")).to_be_visible()


def test_manager_creates_an_event_and_the_kiosk_shows_it(page, live_server, demo_password, watch):
    page.set_viewport_size({"width": 1366, "height": 900})
    login(page, live_server, demo_password)
    page.get_by_role("link", name=re.compile("新建活动")).click()
    with live_server.app.app_context():
        soon = now() + timedelta(hours=1)
    # first a mistake, as people make them: the end before the start
    page.get_by_label("活动名称").fill("社区重阳节包饺子")
    page.get_by_label("类别").select_option(label="助老")
    page.get_by_label("日期").fill(soon.strftime("%Y-%m-%d"))
    page.get_by_label("开始时间").fill("10:00")
    page.get_by_label("结束时间").fill("09:00")
    page.get_by_label("地点").fill("社区食堂")
    page.get_by_role("button", name="保存", exact=True).click()
    expect(page.locator(".error")).to_contain_text("结束时间要晚于开始时间")
    shot(page, "manage-event-error")
    watch["errors"].clear()  # the browser logs the deliberate 422 answer as a failed load
    page.get_by_label("开始时间").fill("23:00")
    page.get_by_label("结束时间").fill("23:50")
    page.get_by_role("button", name="保存", exact=True).click()
    expect(page.locator(".flash-ok")).to_contain_text("社区重阳节包饺子")
    shot(page, "manage-events")

    kiosk = page.context.new_page()
    kiosk.set_viewport_size({"width": 1920, "height": 1080})
    kiosk.goto(live_server("/"))
    card = kiosk.locator(".card", has_text="社区重阳节包饺子")
    expect(card).to_be_visible()
    expect(card).to_contain_text("社区食堂")
    assert watch["errors"] == [] and watch["offsite"] == []


def test_manager_cancels_and_the_kiosk_marks_it(page, live_server, demo_password):
    login(page, live_server, demo_password)
    page.get_by_role("link", name="写春联 送春联").click()
    page.get_by_label("取消原因（会显示在触摸屏上）").fill("书法老师生病，改到下周")
    page.get_by_role("button", name="取消这个活动").click()
    expect(page.locator(".flash-ok")).to_contain_text("已取消")
    page.goto(live_server("/"))
    card = page.locator(".card", has_text="写春联 送春联")
    expect(card).to_contain_text("已取消")
    card.click()
    expect(page.locator(".banner-cancelled")).to_contain_text("书法老师生病")


def test_wrong_password_is_explained(page, live_server):
    page.goto(live_server("/manage/login"))
    page.get_by_label("用户名").fill("demo")
    page.get_by_label("密码").fill("wrong password")
    page.get_by_role("button", name="登录").click()
    expect(page.locator(".error")).to_contain_text("用户名或密码不对")
