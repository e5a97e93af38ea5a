"""A client's record, as the therapist sees it: its page, and the appointments made,
moved, cancelled and re-sent from it.

Like every therapist page, each needs a signed-in therapist and each form its CSRF token;
a client or appointment of another therapist's is a 404.  Changes go through the booking
service (``server.booking``), each with its audit event and e-mails in one transaction.
Homework is assigned from the same page (``server.homework``, which shows it again with
``record_page`` when a form is refused).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select

from server import (
    booking,
    outbox,
    sessions,
    worksheet_pages,
)
from server.booking_picker import when_label
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import AppointmentStatus, Client
from server.therapist_forms import (
    checked_form,
    local_date,
    path_id,
    render,
    text,
    wall_time,
    whole_number,
)
from server.therapist_pages import (
    CLIENT_DONE,
    SERIES_WEEKS,
    appointment_view,
    local_instant,
    owned_appointment,
    type_names,
)


@dataclass
class RecordProblems:
    """What went wrong on the client's page: for the new-appointment form, or one appointment."""

    new_values: dict[str, str] | None = None
    new_errors: dict[str, str] | None = None
    appointment_id: int | None = None
    appointment_error: str | None = None
    move_values: dict[str, str] | None = None
    homework_values: dict[str, str] | None = None
    homework_error: str | None = None


def _new_values(form: Any = None, today: dt.date | None = None) -> dict[str, str]:
    if form is None:
        return {
            "repeat": "once",
            "session_type": "",
            "date": today.isoformat() if today else "",
            "time": "",
            "weeks": "10",
        }
    return {
        "repeat": "weekly" if text(form, "repeat", limit=10) == "weekly" else "once",
        "session_type": text(form, "session_type", limit=12),
        "date": text(form, "date", limit=10),
        "time": text(form, "time", limit=8),
        "weeks": text(form, "weeks", limit=4),
    }


async def record_page(
    request: web.Request, client_id: int, problems: RecordProblems | None = None, status: int = 200
) -> web.Response:
    me = sessions.signed_in(request)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    problems = problems or RecordProblems()
    async with request.app[SESSIONMAKER]() as db:
        record = await booking.client_record(db, me.therapist.id, client_id, now)
        if record is None:
            raise web.HTTPNotFound()
        names = await type_names(db, me.therapist.id)
        types = await booking.session_types(db, me.therapist.id, public_only=False)
        worksheets = await worksheet_pages.record_context(db, me.therapist.id, client_id, tz)
    name = record.client.name
    done = CLIENT_DONE.get(request.query.get("done", ""))
    context: dict[str, Any] = {
        "client": record.client,
        "upcoming": [appointment_view(a, tz, names, name) for a in record.upcoming],
        "past": [appointment_view(a, tz, names, name) for a in record.past],
        "session_types": types,
        "new_values": problems.new_values or _new_values(today=now.astimezone(tz).date()),
        "new_errors": problems.new_errors or {},
        "problem_id": problems.appointment_id,
        "problem": problems.appointment_error,
        "move_values": problems.move_values or {},
        "done": done() if done else None,
        "weeks_range": SERIES_WEEKS,
        "today": now.astimezone(tz).date(),
        **worksheets,
        "homework_values": problems.homework_values or {"worksheet": "", "due": ""},
        "homework_error": problems.homework_error,
    }
    return render(request, "therapist/client.html", context, nav="clients", status=status)


@sessions.therapist_required
async def client_page(request: web.Request) -> web.StreamResponse:
    return await record_page(request, path_id(request, "client_id"))


async def _own_client(request: web.Request, client_id: int) -> None:
    me = sessions.signed_in(request)
    async with request.app[SESSIONMAKER]() as db:
        found = await db.scalar(
            select(Client.id).where(Client.id == client_id, Client.therapist_id == me.therapist.id)
        )
    if found is None:
        raise web.HTTPNotFound()


def _taken_message(exc: booking.SlotTaken, tz: zoneinfo.ZoneInfo) -> str:
    if exc.start is None:
        return _("That time collides with another appointment. Nothing was booked.")
    when = when_label(exc.start, tz)
    if exc.occurrence:
        return _(
            "Week %(week)d (%(when)s) collides with another appointment. Nothing was booked."
        ) % {"week": exc.occurrence, "when": when}
    return _("%(when)s collides with another appointment. Nothing was changed.") % {"when": when}


@sessions.therapist_required
async def new_appointment(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    form = await checked_form(request)
    await _own_client(request, client_id)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    values = _new_values(form)
    errors: dict[str, str] = {}
    type_id = whole_number(values["session_type"], 1, 10**12)
    if type_id is None:
        errors["new-session-type"] = _("Session type: choose one.")
    day, time = local_date(values["date"]), wall_time(values["time"])
    if day is None:
        errors["new-date"] = _("Date: choose a date.")
    if time is None:
        errors["new-time"] = _("Time: enter a time like 10:00.")
    weeks = 1
    if values["repeat"] == "weekly":
        number = whole_number(values["weeks"], *SERIES_WEEKS)
        if number is None:
            errors["new-weeks"] = _("Number of weeks: enter a whole number from 1 to 52.")
        else:
            weeks = number
    start = None
    if day is not None and time is not None:
        start = local_instant(day, time, tz)
        if start is None:
            errors["new-time"] = _(
                "Time: the clocks change that night, so this time does not exist on that date."
            )
        elif start <= now:
            errors["new-date"] = _("Date: choose a time in the future.")

    def again(status: int) -> Awaitable[web.Response]:
        return record_page(
            request, client_id, RecordProblems(new_values=values, new_errors=errors), status
        )

    if errors or start is None or type_id is None:
        return await again(422)
    source_ip = sessions.client_ip(request)
    try:
        if values["repeat"] == "weekly":
            await booking.create_series(
                request.app[SESSIONMAKER],
                therapist_id=me.therapist.id,
                client_id=client_id,
                session_type_id=type_id,
                first_local_start=start.astimezone(tz),
                weeks=weeks,
                now=now,
                source_ip=source_ip,
                reminder_hours=request.app[SETTINGS].reminder_hours,
            )
        else:
            await booking.create_appointment(
                request.app[SESSIONMAKER],
                therapist_id=me.therapist.id,
                client_id=client_id,
                session_type_id=type_id,
                start=start,
                now=now,
                source_ip=source_ip,
                reminder_hours=request.app[SETTINGS].reminder_hours,
            )
    except booking.SlotTaken as exc:
        errors["new-time"] = _taken_message(exc, tz)
        return await again(409)
    except booking.NotFound as exc:
        if exc.what != "session type":
            raise web.HTTPNotFound() from None
        errors["new-session-type"] = _("Session type: choose one.")
        return await again(422)
    except booking.BookingError as exc:
        if exc.field == "weeks":
            errors["new-weeks"] = _("Number of weeks: enter a whole number from 1 to 52.")
        else:
            errors["new-date"] = _("Date: choose a time in the future.")
        return await again(422)
    done = "series-created" if values["repeat"] == "weekly" else "created"
    raise web.HTTPSeeOther(f"/clients/{client_id}?done={done}")


def _appointment_problem(
    request: web.Request,
    client_id: int,
    appointment_id: int,
    message: str,
    status: int,
    move_values: dict[str, str] | None = None,
) -> Awaitable[web.Response]:
    return record_page(
        request,
        client_id,
        RecordProblems(
            appointment_id=appointment_id, appointment_error=message, move_values=move_values
        ),
        status,
    )


def _not_scheduled() -> str:
    return _("This appointment is no longer scheduled, so it cannot be changed.")


async def _appointment_form(request: web.Request) -> tuple[sessions.SignedIn, int, int, Any]:
    """The signed-in therapist, the client's and appointment's ids and the form posted about
    one of the therapist's appointments, its CSRF token checked; a 404 unless the
    appointment is this therapist's and this client's."""
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    appointment_id = path_id(request, "appointment_id")
    form = await checked_form(request)
    async with request.app[SESSIONMAKER]() as db:
        await owned_appointment(db, me.therapist.id, client_id, appointment_id)
    return me, client_id, appointment_id, form


@sessions.therapist_required
async def move_appointment(request: web.Request) -> web.StreamResponse:
    me, client_id, appointment_id, form = await _appointment_form(request)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    values = {"date": text(form, "date", limit=10), "time": text(form, "time", limit=8)}
    day, time = local_date(values["date"]), wall_time(values["time"])
    message = None
    start = None
    if day is None or time is None:
        message = _("Enter the new date and a time like 10:00.")
    else:
        start = local_instant(day, time, tz)
        if start is None:
            message = _("The clocks change that night, so this time does not exist on that date.")
        elif start <= now:
            message = _("Choose a time in the future.")
    if message is not None or start is None:
        return await _appointment_problem(
            request, client_id, appointment_id, message or "", 422, values
        )
    settings = request.app[SETTINGS]
    try:
        await booking.move_occurrence(
            request.app[SESSIONMAKER],
            therapist_id=me.therapist.id,
            appointment_id=appointment_id,
            new_start=start,
            now=now,
            join_grace=dt.timedelta(minutes=settings.join_grace_minutes),
            source_ip=sessions.client_ip(request),
            reminder_hours=request.app[SETTINGS].reminder_hours,
        )
    except booking.NotFound:
        raise web.HTTPNotFound() from None
    except booking.SlotTaken as exc:
        return await _appointment_problem(
            request, client_id, appointment_id, _taken_message(exc, tz), 409, values
        )
    except booking.BookingError as exc:
        problem = (
            _not_scheduled() if exc.field == "appointment" else _("Choose a time in the future.")
        )
        return await _appointment_problem(request, client_id, appointment_id, problem, 422, values)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=moved")


@sessions.therapist_required
async def cancel_appointment(request: web.Request) -> web.StreamResponse:
    me, client_id, appointment_id, _form = await _appointment_form(request)
    try:
        await booking.cancel_occurrence(
            request.app[SESSIONMAKER],
            therapist_id=me.therapist.id,
            appointment_id=appointment_id,
            now=request.app[CLOCK](),
            source_ip=sessions.client_ip(request),
        )
    except booking.NotFound:
        raise web.HTTPNotFound() from None
    except booking.BookingError:
        return await _appointment_problem(request, client_id, appointment_id, _not_scheduled(), 409)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=cancelled")


@sessions.therapist_required
async def cancel_series(request: web.Request) -> web.StreamResponse:
    me, client_id, appointment_id, _form = await _appointment_form(request)
    try:
        await booking.cancel_rest_of_series(
            request.app[SESSIONMAKER],
            therapist_id=me.therapist.id,
            from_appointment_id=appointment_id,
            now=request.app[CLOCK](),
            source_ip=sessions.client_ip(request),
        )
    except booking.NotFound:
        raise web.HTTPNotFound() from None
    except booking.BookingError as exc:
        message = (
            _("This appointment is not part of a series.")
            if exc.message == "is not part of a series"
            else _not_scheduled()
        )
        return await _appointment_problem(request, client_id, appointment_id, message, 409)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=series-cancelled")


@sessions.therapist_required
async def resend_invite(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    appointment_id = path_id(request, "appointment_id")
    await checked_form(request)
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        appointment = await owned_appointment(db, me.therapist.id, client_id, appointment_id)
        if appointment.state is not AppointmentStatus.SCHEDULED or appointment.ends_at <= now:
            problem = _not_scheduled()
        else:
            problem = None
            await outbox.on_invite_resent(db, appointment, now)
            sessions.audit_act(
                db,
                request,
                at=now,
                action="invite_resent",
                record_type="appointment",
                record_id=appointment.id,
            )
    if problem is not None:
        return await _appointment_problem(request, client_id, appointment_id, problem, 409)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=resent")


def setup(app: web.Application) -> None:
    app.router.add_get("/clients/{client_id}", client_page, name="client")
    app.router.add_post(
        "/clients/{client_id}/appointments", new_appointment, name="client_appointment_new"
    )
    base = "/clients/{client_id}/appointments/{appointment_id}"
    app.router.add_post(f"{base}/move", move_appointment, name="appointment_move")
    app.router.add_post(f"{base}/cancel", cancel_appointment, name="appointment_cancel")
    app.router.add_post(f"{base}/cancel-series", cancel_series, name="appointment_cancel_series")
    app.router.add_post(f"{base}/resend", resend_invite, name="appointment_resend")
