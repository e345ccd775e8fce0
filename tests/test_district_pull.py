"""The district pull job (kiosk/district, DESIGN.md §4) against real station servers on loopback.

PostgreSQL tests use 127.0.0.1:5432 (trust auth, user root or postgres, database `test`) and a
fresh database per test; they are skipped when it is unreachable, unless CI is set (then they
fail). The SQLite trial test needs no PostgreSQL.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kiosk import create_app, events
from kiosk.db import begin_write, db
from kiosk.district import pull as dpull
from kiosk.district.store import LOCK_KEY, Store, checkpoint, entity_row, raw_change

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

KIOSK = str(Path(sys.executable).parent / "kiosk")
PAGE = 40  # small pages, so a demo station's export has several


# --- PostgreSQL ---------------------------------------------------------------------------------

def _pg_admin():
    import psycopg

    errors = []
    for user in ("root", "postgres"):
        try:
            return psycopg.connect(host="127.0.0.1", port=5432, user=user, dbname="test", autocommit=True,
                                   connect_timeout=3), user
        except Exception as e:  # noqa: BLE001 - reported in the skip reason
            errors.append(f"{user}: {e}")
    return None, "; ".join(errors)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for the test, dropped afterwards."""
    try:
        conn, user = _pg_admin()
    except ImportError as e:
        conn, user = None, str(e)
    if conn is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 unreachable and CI is set: {user}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable (user root/postgres, db test): {user}")
    name = f"kiosk_district_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@127.0.0.1:5432/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def store(pg_url):
    s = Store(pg_url, pool_size=4)
    s.create()
    yield s
    s.dispose()


# --- stations -----------------------------------------------------------------------------------

class Station:
    """A real `kiosk serve` on a temp instance with demo data and a sync key."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        harness.run_cli(folder, "demo")
        self.key = harness.run_cli(folder, "sync-key").stdout.strip().splitlines()[-1]
        self.server = None
        self.start()

    def start(self):
        self.server = harness.Server(self.folder, threads=4)
        self.url = self.server.start()

    def stop(self):
        self.server.stop()

    def conf(self, key=None):
        return dpull.StationConf(self.name, self.url, key or self.key)

    def write(self, name: str):
        """A business write at the station (a new category: one more exported row)."""
        app = create_app({"INSTANCE_PATH": str(self.folder)})
        with app.app_context():
            begin_write()
            events.add_category("test", name)
            db.session.commit()
            db.engine.dispose()


@pytest.fixture(scope="module")
def stations(tmp_path_factory):
    made = []
    try:
        for name in ("gulou-a", "gulou-b"):
            made.append(Station(tmp_path_factory.mktemp(name), name))
        yield made
    finally:
        for s in made:
            s.stop()


def confs(stations):
    return [s.conf() for s in stations]


def pull(store, stations, **kw):
    kw.setdefault("limit", PAGE)
    results = dpull.pull_all(store, confs(stations), parallel=2, **kw)
    return results


def hashes(store):
    return store.table_hashes()


def exported(store, station):
    """entity_row as {(entity, id): data} for a station (tombstones left out)."""
    from sqlalchemy import select

    with store.engine.connect() as conn:
        rows = conn.execute(select(entity_row).where(entity_row.c.station == station)).mappings().all()
    return {(r["entity"], r["entity_id"]): r["data"] for r in rows if not r["deleted"]}


def write_stations_file(tmp_path, stations, keys=None, fmt="toml"):
    keys = keys or {}
    items = [{"name": s.name, "url": s.url, "key": keys.get(s.name, s.key)} for s in stations]
    if fmt == "json":
        path = tmp_path / "stations.json"
        path.write_text(json.dumps(items))
    else:
        path = tmp_path / "stations.toml"
        path.write_text("".join(f'[[stations]]\nname = "{i["name"]}"\nurl = "{i["url"]}"\nkey = "{i["key"]}"\n\n'
                                for i in items))
    return path


def run_cli(*args, env=None):
    return subprocess.run([KIOSK, "district", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


# --- tests --------------------------------------------------------------------------------------

def test_pulling_twice_changes_nothing(store, stations):
    first = pull(store, stations)
    assert all(r.ok for r in first), [r.error for r in first]
    assert all(r.items > PAGE and r.pages > 1 and r.applied == r.items for r in first)
    h1 = hashes(store)
    second = pull(store, stations)
    assert all(r.ok and r.applied == 0 for r in second), second
    assert hashes(store) == h1
    for s in stations:
        assert store.count(raw_change, s.name) == next(r.items for r in first if r.station == s.name)
        assert exported(store, s.name)


def test_a_pull_cut_after_any_page_resumes_without_duplicates(store, stations):
    a = stations[0]
    full = dpull.pull_station(store, a.conf(), limit=PAGE)
    assert full.ok and full.pages >= 3
    reference = hashes(store)
    for cut in range(1, full.pages):
        for t in (raw_change, entity_row, checkpoint):
            with store.engine.begin() as conn:
                conn.execute(t.delete())
        part = dpull.pull_station(store, a.conf(), limit=PAGE, max_pages=cut)
        assert part.ok and part.pages == cut
        assert store.count(raw_change, a.name) == cut * PAGE
        rest = dpull.pull_station(store, a.conf(), limit=PAGE)
        assert rest.ok and rest.applied == rest.items == full.items - cut * PAGE
        assert hashes(store) == reference, f"cut after page {cut}"


def test_a_duplicated_page_is_harmless(store, stations):
    a = stations[0]
    page = dpull.fetch_page(a.conf(), None, PAGE).page
    store.apply_page(a.name, page)
    once = hashes(store)
    again = store.apply_page(a.name, page)
    assert again.new_raw == 0 and again.rows == 0
    assert hashes(store) == once
    # same key, different content: refused, and nothing moves
    bad = json.loads(json.dumps(page))
    bad["changes"][0]["op"] = "delete" if bad["changes"][0]["op"] == "upsert" else "upsert"
    with pytest.raises(Exception, match="differs"):
        store.apply_page(a.name, bad)
    assert hashes(store) == once


def test_a_crash_between_apply_and_checkpoint_loses_nothing(store, stations):
    a = stations[0]

    def crash(station, page_no):
        if page_no == 2:
            raise RuntimeError("simulated crash before the checkpoint moved")

    r = dpull.pull_station(store, a.conf(), limit=PAGE, fault=crash)
    assert not r.ok and "simulated crash" in r.error
    assert store.count(raw_change, a.name) == PAGE  # page 2 rolled back with its checkpoint
    r = dpull.pull_station(store, a.conf(), limit=PAGE)
    assert r.ok
    crashed = hashes(store)
    with store.engine.begin() as conn:
        for t in (raw_change, entity_row, checkpoint):
            conn.execute(t.delete())
    assert dpull.pull_station(store, a.conf(), limit=PAGE).ok
    assert hashes(store) == crashed


def test_a_restored_station_triggers_a_full_resync_without_duplicates(store, tmp_path_factory):
    st = Station(tmp_path_factory.mktemp("restored"), "gulou-c")
    try:
        backup = st.folder.parent / f"{st.folder.name}-backup.sqlite3"
        harness.run_cli(st.folder, "backup", str(backup))
        st.write("文化")  # a row the backup lacks
        first = dpull.pull_station(store, st.conf(), limit=PAGE)
        assert first.ok
        held = exported(store, st.name)
        assert any(d and d.get("name") == "文化" for (e, _), d in held.items() if e == "category")
        st.stop()
        for suffix in ("-wal", "-shm"):
            (st.folder / f"kiosk.sqlite3{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, st.folder / "kiosk.sqlite3")
        st.start()
        again = dpull.pull_station(store, st.conf(), limit=PAGE)
        assert again.ok and again.resync and again.epoch != first.epoch
        after = exported(store, st.name)
        assert not any(d and d.get("name") == "文化" for (e, _), d in after.items() if e == "category")
        assert set(after) < set(held)  # the category and its audit row are gone, nothing else
        assert sorted(e for e, _ in set(held) - set(after)) == ["audit_log", "category"]
        assert store.count(entity_row, st.name) == len(after)  # no leftovers of the old epoch
        assert store.count(raw_change, st.name) == first.items + again.items  # history by epoch
        assert dpull.pull_station(store, st.conf(), limit=PAGE).applied == 0
    finally:
        st.stop()


def test_the_command_prints_a_summary_and_fails_on_a_bad_key(pg_url, stations, tmp_path):
    good = write_stations_file(tmp_path, stations)
    r = run_cli("pull", "--stations", str(good), "--db", pg_url, "--parallel", "2", "--page-size", "100")
    assert r.returncode == 0, r.stdout + r.stderr
    for s in stations:
        assert s.name in r.stdout
    assert "items" in r.stdout and "clock" in r.stdout and "0 failed" in r.stdout

    s = Store(pg_url)
    try:
        with s.engine.begin() as conn:
            for t in (raw_change, entity_row, checkpoint):
                conn.execute(t.delete())
    finally:
        s.dispose()
    bad = write_stations_file(tmp_path, stations, keys={"gulou-b": "not-the-key"}, fmt="json")
    r = run_cli("pull", "--stations", str(bad), "--parallel", "2", env={"KIOSK_DISTRICT_DB": pg_url})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "401" in r.stdout and "1 failed" in r.stdout
    s = Store(pg_url)
    try:
        assert s.count(entity_row, "gulou-a") > 0
        assert s.count(entity_row, "gulou-b") == 0
    finally:
        s.dispose()


def test_two_runs_cannot_overlap(pg_url, stations, tmp_path):
    import psycopg

    good = write_stations_file(tmp_path, stations)
    with psycopg.connect(pg_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        r = run_cli("pull", "--stations", str(good), "--db", pg_url)
        assert r.returncode == 3 and "another" in r.stderr, r.stdout + r.stderr
    r = run_cli("pull", "--stations", str(good), "--db", pg_url)
    assert r.returncode == 0, r.stdout + r.stderr


def test_network_errors_are_retried_then_fail_the_station(store, stations):
    slept = []
    down = dpull.StationConf("down", "http://127.0.0.1:9", "k")  # nothing listens on port 9
    with pytest.raises(OSError):
        dpull.fetch_with_retries(down, None, 10, retries=3, backoff=0.1, sleep=slept.append)
    assert slept == [0.1, 0.2, 0.4]
    r = dpull.pull_station(store, down, retries=0)
    assert not r.ok and r.error


def test_a_sqlite_trial_database(stations, tmp_path):
    db_path = tmp_path / "district.sqlite3"
    good = write_stations_file(tmp_path, stations)
    args = ("pull", "--stations", str(good), "--db", f"sqlite:///{db_path}", "--page-size", "50")
    r = run_cli(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    s = Store(f"sqlite:///{db_path}")
    try:
        before = s.table_hashes()
        assert s.count(entity_row, "gulou-a") > 0 and s.count(entity_row, "gulou-b") > 0
        r = run_cli(*args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert s.table_hashes() == before
        with s.lock():  # a run holding the lock file keeps another out
            r = run_cli(*args)
            assert r.returncode == 3 and "another" in r.stderr
    finally:
        s.dispose()


def test_the_stations_file_is_checked(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[[stations]]\nname = "a"\nurl = "ftp://x"\nkey = "k"\n')
    with pytest.raises(dpull.StationsFileError, match="http"):
        dpull.load_stations(bad)
    bad.write_text('[[stations]]\nname = "a"\nurl = "http://x"\n')
    with pytest.raises(dpull.StationsFileError, match="key"):
        dpull.load_stations(bad)
    r = run_cli("pull", "--stations", str(bad), "--db", f"sqlite:///{tmp_path / 'd.sqlite3'}")
    assert r.returncode != 0 and "key" in r.stderr
