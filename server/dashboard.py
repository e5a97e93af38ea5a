"""The therapist's dashboard: today's appointments in the therapist's own time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import sessions, worksheet_store
from server.keys import CLOCK, SESSIONMAKER
from server.models import Appointment, Therapist

#: Completed homework stays on the dashboard this long (open homework, until it closes).
RECENT_HOMEWORK = dt.timedelta(days=7)


def local_day_bounds(now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where the local calendar day containing ``now`` starts and ends.

    Computed from wall-clock midnights, so a 23- or 25-hour day is handled.
    """
    today = now.astimezone(tz).date()
    start = dt.datetime.combine(today, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


async def appointments_between(
    db: AsyncSession, therapist_id: int, start: dt.datetime, end: dt.datetime
) -> list[Appointment]:
    """The therapist's appointments that start in ``[start, end)``.

    An appointment belongs to the day it starts on: last night's 23:30 session
    that runs past midnight is not one of today's.
    """
    rows = await db.scalars(
        select(Appointment)
        .where(
            Appointment.therapist_id == therapist_id,
            Appointment.starts_at >= start,
            Appointment.starts_at < end,
        )
        .options(selectinload(Appointment.client))
        .order_by(Appointment.starts_at)
    )
    return list(rows)


@sessions.therapist_required
async def dashboard(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    tz = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    start, end = local_day_bounds(now, tz)
    async with request.app[SESSIONMAKER]() as db:
        appointments = await appointments_between(db, me.therapist.id, start, end)
        homework = await worksheet_store.homework_overview(
            db, me.therapist.id, now - RECENT_HOMEWORK
        )
    context: dict[str, Any] = {
        "therapist": me.therapist,
        "csrf_token": me.csrf_token,
        "today": now.astimezone(tz).date(),
        "tz": tz,
        "appointments": appointments,
        "homework": homework,
        "welcome_status": request.query.get("welcome", ""),
        "max_welcome": MAX_WELCOME,
    }
    return aiohttp_jinja2.render_template("dashboard.html", request, context)


MAX_WELCOME = 2000


@sessions.therapist_required
async def save_welcome(request: web.Request) -> web.StreamResponse:
    """Save the text a waiting client sees; refused with a clear message when too long."""
    me = sessions.signed_in(request)
    form = await request.post()
    submitted = form.get("csrf_token")
    await sessions.check_csrf(request, submitted if isinstance(submitted, str) else None)
    raw = form.get("welcome_text")
    text = raw.replace("\r\n", "\n").strip() if isinstance(raw, str) else ""
    if len(text) > MAX_WELCOME:
        raise web.HTTPSeeOther("/dashboard?welcome=too-long#waiting-room-settings")
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        therapist = await db.get(Therapist, me.therapist.id)
        if therapist is None:
            raise web.HTTPForbidden()
        therapist.welcome_text = text
        sessions.audit_act(
            db,
            request,
            at=now,
            action="welcome_text_updated",
            record_type="therapist",
            record_id=therapist.id,
        )
    raise web.HTTPSeeOther("/dashboard?welcome=saved#waiting-room-settings")


async def index(request: web.Request) -> web.StreamResponse:
    target = "/dashboard" if await sessions.load(request) is not None else "/login"
    raise web.HTTPSeeOther(target)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index, name="index")
    app.router.add_get("/dashboard", dashboard, name="dashboard")
    app.router.add_post("/dashboard/welcome", save_welcome, name="save_welcome")
