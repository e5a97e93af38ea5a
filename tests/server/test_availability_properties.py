"""Slot computation against random schedules in zones with awkward clocks.

The checks here do not reuse the module's helpers: they read the wall clock
minute by minute where an offset changes, and compare every slot with every
busy interval, so a shortcut in the code cannot hide behind the same shortcut
in the test.  ``now`` is drawn near each zone's 2026 changes half of the time.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from server.availability import (
    Busy,
    DateOverride,
    OverrideMode,
    SessionTypeRules,
    Slot,
    WeeklyHours,
    available_slots,
    nearest_free,
    weekly_series,
)

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/London",
        "Europe/Berlin",
        "America/New_York",
        "America/Los_Angeles",
        "America/St_Johns",  # -03:30 / -02:30
        "America/Santiago",  # changes at midnight
        "America/Havana",  # changes at midnight
        "Asia/Kathmandu",  # +05:45
        "Asia/Kolkata",
        "Asia/Tokyo",
        "Australia/Lord_Howe",  # a 30-minute change
        "Australia/Adelaide",
        "Pacific/Chatham",  # +12:45 / +13:45
        "Pacific/Auckland",
    )
]
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
MICROSECOND = dt.timedelta(microseconds=1)
EXAMPLES = settings(max_examples=200, deadline=None)

Range = tuple[dt.time, dt.time]
MODES: tuple[OverrideMode, ...] = ("off", "replace", "add")


def _changes_in_2026(zone: ZoneInfo) -> list[dt.datetime]:
    """Instants (to the hour) just after each offset change in 2026."""
    hours = [YEAR_START + dt.timedelta(hours=h) for h in range(366 * 24)]
    return [
        b
        for a, b in itertools.pairwise(hours)
        if a.astimezone(zone).utcoffset() != b.astimezone(zone).utcoffset()
    ]


CHANGES = {zone.key: _changes_in_2026(zone) for zone in ZONES}


@dataclass(frozen=True)
class Scenario:
    hours: WeeklyHours
    overrides: tuple[DateOverride, ...]
    rules: SessionTypeRules
    busy: tuple[Busy, ...]
    now: dt.datetime

    @property
    def zone(self) -> ZoneInfo:
        return self.hours.zone

    def slots(self) -> list[Slot]:
        return available_slots(
            hours=self.hours,
            rules=self.rules,
            now=self.now,
            busy=self.busy,
            overrides=self.overrides,
        )


def _boundary(code: int) -> dt.time:
    """A range boundary from one drawn integer: a third anywhere, a third between
    00:00 and 05:00 (when most clocks change), a third between 20:00 and 24:00
    (when some change at midnight) -- so wide days that span a change are common.

    One integer per boundary, rather than ``one_of``, keeps generation cheap.
    """
    region, minute = divmod(code, 1440)
    return _at((minute, minute % 300, 1200 + minute % 240)[region])


def _at(minute_of_day: int) -> dt.time:
    return dt.time(minute_of_day // 60, minute_of_day % 60)


boundary_codes = st.lists(st.integers(0, 3 * 1440 - 1), max_size=6)


def as_ranges(codes: list[int]) -> tuple[Range, ...]:
    points = sorted({_boundary(code) for code in codes})
    return tuple(zip(points[0::2], points[1::2], strict=False))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zone = draw(st.sampled_from(ZONES))
    hours = WeeklyHours(zone, tuple(as_ranges(draw(boundary_codes)) for _ in range(7)))
    # Half the time, start up to three days before one of the zone's changes, and
    # often give the change's date long hours, so slots that span a change are common.
    changes = CHANGES[zone.key]
    near_a_change = draw(st.booleans())
    if changes and near_a_change:
        change = draw(st.sampled_from(changes))
        now = change - dt.timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    else:
        change = None
        now = YEAR_START + dt.timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    now += dt.timedelta(microseconds=draw(st.integers(0, 60_000_000 - 1)))
    rules = SessionTypeRules(
        duration=dt.timedelta(minutes=draw(st.sampled_from([15, 30, 45, 50, 60, 90, 120, 7]))),
        buffer_after=dt.timedelta(minutes=draw(st.sampled_from([0, 5, 10, 15, 30]))),
        min_notice=dt.timedelta(
            hours=draw(st.sampled_from([0, 0, 1, 4, 24, 48])), minutes=draw(st.integers(0, 59))
        ),
        horizon=dt.timedelta(
            days=draw(st.sampled_from([0, 1, 3, 7, 10, 14])), minutes=draw(st.integers(0, 1439))
        ),
        step=dt.timedelta(minutes=draw(st.sampled_from([5, 10, 15, 20, 30, 60, 25]))),
    )
    first_day = now.astimezone(zone).date()
    overrides: dict[dt.date, DateOverride] = {}
    if change is not None and draw(st.booleans()):
        # Hours from the small hours to the evening, or to just around the change,
        # where a slot ending at a fine wall time may have run outside the hours.
        before = (change - dt.timedelta(hours=1)).astimezone(zone)
        first = draw(st.integers(0, 119))
        end_code = draw(st.integers(0, 389))
        if end_code < 240:
            last = 1200 + end_code
        else:
            last = min(1439, max(first + 1, before.hour * 60 + before.minute + end_code - 240))
        overrides[before.date()] = DateOverride(
            before.date(), draw(st.sampled_from(MODES[1:])), ((_at(first), _at(last)),)
        )
    for _ in range(draw(st.integers(0, 3))):
        day = first_day + dt.timedelta(days=draw(st.integers(-1, 15)))
        mode: OverrideMode = draw(st.sampled_from(MODES))
        ranges = as_ranges(draw(boundary_codes)) if mode != "off" else ()
        if ranges or mode == "off":
            overrides[day] = DateOverride(day, mode, ranges)
    # Busy time on whole minutes, as slots are, so that they often touch exactly.
    whole_minute = now.replace(second=0, microsecond=0)
    busy = []
    for _ in range(draw(st.integers(0, 10))):
        start = whole_minute + dt.timedelta(minutes=draw(st.integers(-24 * 60, 16 * 24 * 60)))
        length = dt.timedelta(minutes=draw(st.integers(5, 180)))
        buffer = dt.timedelta(minutes=draw(st.sampled_from([0, 5, 10, 15, 30])))
        busy.append(Busy(start, start + length, buffer))
    return Scenario(hours, tuple(overrides.values()), rules, tuple(busy), now)


def hours_on(scenario: Scenario, day: dt.date) -> list[Range]:
    """The day's hours after overrides, touching ranges joined."""
    regular = list(scenario.hours.days[day.weekday()])
    for override in scenario.overrides:
        if override.date == day:
            regular = {"off": [], "replace": [], "add": regular}[override.mode]
            regular += list(override.ranges)
    joined: list[Range] = []
    for start, end in sorted(regular):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def wall_readings(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> list[dt.datetime]:
    """What the local clock reads at both ends, and on both sides of any offset change.

    Every change in these zones falls on a whole UTC minute, so stepping by minutes
    finds them.
    """
    readings = [start.astimezone(zone), end.astimezone(zone)]
    if readings[0].utcoffset() != readings[1].utcoffset():
        instant = start.replace(second=0, microsecond=0) + MINUTE
        while instant <= end:
            if (instant - MINUTE).astimezone(zone).utcoffset() != instant.astimezone(
                zone
            ).utcoffset():
                readings += [(instant - MICROSECOND).astimezone(zone), instant.astimezone(zone)]
            instant += MINUTE
    return [reading.replace(tzinfo=None) for reading in readings]


def containing_range(scenario: Scenario, start: dt.datetime, end: dt.datetime) -> Range | None:
    """The day's range the local clock stays inside for the whole slot, if any."""
    day = start.astimezone(scenario.zone).date()
    readings = wall_readings(start, end, scenario.zone)
    for low, high in hours_on(scenario, day):
        lowest, highest = dt.datetime.combine(day, low), dt.datetime.combine(day, high)
        if all(lowest <= reading <= highest for reading in readings):
            return (low, high)
    return None


def clashes(scenario: Scenario, start: dt.datetime, end: dt.datetime) -> bool:
    taken_until = end + scenario.rules.buffer_after
    return any(b.start < taken_until and start < b.end + b.buffer_after for b in scenario.busy)


@EXAMPLES
@given(scenarios())
def test_no_slot_overlaps_a_busy_interval_or_either_buffer(scenario: Scenario) -> None:
    for slot in scenario.slots():
        assert not clashes(scenario, slot.start, slot.end), slot


@EXAMPLES
@given(scenarios())
def test_every_slot_lies_inside_the_therapists_hours_in_local_wall_time(scenario: Scenario) -> None:
    for slot in scenario.slots():
        assert containing_range(scenario, slot.start, slot.end) is not None, slot


@EXAMPLES
@given(scenarios())
def test_slots_keep_notice_and_horizon_and_are_sorted_unique_utc_and_of_the_session_length(
    scenario: Scenario,
) -> None:
    slots = scenario.slots()
    rules = scenario.rules
    for slot in slots:
        assert scenario.now + rules.min_notice <= slot.start <= scenario.now + rules.horizon
        assert slot.end - slot.start == rules.duration
        assert slot.start.utcoffset() == dt.timedelta(0) == slot.end.utcoffset()
    assert all(a.start < b.start for a, b in itertools.pairwise(slots))
    local_starts = [slot.start.astimezone(scenario.zone).replace(tzinfo=None) for slot in slots]
    assert len(set(local_starts)) == len(local_starts)


@EXAMPLES
@given(scenarios())
def test_every_grid_start_that_breaks_no_rule_is_offered(scenario: Scenario) -> None:
    """Completeness: an empty answer would satisfy every other property."""
    zone, rules = scenario.zone, scenario.rules
    earliest, latest = scenario.now + rules.min_notice, scenario.now + rules.horizon
    expected = []
    day = earliest.astimezone(zone).date()
    while earliest <= latest and day <= latest.astimezone(zone).date():
        for low, high in hours_on(scenario, day):
            wall = dt.datetime.combine(day, low)
            while wall < dt.datetime.combine(day, high):
                start = wall.replace(tzinfo=zone).astimezone(dt.UTC)  # fold=0: first occurrence
                exists = start.astimezone(zone).replace(tzinfo=None) == wall
                end = start + rules.duration
                if (
                    exists
                    and earliest <= start <= latest
                    and containing_range(scenario, start, end) is not None
                    and not clashes(scenario, start, end)
                ):
                    expected.append(start)
                wall += rules.step
        day += dt.timedelta(days=1)

    assert [slot.start for slot in scenario.slots()] == expected


@st.composite
def sorted_slots(draw: st.DrawFn) -> list[Slot]:
    offsets = sorted(draw(st.sets(st.integers(0, 2000), max_size=40)))
    starts = [YEAR_START + dt.timedelta(minutes=5 * m) for m in offsets]
    return [Slot(start, start + dt.timedelta(minutes=50)) for start in starts]


@EXAMPLES
@given(sorted_slots(), st.integers(-100, 10_100), st.integers(0, 6))
def test_nearest_free_returns_the_n_closest_slots_in_time_order(
    slots: list[Slot], wanted_minute: int, n: int
) -> None:
    wanted = YEAR_START + dt.timedelta(minutes=wanted_minute)

    nearest = nearest_free(slots, wanted, n)

    assert len(nearest) == min(n, len(slots))
    assert nearest == sorted(nearest)
    chosen = [abs(slot.start - wanted) for slot in nearest]
    others = [abs(slot.start - wanted) for slot in slots if slot not in nearest]
    assert not chosen or not others or max(chosen) <= min(others)


@EXAMPLES
@given(
    st.sampled_from(ZONES),
    st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
    st.integers(0, 1439),
    st.integers(0, 60),
)
def test_a_weekly_series_keeps_its_wall_clock_time_or_moves_forward_past_a_gap(
    zone: ZoneInfo, first_day: dt.date, minute_of_day: int, weeks: int
) -> None:
    wall = dt.datetime.combine(first_day, dt.time(minute_of_day // 60, minute_of_day % 60))

    series = weekly_series(wall.replace(tzinfo=zone), weeks)

    assert len(series) == weeks
    for week, start in enumerate(series):
        wanted = wall + dt.timedelta(weeks=week)
        local = start.astimezone(zone)
        assert start.utcoffset() == dt.timedelta(0)
        if local.replace(tzinfo=None) == wanted:
            assert local.fold == 0  # a repeated time means its first occurrence
        else:  # the wall time does not exist: clocks jumped over it
            before = (wanted - dt.timedelta(days=1)).replace(tzinfo=zone).utcoffset()
            after = (wanted + dt.timedelta(days=1)).replace(tzinfo=zone).utcoffset()
            assert before is not None and after is not None and after > before
            assert local.replace(tzinfo=None) == wanted + (after - before)
