"""The therapist's side of booking: one-off appointments, weekly series, moves, cancellations.

Re-exported by ``server.booking`` (read its docstring first).  A therapist may book any
time that is in the future and free -- their public hours, notice and horizon bind
clients, not them -- but never over another live appointment or its buffer.  Every
function checks that the therapist owns the client, session type and appointment it is
given, and raises ``NotFound`` naming the kind of record otherwise, so another
therapist's records look exactly like records that do not exist.

No join or manage tokens are issued here: the mailer issues fresh ones when it sends the
confirmation, change or cancellation that each change queues.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import audit, availability, outbox
from server import booking_records as records
from server import booking_store as store
from server.audit import Actor
from server.booking_rules import BookingError, NotFound, SlotTaken, aware_utc
from server.models import (
    Appointment,
    AppointmentSeries,
    AppointmentStatus,
    Client,
    SessionType,
    Therapist,
)

MAX_SERIES_WEEKS = 104


async def create_appointment(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    client_id: int,
    session_type_id: int,
    start: dt.datetime,
    now: dt.datetime,
    reminder_hours: Sequence[int] = outbox.DEFAULT_REMINDER_HOURS,
    source_ip: str | None = None,
) -> int:
    """Book one appointment for an existing client; returns its id.

    Raises ``NotFound`` ("client", "session type"), ``BookingError("start")`` for a time
    in the past, or ``SlotTaken(start=...)`` if it collides.
    """
    start = aware_utc(start, "start")
    ids = await _create(
        sessionmaker,
        _Order(therapist_id, client_id, session_type_id, [start], None),
        now=now,
        reminder_hours=reminder_hours,
        source_ip=source_ip,
    )
    return ids[0]


async def create_series(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    client_id: int,
    session_type_id: int,
    first_local_start: dt.datetime,
    weeks: int,
    now: dt.datetime,
    reminder_hours: Sequence[int] = outbox.DEFAULT_REMINDER_HOURS,
    source_ip: str | None = None,
) -> list[int]:
    """Book ``weeks`` weekly appointments at the same local wall-clock time; returns their ids.

    ``first_local_start`` is aware; it is read on the therapist's clock, and every week
    keeps that wall-clock time across daylight-saving changes (``availability.weekly_series``).
    All or nothing: if any week collides, ``SlotTaken`` names it (``occurrence``, ``start``)
    and no appointment is created.  Raises ``BookingError`` ("weeks": 1-104,
    "first_local_start": naive or in the past) and ``NotFound`` as ``create_appointment``.
    """
    if isinstance(weeks, bool) or not 1 <= weeks <= MAX_SERIES_WEEKS:
        raise BookingError("weeks", f"use between 1 and {MAX_SERIES_WEEKS} weeks")
    aware_utc(first_local_start, "first_local_start")
    async with sessionmaker() as db:
        therapist = await db.get(Therapist, therapist_id)
    if therapist is None:
        raise NotFound("therapist")
    zone = ZoneInfo(therapist.timezone)
    first = first_local_start.astimezone(zone)
    starts = availability.weekly_series(first, weeks)
    series = AppointmentSeries(
        therapist_id=therapist_id,
        client_id=client_id,
        timezone=therapist.timezone,
        local_time=first.time().replace(fold=0),
        weeks=weeks,
    )
    return await _create(
        sessionmaker,
        _Order(therapist_id, client_id, session_type_id, starts, series),
        now=now,
        reminder_hours=reminder_hours,
        source_ip=source_ip,
    )


async def move_occurrence(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    appointment_id: int,
    new_start: dt.datetime,
    now: dt.datetime,
    join_grace: dt.timedelta,
    reminder_hours: Sequence[int] = outbox.DEFAULT_REMINDER_HOURS,
    source_ip: str | None = None,
) -> None:
    """Move one scheduled appointment (of a series or not) to ``new_start``, same length.

    Only this appointment changes.  As with a client's reschedule: ``sequence`` goes up,
    manage links are revoked, join links are kept (and extended) only under the
    therapist's ``keep_join_link_on_reschedule``, and reminders are re-queued.
    Raises ``NotFound("appointment")``, ``BookingError`` ("start"; "appointment" if it is
    no longer scheduled) or ``SlotTaken(start=...)``.
    """
    new_start = aware_utc(new_start, "start")
    if new_start <= now:
        raise BookingError("start", "must be in the future")
    try:
        async with store.write_transaction(sessionmaker) as db:
            therapist, appointment = await _own_scheduled(db, therapist_id, appointment_id)
            end = new_start + (appointment.ends_at - appointment.starts_at)
            buffer = dt.timedelta(minutes=appointment.buffer_minutes)
            if await store.collision(
                db, therapist_id, new_start, end, buffer, ignore=(appointment.id,)
            ):
                raise SlotTaken([], start=new_start)
            appointment.starts_at, appointment.ends_at = new_start, end
            appointment.sequence += 1
            await db.flush()
            await records.revoke_manage_tokens(db, appointment.id, now)
            if therapist.keep_join_link_on_reschedule:
                await records.extend_join_tokens(db, appointment, join_grace=join_grace)
            else:
                await records.revoke_join_tokens(db, appointment.id, now)
            _audit(db, now, therapist_id, "appointment_moved", appointment.id, source_ip)
            await outbox.on_rescheduled(db, appointment, now, reminder_hours=reminder_hours)
    except IntegrityError as exc:
        if not store.is_overlap_violation(exc):
            raise
        raise SlotTaken([], start=new_start) from None


async def cancel_occurrence(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    appointment_id: int,
    now: dt.datetime,
    source_ip: str | None = None,
) -> None:
    """Cancel one scheduled appointment (only that one, even within a series).

    Raises ``NotFound("appointment")`` if it is not the therapist's, or
    ``BookingError("appointment")`` if it is no longer scheduled.
    """
    async with store.write_transaction(sessionmaker) as db:
        _, appointment = await _own_scheduled(db, therapist_id, appointment_id)
        await _cancel(db, appointment, therapist_id, now, source_ip)


async def cancel_rest_of_series(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    from_appointment_id: int,
    now: dt.datetime,
    source_ip: str | None = None,
) -> list[int]:
    """Cancel this occurrence and every later scheduled one of its series; returns their ids.

    Earlier occurrences stay as they are; this one may itself be cancelled already.
    Raises ``NotFound("appointment")`` if the appointment is not the therapist's, or
    ``BookingError("appointment")`` if it belongs to no series.
    """
    async with store.write_transaction(sessionmaker) as db:
        _, first = await _own_scheduled(db, therapist_id, from_appointment_id, scheduled_only=False)
        if first.series_id is None:
            raise BookingError("appointment", "is not part of a series")
        rest = await db.scalars(
            select(Appointment)
            .where(
                Appointment.series_id == first.series_id,
                Appointment.therapist_id == therapist_id,
                Appointment.status == AppointmentStatus.SCHEDULED.value,
                Appointment.starts_at >= first.starts_at,
            )
            .order_by(Appointment.starts_at)
        )
        cancelled = []
        for appointment in rest:
            await _cancel(db, appointment, therapist_id, now, source_ip)
            cancelled.append(appointment.id)
        return cancelled


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Order:
    """Appointments to create: one per start, in ``series`` if given."""

    therapist_id: int
    client_id: int
    session_type_id: int
    starts: list[dt.datetime]
    series: AppointmentSeries | None


async def _create(
    sessionmaker: async_sessionmaker[AsyncSession],
    order: _Order,
    *,
    now: dt.datetime,
    reminder_hours: Sequence[int],
    source_ip: str | None,
) -> list[int]:
    """Create one appointment per start, or none; the first gets the confirmation e-mail."""
    therapist_id, client_id, starts, series = (
        order.therapist_id,
        order.client_id,
        order.starts,
        order.series,
    )
    if starts and starts[0] <= now:
        raise BookingError("first_local_start" if series else "start", "must be in the future")
    try:
        async with store.write_transaction(sessionmaker) as db:
            therapist = await store.lock_therapist(db, therapist_id)
            if therapist is None:
                raise NotFound("therapist")
            client = await db.scalar(
                select(Client).where(Client.id == client_id, Client.therapist_id == therapist_id)
            )
            if client is None:
                raise NotFound("client")
            kind = await store.session_type(
                db, therapist_id, order.session_type_id, public_only=False
            )
            if kind is None:
                raise NotFound("session type")
            appointments = await _add_appointments(
                db, therapist_id, client_id, kind, starts, series
            )
            first, *later = appointments
            await outbox.on_booked(db, first, now, reminder_hours=reminder_hours)
            for appointment in later:
                await outbox.schedule_reminders(db, appointment, now, reminder_hours)
            action, record = (
                ("series_created", ("series", series.id))
                if series
                else ("appointment_created", ("appointment", first.id))
            )
            audit.record(
                db,
                at=now,
                actor=Actor.THERAPIST,
                actor_id=therapist_id,
                action=action,
                record_type=record[0],
                record_id=record[1],
                source_ip=source_ip,
            )
            return [a.id for a in appointments]
    except IntegrityError as exc:
        if not store.is_overlap_violation(exc):
            raise
        raise SlotTaken([]) from None


async def _add_appointments(
    db: AsyncSession,
    therapist_id: int,
    client_id: int,
    kind: SessionType,
    starts: list[dt.datetime],
    series: AppointmentSeries | None,
) -> list[Appointment]:
    duration = dt.timedelta(minutes=kind.duration_minutes)
    buffer = dt.timedelta(minutes=kind.buffer_minutes)
    for week, start in enumerate(starts, start=1):
        if await store.collision(db, therapist_id, start, start + duration, buffer):
            raise SlotTaken([], start=start, occurrence=week if series else None)
    if series is not None:
        db.add(series)
        await db.flush()
    appointments = [
        Appointment(
            therapist_id=therapist_id,
            client_id=client_id,
            starts_at=start,
            ends_at=start + duration,
            status=AppointmentStatus.SCHEDULED.value,
            session_type_id=kind.id,
            series_id=series.id if series else None,
            buffer_minutes=kind.buffer_minutes,
        )
        for start in starts
    ]
    db.add_all(appointments)
    await db.flush()
    return appointments


async def _own_scheduled(
    db: AsyncSession, therapist_id: int, appointment_id: int, *, scheduled_only: bool = True
) -> tuple[Therapist, Appointment]:
    """The therapist (locked) and their (scheduled) appointment, or ``NotFound``."""
    therapist = await store.lock_therapist(db, therapist_id)
    appointment = await db.scalar(
        select(Appointment)
        .where(Appointment.id == appointment_id, Appointment.therapist_id == therapist_id)
        .execution_options(populate_existing=True)
    )
    if therapist is None or appointment is None:
        raise NotFound("appointment")
    if scheduled_only and appointment.state is not AppointmentStatus.SCHEDULED:
        raise BookingError("appointment", f"is {appointment.state.value}, not scheduled")
    return therapist, appointment


async def _cancel(
    db: AsyncSession,
    appointment: Appointment,
    therapist_id: int,
    now: dt.datetime,
    source_ip: str | None,
) -> None:
    appointment.transition_to(AppointmentStatus.CANCELLED)
    appointment.sequence += 1
    await db.flush()
    _audit(db, now, therapist_id, "appointment_cancelled", appointment.id, source_ip)
    await outbox.on_cancelled(db, appointment, now)


def _audit(
    db: AsyncSession,
    now: dt.datetime,
    therapist_id: int,
    action: str,
    appointment_id: int,
    source_ip: str | None,
) -> None:
    audit.record(
        db,
        at=now,
        actor=Actor.THERAPIST,
        actor_id=therapist_id,
        action=action,
        record_type="appointment",
        record_id=appointment_id,
        source_ip=source_ip,
    )
