"""The client's way in: the join link, the participant cookie, and the session page.

``GET /join/<token>`` checks the opaque token.  Inside the appointment's window it trades
the token for a participant cookie and redirects to ``/session``, so the token does not stay
in the address bar, the history or any ``Referer``.  Outside the window it shows a calm page
saying when to come back, or that the appointment was cancelled or is over.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import audit, sessions
from server.audit import Actor
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Appointment, AppointmentStatus, JoinToken, ParticipantSession
from server.settings import Settings
from server.tokens import new_token, token_hash

PARTICIPANT_COOKIE = "alcove_participant"
MAX_TOKEN_LENGTH = 128


class Window(enum.StrEnum):
    OPEN = "open"
    TOO_EARLY = "too_early"
    OVER = "over"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JoinWindow:
    opens_at: dt.datetime
    closes_at: dt.datetime


def join_window(appointment: Appointment, settings: Settings) -> JoinWindow:
    return JoinWindow(
        opens_at=appointment.starts_at - dt.timedelta(minutes=settings.join_early_minutes),
        closes_at=appointment.ends_at + dt.timedelta(minutes=settings.join_grace_minutes),
    )


def classify(appointment: Appointment, settings: Settings, now: dt.datetime) -> Window:
    """Whether a client may enter ``appointment``'s session at ``now``."""
    if appointment.state is AppointmentStatus.CANCELLED:
        return Window.CANCELLED
    window = join_window(appointment, settings)
    if now < window.opens_at:
        return Window.TOO_EARLY
    if now >= window.closes_at or appointment.state is not AppointmentStatus.SCHEDULED:
        return Window.OVER
    return Window.OPEN


async def appointment_for_token(
    db: AsyncSession, token: str, now: dt.datetime
) -> Appointment | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await db.scalar(
        select(JoinToken)
        .where(JoinToken.token_hash == token_hash(token))
        .options(selectinload(JoinToken.appointment).selectinload(Appointment.therapist))
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row.appointment


async def participant_appointment(request: web.Request) -> Appointment | None:
    """The appointment named by this request's participant cookie, if it is still valid."""
    cookie = request.cookies.get(PARTICIPANT_COOKIE)
    if not cookie or len(cookie) > MAX_TOKEN_LENGTH:
        return None
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db:
        row = await db.scalar(
            select(ParticipantSession)
            .where(ParticipantSession.id_hash == token_hash(cookie))
            .options(
                selectinload(ParticipantSession.appointment).selectinload(Appointment.therapist),
                selectinload(ParticipantSession.appointment).selectinload(Appointment.client),
            )
        )
    if row is None or row.expires_at <= now:
        return None
    return row.appointment


def _notice(
    request: web.Request, appointment: Appointment | None, verdict: Window | None
) -> web.Response:
    settings = request.app[SETTINGS]
    context: dict[str, Any] = {
        "verdict": verdict.value if verdict else "invalid",
        "appointment": appointment,
        "window": join_window(appointment, settings) if appointment else None,
    }
    status = 404 if appointment is None else 200
    return aiohttp_jinja2.render_template("join/notice.html", request, context, status=status)


async def open_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    settings = request.app[SETTINGS]
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        appointment = await appointment_for_token(db, token, now)
        if appointment is None:
            return _notice(request, None, None)
        verdict = classify(appointment, settings, now)
        if verdict is not Window.OPEN:
            return _notice(request, appointment, verdict)
        cookie = new_token()
        db.add(
            ParticipantSession(
                id_hash=token_hash(cookie),
                appointment_id=appointment.id,
                created_at=now,
                expires_at=join_window(appointment, settings).closes_at,
            )
        )
        audit.record(
            db,
            at=now,
            actor=Actor.CLIENT,
            actor_id=appointment.client_id,
            action="join_link_opened",
            record_type="appointment",
            record_id=appointment.id,
            source_ip=sessions.client_ip(request),
        )
    response = web.Response(status=303, headers={"Location": "/session"})
    sessions.set_cookie(response, settings, PARTICIPANT_COOKIE, cookie)
    return response


async def session_page(request: web.Request) -> web.StreamResponse:
    appointment = await participant_appointment(request)
    if appointment is None:
        return _notice(request, None, None)
    verdict = classify(appointment, request.app[SETTINGS], request.app[CLOCK]())
    if verdict in (Window.CANCELLED, Window.OVER):
        return _notice(request, appointment, verdict)
    context: dict[str, Any] = {"appointment": appointment, "therapist": appointment.therapist}
    return aiohttp_jinja2.render_template("join/session.html", request, context)


def setup(app: web.Application) -> None:
    app.router.add_get("/join/{token}", open_link, name="join")
    app.router.add_get("/session", session_page, name="session")
