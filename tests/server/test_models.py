"""The records: the appointment state machine, constraints the database enforces, tokens."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools

import pytest
from sqlalchemy import String, exc, func, select

from server import tokens
from server.db import create_engine, sessionmaker
from server.models import (
    Appointment,
    AppointmentStatus,
    Client,
    IllegalTransition,
    JoinToken,
    Therapist,
)
from tests.support.backends import backend, backend_url

__all__ = ["backend", "backend_url"]

#: Every test here picks its databases itself: CI's PostgreSQL pass need not run them again.
pytestmark = pytest.mark.every_database

S = AppointmentStatus
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)

# The whole state machine: every (from, to) pair not listed here must be refused.
ALLOWED = {
    (S.SCHEDULED, S.COMPLETED),
    (S.SCHEDULED, S.CANCELLED),
    (S.SCHEDULED, S.NO_SHOW),
}
ALL_PAIRS = list(itertools.product(S, S))


async def add_client(url: str) -> tuple[int, int]:
    """A therapist and one client of theirs; returns their ids."""
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            therapist = Therapist(
                email="t@example.com", display_name="T", timezone="UTC", password_hash="x"
            )
            db.add(therapist)
            await db.flush()
            client = Client(therapist_id=therapist.id, name="C", email="c@example.com")
            db.add(client)
            await db.flush()
            return therapist.id, client.id
    finally:
        await engine.dispose()


def appointment(status: AppointmentStatus = S.SCHEDULED) -> Appointment:
    return Appointment(
        therapist_id=1, client_id=1, starts_at=START, ends_at=START + HOUR, status=status.value
    )


@pytest.mark.parametrize(
    ("current", "requested"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS]
)
def test_appointment_moves_only_from_scheduled_to_completed_cancelled_or_no_show(
    current: AppointmentStatus, requested: AppointmentStatus
) -> None:
    record = appointment(current)

    if (current, requested) in ALLOWED:
        record.transition_to(requested)
        assert record.state is requested
        assert record.status == requested.value
    else:
        with pytest.raises(IllegalTransition) as raised:
            record.transition_to(requested)
        assert f"appointment is {current.value}" in str(raised.value)
        assert raised.value.current is current
        assert raised.value.requested is requested
        assert record.state is current


def test_every_status_is_covered_by_the_transition_table() -> None:
    reachable = {to for _, to in ALLOWED}
    assert reachable | {S.SCHEDULED} == set(S)
    assert len(ALL_PAIRS) == len(S) ** 2 == 16


async def test_a_stored_final_status_cannot_be_changed_after_reloading(backend_url: str) -> None:
    therapist_id, client_id = await add_client(backend_url)
    engine = create_engine(backend_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            record = Appointment(
                therapist_id=therapist_id,
                client_id=client_id,
                starts_at=START,
                ends_at=START + HOUR,
            )
            db.add(record)
            await db.flush()
            assert record.state is S.SCHEDULED
            record.transition_to(S.CANCELLED)
        async with sessionmaker(engine)() as db, db.begin():
            reloaded = await db.get(Appointment, record.id)
            assert reloaded is not None
            assert reloaded.state is S.CANCELLED
            with pytest.raises(IllegalTransition, match="appointment is cancelled"):
                reloaded.transition_to(S.COMPLETED)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("length", [dt.timedelta(0), -HOUR], ids=["zero-length", "backwards"])
async def test_database_refuses_an_appointment_that_does_not_end_after_it_starts(
    backend_url: str, length: dt.timedelta
) -> None:
    therapist_id, client_id = await add_client(backend_url)
    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.IntegrityError, match="ends_after_start"):
            async with sessionmaker(engine)() as db, db.begin():
                db.add(
                    Appointment(
                        therapist_id=therapist_id,
                        client_id=client_id,
                        starts_at=START,
                        ends_at=START + length,
                    )
                )
        async with sessionmaker(engine)() as db:
            assert await db.scalar(select(func.count()).select_from(Appointment)) == 0
    finally:
        await engine.dispose()


async def test_database_refuses_an_unknown_appointment_status(backend_url: str) -> None:
    therapist_id, client_id = await add_client(backend_url)
    engine = create_engine(backend_url)
    try:
        with pytest.raises(exc.IntegrityError, match="status_known"):
            async with sessionmaker(engine)() as db, db.begin():
                db.add(
                    Appointment(
                        therapist_id=therapist_id,
                        client_id=client_id,
                        starts_at=START,
                        ends_at=START + HOUR,
                        status="lost",
                    )
                )
    finally:
        await engine.dispose()


async def test_database_refuses_two_join_tokens_with_the_same_hash(backend_url: str) -> None:
    therapist_id, client_id = await add_client(backend_url)
    same_hash = tokens.token_hash(tokens.new_token())
    engine = create_engine(backend_url)
    try:
        async with sessionmaker(engine)() as db, db.begin():
            record = Appointment(
                therapist_id=therapist_id,
                client_id=client_id,
                starts_at=START,
                ends_at=START + HOUR,
            )
            db.add(record)
            await db.flush()
            db.add(JoinToken(appointment_id=record.id, token_hash=same_hash, expires_at=START))
        with pytest.raises(exc.IntegrityError, match="token_hash"):
            async with sessionmaker(engine)() as db, db.begin():
                db.add(JoinToken(appointment_id=record.id, token_hash=same_hash, expires_at=START))
        async with sessionmaker(engine)() as db:
            assert await db.scalar(select(func.count()).select_from(JoinToken)) == 1
    finally:
        await engine.dispose()


def decoded_length(token: str) -> int:
    return len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def test_new_token_carries_at_least_128_random_bits_and_never_repeats() -> None:
    issued = [tokens.new_token() for _ in range(2000)]

    assert all(decoded_length(token) * 8 >= 128 for token in issued)
    assert len(set(issued)) == len(issued)
    assert all(token.isascii() and "/" not in token and "+" not in token for token in issued)


def test_token_hash_is_the_sha256_of_the_token_and_does_not_contain_it() -> None:
    token = tokens.new_token()

    digest = tokens.token_hash(token)

    assert digest == hashlib.sha256(token.encode()).hexdigest()
    column = JoinToken.__table__.c.token_hash.type
    assert isinstance(column, String)
    assert len(digest) == column.length == 64
    assert token not in digest
    assert tokens.token_hash(token + "x") != digest
