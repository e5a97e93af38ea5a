"""Two real WebRTC peers (aiortc) hold a call through a running app, speaking only the
documented protocol: the client waits, the therapist admits, and media and data flow."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import LiveServer
from tests.support.arrange import make_appointment, make_therapist
from tests.support.rtc import Peer, loopback_only
from tests.support.signalling_client import (
    SignallingClient,
    client_session,
    sign_in_session,
)

PASSWORD = "a long enough password"


async def test_admitted_client_and_therapist_exchange_video_and_data(
    live_server: LiveServer,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loopback_only(monkeypatch)
    url = live_server.url
    therapist = await make_therapist(db, email="sam@example.com", password=PASSWORD)
    now = dt.datetime.now(dt.UTC)
    appointment, token = await make_appointment(db, therapist.id, starts_at=now)

    therapist_http = await sign_in_session(url, "sam@example.com", PASSWORD)
    client_http = await client_session(url, token)
    client_ws = SignallingClient(client_http, url)
    therapist_ws = SignallingClient(therapist_http, url)
    peers: list[Peer] = []
    try:
        await client_ws.connect(origin=url)
        welcome = await client_ws.hello(devices={"camera": "ok", "microphone": "ok"})
        assert welcome["role"] == "client" and welcome["state"] == "waiting"
        assert welcome["polite"] is True
        await client_ws.expect("waiting")

        await therapist_ws.connect(origin=url)
        t_welcome = await therapist_ws.hello(appointment=f"a-{appointment.id}")
        assert t_welcome["role"] == "therapist" and t_welcome["polite"] is False
        lobby = await therapist_ws.expect("lobby")
        waiting = [e for e in lobby["participants"] if e["state"] == "waiting"]
        assert [e["name"] for e in waiting] == ["Alex Morgan"]

        # Nothing but the waiting room reaches a client who has not been admitted.
        assert not client_ws.of_type("offer", "answer", "candidate", "peer-joined")

        await therapist_ws.send({"type": "admit", "participant": waiting[0]["participant"]})
        await client_ws.expect("admitted")
        await client_ws.expect("peer-joined")
        await therapist_ws.expect("peer-joined")

        therapist_peer = Peer(therapist_ws, polite=False)
        client_peer = Peer(client_ws, polite=True)
        peers = [therapist_peer, client_peer]
        therapist_peer.open_channel()
        therapist_peer.start_pump()
        client_peer.start_pump()
        await therapist_peer.offer()

        async with asyncio.timeout(20):
            await asyncio.gather(therapist_peer.connected.wait(), client_peer.connected.wait())
            await asyncio.gather(therapist_peer.first_frame.wait(), client_peer.first_frame.wait())
            assert therapist_peer.channel is not None
            await therapist_peer.channel_open.wait()
            therapist_peer.channel.send("hello from the therapist")
            await client_peer.channel_message.wait()
            assert client_peer.channel is not None
            client_peer.channel.send("hello from the client")
            await therapist_peer.channel_message.wait()

        assert client_peer.channel_messages == ["hello from the therapist"]
        assert therapist_peer.channel_messages == ["hello from the client"]
        assert therapist_peer.frames > 0 and client_peer.frames > 0
    finally:
        for peer in peers:
            await peer.close()
        await client_ws.close()
        await therapist_ws.close()
        await client_http.close()
        await therapist_http.close()
