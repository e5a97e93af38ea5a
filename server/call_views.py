"""The therapist's call page for one appointment."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import sessions, worksheet_store
from server.calls import parse_record_id
from server.keys import SESSIONMAKER
from server.models import Appointment
from signalling.worksheet_messages import worksheet_ref


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
        choices = await worksheet_choices(db, me.therapist.id, appointment.client_id)
    context: dict[str, Any] = {
        "appointment": appointment,
        "therapist": me.therapist,
        "csrf_token": me.csrf_token,
        "worksheet_choices": choices,
    }
    return aiohttp_jinja2.render_template("call.html", request, context)


async def worksheet_choices(
    db: AsyncSession, therapist_id: int, client_id: int
) -> list[dict[str, str]]:
    """What the call page offers to open: a new worksheet from each template, or one of the
    client's earlier worksheets to continue (newest first, with the date it was started)."""
    templates = await worksheet_store.template_choices(db, therapist_id)
    earlier = await worksheet_store.client_worksheets(db, therapist_id, client_id)
    return [
        *({"kind": "template", "id": t.key, "label": t.title} for t in templates),
        *(
            {
                "kind": "worksheet",
                "id": worksheet_ref(w.id),
                "label": w.title,
                "started": w.created_at.date().isoformat(),
            }
            for w in earlier
        ),
    ]


def setup(app: web.Application) -> None:
    app.router.add_get("/call/{appointment_id}", call_page, name="call")
