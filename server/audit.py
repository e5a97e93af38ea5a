"""The audit trail: who did what to which record, when and from where — never the content."""

from __future__ import annotations

import datetime as dt
import enum

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
    event = AuditEvent(
        at=at,
        actor_type=actor.value,
        actor_id=None if actor_id is None else str(actor_id),
        action=action,
        record_type=record_type,
        record_id=None if record_id is None else str(record_id),
        source_ip=source_ip,
    )
    session.add(event)
    return event
