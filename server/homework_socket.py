"""``/homework/ws``: the homework page's socket, one client and one worksheet.

Authenticated by the homework cookie (``server.homework``) and the ``Origin`` allow-list,
never by anything in the URL.  There is no ``hello``: the cookie names the homework, so on
open the socket subscribes the client to the worksheet in ``LiveWorksheets``, which sends
``worksheet`` and the server's sync step 1.  Each text frame is parsed by the signalling
protocol's strict parser; only ``yjs``, ``editing``, ``ping`` and ``pong`` are taken, anything
else is ``forbidden``.  ``yjs`` and ``editing`` share the call socket's worksheet rate limit.

The first change the client makes moves the homework from assigned to started.  Homework that
is done, withdrawn or expired is closed with 4003 (the page stops reconnecting).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import update

from server import homework
from server.audit import Actor
from server.keys import CLOCK, SESSIONMAKER
from server.live_document import WorksheetGone
from server.shutdown import DRAIN, GOING_AWAY, GOING_AWAY_REASON
from server.worksheet_calls import LIVE_WORKSHEETS
from server.worksheet_live import LiveWorksheets
from server.worksheet_models import Homework, HomeworkStatus
from server.worksheets import LimitError, SyncError
from server.ws import IDLE_TIMEOUT, PING_INTERVAL, SocketConnection, origin_allowed
from signalling.errors import FATAL, CloseCode, ErrorCode, ProtocolError
from signalling.messages import Message, Ping, Pong
from signalling.protocol import MAX_FRAME_BYTES, error_for, parse_message
from signalling.session import SYNC_RATE_BURST, SYNC_RATE_PER_SECOND, RateLimiter
from signalling.worksheet_messages import Editing, Yjs, worksheet_ref

log = logging.getLogger(__name__)

#: y-protocols: a sync message's "update" payload that changes nothing (no structs, no
#: deletions), as a browser sends in answer to the server's step 1 when it has nothing new.
EMPTY_UPDATE = b"\x00\x00"


class HomeworkSubscriber:
    """The client on the homework page, as a worksheet subscriber."""

    def __init__(self, connection: SocketConnection, client_id: int) -> None:
        self._connection = connection
        self._key = f"homework-{secrets.token_hex(8)}"
        self._actor = (Actor.CLIENT, client_id)

    @property
    def key(self) -> str:
        return self._key

    @property
    def actor(self) -> tuple[Actor, int]:
        return self._actor

    @property
    def connection(self) -> str:
        return self._key  # one socket, one subscriber

    async def deliver(self, message: Message) -> None:
        await self._connection.send(message)

    async def relay(self, frame: str) -> None:
        await self._connection.send_frame(frame)


def carries_changes(data: bytes) -> bool:
    """Whether a sync message is a step 2 or an update that changes something."""
    if len(data) < 3 or data[0] != 0 or data[1] not in (1, 2):
        return False
    return data[2:] != bytes([len(EMPTY_UPDATE)]) + EMPTY_UPDATE


class HomeworkSession:
    """The frames of one homework socket."""

    def __init__(
        self,
        app: web.Application,
        live: LiveWorksheets,
        connection: SocketConnection,
        row: Homework,
    ) -> None:
        self._app = app
        self._live = live
        self._connection = connection
        self._homework_id = row.id
        self._worksheet_id = row.worksheet_id
        self._ref = worksheet_ref(row.worksheet_id)
        self._started = row.status != HomeworkStatus.ASSIGNED.value
        self._limiter = RateLimiter(SYNC_RATE_PER_SECOND, SYNC_RATE_BURST)
        #: Everything else (pings, refused messages) has the signalling socket's rate.
        self._other_limiter = RateLimiter()
        self.subscriber = HomeworkSubscriber(connection, row.client_id)
        self.closed = False

    async def receive(self, frame: str | bytes) -> None:
        try:
            if isinstance(frame, bytes):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "binary frames are refused")
            message = parse_message(frame)
        except ProtocolError as error:
            await self._connection.send(error_for(error))
            code = FATAL.get(error.code, CloseCode.POLICY_VIOLATION)
            await self._connection.close(int(code), error.code.value)
            self.closed = True
            return
        limiter = self._limiter if isinstance(message, Yjs | Editing) else self._other_limiter
        try:
            if not limiter.allow():
                raise ProtocolError(ErrorCode.RATE_LIMITED, f"{message.TYPE} dropped: slow down")
            await self._handle(message)
        except ProtocolError as error:
            await self._connection.send(error_for(error, message))

    async def _handle(self, message: Message) -> None:
        match message:
            case Ping():
                await self._connection.send(Pong(ts=message.ts))
            case Pong():
                pass
            case Yjs() | Editing():
                if message.worksheet != self._ref:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no such worksheet here")
                try:
                    if isinstance(message, Yjs):
                        await self._live.receive(self._worksheet_id, self.subscriber, message.data)
                        if not self._started and carries_changes(message.data):
                            await self._mark_started()
                    else:
                        await self._live.editing(self._worksheet_id, self.subscriber, message.field)
                except WorksheetGone:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no such worksheet here") from None
                except (SyncError, LimitError) as error:
                    raise ProtocolError(ErrorCode.WORKSHEET_REFUSED, str(error)) from None
            case _:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"{message.TYPE!r} is not taken on the homework socket"
                )

    async def _mark_started(self) -> None:
        self._started = True
        async with self._app[SESSIONMAKER]() as db, db.begin():
            await db.execute(
                update(Homework)
                .where(
                    Homework.id == self._homework_id,
                    Homework.status == HomeworkStatus.ASSIGNED.value,
                )
                .values(status=HomeworkStatus.STARTED.value, started_at=self._app[CLOCK]())
            )


async def websocket(request: web.Request) -> web.StreamResponse:
    drain = request.app[DRAIN]
    if drain.draining:
        raise web.HTTPServiceUnavailable()
    if not origin_allowed(request):
        raise web.HTTPForbidden()
    row = await homework.homework_for_cookie(request)
    if row is None:
        raise web.HTTPUnauthorized()
    ws = web.WebSocketResponse(
        compress=False, max_msg_size=MAX_FRAME_BYTES + 1, autoping=True, heartbeat=None
    )
    await ws.prepare(request)
    if homework.verdict(row, request.app[CLOCK]()) != "open":
        await ws.close(code=int(CloseCode.ENDED), message=b"this homework is closed")
        return ws
    connection = SocketConnection(ws)
    if not drain.add(connection):
        await connection.close(GOING_AWAY, GOING_AWAY_REASON)
    live = request.app[LIVE_WORKSHEETS]
    session = HomeworkSession(request.app, live, connection, row)
    attached = False
    pinger = asyncio.get_running_loop().create_task(_ping(connection))
    try:
        try:
            await live.attach(row.worksheet_id, session.subscriber)
            attached = True
        except WorksheetGone:
            await connection.close(int(CloseCode.ENDED), "the worksheet is gone")
            return ws
        while not session.closed:
            try:
                msg = await ws.receive(timeout=IDLE_TIMEOUT)
            except TimeoutError:
                await ws.close(code=int(CloseCode.NORMAL), message=b"idle")
                break
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await session.receive(msg.data)
            elif msg.type is WSMsgType.ERROR:
                log.info("homework websocket error: %s", type(ws.exception()).__name__)
                break
            else:
                break
    finally:
        pinger.cancel()
        try:
            if attached:
                await live.detach(row.worksheet_id, session.subscriber.key)
            await connection.finish()
            if not ws.closed:
                await ws.close(code=int(WSCloseCode.OK))
        finally:
            drain.discard(connection)
    return ws


async def _ping(connection: SocketConnection) -> None:
    while True:
        await asyncio.sleep(PING_INTERVAL)
        await connection.send(Ping(ts=time.time() * 1000))


def setup(app: web.Application) -> None:
    """Call before ``homework.setup`` (whose ``/homework/{token}`` would catch this)."""
    app.router.add_get("/homework/ws", websocket, name="homework_ws")
