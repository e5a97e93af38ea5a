"""The `/ws` endpoint, over real websockets to the app on a real port: who may open a
socket, which room a participant cookie leads to, and how protocol violations close it."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import sessions
from server import ws as ws_endpoint
from server.app import create_app
from server.calls import AUDIT_WRITER
from server.join import PARTICIPANT_COOKIE
from server.keys import SESSIONMAKER
from server.models import Appointment, Therapist
from server.tokens import new_token
from tests.conftest import FakeClock, LiveServer, free_port, make_settings
from tests.support.arrange import make_appointment
from tests.support.signalling_client import (
    Json,
    SignallingClient,
    client_session,
)

MAX_FRAME_BYTES = 64 * 1024
_pings = itertools.count(1)


class Cast:
    """The app on a real port, reading a clock the test moves, and every HTTP session and
    socket the test opens on it (all closed at the end)."""

    def __init__(self, live: LiveServer, clock: FakeClock) -> None:
        self.live = live
        self.clock = clock
        self._http: list[aiohttp.ClientSession] = []
        self._sockets: list[SignallingClient] = []

    @property
    def url(self) -> str:
        return self.live.url

    def http(self, cookies: dict[str, str] | None = None) -> aiohttp.ClientSession:
        """An HTTP session with no sign-in, holding ``cookies``."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        if cookies:
            session.cookie_jar.update_cookies(cookies)
        self._http.append(session)
        return session

    async def therapist_http(self, email: str) -> aiohttp.ClientSession:
        """An HTTP session signed in as the therapist: the session the sign-in form starts
        (without the form, whose password check is slow by design)."""
        async with self.live.app[SESSIONMAKER]() as db, db.begin():
            therapist = await db.scalar(select(Therapist).where(Therapist.email == email))
            assert therapist is not None, email
            cookie = await sessions.start(db, therapist, self.clock())
        return self.http({sessions.SESSION_COOKIE: cookie})

    async def client_http(self, token: str) -> aiohttp.ClientSession:
        session = await client_session(self.url, token)
        self._http.append(session)
        return session

    async def connect(
        self, http: aiohttp.ClientSession, *, origin: str | None = None
    ) -> SignallingClient:
        socket = SignallingClient(http, self.url)
        self._sockets.append(socket)
        await socket.connect(origin=origin or self.url)
        return socket

    async def client(self, token: str, **hello: Any) -> SignallingClient:
        """A client who opened their join link and said ``hello`` (``welcome`` taken)."""
        socket = await self.connect(await self.client_http(token))
        await socket.hello(**hello)
        return socket

    async def therapist(
        self, email: str, appointment: Appointment | None = None
    ) -> SignallingClient:
        """A signed-in therapist's call page for ``appointment``, or their dashboard's lobby
        socket without one (``welcome`` taken)."""
        socket = await self.connect(await self.therapist_http(email))
        if appointment is None:
            await socket.hello()
        else:
            await socket.hello(appointment=ref(appointment))
        return socket

    async def flush_audit(self) -> None:
        await self.live.app[AUDIT_WRITER].flush()

    async def aclose(self) -> None:
        for socket in self._sockets:
            await socket.close()
        for session in self._http:
            await session.close()


@contextlib.asynccontextmanager
async def serving(database_url: str, data_dir: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    """``create_app(settings, clock=clock)`` on a free port, as ``live_server`` is served."""
    port = free_port()
    settings = make_settings(database_url, data_dir, ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    server = TestServer(create_app(settings, clock=clock), host="127.0.0.1", port=port)
    await server.start_server()
    cast = Cast(LiveServer(settings, server), clock)
    try:
        yield cast
    finally:
        await cast.aclose()
        await server.close()


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


def ref(appointment: Appointment) -> str:
    """The appointment id the protocol uses for ``appointment``."""
    return f"a-{appointment.id}"


async def therapist_with(
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    email: str,
    *clients: str,
    starts_in: dt.timedelta = dt.timedelta(0),
    welcome: str = "",
) -> tuple[Therapist, list[tuple[Appointment, str]]]:
    """A therapist and, per client name, an appointment with its join token.  The first
    starts ``starts_in`` from now and each next one an hour before: they do not overlap, and
    all their join links are open now."""
    async with db() as session, session.begin():
        therapist = Therapist(
            email=email,
            display_name=f"Therapist {email}",
            timezone="Europe/London",
            password_hash="",  # no password: ``Cast.therapist_http`` signs them in
            welcome_text=welcome,
        )
        session.add(therapist)
    appointments = [
        await make_appointment(
            db,
            therapist.id,
            starts_at=clock.now + starts_in - dt.timedelta(hours=number),
            client_name=name,
            client_email=f"client{number}.{email}",
        )
        for number, name in enumerate(clients)
    ]
    return therapist, appointments


async def round_trip(*sockets: SignallingClient) -> None:
    """Ping each socket and wait for its pong: whatever the server sent it earlier is in."""
    for socket in sockets:
        ts = next(_pings)
        await socket.send({"type": "ping", "ts": ts})
        assert (await socket.expect("pong"))["ts"] == ts


def kinds(socket: SignallingClient) -> list[str]:
    """The types of everything the socket received, but the liveness chatter."""
    return [m["type"] for m in socket.received if m["type"] not in ("ping", "pong")]


async def refused_handshake(http: aiohttp.ClientSession, url: str, origin: str | None) -> int:
    """The HTTP status a websocket handshake with ``origin`` (no header for ``None``) gets."""
    headers = {} if origin is None else {"Origin": origin}
    ws_url = url.replace("http", "ws", 1) + "/ws"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(ws_url, headers=headers)
    return refused.value.status


ORIGINS: dict[str, Callable[[str], str | None]] = {
    "foreign": lambda _url: "https://evil.example",
    "other-port": lambda url: url.rsplit(":", 1)[0] + ":1",
    "other-host": lambda url: url.replace("127.0.0.1", "localhost"),
    "other-scheme": lambda url: url.replace("http", "https", 1),
    "null": lambda _url: "null",
    "none": lambda _url: None,
}


@pytest.mark.parametrize("origin", ORIGINS)
async def test_a_handshake_from_a_foreign_origin_or_none_is_refused_with_403(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, origin: str
) -> None:
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    http = await cast.client_http(token)

    status = await refused_handshake(http, cast.url, ORIGINS[origin](cast.url))

    assert status == 403
    welcome = await (await cast.connect(http, origin=cast.url)).hello()
    assert welcome["role"] == "client"


@pytest.mark.parametrize(
    "cookies",
    [{}, {PARTICIPANT_COOKIE: new_token()}, {sessions.SESSION_COOKIE: new_token()}],
    ids=["no-cookie", "forged-participant-cookie", "forged-session-cookie"],
)
async def test_a_handshake_without_a_valid_cookie_is_refused_with_401(
    cast: Cast, cookies: dict[str, str]
) -> None:
    status = await refused_handshake(cast.http(cookies), cast.url, cast.url)

    assert status == 401


async def test_a_client_cookie_is_seated_only_in_its_own_appointment_and_may_not_name_one(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(mine, token), (other, _)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", "Jordan Lee"
    )
    http = await cast.client_http(token)
    seated = await cast.connect(http)

    welcome = await seated.hello()

    assert (welcome["role"], welcome["appointment"]) == ("client", ref(mine))
    for named in (other, mine):
        naming = await cast.connect(http)
        await naming.send({"type": "hello", "version": 1, "appointment": ref(named), "id": "h"})
        assert await naming.wait_closed() == 1008
        assert [(m["type"], m.get("error"), m.get("id")) for m in naming.received] == [
            ("error", "forbidden", "h")
        ]
    await round_trip(seated)  # the seated socket was neither replaced nor moved
    assert kinds(seated) == ["welcome", "waiting"]


async def test_a_client_of_another_appointment_receives_nothing_of_this_room(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(room, room_token), (_, other_token)] = await therapist_with(
        db, clock, "sam@example.com", "Alex Morgan", "Jordan Lee"
    )
    outsider = await cast.client(other_token)
    insider = await cast.client(room_token, devices={"camera": "ok", "microphone": "ok"})
    call_page = await cast.therapist("sam@example.com", room)
    lobby = await call_page.expect("lobby")
    [entry] = [e for e in lobby["participants"] if e["appointment"] == ref(room)]

    await call_page.send({"type": "message", "participant": entry["participant"], "text": "Hi"})
    await insider.expect("message-to-waiting")
    await call_page.send({"type": "admit", "participant": entry["participant"]})
    await insider.expect("peer-joined")
    await call_page.send({"type": "offer", "sdp": "v=0\r\n"})
    await insider.send({"type": "answer", "sdp": "v=0\r\n"})
    await insider.send({"type": "candidate", "candidate": None})
    await call_page.expect("answer")
    await call_page.send({"type": "end", "appointment": ref(room)})
    await insider.wait_closed()

    await round_trip(outsider)
    assert kinds(outsider) == ["welcome", "waiting"]
    assert outsider.received[0]["appointment"] != ref(room)
    seen = json.dumps(outsider.received)
    assert ref(room) not in seen
    assert entry["participant"] not in seen
    assert "Alex Morgan" not in seen


async def test_a_frame_over_64_kib_closes_the_socket_with_1009(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    socket = await cast.client(token)
    assert socket.ws is not None
    frame = '{"type": "ping", "ts": 7}'
    at_the_limit = frame + " " * (MAX_FRAME_BYTES - len(frame))
    await socket.ws.send_str(at_the_limit)
    assert (await socket.expect("pong"))["ts"] == 7  # 64 KiB exactly is still fine

    await socket.ws.send_str(at_the_limit + " ")

    assert await socket.wait_closed() == 1009


@pytest.mark.parametrize(
    "frame",
    ["{not json", '{"type": "ping", "ts": 1', "[1, 2]", '{"type": "ping", "ts": 1, "ts": 2}'],
    ids=["garbage", "truncated", "not-an-object", "repeated-key"],
)
async def test_malformed_json_gets_bad_message_then_close_1008(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, frame: str
) -> None:
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    socket = await cast.client(token)
    assert socket.ws is not None

    await socket.ws.send_str(frame)

    assert await socket.wait_closed() == 1008
    assert socket.received[-1]["type"] == "error"
    assert socket.received[-1]["error"] == "bad-message"


@pytest.mark.parametrize("role", ["client", "therapist"])
async def test_a_message_before_hello_gets_bad_message_then_close_1008(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, role: str
) -> None:
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    if role == "client":
        http = await cast.client_http(token)
    else:
        http = await cast.therapist_http("sam@example.com")
    socket = await cast.connect(http)

    await socket.send({"type": "ping", "ts": 1, "id": "early"})

    assert await socket.wait_closed() == 1008
    assert [(m["type"], m.get("error"), m.get("id")) for m in socket.received] == [
        ("error", "bad-message", "early")
    ]


@pytest.mark.parametrize("role", ["client", "therapist"])
async def test_a_participant_who_connects_twice_keeps_only_the_newer_socket(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, role: str
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    if role == "client":
        http = await cast.client_http(token)
        hello: Json = {}
    else:
        http = await cast.therapist_http("sam@example.com")
        hello = {"appointment": ref(appointment)}
    older = await cast.connect(http)
    first = await older.hello(**hello)
    newer = await cast.connect(http)

    second = await newer.hello(**hello)

    assert await older.wait_closed() == 4001
    assert older.received[-1]["type"] == "error"
    assert older.received[-1]["error"] == "replaced"
    assert second["participant"] == first["participant"]
    await round_trip(newer)
    assert newer.close_code is None


async def test_a_socket_on_which_nothing_arrives_is_closed_with_1000_once_idle(
    cast: Cast,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_endpoint, "IDLE_TIMEOUT", 0.5)
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    socket = await cast.client(token)

    assert await socket.wait_closed() == 1000
    assert socket.ws is not None and socket.ws.close_code == 1000


async def test_a_socket_that_answers_the_pings_stays_open_past_the_idle_timeout(
    cast: Cast,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_endpoint, "PING_INTERVAL", 0.1)
    monkeypatch.setattr(ws_endpoint, "IDLE_TIMEOUT", 1.0)
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    socket = await cast.client(token)  # answers every ping with a pong

    for _ in range(20):  # two seconds of pings, twice the idle timeout
        await socket.expect("ping")
    await round_trip(socket)

    assert not socket.closed.is_set()


async def test_replies_to_a_burst_of_messages_arrive_in_the_order_sent(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    _, [(_, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    socket = await cast.client(token)
    assert socket.ws is not None
    burst = range(1, 61)

    for ts in burst:  # without waiting: the replies are written while others are queued
        await socket.ws.send_str(json.dumps({"type": "ping", "ts": ts}))

    assert [(await socket.expect("pong"))["ts"] for _ in burst] == list(burst)
