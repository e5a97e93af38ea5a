"""Bookable slots, computed from a therapist's hours as one pure function.

Booking tools go wrong in two well-known ways: appointments move by an hour when
daylight saving starts or ends, and times are shown in the wrong zone.  Both come
from doing arithmetic on wall-clock times, or on instants, where the other was
meant.  This module keeps the two apart:

* A therapist's hours are *wall-clock* ranges ("Mondays 09:00-17:00") in their
  IANA zone.  They are turned into instants one local date at a time, so 09:00
  stays 09:00 on both sides of a change and the UTC instant moves instead.
* Everything that comes out, and every appointment that goes in, is an aware
  UTC instant.  Durations, buffers, notice and horizon are measured in real
  elapsed time: a 50-minute session lasts 50 minutes even on the night the
  clocks change.

Two wall-clock times need a rule, and the rules are the ones RFC 5545 uses for a
``DTSTART`` with a ``TZID``, so a slot and the calendar invite sent for it agree:

* A wall time that does not exist (the spring-forward gap) is never offered as a
  start.  A slot may still *run through* the gap: 01:45 + 30 minutes ends at
  03:15 on a night the clocks jump from 02:00 to 03:00.
* A wall time that occurs twice (fall back) means its first occurrence
  (``fold=0``).  Hence no two slots on one day share a wall-clock start: the
  client who picks "02:30" gets exactly one 02:30.  The second occurrence of the
  repeated hour is never a start, though a slot may run into it.

Every slot stays inside one of the day's hours for its whole length -- checking
only its two ends is not enough on a fall-back night, when the clock runs
backwards inside the slot.  Intervals are half-open: a slot may end exactly when
a busy interval (or its buffer) begins, and begin exactly when one ends.

Slot computation sorts the busy intervals once and bisects for each candidate,
so a year of appointments costs milliseconds, not ``slots x appointments``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from server.slots import (
    Blocked,
    WallRange,
    existing_instant,
    merged,
    stays_within,
    validated_ranges,
    wall_grid,
)

__all__ = [
    "WEEKDAY_NAMES",
    "Busy",
    "DateOverride",
    "OverrideMode",
    "SessionTypeRules",
    "Slot",
    "WallRange",
    "WeeklyHours",
    "available_slots",
    "nearest_free",
    "weekly_series",
]

OverrideMode = Literal["off", "replace", "add"]

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_ZERO = dt.timedelta(0)
_MIN_STEP = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class WeeklyHours:
    """A therapist's regular hours: ``days[0]`` is Monday, ``days[6]`` Sunday.

    Each day holds wall-clock ranges in ``zone``.  Ranges are sorted on
    construction; an empty, reversed or overlapping range is refused with a
    ``ValueError`` naming the weekday, because a silently "fixed" schedule is a
    schedule the therapist did not set.  Ranges cannot cross midnight (a time of
    day cannot say "24:00"): the latest a day can end is 23:59.
    """

    zone: ZoneInfo
    days: tuple[tuple[WallRange, ...], ...] = ((),) * 7

    def __post_init__(self) -> None:
        if not isinstance(self.zone, ZoneInfo):
            raise TypeError("zone must be a zoneinfo.ZoneInfo")
        if len(self.days) != 7:
            raise ValueError(f"weekly hours need 7 days, Monday first, not {len(self.days)}")
        days = tuple(
            validated_ranges(ranges, WEEKDAY_NAMES[weekday])
            for weekday, ranges in enumerate(self.days)
        )
        object.__setattr__(self, "days", days)

    @classmethod
    def from_mapping(
        cls, zone: ZoneInfo | str, days: Mapping[int, Iterable[WallRange]]
    ) -> WeeklyHours:
        """Build from ``{weekday: ranges}`` (0 = Monday); missing weekdays are days off."""
        unknown = sorted(set(days) - set(range(7)))
        if unknown:
            raise ValueError(f"weekdays are 0 (Monday) to 6 (Sunday), not {unknown}")
        tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        return cls(tz, tuple(tuple(days.get(weekday, ())) for weekday in range(7)))


@dataclass(frozen=True)
class DateOverride:
    """A change to the regular hours on one local date.

    ``"off"`` takes the day off (no ranges); ``"replace"`` uses ``ranges``
    instead of the weekly hours; ``"add"`` adds ``ranges`` to them.  Added
    ranges may overlap or touch the weekly ones: they are merged, so "09:00-12:00
    plus 12:00-14:00" is one stretch in which a slot may cross 12:00.
    """

    date: dt.date
    mode: OverrideMode
    ranges: tuple[WallRange, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.date, dt.datetime) or not isinstance(self.date, dt.date):
            raise TypeError("an override's date must be a datetime.date (a local date)")
        where = f"override for {self.date.isoformat()}"
        if self.mode not in ("off", "replace", "add"):
            raise ValueError(f"{where}: mode must be 'off', 'replace' or 'add', not {self.mode!r}")
        if self.mode == "off" and self.ranges:
            raise ValueError(f"{where}: a day off takes no ranges")
        if self.mode != "off" and not self.ranges:
            raise ValueError(f"{where}: mode {self.mode!r} needs at least one range")
        object.__setattr__(self, "ranges", validated_ranges(self.ranges, where))


@dataclass(frozen=True, kw_only=True)
class SessionTypeRules:
    """How one kind of session is booked.

    ``duration`` and ``buffer_after`` are elapsed time.  ``min_notice`` and
    ``horizon`` are measured from ``now``: no slot starts before
    ``now + min_notice`` or after ``now + horizon``.  Starts lie on a wall-clock
    grid of ``step`` from the start of each range, so clients see tidy times
    (09:00, 09:15, ...) whatever the zone's offset.
    """

    duration: dt.timedelta
    buffer_after: dt.timedelta
    min_notice: dt.timedelta
    horizon: dt.timedelta
    step: dt.timedelta = dt.timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.duration <= _ZERO:
            raise ValueError("a session's duration must be positive")
        if self.step < _MIN_STEP:
            raise ValueError("the slot step must be at least one minute")
        for name in ("buffer_after", "min_notice", "horizon"):
            if getattr(self, name) < _ZERO:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True)
class Busy:
    """Time already taken, such as an appointment, with the buffer that follows it.

    Each appointment carries its own buffer, since session types differ; the
    interval blocks ``[start, end + buffer_after)``.
    """

    start: dt.datetime
    end: dt.datetime
    buffer_after: dt.timedelta = _ZERO

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "a busy interval's start"))
        object.__setattr__(self, "end", _utc(self.end, "a busy interval's end"))
        if self.end <= self.start:
            raise ValueError(f"busy interval {self.start}..{self.end} must end after it starts")
        if self.buffer_after < _ZERO:
            raise ValueError("a busy interval's buffer must not be negative")


@dataclass(frozen=True, order=True)
class Slot:
    """A bookable time: aware UTC instants, ``end - start`` equal to the duration."""

    start: dt.datetime
    end: dt.datetime


def available_slots(
    *,
    hours: WeeklyHours,
    rules: SessionTypeRules,
    now: dt.datetime,
    busy: Iterable[Busy] = (),
    overrides: Iterable[DateOverride] = (),
) -> list[Slot]:
    """Every slot a client may book, sorted by start.

    A slot is offered when its start is on the day's wall-clock grid and exists
    in the therapist's zone, it stays inside one of the day's hours from start to
    end, it starts within ``[now + min_notice, now + horizon]``, and neither it
    nor its own trailing buffer overlaps a busy interval or that interval's
    buffer.  Two overrides for the same date are refused rather than guessed at.
    """
    now = _utc(now, "now")
    earliest, latest = now + rules.min_notice, now + rules.horizon
    if latest < earliest:
        return []
    by_date: dict[dt.date, DateOverride] = {}
    for override in overrides:
        if override.date in by_date:
            raise ValueError(f"two overrides for {override.date.isoformat()}")
        by_date[override.date] = override
    blocked = Blocked.of((b.start, b.end + b.buffer_after) for b in busy)
    zone = hours.zone
    slots: list[Slot] = []
    day = earliest.astimezone(zone).date()
    last_day = latest.astimezone(zone).date()
    while day <= last_day:
        for range_start, range_end in _hours_on(day, hours, by_date):
            lowest = dt.datetime.combine(day, range_start)
            highest = dt.datetime.combine(day, range_end)
            for wall in wall_grid(lowest, highest, rules.step):
                start = existing_instant(wall, zone)
                if start is None or start < earliest:
                    continue
                if start > latest:
                    return slots
                end = start + rules.duration
                if stays_within(start, end, zone, lowest, highest) and not blocked.overlaps(
                    start, end + rules.buffer_after
                ):
                    slots.append(Slot(start, end))
        day += dt.timedelta(days=1)
    return slots


def nearest_free(slots: Sequence[Slot], wanted_start: dt.datetime, n: int = 3) -> list[Slot]:
    """The ``n`` slots whose starts are nearest ``wanted_start``, in time order.

    For "that time was just taken -- here are the nearest free times".  ``slots``
    must be sorted, as ``available_slots`` returns them.  The nearest slots of a
    sorted list are always a contiguous run of it, so this widens a window from
    the wanted time; on a tie the earlier slot wins.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    wanted = _utc(wanted_start, "wanted_start")
    low = high = bisect.bisect_left(slots, wanted, key=lambda slot: slot.start)
    while high - low < n and (low > 0 or high < len(slots)):
        take_earlier = high == len(slots) or (
            low > 0 and wanted - slots[low - 1].start <= slots[high].start - wanted
        )
        if take_earlier:
            low -= 1
        else:
            high += 1
    return list(slots[low:high])


def weekly_series(first_local: dt.datetime, weeks: int) -> list[dt.datetime]:
    """The UTC starts of ``weeks`` weekly sessions at ``first_local``'s wall-clock time.

    A standing "Tuesdays at 10:00" stays at 10:00 local time across a
    daylight-saving change, so its UTC instant moves by the change.  A week whose
    wall time does not exist is resolved forward by the length of the gap (02:30
    becomes 03:30), and one whose wall time occurs twice takes the first
    occurrence -- both as RFC 5545 resolves a ``DTSTART``, so a calendar that
    expands ``RRULE:FREQ=WEEKLY`` from the first session lands on the same
    instants.  The first session keeps the instant it was given (its ``fold``),
    unless its wall time does not exist.
    """
    zone = first_local.tzinfo
    if not isinstance(zone, ZoneInfo):
        raise ValueError("first_local must be aware, in the therapist's zoneinfo.ZoneInfo")
    if weeks < 0:
        raise ValueError("weeks must not be negative")
    wall = first_local.replace(tzinfo=None, fold=0)
    series = [
        (wall + dt.timedelta(weeks=week)).replace(tzinfo=zone).astimezone(dt.UTC)
        for week in range(weeks)
    ]
    if series and existing_instant(first_local.replace(tzinfo=None), zone) is not None:
        series[0] = first_local.astimezone(dt.UTC)  # a real instant: keep its fold
    return series


def _hours_on(
    day: dt.date, hours: WeeklyHours, overrides: Mapping[dt.date, DateOverride]
) -> tuple[WallRange, ...]:
    """The day's hours after its override, merged where ranges touch or overlap."""
    regular = hours.days[day.weekday()]
    override = overrides.get(day)
    if override is None:
        return merged(regular)
    if override.mode == "off":
        return ()
    if override.mode == "replace":
        return merged(override.ranges)
    return merged((*regular, *override.ranges))


def _utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, not naive")
    return value.astimezone(dt.UTC)
