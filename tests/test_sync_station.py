"""The station's side of the nightly sync (DESIGN.md §4): change log, epoch, signed export."""

import gzip
import hashlib
import json
import shutil
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import delete, func, select, update

from kiosk import changelog, create_app, demo, events, inbox, ledger, rewards, signing, sync, volunteers
from kiosk.clock import now
from kiosk.db import begin_write, db
from kiosk.models import (
    Category,
    ChangeLog,
    Event,
    LedgerTxn,
    Manager,
    SyncKey,
    SyncPull,
    Volunteer,
)
from tests.conftest import csrf_token, using

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

NOW_UNIX = 1_800_000_005.0  # the app fixture's FROZEN_UNIX
PIN = "258369"


# --- helpers ----------------------------------------------------------------------------------

@pytest.fixture
def key(app):
    with using(app):
        begin_write()
        secret = sync.rotate_key("test")
        db.session.commit()
        return secret


def signed_get(client, key, path, now_unix=NOW_UNIX, headers=None, **kw):
    h = signing.signed_headers(key, "GET", path, now=now_unix)
    h.update(headers or {})
    return client.get(path, headers=h, **kw)


def url(cursor=None, limit=None):
    from urllib.parse import urlencode

    q = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    return "/api/v1/changes" + (f"?{urlencode(q)}" if q else "")


def pull(client, key, cursor=None, limit=None):
    resp = signed_get(client, key, url(cursor, limit))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def pull_run(client, key, cursor=None, limit=50):
    """A whole run: follow next_cursor to the end; returns (pages, resume_cursor)."""
    pages = [pull(client, key, cursor, limit)]
    while pages[-1]["next_cursor"]:
        pages.append(pull(client, key, pages[-1]["next_cursor"], limit))
    return pages, pages[-1]["resume_cursor"]


def changes_of(pages):
    return [c for p in pages for c in p["changes"]]


def replay(changes) -> dict:
    """What the district would hold after applying the changes in order."""
    state = {}
    for c in changes:
        if c["op"] == "delete":
            state.pop((c["entity"], c["id"]), None)
        else:
            state[(c["entity"], c["id"])] = c["data"]
    return state


def database_rows() -> dict:
    """Every exported row as the export would show it now."""
    rows = {}
    for model, entity in changelog.EXPORTED.items():
        for obj in db.session.scalars(select(model)):
            rows[(entity, str(obj.id))] = json.loads(json.dumps(changelog.row_data(obj)))
    return rows


def log_count() -> int:
    return db.session.scalar(select(func.count(ChangeLog.seq)))


def business(app):
    """A day at the station through the domain operations: every exported kind of row."""
    with using(app):
        begin_write()
        demo.load()
        db.session.commit()
        begin_write()
        v = volunteers.register("test", "林小梅", "13905910077", PIN, teams=["助老服务队"])
        volunteers.update("test", v, "林小梅", "13905910077", ["助老服务队", "环保服务队"])
        db.session.commit()
        begin_write()
        volunteers.set_status("test", v, "active")
        ledger.post("adjust", v, 500, "manager:wang", "补记积分")
        reward = rewards.catalog()[0]
        red, _ = rewards.redeem(v, reward, None, actor="test")
        rewards.cancel("manager:wang", red, "不要了")
        rewards.restock("manager:wang", reward, 5, "补货")
        db.session.commit()
        begin_write()
        inbox.receive(json.dumps(batch_for(1, balances=[{"volunteer_id": v.id, "allowance": 0, "total": 0,
                                                          "minutes_total": 0, "minutes_here": 0}])).encode())
        db.session.commit()
        return v.id


def batch_for(issued: int, kind: str = "full", **parts) -> dict:
    """A district batch for the station in the current app context (kiosk/inbox.py)."""
    import uuid

    return {"schema_version": 1, "batch_id": str(uuid.uuid4()), "issued": issued, "kind": kind,
            "station": events.get_station().code, "epoch": sync.current_epoch(),
            "mark_seq": db.session.scalar(select(func.max(ChangeLog.seq))) or 0, "as_of": "2026-11-30T02:30",
            "balances": [], **parts}


# --- the change log ---------------------------------------------------------------------------

def test_the_log_describes_every_exported_row(ctx):
    business(ctx)
    logged = replay(
        {"entity": r.entity, "id": r.entity_id, "op": r.op, "data": json.loads(r.data) if r.data else None}
        for r in db.session.scalars(select(ChangeLog).order_by(ChangeLog.seq)))
    rows = database_rows()
    assert set(logged) == set(rows)
    assert logged == rows
    assert {entity for entity, _ in rows} == set(changelog.EXPORTED.values())


def test_a_write_and_its_log_commit_together(ctx, make_category):
    make_category("健康")
    before = log_count()
    begin_write()
    events.add_category("test", "文化")
    db.session.flush()
    assert log_count() > before  # written in the same transaction...
    db.session.rollback()
    assert log_count() == before  # ...and gone with it


def test_team_membership_travels_with_the_volunteer(ctx):
    begin_write()
    v = volunteers.register("test", "陈大伯", "13905910078", PIN, teams=["助老服务队"])
    db.session.commit()
    begin_write()
    volunteers.update("test", v, "陈大伯", "13905910078", ["助老服务队", "环保服务队"])
    db.session.commit()
    last = db.session.scalars(select(ChangeLog).where(ChangeLog.entity == "volunteer", ChangeLog.entity_id == v.id)
                              .order_by(ChangeLog.seq.desc())).first()
    data = json.loads(last.data)
    assert len(data["team_ids"]) == 2
    assert "pin_hash" not in data


def test_a_ledger_transaction_carries_its_postings(ctx):
    business(ctx)
    for row in db.session.scalars(select(ChangeLog).where(ChangeLog.entity == "ledger_txn")):
        data = json.loads(row.data)
        assert len(data["postings"]) >= 2 and sum(p["amount"] for p in data["postings"]) == 0


def test_deleted_rows_become_tombstones(ctx, make_category):
    cat = make_category("健康")
    begin_write()
    db.session.delete(db.session.get(Category, cat.id))
    db.session.commit()
    last = db.session.scalars(select(ChangeLog).order_by(ChangeLog.seq.desc())).first()
    assert (last.entity, last.entity_id, last.op, last.data) == ("category", cat.id, "delete", None)


def test_demo_reset_logs_its_deletions(ctx, make_event, make_category):
    cat = make_category("旧类别")
    ev = make_event("旧活动", category_id=cat.id)
    begin_write()
    demo.load(reset=True)
    db.session.commit()
    tombstones = {(r.entity, r.entity_id) for r in db.session.scalars(select(ChangeLog).where(ChangeLog.op == "delete"))}
    assert {("event", ev.id), ("category", cat.id)} <= tombstones


@pytest.mark.parametrize("statement", [
    lambda: update(Event).values(title="改名"),
    lambda: delete(Category),
    lambda: update(Volunteer).values(name="x"),
])
def test_bulk_statements_that_would_skip_the_log_are_refused(ctx, statement):
    begin_write()
    with pytest.raises(RuntimeError, match="change log"):
        db.session.execute(statement())
    db.session.rollback()


def test_rows_from_before_the_log_are_backfilled(ctx):
    begin_write()
    demo.load()
    db.session.commit()
    begin_write()
    db.session.execute(ChangeLog.__table__.delete())
    db.session.execute(sync.SyncState.__table__.update().values(backfilled=False))
    db.session.commit()
    sync.after_upgrade(ctx)
    logged = replay({"entity": r.entity, "id": r.entity_id, "op": r.op, "data": json.loads(r.data)}
                    for r in db.session.scalars(select(ChangeLog).order_by(ChangeLog.seq)))
    assert logged == database_rows()


# --- the export -------------------------------------------------------------------------------

def test_a_full_export_rebuilds_the_station(app, client, key):
    business(app)
    pages, _resume = pull_run(client, key, limit=40)
    assert len(pages) > 3
    seqs = [c["seq"] for c in changes_of(pages)]
    assert seqs == sorted(set(seqs))
    with using(app):
        assert replay(changes_of(pages)) == database_rows()
        assert seqs[-1] == db.session.scalar(select(func.max(ChangeLog.seq)))


def test_upto_is_frozen_for_the_run_and_a_resume_cursor_starts_the_next(app, client, key, make_category):
    make_category("健康")
    first = pull(client, key, limit=1)
    make_category("文化")  # written during the run
    pages = [first]
    while pages[-1]["next_cursor"]:
        pages.append(pull(client, key, pages[-1]["next_cursor"], limit=1))
    assert {p["upto"] for p in pages} == {first["upto"]}
    assert max(c["seq"] for c in changes_of(pages)) == first["upto"]
    later, _ = pull_run(client, key, pages[-1]["resume_cursor"])
    names = [c["data"]["name"] for c in changes_of(later) if c["entity"] == "category"]
    assert names == ["文化"]
    nothing, _ = pull_run(client, key, later[-1]["resume_cursor"])
    assert changes_of(nothing) == [] and nothing[0]["next_cursor"] is None


def test_gzip_when_the_client_accepts_it(app, client, key):
    business(app)
    plain = signed_get(client, key, url(limit=500))
    zipped = signed_get(client, key, url(limit=500), headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    body = json.loads(gzip.decompress(zipped.get_data()))
    assert body["changes"] == plain.get_json()["changes"]
    assert len(zipped.get_data()) < len(plain.get_data()) / 3
    assert "Content-Encoding" not in plain.headers


def test_no_secret_is_ever_exported(app, client, key, make_manager):
    make_manager()
    business(app)
    raw = b"".join(signed_get(client, key, url(limit=5000)).response).decode()
    text = json.dumps(pull(client, key, limit=5000), ensure_ascii=False)
    with using(app):
        secrets = [v.pin_hash for v in db.session.scalars(select(Volunteer))]
        secrets += [m.password_hash for m in db.session.scalars(select(Manager))]
        secrets += [k.secret for k in db.session.scalars(select(SyncKey))]
    secrets += [app.config["SECRET_KEY"], key, PIN]
    assert len(secrets) > 10
    for body in (raw, text):
        for secret in secrets:
            assert secret not in body
        for word in ("pin_hash", "password", "secret"):
            assert word not in body
    tables = {c["entity"] for c in json.loads(raw)["changes"]}
    assert not tables & {"manager", "device", "pin_attempt", "login_attempt", "qr_use", "sync_key", "sync_nonce"}


# --- cursors ----------------------------------------------------------------------------------

def _tamper(cursor: str) -> str:
    version, payload, tag = cursor.split(".")
    station, epoch, after, upto = json.loads(sync._unb64(payload))
    forged = sync._b64(json.dumps([station, epoch, 0, upto]).encode())
    return f"{version}.{forged}.{tag}"


@pytest.mark.parametrize("bad", [
    "", "x", "1..", "2.e30.AAAA", "1.bm9wZQ.AAAAAAAAAAAAAAAAAAAAAA", "1.%%%.%%%", "。.。.。", "\u202e1.a.b", "a" * 5000,
])
def test_malformed_cursors_get_400(client, key, bad):
    resp = signed_get(client, key, url(bad))
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"


@pytest.mark.parametrize("limit", ["0", "-1", "5001", "abc", "1e3", "１０", ""])
def test_bad_limits_get_400(client, key, limit):
    assert signed_get(client, key, url(limit=limit)).status_code == 400


def test_tampered_and_foreign_cursors_get_400(app, client, key, make_category, tmp_path):
    make_category("健康")
    make_category("文化")
    page = pull(client, key, limit=1)
    assert signed_get(client, key, url(_tamper(page["next_cursor"]))).status_code == 400
    # another station (its own secret) makes cursors this one cannot verify
    with app.app_context():
        other = sync.encode_cursor(page["station"], page["epoch"], 0, None)
    app.config["SECRET_KEY"], saved = "another station", app.config["SECRET_KEY"]
    with app.test_request_context():
        forged = sync.encode_cursor(page["station"], page["epoch"], 0, None)
    app.config["SECRET_KEY"] = saved
    assert signed_get(client, key, url(forged)).status_code == 400
    # a genuine tag for another station code
    with app.test_request_context():
        elsewhere = sync.encode_cursor("GL-OTHER", page["epoch"], 0, None)
    resp = signed_get(client, key, url(elsewhere))
    assert resp.status_code == 400 and "另一个站点" in resp.get_json()["detail"]
    assert signed_get(client, key, url(other)).status_code == 200


def test_a_cursor_from_another_epoch_gets_409(app, client, key, make_category):
    make_category("健康")
    page = pull(client, key, limit=1)
    (Path(app.instance_path) / "epoch").unlink()  # as if the database had been moved here
    with app.app_context():
        assert sync.check_epoch(app) != page["epoch"]
    resp = signed_get(client, key, url(page["resume_cursor"]))
    assert resp.status_code == 409
    assert resp.mimetype == "application/problem+json"
    assert "全量同步" in resp.get_json()["detail"]
    assert pull(client, key)["epoch"] != page["epoch"]


# --- signatures -------------------------------------------------------------------------------

def _faults(key):
    path = url(limit=10)
    good = signing.signed_headers(key, "GET", path, now=NOW_UNIX)
    yield "unsigned", path, {}
    for missing in (signing.TIMESTAMP, signing.NONCE, signing.SIGNATURE):
        yield f"no {missing}", path, {k: v for k, v in good.items() if k != missing}
    yield "stale", path, signing.signed_headers(key, "GET", path, now=NOW_UNIX - 301)
    yield "future", path, signing.signed_headers(key, "GET", path, now=NOW_UNIX + 301)
    yield "wrong key", path, signing.signed_headers(signing.new_key(), "GET", path, now=NOW_UNIX)
    yield "other query", url(limit=11), good
    yield "other method", path, signing.signed_headers(key, "POST", path, now=NOW_UNIX)
    yield "other nonce", path, {**good, signing.NONCE: "A" * 24}
    yield "other time", path, {**good, signing.TIMESTAMP: str(int(NOW_UNIX) + 1)}
    yield "upper-case hex", path, {**good, signing.SIGNATURE: good[signing.SIGNATURE].upper()}
    yield "short nonce", path, signing.signed_headers(key, "GET", path, now=NOW_UNIX, nonce="abc")
    yield "odd nonce", path, signing.signed_headers(key, "GET", path, now=NOW_UNIX, nonce="../../" + "x" * 20)
    yield "text timestamp", path, {**good, signing.TIMESTAMP: "soon"}
    yield "garbage", path, {signing.TIMESTAMP: "1", signing.NONCE: "\u202e" * 20, signing.SIGNATURE: "<script>"}


FAULTS = [name for name, _path, _headers in _faults("k")]


@pytest.mark.parametrize("fault", FAULTS)
def test_every_signature_fault_gets_401(client, key, fault):
    name, path, headers = next(f for f in _faults(key) if f[0] == fault)
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401, name
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"] == signing.SCHEME


def test_the_body_is_signed_too(client, key):
    path = url()
    headers = signing.signed_headers(key, "GET", path, body=b"{}", now=NOW_UNIX)
    assert client.get(path, headers=headers, data=b"{}").status_code == 200
    headers = signing.signed_headers(key, "GET", path, body=b"{}", now=NOW_UNIX)
    assert client.get(path, headers=headers, data=b"{ }").status_code == 401


def test_a_replayed_request_gets_401(client, key):
    path = url()
    headers = signing.signed_headers(key, "GET", path, now=NOW_UNIX)
    assert client.get(path, headers=headers).status_code == 200
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401 and "重放" in resp.get_json()["detail"]


def test_no_key_no_access_and_a_rotated_key_stops_working(app, client):
    path = url()
    assert client.get(path, headers=signing.signed_headers("x" * 43, "GET", path, now=NOW_UNIX)).status_code == 401
    with app.app_context():
        begin_write()
        old = sync.rotate_key("test")
        db.session.commit()
        begin_write()
        new = sync.rotate_key("test")
        db.session.commit()
    assert signed_get(client, old, path).status_code == 401
    assert signed_get(client, new, path).status_code == 200


def test_health_and_the_api_document_stay_public(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200


def test_the_signature_matches_the_documented_recipe():
    body = b""
    text = "\n".join(["KIOSK-HMAC-SHA256", "GET", "/api/v1/changes?limit=5", hashlib.sha256(body).hexdigest(),
                      "1800000005", "n" * 16])
    import hmac

    expected = hmac.new(b"k", text.encode(), hashlib.sha256).hexdigest()
    assert signing.sign("k", "get", "/api/v1/changes?limit=5", body, 1800000005, "n" * 16) == expected
    assert signing.target("https://station.example:8443/api/v1/changes?limit=5") == "/api/v1/changes?limit=5"


# --- the epoch --------------------------------------------------------------------------------

def test_the_epoch_survives_a_restart(app):
    with app.app_context():
        epoch = sync.current_epoch()
        db.engine.dispose()
    again = create_app({"INSTANCE_PATH": app.instance_path, "TESTING": True})
    with again.app_context():
        assert sync.current_epoch() == epoch
        db.engine.dispose()


def _swap_in(folder: Path, backup: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (folder / f"kiosk.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, folder / "kiosk.sqlite3")


def _restart(folder: Path):
    app = create_app({"INSTANCE_PATH": str(folder), "TESTING": True, "FROZEN_UNIX": NOW_UNIX})
    return app, app.test_client()


def test_a_restored_backup_gets_a_new_epoch(app, client, key, runner, tmp_path, make_category):
    make_category("健康")
    first = pull(client, key)
    backup = tmp_path / "backup.sqlite3"
    result = runner.invoke(args=["backup", str(backup)])
    assert result.exit_code == 0, result.output
    make_category("文化")
    with app.app_context():
        db.engine.dispose()
    _swap_in(Path(app.instance_path), backup)
    restored, rclient = _restart(Path(app.instance_path))
    resp = signed_get(rclient, key, url(first["resume_cursor"]))
    assert resp.status_code == 409
    assert pull(rclient, key)["epoch"] != first["epoch"]
    with restored.app_context():
        db.engine.dispose()


def test_a_copy_behind_what_was_exported_gets_a_new_epoch(app, client, key, tmp_path, make_category):
    """A copy made by any means: once the district holds rows the database lost, a new epoch."""
    make_category("健康")
    folder = Path(app.instance_path)
    copy = tmp_path / "copy.sqlite3"
    src, dst = sqlite3.connect(folder / "kiosk.sqlite3"), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    make_category("文化")
    first, _ = pull_run(client, key)
    with app.app_context():
        db.engine.dispose()
    _swap_in(folder, copy)
    restored, rclient = _restart(folder)
    assert signed_get(rclient, key, url(first[-1]["resume_cursor"])).status_code == 409
    with restored.app_context():
        db.engine.dispose()


def test_starting_does_not_create_a_database(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "empty")})
    assert not (tmp_path / "empty" / "kiosk.sqlite3").exists()
    with app.app_context():
        db.engine.dispose()


# --- the API document -------------------------------------------------------------------------

def _openapi():
    return json.loads((ROOT / "docs" / "openapi.json").read_text())


def test_the_served_document_is_the_one_in_the_repo(client):
    assert client.get("/api/openapi.json").get_json() == _openapi()


def test_the_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(_openapi())


def test_every_exported_entity_has_a_schema_matching_the_model():
    schemas = _openapi()["components"]["schemas"]
    for model, entity in changelog.EXPORTED.items():
        name = "".join(p.capitalize() for p in entity.split("_"))
        columns = {a.key for a in model.__mapper__.column_attrs} - changelog.OMIT.get(model, set())
        extra = {"team_ids"} if model is Volunteer else {"postings"} if model is LedgerTxn else set()
        assert set(schemas[name]["properties"]) == columns | extra, entity
        assert "pin_hash" not in schemas[name]["properties"]


def test_real_exports_validate_against_the_document(app, client, key):
    doc = _openapi()
    business(app)
    with app.app_context():
        begin_write()
        cat = events.add_category("test", "临时")
        db.session.commit()
        begin_write()
        db.session.delete(db.session.get(Category, cat.id))
        db.session.commit()
    pages, _ = pull_run(client, key, limit=200)
    validator = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/ChangesPage",
                                                 "components": doc["components"]})
    for page in pages:
        errors = sorted(validator.iter_errors(page), key=str)
        assert not errors, errors[0]
    entities = {c["entity"] for c in changes_of(pages)}
    assert entities == set(changelog.EXPORTED.values())
    assert any(c["op"] == "delete" for c in changes_of(pages))
    problem = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Problem",
                                               "components": doc["components"]})
    problem.validate(client.get(url()).get_json())


# --- the manager and the CLI ------------------------------------------------------------------

def test_the_manager_issues_a_key_and_sees_the_pulls(app, manager_client):
    page = manager_client.get("/manage/sync").get_data(as_text=True)
    assert "还没有生成" in page
    token = csrf_token(manager_client, "/manage/sync")
    resp = manager_client.post("/manage/sync/key", data={"csrf_token": token})
    assert resp.status_code == 200
    with app.app_context():
        secret = db.session.scalar(select(SyncKey.secret))
        audit = db.session.scalars(select(changelog.AuditLog).where(changelog.AuditLog.action == "rotate_key")).all()
    assert secret in resp.get_data(as_text=True)
    assert len(audit) == 1 and secret not in audit[0].detail
    assert pull(app.test_client(), secret)["changes"]
    again = manager_client.get("/manage/sync").get_data(as_text=True)
    assert secret not in again  # shown once
    assert "127.0.0.1" in again and "已完成" in again
    with app.app_context():
        assert db.session.scalar(select(func.count(SyncPull.id))) == 1


def test_rotating_the_key_needs_a_csrf_token(manager_client):
    assert manager_client.post("/manage/sync/key").status_code == 400


def test_the_cli_issues_a_key_that_works(app, runner):
    result = runner.invoke(args=["sync-key"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert pull(app.test_client(), secret)["epoch"]


# --- concurrency through the real server -------------------------------------------------------

def _http_pull(base_url: str, key: str, cursor=None, limit=7) -> dict:
    path = url(cursor, limit)
    req = urllib.request.Request(base_url + path, headers={**signing.signed_headers(key, "GET", path),
                                                           "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
    return json.loads(raw)


def test_paging_while_8_writers_write_misses_nothing_and_repeats_nothing(tmp_path):
    folder = tmp_path / "station"
    harness.run_cli(folder, "init")
    result = harness.run_cli(folder, "sync-key")
    key = result.stdout.strip().splitlines()[-1]
    writer_app = create_app({"INSTANCE_PATH": str(folder)})
    with writer_app.app_context():
        begin_write()
        cat = events.add_category("test", "志愿服务")
        db.session.commit()
        cat_id = cat.id
    seen: list[int] = []
    errors: list[str] = []

    def writer(n: int) -> None:
        with writer_app.app_context():
            try:
                for i in range(25):
                    begin_write()
                    start = now() + timedelta(days=n, hours=i)
                    events.create_event("test", events.EventData(
                        title=f"活动 {n}-{i}", starts_at=start, ends_at=start + timedelta(hours=1), category_id=cat_id))
                    db.session.commit()
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))
            finally:
                db.session.remove()

    server = harness.Server(folder, threads=8)
    with server as base_url:
        cursor = None
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        runs = 0
        while True:
            writing = any(t.is_alive() for t in threads)
            page = _http_pull(base_url, key, cursor)
            seen.extend(c["seq"] for c in page["changes"])
            cursor = page["next_cursor"] or page["resume_cursor"]
            if page["next_cursor"] is None:
                runs += 1
                if not writing and not page["changes"]:
                    break
        for t in threads:
            t.join()
        log = server.log()
    assert errors == []
    assert "Traceback" not in log
    with writer_app.app_context():
        all_seqs = list(db.session.scalars(select(ChangeLog.seq).order_by(ChangeLog.seq)))
        db.engine.dispose()
    assert len(seen) == len(set(seen)), "duplicates"
    assert sorted(seen) == all_seqs, "missed"
    assert len(all_seqs) >= 8 * 25 * 2 and runs > 1


# --- compaction (kiosk tidy) --------------------------------------------------------------------

def _edit_a_lot(app, rounds=5):
    with using(app):
        for i in range(rounds):
            begin_write()
            for e in db.session.scalars(select(Event)).unique():
                events.update_event("test", e, events.EventData(
                    title=f"{e.title[:80]}·{i}", starts_at=e.starts_at, ends_at=e.ends_at, category_id=e.category_id))
            db.session.commit()


def test_compaction_keeps_the_newest_state_of_every_row(app, client, key):
    business(app)
    old_pages, old_resume = pull_run(client, key, limit=100)  # a district that pulled before
    _edit_a_lot(app)
    with using(app):
        before, top = log_count(), db.session.scalar(select(func.max(ChangeLog.seq)))
        dropped = changelog.compact(begin_write, db.session.commit, step=7)
        assert dropped > 0 and log_count() == before - dropped
        assert db.session.scalar(select(func.max(ChangeLog.seq))) == top  # the epoch check still holds
        # no entity has two rows left
        assert db.session.scalar(select(func.count()).select_from(
            select(ChangeLog.entity, ChangeLog.entity_id).group_by(ChangeLog.entity, ChangeLog.entity_id)
            .having(func.count() > 1).subquery())) == 0
        truth = database_rows()
        assert changelog.compact(begin_write, db.session.commit) == 0  # nothing more to drop
    # a district starting from scratch, and one resuming from before, both end with the truth
    fresh, _ = pull_run(client, key, limit=9)
    assert replay(changes_of(fresh)) == truth
    later, _ = pull_run(client, key, old_resume, limit=9)
    assert replay(changes_of(old_pages) + changes_of(later)) == truth


def test_tidy_compacts_the_log(app, runner, key):
    business(app)
    _edit_a_lot(app, rounds=2)
    with using(app):
        before = log_count()
    result = runner.invoke(args=["tidy"])
    assert result.exit_code == 0, result.output
    assert "compacted the change log by" in result.output
    with using(app):
        assert log_count() < before


def test_a_cursor_beyond_the_database_gets_409_and_a_new_epoch(app, client, key, make_category):
    """A copy swapped in mid-run without the epoch noticing: the run's cursor knows seqs the
    database doesn't have; answering from it would hand out seqs the next writes reuse."""
    make_category("健康")
    first = pull(client, key, limit=1)
    with using(app):
        top = db.session.scalar(select(func.max(ChangeLog.seq)))
        epoch = sync.current_epoch()
        beyond = sync.encode_cursor(events.get_station().code, epoch, 1, top + 5)
    resp = signed_get(client, key, url(beyond, 1))
    assert resp.status_code == 409
    with using(app):
        assert sync.current_epoch() != epoch
    assert pull(client, key)["epoch"] != first["epoch"]
