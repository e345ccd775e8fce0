"""QR codes: the rotating event code shown on the kiosk, and SVG rendering.

The event code is an HMAC over (station, event, time step): it changes every STEP seconds and is
accepted for the current and the previous step only, so a photo sent to a friend expires within
a minute (DESIGN.md §5). A volunteer can use it once per step (checkins.use_code).
"""

import base64
import hashlib
import hmac
import io
import time

import qrcode
import qrcode.image.svg
from flask import current_app
from flask_babel import lazy_gettext as _l

from .errors import DomainError
from .ids import parse_id

STEP = 20  # seconds


class BadCode(DomainError):
    status = 400
    message = _l("这个二维码不对。请扫描屏幕上正在显示的签到二维码。")


class ExpiredCode(DomainError):
    status = 410
    message = _l("这个二维码已经过期了。请重新扫描屏幕上正在显示的签到二维码。")


def current_step(ts: float | None = None) -> int:
    if ts is None:
        ts = current_app.config.get("FROZEN_UNIX") or time.time()  # tests freeze it
    return int(ts // STEP)


def _tag(station_code: str, event_id: str, step: int) -> str:
    key = hashlib.sha256(b"kiosk.event-code|" + current_app.config["SECRET_KEY"].encode()).digest()
    mac = hmac.new(key, f"{station_code}|{event_id}|{step}".encode(), hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def event_code(station_code: str, event_id: str, step: int) -> str:
    return f"{event_id}.{step}.{_tag(station_code, event_id, step)}"


def read_event_code(station_code: str, code: str, ts: float | None = None) -> tuple[str, int]:
    """(event id, step) of a valid, fresh code; BadCode or ExpiredCode otherwise."""
    parts = (code or "").split(".")
    if len(parts) != 3 or len(code) > 120:
        raise BadCode()
    event_id, step_text, tag = parts
    if not parse_id(event_id) or not step_text.isdigit():
        raise BadCode()
    step = int(step_text)
    if not hmac.compare_digest(tag, _tag(station_code, event_id, step)):
        raise BadCode()
    now_step = current_step(ts)
    if step not in (now_step, now_step - 1):
        raise ExpiredCode() if step < now_step else BadCode()
    return event_id, step


def svg(data: str) -> str:
    """An inline SVG of a QR code (no Pillow, no inline style: fits the CSP)."""
    img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2,
                      error_correction=qrcode.constants.ERROR_CORRECT_M)
    out = io.BytesIO()
    img.save(out)
    text = out.getvalue().decode()
    # Let CSS size it: drop the fixed millimetre size, keep the viewBox.
    return text.replace("<?xml version='1.0' encoding='UTF-8'?>\n", "").replace(
        'width="', 'data-w="', 1).replace('height="', 'data-h="', 1)
