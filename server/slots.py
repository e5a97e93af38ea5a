"""Wall-clock and interval helpers behind ``server.availability``.

Kept apart so the rules there read as rules; everything here is pure and works
on naive local wall times (``datetime`` without ``tzinfo``, meaning "as on the
therapist's clock") or aware UTC instants, never a mix.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

WallRange = tuple[dt.time, dt.time]
"""A local wall-clock range ``(start, end)`` inside one day, ``start < end``."""

_MICROSECOND = dt.timedelta(microseconds=1)


def validated_ranges(ranges: Iterable[WallRange], where: str) -> tuple[WallRange, ...]:
    """``ranges`` sorted, or a ``ValueError`` naming ``where`` and the bad range.

    Times must be naive (a zone belongs to the schedule, not to each time);
    ``fold`` is dropped because a schedule names wall times, not occurrences.
    """
    checked: list[WallRange] = []
    for start, end in ranges:
        shown = f"{_show(start)}-{_show(end)}"
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError(f"{where}: range {shown} must be wall-clock times without a zone")
        if start >= end:
            raise ValueError(f"{where}: range {shown} must start before it ends")
        checked.append((start.replace(fold=0), end.replace(fold=0)))
    checked.sort()
    for (a_start, a_end), (b_start, b_end) in itertools.pairwise(checked):
        if b_start < a_end:
            raise ValueError(
                f"{where}: ranges {_show(a_start)}-{_show(a_end)} and "
                f"{_show(b_start)}-{_show(b_end)} overlap"
            )
    return tuple(checked)


def merged(ranges: Iterable[WallRange]) -> tuple[WallRange, ...]:
    """Sorted ranges with touching or overlapping ones joined into one."""
    out: list[WallRange] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def wall_grid(
    lowest: dt.datetime, highest: dt.datetime, step: dt.timedelta
) -> Iterator[dt.datetime]:
    """Naive wall times ``lowest, lowest + step, ...`` strictly before ``highest``.

    Stepping happens on the wall clock, not on instants, so the grid reads
    09:00, 09:15, ... on every day of the year.
    """
    wall = lowest
    while wall < highest:
        yield wall
        wall += step


def existing_instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant the clock in ``zone`` shows ``wall``, or None if it never does.

    ``wall.fold`` picks the occurrence of a repeated wall time (0, the first, by
    default).  A wall time in a spring-forward gap does not survive the round
    trip to UTC and back, which is how it is detected.
    """
    instant = wall.replace(tzinfo=zone).astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


def stays_within(
    start: dt.datetime,
    end: dt.datetime,
    zone: ZoneInfo,
    lowest: dt.datetime,
    highest: dt.datetime,
) -> bool:
    """Whether the wall clock reads within ``[lowest, highest]`` for all of ``start..end``.

    ``start`` is assumed to read at or after ``lowest`` (it comes from the grid).
    Without an offset change inside the interval the clock runs straight from
    start to end, so the end decides.  With one, the clock jumps at the change:
    forward in spring (still monotonic, the end decides) or back in autumn, when
    the reading just before the change may be past ``highest`` and the one just
    after it before ``lowest``, though both ends are fine.  This assumes at most
    one offset change inside a slot: zones change months apart, not hours.
    """
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    if local_end.replace(tzinfo=None) > highest:
        return False
    before, after = _offset(local_start), _offset(local_end)
    if before == after:
        return True
    change = _offset_change(start, end, zone, before).replace(tzinfo=None)
    return change + before <= highest and change + after >= lowest


@dataclass(frozen=True)
class Blocked:
    """Busy time as sorted, disjoint, half-open UTC intervals, for bisecting.

    Merging first means the first interval ending after an instant is also the
    only one that can start before a later instant, so one bisection answers
    "does ``[start, end)`` overlap anything?".
    """

    starts: tuple[dt.datetime, ...]
    ends: tuple[dt.datetime, ...]

    @classmethod
    def of(cls, intervals: Iterable[tuple[dt.datetime, dt.datetime]]) -> Blocked:
        starts: list[dt.datetime] = []
        ends: list[dt.datetime] = []
        for start, end in sorted(intervals):
            if ends and start <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        return cls(tuple(starts), tuple(ends))

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        index = bisect.bisect_right(self.ends, start)
        return index < len(self.ends) and self.starts[index] < end


def _offset_change(
    start: dt.datetime, end: dt.datetime, zone: ZoneInfo, before: dt.timedelta
) -> dt.datetime:
    """The first instant in ``(start, end]`` whose offset is no longer ``before``."""
    low, high = start, end
    while high - low > _MICROSECOND:
        middle = low + (high - low) / 2
        if _offset(middle.astimezone(zone)) == before:
            low = middle
        else:
            high = middle
    return high


def _offset(local: dt.datetime) -> dt.timedelta:
    offset = local.utcoffset()
    assert offset is not None, "a zoneinfo time always has an offset"
    return offset


def _show(value: dt.time) -> str:
    precise = value.second or value.microsecond
    return value.isoformat(timespec="auto" if precise else "minutes")
