"""The therapist's own worksheet templates: list, write and edit them as JSON.

A template is written as the JSON of ``docs/WORKSHEETS.md`` in a text area (a new one starts
from a built-in, to have something to change) and checked with ``parse_template_json`` when
it is saved.  A template that does not follow the schema is shown again as typed, with the
error naming the field (``fields[2] (id "mood"): unknown kind "slider"``), and nothing is
stored.  Its ``id`` is its slug, unique among the therapist's templates.

A saved template is offered in the call and for homework (``worksheet_store
.template_choices``).  Editing it never changes a worksheet already started from it: each
worksheet keeps a copy of its template.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server import sessions
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER
from server.therapist_forms import checked_form, path_id, render
from server.worksheet_models import WorksheetTemplate
from server.worksheets import (
    BUILTIN_TEMPLATES,
    Template,
    TemplateError,
    builtin_template,
    parse_template_json,
    template_to_json,
)
from signalling.worksheet_messages import MAX_TEMPLATE_BYTES

#: The text area's limit (a request is at most 64 KiB).
MAX_BODY_CHARS = MAX_TEMPLATE_BYTES
DEFAULT_START = "weekly-check-in"

DONE = {
    "created": lambda: _("The template is saved. You can now use it in sessions and for homework."),
    "updated": lambda: _(
        "The template is saved. Worksheets already started from it keep their questions."
    ),
}


def _pretty(template: Template) -> str:
    return json.dumps(template_to_json(template), ensure_ascii=False, indent=2)


def _starting_point(key: str) -> str:
    """The JSON a new template starts from: a built-in (renamed, so it can be saved as is)."""
    try:
        template = builtin_template(key)
    except KeyError:
        template = builtin_template(DEFAULT_START)
    data = template_to_json(template)
    data["id"] = f"my-{template.id}"[:64]
    return json.dumps(data, ensure_ascii=False, indent=2)


@sessions.therapist_required
async def list_page(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    async with request.app[SESSIONMAKER]() as db:
        own = list(
            await db.scalars(
                select(WorksheetTemplate)
                .where(WorksheetTemplate.therapist_id == me.therapist.id)
                .order_by(WorksheetTemplate.title, WorksheetTemplate.id)
            )
        )
    done = DONE.get(request.query.get("done", ""))
    context: dict[str, Any] = {
        "builtin": BUILTIN_TEMPLATES,
        "own": own,
        "done": done() if done else None,
    }
    return render(request, "therapist/templates.html", context, nav="templates")


def _form(
    request: web.Request,
    *,
    body: str,
    template_id: int | None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    context: dict[str, Any] = {
        "body": body,
        "template_id": template_id,
        "error": error,
        "builtin": BUILTIN_TEMPLATES,
        "max_chars": MAX_BODY_CHARS,
    }
    return render(request, "therapist/templates_form.html", context, nav="templates", status=status)


async def _owned(request: web.Request, template_id: int) -> WorksheetTemplate:
    me = sessions.signed_in(request)
    async with request.app[SESSIONMAKER]() as db:
        row = await db.get(WorksheetTemplate, template_id)
    if row is None or row.therapist_id != me.therapist.id:
        raise web.HTTPNotFound()
    return row


@sessions.therapist_required
async def new_page(request: web.Request) -> web.StreamResponse:
    return _form(request, body=_starting_point(request.query.get("from", "")), template_id=None)


@sessions.therapist_required
async def edit_page(request: web.Request) -> web.StreamResponse:
    row = await _owned(request, path_id(request, "template_id"))
    return _form(request, body=_pretty(parse_template_json(row.body)), template_id=row.id)


def _check(body: str) -> tuple[Template | None, str | None]:
    """The template in ``body``, or the message saying what is wrong with it."""
    if not body.strip():
        return None, _("Write the template as JSON: start from one of the built-in templates.")
    if len(body) > MAX_BODY_CHARS:
        return None, _("The template is too long: at most %(n)d characters.") % {
            "n": MAX_BODY_CHARS
        }
    try:
        template = parse_template_json(body)
    except TemplateError as error:
        # The schema's own message names the field; it is shown as it is (in English).
        return None, _("The template was not saved: %(problem)s") % {"problem": str(error)}
    # It is sent whole in the ``worksheet`` message, which checks its size this way.
    if len(json.dumps(template_to_json(template))) > MAX_TEMPLATE_BYTES:
        return None, _("The template is too long: shorten its texts or use fewer fields.")
    return template, None


async def _save(request: web.Request, template_id: int | None) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    raw = form.get("body")
    body = raw.replace("\r\n", "\n") if isinstance(raw, str) else ""
    if template_id is not None:
        await _owned(request, template_id)
    template, problem = _check(body)
    if template is None:
        return _form(request, body=body, template_id=template_id, error=problem, status=422)
    taken = _("You already have a template with the id “%(id)s”: choose another id.") % {
        "id": template.id
    }
    now = request.app[CLOCK]()
    stored = json.dumps(template_to_json(template), ensure_ascii=False)
    try:
        async with request.app[SESSIONMAKER]() as db, db.begin():
            clash = await db.scalar(
                select(WorksheetTemplate.id).where(
                    WorksheetTemplate.therapist_id == me.therapist.id,
                    WorksheetTemplate.slug == template.id,
                )
            )
            if clash is not None and clash != template_id:
                return _form(request, body=body, template_id=template_id, error=taken, status=422)
            if template_id is None:
                row = WorksheetTemplate(therapist_id=me.therapist.id, created_at=now)
                db.add(row)
            else:
                found = await db.get(WorksheetTemplate, template_id)
                if found is None or found.therapist_id != me.therapist.id:
                    raise web.HTTPNotFound()
                row = found
            row.slug, row.title, row.body, row.updated_at = template.id, template.title, stored, now
            await db.flush()
            sessions.audit_act(
                db,
                request,
                at=now,
                action="template.created" if template_id is None else "template.updated",
                record_type="worksheet_template",
                record_id=row.id,
            )
    except IntegrityError:  # the same slug saved at the same moment
        return _form(request, body=body, template_id=template_id, error=taken, status=422)
    done = "created" if template_id is None else "updated"
    raise web.HTTPSeeOther(f"/therapist/templates?done={done}")


@sessions.therapist_required
async def create(request: web.Request) -> web.StreamResponse:
    return await _save(request, None)


@sessions.therapist_required
async def update(request: web.Request) -> web.StreamResponse:
    return await _save(request, path_id(request, "template_id"))


def setup(app: web.Application) -> None:
    app.router.add_get("/therapist/templates", list_page, name="templates")
    app.router.add_get("/therapist/templates/new", new_page, name="template_new")
    app.router.add_post("/therapist/templates", create, name="template_create")
    app.router.add_get("/therapist/templates/{template_id}/edit", edit_page, name="template_edit")
    app.router.add_post("/therapist/templates/{template_id}", update, name="template_update")
