"""Request-wide concerns: request id, language, security headers and calm error pages."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from server import i18n, logs
from server.keys import LANG, REQUEST_ID

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CATALOGS = web.AppKey("catalogs", i18n.Catalogs)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self), "
    "geolocation=(), payment=(), usb=()",
}

ERROR_TEMPLATES = {403: "errors/403.html", 404: "errors/404.html"}


def _apply_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def _error_page(request: web.Request, status: int) -> web.Response:
    template = ERROR_TEMPLATES.get(
        status, "errors/500.html" if status >= 500 else "errors/4xx.html"
    )
    response = aiohttp_jinja2.render_template(
        template, request, {"status": status, "request_id": request[REQUEST_ID]}
    )
    response.set_status(status)
    return response


def _wants_json(request: web.Request, exc: web.HTTPException) -> bool:
    return request.path.startswith("/api/") or exc.content_type == "application/json"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = secrets.token_hex(8)
    logs.current_request_id.set(request[REQUEST_ID])
    catalogs = request.app[CATALOGS]
    lang = catalogs.negotiate(request.headers.get("Accept-Language"))
    request[LANG] = lang
    token = i18n.activate(lang, catalogs.get(lang))
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and not _wants_json(request, exc):
                response = _error_page(request, exc.status)
                for name in ("Retry-After", "Allow", "WWW-Authenticate"):
                    if name in exc.headers:
                        response.headers[name] = exc.headers[name]
            else:
                _apply_headers(request, exc)
                raise
        except Exception:
            log.exception("unhandled error")
            response = _error_page(request, 500)
        _apply_headers(request, response)
        return response
    finally:
        i18n.deactivate(token)
