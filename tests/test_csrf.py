"""Every state-changing route refuses a request without a CSRF token."""

import pytest

from kiosk import create_app

_ID = "00000000-0000-7000-8000-000000000000"
SAMPLE = {name: _ID for name in ("event_id", "category_id", "volunteer_id", "checkin_id", "reward_id",
                                  "redemption_id")}
SAMPLE["direction"] = "checkin"


def state_changing_routes():
    app = create_app({"INSTANCE_PATH": "/tmp/kiosk-csrf-enumeration", "SECRET_KEY": "x"})
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            if rule.endpoint.startswith("api."):
                continue  # the data API is signed instead (tested with the API)
            yield method, rule.rule, rule.endpoint


ROUTES = list(state_changing_routes())


def test_there_are_routes_to_check():
    assert len(ROUTES) >= 12


@pytest.mark.parametrize("method, rule, endpoint", ROUTES, ids=[r[2] for r in ROUTES])
def test_refused_without_csrf_token(manager_client, method, rule, endpoint):
    path = rule
    for key, value in SAMPLE.items():
        path = path.replace(f"<{key}>", value)
    assert "<" not in path, f"add a sample value for {path}"
    resp = manager_client.open(path, method=method, data={"title": "x", "name": "x", "reason": "x"})
    assert resp.status_code == 400, (endpoint, resp.status_code)
    assert "页面停留太久已经失效" in resp.get_data(as_text=True)
