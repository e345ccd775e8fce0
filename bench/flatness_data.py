"""Bench data for the flatness benchmark: two years of a busy station, written straight into SQLite.

`generate(instance, scale)` fills an instance that `kiosk init` has just created with:

- the station's name and code (GL-SFQX), the nine categories, ten teams, a rewards catalog;
- volunteers with realistic Chinese names and mainland mobiles (one shared PIN: its scrypt hash
  is computed once with kiosk.volunteers.hash_pin), numbered in the order they registered, some
  pending or suspended, some in teams; how active each one is follows a log-normal weight, so
  a few are very busy and many come now and then;
- events over the past two years (Chinese titles, places and organisers from bench/datagen.py,
  a few cancelled), and the coming week: 6 events today and 40 over today and the next seven
  days, drawn from their own seeded generator so that every scale has the very same board;
- check-ins of past events (mostly confirmed with their credited minutes; some closed
  unconfirmed, some no-shows), each volunteer only at events after they registered;
- the love bank's ledger, replayed in time order so that every balance stays >= 0 at every
  posting: an earn per confirmed check-in (points by the station's default rule), corrections
  (reversal + new earn), event awards, everyday adjustments (垃圾分类积分, 爱心捐赠...), a few
  deductions, and redemptions (with their redemption rows and stock moves; some cancelled or
  expired, so reversed with the stock returned; the last fortnight's still pending with a unique
  pickup code). Everyday adjustments fill up the ledger to exactly `postings` postings (each
  transaction has two, summing to zero);
- an audit row for every change, as the domain functions write them.

Rows go in with executemany in one transaction per table group (sqlite3 directly, the same
column formats SQLAlchemy writes: 'YYYY-MM-DD HH:MM:SS.000000', booleans 0/1, UUIDv7 ids minted
from each row's own time), then ANALYZE. The full size (scale 1): 10,000 volunteers, 1,500
events, 100,000 check-ins, 1,000,000 postings. Scale 0.1 is a tenth of everything but the coming
week. `SMALL` is the nearly empty station the benchmark compares with: the same per-volunteer
density (about 10 check-ins and 50 passbook lines each) on 20 volunteers.

    python bench/flatness_data.py INSTANCE [--scale 1] [--small] [--seed 1] [--no-audit]

(`kiosk init` must have run on INSTANCE first.)
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkin_data import PIN, TEAMS, chinese_name  # noqa: E402
from datagen import CATEGORIES, DESCRIPTIONS, NEIGHBOURHOODS, ORGANISERS, PLACES, TITLES  # noqa: E402

STATION_CODE = "GL-SFQX"
STATION_NAME = "三坊七巷社区新时代文明实践站"
HISTORY_DAYS = 730
UPCOMING_TODAY = 6
UPCOMING_WEEK = 40  # today and the next seven days, today's included
PICKUP_DAYS = 14  # the station's default (models.Station.pickup_days)
CREDIT_CAP = 720
POINTS_PER_UNIT = 5  # 10 points an hour, counted per full 30 minutes (the station's defaults)
UNIT_MINUTES = 30
STAR_HOURS = (100, 300, 600, 1000, 1500)
MANAGERS = ("manager:zhanglan", "manager:chenhui", "manager:linyan")
TZ_OFFSET_S = 8 * 3600  # Asia/Shanghai: naive station time -> UTC for the UUIDv7 timestamps

# (name, price, monthly limit, min stars, popularity, description). The first is the one the
# benchmark redeems: no monthly limit, no stars, restocked in bulk yesterday.
REWARDS = [
    ("环保购物袋", 20, None, 0, 10, "可折叠的帆布袋，买菜逛街都好用。"),
    ("抽纸（3 包）", 15, 4, 0, 12, ""),
    ("牙膏", 25, 2, 0, 8, ""),
    ("毛巾", 30, 2, 0, 8, "纯棉毛巾一条。"),
    ("洗洁精", 35, 2, 0, 8, ""),
    ("爱心理发券", 40, 1, 0, 6, "凭券到社区爱心理发点理发一次。"),
    ("洗衣液（2 kg）", 60, 1, 0, 7, ""),
    ("晴雨伞", 80, 1, 0, 3, ""),
    ("电影票两张", 100, 1, 0, 3, "社区影院周末场次通用。"),
    ("食用油（1.8 L）", 120, 1, 0, 6, ""),
    ("大米（5 kg）", 150, 1, 0, 6, "本地新米。"),
    ("不锈钢保温杯", 200, 1, 1, 2, "一星及以上志愿者可兑换。"),
    ("茉莉花茶礼盒", 300, 1, 2, 1, "福州茉莉花茶，二星及以上志愿者可兑换。"),
]

EVERYDAY = [  # (reason, points, weight): small awards a manager records, most of the ledger
    ("垃圾分类积分（智能回收箱）", 1, 30),
    ("垃圾分类积分（智能回收箱）", 2, 20),
    ("文明随手拍：劝导不文明行为", 2, 10),
    ("参加线上理论学习", 1, 12),
    ("社区议事会参会", 3, 6),
    ("爱心捐赠：旧衣物", 5, 5),
    ("邻里互助：帮独居老人买菜", 5, 4),
    ("“光盘行动”打卡", 1, 8),
    ("家庭读书会分享", 3, 3),
    ("义务献血", 20, 1),
]
AWARD_REASONS = ("优秀志愿者表彰", "活动骨干奖励", "服务之星加分")
DEDUCTIONS = ("重复登记，扣回积分", "活动未到场，扣回奖励积分")
CANCEL_REASONS = ("志愿者说不要了", "物品有损坏，改天换别的", "误点了，取消")
CORRECTIONS = ("忘记签退，按实际服务时间更正", "提前离开，按实际服务时间更正")


@dataclass(frozen=True)
class Size:
    volunteers: int
    events: int  # in total, the coming week's UPCOMING_WEEK included
    checkins: int
    postings: int

    @staticmethod
    def scaled(scale: float) -> Size:
        return Size(volunteers=max(20, round(10_000 * scale)),
                    events=UPCOMING_WEEK + max(30, round((1_500 - UPCOMING_WEEK) * scale)),
                    checkins=max(200, round(100_000 * scale)), postings=max(2_000, round(1_000_000 * scale) // 2 * 2))


FULL = Size.scaled(1.0)
SMALL = Size(volunteers=20, events=UPCOMING_WEEK + 30, checkins=200, postings=2_000)


# --- times and ids ------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1)


def secs(dt: datetime) -> int:
    return int((dt - EPOCH).total_seconds())


class Clock:
    """Times as whole seconds since 1970 in station time; formatted as SQLAlchemy stores them."""

    def __init__(self):
        self._days: dict[int, str] = {}

    def fmt(self, s: int | None) -> str | None:
        if s is None:
            return None
        d, r = divmod(s, 86400)
        day = self._days.get(d)
        if day is None:
            day = self._days[d] = (EPOCH + timedelta(days=d)).strftime("%Y-%m-%d")
        h, r = divmod(r, 3600)
        m, sec = divmod(r, 60)
        return f"{day} {h:02d}:{m:02d}:{sec:02d}.000000"

    def day(self, s: int) -> str:
        return (EPOCH + timedelta(seconds=s)).strftime("%Y-%m-%d")


def make_uuid7(rng: random.Random):
    """A UUIDv7 minted at a given station time (seconds), like uuid6.uuid7() at that moment."""
    bits = rng.getrandbits

    def uuid7(s: int) -> str:
        ms = (s - TZ_OFFSET_S) * 1000 + bits(10) % 1000
        x = (ms << 80) | (0x7 << 76) | (bits(12) << 64) | (0b10 << 62) | bits(62)
        h = f"{x:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    return uuid7


def _title(rng: random.Random, cat: str) -> str:
    return rng.choice(TITLES[cat]).format(n=rng.choice(NEIGHBOURHOODS), k=rng.randint(1, 30))


def _place(rng: random.Random) -> str:
    return rng.choice(PLACES).format(n=rng.choice(NEIGHBOURHOODS))


def _daytime(rng: random.Random, day_start: int) -> int:
    return day_start + rng.randint(8 * 3600, 20 * 3600)


# --- the generator ------------------------------------------------------------------------------

@dataclass
class Info:
    """What the benchmark needs to know about the generated station."""

    size: Size
    seconds: float = 0.0
    verify_seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    number: dict = field(default_factory=dict)  # volunteer id -> number
    status: dict = field(default_factory=dict)  # volunteer id -> status
    lines: dict = field(default_factory=dict)  # volunteer id -> postings on their account
    balance: dict = field(default_factory=dict)  # volunteer id -> points now
    checkins: dict = field(default_factory=dict)  # volunteer id -> check-ins
    bench_reward_id: str = ""
    bench_reward_price: int = 0
    bench_reward_stock: int = 0


class _Txns:
    """The ledger being written, in time order, with every account's running balance."""

    def __init__(self, uuid7, station_code: str):
        self.uuid7 = uuid7
        self.code = station_code
        self.rows: list[tuple] = []  # (at, seq, txn tuple, postings)
        self.balance: dict[str, int] = {}
        self.seq = 0

    def add(self, at: int, kind: str, vid: str, points: int, actor: str, reason: str, counter: str,
            checkin_id=None, event_id=None, redemption_id=None, reverses_id=None, postings=None) -> str:
        tid = self.uuid7(at)
        acc = "v:" + vid
        if postings is None:
            postings = ((acc, points), (counter, -points))
        self.balance[vid] = self.balance.get(vid, 0) + points
        assert self.balance[vid] >= 0, (vid, kind, points)
        self.seq += 1
        self.rows.append((at, self.seq, (tid, kind, vid, points, at, actor, reason, self.code, checkin_id, event_id,
                                         redemption_id, reverses_id), postings))
        return tid


def generate(instance: Path, size: Size = FULL, seed: int = 1, audit: bool = True, analyze: bool = True,
             log=print) -> Info:
    """Fill the freshly initialised instance's database; returns what the benchmark needs.

    analyze=False leaves out ANALYZE: the planner then has no statistics, as on a station's own
    database (the app never runs ANALYZE nor PRAGMA optimize).
    """
    from kiosk.clock import now
    from kiosk.volunteers import hash_pin

    t_start = time.perf_counter()
    rng = random.Random(seed)
    uuid7 = make_uuid7(random.Random(seed + 7))
    clock = Clock()
    fmt = clock.fmt
    info = Info(size=size)

    now_s = secs(now())
    today = now_s - now_s % 86400
    hist_start = today - HISTORY_DAYS * 86400
    pin_hash = hash_pin(PIN)  # once: every volunteer has the same PIN

    # --- station, categories, teams ---------------------------------------------------------
    setup_at = hist_start - 400 * 86400
    categories = [(uuid7(setup_at), name, i, 1, 1, fmt(setup_at)) for i, name in enumerate(CATEGORIES)]
    cat_id = {name: c[0] for name, c in zip(CATEGORIES, categories, strict=True)}
    teams = [(uuid7(setup_at), name, 1, fmt(setup_at)) for name in TEAMS]
    audit_rows: list[tuple] = []

    def aud(at: int, actor: str, action: str, entity: str, entity_id: str, reason: str = "", detail: str = "{}"):
        if audit:
            audit_rows.append((uuid7(at), fmt(at), actor, action, entity, entity_id, reason, detail))

    # --- volunteers -----------------------------------------------------------------------------
    n = size.volunteers
    n_before = round(n * 0.55)
    created = sorted([rng.randint(hist_start - 3 * 365 * 86400, hist_start) for _ in range(n_before)]
                     + [rng.randint(hist_start, now_s - 86400) for _ in range(n - n_before)])
    mobiles: set[str] = set()
    vols = []  # (id, created, weight)
    vol_rows = []
    vol_team_rows = []
    n_pending = max(1, n // 50) if n >= 50 else 0
    suspended = set(rng.sample(range(n - n_pending), max(0, n // 100)))
    for i, c in enumerate(created):
        vid = uuid7(c)
        mobile = ""
        while not mobile or mobile in mobiles:
            mobile = "1" + rng.choice("3456789") + f"{rng.randrange(10**9):09d}"
        mobiles.add(mobile)
        number = f"{STATION_CODE}-{i + 1:04d}"
        if i >= n - n_pending:
            status, via, weight = "pending", rng.choice(("phone", "phone", "kiosk")), 0.0
        else:
            status = "suspended" if i in suspended else "active"
            via = rng.choices(("manager", "import", "phone", "kiosk"), (50, 20, 25, 5))[0]
            weight = rng.lognormvariate(0.0, 1.0) * (0.5 if status == "suspended" else 1.0)
        version = 1 + (via in ("phone", "kiosk") and status != "pending") + (status == "suspended")
        vol_rows.append((vid, number, chinese_name(rng), mobile, pin_hash, status, 1, via, version, fmt(c), fmt(c)))
        aud(c, rng.choice(MANAGERS) if via in ("manager", "import") else via, "register", "volunteer", vid,
            detail=f'{{"number": "{number}", "status": "{"pending" if via in ("phone", "kiosk") else "active"}", '
                   f'"via": "{via}"}}')
        for team in rng.sample(teams, rng.choice((0, 0, 0, 1, 1, 2))):
            vol_team_rows.append((vid, team[0]))
        vols.append((vid, c, weight))
        info.number[vid], info.status[vid] = number, status
    vid_created = [v[1] for v in vols]
    cum = []
    total = 0.0
    for v in vols:
        total += v[2]
        cum.append(total)

    def pick(limit_index: int | None = None) -> int:
        """A volunteer by activity weight among the first limit_index registered."""
        k = len(vols) if limit_index is None else limit_index
        return bisect.bisect_right(cum, rng.random() * cum[k - 1], 0, k - 1)

    # --- events -------------------------------------------------------------------------------
    event_rows = []
    history = []  # (id, start, end, title, bonus, capacity)
    n_hist = size.events - UPCOMING_WEEK
    days = sorted(rng.randrange(HISTORY_DAYS) for _ in range(n_hist))

    def event_row(erng: random.Random, day_start: int, created_at: int, cancelled_share: float):
        cat = erng.choice(CATEGORIES)
        start = day_start + 7 * 3600 + 1800 * erng.randrange(0, 27)
        end = min(start + 60 * erng.choice((45, 60, 90, 90, 120, 120, 150, 180)), day_start + 21 * 3600 + 1800)
        if end <= start:
            end = start + 1800
        eid = uuid7(created_at)
        title = _title(erng, cat)
        bonus = erng.choice((0,) * 8 + (5, 10))
        capacity = erng.choice((None, None, None, 100, 150, 200))
        cancelled = erng.random() < cancelled_share
        cancelled_at = start - erng.randint(3600, 3 * 86400) if cancelled else None
        updated = cancelled_at if cancelled else created_at
        event_rows.append((eid, title, cat_id[cat], _place(erng), erng.choice(ORGANISERS), erng.choice(DESCRIPTIONS),
                           fmt(start), fmt(end), capacity, bonus, 1, fmt(cancelled_at),
                           "天气原因，改期另行通知" if cancelled else "", None, 2 if cancelled else 1,
                           fmt(created_at), fmt(updated)))
        actor = erng.choice(MANAGERS)
        aud(created_at, actor, "create", "event", eid, detail=json.dumps({"title": title}, ensure_ascii=False))
        return eid, start, end, title, bonus, capacity, cancelled

    for d in days:
        day_start = hist_start + d * 86400
        e = event_row(rng, day_start, _daytime(rng, day_start - rng.randint(3, 14) * 86400), 0.03)
        if not e[6]:
            history.append(e)
    # The coming week: its own generator, so that every scale shows the very same board.
    wrng = random.Random(seed + 1000)
    per_day = [UPCOMING_TODAY] + [(UPCOMING_WEEK - UPCOMING_TODAY) // 7 + (1 if i < (UPCOMING_WEEK - UPCOMING_TODAY) % 7
                                                                           else 0) for i in range(7)]
    for offset, count in enumerate(per_day):
        for _ in range(count):
            event_row(wrng, today + offset * 86400, _daytime(wrng, today - wrng.randint(1, 10) * 86400), 0.03)

    # --- check-ins ----------------------------------------------------------------------------
    factors = [rng.uniform(0.3, 1.7) for _ in history]
    fsum = sum(factors) or 1.0
    want = [max(1, round(size.checkins * f / fsum)) for f in factors]
    positive_before = [0]  # volunteers who come at all, among the first k registered
    for v in vols:
        positive_before.append(positive_before[-1] + (v[2] > 0))
    room = []
    for i, e in enumerate(history):
        room.append(min(positive_before[bisect.bisect_left(vid_created, e[1])], e[5] or 10**9))
        want[i] = min(want[i], room[i])
    diff = size.checkins - sum(want)
    while diff != 0 and history:
        i = rng.randrange(len(history))
        if diff > 0 and want[i] < room[i]:
            want[i] += 1
            diff -= 1
        elif diff < 0 and want[i] > 0:
            want[i] -= 1
            diff += 1

    checkin_rows = []
    intents = []  # (at, seq, kind, payload)
    seq = 0
    minutes_of: dict[str, int] = {}
    attendees_of: dict[str, list[str]] = {}
    for e, m in zip(history, want, strict=True):
        eid, start, end, title, bonus, capacity, _ = e
        k = bisect.bisect_left(vid_created, start)
        chosen: set[int] = set()
        tries = 0
        while len(chosen) < m and tries < 40 * m:
            chosen.add(pick(k))
            tries += 1
        if len(chosen) < m:
            rest = [j for j in range(k) if vols[j][2] > 0 and j not in chosen]
            chosen.update(rng.sample(rest, m - len(chosen)))
        confirmed = []
        for j in chosen:
            vid = vols[j][0]
            t_in = start + rng.randint(-30 * 60, 10 * 60)
            t_out = max(t_in, end + rng.randint(-15 * 60, 20 * 60))
            source_in = rng.choices(("phone", "kiosk", "manager"), (70, 25, 5))[0]
            r = rng.random()
            note, version = "", 2
            if r < 0.95:
                status, source_out = "confirmed", source_in if source_in != "manager" else "manager"
            elif r < 0.97:
                status, source_out, t_out = "unconfirmed", "auto", max(end, t_in)
            else:
                status, source_out, t_out, note, version = "no_show", "manager", t_in, "未到场", 3
            credited = 0 if status == "no_show" else max(0, min((min(t_out, end) - max(t_in, start)) // 60, CREDIT_CAP))
            cid = uuid7(t_in)
            row = [cid, eid, vid, fmt(t_in), fmt(t_out), source_in, source_out, status, credited, note, version,
                   fmt(t_in), fmt(t_out)]
            checkin_rows.append(row)
            info.checkins[vid] = info.checkins.get(vid, 0) + 1
            actor = f"volunteer:{info.number[vid]}"
            aud(t_in, actor, "check_in", "checkin", cid,
                detail=f'{{"at": "{(EPOCH + timedelta(seconds=t_in)).isoformat()}", "event_id": "{eid}", '
                       f'"source": "{source_in}"}}')
            if status == "confirmed":
                aud(t_out, actor, "check_out", "checkin", cid,
                    detail=f'{{"at": "{(EPOCH + timedelta(seconds=t_out)).isoformat()}", '
                           f'"credited_minutes": {credited}, "source": "{source_out}"}}')
                points = credited // UNIT_MINUTES * POINTS_PER_UNIT + bonus if credited > 0 else 0
                if points > 0:
                    seq += 1
                    intents.append((t_out, seq, "earn", (row, eid, title, vid, points, start, end, bonus)))
                    confirmed.append(vid)
                minutes_of[cid] = credited
        attendees_of[eid] = confirmed
        # A manager's award to everyone confirmed at some events, a day or three later.
        if confirmed and rng.random() < 0.15:
            at = end + rng.randint(86400, 3 * 86400)
            if at < now_s:
                pts, reason, actor = rng.choice((5, 10)), rng.choice(AWARD_REASONS), rng.choice(MANAGERS)
                for vid in confirmed:
                    seq += 1
                    intents.append((at, seq, "award", (vid, pts, reason, actor, eid)))

    # --- planned ledger volume ------------------------------------------------------------------
    target_txns = size.postings // 2
    n_earn = sum(1 for x in intents if x[2] == "earn")
    n_award = len(intents) - n_earn
    n_corr = round(n_earn * 0.01)
    n_red = round(target_txns * 0.06)
    n_ded = round(target_txns * 0.005)
    n_red_txns = round(n_red * 1.06)
    n_fill = target_txns - n_earn - n_award - 2 * n_corr - n_red_txns - n_ded
    if n_fill < 0:
        raise ValueError(f"{size.postings} postings are too few for {size.checkins} check-ins")

    earn_intents = [x for x in intents if x[2] == "earn"]
    for x in rng.sample(earn_intents, min(n_corr, len(earn_intents))):
        at = x[0] + rng.randint(86400, 5 * 86400)
        if at < now_s:
            seq += 1
            intents.append((at, seq, "correct", x[3]))

    def when(j: int, earliest: int) -> int:
        start = max(vols[j][1], earliest)
        day = start - start % 86400 + 86400 * rng.randrange(max(1, (now_s - start) // 86400))
        return min(max(_daytime(rng, day), start + 60), now_s - 60)

    for _ in range(n_fill):
        j = pick()
        seq += 1
        intents.append((when(j, hist_start), seq, "fill", j))
    for _ in range(n_ded):
        j = pick()
        seq += 1
        intents.append((when(j, hist_start + 30 * 86400), seq, "deduct", j))
    for _ in range(n_red):
        j = pick()
        seq += 1
        intents.append((when(j, hist_start + 30 * 86400), seq, "redeem", j))
    fill_reasons = [x[:2] for x in EVERYDAY]
    fill_weights = [x[2] for x in EVERYDAY]

    # --- rewards --------------------------------------------------------------------------------
    reward_rows = []
    rewards = []  # [id, name, price, limit, stars, popularity, stock]
    stock_rows = []
    made_at = hist_start - 86400
    for name, price, limit, stars, pop, _desc in REWARDS:
        rid = uuid7(made_at - 3600)
        rewards.append([rid, name, price, limit, stars, pop, 0])
        aud(made_at - 3600, MANAGERS[0], "create", "reward", rid,
            detail=json.dumps({"name": name, "price_points": price}, ensure_ascii=False, sort_keys=True))
    red_rows = []
    pending_codes: set[str] = set()
    monthly: dict[tuple, int] = {}

    def restock(r, at: int, qty: int, reason: str, actor: str):
        r[6] += qty
        stock_rows.append((uuid7(at), r[0], "restock", qty, None, actor, reason, fmt(at)))
        aud(at, actor, "restock", "reward", r[0], reason=reason,
            detail=f'{{"quantity": {qty}, "stock": {r[6]}}}')

    for r in rewards:
        restock(r, made_at, 50, "初始库存", MANAGERS[0])

    # --- the ledger, replayed in time order ---------------------------------------------------
    ledger = _Txns(uuid7, STATION_CODE)
    heapq.heapify(intents)
    mins: dict[str, int] = {}  # confirmed minutes so far, per volunteer (stars)
    live_earn: dict[str, tuple[str, int]] = {}  # check-in id -> (earn txn id, points)
    code_alphabet = "23456789"
    while intents:
        at, _, kind, p = heapq.heappop(intents)
        if kind == "earn":
            row, eid, title, vid, points, start, end, bonus = p
            tid = ledger.add(at, "earn", vid, points, f"volunteer:{info.number[vid]}", title, "station:issued",
                             checkin_id=row[0], event_id=eid)
            live_earn[row[0]] = (tid, points)
            mins[vid] = mins.get(vid, 0) + row[8]
            aud(at, f"volunteer:{info.number[vid]}", "earn", "ledger_txn", tid, title,
                f'{{"points": {points}, "volunteer": "{info.number[vid]}"}}')
        elif kind == "correct":
            row, eid, title, vid, old_points, start, end, bonus = p
            old_tid, old = live_earn[row[0]]
            t_in = start + rng.randint(-5 * 60, 5 * 60)
            new_minutes = max(0, min(row[8] + rng.choice((30, 60, -30)), (end - max(t_in, start)) // 60, CREDIT_CAP))
            new = new_minutes // UNIT_MINUTES * POINTS_PER_UNIT + bonus if new_minutes > 0 else 0
            if new == old or ledger.balance.get(vid, 0) < old:
                continue
            actor, reason = rng.choice(MANAGERS), rng.choice(CORRECTIONS)
            mins[vid] += new_minutes - row[8]
            row[3], row[4], row[8] = fmt(t_in), fmt(max(t_in, start) + new_minutes * 60 + rng.randint(0, 59)), new_minutes
            row[6], row[9], row[10], row[12] = "manager", reason, row[10] + 1, fmt(at)
            aud(at, actor, "correct", "checkin", row[0], reason, f'{{"credited_minutes": [{old}, {new_minutes}]}}')
            rev = ledger.add(at, "reverse", vid, -old, actor, "服务时长更正", "station:issued", checkin_id=row[0],
                             event_id=eid, reverses_id=old_tid)
            aud(at, actor, "reverse", "ledger_txn", rev, "服务时长更正", f'{{"points": {-old}, "reverses": "{old_tid}"}}')
            if new > 0:
                tid = ledger.add(at, "earn", vid, new, actor, title, "station:issued", checkin_id=row[0], event_id=eid)
                live_earn[row[0]] = (tid, new)
                aud(at, actor, "earn", "ledger_txn", tid, title, f'{{"points": {new}, "volunteer": "{info.number[vid]}"}}')
        elif kind == "award":
            vid, pts, reason, actor, eid = p
            tid = ledger.add(at, "adjust", vid, pts, actor, reason, "station:issued", event_id=eid)
            aud(at, actor, "adjust", "ledger_txn", tid, reason, f'{{"points": {pts}, "volunteer": "{info.number[vid]}"}}')
        elif kind == "fill":
            vid = vols[p][0]
            reason, pts = rng.choices(fill_reasons, fill_weights)[0]
            actor = rng.choice(MANAGERS)
            tid = ledger.add(at, "adjust", vid, pts, actor, reason, "station:issued")
            aud(at, actor, "adjust", "ledger_txn", tid, reason, f'{{"points": {pts}, "volunteer": "{info.number[vid]}"}}')
        elif kind == "deduct":
            vid = vols[p][0]
            pts = rng.choice((5, 10, 20))
            if ledger.balance.get(vid, 0) < pts:
                continue
            actor, reason = rng.choice(MANAGERS), rng.choice(DEDUCTIONS)
            tid = ledger.add(at, "adjust", vid, -pts, actor, reason, "station:issued")
            aud(at, actor, "adjust", "ledger_txn", tid, reason, f'{{"points": {-pts}, "volunteer": "{info.number[vid]}"}}')
        elif kind == "redeem":
            vid = vols[p][0]
            if info.status[vid] != "active":
                continue
            bal = ledger.balance.get(vid, 0)
            level = sum(1 for h in STAR_HOURS if mins.get(vid, 0) >= h * 60)
            month = clock.day(at)[:7]
            options = [r for r in rewards if r[2] <= bal and r[4] <= level
                       and (r[3] is None or monthly.get((vid, r[0], month), 0) < r[3])]
            if not options:
                continue
            r = rng.choices(options, [o[5] for o in options])[0]
            if r[6] < 1:
                restock(r, at - rng.randint(3600, 2 * 86400), rng.randint(30, 100), "补货", rng.choice(MANAGERS))
            red_id = uuid7(at)
            actor = f"volunteer:{info.number[vid]}"
            tid = ledger.add(at, "redeem", vid, -r[2], actor, r[1], "station:redeemed", redemption_id=red_id)
            aud(at, actor, "redeem", "ledger_txn", tid, r[1], f'{{"points": {-r[2]}, "volunteer": "{info.number[vid]}"}}')
            r[6] -= 1
            stock_rows.append((uuid7(at), r[0], "redeem", -1, red_id, actor, "", fmt(at)))
            fate = rng.random()
            expires = at + PICKUP_DAYS * 86400
            status, closed_at, closed_by, close_reason = "pending", None, "", ""
            if fate < 0.03:
                t = at + rng.randint(600, 3 * 86400)
                if t < now_s:
                    status, closed_at, closed_by, close_reason = "cancelled", t, rng.choice(MANAGERS), rng.choice(
                        CANCEL_REASONS)
            elif fate < 0.06:
                if expires < now_s:
                    status, closed_at, closed_by, close_reason = "expired", expires, "system", "超过取货期限未领取"
            else:
                t = at + rng.randint(600, 7 * 86400)
                if t < now_s:
                    status, closed_at, closed_by = "handed_over", t, rng.choice(MANAGERS)
            code = ""
            while not code or (status == "pending" and code in pending_codes):
                code = "".join(rng.choice(code_alphabet) for _ in range(6))
            if status == "pending":
                pending_codes.add(code)
            if status in ("pending", "handed_over"):
                monthly[(vid, r[0], month)] = monthly.get((vid, r[0], month), 0) + 1
            red_rows.append((red_id, vid, r[0], r[2], code, status, fmt(at), fmt(expires), fmt(closed_at), closed_by,
                             close_reason, tid, 1 if status == "pending" else 2))
            aud(at, actor, "redeem", "redemption", red_id,
                detail=json.dumps({"pickup_code": code, "points": r[2], "reward": r[1]}, ensure_ascii=False))
            if status == "handed_over":
                aud(closed_at, closed_by, "hand_over", "redemption", red_id,
                    detail=json.dumps({"reward": r[1]}, ensure_ascii=False))
            elif status in ("cancelled", "expired"):
                seq += 1
                heapq.heappush(intents, (closed_at, seq, "undo", (vid, tid, r, red_id, status, closed_by, close_reason)))
        elif kind == "undo":
            vid, tid, r, red_id, status, actor, reason = p
            rev = ledger.add(at, "reverse", vid, r[2], actor, reason, "station:redeemed", redemption_id=red_id,
                             reverses_id=tid, postings=(("v:" + vid, r[2]), ("station:redeemed", -r[2])))
            aud(at, actor, "reverse", "ledger_txn", rev, reason, f'{{"points": {r[2]}, "reverses": "{tid}"}}')
            r[6] += 1
            stock_rows.append((uuid7(at), r[0], "return", 1, red_id, actor, reason, fmt(at)))
            aud(at, actor, status, "redemption", red_id, reason, json.dumps({"reward": r[1]}, ensure_ascii=False))

    # Top up to exactly the target with everyday awards: only credits, so every balance still holds.
    missing = target_txns - len(ledger.rows)
    if missing < 0:
        raise AssertionError(f"planned {target_txns} transactions, made {len(ledger.rows)}")
    extra = []
    for _ in range(missing):
        j = pick()
        extra.append((when(j, hist_start), j))
    extra.sort()
    for at, j in extra:
        vid = vols[j][0]
        reason, pts = rng.choices(fill_reasons, fill_weights)[0]
        actor = rng.choice(MANAGERS)
        ledger.add(at, "adjust", vid, pts, actor, reason, "station:issued")
        aud(at, actor, "adjust", "ledger_txn", ledger.rows[-1][2][0], reason,
            f'{{"points": {pts}, "volunteer": "{info.number[vid]}"}}')
    ledger.rows.sort(key=lambda x: (x[0], x[1]))
    # The re-sort interleaved the top-ups: check every running balance again, in posting order.
    running: dict[str, int] = {}
    for _, _, _txn, postings in ledger.rows:
        assert sum(a for _, a in postings) == 0
        acc, amount = postings[0]
        running[acc] = running.get(acc, 0) + amount
        if running[acc] < 0:
            raise AssertionError(f"negative balance on {acc}")
    # The benchmark's reward: a bulk restock yesterday, so a benchmark run never runs out.
    bench = rewards[0]
    restock(bench, now_s - 86400, 1000, "大批补货", MANAGERS[1])
    for r in rewards:
        reward_rows.append((r[0], r[1], next(x[5] for x in REWARDS if x[0] == r[1]), "", r[2], r[6], r[3], r[4], None,
                            None, 1, 3, 1, fmt(made_at - 3600), fmt(made_at - 3600)))
    info.bench_reward_id, info.bench_reward_price, info.bench_reward_stock = bench[0], bench[2], bench[6]
    t_build = time.perf_counter() - t_start
    log(f"  built {len(ledger.rows):,} transactions, {len(checkin_rows):,} check-ins, {len(red_rows):,} redemptions, "
        f"{len(audit_rows):,} audit rows in memory ({t_build:.1f} s)")

    # --- write ----------------------------------------------------------------------------------
    t_write = time.perf_counter()
    db = sqlite3.connect(instance / "kiosk.sqlite3", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("BEGIN")
        db.execute("UPDATE station SET code = ?, name = ?, next_volunteer_seq = ?, version = version + 1, "
                   "updated_at = ? WHERE id = 1", (STATION_CODE, STATION_NAME, n + 1, fmt(setup_at)))
        db.executemany("INSERT INTO category (id, name, position, active, version, updated_at) VALUES (?,?,?,?,?,?)",
                       categories)
        db.executemany("INSERT INTO team (id, name, version, updated_at) VALUES (?,?,?,?)", teams)
        db.executemany("INSERT INTO volunteer (id, number, name, mobile, pin_hash, status, card_serial, registered_via, "
                       "version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", vol_rows)
        db.executemany("INSERT INTO volunteer_team (volunteer_id, team_id) VALUES (?,?)", vol_team_rows)
        db.executemany("INSERT INTO event (id, title, category_id, place, organiser, description, starts_at, ends_at, "
                       "capacity, bonus_points, published, cancelled_at, cancel_reason, series_id, version, created_at, "
                       "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", event_rows)
        checkin_rows.sort(key=lambda r: r[0])
        db.executemany("INSERT INTO checkin (id, event_id, volunteer_id, checked_in_at, checked_out_at, source_in, "
                       "source_out, status, credited_minutes, note, version, created_at, updated_at) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", checkin_rows)
        db.executemany("INSERT INTO reward (id, name, description, picture, price_points, stock, monthly_limit, "
                       "min_stars, available_from, available_until, active, low_stock, version, created_at, updated_at) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", reward_rows)
        db.executemany("INSERT INTO ledger_txn (id, kind, volunteer_id, points, at, actor, reason, station_code, "
                       "checkin_id, event_id, redemption_id, reverses_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       ((t[0], t[1], t[2], t[3], fmt(t[4]), *t[5:]) for _, _, t, _ in ledger.rows))
        db.executemany("INSERT INTO posting (txn_id, account, amount) VALUES (?,?,?)",
                       ((t[0], acc, amount) for _, _, t, postings in ledger.rows for acc, amount in postings))
        db.executemany("INSERT INTO redemption (id, volunteer_id, reward_id, points, pickup_code, status, created_at, "
                       "expires_at, closed_at, closed_by, close_reason, txn_id, version) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", red_rows)
        stock_rows.sort(key=lambda r: r[0])
        db.executemany("INSERT INTO stock_move (id, reward_id, kind, delta, redemption_id, actor, reason, at) "
                       "VALUES (?,?,?,?,?,?,?,?)", stock_rows)
        audit_rows.sort(key=lambda r: r[0])
        db.executemany("INSERT INTO audit_log (id, at, actor, action, entity, entity_id, reason, detail) "
                       "VALUES (?,?,?,?,?,?,?,?)", audit_rows)
        db.execute("COMMIT")
        t_analyze = time.perf_counter()
        if analyze:
            db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log(f"  written in {t_analyze - t_write:.1f} s, {'ANALYZE and ' if analyze else ''}checkpoint "
            f"{time.perf_counter() - t_analyze:.1f} s")
        info.seconds = time.perf_counter() - t_start
        tables = ("volunteer", "event", "checkin", "ledger_txn", "posting", "redemption", "stock_move", "reward",
                  "audit_log")
        info.counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        t_verify = time.perf_counter()
        _verify(db, info)
        info.verify_seconds = time.perf_counter() - t_verify
    finally:
        db.close()

    for vid in info.number:
        info.lines[vid] = 0
    for _, _, t, _ in ledger.rows:
        info.lines[t[2]] += 1
    info.balance = {vid: running.get("v:" + vid, 0) for vid in info.number}
    return info


def _verify(db: sqlite3.Connection, info: Info) -> None:
    """The ledger's invariants and the foreign keys, on the file as written."""
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    problems = []
    if one("SELECT count(*) FROM posting") != 2 * one("SELECT count(*) FROM ledger_txn"):
        problems.append("postings != 2 x transactions")
    if one("SELECT coalesce(sum(amount), 0) FROM posting") != 0:
        problems.append("postings do not sum to zero")
    if one("SELECT count(*) FROM (SELECT txn_id FROM posting GROUP BY txn_id HAVING sum(amount) <> 0)"):
        problems.append("a transaction's postings do not sum to zero")
    if one("SELECT count(*) FROM ledger_txn t WHERE points <> (SELECT amount FROM posting p WHERE p.txn_id = t.id "
           "AND p.account = 'v:' || t.volunteer_id)"):
        problems.append("a transaction's points differ from its volunteer posting")
    if one("SELECT count(*) FROM reward r WHERE stock <> (SELECT coalesce(sum(delta), 0) FROM stock_move m "
           "WHERE m.reward_id = r.id) OR stock < 0"):
        problems.append("stock != sum of stock moves")
    if one("SELECT count(*) FROM (SELECT checkin_id FROM ledger_txn t WHERE kind = 'earn' AND checkin_id IS NOT NULL "
           "AND NOT EXISTS (SELECT 1 FROM ledger_txn r WHERE r.reverses_id = t.id) GROUP BY checkin_id "
           "HAVING count(*) > 1)"):
        problems.append("a check-in has two live earns")
    fk = db.execute("PRAGMA foreign_key_check").fetchall()
    if fk:
        problems.append(f"foreign keys: {fk[:3]}")
    if problems:
        raise AssertionError("generated data is inconsistent: " + "; ".join(problems))


def read_info(instance: Path) -> Info:
    """The Info of an instance generated earlier, read back from its database (balances as now)."""
    db = sqlite3.connect(f"file:{instance / 'kiosk.sqlite3'}?mode=ro", uri=True)
    try:
        tables = ("volunteer", "event", "checkin", "ledger_txn", "posting", "redemption", "stock_move", "reward",
                  "audit_log")
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        info = Info(size=Size(counts["volunteer"], counts["event"], counts["checkin"], counts["posting"]),
                    counts=counts)
        for vid, number, status in db.execute("SELECT id, number, status FROM volunteer"):
            info.number[vid], info.status[vid] = number, status
            info.lines[vid] = info.balance[vid] = info.checkins[vid] = 0
        for account, lines, total in db.execute(
                "SELECT account, count(*), sum(amount) FROM posting WHERE account LIKE 'v:%' GROUP BY account"):
            info.lines[account[2:]], info.balance[account[2:]] = lines, total
        for vid, n in db.execute("SELECT volunteer_id, count(*) FROM checkin GROUP BY volunteer_id"):
            info.checkins[vid] = n
        info.bench_reward_id, info.bench_reward_price, info.bench_reward_stock = db.execute(
            "SELECT id, price_points, stock FROM reward WHERE name = ?", (REWARDS[0][0],)).fetchone()
        return info
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--small", action="store_true", help="the nearly empty station instead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-audit", action="store_true", help="leave out the audit trail's rows")
    parser.add_argument("--no-analyze", action="store_true", help="leave out ANALYZE (as a station's own database)")
    args = parser.parse_args()
    size = SMALL if args.small else Size.scaled(args.scale)
    info = generate(args.instance, size, seed=args.seed, audit=not args.no_audit, analyze=not args.no_analyze)
    print(json.dumps({"seconds": round(info.seconds, 1), "verify_seconds": round(info.verify_seconds, 1),
                      "counts": info.counts}, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
