"""Logging set-up: one JSON object a line (or plain text), each with the request id of the
request it happened in, and an access log that never writes tokens or query strings.

The request id lives in a context variable set by the request middleware, so everything
logged while a request — or a websocket, for its whole life — is handled carries it,
whichever module logs.  Nothing here adds content: what is logged is what modules log,
and they log ids, never names, e-mail addresses, tokens or worksheet text.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from typing import Literal
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
            "%s %s %s %.1fms",
            request.method,
            redact_path(request.rel_url.raw_path),
            response.status,
            time * 1000,
            extra={"request_id": request_id},
        )


_PREFIXES = "|".join(TOKEN_PREFIXES)
_TOKEN_IN_TEXT = re.compile(rf"(?i)(/(?:{_PREFIXES})/+)[^\s/?#\"']+")
_QUERY_IN_TEXT = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


class RedactTokensFilter(logging.Filter):
    """Defence in depth for any access log line not written by `AccessLogger` (another
    runner's default format): token path segments and query strings are cut out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _QUERY_IN_TEXT.sub(r"\1", _TOKEN_IN_TEXT.sub(r"\1" + REDACTED, message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def guard_access_log() -> None:
    """Put `RedactTokensFilter` on aiohttp's access logger (once)."""
    logger = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
        logger.addFilter(RedactTokensFilter())


#: The id of the request being handled in this context ("-" outside any request).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (as ``record.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", current_request_id.get()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def handler_for(log_format: LogFormat) -> logging.Handler:
    """A stderr handler in ``log_format``, stamping request ids."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure(level: str, log_format: LogFormat = "json") -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler_for(log_format))
    root.setLevel(level)
