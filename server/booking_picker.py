"""What the booking and manage pages share: the slot picker, time zones, and form fields.

The picker is the calendar of free days and times a client chooses from, rendered on the
server in one zone (the therapist's, or the one chosen with ``?zone=``) so the pages work
without JavaScript.  Instants travel in forms as UTC ISO strings (``instant_value``), and
every form field is cut to ``FIELD_LIMIT`` characters before it is looked at.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from babel.dates import format_date, format_skeleton, format_time, get_day_names

from server import i18n
from server.availability import Slot
from server.booking_rules import NOTE_MAX, is_timezone
from server.i18n import _

FIELD_LIMIT = 4000

# Legacy aliases and POSIX names are accepted when submitted, but not offered in the list.
_HIDDEN_ZONE_PREFIXES = (
    "Etc/",
    "SystemV/",
    "US/",
    "posix",
    "right/",
    "Brazil/",
    "Canada/",
    "Chile/",
    "Mexico/",
)


@functools.cache
def _offered_zones() -> tuple[str, ...]:
    names = {
        name
        for name in zoneinfo.available_timezones()
        if "/" in name and not name.startswith(_HIDDEN_ZONE_PREFIXES)
    }
    return ("UTC", *sorted(names))


def zone_label(name: str) -> str:
    return name.replace("_", " ")


def zone_options(current: str) -> list[tuple[str, str]]:
    """The zones to choose from, as (value, label); ``current`` is always among them."""
    names = _offered_zones()
    if current not in names:
        names = (current, *names)
    return [(name, zone_label(name)) for name in names]


# --- the slot picker ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimeChoice:
    value: str
    label: str
    checked: bool = False


@dataclass(frozen=True)
class DayCell:
    date: dt.date
    label: str
    available: bool
    selected: bool
    href: str


@dataclass(frozen=True)
class Month:
    label: str
    lead: int
    days: list[DayCell]


@dataclass
class Picker:
    """What ``book/_slot_picker.html`` shows, in ``zone``."""

    zone: str
    zone_label: str
    zone_chosen: bool
    slots_url: str
    horizon_days: int
    weekdays: list[str]
    months: list[Month] = field(default_factory=list)
    day: dt.date | None = None
    day_label: str = ""
    times: list[TimeChoice] = field(default_factory=list)
    selected_start: str = ""
    #: The therapist's today: where the API's windows of free times start.
    from_day: str = ""


def instant_value(start: dt.datetime) -> str:
    """A slot's start as the form sends it: an ISO 8601 UTC instant ending in ``Z``."""
    return start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(value: str) -> dt.datetime | None:
    """An aware instant from the form, or ``None``."""
    if not value or len(value) > 40:
        return None
    try:
        instant = dt.datetime.fromisoformat(value)
        if instant.tzinfo is None or instant.utcoffset() is None:
            return None
        instant = instant.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: moving year 1 or 9999 to UTC
        return None
    # Anything this far out is no slot; refusing it here keeps later arithmetic in range.
    return instant if 2000 <= instant.year <= 2199 else None


def time_label(start: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return format_time(start.astimezone(zone), "short", locale=i18n.current_locale())


def day_label(day: dt.date) -> str:
    return format_date(day, "full", locale=i18n.current_locale())


def when_label(start: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """Date and time in ``zone``, with the zone's name: for confirmations."""
    locale = i18n.current_locale()
    local = start.astimezone(zone)
    return (
        f"{format_date(local, 'full', locale=locale)}, {format_time(local, 'short', locale=locale)}"
    )


def build_picker(
    slots: list[Slot],
    *,
    zone: str,
    zone_chosen: bool,
    day: dt.date | None,
    selected: dt.datetime | None,
    slots_url: str,
    horizon_days: int,
    day_href: Any,
    from_day: dt.date | None = None,
) -> Picker:
    """The calendar of ``slots`` in ``zone``, with the times of ``day`` (or the first free day).

    ``day_href(date)`` is the link that shows that day's times without JavaScript.
    """
    tz = zoneinfo.ZoneInfo(zone)
    locale = i18n.current_locale()
    names = get_day_names("abbreviated", locale=locale)
    picker = Picker(
        zone=zone,
        zone_label=zone_label(zone),
        zone_chosen=zone_chosen,
        slots_url=slots_url,
        horizon_days=horizon_days,
        weekdays=[str(names[index]) for index in range(7)],
        selected_start=instant_value(selected) if selected else "",
        from_day=from_day.isoformat() if from_day else "",
    )
    by_day: dict[dt.date, list[Slot]] = {}
    for slot in slots:
        by_day.setdefault(slot.start.astimezone(tz).date(), []).append(slot)
    if not by_day:
        return picker
    if selected is not None and (day is None or day not in by_day):
        day = selected.astimezone(tz).date()
    if day is None or day not in by_day:
        day = min(by_day)
    picker.day = day
    picker.day_label = day_label(day)
    picker.times = [
        TimeChoice(instant_value(slot.start), time_label(slot.start, tz), slot.start == selected)
        for slot in by_day[day]
    ]
    first, last = min(by_day), max(by_day)
    month_start = first.replace(day=1)
    while month_start <= last:
        next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
        cells = []
        current = month_start
        while current < next_month:
            cells.append(
                DayCell(
                    date=current,
                    label=day_label(current),
                    available=current in by_day,
                    selected=current == day,
                    href=day_href(current) if current in by_day else "",
                )
            )
            current += dt.timedelta(days=1)
        picker.months.append(
            Month(
                label=format_skeleton("yMMMM", month_start, locale=locale),
                lead=month_start.weekday(),
                days=cells,
            )
        )
        month_start = next_month
    return picker


def zone_from_query(request: web.Request, fallback: str) -> tuple[str, bool]:
    wanted = request.query.get("zone", "")
    if wanted and len(wanted) <= 64 and is_timezone(wanted):
        return wanted, True
    return fallback, False


def day_from_query(request: web.Request) -> dt.date | None:
    value = request.query.get("day", "")
    if len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def form_field(form: Any, name: str) -> str:
    value = form.get(name)
    return value[:FIELD_LIMIT] if isinstance(value, str) else ""


# --- messages for the service's refusals ---------------------------------------------------


def field_message(field_name: str) -> str:
    """What to tell a client about a field ``booking.BookingError`` named."""
    messages = {
        "name": lambda: _("Please enter your name (at most 200 characters)."),
        "email": lambda: _("Please enter your e-mail address, like name@example.com."),
        "phone": lambda: _(
            "Please enter a phone number using digits, spaces and + ( ) - (at most 40 "
            "characters), or leave it empty."
        ),
        "note": lambda: _("Please shorten this to at most %(max)d characters.") % {"max": NOTE_MAX},
        "timezone": lambda: _("Please choose your time zone from the list."),
        "start": lambda: _("That time cannot be booked. Please choose one of the times shown."),
        "session_type": lambda: _("Please choose one of the session types shown."),
    }
    message = messages.get(field_name)
    return message() if message else _("Please check this field.")


def nearest_choices(slots: list[Slot], zone: str) -> list[TimeChoice]:
    """The free times nearest a time that was just taken, to offer instead, in ``zone``."""
    tz = zoneinfo.ZoneInfo(zone)
    return [TimeChoice(instant_value(slot.start), when_label(slot.start, tz)) for slot in slots]
