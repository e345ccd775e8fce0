"""The `kiosk` command: init, demo, create-manager, backup; and the secret written on first start."""

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from kiosk import create_app
from kiosk.db import db
from kiosk.models import Event, Manager

KIOSK = str(Path(sys.executable).parent / "kiosk")


def run(instance, *args, stdin=None):
    env = {**os.environ, "KIOSK_INSTANCE_PATH": str(instance)}
    return subprocess.run([KIOSK, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_init_demo_create_manager_backup(tmp_path):
    inst = tmp_path / "inst"
    r = run(inst, "init")
    assert r.returncode == 0, r.stderr
    assert "database ready" in r.stdout
    r = run(inst, "init")  # again: an upgrade with nothing to do keeps the data
    assert r.returncode == 0, r.stderr
    r = run(inst, "demo")
    assert r.returncode == 0, r.stderr
    assert "password" in r.stdout and (inst / "demo-manager.txt").exists()
    r = run(inst, "demo")  # twice: no duplicate events, no second demo manager
    assert r.returncode == 0, r.stderr
    r = run(inst, "create-manager", "li.ming", "--name", "李明", "--password-stdin", stdin="a long enough password\n")
    assert r.returncode == 0, r.stderr
    r = run(inst, "create-manager", "li.ming", "--password-stdin", stdin="a long enough password\n")
    assert r.returncode != 0 and "已经有人用了" in r.stderr
    r = run(inst, "create-manager", "zhang", "--password-stdin", stdin="short\n")
    assert r.returncode != 0 and "至少 10 个字符" in r.stderr

    app = create_app({"INSTANCE_PATH": str(inst)})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Manager)) == 2
        n_events = db.session.scalar(select(func.count()).select_from(Event))
        assert 20 <= n_events < 40
        db.engine.dispose()

    r = run(inst, "backup", str(tmp_path / "backup.sqlite3"))
    assert r.returncode == 0 and "integrity_check: ok" in r.stdout, r.stderr
    copy = sqlite3.connect(tmp_path / "backup.sqlite3")
    assert copy.execute("SELECT count(*) FROM event").fetchone()[0] == n_events
    copy.close()
    r = run(inst, "backup", str(tmp_path / "backup.sqlite3"))
    assert r.returncode != 0  # never overwrites


def test_first_start_writes_a_private_random_secret(tmp_path):
    a = create_app({"INSTANCE_PATH": str(tmp_path / "a")})
    b = create_app({"INSTANCE_PATH": str(tmp_path / "b")})
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert a.config["SECRET_KEY"] != b.config["SECRET_KEY"] and len(a.config["SECRET_KEY"]) >= 64
    again = create_app({"INSTANCE_PATH": str(tmp_path / "a")})
    assert again.config["SECRET_KEY"] == a.config["SECRET_KEY"]


def test_no_secret_ships_in_the_repository():
    root = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(["git", "ls-files", "instance"], cwd=root, capture_output=True, text=True).stdout.split()
    assert tracked in ([], ["instance/README.md"])
    assert "SECRET_KEY" not in (root / "kiosk" / "config.py").read_text().split("def defaults")[1]


def test_tidy_closes_overdue_checkins_and_expires_pickups(tmp_path):
    from datetime import timedelta

    from kiosk import checkins, events, ledger, rewards, volunteers
    from kiosk.clock import now
    from kiosk.db import begin_write
    from kiosk.models import CheckIn, Redemption

    inst = tmp_path / "inst"
    assert run(inst, "init").returncode == 0
    app = create_app({"INSTANCE_PATH": str(inst)})
    with app.app_context():
        begin_write()
        at = now()
        ev = events.create_event("test", events.EventData(title="清扫", starts_at=at - timedelta(hours=3),
                                                          ends_at=at - timedelta(minutes=10)))
        v = volunteers.register("test", "张三", "13800000001", "258369")
        checkins.check_in(v, ev, "kiosk", at=at - timedelta(hours=2))
        events.get_station().pickup_days = 1
        ledger.adjust("test", v, 50, "奖励")
        r = rewards.create_reward("test", rewards.RewardData(name="毛巾", price_points=10), stock=1)
        rewards.redeem(v, r, None, at=at - timedelta(days=2))
        db.session.commit()
        db.engine.dispose()
    r = run(inst, "tidy")
    assert r.returncode == 0 and "closed 1 open check-ins, expired 1 uncollected" in r.stdout, r.stderr
    with app.app_context():
        assert db.session.scalar(select(CheckIn.status)) == "unconfirmed"
        assert db.session.scalar(select(Redemption.status)) == "expired"
        db.engine.dispose()
