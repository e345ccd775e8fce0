"""The benchmarks' baseline: a bare Flask "hello" route under waitress.

Served with the same waitress settings as `kiosk serve` (kiosk/cli.py): ident, channel_timeout,
and the thread count given on the command line. Run: python bench/hello_app.py --port 8081
"""

import argparse

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    from waitress import serve

    print(f"hello serving on http://{args.host}:{args.port}/", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="kiosk", channel_timeout=30)


if __name__ == "__main__":
    main()
