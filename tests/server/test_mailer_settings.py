"""E-mail settings, and where a local run says its e-mails go."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import SettingsError, SmtpTls, load_settings
from tests.server.test_cli import alcove_env, run_alcove


def test_by_default_e_mails_are_written_under_the_data_dir_and_reminders_come_at_24_and_1_hours(
    tmp_path: Path,
) -> None:
    settings = load_settings({"ALCOVE_DATA_DIR": str(tmp_path)}, env_file=None)

    assert settings.smtp_host == ""
    assert settings.local_mail_dir == tmp_path / "outbox"
    assert (settings.smtp_port, settings.smtp_tls) == (587, SmtpTls.STARTTLS)
    assert settings.mail_from == "Alcove <no-reply@localhost>"
    assert settings.reminder_hours == (24, 1)
    assert settings.outbox_poll_seconds == 10


def test_an_smtp_server_is_configured_in_full(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ALCOVE_DATA_DIR": str(tmp_path),
            "ALCOVE_SMTP_HOST": "smtp.example.org",
            "ALCOVE_SMTP_PORT": "465",
            "ALCOVE_SMTP_TLS": "TLS",
            "ALCOVE_SMTP_USERNAME": "alcove",
            "ALCOVE_SMTP_PASSWORD": "s3cret!",
            "ALCOVE_MAIL_FROM": "Practice Rivera <no-reply@therapy.example.org>",
        },
        env_file=None,
    )

    assert settings.local_mail_dir is None
    assert (settings.smtp_host, settings.smtp_port) == ("smtp.example.org", 465)
    assert settings.smtp_tls is SmtpTls.TLS
    assert (settings.smtp_username, settings.smtp_password) == ("alcove", "s3cret!")
    assert "s3cret!" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "hours"),
    [("24,1", (24, 1)), ("1, 48 ,1", (48, 1)), ("2", (2,)), ("none", ()), ("NONE", ())],
)
def test_reminder_hours_are_distinct_whole_hours_largest_first_or_none(
    tmp_path: Path, raw: str, hours: tuple[int, ...]
) -> None:
    settings = load_settings(
        {"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_REMINDER_HOURS": raw}, env_file=None
    )

    assert settings.reminder_hours == hours


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("ALCOVE_SMTP_TLS", "ssl", "ALCOVE_SMTP_TLS must be 'starttls', 'tls' or 'none'"),
        ("ALCOVE_REMINDER_HOURS", "24h", "ALCOVE_REMINDER_HOURS must be comma-separated"),
        ("ALCOVE_REMINDER_HOURS", "0", "ALCOVE_REMINDER_HOURS: 0 is not between 1 and 168"),
        ("ALCOVE_REMINDER_HOURS", "1,2,3,4,5", "ALCOVE_REMINDER_HOURS: at most 4"),
        ("ALCOVE_MAIL_FROM", "Alcove", "ALCOVE_MAIL_FROM must be an address"),
        ("ALCOVE_MAIL_FROM", "Alcove <@example.org>", "ALCOVE_MAIL_FROM must be an address"),
        ("ALCOVE_SMTP_USERNAME", "alcove", "ALCOVE_SMTP_USERNAME and ALCOVE_SMTP_PASSWORD go"),
        ("ALCOVE_SMTP_PASSWORD", "secret", "ALCOVE_SMTP_USERNAME and ALCOVE_SMTP_PASSWORD go"),
    ],
)
def test_malformed_e_mail_settings_are_refused_naming_the_variable(
    tmp_path: Path, name: str, raw: str, reason: str
) -> None:
    with pytest.raises(SettingsError, match=reason):
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), name: raw}, env_file=None)


async def test_alcove_demo_prints_where_local_e_mails_go(migrated_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = alcove_env(ALCOVE_DATABASE_URL=migrated_url, ALCOVE_DATA_DIR=str(data_dir))

    result = await run_alcove("demo", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    folder = data_dir / "outbox"
    assert f"E-mails are not sent: each one is written to {folder}/ as an .eml file" in (
        result.stdout
    )


async def test_alcove_demo_says_which_smtp_server_e_mails_go_through(
    migrated_url: str, tmp_path: Path
) -> None:
    env = alcove_env(
        ALCOVE_DATABASE_URL=migrated_url,
        ALCOVE_DATA_DIR=str(tmp_path / "var"),
        ALCOVE_SMTP_HOST="smtp.example.org",
        ALCOVE_SMTP_PORT="2525",
    )

    result = await run_alcove("demo", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "E-mails are sent through smtp.example.org:2525" in result.stdout
