"""Volunteers from a spreadsheet: read a CSV or XLSX, check every row, import the good ones.

Plain functions, no request: parse_file() reads the file into rows (or raises InvalidInput for the
file as a whole), check_rows() notes what is wrong with each row without writing anything, and
import_rows() registers rows through volunteers.register, so the rules are the same as on the
registration page. The caller commits once: all rows or none.
"""

import csv
import io
import os
import re
import secrets
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from . import volunteers
from .db import db
from .errors import InvalidInput
from .events import get_station
from .models import Volunteer
from .text import bad_characters, clean

MAX_ROWS = 5000
MAX_CELL = 500  # characters; no field is longer than 50, this only bounds what we hold and show
MAX_XLSX_UNPACKED = 20 * 1024 * 1024  # an .xlsx is a zip: refuse one that unpacks into a bomb
MAX_COLUMNS = 50
HEADER_SEARCH_ROWS = 10  # a title line or two above the header is common in Chinese sheets
MAX_LINES = 2 * MAX_ROWS + HEADER_SEARCH_ROWS  # blank lines included: bounds the work on a sparse sheet
STASH_MAX_AGE_S = 24 * 3600
TEAM_SEPARATORS = re.compile(r"[,，、;；/\n]+")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,40}$")

# Column titles as people write them, after _header_key(); English for sheets made elsewhere.
COLUMNS = {
    "name": ("姓名", "名字", "志愿者姓名", "name", "fullname"),
    "mobile": ("手机号", "手机", "手机号码", "联系电话", "电话", "电话号码", "mobile", "phone", "mobilephone", "tel"),
    "pin": ("密码", "登录密码", "pin", "pincode", "password"),
    "teams": ("服务队", "所属服务队", "志愿服务队", "队伍", "所属队伍", "teams", "team"),
    "number": ("编号", "志愿者编号", "number", "no", "volunteerno"),
}
_COLUMN_OF = {title: key for key, titles in COLUMNS.items() for title in titles}


@dataclass
class Row:
    """One volunteer as read from the file; `line` is the row number the spreadsheet shows."""

    line: int
    name: str = ""
    mobile: str = ""
    pin: str = ""
    teams: list[str] = field(default_factory=list)
    number: str = ""
    pin_generated: bool = False
    pin_was_number: bool = False  # Excel turned "012345" into 12345
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        """The name as the report may show it: short, with control and bidi characters made visible."""
        shown = "".join("\ufffd" if bad_characters(ch) else ch for ch in self.name[:20])
        return shown + ("…" if len(self.name) > 20 else "")


@dataclass
class Report:
    rows: list[Row]

    @property
    def good(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def bad(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def split_teams(text: str | None) -> list[str]:
    """Team names typed as one text: separated by commas, 、 or semicolons."""
    return [t for t in (clean(p) for p in TEAM_SEPARATORS.split(text or "")) if t]


def random_pin() -> str:
    """A 6-digit PIN that the registration rules accept."""
    while True:
        pin = f"{secrets.randbelow(10**6):06d}"
        try:
            return volunteers.check_pin(pin)
        except InvalidInput:
            continue


# --- reading the file -------------------------------------------------------------------------

def _file_error(message) -> InvalidInput:
    return InvalidInput(message, field="file")


def parse_file(filename: str, data: bytes) -> list[Row]:
    """The volunteers in an uploaded .csv or .xlsx; InvalidInput (field "file") if it can't be read."""
    ext = os.path.splitext((filename or "").strip().lower())[1]
    if ext == ".xls" or data[:4] == b"\xd0\xcf\x11\xe0":
        raise _file_error(_l("这是旧版 Excel（.xls）文件，或者设了打开密码。请在 Excel 里“另存为” .xlsx 或 CSV 文件，再导入。"))
    if ext not in (".csv", ".xlsx"):
        raise _file_error(_l("只能导入 .csv 或 .xlsx 文件。"))
    if not data:
        raise _file_error(_l("文件是空的。"))
    if data[:4] == b"PK\x03\x04":  # a zip: an Excel file, whatever it is called
        table = _read_xlsx(data)
    elif ext == ".xlsx":
        raise _file_error(_l("这个 Excel 文件打不开，可能已经损坏。请在 Excel 里重新保存后再试。"))
    else:
        table = _read_csv(data)
    return _rows(table)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ["utf-16"]  # Excel's "Unicode text"
    else:
        encodings = ["utf-8", "gb18030"]  # GB18030 covers GBK and GB2312, Chinese Excel's default
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text
    raise _file_error(_l("这个文件读不出来：它不是文字表格，或者文字编码认不出来。请在 Excel 里“另存为” CSV UTF-8 或 .xlsx 文件。"))


def _read_csv(data: bytes):
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first.count) if any(d in first for d in ",\t;") else ","
    try:
        yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    except csv.Error:
        raise _file_error(_l("这个 CSV 文件格式不对（引号没有配对？）。请在 Excel 里重新保存后再试。")) from None


def _read_xlsx(data: bytes):
    import openpyxl  # only the import page needs it

    bad = _file_error(_l("这个 Excel 文件打不开，可能已经损坏。请在 Excel 里重新保存后再试。"))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise bad from None
    if len(members) > 2000 or sum(m.file_size for m in members) > MAX_XLSX_UNPACKED:
        raise _file_error(_l("这个 Excel 文件太大了。请只保留志愿者名单那一页，或者另存为 CSV 文件。"))
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises whatever its parsers raise on a broken file
        raise bad from None
    try:
        ws = wb.worksheets[0] if wb.worksheets else None
        if ws is None or not hasattr(ws, "iter_rows"):
            raise bad
        # Explicit bounds: read-only mode otherwise trusts the size the file claims for itself.
        for values in ws.iter_rows(max_col=MAX_COLUMNS, max_row=MAX_LINES + 1, values_only=True):
            yield [_cell_text(v) for v in values]
    except InvalidInput:
        raise
    except Exception:
        raise bad from None
    finally:
        wb.close()


def _cell_text(value):
    """An Excel cell as text; a whole number stays a number so that a lost leading 0 can be told."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e15 else str(value)
    return str(value)


def _header_key(title) -> str | None:
    text = unicodedata.normalize("NFKC", str(title or "")).lower()
    text = re.sub(r"\(.*?\)|\[.*?\]|【.*?】|[\s*_\-:：]", "", text)
    return _COLUMN_OF.get(text)


def _rows(table) -> list[Row]:
    header: dict[str, int] | None = None
    rows: list[Row] = []
    for line, cells in enumerate(table, start=1):
        if line > MAX_LINES:
            raise _file_error(_l("一次最多导入 %(n)d 行。请把名单分成几个文件，分几次导入。", n=MAX_ROWS))
        cells = cells[:MAX_COLUMNS]
        if not any(str(c).strip() for c in cells):
            continue
        if header is None:
            header = _find_header(cells, line)
            continue
        if len(rows) >= MAX_ROWS:
            raise _file_error(_l("一次最多导入 %(n)d 行。请把名单分成几个文件，分几次导入。", n=MAX_ROWS))
        rows.append(_row(line, cells, header))
    if header is None:
        raise _file_error(_l("第一行要写列名，至少要有“姓名”和“手机号”两列。"))
    if not rows:
        raise _file_error(_l("表格里只有标题行，没有志愿者。"))
    return rows


def _find_header(cells, line: int) -> dict[str, int] | None:
    keys = [_header_key(c) for c in cells]
    if "name" in keys and "mobile" in keys:
        header: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is None:
                continue
            if key in header:
                raise _file_error(_l("第 %(line)d 行里“%(title)s”这一列出现了两次，请删掉一列。",
                                     line=line, title=str(cells[i])[:20]))
            header[key] = i
        return header
    if line >= HEADER_SEARCH_ROWS:
        raise _file_error(_l("第一行要写列名，至少要有“姓名”和“手机号”两列。"))
    return None  # a title line above the header: keep looking


def _row(line: int, cells, header: dict[str, int]) -> Row:
    def cell(key):
        i = header.get(key)
        value = cells[i] if i is not None and i < len(cells) else ""
        return value if isinstance(value, int) else str(value)[:MAX_CELL]

    pin = cell("pin")
    row = Row(
        line=line,
        name=clean(str(cell("name"))),
        mobile=_narrow(cell("mobile")),
        pin=_narrow(pin),
        teams=split_teams(str(cell("teams"))),
        number=_narrow(cell("number")).upper(),
        pin_was_number=isinstance(pin, int),
    )
    if not str(pin).strip():  # no 密码 column, or left blank: make one to hand out
        row.pin, row.pin_generated = random_pin(), True
    return row


def _narrow(value) -> str:
    """Full-width digits and letters (from a Chinese input method) as ASCII."""
    return unicodedata.normalize("NFKC", clean(str(value)))


# --- checking ---------------------------------------------------------------------------------

def check_rows(rows: list[Row]) -> Report:
    """Note on each row what would stop it from being registered; writes nothing."""
    seen_mobile: dict[str, int] = {}
    seen_number: dict[str, int] = {}
    station = get_station()
    for row in rows:
        row.problems = []
        _check(row, volunteers.check_name, row.name)
        mobile = volunteers.normalise_mobile(row.mobile)
        if mobile and mobile in seen_mobile:
            row.problems.append(_("手机号和第 %(line)d 行重复了。", line=seen_mobile[mobile]))
        elif not mobile.isascii():  # the domain's \d takes Arabic-Indic digits too
            row.problems.append(_("手机号要是 11 位数字，以 1 开头。"))
        elif _check(row, volunteers.check_mobile, row.mobile):
            seen_mobile[mobile] = row.line
        if not row.pin.isascii():
            row.problems.append(_("密码要是 6 位数字。"))
        elif not _check(row, volunteers.check_pin, row.pin) and row.pin_was_number and len(row.pin) < 6:
            row.problems[-1] = _("密码要是 6 位数字。Excel 会去掉开头的 0：请把“密码”这一列设成“文本”格式再填。")
        for team in row.teams:
            if len(team) > 50 or bad_characters(team):
                row.problems.append(_("服务队名称最多 50 个字，不能有特殊字符。"))
                break
        if row.number:
            _check_number(row, seen_number, station)
    return Report(rows)


def _check(row: Row, check, value: str) -> bool:
    """Run one of the registration checks; False (and a note on the row) if it refuses.

    The checks are volunteers' own, so the rules cannot drift apart.
    """
    try:
        check(value)
    except InvalidInput as e:
        row.problems.append(str(e.message))
        return False
    return True


def _check_number(row: Row, seen: dict[str, int], station) -> None:
    n = row.number
    if not volunteers.NUMBER.fullmatch(n):
        row.problems.append(_("志愿者编号只能用字母、数字和短横线。"))
    elif n in seen:
        row.problems.append(_("编号和第 %(line)d 行重复了。", line=seen[n]))
    elif db.session.scalar(select(Volunteer.id).where(Volunteer.number == n)):
        row.problems.append(_("志愿者编号 %(n)s 已经有人用了。", n=n))
    elif _clashes_with_automatic(n, station):
        row.problems.append(_("编号 %(n)s 以后会自动分给别人，请换一个编号，或者留空让系统自动编号。", n=n))
    seen.setdefault(n, row.line)


def _clashes_with_automatic(number: str, station) -> bool:
    """True if automatic numbering (station code, running number) will hand out this number."""
    m = re.fullmatch(re.escape(station.code.upper()) + r"-(\d+)", number)
    return bool(m) and number == f"{station.code.upper()}-{int(m.group(1)):04d}" and int(m.group(1)) >= station.next_volunteer_seq


# --- importing --------------------------------------------------------------------------------

def hash_pins(rows: list[Row]) -> list[str]:
    """The rows' PIN hashes, computed before the write transaction (scrypt is slow on purpose:
    ~70 ms each; 5,000 rows under the write lock would stall the kiosk for minutes)."""
    return [volunteers.hash_pin(r.pin) for r in rows]


def import_rows(actor: str, rows: list[Row], pin_hashes: list[str] | None = None) -> list[Volunteer]:
    """Register these rows (active, via "import") in the caller's transaction; raises on the first bad one."""
    hashes = pin_hashes or [None] * len(rows)
    return [
        volunteers.register(actor, r.name, r.mobile, r.pin, teams=r.teams, via="import", number=r.number or None,
                            pin_hash=h)
        for r, h in zip(rows, hashes, strict=True)
    ]


# --- the uploaded file between the report and "import only the good rows" -----------------------

def stash(folder: str | Path, data: bytes) -> str:
    """Keep an uploaded file server-side under a random token; old ones are cleared on the way."""
    folder = Path(folder) / "imports"
    folder.mkdir(mode=0o700, exist_ok=True)
    cutoff = time.time() - STASH_MAX_AGE_S
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    token = secrets.token_urlsafe(24)
    ext = ".xlsx" if data[:4] == b"PK\x03\x04" else ".csv"
    fd = os.open(folder / (token + ext), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return token


def _stashed(folder: str | Path, token: str) -> Path | None:
    if not TOKEN.match(token or ""):
        return None
    for ext in (".csv", ".xlsx"):
        path = Path(folder) / "imports" / (token + ext)
        if path.is_file():
            return path
    return None


def unstash(folder: str | Path, token: str) -> tuple[str, bytes] | None:
    """(file name, content) of a stashed upload, or None if it is gone."""
    path = _stashed(folder, token)
    return (path.name, path.read_bytes()) if path else None


def discard(folder: str | Path, token: str) -> None:
    path = _stashed(folder, token)
    if path:
        path.unlink(missing_ok=True)


TEMPLATE_CSV = "\ufeff姓名,手机号,密码,服务队,编号\r\n"  # with a BOM, so Excel opens it as UTF-8
