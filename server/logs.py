"""Logging set-up and an access log that never writes tokens or query strings."""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.keys import REQUEST_ID

# Path segments after these prefixes are bearer tokens.
TOKEN_PREFIXES = ("join", "manage", "homework")
_TOKEN_PATH = re.compile(r"^/(" + "|".join(TOKEN_PREFIXES) + r")/[^/?#]+")


def redact_path(path: str) -> str:
    """The request path with token segments replaced and the query string dropped."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/[redacted]", path)


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
