"""Pulling the stations (docs/district.md, docs/sync.md): stations file, signed client, the runs.

Each station is pulled on its own thread (bounded by --parallel). A station's run starts from
its checkpoint's resume cursor (none: a full export), follows next_cursor to the end and
applies every page in one district transaction with the checkpoint (store.apply_page). A 409
means the station's epoch changed: the run starts again without a cursor and the first page of
the new epoch drops the station's entity rows in the same transaction (a full resync).
Network errors and 5xx are retried with exponential backoff; other 4xx fail the station.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from .. import signing
from .store import Store

CHANGES_PATH = "/api/v1/changes"
MAX_RESYNCS = 3  # a station whose epoch keeps changing mid-run is failed, not chased forever
CLOCK_FLAG_S = 120  # a station clock further off than this is flagged in the summary


@dataclass(frozen=True)
class StationConf:
    name: str
    url: str
    key: str = field(repr=False)


class StationsFileError(Exception):
    """The stations file can't be read or lists a station wrongly."""


def load_stations(path: Path) -> list[StationConf]:
    """A TOML file ([[stations]] tables) or a JSON list (or {"stations": [...]}) of {name, url, key}."""
    raw = Path(path).read_bytes()
    try:
        if Path(path).suffix.lower() == ".json":
            doc = json.loads(raw)
        else:
            doc = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        raise StationsFileError(f"{path}: {e}") from None
    items = doc.get("stations", doc.get("station")) if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise StationsFileError(f"{path}: expected a non-empty list of stations ([[stations]] in TOML)")
    out, names = [], set()
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise StationsFileError(f"{path}: station #{i} is not a table/object")
        name, url, key = (str(item.get(k) or "").strip() for k in ("name", "url", "key"))
        if not (name and url and key):
            raise StationsFileError(f"{path}: station #{i} needs name, url and key")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise StationsFileError(f"{path}: station {name!r}: url must be http(s)://host[:port]")
        if name in names:
            raise StationsFileError(f"{path}: station name {name!r} appears twice")
        names.add(name)
        out.append(StationConf(name, url.rstrip("/"), key))
    return out


# --- the HTTP client --------------------------------------------------------------------------

class HTTPFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class EpochChanged(Exception):
    """The station answered 409: its database was replaced or restored; resync it fully."""


RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


@dataclass
class Fetched:
    page: dict
    nbytes: int  # as received (compressed when gzip)
    clock_offset_s: float | None  # station clock (HTTP Date) minus ours


def _problem(body: bytes) -> str:
    try:
        doc = json.loads(body)
        return str(doc.get("detail") or doc.get("title") or body[:200])
    except ValueError:
        return body[:200].decode("utf-8", "replace")


def fetch_page(conf: StationConf, cursor: str | None, limit: int, timeout: float = 60.0) -> Fetched:
    """One signed GET of a page; raises EpochChanged on 409, HTTPFailure on another error status."""
    q = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    path = CHANGES_PATH + ("?" + urlencode(q) if q else "")
    url = conf.url + path
    headers = {**signing.signed_headers(conf.key, "GET", url), "Accept-Encoding": "gzip",
               "Accept": "application/json", "User-Agent": "kiosk-district-pull"}
    t0 = time.time()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            raw = resp.read()
            date, encoding = resp.headers.get("Date"), resp.headers.get("Content-Encoding")
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code == 409:
            raise EpochChanged(_problem(body)) from None
        raise HTTPFailure(e.code, _problem(body)) from None
    t1 = time.time()
    offset = None
    if date:
        try:  # the Date header has 1 s resolution: compare with the middle of the request
            offset = round(parsedate_to_datetime(date).timestamp() - (t0 + t1) / 2, 1)
        except (TypeError, ValueError):
            offset = None
    body = gzip.decompress(raw) if encoding == "gzip" else raw
    return Fetched(json.loads(body), len(raw), offset)


def fetch_with_retries(conf: StationConf, cursor: str | None, limit: int, retries: int, backoff: float,
                       sleep=time.sleep) -> Fetched:
    attempt = 0
    while True:
        try:
            return fetch_page(conf, cursor, limit)
        except HTTPFailure as e:
            if e.status < 500 or attempt >= retries:
                raise
        except RETRYABLE:
            if attempt >= retries:
                raise
        sleep(backoff * (2 ** attempt))
        attempt += 1


# --- a station's run --------------------------------------------------------------------------

@dataclass
class Result:
    station: str
    ok: bool = False
    items: int = 0  # changes received
    applied: int = 0  # raw changes newly stored
    pages: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    clock_offset_s: float | None = None
    resync: bool = False
    epoch: str | None = None
    error: str | None = None

    def name_short(self) -> str:
        return self.station if len(self.station) <= 20 else self.station[:19] + "…"


def pull_station(store: Store, conf: StationConf, limit: int = 1000, retries: int = 4, backoff: float = 0.5,
                 max_pages: int | None = None, fault=None) -> Result:
    """Pull one station to the end of a run (or max_pages pages); never raises."""
    res = Result(conf.name)
    t0 = time.perf_counter()
    log_id = store.log_start(conf.name)
    try:
        cp = store.checkpoint_of(conf.name)
        cursor = cp["resume_cursor"] if cp else None
        resyncs = 0
        while max_pages is None or res.pages < max_pages:
            try:
                got = fetch_with_retries(conf, cursor, limit, retries, backoff)
            except EpochChanged:
                resyncs += 1
                if resyncs > MAX_RESYNCS:
                    raise
                res.resync = True
                cursor = None  # a full export of the new epoch; its first page drops the old rows
                continue
            page = got.page
            res.pages += 1
            res.items += len(page["changes"])
            res.nbytes += got.nbytes
            res.epoch = page["epoch"]
            if got.clock_offset_s is not None:
                res.clock_offset_s = got.clock_offset_s
            page_fault = (lambda n=res.pages: fault(conf.name, n)) if fault else None
            applied = store.apply_page(conf.name, page, res.clock_offset_s, fault=page_fault)
            res.applied += applied.new_raw
            res.resync = res.resync or applied.resync
            if not page.get("next_cursor"):
                break
            cursor = page["next_cursor"]
        res.ok = True
    except Exception as e:  # noqa: BLE001 - one station's failure is reported, the others go on
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = time.perf_counter() - t0
    try:
        store.log_finish(log_id, res.items, res.nbytes, "ok" if res.ok else "failed", res.error)
    except Exception as e:  # noqa: BLE001
        res.ok, res.error = False, res.error or f"pull_log: {e}"
    return res


def pull_all(store: Store, stations: list[StationConf], parallel: int = 4, **kw) -> list[Result]:
    """Pull every station, at most `parallel` at a time; results in the stations file's order."""
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="district-pull") as pool:
        return list(pool.map(lambda conf: pull_station(store, conf, **kw), stations))


def summary(results: list[Result]) -> str:
    head = f"{'station':<20} {'status':<7} {'items':>8} {'applied':>8} {'bytes':>10} {'seconds':>8} {'clock':>8}"
    lines = [head]
    for r in results:
        offset = "?" if r.clock_offset_s is None else f"{r.clock_offset_s:+.0f}s"
        status = "ok" if r.ok else "FAILED"
        line = (f"{r.name_short():<20} {status:<7} {r.items:>8} {r.applied:>8} {r.nbytes:>10} "
                f"{r.seconds:>8.2f} {offset:>8}")
        if r.resync:
            line += "  full resync (new epoch)"
        if r.clock_offset_s is not None and abs(r.clock_offset_s) > CLOCK_FLAG_S:
            line += "  CLOCK OFF"
        if r.error:
            line += f"  {r.error}"
        lines.append(line)
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} station(s), {failed} failed, "
                 f"{sum(r.items for r in results)} items, {sum(r.nbytes for r in results)} bytes")
    return "\n".join(lines)


