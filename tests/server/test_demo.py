"""Demo data for a first local run: created once, reused, printed with a join link."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db import Base, create_engine, sessionmaker, utcnow
from server.demo import DEMO_CLIENT_NAME, DEMO_EMAIL, DemoState, ensure_demo
from server.models import Appointment, AppointmentStatus, Client, JoinToken, Therapist
from server.passwords import verify_password
from server.settings import Settings
from server.tokens import token_hash
from tests.server.test_cli import alcove_env, run_alcove

MINUTE = dt.timedelta(minutes=1)
_Row = TypeVar("_Row", bound=Base)


async def run_demo(
    db: async_sessionmaker[AsyncSession], settings: Settings, now: dt.datetime
) -> DemoState:
    async with db() as session, session.begin():
        return await ensure_demo(session, settings.data_dir, now)


async def count(db: async_sessionmaker[AsyncSession], model: type[Base]) -> int:
    async with db() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def only(db: async_sessionmaker[AsyncSession], model: type[_Row]) -> _Row:
    async with db() as session:
        return (await session.scalars(select(model))).one()


async def every_stored_string(db: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every text value in every table, to look for secrets that should not be there."""
    values: list[str] = []
    async with db() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(table.select())
            values.extend(value for row in rows for value in row if isinstance(value, str))
    return values


async def test_ensure_demo_twice_creates_one_therapist_client_and_appointment_once(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utcnow()

    first = await run_demo(db, settings, now)
    second = await run_demo(db, settings, now + 5 * MINUTE)

    assert second == first
    assert first.email == DEMO_EMAIL
    assert await count(db, Therapist) == 1
    assert await count(db, Client) == 1
    assert await count(db, Appointment) == 1
    assert await count(db, JoinToken) == 1


async def test_demo_credentials_sign_in_and_are_kept_readable_only_by_the_owner(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    state = await run_demo(db, settings, utcnow())

    async with db() as session:
        therapist = (await session.scalars(select(Therapist))).one()
    assert therapist.email == state.email
    assert therapist.password_hash.startswith("$argon2id$")
    assert await verify_password(therapist.password_hash, state.password)
    path = settings.data_dir / "demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_demo_appointment_starts_now_for_the_demo_client_and_is_scheduled(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    now = utcnow()

    state = await run_demo(db, settings, now)

    async with db() as session:
        appointment = (await session.scalars(select(Appointment))).one()
        client = await session.get(Client, appointment.client_id)
    assert appointment.id == state.appointment_id
    assert now - MINUTE < appointment.starts_at <= now
    assert appointment.ends_at > now
    assert appointment.state is AppointmentStatus.SCHEDULED
    assert client is not None and client.name == DEMO_CLIENT_NAME


async def test_demo_join_token_is_stored_only_as_its_hash(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    state = await run_demo(db, settings, utcnow())
    assert state.join_token is not None

    async with db() as session:
        stored = (await session.scalars(select(JoinToken))).one()
    assert stored.appointment_id == state.appointment_id
    assert stored.token_hash == token_hash(state.join_token)
    assert stored.expires_at > utcnow()
    assert not any(state.join_token in value for value in await every_stored_string(db))
    assert not any(state.password in value for value in await every_stored_string(db))


async def test_demo_after_the_appointment_ended_schedules_a_new_one_starting_now(
    db: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await run_demo(db, settings, utcnow())
    later = utcnow() + dt.timedelta(hours=3)

    second = await run_demo(db, settings, later)

    assert (second.email, second.password) == (first.email, first.password)
    assert second.appointment_id != first.appointment_id
    assert second.join_token != first.join_token
    async with db() as session:
        current = await session.get(Appointment, second.appointment_id)
    assert current is not None
    assert later - MINUTE < current.starts_at <= later
    assert await count(db, Therapist) == 1
    assert await count(db, Client) == 1


DEMO_LINES = re.compile(
    r"^  e-mail:\s+(?P<email>\S+)\n  password:\s+(?P<password>\S+)\n.*?\n"
    r"  (?P<link>\S+/join/\S+)$",
    re.MULTILINE,
)


async def test_alcove_demo_prints_the_same_email_password_and_join_link_every_run(
    migrated_url: str, tmp_path: Path
) -> None:
    env = alcove_env(
        ALCOVE_DATABASE_URL=migrated_url,
        ALCOVE_DATA_DIR=str(tmp_path / "var"),
        ALCOVE_PORT="8765",
    )

    first = await run_alcove("demo", env=env, cwd=tmp_path)
    second = await run_alcove("demo", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    printed = DEMO_LINES.search(first.stdout)
    assert printed is not None, first.stdout
    assert printed["email"] == DEMO_EMAIL
    assert printed["link"].startswith("http://localhost:8765/join/")
    assert second.stdout == first.stdout

    engine = create_engine(migrated_url)
    try:
        db = sessionmaker(engine)
        therapist = await only(db, Therapist)
        token = printed["link"].rsplit("/", 1)[1]
        stored = await only(db, JoinToken)
        assert await verify_password(therapist.password_hash, printed["password"])
        assert stored.token_hash == token_hash(token)
        appointment = await only(db, Appointment)
        assert utcnow() - 2 * MINUTE < appointment.starts_at <= utcnow()
        assert [await count(db, m) for m in (Therapist, Client, Appointment)] == [1, 1, 1]
    finally:
        await engine.dispose()


async def test_alcove_demo_is_refused_in_production_and_creates_nothing(
    migrated_url: str, tmp_path: Path
) -> None:
    env = alcove_env(
        ALCOVE_MODE="production",
        ALCOVE_SECRET_KEY="p" * 48,
        ALCOVE_PUBLIC_URL="https://therapy.example.org",
        ALCOVE_DATABASE_URL=migrated_url,
        ALCOVE_DATA_DIR=str(tmp_path / "var"),
    )

    result = await run_alcove("demo", env=env, cwd=tmp_path)

    assert result.returncode != 0
    assert len(result.output_lines) == 1, result.output_lines
    assert "production" in result.output_lines[0]
    assert not (tmp_path / "var" / "demo.json").exists()
    engine = create_engine(migrated_url)
    try:
        assert await count(sessionmaker(engine), Therapist) == 0
    finally:
        await engine.dispose()
