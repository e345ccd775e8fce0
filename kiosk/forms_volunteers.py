"""The manager's volunteer forms: parse and check at the edge; the registration rules stay in volunteers."""

import unicodedata

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional, Regexp, ValidationError

from .forms import plain_text
from .importer import split_teams


def narrow(value):
    """Full-width digits and letters, as a Chinese input method types them, as ASCII."""
    return unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else value


def ascii_digits(form, field):
    # Python's \d also takes Arabic-Indic and other digits; a PIN or phone number must be 0-9.
    if field.data and any(ch.isdigit() and not ch.isascii() for ch in field.data):
        raise ValidationError(_l("请只用 0 到 9 的数字。"))


def _pin(label):
    return PasswordField(label, filters=[narrow], validators=[
        InputRequired(_l("请填写 6 位数字密码。")),
        Regexp(r"^[0-9]{6}$", message=_l("密码要是 6 位数字。")),
    ])


def _pin_again(label, first: str):
    return PasswordField(label, filters=[narrow], validators=[
        InputRequired(_l("请把密码再输一次。")),
        EqualTo(first, message=_l("两次输入的密码不一样，请重新输入。")),
    ])


class TeamsField(StringField):
    """Team names typed as one line, separated by commas or 、."""

    def names(self) -> list[str]:
        return split_teams(self.data)


class VolunteerEditForm(FlaskForm):
    name = StringField(_l("姓名"), validators=[
        InputRequired(_l("请填写姓名。")), Length(max=50, message=_l("姓名最多 50 个字。")), plain_text()])
    mobile = StringField(_l("手机号"), filters=[narrow], validators=[
        InputRequired(_l("请填写手机号。")), Length(max=20, message=_l("手机号要是 11 位数字，以 1 开头。")),
        plain_text(), ascii_digits])
    teams = TeamsField(_l("服务队（多个用“、”或逗号隔开，可不填）"), validators=[
        Length(max=500, message=_l("服务队写得太长了，最多 500 个字。")), plain_text()])


class VolunteerForm(VolunteerEditForm):
    pin = _pin(_l("密码（6 位数字，签到时用）"))
    pin2 = _pin_again(_l("再输一次密码"), "pin")
    number = StringField(_l("志愿者编号（不填就自动编号）"), filters=[narrow], validators=[
        Optional(), Length(max=40, message=_l("志愿者编号最多 40 个字符。")), plain_text()])


class StatusForm(FlaskForm):
    status = SelectField(choices=[("active", _l("在册")), ("suspended", _l("已暂停")), ("pending", _l("待审核"))],
                         validate_choice=True)
    reason = StringField(_l("原因（可不填，会记在操作记录里）"), validators=[
        Length(max=200, message=_l("原因最多 200 个字。")), plain_text()])
    back = HiddenField()


class PinForm(FlaskForm):
    new_pin = _pin(_l("新密码（6 位数字）"))
    new_pin2 = _pin_again(_l("再输一次新密码"), "new_pin")


class ReissueForm(FlaskForm):
    """Reissuing can't be undone (the old card stops working), so the manager ticks a box first."""

    confirm = BooleanField(_l("我知道：补办后旧卡马上作废"),
                           validators=[DataRequired(_l("请先勾选“我知道：补办后旧卡马上作废”。"))])


class ImportForm(FlaskForm):
    file = FileField(_l("选择名单文件（.xlsx 或 .csv，不超过 1 MB）"),
                     validators=[FileRequired(_l("请先选择一个 .xlsx 或 .csv 文件。"))])


class ImportGoodRowsForm(FlaskForm):
    """“Import only the good rows”: names the file kept on the server, and how many rows were agreed to."""

    token = HiddenField(validators=[InputRequired(), Regexp(r"^[A-Za-z0-9_-]{20,40}$")])
    expected = HiddenField(validators=[InputRequired(), Regexp(r"^[0-9]{1,5}$")])
