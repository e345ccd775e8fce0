"""Benchmark "export" (QUALITY.md): a full signed export through `kiosk serve` vs `sqlite3 -json`.

1. A station with ROWS change_log rows, made quickly: `kiosk init` + `kiosk demo` give real rows
   of every exported entity as the app logs them (kiosk/changelog.py); those are the templates.
   The rest is written with raw SQL (executemany, one transaction) into change_log: each row a
   template with a fresh UUIDv7 id and varied fields (names, points, times), serialised exactly
   as changelog.entry() does (compact JSON, ensure_ascii=False); seq stays AUTOINCREMENT order.
2. `kiosk serve`; a full pull run (limit=5000, following next_cursor to the end) with a streaming
   http.client reader on one keep-alive connection, once without and once with gzip. rows/s is
   end to end (first request to last byte). The server's RSS (with children) is sampled every
   50 ms during both runs (psutil); peak_mb is the higher of the two.
3. Baseline: `/usr/bin/sqlite3 -json kiosk.sqlite3 "SELECT * FROM change_log"` read from a pipe
   the same way (bytes streamed, timed from spawn to EOF): rows/s.
4. A pull with nothing new: 50 calls with the last resume_cursor (each a new, empty run); p50 of
   the time a call takes (client side, keep-alive, so it is the server's time plus loopback).

    python bench/export.py [--quick] [--rows N] [--limit 5000] [--keep DIR]

Last line: {"bench": "export", "ratio", "rows_per_s", "baseline_rows_per_s", "peak_mb",
"empty_pull_ms", ...}. ratio is gzip off (like for like with sqlite3's uncompressed output);
ratio_gzip is given too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402
from checkin_data import chinese_name  # noqa: E402
from flatness_data import Clock, make_uuid7  # noqa: E402

from kiosk import signing  # noqa: E402

SQLITE3 = "/usr/bin/sqlite3"
FULL_ROWS, QUICK_ROWS = 1_000_000, 100_000
SAMPLE_S = 0.05
EMPTY_CALLS = 50
# The mix of a busy station's log: the ledger and the audit trail dominate, then attendance.
MIX = {"ledger_txn": 34, "audit_log": 30, "checkin": 20, "volunteer": 5, "stock_move": 4, "event": 4,
       "station": 1, "reward": 1, "category": 0.3, "team": 0.3, "event_series": 0.3}
REASONS = ["垃圾分类积分（智能回收箱）", "文明随手拍：劝导不文明行为", "参加线上理论学习", "社区议事会参会",
           "爱心捐赠：旧衣物", "邻里互助：帮独居老人买菜", "“光盘行动”打卡", "家庭读书会分享", "义务献血"]


# --- the data ---------------------------------------------------------------------------------

def generate(instance: Path, rows: int, seed: int = 1) -> dict:
    """Fill change_log up to `rows` rows (see the module docstring); returns counts and timing."""
    t0 = time.perf_counter()
    harness.run_cli(instance, "init")
    harness.run_cli(instance, "demo")
    conn = sqlite3.connect(instance / "kiosk.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    templates: dict[str, list[dict]] = {}
    for entity, data in conn.execute("SELECT entity, data FROM change_log WHERE op = 'upsert' ORDER BY seq"):
        templates.setdefault(entity, []).append(json.loads(data))
    have = conn.execute("SELECT count(*) FROM change_log").fetchone()[0]
    entities = [e for e in MIX if e in templates]
    weights = [MIX[e] for e in entities]
    rng = random.Random(seed)
    uuid7 = make_uuid7(rng)
    clock = Clock()
    start = int(time.time()) + 8 * 3600 - 730 * 86400  # two years of station time, in order
    step = max(1, (730 * 86400) // max(1, rows))
    dumps = json.dumps
    names = [chinese_name(rng) for _ in range(2000)]
    vol_ids = [uuid7(start + i) for i in range(2000)]

    def rows_gen():
        picks = rng.choices(entities, weights, k=rows - have)
        for i, entity in enumerate(picks):
            s = start + i * step
            at = clock.fmt(s)
            iso = at[:19].replace(" ", "T")
            d = dict(rng.choice(templates[entity]))
            if entity != "station":
                d["id"] = uuid7(s)
            if "updated_at" in d:
                d["updated_at"] = iso
            if "created_at" in d:
                d["created_at"] = iso
            if "at" in d:
                d["at"] = iso
            v = rng.randrange(len(vol_ids))
            if "volunteer_id" in d:
                d["volunteer_id"] = vol_ids[v]
            if entity == "ledger_txn":
                pts = rng.choice((1, 2, 3, 5, 10, 15, 20, 30))
                d["points"] = pts
                d["reason"] = rng.choice(REASONS)
                d["postings"] = [{"id": 2 * i + 1, "account": f"v:{vol_ids[v]}", "amount": pts},
                                 {"id": 2 * i + 2, "account": "station:issued", "amount": -pts}]
            elif entity == "volunteer":
                d["name"] = names[v]
                d["mobile"] = f"139{v:04d}{rng.randrange(10000):04d}"
                d["number"] = f"GL-SFQX-{v + 1:05d}"
            elif entity == "checkin":
                d["checked_in_at"] = iso
                d["credited_minutes"] = rng.choice((60, 90, 120, 180))
            elif entity == "audit_log":
                d["entity_id"] = vol_ids[v]
            yield entity, str(d["id"]), "upsert", dumps(d, ensure_ascii=False, separators=(",", ":")), at

    conn.execute("BEGIN")
    conn.executemany("INSERT INTO change_log (entity, entity_id, op, data, at) VALUES (?, ?, ?, ?, ?)", rows_gen())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    total, max_seq = conn.execute("SELECT count(*), max(seq) FROM change_log").fetchone()
    size = conn.execute("SELECT sum(length(CAST(data AS BLOB))) FROM change_log").fetchone()[0]
    conn.close()
    return {"rows": total, "max_seq": max_seq, "data_mb": size / 2**20, "seconds": time.perf_counter() - t0}


# --- measuring ----------------------------------------------------------------------------------

class RssSampler:
    """The server's RSS (with children) every SAMPLE_S seconds while running."""

    def __init__(self, server: harness.Server):
        self.server, self.peak, self.samples = server, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_mb())
                self.samples += 1
            except Exception:  # noqa: BLE001 - the process may be between states; next sample
                pass
            self._stop.wait(SAMPLE_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _path(cursor: str | None, limit: int) -> str:
    q = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
    return "/api/v1/changes?" + urlencode(q)


def get_page(conn: http.client.HTTPConnection, key: str, cursor: str | None, limit: int,
             use_gzip: bool) -> tuple[dict, int, int]:
    """One signed page, streamed: (its head, rows per X-Kiosk-Rows, bytes on the wire).

    The body is read in 64 KiB chunks and (with gzip) inflated as it comes; only the head (which
    precedes "changes") is parsed, and the end is checked, so the client never holds a page.
    """
    path = _path(cursor, limit)
    headers = signing.signed_headers(key, "GET", path)
    headers["Accept-Encoding"] = "gzip" if use_gzip else "identity"
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {resp.read()[:500]!r}")
    if use_gzip != (resp.getheader("Content-Encoding") == "gzip"):
        raise RuntimeError("unexpected Content-Encoding")
    inflate = zlib.decompressobj(31) if use_gzip else None
    prefix, head, tail, wire = b"", None, b"", 0
    while chunk := resp.read(65536):
        wire += len(chunk)
        if inflate:
            chunk = inflate.decompress(chunk)
        if head is None:
            prefix += chunk
            at = prefix.find(b',"changes":[')
            if at >= 0:
                head = json.loads(prefix[:at] + b"}")
                prefix = b""
        tail = (tail + chunk)[-2:]
    if inflate:
        tail = (tail + inflate.flush())[-2:]
    if head is None or tail != b"]}":
        raise RuntimeError("truncated page")
    return head, int(resp.getheader("X-Kiosk-Rows")), wire


def full_export(base_url: str, key: str, limit: int, use_gzip: bool) -> dict:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    t0 = time.perf_counter()
    cursor, rows, wire, pages = None, 0, 0, 0
    while True:
        head, n, w = get_page(conn, key, cursor, limit, use_gzip)
        rows, wire, pages = rows + n, wire + w, pages + 1
        if head["next_cursor"] is None:
            break
        cursor = head["next_cursor"]
    seconds = time.perf_counter() - t0
    conn.close()
    return {"rows": rows, "pages": pages, "seconds": seconds, "rows_per_s": rows / seconds,
            "wire_mb": wire / 2**20, "upto": head["upto"], "resume_cursor": head["resume_cursor"]}


def baseline(database: Path, rows: int) -> dict:
    """`sqlite3 -json` over the same table, read through a pipe in 64 KiB chunks."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([SQLITE3, "-json", str(database), "SELECT * FROM change_log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = 0
    while chunk := proc.stdout.read(65536):
        nbytes += len(chunk)
    proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sqlite3 failed: {proc.stderr.read().decode()}")
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "mb": nbytes / 2**20}


def empty_pulls(base_url: str, key: str, resume_cursor: str, calls: int = EMPTY_CALLS) -> list[float]:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        head, n, _w = get_page(conn, key, resume_cursor, 1000, False)
        times.append((time.perf_counter() - t) * 1000)
        if n != 0 or head["next_cursor"] is not None:
            raise RuntimeError("a pull at the end returned rows")
    conn.close()
    return sorted(times)


# --- main ---------------------------------------------------------------------------------------

def run(instance: Path, rows: int, limit: int, threads: int) -> dict:
    if not Path(SQLITE3).exists():
        raise SystemExit(f"{SQLITE3} is missing (apt-get install sqlite3)")
    print(f"generating {rows:,} change_log rows ...", flush=True)
    info = generate(instance, rows)
    print(f"  {info['rows']:,} rows, {info['data_mb']:.0f} MB of JSON in {info['seconds']:.1f} s", flush=True)
    key = harness.run_cli(instance, "sync-key").stdout.strip().splitlines()[-1]
    with sqlite3.connect(instance / "kiosk.sqlite3") as conn:  # the key's audit row is logged too
        info["rows"], info["max_seq"] = conn.execute("SELECT count(*), max(seq) FROM change_log").fetchone()

    base = baseline(instance / "kiosk.sqlite3", info["rows"])  # also warms the page cache
    print(f"sqlite3 -json: {base['rows_per_s']:,.0f} rows/s ({base['seconds']:.2f} s, {base['mb']:.0f} MB)", flush=True)
    srv = harness.Server(instance, threads=threads)
    with srv as url:
        idle_mb = srv.rss_mb()
        results = {}
        for use_gzip in (False, True):
            with RssSampler(srv) as sampler:
                r = full_export(url, key, limit, use_gzip)
            r["peak_mb"], r["samples"] = sampler.peak, sampler.samples
            if r["rows"] != info["rows"] or r["upto"] != info["max_seq"]:
                raise RuntimeError(f"export incomplete: {r['rows']} rows up to {r['upto']}, want {info}")
            results[use_gzip] = r
            print(f"export gzip={'on' if use_gzip else 'off'}: {r['rows_per_s']:,.0f} rows/s "
                  f"({r['seconds']:.2f} s, {r['pages']} pages, {r['wire_mb']:.0f} MB), peak RSS {r['peak_mb']:.0f} MB",
                  flush=True)
        empty = empty_pulls(url, key, results[False]["resume_cursor"])
        print(f"empty pull: p50 {statistics.median(empty):.1f} ms, max {empty[-1]:.1f} ms", flush=True)
    base2 = baseline(instance / "kiosk.sqlite3", info["rows"])  # again, after: the better of two
    if base2["rows_per_s"] > base["rows_per_s"]:
        base = base2
    plain, zipped = results[False], results[True]
    return {
        "bench": "export",
        "ratio": plain["rows_per_s"] / base["rows_per_s"],
        "ratio_gzip": zipped["rows_per_s"] / base["rows_per_s"],
        "rows_per_s": plain["rows_per_s"],
        "rows_per_s_gzip": zipped["rows_per_s"],
        "baseline_rows_per_s": base["rows_per_s"],
        "peak_mb": max(plain["peak_mb"], zipped["peak_mb"]),
        "peak_mb_plain": plain["peak_mb"],
        "peak_mb_gzip": zipped["peak_mb"],
        "idle_mb": idle_mb,
        "empty_pull_ms": statistics.median(empty),
        "empty_pull_max_ms": empty[-1],
        "rows": info["rows"],
        "page_limit": limit,
        "pages": plain["pages"],
        "mb_plain": plain["wire_mb"],
        "mb_gzip": zipped["wire_mb"],
        "baseline_mb": base["mb"],
        "generate_s": info["seconds"],
        "goal_ratio": 0.5,
        "goal_peak_mb": 150,
        "goal_empty_pull_ms": 20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {FULL_ROWS:,}")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--limit", type=int, default=5000, help="page size (the API's maximum is 5000)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads")
    parser.add_argument("--keep", type=Path, help="generate into DIR (must not exist) and keep it")
    args = parser.parse_args()
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    if args.keep:
        args.keep.mkdir(parents=True)
        result = run(args.keep, rows, args.limit, args.threads)
    else:
        with harness.temp_instance() as instance:
            result = run(instance, rows, args.limit, args.threads)
    harness.emit(harness.rounded(result, 3))


if __name__ == "__main__":
    main()
