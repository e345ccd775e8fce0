"""Forms a volunteer fills in: on the phone, or on the kiosk's touchscreen."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, Regexp

from .forms import plain_text

SIX_DIGITS = Regexp(r"^\d{6}$", message=_l("密码要是 6 位数字。"))


class IdentifyForm(FlaskForm):
    who = StringField(_l("志愿者编号或手机号"), validators=[
        InputRequired(_l("请填写志愿者编号或手机号。")), Length(max=40, message=_l("最多 40 个字符。"))])
    pin = PasswordField(_l("6 位密码"), validators=[InputRequired(_l("请输入密码。")), SIX_DIGITS],
                        render_kw={"inputmode": "numeric", "autocomplete": "off", "maxlength": 6})
    next = HiddenField()


class RegisterForm(FlaskForm):
    name = StringField(_l("姓名"), validators=[
        InputRequired(_l("请填写姓名。")), Length(max=50, message=_l("姓名最多 50 个字。")), plain_text()])
    mobile = StringField(_l("手机号"), validators=[InputRequired(_l("请填写手机号。")), Length(max=20)],
                         render_kw={"inputmode": "tel", "autocomplete": "tel"})
    pin = PasswordField(_l("设一个 6 位数字密码"), validators=[InputRequired(_l("请设一个密码。")), SIX_DIGITS],
                        render_kw={"inputmode": "numeric", "maxlength": 6})
    pin2 = PasswordField(_l("再输一次密码"), validators=[
        InputRequired(_l("请再输一次密码。")), EqualTo("pin", message=_l("两次输入的密码不一样。"))],
        render_kw={"inputmode": "numeric", "maxlength": 6})


class CardForm(FlaskForm):
    badge = StringField(_l("志愿者卡"), validators=[InputRequired(_l("请刷志愿者卡。")), Length(max=300)])


class PinForm(FlaskForm):
    pin = PasswordField(_l("6 位密码"), validators=[InputRequired(_l("请输入密码。")), SIX_DIGITS])
