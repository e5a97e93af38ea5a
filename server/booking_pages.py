"""The client's public pages: booking at ``/book/<slug>`` and the manage link.

Booking
    ``GET /book/<slug>`` shows the therapist, the public session types and a calendar of
    free days and times.  The server renders the times in the therapist's zone (or the one
    chosen with the zone form, ``?zone=``), with links for the days (``?day=``), so the
    page works without JavaScript; ``booking.js`` re-renders them in the visitor's zone
    from ``/api/v1/therapists/<slug>/slots``.  ``POST /book/<slug>`` is protected by the
    pre-session CSRF token of the sign-in form (``sessions.login_csrf_token``) and calls
    ``booking.book``.  On success it answers ``303 /book/<slug>/confirmed``: that URL
    carries nothing about the booking; what the confirmation shows is read again through a
    short-lived signed cookie (``alcove_booked``, path-limited to that page) holding only
    the appointment's id, the client's zone and an expiry.

Manage link
    ``GET /manage/<token>`` trades the token for an HttpOnly cookie (``alcove_manage``,
    path ``/manage``) and redirects to ``/manage``, as ``/join/`` does, so the token does not
    stay in the address bar, the history or a ``Referer``.  ``/manage`` shows the
    appointment and, until the therapist's cutoff, a cancel form and the free times to move
    to; its forms carry a CSRF token derived from the cookie.  After a move the cookie holds
    the new link's token (the old link stops working).  A cancelled or moved appointment's
    link only says so.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import zoneinfo
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from babel.dates import format_date, format_skeleton, format_time, get_day_names
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server import booking, i18n, metrics, sessions
from server.availability import Slot
from server.booking_rules import NOTE_MAX, is_timezone
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Appointment, AppointmentStatus, SessionType, Therapist
from server.tokens import keyed_hash, same

BOOKED_COOKIE = "alcove_booked"
BOOKED_COOKIE_SECONDS = 30 * 60
MANAGE_COOKIE = "alcove_manage"
MAX_COOKIE = 512
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


def _zone_from_query(request: web.Request, fallback: str) -> tuple[str, bool]:
    wanted = request.query.get("zone", "")
    if wanted and len(wanted) <= 64 and is_timezone(wanted):
        return wanted, True
    return fallback, False


def _day_from_query(request: web.Request) -> dt.date | None:
    value = request.query.get("day", "")
    if len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _field(form: Any, name: str) -> str:
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


FIELD_IDS = {
    "name": "name",
    "email": "email",
    "phone": "phone",
    "note": "note",
    "timezone": "zone",
    "start": "times",
    "session_type": "types-heading",
    "consent_telehealth": "consent_telehealth",
    "consent_privacy": "consent_privacy",
}


# --- the booking page --------------------------------------------------------------------


@dataclass
class BookingForm:
    name: str = ""
    email: str = ""
    phone: str = ""
    note: str = ""
    timezone: str = ""
    consent_telehealth: bool = False
    consent_privacy: bool = False
    start: dt.datetime | None = None


async def _therapist_and_types(
    request: web.Request, slug: str
) -> tuple[Therapist, list[SessionType]]:
    async with request.app[SESSIONMAKER]() as db:
        therapist = await booking.public_therapist(db, slug)
        if therapist is None:
            raise web.HTTPNotFound()
        types = await booking.session_types(db, therapist.id, public_only=True)
    return therapist, types


def _selected_type(types: list[SessionType], wanted: str) -> SessionType | None:
    for kind in types:
        if str(kind.id) == wanted:
            return kind
    return types[0] if types else None


def _book_href(slug: str, **params: str) -> str:
    query = urlencode({key: value for key, value in params.items() if value})
    return f"/book/{slug}" + (f"?{query}" if query else "")


async def _render_booking(
    request: web.Request,
    therapist: Therapist,
    types: list[SessionType],
    kind: SessionType | None,
    *,
    zone: str,
    zone_chosen: bool,
    day: dt.date | None = None,
    form: BookingForm | None = None,
    errors: dict[str, str] | None = None,
    nearest: list[Slot] | None = None,
    status: int = 200,
) -> web.Response:
    form = form or BookingForm()
    slug = therapist.slug or ""
    picker = None
    nearest_choices: list[TimeChoice] | None = None
    if kind is not None:
        now = request.app[CLOCK]()
        async with request.app[SESSIONMAKER]() as db:
            slots = await booking.slots_for(db, therapist, kind, now)
        type_id = str(kind.id)
        selected = form.start if nearest is None else None
        if nearest:
            day = nearest[0].start.astimezone(zoneinfo.ZoneInfo(zone)).date()
        picker = build_picker(
            slots,
            zone=zone,
            zone_chosen=zone_chosen,
            day=day,
            selected=selected,
            slots_url=f"/api/v1/therapists/{slug}/slots?" + urlencode({"session_type": type_id}),
            from_day=now.astimezone(zoneinfo.ZoneInfo(therapist.timezone)).date(),
            horizon_days=kind.horizon_days,
            day_href=lambda d: (
                _book_href(slug, type=type_id, zone=zone if zone_chosen else "", day=d.isoformat())
                + "#time-heading"
            ),
        )
        if nearest is not None:
            tz = zoneinfo.ZoneInfo(zone)
            nearest_choices = [
                TimeChoice(instant_value(slot.start), when_label(slot.start, tz))
                for slot in nearest
            ]
    token, fresh_cookie = sessions.login_csrf_token(request)
    context: dict[str, Any] = {
        "therapist": therapist,
        "session_types": types,
        "selected_type": kind,
        "type_hrefs": {
            t.id: _book_href(slug, type=str(t.id), zone=zone if zone_chosen else "")
            + "#time-heading"
            for t in types
        },
        "picker": picker,
        "zones": zone_options(zone),
        "csrf_token": token,
        "form": form,
        "errors": errors or {},
        "field_ids": FIELD_IDS,
        "nearest": nearest_choices,
        "max_note": NOTE_MAX,
    }
    response = aiohttp_jinja2.render_template("book/page.html", request, context, status=status)
    if fresh_cookie:
        sessions.set_cookie(response, request.app[SETTINGS], sessions.PRELOGIN_COOKIE, fresh_cookie)
    return response


async def booking_page(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    therapist, types = await _therapist_and_types(request, slug)
    kind = _selected_type(types, request.query.get("type", ""))
    zone, chosen = _zone_from_query(request, therapist.timezone)
    return await _render_booking(
        request, therapist, types, kind, zone=zone, zone_chosen=chosen, day=_day_from_query(request)
    )


async def booking_submit(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    form_data = await request.post()
    if not sessions.check_login_csrf(request, _field(form_data, "csrf_token") or None):
        raise web.HTTPForbidden()
    therapist, types = await _therapist_and_types(request, slug)
    kind = _selected_type(types, _field(form_data, "session_type_id"))
    zone_text = _field(form_data, "timezone")
    form = BookingForm(
        name=_field(form_data, "name"),
        email=_field(form_data, "email"),
        phone=_field(form_data, "phone"),
        note=_field(form_data, "note"),
        timezone=zone_text,
        consent_telehealth=isinstance(form_data.get("consent_telehealth"), str),
        consent_privacy=isinstance(form_data.get("consent_privacy"), str),
        start=parse_instant(_field(form_data, "start")),
    )
    zone = zone_text if is_timezone(zone_text) else therapist.timezone
    errors: dict[str, str] = {}
    client: booking.ClientDetails | None = None
    try:
        client = booking.ClientDetails(
            name=form.name,
            email=form.email,
            phone=form.phone or None,
            note=form.note or None,
            timezone=form.timezone,
        )
    except booking.BookingError as exc:
        for problem in exc.errors:
            errors.setdefault(problem.field, field_message(problem.field))
    if form.start is None:
        errors["start"] = _("Please choose a time.")
    if str(kind.id if kind else "") != _field(form_data, "session_type_id"):
        errors["session_type"] = field_message("session_type")
    if not form.consent_telehealth:
        errors["consent_telehealth"] = _("Please confirm that you agree to sessions by video.")
    if not form.consent_privacy:
        errors["consent_privacy"] = _("Please confirm that you have read the privacy notice.")

    def again(status: int, nearest: list[Slot] | None = None) -> Awaitable[web.Response]:
        return _render_booking(
            request,
            therapist,
            types,
            kind,
            zone=zone,
            zone_chosen=True,
            form=form,
            errors=errors,
            nearest=nearest,
            status=status,
        )

    if errors or client is None or kind is None or form.start is None:
        return await again(422)
    settings = request.app[SETTINGS]
    try:
        booked = await booking.book(
            request.app[SESSIONMAKER],
            therapist_id=therapist.id,
            session_type_id=kind.id,
            start=form.start,
            client=client,
            now=request.app[CLOCK](),
            join_grace=dt.timedelta(minutes=settings.join_grace_minutes),
            source_ip=sessions.client_ip(request),
            reminder_hours=request.app[SETTINGS].reminder_hours,
        )
    except booking.SlotTaken as exc:
        form.start = None
        return await again(409, nearest=exc.nearest)
    except booking.BookingError as exc:
        for problem in exc.errors:
            errors.setdefault(problem.field, field_message(problem.field))
        return await again(422)
    except booking.NotFound:
        raise web.HTTPNotFound() from None
    response = web.Response(status=303, headers={"Location": f"/book/{slug}/confirmed"})
    expires = int(request.app[CLOCK]().timestamp()) + BOOKED_COOKIE_SECONDS
    response.set_cookie(
        BOOKED_COOKIE,
        sign_booked(settings.secret_key, booked.appointment_id, client.timezone, expires),
        max_age=BOOKED_COOKIE_SECONDS,
        path=f"/book/{slug}/confirmed",
        httponly=True,
        samesite="Lax",
        secure=settings.secure_cookies,
    )
    return response


# --- the confirmation -----------------------------------------------------------------------


def sign_booked(secret: str, appointment_id: int, zone: str, expires: int) -> str:
    payload = json.dumps({"a": appointment_id, "z": zone, "e": expires}, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{encoded}.{keyed_hash(secret, 'booked', encoded)}"


def read_booked(secret: str, value: str | None, now: dt.datetime) -> tuple[int, str] | None:
    """The appointment id and zone in a valid, unexpired confirmation cookie."""
    if not value or len(value) > MAX_COOKIE or "." not in value:
        return None
    encoded, signature = value.rsplit(".", 1)
    if not same(signature, keyed_hash(secret, "booked", encoded)):
        return None
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        appointment_id, zone, expires = int(data["a"]), str(data["z"]), int(data["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if expires < now.timestamp() or not is_timezone(zone):
        return None
    return appointment_id, zone


@dataclass(frozen=True)
class BookedView:
    therapist_name: str
    session_type_name: str
    starts_at: dt.datetime
    when: str
    zone_label: str


async def confirmed_page(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    now = request.app[CLOCK]()
    found = read_booked(request.app[SETTINGS].secret_key, request.cookies.get(BOOKED_COOKIE), now)
    view = None
    if found is not None:
        appointment_id, zone = found
        async with request.app[SESSIONMAKER]() as db:
            appointment = await db.scalar(
                select(Appointment)
                .where(Appointment.id == appointment_id)
                .options(selectinload(Appointment.therapist))
            )
            kind = (
                await db.get(SessionType, appointment.session_type_id)
                if appointment is not None and appointment.session_type_id is not None
                else None
            )
        if (
            appointment is not None
            and appointment.therapist.slug == slug
            and appointment.state is AppointmentStatus.SCHEDULED
        ):
            tz = zoneinfo.ZoneInfo(zone)
            view = BookedView(
                therapist_name=appointment.therapist.display_name,
                session_type_name=kind.name if kind else "",
                starts_at=appointment.starts_at,
                when=when_label(appointment.starts_at, tz),
                zone_label=zone_label(zone),
            )
    context: dict[str, Any] = {"booked": view, "slug": slug}
    return aiohttp_jinja2.render_template("book/confirmed.html", request, context)


# --- the manage link ------------------------------------------------------------------------


def manage_csrf(secret: str, token: str) -> str:
    return keyed_hash(secret, "manage-csrf", token)


def _manage_token(request: web.Request) -> str | None:
    token = request.cookies.get(MANAGE_COOKIE)
    if not token or len(token) > booking.MAX_TOKEN_LENGTH:
        return None
    return token


def _set_manage_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        MANAGE_COOKIE,
        token,
        path="/manage",
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS].secure_cookies,
    )


def _invalid_link(request: web.Request) -> web.Response:
    context: dict[str, Any] = {"state": "invalid", "appointment": None}
    return aiohttp_jinja2.render_template("manage/page.html", request, context, status=404)


async def open_manage_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    async with request.app[SESSIONMAKER]() as db:
        link = await booking.appointment_for_manage_token(db, token, request.app[CLOCK]())
    if link is None:
        return _invalid_link(request)
    response = web.Response(status=303, headers={"Location": "/manage"})
    _set_manage_cookie(request, response, token)
    return response


def _link_state(link: booking.ManageLink, now: dt.datetime) -> str:
    if link.state is booking.LinkState.CHANGEABLE:
        return "open"
    if link.state is booking.LinkState.TOO_LATE:
        return "over" if now >= link.appointment.ends_at else "too_late"
    status = link.appointment.state
    if status is AppointmentStatus.CANCELLED:
        return "cancelled"
    if status is AppointmentStatus.SCHEDULED:
        return "rescheduled"  # its link was replaced when it moved
    return "over"


async def _render_manage(
    request: web.Request,
    token: str,
    *,
    start: dt.datetime | None = None,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    nearest: list[Slot] | None = None,
    zone_override: str | None = None,
    status: int = 200,
) -> web.Response:
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db:
        link = await booking.appointment_for_manage_token(db, token, now)
        if link is None:
            return _invalid_link(request)
        state = _link_state(link, now)
        slots = (
            await booking.slots_for_appointment(db, link.appointment, now)
            if state == "open"
            else []
        )
    appointment, therapist = link.appointment, link.therapist
    client_zone = appointment.client.timezone or therapist.timezone
    if not is_timezone(client_zone):
        client_zone = therapist.timezone
    if zone_override is not None:
        zone, chosen = zone_override, True
    else:
        zone, chosen = _zone_from_query(request, client_zone)
    picker = None
    nearest_choices = None
    if state == "open":
        day = _day_from_query(request)
        if nearest:
            day = nearest[0].start.astimezone(zoneinfo.ZoneInfo(zone)).date()
        kind = link.session_type
        picker = build_picker(
            slots,
            zone=zone,
            zone_chosen=chosen,
            day=day,
            selected=start,
            slots_url="",
            horizon_days=kind.horizon_days if kind else 60,
            day_href=lambda d: (
                "/manage?"
                + urlencode({**({"zone": zone} if chosen else {}), "day": d.isoformat()})
                + "#time-heading"
            ),
        )
        if nearest is not None:
            tz = zoneinfo.ZoneInfo(zone)
            nearest_choices = [
                TimeChoice(instant_value(slot.start), when_label(slot.start, tz))
                for slot in nearest
            ]
    context: dict[str, Any] = {
        "state": state,
        "done": request.query.get("done", ""),
        "appointment": appointment,
        "therapist": therapist,
        "session_type": link.session_type,
        "when_text": f"{when_label(appointment.starts_at, zoneinfo.ZoneInfo(client_zone))} "
        f"({zone_label(client_zone)})",
        "cutoff_hours": therapist.reschedule_cutoff_hours,
        "contact_text": therapist.contact_text,
        "csrf_token": manage_csrf(request.app[SETTINGS].secret_key, token),
        "picker": picker,
        "slots_json": [instant_value(slot.start) for slot in slots],
        "zones": zone_options(zone),
        "errors": errors or {},
        "error": error,
        "nearest": nearest_choices,
    }
    return aiohttp_jinja2.render_template("manage/page.html", request, context, status=status)


async def manage_page(request: web.Request) -> web.StreamResponse:
    token = _manage_token(request)
    if token is None:
        return _invalid_link(request)
    return await _render_manage(request, token)


async def _checked_manage_post(request: web.Request) -> tuple[str, Any]:
    token = _manage_token(request)
    form = await request.post()
    submitted = _field(form, "csrf_token")
    if token is None:
        raise web.HTTPForbidden()
    expected = manage_csrf(request.app[SETTINGS].secret_key, token)
    if not submitted or not same(submitted, expected):
        raise web.HTTPForbidden()
    return token, form


async def manage_cancel(request: web.Request) -> web.StreamResponse:
    token, _form = await _checked_manage_post(request)
    try:
        await booking.cancel_by_client(
            request.app[SESSIONMAKER],
            token,
            request.app[CLOCK](),
            source_ip=sessions.client_ip(request),
        )
    except booking.NotFound:
        return _invalid_link(request)
    except (booking.NotChangeable, booking.TooLate):
        raise web.HTTPSeeOther("/manage") from None
    raise web.HTTPSeeOther("/manage?done=cancelled")


async def manage_reschedule(request: web.Request) -> web.StreamResponse:
    token, form = await _checked_manage_post(request)
    start = parse_instant(_field(form, "start"))
    zone_text = _field(form, "timezone")
    zone = zone_text if is_timezone(zone_text) else None
    if start is None:
        return await _render_manage(
            request,
            token,
            errors={"start": _("Please choose a time.")},
            zone_override=zone,
            status=422,
        )
    settings = request.app[SETTINGS]
    try:
        moved = await booking.reschedule_by_client(
            request.app[SESSIONMAKER],
            token,
            start,
            request.app[CLOCK](),
            join_grace=dt.timedelta(minutes=settings.join_grace_minutes),
            source_ip=sessions.client_ip(request),
            reminder_hours=request.app[SETTINGS].reminder_hours,
        )
    except booking.NotFound:
        return _invalid_link(request)
    except (booking.NotChangeable, booking.TooLate):
        raise web.HTTPSeeOther("/manage") from None
    except booking.SlotTaken as exc:
        return await _render_manage(
            request, token, nearest=exc.nearest, zone_override=zone, status=409
        )
    except booking.BookingError as exc:
        return await _render_manage(
            request,
            token,
            start=start,
            errors={"start": field_message(exc.field)},
            zone_override=zone,
            status=422,
        )
    response = web.Response(status=303, headers={"Location": "/manage?done=moved"})
    _set_manage_cookie(request, response, moved.manage_token)
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/book/{slug}", booking_page, name="book")
    app.router.add_post("/book/{slug}", metrics.counts_bookings(booking_submit), name="book_submit")
    app.router.add_get("/book/{slug}/confirmed", confirmed_page, name="book_confirmed")
    app.router.add_get("/manage", manage_page, name="manage")
    app.router.add_post("/manage/cancel", manage_cancel, name="manage_cancel")
    app.router.add_post("/manage/reschedule", manage_reschedule, name="manage_reschedule")
    app.router.add_get("/manage/{token}", open_manage_link, name="manage_link")
