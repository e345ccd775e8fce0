"""The manager's forms: parse and check at the edge, with messages a person understands."""

from datetime import date, datetime, time

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from .text import bad_characters

WEEKDAYS = [
    ("1", _l("星期一")), ("2", _l("星期二")), ("3", _l("星期三")), ("4", _l("星期四")),
    ("5", _l("星期五")), ("6", _l("星期六")), ("7", _l("星期日")),
]


def plain_text(multiline: bool = False):
    def check(form, field):
        if field.data and bad_characters(field.data, multiline=multiline):
            raise ValidationError(_l("这一项里有不能显示的特殊字符，请删掉后再保存。"))

    return check


def sane_date(form, field):
    if field.data and not (date(2000, 1, 1) <= field.data < date(2100, 1, 1)):
        raise ValidationError(_l("请选择 2000 年到 2099 年之间的日期。"))


class ChineseDateField(DateField):
    def process_formdata(self, valuelist):
        if not valuelist or not "".join(valuelist).strip():
            self.data = None  # empty: InputRequired or the form's own rule decides
            return
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("日期格式不对，请按 年-月-日 选择。")) from exc


class ChineseTimeField(TimeField):
    def process_formdata(self, valuelist):
        if not valuelist or not "".join(valuelist).strip():
            self.data = None
            return
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("时间格式不对，请按 时:分 选择。")) from exc


class ChineseIntegerField(IntegerField):
    def process_formdata(self, valuelist):
        if valuelist and len(valuelist[0].strip()) > 9:
            # Huge numbers are never meant here, and WTForms' NumberRange overflows on them.
            self.data = None
            raise ValueError(_l("这个数字太大了，请检查一下。"))
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("请填写一个整数。")) from exc


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[InputRequired(_l("请填写用户名。")), Length(max=50)])
    password = PasswordField(_l("密码"), validators=[InputRequired(_l("请填写密码。")), Length(max=200)])


class EventForm(FlaskForm):
    title = StringField(
        _l("活动名称"),
        validators=[InputRequired(_l("请填写活动名称。")), Length(max=100, message=_l("活动名称最多 100 个字。")), plain_text()],
    )
    category_id = SelectField(_l("类别"), choices=[], default="", validate_choice=True)
    day = ChineseDateField(_l("日期"), validators=[InputRequired(_l("请选择日期。")), sane_date])
    start = ChineseTimeField(_l("开始时间"), validators=[InputRequired(_l("请选择开始时间。"))])
    end = ChineseTimeField(_l("结束时间"), validators=[InputRequired(_l("请选择结束时间。"))])
    place = StringField(_l("地点"), validators=[Length(max=100, message=_l("地点最多 100 个字。")), plain_text()])
    organiser = StringField(
        _l("组织者或志愿服务队"), validators=[Length(max=100, message=_l("最多 100 个字。")), plain_text()]
    )
    description = TextAreaField(
        _l("活动介绍"), validators=[Length(max=4000, message=_l("介绍最多 4000 个字。")), plain_text(multiline=True)]
    )
    capacity = ChineseIntegerField(
        _l("人数上限（不限请留空）"),
        validators=[Optional(), NumberRange(1, 100000, message=_l("人数上限要在 1 到 100000 之间。"))],
    )
    published = BooleanField(_l("在触摸屏上公布"), default=True)
    repeat = BooleanField(_l("每周重复"))
    weekdays = MultiCheckboxField(_l("每周的哪几天"), choices=WEEKDAYS, validate_choice=False)
    until = ChineseDateField(_l("重复到哪天为止"), validators=[sane_date])
    version = HiddenField()

    def validate_category_id(self, field):
        if field.data == "":
            field.data = None

    def validate_end(self, field):
        if self.start.data and field.data and field.data <= self.start.data:
            raise ValidationError(_l("结束时间要晚于开始时间。"))

    def validate_weekdays(self, field):
        if self.repeat.data:
            if not field.data:
                raise ValidationError(_l("请至少选择一周中的一天。"))
            if not set(field.data) <= {c for c, _ in WEEKDAYS}:
                raise ValidationError(_l("请从列表里选择星期几。"))

    def validate_until(self, field):
        if self.repeat.data and not field.data:
            raise ValidationError(_l("请选择重复到哪天为止。"))
        if self.repeat.data and field.data and self.day.data and field.data < self.day.data:
            raise ValidationError(_l("截止日期要在第一次活动之后。"))

    def starts_at(self) -> datetime:
        return datetime.combine(self.day.data, self.start.data or time.min)

    def ends_at(self) -> datetime:
        return datetime.combine(self.day.data, self.end.data or time.min)


class CancelForm(FlaskForm):
    reason = StringField(_l("取消原因"), validators=[Length(max=200, message=_l("最多 200 个字。")), plain_text()])


class EmptyForm(FlaskForm):
    """A form with only its CSRF token, for buttons that change something."""


class StationForm(FlaskForm):
    name = StringField(_l("站点名称"), validators=[InputRequired(_l("请填写站点名称。")), Length(max=100), plain_text()])
    code = StringField(_l("站点编码"), validators=[InputRequired(_l("请填写站点编码。")), Length(max=32)])
    idle_timeout_s = ChineseIntegerField(
        _l("无人操作多少秒后回到首页"),
        validators=[InputRequired(_l("请填写秒数。")), NumberRange(15, 3600, message=_l("要在 15 到 3600 秒之间。"))],
    )
    credit_cap_minutes = ChineseIntegerField(
        _l("每次签到最多计入多少分钟"),
        validators=[InputRequired(_l("请填写分钟数。")),
                    NumberRange(30, 1440, message=_l("要在 30 到 1440 分钟之间。"))],
    )
    star_thresholds = StringField(
        _l("星级所需小时数（1 星到 5 星）"), validators=[InputRequired(_l("请填写星级标准。")), Length(max=100)])


class CategoryForm(FlaskForm):
    name = StringField(
        _l("类别名称"),
        validators=[InputRequired(_l("请填写类别名称。")), Length(max=30, message=_l("最多 30 个字。")), plain_text()],
    )
    active = BooleanField(_l("在用"), default=True)
