"""The storage layer: UTC instants on both databases, and the SQLite engine's set-up."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import exc, func, select, text

from server.db import create_engine, sessionmaker
from server.migrate import upgrade
from server.models import Client, LoginFailure
from tests.support.backends import backend, backend_url

__all__ = ["backend", "backend_url"]

#: Every test here picks its databases itself: CI's PostgreSQL pass need not run them again.
pytestmark = pytest.mark.every_database


async def stored_instants(url: str) -> list[dt.datetime]:
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as db:
            return list(await db.scalars(select(LoginFailure.at).order_by(LoginFailure.id)))
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "instant",
    [
        dt.datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 2, 30, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
        dt.datetime(2026, 11, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
    ],
    ids=["utc", "plus-0530", "minus-0800"],
)
async def test_utc_datetime_round_trips_an_aware_instant_as_the_same_instant_in_utc(
    backend_url: str, instant: dt.datetime
) -> None:
    engine = create_engine(backend_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            db.add(LoginFailure(key="k", at=instant))
        async with sessionmaker(engine)() as db:
            found = await db.scalar(select(LoginFailure.at).where(LoginFailure.at == instant))
    finally:
        await engine.dispose()

    (stored,) = await stored_instants(backend_url)
    assert stored == instant
    assert stored.tzinfo is dt.UTC
    assert stored.isoformat() == instant.astimezone(dt.UTC).isoformat()
    assert found == instant


async def test_utc_datetime_compares_instants_not_wall_clock_text(backend_url: str) -> None:
    earlier_here = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    later_utc = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)  # 09:00Z is after 08:00Z
    engine = create_engine(backend_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            db.add_all(
                [LoginFailure(key="a", at=earlier_here), LoginFailure(key="b", at=later_utc)]
            )
        async with sessionmaker(engine)() as db:
            ordered = list(await db.scalars(select(LoginFailure.key).order_by(LoginFailure.at)))
            after = list(
                await db.scalars(select(LoginFailure.key).where(LoginFailure.at > earlier_here))
            )
    finally:
        await engine.dispose()
    assert ordered == ["a", "b"]
    assert after == ["b"]


async def test_utc_datetime_refuses_a_naive_datetime_and_stores_nothing(backend_url: str) -> None:
    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.StatementError, match="naive datetime"):
            async with sessionmaker(engine)() as db, db.begin():
                db.add(LoginFailure(key="k", at=dt.datetime(2026, 3, 2, 9, 0)))
        with pytest.raises(exc.StatementError, match="naive datetime"):
            async with sessionmaker(engine)() as db:
                await db.scalar(
                    select(LoginFailure).where(LoginFailure.at < dt.datetime(2026, 3, 2, 9, 0))
                )
    finally:
        await engine.dispose()
    assert await stored_instants(backend_url) == []


async def test_a_database_error_does_not_show_the_values_of_the_statement(
    backend_url: str,
) -> None:
    # Database errors are logged; the values they were about are a client's name and e-mail.
    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.IntegrityError) as raised:
            async with sessionmaker(engine)() as db, db.begin():
                db.add(Client(therapist_id=999, name="Robin Orphan", email="robin@example.com"))
    finally:
        await engine.dispose()
    shown = str(raised.value)
    assert "INSERT INTO clients" in shown  # the statement itself is still there to debug
    assert "Robin Orphan" not in shown and "robin@example.com" not in shown
    assert "parameters hidden" in shown


async def test_sqlite_engine_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}")
    try:
        await upgrade(engine)
        with pytest.raises(exc.IntegrityError, match="FOREIGN KEY"):
            async with sessionmaker(engine)() as db, db.begin():
                db.add(Client(therapist_id=999, name="Orphan", email="orphan@example.com"))
        async with sessionmaker(engine)() as db:
            assert await db.scalar(select(func.count()).select_from(Client)) == 0
    finally:
        await engine.dispose()


async def test_sqlite_engine_creates_the_database_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "alcove.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            mode = await conn.scalar(text("PRAGMA journal_mode"))
            busy = await conn.scalar(text("PRAGMA busy_timeout"))
    finally:
        await engine.dispose()
    assert path.is_file()
    assert mode == "wal"
    assert busy is not None and busy >= 1000
