"""The connection test's echo peer, through a running app, with real aiortc clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import fractions
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import VideoFrame
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import echo, echo_peer
from server.app import create_app
from server.settings import Settings
from server.shutdown import DRAIN
from signalling.parts import IceServer
from tests.conftest import free_port, make_settings
from tests.support.arrange import make_appointment, make_therapist
from tests.support.connection_stats import snapshot, summarise
from tests.support.rtc import VIDEO_CLOCK, loopback_only
from tests.support.signalling_client import client_session

PASSWORD = "a long enough password"
#: The synthetic camera's colour (Y, U, V): flat, so it survives VP8 and can be recognised.
MARK = (180, 60, 200)
WAIT = 20.0


class MarkedCamera(MediaStreamTrack):
    """160x120 frames of one recognisable colour at 15 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        await asyncio.sleep(max(0.0, self._start + self._count / 15 - time.monotonic()))
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        for plane, value in zip(frame.planes, MARK, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = int(self._count * VIDEO_CLOCK / 15)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class EchoClient:
    """A browser's side of the test: camera and microphone out, whatever comes back counted."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(MarkedCamera())
        self.pc.addTrack(AudioStreamTrack())
        self.frames: list[VideoFrame] = []
        self.frame_arrived = asyncio.Event()
        self.echo_ended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self.echo_ended.set()
                return
            if isinstance(frame, VideoFrame):
                self.frames.append(frame)
                self.frame_arrived.set()

    async def post_offer(self) -> aiohttp.ClientResponse:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription
        return await post(self.http, self.url, {"type": "offer", "sdp": offer.sdp})

    async def start(self) -> None:
        response = await self.post_offer()
        assert response.status == 200, await response.text()
        answer = await response.json()
        assert answer["type"] == "answer"
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def frames_at_least(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.frames) < count:
                self.frame_arrived.clear()
                await self.frame_arrived.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        await self.http.close()


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    origin: str | None = "same",
    content_type: str = "application/json",
) -> aiohttp.ClientResponse:
    headers = {"Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = url if origin == "same" else origin
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(f"{url}/join/echo", data=data, headers=headers)


class EchoServer:
    def __init__(self, settings: Settings, server: TestServer) -> None:
        self.settings = settings
        self.server = server

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def service(self) -> echo.EchoService:
        return self.server.app[echo.ECHO]


StartServer = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
async def start_server(
    migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartServer]:
    """Start the app on a real port, with the echo's limits given."""
    loopback_only(monkeypatch)
    servers: list[TestServer] = []

    async def start(limits: echo.Limits | None = None, **env: str) -> EchoServer:
        port = free_port()
        settings = make_settings(
            migrated_url, tmp_path / "var", ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}", **env
        )
        app = create_app(settings)
        if limits is not None:
            app[echo.LIMITS] = limits
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        return EchoServer(settings, server)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def join_token(db: async_sessionmaker[AsyncSession]) -> str:
    therapist = await make_therapist(db, email="sam@example.com", password=PASSWORD)
    _appointment, token = await make_appointment(
        db, therapist.id, starts_at=dt.datetime.now(dt.UTC)
    )
    return token


async def echo_client(server: EchoServer, token: str) -> EchoClient:
    return EchoClient(await client_session(server.url, token), server.url)


def plane_means(frame: VideoFrame) -> list[float]:
    """The mean value of each plane, leaving out the padding at the end of each line."""
    means = []
    for plane in frame.planes:
        data = bytes(plane)
        rows = [
            data[r * plane.line_size : r * plane.line_size + plane.width]
            for r in range(plane.height)
        ]
        means.append(sum(map(sum, rows)) / (plane.width * plane.height))
    return means


async def test_a_client_gets_its_own_video_back_and_can_measure_the_connection(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server()
    client = await echo_client(server, join_token)
    try:
        await client.start()
        await client.frames_at_least(1)
        before, started = await snapshot(client.pc), time.monotonic()
        await client.frames_at_least(16)
        # The round trip is known once a receiver report answers one of our sender reports.
        while not any(
            s["type"] == "remote-inbound-rtp" and s["roundTripTime"] is not None
            for s in await snapshot(client.pc)
        ):
            await client.frames_at_least(len(client.frames) + 1)
        after, seconds = await snapshot(client.pc), time.monotonic() - started

        frame = client.frames[-1]
        assert (frame.width, frame.height) == (160, 120)
        y, u, v = plane_means(frame)
        assert abs(y - MARK[0]) < 12 and abs(u - MARK[1]) < 12 and abs(v - MARK[2]) < 12

        figures = summarise(before, after, seconds)
        assert figures.rtt_ms is not None and 0 <= figures.rtt_ms < 2000
        assert figures.loss_percent is not None and 0 <= figures.loss_percent <= 100
        assert figures.kbps_up is not None and figures.kbps_up > 0
        assert figures.kbps_down is not None and figures.kbps_down > 0
        assert [p.state for p in server.service.peers] == [echo.EchoState.CONNECTED]
    finally:
        await client.close()


async def test_a_test_the_browser_ends_frees_its_place(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server()
    client = await echo_client(server, join_token)
    try:
        await client.start()
        await client.frames_at_least(1)
        (peer,) = server.service.peers
    finally:
        await client.close()
    async with asyncio.timeout(WAIT):
        await peer.closed.wait()
    assert peer.state is echo.EchoState.CLOSED
    assert not server.service.peers


async def test_a_fifth_concurrent_test_is_told_to_skip(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server()
    clients = [await echo_client(server, join_token) for _ in range(5)]
    try:
        for client in clients[:4]:
            await client.start()
        for client in clients[:4]:  # (closing a connection still being set up is noisy)
            await client.frames_at_least(1)
        response = await clients[4].post_offer()
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert problem["code"] == "echo-busy" and problem["skip"] is True
        assert len(server.service.peers) == 4
    finally:
        for client in clients:
            await client.close()


async def test_a_test_running_past_the_timeout_is_closed_by_the_server(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server(echo.Limits(timeout_seconds=1.0))
    client = await echo_client(server, join_token)
    try:
        await client.start()
        (peer,) = server.service.peers
        async with asyncio.timeout(WAIT):
            await peer.closed.wait()
        assert peer.state is echo.EchoState.CLOSED
        assert peer.pc.connectionState == "closed"
        assert not server.service.peers
    finally:
        await client.close()


async def test_every_echo_peer_is_closed_when_the_app_stops(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server()
    clients = [await echo_client(server, join_token) for _ in range(2)]
    try:
        for client in clients:
            await client.start()
        for client in clients:
            await client.frames_at_least(1)
        peers = list(server.service.peers)
        assert len(peers) == 2
        await server.server.close()
        assert [p.state for p in peers] == [echo.EchoState.CLOSED] * 2
        assert [p.pc.connectionState for p in peers] == ["closed"] * 2
        assert not server.service.peers
        assert server.service.start(()) is None
    finally:
        for client in clients:
            await client.close()


async def test_a_request_without_a_participant_cookie_is_refused(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with aiohttp.ClientSession() as http:
        response = await post(http, server.url, {"type": "offer", "sdp": "v=0\r\n"})
        assert response.status == 401
        assert (await response.json())["code"] == "not-a-participant"
        config = await http.get(f"{server.url}/join/echo/config")
        assert config.status == 401
    assert not server.service.peers


@pytest.mark.parametrize("origin", [None, "https://elsewhere.example"])
async def test_an_offer_from_another_origin_is_refused(
    start_server: StartServer, join_token: str, origin: str | None
) -> None:
    server = await start_server()
    client = await echo_client(server, join_token)
    try:
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        response = await post(client.http, server.url, offer, origin=origin)
        assert response.status == 403
        assert (await response.json())["code"] == "forbidden-origin"
    finally:
        await client.close()


NO_MEDIA = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed-json"),
        (b"\xff\xfe", "application/json", 400, "malformed-json"),
        (b"[1]", "application/json", 400, "malformed-json"),
        (b'{"type": "offer", "sdp": NaN}', "application/json", 400, "malformed-json"),
        ({"type": "answer", "sdp": NO_MEDIA}, "application/json", 400, "bad-offer"),
        ({"type": "offer"}, "application/json", 400, "bad-offer"),
        ({"type": "offer", "sdp": 7}, "application/json", 400, "bad-offer"),
        ({"type": "offer", "sdp": "garbage"}, "application/json", 400, "bad-offer"),
        ({"type": "offer", "sdp": NO_MEDIA}, "application/json", 400, "bad-offer"),
        ({"type": "offer", "sdp": NO_MEDIA + "m=video 9 RTP/AVP 0\r\n"}, None, 400, "bad-offer"),
        ({"type": "offer", "sdp": NO_MEDIA, "extra": 1}, None, 400, "bad-offer"),
        ({"type": "offer", "sdp": "v=0" + "a" * 70_000}, None, 413, "payload-too-large"),
        ({"type": "offer", "sdp": NO_MEDIA}, "text/plain", 415, "unsupported-media-type"),
    ],
)
async def test_a_malformed_offer_is_a_clear_problem(
    start_server: StartServer,
    join_token: str,
    body: Any,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    server = await start_server()
    client = await echo_client(server, join_token)
    try:
        response = await post(
            client.http, server.url, body, content_type=content_type or "application/json"
        )
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert (await response.json())["code"] == code
        assert not server.service.peers
    finally:
        await client.close()


async def test_an_offer_without_audio_or_video_is_refused(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server()
    http = await client_session(server.url, join_token)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("only data")
        await pc.setLocalDescription(await pc.createOffer())
        response = await post(http, server.url, {"type": "offer", "sdp": pc.localDescription.sdp})
        assert response.status == 400
        assert (await response.json())["code"] == "bad-offer"
        assert not server.service.peers
    finally:
        await pc.close()
        await http.close()


async def test_the_browser_is_given_the_ice_servers_of_the_call(
    start_server: StartServer, join_token: str
) -> None:
    server = await start_server(
        ALCOVE_ICE_URLS="stun:stun.example.org:3478",
        ALCOVE_TURN_URLS="turn:turn.example.org:3478",
        ALCOVE_TURN_SECRET="turn-secret-" + "t" * 32,
    )
    http = await client_session(server.url, join_token)
    try:
        response = await http.get(f"{server.url}/join/echo/config")
        assert response.status == 200
        body = await response.json()
    finally:
        await http.close()
    stun, turn = body["iceServers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478"]
    assert turn["username"].endswith(":c-1") and turn["credential"]
    assert body["seconds"] == echo.TEST_SECONDS


def test_the_echo_peer_uses_exactly_the_ice_servers_it_is_given() -> None:
    turn = IceServer(urls=("turn:turn.example.org:3478",), username="1:c-1", credential="pw")
    configuration = echo_peer.rtc_configuration((turn,))
    (server,) = configuration.iceServers or []
    assert (server.urls, server.username, server.credential) == (
        ["turn:turn.example.org:3478"],
        "1:c-1",
        "pw",
    )
    assert echo_peer.rtc_configuration(()).iceServers == []


async def test_a_draining_server_starts_no_test(start_server: StartServer, join_token: str) -> None:
    server = await start_server()
    client = await echo_client(server, join_token)
    try:
        server.server.app[DRAIN].start()
        response = await client.post_offer()
        assert response.status == 503
        problem = await response.json()
        assert problem["code"] == "echo-unavailable" and problem["skip"] is True
        assert not server.service.peers
    finally:
        await client.close()


def test_starting_the_app_does_not_load_aiortc_until_the_echo_peer_needs_it() -> None:
    # aiortc is a good part of the start-up time, and only the connection test uses it: a
    # restarted instance should not wait for it before serving calls.
    program = (
        "import sys\n"
        "import server.app, server.cli, server.echo\n"
        "assert 'aiortc' not in sys.modules, 'aiortc was imported with the app'\n"
        "import server.echo_peer\n"
        "assert 'aiortc' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
