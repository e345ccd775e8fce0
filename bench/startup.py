"""Benchmark "startup": cold start to first served page, and idle resident memory.

The database is initialised with the demo data (`kiosk demo`) first. Each run spawns
`kiosk serve` and times until GET / first answers 200; then it serves a few pages, idles 2 s and
reads the server's resident memory (psutil RSS). Median (and best) of 3 runs.
Goal (QUALITY.md): ≤ 1.5 s, ≤ 80 MB. Last output line: one JSON object.

    python bench/startup.py [--quick] [--runs N] [--threads N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

GOAL_COLD_START_S = 1.5
GOAL_RSS_MB = 80.0
IDLE_S = 2.0


def one_run(instance: Path, threads: int) -> tuple[float, float]:
    server = harness.Server(instance, threads=threads, ready_path="/", poll_interval=0.005)
    with server as url:
        cold = server.ready_s
        status, body = harness.fetch(url + "/")
        pages = ["/", "/healthz"]
        pages += sorted(set(re.findall(r'href="(/events/[^"]+)"', body.decode())))[:3]
        pages += sorted(set(re.findall(r'href="(/\?category=[^"]+)"', body.decode())))[:2]
        for path in pages * 2:
            status, _ = harness.fetch(url + path.replace("&amp;", "&"))
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}")
        time.sleep(IDLE_S)
        rss = server.rss_mb()
    return cold, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run only, for smoke tests")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)

    with harness.temp_instance() as instance:
        harness.run_cli(instance, "demo")
        results = [one_run(instance, args.threads) for _ in range(runs)]

    colds = [c for c, _ in results]
    rsss = [r for _, r in results]
    cold = statistics.median(colds)
    rss = statistics.median(rsss)
    harness.emit(harness.rounded({
        "bench": "startup",
        "cold_start_s": cold,
        "cold_start_best_s": min(colds),
        "idle_rss_mb": rss,
        "idle_rss_max_mb": max(rsss),
        "runs": runs,
        "cold_start_runs_s": [round(c, 3) for c in colds],
        "threads": args.threads,
        "goal_cold_start_s": GOAL_COLD_START_S,
        "goal_rss_mb": GOAL_RSS_MB,
        "ok": cold <= GOAL_COLD_START_S and rss <= GOAL_RSS_MB,
    }, 3))


if __name__ == "__main__":
    main()
