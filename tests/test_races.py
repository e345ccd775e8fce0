"""Concurrent redemptions through the real server (QUALITY.md, "Reliability").

`kiosk serve` (waitress) runs in a subprocess on a temp instance with a real SQLite file. Every
kiosk session goes through the real endpoints as the touch screen does: GET /me, POST /me/card
(the card's text), POST /me/pin, GET /me/rewards/<id> (the CSRF token and the confirm form's
`op`); then all the POST /me/rewards/<id> are released together by a barrier, each from its own
thread on its own connection. What counts is what the database holds after.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402  (bench/harness.py: `kiosk serve` on a free port, on a given instance)

from kiosk import create_app, ledger, rewards, volunteers  # noqa: E402
from kiosk.db import begin_write, db  # noqa: E402
from tests.test_concurrency import Phone, csrf_of, send_together  # noqa: E402  (a cookie jar; a barrier)

pytestmark = pytest.mark.slow

PIN = "258369"
PRICE = 10
N = 64
GONE = "兑换完了"      # OutOfStock: 这件物品刚刚兑换完了，请选别的。
NO_POINTS = "积分不够"  # InsufficientPoints
DONE = "兑换成功"
CODE = re.compile(r'<b class="code"[^>]*>\s*(\d{3}) (\d{3})\s*</b>')


# --- the station: a real server on a real file ---------------------------------------------------

class Station:
    def __init__(self, folder: Path, base_url: str, badges: dict[str, str], people: dict[str, list],
                 reward_ids: dict[str, str]):
        self.folder, self.base_url = folder, base_url
        self.badges, self.people, self.reward_ids = badges, people, reward_ids

    def kiosk_for(self, volunteer_id: str, reward_id: str) -> tuple[Phone, str, str]:
        """A kiosk session (its own cookie jar) where this volunteer scanned the card, typed the
        PIN and opened the reward's page. Returns (jar, CSRF token, the confirm form's op)."""
        jar = Phone(self.base_url)
        status, html = jar.request("GET", "/me")
        assert status == 200, status
        status, html = jar.request("POST", "/me/card", {"badge": self.badges[volunteer_id],
                                                       "csrf_token": csrf_of(html)})
        assert status == 200 and "pin" in html, (status, html[-500:])
        status, _ = jar.request("POST", "/me/pin", {"pin": PIN, "csrf_token": csrf_of(html)})
        assert status == 303, f"the PIN was not accepted: {status}"
        status, html = jar.request("GET", f"/me/rewards/{reward_id}")
        assert status == 200 and f'action="/me/rewards/{reward_id}"' in html, "no 确认兑换 form"
        op = re.search(r'name="op" value="([^"]+)"', html).group(1)
        return jar, csrf_of(html), op

    def kiosks_for(self, volunteer_ids: list[str], reward_id: str) -> list[tuple[Phone, str, str]]:
        """kiosk_for() for many, 8 at a time (each PIN is a deliberate slow hash)."""
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda vid: self.kiosk_for(vid, reward_id), volunteer_ids))

    def query(self, sql: str, *params) -> list[tuple]:
        import sqlite3

        conn = sqlite3.connect(f"file:{self.folder / 'kiosk.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def one(self, sql: str, *params):
        (row,) = self.query(sql, *params)
        return row[0]

    def balance(self, volunteer_id: str) -> int:
        return self.one("SELECT coalesce(sum(amount), 0) FROM posting WHERE account = ?", f"v:{volunteer_id}")

    def stock(self, reward_id: str) -> int:
        return self.one("SELECT stock FROM reward WHERE id = ?", reward_id)

    def redemptions(self, reward_id: str) -> list[tuple[str, str, int, str, str]]:
        """(id, volunteer id, points, pickup code, status) of each redemption of the reward."""
        return self.query("SELECT id, volunteer_id, points, pickup_code, status FROM redemption WHERE reward_id = ?",
                          reward_id)

    def assert_books_hold(self, reward_id: str) -> None:
        """Stock = the sum of its moves and never below zero; each transaction balances; every
        redemption has its one redeem transaction and its one stock move."""
        stock, moved = self.query("SELECT r.stock, (SELECT sum(delta) FROM stock_move WHERE reward_id = r.id) "
                                  "FROM reward r WHERE r.id = ?", reward_id)[0]
        assert stock == moved and stock >= 0, (stock, moved)
        assert self.query("SELECT txn_id FROM posting GROUP BY txn_id HAVING sum(amount) != 0") == []
        reds = self.redemptions(reward_id)
        for rid, *_ in reds:
            assert self.one("SELECT count(*) FROM ledger_txn WHERE redemption_id = ? AND kind = 'redeem'", rid) == 1
            assert self.one("SELECT count(*) FROM stock_move WHERE redemption_id = ? AND kind = 'redeem'", rid) == 1
        assert self.one("SELECT count(*) FROM stock_move WHERE reward_id = ? AND kind = 'redeem'", reward_id) == len(reds)

    def running_balance_never_negative(self, volunteer_id: str) -> bool:
        running = 0
        for (amount,) in self.query("SELECT amount FROM posting WHERE account = ? ORDER BY id", f"v:{volunteer_id}"):
            running += amount
            if running < 0:
                return False
        return True


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    folder = tmp_path_factory.mktemp("races")
    harness.run_cli(folder, "init")
    app = create_app({"INSTANCE_PATH": str(folder)})
    badges: dict[str, str] = {}
    people: dict[str, list] = {}
    with app.app_context():
        begin_write()
        pin_hash = volunteers.hash_pin(PIN)  # one slow hash for everybody

        def volunteer(n: int, points: int) -> str:
            v = volunteers.register("test", f"志愿者{n}", f"139{n:08d}", None, pin_hash=pin_hash)
            ledger.adjust("test", v, points, "测试用积分")
            badges[v.id] = volunteers.badge(v)
            return v.id

        people["crowd"] = [volunteer(n, 5 * PRICE) for n in range(1, N + 1)]  # each can pay 5 times
        people["three"] = [volunteer(N + 1, 3 * PRICE)]                       # worth exactly 3
        people["same"] = [volunteer(N + 2, 5 * PRICE)]

        def reward(name: str, stock: int) -> str:
            return rewards.create_reward("test", rewards.RewardData(name=name, price_points=PRICE), stock=stock).id

        reward_ids = {"crowd": reward("洗衣液", 10), "three": reward("大米 5 斤", 100), "same": reward("雨伞", 100)}
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    server = harness.Server(folder, threads=8)
    with server as base_url:
        yield Station(folder, base_url, badges, people, reward_ids)
        log = server.log()
    assert "Traceback" not in log, f"the server logged an error:\n{log[-3000:]}"


def race(station: Station, kiosks: list[tuple[Phone, str, str]], reward_id: str) -> list[tuple[int, str]]:
    requests = [jar.prepared_post(f"/me/rewards/{reward_id}", {"op": op, "csrf_token": csrf})
                for jar, csrf, op in kiosks]
    started = time.perf_counter()
    answers = send_together(requests, station.base_url)
    print(f"\n{len(requests)} concurrent redemptions answered in {time.perf_counter() - started:.2f} s")
    return answers


def code_of(html: str) -> str:
    m = CODE.search(html)
    assert m, "no pickup code on the pickup page"
    return m.group(1) + m.group(2)


# --- the tests ------------------------------------------------------------------------------------

def test_64_volunteers_racing_for_10_items_get_exactly_10(station):
    reward_id = station.reward_ids["crowd"]
    people = station.people["crowd"]
    kiosks = station.kiosks_for(people, reward_id)
    answers = race(station, kiosks, reward_id)

    statuses = [s for s, _ in answers]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(200) == 10, statuses
    assert statuses.count(409) == N - 10, statuses
    assert all(GONE in body for s, body in answers if s == 409), "the refusal says it is all gone"
    assert all(DONE in body for s, body in answers if s == 200), "the pickup page"

    reds = station.redemptions(reward_id)
    assert len(reds) == 10
    assert station.stock(reward_id) == 0
    station.assert_books_hold(reward_id)
    winners = {vid: op for vid, (s, _), (_, _, op) in zip(people, answers, kiosks, strict=True) if s == 200}
    # exactly those told "yes" hold a redemption, under their own form's op, with the code they were shown
    assert {(r[0], r[1]) for r in reds} == {(op, vid) for vid, op in winners.items()}
    shown = {code_of(body) for s, body in answers if s == 200}
    assert shown == {r[3] for r in reds} and len(shown) == 10
    assert all(r[2] == PRICE and r[4] == "pending" for r in reds)
    for vid in people:
        assert station.balance(vid) == 5 * PRICE - (PRICE if vid in winners else 0)


def test_64_sessions_of_one_volunteer_worth_3_get_exactly_3(station):
    reward_id = station.reward_ids["three"]
    (vid,) = station.people["three"]
    kiosks = station.kiosks_for([vid] * N, reward_id)  # 64 card + PIN logins, each its own session
    assert len({op for _, _, op in kiosks}) == N
    answers = race(station, kiosks, reward_id)

    statuses = [s for s, _ in answers]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(200) == 3, statuses
    assert statuses.count(409) == N - 3, statuses
    assert all(NO_POINTS in body for s, body in answers if s == 409), "the refusal says the points are short"

    reds = station.redemptions(reward_id)
    assert len(reds) == 3
    assert {r[0] for r in reds} == {op for (s, _), (_, _, op) in zip(answers, kiosks, strict=True) if s == 200}
    assert station.balance(vid) == 0
    assert station.running_balance_never_negative(vid)
    assert station.stock(reward_id) == 100 - 3
    station.assert_books_hold(reward_id)
    assert station.one("SELECT count(*) FROM ledger_txn WHERE volunteer_id = ? AND kind = 'redeem'", vid) == 3


def test_64_identical_submissions_make_one_redemption(station):
    """One kiosk session's POST (same cookies, same op) sent 64 times at once: one effect."""
    reward_id = station.reward_ids["same"]
    (vid,) = station.people["same"]
    jar, csrf, op = station.kiosk_for(vid, reward_id)
    answers = race(station, [(jar, csrf, op)] * N, reward_id)

    statuses = [s for s, _ in answers]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses == [200] * N, f"every retry answers with the pickup page: {sorted(set(statuses))}"
    reds = station.redemptions(reward_id)
    assert [(r[0], r[1], r[4]) for r in reds] == [(op, vid, "pending")]
    assert {code_of(body) for _, body in answers} == {reds[0][3]}, "every answer shows the one pickup code"
    assert station.balance(vid) == 4 * PRICE
    assert station.stock(reward_id) == 100 - 1
    station.assert_books_hold(reward_id)
    assert station.one("SELECT count(*) FROM audit_log WHERE action = 'redeem' AND entity_id = ?", op) == 1
