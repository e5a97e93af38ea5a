"""The ``alcove`` command, run as a real subprocess: therapist accounts from the shell."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.db import create_engine, sessionmaker
from server.models import AuditEvent, Therapist
from server.passwords import verify_password

ALCOVE = Path(sys.executable).with_name("alcove")
CLI_TIMEOUT = 60.0
GOOD_PASSWORD = "a long enough passphrase"


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output_lines(self) -> list[str]:
        """Every non-blank line the command wrote, stdout first."""
        text = self.stdout + self.stderr
        return [line for line in text.splitlines() if line.strip()]


def alcove_env(**values: str) -> dict[str, str]:
    """This process's environment without any ``ALCOVE_*`` variable, plus ``values``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALCOVE_")}
    env.update(values)
    return env


async def run_alcove(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    stdin: str = "",
    wait_seconds: float = CLI_TIMEOUT,
) -> Completed:
    """Run the installed ``alcove`` console script and wait for it to finish."""
    process = await asyncio.create_subprocess_exec(
        str(ALCOVE),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), wait_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


def cli_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return alcove_env(ALCOVE_DATABASE_URL=database_url, ALCOVE_DATA_DIR=str(data_dir))


async def create_therapist_cli(
    database_url: str,
    tmp_path: Path,
    *,
    email: str = "ana.lima@example.com",
    name: str = "Ana Lima",
    timezone: str = "Europe/Lisbon",
    password: str = GOOD_PASSWORD,
) -> Completed:
    return await run_alcove(
        "therapist",
        "create",
        "--email",
        email,
        "--name",
        name,
        "--timezone",
        timezone,
        env=cli_env(database_url, tmp_path / "var"),
        cwd=tmp_path,
        stdin=password + "\n",
    )


@dataclass(frozen=True)
class Counts:
    therapists: int
    audit_events: int


async def counts(database_url: str) -> Counts:
    engine = create_engine(database_url)
    try:
        async with sessionmaker(engine)() as db:
            therapists = await db.scalar(select(func.count()).select_from(Therapist))
            events = await db.scalar(select(func.count()).select_from(AuditEvent))
    finally:
        await engine.dispose()
    return Counts(therapists or 0, events or 0)


async def test_therapist_create_reads_the_password_from_stdin_and_stores_only_an_argon2id_hash(
    migrated_url: str, tmp_path: Path
) -> None:
    result = await create_therapist_cli(migrated_url, tmp_path, email="Ana.Lima@Example.com")

    assert result.returncode == 0, result.stderr
    assert GOOD_PASSWORD not in result.stdout + result.stderr
    engine = create_engine(migrated_url)
    try:
        async with sessionmaker(engine)() as db:
            therapist = (await db.scalars(select(Therapist))).one()
    finally:
        await engine.dispose()
    assert therapist.email == "ana.lima@example.com"
    assert therapist.display_name == "Ana Lima"
    assert therapist.timezone == "Europe/Lisbon"
    assert therapist.is_active
    assert therapist.password_hash.startswith("$argon2id$")
    assert GOOD_PASSWORD not in therapist.password_hash
    assert await verify_password(therapist.password_hash, GOOD_PASSWORD)
    assert f"created therapist {therapist.id}" in result.stdout


async def test_therapist_create_writes_an_audit_event_naming_the_new_account(
    migrated_url: str, tmp_path: Path
) -> None:
    result = await create_therapist_cli(migrated_url, tmp_path)

    assert result.returncode == 0, result.stderr
    engine = create_engine(migrated_url)
    try:
        async with sessionmaker(engine)() as db:
            therapist = (await db.scalars(select(Therapist))).one()
            event = (await db.scalars(select(AuditEvent))).one()
    finally:
        await engine.dispose()
    assert event.action == "therapist_created"
    assert event.actor_type == "system"
    assert event.record_type == "therapist"
    assert event.record_id == str(therapist.id)
    assert event.at.tzinfo is not None


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("timezone", {"timezone": "Mars/Olympus_Mons"}),
        ("timezone", {"timezone": "../../etc/passwd"}),
        ("email", {"email": "not-an-email"}),
        ("email", {"email": "two@@example.com"}),
        ("password", {"password": "short"}),
        ("password", {"password": ""}),
        ("name", {"name": "   "}),
    ],
    ids=["unknown-zone", "path-as-zone", "no-at", "double-at", "short", "empty", "blank-name"],
)
async def test_therapist_create_with_a_bad_field_exits_nonzero_naming_it_and_creates_nothing(
    migrated_url: str, tmp_path: Path, field: str, overrides: dict[str, str]
) -> None:
    result = await create_therapist_cli(migrated_url, tmp_path, **overrides)

    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.output_lines) == 1, result.output_lines
    assert result.output_lines[0].startswith(f"alcove: {field}:")
    assert "Traceback" not in result.stderr
    assert await counts(migrated_url) == Counts(therapists=0, audit_events=0)


async def test_therapist_create_refuses_an_email_that_already_has_an_account_in_any_case(
    migrated_url: str, tmp_path: Path
) -> None:
    first = await create_therapist_cli(migrated_url, tmp_path, email="ana.lima@example.com")
    assert first.returncode == 0, first.stderr
    before = await counts(migrated_url)

    again = await create_therapist_cli(
        migrated_url, tmp_path, email="ANA.LIMA@example.com", name="Someone Else"
    )

    assert again.returncode != 0
    assert len(again.output_lines) == 1, again.output_lines
    assert again.output_lines[0].startswith("alcove: email:")
    assert "already exists" in again.output_lines[0]
    assert await counts(migrated_url) == before == Counts(therapists=1, audit_events=1)


async def test_unknown_command_is_refused_with_usage_and_nonzero_exit(tmp_path: Path) -> None:
    result = await run_alcove("frobnicate", env=alcove_env(), cwd=tmp_path)

    assert result.returncode != 0
    assert "usage: alcove" in result.stderr
    assert "Traceback" not in result.stderr
