"""Small helpers shared by the therapist's pages: reading forms, checking them, rendering.

Every state-changing form carries the session's ``csrf_token``; ``checked_form`` refuses one
that does not.  Values are read as text and checked here; a page that finds a problem shows
the form again with what was typed and a message next to each field (status 422), and
stores nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from server import sessions
from server.i18n import _

FormData = MultiDictProxy[Any]

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(:00(\.0+)?)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


async def checked_form(request: web.Request) -> FormData:
    """The posted form, once its CSRF token matched the session's (403 otherwise)."""
    form = await request.post()
    submitted = form.get("csrf_token")
    await sessions.check_csrf(request, submitted if isinstance(submitted, str) else None)
    return form


def text(form: Mapping[str, Any], name: str, *, limit: int = 2000) -> str:
    """A text field, stripped, with Windows line ends made plain; ``""`` when absent.

    Anything past ``limit`` characters is kept, so the length check can refuse it.
    """
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value.replace("\r\n", "\n").strip()[: limit + 1]


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str)]


def checkbox(form: Mapping[str, Any], name: str) -> bool:
    return isinstance(form.get(name), str)


def whole_number(value: str, low: int, high: int) -> int | None:
    """``value`` as an integer in ``[low, high]``, or ``None``."""
    if not re.fullmatch(r"-?\d{1,6}", value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def wall_time(value: str) -> dt.time | None:
    """A ``HH:MM`` time of day (as ``<input type="time">`` sends it), or ``None``."""
    match = _TIME.match(value)
    if match is None:
        return None
    return dt.time(int(match.group(1)), int(match.group(2)))


#: The years a therapist's calendar date can be in; further out, week arithmetic and time
#: zone conversion run off the end of what ``datetime`` can represent.
FIRST_YEAR, LAST_YEAR = 2000, 2199


def local_date(value: str) -> dt.date | None:
    """A ``YYYY-MM-DD`` date from 2000 to 2199, or ``None``."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_YEAR <= day.year <= LAST_YEAR else None


def plausible_email(value: str) -> bool:
    return len(value) <= 254 and _EMAIL.match(value) is not None


def path_id(request: web.Request, name: str) -> int:
    """A numeric id from the path; anything else is a 404."""
    value = request.match_info[name]
    if not value.isdigit() or len(value) > 12:
        raise web.HTTPNotFound()
    return int(value)


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    nav: str,
    status: int = 200,
) -> web.Response:
    """A therapist page, with the signed-in therapist, the CSRF token and the current nav."""
    me = sessions.signed_in(request)
    full: dict[str, Any] = {
        "therapist": me.therapist,
        "csrf_token": me.csrf_token,
        "nav_current": nav,
        "tz": zoneinfo.ZoneInfo(me.therapist.timezone),
    }
    full.update(context)
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def required_message() -> str:
    return _("This field is required.")
