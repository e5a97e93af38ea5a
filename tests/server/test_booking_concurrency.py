"""Never two live appointments at once: 50 clients racing for one slot over real HTTP get
exactly one 201 and 49 409s, on SQLite and on PostgreSQL, round after round -- for the same
slot, for overlapping ones, for one that only meets a buffer, and against reschedules."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import booking, booking_slots
from server.app import create_app
from server.booking_store import write_transaction
from server.db import create_engine, sessionmaker
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, Client, OutboxMessage, SessionType
from tests.conftest import FakeClock, PostgresDatabases, free_port, make_settings
from tests.support.arrange import Bookable, make_bookable_therapist
from tests.support.backends import backend, backend_url

Sessions = async_sessionmaker[AsyncSession]
#: A missing lock lets two of 50 simultaneous bookings through in nearly every round; a dozen
#: rounds catch it, and keep the suite's run on both databases short.
ROUNDS = 12
RACERS = 50
#: Every day 08:00-18:00 UTC, so each round can take a day of its own.
EVERY_DAY = {weekday: [(dt.time(8), dt.time(18))] for weekday in range(7)}
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class Race:
    """A live server on a real port, its database, and a bookable therapist in UTC."""

    def __init__(self, url: str, db: Sessions, bookable: Bookable) -> None:
        self.url = url
        self.db = db
        self.bookable = bookable

    def day(self, round_number: int) -> dt.datetime:
        """Midnight UTC of the day this round races for: a few days ahead, one per round."""
        return dt.datetime(2026, 3, 4, tzinfo=dt.UTC) + dt.timedelta(days=round_number)

    async def live_on(self, day: dt.datetime) -> list[Appointment]:
        async with self.db() as session:
            rows = await session.scalars(
                select(Appointment).where(
                    Appointment.status != AppointmentStatus.CANCELLED.value,
                    Appointment.starts_at >= day,
                    Appointment.starts_at < day + dt.timedelta(days=1),
                )
            )
            return list(rows)


__all__ = ["backend", "backend_url"]

#: Every test here picks its databases itself: CI's PostgreSQL pass need not run them again.
pytestmark = pytest.mark.every_database


@pytest.fixture
async def race(backend_url: str, tmp_path: Path) -> AsyncIterator[Race]:
    url = backend_url
    engine = create_engine(url)
    db = sessionmaker(engine)
    bookable = await make_bookable_therapist(db, timezone="UTC", hours=EVERY_DAY)
    port = free_port()
    settings = make_settings(url, tmp_path / "var", ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    server = TestServer(create_app(settings, clock=FakeClock(NOW)), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield Race(settings.public_url, db, bookable)
    finally:
        await server.close()
        await engine.dispose()


def booking_body(kind: SessionType, start: dt.datetime, email: str) -> dict[str, Any]:
    return {
        "session_type": kind.id,
        "start": start.isoformat(),
        "name": "Racing Client",
        "email": email,
        "timezone": "UTC",
        "consent_telehealth": True,
        "consent_privacy": True,
    }


async def post_all(
    http: aiohttp.ClientSession, requests: list[tuple[str, dict[str, Any]]]
) -> list[tuple[int, dict[str, Any]]]:
    """Send every request at once; the answers' statuses and bodies, in request order."""

    async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with http.post(url, json=body) as response:
            return response.status, await response.json(content_type=None)

    return await asyncio.gather(*(post(url, body) for url, body in requests))


def assert_one_winner(answers: list[tuple[int, dict[str, Any]]], success: set[int]) -> None:
    statuses = Counter(status for status, _ in answers)
    winners = sum(statuses[status] for status in success)
    assert (winners, statuses[409]) == (1, RACERS - 1), statuses
    assert all(body["code"] == "slot-taken" for status, body in answers if status == 409)


async def set_individual_minutes(race: Race, minutes: int) -> None:
    async with race.db() as session, session.begin():
        await session.execute(
            update(SessionType)
            .where(SessionType.id == race.bookable.individual.id)
            .values(duration_minutes=minutes)
        )


async def race_rounds(race: Race, contenders: list[tuple[SessionType, dt.timedelta]]) -> None:
    """``ROUNDS`` rounds of ``RACERS`` bookings cycling through ``contenders`` (a kind of
    session and a start after 10:00), each round on a day of its own."""
    url = f"{race.url}/api/v1/therapists/{race.bookable.slug}/bookings"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for round_number in range(ROUNDS):
            ten = race.day(round_number) + dt.timedelta(hours=10)
            requests = [
                (url, booking_body(kind, ten + after, f"racer-{round_number}-{n}@example.net"))
                for n, (kind, after) in zip(
                    range(RACERS), itertools.cycle(contenders), strict=False
                )
            ]

            answers = await post_all(http, requests)

            assert_one_winner(answers, {201})
            assert len(await race.live_on(race.day(round_number))) == 1
    async with race.db() as session:
        clients = list(await session.scalars(select(Client)))
    assert len(clients) == ROUNDS  # a loser leaves no trace


async def test_fifty_bookings_racing_for_one_slot_give_one_201_and_49_409s_every_round(
    race: Race,
) -> None:
    await race_rounds(race, [(race.bookable.individual, dt.timedelta(0))])


@pytest.mark.parametrize(
    ("consultation_at", "how"),
    [
        (dt.timedelta(minutes=30), "overlapping the session"),
        # 10:00-10:45 plus its 10-minute buffer meets a consultation at 10:45 only through
        # the buffer, which the PostgreSQL constraint does not see: the lock must.
        (dt.timedelta(minutes=45), "meeting only its buffer"),
    ],
    ids=["overlap", "buffer-only"],
)
async def test_a_session_and_a_consultation_racing_for_overlapping_times_give_one_201(
    race: Race, consultation_at: dt.timedelta, how: str
) -> None:
    """Half the racers want a 45-minute session at 10:00, half a consultation {how}."""
    await set_individual_minutes(race, 45)

    await race_rounds(
        race,
        [
            (race.bookable.individual, dt.timedelta(0)),
            (race.bookable.consultation, consultation_at),
        ],
    )


async def test_reschedules_racing_bookings_for_one_time_leave_exactly_one_appointment_there(
    race: Race,
) -> None:
    """Each round: five booked clients try to move to the same time as 45 new bookings."""
    bookable = race.bookable
    url = f"{race.url}/api/v1/therapists/{bookable.slug}/bookings"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for round_number in range(ROUNDS):
            target = race.day(round_number) + dt.timedelta(hours=10)
            movers = [
                await booking.book(
                    race.db,
                    therapist_id=bookable.id,
                    session_type_id=bookable.individual.id,
                    start=target + dt.timedelta(hours=2 + n),
                    client=booking.ClientDetails(
                        "Mover", f"mover-{round_number}-{n}@example.net", None, None, "UTC"
                    ),
                    now=NOW,
                    join_grace=dt.timedelta(minutes=30),
                )
                for n in range(5)
            ]
            requests = [
                (
                    f"{race.url}/api/v1/manage/{moved.manage_token}/reschedule",
                    {"start": target.isoformat()},
                )
                for moved in movers
            ] + [
                (url, booking_body(bookable.individual, target, f"new-{round_number}-{n}@x.net"))
                for n in range(RACERS - len(movers))
            ]

            random.Random(round_number).shuffle(requests)  # movers first would win too often

            answers = await post_all(http, requests)

            assert_one_winner(answers, {200, 201})
            live = await race.live_on(race.day(round_number))
            at_target = [a for a in live if a.starts_at == target]
            assert len(at_target) == 1
            assert len(live) == 1 + len(movers) - (1 if at_target[0].id in _ids(movers) else 0)


def _ids(booked: list[booking.Booked]) -> set[int]:
    return {b.appointment_id for b in booked}


# --- what makes check-and-insert safe, one piece at a time -------------------------------------


async def test_on_sqlite_a_write_transaction_holds_the_write_lock_before_its_first_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    try:
        async with write_transaction(sessionmaker(engine)):
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        await engine.dispose()


async def test_on_sqlite_two_instances_sharing_the_file_book_one_slot_once(tmp_path: Path) -> None:
    """As two processes would: each engine has its own connections and in-process queue."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    engines = [create_engine(url), create_engine(url)]
    await upgrade(engines[0])
    try:
        bookable = await make_bookable_therapist(
            sessionmaker(engines[0]), timezone="UTC", hours=EVERY_DAY
        )

        async def attempt(n: int, start: dt.datetime) -> str:
            try:
                await booking.book(
                    sessionmaker(engines[n % 2]),
                    therapist_id=bookable.id,
                    session_type_id=bookable.individual.id,
                    start=start,
                    client=booking.ClientDetails("Racer", f"r{n}@example.net", None, None, "UTC"),
                    now=NOW,
                    join_grace=dt.timedelta(minutes=30),
                )
            except booking.SlotTaken:
                return "taken"
            return "booked"

        for day in range(5):
            start = dt.datetime(2026, 3, 4, 10, tzinfo=dt.UTC) + dt.timedelta(days=day)
            outcomes = await asyncio.gather(*(attempt(n, start) for n in range(RACERS)))
            assert Counter(outcomes) == {"booked": 1, "taken": RACERS - 1}
    finally:
        for engine in engines:
            await engine.dispose()


async def test_on_postgresql_the_exclusion_constraint_turns_a_missed_overlap_into_slot_taken(
    postgres_databases: PostgresDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await postgres_databases.create()
    engine = create_engine(url)
    await upgrade(engine)
    db = sessionmaker(engine)
    try:
        bookable = await make_bookable_therapist(db, timezone="UTC", hours=EVERY_DAY)
        ten = dt.datetime(2026, 3, 4, 10, tzinfo=dt.UTC)

        async def book(start: dt.datetime, email: str) -> booking.Booked:
            return await booking.book(
                db,
                therapist_id=bookable.id,
                session_type_id=bookable.individual.id,
                start=start,
                client=booking.ClientDetails("Racing Client", email, None, None, "UTC"),
                now=NOW,
                join_grace=dt.timedelta(minutes=30),
            )

        await book(ten, "first@example.net")
        real_check = booking_slots.require_free
        calls: list[object] = []

        async def misses_once(*args: Any, **kwargs: Any) -> None:
            calls.append(args)
            if len(calls) > 1:  # the explanation after the refusal checks for real
                await real_check(*args, **kwargs)

        # As if the check in the transaction had a bug: the constraint still refuses.
        monkeypatch.setattr(booking_slots, "require_free", misses_once)
        with pytest.raises(booking.SlotTaken) as caught:
            await book(ten + dt.timedelta(minutes=15), "second@example.net")

        assert caught.value.nearest  # computed afresh, after the failed transaction
        async with db() as session:
            emails = list(await session.scalars(select(Client.email)))
            count = await session.scalar(select(func.count()).select_from(Appointment))
            mails = await session.scalar(select(func.count()).select_from(OutboxMessage))
            constraint = await session.scalar(
                text("SELECT conname FROM pg_constraint WHERE conname = 'appointments_no_overlap'")
            )
        assert (emails, count, mails) == (["first@example.net"], 1, 3)
        assert constraint == "appointments_no_overlap"
    finally:
        await engine.dispose()
