"""Benchmark "board": the kiosk home with 50 events today and 300 over the week.

requests/s of GET / through `kiosk serve` ÷ requests/s of the bare Flask "hello" under waitress
with the same settings, 32 connections, same load client; and the page's uncompressed size.
Goal (QUALITY.md): ratio ≥ 0.3, page ≤ 60 KB. Last output line: one JSON object.

    python bench/board.py [--quick] [--duration S] [--connections N] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from datagen import populate_board  # noqa: E402

GOAL_RATIO = 0.3
GOAL_PAGE_KB = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (3 s each), for smoke tests")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per target (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads, both servers")
    parser.add_argument("--today", type=int, default=50)
    parser.add_argument("--week", type=int, default=300)
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = 0.5 if args.quick else 2.0

    with harness.temp_instance() as instance:
        harness.run_cli(instance, "init")
        counts = populate_board(instance, today=args.today, week=args.week)

        with harness.HelloServer(threads=args.threads) as hello:
            harness.load(hello + "/", args.connections, warmup)
            base = harness.load(hello + "/", args.connections, duration)

        with harness.Server(instance, threads=args.threads) as url:
            status, body = harness.fetch(url + "/")
            if status != 200:
                raise SystemExit(f"GET / answered {status}")
            cards = body.count(b'<a class="card')
            harness.load(url + "/", args.connections, warmup)
            res = harness.load(url + "/", args.connections, duration)

    ratio = res["rps"] / base["rps"] if base["rps"] else 0.0
    page_kb = len(body) / 1024
    result = harness.rounded({
        "bench": "board",
        "ratio": ratio,
        "rps": res["rps"],
        "baseline_rps": base["rps"],
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "errors": res["errors"],
        "requests": res["requests"],
        "baseline_p99_ms": base["p99_ms"],
        "baseline_errors": base["errors"],
        "page_kb": page_kb,
        "page_cards": cards,
        "events_today": counts["events_today"],
        "events_week": counts["events_week"],
        "connections": args.connections,
        "threads": args.threads,
        "duration_s": duration,
        "client": res["client"],
        "goal_ratio": GOAL_RATIO,
        "goal_page_kb": GOAL_PAGE_KB,
        "ok": ratio >= GOAL_RATIO and page_kb <= GOAL_PAGE_KB and res["errors"] == 0,
    }, 2)
    harness.emit(result)


if __name__ == "__main__":
    main()
