"""Homework: a worksheet the client carries on with between sessions, through an e-mailed link.

The therapist assigns a worksheet from the client's record (an earlier one, or a new one from
a template), with an optional due date.  That writes a ``Homework`` row, its audit event and
the e-mail in the outbox in one transaction.  The e-mail says only that a worksheet was
shared, and by when; its link (``/homework/<token>``) is made when the message is sent, and
only the token's hash is stored, so only the newest e-mail's link works.

``GET /homework/<token>`` trades the token for the homework cookie and redirects to
``/homework``, so the token leaves the address bar, the history and any ``Referer``.  The
cookie is ``<homework id>.<HMAC of the id and the stored token hash>``: nothing more is
stored, a database without the secret key cannot forge one, and a newer link (a new hash)
retires it.  The page's socket is ``server.homework_socket``.  A link or cookie of homework
that is done, withdrawn or past its expiry gets a calm page instead (410; 404 when unknown).

Expiry: ``EXPIRY_AFTER_DUE`` after the due date (at midnight in the therapist's zone), or
``EXPIRY_WITHOUT_DUE`` after assigning when there is none.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import audit, outbox, sessions, worksheet_store
from server.audit import Actor
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import Client, Therapist
from server.settings import Settings
from server.therapist_forms import checked_form, local_date, path_id, text
from server.therapist_record import RecordProblems, record_page
from server.tokens import keyed_hash, new_token, same, token_hash
from server.worksheet_calls import LIVE_WORKSHEETS
from server.worksheet_models import Homework, HomeworkStatus, Worksheet
from server.worksheet_pages import answers_of
from signalling.worksheet_messages import parse_worksheet_ref

HOMEWORK_COOKIE = "alcove_homework"
#: How long a link keeps working after the due date, and after assigning without one.
EXPIRY_AFTER_DUE = dt.timedelta(days=7)
EXPIRY_WITHOUT_DUE = dt.timedelta(days=14)
#: How far ahead a due date may be.
MAX_DUE_AHEAD = dt.timedelta(days=365)
MAX_TOKEN_LENGTH = 128
MAX_COOKIE_LENGTH = 100
_COOKIE_PURPOSE = "homework-cookie"
_CSRF_PURPOSE = "homework-csrf"


# --- links, cookies and states -----------------------------------------------------------------


def expiry_for(due_on: dt.date | None, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """When a homework link stops working."""
    if due_on is None:
        return now + EXPIRY_WITHOUT_DUE
    last_day = due_on + EXPIRY_AFTER_DUE + dt.timedelta(days=1)
    return dt.datetime.combine(last_day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _cookie_mac(settings: Settings, homework: Homework) -> str:
    return keyed_hash(settings.secret_key, _COOKIE_PURPOSE, f"{homework.id}:{homework.token_hash}")


def cookie_for(settings: Settings, homework: Homework) -> str:
    return f"{homework.id}.{_cookie_mac(settings, homework)}"


def csrf_for(settings: Settings, cookie: str) -> str:
    """The "Mark as done" form's token: tied to the cookie, so another site cannot post it."""
    return keyed_hash(settings.secret_key, _CSRF_PURPOSE, cookie)


async def homework_for_cookie(request: web.Request) -> Homework | None:
    """The homework this request's cookie names (in whatever state), or ``None``."""
    cookie = request.cookies.get(HOMEWORK_COOKIE, "")
    number, _dot, mac = cookie.partition(".")
    if len(cookie) > MAX_COOKIE_LENGTH or not number.isdigit() or len(number) > 12 or not mac:
        return None
    async with request.app[SESSIONMAKER]() as db:
        homework = await db.get(Homework, int(number))
    if homework is None or not same(mac, _cookie_mac(request.app[SETTINGS], homework)):
        return None
    return homework


def verdict(homework: Homework | None, now: dt.datetime) -> str:
    """``open``; ``done`` or ``expired`` (withdrawn counts as expired); ``invalid``."""
    if homework is None:
        return "invalid"
    if worksheet_store.homework_open(homework, now):
        return "open"
    return "done" if homework.status == HomeworkStatus.COMPLETED.value else "expired"


def _notice(request: web.Request, why: str) -> web.Response:
    status = {"invalid": 404, "expired": 410, "done": 410}[why]
    response = aiohttp_jinja2.render_template(
        "homework/notice.html", request, {"verdict": why}, status=status
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- the therapist assigns it ------------------------------------------------------------------


def _assign_values(form: Any = None) -> dict[str, str]:
    if form is None:
        return {"worksheet": "", "due": ""}
    return {"worksheet": text(form, "worksheet", limit=100), "due": text(form, "due", limit=10)}


def _due_problem(value: str, today: dt.date) -> tuple[dt.date | None, str | None]:
    if not value:
        return None, None
    day = local_date(value)
    if day is None:
        return None, _("Due date: enter a date like %(example)s.") % {
            "example": (today + dt.timedelta(days=7)).isoformat()
        }
    if day < today:
        return None, _("Due date: choose today or a later date.")
    if day > today + MAX_DUE_AHEAD:
        return None, _("Due date: choose a date within a year.")
    return day, None


@sessions.therapist_required
async def assign(request: web.Request) -> web.StreamResponse:
    """Assign a worksheet as homework: the row, its audit event and its e-mail, together."""
    me = sessions.signed_in(request)
    client_id = path_id(request, "client_id")
    form = await checked_form(request)
    values = _assign_values(form)
    zone = zoneinfo.ZoneInfo(me.therapist.timezone)
    now = request.app[CLOCK]()
    due_on, problem = _due_problem(values["due"], now.astimezone(zone).date())
    source = values["worksheet"]
    async with request.app[SESSIONMAKER]() as db, db.begin():
        client = await db.scalar(
            select(Client).where(Client.id == client_id, Client.therapist_id == me.therapist.id)
        )
        if client is None:
            raise web.HTTPNotFound()
        worksheet: Worksheet | None = None
        template = None
        number = parse_worksheet_ref(source)
        if number is not None:
            worksheet = await worksheet_store.find_worksheet(
                db, number, therapist_id=me.therapist.id
            )
            if worksheet is not None and worksheet.client_id != client_id:
                worksheet = None
        elif source:
            template = await worksheet_store.find_template(db, me.therapist.id, source)
        if worksheet is None and template is None:
            problem = _("Worksheet: choose one of the client's worksheets or a template.")
        if problem is None:
            if worksheet is None:
                assert template is not None
                worksheet = await worksheet_store.create_worksheet(
                    db,
                    therapist_id=me.therapist.id,
                    client_id=client_id,
                    appointment_id=None,
                    template_key=source,
                    template=template,
                    now=now,
                )
            homework = await _assign(db, me.therapist.id, worksheet, due_on, zone, now)
            sessions.audit_act(
                db,
                request,
                at=now,
                action="homework.assigned",
                record_type="homework",
                record_id=homework.id,
            )
    if problem is not None:
        problems = RecordProblems(homework_values=values, homework_error=problem)
        return await record_page(request, client_id, problems, status=422)
    raise web.HTTPSeeOther(f"/clients/{client_id}?done=homework-assigned#worksheets")


async def _assign(
    db: AsyncSession,
    therapist_id: int,
    worksheet: Worksheet,
    due_on: dt.date | None,
    zone: zoneinfo.ZoneInfo,
    now: dt.datetime,
) -> Homework:
    """Withdraw the worksheet's earlier open homework (its link stops working), add the new
    one and queue its e-mail."""
    earlier = await worksheet_store.open_homework_of_worksheet(db, worksheet.id)
    for old in earlier:
        old.status = HomeworkStatus.WITHDRAWN.value
    await outbox.withdraw_homework(db, [old.id for old in earlier])
    homework = Homework(
        worksheet_id=worksheet.id,
        therapist_id=therapist_id,
        client_id=worksheet.client_id,
        status=HomeworkStatus.ASSIGNED.value,
        due_on=due_on,
        # The link's token is made when the e-mail is sent; until then no token works.
        token_hash=token_hash(new_token()),
        expires_at=expiry_for(due_on, now, zone),
        assigned_at=now,
    )
    db.add(homework)
    await db.flush()
    await outbox.enqueue_homework(db, homework.id, due_at=now)
    return homework


# --- the client's side -------------------------------------------------------------------------


async def open_link(request: web.Request) -> web.StreamResponse:
    """``/homework/<token>``: the token becomes the cookie, and the address a clean one."""
    token = request.match_info["token"]
    now = request.app[CLOCK]()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _notice(request, "invalid")
    async with request.app[SESSIONMAKER]() as db, db.begin():
        homework = await db.scalar(select(Homework).where(Homework.token_hash == token_hash(token)))
        why = verdict(homework, now)
        if homework is None or why != "open":
            return _notice(request, why)
        audit.record(
            db,
            at=now,
            actor=Actor.CLIENT,
            actor_id=homework.client_id,
            action="homework.link_opened",
            record_type="homework",
            record_id=homework.id,
            source_ip=sessions.client_ip(request),
        )
        cookie = cookie_for(request.app[SETTINGS], homework)
    response = web.Response(
        status=303, headers={"Location": "/homework", "Referrer-Policy": "no-referrer"}
    )
    sessions.set_cookie(response, request.app[SETTINGS], HOMEWORK_COOKIE, cookie)
    return response


async def page(request: web.Request) -> web.StreamResponse:
    """The homework page: the live worksheet (homework.js), and the answers without script."""
    homework = await homework_for_cookie(request)
    now = request.app[CLOCK]()
    why = verdict(homework, now)
    if homework is None or why != "open":
        return _notice(request, why)
    await request.app[LIVE_WORKSHEETS].flush(homework.worksheet_id)
    async with request.app[SESSIONMAKER]() as db:
        therapist = await db.get(Therapist, homework.therapist_id)
        worksheet = await db.get(Worksheet, homework.worksheet_id)
    if therapist is None or worksheet is None:
        return _notice(request, "invalid")
    sheet, answers = answers_of(worksheet)
    context: dict[str, Any] = {
        "therapist_name": therapist.display_name,
        "due_on": homework.due_on,
        "homework": homework,
        "sheet": sheet,
        "answers": answers,
        "csrf_token": csrf_for(request.app[SETTINGS], request.cookies[HOMEWORK_COOKIE]),
    }
    response = aiohttp_jinja2.render_template("homework/page.html", request, context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def mark_done(request: web.Request) -> web.StreamResponse:
    """ "Mark as done": what was typed is saved first, then the homework is completed."""
    homework = await homework_for_cookie(request)
    form = await request.post()
    submitted = form.get("csrf_token")
    cookie = request.cookies.get(HOMEWORK_COOKIE, "")
    expected = csrf_for(request.app[SETTINGS], cookie)
    if homework is None or not isinstance(submitted, str) or not same(submitted, expected):
        raise web.HTTPForbidden()
    now = request.app[CLOCK]()
    why = verdict(homework, now)
    if why != "open":
        return _notice(request, why)
    await request.app[LIVE_WORKSHEETS].flush(homework.worksheet_id)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        row = await db.scalar(select(Homework).where(Homework.id == homework.id).with_for_update())
        if row is None or verdict(row, now) != "open":
            return _notice(request, verdict(row, now))
        row.status = HomeworkStatus.COMPLETED.value
        row.completed_at = now
        audit.record(
            db,
            at=now,
            actor=Actor.CLIENT,
            actor_id=row.client_id,
            action="homework.completed",
            record_type="homework",
            record_id=row.id,
            source_ip=sessions.client_ip(request),
        )
        therapist = await db.get(Therapist, row.therapist_id)
    context = {"therapist_name": therapist.display_name if therapist else ""}
    return aiohttp_jinja2.render_template("homework/done.html", request, context)


def setup(app: web.Application) -> None:
    """Call after ``homework_socket.setup``: ``/homework/{token}`` must not catch ``/ws``."""
    app.router.add_post("/clients/{client_id}/homework", assign, name="homework_assign")
    app.router.add_get("/homework", page, name="homework")
    app.router.add_post("/homework/done", mark_done, name="homework_done")
    app.router.add_get("/homework/{token}", open_link, name="homework_link")
