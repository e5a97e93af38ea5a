"""Reconnecting without being admitted again: a dropped socket, a restarted server, and
the limit after which a participant who never came back counts as left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.models import Appointment
from tests.conftest import FakeClock
from tests.server.test_worksheet_calls import admit
from tests.server.test_ws import Cast, ref, round_trip, serving, therapist_with


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


async def test_a_client_whose_socket_drops_comes_back_into_the_call_without_admission(
    migrated_url: str, tmp_path: Path, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        appointment, token = await _booked(db, clock)
        therapist = await served.therapist("sam@example.com", appointment)
        client = await served.client(token)
        await admit(therapist, client)
        await therapist.expect("peer-joined")

        await client.close()
        assert (await therapist.expect("peer-left"))["role"] == "client"
        socket = await served.connect(await served.client_http(token))
        welcome = await socket.hello()

        assert welcome["state"] == "admitted"
        await socket.expect("peer-joined")
        assert (await therapist.expect("peer-joined"))["role"] == "client"
        await round_trip(socket)
        assert not socket.of_type("waiting", "admitted")


async def test_after_a_server_restart_the_admitted_client_is_still_admitted(
    migrated_url: str, tmp_path: Path, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async with serving(migrated_url, tmp_path / "var", clock) as first:
        appointment, token = await _booked(db, clock)
        therapist = await first.therapist("sam@example.com", appointment)
        client = await first.client(token)
        await admit(therapist, client)
        await therapist.expect("peer-joined")

    # Another instance (another port), on the same database, once the first has stopped.
    async with serving(migrated_url, tmp_path / "var2", clock) as second:
        socket = await second.connect(await second.client_http(token))
        welcome = await socket.hello()
        assert welcome["state"] == "admitted"
        therapist = await second.therapist("sam@example.com", appointment)

        await socket.expect("peer-joined")
        await therapist.expect("peer-joined")
        await round_trip(socket)
        assert not socket.of_type("waiting")


async def test_a_client_gone_past_the_reconnect_limit_has_left_and_must_be_admitted_again(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    appointment, token = await _booked(db, clock)
    therapist = await cast.therapist("sam@example.com", appointment)
    client = await cast.client(token)
    await admit(therapist, client)
    await client.close()
    await therapist.expect("peer-left")
    limit = cast.live.settings.reconnect_limit_seconds

    clock.advance(seconds=limit - 1)
    socket = await cast.connect(await cast.client_http(token))
    assert (await socket.hello())["state"] == "admitted"
    await socket.close()
    await therapist.expect("peer-left")
    clock.advance(seconds=limit)

    while True:  # the sweep runs every second
        lobby = await therapist.expect("lobby")
        if not lobby["participants"]:
            break
    again = await cast.connect(await cast.client_http(token))
    assert (await again.hello())["state"] == "waiting"
    await again.expect("waiting")


async def _booked(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> tuple[Appointment, str]:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    assert ref(appointment).startswith("a-")
    return appointment, token
