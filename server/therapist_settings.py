"""The therapist's settings: the public booking page, and the kinds of session offered.

Each form is checked whole before anything is stored: a problem in one field is shown next
to that field (status 422) with everything typed kept, and nothing of the form is saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import sessions
from server.i18n import _
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import SessionType, Therapist
from server.therapist_forms import (
    FormData,
    checkbox,
    checked_form,
    path_id,
    render,
    text,
    whole_number,
)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MIN, SLUG_MAX = 3, 64
BIO_MAX = 2000
CONTACT_MAX = 500
CUTOFF_MAX_HOURS = 14 * 24
TYPE_NAME_MAX = 120
PRICE_MAX = 200
DURATION_RANGE = (5, 480)
BUFFER_RANGE = (0, 240)
NOTICE_RANGE = (0, 60 * 24 * 60)
HORIZON_RANGE = (1, 365)

TYPE_FIELDS = ("name", "duration", "price", "buffer", "notice", "horizon")


# --- queries ---------------------------------------------------------------------------


async def slug_taken(db: AsyncSession, slug: str, therapist_id: int) -> bool:
    other = await db.scalar(
        select(Therapist.id).where(Therapist.slug == slug, Therapist.id != therapist_id)
    )
    return other is not None


async def all_session_types(db: AsyncSession, therapist_id: int) -> list[SessionType]:
    rows = await db.scalars(
        select(SessionType)
        .where(SessionType.therapist_id == therapist_id)
        .order_by(SessionType.position, SessionType.id)
    )
    return list(rows)


async def owned_session_type(db: AsyncSession, therapist_id: int, type_id: int) -> SessionType:
    row = await db.get(SessionType, type_id)
    if row is None or row.therapist_id != therapist_id:
        raise web.HTTPNotFound()
    return row


# --- checking -------------------------------------------------------------------------


def profile_values(therapist: Therapist) -> dict[str, Any]:
    return {
        "slug": therapist.slug or "",
        "bio": therapist.bio,
        "contact_text": therapist.contact_text,
        "cutoff": str(therapist.reschedule_cutoff_hours),
        "keep_join_link": therapist.keep_join_link_on_reschedule,
    }


def check_profile(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {
        "slug": text(form, "slug", limit=SLUG_MAX).lower(),
        "bio": text(form, "bio", limit=BIO_MAX),
        "contact_text": text(form, "contact_text", limit=CONTACT_MAX),
        "cutoff": text(form, "cutoff", limit=6),
        "keep_join_link": checkbox(form, "keep_join_link"),
    }
    errors: dict[str, str] = {}
    slug = values["slug"]
    if slug and not (SLUG_MIN <= len(slug) <= SLUG_MAX and SLUG.match(slug)):
        errors["slug"] = _(
            "Booking address: use %(min)d to %(max)d lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit."
        ) % {"min": SLUG_MIN, "max": SLUG_MAX}
    if len(values["bio"]) > BIO_MAX:
        errors["bio"] = _("About you: use at most %(max)d characters.") % {"max": BIO_MAX}
    if len(values["contact_text"]) > CONTACT_MAX:
        errors["contact_text"] = _("How to reach you: use at most %(max)d characters.") % {
            "max": CONTACT_MAX
        }
    if whole_number(values["cutoff"], 0, CUTOFF_MAX_HOURS) is None:
        errors["cutoff"] = _("Cutoff: enter a whole number of hours from 0 to %(max)d.") % {
            "max": CUTOFF_MAX_HOURS
        }
    return values, errors


def type_values(row: SessionType | None) -> dict[str, Any]:
    if row is None:
        return {
            "name": "",
            "duration": "50",
            "price": "",
            "buffer": "10",
            "notice": "1440",
            "horizon": "60",
            "public": True,
        }
    return {
        "name": row.name,
        "duration": str(row.duration_minutes),
        "price": row.price_text,
        "buffer": str(row.buffer_minutes),
        "notice": str(row.min_notice_minutes),
        "horizon": str(row.horizon_days),
        "public": row.is_public,
    }


def check_type(form: FormData) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Typed values, errors by field, and (when there are none) the columns to store."""
    values: dict[str, Any] = {name: text(form, name, limit=TYPE_NAME_MAX) for name in TYPE_FIELDS}
    values["public"] = checkbox(form, "public")
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = _("Name: enter a name, like “Individual session”.")
    elif len(values["name"]) > TYPE_NAME_MAX:
        errors["name"] = _("Name: use at most %(max)d characters.") % {"max": TYPE_NAME_MAX}
    if len(values["price"]) > PRICE_MAX:
        errors["price"] = _("Price: use at most %(max)d characters.") % {"max": PRICE_MAX}
    numbers: dict[str, int] = {}
    checks = {
        "duration": (DURATION_RANGE, _("Duration: enter whole minutes from %(low)d to %(high)d.")),
        "buffer": (
            BUFFER_RANGE,
            _("Free time after: enter whole minutes from %(low)d to %(high)d."),
        ),
        "notice": (
            NOTICE_RANGE,
            _("Minimum notice: enter whole minutes from %(low)d to %(high)d."),
        ),
        "horizon": (HORIZON_RANGE, _("Bookable ahead: enter whole days from %(low)d to %(high)d.")),
    }
    for name, ((low, high), message) in checks.items():
        number = whole_number(values[name], low, high)
        if number is None:
            errors[name] = message % {"low": low, "high": high}
        else:
            numbers[name] = number
    columns: dict[str, Any] = {}
    if not errors:
        columns = {
            "name": values["name"],
            "price_text": values["price"],
            "duration_minutes": numbers["duration"],
            "buffer_minutes": numbers["buffer"],
            "min_notice_minutes": numbers["notice"],
            "horizon_days": numbers["horizon"],
            "is_public": values["public"],
        }
    return values, errors, columns


@dataclass(frozen=True)
class TypeForm:
    """One session type's form: what it shows, and its problems by field."""

    values: dict[str, Any]
    errors: dict[str, str]


# --- views ------------------------------------------------------------------------------

DONE_MESSAGES = {
    "profile": lambda: _("Your settings are saved."),
    "type-saved": lambda: _("The session type is saved."),
    "type-added": lambda: _("The session type is added."),
    "type-deactivated": lambda: _("The session type is no longer offered."),
    "type-reactivated": lambda: _("The session type is offered again."),
}


async def _page(
    request: web.Request,
    *,
    profile: dict[str, Any] | None = None,
    profile_errors: dict[str, str] | None = None,
    edited: tuple[int, dict[str, Any], dict[str, str]] | None = None,
    new_type: dict[str, Any] | None = None,
    new_type_errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    me = sessions.signed_in(request)
    async with request.app[SESSIONMAKER]() as db:
        therapist = await db.get(Therapist, me.therapist.id)
        if therapist is None:
            raise web.HTTPForbidden()
        types = await all_session_types(db, me.therapist.id)
    forms = {row.id: TypeForm(type_values(row), {}) for row in types}
    if edited is not None:
        forms[edited[0]] = TypeForm(edited[1], edited[2])
    done = DONE_MESSAGES.get(request.query.get("done", ""))
    context: dict[str, Any] = {
        "profile": profile if profile is not None else profile_values(therapist),
        "profile_errors": profile_errors or {},
        "public_url": request.app[SETTINGS].public_url.rstrip("/"),
        "active_types": [row for row in types if row.is_active],
        "inactive_types": [row for row in types if not row.is_active],
        "type_forms": forms,
        "new_type": new_type if new_type is not None else type_values(None),
        "new_type_errors": new_type_errors or {},
        "done": done() if done else None,
    }
    return render(request, "therapist/settings.html", context, nav="settings", status=status)


@sessions.therapist_required
async def settings_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _record(request: web.Request, db: AsyncSession, action: str, kind: str, rid: int) -> None:
    sessions.audit_act(
        db,
        request,
        at=request.app[CLOCK](),
        action=action,
        record_type=kind,
        record_id=rid,
    )


@sessions.therapist_required
async def save_profile(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    values, errors = check_profile(form)
    taken_message = _("Booking address: this address is taken; please choose another.")
    if not errors:
        try:
            async with request.app[SESSIONMAKER]() as db, db.begin():
                if values["slug"] and await slug_taken(db, values["slug"], me.therapist.id):
                    errors["slug"] = taken_message
                else:
                    therapist = await db.get(Therapist, me.therapist.id)
                    if therapist is None:
                        raise web.HTTPForbidden()
                    therapist.slug = values["slug"] or None
                    therapist.bio = values["bio"]
                    therapist.contact_text = values["contact_text"]
                    therapist.reschedule_cutoff_hours = int(values["cutoff"])
                    therapist.keep_join_link_on_reschedule = values["keep_join_link"]
                    _record(request, db, "settings_updated", "therapist", therapist.id)
        except IntegrityError:
            errors["slug"] = taken_message  # another therapist took it a moment ago
    if errors:
        return await _page(request, profile=values, profile_errors=errors, status=422)
    raise web.HTTPSeeOther("/settings?done=profile")


@sessions.therapist_required
async def add_type(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    form = await checked_form(request)
    values, errors, columns = check_type(form)
    if errors:
        return await _page(request, new_type=values, new_type_errors=errors, status=422)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        last = await db.scalar(
            select(func.max(SessionType.position)).where(
                SessionType.therapist_id == me.therapist.id
            )
        )
        row = SessionType(therapist_id=me.therapist.id, position=(last or 0) + 1, **columns)
        db.add(row)
        await db.flush()
        _record(request, db, "session_type_added", "session_type", row.id)
    raise web.HTTPSeeOther("/settings?done=type-added#session-types")


@sessions.therapist_required
async def save_type(request: web.Request) -> web.StreamResponse:
    me = sessions.signed_in(request)
    type_id = path_id(request, "type_id")
    form = await checked_form(request)
    values, errors, columns = check_type(form)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        row = await owned_session_type(db, me.therapist.id, type_id)
        if not errors:
            for name, value in columns.items():
                setattr(row, name, value)
            _record(request, db, "session_type_updated", "session_type", row.id)
    if errors:
        return await _page(request, edited=(type_id, values, errors), status=422)
    raise web.HTTPSeeOther(f"/settings?done=type-saved#type-{type_id}")


async def _set_active(request: web.Request, active: bool) -> web.StreamResponse:
    me = sessions.signed_in(request)
    type_id = path_id(request, "type_id")
    await checked_form(request)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        row = await owned_session_type(db, me.therapist.id, type_id)
        row.is_active = active
        action = "session_type_reactivated" if active else "session_type_deactivated"
        _record(request, db, action, "session_type", row.id)
    done = "type-reactivated" if active else "type-deactivated"
    raise web.HTTPSeeOther(f"/settings?done={done}#session-types")


@sessions.therapist_required
async def deactivate_type(request: web.Request) -> web.StreamResponse:
    return await _set_active(request, False)


@sessions.therapist_required
async def reactivate_type(request: web.Request) -> web.StreamResponse:
    return await _set_active(request, True)


def setup(app: web.Application) -> None:
    app.router.add_get("/settings", settings_page, name="settings")
    app.router.add_post("/settings", save_profile, name="settings_save")
    app.router.add_post("/settings/types", add_type, name="session_type_add")
    app.router.add_post("/settings/types/{type_id}", save_type, name="session_type_save")
    app.router.add_post(
        "/settings/types/{type_id}/deactivate", deactivate_type, name="session_type_deactivate"
    )
    app.router.add_post(
        "/settings/types/{type_id}/reactivate", reactivate_type, name="session_type_reactivate"
    )
