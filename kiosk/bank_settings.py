"""The love bank's rules for this station: points per hour, how time is counted, the daily cap,
and how long a redemption waits for pickup. Station data, changed by a manager, audited."""

from flask_babel import lazy_gettext as _l

from . import audit, ledger
from .clock import now
from .db import db
from .errors import InvalidInput
from .events import get_station
from .models import Station

UNITS = (1, 15, 30, 60)
# (field, lowest, highest, message)
RANGES = (
    ("points_per_hour", 0, 1000, _l("服务 1 小时的积分要在 0 到 1000 之间。")),
    ("daily_points_cap", 0, 100_000, _l("每天上限要在 0 到 100000 之间，0 表示不限。")),
    ("pickup_days", 1, 90, _l("取货期限要在 1 到 90 天之间。")),
)


def update_bank_settings(actor: str, points_per_hour: int, points_unit_minutes: int, daily_points_cap: int,
                         pickup_days: int) -> Station:
    """Change the rules for points earned from now on; points already earned stay as they are."""
    values = dict(points_per_hour=points_per_hour, points_unit_minutes=points_unit_minutes,
                  daily_points_cap=daily_points_cap, pickup_days=pickup_days)
    for name, low, high, message in RANGES:
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInput(message, field=name)
    if points_unit_minutes not in UNITS or isinstance(points_unit_minutes, bool):
        raise InvalidInput(_l("计时单位只能是 1、15、30 或 60 分钟。"), field="points_unit_minutes")
    station = get_station()
    changes = {}
    for name, value in values.items():
        old = getattr(station, name)
        if old != value:
            changes[name] = [old, value]
            setattr(station, name, value)
    if changes:
        station.version += 1
        station.updated_at = now()
        audit.record(actor, "update_bank", "station", str(station.id), **changes)
    db.session.flush()
    return station


def example_points() -> list[tuple[int, int]]:
    """(minutes, points) for a few service lengths under the current rules, to show the manager."""
    return [(m, ledger.points_for(m)) for m in (20, 30, 45, 60, 90, 120, 180)]
