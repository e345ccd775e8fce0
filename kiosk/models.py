"""The station's tables, in SQLAlchemy's typed 2.0 style."""

from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import now
from .db import db
from .ids import new_id

SCHEMA_VERSION = 1
# The newest migration; tests/test_db.py proves it is Alembic's head. `kiosk serve` compares the
# database with it at start without loading Alembic.
SCHEMA_HEAD = "6c2e7f1a9d03"


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
    # Hours rules (station data): the most one check-in can credit; star thresholds in hours.
    credit_cap_minutes: Mapped[int] = mapped_column(default=720, server_default="720")
    star_thresholds: Mapped[str] = mapped_column(String(100), default="100,300,600,1000,1500",
                                                 server_default="100,300,600,1000,1500")
    next_volunteer_seq: Mapped[int] = mapped_column(default=1, server_default="1")
    # Love bank rules (station data): points per credited hour, counted per full unit of minutes;
    # the most a volunteer earns in a day (0 = no cap); days a redemption waits for pickup.
    points_per_hour: Mapped[int] = mapped_column(default=10, server_default="10")
    points_unit_minutes: Mapped[int] = mapped_column(default=30, server_default="30")
    daily_points_cap: Mapped[int] = mapped_column(default=0, server_default="0")
    pickup_days: Mapped[int] = mapped_column(default=14, server_default="14")
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
    bonus_points: Mapped[int] = mapped_column(default=0, server_default="0")
    published: Mapped[bool] = mapped_column(default=True)
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str] = mapped_column(String(200), default="")
    series_id: Mapped[str | None] = mapped_column(ForeignKey("event_series.id"))
    # "station" (the manager's) or "district" (sent by the district; read-only here).
    origin: Mapped[str] = mapped_column(String(10), default="station", server_default="station")
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


volunteer_team = db.Table(
    "volunteer_team",
    db.Column("volunteer_id", ForeignKey("volunteer.id", ondelete="CASCADE"), primary_key=True),
    db.Column("team_id", ForeignKey("team.id", ondelete="CASCADE"), primary_key=True),
)


class Team(db.Model):
    """A volunteer team (志愿服务队)."""

    __tablename__ = "team"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class Volunteer(db.Model):
    """A registered volunteer (志愿者); pending until the manager approves a walk-in."""

    __tablename__ = "volunteer"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'active', 'suspended')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    mobile: Mapped[str] = mapped_column(String(11), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    card_serial: Mapped[int] = mapped_column(default=1)
    registered_via: Mapped[str] = mapped_column(String(10), default="manager")
    # The code of the station where the volunteer registered, when it is not this one: a row from
    # the district's roster (kiosk/inbox.py). Such a volunteer has no PIN here until the manager
    # checks who they are and sets one (pin_hash "").
    home_station: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)

    teams: Mapped[list[Team]] = relationship(secondary=volunteer_team, order_by=Team.name)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def visiting(self) -> bool:
        """Registered at another station (from the district's roster)."""
        return self.home_station is not None

    @property
    def has_pin(self) -> bool:
        return bool(self.pin_hash)


class PinAttempt(db.Model):
    """A PIN typed for a volunteer, kept to lock out guessing per volunteer."""

    __tablename__ = "pin_attempt"
    __table_args__ = (Index("ix_pin_attempt_volunteer_at", "volunteer_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"))
    ok: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=now)


class Device(db.Model):
    """A volunteer's phone remembered after a PIN login (a long-lived cookie names it)."""

    __tablename__ = "device"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)
    revoked_at: Mapped[datetime | None]


class CheckIn(db.Model):
    """A volunteer's attendance at an event: signed in, signed out, and the minutes credited.

    status: open (signed in), confirmed (hours count), unconfirmed (closed at the scheduled end
    without a sign-out, waiting for the manager), no_show.
    """

    __tablename__ = "checkin"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'confirmed', 'unconfirmed', 'no_show')", name="status_known"),
        CheckConstraint("credited_minutes >= 0", name="credited_not_negative"),
        CheckConstraint("checked_out_at IS NULL OR checked_out_at >= checked_in_at", name="out_after_in"),
        db.UniqueConstraint("event_id", "volunteer_id", name="uq_checkin_event_volunteer"),
        # At most one open check-in per volunteer, whatever the event (DESIGN.md §2).
        Index("uq_checkin_one_open", "volunteer_id", unique=True, sqlite_where=text("status = 'open'"),
              postgresql_where=text("status = 'open'")),
        Index("ix_checkin_event_status", "event_id", "status"),
        # A volunteer's hours, stars and records (every kiosk screen of theirs, every redemption).
        Index("ix_checkin_volunteer_checked_in", "volunteer_id", "checked_in_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("event.id"))
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"))
    checked_in_at: Mapped[datetime]
    checked_out_at: Mapped[datetime | None]
    source_in: Mapped[str] = mapped_column(String(10))
    source_out: Mapped[str] = mapped_column(String(10), default="")
    status: Mapped[str] = mapped_column(String(12), default="open")
    credited_minutes: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)

    event: Mapped[Event] = relationship()
    volunteer: Mapped[Volunteer] = relationship()


class QrUse(db.Model):
    """A rotating event code used by a volunteer: once per volunteer and time step."""

    __tablename__ = "qr_use"

    event_id: Mapped[str] = mapped_column(ForeignKey("event.id"), primary_key=True)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=now)


class LedgerTxn(db.Model):
    """One movement of love-bank points (积分流水): earn, redeem, adjust, reverse, expire.

    Append-only (database triggers refuse UPDATE and DELETE); its postings sum to zero. The id is
    the idempotency key, minted where the intent was created.
    """

    __tablename__ = "ledger_txn"
    __table_args__ = (
        CheckConstraint("kind IN ('earn', 'redeem', 'adjust', 'reverse', 'expire')", name="kind_known"),
        Index("ix_ledger_txn_checkin", "checkin_id"),
        Index("ix_ledger_txn_volunteer_at", "volunteer_id", "at"),
        Index("uq_ledger_txn_reverses", "reverses_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"))
    points: Mapped[int]  # the volunteer's side: + earned, - spent
    at: Mapped[datetime] = mapped_column(default=now)
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(String(200), default="")
    station_code: Mapped[str] = mapped_column(String(32))
    checkin_id: Mapped[str | None] = mapped_column(ForeignKey("checkin.id"))
    event_id: Mapped[str | None] = mapped_column(ForeignKey("event.id"))
    redemption_id: Mapped[str | None] = mapped_column(String(36))
    reverses_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_txn.id"))

    postings: Mapped[list["Posting"]] = relationship(back_populates="txn", lazy="selectin")


class Posting(db.Model):
    """One side of a ledger transaction on one account; a balance is a sum of postings."""

    __tablename__ = "posting"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_posting_account_id", "account", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("ledger_txn.id"), index=True)
    # "v:<volunteer id>" for a volunteer, "station:issued" / "station:redeemed" for the station
    account: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int]

    txn: Mapped[LedgerTxn] = relationship(back_populates="postings")


class Reward(db.Model):
    """Something in the rewards catalog (兑换物品), priced in points."""

    __tablename__ = "reward"
    __table_args__ = (
        CheckConstraint("price_points > 0", name="price_positive"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(String(500), default="")
    picture: Mapped[str] = mapped_column(String(80), default="")  # a file in instance/rewards/
    price_points: Mapped[int]
    # Stock on hand: kept in step with the append-only stock moves in the same transaction
    # (tests prove stock == sum of moves).
    stock: Mapped[int] = mapped_column(default=0)
    monthly_limit: Mapped[int | None]  # per person per month; None = no limit
    min_stars: Mapped[int] = mapped_column(default=0)
    available_from: Mapped[date | None]
    available_until: Mapped[date | None]
    active: Mapped[bool] = mapped_column(default=True)
    low_stock: Mapped[int] = mapped_column(default=3)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class StockMove(db.Model):
    """A change of a reward's stock: restock, write-off, redeem, return. Append-only."""

    __tablename__ = "stock_move"
    __table_args__ = (
        CheckConstraint("kind IN ('restock', 'writeoff', 'redeem', 'return')", name="kind_known"),
        CheckConstraint("delta <> 0", name="delta_not_zero"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    reward_id: Mapped[str] = mapped_column(ForeignKey("reward.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    delta: Mapped[int]
    redemption_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=now)


class Redemption(db.Model):
    """A volunteer's redemption (兑换) of a reward, waiting for pickup with a short code."""

    __tablename__ = "redemption"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'handed_over', 'cancelled', 'expired')", name="status_known"),
        Index("uq_redemption_pending_code", "pickup_code", unique=True, sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
        Index("ix_redemption_volunteer_created", "volunteer_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteer.id"))
    reward_id: Mapped[str] = mapped_column(ForeignKey("reward.id"))
    points: Mapped[int]
    pickup_code: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str] = mapped_column(String(80), default="")
    close_reason: Mapped[str] = mapped_column(String(200), default="")
    txn_id: Mapped[str] = mapped_column(ForeignKey("ledger_txn.id"))
    version: Mapped[int] = mapped_column(default=1)

    reward: Mapped[Reward] = relationship(lazy="joined")
    volunteer: Mapped[Volunteer] = relationship(lazy="joined")


# --- nightly sync (DESIGN.md §4): the station's side --------------------------------------------

class ChangeLog(db.Model):
    """One exported change, appended in the same transaction as the write it records.

    `seq` is the export position (AUTOINCREMENT: never reused while this database lives); `data`
    is the row as exported (JSON), null for a tombstone (op 'delete').
    """

    __tablename__ = "change_log"
    __table_args__ = (
        CheckConstraint("op IN ('upsert', 'delete')", name="op_known"),
        # Compaction (changelog.compact) finds superseded rows of the same entity through it.
        Index("ix_change_log_entity", "entity", "entity_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(String(36))
    op: Mapped[str] = mapped_column(String(6))
    data: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class SyncState(db.Model):
    """The station epoch (exactly one row): see kiosk/sync.py for when it changes. Not exported."""

    __tablename__ = "sync_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    epoch: Mapped[str] = mapped_column(String(32))
    # The highest posting id when this epoch began: after a restore, what the batch that came
    # back with the backup counted is void, and only postings after this are this station's own
    # new points (kiosk/inbox.py: standing).
    epoch_posting: Mapped[int] = mapped_column(default=0, server_default="0")
    backfilled: Mapped[bool] = mapped_column(default=False)
    changed_at: Mapped[datetime] = mapped_column(default=now)


class SyncKey(db.Model):
    """The station's key for signed API requests; the newest row is in force. Never exported."""

    __tablename__ = "sync_key"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=now)
    created_by: Mapped[str] = mapped_column(String(80))


class SyncNonce(db.Model):
    """A request nonce seen with a valid signature, remembered until its timestamp expires."""

    __tablename__ = "sync_nonce"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SyncPull(db.Model):
    """One export call by the district: when, from where, how much (shown to the manager)."""

    __tablename__ = "sync_pull"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=now, index=True)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    epoch: Mapped[str] = mapped_column(String(32))
    after: Mapped[int]
    upto: Mapped[int]
    rows: Mapped[int]
    done: Mapped[bool]


class InboxBatch(db.Model):
    """A batch the district sent to the inbox (kiosk/inbox.py), applied once: its id is the key.

    Exported, so the district learns which batch each station has in force. `mark_seq` is the
    change-log position the district's snapshot counts up to; `mark_posting` the highest posting
    id at or below it here: points posted after it are this station's own since the snapshot.
    """

    __tablename__ = "inbox_batch"
    __table_args__ = (CheckConstraint("kind IN ('full', 'topup')", name="kind_known"),
                      Index("ix_inbox_batch_issued", "issued"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    issued: Mapped[int]  # the district's running number: a newer batch has a larger one
    kind: Mapped[str] = mapped_column(String(8))
    epoch: Mapped[str] = mapped_column(String(32))
    mark_seq: Mapped[int]
    mark_posting: Mapped[int]
    as_of: Mapped[str] = mapped_column(String(32))  # the district's time of the snapshot, as sent
    received_at: Mapped[datetime] = mapped_column(default=now)
    body_sha256: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(Text, default="{}")  # the answer given (JSON), for a replay


class Allowance(db.Model):
    """The district's snapshot for one volunteer, from the batch in force. Not exported.

    points: what this station may let them spend of what was earned before the snapshot (the
    district's allowances for all stations never add up to more than the balance); total: their
    balance across the district; minutes_total / minutes_here: confirmed minutes across the
    district and here, as the district counted them.
    """

    __tablename__ = "allowance"
    __table_args__ = (CheckConstraint("points >= 0", name="points_not_negative"),)

    volunteer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    points: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    minutes_total: Mapped[int] = mapped_column(default=0)
    minutes_here: Mapped[int] = mapped_column(default=0)
