"""The outbox: messages are queued with the change they announce, once, and withdrawn with it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import outbox
from server.models import Appointment, AppointmentStatus, OutboxMessage, OutboxStatus, Therapist
from server.outbox import MailKind, MessageKey
from tests.support.arrange import make_appointment

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
IN_THREE_DAYS = NOW + dt.timedelta(days=3, hours=5)

Sessions = async_sessionmaker[AsyncSession]


async def queued(db: Sessions, appointment_id: int) -> list[OutboxMessage]:
    async with db() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.appointment_id == appointment_id)
            .order_by(OutboxMessage.due_at, OutboxMessage.id)
        )
        return list(rows)


async def booked(
    db: Sessions,
    therapist: Therapist,
    starts_at: dt.datetime,
    reminder_hours: tuple[int, ...] = outbox.DEFAULT_REMINDER_HOURS,
) -> int:
    appointment, _token = await make_appointment(db, therapist.id, starts_at=starts_at)
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment.id)
        assert record is not None
        await outbox.on_booked(session, record, NOW, reminder_hours=reminder_hours)
    return appointment.id


async def test_booking_queues_a_confirmation_now_and_a_reminder_24_hours_and_1_hour_before(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)

    rows = await queued(db, appointment_id)

    assert [(r.kind, r.due_at) for r in rows] == [
        ("confirmation", NOW),
        ("reminder", IN_THREE_DAYS - dt.timedelta(hours=24)),
        ("reminder", IN_THREE_DAYS - dt.timedelta(hours=1)),
    ]
    assert all(
        r.status == OutboxStatus.PENDING.value and r.next_attempt_at == r.due_at for r in rows
    )


async def test_queueing_the_same_booking_twice_adds_nothing(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        await outbox.on_booked(session, record, NOW + dt.timedelta(seconds=5))

    assert len(await queued(db, appointment_id)) == 3


async def test_reminders_whose_time_has_passed_at_booking_are_not_queued(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, NOW + dt.timedelta(hours=5))

    assert [r.kind for r in await queued(db, appointment_id)] == ["confirmation", "reminder"]


async def test_configured_reminder_hours_are_honoured(db: Sessions, therapist: Therapist) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS, reminder_hours=(48, 2))

    rows = await queued(db, appointment_id)

    assert [r.due_at for r in rows if r.kind == "reminder"] == [
        IN_THREE_DAYS - dt.timedelta(hours=48),
        IN_THREE_DAYS - dt.timedelta(hours=2),
    ]


async def test_reminder_keys_carry_the_start_they_remind_of_and_read_back(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)

    keys = [outbox.parse_key(r.idempotency_key) for r in await queued(db, appointment_id)]

    assert keys == [
        MessageKey(MailKind.CONFIRMATION, appointment_id, sequence=0),
        MessageKey(MailKind.REMINDER, appointment_id, starts_at=IN_THREE_DAYS, lead_hours=24),
        MessageKey(MailKind.REMINDER, appointment_id, starts_at=IN_THREE_DAYS, lead_hours=1),
    ]


async def test_moving_withdraws_the_old_reminders_and_queues_the_change_and_new_reminders(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)
    later = IN_THREE_DAYS + dt.timedelta(days=1)
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        record.starts_at, record.ends_at = later, later + dt.timedelta(minutes=50)
        record.sequence += 1
        await outbox.on_rescheduled(session, record, NOW)

    rows = {(r.kind, r.due_at): r.status for r in await queued(db, appointment_id)}

    assert rows == {
        ("confirmation", NOW): "pending",
        ("reminder", IN_THREE_DAYS - dt.timedelta(hours=24)): "withdrawn",
        ("reminder", IN_THREE_DAYS - dt.timedelta(hours=1)): "withdrawn",
        ("rescheduled", NOW): "pending",
        ("reminder", later - dt.timedelta(hours=24)): "pending",
        ("reminder", later - dt.timedelta(hours=1)): "pending",
    }


async def test_cancelling_withdraws_everything_unsent_and_queues_the_cancellation(
    db: Sessions, therapist: Therapist
) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        record.transition_to(AppointmentStatus.CANCELLED)
        record.sequence += 1
        await outbox.on_cancelled(session, record, NOW)

    rows = [(r.kind, r.status) for r in await queued(db, appointment_id)]

    assert sorted(rows) == [
        ("cancellation", "pending"),
        ("confirmation", "withdrawn"),
        ("reminder", "withdrawn"),
        ("reminder", "withdrawn"),
    ]
    async with db() as session:
        assert await outbox.pending_count(session) == 1


async def test_an_invite_can_be_resent_more_than_once(db: Sessions, therapist: Therapist) -> None:
    appointment_id = await booked(db, therapist, IN_THREE_DAYS)
    for minutes in (10, 20, 20):
        async with db() as session, session.begin():
            record = await session.get(Appointment, appointment_id)
            assert record is not None
            await outbox.on_invite_resent(session, record, NOW + dt.timedelta(minutes=minutes))

    kinds = [r.kind for r in await queued(db, appointment_id)]

    assert kinds.count("invite_resent") == 2
    resent = [r for r in await queued(db, appointment_id) if r.kind == "invite_resent"]
    assert outbox.parse_key(resent[0].idempotency_key) == MessageKey(
        MailKind.INVITE_RESENT, appointment_id, sequence=0
    )
