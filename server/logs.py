"""Logging set-up and an access log that never writes tokens or query strings."""

from __future__ import annotations

import logging
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.keys import REQUEST_ID

# Path segments after these prefixes are bearer tokens.
TOKEN_PREFIXES = ("join", "manage", "homework")
REDACTED = "[redacted]"


def _names_prefix(segment: str) -> bool:
    return unquote(segment).lower() in TOKEN_PREFIXES


def _hides_token(segment: str) -> bool:
    """A segment like ``join%2F<token>``: an encoded slash after a prefix."""
    parts = unquote(segment).lower().split("/")
    return any(part in TOKEN_PREFIXES for part in parts[:-1])


def redact_path(path: str) -> str:
    """The request path with token segments replaced and the query string dropped.

    The segment after a token prefix is redacted wherever the prefix appears
    (``//join/t``, ``/x/../join/t``, ``/%6Aoin/t`` reach or resemble the same
    routes), so a token never reaches the log whatever shape the path has.
    """
    segments = path.split("?", 1)[0].split("#", 1)[0].split("/")
    redact_next = False
    for index, segment in enumerate(segments):
        if redact_next and segment:
            segments[index] = REDACTED
            redact_next = False
        elif _hides_token(segment):
            segments[index] = REDACTED
        elif _names_prefix(segment):
            redact_next = True
    return "/".join(segments)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        self.logger.info(
            "%s %s %s %.1fms request_id=%s",
            request.method,
            redact_path(request.rel_url.raw_path),
            response.status,
            time * 1000,
            request_id,
        )


def configure(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
