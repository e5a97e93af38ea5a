"""All configuration, read in one place.

Every setting comes from an ``ALCOVE_*`` environment variable, optionally
seeded from a ``.env`` file in the working directory (real environment
variables win).  ``SETTINGS`` lists every variable with its default and a
one-line description; ``docs/CONFIG.md`` documents each of them and a test
keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit


class SmtpTls(enum.StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line, fit for an operator."""


class Mode(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


@dataclass(frozen=True)
class SettingSpec:
    env: str
    default: str | None
    help: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("ALCOVE_MODE", "development", "`development` or `production`."),
    SettingSpec("ALCOVE_DATA_DIR", "./var", "Directory for local state."),
    SettingSpec(
        "ALCOVE_DATABASE_URL",
        "sqlite+aiosqlite:///./var/alcove.db",
        "SQLAlchemy async database URL.",
    ),
    SettingSpec(
        "ALCOVE_SECRET_KEY", None, "Signing key; generated into the data dir in development."
    ),
    SettingSpec("ALCOVE_PUBLIC_URL", None, "Public base URL; https is required in production."),
    SettingSpec("ALCOVE_HOST", "127.0.0.1", "Address to listen on."),
    SettingSpec("ALCOVE_PORT", "8080", "Port to listen on."),
    SettingSpec("ALCOVE_SESSION_IDLE_MINUTES", "30", "Sign-out after this much inactivity."),
    SettingSpec(
        "ALCOVE_SESSION_MAX_HOURS", "12", "Sign-out this long after sign-in, whatever happens."
    ),
    SettingSpec(
        "ALCOVE_LOGIN_MAX_FAILURES", "5", "Failed sign-ins allowed per account and per IP."
    ),
    SettingSpec("ALCOVE_LOGIN_WINDOW_MINUTES", "15", "Window for counting failed sign-ins."),
    SettingSpec(
        "ALCOVE_TRUSTED_PROXIES", "", "Comma-separated proxy IPs whose X-Forwarded-For is used."
    ),
    SettingSpec("ALCOVE_LOG_LEVEL", "INFO", "Python log level."),
    SettingSpec("ALCOVE_LOG_FORMAT", "json", "Log lines as JSON objects, or as plain text."),
    SettingSpec("ALCOVE_JOIN_EARLY_MINUTES", "15", "How early before the start a join link opens."),
    SettingSpec(
        "ALCOVE_JOIN_GRACE_MINUTES", "30", "How long after the end a join link still works."
    ),
    SettingSpec(
        "ALCOVE_RECONNECT_LIMIT_SECONDS",
        "120",
        "How long an admitted participant may be disconnected before they count as left.",
    ),
    SettingSpec("ALCOVE_ICE_URLS", "", "Comma-separated STUN/TURN URLs for WebRTC."),
    SettingSpec(
        "ALCOVE_TURN_URLS", "", "Comma-separated TURN URLs given time-limited credentials."
    ),
    SettingSpec("ALCOVE_TURN_SECRET", "", "coturn's static-auth-secret for ALCOVE_TURN_URLS."),
    SettingSpec("ALCOVE_TURN_TTL_MINUTES", "120", "How long TURN credentials stay valid."),
    SettingSpec("ALCOVE_ALLOWED_ORIGINS", "", "Extra origins allowed to open the websocket."),
    SettingSpec("ALCOVE_SMTP_HOST", "", "SMTP server for e-mail; empty writes .eml files instead."),
    SettingSpec("ALCOVE_SMTP_PORT", "587", "SMTP server port."),
    SettingSpec("ALCOVE_SMTP_TLS", "starttls", "`starttls`, `tls` or `none`."),
    SettingSpec("ALCOVE_SMTP_USERNAME", "", "SMTP user name; empty means no sign-in."),
    SettingSpec("ALCOVE_SMTP_PASSWORD", "", "SMTP password."),
    SettingSpec("ALCOVE_MAIL_FROM", "Alcove <no-reply@localhost>", "Sender of every e-mail."),
    SettingSpec("ALCOVE_REMINDER_HOURS", "24,1", "Hours before a session to send reminders."),
    SettingSpec("ALCOVE_OUTBOX_POLL_SECONDS", "10", "How often the e-mail worker looks for mail."),
    SettingSpec(
        "ALCOVE_SHUTDOWN_DRAIN_SECONDS", "10", "How long a stopping instance takes at most."
    ),
    SettingSpec("ALCOVE_METRICS_TOKEN", "", "Bearer token for /metrics; empty turns it off."),
    SettingSpec(
        "ALCOVE_REDIS_URL", "", "Redis for signalling between instances; empty: in-process."
    ),
)

_KNOWN = {spec.env for spec in SETTINGS}
_DEFAULTS = {spec.env: spec.default for spec in SETTINGS}
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    mode: Mode
    data_dir: Path
    database_url: str
    secret_key: str
    public_url: str
    host: str
    port: int
    session_idle_minutes: int
    session_max_hours: int
    login_max_failures: int
    login_window_minutes: int
    trusted_proxies: frozenset[str]
    log_level: str
    log_format: Literal["json", "text"] = "json"
    join_early_minutes: int = 15
    join_grace_minutes: int = 30
    reconnect_limit_seconds: int = 120
    ice_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = dataclasses.field(default="", repr=False)
    turn_ttl_minutes: int = 120
    extra_origins: frozenset[str] = frozenset()
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_tls: SmtpTls = SmtpTls.STARTTLS
    smtp_username: str = ""
    smtp_password: str = dataclasses.field(default="", repr=False)
    mail_from: str = "Alcove <no-reply@localhost>"
    reminder_hours: tuple[int, ...] = (24, 1)
    outbox_poll_seconds: int = 10
    metrics_token: str = dataclasses.field(default="", repr=False)
    shutdown_drain_seconds: int = 10
    #: May hold a password: never shown.
    redis_url: str = dataclasses.field(default="", repr=False)

    @property
    def local_mail_dir(self) -> Path | None:
        """Where e-mails are written when no SMTP server is set; ``None`` when one is."""
        return None if self.smtp_host else self.data_dir / "outbox"

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Origins that may open the websocket: the public URL's, plus any configured."""
        return self.extra_origins | {self.public_origin}

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a minimal ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = env.get(name) or _DEFAULTS[name] or ""
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _str(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or _DEFAULTS[name] or ""


def _local_secret(data_dir: Path) -> str:
    """Read the development secret from the data dir, creating it on the first run."""
    path = data_dir / "secret_key"
    if path.is_file():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= MIN_SECRET_LENGTH:
            return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def _check_public_url(url: str, mode: Mode) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"ALCOVE_PUBLIC_URL must be an absolute http(s) URL, not {url!r}")
    if mode is Mode.PRODUCTION and parts.scheme != "https":
        raise SettingsError("ALCOVE_PUBLIC_URL must use https in production mode")
    return url.rstrip("/")


def _ice_urls(raw: str) -> tuple[str, ...]:
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


def _turn_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(_turn_url(u.strip()) for u in raw.split(",") if u.strip())
    if len(urls) > 8:
        raise SettingsError("ALCOVE_TURN_URLS: at most 8 URLs")
    return urls


def _turn_secret(raw: str, urls: tuple[str, ...]) -> str:
    if urls and not raw:
        raise SettingsError("ALCOVE_TURN_SECRET is required when ALCOVE_TURN_URLS is set")
    if raw and len(raw) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"ALCOVE_TURN_SECRET is too short: use at least {MIN_SECRET_LENGTH} random characters"
        )
    return raw


def _origins(raw: str) -> frozenset[str]:
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


def _smtp_tls(raw: str) -> SmtpTls:
    try:
        return SmtpTls(raw.lower())
    except ValueError:
        raise SettingsError(
            f"ALCOVE_SMTP_TLS must be 'starttls', 'tls' or 'none', not {raw!r}"
        ) from None


MIN_METRICS_TOKEN_LENGTH = 16


def _redis_url(raw: str) -> str:
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


def _metrics_token(raw: str) -> str:
    if raw and (len(raw) < MIN_METRICS_TOKEN_LENGTH or any(c.isspace() for c in raw)):
        raise SettingsError(
            f"ALCOVE_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters "
            "without spaces"
        )
    return raw


def _mail_from(raw: str) -> str:
    _name, address = parseaddr(raw)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in raw for c in "\r\n"):
        raise SettingsError(
            f"ALCOVE_MAIL_FROM must be an address like 'Alcove <no-reply@example.org>', not {raw!r}"
        )
    return raw


def _reminder_hours(raw: str) -> tuple[int, ...]:
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


def _log_format(raw: str) -> Literal["json", "text"]:
    value = raw.strip().lower()
    if value == "json":
        return "json"
    if value == "text":
        return "text"
    raise SettingsError(f"ALCOVE_LOG_FORMAT must be 'json' or 'text', not {raw!r}")


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")
) -> Settings:
    """Build settings from the environment (and ``.env``), or raise ``SettingsError``."""
    env: dict[str, str] = {}
    if env_file is not None:
        env.update(read_env_file(env_file))
    env.update(os.environ if environ is None else environ)

    raw_mode = _str(env, "ALCOVE_MODE").lower()
    try:
        mode = Mode(raw_mode)
    except ValueError:
        raise SettingsError(
            f"ALCOVE_MODE must be 'development' or 'production', not {raw_mode!r}"
        ) from None

    data_dir = Path(_str(env, "ALCOVE_DATA_DIR"))
    host = _str(env, "ALCOVE_HOST")
    port = _int(env, "ALCOVE_PORT", 0, 65535)

    secret = env.get("ALCOVE_SECRET_KEY", "")
    if secret:
        if len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                "ALCOVE_SECRET_KEY is too short: "
                f"use at least {MIN_SECRET_LENGTH} random characters"
            )
    elif mode is Mode.PRODUCTION:
        raise SettingsError("ALCOVE_SECRET_KEY is required in production mode")
    else:
        secret = _local_secret(data_dir)

    public_url = env.get("ALCOVE_PUBLIC_URL", "")
    if not public_url:
        if mode is Mode.PRODUCTION:
            raise SettingsError("ALCOVE_PUBLIC_URL is required in production mode")
        shown = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104
        public_url = f"http://{shown}:{port}"
    public_url = _check_public_url(public_url, mode)

    level = _str(env, "ALCOVE_LOG_LEVEL").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"ALCOVE_LOG_LEVEL must be a Python log level, not {level!r}")

    proxies = frozenset(
        p.strip() for p in _str(env, "ALCOVE_TRUSTED_PROXIES").split(",") if p.strip()
    )

    smtp_username = _str(env, "ALCOVE_SMTP_USERNAME")
    smtp_password = _str(env, "ALCOVE_SMTP_PASSWORD")
    if bool(smtp_username) != bool(smtp_password):
        raise SettingsError("ALCOVE_SMTP_USERNAME and ALCOVE_SMTP_PASSWORD go together")

    turn_urls = _turn_urls(_str(env, "ALCOVE_TURN_URLS"))

    unknown = sorted(
        k
        for k in env
        if k.startswith("ALCOVE_") and k not in _KNOWN and not k.startswith("ALCOVE_TEST_")
    )
    if unknown and mode is Mode.PRODUCTION:
        raise SettingsError(f"unknown setting {unknown[0]} (see docs/CONFIG.md)")

    return Settings(
        mode=mode,
        data_dir=data_dir,
        database_url=_str(env, "ALCOVE_DATABASE_URL"),
        secret_key=secret,
        public_url=public_url,
        host=host,
        port=port,
        session_idle_minutes=_int(env, "ALCOVE_SESSION_IDLE_MINUTES", 1, 24 * 60),
        session_max_hours=_int(env, "ALCOVE_SESSION_MAX_HOURS", 1, 24 * 7),
        login_max_failures=_int(env, "ALCOVE_LOGIN_MAX_FAILURES", 1, 1000),
        login_window_minutes=_int(env, "ALCOVE_LOGIN_WINDOW_MINUTES", 1, 24 * 60),
        trusted_proxies=proxies,
        log_level=level,
        log_format=_log_format(_str(env, "ALCOVE_LOG_FORMAT")),
        join_early_minutes=_int(env, "ALCOVE_JOIN_EARLY_MINUTES", 0, 24 * 60),
        join_grace_minutes=_int(env, "ALCOVE_JOIN_GRACE_MINUTES", 0, 24 * 60),
        reconnect_limit_seconds=_int(env, "ALCOVE_RECONNECT_LIMIT_SECONDS", 5, 24 * 3600),
        ice_urls=_ice_urls(_str(env, "ALCOVE_ICE_URLS")),
        turn_urls=turn_urls,
        turn_secret=_turn_secret(_str(env, "ALCOVE_TURN_SECRET"), turn_urls),
        turn_ttl_minutes=_int(env, "ALCOVE_TURN_TTL_MINUTES", 1, 24 * 60),
        extra_origins=_origins(_str(env, "ALCOVE_ALLOWED_ORIGINS")),
        smtp_host=_str(env, "ALCOVE_SMTP_HOST").strip(),
        smtp_port=_int(env, "ALCOVE_SMTP_PORT", 1, 65535),
        smtp_tls=_smtp_tls(_str(env, "ALCOVE_SMTP_TLS")),
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        mail_from=_mail_from(_str(env, "ALCOVE_MAIL_FROM")),
        reminder_hours=_reminder_hours(_str(env, "ALCOVE_REMINDER_HOURS")),
        outbox_poll_seconds=_int(env, "ALCOVE_OUTBOX_POLL_SECONDS", 1, 3600),
        shutdown_drain_seconds=_int(env, "ALCOVE_SHUTDOWN_DRAIN_SECONDS", 1, 600),
        metrics_token=_metrics_token(_str(env, "ALCOVE_METRICS_TOKEN")),
        redis_url=_redis_url(_str(env, "ALCOVE_REDIS_URL").strip()),
    )
