"""The booking service's transactions and small query functions (each takes a session).

Two live appointments of one therapist never overlap.  Every change that could make them
overlap runs in ``write_transaction`` and calls ``lock_therapist`` before it checks:

* On SQLite the transaction starts with ``BEGIN IMMEDIATE``, which takes the database's
  write lock before the first read, so check-and-write is serialised across every
  connection and process (waiting up to the ``busy_timeout`` set in ``server.db``).
* On PostgreSQL ``lock_therapist`` takes the therapist's row ``FOR NO KEY UPDATE``:
  changes to one therapist's calendar queue behind each other, others run in parallel.
  This also covers the buffers after appointments, which the ``appointments_no_overlap``
  exclusion constraint (the last line of defence, see ``is_overlap_violation``) cannot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import availability
from server.availability import Busy
from server.models import (
    Appointment,
    AppointmentStatus,
    DateOverride,
    SessionType,
    Therapist,
    WeeklyHours,
)
from server.slots import merged

OVERLAP_CONSTRAINT = "appointments_no_overlap"
SLUG_MAX = 64
#: What a slug may contain, generously: URL-safe ASCII (the settings page is stricter).
_SLUG = re.compile(r"[A-Za-z0-9._~-]{1,64}")
#: The longest buffer a session type may have (see ``SessionType``): how far back to look.
MAX_BUFFER = dt.timedelta(minutes=240)
_LIVE = Appointment.status != AppointmentStatus.CANCELLED.value


#: One asyncio lock per SQLite engine: writers of this process queue here, so they hand the
#: database's write lock on at once instead of polling for it (``busy_timeout``), which
#: still settles contention with other processes.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def write_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in one transaction that may check and then write; commits on success.

    On SQLite it holds the database's write lock from its first statement on.
    """
    async with sessionmaker() as db:
        engine = db.get_bind()
        if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
            async with db.begin():
                yield db
            return
        writers = _SQLITE_WRITERS.setdefault(engine, asyncio.Lock())
        async with writers, db.begin():
            connection = await db.connection()
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield db


async def lock_therapist(db: AsyncSession, therapist_id: int) -> Therapist | None:
    """The therapist, locked against concurrent calendar changes until the transaction ends."""
    statement = select(Therapist).where(Therapist.id == therapist_id)
    if db.get_bind().dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already serialises
        statement = statement.with_for_update(key_share=True)
    return await db.scalar(statement.execution_options(populate_existing=True))


def is_overlap_violation(exc: IntegrityError) -> bool:
    """Whether ``exc`` is PostgreSQL refusing two overlapping live appointments."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate == "23P01" or OVERLAP_CONSTRAINT in str(orig)


# --- therapists, session types and their schedule -------------------------------------------


async def public_therapist(db: AsyncSession, slug: str) -> Therapist | None:
    """The active therapist whose public booking page is ``/book/<slug>`` (in any case).

    Anything that cannot be a slug is no therapist's, and never reaches the database
    (PostgreSQL refuses a NUL in text, for one).
    """
    if not _SLUG.fullmatch(slug):
        return None
    return await db.scalar(
        select(Therapist).where(Therapist.slug == slug.lower(), Therapist.is_active.is_(True))
    )


async def session_types(
    db: AsyncSession, therapist_id: int, *, public_only: bool
) -> list[SessionType]:
    """The therapist's active session types in display order (only public ones if asked)."""
    statement = select(SessionType).where(
        SessionType.therapist_id == therapist_id, SessionType.is_active.is_(True)
    )
    if public_only:
        statement = statement.where(SessionType.is_public.is_(True))
    return list(await db.scalars(statement.order_by(SessionType.position, SessionType.id)))


async def session_type(
    db: AsyncSession, therapist_id: int, session_type_id: int, *, public_only: bool
) -> SessionType | None:
    """One active session type of the therapist's, or ``None``."""
    statement = select(SessionType).where(
        SessionType.id == session_type_id,
        SessionType.therapist_id == therapist_id,
        SessionType.is_active.is_(True),
    )
    if public_only:
        statement = statement.where(SessionType.is_public.is_(True))
    return await db.scalar(statement)


def rules_of(kind: SessionType) -> availability.SessionTypeRules:
    return availability.SessionTypeRules(
        duration=dt.timedelta(minutes=kind.duration_minutes),
        buffer_after=dt.timedelta(minutes=kind.buffer_minutes),
        min_notice=dt.timedelta(minutes=kind.min_notice_minutes),
        horizon=dt.timedelta(days=kind.horizon_days),
    )


def rules_for_appointment(
    appointment: Appointment, kind: SessionType | None
) -> availability.SessionTypeRules:
    """Rules for moving ``appointment``: its own length and buffer, its type's notice."""
    base = rules_of(kind) if kind is not None else None
    return availability.SessionTypeRules(
        duration=appointment.ends_at - appointment.starts_at,
        buffer_after=dt.timedelta(minutes=appointment.buffer_minutes),
        min_notice=base.min_notice if base else dt.timedelta(hours=24),
        horizon=base.horizon if base else dt.timedelta(days=60),
    )


async def weekly_hours(db: AsyncSession, therapist: Therapist) -> availability.WeeklyHours:
    """The therapist's regular hours (overlapping stored ranges are merged, not refused)."""
    rows = await db.scalars(select(WeeklyHours).where(WeeklyHours.therapist_id == therapist.id))
    days: dict[int, list[availability.WallRange]] = defaultdict(list)
    for row in rows:
        days[row.weekday].append((row.start_time, row.end_time))
    return availability.WeeklyHours.from_mapping(
        ZoneInfo(therapist.timezone), {day: merged(ranges) for day, ranges in days.items()}
    )


async def date_overrides(
    db: AsyncSession, therapist_id: int, first: dt.date, last: dt.date
) -> list[availability.DateOverride]:
    """The overrides for local dates ``first..last``; a date's rows become one override.

    A date with an ``off`` row is off; otherwise a ``replace`` row wins over ``add`` rows.
    """
    rows = await db.scalars(
        select(DateOverride).where(
            DateOverride.therapist_id == therapist_id,
            DateOverride.date >= first,
            DateOverride.date <= last,
        )
    )
    by_date: dict[dt.date, list[DateOverride]] = defaultdict(list)
    for row in rows:
        by_date[row.date].append(row)
    overrides = []
    for date, group in sorted(by_date.items()):
        modes = {row.mode for row in group}
        mode: availability.OverrideMode = (
            "off" if "off" in modes else "replace" if "replace" in modes else "add"
        )
        ranges = merged(
            (row.start_time, row.end_time)
            for row in group
            if row.mode == mode
            and row.start_time
            and row.end_time
            and row.start_time < row.end_time
        )
        if mode == "off" or ranges:
            overrides.append(availability.DateOverride(date, mode, () if mode == "off" else ranges))
    return overrides


async def busy_between(
    db: AsyncSession,
    therapist_id: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    ignore: Iterable[int] = (),
) -> list[Busy]:
    """The therapist's live appointments (with their buffers) that reach into ``[start, end)``."""
    ignored = list(ignore)
    statement = select(Appointment).where(
        Appointment.therapist_id == therapist_id,
        _LIVE,
        Appointment.starts_at < end,
        Appointment.ends_at > start - MAX_BUFFER,
    )
    if ignored:
        statement = statement.where(Appointment.id.not_in(ignored))
    return [
        Busy(row.starts_at, row.ends_at, dt.timedelta(minutes=row.buffer_minutes))
        for row in await db.scalars(statement)
    ]


async def collision(
    db: AsyncSession,
    therapist_id: int,
    start: dt.datetime,
    end: dt.datetime,
    buffer: dt.timedelta,
    *,
    ignore: Iterable[int] = (),
) -> bool:
    """Whether ``[start, end + buffer)`` meets a live appointment or the buffer after one."""
    for busy in await busy_between(db, therapist_id, start, end + buffer, ignore=ignore):
        if busy.start < end + buffer and start < busy.end + busy.buffer_after:
            return True
    return False
