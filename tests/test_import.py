"""Importing volunteers from CSV and XLSX: the reading, the per-row report, all-or-nothing, bad files."""

import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kiosk import importer, volunteers
from kiosk.db import begin_write, db
from kiosk.errors import InvalidInput
from kiosk.models import AuditLog, Volunteer

HX = {"HX-Request": "true"}
GOOD = "姓名,手机号,密码,服务队,编号\n张三,13800000001,258369,青年志愿服务队,\n李四,13800000002,369258,青年志愿服务队、巾帼志愿服务队,LS-01\n"


def upload(client, content: bytes | str, filename="名单.csv", headers=None):
    data = content.encode() if isinstance(content, str) else content
    return client.post("/manage/volunteers/import", headers=headers, content_type="multipart/form-data",
                       data={"csrf_token": client.csrf, "file": (io.BytesIO(data), filename)})


def xlsx(rows) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def people(app):
    with app.app_context():
        return {v.mobile: (v.name, v.status, v.registered_via, v.number, sorted(t.name for t in v.teams))
                for v in db.session.scalars(select(Volunteer))}


def count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Volunteer))


def pin_ok(app, mobile, pin) -> bool:
    with app.app_context():
        v = volunteers.find(mobile)
        try:
            volunteers.verify_pin(v, pin)
            return True
        except volunteers.WrongPin:
            return False
        finally:
            db.session.rollback()


@pytest.fixture
def make_volunteer(app):
    def make(name="老王", mobile="13800000009", number=None):
        with app.app_context():
            begin_write()
            v = volunteers.register("test", name, mobile, "258369", number=number)
            db.session.commit()
            return v.id

    return make


# --- the page ---------------------------------------------------------------------------------

def test_import_page_whole_and_partial(manager_client):
    whole = manager_client.get("/manage/volunteers/import").get_data(as_text=True)
    assert "<html" in whole and 'enctype="multipart/form-data"' in whole and "姓名" in whole
    part = manager_client.get("/manage/volunteers/import", headers=HX).get_data(as_text=True)
    assert "<html" not in part and "上传并检查" in part


def test_template_download(manager_client):
    resp = manager_client.get("/manage/volunteers/import/template.csv")
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert resp.data.decode("utf-8-sig").startswith("姓名,手机号,密码,服务队,编号")


# --- good files -------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"], ids=["utf8", "bom", "gb18030"])
def test_good_csv_in_every_encoding(app, manager_client, encoding):
    resp = upload(manager_client, GOOD.encode(encoding))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert "已导入 2 位志愿者" in html and "<html" in html
    got = people(app)
    assert got["13800000001"][:3] == ("张三", "active", "import")
    assert got["13800000002"] == ("李四", "active", "import", "LS-01", ["巾帼志愿服务队", "青年志愿服务队"])
    assert pin_ok(app, "13800000001", "258369") and pin_ok(app, "13800000002", "369258")
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(AuditLog.action == "register")) == 2


def test_result_as_partial(manager_client):
    resp = upload(manager_client, GOOD, headers=HX)
    assert resp.status_code == 200 and "<html" not in resp.get_data(as_text=True)


def test_good_xlsx(app, manager_client):
    data = xlsx([
        ["2026 年志愿者名单"],  # a title line above the header, as Chinese sheets often have
        [],
        ["姓名", "手机号码", "密码（6位数字）", "所属服务队", "编号"],
        ["张三", 13800000001, "025836", "青年志愿服务队", None],
        [None, None, None, None, None],
        ["李四", "138 0000 0002", 369258, None, "ls-02"],
    ])
    resp = upload(manager_client, data, "名单.xlsx")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    got = people(app)
    assert got["13800000001"][0] == "张三" and got["13800000002"][3] == "LS-02"
    assert pin_ok(app, "13800000001", "025836") and pin_ok(app, "13800000002", "369258")


def test_english_headers_and_tabs(app, manager_client):
    resp = upload(manager_client, "Name\tMobile\tPIN\tTeams\nZhang San\t+86 138-0000-0001\t258369\t\n")
    assert resp.status_code == 200
    assert people(app)["13800000001"][0] == "Zhang San"


def test_missing_pins_are_generated_and_shown_once(app, manager_client):
    resp = upload(manager_client, "姓名,手机号\n张三,13800000001\n李四,13800000002\n")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "只显示这一次" in html
    pins = re.findall(r'<span class="import-pin">(\d{6})</span>', html)
    assert len(pins) == 2
    assert pin_ok(app, "13800000001", pins[0]) and pin_ok(app, "13800000002", pins[1])
    assert resp.headers["Cache-Control"] == "no-store"


def test_a_blank_pin_cell_gets_a_pin_too(app, manager_client):
    html = upload(manager_client, "姓名,手机号,密码\n张三,13800000001,\n李四,13800000002,369258\n").get_data(as_text=True)
    assert len(re.findall(r'class="import-pin"', html)) == 1 and pin_ok(app, "13800000002", "369258")


# --- files with problems: nothing is imported, every bad row is named ---------------------------

BROKEN = (
    "姓名,手机号,密码,服务队\n"
    "张三,13800000001,258369,\n"          # 2: fine
    ",13800000002,258369,\n"               # 3: no name
    "李四,1380000000,258369,\n"            # 4: mobile too short
    "王五,13800000003,12345,\n"            # 5: PIN too short
    "赵六,13800000001,258369,\n"           # 6: same mobile as row 2
    "\n"                                   # 7: blank, skipped
    "孙七,13800000004,111111,\n"           # 8: PIN too easy
    "周八,13800000005,258369,\n"           # 9: fine
    "名\u202e字,13800000006,258369,\n"     # 10: RTL override
    "吴\x07九,13800000007,258369,\n"       # 11: control character
    + "长" * 10000 + ",13800000008,258369,\n"  # 12: 10,000-character name
    "郑十,13800000010,258369,队\u202e\n"   # 13: bad team name
    "老王,13800000009,258369,\n"           # 14: already registered
)
BAD_LINES = {3: "姓名", 4: "11 位", 5: "6 位数字", 6: "和第 2 行重复", 8: "太容易猜", 10: "特殊字符",
             11: "特殊字符", 12: "1 到 50 个字", 13: "服务队名称", 14: "已经登记过了"}


def test_broken_rows_import_nothing_and_are_each_reported(app, manager_client, make_volunteer):
    make_volunteer()
    resp = upload(manager_client, BROKEN)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert count(app) == 1  # only 老王, from before
    assert "还没有导入任何一行" in html
    rows = dict(re.findall(r'<td class="import-line">第 (\d+) 行</td>(.*?)</tr>', html, re.S))
    assert set(map(int, rows)) == set(BAD_LINES)
    for line, why in BAD_LINES.items():
        assert why in rows[str(line)], (line, rows[str(line)])
    assert "只导入没有问题的 2 行" in html
    assert "长" * 21 not in html  # the long name is cut short in the report
    assert "\u202e" not in html and "\x07" not in html and "名\ufffd字" in html


def test_only_the_good_rows(app, manager_client, make_volunteer):
    make_volunteer()
    html = upload(manager_client, BROKEN).get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    stash = Path(app.instance_path) / "imports"
    assert len(list(stash.iterdir())) == 1
    resp = manager_client.post("/manage/volunteers/import/good",
                               data={"csrf_token": manager_client.csrf, "token": token, "expected": "2"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert "已导入 2 位志愿者" in html and "第 3 行" in html  # the skipped rows are named
    assert set(people(app)) == {"13800000009", "13800000001", "13800000005"}
    assert list(stash.iterdir()) == []
    again = manager_client.post("/manage/volunteers/import/good",
                                data={"csrf_token": manager_client.csrf, "token": token, "expected": "2"})
    assert again.status_code == 409 and "重新选择文件" in again.get_data(as_text=True)
    assert count(app) == 3


def test_only_the_good_rows_when_things_changed_meanwhile(app, manager_client, make_volunteer):
    html = upload(manager_client, BROKEN).get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    assert "只导入没有问题的 3 行" in html
    make_volunteer("别人", "13800000005")  # someone registers row 9's mobile in between
    resp = manager_client.post("/manage/volunteers/import/good",
                               data={"csrf_token": manager_client.csrf, "token": token, "expected": "3"})
    assert resp.status_code == 409 and "和刚才不一样" in resp.get_data(as_text=True)
    assert count(app) == 1


@pytest.mark.parametrize("token", ["", "x" * 30, "../../kiosk.sqlite3", "a" * 100])
def test_only_the_good_rows_needs_this_sessions_file(app, manager_client, token):
    resp = manager_client.post("/manage/volunteers/import/good",
                               data={"csrf_token": manager_client.csrf, "token": token, "expected": "2"})
    assert resp.status_code == 409 and count(app) == 0


def test_another_session_cannot_use_the_token(app, manager_client, make_manager):
    html = upload(manager_client, BROKEN).get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    other = app.test_client()
    from tests.conftest import csrf_token
    make_manager("lili", "another long password")
    t = csrf_token(other, "/manage/login")
    other.post("/manage/login", data={"username": "lili", "password": "another long password", "csrf_token": t})
    t = csrf_token(other, "/manage/")
    resp = other.post("/manage/volunteers/import/good", data={"csrf_token": t, "token": token, "expected": "3"})
    assert resp.status_code == 409 and count(app) == 0


def test_a_long_report_is_cut_short(manager_client):
    body = "姓名,手机号\n" + "".join(f"张{i},1\n" for i in range(400))
    html = upload(manager_client, body).get_data(as_text=True)
    assert html.count('class="import-line"') == 300 and "还有 100 行有问题" in html


def test_duplicate_mobile_inside_the_file(app, manager_client):
    resp = upload(manager_client, "姓名,手机号,密码\n张三,13800000001,258369\n李四,138-0000-0001,369258\n")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "第 3 行" in html and "和第 2 行重复" in html
    assert count(app) == 0


def test_duplicate_number_inside_the_file_and_clash_with_automatic_numbers(app, manager_client):
    with app.app_context():
        code = volunteers.get_station().code
    resp = upload(manager_client, f"姓名,手机号,密码,编号\n张三,13800000001,258369,A-1\n李四,13800000002,258369,a-1\n"
                                  f"王五,13800000003,258369,{code}-0007\n")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "编号和第 2 行重复" in html and "以后会自动分给别人" in html


def test_excel_dropped_the_leading_zero(app, manager_client):
    resp = upload(manager_client, xlsx([["姓名", "手机号", "密码"], ["张三", 13800000001, 25836]]), "a.xlsx")
    assert resp.status_code == 422 and "文本" in resp.get_data(as_text=True)


def test_a_file_that_fails_while_importing_leaves_nothing(app, manager_client, monkeypatch):
    real = volunteers.register

    def flaky(actor, name, *a, **kw):
        if name == "李四":
            raise InvalidInput("模拟的问题", field="name")
        return real(actor, name, *a, **kw)

    monkeypatch.setattr(volunteers, "register", flaky)
    resp = upload(manager_client, GOOD)
    assert resp.status_code == 409 and "一行也没有导入" in resp.get_data(as_text=True)
    assert count(app) == 0


# --- files that can't be read: 422 with a sentence, never a 500 ---------------------------------

@pytest.mark.parametrize("content, filename, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe" * 50, "名单.xlsx", "打不开"),
    (b"PK\x03\x04 not really a zip" * 10, "名单.xlsx", "打不开"),
    (b"\x00\x01\x02\xff\xfe\xfd" * 100, "名单.csv", "读不出来"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "名单.xls", "旧版 Excel"),
    (GOOD.encode(), "名单.txt", "只能导入 .csv 或 .xlsx"),
    (GOOD.encode(), "名单.pdf", "只能导入 .csv 或 .xlsx"),
    (GOOD.encode(), "名单", "只能导入 .csv 或 .xlsx"),
    (b"", "empty.csv", "空的"),
    ("编号,服务队\nA,B\n".encode(), "a.csv", "“姓名”和“手机号”"),
    ("姓名,手机号\n".encode(), "a.csv", "只有标题行"),
    ("姓名,手机号,姓名\n张三,13800000001,张三\n".encode(), "a.csv", "出现了两次"),
    ('姓名,手机号\n"张三,13800000001\n'.encode() + b"x" * 200000, "a.csv", "格式不对"),
])
def test_unreadable_files_are_422(app, manager_client, content, filename, message):
    resp = upload(manager_client, content, filename)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422, html
    assert message in html and 'id="file-err"' in html
    assert count(app) == 0


def test_no_file_is_422(manager_client):
    resp = manager_client.post("/manage/volunteers/import", data={"csrf_token": manager_client.csrf})
    assert resp.status_code == 422 and "请先选择" in resp.get_data(as_text=True)


def test_too_many_rows(app, manager_client):
    body = "姓名,手机号\n" + "".join(f"张三,138{i:08d}\n" for i in range(5001))
    resp = upload(manager_client, body)
    assert resp.status_code == 422 and "最多导入 5000 行" in resp.get_data(as_text=True)


def test_too_big_is_413(manager_client):
    resp = upload(manager_client, b"a" * (1024 * 1024 + 10))
    assert resp.status_code == 413


def test_a_zip_bomb_named_xlsx_is_refused(manager_client):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (30 * 1024 * 1024))
    assert len(out.getvalue()) < 1024 * 1024
    resp = upload(manager_client, out.getvalue(), "a.xlsx")
    assert resp.status_code == 422 and "太大" in resp.get_data(as_text=True)


def test_a_sparse_sheet_is_bounded(app, manager_client):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["姓名", "手机号"])
    ws.cell(row=900000, column=1, value="张三")
    out = io.BytesIO()
    wb.save(out)
    resp = upload(manager_client, out.getvalue(), "a.xlsx")
    assert resp.status_code == 422 and "最多导入" in resp.get_data(as_text=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(str.encode)),
       filename=st.sampled_from(["a.csv", "a.xlsx", "a.CSV", "a.xls", "a"]))
def test_any_bytes_never_500(manager_client, content, filename):
    resp = upload(manager_client, content, filename)
    assert resp.status_code in (200, 422), resp.status_code


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.lists(st.one_of(st.none(), st.integers(), st.floats(allow_nan=False),
                                         st.text(max_size=30), st.booleans()), max_size=6), max_size=6))
def test_any_xlsx_cells_never_500(manager_client, cells):
    data = xlsx([["姓名", "手机号", "密码", "服务队", "编号", "备注"]] + [
        [c if not isinstance(c, str) else "".join(ch for ch in c if ch.isprintable()) for c in row] for row in cells])
    resp = upload(manager_client, data, "a.xlsx")
    assert resp.status_code in (200, 422), resp.status_code


# --- the functions, without HTTP --------------------------------------------------------------

def test_parse_and_check_without_http(ctx):
    rows = importer.parse_file("a.csv", "\ufeffname,mobile,pin\n张三,１３８０００００００１,２５８３６９\n".encode())
    assert [(r.line, r.name, r.mobile, r.pin) for r in rows] == [(2, "张三", "13800000001", "258369")]
    report = importer.check_rows(rows)
    assert report.good == rows and not report.bad
    begin_write()
    [v] = importer.import_rows("test", report.good)
    db.session.commit()
    assert v.registered_via == "import" and v.status == "active"


def test_split_teams():
    assert importer.split_teams(" 青年队、 巾帼队,助老队；，") == ["青年队", "巾帼队", "助老队"]
    assert importer.split_teams(None) == []


def test_random_pins_pass_the_rules(ctx):
    for _ in range(200):
        assert volunteers.check_pin(importer.random_pin())
