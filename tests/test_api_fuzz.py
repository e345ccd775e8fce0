"""The data API under generated and hostile input (QUALITY.md "Bad input and security", issue 5).

- A schemathesis run over every operation of /api/openapi.json, loaded from the app itself:
  each generated request is signed (kiosk.signing over method, path?query exactly as sent and
  the body) where the operation needs it, sent through the Flask test client, and checked: no
  5xx, the status code, content type, headers and body conform to the document.
- Plain tests of the cursor and signature faults that tests/test_sync_station.py does not
  already cover (it has: garbage cursors, a tampered payload, a forged tag, another station's
  code, another epoch's resume cursor; unsigned, each header missing, stale/future, wrong key,
  other query/method/nonce/time, malformed headers, a changed body, a plain replay).
"""

import json
from pathlib import Path
from urllib.parse import urlencode

import jsonschema
import pytest
import schemathesis
from schemathesis.core import NOT_SET
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kiosk import events, signing, sync
from kiosk.db import begin_write, db
from tests.conftest import using

ROOT = Path(__file__).resolve().parent.parent
NOW_UNIX = 1_800_000_005.0  # the app fixture's FROZEN_UNIX
DOC = json.loads((ROOT / "docs" / "openapi.json").read_text())
PROBLEM = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Problem", "components": DOC["components"]})


@pytest.fixture
def key(app):
    with using(app):
        begin_write()
        secret = sync.rotate_key("test")
        db.session.commit()
        return secret


@pytest.fixture
def stocked(app, key):
    """A few rows in the log, so that successful pages carry real changes."""
    with using(app):
        for name in ("健康", "文化", "环保"):
            begin_write()
            events.add_category("test", name)
            db.session.commit()
    return key


def query_string(query: dict | None) -> str:
    """The query as a client sends it (schemathesis may hand over ints, bools or lists)."""
    pairs = []
    for name, value in (query or {}).items():
        for v in value if isinstance(value, list) else [value]:
            pairs.append((name, "true" if v is True else "false" if v is False else "" if v is None else str(v)))
    return urlencode(pairs)


def needs_signature(case) -> bool:
    return case.path.startswith("/api/v1/")


# --- schemathesis -----------------------------------------------------------------------------

CHECKS = [response_schema_conformance, status_code_conformance, content_type_conformance,
          response_headers_conformance]
# every operation with valid input; those with parameters also with invalid input (schemathesis'
# negative mode: wrong types, out-of-range limits, over-long cursors...)
OPERATIONS = [(path, method, mode) for path, item in DOC["paths"].items() for method, op in item.items()
              for mode in (("positive", "negative") if op.get("parameters") or op.get("requestBody")
                           else ("positive",))]


def send(app, key, case):
    """The case as a client would send it, signed where the operation needs it; its response."""
    qs = query_string(case.query)
    path = case.formatted_path + (f"?{qs}" if qs else "")
    body = b""
    headers = {k: str(v) for k, v in (case.headers or {}).items()}
    if case.body is not NOT_SET:  # the inbox: a generated (or, in negative mode, broken) JSON body
        body = case.body if isinstance(case.body, bytes) else json.dumps(
            case.body, ensure_ascii=False, default=lambda o: o.decode("latin-1") if isinstance(o, bytes) else str(o)
        ).encode()
        headers["Content-Type"] = "application/json"
    if needs_signature(case):
        headers.update(signing.signed_headers(key, case.method, path, body, now=NOW_UNIX))
    return path, app.test_client().open(path, method=case.method, headers=headers, data=body)


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_generated_requests_get_no_server_error_and_conform(app, stocked, path, method, mode):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operation = schema[path][method.upper()]
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    seen = []

    @given(case=strategy)
    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        sent, resp = send(app, stocked, case)
        seen.append(resp.status_code)
        assert resp.status_code < 500, f"{case.method} {sent}: {resp.status_code} {resp.get_data(as_text=True)[:500]}"
        if needs_signature(case):
            # a correctly signed request is never refused for its signature, whatever its query
            assert resp.status_code != 401, f"{sent}: {resp.get_data(as_text=True)}"
        if resp.status_code >= 400 and resp.mimetype == "application/problem+json":
            PROBLEM.validate(resp.get_json())
        if mode == "positive":
            case.validate_response(resp, checks=CHECKS)

    run()
    assert seen


# --- cursors ----------------------------------------------------------------------------------

def signed_get(client, key, path, now_unix=NOW_UNIX, headers=None, nonce=None):
    h = signing.signed_headers(key, "GET", path, now=now_unix, nonce=nonce)
    h.update(headers or {})
    return client.get(path, headers=h)


def changes_url(cursor=None, limit=None) -> str:
    q = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    return "/api/v1/changes" + (f"?{urlencode(q)}" if q else "")


def assert_problem(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    PROBLEM.validate(body)
    assert body["status"] == status and body["detail"]
    return body


def first_page(client, key, limit=1):
    resp = signed_get(client, key, changes_url(limit=limit))
    assert resp.status_code == 200
    page = resp.get_json()
    assert page["next_cursor"], "the fixture must make more than one page"
    return page


@pytest.mark.parametrize("which", ["next_cursor", "resume_cursor"])
def test_a_truncated_cursor_gets_400(client, stocked, which):
    cursor = first_page(client, stocked)[which]
    for cut in sorted({1, 2, len(cursor) // 2, len(cursor) - 22, len(cursor) - 1}):
        assert_problem(signed_get(client, stocked, changes_url(cursor[:cut])), 400)


def test_a_cursor_with_a_flipped_tag_or_extra_parts_gets_400(client, stocked):
    cursor = first_page(client, stocked)["next_cursor"]
    version, payload, tag = cursor.split(".")
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    for bad in (f"{version}.{payload}.{flipped}", f"{cursor}.x", f"{version}.{payload}", f"2.{payload}.{tag}",
                cursor.upper(), f" {cursor}", f"{cursor}\n"):
        assert_problem(signed_get(client, stocked, changes_url(bad)), 400)


@pytest.mark.parametrize("payload", [
    ["{station}", "{epoch}", -1, None],  # negative position
    ["{station}", "{epoch}", 5, 2],  # end before start
    ["{station}", "{epoch}", "0", None],  # a string position
    ["{station}", "{epoch}", 1.5, None],
    ["{station}", "{epoch}", True, None],
    ["{station}", "{epoch}", 0],  # too short
    ["{station}", "{epoch}", 0, None, 1],  # too long
    {"station": "{station}"},
    None,
    "text",
])
def test_a_genuinely_tagged_but_ill_formed_cursor_gets_400(app, client, stocked, payload):
    """Only this station can tag a cursor, but the content is checked all the same."""
    page = first_page(client, stocked)

    def fill(v):
        return {"{station}": page["station"], "{epoch}": page["epoch"]}.get(v, v) if isinstance(v, str) else v

    filled = [fill(v) for v in payload] if isinstance(payload, list) else \
        {k: fill(v) for k, v in payload.items()} if isinstance(payload, dict) else payload
    with app.test_request_context():
        body = f"{sync.CURSOR_VERSION}.{sync._b64(json.dumps(filled).encode())}"
        tag = sync._b64(sync.hmac.new(sync._cursor_key(), body.encode(), sync.hashlib.sha256).digest()[:16])
    assert_problem(signed_get(client, stocked, changes_url(f"{body}.{tag}")), 400)


def test_another_stations_next_cursor_gets_400_not_its_rows(app, client, stocked):
    """A mid-run cursor of another station (same secret, other code) is refused like a resume one."""
    page = first_page(client, stocked)
    with app.test_request_context():
        other = sync.encode_cursor("GL-OTHER", page["epoch"], 1, page["upto"])
    body = assert_problem(signed_get(client, stocked, changes_url(other)), 400)
    assert "另一个站点" in body["detail"]


def test_a_next_cursor_from_another_epoch_gets_409(app, client, stocked):
    """Mid-run (not only at a checkpoint): the epoch changes, the run's next page says resync."""
    page = first_page(client, stocked)
    (Path(app.instance_path) / "epoch").unlink()
    with app.app_context():
        assert sync.check_epoch(app) != page["epoch"]
    assert_problem(signed_get(client, stocked, changes_url(page["next_cursor"])), 409)


def test_a_made_up_epoch_gets_409_and_a_bad_limit_with_a_good_cursor_400(app, client, stocked):
    page = first_page(client, stocked)
    with app.test_request_context():
        other_epoch = sync.encode_cursor(page["station"], "0" * 32, 0, None)
    assert_problem(signed_get(client, stocked, changes_url(other_epoch)), 409)
    assert_problem(signed_get(client, stocked, changes_url(page["next_cursor"], limit="0")), 400)


# --- signatures -------------------------------------------------------------------------------

def test_a_body_hash_mismatch_gets_a_problem_body(client, stocked):
    path = changes_url()
    headers = signing.signed_headers(stocked, "GET", path, body=b"{}", now=NOW_UNIX)
    body = assert_problem(client.get(path, headers=headers, data=b'{"a":1}'), 401)
    assert body["detail"]
    # signed for no body, sent with one
    headers = signing.signed_headers(stocked, "GET", path, now=NOW_UNIX)
    assert_problem(client.get(path, headers=headers, data=b"x"), 401)


def test_a_nonce_is_accepted_once_even_for_another_request(client, stocked):
    nonce = "n" * 24
    assert signed_get(client, stocked, changes_url(limit=1), nonce=nonce).status_code == 200
    body = assert_problem(signed_get(client, stocked, changes_url(limit=2), nonce=nonce), 401)
    assert "重放" in body["detail"]
    later = signed_get(client, stocked, changes_url(limit=2), now_unix=NOW_UNIX + 60, nonce=nonce)
    assert_problem(later, 401)


def test_a_refused_request_does_not_burn_its_nonce(client, stocked):
    """A forged request must not let an eavesdropper block the genuine one with the same nonce."""
    nonce = "m" * 24
    forged = signing.signed_headers(signing.new_key(), "GET", changes_url(), now=NOW_UNIX, nonce=nonce)
    assert_problem(client.get(changes_url(), headers=forged), 401)
    assert signed_get(client, stocked, changes_url(), nonce=nonce).status_code == 200


def test_the_clock_window_is_300_seconds_each_way(client, stocked):
    for skew in (-300, 300):
        assert signed_get(client, stocked, changes_url(), now_unix=NOW_UNIX + skew).status_code == 200
    for skew in (-301, 301, -10**9):
        assert_problem(signed_get(client, stocked, changes_url(), now_unix=max(0, NOW_UNIX + skew)), 401)


@pytest.mark.parametrize("headers", [
    {signing.TIMESTAMP: "1" * 13},  # longer than 12 digits
    {signing.TIMESTAMP: "-1800000005"},
    {signing.TIMESTAMP: "1800000005.0"},
    {signing.TIMESTAMP: "１８００００００００５"},  # full-width digits
    {signing.NONCE: "a" * 65},
    {signing.NONCE: "a" * 15},
    {signing.SIGNATURE: "0" * 63},
    {signing.SIGNATURE: "0" * 65},
    {signing.SIGNATURE: ""},
])
def test_malformed_signature_headers_get_a_problem_body(client, stocked, headers):
    path = changes_url()
    good = signing.signed_headers(stocked, "GET", path, now=NOW_UNIX)
    assert_problem(client.get(path, headers={**good, **headers}), 401)


def test_the_signed_target_is_the_query_exactly_as_sent(client, stocked):
    """Reordered or re-encoded query parameters are another target: refused, never reinterpreted."""
    sent = "/api/v1/changes?limit=1&cursor="
    headers = signing.signed_headers(stocked, "GET", "/api/v1/changes?cursor=&limit=1", now=NOW_UNIX)
    assert_problem(client.get(sent, headers=headers), 401)
    headers = signing.signed_headers(stocked, "GET", "/api/v1/changes?limit=%31", now=NOW_UNIX)
    assert_problem(client.get("/api/v1/changes?limit=1", headers=headers), 401)
