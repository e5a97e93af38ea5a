"""Records a test needs, written straight to the database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts
from server.models import Appointment, AppointmentStatus, Client, JoinToken, Therapist
from server.tokens import new_token, token_hash


async def make_therapist(
    db: async_sessionmaker[AsyncSession],
    *,
    email: str,
    password: str,
    name: str = "Sam Rivera",
    timezone: str = "America/New_York",
    welcome: str = "",
) -> Therapist:
    async with db() as session, session.begin():
        therapist = await accounts.create_therapist(
            session, email=email, name=name, timezone=timezone, password=password
        )
        therapist.welcome_text = welcome
        return therapist


async def make_appointment(
    db: async_sessionmaker[AsyncSession],
    therapist_id: int,
    *,
    starts_at: dt.datetime,
    minutes: int = 50,
    client_name: str = "Alex Morgan",
    client_email: str = "alex.morgan@example.com",
    status: AppointmentStatus = AppointmentStatus.SCHEDULED,
    token_valid_for: dt.timedelta = dt.timedelta(hours=2),
) -> tuple[Appointment, str]:
    """A client with one appointment, and the plain join token for it."""
    token = new_token()
    async with db() as session, session.begin():
        client = Client(therapist_id=therapist_id, name=client_name, email=client_email)
        session.add(client)
        await session.flush()
        appointment = Appointment(
            therapist_id=therapist_id,
            client_id=client.id,
            starts_at=starts_at,
            ends_at=starts_at + dt.timedelta(minutes=minutes),
            status=status.value,
        )
        session.add(appointment)
        await session.flush()
        session.add(
            JoinToken(
                appointment_id=appointment.id,
                token_hash=token_hash(token),
                expires_at=appointment.ends_at + token_valid_for,
            )
        )
    return appointment, token
