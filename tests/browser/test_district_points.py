"""A volunteer whose points are held at another station, at the kiosk: what is available here,
the district total as of the night sync, and 把我的积分转到本站. Real Chromium, real waitress."""

import json
import uuid

from playwright.sync_api import expect
from sqlalchemy import func, select

from kiosk import events, inbox, ledger, sync, volunteers
from kiosk.db import begin_write, db
from kiosk.models import AuditLog, ChangeLog
from tests.browser.conftest import shot
from tests.browser.test_checkin import KIOSK, card_and_pin

WHO = ("13805910001", "林秀英")


def local_points(live_server, mobile) -> tuple[str, int]:
    with live_server.app.app_context():
        v = volunteers.find(mobile)
        out = v.id, ledger.balance(v)
        db.session.remove()
    return out


def night_batch(live_server, volunteer_id, issued, allowance, total):
    """What the district sends at night: this volunteer's allowance here and the district total."""
    with live_server.app.app_context():
        doc = {"schema_version": 1, "batch_id": str(uuid.uuid4()), "issued": issued, "kind": "full",
               "station": events.get_station().code, "epoch": sync.current_epoch(),
               "mark_seq": db.session.scalar(select(func.max(ChangeLog.seq))),
               "as_of": "2026-11-29T18:31:00+00:00",
               "balances": [{"volunteer_id": volunteer_id, "allowance": allowance, "total": total,
                             "minutes_total": 0, "minutes_here": 0}]}
        begin_write()
        inbox.receive(json.dumps(doc).encode())
        db.session.commit()
        db.session.remove()


def test_points_held_elsewhere_and_bringing_them_here(page, live_server, watch):
    vid, here = local_points(live_server, WHO[0])
    total = here + 120  # she also earned 120 at another station, where she was last active
    night_batch(live_server, vid, issued=1, allowance=0, total=total)
    page.set_viewport_size(KIOSK)
    page.goto(live_server())
    card_and_pin(page, live_server, *WHO)
    page.locator(".me-nav").get_by_role("link", name="积分兑换").click()
    expect(page.locator(".balance b")).to_have_text("0")
    expect(page.locator(".balance")).to_contain_text("本站可用积分")
    sub = page.locator(".balance-sub")
    expect(sub).to_contain_text(f"全区总积分（截至 2026-11-30 02:31 夜间同步）：{total} 分")
    expect(sub).to_contain_text("另有积分存在其他站点")
    expect(page.locator(".reward .why").first).to_contain_text("本站现在可用 0 分")
    shot(page, "district-points-elsewhere")

    page.get_by_role("button", name="把我的积分转到本站（明天可用）").click()
    expect(page.locator(".me .flash-success")).to_contain_text("今晚同步后，您的积分会转到本站")
    expect(page.get_by_role("button", name="把我的积分转到本站（明天可用）")).to_have_count(0)
    assert page.url.endswith("/me/rewards")
    shot(page, "district-points-asked")
    with live_server.app.app_context():
        asked = db.session.scalars(select(AuditLog).where(AuditLog.action == "points_here")).all()
        assert [a.entity_id for a in asked] == [vid]
        db.session.remove()

    # the next night the district allows everything here
    night_batch(live_server, vid, issued=2, allowance=total, total=total)
    page.reload()
    expect(page.locator(".balance b")).to_have_text(str(total))
    expect(page.locator(".balance-sub")).not_to_contain_text("另有积分存在其他站点")
    expect(page.get_by_role("button", name="把我的积分转到本站（明天可用）")).to_have_count(0)
    page.locator(".me-nav").get_by_role("link", name="我的存折").click()
    expect(page.locator(".balance b")).to_have_text(str(total))
    # the lines are this station's book, with its own running balance
    expect(page.locator(".passbook tbody tr").first.locator("td").nth(4)).to_have_text(str(here))
    shot(page, "district-points-here")
    assert watch["errors"] == [] and watch["offsite"] == []
