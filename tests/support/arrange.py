"""Records a test needs, written straight to the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts, worksheet_store
from server.models import (
    Appointment,
    AppointmentStatus,
    Client,
    JoinToken,
    SessionType,
    Therapist,
    WeeklyHours,
)
from server.tokens import new_token, token_hash
from server.worksheet_models import Homework, Worksheet
from server.worksheets import builtin_template
from tests.support.leaks import remember


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
    remember(token, client_name, client_email)
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


#: Monday to Friday, 09:00-17:00 on the therapist's clock.
OFFICE_HOURS: dict[int, list[tuple[dt.time, dt.time]]] = {
    weekday: [(dt.time(9), dt.time(17))] for weekday in range(5)
}


@dataclass(frozen=True)
class Bookable:
    """A therapist with a public page, weekly hours and the default session types."""

    therapist: Therapist
    consultation: SessionType  # 15 min, no buffer
    individual: SessionType  # 50 min, 10 min buffer

    @property
    def id(self) -> int:
        return self.therapist.id

    @property
    def slug(self) -> str:
        assert self.therapist.slug is not None
        return self.therapist.slug


async def make_bookable_therapist(
    db: async_sessionmaker[AsyncSession],
    *,
    slug: str = "sam-rivera",
    email: str = "sam.rivera@example.com",
    name: str = "Sam Rivera",
    timezone: str = "America/New_York",
    hours: Mapping[int, Sequence[tuple[dt.time, dt.time]]] | None = None,
    contact_text: str = "Call the practice on +1 555 0100.",
    reschedule_cutoff_hours: int = 24,
    keep_join_link_on_reschedule: bool = False,
) -> Bookable:
    """A therapist who takes bookings at ``/book/<slug>`` (no password: nobody signs in)."""
    async with db() as session, session.begin():
        therapist = Therapist(
            email=email,
            display_name=name,
            timezone=timezone,
            password_hash="",
            slug=slug,
            contact_text=contact_text,
            reschedule_cutoff_hours=reschedule_cutoff_hours,
            keep_join_link_on_reschedule=keep_join_link_on_reschedule,
        )
        session.add(therapist)
        await session.flush()
        consultation, individual = await accounts.add_default_session_types(session, therapist.id)
        for weekday, ranges in (OFFICE_HOURS if hours is None else hours).items():
            for start, end in ranges:
                session.add(
                    WeeklyHours(
                        therapist_id=therapist.id, weekday=weekday, start_time=start, end_time=end
                    )
                )
    return Bookable(therapist, consultation, individual)


async def make_client(
    db: async_sessionmaker[AsyncSession],
    therapist_id: int,
    *,
    name: str = "Alex Morgan",
    email: str = "alex.morgan@example.com",
) -> Client:
    remember(name, email)
    async with db() as session, session.begin():
        client = Client(therapist_id=therapist_id, name=name, email=email)
        session.add(client)
    return client


async def make_worksheet(
    db: async_sessionmaker[AsyncSession],
    therapist_id: int,
    client_id: int,
    *,
    now: dt.datetime,
    template_key: str = "weekly-check-in",
) -> int:
    """A worksheet of ``client_id``'s from a built-in template, outside any appointment;
    its id."""
    async with db() as session, session.begin():
        worksheet = await worksheet_store.create_worksheet(
            session,
            therapist_id=therapist_id,
            client_id=client_id,
            appointment_id=None,
            template_key=template_key,
            template=builtin_template(template_key),
            now=now,
        )
    return worksheet.id


async def stored_worksheet(db: async_sessionmaker[AsyncSession], worksheet_id: int) -> Worksheet:
    """The worksheet's row as stored now (it must exist)."""
    async with db() as session:
        row = await session.get(Worksheet, worksheet_id)
    assert row is not None
    return row


async def make_homework(
    db: async_sessionmaker[AsyncSession],
    therapist_id: int,
    client_id: int,
    *,
    now: dt.datetime,
    expires_in: dt.timedelta,
    template_key: str = "weekly-check-in",
) -> tuple[Homework, str]:
    """A new worksheet given as homework, and a working link token for it (as if
    e-mailed)."""
    worksheet_id = await make_worksheet(
        db, therapist_id, client_id, now=now, template_key=template_key
    )
    token = new_token()
    remember(token)
    async with db() as session, session.begin():
        homework = Homework(
            worksheet_id=worksheet_id,
            therapist_id=therapist_id,
            client_id=client_id,
            due_on=None,
            token_hash=token_hash(token),
            expires_at=now + expires_in,
            assigned_at=now,
        )
        session.add(homework)
    return homework, token


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> dt.datetime:
    """An aware wall-clock time in ``zone``: ``local("America/New_York", 2026, 3, 4, 10)``."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))
