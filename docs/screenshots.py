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
        badge = subprocess.run(
            [str(Path(sys.executable)), "-c", "from kiosk import create_app, volunteers\n"
             "app = create_app()\nwith app.app_context():\n"
             "    print(volunteers.badge(volunteers.find('13805910002')))"],
            env=env, check=True, capture_output=True, text=True).stdout.strip()
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
                # the sign-in QR of the event running now, the card + PIN flow, the love bank
                ctx.clear_cookies()  # back to standard text size
                page.set_viewport_size({"width": 1920, "height": 1080})
                page.goto(base + "/")
                page.get_by_text("文明实践站值班").first.click()
                page.get_by_role("link", name="显示签到二维码").click()
                page.wait_for_selector(".qr svg")
                page.screenshot(path=HERE / "kiosk-signin.png")
                phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True,
                                            has_touch=True).new_page()
                phone.goto(page.locator(".qr").get_attribute("data-url"))
                phone.get_by_label("志愿者编号或手机号").fill("13805910001")
                phone.get_by_label("6 位密码").fill("258369")
                phone.get_by_role("button", name="确认").click()
                phone.get_by_role("button", name="签到").click()
                phone.wait_for_selector(".flash-ok")
                phone.screenshot(path=HERE / "phone-signed-in.png")
                page.goto(base + "/me")
                page.keyboard.type(badge)
                page.keyboard.press("Enter")
                page.wait_for_selector(".keypad")
                for digit in "258":
                    page.locator(f'[data-key="{digit}"]').click()
                page.screenshot(path=HERE / "kiosk-keypad.png")
                for digit in "369":
                    page.locator(f'[data-key="{digit}"]').click()
                page.get_by_role("button", name="确定").click()
                page.wait_for_selector(".me-nav")
                page.get_by_role("link", name="积分兑换").click()
                page.wait_for_selector(".rewards")
                page.screenshot(path=HERE / "kiosk-rewards.png")
                page.get_by_role("link", name="我的存折").click()
                page.wait_for_selector(".passbook")
                page.screenshot(path=HERE / "kiosk-passbook.png")
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
