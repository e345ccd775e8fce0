"""Make the screenshots in docs/screenshots/ from a fresh demo database (Debian's Chromium)."""

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent / "screenshots"
KIOSK = str(Path(sys.executable).parent / "kiosk")
PORT = 8765
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def main():
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as inst:
        env = {"KIOSK_INSTANCE_PATH": inst, "PATH": "/usr/bin:/bin"}
        subprocess.run([KIOSK, "demo"], env=env, check=True, capture_output=True)
        password = (Path(inst) / "demo-manager.txt").read_text().split("password: ")[1].strip()
        server = subprocess.Popen([KIOSK, "serve", "--port", str(PORT)], env=env, stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{PORT}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                ctx = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
                page = ctx.new_page()
                for name, size in (("landscape", (1920, 1080)), ("portrait", (1080, 1920))):
                    page.set_viewport_size({"width": size[0], "height": size[1]})
                    page.goto(base + "/")
                    page.screenshot(path=HERE / f"kiosk-{name}.png")
                page.set_viewport_size({"width": 1920, "height": 1080})
                page.goto(base + "/")
                page.locator(".card").first.click()
                page.wait_for_selector(".event-detail")
                page.screenshot(path=HERE / "kiosk-event.png")
                page.set_viewport_size({"width": 1080, "height": 1920})
                page.goto(base + "/")
                page.get_by_role("button", name="大字").click()
                page.wait_for_selector("html.text-large")
                page.screenshot(path=HERE / "kiosk-large-text-portrait.png")
                page.set_viewport_size({"width": 1366, "height": 900})
                page.goto(base + "/manage/login")
                page.get_by_label("用户名").fill("demo")
                page.get_by_label("密码").fill(password)
                page.get_by_role("button", name="登录").click()
                page.wait_for_selector(".table")
                page.screenshot(path=HERE / "manage-events.png")
                browser.close()
        finally:
            server.terminate()
            server.wait()
    print("screenshots written to", HERE)


if __name__ == "__main__":
    main()
