"""The nightly cycle end to end (DESIGN.md §4): three real demo stations on loopback, the district
on PostgreSQL (skipped with a reason without it, failing on CI), `kiosk district pull` pushing
back the roster and the balances; points earned at A spent at B; a second run changes nothing.
"""

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kiosk import checkins, create_app, events, inbox, ledger, rewards, volunteers
from kiosk.clock import now
from kiosk.db import begin_write, db
from kiosk.district import pull as dpull
from kiosk.district import push as dpush
from kiosk.district.store import Store, push_batch
from kiosk.models import Event, InboxBatch, Volunteer
from tests.test_district_pull import pg_url, run_cli  # noqa: F401 - pg_url is a fixture

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

PIN = "258369"


class DemoStation:
    """`kiosk demo --station N` + a sync key + `kiosk serve`; domain calls go to the same database."""

    def __init__(self, folder: Path, which: int):
        self.folder, self.name = folder, f"station-{which}"
        harness.run_cli(folder, "demo", "--station", str(which))
        self.key = harness.run_cli(folder, "sync-key").stdout.strip().splitlines()[-1]
        self.server = harness.Server(folder, threads=4)
        self.url = self.server.start()
        self.app = create_app({"INSTANCE_PATH": str(folder)})

    def conf(self):
        return dpull.StationConf(self.name, self.url, self.key)

    def call(self, fn, write=True):
        with self.app.app_context():
            try:
                if write:
                    begin_write()
                out = fn()
                if write:
                    db.session.commit()
                return out
            finally:
                db.session.remove()

    def stop(self):
        self.server.stop()
        with self.app.app_context():
            db.engine.dispose()


@pytest.fixture
def three(tmp_path):
    made = []
    try:
        for i in (1, 2, 3):
            made.append(DemoStation(tmp_path / f"st{i}", i))
        yield made
    finally:
        for s in made:
            s.stop()


def stations_file(tmp_path, stations) -> Path:
    path = tmp_path / "stations.toml"
    path.write_text("".join(f'[[stations]]\nname = "{s.name}"\nurl = "{s.url}"\nkey = "{s.key}"\n\n'
                            for s in stations))
    return path


def night(tmp_path, stations, pg, *extra) -> str:
    proc = run_cli("pull", "--stations", str(stations_file(tmp_path, stations)), "--db", pg, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def spendable_everywhere(stations, volunteer_id) -> list[int]:
    return [s.call(lambda: inbox.available_here(volunteer_id), write=False) for s in stations]


def test_a_night_cycle_moves_volunteers_and_points_between_stations(tmp_path, three, pg_url):
    a, b, c = three
    lin = a.call(lambda: volunteers.find("13805910001"), write=False)  # 林秀英, registered at A
    lin_id, lin_number = lin.id, lin.number

    # --- night 1: the roster reaches every station ---------------------------------------------
    out = night(tmp_path, three, pg_url, "--thresholds", "100,300,600,1000,1500")
    assert "3 station(s), 0 failed" in out and "3 station(s) pushed, 0 failed" in out
    visitor = b.call(lambda: db.session.get(Volunteer, lin_id), write=False)
    assert (visitor.number, visitor.home_station, visitor.pin_hash) == (lin_number, "GL-SFQX", "")
    assert c.call(lambda: db.session.get(Volunteer, lin_id), write=False) is not None
    # her PIN from A does not work at B until B's manager has checked her ID and set one here
    with pytest.raises(volunteers.NoPinHere):
        b.call(lambda: volunteers.verify_pin(volunteers.find(lin_number), PIN))
    b.call(lambda: volunteers.reset_pin("manager:demo", volunteers.get(lin_id), "741852"))
    b.call(lambda: volunteers.verify_pin(volunteers.find("13805910001"), "741852"))
    a_points = a.call(lambda: ledger.balance(lin_id), write=False)
    assert a_points > 0  # demo service at A
    assert spendable_everywhere(three, lin_id) == [a_points, 0, 0]

    # --- day 2: she earns 100 more at A, then serves at B (B is where she was last) ------------
    a.call(lambda: ledger.adjust("manager:demo", volunteers.get(lin_id), 100, "文明实践积分奖励"))

    def serve_at_b():
        ev = db.session.scalar(select(Event).where(Event.title.like("文明实践站值班%")))
        v = volunteers.get(lin_id)
        checkins.check_in(v, ev, "kiosk", at=max(ev.starts_at, now() - timedelta(minutes=65)))
        checkins.check_out(v, ev, "kiosk", at=now())
        return ledger.balance(lin_id)

    b_points = b.call(serve_at_b)
    assert b_points >= 10
    # earned at B: spendable at B at once; A's points are not (yet)
    assert spendable_everywhere(three, lin_id) == [a_points + 100, b_points, 0]

    # --- night 2: everything she has is allowed where she was last active ----------------------
    out = night(tmp_path, three, pg_url)
    total = a_points + 100 + b_points
    assert spendable_everywhere(three, lin_id) == [0, total, 0]
    st = b.call(lambda: inbox.standing(lin_id), write=False)
    assert (st.here, st.total, st.elsewhere) == (total, total, False)
    # hours at A count for her stars at B
    minutes_a = a.call(lambda: checkins.hours(volunteers.get(lin_id)).total_minutes, write=False)
    minutes_b = b.call(lambda: checkins.hours(volunteers.get(lin_id)).total_minutes, write=False)
    served_b = b.call(lambda: inbox.minutes_elsewhere(lin_id), write=False)
    assert minutes_a == minutes_b > served_b > 0  # each counts its own and the other's as of last night

    # --- day 3: she spends A's points at B -----------------------------------------------------
    def redeem_at_b():
        price = total - 5
        r = rewards.create_reward("manager:demo", rewards.RewardData(name="电饭煲", price_points=price), stock=1)
        red, new = rewards.redeem(volunteers.get(lin_id), r, None)
        return red.points

    spent = b.call(redeem_at_b)
    assert spendable_everywhere(three, lin_id) == [0, 5, 0]
    with pytest.raises(ledger.InsufficientPoints):  # and A can't spend them again
        a.call(lambda: ledger.adjust("manager:demo", volunteers.get(lin_id), -10, "扣分"))

    # --- night 3 and 4: the books agree, and a second run changes nothing ----------------------
    night(tmp_path, three, pg_url)
    store = Store(pg_url)
    try:
        k = dpush.know(store)
        assert k.balance[lin_id] == total - spent == 5
        h1 = store.table_hashes()
        with store.engine.connect() as conn:
            batches = conn.execute(select(func.count()).select_from(push_batch)).scalar()
        out = night(tmp_path, three, pg_url)
        assert "3 unchanged (nothing sent)" in out
        assert store.table_hashes() == h1
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(push_batch)).scalar() == batches
        # escrow: for every volunteer, what all stations allow never exceeds the district balance
        for vid, g in k.balance.items():
            assert sum(spendable_everywhere(three, vid)) <= g + 0, vid
    finally:
        store.dispose()


def test_a_station_that_missed_the_push_keeps_its_allowance_and_nobody_else_gets_it(tmp_path, three, pg_url):
    a, b, c = three
    lin_id = a.call(lambda: volunteers.find("13805910001").id, write=False)
    night(tmp_path, three, pg_url)
    b.call(lambda: volunteers.reset_pin("manager:demo", volunteers.get(lin_id), "741852"))
    a_points = a.call(lambda: ledger.balance(lin_id), write=False)

    def serve_at_b():
        ev = db.session.scalar(select(Event).where(Event.title.like("文明实践站值班%")))
        v = volunteers.get(lin_id)
        checkins.check_in(v, ev, "kiosk", at=now() - timedelta(minutes=40))
        checkins.check_out(v, ev, "kiosk", at=now())

    b.call(serve_at_b)
    b_points = b.call(lambda: ledger.balance(lin_id), write=False)
    assert 0 < b_points < a_points
    # A's answer to tonight's push is lost: the district can't know whether A applied it
    store = Store(pg_url)
    try:
        real = dpush.post_batch

        def lose_a(conf, body):
            status, answer, error = real(conf, body, retries=0)
            return ("unknown", None, "answer lost") if conf.name == a.name else (status, answer, error)

        dpull.pull_all(store, [s.conf() for s in three], parallel=3)
        res = dpush.push_all(store, [s.conf() for s in three], deliver=lose_a)
        assert [r.ok for r in res] == [False, True, True]
        # A applied its batch (allowance 0 for her: she was last active at B) but the district
        # doesn't know: B must not get A's points tonight
        here = spendable_everywhere(three, lin_id)
        assert here == [0, b_points, 0]
        assert sum(here) <= dpush.know(store).balance[lin_id]
        # the next night, the pull shows what A has in force, and B gets everything
        dpull.pull_all(store, [s.conf() for s in three], parallel=3)
        res = dpush.push_all(store, [s.conf() for s in three])
        assert all(r.ok for r in res), [r.error for r in res]
        g = dpush.know(store).balance[lin_id]
        assert spendable_everywhere(three, lin_id) == [0, g, 0]
    finally:
        store.dispose()


def test_district_events_reach_every_kiosk(tmp_path, three, pg_url):
    events_file = tmp_path / "events.toml"
    events_file.write_text('''
[[events]]
id = "0193f2a0-0000-7000-8000-000000000001"
title = "全区志愿服务日：清洁闽江岸"
starts_at = "2026-12-05T08:30"
ends_at = "2026-12-05T11:30"
place = "闽江公园南园"
organiser = "区新时代文明实践中心"
category = "志愿服务"
''')
    night(tmp_path, three, pg_url, "--events", str(events_file))
    for s in three:
        ev = s.call(lambda: db.session.get(Event, "0193f2a0-0000-7000-8000-000000000001"), write=False)
        assert ev.origin == "district" and ev.title == "全区志愿服务日：清洁闽江岸"
    events_file.write_text("events = []\n")
    night(tmp_path, three, pg_url, "--events", str(events_file))
    for s in three:
        ev = s.call(lambda: db.session.get(Event, "0193f2a0-0000-7000-8000-000000000001"), write=False)
        assert ev.cancelled
    assert all(s.call(lambda: inbox.in_force().kind, write=False) == "full" for s in three)


def test_bring_my_points_here_moves_them_the_next_night(tmp_path, three, pg_url):
    a, b, c = three
    lin_id = a.call(lambda: volunteers.find("13805910001").id, write=False)
    night(tmp_path, three, pg_url)
    g = a.call(lambda: ledger.balance(lin_id), write=False)
    assert spendable_everywhere(three, lin_id) == [g, 0, 0]
    # at C's kiosk she only looks at the rewards and taps 把我的积分转到本站
    c.call(lambda: inbox.ask_points_here(volunteers.get(lin_id)))
    night(tmp_path, three, pg_url)
    assert spendable_everywhere(three, lin_id) == [0, 0, g]


def test_a_restored_station_resurrects_no_allowance(tmp_path, three, pg_url):
    """A backed-up batch that allowed her points at A must not come back with the backup after
    the district moved them to B."""
    import shutil

    a, b, c = three
    lin_id = a.call(lambda: volunteers.find("13805910001").id, write=False)
    night(tmp_path, three, pg_url)
    a.call(lambda: ledger.adjust("manager:demo", volunteers.get(lin_id), 30, "补记积分"))  # after the mark
    g = a.call(lambda: ledger.balance(lin_id), write=False)
    assert spendable_everywhere(three, lin_id) == [g, 0, 0]
    backup = tmp_path / "a-backup.sqlite3"
    harness.run_cli(a.folder, "backup", str(backup))  # A's database with "all of it allowed at A"
    b.call(lambda: inbox.ask_points_here(volunteers.get(lin_id)))
    night(tmp_path, three, pg_url)
    assert spendable_everywhere(three, lin_id) == [0, g, 0]
    # A's disk dies; the manager restores last week's backup
    a.server.stop()
    for suffix in ("-wal", "-shm"):
        (a.folder / f"kiosk.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, a.folder / "kiosk.sqlite3")
    a.server.start()
    with a.app.app_context():
        db.engine.dispose()
    assert a.call(lambda: inbox.in_force() is not None, write=False)  # the old batch is back...
    assert spendable_everywhere(three, lin_id) == [0, g, 0]  # ...but allows nothing, nor the +30 after it
    # the next night: A is pulled afresh (new epoch) and nothing moves back by mistake
    out = night(tmp_path, three, pg_url)
    assert "full resync" in out
    assert spendable_everywhere(three, lin_id) == [0, g, 0]
    store = Store(pg_url)
    try:
        k = dpush.know(store)
        for vid, bal in k.balance.items():
            assert sum(spendable_everywhere(three, vid)) <= bal, vid
    finally:
        store.dispose()


def test_points_lost_with_a_restore_after_being_moved_are_reported(tmp_path, three, pg_url):
    """Points earned at A after its last backup, moved to B, then lost when A is restored: the
    district can't undo B's allowance, and says so."""
    import shutil

    a, b, c = three
    lin_id = a.call(lambda: volunteers.find("13805910001").id, write=False)
    night(tmp_path, three, pg_url)
    backup = tmp_path / "a-backup.sqlite3"
    harness.run_cli(a.folder, "backup", str(backup))
    a.call(lambda: ledger.adjust("manager:demo", volunteers.get(lin_id), 30, "补记积分"))
    b.call(lambda: inbox.ask_points_here(volunteers.get(lin_id)))
    out = night(tmp_path, three, pg_url)
    assert "WARNING" not in out
    a.server.stop()
    for suffix in ("-wal", "-shm"):
        (a.folder / f"kiosk.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, a.folder / "kiosk.sqlite3")
    a.server.start()
    out = night(tmp_path, three, pg_url)
    assert "WARNING: 1 volunteer(s) may spend more than their balance" in out and lin_id in out


def test_the_same_person_at_two_stations_is_left_out_of_the_roster_and_named():
    a = {"id": "1", "number": "GL-A-0001", "name": "林", "mobile": "13800000001", "status": "active", "home_station": "GL-A"}
    b = dict(a, id="2", number="GL-B-0001", home_station="GL-B")  # same mobile, registered twice
    c = dict(a, id="3", number="GL-B-0002", mobile="13800000003", home_station="GL-B")
    kept, dup = dpush._without_duplicates([a, b, c])
    assert kept == [c] and dup == [a, b]
    r = dpush.PushResult("station-1", ok=True, duplicates=dup)
    text = dpush.summary([r])
    assert "WARNING: 2 volunteer(s) registered at two stations" in text and "GL-B-0001 (GL-B, 13800000001)" in text
