"""The client's manage link: ``/manage/<token>`` and ``/manage``.

``GET /manage/<token>`` trades the token for an HttpOnly cookie (``alcove_manage``,
path ``/manage``) and redirects to ``/manage``, as ``/join/`` does, so the token does not
stay in the address bar, the history or a ``Referer``.  ``/manage`` shows the
appointment and, until the therapist's cutoff, a cancel form and the free times to move
to; its forms carry a CSRF token derived from the cookie.  After a move the cookie holds
the new link's token (the old link stops working).  A cancelled or moved appointment's
link only says so.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from server import booking, sessions
from server.availability import Slot
from server.booking_picker import (
    build_picker,
    day_from_query,
    field_message,
    form_field,
    instant_value,
    nearest_choices,
    parse_instant,
    when_label,
    zone_from_query,
    zone_label,
    zone_options,
)
from server.booking_rules import is_timezone
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import AppointmentStatus
from server.tokens import keyed_hash, same

MANAGE_COOKIE = "alcove_manage"


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
        zone, chosen = zone_from_query(request, client_zone)
    picker = None
    nearest_times = None
    if state == "open":
        day = day_from_query(request)
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
            nearest_times = nearest_choices(nearest, zone)
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
        "nearest": nearest_times,
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
    submitted = form_field(form, "csrf_token")
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
    start = parse_instant(form_field(form, "start"))
    zone_text = form_field(form, "timezone")
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
    app.router.add_get("/manage", manage_page, name="manage")
    app.router.add_post("/manage/cancel", manage_cancel, name="manage_cancel")
    app.router.add_post("/manage/reschedule", manage_reschedule, name="manage_reschedule")
    app.router.add_get("/manage/{token}", open_manage_link, name="manage_link")
