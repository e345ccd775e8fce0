"""Shared pieces of the benchmarks (see QUALITY.md, "Benchmarks").

- temp_instance(): a throw-away instance folder.
- run_cli(instance, *args): the `kiosk` command with KIOSK_INSTANCE_PATH set.
- Server: `kiosk serve` in a subprocess on a free loopback port; yields its base URL.
- HelloServer: a bare Flask "hello" under waitress with the same settings (the baseline).
- load(url, ...): a bounded load run against 127.0.0.1 (wrk when installed, else a Python client).
- emit(result): the result as one JSON object on the last line of output.

Every benchmark uses the same load client for its baseline and its target within one run, so
the ratio compares like with like even when the absolute numbers depend on the client.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# The limits that keep one load run bounded whatever the caller asks.
MAX_CONNECTIONS = 256
MAX_DURATION_S = 120.0
MAX_PY_REQUESTS = 2_000_000  # the pure-Python client stops after this many requests in total


# --- instances and the command line ---------------------------------------------------------

def _kiosk_command() -> list[str]:
    """The `kiosk` console script next to this interpreter (the venv's), else the same via -c."""
    script = Path(sys.executable).parent / "kiosk"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from kiosk.cli import main; sys.exit(main())"]


def _env(instance: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KIOSK_DATABASE_URL", None)  # the instance's own SQLite file, never a configured one
    env.pop("KIOSK_FROZEN_NOW", None)
    if instance is not None:
        env["KIOSK_INSTANCE_PATH"] = str(instance)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextlib.contextmanager
def temp_instance() -> Iterator[Path]:
    """A temporary, empty instance folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as folder:
        yield Path(folder)


def run_cli(instance: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `kiosk ARGS...` against the instance; output captured; raises on failure if check."""
    proc = subprocess.run(
        [*_kiosk_command(), *args], env=_env(instance), cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kiosk {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 10.0, method: str = "GET", body: bytes | None = None,
          headers: dict | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class _Subprocess:
    """A server in a subprocess: started on enter, ready when `ready_path` answers 200."""

    name = "server"

    def __init__(self, threads: int = 8, ready_path: str = "/", ready_timeout: float = 60.0,
                 poll_interval: float = 0.01):
        self.threads = threads
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None  # seconds from spawn until ready_path first gave 200
        self._log = None

    def command(self) -> list[str]:
        """The argv that starts this server; each kind of server (kiosk, hello) says its own."""
        raise NotImplementedError(f"{type(self).__name__} must say how it starts")

    def env(self) -> dict[str, str]:
        return _env(None)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process (and any children), in MiB."""
        import psutil

        p = psutil.Process(self.pid)
        rss = p.memory_info().rss
        for child in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                rss += child.memory_info().rss
        return rss / (1024 * 1024)

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self) -> str:
        self._log = tempfile.TemporaryFile()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), env=self.env(), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        url = self.base_url + self.ready_path
        deadline = t0 + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before it was ready:\n{self.log()}")
            try:
                status, _ = fetch(url, timeout=2.0)
                if status == 200:
                    self.ready_s = time.perf_counter() - t0
                    return self.base_url
            except OSError:
                pass
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready at {url} after {self.ready_timeout} s:\n{self.log()}")
            time.sleep(self.poll_interval)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class Server(_Subprocess):
    """`kiosk serve` on a free loopback port; `with Server(instance) as base_url: ...`.

    Ready when /healthz answers 200 (pass ready_path="/" to wait for the home page instead);
    `ready_s` is the time from spawn to ready, `pid` and `rss_mb()` serve memory measurements.
    """

    name = "kiosk serve"

    def __init__(self, instance: Path, threads: int = 8, ready_path: str = "/healthz", **kw):
        super().__init__(threads=threads, ready_path=ready_path, **kw)
        self.instance = Path(instance)

    def command(self) -> list[str]:
        return [*_kiosk_command(), "serve", "--host", self.host, "--port", str(self.port),
                "--threads", str(self.threads)]

    def env(self) -> dict[str, str]:
        return _env(self.instance)


class HelloServer(_Subprocess):
    """The baseline: bench/hello_app.py, a bare Flask "hello" under waitress, same settings."""

    name = "hello server"

    def __init__(self, threads: int = 8, **kw):
        super().__init__(threads=threads, ready_path="/", **kw)

    def command(self) -> list[str]:
        return [sys.executable, str(BENCH / "hello_app.py"), "--host", self.host,
                "--port", str(self.port), "--threads", str(self.threads)]


# --- load -----------------------------------------------------------------------------------

def _check_url(url: str) -> None:
    host = urlsplit(url).hostname
    if host != "127.0.0.1":
        raise ValueError(f"load() only targets 127.0.0.1, not {host!r}")


def _lua_string(value: str | bytes) -> str:
    """A Lua string literal holding exactly these bytes."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    out = []
    for b in data:
        c = chr(b)
        if 0x20 <= b < 0x7F and c not in '"\\':
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


_WRK_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, \"connect\": %d, \"read\": %d, " ..
    "\"write\": %d, \"status\": %d, \"timeout\": %d, \"p50_us\": %.1f, \"p90_us\": %.1f, " ..
    "\"p99_us\": %.1f, \"max_us\": %.1f, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
'''


def _load_wrk(wrk: str, url: str, connections: int, duration: float, method: str,
              body: bytes | None, headers: dict | None, threads: int) -> dict:
    lines = [f"wrk.method = {_lua_string(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    for k, v in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(k)}] = {_lua_string(str(v))}")
    script = "\n".join(lines) + "\n" + _WRK_DONE
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        script_path = f.name
    try:
        secs = max(1, round(duration))
        cmd = [wrk, "-t", str(max(1, min(threads, connections))), "-c", str(connections),
               "-d", f"{secs}s", "--timeout", "10s", "-s", script_path, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    finally:
        os.unlink(script_path)
    m = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    r = json.loads(m.group(1))
    seconds = r["duration_us"] / 1e6
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return {
        "client": "wrk",
        "requests": r["requests"],
        "rps": r["requests"] / seconds if seconds else 0.0,
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["status"] + socket_errors,
        "status_errors": r["status"],
        "socket_errors": socket_errors,
        "duration_s": seconds,
        "bytes": r["bytes"],
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def _load_python(url: str, connections: int, duration: float, method: str,
                 body: bytes | None, headers: dict | None) -> dict:
    """A keep-alive client: one thread and one HTTP/1.1 connection per simulated connection."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    hdrs = dict(headers or {})
    budget = [MAX_PY_REQUESTS]
    budget_lock = threading.Lock()
    results: list[tuple[list[float], int, int, int]] = []
    results_lock = threading.Lock()
    start_barrier = threading.Barrier(connections + 1)
    deadline_box = [0.0]

    def take() -> bool:
        with budget_lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def worker():
        lat: list[float] = []
        status_err = sock_err = nbytes = 0
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        start_barrier.wait()
        deadline = deadline_box[0]
        while time.perf_counter() < deadline and take():
            t = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                lat.append(time.perf_counter() - t)
                nbytes += len(data)
                if not 200 <= resp.status < 400:
                    status_err += 1
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                sock_err += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.close()
        with results_lock:
            results.append((lat, status_err, sock_err, nbytes))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline_box[0] = t0 + duration
    start_barrier.wait()
    for t in threads:
        t.join(timeout=duration + 30)
    elapsed = time.perf_counter() - t0
    lat = sorted(x for r in results for x in r[0])
    status_err = sum(r[1] for r in results)
    sock_err = sum(r[2] for r in results)
    return {
        "client": "python",
        "requests": len(lat),
        "rps": len(lat) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(lat, 50) * 1000,
        "p90_ms": _percentile(lat, 90) * 1000,
        "p99_ms": _percentile(lat, 99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else 0.0,
        "errors": status_err + sock_err,
        "status_errors": status_err,
        "socket_errors": sock_err,
        "duration_s": elapsed,
        "bytes": sum(r[3] for r in results),
    }


def load(url: str, connections: int = 32, duration: float = 10, method: str = "GET",
         body: bytes | str | None = None, headers: dict | None = None, client: str | None = None,
         wrk_threads: int = 1) -> dict:
    """Drive `url` (127.0.0.1 only) with `connections` keep-alive connections for `duration` s.

    Returns rps, p50_ms, p99_ms (also p90_ms, max_ms), errors (non-2xx/3xx responses plus
    socket errors and timeouts), requests, and the client used. wrk when installed, else the
    Python client; KIOSK_BENCH_CLIENT=python|wrk or `client=` forces one.
    """
    _check_url(url)
    connections = max(1, min(int(connections), MAX_CONNECTIONS))
    duration = max(0.2, min(float(duration), MAX_DURATION_S))
    if isinstance(body, str):
        body = body.encode("utf-8")
    client = client or os.environ.get("KIOSK_BENCH_CLIENT") or ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk":
        wrk = shutil.which("wrk")
        if not wrk:
            raise RuntimeError("wrk requested but not installed")
        return _load_wrk(wrk, url, connections, duration, method, body, headers, wrk_threads)
    return _load_python(url, connections, duration, method, body, headers)


# --- output ---------------------------------------------------------------------------------

def rounded(d: dict, digits: int = 3) -> dict:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in d.items()}


def emit(result: dict) -> None:
    """Print the result as one JSON object on the last line of output."""
    sys.stdout.flush()
    sys.stderr.flush()
    print(json.dumps(result, ensure_ascii=False, sort_keys=False), flush=True)
