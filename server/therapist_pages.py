"""The therapist's pages beyond today's dashboard: the week and the clients.

Every page needs a signed-in therapist (``sessions.therapist_required``), every form its
CSRF token, and every record is looked up together with its owner: another therapist's
client or appointment is a 404, exactly like one that does not exist.  Changes to
appointments go through the booking service (``server.booking``), which writes each of
them with its audit event and e-mails in one transaction.  Times are shown in the
therapist's own zone.

A client's record and the appointment forms on it live in ``therapist_record``;
``availability`` and ``settings`` in ``therapist_availability`` and ``therapist_settings``.
``setup`` here adds the routes of the last two too.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from babel.dates import format_date, format_time
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import (
    booking,
    i18n,
    sessions,
    therapist_availability,
    therapist_settings,
)
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER
from server.models import Appointment, AppointmentStatus, Client, SessionType
from server.slots import existing_instant
from server.therapist_forms import (
    checked_form,
    local_date,
    render,
    text,
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
            sessions.audit_act(
                db,
                request,
                at=now,
                action="client_added",
                record_type="client",
                record_id=client.id,
            )
            client_id = client.id
    if existing is not None:
        errors["email"] = _("E-mail address: you already have a client with this address.")
        return await _clients_page(
            request, values=values, errors=errors, existing=existing, status=422
        )
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=client-added")


def setup(app: web.Application) -> None:
    app.router.add_get("/week", week_page, name="week")
    app.router.add_get("/clients", clients_page, name="clients")
    app.router.add_post("/clients", add_client, name="client_add")
    therapist_availability.setup(app)
    therapist_settings.setup(app)
