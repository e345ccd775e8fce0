"""Whatever a person types into a form, the answer is a 4xx with a sentence, never a 500."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import csrf_token

NASTY = st.one_of(
    st.text(max_size=300),
    st.sampled_from([
        "", " ", "\x00", "\u202e", "<script>alert(1)</script>", "' OR 1=1 --", "9" * 400, "-1", "1e9",
        "2026-13-45", "24:61", "０９:００", "２０２６-１１-３０", "\ud7ff", "🙂" * 60, "NaN", "None",
    ]),
)
FIELDS = ["title", "category_id", "day", "start", "end", "place", "organiser", "description", "capacity",
          "repeat", "weekdays", "until", "version", "published"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional={f: NASTY for f in FIELDS}))
def test_event_form_never_500(manager_client, values):
    form = {"csrf_token": manager_client.csrf, **values}
    resp = manager_client.post("/manage/events/new", data=form)
    assert resp.status_code in (303, 413, 422), resp.status_code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(username=NASTY, password=NASTY)
def test_login_never_500(client, username, password):
    token = csrf_token(client, "/manage/login")
    resp = client.post("/manage/login", data={"username": username, "password": password, "csrf_token": token})
    assert resp.status_code in (401, 422, 429)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(max_size=80), category=NASTY)
def test_kiosk_urls_never_500(client, path, category):
    resp = client.get("/events/" + path.replace("?", "").replace("#", ""))
    assert resp.status_code < 500
    resp = client.get("/", query_string={"category": category})
    assert resp.status_code in (200, 404)
