"""The e-mail outbox: messages are queued in the same transaction as the change they announce.

A booking, a reschedule or a cancellation adds its messages here inside its own
transaction, so a message is queued if and only if the change is stored.  Each message has
an idempotency key per (appointment, kind, version): queueing the same message twice does
nothing.  Cancelling or moving an appointment withdraws its pending reminders in the same
transaction, so nothing is ever sent for a slot that is no longer booked.

Keys, which also become each message's ``Message-ID``:

- announcements: ``<kind>:<appointment id>:<sequence>`` -- one per version of the invite;
- reminders: ``reminder:<appointment id>:<hours>h:<start, ISO 8601>`` -- the start they
  remind of, so the worker can tell a reminder for a start that has since moved;
- a resent invite: ``invite_resent:<appointment id>:<sequence>:<queued at, ISO 8601>``;
- a homework link: ``homework:<homework id>`` (no appointment; ``homework_id`` is set).

The worker that sends what is due lives in ``server.mailer``.  While a message is pending,
a non-null ``sent_at`` means a worker handed it to the mail server and died (or was stopped)
before it could record the server's answer: see ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import Appointment, OutboxMessage, OutboxStatus


class MailKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    RESCHEDULED = "rescheduled"
    CANCELLATION = "cancellation"
    REMINDER = "reminder"
    INVITE_RESENT = "invite_resent"
    #: A homework link (``homework:<homework id>``; the row's ``homework_id`` is set).
    HOMEWORK = "homework"


#: ``ALCOVE_REMINDER_HOURS``' default; pass ``settings.reminder_hours`` to honour the setting.
DEFAULT_REMINDER_HOURS: tuple[int, ...] = (24, 1)
#: Kinds that carry the invite (an ``.ics``) and the manage link.
ANNOUNCEMENTS = frozenset({MailKind.CONFIRMATION, MailKind.RESCHEDULED, MailKind.INVITE_RESENT})


@dataclass(frozen=True)
class MessageKey:
    """An idempotency key, read back: what a queued message is about."""

    kind: MailKind
    appointment_id: int
    #: The invite's SEQUENCE the message was queued for (``None`` for reminders).
    sequence: int | None = None
    #: The start a reminder reminds of (``None`` for the other kinds).
    starts_at: dt.datetime | None = None
    #: How long before the start a reminder is due.
    lead_hours: int | None = None


def key_for(kind: MailKind, appointment: Appointment, *, at: dt.datetime | None = None) -> str:
    """The key of an announcement (``at``: when a resent invite was asked for)."""
    if kind is MailKind.REMINDER:
        raise ValueError("reminders are keyed by reminder_key()")
    key = f"{kind.value}:{appointment.id}:{appointment.sequence}"
    if kind is MailKind.INVITE_RESENT:
        if at is None:
            raise ValueError("a resent invite is keyed by when it was asked for")
        key += f":{at.astimezone(dt.UTC).isoformat()}"
    return key


def reminder_key(appointment: Appointment, hours: int) -> str:
    starts = appointment.starts_at.astimezone(dt.UTC).isoformat()
    return f"{MailKind.REMINDER.value}:{appointment.id}:{hours}h:{starts}"


def parse_key(key: str) -> MessageKey:
    """Read a key written by ``key_for`` or ``reminder_key``; ``ValueError`` if malformed."""
    kind_text, _, rest = key.partition(":")
    kind = MailKind(kind_text)
    if kind is MailKind.REMINDER:
        appointment, hours, starts = rest.split(":", 2)
        if not hours.endswith("h"):
            raise ValueError(f"malformed reminder key {key!r}")
        return MessageKey(
            kind,
            int(appointment),
            starts_at=dt.datetime.fromisoformat(starts),
            lead_hours=int(hours[:-1]),
        )
    appointment, sequence, *_when = rest.split(":", 2)
    return MessageKey(kind, int(appointment), sequence=int(sequence))


async def _add(
    db: AsyncSession, key: str, kind: MailKind, appointment: Appointment, due_at: dt.datetime
) -> bool:
    if await db.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
        return False
    db.add(
        OutboxMessage(
            idempotency_key=key,
            kind=kind.value,
            appointment_id=appointment.id,
            due_at=due_at,
            next_attempt_at=due_at,
            status=OutboxStatus.PENDING.value,
        )
    )
    return True


async def enqueue(
    db: AsyncSession, kind: MailKind, appointment: Appointment, *, due_at: dt.datetime
) -> bool:
    """Queue one announcement unless the same one is already queued; ``True`` if added."""
    return await _add(db, key_for(kind, appointment, at=due_at), kind, appointment, due_at)


async def enqueue_reminder(
    db: AsyncSession, appointment: Appointment, hours: int, *, due_at: dt.datetime
) -> bool:
    """Queue the reminder ``hours`` before ``appointment``'s current start, due at ``due_at``."""
    key = reminder_key(appointment, hours)
    return await _add(db, key, MailKind.REMINDER, appointment, due_at)


async def schedule_reminders(
    db: AsyncSession,
    appointment: Appointment,
    now: dt.datetime,
    hours: Sequence[int] = DEFAULT_REMINDER_HOURS,
) -> None:
    """Queue the reminders still ahead of ``now`` (one that is already past is skipped)."""
    for lead in hours:
        due = appointment.starts_at - dt.timedelta(hours=lead)
        if due > now:
            await enqueue_reminder(db, appointment, lead, due_at=due)


async def withdraw_pending(
    db: AsyncSession, appointment_id: int, kinds: frozenset[MailKind] | None = None
) -> int:
    """Withdraw the appointment's unsent messages (all, or of ``kinds``); return how many."""
    statement = update(OutboxMessage).where(
        OutboxMessage.appointment_id == appointment_id,
        OutboxMessage.status == OutboxStatus.PENDING.value,
    )
    if kinds is not None:
        statement = statement.where(OutboxMessage.kind.in_([k.value for k in kinds]))
    result = await db.execute(
        statement.values(status=OutboxStatus.WITHDRAWN.value).execution_options(
            synchronize_session=False
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def on_booked(
    db: AsyncSession,
    appointment: Appointment,
    now: dt.datetime,
    *,
    reminder_hours: Sequence[int] = DEFAULT_REMINDER_HOURS,
) -> None:
    """Call in the booking's transaction, after flushing ``appointment`` (it needs its id)."""
    await enqueue(db, MailKind.CONFIRMATION, appointment, due_at=now)
    await schedule_reminders(db, appointment, now, reminder_hours)


async def on_rescheduled(
    db: AsyncSession,
    appointment: Appointment,
    now: dt.datetime,
    *,
    reminder_hours: Sequence[int] = DEFAULT_REMINDER_HOURS,
) -> None:
    """Call after moving ``appointment`` and raising its ``sequence``."""
    await withdraw_pending(db, appointment.id, frozenset({MailKind.REMINDER}))
    await enqueue(db, MailKind.RESCHEDULED, appointment, due_at=now)
    await schedule_reminders(db, appointment, now, reminder_hours)


async def on_cancelled(db: AsyncSession, appointment: Appointment, now: dt.datetime) -> None:
    """Call after cancelling ``appointment`` and raising its ``sequence``."""
    await withdraw_pending(db, appointment.id)
    await enqueue(db, MailKind.CANCELLATION, appointment, due_at=now)


async def on_invite_resent(db: AsyncSession, appointment: Appointment, now: dt.datetime) -> bool:
    """Queue the invite again (fresh join and manage links), e.g. when a client lost it."""
    return await enqueue(db, MailKind.INVITE_RESENT, appointment, due_at=now)


def homework_key(homework_id: int) -> str:
    """One e-mail per homework assignment: assigning again is a new homework."""
    return f"{MailKind.HOMEWORK.value}:{homework_id}"


async def enqueue_homework(db: AsyncSession, homework_id: int, *, due_at: dt.datetime) -> bool:
    """Queue the e-mail with a homework's link (call after flushing the homework)."""
    key = homework_key(homework_id)
    if await db.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
        return False
    db.add(
        OutboxMessage(
            idempotency_key=key,
            kind=MailKind.HOMEWORK.value,
            homework_id=homework_id,
            due_at=due_at,
            next_attempt_at=due_at,
            status=OutboxStatus.PENDING.value,
        )
    )
    return True


async def withdraw_homework(db: AsyncSession, homework_ids: Sequence[int]) -> int:
    """Withdraw the unsent e-mails of homework that was withdrawn; return how many."""
    if not homework_ids:
        return 0
    result = await db.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.homework_id.in_(list(homework_ids)),
            OutboxMessage.status == OutboxStatus.PENDING.value,
        )
        .values(status=OutboxStatus.WITHDRAWN.value)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def pending_count(db: AsyncSession) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.PENDING.value)
    )
    return int(count or 0)
