"""Configuration from the instance folder and the environment; no secret ships with the code."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instance_path(test_config: dict | None = None) -> Path:
    if test_config and test_config.get("INSTANCE_PATH"):
        return Path(test_config["INSTANCE_PATH"]).resolve()
    return Path(os.environ.get("KIOSK_INSTANCE_PATH") or ROOT / "instance").resolve()


def secret_key(folder: Path) -> str:
    """The instance's secret key; the first start writes a random one (mode 0600)."""
    path = folder / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def defaults(folder: Path) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get("KIOSK_DATABASE_URL") or f"sqlite:///{folder / 'kiosk.sqlite3'}",
        "TIMEZONE": os.environ.get("KIOSK_TIMEZONE", "Asia/Shanghai"),
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "LANGUAGES": ["zh_CN", "en"],
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 512 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_NAME": "kiosk_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "MANAGER_IDLE_SECONDS": 30 * 60,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "SEND_FILE_MAX_AGE_DEFAULT": 3600,
        # How many reverse proxies (TLS in front, docs/deploy.md) to trust for X-Forwarded-*.
        # The address phones use to reach this station (e.g. https://192.168.1.20); the event QR
        # codes point there. Unset: the address the kiosk's own browser used.
        "PUBLIC_URL": os.environ.get("KIOSK_PUBLIC_URL", ""),
        "TRUSTED_PROXIES": int(os.environ.get("KIOSK_TRUSTED_PROXIES", "0")),
    }
