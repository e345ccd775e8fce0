"""The station's inbox (kiosk/inbox.py): the district's nightly batch, applied once, and what a
volunteer may spend here with it (available here = allowance + this station's own since)."""

import gzip
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kiosk import checkins, events, inbox, ledger, rewards, signing, sync, volunteers
from kiosk.db import begin_write, db
from kiosk.errors import DomainError
from kiosk.models import Allowance, AuditLog, ChangeLog, Event, InboxBatch, Volunteer
from tests.conftest import FROZEN, csrf_token, using

NOW_UNIX = 1_800_000_005.0
PIN = "258369"
VISITOR = {"id": str(uuid.uuid4()), "number": "GL-WQ-0007", "name": "陈阿姨", "mobile": "13905919999",
           "status": "active", "home_station": "GL-WQ"}


def batch(issued=1, kind="full", mark_seq=None, **parts) -> dict:
    """A district batch for the station of the current app context."""
    doc = {"schema_version": 1, "batch_id": str(uuid.uuid4()), "issued": issued, "kind": kind,
           "station": events.get_station().code, "epoch": sync.current_epoch(),
           "mark_seq": db.session.scalar(select(func.max(ChangeLog.seq))) or 0 if mark_seq is None else mark_seq,
           "as_of": "2026-11-29T18:30:00+00:00", "balances": []}
    doc.update(parts)
    return doc


def receive(doc: dict, raw: bytes | None = None):
    begin_write()
    try:
        out = inbox.receive(raw if raw is not None else json.dumps(doc).encode())
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return out


def bal(vid, allowance, total, minutes_total=0, minutes_here=0):
    return {"volunteer_id": vid, "allowance": allowance, "total": total, "minutes_total": minutes_total,
            "minutes_here": minutes_here}


@pytest.fixture
def station(ctx):
    begin_write()
    events.ensure_station("GL-SFQX", "三坊七巷社区新时代文明实践站")
    events.get_station().code = "GL-SFQX"
    db.session.commit()
    return ctx


def local_volunteer(n=1):
    begin_write()
    v = volunteers.register("test", f"林{n}", f"1380591{n:04d}", PIN)
    volunteers.set_status("test", v, "active")
    db.session.commit()
    return v


def reward(price=50, stock=5):
    begin_write()
    r = rewards.create_reward("test", rewards.RewardData(name=f"大米{price}", price_points=price), stock=stock)
    db.session.commit()
    return r


def served_two_hours(v):
    """A two-hour event this morning, signed in and out at its times (20 points by the defaults)."""
    start = FROZEN.replace(hour=8)
    begin_write()
    e = events.create_event("test", events.EventData(title="义诊", starts_at=start, ends_at=start + timedelta(hours=2)))
    db.session.commit()
    begin_write()
    checkins.check_in(v, e, "kiosk", at=start)
    checkins.check_out(v, e, "kiosk", at=start + timedelta(hours=2))
    db.session.commit()
    return e, start


def earn(v, points, reason="服务"):
    begin_write()
    ledger.post("adjust", v, points, "test", reason)
    db.session.commit()


# --- applying a batch -------------------------------------------------------------------------

def test_a_full_batch_adds_visitors_events_thresholds_and_balances(station):
    v = local_volunteer()
    ev_id = str(uuid.uuid4())
    district_event = {"id": ev_id, "title": "全区志愿服务日", "starts_at": "2026-12-05T09:00",
                      "ends_at": "2026-12-05T11:30", "place": "区文明实践中心", "category": "志愿服务"}
    doc = batch(thresholds=[50, 150, 300], events=[district_event], roster=[VISITOR],
                balances=[bal(v.id, 0, 0), bal(VISITOR["id"], 80, 80, 600, 0)])
    result, replayed = receive(doc)
    assert not replayed
    assert result["roster"] == {"added": 1, "updated": 0, "conflicts": []}
    assert result["events"]["added"] == 1 and result["thresholds"] is True and result["balances"] == 2
    visitor = db.session.get(Volunteer, VISITOR["id"])
    assert (visitor.number, visitor.home_station, visitor.status, visitor.pin_hash) == ("GL-WQ-0007", "GL-WQ", "active", "")
    ev = db.session.get(Event, ev_id)
    assert ev.origin == "district" and ev.category.name == "志愿服务"
    assert events.get_station().star_thresholds == "50,150,300"
    # stars count the hours at other stations: 10 h elsewhere reach the first threshold? no: 50 h
    assert checkins.hours(visitor).total_minutes == 600
    st = inbox.standing(visitor)
    assert (st.here, st.total, st.as_of) == (80, 80, "2026-11-29T18:30:00+00:00")
    # the batch itself is exported, so the district knows which one is in force here
    logged = db.session.scalar(select(ChangeLog).where(ChangeLog.entity == "inbox_batch"))
    assert logged.entity_id == doc["batch_id"] and "result" not in json.loads(logged.data)
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.actor == "district")) >= 4


def test_the_same_batch_twice_answers_the_same_and_changes_nothing(station):
    doc = batch(roster=[VISITOR], balances=[bal(VISITOR["id"], 10, 10)])
    first, _ = receive(doc)
    rows = db.session.scalar(select(func.count()).select_from(ChangeLog))
    again, replayed = receive(doc)
    assert replayed and again == first
    assert db.session.scalar(select(func.count()).select_from(ChangeLog)) == rows


def test_the_same_id_with_another_body_is_a_conflict(station):
    doc = batch(balances=[])
    receive(doc)
    doc["as_of"] = "2026-12-01T02:30:00"
    with pytest.raises(inbox.BatchConflict):
        receive(doc)


def test_an_older_batch_than_the_one_in_force_is_refused(station):
    receive(batch(issued=5))
    with pytest.raises(inbox.StaleBatch):
        receive(batch(issued=4))
    with pytest.raises(inbox.StaleBatch):
        receive(batch(issued=5))  # a different id with the same number


@pytest.mark.parametrize("change, error", [
    ({"station": "GL-OTHER"}, inbox.BadBatch),
    ({"epoch": "0" * 32}, sync.EpochChanged),
    ({"mark_seq": 10**9}, inbox.BadBatch),
    ({"schema_version": 2}, inbox.BadBatch),
    ({"kind": "partial"}, inbox.BadBatch),
    ({"batch_id": "not-a-uuid"}, inbox.BadBatch),
    ({"issued": 0}, inbox.BadBatch),
    ({"issued": "1"}, inbox.BadBatch),
    ({"thresholds": [300, 100]}, inbox.BadBatch),
    ({"balances": [{"volunteer_id": str(uuid.uuid4()), "allowance": -1, "total": 0, "minutes_total": 0,
                    "minutes_here": 0}]}, inbox.BadBatch),
    ({"balances": [bal("11111111-1111-1111-1111-111111111111", 1, 1)] * 2}, inbox.BadBatch),
    ({"roster": [dict(VISITOR, mobile="12345")]}, inbox.BadBatch),
    ({"roster": [dict(VISITOR, name="\u202e坏人")]}, inbox.BadBatch),
    ({"roster": [dict(VISITOR, status="retired")]}, inbox.BadBatch),
    ({"events": [{"id": str(uuid.uuid4()), "title": "x", "starts_at": "2026-12-05T11:00",
                  "ends_at": "2026-12-05T09:00"}]}, inbox.BadBatch),
    ({"kind": "topup", "roster": []}, inbox.BadBatch),
])
def test_bad_batches_are_refused_and_change_nothing(station, change, error):
    before = db.session.scalar(select(func.count()).select_from(ChangeLog))
    with pytest.raises(error):
        receive(batch(**change))
    assert db.session.scalar(select(func.count()).select_from(ChangeLog)) == before
    assert inbox.in_force() is None


def test_a_roster_entry_clashing_with_a_local_volunteer_is_skipped_and_reported(station):
    mine = local_volunteer()
    twin = dict(VISITOR, id=str(uuid.uuid4()), number="GL-WQ-0011", mobile=mine.mobile)
    result, _ = receive(batch(roster=[twin, VISITOR]))
    assert result["roster"]["added"] == 1
    assert result["roster"]["conflicts"] == [{"id": twin["id"], "number": twin["number"], "home_station": "GL-WQ",
                                              "field": "mobile", "local_number": mine.number}]
    # this station's own volunteers are never overwritten by the roster
    receive(batch(issued=2, roster=[dict(VISITOR, id=mine.id, number=mine.number, mobile=mine.mobile,
                                         name="改名", home_station="GL-SFQX")]))
    assert db.session.get(Volunteer, mine.id).name == mine.name


def test_roster_updates_follow_the_home_station(station):
    receive(batch(roster=[VISITOR]))
    receive(batch(issued=2, roster=[dict(VISITOR, name="陈秀英", status="suspended")]))
    v = db.session.get(Volunteer, VISITOR["id"])
    assert (v.name, v.status) == ("陈秀英", "suspended")


def test_district_events_are_read_only_here_and_withdrawn_ones_are_cancelled(station):
    ev = {"id": str(uuid.uuid4()), "title": "全区志愿服务日", "starts_at": "2026-12-05T09:00",
          "ends_at": "2026-12-05T11:30"}
    receive(batch(events=[ev]))
    e = db.session.get(Event, ev["id"])
    begin_write()
    with pytest.raises(events.DistrictEvent):
        events.cancel_event("manager:wang", e, "不办了")
    db.session.rollback()
    receive(batch(issued=2, events=[dict(ev, title="全区志愿服务日（改期）")]))
    assert db.session.get(Event, ev["id"]).title == "全区志愿服务日（改期）"
    receive(batch(issued=3, events=[]))
    e = db.session.get(Event, ev["id"])
    assert e.cancelled and e.cancel_reason == "区里已取消这个活动"
    # a topup (events: null) leaves them alone
    receive(batch(issued=4, kind="topup"))
    assert db.session.get(Event, ev["id"]).cancelled


# --- available here ---------------------------------------------------------------------------

def test_without_a_snapshot_the_balance_here_is_spendable(station):
    v = local_volunteer()
    earn(v, 120)
    st = inbox.standing(v)
    assert (st.here, st.total, st.elsewhere) == (120, None, False)


def test_available_here_is_the_allowance_plus_this_stations_points_since(station):
    v = local_volunteer()
    earn(v, 100)  # counted in the snapshot below (the mark is after it)
    # the district: 100 earned here + 200 at another station; all 300 allowed here
    receive(batch(balances=[bal(v.id, 300, 300)]))
    assert ledger.spendable(v) == 300
    earn(v, 30)  # earned here after the snapshot: spendable at once
    st = inbox.standing(v)
    assert (st.here, st.total, st.since) == (330, 300, 30)
    r = reward(price=320)
    begin_write()
    rewards.redeem(v, r, None)
    db.session.commit()
    assert ledger.spendable(v) == 10
    assert ledger.balance(v) == 100 + 30 - 320  # this station's own postings: negative is fine
    begin_write()
    with pytest.raises(ledger.InsufficientPoints):
        rewards.redeem(v, r, None)
    db.session.rollback()


def test_points_held_at_another_station_are_not_spendable_here(station):
    v = local_volunteer()
    earn(v, 100)
    # the district allowed this volunteer's points to the station they used last (another one)
    receive(batch(balances=[bal(v.id, 0, 100)]))
    st = inbox.standing(v)
    assert (st.here, st.total, st.elsewhere) == (0, 100, True)
    r = reward(price=50)
    begin_write()
    with pytest.raises(ledger.InsufficientPoints):
        rewards.redeem(v, r, None)
    db.session.rollback()
    begin_write()
    with pytest.raises(ledger.InsufficientPoints):
        ledger.adjust("manager:wang", v, -10, "扣分")
    db.session.rollback()


def test_the_mark_counts_this_stations_points_up_to_the_district_seq(station):
    v = local_volunteer()
    earn(v, 10)
    mark = db.session.scalar(select(func.max(ChangeLog.seq)))
    earn(v, 20)  # after the district's pull: not in its snapshot
    receive(batch(mark_seq=mark, balances=[bal(v.id, 10, 10)]))
    assert inbox.standing(v).here == 10 + 20
    earn(v, 5)
    # the next night's batch counts up to now
    receive(batch(issued=2, balances=[bal(v.id, 35, 35)]))
    assert inbox.standing(v).here == 35


def test_a_volunteer_missing_from_the_batch_has_only_what_they_earned_here_since(station):
    v = local_volunteer()
    earn(v, 40)
    receive(batch(balances=[]))
    assert inbox.standing(v).here == 0
    earn(v, 15)
    assert inbox.standing(v).here == 15


# --- through HTTP and the screens -------------------------------------------------------------

def signed_post(client, key, path, body: bytes, headers=None):
    h = signing.signed_headers(key, "POST", path, body, now=NOW_UNIX)
    h.update(headers or {})
    return client.post(path, data=body, headers={**h, "Content-Type": "application/json"})


@pytest.fixture
def key(app):
    with using(app):
        begin_write()
        events.ensure_station("GL-SFQX", "三坊七巷社区新时代文明实践站")
        events.get_station().code = "GL-SFQX"
        secret = sync.rotate_key("test")
        db.session.commit()
        return secret


def test_the_inbox_over_http(app, client, key):
    with app.app_context():
        doc = batch(roster=[VISITOR], balances=[bal(VISITOR["id"], 70, 70)])
    body = json.dumps(doc, ensure_ascii=False).encode()
    resp = signed_post(client, key, "/api/v1/inbox", body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["roster"]["added"] == 1 and resp.json["replayed"] is False
    again = signed_post(client, key, "/api/v1/inbox", body)
    assert again.status_code == 200 and again.json["replayed"] is True
    # another body under the same id
    other = json.dumps(dict(doc, as_of="2026-12-01T02:30:00")).encode()
    resp = signed_post(client, key, "/api/v1/inbox", other)
    assert resp.status_code == 409 and resp.mimetype == "application/problem+json"
    # gzip bodies (signed as sent)
    with app.app_context():
        doc2 = batch(issued=2, balances=[bal(VISITOR["id"], 71, 71)])
    resp = signed_post(client, key, "/api/v1/inbox", gzip.compress(json.dumps(doc2).encode()),
                       {"Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    # unsigned, wrongly signed, garbage
    assert client.post("/api/v1/inbox", data=body).status_code == 401
    assert signed_post(client, "wrong-key", "/api/v1/inbox", body).status_code == 401
    assert signed_post(client, key, "/api/v1/inbox", b"{not json").status_code == 400
    assert signed_post(client, key, "/api/v1/inbox", gzip.compress(b"x" * 100)[:20],
                       {"Content-Encoding": "gzip"}).status_code == 400
    assert signed_post(client, key, "/api/v1/inbox", body, {"Content-Encoding": "br"}).status_code == 400
    with app.app_context():
        assert inbox.standing(VISITOR["id"]).here == 71


def test_a_gzip_bomb_is_refused(app, client, key):
    bomb = gzip.compress(b"[" + b" " * (inbox.MAX_BYTES + 10) + b"]")
    resp = signed_post(client, key, "/api/v1/inbox", bomb, {"Content-Encoding": "gzip"})
    assert resp.status_code == 400


def test_a_visitor_needs_a_pin_set_here_before_signing_in(app, client, key, manager_client):
    with app.app_context():
        receive(batch(roster=[VISITOR]))
    token = csrf_token(client, "/v/identify")
    resp = client.post("/v/identify", data={"who": VISITOR["mobile"], "pin": PIN, "csrf_token": token})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 403 and "第一次在本站使用" in page and "站长" in page
    # the manager sees where they come from and sets a PIN here
    page = manager_client.get(f"/manage/volunteers/{VISITOR['id']}/edit").get_data(as_text=True)
    assert "GL-WQ" in page and "设置本站密码" in page
    resp = manager_client.post(f"/manage/volunteers/{VISITOR['id']}/pin",
                               data={"new_pin": "741852", "new_pin2": "741852", "csrf_token": manager_client.csrf})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    manager_client.post("/manage/logout", data={"csrf_token": manager_client.csrf})
    token = csrf_token(client, "/v/identify")
    resp = client.post("/v/identify", data={"who": VISITOR["number"], "pin": "741852", "csrf_token": token})
    assert resp.status_code == 303


def test_the_kiosk_shows_available_here_and_the_district_total(app, client, key):
    with app.app_context():
        v = local_volunteer()
        earn(v, 100)
        receive(batch(balances=[bal(v.id, 60, 250)]))
        vid = v.id
    with client.session_transaction() as s:
        import time

        s["kv"] = {"v": vid, "t": int(time.time())}
    page = client.get("/me/rewards").get_data(as_text=True)
    assert "本站可用积分" in page and "<b>60</b>" in page
    assert "全区总积分（截至 2026-11-30 02:30 夜间同步）：250 分" in page
    assert "另有积分存在其他站点" in page
    page = client.get("/me/passbook").get_data(as_text=True)
    assert "本站可用积分" in page


def test_a_district_event_cannot_be_edited_by_the_manager(app, manager_client, key):
    ev = {"id": str(uuid.uuid4()), "title": "全区志愿服务日", "starts_at": "2026-12-05T09:00",
          "ends_at": "2026-12-05T11:30"}
    with app.app_context():
        receive(batch(events=[ev]))
    page = manager_client.get("/manage/").get_data(as_text=True)
    assert "区级活动" in page and "区里发布，本站不能修改" in page
    resp = manager_client.get(f"/manage/events/{ev['id']}/edit")
    assert resp.status_code == 409 and "区里统一发布" in resp.get_data(as_text=True)
    resp = manager_client.post(f"/manage/events/{ev['id']}/unpublish", data={"csrf_token": manager_client.csrf})
    assert resp.status_code == 409


def test_hours_elsewhere_count_for_stars(station):
    v = local_volunteer()
    receive(batch(thresholds=[10, 20], balances=[bal(v.id, 0, 0, minutes_total=15 * 60, minutes_here=0)]))
    h = checkins.hours(v)
    assert (h.total_minutes, h.stars) == (900, 1)


def test_clawback_of_a_corrected_earn_is_limited_to_what_is_available_here(station):
    v = local_volunteer()
    e, start = served_two_hours(v)
    assert ledger.balance(v) == 20
    # the district moved these 20 points to another station, where they may be spent
    receive(batch(balances=[bal(v.id, 0, 20)]))
    c = checkins.status_of(v, e)
    begin_write()
    checkins.correct("manager:wang", c, start, start + timedelta(minutes=30), "签退时间记错了")
    db.session.commit()
    # 30 minutes earn 5, but nothing can be taken back here: the 20 may be spent elsewhere
    assert ledger.balance(v) == 20 and inbox.standing(v).here == 0


def test_without_a_snapshot_a_correction_takes_back_the_points(station):
    v = local_volunteer()
    e, start = served_two_hours(v)
    begin_write()
    checkins.correct("manager:wang", checkins.status_of(v, e), start, start + timedelta(minutes=30), "签退时间记错了")
    db.session.commit()
    assert ledger.balance(v) == 5


def test_the_manager_sees_what_the_district_sent(app, manager_client, key):
    mine_mobile = "13805910001"
    with app.app_context():
        begin_write()
        volunteers.register("test", "林秀英", mine_mobile, PIN)
        db.session.commit()
        twin = dict(VISITOR, id=str(uuid.uuid4()), number="GL-WQ-0099", mobile=mine_mobile)
        receive(batch(issued=7, roster=[VISITOR, twin], balances=[bal(VISITOR["id"], 5, 5)]))
    page = manager_client.get("/manage/sync").get_data(as_text=True)
    assert "第 7 批" in page and "新增 1，更新 0" in page and "1 人" in page
    assert "GL-WQ-0099（GL-WQ 站）的手机号和本站的 GL-SFQX-" in page


def test_a_volunteer_asks_for_their_points_here(app, client, key):
    with app.app_context():
        v = local_volunteer()
        receive(batch(balances=[bal(v.id, 0, 90)]))
        vid = v.id
    import time

    with client.session_transaction() as s:
        s["kv"] = {"v": vid, "t": int(time.time())}
    page = client.get("/me/rewards").get_data(as_text=True)
    assert "把我的积分转到本站" in page
    token = csrf_token(client, "/me/rewards")
    resp = client.post("/me/points-here", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and resp.headers["HX-Replace-Url"] == "/me/rewards"
    assert "今晚同步后，您的积分会转到本站" in resp.get_data(as_text=True)
    client.post("/me/points-here", data={"csrf_token": token})  # twice: still one request
    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.action == "points_here")).all()
        assert [(r.entity_id, r.actor) for r in rows] == [(vid, f"volunteer:{volunteers.get(vid).number}")]
        # exported, for the district to read
        assert db.session.scalar(select(func.count()).select_from(ChangeLog).where(
            ChangeLog.entity == "audit_log", ChangeLog.entity_id == rows[0].id)) == 1


def test_a_batch_that_would_overdraw_someone_is_refused(station):
    """Spent here after the district's snapshot: a batch whose allowance doesn't cover it would
    leave them below zero here; the batch in force (which covers it) stays."""
    v = local_volunteer()
    earn(v, 50)
    receive(batch(balances=[bal(v.id, 50, 50)]))
    mark = db.session.scalar(select(func.max(ChangeLog.seq)))  # the district pulls here...
    r = reward(price=50)
    begin_write()
    rewards.redeem(v, r, None)  # ...then she spends it here before the push arrives
    db.session.commit()
    with pytest.raises(inbox.WouldOverdraw):
        receive(batch(issued=2, mark_seq=mark, balances=[bal(v.id, 0, 50)]))  # it moved her 50 elsewhere
    assert inbox.in_force().issued == 1 and inbox.standing(v).here == 0
    receive(batch(issued=3, mark_seq=mark, balances=[bal(v.id, 50, 50)]))  # a batch that covers it
    assert inbox.standing(v).here == 0


def test_duplicate_ids_in_a_batch_are_refused(station):
    with pytest.raises(inbox.BadBatch):
        receive(batch(roster=[VISITOR, VISITOR]))
    ev = {"id": str(uuid.uuid4()), "title": "x", "starts_at": "2026-12-05T09:00", "ends_at": "2026-12-05T10:00"}
    with pytest.raises(inbox.BadBatch):
        receive(batch(events=[ev, ev]))
    with pytest.raises(inbox.BadBatch):
        receive(batch(roster=[VISITOR, dict(VISITOR, id=str(uuid.uuid4()), number="GL-WQ-0008")]))  # same mobile


def test_a_correction_never_raises_points_when_little_is_available_here(station):
    v = local_volunteer()
    e, start = served_two_hours(v)
    receive(batch(balances=[bal(v.id, 0, 20)]))  # the 20 are held elsewhere
    begin_write()
    checkins.correct("manager:wang", checkins.status_of(v, e), start, start + timedelta(minutes=30), "记错了")
    db.session.commit()
    assert ledger.balance(v) == 20 and inbox.standing(v).here == 0


def test_roster_statuses_and_a_local_suspension(station):
    receive(batch(roster=[VISITOR]))
    v = db.session.get(Volunteer, VISITOR["id"])
    begin_write()
    volunteers.set_status("manager:wang", v, "suspended", "在本站违规")
    db.session.commit()
    receive(batch(issued=2, roster=[VISITOR]))  # home still says active: the local suspension stands
    assert db.session.get(Volunteer, VISITOR["id"]).status == "suspended"
    begin_write()
    volunteers.set_status("manager:wang", db.session.get(Volunteer, VISITOR["id"]), "active")
    db.session.commit()
    receive(batch(issued=3, roster=[dict(VISITOR, status="pending")]))  # home sends them back to review
    assert db.session.get(Volunteer, VISITOR["id"]).status == "pending"
    receive(batch(issued=4, roster=[VISITOR]))
    assert db.session.get(Volunteer, VISITOR["id"]).status == "active"


def test_a_visitors_name_and_mobile_follow_the_home_station(station):
    receive(batch(roster=[VISITOR]))
    v = db.session.get(Volunteer, VISITOR["id"])
    begin_write()
    with pytest.raises(volunteers.VisitingDetails):
        volunteers.update("manager:wang", v, "改个名", VISITOR["mobile"], [])
    db.session.rollback()
    begin_write()
    volunteers.update("manager:wang", db.session.get(Volunteer, VISITOR["id"]), VISITOR["name"], VISITOR["mobile"],
                      ["助老服务队"])  # teams are this station's own business
    db.session.commit()


def test_the_managers_bank_page_shows_what_is_available_here(app, manager_client, key):
    with app.app_context():
        v = local_volunteer()
        earn(v, 80)
        number = v.number
    page = manager_client.get("/manage/bank").get_data(as_text=True)
    assert "本站可用" not in page  # no district snapshot yet: one figure
    with app.app_context():
        receive(batch(balances=[bal(db.session.scalar(select(Volunteer.id).where(Volunteer.number == number)), 0, 80)]))
    page = manager_client.get("/manage/bank").get_data(as_text=True)
    assert "本站账面余额" in page and "本站可用" in page
    row = page[page.index(number):]
    row = row[:row.index("</tr>")]
    assert ">80</td>" in row and ">0</td>" in row


def test_a_card_from_the_home_station_gets_its_own_sentence(station, tmp_path):
    receive(batch(roster=[VISITOR]))
    v = db.session.get(Volunteer, VISITOR["id"])
    from itsdangerous import URLSafeSerializer

    foreign = volunteers.BADGE_PREFIX + URLSafeSerializer("the home station's key", salt="kiosk.volunteer-badge").dumps(
        [v.id, 1])
    with pytest.raises(volunteers.OtherStationCard):
        volunteers.from_badge(foreign)
    stranger = volunteers.BADGE_PREFIX + URLSafeSerializer("x", salt="kiosk.volunteer-badge").dumps([str(uuid.uuid4()), 1])
    with pytest.raises(volunteers.BadCard) as e:
        volunteers.from_badge(stranger)
    assert type(e.value) is volunteers.BadCard
    assert volunteers.from_badge(volunteers.badge(v)).id == v.id  # once this station prints its own
