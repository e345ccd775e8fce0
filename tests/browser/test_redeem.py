"""Spending love-bank points as people do it: a volunteer redeems a reward at the kiosk (card +
PIN), the station manager hands it over at the office PC by its pickup code, and the passbook, at
the kiosk and on the phone, shows the spending. Real Chromium against the real waitress server."""

import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from kiosk import ledger, rewards, volunteers
from kiosk.db import begin_write, db
from kiosk.models import Redemption
from tests.browser.conftest import shot
from tests.browser.test_checkin import KIOSK, PHONE, _watch, card_and_pin, identify

MANAGER = {"width": 1366, "height": 900}
WHO = ("13805910001", "林秀英")  # a demo volunteer with points from past service (paper check-ins)


# --- helpers ----------------------------------------------------------------------------------

def balance_of(live_server, mobile):
    with live_server.app.app_context():
        points = ledger.balance(volunteers.find(mobile))
        db.session.remove()
    return points


def add_reward(live_server, name, price, stock=3):
    """A reward in the catalog, as a manager would add it (through the domain)."""
    with live_server.app.app_context():
        begin_write()
        r = rewards.create_reward("test", rewards.RewardData(name=name, price_points=price), stock=stock)
        db.session.commit()
        reward_id = r.id
        db.session.remove()
    return reward_id


def redemptions_of(live_server, mobile):
    """(reward id, points, pickup code, status) of each redemption the volunteer made."""
    with live_server.app.app_context():
        v = volunteers.find(mobile)
        rows = [(r.reward_id, r.points, r.pickup_code, r.status) for r in rewards.of_volunteer(v)]
        db.session.remove()
    return rows


def stock_of(live_server, reward_id):
    with live_server.app.app_context():
        stock = rewards.get_reward(reward_id).stock
        db.session.remove()
    return stock


def redemption_count(live_server):
    with live_server.app.app_context():
        n = db.session.scalar(select(func.count()).select_from(Redemption))
        db.session.remove()
    return n


def offers_of(live_server, mobile):
    """(balance, {reward id: (name, price, stock, why not)}) as the kiosk would offer them."""
    with live_server.app.app_context():
        balance, offers = rewards.offers(volunteers.find(mobile))
        table = {o.reward.id: (o.reward.name, o.reward.price_points, o.reward.stock, "" if o.ok else o.why_not)
                 for o in offers}
        db.session.remove()
    return balance, table


def affordable_and_not(live_server, mobile, times=1):
    """A 洗衣液 the volunteer can take `times` times over, and a reward refused for want of points:
    the demo catalog's when it has them, else made here. Returns (balance, cheap id, dear id)."""
    balance, table = offers_of(live_server, mobile)
    assert balance >= 2, f"the demo gave {mobile} only {balance} points: nothing to spend"
    cheap = next((rid for rid, (name, price, _stock, why) in table.items()
                  if name == "洗衣液" and not why and price * times <= balance), None)
    if cheap is None:
        cheap = add_reward(live_server, "洗衣液", max(1, balance // (times + 1)), stock=3)
    dear = next((rid for rid, (_name, _price, _stock, why) in table.items() if why.startswith("积分不够")), None)
    if dear is None:
        dear = add_reward(live_server, "电饭煲", balance + 500, stock=2)
    return balance, cheap, dear


def reward_link(page, reward_id):
    return page.locator(f'a.reward[href$="/me/rewards/{reward_id}"]')


def open_rewards(page):
    page.locator(".me-nav").get_by_role("link", name="积分兑换").click()
    expect(page.get_by_role("heading", name="积分兑换")).to_be_visible()


def manager_login(page, live_server, password):
    page.goto(live_server("/manage/"))
    expect(page.get_by_role("heading", name="管理员登录")).to_be_visible()
    page.get_by_label("用户名").fill("demo")
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="活动")).to_be_visible()


def passbook_row(page, name):
    """The passbook's newest line for a redemption of `name`: (minus amount, running balance)."""
    row = page.locator("table.passbook tbody tr", has_text=f"兑换：{name}").first
    expect(row).to_be_visible()
    return row.locator("td.minus").inner_text().strip(), row.locator("td.num").last.inner_text().strip()


def settled_shot(page, name):
    """shot() once htmx's busy indicator ("请稍候…") has faded out."""
    expect(page.locator("#busy")).to_have_css("opacity", "0")
    shot(page, name)


def assert_clean(watch):
    assert watch["errors"] == [], watch["errors"]
    assert watch["offsite"] == [], watch["offsite"]


# --- the tests --------------------------------------------------------------------------------

def test_redeem_at_the_kiosk_hand_over_and_see_it_in_the_passbook(page, live_server, browser, demo_password, watch):
    mobile, name = WHO
    balance, cheap, dear = affordable_and_not(live_server, mobile)
    _balance, table = offers_of(live_server, mobile)
    _name, price, stock, _why = table[cheap]
    dear_name, dear_price, _stock, _why = table[dear]
    left = balance - price

    # --- the kiosk: card, PIN, 积分兑换
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    card_and_pin(page, live_server, mobile, name)
    open_rewards(page)
    expect(page.locator(".balance b")).to_have_text(str(balance))
    can = reward_link(page, cheap)
    expect(can).to_contain_text("洗衣液")
    expect(can).to_contain_text(f"{price} 分")
    expect(can.locator(".tag-ok")).to_have_text("可以兑换")
    cannot = reward_link(page, dear)
    expect(cannot).to_contain_text(dear_name)
    expect(cannot).to_have_class(re.compile(r"\breward-no\b"))
    expect(cannot.locator(".tag-ok")).to_have_count(0)
    expect(cannot.locator(".why")).to_have_text(f"积分不够：需要 {dear_price} 分，本站现在可用 {balance} 分。")
    settled_shot(page, "kiosk-rewards")

    # The dear one, tapped anyway: it says why and offers no button.
    cannot.click()
    expect(page.get_by_role("heading", name=dear_name)).to_be_visible()
    expect(page.locator(".banner-info")).to_contain_text("积分不够")
    expect(page.get_by_role("button", name="确认兑换")).to_have_count(0)
    page.get_by_role("link", name="返回兑换列表").click()

    # The affordable one: the facts, then 确认兑换.
    reward_link(page, cheap).click()
    expect(page.get_by_role("heading", name="洗衣液")).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(f"需要积分{price}")
    expect(facts).to_contain_text(f"兑换后剩{left}")
    page.get_by_role("button", name="确认兑换").click()

    # The pickup screen: a 6-digit code, its QR, what is left.
    expect(page.locator(".banner-ok")).to_contain_text("兑换成功")
    code_text = page.locator(".pickup-code .code").inner_text()
    code = re.sub(r"\D", "", code_text)
    assert re.fullmatch(r"[2-9]{6}", code), f"the pickup code reads {code_text!r}"
    expect(page.locator(".pickup-code .qr svg")).to_be_visible()
    expect(page.locator(".pickup")).to_contain_text(f"{name} · 用去 {price} 分 · 还剩 {left} 分")
    settled_shot(page, "kiosk-pickup")
    assert redemptions_of(live_server, mobile) == [(cheap, price, code, "pending")]
    assert stock_of(live_server, cheap) == stock - 1
    assert balance_of(live_server, mobile) == left

    # 完成 → the home board; the kiosk forgot the volunteer.
    page.get_by_role("button", name="完成").click()
    expect(page.locator("#today-h")).to_have_text("今天的活动")
    assert page.url == live_server("/")
    expect(page.get_by_text(name)).to_have_count(0)
    assert_clean(watch)

    # --- the manager at the office PC: 取货, the code, 确认交付
    office = browser.new_context(viewport=MANAGER, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        manager = office.new_page()
        _watch(manager, watch)
        manager_login(manager, live_server, demo_password)
        manager.get_by_role("link", name="取货", exact=True).click()
        expect(manager.get_by_role("heading", name="取货", exact=True)).to_be_visible()
        expect(manager.locator("table.bank-table").first).to_contain_text(code)
        # a slip of the finger first: a code nobody has (a deliberate 404)
        wrong = "".join("3" if ch == "2" else "2" for ch in code)
        manager.get_by_label("输入或扫描取货码").fill(wrong)
        manager.get_by_role("button", name="查找").click()
        expect(manager.locator("#code-err")).to_contain_text("没有找到这个取货码")
        # the browser and htmx each log the deliberate 404 answer; nothing else may appear
        assert watch["errors"] and all("404" in e for e in watch["errors"]), watch["errors"]
        watch["errors"].clear()
        manager.get_by_label("输入或扫描取货码").fill(f"{code[:3]} {code[3:]}")  # typed as printed on the slip
        manager.get_by_role("button", name="查找").click()
        expect(manager.get_by_role("heading", name="核对取货")).to_be_visible()
        match = manager.locator(".bank-match")
        expect(match).to_contain_text(name)
        expect(match).to_contain_text("洗衣液")
        expect(match).to_contain_text(f"{price} 分")
        settled_shot(manager, "manage-handover")
        manager.get_by_role("button", name="确认交付").click()
        expect(manager.locator(".flash-ok")).to_contain_text(f"已把“洗衣液”交给 {name}（GL-SFQX-0001）。")
        expect(manager.get_by_role("heading", name="等待取货（0）")).to_be_visible()
        settled_shot(manager, "manage-handed-over")
        assert redemptions_of(live_server, mobile) == [(cheap, price, code, "handed_over")]
        assert_clean(watch)
    finally:
        office.close()

    # --- the passbook at the kiosk: card + PIN again, 我的存折
    card_and_pin(page, live_server, mobile, name)
    page.locator(".me-nav").get_by_role("link", name="我的存折").click()
    expect(page.get_by_role("heading", name=f"{name} 的爱心银行存折")).to_be_visible()
    expect(page.locator(".balance b")).to_have_text(str(left))
    assert passbook_row(page, "洗衣液") == (str(price), str(left))
    expect(page.locator("table.passbook tbody tr").first).to_contain_text("兑换：洗衣液")  # the newest line
    page.get_by_role("button", name="完成，退出").click()
    expect(page.locator("#today-h")).to_have_text("今天的活动")

    # --- and on the phone
    phone_context = browser.new_context(**PHONE)
    try:
        phone = phone_context.new_page()
        _watch(phone, watch)
        phone.goto(live_server("/v/passbook"))
        identify(phone, mobile)
        expect(phone.get_by_role("heading", name=f"{name} 的爱心银行存折")).to_be_visible()
        assert phone.url == live_server("/v/passbook")
        expect(phone.locator(".balance b")).to_have_text(str(left))
        assert passbook_row(phone, "洗衣液") == (str(price), str(left))
        expect(phone.get_by_text("洗衣液 · 已领取")).to_be_visible()
    finally:
        phone_context.close()
    assert_clean(watch)


def test_double_tap_on_confirm_redeems_once(page, live_server, watch):
    mobile, name = WHO
    balance, cheap, _dear = affordable_and_not(live_server, mobile, times=2)  # a second one could be paid
    _balance, table = offers_of(live_server, mobile)
    _name, price, stock, _why = table[cheap]
    assert balance >= 2 * price
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    card_and_pin(page, live_server, mobile, name)
    open_rewards(page)
    reward_link(page, cheap).click()
    posts = []
    page.on("request", lambda r: r.method == "POST" and "/me/rewards/" in r.url and posts.append(r))
    page.get_by_role("button", name="确认兑换").dblclick()
    expect(page.locator(".banner-ok")).to_contain_text("兑换成功")
    page.wait_for_timeout(1000)  # a second answer, if one was asked for, would have landed by now
    expect(page.locator(".pickup")).to_contain_text(f"用去 {price} 分 · 还剩 {balance - price} 分")
    assert redemption_count(live_server) == 1, redemptions_of(live_server, mobile)
    assert balance_of(live_server, mobile) == balance - price
    assert stock_of(live_server, cheap) == stock - 1
    print(f"\ndouble tap on 确认兑换: {len(posts)} POST(s) sent")
    assert_clean(watch)
