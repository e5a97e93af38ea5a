"""The audit trail: written with the caller's transaction, and append-only in the database."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, exc, select, text, update
from sqlalchemy.sql.expression import Executable

from server import audit
from server.audit import Actor
from server.db import create_engine, sessionmaker
from server.models import AuditEvent
from tests.support.backends import backend, backend_url

__all__ = ["backend", "backend_url"]

#: Every test here picks its databases itself: CI's PostgreSQL pass need not run them again.
pytestmark = pytest.mark.every_database

AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


async def record_login(url: str) -> int:
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            event = audit.record(
                db,
                at=AT,
                actor=Actor.THERAPIST,
                actor_id=7,
                action="login",
                record_type="therapist",
                record_id=7,
                source_ip="203.0.113.9",
            )
            await db.flush()
            return event.id
    finally:
        await engine.dispose()


async def all_events(url: str) -> list[tuple[str, str | None, str, str | None]]:
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as db:
            rows = await db.execute(
                select(
                    AuditEvent.actor_type,
                    AuditEvent.actor_id,
                    AuditEvent.action,
                    AuditEvent.source_ip,
                ).order_by(AuditEvent.id)
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        await engine.dispose()


async def test_audit_record_stores_who_did_what_to_which_record_when_and_from_where(
    backend_url: str,
) -> None:
    event_id = await record_login(backend_url)

    engine = create_engine(backend_url)
    try:
        async with sessionmaker(engine)() as db:
            event = await db.get(AuditEvent, event_id)
    finally:
        await engine.dispose()
    assert event is not None
    assert (event.actor_type, event.actor_id) == ("therapist", "7")
    assert (event.action, event.record_type, event.record_id) == ("login", "therapist", "7")
    assert event.source_ip == "203.0.113.9"
    assert event.at == AT


async def test_audit_record_is_written_only_when_the_callers_transaction_commits(
    backend_url: str,
) -> None:
    engine = create_engine(backend_url)
    try:
        with pytest.raises(RuntimeError):
            async with sessionmaker(engine)() as db, db.begin():
                audit.record(db, at=AT, actor=Actor.SYSTEM, actor_id=None, action="x")
                await db.flush()
                raise RuntimeError("the surrounding work failed")
    finally:
        await engine.dispose()
    assert await all_events(backend_url) == []


TAMPERING: dict[str, Executable] = {
    "sql-update": text("UPDATE audit_events SET action = 'nothing_happened'"),
    "sql-delete": text("DELETE FROM audit_events"),
    "orm-update": update(AuditEvent).values(source_ip=None),
    "orm-delete": delete(AuditEvent).where(AuditEvent.action == "login"),
}


@pytest.mark.parametrize("statement", TAMPERING.values(), ids=TAMPERING.keys())
async def test_database_refuses_to_update_or_delete_audit_events(
    backend_url: str, statement: Executable
) -> None:
    await record_login(backend_url)
    before = await all_events(backend_url)

    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(statement)
    finally:
        await engine.dispose()

    assert await all_events(backend_url) == before == [("therapist", "7", "login", "203.0.113.9")]


async def test_audit_events_can_still_be_appended_after_a_refused_change(backend_url: str) -> None:
    await record_login(backend_url)
    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.DBAPIError):
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM audit_events"))
    finally:
        await engine.dispose()

    await record_login(backend_url)

    assert len(await all_events(backend_url)) == 2
