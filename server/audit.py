"""The audit trail: who did what to which record, when and from where — never the content."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import AuditEvent


class Actor(enum.StrEnum):
    THERAPIST = "therapist"
    CLIENT = "client"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


def record(
    session: AsyncSession,
    *,
    at: dt.datetime,
    actor: Actor,
    actor_id: int | str | None,
    action: str,
    record_type: str | None = None,
    record_id: int | str | None = None,
    source_ip: str | None = None,
) -> AuditEvent:
    """Add one audit event to ``session``; it is written with the caller's transaction."""
    event = AuditEvent(**_columns(at, actor, actor_id, action, record_type, record_id, source_ip))
    session.add(event)
    return event


def _columns(
    at: dt.datetime,
    actor: Actor,
    actor_id: int | str | None,
    action: str,
    record_type: str | None,
    record_id: int | str | None,
    source_ip: str | None,
) -> dict[str, object]:
    """An audit event's columns, as stored."""
    return {
        "at": at,
        "actor_type": actor.value,
        "actor_id": None if actor_id is None else str(actor_id),
        "action": action,
        "record_type": record_type,
        "record_id": None if record_id is None else str(record_id),
        "source_ip": source_ip,
    }


class Write(NamedTuple):
    """One person's edits to one record, for ``record_writes``."""

    actor: Actor
    actor_id: int | str
    record_type: str
    record_id: int | str


_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]


async def record_writes(
    session: AsyncSession, at: dt.datetime, action: str, writes: Sequence[Write]
) -> None:
    """Write one ``action`` event per item of ``writes``, in one statement and the caller's
    transaction (rather than one object each, inserted one by one to learn its id: saving
    fifty worksheets a second audits a hundred writes)."""
    if writes:
        rows = [
            _columns(at, w.actor, w.actor_id, action, w.record_type, w.record_id, None)
            for w in writes
        ]
        await session.execute(insert(_EVENTS), rows)
