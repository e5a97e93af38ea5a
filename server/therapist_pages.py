"""The therapist's pages beyond today's dashboard: the week, the clients, and their records.

Every page needs a signed-in therapist (``sessions.therapist_required``), every form its
CSRF token, and every record is looked up together with its owner: another therapist's
client or appointment is a 404, exactly like one that does not exist.  Changes to
appointments go through the booking service (``server.booking``), which writes each of
them with its audit event and e-mails in one transaction.  Times are shown in the
therapist's own zone.

``availability`` and ``settings`` live in ``therapist_availability`` and
``therapist_settings``; ``setup`` here adds their routes too.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from babel.dates import format_date, format_time
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import (
    audit,
    booking,
    i18n,
    outbox,
    sessions,
    therapist_availability,
    therapist_settings,
    worksheet_pages,
)
from server.audit import Actor
from server.booking_pages import when_label
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Appointment, AppointmentStatus, Client, SessionType
from server.slots import existing_instant
from server.therapist_forms import (
    checked_form,
    local_date,
    path_id,
    render,
    text,
    wall_time,
    whole_number,
)

SERIES_WEEKS = (1, 52)


# --- queries (small, read-only) ------------------------------------------------------------


async def clients_of(db: AsyncSession, therapist_id: int, now: dt.datetime) -> list[ClientRow]:
    """The therapist's clients by name, each with the start of their next appointment."""
    upcoming = (
        select(Appointment.client_id, func.min(Appointment.starts_at).label("next_start"))
        .where(
            Appointment.therapist_id == therapist_id,
            Appointment.status == AppointmentStatus.SCHEDULED.value,
            Appointment.starts_at >= now,
        )
        .group_by(Appointment.client_id)
        .subquery()
    )
    rows = await db.execute(
        select(Client, upcoming.c.next_start)
        .outerjoin(upcoming, upcoming.c.client_id == Client.id)
        .where(Client.therapist_id == therapist_id)
        .order_by(func.lower(Client.name), Client.id)
    )
    return [ClientRow(client, _as_utc(next_start)) for client, next_start in rows.all()]


async def client_by_email(db: AsyncSession, therapist_id: int, email: str) -> Client | None:
    return await db.scalar(
        select(Client).where(Client.therapist_id == therapist_id, Client.email == email).limit(1)
    )


async def type_names(db: AsyncSession, therapist_id: int) -> dict[int, str]:
    rows = await db.execute(
        select(SessionType.id, SessionType.name).where(SessionType.therapist_id == therapist_id)
    )
    return {type_id: name for type_id, name in rows.all()}


async def owned_appointment(
    db: AsyncSession, therapist_id: int, client_id: int, appointment_id: int
) -> Appointment:
    row = await db.scalar(
        select(Appointment).where(
            Appointment.id == appointment_id,
            Appointment.therapist_id == therapist_id,
            Appointment.client_id == client_id,
        )
    )
    if row is None:
        raise web.HTTPNotFound()
    return row


def _as_utc(value: object) -> dt.datetime | None:
    """An aggregate's instant: SQLite hands it back as naive UTC (or text); make it aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- views' shapes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRow:
    client: Client
    next_start: dt.datetime | None


@dataclass(frozen=True)
class AppointmentView:
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    date_label: str
    time_label: str
    client_id: int
    client_name: str
    session_type: str
    status: str
    status_label: str
    in_series: bool
    local_date: str
    local_time: str


def status_label(status: str) -> str:
    labels = {
        AppointmentStatus.SCHEDULED.value: lambda: _("Scheduled"),
        AppointmentStatus.COMPLETED.value: lambda: _("Completed"),
        AppointmentStatus.CANCELLED.value: lambda: _("Cancelled"),
        AppointmentStatus.NO_SHOW.value: lambda: _("No-show"),
    }
    label = labels.get(status)
    return label() if label else status


def appointment_view(
    appointment: Appointment, tz: zoneinfo.ZoneInfo, names: dict[int, str], client_name: str
) -> AppointmentView:
    locale = i18n.current_locale()
    start, end = appointment.starts_at.astimezone(tz), appointment.ends_at.astimezone(tz)
    return AppointmentView(
        id=appointment.id,
        starts_at=appointment.starts_at,
        ends_at=appointment.ends_at,
        date_label=format_date(start, "full", locale=locale),
        time_label=f"{format_time(start, 'short', locale=locale)}–"
        f"{format_time(end, 'short', locale=locale)}",
        client_id=appointment.client_id,
        client_name=client_name,
        session_type=names.get(appointment.session_type_id or 0, ""),
        status=appointment.status,
        status_label=status_label(appointment.status),
        in_series=appointment.series_id is not None,
        local_date=start.date().isoformat(),
        local_time=start.strftime("%H:%M"),
    )


def local_instant(day: dt.date, time: dt.time, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """The instant the therapist's clock shows ``day`` ``time``; ``None`` if it never does."""
    return existing_instant(dt.datetime.combine(day, time), tz)


# --- the week --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekDay:
    date: dt.date
    label: str
    is_today: bool
    appointments: list[AppointmentView]


def monday_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


@sessions.therapist_required
async def week_page(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    today = request.app[CLOCK]().astimezone(tz).date()
    wanted = request.query.get("start", "")
    start = local_date(wanted) if wanted else today
    if start is None:
        raise web.HTTPSeeOther("/week")
    monday = monday_of(start)
    async with request.app[SESSIONMAKER]() as db:
        appointments = await booking.week_of(db, me.therapist, monday, include_cancelled=True)
        names = await type_names(db, me.therapist.id)
    locale = i18n.current_locale()
    days = [
        WeekDay(
            date=monday + dt.timedelta(days=offset),
            label=format_date(monday + dt.timedelta(days=offset), "full", locale=locale),
            is_today=monday + dt.timedelta(days=offset) == today,
            appointments=[],
        )
        for offset in range(7)
    ]
    for appointment in appointments:
        local = appointment.starts_at.astimezone(tz).date()
        days[(local - monday).days].appointments.append(
            appointment_view(appointment, tz, names, appointment.client.name)
        )
    context: dict[str, Any] = {
        "days": days,
        "monday": monday,
        "week_label": format_date(monday, "long", locale=locale),
        "prev_href": f"/week?start={(monday - dt.timedelta(days=7)).isoformat()}",
        "next_href": f"/week?start={(monday + dt.timedelta(days=7)).isoformat()}",
        "is_this_week": monday == monday_of(today),
    }
    return render(request, "therapist/week.html", context, nav="week")


# --- clients ---------------------------------------------------------------------------------

CLIENT_DONE = {
    "client-added": lambda: _("The client is added."),
    "resent": lambda: _("The invitation is queued and will be e-mailed shortly."),
    "created": lambda: _("The appointment is booked. The client will get an e-mail."),
    "series-created": lambda: _("The weekly series is booked. The client will get an e-mail."),
    "moved": lambda: _("The appointment is moved. The client will get an e-mail."),
    "cancelled": lambda: _("The appointment is cancelled. The client will get an e-mail."),
    "series-cancelled": lambda: _(
        "The rest of the series is cancelled. The client will get an e-mail for each session."
    ),
    "homework-assigned": lambda: _(
        "The homework is assigned. The client will get an e-mail with a link to it."
    ),
}


def _client_values(form: Any = None) -> dict[str, str]:
    if form is None:
        return {"name": "", "email": "", "phone": ""}
    return {
        "name": text(form, "name", limit=200),
        "email": text(form, "email", limit=254),
        "phone": text(form, "phone", limit=40),
    }


async def _clients_page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    existing: Client | None = None,
    status: int = 200,
) -> web.Response:
    me = sessions.signed_in(request)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db:
        rows = await clients_of(db, me.therapist.id, now)
    locale = i18n.current_locale()
    context: dict[str, Any] = {
        "clients": [
            {
                "client": row.client,
                "next": (
                    f"{format_date(row.next_start.astimezone(tz), 'medium', locale=locale)}, "
                    f"{format_time(row.next_start.astimezone(tz), 'short', locale=locale)}"
                    if row.next_start
                    else ""
                ),
                "next_start": row.next_start,
            }
            for row in rows
        ],
        "values": values or _client_values(),
        "errors": errors or {},
        "existing": existing,
    }
    return render(request, "therapist/clients.html", context, nav="clients", status=status)


@sessions.therapist_required
async def clients_page(request: web.Request) -> web.StreamResponse:
    return await _clients_page(request)


@sessions.therapist_required
async def add_client(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    values = _client_values(form)
    errors: dict[str, str] = {}
    details = None
    try:
        details = booking.ClientDetails(
            name=values["name"],
            email=values["email"],
            phone=values["phone"] or None,
            note=None,
            timezone=me.therapist.timezone,
        )
    except booking.BookingError as exc:
        messages = {
            "name": _("Name: enter the client's name (at most 200 characters)."),
            "email": _("E-mail address: enter an address like name@example.com."),
            "phone": _(
                "Phone: use at most 40 digits, spaces and + ( ) - characters, or leave it empty."
            ),
        }
        for problem in exc.errors:
            errors.setdefault(problem.field, messages.get(problem.field, _("Check this field.")))
    if details is None:
        return await _clients_page(request, values=values, errors=errors, status=422)
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        existing = await client_by_email(db, me.therapist.id, details.email)
        if existing is None:
            client = Client(
                therapist_id=me.therapist.id,
                name=details.name,
                email=details.email,
                phone=details.phone,
            )
            db.add(client)
            await db.flush()
            audit.record(
                db,
                at=now,
                actor=Actor.THERAPIST,
                actor_id=me.therapist.id,
                action="client_added",
                record_type="client",
                record_id=client.id,
                source_ip=sessions.client_ip(request),
            )
            client_id = client.id
    if existing is not None:
        errors["email"] = _("E-mail address: you already have a client with this address.")
        return await _clients_page(
            request, values=values, errors=errors, existing=existing, status=422
        )
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=client-added")


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


async def _record_page(
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
    return await _record_page(request, path_id(request, "client_id"))


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
        return _record_page(
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
    return _record_page(
        request,
        client_id,
        RecordProblems(
            appointment_id=appointment_id, appointment_error=message, move_values=move_values
        ),
        status,
    )


def _not_scheduled() -> str:
    return _("This appointment is no longer scheduled, so it cannot be changed.")


@sessions.therapist_required
async def move_appointment(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    appointment_id = path_id(request, "appointment_id")
    form = await checked_form(request)
    async with request.app[SESSIONMAKER]() as db:
        await owned_appointment(db, me.therapist.id, client_id, appointment_id)
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
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    appointment_id = path_id(request, "appointment_id")
    await checked_form(request)
    async with request.app[SESSIONMAKER]() as db:
        await owned_appointment(db, me.therapist.id, client_id, appointment_id)
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
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    appointment_id = path_id(request, "appointment_id")
    await checked_form(request)
    async with request.app[SESSIONMAKER]() as db:
        await owned_appointment(db, me.therapist.id, client_id, appointment_id)
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
            audit.record(
                db,
                at=now,
                actor=Actor.THERAPIST,
                actor_id=me.therapist.id,
                action="invite_resent",
                record_type="appointment",
                record_id=appointment.id,
                source_ip=sessions.client_ip(request),
            )
    if problem is not None:
        return await _appointment_problem(request, client_id, appointment_id, problem, 409)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=resent")


def setup(app: web.Application) -> None:
    app.router.add_get("/week", week_page, name="week")
    app.router.add_get("/clients", clients_page, name="clients")
    app.router.add_post("/clients", add_client, name="client_add")
    app.router.add_get("/clients/{client_id}", client_page, name="client")
    app.router.add_post(
        "/clients/{client_id}/appointments", new_appointment, name="client_appointment_new"
    )
    base = "/clients/{client_id}/appointments/{appointment_id}"
    app.router.add_post(f"{base}/move", move_appointment, name="appointment_move")
    app.router.add_post(f"{base}/cancel", cancel_appointment, name="appointment_cancel")
    app.router.add_post(f"{base}/cancel-series", cancel_series, name="appointment_cancel_series")
    app.router.add_post(f"{base}/resend", resend_invite, name="appointment_resend")
    therapist_availability.setup(app)
    therapist_settings.setup(app)
