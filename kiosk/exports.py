"""The love-bank ledger as a manager filters it: on screen, as CSV for Excel, and as XLSX.

One filter, one query: the page's totals are SQL sums over the filtered transactions, and the
files carry a totals row added up from the very rows they contain, so a test can prove they agree.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, or_, select

from .audit import actor_label
from .db import db
from .ledger import KINDS
from .models import LedgerTxn, Volunteer
from .text import clean

PAGE_SIZE = 100
KIND_LABELS = {"earn": _l("服务积分"), "redeem": _l("兑换"), "adjust": _l("调整"), "reverse": _l("冲正"),
               "expire": _l("过期")}
# Excel treats a cell starting with these as a formula (CSV injection): such text gets a leading '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def kind_label(kind: str) -> str:
    return str(KIND_LABELS.get(kind, kind))


# --- the filter and its query ----------------------------------------------------------------

@dataclass
class LedgerFilter:
    q: str = ""           # a volunteer's name (or part of it), number or mobile
    kind: str = ""        # one of ledger.KINDS, or "" for all
    date_from: date | None = None
    date_to: date | None = None  # inclusive

    def conditions(self) -> list:
        where = []
        q = clean(self.q)
        if q:
            like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(or_(Volunteer.number == q.upper(), Volunteer.mobile == q,
                             Volunteer.name.like(like, escape="\\"), Volunteer.number.like(like.upper(), escape="\\")))
        if self.kind in KINDS:
            where.append(LedgerTxn.kind == self.kind)
        if self.date_from:
            where.append(LedgerTxn.at >= datetime.combine(self.date_from, time.min))
        if self.date_to:
            where.append(LedgerTxn.at < datetime.combine(self.date_to + timedelta(days=1), time.min))
        return where


def _filtered(f: LedgerFilter, *columns):
    return select(*columns).join(Volunteer, LedgerTxn.volunteer_id == Volunteer.id).where(*f.conditions())


@dataclass
class Totals:
    count: int = 0
    plus: int = 0    # points put into volunteers' accounts
    minus: int = 0   # points taken out (a positive number)

    @property
    def net(self) -> int:
        return self.plus - self.minus

    def add(self, points: int) -> None:
        self.count += 1
        if points > 0:
            self.plus += points
        else:
            self.minus -= points


def ledger_totals(f: LedgerFilter) -> Totals:
    count, plus, minus = db.session.execute(_filtered(
        f, func.count(LedgerTxn.id),
        func.coalesce(func.sum(case((LedgerTxn.points > 0, LedgerTxn.points), else_=0)), 0),
        func.coalesce(func.sum(case((LedgerTxn.points < 0, -LedgerTxn.points), else_=0)), 0),
    )).one()
    return Totals(count, plus, minus)


def _ordered(f: LedgerFilter):
    return _filtered(f, LedgerTxn, Volunteer).order_by(LedgerTxn.at.desc(), LedgerTxn.id.desc())


def ledger_page(f: LedgerFilter, page: int = 1, size: int = PAGE_SIZE) -> list[tuple[LedgerTxn, Volunteer]]:
    """One page of the filtered transactions, newest first."""
    return [tuple(r) for r in db.session.execute(_ordered(f).limit(size).offset((max(page, 1) - 1) * size))]


def ledger_lines(f: LedgerFilter) -> Iterator[tuple[LedgerTxn, Volunteer]]:
    """All filtered transactions, newest first, read in batches (for the files)."""
    yield from db.session.execute(_ordered(f).execution_options(yield_per=1000))


# --- the table the files are made of ---------------------------------------------------------

WIDTHS = (18, 14, 12, 10, 10, 36, 16, 12, 38)


def ledger_header() -> list[str]:
    return [_("时间"), _("志愿者编号"), _("姓名"), _("类型"), _("积分"), _("摘要"), _("操作人"), _("站点"), _("流水号")]


def ledger_table(lines: Iterable[tuple[LedgerTxn, Volunteer]]) -> Iterator[list]:
    """A header, one row per transaction, then a totals row added up from those rows."""
    yield ledger_header()
    totals = Totals()
    for txn, v in lines:
        totals.add(txn.points)
        yield [txn.at, v.number, v.name, kind_label(txn.kind), txn.points, txn.reason, actor_label(txn.actor),
               txn.station_code, txn.id]
    yield [_("合计"), "", "", _("%(n)d 笔", n=totals.count), totals.net,
           _("存入 %(p)d 分，支出 %(m)d 分", p=totals.plus, m=totals.minus), "", "", ""]


def _inert(value):
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _text(value) -> str | int:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int):
        return value
    return _inert(str(value))


class _Line:
    """A file-like object that hands back what csv.writer wrote."""

    def __init__(self):
        self.buffer = io.StringIO()

    def write(self, text: str) -> None:
        self.buffer.write(text)

    def take(self) -> bytes:
        data = self.buffer.getvalue().encode("utf-8")
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


def to_csv(rows: Iterable[list], batch: int = 500) -> Iterator[bytes]:
    """CSV in UTF-8 with a byte-order mark (so that Excel reads the Chinese right), streamed."""
    out = _Line()
    writer = csv.writer(out, lineterminator="\r\n")
    yield "\ufeff".encode()
    for i, row in enumerate(rows, 1):
        writer.writerow([_text(v) for v in row])
        if i % batch == 0:
            yield out.take()
    yield out.take()


def to_xlsx(rows: Iterable[list], title: str, widths: Iterable[int] = WIDTHS) -> bytes:
    """An .xlsx workbook: the first row bold and frozen, the last (totals) bold, columns sized."""
    from openpyxl import Workbook  # only the export needs it (a few MB)
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title[:31])
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    bold = Font(bold=True)

    def cells(row, font=None):
        out = []
        for value in row:
            cell = WriteOnlyCell(ws, value)
            if isinstance(value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            elif isinstance(value, str):
                cell.data_type = "s"  # text stays text, even when it starts with "="
            if font is not None:
                cell.font = font
            out.append(cell)
        return out

    it = iter(rows)
    ws.append(cells(next(it), bold))
    previous = None
    for row in it:
        if previous is not None:
            ws.append(cells(previous))
        previous = row
    if previous is not None:
        ws.append(cells(previous, bold))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
