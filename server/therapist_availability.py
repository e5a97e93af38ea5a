"""The therapist's availability: weekly hours, and changes to single dates.

``GET /availability`` shows the weekly hours as rows of two time inputs per weekday (one
empty row per day to add a range without JavaScript; ``availability.js`` adds and removes
rows) and the date overrides from today on.  Saving the weekly hours replaces all of them in
one transaction, after every row was checked: a schedule with one bad row is not saved at
all.  The rules match ``server.availability.WeeklyHours`` (a range ends after it starts,
ranges on one day do not overlap), checked here so each message can name its row.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from babel.dates import format_date, format_time, get_day_names
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import i18n, sessions
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER
from server.models import DateOverride, WeeklyHours
from server.therapist_forms import (
    checked_form,
    local_date,
    path_id,
    render,
    text,
    texts,
    wall_time,
    zone_of,
)

OVERRIDE_MODES = ("off", "replace", "add")


@dataclass
class HoursRow:
    start: str = ""
    end: str = ""
    error: str | None = None


@dataclass
class Weekday:
    index: int
    name: str
    rows: list[HoursRow] = field(default_factory=list)


@dataclass(frozen=True)
class OverrideView:
    id: int
    date: dt.date
    date_label: str
    mode: str
    description: str


# --- queries ---------------------------------------------------------------------------


async def weekly_rows(db: AsyncSession, therapist_id: int) -> list[WeeklyHours]:
    rows = await db.scalars(
        select(WeeklyHours)
        .where(WeeklyHours.therapist_id == therapist_id)
        .order_by(WeeklyHours.weekday, WeeklyHours.start_time)
    )
    return list(rows)


async def replace_weekly_hours(
    db: AsyncSession, therapist_id: int, ranges: list[tuple[int, dt.time, dt.time]]
) -> None:
    """Make ``ranges`` (weekday, start, end) the therapist's whole weekly schedule."""
    await db.execute(delete(WeeklyHours).where(WeeklyHours.therapist_id == therapist_id))
    db.add_all(
        WeeklyHours(therapist_id=therapist_id, weekday=weekday, start_time=start, end_time=end)
        for weekday, start, end in ranges
    )


async def overrides_from(
    db: AsyncSession, therapist_id: int, first_day: dt.date
) -> list[DateOverride]:
    rows = await db.scalars(
        select(DateOverride)
        .where(DateOverride.therapist_id == therapist_id, DateOverride.date >= first_day)
        .order_by(DateOverride.date, DateOverride.start_time)
    )
    return list(rows)


async def overrides_on(db: AsyncSession, therapist_id: int, day: dt.date) -> list[DateOverride]:
    rows = await db.scalars(
        select(DateOverride).where(
            DateOverride.therapist_id == therapist_id, DateOverride.date == day
        )
    )
    return list(rows)


# --- the weekly hours -----------------------------------------------------------------


def weekday_names() -> list[str]:
    names = get_day_names("wide", locale=i18n.current_locale())
    return [str(names[index]) for index in range(7)]


def _shown(value: dt.time) -> str:
    return value.strftime("%H:%M")


def weekdays_from_rows(rows: list[WeeklyHours]) -> list[Weekday]:
    days = [Weekday(index, name) for index, name in enumerate(weekday_names())]
    for row in rows:
        days[row.weekday].rows.append(HoursRow(_shown(row.start_time), _shown(row.end_time)))
    for day in days:
        day.rows.append(HoursRow())
    return days


def parse_weekly_hours(
    form: Any,
) -> tuple[list[Weekday], list[tuple[int, dt.time, dt.time]], bool]:
    """The typed rows (for showing again), the ranges they describe, and whether all are good."""
    days = [Weekday(index, name) for index, name in enumerate(weekday_names())]
    ranges: list[tuple[int, dt.time, dt.time]] = []
    good = True
    for day in days:
        starts = texts(form, f"start-{day.index}")
        ends = texts(form, f"end-{day.index}")
        parsed: list[tuple[dt.time, dt.time, HoursRow]] = []
        for start_text, end_text in itertools.zip_longest(starts, ends, fillvalue=""):
            if not start_text and not end_text:
                continue
            row = HoursRow(start_text[:8], end_text[:8])
            day.rows.append(row)
            start, end = wall_time(start_text), wall_time(end_text)
            if not start_text or not end_text:
                row.error = _("Enter both a start and an end time, or neither.")
            elif start is None or end is None:
                row.error = _("Enter times as hours and minutes, like 09:00.")
            elif start >= end:
                row.error = _("The range must end after it starts.")
            else:
                parsed.append((start, end, row))
        parsed.sort(key=lambda item: item[0])
        for (_a_start, a_end, _a_row), (b_start, _b_end, b_row) in itertools.pairwise(parsed):
            if b_start < a_end and b_row.error is None:
                b_row.error = _("This range overlaps another one on the same day.")
        for start, end, row in parsed:
            if row.error is None:
                ranges.append((day.index, start, end))
        if any(row.error for row in day.rows):
            good = False
        day.rows.append(HoursRow())
    return days, ranges, good


# --- overrides --------------------------------------------------------------------------


def describe_override(rows: list[DateOverride]) -> str:
    locale = i18n.current_locale()
    mode = rows[0].mode
    if mode == "off":
        return _("Time off all day")
    spans = ", ".join(
        f"{format_time(r.start_time, 'short', locale=locale)}–"
        f"{format_time(r.end_time, 'short', locale=locale)}"
        for r in rows
        if r.start_time is not None and r.end_time is not None
    )
    if mode == "replace":
        return _("Only these hours: %(hours)s") % {"hours": spans}
    return _("Extra hours: %(hours)s") % {"hours": spans}


def override_views(rows: list[DateOverride]) -> list[OverrideView]:
    locale = i18n.current_locale()
    return [
        OverrideView(
            id=row.id,
            date=row.date,
            date_label=format_date(row.date, "full", locale=locale),
            mode=row.mode,
            description=describe_override([row]),
        )
        for row in rows
    ]


def check_override(
    form: Any, existing: list[DateOverride], today: dt.date
) -> tuple[dict[str, str], DateOverride | None]:
    """Errors by field name, or the new override (not yet added) when there are none."""
    errors: dict[str, str] = {}
    day = local_date(text(form, "date", limit=10))
    mode = text(form, "mode", limit=10)
    start_text, end_text = text(form, "start", limit=8), text(form, "end", limit=8)
    if day is None:
        errors["date"] = _("Choose a date.")
    elif day < today:
        errors["date"] = _("Choose today or a later date.")
    if mode not in OVERRIDE_MODES:
        errors["mode"] = _("Choose what changes on that date.")
    start = end = None
    if mode in ("replace", "add"):
        start, end = wall_time(start_text), wall_time(end_text)
        if start is None:
            errors["start"] = _("Enter a start time, like 09:00.")
        if end is None:
            errors["end"] = _("Enter an end time, like 17:00.")
        if start is not None and end is not None and start >= end:
            errors["end"] = _("The range must end after it starts.")
    if errors or day is None:
        return errors, None
    if existing:
        if mode == "off" or any(row.mode != mode for row in existing):
            errors["mode"] = _(
                "This date already has a change of another kind. "
                "Remove it first, then add this one."
            )
            return errors, None
        assert start is not None and end is not None
        for row in existing:
            if (
                row.start_time is not None
                and row.end_time is not None
                and start < row.end_time
                and row.start_time < end
            ):
                errors["start"] = _("These hours overlap hours already set for that date.")
                return errors, None
    return errors, DateOverride(date=day, mode=mode, start_time=start, end_time=end)


# --- views ------------------------------------------------------------------------------

DONE_MESSAGES = {
    "hours": lambda: _("Your weekly hours are saved."),
    "override-added": lambda: _("The change for that date is saved."),
    "override-removed": lambda: _("The change for that date is removed."),
}


async def _page(
    request: web.Request,
    *,
    days: list[Weekday] | None = None,
    hours_failed: bool = False,
    override_values: dict[str, str] | None = None,
    override_errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    me = sessions.signed_in(request)
    tz = zone_of(me.therapist.timezone)
    today = request.app[CLOCK]().astimezone(tz).date()
    async with request.app[SESSIONMAKER]() as db:
        if days is None:
            days = weekdays_from_rows(await weekly_rows(db, me.therapist.id))
        overrides = await overrides_from(db, me.therapist.id, today)
    done = DONE_MESSAGES.get(request.query.get("done", ""))
    context: dict[str, Any] = {
        "days": days,
        "hours_failed": hours_failed,
        "overrides": override_views(overrides),
        "override_values": override_values or {"date": "", "mode": "off", "start": "", "end": ""},
        "override_errors": override_errors or {},
        "today": today,
        "done": done() if done else None,
    }
    return render(
        request, "therapist/availability.html", context, nav="availability", status=status
    )


@sessions.therapist_required
async def availability_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@sessions.therapist_required
async def save_hours(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    days, ranges, good = parse_weekly_hours(form)
    if not good:
        return await _page(request, days=days, hours_failed=True, status=422)
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        await replace_weekly_hours(db, me.therapist.id, ranges)
        sessions.audit_act(
            db,
            request,
            at=now,
            action="weekly_hours_updated",
            record_type="therapist",
            record_id=me.therapist.id,
        )
    raise web.HTTPSeeOther("/availability?done=hours#weekly-hours")


@sessions.therapist_required
async def add_override(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    tz = zone_of(me.therapist.timezone)
    now = request.app[CLOCK]()
    values = {name: text(form, name, limit=10) for name in ("date", "mode", "start", "end")}
    async with request.app[SESSIONMAKER]() as db, db.begin():
        day = local_date(values["date"])
        existing = await overrides_on(db, me.therapist.id, day) if day else []
        errors, override = check_override(form, existing, now.astimezone(tz).date())
        if override is not None:
            override.therapist_id = me.therapist.id
            db.add(override)
            await db.flush()
            sessions.audit_act(
                db,
                request,
                at=now,
                action="date_override_added",
                record_type="date_override",
                record_id=override.id,
            )
    if errors:
        return await _page(request, override_values=values, override_errors=errors, status=422)
    raise web.HTTPSeeOther("/availability?done=override-added#overrides")


@sessions.therapist_required
async def remove_override(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    await checked_form(request)
    override_id = path_id(request, "override_id")
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        row = await db.get(DateOverride, override_id)
        if row is None or row.therapist_id != me.therapist.id:
            raise web.HTTPNotFound()
        await db.delete(row)
        sessions.audit_act(
            db,
            request,
            at=now,
            action="date_override_removed",
            record_type="date_override",
            record_id=override_id,
        )
    raise web.HTTPSeeOther("/availability?done=override-removed#overrides")


def setup(app: web.Application) -> None:
    app.router.add_get("/availability", availability_page, name="availability")
    app.router.add_post("/availability/hours", save_hours, name="availability_hours")
    app.router.add_post("/availability/overrides", add_override, name="availability_override")
    app.router.add_post(
        "/availability/overrides/{override_id}/delete",
        remove_override,
        name="availability_override_delete",
    )
