"""Real WebRTC peers (aiortc) driven by the signalling protocol, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from tests.support.signalling_client import Json, SignallingClient

VIDEO_CLOCK = 90000


def loopback_only(monkeypatch: Any) -> None:
    """aioice skips 127.0.0.1 when gathering; in tests, gather exactly that."""

    def addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", addresses)


class ColourTrack(MediaStreamTrack):
    """A small synthetic camera: 160x120 frames at 15 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        due = self._start + self._count / 15
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(self._count * 7) % 256]) * plane.buffer_size)
        frame.pts = int(self._count * VIDEO_CLOCK / 15)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class Peer:
    """One side of a call: a peer connection whose signalling goes through ``SignallingClient``."""

    def __init__(
        self,
        signalling: SignallingClient,
        *,
        polite: bool,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.signalling = signalling
        self.polite = polite
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ColourTrack())
        self.frames = 0
        self.first_frame = asyncio.Event()
        self.connected = asyncio.Event()
        self.channel_messages: list[str] = []
        self.channel_message = asyncio.Event()
        self.channel: RTCDataChannel | None = None
        self.channel_open = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_frame: Callable[[], None] | None = None

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._consume(track)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

        @self.pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            self._watch(channel)

    def open_channel(self) -> RTCDataChannel:
        channel = self.pc.createDataChannel("chat")
        self._watch(channel)
        return channel

    def _watch(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        if channel.readyState == "open":
            self.channel_open.set()
        channel.on("open", self.channel_open.set)

        @channel.on("message")
        def on_message(message: object) -> None:
            self.channel_messages.append(str(message))
            self.channel_message.set()

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.frames += 1
            self.first_frame.set()
            if self.on_frame is not None:
                self.on_frame()

    async def offer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        local = self.pc.localDescription
        await self.signalling.send({"type": "offer", "sdp": local.sdp})

    async def handle(self, message: Json) -> None:
        """React to one relayed message."""
        if message["type"] == "offer":
            await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.signalling.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
        elif message["type"] == "answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
        elif message["type"] == "candidate" and message["candidate"]:
            data = message["candidate"]
            candidate = candidate_from_sdp(data["candidate"].removeprefix("candidate:"))
            candidate.sdpMid = data["sdpMid"]
            candidate.sdpMLineIndex = data["sdpMLineIndex"]
            await self.pc.addIceCandidate(candidate)

    async def pump(self) -> None:
        """Handle relayed messages until the socket closes."""
        while True:
            message = await self.signalling.expect_relayed()
            await self.handle(message)

    def start_pump(self) -> None:
        self._tasks.append(asyncio.ensure_future(self.pump()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
