"""The JSON API for integrations, under ``/api/v1`` (described by ``/api/v1/openapi.json``).

Public and cookie-free: a manage link's token is the only credential, and it is in the
path.  POST bodies must be ``application/json`` (anything else is 415, so no HTML form
can post here).  Instants are ISO 8601 in UTC (``2026-03-04T15:00:00Z``) on the way out
and ISO 8601 with an offset on the way in.  Every error is a problem object
(``server.problems``); bad input is never a 500.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import booking, metrics, openapi, problems, sessions
from server.availability import Slot
from server.booking_rules import (
    BookingError,
    BookingProblem,
    ClientDetails,
    FieldError,
    NotChangeable,
    NotFound,
    SlotTaken,
    TooLate,
)
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Therapist
from server.problems import Problem

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1
MAX_SPAN_DAYS = 62
MAX_DAYS_FROM_TODAY = 366
DEFAULT_SPAN_DAYS = 14
BOOKING_FIELDS = frozenset(
    {
        "session_type",
        "start",
        "name",
        "email",
        "phone",
        "note",
        "timezone",
        "consent_telehealth",
        "consent_privacy",
    }
)
_INSTANT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})",
    re.IGNORECASE | re.ASCII,
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ID = re.compile(r"[0-9]{1,10}")


def setup(app: web.Application) -> None:
    app.middlewares.append(problems.api_problems)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi_document)
    app.router.add_get(f"{PREFIX}/therapists/{{slug}}/session-types", list_session_types)
    app.router.add_get(f"{PREFIX}/therapists/{{slug}}/slots", list_slots)
    app.router.add_post(
        f"{PREFIX}/therapists/{{slug}}/bookings", metrics.counts_bookings(create_booking)
    )
    app.router.add_post(f"{PREFIX}/manage/{{token}}/cancel", cancel)
    app.router.add_post(f"{PREFIX}/manage/{{token}}/reschedule", reschedule)


# --- views -----------------------------------------------------------------------------------


async def openapi_document(_request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def list_session_types(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER]() as db:
        therapist = await _therapist(db, request)
        kinds = await booking.session_types(db, therapist.id, public_only=True)
    return web.json_response(
        {
            "therapist": {
                "slug": therapist.slug,
                "name": therapist.display_name,
                "timezone": therapist.timezone,
            },
            "session_types": [
                {
                    "id": kind.id,
                    "name": kind.name,
                    "duration_minutes": kind.duration_minutes,
                    "price_text": kind.price_text,
                    "min_notice_minutes": kind.min_notice_minutes,
                    "horizon_days": kind.horizon_days,
                }
                for kind in kinds
            ],
        }
    )


async def list_slots(request: web.Request) -> web.Response:
    now = request.app[CLOCK]()
    query = request.query
    errors: list[FieldError] = []
    kind_id = _query_id(query.get("session_type"), "session_type", errors)
    first = _query_date(query.get("from"), "from", errors)
    last = _query_date(query.get("to"), "to", errors)
    _raise_if(errors)
    async with request.app[SESSIONMAKER]() as db:
        therapist = await _therapist(db, request)
        zone = ZoneInfo(therapist.timezone)
        today = now.astimezone(zone).date()
        first, last = _window(first, last, today)
        assert kind_id is not None
        kind = await booking.session_type(db, therapist.id, kind_id, public_only=True)
        if kind is None:
            _invalid([FieldError("session_type", "is not a session type offered here")])
        slots = await booking.slots_for(db, therapist, kind, now)
    low = dt.datetime.combine(first, dt.time(), tzinfo=zone)
    high = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return web.json_response(
        {
            "session_type": kind_id,
            "timezone": therapist.timezone,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "slots": [_slot(slot) for slot in slots if low <= slot.start < high],
        }
    )


async def create_booking(request: web.Request) -> web.Response:
    body = await _json_object(request)
    async with request.app[SESSIONMAKER]() as db:
        therapist = await _therapist(db, request)
    kind_id, start, details = _booking_input(body)
    settings = request.app[SETTINGS]
    try:
        booked = await booking.book(
            request.app[SESSIONMAKER],
            therapist_id=therapist.id,
            session_type_id=kind_id,
            start=start,
            client=details,
            now=request.app[CLOCK](),
            join_grace=dt.timedelta(minutes=settings.join_grace_minutes),
            reminder_hours=settings.reminder_hours,
            source_ip=sessions.client_ip(request),
        )
    except BookingProblem as exc:
        _raise_problem(exc)
    return web.json_response(
        {
            "appointment": booked.appointment_id,
            "start": _instant(booked.start),
            "end": _instant(booked.end),
            "manage_url": _manage_url(request, booked.manage_token),
        },
        status=201,
    )


async def cancel(request: web.Request) -> web.Response:
    body = await _json_object(request, empty_ok=True)
    _raise_if([_unknown(key) for key in body])
    try:
        appointment_id = await booking.cancel_by_client(
            request.app[SESSIONMAKER],
            request.match_info["token"],
            request.app[CLOCK](),
            source_ip=sessions.client_ip(request),
        )
    except BookingProblem as exc:
        _raise_problem(exc)
    return web.json_response({"appointment": appointment_id, "status": "cancelled"})


async def reschedule(request: web.Request) -> web.Response:
    body = await _json_object(request)
    errors = [_unknown(key) for key in body if key != "start"]
    start = _instant_field(body, "start", errors)
    _raise_if(errors)
    assert start is not None
    settings = request.app[SETTINGS]
    try:
        moved = await booking.reschedule_by_client(
            request.app[SESSIONMAKER],
            request.match_info["token"],
            start,
            request.app[CLOCK](),
            join_grace=dt.timedelta(minutes=settings.join_grace_minutes),
            reminder_hours=settings.reminder_hours,
            source_ip=sessions.client_ip(request),
        )
    except BookingProblem as exc:
        _raise_problem(exc)
    return web.json_response(
        {
            "appointment": moved.appointment_id,
            "start": _instant(moved.start),
            "end": _instant(moved.end),
            "manage_url": _manage_url(request, moved.manage_token),
        }
    )


# --- input -----------------------------------------------------------------------------------


async def _json_object(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Problem("unsupported-media-type", "Send the body as application/json.")
    raw = await request.read()  # over the size limit: 413, via problems.api_problems
    if empty_ok and not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise Problem("malformed-json", "The body is not valid UTF-8 JSON.") from None
    if not isinstance(value, dict):
        raise Problem("malformed-json", "The body must be a JSON object.")
    return value


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _booking_input(body: dict[str, Any]) -> tuple[int, dt.datetime, ClientDetails]:
    errors = [_unknown(key) for key in body if key not in BOOKING_FIELDS]
    kind_id = body.get("session_type")
    if not _is_id(kind_id):
        errors.append(FieldError("session_type", f"must be a whole number from 1 to {MAX_ID}"))
    start = _instant_field(body, "start", errors)
    for field in ("consent_telehealth", "consent_privacy"):
        if body.get(field) is not True:
            errors.append(FieldError(field, "must be true: the client agrees to it"))
    texts: dict[str, Any] = {}
    for field in ("name", "email", "timezone", "phone", "note"):
        value = body.get(field)
        if field in ("phone", "note") and value is None:
            texts[field] = None
        elif isinstance(value, str):
            texts[field] = value
        else:
            errors.append(FieldError(field, "is required, as text"))
    details: ClientDetails | None = None
    if len(texts) == 5:
        try:
            details = ClientDetails(**texts)
        except BookingError as exc:
            errors.extend(exc.errors)
    _raise_if(errors)
    assert isinstance(kind_id, int) and start is not None and details is not None
    return kind_id, start, details


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _instant_field(
    body: dict[str, Any], field: str, errors: list[FieldError]
) -> dt.datetime | None:
    value = body.get(field)
    message = "must be a date and time with an offset, e.g. 2026-03-04T15:00:00Z"
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        errors.append(FieldError(field, message))
        return None
    try:
        return dt.datetime.fromisoformat(value.upper()).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        errors.append(FieldError(field, message))
        return None


def _query_id(value: str | None, field: str, errors: list[FieldError]) -> int | None:
    if value is None or not _ID.fullmatch(value) or not 1 <= int(value) <= MAX_ID:
        errors.append(FieldError(field, f"must be a whole number from 1 to {MAX_ID}"))
        return None
    return int(value)


def _query_date(value: str | None, field: str, errors: list[FieldError]) -> dt.date | None:
    if value is None:
        return None
    try:
        if _DATE.fullmatch(value):
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    errors.append(FieldError(field, "must be a date like 2026-03-04"))
    return None


def _window(first: dt.date | None, last: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The local dates asked for (by default two weeks from today), or a 422."""
    far = [
        FieldError(field, f"must be within {MAX_DAYS_FROM_TODAY} days of today")
        for field, day in (("from", first), ("to", last))
        if day is not None and abs((day - today).days) > MAX_DAYS_FROM_TODAY
    ]
    _raise_if(far)
    first = first or today
    last = last or first + dt.timedelta(days=DEFAULT_SPAN_DAYS - 1)
    if last < first:
        _invalid([FieldError("to", "must not be before from")])
    if (last - first).days >= MAX_SPAN_DAYS:
        _invalid([FieldError("to", f"must be at most {MAX_SPAN_DAYS - 1} days after from")])
    return first, last


def _unknown(key: str) -> FieldError:
    shown = key if key.isascii() and key.isprintable() and len(key) <= 64 else "?"
    return FieldError(shown, "is not a known field")


# --- output ----------------------------------------------------------------------------------


async def _therapist(db: AsyncSession, request: web.Request) -> Therapist:
    therapist = await booking.public_therapist(db, request.match_info["slug"])
    if therapist is None:
        raise Problem("therapist-not-found", "No therapist takes bookings at this address.")
    return therapist


def _raise_if(errors: list[FieldError]) -> None:
    if errors:
        _invalid(errors)


def _invalid(errors: list[FieldError]) -> NoReturn:
    raise Problem(
        "validation-failed",
        "; ".join(f"{e.field}: {e.message}" for e in errors[:5]),
        errors=[{"field": e.field, "message": e.message} for e in errors],
    )


def _raise_problem(exc: BookingProblem) -> NoReturn:
    if isinstance(exc, BookingError):
        _invalid(list(exc.errors))
    if isinstance(exc, SlotTaken):
        raise Problem(
            "slot-taken",
            "Someone else has just booked that time; the nearest free times are listed.",
            nearest=[_slot(slot) for slot in exc.nearest],
        ) from None
    if isinstance(exc, TooLate):
        raise Problem(
            "too-late",
            "This appointment is too close to change online; please contact the therapist.",
            contact=exc.contact_text,
            cutoff=_instant(exc.cutoff_at),
        ) from None
    if isinstance(exc, NotChangeable):
        raise Problem(
            "not-changeable", "The appointment was cancelled or moved; this link is out of date."
        ) from None
    if isinstance(exc, NotFound) and exc.what == "therapist":
        raise Problem("therapist-not-found", "No therapist takes bookings here.") from None
    if isinstance(exc, NotFound) and exc.what == "link":
        raise Problem("unknown-link", "This link does not work.") from None
    raise Problem("not-found", str(exc)) from None


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _slot(slot: Slot) -> dict[str, str]:
    return {"start": _instant(slot.start), "end": _instant(slot.end)}


def _manage_url(request: web.Request, token: str) -> str:
    return f"{request.app[SETTINGS].public_url}/manage/{token}"
