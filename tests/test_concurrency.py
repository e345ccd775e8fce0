"""Concurrent sign-ins through the real server (QUALITY.md, "Reliability").

`kiosk serve` (waitress) runs in a subprocess on a temp instance with a real SQLite file; the
requests come from real threads, one HTTP connection each, released together by a barrier.
Every phone goes through the real endpoints: POST /v/identify (PIN → remembered-phone cookie),
GET /v/s/<code> (the kiosk's rotating QR → scan pass), GET /v/events/<id> (CSRF token and the
form's `op`), then POST /v/events/<id>/checkin. What counts is what the database holds after.
"""

from __future__ import annotations

import http.client
import re
import sqlite3
import sys
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402  (bench/harness.py: `kiosk serve` on a free port, on a given instance)

from kiosk import create_app, events, qr, volunteers  # noqa: E402
from kiosk.clock import now  # noqa: E402
from kiosk.db import begin_write, db  # noqa: E402

PIN = "258369"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FULL = "名额已经满了"


# --- a phone: a cookie jar and one HTTP connection per request -----------------------------------

class Phone:
    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, resp: http.client.HTTPResponse) -> None:
        for header in resp.headers.get_all("Set-Cookie") or []:
            pair, _, attrs = header.partition(";")
            name, _, value = pair.strip().partition("=")
            if "max-age=0" in attrs.lower().replace(" ", "") or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            body = urlencode(form) if form is not None else None
            conn.request(method, path, body=body, headers=self._headers(FORM if form is not None else None))
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            self._keep(resp)
            return resp.status, text
        finally:
            conn.close()

    def prepared_post(self, path: str, form: dict) -> tuple[str, bytes, dict]:
        """The exact request, to be sent later (possibly many times, from many threads)."""
        return path, urlencode(form).encode(), self._headers(FORM)


def csrf_of(html: str) -> str:
    m = (re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
         or re.search(r'"X-CSRFToken": "([^"]+)"', html))
    assert m, "no CSRF token on the page"
    return m.group(1)


def send_together(requests: list[tuple[str, bytes, dict]], base_url: str) -> list[tuple[int, str]]:
    """Each request from its own thread on its own connection, all released at once."""
    parts = urlsplit(base_url)
    results: list[tuple[int, str] | BaseException | None] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def run(i: int, path: str, body: bytes, headers: dict) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.connect()
            barrier.wait(timeout=30)
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            results[i] = (resp.status, resp.read().decode("utf-8", "replace"))
        except BaseException as e:  # noqa: BLE001 - reported by the caller's assert
            results[i] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    failures = [r for r in results if not isinstance(r, tuple)]
    assert not failures, f"requests without an HTTP answer: {failures[:3]}"
    return results  # type: ignore[return-value]


# --- the station: a real server on a real file ---------------------------------------------------

class Station:
    def __init__(self, folder: Path, base_url: str, app, event_ids: dict[str, str], people: dict[str, list]):
        self.folder, self.base_url, self.app = folder, base_url, app
        self.event_ids, self.people = event_ids, people

    def code(self, event_id: str) -> str:
        with self.app.app_context():
            station_code = events.get_station().code
            return qr.event_code(station_code, event_id, qr.current_step())

    def phone_for(self, volunteer: tuple[str, str], event_id: str) -> tuple[Phone, str, str]:
        """A phone that identified as this volunteer, scanned the event's code and opened its page.

        Returns (phone, csrf token, op) as the page's sign-in form carries them.
        """
        _vid, mobile = volunteer
        phone = Phone(self.base_url)
        status, html = phone.request("GET", "/v/me")
        assert status == 200
        status, _ = phone.request("POST", "/v/identify", {"who": mobile, "pin": PIN, "next": "/v/me",
                                                          "csrf_token": csrf_of(html)})
        assert status == 303 and "kiosk_device" in phone.cookies
        status, _ = phone.request("GET", f"/v/s/{self.code(event_id)}")
        assert status == 303
        status, html = phone.request("GET", f"/v/events/{event_id}")
        assert status == 200 and f'action="/v/events/{event_id}/checkin"' in html, "no sign-in form"
        op = re.search(r'name="op" value="([^"]+)"', html).group(1)
        return phone, csrf_of(html), op

    def phones_for(self, people: list[tuple[str, str]], event_id: str) -> list[tuple[Phone, str, str]]:
        """phone_for() for many volunteers at once (each identify is a deliberate scrypt check)."""
        out: list = [None] * len(people)

        def run(i):
            out[i] = self.phone_for(people[i], event_id)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(people))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert all(out), "a phone could not be prepared"
        return out

    def query(self, sql: str, *params) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.folder / 'kiosk.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def checkins(self, event_id: str) -> list[tuple[str, str, str]]:
        return self.query("SELECT id, volunteer_id, status FROM checkin WHERE event_id = ?", event_id)


GROUPS = {"pairs": 6, "same": 1, "crowd": 40}


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concurrency")
    harness.run_cli(folder, "init")
    app = create_app({"INSTANCE_PATH": str(folder)})
    with app.app_context():
        begin_write()
        cat = events.add_category("test", "志愿服务")
        start = now().replace(second=0) - timedelta(minutes=30)

        def running(title, capacity=None):
            return events.create_event("test", events.EventData(
                title=title, starts_at=start, ends_at=start + timedelta(hours=3), category_id=cat.id,
                place="实践站一楼大厅", organiser="党员志愿服务队", capacity=capacity)).id

        event_ids = {"pairs": running("文明实践站值班：接待居民"), "same": running("助老助餐志愿服务"),
                     "crowd": running("拗九节送粥敬老", capacity=10)}
        people: dict[str, list] = {}
        n = 0
        for group, count in GROUPS.items():
            people[group] = []
            for _ in range(count):
                n += 1
                v = volunteers.register("test", f"志愿者{n}", f"139{n:08d}", PIN)
                people[group].append((v.id, v.mobile))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    server = harness.Server(folder, threads=8)
    with server as base_url:
        yield Station(folder, base_url, app, event_ids, people)
        log = server.log()
    assert "Traceback" not in log, f"the server logged an error:\n{log[-3000:]}"


# --- the tests ------------------------------------------------------------------------------------

def test_one_volunteer_two_phones_at_once_makes_one_checkin(station):
    """Six volunteers, each signing in from two phones (own cookie jars, own ops) at the same time."""
    event_id = station.event_ids["pairs"]
    people = station.people["pairs"]
    phones = station.phones_for([p for p in people for _ in range(2)], event_id)
    requests = [phone.prepared_post(f"/v/events/{event_id}/checkin", {"op": op, "csrf_token": csrf})
                for phone, csrf, op in phones]
    answers = send_together(requests, station.base_url)

    statuses = [s for s, _ in answers]
    assert all(s < 500 for s in statuses), statuses
    rows = station.checkins(event_id)
    by_volunteer = {vid: [r for r in rows if r[1] == vid] for vid, _ in people}
    assert all(len(found) == 1 for found in by_volunteer.values()), by_volunteer
    assert len(rows) == len(people)
    ops = {op for _, _, op in phones}
    for (vid, _), pair in zip(people, zip(answers[::2], answers[1::2], strict=True), strict=True):
        assert 303 in (pair[0][0], pair[1][0]), f"neither phone of {vid} was answered with a sign-in: {pair}"
        (row,) = by_volunteer[vid]
        assert row[0] in ops and row[2] == "open"  # the row is one of the two phones' own ops
    marks = ",".join("?" * len(people))
    (open_count,) = station.query(f"SELECT count(*) FROM checkin WHERE status = 'open' AND volunteer_id IN ({marks})",
                                  *[vid for vid, _ in people])[0]
    assert open_count == len(people)


def test_64_identical_submissions_make_one_checkin(station):
    """One phone's POST (same cookies, same op) sent 64 times at once: one effect, same answer."""
    event_id = station.event_ids["same"]
    (vid, mobile), = station.people["same"]
    phone, csrf, op = station.phone_for((vid, mobile), event_id)
    request = phone.prepared_post(f"/v/events/{event_id}/checkin", {"op": op, "csrf_token": csrf})
    answers = send_together([request] * 64, station.base_url)

    statuses = [s for s, _ in answers]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses == [303] * 64, f"every retry answers like the first time: {sorted(set(statuses))}"
    assert station.checkins(event_id) == [(op, vid, "open")]
    assert station.query("SELECT count(*) FROM checkin WHERE volunteer_id = ?", vid) == [(1,)]
    assert station.query("SELECT count(*) FROM audit_log WHERE action = 'check_in' AND entity_id = ?", op) == [(1,)]
    assert station.query("SELECT count(*) FROM qr_use WHERE event_id = ? AND volunteer_id = ?",
                         event_id, vid) == [(1,)]


def test_40_volunteers_racing_for_10_places_get_exactly_10(station):
    """An event with capacity 10; 40 volunteers tap 签到 at the same moment."""
    event_id = station.event_ids["crowd"]
    people = station.people["crowd"]
    phones = station.phones_for(people, event_id)
    requests = [phone.prepared_post(f"/v/events/{event_id}/checkin", {"op": op, "csrf_token": csrf})
                for phone, csrf, op in phones]
    answers = send_together(requests, station.base_url)

    statuses = [s for s, _ in answers]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(303) == 10, statuses
    assert statuses.count(409) == 30, statuses
    assert all(FULL in body for s, body in answers if s == 409), "the refusal says the event is full"
    rows = station.checkins(event_id)
    assert len(rows) == 10
    signed_in = {vid for (vid, _), (s, _) in zip(people, answers, strict=True) if s == 303}
    assert {r[1] for r in rows} == signed_in  # exactly those told "yes" hold a place
    assert {r[0] for r in rows} <= {op for _, _, op in phones}
    # the refused ones can still see the event, and nothing of theirs was kept
    refused = [vid for (vid, _), (s, _) in zip(people, answers, strict=True) if s == 409]
    marks = ",".join("?" * len(refused))
    assert station.query(f"SELECT count(*) FROM checkin WHERE volunteer_id IN ({marks})", *refused) == [(0,)]
    assert station.query(f"SELECT count(*) FROM qr_use WHERE volunteer_id IN ({marks})", *refused) == [(0,)]
