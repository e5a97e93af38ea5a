"""A client's worksheets on their record, and one worksheet as a clean, printable page.

The record lists every worksheet of the client (title, when it was started and last changed,
its homework's state) and offers them, and the templates, for homework.
``/therapist/worksheets/<id>`` shows one worksheet's answers against the template it was
started from, for reading, printing or saving as PDF (the browser's own print dialog,
``web/static/css/print.css``).  Only the owning therapist sees it (404 for anyone else), and
every view is audited (``worksheet.read``, never the content).  A worksheet someone is
editing right now is saved first, so the page shows the latest state.

The answers are the stored ``content`` (``server.worksheets.render`` output), shown as text by
Jinja (autoescaped): nothing typed into a worksheet is ever markup.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from babel.dates import format_date, format_datetime
from sqlalchemy.ext.asyncio import AsyncSession

from server import i18n, sessions, worksheet_store
from server.keys import CLOCK, SESSIONMAKER
from server.models import Client
from server.therapist_forms import path_id, render
from server.worksheet_calls import LIVE_WORKSHEETS
from server.worksheet_models import Homework, Worksheet
from server.worksheet_store import TemplateChoice
from server.worksheets import Template
from signalling.worksheet_messages import worksheet_ref


@dataclass(frozen=True)
class WorksheetRow:
    """One line of the record's worksheet list."""

    id: int
    ref: str
    title: str
    started: str
    changed: str
    started_at: dt.datetime
    changed_at: dt.datetime
    homework: Homework | None


def answers_of(worksheet: Worksheet) -> tuple[Template, dict[str, Any]]:
    """The worksheet's template (as it was when started) and its stored answers.

    A worksheet nobody has typed into yet has no rendering stored: its answers are empty.
    """
    template = worksheet_store.worksheet_template(worksheet)
    try:
        content = json.loads(worksheet.content)
    except ValueError:
        content = {}
    return template, content if isinstance(content, dict) else {}


def _day(value: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return format_date(value.astimezone(zone), "medium", locale=i18n.current_locale())


async def record_context(
    db: AsyncSession, therapist_id: int, client_id: int, zone: zoneinfo.ZoneInfo
) -> dict[str, Any]:
    """What the client's record shows of worksheets: the list, and the homework choices."""
    worksheets = await worksheet_store.client_worksheets(db, therapist_id, client_id)
    homework = await worksheet_store.homework_of(db, [w.id for w in worksheets])
    templates: list[TemplateChoice] = await worksheet_store.template_choices(db, therapist_id)
    rows = [
        WorksheetRow(
            id=w.id,
            ref=worksheet_ref(w.id),
            title=w.title,
            started=_day(w.created_at, zone),
            changed=_day(w.updated_at, zone),
            started_at=w.created_at,
            changed_at=w.updated_at,
            homework=homework.get(w.id),
        )
        for w in worksheets
    ]
    return {"worksheets": rows, "homework_templates": templates}


@sessions.therapist_required
async def worksheet_page(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    worksheet_id = path_id(request, "worksheet_id")
    async with request.app[SESSIONMAKER]() as db:
        found = await worksheet_store.find_worksheet(db, worksheet_id, therapist_id=me.therapist.id)
    if found is None:
        raise web.HTTPNotFound()
    await request.app[LIVE_WORKSHEETS].flush(worksheet_id)
    now = request.app[CLOCK]()
    zone = zoneinfo.ZoneInfo(me.therapist.timezone)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        worksheet = await worksheet_store.find_worksheet(
            db, worksheet_id, therapist_id=me.therapist.id
        )
        if worksheet is None:
            raise web.HTTPNotFound()
        client = await db.get(Client, worksheet.client_id)
        homework = (await worksheet_store.homework_of(db, [worksheet.id])).get(worksheet.id)
        sessions.audit_act(
            db,
            request,
            at=now,
            action="worksheet.read",
            record_type="worksheet",
            record_id=worksheet.id,
        )
        sheet, answers = answers_of(worksheet)
        locale = i18n.current_locale()
        context: dict[str, Any] = {
            "worksheet": worksheet,
            "client": client,
            "homework": homework,
            "sheet": sheet,
            "answers": answers,
            "started": _day(worksheet.created_at, zone),
            "changed": format_datetime(
                worksheet.updated_at.astimezone(zone), "medium", locale=locale
            ),
        }
    response = render(request, "therapist/worksheet.html", context, nav="clients")
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application) -> None:
    app.router.add_get(
        "/therapist/worksheets/{worksheet_id}", worksheet_page, name="therapist_worksheet"
    )
