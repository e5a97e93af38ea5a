"""The therapist's calendar, read: a week of appointments, and one client's record.

Re-exported by ``server.booking``.  Both only read, and only the given therapist's records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.models import Appointment, AppointmentStatus, Client, Therapist


@dataclass(frozen=True)
class ClientRecord:
    """A client with their appointments: ``upcoming`` soonest first (including one in
    progress), ``past`` latest first.  Both include cancelled ones; check ``.state``."""

    client: Client
    upcoming: list[Appointment]
    past: list[Appointment]


async def week_of(
    db: AsyncSession,
    therapist: Therapist,
    monday_local: dt.date,
    *,
    include_cancelled: bool = False,
) -> list[Appointment]:
    """The therapist's appointments starting in the 7 local days from ``monday_local``.

    Days are the therapist's (midnight to midnight on their clock, 23 or 25 hours around a
    daylight-saving change).  Sorted by start, with ``client`` loaded.
    """
    zone = ZoneInfo(therapist.timezone)
    start = dt.datetime.combine(monday_local, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(monday_local + dt.timedelta(days=7), dt.time(), tzinfo=zone)
    statement = (
        select(Appointment)
        .where(
            Appointment.therapist_id == therapist.id,
            Appointment.starts_at >= start.astimezone(dt.UTC),
            Appointment.starts_at < end.astimezone(dt.UTC),
        )
        .options(selectinload(Appointment.client))
        .order_by(Appointment.starts_at, Appointment.id)
    )
    if not include_cancelled:
        statement = statement.where(Appointment.status != AppointmentStatus.CANCELLED.value)
    return list(await db.scalars(statement))


async def client_record(
    db: AsyncSession, therapist_id: int, client_id: int, now: dt.datetime
) -> ClientRecord | None:
    """The therapist's client and their appointments, or ``None`` if not the therapist's."""
    client = await db.scalar(
        select(Client).where(Client.id == client_id, Client.therapist_id == therapist_id)
    )
    if client is None:
        return None
    appointments = list(
        await db.scalars(
            select(Appointment)
            .where(Appointment.client_id == client_id, Appointment.therapist_id == therapist_id)
            .order_by(Appointment.starts_at, Appointment.id)
        )
    )
    upcoming = [a for a in appointments if a.ends_at > now]
    past = [a for a in reversed(appointments) if a.ends_at <= now]
    return ClientRecord(client, upcoming, past)
