"""The echo peer of the connection test: an aiortc peer connection that sends back what it
receives (``server.echo`` holds the service and the HTTP views).

aiortc, with the codecs and crypto it loads, is a good part of the app's start-up time, and
only this test needs it: this module is imported when the first test starts
(``EchoService.start``), and in a thread just after start-up (``echo_ctx``), so a restarted
instance serves calls sooner while its first test still finds it ready.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from server.echo import _NEXT, BadOffer, EchoState, Unavailable
from signalling.parts import IceServer

if TYPE_CHECKING:
    from server.echo import EchoService

log = logging.getLogger("server.echo")


class EchoTrack(MediaStreamTrack):
    """Sends each frame of ``source`` back as it arrives, with no buffering.

    aiortc decodes what it receives and encodes what it sends, so every video frame is
    encoded again: the cost of a test, which is why the browser sends a scaled-down video.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self) -> Any:
        return await self._source.recv()


def rtc_configuration(servers: tuple[IceServer, ...]) -> RTCConfiguration:
    """The ICE servers a participant is given, for aiortc.  An explicit empty list: left
    out, aiortc would fall back to a public STUN server."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ]
    )


class EchoPeer:
    """One test: a peer connection that echoes, with a hard deadline."""

    def __init__(self, service: EchoService, servers: tuple[IceServer, ...]) -> None:
        self.id = secrets.token_hex(4)
        self.state = EchoState.NEW
        self.pc = RTCPeerConnection(rtc_configuration(servers))
        self.closed = asyncio.Event()
        self._service = service
        self._timer = asyncio.get_running_loop().call_later(
            service.limits.timeout_seconds, self._expire
        )
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        log.info("echo %s: created", self.id)

    def _move(self, new: EchoState, why: str = "") -> bool:
        if new not in _NEXT[self.state]:
            return False
        old, self.state = self.state, new
        log.info("echo %s: %s -> %s%s", self.id, old, new, f" ({why})" if why else "")
        return True

    def _on_connection_state(self) -> None:
        match self.pc.connectionState:
            case "connected":
                self._move(EchoState.CONNECTED)
            case "failed" | "closed" as state:
                self.close_soon(f"connection {state}")

    def _expire(self) -> None:
        self.close_soon("timeout")

    def close_soon(self, why: str) -> None:
        """Close from a callback (a timer, an event): the closing runs as its own task."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.close(why))

    async def answer(self, offer_sdp: str) -> str:
        """The answer to ``offer_sdp``, with every candidate the server gathered."""
        self._move(EchoState.ANSWERING)
        received: list[MediaStreamTrack] = []
        self.pc.on("track", received.append)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            if self.state is EchoState.CLOSED:
                raise Unavailable("the test ended before it was answered") from None
            # The offer is the only input here: whatever aiortc refuses, the offer is at fault.
            raise BadOffer(f"the offer could not be applied ({type(exc).__name__})") from None
        echoed = 0
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            if transceiver.kind in ("audio", "video") and track in received:
                transceiver.sender.replaceTrack(EchoTrack(track))
                transceiver.direction = "sendrecv"
                echoed += 1
        if echoed == 0:
            raise BadOffer("the offer sends no audio or video")
        try:
            # aiortc gathers every candidate before this returns: the answer is complete.
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            log.warning("echo %s: could not answer: %s", self.id, type(exc).__name__)
            raise Unavailable("the server could not answer") from None
        local = self.pc.localDescription
        if local is None or self.state is not EchoState.ANSWERING:
            raise Unavailable("the test ended before it was answered")
        self._move(EchoState.CONNECTING)
        return local.sdp

    async def close(self, why: str) -> None:
        """Close the peer connection and free its place; closing twice does nothing."""
        if not self._move(EchoState.CLOSED, why):
            await self.closed.wait()
            return
        self._timer.cancel()
        try:
            await self.pc.close()
        except Exception:
            log.exception("echo %s: closing the peer connection failed", self.id)
        finally:
            self._service.release(self)
            self.closed.set()
