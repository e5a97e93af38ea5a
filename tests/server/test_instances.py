"""Several instances behind one load balancer: a therapist and a client connected to
different app processes, which share one PostgreSQL database and one Redis, meet in one
room as if they were on one instance.  The wire protocol is the same either way.

Every test runs two real ``alcove serve`` processes against PostgreSQL (even when the rest
of the suite runs on SQLite) and a Redis server of its own.  Where it makes sense, the same
flow also runs with both participants on one of the two instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from server.db import create_engine, sessionmaker
from server.worksheet_models import Worksheet
from tests.conftest import MigratedTemplates, PostgresDatabases
from tests.server.test_call_resilience import Side, frames_flow
from tests.support.arrange import make_appointment, make_therapist
from tests.support.instances import (
    DEADLINE,
    Instance,
    RedisServer,
    alcove_instance,
    chat,
    closed,
    database_url,
    first_of,
    lobby_entry,
    postgres_server,
    postgres_unreachable,
    private_redis,
    rejoin,
)
from tests.support.rtc import Peer, loopback_only
from tests.support.signalling_client import (
    SignallingClient,
    client_session,
    sign_in_session,
)
from tests.support.worksheet_client import WorksheetClient

pytestmark = pytest.mark.slow

EMAIL = "sam@example.com"
PASSWORD = "correct horse battery staple"
CHECK_IN = "weekly-check-in"
ONE, TWO = "same instance", "across instances"
SPREADS = pytest.mark.parametrize("spread", [ONE, TWO])


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_templates() -> Iterator[tuple[str, MigratedTemplates]]:
    """The PostgreSQL server, and a migrated template on it for this module's databases."""
    server = postgres_server()
    reason = asyncio.run(postgres_unreachable(server))
    if reason is not None:
        if os.environ.get("CI"):
            raise AssertionError(reason)
        pytest.skip(reason)
    templates = MigratedTemplates()
    yield server, templates
    templates.drop(server)


@pytest.fixture
async def shared_url(postgres_templates: tuple[str, MigratedTemplates]) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of this test's own, for every instance."""
    server, templates = postgres_templates
    databases = PostgresDatabases(server)
    databases.created.append(await templates.postgres_copy(server))
    yield database_url(server, databases.created[0])
    await databases.drop_all()


@dataclass
class Booking:
    appointment: str
    appointment_id: int
    token: str


@pytest.fixture
async def booking(shared_url: str, monkeypatch: pytest.MonkeyPatch) -> Booking:
    """A therapist who can sign in, and an appointment of theirs starting now."""
    loopback_only(monkeypatch)
    engine = create_engine(shared_url)
    try:
        db = sessionmaker(engine)
        therapist = await make_therapist(db, email=EMAIL, password=PASSWORD)
        appointment, token = await make_appointment(db, therapist.id, starts_at=now())
    finally:
        await engine.dispose()
    return Booking(f"a-{appointment.id}", appointment.id, token)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def instances(
    shared_url: str, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances A and B, on one database and one Redis."""
    async with (
        alcove_instance("A", shared_url, redis.url, tmp_path) as a,
        alcove_instance("B", shared_url, redis.url, tmp_path) as b,
    ):
        yield a, b


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- a call across instances -----------------------------------------------------------------


@dataclass
class Call:
    """The therapist's dashboard and call page, and their client, each on their instance."""

    booking: Booking
    therapist_url: str
    client_url: str
    dashboard: SignallingClient
    therapist: Side
    client: Side

    async def close(self) -> None:
        for side in (self.therapist, self.client):
            await side.peer.close()
            await side.socket.close()
        await self.dashboard.close()


class Calls:
    """What a test opened, closed in its ``finally`` whatever state it got to."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.sessions: list[aiohttp.ClientSession] = []
        self.sockets: list[SignallingClient] = []

    async def close(self) -> None:
        for call in self.calls:
            with contextlib.suppress(Exception):
                await call.close()
        for socket in self.sockets:
            with contextlib.suppress(Exception):
                await socket.close()
        for session in self.sessions:
            await session.close()

    async def start(
        self, booking: Booking, *, therapist: Instance, client: Instance, media: bool = True
    ) -> Call:
        """The client waits on ``client``'s instance, the therapist's dashboard there on
        ``therapist``'s sees it and admits them, the call page joins; with ``media``, an
        aiortc call then runs with frames flowing both ways."""
        therapist_http = await sign_in_session(therapist.url, EMAIL, PASSWORD)
        self.sessions.append(therapist_http)
        client_http = await client_session(client.url, booking.token)
        self.sessions.append(client_http)

        dashboard = SignallingClient(therapist_http, therapist.url)
        self.sockets.append(dashboard)
        await dashboard.connect()
        assert (await dashboard.hello())["participant"] is None
        client_ws = SignallingClient(client_http, client.url)
        self.sockets.append(client_ws)
        await client_ws.connect()
        assert (await client_ws.hello())["state"] == "waiting"
        await client_ws.expect("waiting", within=DEADLINE)

        entry = await lobby_entry(dashboard, booking.appointment, "waiting")
        assert entry["online"] is True
        therapist_ws = SignallingClient(therapist_http, therapist.url)
        self.sockets.append(therapist_ws)
        await therapist_ws.connect()
        assert (await therapist_ws.hello(appointment=booking.appointment))["state"] in (
            "admitted",
            "in_call",
        )
        await dashboard.send({"type": "admit", "participant": entry["participant"]})
        await client_ws.expect("admitted", within=DEADLINE)
        assert (await client_ws.expect("peer-joined", within=DEADLINE))["role"] == "therapist"
        assert (await therapist_ws.expect("peer-joined", within=DEADLINE))["role"] == "client"

        call = Call(
            booking,
            therapist.url,
            client.url,
            dashboard,
            Side(therapist_http, therapist_ws, Peer(therapist_ws, polite=False)),
            Side(client_http, client_ws, Peer(client_ws, polite=True)),
        )
        self.calls.append(call)
        if media:
            call.therapist.peer.start_pump()
            call.client.peer.start_pump()
            await call.therapist.peer.offer()
            async with asyncio.timeout(DEADLINE):
                await call.therapist.peer.connected.wait()
                await call.client.peer.connected.wait()
            await frames_flow(call.therapist.peer, call.client.peer)
        return call


def placed(spread: str, first: Instance, second: Instance) -> tuple[Instance, Instance]:
    """Where the two participants connect: ``first`` and ``second`` across instances, both
    on ``first`` otherwise."""
    return (first, second) if spread == TWO else (first, first)


# --- tests -----------------------------------------------------------------------------------


@SPREADS
async def test_a_waiting_client_is_admitted_then_calls_co_edits_and_chats_with_the_therapist(
    instances: tuple[Instance, Instance], booking: Booking, shared_url: str, spread: str
) -> None:
    therapist_at, client_at = placed(spread, *instances)
    calls = Calls()
    try:
        call = await calls.start(booking, therapist=therapist_at, client=client_at)

        await call.therapist.socket.send(
            {"type": "worksheet-open", "appointment": booking.appointment, "template": CHECK_IN}
        )
        therapist = WorksheetClient(call.therapist.socket, "therapist")
        client = WorksheetClient(call.client.socket, "client")
        shown = await therapist.expect_worksheet(within=DEADLINE)
        assert (await client.expect_worksheet(within=DEADLINE))["worksheet"] == shown["worksheet"]
        rng = random.Random(11)
        words: list[str] = []
        for number in range(30):
            editor = therapist if number % 2 == 0 else client
            text = editor.text("went_well")
            word = f"<{editor.name[0]}{number}>"
            words.append(word)
            current = str(text)
            boundaries = [0, *(i + 1 for i, char in enumerate(current) if char == ">")]
            text.insert(rng.choice(boundaries), word)
            await editor.push()
        total = sum(map(len, words))
        await therapist.until(lambda: len(therapist.content("went_well")) == total, DEADLINE)
        await client.until(lambda: len(client.content("went_well")) == total, DEADLINE)
        final = therapist.content("went_well")
        assert final == client.content("went_well")
        assert all(final.count(word) == 1 for word in words)
        await call.therapist.socket.send(
            {"type": "worksheet-close", "worksheet": shown["worksheet"]}
        )
        await call.client.socket.expect("worksheet-closed", within=DEADLINE)
        await therapist.stop()
        await client.stop()
        assert (
            json.loads((await stored(shared_url, shown["worksheet"])).content)["went_well"] == final
        )

        await chat(call.therapist.socket, call.client.socket, "Can you see the worksheet?")
        await chat(call.client.socket, call.therapist.socket, "Yes, it is all there.")
        await frames_flow(call.therapist.peer, call.client.peer)
        assert not call.client.socket.of_type("error")
        assert not call.therapist.socket.of_type("error")
    finally:
        await calls.close()


@SPREADS
async def test_media_flows_while_redis_is_down_and_signalling_works_again_once_it_is_back(
    instances: tuple[Instance, Instance], booking: Booking, redis: RedisServer, spread: str
) -> None:
    therapist_at, client_at = placed(spread, *instances)
    calls = Calls()
    try:
        call = await calls.start(booking, therapist=therapist_at, client=client_at)

        await redis.stop()
        for instance in instances:
            down = await instance.readiness_becomes("down")
            assert down == {"status": "unavailable", "database": "ok", "redis": "down"}
        await frames_flow(call.therapist.peer, call.client.peer)

        await redis.start()  # on the same port; neither app is restarted
        for instance in instances:
            up = await instance.readiness_becomes("ok")
            assert up == {"status": "ready", "database": "ok", "redis": "ok"}
        await chat_round(call, call.therapist, call.client, "Still there?")
        await chat_round(call, call.client, call.therapist, "Yes, still here.")
        await frames_flow(call.therapist.peer, call.client.peer)
        assert not call.client.socket.of_type("sent-back", "ended")
    finally:
        await calls.close()


@SPREADS
async def test_sigterm_moves_a_client_to_the_other_instance_straight_back_into_the_call(
    instances: tuple[Instance, Instance], booking: Booking, spread: str
) -> None:
    going, staying = instances
    client_at, therapist_at = going, (staying if spread == TWO else going)
    calls = Calls()
    try:
        call = await calls.start(booking, therapist=therapist_at, client=client_at)

        going.process.send_signal(signal.SIGTERM)
        assert await call.client.socket.wait_closed(within=DEADLINE) == 1001, going.output()
        await frames_flow(call.therapist.peer, call.client.peer)
        await move(call.client, staying.url)
        if therapist_at is going:  # its sockets went too: it moves as well
            assert await call.therapist.socket.wait_closed(within=DEADLINE) == 1001
            await move(call.therapist, staying.url, appointment=booking.appointment)

        assert (await call.client.socket.expect("peer-joined", within=DEADLINE))["role"] == (
            "therapist"
        )
        assert (await call.therapist.socket.expect("peer-joined", within=DEADLINE))["role"] == (
            "client"
        )
        await frames_flow(call.therapist.peer, call.client.peer)
        assert not call.client.socket.of_type("waiting")
        assert await going.exited() == 0, going.output()
    finally:
        await calls.close()


async def test_the_fanout_lag_is_measured_when_signalling_crosses_instances(
    instances: tuple[Instance, Instance], booking: Booking
) -> None:
    a, b = instances
    calls = Calls()
    try:
        call = await calls.start(booking, therapist=a, client=b, media=False)
        await chat(call.therapist.socket, call.client.socket, "Hello from A.")
        await chat(call.client.socket, call.therapist.socket, "Hello from B.")

        lag = "alcove_fanout_lag_seconds_count"
        counts = {i.name: (await i.metrics()).get((lag, ()), 0.0) for i in instances}
        assert max(counts.values()) > 0, counts
    finally:
        await calls.close()


# --- helpers ---------------------------------------------------------------------------------


async def stored(url: str, worksheet: str) -> Worksheet:
    engine = create_engine(url)
    try:
        async with sessionmaker(engine)() as session:
            row = await session.get(Worksheet, int(worksheet.removeprefix("w-")))
    finally:
        await engine.dispose()
    assert row is not None
    return row


async def chat_round(call: Call, sender: Side, receiver: Side, text: str) -> int:
    """``text`` sent as chat from ``sender`` until it arrives at ``receiver``, as people do
    after an outage: whoever's socket the server closed meanwhile reconnects as a browser
    does, and a line that did not arrive within a few seconds (or was refused with
    ``unavailable``) is sent again; up to ``DEADLINE``.  How many sends it took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    seen: list[object] = []
    for attempt in range(1, 100):
        await rejoin_if_closed(call.client, call.client_url)
        await rejoin_if_closed(
            call.therapist, call.therapist_url, appointment=call.booking.appointment
        )
        with contextlib.suppress(ConnectionError):
            await sender.socket.send({"type": "chat", "text": text, "id": f"m-{attempt}"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                arrived, error, *_ = await first_of(
                    receiver.socket.take("chat"),
                    sender.socket.take("error"),
                    closed(sender.socket),
                    closed(receiver.socket),
                )
                if arrived is not None and arrived["text"] == text:
                    return attempt
                seen.append(error or arrived or "a socket closed")
                await asyncio.sleep(0.5)
        if loop.time() > deadline:
            break
    raise AssertionError(f"chat {text!r} never arrived within {DEADLINE:.0f} s; saw {seen}")


async def rejoin_if_closed(side: Side, url: str, **hello: str) -> None:
    """If the server closed ``side``'s socket meanwhile, reconnect it as a browser does."""
    if side.socket.closed.is_set():
        await move(side, url, **hello)


async def move(side: Side, url: str, **hello: str) -> None:
    """A new socket for ``side`` at ``url`` (the peer connection stays), reconnecting as a
    browser does; the participant is still admitted, never waiting."""
    gone = f"closed with {side.socket.close_code} after {side.socket.received[-2:]}"
    await side.socket.close()
    side.socket, welcome = await rejoin(side.http, url, gone, **hello)
    side.peer.signalling = side.socket
    side.peer.start_pump()
    assert welcome["state"] in ("admitted", "in_call"), welcome
