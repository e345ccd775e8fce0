"""The volunteer registry, PIN lockout, cards and remembered phones, without HTTP."""

from datetime import timedelta

import pytest

from kiosk import volunteers
from kiosk.db import begin_write, db
from kiosk.errors import InvalidInput
from tests.conftest import FROZEN

pytestmark = pytest.mark.usefixtures("ctx")


def register(name="张三", mobile="13800000001", pin="258369", **kw):
    begin_write()
    v = volunteers.register("test", name, mobile, pin, **kw)
    db.session.commit()
    return v


def test_numbers_are_short_and_district_unique():
    a, b = register(), register("李四", "13800000002")
    assert a.number.endswith("-0001") and b.number.endswith("-0002")
    assert len(a.number) <= 16


@pytest.mark.parametrize("kw, field", [
    (dict(name=""), "name"), (dict(name="x" * 51), "name"), (dict(name="名\u202e字"), "name"),
    (dict(mobile="12345"), "mobile"), (dict(mobile="23800000001"), "mobile"), (dict(mobile="1380000000a"), "mobile"),
    (dict(pin="12345"), "pin"), (dict(pin="abcdef"), "pin"), (dict(pin="111111"), "pin"), (dict(pin="123456"), "pin"),
])
def test_bad_registrations(kw, field):
    begin_write()
    with pytest.raises(InvalidInput) as exc:
        volunteers.register("test", **{"name": "张三", "mobile": "13800000001", "pin": "258369", **kw})
    db.session.rollback()
    assert exc.value.field == field


def test_same_phone_twice_is_caught_even_written_differently():
    first = register()
    begin_write()
    with pytest.raises(InvalidInput) as exc:
        volunteers.register("kiosk", "张三", "+86 138-0000-0001", "258369", via="kiosk")
    db.session.rollback()
    assert first.number in str(exc.value.message)


def test_walk_ins_are_pending_and_unicode_names_kept():
    v = register(name="阿依古丽·买买提", via="phone")
    assert v.status == "pending" and v.name == "阿依古丽·买买提"
    assert register("王五", "13800000003").status == "active"


def test_find_by_number_or_mobile():
    v = register()
    assert volunteers.find(v.number.lower()).id == v.id
    assert volunteers.find("138 0000 0001").id == v.id
    with pytest.raises(volunteers.UnknownVolunteer):
        volunteers.find("13900000000")


def test_pin_lockout_per_volunteer(app):
    v, w = register(), register("李四", "13800000002")
    for _ in range(5):
        begin_write()
        with pytest.raises(volunteers.WrongPin):
            volunteers.verify_pin(v, "000000")
        db.session.commit()
    begin_write()
    with pytest.raises(volunteers.PinLocked):
        volunteers.verify_pin(v, "258369")  # even the right one
    volunteers.verify_pin(w, "258369")  # another volunteer is not locked
    db.session.commit()
    app.config["FROZEN_NOW"] = FROZEN + timedelta(minutes=16)
    begin_write()
    volunteers.verify_pin(v, "258369")
    db.session.commit()


def test_cards_are_signed_and_reissue_revokes():
    v = register()
    old = volunteers.badge(v)
    assert volunteers.from_badge(old).id == v.id
    for bad in ("", "KV1:", old[:-2] + "xx", "hello", "KV1:" + "A" * 400, old.replace("KV1:", "KV2:")):
        with pytest.raises(volunteers.BadCard):
            volunteers.from_badge(bad)
    begin_write()
    volunteers.reissue_card("manager:wang", v)
    db.session.commit()
    with pytest.raises(volunteers.BadCard):
        volunteers.from_badge(old)
    assert volunteers.from_badge(volunteers.badge(v)).id == v.id


def test_devices_are_remembered_forgotten_and_revoked_on_suspension():
    v = register()
    begin_write()
    d = volunteers.remember_device(v)
    db.session.commit()
    assert volunteers.device_volunteer(d.id).id == v.id
    begin_write()
    volunteers.forget_device(d.id)
    db.session.commit()
    assert volunteers.device_volunteer(d.id) is None
    begin_write()
    d2 = volunteers.remember_device(v)
    volunteers.set_status("manager:wang", v, "suspended", "违规")
    db.session.commit()
    assert volunteers.device_volunteer(d2.id) is None
    assert volunteers.device_volunteer("nonsense") is None


def test_update_and_teams():
    v = register(teams=["青年志愿服务队", "青年志愿服务队", "巾帼志愿服务队"])
    assert [t.name for t in v.teams] == ["巾帼志愿服务队", "青年志愿服务队"]
    begin_write()
    volunteers.update("m", v, "张三丰", "13800000009", ["法律志愿服务队"])
    db.session.commit()
    assert (v.name, v.mobile, [t.name for t in v.teams]) == ("张三丰", "13800000009", ["法律志愿服务队"])


def test_full_width_and_foreign_digits():
    v = register(mobile="１３８０００００００５")
    assert v.mobile == "13800000005"
    begin_write()
    with pytest.raises(InvalidInput):
        volunteers.register("test", "李四", "١٣٨٠٠٠٠٠٠٠٦", "258369")
    with pytest.raises(InvalidInput):
        volunteers.register("test", "李四", "13800000006", "٢٥٨٣٦٩")
    db.session.rollback()


def test_automatic_numbers_skip_hand_typed_ones():
    first = register()
    code = first.number.rsplit("-", 1)[0]
    register("李四", "13800000002", number=f"{code}-0002")
    third = register("王五", "13800000003")
    assert third.number == f"{code}-0003"
