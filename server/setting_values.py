"""How each setting's value is read and checked: one function per kind of value.

Each takes the raw text of its variable (already defaulted by ``server.settings``) and
returns the value, or raises ``SettingsError`` with one line fit for an operator that
names the variable and never repeats a secret.
"""

from __future__ import annotations

import enum
import importlib.util
import ipaddress
import re
from email.utils import parseaddr
from typing import Literal
from urllib.parse import urlsplit

MIN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line, fit for an operator."""


class Mode(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SmtpTls(enum.StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


def public_url(url: str, mode: Mode) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"ALCOVE_PUBLIC_URL must be an absolute http(s) URL, not {url!r}")
    if mode is Mode.PRODUCTION and parts.scheme != "https":
        raise SettingsError("ALCOVE_PUBLIC_URL must use https in production mode")
    return url.rstrip("/")


def ice_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    for url in urls:
        scheme, sep, rest = url.partition(":")
        if scheme not in {"stun", "turn", "turns"} or not sep or not rest:
            raise SettingsError(f"ALCOVE_ICE_URLS: {url!r} is not a stun:, turn: or turns: URL")
    if len(urls) > 8:
        raise SettingsError("ALCOVE_ICE_URLS: at most 8 URLs")
    return urls


_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _turn_url(url: str) -> str:
    """``url`` if it is ``turn(s):host[:port][?transport=udp|tcp]`` (RFC 7065)."""
    shape = "a URL like turn:turn.example.org:3478?transport=udp"
    match = _TURN_URL.fullmatch(url)
    if match is None:
        raise SettingsError(f"ALCOVE_TURN_URLS: {url!r} is not {shape}")
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SettingsError(f"ALCOVE_TURN_URLS: {url!r} has a malformed IPv6 address") from None
    elif len(host) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in host.split(".")):
        raise SettingsError(f"ALCOVE_TURN_URLS: {url!r} has a malformed host name")
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise SettingsError(f"ALCOVE_TURN_URLS: {url!r} has a port outside 1 to 65535")
    return url


def turn_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(_turn_url(u.strip()) for u in raw.split(",") if u.strip())
    if len(urls) > 8:
        raise SettingsError("ALCOVE_TURN_URLS: at most 8 URLs")
    return urls


def turn_secret(raw: str, urls: tuple[str, ...]) -> str:
    if urls and not raw:
        raise SettingsError("ALCOVE_TURN_SECRET is required when ALCOVE_TURN_URLS is set")
    if raw and len(raw) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"ALCOVE_TURN_SECRET is too short: use at least {MIN_SECRET_LENGTH} random characters"
        )
    return raw


def origins(raw: str) -> frozenset[str]:
    origins = set()
    for origin in (o.strip().rstrip("/") for o in raw.split(",")):
        if not origin:
            continue
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
            raise SettingsError(
                f"ALCOVE_ALLOWED_ORIGINS: {origin!r} is not an origin like https://host:port"
            )
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return frozenset(origins)


def smtp_tls(raw: str) -> SmtpTls:
    try:
        return SmtpTls(raw.lower())
    except ValueError:
        raise SettingsError(
            f"ALCOVE_SMTP_TLS must be 'starttls', 'tls' or 'none', not {raw!r}"
        ) from None


def redis_url(raw: str) -> str:
    """``raw`` if it is a redis:// or rediss:// URL with a host, and redis-py is installed.

    The error never repeats the URL, which may hold a password.
    """
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise SettingsError(
            "ALCOVE_REDIS_URL must be a redis:// or rediss:// URL like redis://redis:6379/0"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError("ALCOVE_REDIS_URL has a port outside 1 to 65535")
    if importlib.util.find_spec("redis") is None:
        raise SettingsError("ALCOVE_REDIS_URL needs redis-py: pip install 'alcove[redis]'")
    return raw


def metrics_token(raw: str) -> str:
    if raw and (len(raw) < MIN_METRICS_TOKEN_LENGTH or any(c.isspace() for c in raw)):
        raise SettingsError(
            f"ALCOVE_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters "
            "without spaces"
        )
    return raw


def mail_from(raw: str) -> str:
    _name, address = parseaddr(raw)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in raw for c in "\r\n"):
        raise SettingsError(
            f"ALCOVE_MAIL_FROM must be an address like 'Alcove <no-reply@example.org>', not {raw!r}"
        )
    return raw


def reminder_hours(raw: str) -> tuple[int, ...]:
    """Distinct whole hours from 1 to 168, largest first; ``none`` turns reminders off."""
    if raw.strip().lower() == "none":
        return ()
    hours: set[int] = set()
    for part in raw.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise SettingsError(
                f"ALCOVE_REMINDER_HOURS must be comma-separated whole hours, not {raw!r}"
            ) from None
        if not 1 <= value <= 168:
            raise SettingsError(f"ALCOVE_REMINDER_HOURS: {value} is not between 1 and 168")
        hours.add(value)
    if len(hours) > 4:
        raise SettingsError("ALCOVE_REMINDER_HOURS: at most 4 reminders")
    return tuple(sorted(hours, reverse=True))


def log_format(raw: str) -> Literal["json", "text"]:
    value = raw.strip().lower()
    if value == "json":
        return "json"
    if value == "text":
        return "text"
    raise SettingsError(f"ALCOVE_LOG_FORMAT must be 'json' or 'text', not {raw!r}")
