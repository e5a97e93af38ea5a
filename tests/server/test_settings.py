"""Settings: safe defaults, the development secret, ``.env``, production checks, the docs."""

from __future__ import annotations

import re
import secrets
import stat
from pathlib import Path

import pytest

from server.settings import (
    MIN_SECRET_LENGTH,
    SETTINGS,
    Mode,
    SettingsError,
    load_settings,
)
from tests.server.test_cli import alcove_env, run_alcove

REPO = Path(__file__).resolve().parents[2]
CONFIG_DOC = REPO / "docs" / "CONFIG.md"
SCANNED_SOURCES = ("server", "signalling")
INTEGER_SETTINGS = [spec.env for spec in SETTINGS if spec.default and spec.default.isdigit()]
PRODUCTION_SECRET = secrets.token_urlsafe(48)


def production_env(data_dir: Path, **changes: str | None) -> dict[str, str]:
    """A complete, valid production environment, with some variables changed or removed."""
    env: dict[str, str | None] = {
        "ALCOVE_MODE": "production",
        "ALCOVE_SECRET_KEY": PRODUCTION_SECRET,
        "ALCOVE_PUBLIC_URL": "https://therapy.example.org/",
        "ALCOVE_DATA_DIR": str(data_dir),
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


# --- defaults -----------------------------------------------------------------------------


def test_defaults_are_embedded_sqlite_on_localhost_port_8080_in_development(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings({}, env_file=None)

    assert settings.database_url == "sqlite+aiosqlite:///./var/alcove.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.mode is Mode.DEVELOPMENT
    assert settings.data_dir == Path("var")
    assert settings.public_url == "http://localhost:8080"
    assert not settings.secure_cookies
    assert settings.trusted_proxies == frozenset()
    assert settings.log_level == "INFO"


def test_every_default_in_the_settings_table_is_a_value_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    explicit = {spec.env: spec.default for spec in SETTINGS if spec.default is not None}

    assert load_settings(explicit, env_file=None) == load_settings({}, env_file=None)


# --- the development secret --------------------------------------------------------------


def test_development_secret_is_generated_into_the_data_dir_readable_only_by_the_owner(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "state"

    settings = load_settings({"ALCOVE_DATA_DIR": str(data_dir)}, env_file=None)

    path = data_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == settings.secret_key
    assert len(settings.secret_key) >= MIN_SECRET_LENGTH


def test_development_secret_is_reused_on_later_runs_and_differs_per_data_dir(
    tmp_path: Path,
) -> None:
    first = load_settings({"ALCOVE_DATA_DIR": str(tmp_path / "a")}, env_file=None)
    again = load_settings({"ALCOVE_DATA_DIR": str(tmp_path / "a")}, env_file=None)
    other = load_settings({"ALCOVE_DATA_DIR": str(tmp_path / "b")}, env_file=None)

    assert again.secret_key == first.secret_key
    assert other.secret_key != first.secret_key


def test_development_secret_file_that_is_too_short_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")

    settings = load_settings({"ALCOVE_DATA_DIR": str(tmp_path)}, env_file=None)

    assert len(settings.secret_key) >= MIN_SECRET_LENGTH
    assert (tmp_path / "secret_key").read_text().strip() == settings.secret_key


def test_explicit_secret_is_used_and_no_secret_file_is_written(tmp_path: Path) -> None:
    settings = load_settings(
        {"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_SECRET_KEY": PRODUCTION_SECRET},
        env_file=None,
    )

    assert settings.secret_key == PRODUCTION_SECRET
    assert not (tmp_path / "secret_key").exists()


# --- the .env file -----------------------------------------------------------------------


def test_env_file_values_load_and_the_real_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# local overrides\n"
        "\n"
        "export ALCOVE_HOST=192.0.2.10\n"
        'ALCOVE_PORT="9090"\n'
        "ALCOVE_LOG_LEVEL='debug'\n"
        "ALCOVE_LOGIN_MAX_FAILURES = 3\n"
        "ALCOVE_SESSION_IDLE_MINUTES=45\n"
    )
    monkeypatch.chdir(tmp_path)

    settings = load_settings({"ALCOVE_PORT": "7070", "ALCOVE_SESSION_IDLE_MINUTES": "10"})

    assert settings.host == "192.0.2.10"
    assert settings.log_level == "DEBUG"
    assert settings.login_max_failures == 3
    assert settings.port == 7070
    assert settings.session_idle_minutes == 10
    assert settings.public_url == "http://192.0.2.10:7070"


def test_env_file_line_without_equals_is_reported_with_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ALCOVE_PORT=8081\nALCOVE_HOST\n")

    with pytest.raises(SettingsError, match=rf"{re.escape(str(env_file))}:2: expected KEY=value"):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path)}, env_file=env_file)


# --- production ----------------------------------------------------------------------------


def test_production_starts_with_a_long_secret_and_an_https_public_url(tmp_path: Path) -> None:
    settings = load_settings(production_env(tmp_path), env_file=None)

    assert settings.mode is Mode.PRODUCTION
    assert settings.public_url == "https://therapy.example.org"
    assert settings.secure_cookies
    assert not (tmp_path / "secret_key").exists()


def test_production_accepts_a_secret_of_exactly_the_minimum_length(tmp_path: Path) -> None:
    secret = "s" * MIN_SECRET_LENGTH
    env = production_env(tmp_path, ALCOVE_SECRET_KEY=secret)

    assert load_settings(env, env_file=None).secret_key == secret


PRODUCTION_REFUSALS: dict[str, tuple[dict[str, str | None], str]] = {
    "no-secret": ({"ALCOVE_SECRET_KEY": None}, r"ALCOVE_SECRET_KEY is required"),
    "short-secret": (
        {"ALCOVE_SECRET_KEY": "s" * (MIN_SECRET_LENGTH - 1)},
        r"ALCOVE_SECRET_KEY is too short",
    ),
    "no-public-url": ({"ALCOVE_PUBLIC_URL": None}, r"ALCOVE_PUBLIC_URL is required"),
    "http-public-url": (
        {"ALCOVE_PUBLIC_URL": "http://therapy.example.org"},
        r"ALCOVE_PUBLIC_URL must use https",
    ),
    "unknown-setting": ({"ALCOVE_SECRET": "typo"}, r"unknown setting ALCOVE_SECRET\b"),
}


@pytest.mark.parametrize(
    ("changes", "reason"), PRODUCTION_REFUSALS.values(), ids=PRODUCTION_REFUSALS.keys()
)
def test_production_refuses_to_load_an_unsafe_configuration(
    tmp_path: Path, changes: dict[str, str | None], reason: str
) -> None:
    with pytest.raises(SettingsError, match=reason):
        load_settings(production_env(tmp_path, **changes), env_file=None)


def test_production_never_falls_back_to_a_development_secret_file(tmp_path: Path) -> None:
    load_settings({"ALCOVE_DATA_DIR": str(tmp_path)}, env_file=None)
    assert (tmp_path / "secret_key").is_file()

    with pytest.raises(SettingsError, match="ALCOVE_SECRET_KEY is required"):
        load_settings(production_env(tmp_path, ALCOVE_SECRET_KEY=None), env_file=None)


def test_development_ignores_unknown_alcove_variables(tmp_path: Path) -> None:
    settings = load_settings(
        {"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_SECRET": "typo"}, env_file=None
    )

    assert settings.mode is Mode.DEVELOPMENT


SERVE_REFUSALS: dict[str, tuple[dict[str, str | None], str]] = {
    **PRODUCTION_REFUSALS,
    "bad-port": ({"ALCOVE_PORT": "eighty"}, r"ALCOVE_PORT must be a whole number"),
    "bad-mode": ({"ALCOVE_MODE": "staging"}, r"ALCOVE_MODE must be"),
}


@pytest.mark.parametrize(("changes", "reason"), SERVE_REFUSALS.values(), ids=SERVE_REFUSALS.keys())
async def test_alcove_serve_refuses_to_start_with_one_line_naming_the_reason(
    tmp_path: Path, changes: dict[str, str | None], reason: str
) -> None:
    env = alcove_env(**{"ALCOVE_PORT": "0", **production_env(tmp_path / "var", **changes)})

    result = await run_alcove("serve", env=env, cwd=tmp_path, wait_seconds=30)

    assert result.returncode != 0
    assert len(result.output_lines) == 1, result.output_lines
    assert result.output_lines[0].startswith("alcove: cannot start: ")
    assert re.search(reason, result.output_lines[0])
    assert "Traceback" not in result.stdout + result.stderr


async def test_alcove_serve_reads_dotenv_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "ALCOVE_MODE=production\n"
        f"ALCOVE_SECRET_KEY={PRODUCTION_SECRET}\n"
        "ALCOVE_PUBLIC_URL=http://therapy.example.org\n"
    )

    result = await run_alcove("serve", env=alcove_env(), cwd=tmp_path, wait_seconds=30)

    assert result.returncode != 0
    assert result.output_lines == [
        "alcove: cannot start: ALCOVE_PUBLIC_URL must use https in production mode"
    ]


# --- numbers -------------------------------------------------------------------------------


def test_integer_settings_are_the_ones_checked_below() -> None:
    assert INTEGER_SETTINGS == [
        "ALCOVE_PORT",
        "ALCOVE_SESSION_IDLE_MINUTES",
        "ALCOVE_SESSION_MAX_HOURS",
        "ALCOVE_LOGIN_MAX_FAILURES",
        "ALCOVE_LOGIN_WINDOW_MINUTES",
        "ALCOVE_JOIN_EARLY_MINUTES",
        "ALCOVE_JOIN_GRACE_MINUTES",
        "ALCOVE_RECONNECT_LIMIT_SECONDS",
        "ALCOVE_TURN_TTL_MINUTES",
        "ALCOVE_SMTP_PORT",
        "ALCOVE_OUTBOX_POLL_SECONDS",
        "ALCOVE_SHUTDOWN_DRAIN_SECONDS",
    ]


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
@pytest.mark.parametrize("raw", ["eight", "8.5", "0x10", "1e3"])
def test_a_setting_that_is_not_a_whole_number_is_refused_naming_the_variable(
    tmp_path: Path, name: str, raw: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), name: raw}, env_file=None)

    assert str(raised.value) == f"{name} must be a whole number, not {raw!r}"


@pytest.mark.parametrize("name", INTEGER_SETTINGS)
def test_a_whole_number_out_of_range_is_refused_naming_the_variable(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^{name} must be between \d+ and \d+, not -1$"):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), name: "-1"}, env_file=None)
    with pytest.raises(SettingsError, match=rf"^{name} must be between \d+ and \d+, not 99999$"):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), name: "99999"}, env_file=None)


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("ALCOVE_LOG_LEVEL", "loud", "ALCOVE_LOG_LEVEL must be a Python log level"),
        ("ALCOVE_PUBLIC_URL", "therapy.example.org", "ALCOVE_PUBLIC_URL must be an absolute"),
        ("ALCOVE_PUBLIC_URL", "ftp://therapy.example.org", "ALCOVE_PUBLIC_URL must be an absolute"),
        ("ALCOVE_MODE", "prod", "ALCOVE_MODE must be 'development' or 'production'"),
    ],
)
def test_other_malformed_settings_are_refused_naming_the_variable(
    tmp_path: Path, name: str, raw: str, reason: str
) -> None:
    with pytest.raises(SettingsError, match=reason):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), name: raw}, env_file=None)


# --- the documentation -------------------------------------------------------------------

_DOC_ROW = re.compile(r"^\|\s*`(ALCOVE_[A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|", re.MULTILINE)
_NAME_IN_SOURCE = re.compile(r"\bALCOVE_[A-Z0-9_]*[A-Z0-9]\b")


def documented_defaults() -> dict[str, str]:
    """``{variable: default cell}`` from the settings table in docs/CONFIG.md."""
    return dict(_DOC_ROW.findall(CONFIG_DOC.read_text(encoding="utf-8")))


def shown(default: str | None) -> str:
    if default is None:
        return "*(none)*"
    if default == "":
        return "*(empty)*"
    return f"`{default}`"


def test_config_doc_has_a_row_for_every_setting_showing_its_default() -> None:
    rows = documented_defaults()

    missing = [spec.env for spec in SETTINGS if spec.env not in rows]
    assert missing == [], f"add these to docs/CONFIG.md: {missing}"
    stale = {spec.env: rows[spec.env] for spec in SETTINGS if rows[spec.env] != shown(spec.default)}
    assert stale == {}, f"defaults in docs/CONFIG.md differ from server/settings.py: {stale}"


def test_config_doc_documents_no_setting_that_does_not_exist() -> None:
    known = {spec.env for spec in SETTINGS}

    assert set(documented_defaults()) - known == set()


def alcove_names_in_sources() -> dict[str, set[str]]:
    """``{ALCOVE_* name: files using it}`` across the server and signalling sources."""
    found: dict[str, set[str]] = {}
    for top in SCANNED_SOURCES:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for name in _NAME_IN_SOURCE.findall(text):
                found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_alcove_variable_named_in_the_sources_is_a_declared_setting() -> None:
    known = {spec.env for spec in SETTINGS}
    used = alcove_names_in_sources()

    undeclared = {
        name: sorted(files)
        for name, files in used.items()
        if name not in known and not name.startswith("ALCOVE_TEST_")
    }

    assert "ALCOVE_DATABASE_URL" in used  # the scan does find real names
    assert undeclared == {}, f"declare these in server.settings.SETTINGS: {undeclared}"


# --- signalling ------------------------------------------------------------------------------


def test_ice_urls_are_split_and_checked(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ALCOVE_DATA_DIR": str(tmp_path),
            "ALCOVE_ICE_URLS": "stun:turn.example.org:3478, turns:turn.example.org:5349",
        },
        env_file=None,
    )
    assert settings.ice_urls == ("stun:turn.example.org:3478", "turns:turn.example.org:5349")


@pytest.mark.parametrize(
    "url", ["http://turn.example.org", "turn", "stun:", "ftp:x", "stuns:x.example"]
)
def test_an_ice_url_of_another_scheme_is_refused_naming_it(tmp_path: Path, url: str) -> None:
    with pytest.raises(SettingsError, match=r"^ALCOVE_ICE_URLS: "):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_ICE_URLS": url}, env_file=None)


def test_the_public_origin_is_always_allowed_and_extra_origins_are_added(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ALCOVE_DATA_DIR": str(tmp_path),
            "ALCOVE_PUBLIC_URL": "https://therapy.example.org/app",
            "ALCOVE_ALLOWED_ORIGINS": "https://other.example.org/",
        },
        env_file=None,
    )
    assert settings.allowed_origins == {
        "https://therapy.example.org",
        "https://other.example.org",
    }


@pytest.mark.parametrize("origin", ["therapy.example.org", "https://x.example/path", "ws://x"])
def test_a_malformed_extra_origin_is_refused(tmp_path: Path, origin: str) -> None:
    with pytest.raises(SettingsError, match=r"^ALCOVE_ALLOWED_ORIGINS: "):
        load_settings(
            {"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_ALLOWED_ORIGINS": origin}, env_file=None
        )
