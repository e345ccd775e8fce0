"""The audit trail: one row per change, added to the caller's transaction."""

import json

from flask_babel import gettext as _

from .db import db
from .models import AuditLog


def _plain(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record(actor: str, action: str, entity: str, entity_id: str, reason: str = "", **changes) -> AuditLog:
    row = AuditLog(
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        reason=reason,
        detail=json.dumps({k: _plain(v) for k, v in changes.items()}, ensure_ascii=False, sort_keys=True),
    )
    db.session.add(row)
    return row


def actor_label(actor: str) -> str:
    """Who did it, in words: "站长 wang", "志愿者 GL-0001", "系统"."""
    kind, _sep, name = (actor or "").partition(":")
    if kind == "manager":
        return _("站长 %(n)s", n=name)
    if kind == "volunteer":
        return _("志愿者 %(n)s", n=name)
    if kind == "system":
        return _("系统")
    if kind == "district":
        return _("区里（夜间同步）")
    return actor
