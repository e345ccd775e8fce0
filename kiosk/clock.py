"""The station's wall clock.

Times are stored as naive datetimes in the station's time zone (China has one zone and no
daylight saving, so they are unambiguous); tests replace `now` to freeze time.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

DEFAULT_TZ = "Asia/Shanghai"


def station_tz() -> ZoneInfo:
    name = current_app.config.get("TIMEZONE", DEFAULT_TZ) if has_app_context() else DEFAULT_TZ
    return ZoneInfo(name)


def now() -> datetime:
    """The station's local time, naive, to the second."""
    frozen = current_app.config.get("FROZEN_NOW") if has_app_context() else None
    if frozen is not None:
        return frozen
    return datetime.now(station_tz()).replace(tzinfo=None, microsecond=0)
