"""Therapist sign-in sessions and CSRF protection.

The session cookie carries a random id; the database keeps only its hash, the
therapist, a CSRF token and two instants used for the idle and absolute
timeouts.  A new id is issued at every sign-in.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import audit
from server.audit import Actor
from server.keys import CLOCK, SESSIONMAKER, SETTINGS
from server.models import AuditEvent, AuthSession, Therapist
from server.settings import Settings
from server.tokens import keyed_hash, new_token, same, token_hash

SESSION_COOKIE = "alcove_session"
PRELOGIN_COOKIE = "alcove_prelogin"
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=30)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class SignedIn:
    therapist: Therapist
    csrf_token: str
    session_hash: str


SIGNED_IN: web.RequestKey[SignedIn | None] = web.RequestKey("signed_in")
SESSION_EXPIRED = web.RequestKey("session_expired", str)


def client_ip(request: web.Request) -> str:
    """The caller's address; ``X-Forwarded-For`` counts only from a trusted proxy."""
    remote = request.remote or "unknown"
    if remote in request.app[SETTINGS].trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            return remote
    return remote


def set_cookie(response: web.StreamResponse, settings: Settings, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="Lax",
        secure=settings.secure_cookies,
        path="/",
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/")


async def start(db: AsyncSession, therapist: Therapist, now: dt.datetime) -> str:
    """Create a session for ``therapist`` and return the new cookie value."""
    session_id = new_token()
    db.add(
        AuthSession(
            id_hash=token_hash(session_id),
            therapist_id=therapist.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
    )
    return session_id


async def end(db: AsyncSession, cookie_value: str | None) -> None:
    if cookie_value:
        await db.execute(delete(AuthSession).where(AuthSession.id_hash == token_hash(cookie_value)))


def _expired(row: AuthSession, settings: Settings, now: dt.datetime) -> str | None:
    """Why the session has expired (``"max"`` or ``"idle"``), or ``None`` while it is valid."""
    if now - row.created_at > dt.timedelta(hours=settings.session_max_hours):
        return "max"
    if now - row.last_seen_at > dt.timedelta(minutes=settings.session_idle_minutes):
        return "idle"
    return None


async def load(request: web.Request) -> SignedIn | None:
    """The signed-in therapist of this request, or ``None``; expired sessions are deleted."""
    if SIGNED_IN in request:
        return request[SIGNED_IN]
    request[SIGNED_IN] = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    settings = request.app[SETTINGS]
    now = request.app[CLOCK]()
    session_hash = token_hash(cookie)
    async with request.app[SESSIONMAKER]() as db, db.begin():
        row = await db.scalar(
            select(AuthSession)
            .where(AuthSession.id_hash == session_hash)
            .options(selectinload(AuthSession.therapist))
        )
        if row is None:
            return None
        expired = _expired(row, settings, now)
        if expired is not None or not row.therapist.is_active:
            await db.delete(row)
            request[SESSION_EXPIRED] = expired or "inactive"
            return None
        if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
            row.last_seen_at = now
        signed_in = SignedIn(row.therapist, row.csrf_token, session_hash)
    request[SIGNED_IN] = signed_in
    return signed_in


def login_url(request: web.Request, *, expired: str | None = None) -> str:
    query: dict[str, str] = {}
    if request.method == "GET" and request.path != "/":
        query["next"] = request.path
    if expired in ("idle", "max"):
        query["expired"] = expired
    return "/login" + ("?" + urlencode(query) if query else "")


def therapist_required(handler: Handler) -> Handler:
    """Serve ``handler`` to a signed-in therapist; send anyone else to the sign-in page."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        signed_in = await load(request)
        if signed_in is None:
            expired = request.get(SESSION_EXPIRED)
            raise web.HTTPSeeOther(login_url(request, expired=expired))
        return await handler(request)

    return wrapper


def signed_in(request: web.Request) -> SignedIn:
    value: SignedIn | None = request.get(SIGNED_IN)
    if value is None:
        raise web.HTTPForbidden()
    return value


def audit_act(
    db: AsyncSession,
    request: web.Request,
    *,
    at: dt.datetime,
    action: str,
    record_type: str,
    record_id: int | str | None,
) -> AuditEvent:
    """Audit an act of the signed-in therapist (a ``therapist_required`` view): who did it,
    to which record, when and from where; never what it held."""
    return audit.record(
        db,
        at=at,
        actor=Actor.THERAPIST,
        actor_id=signed_in(request).therapist.id,
        action=action,
        record_type=record_type,
        record_id=record_id,
        source_ip=client_ip(request),
    )


async def check_csrf(request: web.Request, submitted: str | None) -> None:
    """Refuse a state-changing request whose form token does not match the session's."""
    value = await load(request)
    if value is None or not submitted or not same(submitted, value.csrf_token):
        raise web.HTTPForbidden()


def login_csrf_token(request: web.Request) -> tuple[str, str | None]:
    """The sign-in form's CSRF token, and a new pre-login cookie value when one is needed."""
    settings = request.app[SETTINGS]
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    fresh = None
    if not cookie or len(cookie) > 128:
        cookie = fresh = new_token()
    return keyed_hash(settings.secret_key, "login-csrf", cookie), fresh


def check_login_csrf(request: web.Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    if not cookie or not submitted or len(cookie) > 128:
        return False
    expected = keyed_hash(request.app[SETTINGS].secret_key, "login-csrf", cookie)
    return same(submitted, expected)
