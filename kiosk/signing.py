"""Signed API requests (docs/sync.md): plain functions shared by the station and the district.

The signature is hex HMAC-SHA256, under the station's key, of these lines joined by "\\n":

    KIOSK-HMAC-SHA256
    <METHOD>
    <path>[?<query as sent>]
    <hex SHA-256 of the body (of b"" when there is none)>
    <timestamp: Unix seconds, an integer>
    <nonce: 16-64 characters of A-Z a-z 0-9 _ ->

sent as X-Kiosk-Timestamp, X-Kiosk-Nonce and X-Kiosk-Signature. A request is accepted within
WINDOW seconds of the receiver's clock, and only once per nonce (the receiver remembers nonces
until their timestamp has left the window).
"""

import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import urlsplit

SCHEME = "KIOSK-HMAC-SHA256"
WINDOW = 300
TIMESTAMP, NONCE, SIGNATURE = "X-Kiosk-Timestamp", "X-Kiosk-Nonce", "X-Kiosk-Signature"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """The request is unsigned, stale, malformed or wrongly signed; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def new_key() -> str:
    return secrets.token_urlsafe(32)


def target(url_or_path: str) -> str:
    """The signed request target: the path and the query string exactly as sent."""
    parts = urlsplit(url_or_path)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def canonical(method: str, path: str, body: bytes, timestamp: int | str, nonce: str) -> bytes:
    lines = [SCHEME, method.upper(), path, hashlib.sha256(body or b"").hexdigest(), str(timestamp), nonce]
    return "\n".join(lines).encode()


def sign(key: str, method: str, path: str, body: bytes, timestamp: int | str, nonce: str) -> str:
    return hmac.new(key.encode(), canonical(method, path, body, timestamp, nonce), hashlib.sha256).hexdigest()


def signed_headers(key: str, method: str, url: str, body: bytes = b"", now: float | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """The headers that sign a request to `url` (a full URL or a path with its query)."""
    ts = int(now if now is not None else time.time())
    nonce = nonce or secrets.token_urlsafe(24)
    return {TIMESTAMP: str(ts), NONCE: nonce, SIGNATURE: sign(key, method, target(url), body, ts, nonce)}


def verify(key: str, method: str, path: str, body: bytes, headers, now: float | None = None,
           window: int = WINDOW) -> tuple[int, str]:
    """Check a request's signature; return its (timestamp, nonce) for the replay check.

    Raises SignatureError. `headers` is any mapping with .get (e.g. Flask's request.headers).
    """
    ts, nonce, signature = headers.get(TIMESTAMP), headers.get(NONCE), headers.get(SIGNATURE)
    if not (ts and nonce and signature):
        raise SignatureError("unsigned")
    if not _TIMESTAMP.fullmatch(ts) or not _NONCE.fullmatch(nonce) or not _HEX64.fullmatch(signature):
        raise SignatureError("malformed")
    now = time.time() if now is None else now
    if abs(int(ts) - now) > window:
        raise SignatureError("stale")
    if not hmac.compare_digest(sign(key, method, path, body, ts, nonce), signature):
        raise SignatureError("bad signature")
    return int(ts), nonce
