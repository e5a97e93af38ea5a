"""The sign-in and sign-out pages."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server import accounts, audit, sessions, throttle
from server.audit import Actor
from server.i18n import _, ngettext
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.passwords import verify_password

MAX_FIELD = 1024


def _safe_next(value: str | None) -> str:
    """Only a local path may follow sign-in (no open redirect).

    Browsers drop tabs and newlines inside URLs and read a backslash as a slash,
    so ``/<tab>/evil.example`` or ``/\\evil.example`` would leave the site:
    whitespace, control characters and backslashes are refused outright.
    """
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and not any(ch == "\\" or ch.isspace() or not ch.isprintable() for ch in value)
    ):
        return value[:512]
    return "/dashboard"


def _render(
    request: web.Request, *, status: int = 200, error: str | None = None, email: str = ""
) -> web.Response:
    token, fresh_cookie = sessions.login_csrf_token(request)
    notice = None
    expired = request.query.get("expired")
    if expired == "idle":
        notice = _("You were signed out after a period of inactivity. Please sign in again.")
    elif expired == "max":
        notice = _(
            "For your clients' privacy, sign-ins last at most a working day. Please sign in again."
        )
    elif request.query.get("signed_out"):
        notice = _("You have signed out.")
    context: dict[str, Any] = {
        "csrf_token": token,
        "error": error,
        "notice": notice,
        "email": email,
        "next": _safe_next(request.query.get("next")),
    }
    response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
    if fresh_cookie:
        sessions.set_cookie(response, request.app[SETTINGS], sessions.PRELOGIN_COOKIE, fresh_cookie)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if await sessions.load(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return _render(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    form = await request.post()
    if not sessions.check_login_csrf(request, _field(form, "csrf_token")):
        raise web.HTTPForbidden()
    email = (_field(form, "email") or "")[:MAX_FIELD]
    password = (_field(form, "password") or "")[:MAX_FIELD]
    next_url = _safe_next(_field(form, "next"))
    ip = sessions.client_ip(request)
    now = request.app[CLOCK]()
    keys = throttle.keys(settings, email, ip)

    async with request.app[SESSIONMAKER]() as db:
        async with db.begin():
            wait = await throttle.retry_after(db, settings, keys, now)
            therapist = await accounts.by_email(db, email) if email else None
        if wait is not None:
            minutes = max(1, (wait + 59) // 60)
            response = _render(
                request,
                status=429,
                email=email,
                error=ngettext(
                    "Too many attempts. Please wait %(minutes)s minute and try again.",
                    "Too many attempts. Please wait %(minutes)s minutes and try again.",
                    minutes,
                )
                % {"minutes": minutes},
            )
            response.headers["Retry-After"] = str(wait)
            return response

        usable = therapist if therapist is not None and therapist.is_active else None
        ok = await verify_password(usable.password_hash if usable else None, password)
        async with db.begin():
            if not ok or usable is None:
                await throttle.record_failure(db, settings, keys, now)
                audit.record(
                    db,
                    at=now,
                    actor=Actor.ANONYMOUS,
                    actor_id=None,
                    action="login_failed",
                    source_ip=ip,
                )
                failed = True
            else:
                failed = False
                await throttle.clear(db, keys[0])
                await sessions.end(db, request.cookies.get(sessions.SESSION_COOKIE))
                cookie = await sessions.start(db, usable, now)
                audit.record(
                    db,
                    at=now,
                    actor=Actor.THERAPIST,
                    actor_id=usable.id,
                    action="login",
                    record_type="therapist",
                    record_id=usable.id,
                    source_ip=ip,
                )
    if failed:
        return _render(
            request,
            status=401,
            email=email,
            error=_("That e-mail address and password do not match an active account."),
        )
    response = see_other(next_url)
    sessions.set_cookie(response, settings, sessions.SESSION_COOKIE, cookie)
    sessions.clear_cookie(response, sessions.PRELOGIN_COOKIE)
    return response


async def logout_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    signed_in = await sessions.load(request)
    if signed_in is None:
        raise web.HTTPSeeOther("/login")
    await sessions.check_csrf(request, _field(form, "csrf_token"))
    now = request.app[CLOCK]()
    async with request.app[SESSIONMAKER]() as db, db.begin():
        await sessions.end(db, request.cookies.get(sessions.SESSION_COOKIE))
        audit.record(
            db,
            at=now,
            actor=Actor.THERAPIST,
            actor_id=signed_in.therapist.id,
            action="logout",
            record_type="therapist",
            record_id=signed_in.therapist.id,
            source_ip=sessions.client_ip(request),
        )
    response = see_other("/login?signed_out=1")
    sessions.clear_cookie(response, sessions.SESSION_COOKIE)
    return response


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout_submit, name="logout")
