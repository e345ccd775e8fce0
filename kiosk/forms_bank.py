"""The love bank's manager forms: rewards, stock, pickups, adjustments, the ledger filter, the rules."""

import unicodedata

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from .forms import ChineseDateField, ChineseIntegerField, plain_text, sane_date

REASON_MAX = 200
PICTURE_MAX = 300 * 1024
# The first bytes of the only picture formats we keep, and the file ending each is stored under.
PICTURE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))
UNIT_CHOICES = [(1, _l("每 1 分钟")), (15, _l("每满 15 分钟")), (30, _l("每满 30 分钟")), (60, _l("每满 1 小时"))]
STAR_CHOICES = [(0, _l("不限")), (1, _l("1 星")), (2, _l("2 星")), (3, _l("3 星")), (4, _l("4 星")), (5, _l("5 星"))]


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def narrow(value):
    """Full-width digits and signs, as a Chinese input method types them, as ASCII."""
    return unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else value


class NumberField(ChineseIntegerField):
    """An integer as people type it: "＋２０", " -5 " and "20" all count."""

    def process_formdata(self, valuelist):
        super().process_formdata([narrow(v) for v in valuelist] if valuelist else valuelist)


class ChoiceField(SelectField):
    """One of a list; anything else sent in the request is "please choose" (WTForms says it in English)."""

    def pre_validate(self, form):
        if self.process_errors:
            return  # already said
        if self.data not in {v for v, _label in self.choices}:
            raise ValidationError(_l("请从列表里选择。"))


class ChoiceNumberField(ChoiceField):
    """A number picked from a list."""

    def __init__(self, label=None, validators=None, **kw):
        super().__init__(label, validators, coerce=int, **kw)

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(_l("请从列表里选择。")) from None


def _reason(label, required: bool = True):
    checks = [Length(max=REASON_MAX, message=_l("原因最多 200 个字。")), plain_text()]
    if required:
        checks.insert(0, DataRequired(_l("请写一下原因，方便以后查对。")))
    return StringField(label, filters=[_strip], validators=checks)


def _count(label, low: int, high: int, message, required: bool = True, **kw):
    return NumberField(label, **kw, validators=[
        InputRequired(_l("请填写数字。")) if required else Optional(),
        NumberRange(low, high, message=message),
    ])


# --- the rewards catalog -------------------------------------------------------------------------

class RewardForm(FlaskForm):
    name = StringField(_l("物品名称"), filters=[_strip], validators=[
        InputRequired(_l("请填写物品名称。")), Length(max=50, message=_l("物品名称最多 50 个字。")), plain_text()])
    description = TextAreaField(_l("说明（可不填，触摸屏上显示）"), validators=[
        Length(max=500, message=_l("说明最多 500 个字。")), plain_text(multiline=True)])
    price_points = _count(_l("所需积分"), 1, 1_000_000, _l("所需积分要在 1 到 1000000 之间。"))
    stock = _count(_l("现有数量（件）"), 0, 100_000, _l("数量要在 0 到 100000 之间。"), required=False)
    monthly_limit = _count(_l("每人每月最多兑换几次（不限请留空）"), 1, 1000,
                           _l("每月限兑要在 1 到 1000 之间，不限请留空。"), required=False)
    min_stars = ChoiceNumberField(_l("几星志愿者才能兑换"), choices=STAR_CHOICES, default=0)
    available_from = ChineseDateField(_l("从哪天开始可以兑换（可不填）"), validators=[Optional(), sane_date])
    available_until = ChineseDateField(_l("到哪天为止（可不填）"), validators=[Optional(), sane_date])
    low_stock = _count(_l("剩几件时提醒补货"), 0, 10_000, _l("提醒数量要在 0 到 10000 之间。"), default=3)
    active = BooleanField(_l("上架（在触摸屏上可以兑换）"), default=True)
    picture = FileField(_l("图片（可不传；PNG 或 JPG，最大 300 KB）"))
    remove_picture = BooleanField(_l("去掉现在的图片"))
    version = HiddenField()

    def validate_available_until(self, field):
        if field.data and self.available_from.data and field.data < self.available_from.data:
            raise ValidationError(_l("结束日期不能早于开始日期。"))

    def validate_picture(self, field):
        """Keeps the upload's bytes and file ending on the form if it is a small PNG or JPEG."""
        field.content, field.ext = None, None
        upload = field.data
        if upload is None or not getattr(upload, "filename", None):
            return
        data = upload.read(PICTURE_MAX + 1)
        if not data:
            return
        if len(data) > PICTURE_MAX:
            raise ValidationError(_l("图片太大了：最大 300 KB，请换一张小一点的。"))
        ext = next((e for magic, e in PICTURE_MAGIC if data.startswith(magic)), None)
        if ext is None:
            raise ValidationError(_l("只能上传 PNG 或 JPG 图片。"))
        field.content, field.ext = data, ext


class RestockForm(FlaskForm):
    quantity = _count(_l("补货数量（件）"), 1, 100_000, _l("数量要在 1 到 100000 之间。"))
    reason = _reason(_l("备注（可不填，比如“社区超市捐赠”）"), required=False)


class WriteOffForm(FlaskForm):
    quantity = _count(_l("报损数量（件）"), 1, 100_000, _l("数量要在 1 到 100000 之间。"))
    reason = _reason(_l("报损原因（必填，比如“过期”“损坏”）"))


# --- pickups -------------------------------------------------------------------------------------

class PickupCodeForm(FlaskForm):
    code = StringField(_l("输入或扫描取货码"), filters=[narrow], validators=[
        InputRequired(_l("请输入 6 位取货码。")), Length(max=20, message=_l("取货码是 6 位数字。")), plain_text()])

    def validate_code(self, field):
        digits = [ch for ch in field.data if ch.isdigit()]
        if len(digits) != 6 or any(not ch.isascii() for ch in digits):
            raise ValidationError(_l("取货码是 6 位数字，请核对后再输入。"))


class HandOverForm(FlaskForm):
    """Only the CSRF token: the redemption is named in the URL."""


class CancelRedemptionForm(FlaskForm):
    reason = _reason(_l("取消原因（必填，积分和物品会退回）"))


# --- adjusting and awarding ----------------------------------------------------------------------

class AdjustForm(FlaskForm):
    volunteer = StringField(_l("志愿者编号或手机号"), filters=[narrow], validators=[
        InputRequired(_l("请填写志愿者编号或手机号。")), Length(max=40, message=_l("编号或手机号最多 40 个字符。")),
        plain_text()])
    points = NumberField(_l("积分（加分填正数，扣分填负数，如 -20）"), validators=[
        InputRequired(_l("请填写积分数。")),
        NumberRange(-100_000, 100_000, message=_l("积分要在 -100000 到 100000 之间。"))])
    reason = _reason(_l("原因（必填，志愿者的存折上能看到）"))
    op = HiddenField()  # the idempotency key, minted when the form was shown

    def validate_points(self, field):
        if field.data == 0:
            raise ValidationError(_l("积分不能是 0。"))


class AwardForm(FlaskForm):
    points = _count(_l("每人奖励积分"), 1, 10_000, _l("每人奖励要在 1 到 10000 分之间。"))
    reason = _reason(_l("原因（必填，志愿者的存折上能看到）"))


# --- the ledger filter (a GET form: no CSRF token, nothing changes) ------------------------------

class LedgerFilterForm(FlaskForm):
    class Meta:
        csrf = False

    q = StringField(_l("志愿者（姓名或编号）"), filters=[_strip], validators=[
        Length(max=50, message=_l("最多 50 个字。")), plain_text()])
    kind = ChoiceField(_l("类型"), choices=[], default="")
    date_from = ChineseDateField(_l("从"), validators=[Optional(), sane_date])
    date_to = ChineseDateField(_l("到"), validators=[Optional(), sane_date])

    def validate_date_to(self, field):
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("结束日期不能早于开始日期。"))


# --- the love bank's rules -----------------------------------------------------------------------

class BankSettingsForm(FlaskForm):
    points_per_hour = _count(_l("服务 1 小时得多少积分"), 0, 1000, _l("要在 0 到 1000 之间。"))
    points_unit_minutes = ChoiceNumberField(_l("怎么计时"), choices=UNIT_CHOICES)
    daily_points_cap = _count(_l("每人每天最多得多少分（0 = 不限）"), 0, 100_000, _l("要在 0 到 100000 之间。"))
    pickup_days = _count(_l("兑换后几天内来取货"), 1, 90, _l("要在 1 到 90 天之间。"))
