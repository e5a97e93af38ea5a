"""Free slots, read from the database and computed by ``server.availability``.

``Schedule`` is everything slot computation needs for a stretch of days -- weekly hours,
date overrides, live appointments with their buffers -- loaded once.  ``require_free``
checks one start inside a write transaction (see ``server.booking_store``) with a handful
of small queries over a few days around it, and says exactly why when it is not free.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import availability
from server import booking_store as store
from server.availability import Busy, Slot
from server.booking_rules import BookingError, BookingProblem, NotFound, SlotTaken
from server.models import SessionType, Therapist

#: The days either side of a start whose slots decide whether it is free: any.
NEAR = dt.timedelta(days=1)
#: How far from a taken start to look for the nearest free ones.
NEAREST_REACH = dt.timedelta(days=7)
NEAREST_COUNT = 3

Rules = availability.SessionTypeRules


@dataclass(frozen=True)
class Schedule:
    """A therapist's hours, overrides and busy time, enough to compute slots for ``rules``."""

    hours: availability.WeeklyHours
    overrides: list[availability.DateOverride]
    busy: list[Busy]

    def slots(self, rules: Rules, now: dt.datetime, *, include_busy: bool = True) -> list[Slot]:
        return availability.available_slots(
            hours=self.hours,
            rules=rules,
            now=now,
            busy=self.busy if include_busy else (),
            overrides=self.overrides,
        )


async def load_schedule(
    db: AsyncSession,
    therapist: Therapist,
    rules: Rules,
    now: dt.datetime,
    *,
    ignore_appointment_id: int | None = None,
    lock: bool = False,
) -> Schedule:
    """What computing ``rules``' slots needs, from ``now + min_notice`` to ``now + horizon``.

    With ``lock``, the therapist's calendar is locked (``store.lock_therapist``) after their
    hours are read and before their appointments are, to hold the lock only as long as needed.
    """
    zone = ZoneInfo(therapist.timezone)
    earliest, latest = now + rules.min_notice, now + rules.horizon
    first_day = earliest.astimezone(zone).date() - dt.timedelta(days=1)
    last_day = latest.astimezone(zone).date() + dt.timedelta(days=1)
    hours = await store.weekly_hours(db, therapist)
    overrides = await store.date_overrides(db, therapist.id, first_day, last_day)
    if lock:
        await store.lock_therapist(db, therapist.id)
    ignore = () if ignore_appointment_id is None else (ignore_appointment_id,)
    busy = await store.busy_between(
        db, therapist.id, earliest, latest + rules.duration + rules.buffer_after, ignore=ignore
    )
    return Schedule(hours, overrides, busy)


def narrowed(rules: Rules, now: dt.datetime, around: dt.datetime, reach: dt.timedelta) -> Rules:
    """``rules`` keeping only starts within ``reach`` of ``around``: each of those is offered
    exactly when it is in the full list, at a fraction of the cost.  (An empty window has a
    horizon shorter than its notice, and no slots.)"""
    return dataclasses.replace(
        rules,
        min_notice=max(rules.min_notice, around - reach - now),
        horizon=max(dt.timedelta(0), min(rules.horizon, around + reach - now)),
    )


async def offered_slots(
    db: AsyncSession,
    therapist: Therapist,
    rules: Rules,
    now: dt.datetime,
    *,
    ignore_appointment_id: int | None = None,
) -> list[Slot]:
    """Every free slot for ``rules`` from ``now`` on, sorted by start."""
    schedule = await load_schedule(
        db, therapist, rules, now, ignore_appointment_id=ignore_appointment_id
    )
    return schedule.slots(rules, now)


async def slots_for(
    db: AsyncSession,
    therapist: Therapist,
    kind: SessionType,
    now: dt.datetime,
    *,
    ignore_appointment_id: int | None = None,
) -> list[Slot]:
    """Every free slot of ``kind`` with ``therapist`` from ``now`` on, sorted by start.

    Reads the weekly hours, the date overrides and the live appointments with their
    buffers.  ``ignore_appointment_id`` leaves one appointment out (the one being moved).
    """
    return await offered_slots(
        db, therapist, store.rules_of(kind), now, ignore_appointment_id=ignore_appointment_id
    )


async def require_free(
    db: AsyncSession,
    therapist: Therapist,
    rules: Rules,
    start: dt.datetime,
    now: dt.datetime,
    *,
    moving: int | None = None,
    lock: bool = False,
) -> None:
    """Return if ``start`` is a free slot now (``moving``: the appointment being moved).

    Else raise ``BookingError("start")`` if it is too soon, too far ahead or never offered,
    or ``SlotTaken`` with the nearest free slots (within a week either side).  ``lock``:
    take the therapist's calendar lock on the way, as late as possible (``load_schedule``);
    without it the caller must hold it already.
    """
    if start < now + rules.min_notice:
        hours = rules.min_notice / dt.timedelta(hours=1)
        raise BookingError("start", f"must be at least {hours:g} hours from now")
    if start > now + rules.horizon:
        raise BookingError("start", f"must be within {rules.horizon.days} days from now")
    wide = narrowed(rules, now, start, NEAREST_REACH)
    schedule = await load_schedule(
        db, therapist, wide, now, ignore_appointment_id=moving, lock=lock
    )
    near = narrowed(rules, now, start, NEAR)
    free = schedule.slots(near, now)
    if any(slot.start == start for slot in free):
        return
    if not any(slot.start == start for slot in schedule.slots(near, now, include_busy=False)):
        raise BookingError("start", "is not one of the times offered")
    if len(free) < NEAREST_COUNT:
        free = schedule.slots(wide, now)
    raise SlotTaken(availability.nearest_free(free, start, NEAREST_COUNT))


async def explain_taken(
    sessionmaker: async_sessionmaker[AsyncSession],
    therapist_id: int,
    rules: Rules,
    start: dt.datetime,
    now: dt.datetime,
    *,
    moving: int | None = None,
) -> BookingProblem:
    """Why ``start`` was refused by the database itself, read in a transaction of its own."""
    async with sessionmaker() as db:
        therapist = await db.get(Therapist, therapist_id)
        if therapist is None:
            return NotFound("therapist")
        try:
            await require_free(db, therapist, rules, start, now, moving=moving)
        except BookingProblem as problem:
            return problem
    return SlotTaken([])
