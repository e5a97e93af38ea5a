"""RFC 9457 problem details for ``/api/``: every error there is ``application/problem+json``.

A problem has ``type`` (a URN naming the kind), ``title``, ``status``, ``detail``, a
stable ``code`` for programs, and the request id.  ``api_problems`` (a middleware for
``/api/`` paths only) turns aiohttp's own errors -- unknown path 404, 405, a body over the
size limit 413 -- and any unexpected exception (500, logged, never shown) into problems.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.keys import REQUEST_ID

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:alcove:problem:"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: code -> (status, title).  Codes are a stable contract: add new ones, never rename.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-json": (400, "The request body is not valid JSON"),
    "not-found": (404, "Nothing here"),
    "therapist-not-found": (404, "No such therapist"),
    "unknown-link": (404, "This link does not work"),
    "method-not-allowed": (405, "Method not allowed"),
    "slot-taken": (409, "That time is no longer free"),
    "too-late": (409, "Too late to change this appointment online"),
    "not-changeable": (410, "This appointment can no longer be changed"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Send JSON"),
    "validation-failed": (422, "Some fields are not valid"),
    "internal-error": (500, "Something went wrong on our side"),
}

_BY_STATUS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


class Problem(Exception):
    """Raise from an API view to answer with a problem; ``extra`` adds members."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = PROBLEMS[code][0]
        self.code = code
        self.detail = detail
        self.extra = extra


def problem_response(
    request: web.Request,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    status, title = PROBLEMS[code]
    body = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request.get(REQUEST_ID, ""),
        **extra,
    }
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM_JSON,
        charset="utf-8",
        headers=headers,
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _BY_STATUS.get(exc.status)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    if code is None:  # an aiohttp error this API does not raise itself: keep its status
        return web.json_response(
            {
                "type": "about:blank",
                "title": exc.reason,
                "status": exc.status,
                "detail": exc.reason,
                "code": f"http-{exc.status}",
                "request_id": request.get(REQUEST_ID, ""),
            },
            status=exc.status,
            content_type=PROBLEM_JSON,
            headers=headers,
        )
    return problem_response(request, code, exc.reason, headers=headers)


@web.middleware
async def api_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error under ``/api/`` with a problem object, never an HTML page."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(request, problem.code, problem.detail, **problem.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception:
        log.exception("unhandled API error, request_id=%s", request.get(REQUEST_ID, "-"))
        return problem_response(
            request, "internal-error", "The request failed; quote the request id to get help."
        )
