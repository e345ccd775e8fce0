"""Fixtures (flaskr style) and factories (Indico style): a fresh migrated database per test."""

import re
import shutil
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from flask import has_app_context

from kiosk import create_app, events
from kiosk.db import begin_write, db

FROZEN = datetime(2026, 11, 30, 10, 0)  # a Monday morning at the station


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory):
    """One database built by the real migrations; each test gets a copy of it."""
    folder = tmp_path_factory.mktemp("template")
    app = create_app({"INSTANCE_PATH": str(folder), "SECRET_KEY": "test"})
    with app.app_context():
        from kiosk.cli import _upgrade

        _upgrade()
        db.engine.dispose()
    return folder / "kiosk.sqlite3"


@pytest.fixture
def app(tmp_path, migrated_db):
    shutil.copy(migrated_db, tmp_path / "kiosk.sqlite3")
    app = create_app({
        "INSTANCE_PATH": str(tmp_path),
        "TESTING": True,
        "FROZEN_NOW": FROZEN,
        "FROZEN_UNIX": 1_800_000_005.0,  # for the rotating QR steps: 5 s into a step
    })
    # No app context is held open here: each test request gets its own, as in production
    # (a shared one would share the session and Flask-Babel's cached locale between requests).
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def ctx(app):
    """An application context for tests that call the domain functions directly."""
    with app.app_context():
        yield app
        db.session.remove()


@contextmanager
def using(app):
    """The test's app context if it has one, else a short one of its own."""
    if has_app_context():
        yield
        return
    with app.app_context():
        yield


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- factories --------------------------------------------------------------------------------

@pytest.fixture
def make_category(app):
    def make(name="志愿服务"):
        with using(app):
            begin_write()
            cat = events.add_category("test", name)
            db.session.commit()
            db.session.refresh(cat)
            return cat

    return make


@pytest.fixture
def make_event(app):
    def make(title="写春联送春联", start=None, hours=2, commit=True, **kw):
        start = start or FROZEN.replace(hour=14)
        with using(app):
            begin_write()
            ev = events.create_event("test", events.EventData(title=title, starts_at=start,
                                                              ends_at=start + timedelta(hours=hours), **kw))
            if commit:
                db.session.commit()
                db.session.refresh(ev)
            return ev

    return make


@pytest.fixture
def make_manager(app):
    def make(username="wang", password="correct horse battery"):
        from kiosk import accounts

        with using(app):
            begin_write()
            m = accounts.create_manager("test", username, password, "王站长")
            db.session.commit()
            db.session.refresh(m)
            return m

    return make


def csrf_token(client, path="/") -> str:
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


@pytest.fixture
def manager_client(client, make_manager):
    """A test client logged in as a station manager."""
    make_manager()
    token = csrf_token(client, "/manage/login")
    resp = client.post("/manage/login", data={"username": "wang", "password": "correct horse battery",
                                               "csrf_token": token})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    client.csrf = csrf_token(client, "/manage/")
    return client
