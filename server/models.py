"""The stored records.  Every instant is a timezone-aware UTC ``datetime``."""

from __future__ import annotations

import datetime as dt
import enum
import logging

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)


class Therapist(Base):
    __tablename__ = "therapists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    welcome_text: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    #: The public booking page is ``/book/<slug>``; ``None`` means no public page.
    slug: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    bio: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    #: Whom a client should contact once the self-service cutoff has passed.
    contact_text: Mapped[str] = mapped_column(String(500), default="", server_default="")
    reschedule_cutoff_hours: Mapped[int] = mapped_column(Integer, default=24, server_default="24")
    keep_join_link_on_reschedule: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="0"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    clients: Mapped[list[Client]] = relationship(back_populates="therapist")


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The IANA zone the client booked from, for invites in their own local time.
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    therapist: Mapped[Therapist] = relationship(back_populates="clients")

    __table_args__ = (Index("ix_clients_therapist_email", "therapist_id", "email"),)


class AppointmentStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


ALLOWED_TRANSITIONS: dict[AppointmentStatus, frozenset[AppointmentStatus]] = {
    AppointmentStatus.SCHEDULED: frozenset(
        {AppointmentStatus.COMPLETED, AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW}
    ),
    AppointmentStatus.COMPLETED: frozenset(),
    AppointmentStatus.CANCELLED: frozenset(),
    AppointmentStatus.NO_SHOW: frozenset(),
}


class IllegalTransition(Exception):
    """An appointment was asked to move to a status its current status does not allow."""

    def __init__(self, current: AppointmentStatus, requested: AppointmentStatus) -> None:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"appointment is {current.value}: cannot become {requested.value} "
            f"(from {current.value} it may become {allowed})"
        )
        self.current = current
        self.requested = requested


_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in AppointmentStatus)


class Appointment(Base):
    __tablename__ = "appointments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id", ondelete="RESTRICT"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=AppointmentStatus.SCHEDULED.value)
    session_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("session_types.id", ondelete="SET NULL"), nullable=True
    )
    series_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointment_series.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: Free time kept after the session, copied from the session type when booked.
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The invite's SEQUENCE: raised on every change that is mailed to the client.
    sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: When the therapist let the client in, until they are sent back, leave or the session
    #: ends: a client who reconnects (to any instance, after a restart) comes straight back.
    admitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: "What brings you here", from the booking form.  Clinical: never mailed or logged.
    intake_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    therapist: Mapped[Therapist] = relationship()
    client: Mapped[Client] = relationship()

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_known"),
        Index("ix_appointments_therapist_starts", "therapist_id", "starts_at"),
    )

    @property
    def state(self) -> AppointmentStatus:
        return AppointmentStatus(self.status)

    def transition_to(self, new: AppointmentStatus) -> None:
        """Move to ``new`` or raise ``IllegalTransition`` naming the current state."""
        old = self.state
        if new not in ALLOWED_TRANSITIONS[old]:
            raise IllegalTransition(old, new)
        self.status = new.value
        log.info("appointment %s: %s -> %s", self.id, old.value, new.value)


class JoinToken(Base):
    """A client's way into one appointment.  Only the SHA-256 of the token is kept."""

    __tablename__ = "join_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    appointment: Mapped[Appointment] = relationship()


class AuditEvent(Base):
    """Append-only: who did what to which record, when and from where.  Never content."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)


class AuthSession(Base):
    """A signed-in therapist's session.  The cookie holds the id; only its hash is kept."""

    __tablename__ = "auth_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    therapist: Mapped[Therapist] = relationship()


class LoginFailure(Base):
    """One failed sign-in, keyed by a hash of the account or the source address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)


class ParticipantSession(Base):
    """A client's place in one appointment, after they opened its join link.

    The cookie carries a random id; only its hash is kept.  It expires when the
    appointment's join window closes.
    """

    __tablename__ = "participant_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    appointment: Mapped[Appointment] = relationship()


class SessionType(Base):
    """A kind of appointment a therapist offers, e.g. "Individual session, 50 min"."""

    __tablename__ = "session_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    price_text: Mapped[str] = mapped_column(String(200), default="", server_default="")
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=1440, server_default="1440")
    horizon_days: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    is_public: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        CheckConstraint("duration_minutes BETWEEN 5 AND 480", name="duration_range"),
        CheckConstraint("buffer_minutes BETWEEN 0 AND 240", name="buffer_range"),
    )


class WeeklyHours(Base):
    """One range of working hours on a weekday, in the therapist's local wall time."""

    __tablename__ = "weekly_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday … 6 = Sunday
    start_time: Mapped[dt.time] = mapped_column(Time)
    end_time: Mapped[dt.time] = mapped_column(Time)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("end_time > start_time", name="ends_after_start"),
    )


class DateOverride(Base):
    """A change to one local date: time off, or hours that replace or add to the week's."""

    __tablename__ = "date_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    date: Mapped[dt.date] = mapped_column(Date)
    mode: Mapped[str] = mapped_column(String(8))  # "off", "replace" or "add"
    start_time: Mapped[dt.time | None] = mapped_column(Time, nullable=True)
    end_time: Mapped[dt.time | None] = mapped_column(Time, nullable=True)

    __table_args__ = (CheckConstraint("mode IN ('off', 'replace', 'add')", name="mode_known"),)


class AppointmentSeries(Base):
    """Weekly appointments at the same local wall-clock time, booked together."""

    __tablename__ = "appointment_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    timezone: Mapped[str] = mapped_column(String(64))
    local_time: Mapped[dt.time] = mapped_column(Time)
    weeks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ManageToken(Base):
    """A client's link to cancel or reschedule one appointment.  Only the hash is kept."""

    __tablename__ = "manage_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    appointment: Mapped[Appointment] = relationship()


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    WITHDRAWN = "withdrawn"
    FAILED = "failed"


class OutboxMessage(Base):
    """An e-mail to send, written in the same transaction as the change it announces.

    ``idempotency_key`` is unique per (appointment, kind[, version]), so a retried request
    never queues a message twice.  The content is rendered when it is sent, so links carry
    fresh tokens and a withdrawn message never existed as text.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), nullable=True, index=True
    )
    #: For a homework link: the homework it is about (``kind`` says so).
    homework_id: Mapped[int | None] = mapped_column(
        ForeignKey("homework.id", ondelete="CASCADE"), nullable=True, index=True
    )
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The error class of the last failure, never its text (which may quote an address).
    last_error: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sent', 'withdrawn', 'failed')", name="status_known"
        ),
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
    )
