"""All configuration, read in one place.

Every setting comes from an ``ALCOVE_*`` environment variable, optionally
seeded from a ``.env`` file in the working directory (real environment
variables win).  ``SETTINGS`` lists every variable with its default and a
one-line description; ``docs/CONFIG.md`` documents each of them and a test
keeps the two in step.  ``server.setting_values`` reads and checks each kind of value.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from server import setting_values as values
from server.setting_values import MIN_SECRET_LENGTH, Mode, SettingsError, SmtpTls

__all__ = [
    "MIN_SECRET_LENGTH",
    "SETTINGS",
    "Mode",
    "SettingSpec",
    "Settings",
    "SettingsError",
    "SmtpTls",
    "load_settings",
    "read_env_file",
]


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
    public_url = values.public_url(public_url, mode)

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

    turn_urls = values.turn_urls(_str(env, "ALCOVE_TURN_URLS"))

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
        log_format=values.log_format(_str(env, "ALCOVE_LOG_FORMAT")),
        join_early_minutes=_int(env, "ALCOVE_JOIN_EARLY_MINUTES", 0, 24 * 60),
        join_grace_minutes=_int(env, "ALCOVE_JOIN_GRACE_MINUTES", 0, 24 * 60),
        reconnect_limit_seconds=_int(env, "ALCOVE_RECONNECT_LIMIT_SECONDS", 5, 24 * 3600),
        ice_urls=values.ice_urls(_str(env, "ALCOVE_ICE_URLS")),
        turn_urls=turn_urls,
        turn_secret=values.turn_secret(_str(env, "ALCOVE_TURN_SECRET"), turn_urls),
        turn_ttl_minutes=_int(env, "ALCOVE_TURN_TTL_MINUTES", 1, 24 * 60),
        extra_origins=values.origins(_str(env, "ALCOVE_ALLOWED_ORIGINS")),
        smtp_host=_str(env, "ALCOVE_SMTP_HOST").strip(),
        smtp_port=_int(env, "ALCOVE_SMTP_PORT", 1, 65535),
        smtp_tls=values.smtp_tls(_str(env, "ALCOVE_SMTP_TLS")),
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        mail_from=values.mail_from(_str(env, "ALCOVE_MAIL_FROM")),
        reminder_hours=values.reminder_hours(_str(env, "ALCOVE_REMINDER_HOURS")),
        outbox_poll_seconds=_int(env, "ALCOVE_OUTBOX_POLL_SECONDS", 1, 3600),
        shutdown_drain_seconds=_int(env, "ALCOVE_SHUTDOWN_DRAIN_SECONDS", 1, 600),
        metrics_token=values.metrics_token(_str(env, "ALCOVE_METRICS_TOKEN")),
        redis_url=values.redis_url(_str(env, "ALCOVE_REDIS_URL").strip()),
    )
