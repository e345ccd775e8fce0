"""What a person does at the touchscreen, in real Chromium at the kiosk's real sizes."""

import re

import pytest
from playwright.sync_api import expect

from kiosk import events
from kiosk.db import begin_write, db
from tests.browser.conftest import shot

SIZES = {"landscape": (1920, 1080), "portrait": (1080, 1920)}

SMALL_TARGETS = """() => [...document.querySelectorAll('a, button, input, select, textarea')]
  .filter(el => el.offsetParent !== null)
  .map(el => { const r = el.getBoundingClientRect(); return {t: el.textContent.trim().slice(0, 20), w: r.width, h: r.height}; })
  .filter(r => r.w < 48 || r.h < 48)"""

SMALL_TEXT = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.offsetParent !== null && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
  .map(el => ({t: el.textContent.trim().slice(0, 20), px: parseFloat(getComputedStyle(el).fontSize)}))
  .filter(r => r.px < 20)"""


@pytest.mark.parametrize("size", SIZES)
def test_home_at_kiosk_size(page, live_server, watch, size):
    w, h = SIZES[size]
    page.set_viewport_size({"width": w, "height": h})
    page.goto(live_server())
    expect(page.locator("h1#today-h")).to_have_text("今天的活动")
    expect(page.locator(".today .card").first).to_be_visible()
    expect(page.get_by_text("拗九节送粥敬老")).to_be_visible()
    expect(page.locator(".week .card").first).to_be_visible()
    expect(page.locator(".clock-time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert page.evaluate(SMALL_TARGETS) == []
    assert page.evaluate(SMALL_TEXT) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, f"kiosk-home-{size}")
    assert watch["errors"] == [] and watch["offsite"] == []


def test_tap_through_a_category_and_an_event(page, live_server, watch):
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(live_server())
    start = page.evaluate("history.length")  # about:blank + this page
    page.get_by_role("link", name="助老", exact=True).click()
    expect(page.locator("#today-h")).to_contain_text("助老")
    expect(page.get_by_text("写春联 送春联")).to_have_count(0)
    page.get_by_text("拗九节送粥敬老").click()
    expect(page.locator(".event-detail h1")).to_have_text("拗九节送粥敬老")
    expect(page.get_by_text("巾帼志愿服务队")).to_be_visible()
    assert "/events/" in page.url
    shot(page, "kiosk-event")
    page.get_by_role("link", name=re.compile("返回活动列表")).click()
    expect(page.locator("#today-h")).to_be_visible()
    # htmx replaced the URL each time: nothing piles up in the history
    assert page.evaluate("history.length") == start
    assert watch["errors"] == [] and watch["offsite"] == []


def test_cancelled_event_is_shown_as_cancelled(page, live_server):
    page.goto(live_server())
    card = page.locator(".card-cancelled").first
    expect(card).to_contain_text("已取消")
    card.click()
    expect(page.locator(".banner-cancelled")).to_contain_text("天气预报有雨")


def test_large_text_and_english(page, live_server, watch):
    page.set_viewport_size({"width": 1080, "height": 1920})
    page.goto(live_server())
    start = page.evaluate("history.length")
    normal = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    page.get_by_role("button", name="大字").click()
    expect(page.locator("html")).to_have_class(re.compile("text-large"))
    large = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert large >= normal * 1.3
    assert page.evaluate(SMALL_TARGETS) == []
    shot(page, "kiosk-large-text-portrait")
    page.get_by_role("button", name="English").click()
    expect(page.locator("h1#today-h")).to_have_text("Today's events")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.evaluate("history.length") == start
    assert watch["errors"] == []


def test_idle_reset_leaves_nothing_of_the_last_person(page, live_server, watch):
    with live_server.app.app_context():
        begin_write()
        st = events.get_station()
        events.update_station("test", st.name, st.code, 20)
        db.session.commit()
    page.clock.install()
    page.goto(live_server())
    start = page.evaluate("history.length")
    page.get_by_role("button", name="大字").click()
    expect(page.locator("html")).to_have_class(re.compile("text-large"))
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("link", name="助老", exact=True).click()  # category names are station data
    page.locator(".today .card").first.click()
    expect(page.locator(".event-detail")).to_be_visible()
    page.clock.run_for(10_000)  # not idle long enough yet
    expect(page.locator(".event-detail")).to_be_visible()
    page.clock.run_for(12_000)
    expect(page.locator("h1#today-h")).to_have_text("今天的活动")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("html")).not_to_have_class(re.compile("text-large"))
    assert page.url == live_server("/")
    assert page.evaluate("history.length") == start
    # htmx keeps only the path it is on (now "/"); no page snapshots are cached (historyCacheSize 0)
    stored = page.evaluate("Object.fromEntries(Object.entries(sessionStorage))")
    assert stored in ({}, {"htmx-current-path-for-history": "/"})
    assert page.evaluate("localStorage.length") == 0
    assert watch["errors"] == []
