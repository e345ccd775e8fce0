"""The manager's love-bank pages through HTTP: rewards and stock, pickups, balances, the ledger and
its exports, adjustments, awards for an event, and the rules."""

import csv
import io
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import func, select

from kiosk import checkins, events, ledger, rewards, volunteers
from kiosk.db import begin_write, db
from kiosk.models import AuditLog, LedgerTxn, Redemption, Reward, StockMove, Volunteer
from tests.conftest import FROZEN

HX = {"HX-Request": "true"}
YESTERDAY = FROZEN - timedelta(days=1)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


# --- factories ---------------------------------------------------------------------------------

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
def past_event(make_event):
    """An event yesterday 9:00-11:00: two hours earn 20 points by the default rules."""
    return make_event(title="社区环境大扫除", start=YESTERDAY.replace(hour=9), hours=2)


@pytest.fixture
def serve(app):
    """Record a volunteer's confirmed service at an event (so they earn points)."""
    def serve(volunteer_id, event):
        with app.app_context():
            begin_write()
            v = volunteers.get(volunteer_id)
            ev = events.get_event(event.id)
            checkins.add_from_paper("test", v, ev, ev.starts_at, ev.ends_at, "纸质签到表")
            db.session.commit()

    return serve


@pytest.fixture
def make_reward(app):
    def make(name="洗衣液", price=10, stock=5, **kw):
        with app.app_context():
            begin_write()
            r = rewards.create_reward("test", rewards.RewardData(name=name, price_points=price, **kw), stock=stock)
            db.session.commit()
            return r.id

    return make


@pytest.fixture
def redeem(app):
    def redeem(volunteer_id, reward_id):
        with app.app_context():
            begin_write()
            red, _new = rewards.redeem(volunteers.get(volunteer_id), rewards.get_reward(reward_id), None)
            db.session.commit()
            return red.id, red.pickup_code

    return redeem


@pytest.fixture
def earner(make_volunteer, past_event, serve):
    """A volunteer with 20 points; returns (id, number)."""
    vid, number = make_volunteer()
    serve(vid, past_event)
    return vid, number


def balance(app, volunteer_id):
    with app.app_context():
        return ledger.balance(volunteer_id)


def get(app, model, key):
    with app.app_context():
        obj = db.session.get(model, key)
        db.session.expunge(obj)
        return obj


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


# --- every page, whole and as a partial --------------------------------------------------------

@pytest.fixture
def pages(earner, make_reward, redeem, past_event):
    rid = make_reward()
    red_id, _code = redeem(earner[0], rid)
    return ["/manage/bank", "/manage/bank/ledger", "/manage/bank/adjust", "/manage/bank/settings", "/manage/rewards",
            "/manage/rewards/new", f"/manage/rewards/{rid}/edit", "/manage/redemptions",
            f"/manage/redemptions/{red_id}/handover", f"/manage/redemptions/{red_id}/cancel",
            f"/manage/events/{past_event.id}/award"]


def test_each_page_whole_and_partial(manager_client, pages):
    for url in pages:
        whole = manager_client.get(url)
        assert whole.status_code == 200, url
        html = whole.get_data(as_text=True)
        assert "<html" in html and "bank-nav" in html, url
        part = manager_client.get(url, headers=HX)
        assert part.status_code == 200, url
        html = part.get_data(as_text=True)
        assert "<html" not in html and "bank-nav" in html, url
        assert "HX-Request" in part.headers.get("Vary", ""), url


def test_pages_need_the_manager_login(client, pages):
    for url in pages:
        resp = client.get(url)
        assert resp.status_code in (302, 303), url
        assert "/manage/login" in resp.headers["Location"], url


def test_posts_need_a_csrf_token(manager_client, past_event):
    for url in ("/manage/rewards/new", "/manage/bank/adjust", "/manage/bank/settings", "/manage/redemptions/handover",
                f"/manage/events/{past_event.id}/award"):
        resp = manager_client.post(url, data={"name": "x", "points": "5", "reason": "x", "code": "234567"})
        assert resp.status_code == 400, url


# --- the rewards catalog -----------------------------------------------------------------------

def reward_form(client, **kw):
    data = {"csrf_token": client.csrf, "name": "大米 5 斤", "description": "东北大米", "price_points": "50",
            "stock": "8", "monthly_limit": "2", "min_stars": "1", "available_from": "2026-11-01",
            "available_until": "2026-12-31", "low_stock": "3", "active": "y"}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def test_create_reward_with_initial_stock(app, manager_client):
    resp = manager_client.post("/manage/rewards/new", data=reward_form(manager_client))
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/manage/rewards")
    with app.app_context():
        r = db.session.scalar(select(Reward))
        assert (r.name, r.price_points, r.stock, r.monthly_limit, r.min_stars, r.active) == ("大米 5 斤", 50, 8, 2, 1, True)
        assert str(r.available_until) == "2026-12-31"
        assert [(m.kind, m.delta) for m in db.session.scalars(select(StockMove))] == [("restock", 8)]
        assert db.session.scalar(select(AuditLog).where(AuditLog.entity == "reward", AuditLog.action == "create")).actor == "manager:wang"
    page = manager_client.get("/manage/rewards").get_data(as_text=True)
    assert "大米 5 斤" in page and "已加入兑换目录" in page


@pytest.mark.parametrize("field, value, message", [
    ("price_points", "-5", "所需积分要在 1 到 1000000 之间"),
    ("price_points", "0", "所需积分要在 1 到 1000000 之间"),
    ("price_points", "十", "请填写一个整数"),
    ("price_points", "9" * 40, "这个数字太大了"),
    ("price_points", "", "请填写数字"),
    ("name", "米" * 10_000, "物品名称最多 50 个字"),
    ("name", "", "请填写物品名称"),
    ("name", "大米\x00", "特殊字符"),
    ("name", "大米\u202egnp.exe", "特殊字符"),
    ("description", "好\x07米", "特殊字符"),
    ("available_until", "2026-10-01", "结束日期不能早于开始日期"),
    ("available_from", "2026-13-45", "日期格式不对"),
    ("available_from", "1800-01-01", "2000 年到 2099 年"),
    ("min_stars", "9", "请从列表里选择"),
    ("min_stars", "x", "请从列表里选择"),
    ("monthly_limit", "0", "每月限兑要在 1 到 1000 之间"),
    ("stock", "-1", "数量要在 0 到 100000 之间"),
    ("low_stock", "-3", "提醒数量要在 0 到 10000 之间"),
])
def test_bad_reward_input_is_422_with_the_message_next_to_the_field(app, manager_client, field, value, message):
    resp = manager_client.post("/manage/rewards/new", data=reward_form(manager_client, **{field: value}))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert message in html
    assert re.search(rf'id="{field}-err"', html), "the message sits next to its field"
    assert count(app, Reward) == 0


def test_payloads_are_stored_as_text_and_render_inert(app, manager_client):
    name = "<script>alert(1)</script>"
    assert manager_client.post("/manage/rewards/new", data=reward_form(manager_client, name=name)).status_code == 303
    html = manager_client.get("/manage/rewards").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    sql = "'; DROP TABLE reward; --"
    assert manager_client.post("/manage/rewards/new", data=reward_form(manager_client, name=sql)).status_code == 303
    assert count(app, Reward) == 2


def test_edit_reward_audits_the_change(app, manager_client, make_reward):
    rid = make_reward(price=10, stock=4)
    html = manager_client.get(f"/manage/rewards/{rid}/edit").get_data(as_text=True)
    assert 'value="洗衣液"' in html and "现有 4 件" in html
    resp = manager_client.post(f"/manage/rewards/{rid}/edit", data=reward_form(
        manager_client, name="洗衣液（大瓶）", price_points="15", version="1", stock=None, active=None))
    assert resp.status_code == 303
    r = get(app, Reward, rid)
    assert (r.name, r.price_points, r.stock, r.active, r.version) == ("洗衣液（大瓶）", 15, 4, False, 2)
    with app.app_context():
        row = db.session.scalar(select(AuditLog).where(AuditLog.entity_id == rid, AuditLog.action == "update"))
        assert '"price_points": [10, 15]' in row.detail


def test_edit_reward_someone_saved_meanwhile_is_409(app, manager_client, make_reward):
    rid = make_reward(price=10)
    resp = manager_client.post(f"/manage/rewards/{rid}/edit", data=reward_form(manager_client, version="0", stock=None))
    assert resp.status_code == 409
    assert "别人刚刚修改过这件物品" in resp.get_data(as_text=True)
    assert get(app, Reward, rid).price_points == 10
    again = manager_client.post(f"/manage/rewards/{rid}/edit", data=reward_form(manager_client, version="1", stock=None))
    assert again.status_code == 303


def test_edit_unknown_reward_is_404(manager_client):
    assert manager_client.get("/manage/rewards/nope/edit").status_code == 404
    assert post(manager_client, "/manage/rewards/nope/restock", **{"restock-quantity": "1"}).status_code == 404


def test_low_stock_warning_at_the_top(manager_client, make_reward):
    make_reward(name="香皂", stock=2, low_stock=3)
    make_reward(name="毛巾", stock=10, low_stock=3)
    make_reward(name="雨伞", stock=0, low_stock=0, active=False)
    html = manager_client.get("/manage/rewards").get_data(as_text=True)
    warn = html[html.index("bank-warn"):html.index("</ul>", html.index("bank-warn"))]
    assert "香皂" in warn and "只剩 2 件" in warn
    assert "毛巾" not in warn and "雨伞" not in warn, "enough stock, or not offered"


# --- pictures ----------------------------------------------------------------------------------

def test_picture_upload_is_stored_under_a_random_name_and_served(app, manager_client):
    data = reward_form(manager_client)
    data["picture"] = (io.BytesIO(PNG), "../../etc/passwd.png")
    resp = manager_client.post("/manage/rewards/new", data=data, content_type="multipart/form-data")
    assert resp.status_code == 303
    with app.app_context():
        r = db.session.scalar(select(Reward))
    assert re.fullmatch(r"[0-9a-f]{32}\.png", r.picture)
    from pathlib import Path

    assert (Path(app.instance_path) / "rewards" / r.picture).read_bytes() == PNG
    served = manager_client.get(f"/manage/rewards/{r.id}/picture")
    assert served.status_code == 200 and served.mimetype == "image/png" and served.data == PNG
    # Replacing it with a JPEG removes the old file; removing it clears the field.
    data = reward_form(manager_client, version="1", stock=None)
    data["picture"] = (io.BytesIO(JPEG), "rice.jpeg")
    assert manager_client.post(f"/manage/rewards/{r.id}/edit", data=data, content_type="multipart/form-data").status_code == 303
    new = get(app, Reward, r.id).picture
    assert new.endswith(".jpg") and not (Path(app.instance_path) / "rewards" / r.picture).exists()
    data = reward_form(manager_client, version="2", stock=None, remove_picture="y")
    assert manager_client.post(f"/manage/rewards/{r.id}/edit", data=data).status_code == 303
    assert get(app, Reward, r.id).picture == ""
    assert manager_client.get(f"/manage/rewards/{r.id}/picture").status_code == 404


@pytest.mark.parametrize("content, filename, message", [
    (b"GIF89a" + b"\x00" * 20, "a.png", "只能上传 PNG 或 JPG 图片"),
    (b"<svg onload=alert(1)>", "a.jpg", "只能上传 PNG 或 JPG 图片"),
    (PNG + b"\x00" * 300 * 1024, "big.png", "最大 300 KB"),
])
def test_bad_picture_is_refused(app, manager_client, content, filename, message):
    data = reward_form(manager_client)
    data["picture"] = (io.BytesIO(content), filename)
    resp = manager_client.post("/manage/rewards/new", data=data, content_type="multipart/form-data")
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    assert count(app, Reward) == 0
    from pathlib import Path

    folder = Path(app.instance_path) / "rewards"
    assert not folder.exists() or not any(folder.iterdir())


# --- stock ---------------------------------------------------------------------------------------

def test_restock_and_write_off(app, manager_client, make_reward):
    rid = make_reward(stock=5)
    resp = post(manager_client, f"/manage/rewards/{rid}/restock", **{"restock-quantity": "10", "restock-reason": "超市捐赠"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/manage/rewards/{rid}/edit#stock")
    assert get(app, Reward, rid).stock == 15
    resp = post(manager_client, f"/manage/rewards/{rid}/writeoff", **{"writeoff-quantity": "3", "writeoff-reason": "过期"})
    assert resp.status_code == 303
    assert get(app, Reward, rid).stock == 12
    with app.app_context():
        moves = db.session.execute(select(StockMove.kind, StockMove.delta, StockMove.reason, StockMove.actor)
                                   .where(StockMove.reward_id == rid).order_by(StockMove.at, StockMove.id)).all()
        assert [tuple(m) for m in moves][1:] == [("restock", 10, "超市捐赠", "manager:wang"), ("writeoff", -3, "过期", "manager:wang")]
        actions = db.session.scalars(select(AuditLog.action).where(AuditLog.entity_id == rid)).all()
        assert {"restock", "writeoff"} <= set(actions)
    html = manager_client.get(f"/manage/rewards/{rid}/edit").get_data(as_text=True)
    assert "超市捐赠" in html and "报损" in html and "现有 12 件" in html


@pytest.mark.parametrize("url, data, message", [
    ("restock", {"restock-quantity": "0"}, "数量要在 1 到 100000 之间"),
    ("restock", {"restock-quantity": "abc"}, "请填写一个整数"),
    ("restock", {"restock-quantity": "5", "restock-reason": "x" * 201}, "原因最多 200 个字"),
    ("writeoff", {"writeoff-quantity": "1", "writeoff-reason": ""}, "请写一下原因"),
    ("writeoff", {"writeoff-quantity": "6", "writeoff-reason": "损坏"}, "报损数量不能超过现有库存（5 件）"),
    ("writeoff", {"writeoff-quantity": "-1", "writeoff-reason": "损坏"}, "数量要在 1 到 100000 之间"),
])
def test_bad_stock_change_is_422(app, manager_client, make_reward, url, data, message):
    rid = make_reward(stock=5)
    resp = post(manager_client, f"/manage/rewards/{rid}/{url}", **data)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert get(app, Reward, rid).stock == 5


# --- pickups -------------------------------------------------------------------------------------

def test_hand_over_by_code(app, manager_client, earner, make_reward, redeem):
    rid = make_reward(name="洗衣液", price=10, stock=3)
    red_id, code = redeem(earner[0], rid)
    listing = manager_client.get("/manage/redemptions").get_data(as_text=True)
    assert code in listing and "张三" in listing
    # The scanner types the code (with stray spaces, or full-width digits from an input method).
    typed = " ".join(code[:3]) + " " + "".join(chr(ord(c) + 0xFEE0) for c in code[3:])
    found = post(manager_client, "/manage/redemptions/handover", code=typed)
    assert found.status_code == 200
    html = found.get_data(as_text=True)
    assert "张三" in html and earner[1] in html and "洗衣液" in html and "确认交付" in html
    assert f"/manage/redemptions/{red_id}/handover" in html
    done = post(manager_client, f"/manage/redemptions/{red_id}/handover")
    assert done.status_code == 303 and done.headers["Location"].endswith("/manage/redemptions")
    red = get(app, Redemption, red_id)
    assert (red.status, red.closed_by) == ("handed_over", "manager:wang")
    # A double tap answers calmly and changes nothing.
    again = post(manager_client, f"/manage/redemptions/{red_id}/handover")
    assert again.status_code == 303
    assert "已经交付过了" in manager_client.get("/manage/redemptions").get_data(as_text=True)
    assert balance(app, earner[0]) == 10 and get(app, Reward, rid).stock == 2
    # The code is used up.
    assert post(manager_client, "/manage/redemptions/handover", code=code).status_code == 404


def test_hand_over_by_code_as_htmx_partial(manager_client, earner, make_reward, redeem):
    _red_id, code = redeem(earner[0], make_reward())
    resp = manager_client.post("/manage/redemptions/handover", data={"csrf_token": manager_client.csrf, "code": code},
                               headers=HX)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<html" not in html and "确认交付" in html


@pytest.mark.parametrize("code, status, message", [
    ("999999", 404, "没有找到这个取货码"),
    ("", 422, "请输入 6 位取货码"),
    ("12345", 422, "取货码是 6 位数字"),
    ("abcdef", 422, "取货码是 6 位数字"),
    ("1" * 500, 422, "取货码是 6 位数字"),
    ("<b>234567</b>", 404, "没有找到这个取货码"),
])
def test_wrong_code(manager_client, code, status, message):
    resp = post(manager_client, "/manage/redemptions/handover", code=code)
    assert resp.status_code == status
    html = resp.get_data(as_text=True)
    assert message in html and 'id="code-err"' in html
    assert "<b>2" not in html, "what was typed comes back inert"


def test_cancel_returns_points_and_stock(app, manager_client, earner, make_reward, redeem):
    rid = make_reward(price=15, stock=2)
    red_id, _code = redeem(earner[0], rid)
    assert balance(app, earner[0]) == 5 and get(app, Reward, rid).stock == 1
    missing = post(manager_client, f"/manage/redemptions/{red_id}/cancel", reason="")
    assert missing.status_code == 422 and "请写一下原因" in missing.get_data(as_text=True)
    resp = post(manager_client, f"/manage/redemptions/{red_id}/cancel", reason="志愿者不想要了")
    assert resp.status_code == 303
    assert balance(app, earner[0]) == 20 and get(app, Reward, rid).stock == 2
    red = get(app, Redemption, red_id)
    assert (red.status, red.close_reason) == ("cancelled", "志愿者不想要了")
    with app.app_context():
        kinds = db.session.scalars(select(LedgerTxn.kind).where(LedgerTxn.volunteer_id == earner[0])).all()
        assert sorted(kinds) == ["earn", "redeem", "reverse"]
    html = manager_client.get("/manage/redemptions").get_data(as_text=True)
    assert "已取消" in html and "志愿者不想要了" in html
    # Neither a second cancel nor a hand-over of a cancelled one does anything.
    assert post(manager_client, f"/manage/redemptions/{red_id}/cancel", reason="再取消").status_code == 409
    assert post(manager_client, f"/manage/redemptions/{red_id}/handover").status_code == 409
    assert balance(app, earner[0]) == 20


def test_unknown_redemption_is_404(manager_client):
    assert manager_client.get("/manage/redemptions/not-an-id/handover").status_code == 404
    assert post(manager_client, "/manage/redemptions/00000000-0000-7000-8000-000000000000/cancel",
                reason="x").status_code == 404


def test_unclaimed_redemptions_expire_when_the_page_opens(app, manager_client, earner, make_reward, redeem):
    rid = make_reward(price=10, stock=1)
    red_id, code = redeem(earner[0], rid)
    app.config["FROZEN_NOW"] = FROZEN + timedelta(days=15)  # pickup days: 14
    html = manager_client.get("/manage/redemptions").get_data(as_text=True)
    assert "超过取货期限" in html and "已过期" in html
    assert get(app, Redemption, red_id).status == "expired"
    assert balance(app, earner[0]) == 20 and get(app, Reward, rid).stock == 1
    assert post(manager_client, "/manage/redemptions/handover", code=code).status_code == 404


def test_an_overdue_redemption_is_not_handed_over(app, manager_client, earner, make_reward, redeem):
    red_id, _code = redeem(earner[0], make_reward())
    app.config["FROZEN_NOW"] = FROZEN + timedelta(days=15)
    resp = post(manager_client, f"/manage/redemptions/{red_id}/handover")
    assert resp.status_code == 409 and "超过取货期限" in resp.get_data(as_text=True)
    assert get(app, Redemption, red_id).status == "pending"


# --- balances ------------------------------------------------------------------------------------

def test_bank_totals_agree_with_the_balances(app, manager_client, earner, make_volunteer, past_event, serve,
                                             make_reward, redeem):
    other, _n = make_volunteer("李四", "13800000002")
    serve(other, past_event)                      # both earn 20
    redeem(earner[0], make_reward(price=15))      # 张三 spends 15
    html = manager_client.get("/manage/bank").get_data(as_text=True)
    totals = dict(re.findall(r"<dt>(已发放|已兑换|未使用)</dt><dd>(-?\d+)</dd>", html))
    assert totals == {"已发放": "40", "已兑换": "15", "未使用": "25"}
    assert "账目相符" in html
    with app.app_context():
        assert sum(ledger.station_totals().values()) + sum(ledger.volunteer_balances().values()) == 0
    found = manager_client.get("/manage/bank", query_string={"q": "李"}).get_data(as_text=True)
    assert "李四" in found and "张三" not in found
    assert re.search(r"李四.*?bank-balance\">20<", found, re.S)


# --- adjusting -----------------------------------------------------------------------------------

def test_adjust_once_per_form(app, manager_client, earner):
    form = manager_client.get(f"/manage/bank/adjust?volunteer={earner[1]}").get_data(as_text=True)
    op = re.search(r'name="op" type="hidden" value="([^"]+)"', form).group(1)
    assert f'value="{earner[1]}"' in form
    data = {"volunteer": earner[1], "points": "+15", "reason": "补记 11 月敬老活动", "op": op}
    resp = post(manager_client, "/manage/bank/adjust", **data)
    assert resp.status_code == 303 and f"q={earner[1]}" in resp.headers["Location"]
    assert post(manager_client, "/manage/bank/adjust", **data).status_code == 303  # a double tap
    assert balance(app, earner[0]) == 35
    with app.app_context():
        txn = db.session.get(LedgerTxn, op)
        assert (txn.kind, txn.points, txn.reason, txn.actor) == ("adjust", 15, "补记 11 月敬老活动", "manager:wang")
    # The same form sent again for something else is a conflict, with a fresh key to try again.
    clash = post(manager_client, "/manage/bank/adjust", **{**data, "points": "30"})
    assert clash.status_code == 409 and op not in clash.get_data(as_text=True)
    # A deduction, by mobile number, typed with a full-width minus.
    assert post(manager_client, "/manage/bank/adjust", volunteer="13800000001", points="－５", reason="多记了",
                op="").status_code == 303
    assert balance(app, earner[0]) == 30
    # Both show in the volunteer's passbook as what they are.
    with app.app_context():
        _bal, lines = ledger.passbook(volunteers.get(earner[0]))
        assert [(line.txn.kind, line.amount) for line in lines][:2] == [("adjust", -5), ("adjust", 15)]


@pytest.mark.parametrize("data, status, message", [
    ({"volunteer": "GL-9999"}, 422, "没有找到这位志愿者"),
    ({"volunteer": ""}, 422, "请填写志愿者编号或手机号"),
    ({"volunteer": "x" * 41}, 422, "最多 40 个字符"),
    ({"points": "0"}, 422, "积分不能是 0"),
    ({"points": ""}, 422, "请填写积分数"),
    ({"points": "1.5"}, 422, "请填写一个整数"),
    ({"points": "100001"}, 422, "积分要在 -100000 到 100000 之间"),
    ({"points": "-21"}, 409, "积分不够"),
    ({"reason": ""}, 422, "请写一下原因"),
    ({"reason": "奖励\u202e"}, 422, "特殊字符"),
    ({"reason": "奖" * 201}, 422, "原因最多 200 个字"),
])
def test_bad_adjustment(app, manager_client, earner, data, status, message):
    form = {"volunteer": earner[1], "points": "10", "reason": "奖励", "op": "", **data}
    resp = post(manager_client, "/manage/bank/adjust", **form)
    assert resp.status_code == status
    assert message in resp.get_data(as_text=True)
    assert balance(app, earner[0]) == 20


# --- awarding an event ---------------------------------------------------------------------------

def test_award_everyone_confirmed_once(app, manager_client, earner, make_volunteer, past_event, serve):
    other, _n = make_volunteer("李四", "13800000002")
    serve(other, past_event)
    absent, _m = make_volunteer("王五", "13800000003")
    bank = manager_client.get("/manage/bank").get_data(as_text=True)
    assert past_event.title in bank and "已确认 2 人" in bank
    pick = manager_client.get("/manage/bank/award", query_string={"event_id": past_event.id})
    assert pick.status_code == 303 and pick.headers["Location"].endswith(f"/manage/events/{past_event.id}/award")
    page = manager_client.get(f"/manage/events/{past_event.id}/award").get_data(as_text=True)
    assert "确认奖励 2 人" in page and "参加“社区环境大扫除”的奖励" in page
    resp = post(manager_client, f"/manage/events/{past_event.id}/award", points="5", reason="大扫除表现突出")
    assert resp.status_code == 303
    assert (balance(app, earner[0]), balance(app, other), balance(app, absent)) == (25, 25, 0)
    again = post(manager_client, f"/manage/events/{past_event.id}/award", points="5", reason="大扫除表现突出")
    assert again.status_code == 303
    assert balance(app, earner[0]) == 25
    page = manager_client.get(f"/manage/events/{past_event.id}/award").get_data(as_text=True)
    assert "都已经奖励过了" in page and "已奖励 5 分" in page
    with app.app_context():
        txns = db.session.scalars(select(LedgerTxn).where(LedgerTxn.kind == "adjust")).all()
        assert {(t.event_id, t.points, t.reason) for t in txns} == {(past_event.id, 5, "大扫除表现突出")}


@pytest.mark.parametrize("data, message", [
    ({"points": "0"}, "每人奖励要在 1 到 10000 分之间"),
    ({"points": "-5"}, "每人奖励要在 1 到 10000 分之间"),
    ({"points": "x"}, "请填写一个整数"),
    ({"reason": ""}, "请写一下原因"),
])
def test_bad_award(app, manager_client, earner, past_event, data, message):
    resp = post(manager_client, f"/manage/events/{past_event.id}/award", **{"points": "5", "reason": "奖励", **data})
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    assert balance(app, earner[0]) == 20


def test_award_unknown_event_is_404(manager_client):
    assert post(manager_client, "/manage/events/nope/award", points="5", reason="x").status_code == 404
    resp = manager_client.get("/manage/bank/award", query_string={"event_id": "<script>"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/manage/bank#award")


# --- the ledger and its exports ------------------------------------------------------------------

@pytest.fixture
def busy_ledger(app, earner, make_volunteer, past_event, serve, make_reward, redeem):
    """张三 earns 20, spends 10, gets 3 adjustments; 李四 earns 20 and a formula-looking reason."""
    other, _n = make_volunteer("李四", "13800000002")
    serve(other, past_event)
    redeem(earner[0], make_reward(price=10))
    with app.app_context():
        begin_write()
        v, w = volunteers.get(earner[0]), volunteers.get(other)
        ledger.adjust("manager:wang", v, 7, "补记")
        ledger.adjust("manager:wang", v, -2, "多记")
        ledger.adjust("manager:wang", v, 4, "奖励")
        ledger.adjust("manager:wang", w, 1, "=HYPERLINK(\"http://x\",\"点我\")")
        db.session.commit()
    return earner, other


def screen_totals(html):
    return {k: int(v) for k, v in re.findall(r'data-total="(\w+)">(-?\d+)<', html)}


def test_ledger_page_filters_and_totals(manager_client, busy_ledger):
    everything = manager_client.get("/manage/bank/ledger").get_data(as_text=True)
    assert screen_totals(everything) == {"plus": 52, "minus": 12, "net": 40}
    assert "共 7 笔" in everything
    for label in ("服务积分", "兑换", "调整"):
        assert label in everything
    assert "站长 wang" in everything
    mine = manager_client.get("/manage/bank/ledger", query_string={"q": "张"}).get_data(as_text=True)
    assert screen_totals(mine) == {"plus": 31, "minus": 12, "net": 19}
    adjusts = manager_client.get("/manage/bank/ledger", query_string={"q": busy_ledger[0][1], "kind": "adjust"})
    assert screen_totals(adjusts.get_data(as_text=True)) == {"plus": 11, "minus": 2, "net": 9}
    yesterday = manager_client.get("/manage/bank/ledger", query_string={
        "date_from": str(YESTERDAY.date()), "date_to": str(YESTERDAY.date())}).get_data(as_text=True)
    assert "共 0 笔" in yesterday, "points are booked when recorded (today), not on the event's day"
    today = manager_client.get("/manage/bank/ledger", query_string={"date_from": str(FROZEN.date())})
    assert screen_totals(today.get_data(as_text=True))["net"] == 40
    part = manager_client.get("/manage/bank/ledger", query_string={"kind": "redeem"}, headers=HX)
    assert "<html" not in part.get_data(as_text=True) and screen_totals(part.get_data(as_text=True))["net"] == -10


@pytest.mark.parametrize("args, message", [
    ({"date_from": "2026-12-01", "date_to": "2026-11-01"}, "结束日期不能早于开始日期"),
    ({"date_from": "yesterday"}, "日期格式不对"),
    ({"kind": "steal"}, "请从列表里选择"),
    ({"q": "x" * 51}, "最多 50 个字"),
    ({"q": "\x00"}, "特殊字符"),
])
def test_bad_ledger_filter_is_422(manager_client, busy_ledger, args, message):
    resp = manager_client.get("/manage/bank/ledger", query_string=args)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "查询条件有误" in html
    for path in ("/manage/bank/ledger.csv", "/manage/bank/ledger.xlsx"):
        assert manager_client.get(path, query_string=args).status_code == 422


def test_ledger_sql_wildcards_are_plain_text(manager_client, busy_ledger):
    html = manager_client.get("/manage/bank/ledger", query_string={"q": "%"}).get_data(as_text=True)
    assert "共 0 笔" in html


def test_ledger_pages_of_100(app, manager_client, earner):
    with app.app_context():
        begin_write()
        v = volunteers.get(earner[0])
        for i in range(130):
            ledger.adjust("manager:wang", v, 1, f"第 {i} 次")
        db.session.commit()
    first = manager_client.get("/manage/bank/ledger").get_data(as_text=True)
    assert "第 1 页，共 2 页" in first and first.count("<tr>") == 101  # the header row and 100
    second = manager_client.get("/manage/bank/ledger", query_string={"page": 2}).get_data(as_text=True)
    assert second.count("<tr>") == 1 + 31
    assert screen_totals(first) == screen_totals(second) == {"plus": 150, "minus": 0, "net": 150}
    assert "第 2 页，共 2 页" in manager_client.get("/manage/bank/ledger?page=99").get_data(as_text=True)
    assert manager_client.get("/manage/bank/ledger?page=x").status_code == 200


@pytest.mark.parametrize("args", [{}, {"q": "张三"}, {"kind": "adjust"}, {"kind": "earn", "date_from": "2026-11-30"}])
def test_csv_export_parses_back_and_its_totals_match_the_page(manager_client, busy_ledger, args):
    page = screen_totals(manager_client.get("/manage/bank/ledger", query_string=args).get_data(as_text=True))
    resp = manager_client.get("/manage/bank/ledger.csv", query_string=args)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="ledger-STATION-20261130\.csv"', resp.headers["Content-Disposition"])
    assert resp.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[:6] == ["时间", "志愿者编号", "姓名", "类型", "积分", "摘要"]
    points = [int(r[4]) for r in body]
    assert total[0] == "合计" and int(total[4]) == sum(points) == page["net"]
    assert sum(p for p in points if p > 0) == page["plus"] and -sum(p for p in points if p < 0) == page["minus"]
    assert total[3] == f"{len(body)} 笔"


def test_csv_export_makes_formulas_inert(manager_client, busy_ledger):
    text = manager_client.get("/manage/bank/ledger.csv").data.decode("utf-8-sig")
    reasons = [r[5] for r in csv.reader(io.StringIO(text))]
    assert "'=HYPERLINK(\"http://x\",\"点我\")" in reasons
    assert not any(r.startswith(("=", "+", "-", "@")) for r in reasons)


@pytest.mark.parametrize("args", [{}, {"q": "李四"}, {"kind": "redeem"}])
def test_xlsx_export_parses_back_and_its_totals_match_the_page(manager_client, busy_ledger, args):
    page = screen_totals(manager_client.get("/manage/bank/ledger", query_string=args).get_data(as_text=True))
    resp = manager_client.get("/manage/bank/ledger.xlsx", query_string=args)
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="ledger-STATION-20261130.xlsx"'
    ws = load_workbook(io.BytesIO(resp.data)).active
    rows = list(ws.iter_rows(values_only=True))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[:5] == ("时间", "志愿者编号", "姓名", "类型", "积分")
    assert all(isinstance(r[4], int) for r in body)
    assert total[0] == "合计" and total[4] == sum(r[4] for r in body) == page["net"]
    assert ws.column_dimensions["F"].width >= 30 and ws.freeze_panes == "A2"
    for r in body:
        assert ws.cell(row=body.index(r) + 2, column=6).data_type == "s"  # text, never a formula


# --- the rules -----------------------------------------------------------------------------------

def test_settings_saved_and_audited(app, manager_client):
    page = manager_client.get("/manage/bank/settings").get_data(as_text=True)
    assert "1 小时" in page and 'value="10"' in page
    resp = post(manager_client, "/manage/bank/settings", points_per_hour="12", points_unit_minutes="15",
                daily_points_cap="50", pickup_days="7")
    assert resp.status_code == 303
    with app.app_context():
        st = events.get_station()
        assert (st.points_per_hour, st.points_unit_minutes, st.daily_points_cap, st.pickup_days) == (12, 15, 50, 7)
        row = db.session.scalar(select(AuditLog).where(AuditLog.action == "update_bank"))
        assert row.actor == "manager:wang" and '"points_per_hour": [10, 12]' in row.detail
        assert ledger.points_for(60) == 12
    # Saving the same values again writes no audit row.
    post(manager_client, "/manage/bank/settings", points_per_hour="12", points_unit_minutes="15",
         daily_points_cap="50", pickup_days="7")
    assert count(app, AuditLog, AuditLog.action == "update_bank") == 1


@pytest.mark.parametrize("field, value, message", [
    ("points_per_hour", "-1", "要在 0 到 1000 之间"),
    ("points_per_hour", "1001", "要在 0 到 1000 之间"),
    ("points_per_hour", "ten", "请填写一个整数"),
    ("points_unit_minutes", "45", "请从列表里选择"),
    ("points_unit_minutes", "", "请从列表里选择"),
    ("daily_points_cap", "-5", "要在 0 到 100000 之间"),
    ("pickup_days", "0", "要在 1 到 90 天之间"),
    ("pickup_days", "365", "要在 1 到 90 天之间"),
])
def test_bad_settings_are_422(app, manager_client, field, value, message):
    data = {"points_per_hour": "10", "points_unit_minutes": "30", "daily_points_cap": "0", "pickup_days": "14",
            field: value}
    resp = post(manager_client, "/manage/bank/settings", **data)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True) and f'id="{field}-err"' in resp.get_data(as_text=True)
    with app.app_context():
        st = events.get_station()
        assert (st.points_per_hour, st.points_unit_minutes, st.pickup_days) == (10, 30, 14)


def test_bank_settings_domain_refuses_out_of_range(ctx):
    from kiosk import bank_settings
    from kiosk.errors import InvalidInput

    begin_write()
    for kw in ({"points_unit_minutes": 45}, {"points_per_hour": -1}, {"pickup_days": 0}, {"daily_points_cap": True}):
        args = {"points_per_hour": 10, "points_unit_minutes": 30, "daily_points_cap": 0, "pickup_days": 14, **kw}
        with pytest.raises(InvalidInput) as e:
            bank_settings.update_bank_settings("test", **args)
        assert e.value.field == next(iter(kw))
    db.session.rollback()


def test_volunteer_named_in_the_ledger_is_a_real_one(app, busy_ledger):
    """Every transaction the ledger page lists joins to a volunteer (none dropped by the join)."""
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTxn)) == db.session.scalar(
            select(func.count()).select_from(LedgerTxn).join(Volunteer, LedgerTxn.volunteer_id == Volunteer.id))


# --- whatever is typed: a 4xx with a sentence, never a 500 ---------------------------------------

NASTY = st.one_of(
    st.text(max_size=300),
    st.sampled_from([
        "", " ", "\x00", "\u202e", "<script>alert(1)</script>", "' OR 1=1 --", "9" * 400, "-1", "1e9", "0",
        "2026-13-45", "２０２６-１１-３０", "－５", "🙂" * 60, "NaN", "None", "%", "_", "\\",
    ]),
)
NEVER_500 = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def fields(*names):
    return st.fixed_dictionaries({}, optional={n: NASTY for n in names})


@NEVER_500
@given(values=fields("name", "description", "price_points", "stock", "monthly_limit", "min_stars", "available_from",
                     "available_until", "low_stock", "active", "remove_picture", "version"))
def test_reward_form_never_500(manager_client, values):
    resp = manager_client.post("/manage/rewards/new", data={"csrf_token": manager_client.csrf, **values})
    assert resp.status_code in (303, 422), resp.status_code


@NEVER_500
@given(values=fields("volunteer", "points", "reason", "op"))
def test_adjust_form_never_500(manager_client, values):
    resp = manager_client.post("/manage/bank/adjust", data={"csrf_token": manager_client.csrf, **values})
    assert resp.status_code in (303, 404, 409, 422), resp.status_code


@NEVER_500
@given(values=fields("points_per_hour", "points_unit_minutes", "daily_points_cap", "pickup_days"))
def test_settings_form_never_500(manager_client, values):
    resp = manager_client.post("/manage/bank/settings", data={"csrf_token": manager_client.csrf, **values})
    assert resp.status_code in (303, 422), resp.status_code


@NEVER_500
@given(values=fields("q", "kind", "date_from", "date_to", "page"), code=NASTY)
def test_ledger_filter_and_pickup_code_never_500(manager_client, values, code):
    for path in ("/manage/bank/ledger", "/manage/bank/ledger.csv", "/manage/bank"):
        assert manager_client.get(path, query_string=values).status_code in (200, 422)
    resp = manager_client.post("/manage/redemptions/handover", data={"csrf_token": manager_client.csrf, "code": code})
    assert resp.status_code in (404, 422), resp.status_code
