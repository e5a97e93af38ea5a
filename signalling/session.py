"""One socket's life, from ``hello`` to close, independent of the web framework.

The websocket handler authenticates the handshake, makes a ``Session`` with the role that
authentication established, and hands it every frame; it calls ``disconnected`` when the
socket is gone.  The session answers protocol violations with ``error`` and the close code
of ``docs/PROTOCOL.md``, enforces ``hello`` first and the message rate, and passes
everything else to the switchboard.

::

    hello ──hello──> call    (a participant's socket: the resolver gave a Seat)
      │  └──hello──> lobby   (a therapist's lobby socket: the resolver gave a Watcher)
      └──────────────────┴──> closed   (a violation, or the socket went away)
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from signalling.delivery import Connection
from signalling.effects import Handle
from signalling.errors import FATAL, CloseCode, ErrorCode, ProtocolError
from signalling.lobby import Watcher
from signalling.messages import Candidate, Hello, Message, Ping
from signalling.participants import Seat
from signalling.parts import IceServer, Role
from signalling.protocol import (
    CANDIDATE_PREFIX,
    RATE_BURST,
    RATE_PER_SECOND,
    YJS_PREFIX,
    error_for,
    expect_hello,
    parse_message,
    plain_candidate,
    plain_yjs,
)
from signalling.switchboard import Switchboard
from signalling.worksheet_messages import Editing, Yjs

log = logging.getLogger(__name__)

#: Finds who a ``hello`` speaks for, given who the cookie authenticated: the ``Seat`` of a
#: client, or of a therapist's ``hello`` naming an appointment; the therapist's ``Watcher``
#: for a therapist's ``hello`` without one (a lobby socket).  Raises
#: ``ProtocolError(NOT_FOUND)`` when the appointment is not theirs.
Resolver = Callable[[Hello], Awaitable[Seat | Watcher]]


#: The rate for ``yjs`` and ``editing``: a browser coalesces keystrokes (about 20 a second).
SYNC_RATE_PER_SECOND = 60
SYNC_RATE_BURST = 300


#: The messages counted against the worksheet bucket.
_SYNC_TYPES = frozenset({Yjs, Editing})


class Phase(enum.StrEnum):
    """Where a session stands: before ``hello``, a call or lobby socket, or closed."""

    HELLO = "hello"
    CALL = "call"
    LOBBY = "lobby"
    CLOSED = "closed"


ALLOWED_PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.HELLO: frozenset({Phase.CALL, Phase.LOBBY, Phase.CLOSED}),
    Phase.CALL: frozenset({Phase.CLOSED}),
    Phase.LOBBY: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class RateLimiter:
    """A token bucket: ``rate`` messages a second on average, bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float = RATE_PER_SECOND,
        burst: int = RATE_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Session:
    """The protocol state of one socket: before ``hello``, joined, or closed."""

    def __init__(
        self,
        switchboard: Switchboard,
        connection: Connection,
        *,
        role: Role,
        resolve: Resolver,
        ice_servers: Sequence[IceServer] = (),
        limiter: RateLimiter | None = None,
    ) -> None:
        self._switchboard = switchboard
        self._connection = connection
        self._role = role
        self._resolve = resolve
        self._ice_servers = tuple(ice_servers)
        self._limiter = limiter if limiter is not None else RateLimiter()
        #: Worksheet typing has its own, larger bucket, so that it never starves signalling.
        self._sync_limiter = RateLimiter(SYNC_RATE_PER_SECOND, SYNC_RATE_BURST)
        self._handle: Handle | None = None
        self._phase = Phase.HELLO
        #: Whether the session is over: it closed the socket itself (after a violation), or
        #: was told the socket is gone.  An attribute, not a property: the socket's reader
        #: asks after every frame.
        self.closed = False

    @property
    def handle(self) -> Handle | None:
        """The connection's address once ``hello`` was answered."""
        return self._handle

    @property
    def phase(self) -> Phase:
        return self._phase

    async def receive(self, frame: str | bytes) -> None:
        """Handle one frame from the browser."""
        if self._phase is Phase.CLOSED:
            return
        if type(frame) is not str:
            await self._fail(ProtocolError(ErrorCode.BAD_MESSAGE, "binary frames are refused"))
            return
        # The commonest frames take a short way when written as a browser writes them: a
        # candidate is passed on as it came (to the other participant in the call, or to the
        # instance holding the rooms), a keystroke goes to its worksheet unparsed.
        handle = self._handle
        if handle is not None:
            if frame.startswith(CANDIDATE_PREFIX):
                # Where it goes is found, and a peer's socket with room written to, in one
                # synchronous step: no coroutine for the commonest frame of all.
                switchboard = self._switchboard
                lane = switchboard.relay_here(handle)
                if lane is not None:
                    if plain_candidate(frame) and self._limiter.allow():
                        switchboard.relaying(Candidate.TYPE)
                        # ``Switchboard.relay_now``, in line: a call more costs one instance
                        # 1.4% more instructions a relayed message.
                        connection = lane[1]
                        if (
                            not connection.send_now(frame)
                            if connection is not None
                            else not switchboard.pass_on_now(lane[0], Candidate.TYPE, frame)
                        ):
                            await switchboard.relay_frame(handle, lane, Candidate.TYPE, frame)
                        return
                elif (
                    switchboard.forwards(handle)
                    and plain_candidate(frame)
                    and self._limiter.allow()
                ):
                    switchboard.relaying(Candidate.TYPE)
                    if not switchboard.forward_now(handle, frame):
                        await self._forward(handle, frame)
                    return
            elif frame.startswith(YJS_PREFIX) and await self._keystroke(handle, frame):
                return
        try:
            message = parse_message(frame)
        except ProtocolError as exc:
            await self._fail(exc)
            return
        if self._handle is None:
            await self._hello(message)
        elif isinstance(message, Hello):
            error = ProtocolError(ErrorCode.BAD_MESSAGE, "hello was already received")
            await self._fail(error, message)
        elif not (self._sync_limiter if type(message) in _SYNC_TYPES else self._limiter).allow():
            error = ProtocolError(ErrorCode.RATE_LIMITED, f"{message.TYPE} dropped: slow down")
            await self._switchboard.send(self._handle, error_for(error, message))
        else:
            await self._switchboard.receive(self._handle, message)

    async def _forward(self, handle: Handle, frame: str) -> None:
        """Pass a ``plain_candidate`` frame on unparsed to the instance holding the rooms,
        when that could not be done in one step (``Switchboard.forward_now``)."""
        switchboard = self._switchboard
        if not await switchboard.forward_frame(handle, frame):
            await switchboard.receive_here(handle, parse_message(frame))  # held here after all

    async def _keystroke(self, handle: Handle, frame: str) -> bool:
        """Hand a ``yjs`` frame to the worksheet without parsing it into a message, if it is
        written as a browser writes one and its worksheet is open here for the sender
        (``Switchboard.keystroke``); whether it was."""
        switchboard = self._switchboard
        sender = switchboard.worksheet_lane(handle)
        if sender is None:
            return False
        fields = plain_yjs(frame)
        if fields is None or not self._sync_limiter.allow():
            return False  # the full way says what is wrong, or that it is too fast
        # One the worksheet does not take here (the sender's first, before it has the
        # worksheet open) takes the full way, and so counts twice against the rate.
        return await switchboard.keystroke(sender, fields[0], fields[1], frame)

    async def ping(self, ts: float) -> None:
        """Send the periodic ``ping``."""
        if self._handle is not None and not self.closed:
            await self._switchboard.send(self._handle, Ping(ts=ts))

    async def disconnected(self) -> None:
        """The socket is gone, whoever closed it."""
        if not self.closed:
            self._become(Phase.CLOSED)
            await self._release()

    async def _hello(self, message: Message) -> None:
        try:
            hello = expect_hello(message, self._role)
            resolved = await self._resolve(hello)
        except ProtocolError as exc:
            await self._fail(exc, message, code=CloseCode.POLICY_VIOLATION)
            return
        if self.closed:
            return  # the socket went away while the resolver was looking
        try:
            await self._take_seat(hello, resolved)
        except ProtocolError as exc:  # the fan-out is down: the browser comes back later
            await self._fail(exc, message, code=CloseCode.TRY_AGAIN_LATER)

    async def _take_seat(self, hello: Hello, resolved: Seat | Watcher) -> None:
        if isinstance(resolved, Watcher):
            if self._role is not Role.THERAPIST or hello.appointment is not None:
                raise ValueError(f"resolver gave a watcher to a {self._role} call socket")
            await self._opened(await self._switchboard.watch(resolved, self._connection))
            return
        if resolved.role is not self._role:
            raise ValueError(f"resolver gave a {resolved.role} seat to a {self._role} socket")
        if self._role is Role.THERAPIST and resolved.appointment != hello.appointment:
            raise ValueError(
                f"resolver gave a seat for {resolved.appointment} to a hello for "
                f"{hello.appointment or 'a lobby socket'}"
            )
        handle = await self._switchboard.join(
            resolved, self._connection, ice_servers=self._ice_servers, devices=hello.devices
        )
        await self._opened(handle)

    async def _opened(self, handle: Handle) -> None:
        self._handle = handle
        if self.closed:  # the socket went away meanwhile
            await self._release()
        else:
            self._become(Phase.LOBBY if handle.watcher else Phase.CALL)

    async def _release(self) -> None:
        if self._handle is not None:
            await self._switchboard.disconnect(self._handle)

    def _become(self, new: Phase) -> None:
        old = self._phase
        if new not in ALLOWED_PHASES[old]:
            raise ValueError(f"a {self._role} session cannot go from {old} to {new}")
        self._phase = new
        self.closed = new is Phase.CLOSED
        log.info("%s session %s: %s -> %s", self._role.value, self._label(), old.value, new.value)

    def _label(self) -> str:
        return self._handle.token if self._handle is not None else "(no hello yet)"

    async def _fail(
        self, exc: ProtocolError, reply_to: Message | None = None, *, code: CloseCode | None = None
    ) -> None:
        """Answer a violation with ``error``, close the socket, and let the room know."""
        if self.closed:
            return
        self._become(Phase.CLOSED)
        close_code = code or FATAL.get(exc.code, CloseCode.POLICY_VIOLATION)
        log.info("closing a %s socket with %d: %s", self._role.value, close_code, exc)
        await self._connection.send(error_for(exc, reply_to))
        await self._connection.close(int(close_code), exc.code.value)
        await self._release()
