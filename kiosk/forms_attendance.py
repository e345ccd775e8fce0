"""The manager's attendance forms: times, reasons and who, checked at the edge."""

from datetime import datetime

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, StopValidation, ValidationError

from .forms import ChineseDateField, ChineseTimeField, plain_text, sane_date

REASON_MAX = 200
MAX_SELECTED = 2000


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _picked(message):
    """Required for a date or time: says "please choose" when empty, keeps "wrong format" when garbled."""
    def check(form, field):
        if field.data is None:
            raise StopValidation(None if field.errors else message)

    return check


def _reason_field(label):
    return StringField(label, filters=[_strip], validators=[
        DataRequired(_l("请写一下原因，方便以后查对。")),
        Length(max=REASON_MAX, message=_l("原因最多 200 个字。")),
        plain_text(),
    ])


class TimesForm(FlaskForm):
    """Signed in and out, each as a date and a time, and why they are entered by hand."""

    in_day = ChineseDateField(_l("签到日期"), validators=[_picked(_l("请选择签到日期。")), sane_date])
    in_time = ChineseTimeField(_l("签到时间"), validators=[_picked(_l("请选择签到时间。"))])
    out_day = ChineseDateField(_l("签退日期"), validators=[_picked(_l("请选择签退日期。")), sane_date])
    out_time = ChineseTimeField(_l("签退时间"), validators=[_picked(_l("请选择签退时间。"))])
    reason = _reason_field(_l("原因（必填，会记入操作记录）"))

    def validate_out_time(self, field):
        if None not in (self.in_day.data, self.in_time.data, self.out_day.data, field.data):
            if self.checked_out_at() < self.checked_in_at():
                raise ValidationError(_l("签退时间不能早于签到时间。"))

    def checked_in_at(self) -> datetime:
        return datetime.combine(self.in_day.data, self.in_time.data)

    def checked_out_at(self) -> datetime:
        return datetime.combine(self.out_day.data, self.out_time.data)

    def fill(self, checked_in_at: datetime, checked_out_at: datetime) -> None:
        self.in_day.data, self.in_time.data = checked_in_at.date(), checked_in_at.time().replace(second=0)
        self.out_day.data, self.out_time.data = checked_out_at.date(), checked_out_at.time().replace(second=0)


class PaperForm(TimesForm):
    """Someone from a paper sign-in sheet."""

    volunteer = StringField(_l("志愿者编号或手机号"), filters=[_strip], validators=[
        DataRequired(_l("请填写志愿者编号或手机号。")),
        Length(max=40, message=_l("编号或手机号最多 40 个字符。")),
        plain_text(),
    ])


class CorrectForm(TimesForm):
    version = HiddenField()


class NoShowForm(FlaskForm):
    reason = _reason_field(_l("原因（必填，会记入操作记录）"))
    version = HiddenField()


class ConfirmForm(FlaskForm):
    """Confirm the ticked unconfirmed check-ins, or all of them."""

    checkin = SelectMultipleField(choices=[], validate_choice=False)
    all = HiddenField()

    def validate_checkin(self, field):
        if len(field.data) > MAX_SELECTED or any(len(x) > 36 for x in field.data):
            raise ValidationError(_l("选择的记录不对，请刷新页面后重新勾选。"))
        if not field.data and not self.all.data:
            raise ValidationError(_l("请先勾选要确认的记录，或点“全部确认”。"))
