"""The therapist's call page for one appointment."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.orm import selectinload

from server import sessions
from server.calls import parse_record_id
from server.keys import SESSIONMAKER
from server.models import Appointment


@sessions.therapist_required
async def call_page(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    appointment_id = parse_record_id(request.match_info["appointment_id"])
    if appointment_id is None:
        raise web.HTTPNotFound()
    async with request.app[SESSIONMAKER]() as db:
        appointment = await db.get(
            Appointment, appointment_id, options=[selectinload(Appointment.client)]
        )
    if appointment is None or appointment.therapist_id != me.therapist.id:
        raise web.HTTPNotFound()
    context: dict[str, Any] = {
        "appointment": appointment,
        "therapist": me.therapist,
        "csrf_token": me.csrf_token,
    }
    return aiohttp_jinja2.render_template("call.html", request, context)


def setup(app: web.Application) -> None:
    app.router.add_get("/call/{appointment_id}", call_page, name="call")
