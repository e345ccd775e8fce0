"""Bench data for the check-in benchmark: events running now, many volunteers with phones.

Everything goes in through the app's own domain functions inside create_app()'s app context
(kiosk.events, kiosk.volunteers), as a manager and the volunteers themselves would have made it:

- `setup_station(instance, events)`: the board's realistic week (bench/datagen.py) and N events
  running now;
- `VolunteerFactory(instance, event_ids).make(n)`: volunteers (realistic Chinese names and
  mobiles, some in teams), each with a remembered phone: its device cookie, its event.
- `prepare_phones(base_url, ...)`: drives the real phone endpoints once per volunteer through
  the running server: GET /v/s/<code> (the kiosk's rotating QR, current step) gives the session
  a scan pass; GET /v/events/<id> renders the sign-in form with its CSRF token and its `op`
  (the idempotency key minted with the form). The result is the exact POST a phone would send.

Two short cuts, both only about setup cost and both through the app's own code:
- every volunteer has the same PIN; its scrypt hash is computed once and reused (3,000 scrypt
  hashes would take minutes and are not what is measured);
- the remembered phone is minted with volunteers.remember_device() and the device cookie signed
  with the view's own signer, instead of 3,000 POST /v/identify (each one a deliberate ~70 ms
  scrypt check). tests/test_concurrency.py drives /v/identify for real.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
            "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔")
GIVEN = ("秀英桂英秀兰玉兰桂兰秀珍凤英玉珍玉梅明华建华建国建军志强志明国强国华文华丽华丽娟淑珍淑华海燕海涛"
         "小红小明晓东晓燕伟强伟华春梅春华秋菊冬梅金凤金花德明德华永强永红立新立国卫东卫国红梅红霞艳红艳华"
         "丽萍丽芳美玲美华宏伟振华振国俊杰子轩梓涵浩然欣怡雨涵思远佳怡")
TEAMS = ["巾帼志愿服务队", "党员志愿服务队", "青年志愿服务队", "阅读推广志愿服务队", "法律志愿服务队",
         "鼓楼区医院志愿服务队", "交通文明志愿服务队", "环保志愿服务队", "关工委“五老”志愿服务队", "社区文艺队"]
RUNNING_TITLES = ["文明实践站值班：接待居民、整理图书", "南后街文明交通劝导", "助老助餐志愿服务", "社区卫生服务站导诊",
                  "三坊七巷游客文明引导", "垃圾分类督导：桶边值守", "图书角整理和借阅登记", "义务理发进衣锦坊",
                  "防溺水安全巡查：安泰河沿线", "独居老人上门探访（光禄坊片区）", "社区广场秩序维护",
                  "地铁口文明乘车引导"]
PLACES = ["实践站一楼大厅", "南后街口", "社区长者食堂", "社区卫生服务站", "南后街戏台", "各小区垃圾投放点",
          "社区图书角", "社区一楼活动室", "安泰河边步道", "光禄坊片区", "社区广场", "地铁1号线南门兜站 B 口"]
PIN = "258369"


@dataclass
class Phone:
    """One volunteer's phone, ready to tap 签到 at one event."""

    volunteer_id: str
    event_id: str
    device_cookie: str  # "kiosk_device=..."
    session_cookie: str = ""  # "kiosk_session=..." with a scan pass and a CSRF token
    csrf: str = ""
    op: str = ""
    prepared_at: float = 0.0  # time.time() of the scan: the pass lasts 300 s

    @property
    def path(self) -> str:
        return f"/v/events/{self.event_id}/checkin"

    @property
    def cookie_header(self) -> str:
        return f"{self.device_cookie}; {self.session_cookie}"

    @property
    def body(self) -> str:
        return f"op={self.op}&csrf_token={self.csrf}"


def chinese_name(rng: random.Random) -> str:
    """A surname and a two-character (mostly) or one-character given name."""
    k = rng.randrange(len(GIVEN) // 2)
    given = GIVEN[2 * k:2 * k + 2] if rng.random() < 0.75 else rng.choice(GIVEN)
    return rng.choice(SURNAMES) + given


def _app(instance: Path):
    from kiosk import create_app

    return create_app({"INSTANCE_PATH": str(instance)})


def setup_station(instance: Path, events: int, seed: int = 7, board: bool = True,
                  capacity_share: float = 0.5, log=print) -> list[str]:
    """The board's realistic week (bench/datagen.py) and `events` events running now.

    About half of the running events (capacity_share) have a capacity, so that the capacity
    check (a count inside the write transaction) runs as it does for most real events; it is
    set high enough (20,000) for every volunteer the benchmark assigns. Returns their ids.
    """
    import datagen

    from kiosk import events as ev_domain
    from kiosk.clock import now
    from kiosk.db import begin_write, db

    rng = random.Random(seed)
    t0 = time.perf_counter()
    if board:
        datagen.populate_board(instance, today=50, week=300, seed=seed)
    app = _app(instance)
    with app.app_context():
        try:
            begin_write()
            station = ev_domain.ensure_station()
            if station.code == "STATION":
                ev_domain.update_station("bench", "三坊七巷社区新时代文明实践站", "GL-SFQX", station.idle_timeout_s)
            cats = ev_domain.categories() or [ev_domain.add_category("bench", "志愿服务")]
            at = now()
            event_ids = []
            for i in range(events):
                start = at.replace(second=0) - timedelta(minutes=rng.choice([0, 15, 30, 45, 60]))
                e = ev_domain.create_event("bench", ev_domain.EventData(
                    title=RUNNING_TITLES[i % len(RUNNING_TITLES)], starts_at=start,
                    ends_at=start + timedelta(hours=rng.choice([2, 3, 4])), category_id=rng.choice(cats).id,
                    place=PLACES[i % len(PLACES)], organiser=rng.choice(TEAMS),
                    capacity=20_000 if rng.random() < capacity_share else None,
                    description="志愿者请到场后扫屏幕上的签到二维码。"))
                event_ids.append(e.id)
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()
    log(f"  board week and {events} events running now ({time.perf_counter() - t0:.1f} s)")
    return event_ids


class VolunteerFactory:
    """Registers volunteers (domain functions) with a remembered phone, on demand.

    Volunteer k is assigned to running event k % len(event_ids).
    """

    def __init__(self, instance: Path, event_ids: list[str], seed: int = 7):
        from werkzeug.security import generate_password_hash

        self.app = _app(instance)
        self.event_ids = event_ids
        self.rng = random.Random(seed)
        self.mobiles: set[str] = set()
        self.count = 0
        self.pin_hash = generate_password_hash(PIN, method="scrypt")  # once: see the module docstring

    def _mobile(self) -> str:
        mobile = ""
        while not mobile or mobile in self.mobiles:
            mobile = "1" + self.rng.choice("3456789") + "".join(self.rng.choice("0123456789") for _ in range(9))
        self.mobiles.add(mobile)
        return mobile

    def make(self, n: int, batch: int = 500) -> list[Phone]:
        from kiosk import volunteers as vol_domain
        from kiosk.db import begin_write, db
        from kiosk.views.volunteer import DEVICE_COOKIE, _signer

        phones: list[Phone] = []
        real_hash = vol_domain.generate_password_hash
        vol_domain.generate_password_hash = lambda pin, method=None: self.pin_hash
        try:
            with self.app.app_context():
                signer = _signer()
                try:
                    for first in range(0, n, batch):
                        begin_write()
                        made = []
                        for _ in range(first, min(first + batch, n)):
                            teams = self.rng.sample(TEAMS, self.rng.choice([0, 1, 1, 2]))
                            made.append(vol_domain.register("bench", chinese_name(self.rng), self._mobile(), PIN,
                                                            teams=teams))
                        devices = [vol_domain.remember_device(v) for v in made]
                        db.session.commit()
                        for d in devices:
                            event_id = self.event_ids[self.count % len(self.event_ids)]
                            self.count += 1
                            phones.append(Phone(volunteer_id=d.volunteer_id, event_id=event_id,
                                                device_cookie=f"{DEVICE_COOKIE}={signer.dumps(d.id)}"))
                        db.session.expunge_all()
                finally:
                    db.session.remove()
                    db.engine.dispose()
        finally:
            vol_domain.generate_password_hash = real_hash
        return phones


class CodeMaker:
    """The kiosk's rotating QR code for an event, for the current time step (app's own kiosk.qr)."""

    def __init__(self, instance: Path):
        self.app = _app(instance)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], str] = {}
        with self.app.app_context():
            from kiosk import events
            from kiosk.db import db

            self.station_code = events.get_station().code
            db.session.remove()
            db.engine.dispose()

    def code(self, event_id: str) -> str:
        from kiosk import qr

        with self.app.app_context():
            step = qr.current_step()
            key = (event_id, step)
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = qr.event_code(self.station_code, event_id, step)
                return self._cache[key]


_SET_COOKIE = re.compile(r"^(kiosk_session=[^;]*)")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_OP = re.compile(r'name="op" value="([^"]+)"')


def _session_cookie(resp: http.client.HTTPResponse, current: str) -> str:
    for value in resp.headers.get_all("Set-Cookie") or []:
        m = _SET_COOKIE.match(value)
        if m:
            return m.group(1)
    return current


def prepare_one(conn: http.client.HTTPConnection, phone: Phone, codes: CodeMaker) -> None:
    """Scan the event's current code, then open the event page: the phone's ready-to-tap POST."""
    code = codes.code(phone.event_id)
    conn.request("GET", f"/v/s/{code}", headers={"Cookie": phone.device_cookie})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 303:
        raise RuntimeError(f"scan answered {resp.status}")
    phone.session_cookie = _session_cookie(resp, "")
    phone.prepared_at = time.time()
    conn.request("GET", f"/v/events/{phone.event_id}", headers={"Cookie": phone.cookie_header})
    resp = conn.getresponse()
    html = resp.read().decode("utf-8", "replace")
    if resp.status != 200:
        raise RuntimeError(f"event page answered {resp.status}")
    phone.session_cookie = _session_cookie(resp, phone.session_cookie)
    csrf, op = _CSRF.search(html), _OP.search(html)
    if not (csrf and op and f'action="{phone.path}"' in html):
        raise RuntimeError("event page has no sign-in form (no scan pass, or not identified?)")
    phone.csrf, phone.op = csrf.group(1), op.group(1)


def prepare_phones(base_url: str, phones: list[Phone], codes: CodeMaker, workers: int = 8) -> float:
    """prepare_one() for every phone, `workers` keep-alive connections in parallel; seconds taken."""
    parts = urlsplit(base_url)
    index = iter(range(len(phones)))
    lock = threading.Lock()
    failures: list[str] = []

    def work():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            while not failures:
                with lock:
                    i = next(index, None)
                if i is None:
                    return
                prepare_one(conn, phones[i], codes)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"preparing the phones failed: {failures[0]}")
    return time.perf_counter() - t0
