"""The ``/ws`` endpoint: authenticates the handshake and feeds frames to the signalling core.

Everything about the protocol lives in ``signalling``; this module only knows aiohttp.  A
socket is authenticated by the therapist's session cookie or the client's participant
cookie — never by anything in the URL — and its ``Origin`` must be on the allow-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from dataclasses import dataclass
from typing import cast

from aiohttp import WSCloseCode, WSMsgType, web

from server import join, sessions
from server.calls import SWITCHBOARD, Resolver
from server.keys import CLOCK, SETTINGS
from server.shutdown import DRAIN, GOING_AWAY, GOING_AWAY_REASON
from signalling.errors import CloseCode
from signalling.messages import Ended, Message
from signalling.parts import Role
from signalling.protocol import (
    IDLE_TIMEOUT_SECONDS,
    MAX_FRAME_BYTES,
    PING_INTERVAL_SECONDS,
    encode,
)
from signalling.session import Session

log = logging.getLogger(__name__)

PING_INTERVAL = PING_INTERVAL_SECONDS
IDLE_TIMEOUT = IDLE_TIMEOUT_SECONDS
SEND_QUEUE = 256

#: The first byte of an unfragmented text frame (FIN and opcode 1), and the second with a
#: 16-bit or 64-bit length to follow (a server's frames are not masked: RFC 6455, 5.1).
_TEXT = 0x81
_LENGTH_16 = struct.Struct("!BBH").pack
_LENGTH_64 = struct.Struct("!BBQ").pack


def text_frame(frame: str) -> bytes:
    """``frame`` as one unmasked websocket text frame (RFC 6455, 5.2), header and payload."""
    payload = frame.encode()
    size = len(payload)
    if size < 126:
        return bytes((_TEXT, size)) + payload
    if size < 65536:
        return _LENGTH_16(_TEXT, 126, size) + payload
    return _LENGTH_64(_TEXT, 127, size) + payload


class SocketConnection:
    """A ``signalling`` connection over an aiohttp websocket, with a bounded send queue.

    Given the socket's ``transport``, a frame is written at once when nothing is queued
    ahead of it and the transport's buffer has room for it (so the write cannot wait on
    the browser): the common case, which spares a task switch per message.  Otherwise it
    is queued for the writer task, and a slow browser never stalls the room.  The queue
    and its writer are made when first needed (a frame that cannot go at once, or the
    close): most sockets never need them, and an idle participant costs less memory.  The
    frame written at once is framed here and handed to the transport, in one synchronous
    step: the two coroutines of aiohttp's ``send_str`` add nothing when the transport has
    room.
    """

    def __init__(
        self, ws: web.WebSocketResponse, *, transport: asyncio.BaseTransport | None = None
    ) -> None:
        self._ws = ws
        # uvloop's transports have the methods of ``asyncio.WriteTransport`` but are no
        # subclass of it.
        buffered = hasattr(transport, "get_write_buffer_limits")
        self._transport = cast("asyncio.WriteTransport", transport) if buffered else None
        self._high_water = self._transport.get_write_buffer_limits()[1] if self._transport else 0
        self._queue: asyncio.Queue[str | tuple[int, str]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def send(self, message: Message) -> None:
        if not self._closing:
            frame = encode(message)
            if not self._written(frame):
                await self._enqueue(frame)

    async def send_frame(self, frame: str) -> None:
        if not self.send_now(frame):
            await self._enqueue(frame)

    def send_now(self, frame: str) -> bool:
        return self._closing or self._written(frame)

    def _written(self, frame: str) -> bool:
        """Write ``frame`` now if nothing is queued ahead of it and the transport has room;
        whether it was (or need not be: the socket is closing)."""
        transport = self._transport
        if (
            transport is None
            or (self._queue is not None and not self._queue.empty())
            or transport.is_closing()
            # At most 4 bytes a character, and at most 14 bytes of frame header: within
            # the high-water mark, aiohttp would not wait for the transport to drain.
            or transport.get_write_buffer_size() + 4 * len(frame) + 14 >= self._high_water
        ):
            return False
        # Once aiohttp has begun the closing handshake (``closed``), nothing may follow
        # its close frame.
        if not self._ws.closed:
            transport.write(text_frame(frame))
        return True

    def _outbox(self) -> asyncio.Queue[str | tuple[int, str]]:
        """The send queue, and its writer task, made on first use."""
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue(SEND_QUEUE)
            self._writer = asyncio.get_running_loop().create_task(self._write(queue))
        return queue

    async def _enqueue(self, frame: str) -> None:
        try:
            self._outbox().put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("send queue full; closing a slow socket")
            await self.close(int(WSCloseCode.TRY_AGAIN_LATER), "too slow")

    async def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        queue = self._outbox()
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait((code, reason))
        if queue.full() and self._writer is not None:
            self._writer.cancel()
            await self._ws.close(code=code, message=reason.encode())

    async def _write(self, queue: asyncio.Queue[str | tuple[int, str]]) -> None:
        try:
            while True:
                item = await queue.get()
                if isinstance(item, tuple):
                    code, reason = item
                    await self._ws.close(code=code, message=reason.encode()[:120])
                    return
                await self._ws.send_str(item)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return

    async def finish(self) -> None:
        """Stop writing: let a pending close go out (briefly), then drop the rest."""
        closing, self._closing = self._closing, True
        writer = self._writer
        if writer is None:
            return
        if closing:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), timeout=2.0)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is not None and origin in request.app[SETTINGS].allowed_origins


@dataclass(frozen=True)
class Identity:
    role: Role
    resolver: Resolver
    #: For a client: whether the appointment is over (completed, cancelled or past its window).
    over: bool = False


async def identify(request: web.Request) -> Identity | None:
    signed_in = await sessions.load(request)
    if signed_in is not None:
        return Identity(Role.THERAPIST, Resolver.for_therapist(request.app, signed_in.therapist))
    appointment = await join.participant_appointment(request)
    if appointment is not None:
        verdict = join.classify(appointment, request.app[SETTINGS], request.app[CLOCK]())
        over = verdict in (join.Window.OVER, join.Window.CANCELLED)
        return Identity(Role.CLIENT, Resolver.for_client(request.app, appointment), over)
    return None


async def websocket(request: web.Request) -> web.StreamResponse:
    drain = request.app[DRAIN]
    if drain.draining:
        # This instance is stopping: the browser retries, and reaches another one.
        raise web.HTTPServiceUnavailable()
    if not origin_allowed(request):
        raise web.HTTPForbidden()
    identity = await identify(request)
    if identity is None:
        raise web.HTTPUnauthorized()
    # A frame of exactly MAX_FRAME_BYTES is allowed, but aiohttp (3.14) refuses one of
    # ``max_msg_size`` bytes or more: hence the + 1.  A larger frame is closed with 1009 by
    # aiohttp, or, should aiohttp let it through, by the protocol parser (``too-large``).
    ws = web.WebSocketResponse(
        compress=False, max_msg_size=MAX_FRAME_BYTES + 1, autoping=True, heartbeat=None
    )
    await ws.prepare(request)
    if identity.over:
        # The session is over: say so, as the room would, and close for good.
        assert identity.resolver.seat is not None
        await ws.send_str(encode(Ended(appointment=identity.resolver.seat.appointment)))
        await ws.close(code=int(CloseCode.ENDED), message=b"the appointment has ended")
        return ws
    connection = SocketConnection(ws, transport=request.transport)
    if not drain.add(connection):  # draining began while the handshake was under way
        await connection.close(GOING_AWAY, GOING_AWAY_REASON)
    session = Session(
        request.app[SWITCHBOARD],
        connection,
        role=identity.role,
        resolve=identity.resolver.resolve,
        ice_servers=identity.resolver.ice_servers(),
    )
    # The frames are read in a task of their own: resuming the handler for each one would
    # pass through every middleware's coroutine, a measurable part of relaying a message.
    reading = asyncio.get_running_loop().create_task(_read(ws, session, connection))
    try:
        await asyncio.shield(reading)
    except asyncio.CancelledError:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        raise
    finally:
        drain.discard(connection)
    return ws


async def _read(ws: web.WebSocketResponse, session: Session, connection: SocketConnection) -> None:
    """Feed the socket's frames to ``session`` until either side ends it."""
    activity = Activity()
    keepalive = asyncio.get_running_loop().create_task(_keep_alive(ws, session, activity))
    try:
        while True:
            msg = await ws.receive()
            activity.last = time.monotonic()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await session.receive(msg.data)
            elif msg.type is WSMsgType.ERROR:
                exc = ws.exception()
                log.info("websocket error: %s", type(exc).__name__)
                break
            else:  # CLOSE, CLOSING (also after the idle timeout), CLOSED
                break
            if session.closed:
                break
    finally:
        if activity.idle:
            # The keep-alive task is closing the socket: let the close handshake finish.
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await keepalive
        keepalive.cancel()
        await session.disconnected()
        await connection.finish()
        if not ws.closed:
            await ws.close()


class Activity:
    """When a frame last arrived on a socket, and whether it was closed for idling.

    One timer per socket (``_keep_alive``) rather than a timeout around every ``receive``:
    arming and cancelling one for each frame is a measurable part of relaying one.
    """

    __slots__ = ("idle", "last")

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.idle = False


async def _keep_alive(ws: web.WebSocketResponse, session: Session, activity: Activity) -> None:
    """Send the periodic ``ping``, and close the socket with 1000 once nothing has arrived
    for ``IDLE_TIMEOUT`` seconds."""
    next_ping = time.monotonic() + PING_INTERVAL
    while True:
        now = time.monotonic()
        idle_at = activity.last + IDLE_TIMEOUT
        if now >= idle_at:
            activity.idle = True
            await ws.close(code=int(CloseCode.NORMAL), message=b"idle")
            return
        if now >= next_ping:
            await session.ping(time.time() * 1000)
            next_ping = now + PING_INTERVAL
        await asyncio.sleep(min(next_ping, idle_at) - now)


def setup(app: web.Application) -> None:
    app.router.add_get("/ws", websocket, name="ws")
