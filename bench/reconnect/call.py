"""A call between two aiortc peers whose signalling can be cut and resumed independently.

Each side keeps one ``RTCPeerConnection`` for the whole benchmark and swaps the websocket
under it, as the browser does: ``peer-left`` and a closed socket do not touch the media, and
the next socket's ``peer-joined`` needs no new negotiation.  Every received video frame is
time-stamped, so the benchmark can tell afterwards what the media did while the signalling
was away.
"""

from __future__ import annotations

import asyncio
import bisect
import fractions
import itertools
import json
import time
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

Json = dict[str, Any]
RELAYED = frozenset({"offer", "answer", "candidate"})
FPS = 15
CLOCK_RATE = 90_000


class Socket:
    """One websocket to ``/ws``: a queue per message type; pings are answered."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._queues: dict[str, asyncio.Queue[Json]] = {}
        self._reader: asyncio.Task[None] | None = None

    def queue(self, kind: str) -> asyncio.Queue[Json]:
        kind = "relayed" if kind in RELAYED else kind
        return self._queues.setdefault(kind, asyncio.Queue())

    async def open(self, **hello: Any) -> Json:
        """Connect, say ``hello``; the ``welcome``."""
        self.ws = await self.http.ws_connect(
            self.url.replace("http", "ws", 1) + "/ws", headers={"Origin": self.url}
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.send({"type": "hello", "version": 1, **hello})
        return await self.expect("welcome")

    async def send(self, message: Json) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def expect(self, kind: str, within: float = 30.0) -> Json:
        async with asyncio.timeout(within):
            return await self.queue(kind).get()

    def forget(self, *kinds: str) -> None:
        """Drop what is queued of ``kinds`` (news from an earlier round)."""
        for kind in kinds:
            queue = self.queue(kind)
            while not queue.empty():
                queue.get_nowait()

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type is aiohttp.WSMsgType.TEXT:
                message: Json = json.loads(frame.data)
                if message["type"] == "ping":
                    await self.send({"type": "pong", "ts": message["ts"]})
                self.queue(message["type"]).put_nowait(message)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def wait_closed(self, within: float = 30.0) -> int | None:
        async with asyncio.timeout(within):
            await self.closed.wait()
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class Camera(MediaStreamTrack):
    """Synthetic video, 160×120 at 15 fps, its shade changing every frame."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._origin: float | None = None
        self._index = 0

    async def recv(self) -> VideoFrame:
        if self._origin is None:
            self._origin = time.monotonic()
        self._index += 1
        await asyncio.sleep(max(0.0, self._origin + self._index / FPS - time.monotonic()))
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        shade = bytes([(self._index * 11) % 256])
        for plane in frame.planes:
            plane.update(shade * plane.buffer_size)
        frame.pts = self._index * CLOCK_RATE // FPS
        frame.time_base = fractions.Fraction(1, CLOCK_RATE)
        return frame


class Peer:
    """One side's peer connection; relayed messages come from whichever socket is current."""

    def __init__(self, *, polite: bool) -> None:
        self.polite = polite
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(Camera())
        self.frames: list[float] = []  # perf_counter() of every received video frame
        self.connected = asyncio.Event()
        self._frame = asyncio.Event()
        self.socket: Socket | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._watch(track)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

    def attach(self, socket: Socket) -> None:
        """Take relayed messages from ``socket`` from now on."""
        if self._pump is not None:
            self._pump.cancel()
        self.socket = socket
        self._pump = asyncio.ensure_future(self._handle(socket))

    def frames_between(self, start: float, end: float) -> int:
        return bisect.bisect_right(self.frames, end) - bisect.bisect_left(self.frames, start)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest wait between two received frames that overlaps ``[start, end]``: from
        the last frame before ``start`` to the first one after ``end``."""
        first = max(0, bisect.bisect_right(self.frames, start) - 1)
        last = bisect.bisect_left(self.frames, end)
        if last >= len(self.frames):
            return float("inf")  # nothing arrived after the outage (yet)
        stamps = self.frames[first : last + 1]
        return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)

    async def wait_frames(self, count: int, within: float = 30.0) -> None:
        target = len(self.frames) + count
        async with asyncio.timeout(within):
            while len(self.frames) < target:
                self._frame.clear()
                await self._frame.wait()

    async def offer(self) -> None:
        assert self.socket is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.socket.send({"type": "offer", "sdp": self.pc.localDescription.sdp})

    async def _watch(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.frames.append(time.perf_counter())
            self._frame.set()

    async def _handle(self, socket: Socket) -> None:
        while True:
            message = await socket.queue("relayed").get()
            kind = message["type"]
            if kind == "offer":
                await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await socket.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
            elif kind == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
            elif kind == "candidate" and message["candidate"]["candidate"]:
                data = message["candidate"]
                candidate = candidate_from_sdp(data["candidate"].removeprefix("candidate:"))
                candidate.sdpMid = data["sdpMid"]
                candidate.sdpMLineIndex = data["sdpMLineIndex"]
                await self.pc.addIceCandidate(candidate)

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._pump] if self._pump is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pc.close()


class Side:
    """A participant: cookies, the current socket and the peer connection under it."""

    def __init__(self, http: aiohttp.ClientSession, url: str, *, polite: bool, **hello: Any):
        self.http = http
        self.hello = hello
        self.socket = Socket(http, url)
        self.peer = Peer(polite=polite)

    async def resume(self, url: str) -> Json:
        """A new socket with the same cookies (the old one is closed or gone); its welcome."""
        socket = Socket(self.http, url)
        welcome = await socket.open(**self.hello)
        self.socket = socket
        self.peer.attach(socket)
        return welcome

    async def close(self) -> None:
        await self.peer.close()
        await self.socket.close()
        await self.http.close()


async def start_call(url: str, therapist: Side, client: Side, appointment: str) -> None:
    """The client waits, the therapist admits, the therapist offers; until media flows."""
    await client.socket.open(**client.hello)
    welcome = await therapist.socket.open(**therapist.hello)
    if welcome["appointment"] != appointment:
        raise RuntimeError(f"the therapist joined {welcome['appointment']}")
    while True:
        lobby = await therapist.socket.expect("lobby")
        if lobby["participants"]:
            break
    participant = lobby["participants"][0]["participant"]
    await therapist.socket.send({"type": "admit", "participant": participant})
    await client.socket.expect("admitted")
    await therapist.socket.expect("peer-joined")
    await client.socket.expect("peer-joined")
    therapist.peer.attach(therapist.socket)
    client.peer.attach(client.socket)
    await therapist.peer.offer()
    async with asyncio.timeout(30):
        await therapist.peer.connected.wait()
        await client.peer.connected.wait()
    await asyncio.gather(therapist.peer.wait_frames(FPS), client.peer.wait_frames(FPS))
