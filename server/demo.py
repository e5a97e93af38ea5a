"""Demo data for a first local run: one therapist, one client, one appointment starting now.

The demo credentials and join link are kept in ``<data dir>/demo.json`` (mode
0600) so that a second run prints the same ones and creates no duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import accounts, audit
from server.audit import Actor
from server.models import Appointment, AppointmentStatus, Client, JoinToken, Therapist
from server.passwords import hash_password
from server.tokens import new_token, token_hash

DEMO_EMAIL = "therapist@example.com"
DEMO_NAME = "Dr. Robin Demo"
DEMO_TIMEZONE = "Europe/London"
DEMO_CLIENT_NAME = "Alex Example"
DEMO_CLIENT_EMAIL = "client@example.com"
SESSION_LENGTH = dt.timedelta(minutes=50)
JOIN_GRACE = dt.timedelta(hours=2)


@dataclass
class DemoState:
    email: str
    password: str
    appointment_id: int | None = None
    join_token: str | None = None


def _load_state(path: Path) -> DemoState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DemoState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _save_state(path: Path, state: DemoState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(state), handle)


async def ensure_demo(db: AsyncSession, data_dir: Path, now: dt.datetime) -> DemoState:
    """Create (or reuse) the demo therapist, client and a current appointment."""
    path = data_dir / "demo.json"
    state = _load_state(path)
    therapist = await accounts.by_email(db, DEMO_EMAIL)
    if therapist is None or state is None:
        password = secrets.token_urlsafe(12)
        if therapist is None:
            therapist = await accounts.create_therapist(
                db, email=DEMO_EMAIL, name=DEMO_NAME, timezone=DEMO_TIMEZONE, password=password
            )
            audit.record(
                db,
                at=now,
                actor=Actor.SYSTEM,
                actor_id=None,
                action="therapist_created",
                record_type="therapist",
                record_id=therapist.id,
            )
        else:
            therapist.password_hash = hash_password(password)
        state = DemoState(email=DEMO_EMAIL, password=password)

    client = await _demo_client(db, therapist)
    appointment = None
    if state.appointment_id is not None:
        appointment = await db.get(Appointment, state.appointment_id)
    if (
        appointment is None
        or appointment.state is not AppointmentStatus.SCHEDULED
        or appointment.ends_at <= now
        or state.join_token is None
    ):
        start = now.replace(second=0, microsecond=0)
        appointment = Appointment(
            therapist_id=therapist.id,
            client_id=client.id,
            starts_at=start,
            ends_at=start + SESSION_LENGTH,
            status=AppointmentStatus.SCHEDULED.value,
        )
        db.add(appointment)
        await db.flush()
        token = new_token()
        db.add(
            JoinToken(
                appointment_id=appointment.id,
                token_hash=token_hash(token),
                expires_at=appointment.ends_at + JOIN_GRACE,
            )
        )
        state.appointment_id = appointment.id
        state.join_token = token
    _save_state(path, state)
    return state


async def _demo_client(db: AsyncSession, therapist: Therapist) -> Client:
    client = await db.scalar(
        select(Client).where(Client.therapist_id == therapist.id, Client.email == DEMO_CLIENT_EMAIL)
    )
    if client is None:
        client = Client(therapist_id=therapist.id, name=DEMO_CLIENT_NAME, email=DEMO_CLIENT_EMAIL)
        db.add(client)
        await db.flush()
    return client
