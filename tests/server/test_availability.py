"""Slot computation by example: daylight-saving changes, notice, horizon, buffers, overrides.

Expected instants are written out by hand (not computed with zoneinfo), so a
test fails if the code and the calendar disagree, not only if the code changes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from server.availability import (
    Busy,
    DateOverride,
    SessionTypeRules,
    Slot,
    WeeklyHours,
    available_slots,
    nearest_free,
    weekly_series,
)

T = dt.time
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
EVERY_DAY = range(7)
NINE_TO_FIVE = ((T(9), T(17)),)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def minutes(n: int) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def rules(
    *,
    duration: int = 60,
    buffer_after: int = 0,
    min_notice: dt.timedelta = dt.timedelta(0),
    horizon: dt.timedelta = dt.timedelta(days=5),
    step: int = 15,
) -> SessionTypeRules:
    return SessionTypeRules(
        duration=minutes(duration),
        buffer_after=minutes(buffer_after),
        min_notice=min_notice,
        horizon=horizon,
        step=minutes(step),
    )


def hours(zone: ZoneInfo, ranges: tuple[tuple[dt.time, dt.time], ...]) -> WeeklyHours:
    return WeeklyHours.from_mapping(zone, dict.fromkeys(EVERY_DAY, ranges))


def on_local_day(slots: list[Slot], zone: ZoneInfo, day: dt.date) -> list[Slot]:
    return [slot for slot in slots if slot.start.astimezone(zone).date() == day]


def walls(slots: list[Slot], zone: ZoneInfo) -> list[str]:
    return [slot.start.astimezone(zone).strftime("%H:%M") for slot in slots]


def day_of_slots(
    zone: ZoneInfo,
    day: dt.date,
    ranges: tuple[tuple[dt.time, dt.time], ...] = NINE_TO_FIVE,
    duration: int = 60,
) -> list[Slot]:
    """The slots on one local day, computed from two days before it."""
    now = dt.datetime.combine(day - dt.timedelta(days=2), T(0), tzinfo=dt.UTC)
    slots = available_slots(hours=hours(zone, ranges), rules=rules(duration=duration), now=now)
    return on_local_day(slots, zone, day)


QUARTER_HOURS_NINE_TO_FOUR = [f"{h:02d}:{m:02d}" for h in range(9, 16) for m in (0, 15, 30, 45)]
QUARTER_HOURS_NINE_TO_FOUR.append("16:00")


# A New York therapist, seen by a client in Berlin.  The US changes on 2026-03-08 and
# 2026-11-01, the EU on 2026-03-29 and 2026-10-25: in the weeks between, the two cities
# are five hours apart instead of six.
@pytest.mark.parametrize(
    ("day", "first_start_utc", "first_start_in_berlin"),
    [
        (dt.date(2026, 3, 6), utc(2026, 3, 6, 14), "15:00"),  # EST, CET
        (dt.date(2026, 3, 8), utc(2026, 3, 8, 13), "14:00"),  # US change day: EDT from 02:00
        (dt.date(2026, 3, 9), utc(2026, 3, 9, 13), "14:00"),  # EDT, CET
        (dt.date(2026, 3, 27), utc(2026, 3, 27, 13), "14:00"),  # EDT, CET
        (dt.date(2026, 3, 30), utc(2026, 3, 30, 13), "15:00"),  # EDT, CEST
        (dt.date(2026, 10, 23), utc(2026, 10, 23, 13), "15:00"),  # EDT, CEST
        (dt.date(2026, 10, 26), utc(2026, 10, 26, 13), "14:00"),  # EDT, CET
        (dt.date(2026, 11, 1), utc(2026, 11, 1, 14), "15:00"),  # US change day: EST from 02:00
        (dt.date(2026, 11, 2), utc(2026, 11, 2, 14), "15:00"),  # EST, CET
    ],
)
def test_new_york_hours_start_at_nine_new_york_time_on_each_side_of_every_change(
    day: dt.date, first_start_utc: dt.datetime, first_start_in_berlin: str
) -> None:
    slots = day_of_slots(NEW_YORK, day)

    assert walls(slots, NEW_YORK) == QUARTER_HOURS_NINE_TO_FOUR
    assert slots[0].start == first_start_utc
    assert slots[-1].end == first_start_utc + dt.timedelta(hours=8)
    assert slots[0].start.astimezone(BERLIN).strftime("%H:%M") == first_start_in_berlin


@pytest.mark.parametrize(
    ("before", "after", "shift"),
    [
        (dt.date(2026, 3, 6), dt.date(2026, 3, 9), -1),  # spring forward: an hour earlier in UTC
        (dt.date(2026, 10, 30), dt.date(2026, 11, 2), +1),  # fall back: an hour later in UTC
    ],
)
def test_the_utc_instant_moves_by_the_change_while_the_wall_time_stays(
    before: dt.date, after: dt.date, shift: int
) -> None:
    first_before = day_of_slots(NEW_YORK, before)[0]
    first_after = day_of_slots(NEW_YORK, after)[0]

    assert first_after.start - first_before.start == (after - before) + dt.timedelta(hours=shift)
    assert first_before.start.astimezone(NEW_YORK).time() == T(9)
    assert first_after.start.astimezone(NEW_YORK).time() == T(9)


# Lord Howe Island moves its clocks by half an hour: +11:00 in summer, +10:30 in winter,
# changing on 2026-04-05 (02:00 -> 01:30) and 2026-10-04 (02:00 -> 02:30).
@pytest.mark.parametrize(
    ("day", "first_start_utc"),
    [
        (dt.date(2026, 4, 4), utc(2026, 4, 3, 22, 0)),
        (dt.date(2026, 4, 5), utc(2026, 4, 4, 22, 30)),
        (dt.date(2026, 4, 6), utc(2026, 4, 5, 22, 30)),
        (dt.date(2026, 10, 3), utc(2026, 10, 2, 22, 30)),
        (dt.date(2026, 10, 4), utc(2026, 10, 3, 22, 0)),
        (dt.date(2026, 10, 5), utc(2026, 10, 4, 22, 0)),
    ],
)
def test_lord_howe_hours_start_at_nine_local_time_across_its_half_hour_changes(
    day: dt.date, first_start_utc: dt.datetime
) -> None:
    slots = day_of_slots(LORD_HOWE, day)

    assert walls(slots, LORD_HOWE) == QUARTER_HOURS_NINE_TO_FOUR
    assert slots[0].start == first_start_utc


@pytest.mark.parametrize(
    ("zone", "day", "expected_walls", "expected_ends"),
    [
        # Berlin jumps from 02:00 to 03:00.  01:45 + 30 minutes ends at 03:15.
        (
            BERLIN,
            dt.date(2026, 3, 29),
            ["01:00", "01:15", "01:30", "01:45", "03:00", "03:15", "03:30"],
            ["01:30", "01:45", "03:00", "03:15", "03:30", "03:45", "04:00"],
        ),
        # Lord Howe jumps from 02:00 to 02:30.
        (
            LORD_HOWE,
            dt.date(2026, 10, 4),
            ["01:00", "01:15", "01:30", "01:45", "02:30", "02:45", "03:00", "03:15", "03:30"],
            ["01:30", "01:45", "02:30", "02:45", "03:00", "03:15", "03:30", "03:45", "04:00"],
        ),
    ],
)
def test_no_slot_starts_in_a_spring_forward_gap(
    zone: ZoneInfo, day: dt.date, expected_walls: list[str], expected_ends: list[str]
) -> None:
    slots = day_of_slots(zone, day, ((T(1), T(4)),), duration=30)

    assert walls(slots, zone) == expected_walls
    assert [slot.end.astimezone(zone).strftime("%H:%M") for slot in slots] == expected_ends
    assert all(slot.end - slot.start == minutes(30) for slot in slots)


def test_a_repeated_wall_time_is_offered_once_at_its_first_occurrence() -> None:
    # Berlin goes from 03:00 summer time back to 02:00 winter time (01:00 UTC).
    slots = day_of_slots(BERLIN, dt.date(2026, 10, 25), ((T(1), T(4)),), duration=30)

    assert [slot.start for slot in slots] == [
        utc(2026, 10, 24, 23, 0),  # 01:00 CEST
        utc(2026, 10, 24, 23, 15),
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 24, 23, 45),
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST, the first 02:00
        utc(2026, 10, 25, 0, 15),
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, ending at 02:00 CET
        utc(2026, 10, 25, 0, 45),
        utc(2026, 10, 25, 2, 0),  # 03:00 CET: nothing starts in the second 02:00-03:00
        utc(2026, 10, 25, 2, 15),
        utc(2026, 10, 25, 2, 30),
    ]
    wall_starts = walls(slots, BERLIN)
    assert len(wall_starts) == len(set(wall_starts))


def test_a_slot_never_runs_outside_the_hours_through_the_repeated_hour() -> None:
    # Hours end at 02:50.  A slot from 02:00 CEST to 02:00 CET ends at a fine wall
    # time, but on the way its clock passes 02:50-03:00 CEST, after the hours.
    slots = day_of_slots(BERLIN, dt.date(2026, 10, 25), ((T(1), T(2, 50)),), duration=60)

    assert walls(slots, BERLIN) == ["01:00", "01:15", "01:30", "01:45"]


def test_no_slot_starts_before_the_minimum_notice_and_starts_stay_on_the_grid() -> None:
    weekdays = WeeklyHours.from_mapping(NEW_YORK, dict.fromkeys(range(5), NINE_TO_FIVE))
    now = utc(2026, 5, 4, 12, 7)  # Monday 08:07 in New York

    slots = available_slots(hours=weekdays, rules=rules(min_notice=dt.timedelta(hours=2)), now=now)

    assert slots[0].start == utc(2026, 5, 4, 14, 15)  # 10:15, not 10:07
    assert walls(slots[:2], NEW_YORK) == ["10:15", "10:30"]


def test_no_slot_starts_after_the_horizon_but_one_may_start_exactly_at_it() -> None:
    weekdays = WeeklyHours.from_mapping(NEW_YORK, dict.fromkeys(range(5), NINE_TO_FIVE))
    now = utc(2026, 5, 4, 12)  # Monday 08:00 in New York

    two_days = available_slots(hours=weekdays, rules=rules(horizon=dt.timedelta(days=2)), now=now)
    and_an_hour = available_slots(
        hours=weekdays, rules=rules(horizon=dt.timedelta(days=2, hours=1)), now=now
    )

    assert two_days[-1].start == utc(2026, 5, 5, 20)  # Tuesday 16:00
    assert and_an_hour[-1].start == utc(2026, 5, 6, 13)  # Wednesday 09:00, the horizon itself


def tuesday_walls(busy: list[Busy], *, duration: int = 50, buffer_after: int = 0) -> list[str]:
    day = dt.date(2026, 5, 5)
    now = utc(2026, 5, 4)
    slots = available_slots(
        hours=hours(NEW_YORK, NINE_TO_FIVE),
        rules=rules(duration=duration, buffer_after=buffer_after),
        now=now,
        busy=busy,
    )
    return walls(on_local_day(slots, NEW_YORK, day), NEW_YORK)


def test_a_slot_never_overlaps_an_appointment_or_its_buffer() -> None:
    # 12:00-12:50 New York time, plus 25 minutes to write notes: taken until 13:15.
    taken = Busy(utc(2026, 5, 5, 16), utc(2026, 5, 5, 16, 50), minutes(25))

    offered = tuesday_walls([taken])

    assert "11:00" in offered and "11:15" not in offered  # 11:15-12:05 would overlap
    assert "13:00" not in offered and "13:15" in offered  # the buffer runs to 13:15


def test_a_slots_own_buffer_never_reaches_the_next_appointment() -> None:
    taken = Busy(utc(2026, 5, 5, 16), utc(2026, 5, 5, 16, 50))

    offered = tuesday_walls([taken], buffer_after=10)

    assert "11:00" in offered  # 11:00-11:50, buffer to 12:00: touching is fine
    assert "11:15" not in offered  # 11:15-12:05
    assert "12:45" not in offered and "13:00" in offered
    assert "16:00" in offered  # the day's end bounds the session, not its buffer


def test_a_day_off_override_removes_that_local_days_slots() -> None:
    # 20:00-23:00 in New York is already the next day in UTC: overrides name local dates.
    evenings = hours(NEW_YORK, ((T(20), T(23)),))
    monday = dt.date(2026, 5, 4)

    slots = available_slots(
        hours=evenings,
        rules=rules(),
        now=utc(2026, 5, 3),
        overrides=[DateOverride(monday, "off")],
    )

    assert on_local_day(slots, NEW_YORK, monday) == []
    assert walls(on_local_day(slots, NEW_YORK, monday + dt.timedelta(days=1)), NEW_YORK)[0] == (
        "20:00"
    )


def test_a_replace_override_offers_only_its_own_hours_that_day() -> None:
    monday = dt.date(2026, 5, 4)
    override = DateOverride(monday, "replace", ((T(7), T(8, 30)),))

    slots = available_slots(
        hours=hours(NEW_YORK, NINE_TO_FIVE),
        rules=rules(),
        now=utc(2026, 5, 3),
        overrides=[override],
    )

    assert walls(on_local_day(slots, NEW_YORK, monday), NEW_YORK) == ["07:00", "07:15", "07:30"]


def test_an_add_override_extends_the_day_and_a_slot_may_cross_into_the_extra_hours() -> None:
    monday = dt.date(2026, 5, 4)
    mornings = hours(NEW_YORK, ((T(9), T(12)),))
    override = DateOverride(monday, "add", ((T(12), T(14)),))

    slots = available_slots(
        hours=mornings, rules=rules(), now=utc(2026, 5, 3), overrides=[override]
    )
    offered = walls(on_local_day(slots, NEW_YORK, monday), NEW_YORK)

    assert offered[0] == "09:00" and offered[-1] == "13:00"
    assert "11:30" in offered  # 11:30-12:30 crosses from the regular into the extra hours
    assert walls(on_local_day(slots, NEW_YORK, monday + dt.timedelta(days=1)), NEW_YORK)[-1] == (
        "11:00"
    )


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ({1: [(T(10), T(9))]}, "Tuesday: range 10:00-09:00 must start before it ends"),
        ({3: [(T(9), T(9))]}, "Thursday: range 09:00-09:00 must start before it ends"),
        (
            {2: [(T(13), T(17)), (T(9), T(13, 30))]},
            "Wednesday: ranges 09:00-13:30 and 13:00-17:00 overlap",
        ),
        (
            {6: [(T(9, tzinfo=dt.UTC), T(10))]},
            "Sunday: range 09:00\\+00:00-10:00 must be wall-clock times without a zone",
        ),
    ],
)
def test_invalid_weekly_hours_are_refused_naming_the_weekday_and_range(
    days: dict[int, list[tuple[dt.time, dt.time]]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WeeklyHours.from_mapping(BERLIN, days)


def test_invalid_overrides_are_refused_naming_the_date() -> None:
    with pytest.raises(ValueError, match="override for 2026-05-04: range 12:00-11:00"):
        DateOverride(dt.date(2026, 5, 4), "add", ((T(12), T(11)),))
    with pytest.raises(ValueError, match="override for 2026-05-04: a day off takes no ranges"):
        DateOverride(dt.date(2026, 5, 4), "off", ((T(9), T(10)),))
    with pytest.raises(ValueError, match="two overrides for 2026-05-04"):
        available_slots(
            hours=hours(BERLIN, NINE_TO_FIVE),
            rules=rules(),
            now=utc(2026, 5, 1),
            overrides=[DateOverride(dt.date(2026, 5, 4), "off")] * 2,
        )


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        available_slots(
            hours=hours(BERLIN, NINE_TO_FIVE), rules=rules(), now=dt.datetime(2026, 5, 1)
        )
    with pytest.raises(ValueError, match="aware"):
        Busy(dt.datetime(2026, 5, 1, 9), utc(2026, 5, 1, 10))


def test_nearest_free_offers_the_closest_times_in_time_order_earlier_winning_ties() -> None:
    starts = [utc(2026, 5, 4, 9, m) for m in (0, 15, 30, 45)] + [
        utc(2026, 5, 4, 10, m) for m in (15, 30)
    ]
    slots = [Slot(start, start + minutes(50)) for start in starts]
    taken = utc(2026, 5, 4, 10, 0)

    assert [s.start for s in nearest_free(slots, taken)] == [
        utc(2026, 5, 4, 9, 30),
        utc(2026, 5, 4, 9, 45),
        utc(2026, 5, 4, 10, 15),
    ]
    assert nearest_free(slots, utc(2026, 5, 1), n=2) == slots[:2]
    assert nearest_free(slots, taken, n=10) == slots
    assert nearest_free([], taken) == []


def test_weekly_sessions_keep_their_local_time_across_the_autumn_change() -> None:
    first = dt.datetime(2026, 10, 6, 10, 0, tzinfo=NEW_YORK)

    series = weekly_series(first, 16)

    assert len(series) == 16
    assert series[:4] == [utc(2026, 10, d, 14) for d in (6, 13, 20, 27)]
    assert series[4] == utc(2026, 11, 3, 15)
    assert {start.hour for start in series[4:]} == {15}
    assert all(start.astimezone(NEW_YORK).time() == T(10) for start in series)
    week, hour = dt.timedelta(weeks=1), dt.timedelta(hours=1)
    assert [b - a for a, b in itertools.pairwise(series)] == [week] * 3 + [week + hour] + [
        week
    ] * 11


def test_a_weekly_session_whose_time_does_not_exist_moves_forward_by_the_gap() -> None:
    series = weekly_series(dt.datetime(2026, 3, 1, 2, 30, tzinfo=NEW_YORK), 3)

    assert series == [utc(2026, 3, 1, 7, 30), utc(2026, 3, 8, 7, 30), utc(2026, 3, 15, 6, 30)]
    assert series[1].astimezone(NEW_YORK).time() == T(3, 30)


def test_a_weekly_session_at_a_repeated_time_takes_the_first_unless_told_otherwise() -> None:
    assert weekly_series(dt.datetime(2026, 10, 25, 1, 30, tzinfo=NEW_YORK), 2) == [
        utc(2026, 10, 25, 5, 30),
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first 01:30
    ]
    second = dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)
    assert weekly_series(second, 2) == [utc(2026, 11, 1, 6, 30), utc(2026, 11, 8, 6, 30)]


def test_a_weekly_series_needs_a_named_zone_to_follow() -> None:
    fixed_offset = dt.datetime(2026, 10, 6, 10, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    with pytest.raises(ValueError, match="ZoneInfo"):
        weekly_series(fixed_offset, 4)
