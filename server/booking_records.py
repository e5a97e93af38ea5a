"""The booking service's client records and link tokens (small functions taking a session).

Tokens are opaque (``server.tokens``) and stored only as hashes: the plain token exists in
the return value of ``issue_*`` alone, to be shown or mailed at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.booking_rules import ClientDetails
from server.models import Appointment, Client, JoinToken, ManageToken
from server.tokens import new_token, token_hash


async def find_or_add_client(db: AsyncSession, therapist_id: int, details: ClientDetails) -> Client:
    """The therapist's client with this e-mail address, or a new one.

    An existing client keeps their name (a public form must not rename a record); a phone
    number or time zone is only filled in where none is stored.
    """
    client = await db.scalar(
        select(Client)
        .where(Client.therapist_id == therapist_id, func.lower(Client.email) == details.email)
        .order_by(Client.id)
        .limit(1)
    )
    if client is None:
        client = Client(
            therapist_id=therapist_id,
            name=details.name,
            email=details.email,
            phone=details.phone,
            timezone=details.timezone,
        )
        db.add(client)
        await db.flush()
        return client
    if client.phone is None and details.phone is not None:
        client.phone = details.phone
    if client.timezone is None:
        client.timezone = details.timezone
    return client


async def issue_join_token(
    db: AsyncSession, appointment: Appointment, *, join_grace: dt.timedelta
) -> str:
    """A new join link token, valid until the appointment's end plus ``join_grace``."""
    token = new_token()
    db.add(
        JoinToken(
            appointment_id=appointment.id,
            token_hash=token_hash(token),
            expires_at=appointment.ends_at + join_grace,
        )
    )
    return token


async def issue_manage_token(db: AsyncSession, appointment: Appointment) -> str:
    """A new manage link token, valid until the appointment starts."""
    token = new_token()
    db.add(
        ManageToken(
            appointment_id=appointment.id,
            token_hash=token_hash(token),
            expires_at=appointment.starts_at,
        )
    )
    return token


async def revoke_manage_tokens(db: AsyncSession, appointment_id: int, now: dt.datetime) -> None:
    await db.execute(
        update(ManageToken)
        .where(ManageToken.appointment_id == appointment_id, ManageToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def revoke_join_tokens(db: AsyncSession, appointment_id: int, now: dt.datetime) -> None:
    await db.execute(
        update(JoinToken)
        .where(JoinToken.appointment_id == appointment_id, JoinToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def extend_join_tokens(
    db: AsyncSession, appointment: Appointment, *, join_grace: dt.timedelta
) -> None:
    """Keep the live join links working until the (moved) appointment's end plus grace."""
    await db.execute(
        update(JoinToken)
        .where(JoinToken.appointment_id == appointment.id, JoinToken.revoked_at.is_(None))
        .values(expires_at=appointment.ends_at + join_grace)
        .execution_options(synchronize_session=False)
    )
