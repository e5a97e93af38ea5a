"""A call between two real WebRTC peers survives its signalling: a dropped websocket, and a
server that stops and starts again (on the same port, or another), while media flows."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import free_port
from tests.server.test_shutdown import alcove_serve
from tests.support.arrange import make_appointment, make_therapist
from tests.support.rtc import Peer, loopback_only
from tests.support.signalling_client import SignallingClient, client_session, sign_in_session

PASSWORD = "correct horse battery staple"
#: The promise to the user: back in the call within five seconds of a drop.
RECONNECT_WITHIN = 5.0


@dataclass
class Side:
    http: aiohttp.ClientSession
    socket: SignallingClient
    peer: Peer


@dataclass
class Call:
    url: str
    therapist: Side
    client: Side

    async def close(self) -> None:
        for side in (self.therapist, self.client):
            await side.peer.close()
            await side.socket.close()
            await side.http.close()


async def frames_flow(*peers: Peer, count: int = 15, within: float = 20.0) -> None:
    """Wait until each peer has received ``count`` more video frames."""
    targets = [(peer, peer.frames + count) for peer in peers]
    arrived = asyncio.Event()
    for peer in peers:
        peer.on_frame = arrived.set
    try:
        async with asyncio.timeout(within):
            while any(peer.frames < target for peer, target in targets):
                await arrived.wait()
                arrived.clear()
    finally:
        for peer in peers:
            peer.on_frame = None


async def start_call(url: str, token: str, appointment: str) -> Call:
    """Therapist and client signed in, the client admitted, and media flowing both ways."""
    therapist_http = await sign_in_session(url, "sam@example.com", PASSWORD)
    client_http = await client_session(url, token)
    client_ws = SignallingClient(client_http, url)
    await client_ws.connect()
    await client_ws.hello()
    therapist_ws = SignallingClient(therapist_http, url)
    await therapist_ws.connect()
    await therapist_ws.hello(appointment=appointment)
    lobby = await therapist_ws.expect("lobby")
    while not lobby["participants"]:
        lobby = await therapist_ws.expect("lobby")
    await therapist_ws.send(
        {"type": "admit", "participant": lobby["participants"][0]["participant"]}
    )
    await client_ws.expect("admitted")
    await therapist_ws.expect("peer-joined")
    call = Call(
        url,
        Side(therapist_http, therapist_ws, Peer(therapist_ws, polite=False)),
        Side(client_http, client_ws, Peer(client_ws, polite=True)),
    )
    call.therapist.peer.start_pump()
    call.client.peer.start_pump()
    await call.therapist.peer.offer()
    async with asyncio.timeout(20):
        await call.therapist.peer.connected.wait()
        await call.client.peer.connected.wait()
    await frames_flow(call.therapist.peer, call.client.peer)
    return call


async def reconnect(side: Side, url: str, **hello: str) -> dict[str, object]:
    """A new websocket for ``side`` (the peer connection stays); its ``welcome``."""
    await side.socket.close()
    socket = SignallingClient(side.http, url)
    await socket.connect()
    welcome = await socket.hello(**hello)
    side.socket = socket
    side.peer.signalling = socket
    side.peer.start_pump()
    return welcome


@pytest.fixture
async def booked(
    db: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, str]]:
    """The appointment's reference and the client's join token."""
    loopback_only(monkeypatch)
    therapist = await make_therapist(db, email="sam@example.com", password=PASSWORD)
    appointment, token = await make_appointment(db, therapist.id, starts_at=dt.datetime.now(dt.UTC))
    yield f"a-{appointment.id}", token


async def test_a_dropped_client_websocket_reconnects_still_admitted_while_media_flows(
    migrated_url: str, tmp_path: Path, booked: tuple[str, str]
) -> None:
    appointment, token = booked
    async with alcove_serve(migrated_url, tmp_path) as served:
        call = await start_call(served.url, token, appointment)
        try:
            old = call.client.socket
            assert old.ws is not None
            await old.ws.close()  # the socket, not the peer connection
            await call.therapist.socket.expect("peer-left")
            await frames_flow(call.therapist.peer, call.client.peer)  # meanwhile

            async with asyncio.timeout(RECONNECT_WITHIN):
                welcome = await reconnect(call.client, served.url)
                await call.client.socket.expect("peer-joined")
            assert welcome["state"] == "admitted"
            await call.therapist.socket.expect("peer-joined")
            await frames_flow(call.therapist.peer, call.client.peer)
            assert not call.client.socket.of_type("waiting")
        finally:
            await call.close()


@pytest.mark.parametrize("same_port", [True, False], ids=["same port", "another port"])
async def test_the_server_restarting_mid_call_loses_neither_media_nor_the_room(
    migrated_url: str, tmp_path: Path, booked: tuple[str, str], same_port: bool
) -> None:
    appointment, token = booked
    port = free_port()
    async with alcove_serve(migrated_url, tmp_path, port=port) as served:
        call = await start_call(served.url, token, appointment)
        served.process.send_signal(signal.SIGTERM)
        await served.process.wait()
    try:
        for side in (call.therapist, call.client):
            await side.socket.wait_closed()
        await frames_flow(call.therapist.peer, call.client.peer)

        async with alcove_serve(
            migrated_url, tmp_path, port=port if same_port else free_port()
        ) as again:
            client_welcome = await reconnect(call.client, again.url)
            therapist_welcome = await reconnect(call.therapist, again.url, appointment=appointment)

            assert client_welcome["state"] == "admitted"
            assert therapist_welcome["state"] in ("admitted", "in_call")
            await call.client.socket.expect("peer-joined")
            await call.therapist.socket.expect("peer-joined")
            await frames_flow(call.therapist.peer, call.client.peer)
            assert not call.client.socket.of_type("waiting")
    finally:
        await call.close()
