"""In-memory stand-ins for the network: a connection that records, a clock, seats."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from signalling.effects import Handle
from signalling.errors import ErrorCode
from signalling.events import RoomEvent
from signalling.fanout import FanoutUnavailable, LocalFanout
from signalling.lobby import Watcher
from signalling.messages import Error, Hello, MediaState, Message
from signalling.participants import Seat, StateChange
from signalling.parts import DeviceSummary, IceServer, ParticipantState, Role
from signalling.protocol import parse_message
from signalling.rooms import Registry
from signalling.session import RateLimiter, Session
from signalling.switchboard import Switchboard

M = TypeVar("M", bound=Message)

T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
MEDIA = ("offer", "answer", "candidate")
#: What only a participant in a call is ever sent: never a lobby socket.
CALL_ONLY = (*MEDIA, "peer-joined", "peer-left")
SESSION = dt.timedelta(minutes=50)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class RecordingConnection:
    """A ``Connection`` that records what it is sent, and whether and how it was closed.

    Anything sent after the close goes to ``late`` instead of ``sent``.  ``on_send`` is
    called with each message as it arrives, for checks that need the moment of delivery.
    """

    def __init__(self, label: str = "", on_send: Callable[[Message], None] | None = None) -> None:
        self.label = label
        self.sent: list[Message] = []
        #: The frames sent already encoded (``send_frame``), as they came.
        self.frames: list[str] = []
        self.late: list[Message] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._on_send = on_send

    def __repr__(self) -> str:
        return f"<RecordingConnection {self.label} closed={self.close_code}>"

    async def send(self, message: Message) -> None:
        if self.closed:
            self.late.append(message)
            return
        self.sent.append(message)
        if self._on_send is not None:
            self._on_send(message)

    async def send_frame(self, frame: str) -> None:
        if not self.closed:
            self.frames.append(frame)
        await self.send(parse_message(frame))

    def send_now(self, frame: str) -> bool:
        return False  # always the way of ``send_frame``, whose order the tests follow

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.close_code = code
            self.close_reason = reason

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def types(self) -> list[str]:
        return [m.TYPE for m in self.sent]

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.sent if isinstance(m, kind)]

    def last(self, kind: type[M]) -> M:
        found = self.of(kind)
        assert found, f"{self.label} was sent no {kind.TYPE!r}; got {self.types()}"
        return found[-1]

    def clear(self) -> None:
        self.sent.clear()


def client_seat(
    participant: str = "c-1",
    appointment: str = "a-1",
    therapist: str = "t-1",
    *,
    start: dt.datetime = T0,
    name: str = "Alex Morgan",
    welcome: str = "Make yourself comfortable.",
) -> Seat:
    return Seat(
        participant=participant,
        role=Role.CLIENT,
        appointment=appointment,
        therapist=therapist,
        name=name,
        start=start,
        end=start + SESSION,
        welcome=welcome,
    )


def therapist_seat(
    participant: str = "h-1",
    appointment: str = "a-1",
    therapist: str = "t-1",
    *,
    start: dt.datetime = T0,
    name: str = "Sam Rivera",
) -> Seat:
    return Seat(
        participant=participant,
        role=Role.THERAPIST,
        appointment=appointment,
        therapist=therapist,
        name=name,
        start=start,
        end=start + SESSION,
    )


def watcher(therapist: str = "t-1", name: str = "Sam Rivera") -> Watcher:
    """The therapist ``t-1``'s dashboard, unless told otherwise."""
    return Watcher(therapist, name)


@dataclass
class Joined:
    """A connection as a test holds it (a participant's, or a lobby socket): its handle and
    what it received."""

    handle: Handle
    connection: RecordingConnection

    @property
    def participant(self) -> str:
        return self.handle.participant


class Board:
    """A switchboard on an in-process fan-out, with a hand-moved clock and a change log."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.fanout = LocalFanout()
        self.registry = Registry(clock=self.clock)
        self.switchboard = Switchboard(self.fanout, self.registry)
        self.changes: list[StateChange] = []
        self.registry.add_listener(self.changes.append)
        self.events: list[RoomEvent] = []
        self.registry.add_event_listener(self.events.append)

    async def join(
        self,
        seat: Seat,
        *,
        devices: DeviceSummary | None = None,
        ice_servers: Sequence[IceServer] = (),
    ) -> Joined:
        connection = RecordingConnection(seat.participant)
        handle = await self.switchboard.join(
            seat, connection, devices=devices, ice_servers=ice_servers
        )
        return Joined(handle, connection)

    async def watch(self, who: Watcher | None = None, label: str = "dashboard") -> Joined:
        """Open a lobby socket for ``who`` (``t-1``'s dashboard by default)."""
        connection = RecordingConnection(label)
        handle = await self.switchboard.watch(who or watcher(), connection)
        return Joined(handle, connection)

    def state(self, participant: str) -> ParticipantState:
        found = self.registry.participant(participant)
        assert found is not None, f"no participant {participant}"
        return found.state


async def in_call(board: Board) -> tuple[Joined, Joined]:
    """A therapist and their admitted client, in the call, with nothing recorded yet."""
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())
    await board.switchboard.admit(therapist.handle, client.participant)
    therapist.connection.clear()
    client.connection.clear()
    return therapist, client


def media(joined: Joined) -> list[Message]:
    """The offers, answers and candidates a connection received."""
    return [m for m in joined.connection.sent if m.TYPE in MEDIA]


def errors(joined: Joined) -> list[tuple[ErrorCode, str | None]]:
    """The errors a connection received, as (code, id) pairs."""
    return [(e.error, e.id) for e in joined.connection.of(Error)]


class MemoryLeases:
    """``Leases`` over a dict shared by the instances of one test (Redis's stand-in in the
    room logic's tests; ``RedisLeases`` itself is tested against Redis)."""

    def __init__(self, store: dict[str, str], me: str) -> None:
        self.store = store
        self._me = me
        self.down = False

    @property
    def me(self) -> str:
        return self._me

    @property
    def held(self) -> frozenset[str]:
        return frozenset(t for t, owner in self.store.items() if owner == self._me)

    def _check(self) -> None:
        if self.down:
            raise FanoutUnavailable("the leases are unreachable")

    def owner_now(self, therapist: str) -> str | None:
        return None if self.down else self.store.get(therapist)

    async def owner(self, therapist: str) -> tuple[str, bool]:
        self._check()
        if therapist in self.store:
            return self.store[therapist], False
        self.store[therapist] = self._me
        return self._me, True

    async def renew(self, therapists: Iterable[str]) -> list[str]:
        self._check()
        wanted = set(therapists)
        for therapist in self.held - wanted:
            del self.store[therapist]
        lost = []
        for therapist in sorted(wanted):
            owner = self.store.setdefault(therapist, self._me)
            if owner != self._me:
                lost.append(therapist)
        return lost

    async def release(self) -> list[str]:
        held = sorted(self.held)
        for therapist in held:
            del self.store[therapist]
        return held

    def forget(self, therapist: str) -> None:
        pass


def seated(
    switchboard: Switchboard,
    seat: Seat,
    connection: RecordingConnection,
    limiter: RateLimiter | None = None,
) -> Session:
    """A socket's session on ``switchboard``, whose ``hello`` is resolved to ``seat``."""

    async def resolve(hello: Hello) -> Seat | Watcher:
        return seat

    return Session(switchboard, connection, role=seat.role, resolve=resolve, limiter=limiter)


class Call:
    """A therapist and a client, each on a session of their own, on one switchboard."""

    def __init__(
        self,
        *,
        limiter: RateLimiter | None = None,
        therapist_socket: RecordingConnection | None = None,
    ) -> None:
        self.board = Board()
        self.therapist_socket = therapist_socket or RecordingConnection("therapist")
        self.client_socket = RecordingConnection("client")
        switchboard = self.board.switchboard
        self.therapist = seated(switchboard, therapist_seat(), self.therapist_socket)
        self.client = seated(switchboard, client_seat(), self.client_socket, limiter)

    async def start(self, *, admit: bool = True) -> None:
        await self.therapist.receive('{"type":"hello","version":1,"appointment":"a-1"}')
        await self.client.receive('{"type":"hello","version":1}')
        if admit:
            assert self.therapist.handle is not None
            await self.board.switchboard.admit(self.therapist.handle, "c-1")
        self.therapist_socket.clear()
        self.client_socket.clear()


class Held(RecordingConnection):
    """A connection whose first ``media`` waits until released, as a slow send would; with
    ``at_once``, one that writes a frame at once whenever asked (``send_now``), as a socket
    with room in its buffer does, keeping those frames in ``at_once`` as well."""

    def __init__(self, label: str, *, at_once: bool = False) -> None:
        super().__init__(label)
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self._writes_at_once = at_once
        self.at_once: list[str] = []

    def send_now(self, frame: str) -> bool:
        if not self._writes_at_once or self.closed:
            return False
        self.at_once.append(frame)
        self.frames.append(frame)
        self.sent.append(parse_message(frame))
        return True

    async def send(self, message: Message) -> None:
        if isinstance(message, MediaState) and not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        await super().send(message)


async def media_stuck_on_its_way(*, at_once: bool = False) -> tuple[Call, Held, asyncio.Task[None]]:
    """A call whose client's ``media`` message is on its way to the therapist's socket, and
    held there (``Held.release`` lets it go on); the task sending it."""
    held = Held("therapist", at_once=at_once)
    call = Call(therapist_socket=held)
    await call.start()
    media = asyncio.create_task(call.client.receive('{"type":"media","video":"on","screen":false}'))
    await held.holding.wait()
    return call, held, media
