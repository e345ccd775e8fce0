"""kill -9 of the server during a stream of acknowledged writes loses none of them.

The real server (`kiosk serve`, waitress) on a real file database is killed with SIGKILL at
random moments while a client signs volunteers out of an event (the manager's paper sign-in,
which credits hours and earns points) and redeems rewards at the kiosk (card + PIN). After
every kill the server starts again; at the end every write that was answered is in the
database, PRAGMA integrity_check is ok and the ledger's invariants hold.
"""

import http.client
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest

from kiosk import create_app
from kiosk.clock import now

KIOSK = str(Path(sys.executable).parent / "kiosk")
KILLS = int(os.environ.get("KIOSK_KILLS", "100"))
PIN = "258369"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A tiny cookie-keeping HTTP client (one connection per request: the server dies often)."""

    def __init__(self, port):
        self.port, self.cookies = port, {}

    def request(self, method, path, form=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = urllib.parse.urlencode(form) if form is not None else None
        hdrs = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read().decode()
            for header, value in resp.getheaders():
                if header.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    self.cookies[name] = rest.split(";")[0]
            return resp.status, data
        finally:
            conn.close()

    def token(self, path="/"):
        _status, html = self.request("GET", path)
        return re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)


@pytest.fixture
def station(tmp_path):
    """A station with an event that ended an hour ago, 400 volunteers with points, a reward."""
    from kiosk import accounts, events, ledger, rewards, volunteers
    from kiosk.cli import _upgrade
    from kiosk.db import begin_write, db

    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        _upgrade()
        begin_write()
        at = now()
        ev = events.create_event("test", events.EventData(
            title="社区大扫除", starts_at=at - timedelta(hours=3), ends_at=at - timedelta(hours=1)))
        pin_hash = volunteers.hash_pin(PIN)
        vols = [volunteers.register("test", f"志愿者{i}", f"139{i:08d}", None, pin_hash=pin_hash)
                for i in range(400)]
        for v in vols[:60]:
            ledger.adjust("test", v, 20, "开户奖励")
        reward = rewards.create_reward("test", rewards.RewardData(name="毛巾", price_points=5), stock=150)
        accounts.create_manager("test", "wang", "correct horse battery")
        db.session.commit()
        info = {"event": ev.id, "reward": reward.id, "numbers": [v.number for v in vols],
                "badges": [volunteers.badge(v) for v in vols[:60]], "day": ev.starts_at.strftime("%Y-%m-%d"),
                # (the event may span midnight at the station: run between 01:00 and 03:00 there)
                "out_day": ev.ends_at.strftime("%Y-%m-%d"),
                "in": ev.starts_at.strftime("%H:%M"), "out": ev.ends_at.strftime("%H:%M")}
        db.session.remove()
        db.engine.dispose()
    return tmp_path, info


def start(instance, port):
    proc = subprocess.Popen([KIOSK, "serve", "--port", str(port), "--threads", "4"],
                            env={**os.environ, "KIOSK_INSTANCE_PATH": str(instance)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_write(station):
    instance, info = station
    port = free_port()
    rng = random.Random(7)
    acked_paper, acked_redemptions = set(), set()
    next_volunteer = iter(info["numbers"])
    manager = Client(port)
    server = start(instance, port)
    token = manager.token("/manage/login")
    status, _ = manager.request("POST", "/manage/login", {"username": "wang", "password": "correct horse battery",
                                                          "csrf_token": token})
    assert status == 303
    manager_token = manager.token("/manage/")
    stop = threading.Event()

    def sign_out_stream():
        for number in next_volunteer:
            if stop.is_set():
                return
            form = {"csrf_token": manager_token, "volunteer": number, "in_day": info["day"], "in_time": info["in"],
                    "out_day": info["out_day"], "out_time": info["out"], "reason": "纸质签到表"}
            try:
                status, _ = manager.request("POST", f"/manage/events/{info['event']}/attendance/paper", form)
            except (OSError, http.client.HTTPException):  # the server died mid-answer: not acknowledged
                return
            if status == 303:
                acked_paper.add(number)

    def redeem_stream():
        kiosk = Client(port)
        while not stop.is_set():
            i = rng.randrange(len(info["badges"]))
            op = f"01900000-0000-7000-8000-{rng.randrange(16**12):012x}"
            try:
                kiosk.cookies.clear()
                token = kiosk.token("/me")
                kiosk.request("POST", "/me/card", {"badge": info["badges"][i], "csrf_token": token})
                status, _ = kiosk.request("POST", "/me/pin", {"pin": PIN, "csrf_token": token})
                if status != 303:
                    continue
                status, _ = kiosk.request("POST", f"/me/rewards/{info['reward']}",
                                          {"op": op, "csrf_token": kiosk.token("/me/home")})
            except (OSError, http.client.HTTPException, AttributeError):  # died mid-answer: not acknowledged
                return
            if status == 200:
                acked_redemptions.add(op)

    try:
        for _kill in range(KILLS):
            stop.clear()
            threads = [threading.Thread(target=sign_out_stream), threading.Thread(target=redeem_stream)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.6))
            server.send_signal(signal.SIGKILL)
            server.wait()
            stop.set()
            for t in threads:
                t.join(timeout=15)
            server = start(instance, port)
    finally:
        server.kill()
        server.wait()

    db = sqlite3.connect(instance / "kiosk.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    signed = {row[0] for row in db.execute(
        "SELECT v.number FROM checkin c JOIN volunteer v ON v.id = c.volunteer_id WHERE c.event_id = ?",
        (info["event"],))}
    assert acked_paper <= signed, f"lost {len(acked_paper - signed)} acknowledged sign-outs"
    redeemed = {row[0] for row in db.execute("SELECT id FROM redemption")}
    assert acked_redemptions <= redeemed, f"lost {len(acked_redemptions - redeemed)} acknowledged redemptions"
    # the streams did run between the kills (their counts are printed with -s)
    print(f"{KILLS} kills: {len(acked_paper)} sign-outs and {len(acked_redemptions)} redemptions acknowledged")
    assert acked_paper and acked_redemptions
    # the ledger still balances and nothing went negative
    assert db.execute("SELECT count(*) FROM (SELECT txn_id FROM posting GROUP BY txn_id "
                      "HAVING sum(amount) <> 0)").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM (SELECT account FROM posting WHERE account LIKE 'v:%' "
                      "GROUP BY account HAVING sum(amount) < 0)").fetchone()[0] == 0
    stock, moves = db.execute("SELECT r.stock, (SELECT sum(delta) FROM stock_move m WHERE m.reward_id = r.id) "
                              "FROM reward r").fetchone()
    assert stock == moves == 150 - len(redeemed) >= 0
    earns = db.execute("SELECT count(*) FROM ledger_txn WHERE kind = 'earn'").fetchone()[0]
    assert earns == len(signed)  # one earn per credited check-in, none lost, none doubled
