"""Browser tests: Debian's Chromium driven by Playwright against a real waitress server.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Where that is missing
the tests skip with the reason, except when KIOSK_REQUIRE_BROWSER is set (CI), where they fail.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest
from waitress import create_server

from kiosk import create_app
from kiosk.db import db

CHROMIUM = os.environ.get("KIOSK_CHROMIUM", "/usr/bin/chromium")
# Not pytest-playwright's test-results/, which it empties at the start of every run.
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-screens"


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("KIOSK_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"browser tests required but {CHROMIUM} is missing (apt-get install chromium)")
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}: apt-get install chromium fonts-noto-cjk")
    for item in items:
        if "browser" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"],
    }


class LiveServer:
    def __init__(self, app, url):
        self.app, self.url = app, url

    def __call__(self, path="/"):
        return self.url + path


@pytest.fixture
def live_server(tmp_path, migrated_db):
    """The kiosk on a free loopback port, with the demo data, served by waitress."""
    shutil.copy(migrated_db, tmp_path / "kiosk.sqlite3")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        from kiosk import demo

        demo.load()
        db.session.commit()
        db.session.remove()
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield LiveServer(app, f"http://127.0.0.1:{server.effective_port}")
    server.close()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def demo_password(live_server):
    text = (Path(live_server.app.instance_path) / "demo-manager.txt").read_text()
    return text.split("password: ")[1].strip()


@pytest.fixture
def watch(page):
    """Collects console errors and any request that leaves the machine."""
    seen = {"errors": [], "offsite": []}
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "data:")) or seen["offsite"].append(r.url))
    return seen


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A station PC: Chinese locale, China's time zone."""
    return {**browser_context_args, "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
