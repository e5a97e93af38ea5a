"""A socket's life: hello first, violations closed with the documented codes."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.lobby import Watcher
from signalling.messages import Error, Hello, Lobby, Pong, Welcome
from signalling.participants import Seat
from signalling.parts import DeviceStatus, DeviceSummary, IceServer, Role
from signalling.protocol import MAX_FRAME_BYTES, encode
from signalling.session import Phase, RateLimiter, Session
from tests.signalling.fakes import (
    Board,
    RecordingConnection,
    client_seat,
    therapist_seat,
    watcher,
)

HELLO = '{"type": "hello", "version": 1}'
HELLO_FOR_A1 = '{"type": "hello", "version": 1, "appointment": "a-1"}'
ICE = (IceServer(urls=("stun:stun.example.org",)),)


class Stopwatch:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def session_for(
    board: Board, role: Role = Role.CLIENT, *, limiter: RateLimiter | None = None
) -> tuple[Session, RecordingConnection, list[Hello]]:
    """A session whose resolver gives the client seat, or for the therapist their watcher
    (no appointment) or their seat for a-1 (any other appointment is not theirs)."""
    hellos: list[Hello] = []

    async def resolve(hello: Hello) -> Seat | Watcher:
        hellos.append(hello)
        if role is Role.CLIENT:
            return client_seat()
        if hello.appointment is None:
            return watcher()
        if hello.appointment != "a-1":
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such appointment")
        return therapist_seat()

    connection = RecordingConnection(role.value)
    session = Session(
        board.switchboard, connection, role=role, resolve=resolve, ice_servers=ICE, limiter=limiter
    )
    return session, connection, hellos


async def test_hello_is_answered_with_welcome() -> None:
    board = Board()
    session, connection, hellos = session_for(board)
    devices = DeviceSummary(camera=DeviceStatus.OK, microphone=DeviceStatus.MISSING)

    await session.receive(encode(Hello(version=1, devices=devices)))

    assert connection.types() == ["welcome", "waiting"]
    assert connection.last(Welcome).ice_servers == ICE
    assert hellos == [Hello(version=1, devices=devices)]
    assert session.handle is not None and not session.closed
    participant = board.registry.participant("c-1")
    assert participant is not None and participant.devices == devices


async def test_a_therapist_names_the_appointment_in_hello() -> None:
    board = Board()
    session, connection, _ = session_for(board, Role.THERAPIST)
    await session.receive('{"type": "hello", "version": 1, "appointment": "a-1"}')
    assert connection.types() == ["welcome", "lobby"]
    assert connection.last(Lobby).participants == ()
    assert connection.last(Welcome).participant == "h-1"
    assert session.phase is Phase.CALL


async def test_a_therapist_hello_without_an_appointment_opens_a_lobby_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = Board()
    await board.join(client_seat())
    session, connection, _ = session_for(board, Role.THERAPIST)
    with caplog.at_level(logging.INFO, logger="signalling.session"):
        await session.receive(HELLO)

        assert connection.types() == ["welcome", "lobby"]
        welcome = connection.last(Welcome)
        assert welcome.lobby and welcome.ice_servers == ()  # no TURN credentials for it
        assert [e.participant for e in connection.last(Lobby).participants] == ["c-1"]
        assert session.phase is Phase.LOBBY
        assert session.handle is not None and session.handle.watcher

        await session.receive('{"type": "offer", "sdp": "v=0", "id": "o"}')
        assert connection.last(Error).error is ErrorCode.FORBIDDEN
        assert not session.closed

        await session.disconnected()
    assert board.registry.role_of(session.handle) is None
    token = session.handle.token
    sessions = [r.getMessage() for r in caplog.records if r.name == "signalling.session"]
    assert [m for m in sessions if "->" in m] == [
        f"therapist session {token}: hello -> lobby",
        f"therapist session {token}: lobby -> closed",
    ]


RESOLVER_BUGS = [
    ("a watcher for a client", Role.CLIENT, HELLO, watcher()),
    ("a watcher for a call page", Role.THERAPIST, HELLO_FOR_A1, watcher()),
    ("a seat for a lobby socket", Role.THERAPIST, HELLO, therapist_seat()),
    ("a seat for another appointment", Role.THERAPIST, HELLO_FOR_A1, therapist_seat("h-2", "a-2")),
    ("a therapist seat for a client", Role.CLIENT, HELLO, therapist_seat()),
    ("a client seat for a therapist", Role.THERAPIST, HELLO_FOR_A1, client_seat()),
]


@pytest.mark.parametrize(
    ("role", "hello", "resolved"),
    [bug[1:] for bug in RESOLVER_BUGS],
    ids=[bug[0] for bug in RESOLVER_BUGS],
)
async def test_a_resolver_contradicting_the_hello_is_a_server_bug(
    role: Role, hello: str, resolved: Seat | Watcher
) -> None:
    board = Board()

    async def resolve(hello: Hello) -> Seat | Watcher:
        return resolved

    session = Session(board.switchboard, RecordingConnection(), role=role, resolve=resolve)
    with pytest.raises(ValueError, match="resolver gave"):
        await session.receive(hello)
    assert session.handle is None


CLIENT_NAMING_APPOINTMENT = '{"type": "hello", "version": 1, "appointment": "a-1"}'
HUGE = json.dumps({"type": "hello", "version": 1, "x": "y" * MAX_FRAME_BYTES})

REFUSED_FIRST = [
    ("a message before hello", '{"type": "ping", "ts": 1}', ErrorCode.BAD_MESSAGE, 1008),
    ("an unknown version", '{"type": "hello", "version": 2}', ErrorCode.UNSUPPORTED_VERSION, 1008),
    ("invalid JSON", "{", ErrorCode.BAD_MESSAGE, 1008),
    ("an unknown type", '{"type": "join"}', ErrorCode.UNKNOWN_TYPE, 1008),
    ("an appointment from a client", CLIENT_NAMING_APPOINTMENT, ErrorCode.FORBIDDEN, 1008),
    ("a binary frame", HELLO.encode(), ErrorCode.BAD_MESSAGE, 1008),
    ("a frame over 64 KiB", HUGE, ErrorCode.TOO_LARGE, 1009),
]


@pytest.mark.parametrize(
    ("frame", "code", "close"),
    [(f, c, n) for _, f, c, n in REFUSED_FIRST],
    ids=[name for name, *_ in REFUSED_FIRST],
)
async def test_a_bad_first_frame_is_answered_and_closed(
    frame: str | bytes, code: ErrorCode, close: int
) -> None:
    board = Board()
    session, connection, _ = session_for(board)
    await session.receive(frame)

    assert [e.error for e in connection.sent if isinstance(e, Error)] == [code]
    assert connection.close_code == close
    assert session.closed and session.handle is None
    assert board.registry.participant("c-1") is None


async def test_a_therapist_naming_an_appointment_not_theirs_is_closed() -> None:
    board = Board()
    session, connection, _ = session_for(board, Role.THERAPIST)
    await session.receive('{"type": "hello", "version": 1, "appointment": "a-2", "id": "x"}')
    assert connection.sent == [
        Error(error=ErrorCode.NOT_FOUND, value="no such appointment", id="x")
    ]
    assert connection.close_code == CloseCode.POLICY_VIOLATION


async def test_a_violation_after_hello_closes_and_lets_the_room_know() -> None:
    board = Board()
    therapist = await board.join(therapist_seat())
    session, connection, _ = session_for(board)
    await session.receive(HELLO)
    therapist.connection.clear()

    await session.receive('{"type": "leave", "extra": 1}')

    assert connection.last(Error).error is ErrorCode.BAD_MESSAGE
    assert connection.close_code == CloseCode.POLICY_VIOLATION
    assert board.state("c-1").value == "left"
    assert therapist.connection.last(Lobby).participants == ()
    await session.receive(HELLO)  # nothing more is read
    assert connection.late == []


async def test_a_second_hello_is_a_violation() -> None:
    session, connection, _ = session_for(Board())
    await session.receive(HELLO)
    await session.receive(HELLO)
    assert connection.close_code == CloseCode.POLICY_VIOLATION


async def test_a_forbidden_message_is_refused_but_the_socket_stays_open() -> None:
    session, connection, _ = session_for(Board())
    await session.receive(HELLO)
    await session.receive('{"type": "admit", "participant": "c-1", "id": "q"}')
    assert connection.last(Error).error is ErrorCode.FORBIDDEN
    assert connection.last(Error).id == "q"
    assert not connection.closed


async def test_ping_is_answered_with_pong() -> None:
    session, connection, _ = session_for(Board())
    await session.receive(HELLO)
    await session.receive('{"type": "ping", "ts": 1772442000000}')
    assert connection.sent[-1] == Pong(ts=1772442000000)


async def test_the_server_pings_after_hello_only() -> None:
    session, connection, _ = session_for(Board())
    await session.ping(1.0)
    assert connection.sent == []
    await session.receive(HELLO)
    await session.ping(2.0)
    assert connection.types()[-1] == "ping"


async def test_messages_over_the_rate_are_dropped_with_rate_limited() -> None:
    clock = Stopwatch()
    session, connection, _ = session_for(Board(), limiter=RateLimiter(2, 3, clock=clock))
    await session.receive(HELLO)
    connection.clear()
    for n in range(5):
        await session.receive(json.dumps({"type": "ping", "ts": n, "id": str(n)}))

    assert [m.TYPE for m in connection.sent] == ["pong"] * 3 + ["error"] * 2
    assert connection.last(Error).error is ErrorCode.RATE_LIMITED
    assert not connection.closed

    clock.now += 0.5  # one more message's worth
    await session.receive('{"type": "ping", "ts": 9}')
    assert connection.sent[-1] == Pong(ts=9)


async def test_disconnected_tells_the_room_once_the_socket_is_gone() -> None:
    board = Board()
    session, _, _ = session_for(board)
    await session.disconnected()  # before hello: nothing to tell
    session, _, _ = session_for(board)
    await session.receive(HELLO)
    await session.disconnected()
    assert board.state("c-1").value == "left"


async def test_a_socket_gone_while_the_resolver_looks_is_never_joined() -> None:
    board = Board()
    looking = asyncio.Event()

    async def resolve(hello: Hello) -> Seat | Watcher:
        await looking.wait()
        return client_seat()

    connection = RecordingConnection()
    session = Session(board.switchboard, connection, role=Role.CLIENT, resolve=resolve)
    hello = asyncio.create_task(session.receive(HELLO))
    await asyncio.sleep(0)
    await session.disconnected()
    looking.set()
    await hello

    assert session.closed and session.handle is None
    assert connection.sent == []
    assert board.registry.participant("c-1") is None
