"""Domain errors: raised by the operations, turned into a sentence for the person by the views."""

from flask_babel import lazy_gettext as _l


class DomainError(Exception):
    """A rule of the station was broken; `message` says what to do next."""

    status = 409
    message = _l("这项操作现在不能完成，请稍后再试。")

    def __init__(self, message=None, field: str | None = None):
        if message is not None:
            self.message = message
        self.field = field
        super().__init__(str(self.message))


class InvalidInput(DomainError):
    status = 422


class NotFound(DomainError):
    status = 404
    message = _l("没有找到这项内容，请返回首页重新选择。")


class EventCancelled(DomainError):
    message = _l("这个活动已经取消了。")


class StaleEdit(DomainError):
    message = _l("别人刚刚修改过这个活动，请刷新页面后再改。")
