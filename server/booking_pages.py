"""The client's public booking pages at ``/book/<slug>``.

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

The manage link's pages are ``server.manage_pages``; the picker both use,
``server.booking_picker``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import zoneinfo
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server import booking, metrics, sessions
from server.availability import Slot
from server.booking_picker import (
    TimeChoice,
    build_picker,
    day_from_query,
    field_message,
    form_field,
    nearest_choices,
    parse_instant,
    when_label,
    zone_from_query,
    zone_label,
    zone_options,
)
from server.booking_rules import NOTE_MAX, is_timezone
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Appointment, AppointmentStatus, SessionType, Therapist
from server.tokens import keyed_hash, same

BOOKED_COOKIE = "alcove_booked"
BOOKED_COOKIE_SECONDS = 30 * 60
MAX_COOKIE = 512

#: The element each field named by a refusal is shown at.
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
    nearest_times: list[TimeChoice] | None = None
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
            nearest_times = nearest_choices(nearest, zone)
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
        "nearest": nearest_times,
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
    zone, chosen = zone_from_query(request, therapist.timezone)
    return await _render_booking(
        request, therapist, types, kind, zone=zone, zone_chosen=chosen, day=day_from_query(request)
    )


async def booking_submit(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    form_data = await request.post()
    if not sessions.check_login_csrf(request, form_field(form_data, "csrf_token") or None):
        raise web.HTTPForbidden()
    therapist, types = await _therapist_and_types(request, slug)
    kind = _selected_type(types, form_field(form_data, "session_type_id"))
    zone_text = form_field(form_data, "timezone")
    form = BookingForm(
        name=form_field(form_data, "name"),
        email=form_field(form_data, "email"),
        phone=form_field(form_data, "phone"),
        note=form_field(form_data, "note"),
        timezone=zone_text,
        consent_telehealth=isinstance(form_data.get("consent_telehealth"), str),
        consent_privacy=isinstance(form_data.get("consent_privacy"), str),
        start=parse_instant(form_field(form_data, "start")),
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
    if str(kind.id if kind else "") != form_field(form_data, "session_type_id"):
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


def setup(app: web.Application) -> None:
    app.router.add_get("/book/{slug}", booking_page, name="book")
    app.router.add_post("/book/{slug}", metrics.counts_bookings(booking_submit), name="book_submit")
    app.router.add_get("/book/{slug}/confirmed", confirmed_page, name="book_confirmed")
