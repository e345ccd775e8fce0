"""The station's tables, in SQLAlchemy's typed 2.0 style."""

from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import now
from .db import db
from .ids import new_id

SCHEMA_VERSION = 1
# The newest migration; tests/test_db.py proves it is Alembic's head. `kiosk serve` compares the
# database with it at start without loading Alembic.
SCHEMA_HEAD = "65a186901f60"


class Station(db.Model):
    """The station's own settings: exactly one row (id 1)."""

    __tablename__ = "station"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("idle_timeout_s BETWEEN 15 AND 3600", name="idle_timeout_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    idle_timeout_s: Mapped[int] = mapped_column(default=90)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class Category(db.Model):
    """A kind of event (理论宣讲, 志愿服务…): station data, not code."""

    __tablename__ = "category"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class EventSeries(db.Model):
    """A weekly repetition ("every Tuesday 9:00–11:00 until 31 Jan"); its events are real rows."""

    __tablename__ = "event_series"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    weekdays: Mapped[str] = mapped_column(String(16))  # ISO weekdays, e.g. "2" or "2,4"
    until: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=now)


class Event(db.Model):
    """An activity (文明实践活动) at the station."""

    __tablename__ = "event"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity_positive"),
        Index("ix_event_starts_at", "starts_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(100))
    category_id: Mapped[str | None] = mapped_column(ForeignKey("category.id"))
    place: Mapped[str] = mapped_column(String(100), default="")
    organiser: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int | None]
    published: Mapped[bool] = mapped_column(default=True)
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")
    series_id: Mapped[str | None] = mapped_column(ForeignKey("event_series.id"))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)

    category: Mapped[Category | None] = relationship(lazy="joined")
    series: Mapped[EventSeries | None] = relationship()

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None


class Manager(UserMixin, db.Model):
    """A station manager who logs in with a username and password."""

    __tablename__ = "manager"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(50), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=now)

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active


class LoginAttempt(db.Model):
    """A manager login attempt, kept to throttle password guessing."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    ok: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=now)


class AuditLog(db.Model):
    """Who changed what, when and why; written in the same transaction as the change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(default=now)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON of changed fields
