"""Our server for the fan-out benchmark: its own process, pairs in calls, idle participants.

The server runs in a process of its own (``bench.fanout.serve``), so that its memory can be
read and it does not share an event loop with the load.  Records are written straight into
its SQLite database, as the tests do; people reach it as a browser would: therapists sign
in through the form, clients follow their join links, both speak the protocol on ``/ws``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import migrate_database
from bench.fanout.relay import VARIANTS, Pair
from server.db import create_engine, sessionmaker
from tests.conftest import free_port
from tests.support.arrange import make_appointment, make_therapist

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "benchmark password"  # noqa: S105  (throw-away accounts in a temp database)
#: Appointments per therapist: each admission updates the lobby of all of them.
PER_THERAPIST = 10


def candidate_frame(size: int, tag: str = "") -> str:
    """A ``candidate`` message of exactly ``size`` bytes, shaped like a browser's; ``tag``
    makes it differ from others."""

    def frame(pad: str) -> str:
        line = f"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx {tag}{pad}"
        body = {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
        return json.dumps({"type": "candidate", "candidate": body}, separators=(",", ":"))

    return frame("x" * max(0, size - len(frame(""))))


def candidate_frames(size: int, side: str) -> list[str]:
    """``VARIANTS`` distinct ``candidate`` frames for one side of a pair."""
    return [candidate_frame(size, f"{side}.{n} ") for n in range(VARIANTS)]


def is_relayed(data: str) -> bool:
    return data.startswith('{"type":"candidate"') or '"type": "candidate"' in data[:30]


def answer_pings(data: str) -> str | None:
    message = json.loads(data)
    if message.get("type") == "ping":
        return json.dumps({"type": "pong", "ts": message["ts"]})
    if message.get("type") == "error":
        raise RuntimeError(f"the server refused a message: {message}")
    return None


@dataclass
class Server:
    url: str
    pid: int
    db: async_sessionmaker[AsyncSession]
    #: The websocket endpoint; on a second instance, its own port (``url`` is the first's).
    ws_url: str = ""

    def __post_init__(self) -> None:
        self.ws_url = self.ws_url or f"{self.url.replace('http', 'ws', 1)}/ws"


@contextlib.asynccontextmanager
async def running_server(**env: str) -> AsyncIterator[Server]:
    """``bench.fanout.serve`` on a free port with a fresh SQLite database."""
    async with running_servers(1, **env) as servers:
        yield servers[0]


@contextlib.asynccontextmanager
async def running_servers(
    count: int, *, wrapper: Sequence[str] = (), **env: str
) -> AsyncIterator[list[Server]]:
    """``count`` instances of ``bench.fanout.serve`` sharing one fresh SQLite database (and,
    through ``ALCOVE_REDIS_URL`` in ``env``, their rooms), each on a free port.  They stand
    behind one address as behind a load balancer: the first's ``url`` is every instance's
    public URL, so a browser's cookies and ``Origin`` are good on each.  ``wrapper``, if
    given, is the command each instance's Python runs under (``valgrind`` and its
    options)."""
    with tempfile.TemporaryDirectory(prefix="alcove-fanout-") as tmp:
        ports = [free_port() for _ in range(count)]
        database = f"sqlite+aiosqlite:///{tmp}/alcove.db"
        public = f"http://127.0.0.1:{ports[0]}"
        await migrate_database(database)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
        environ.update(
            ALCOVE_DATABASE_URL=database,
            ALCOVE_SECRET_KEY="bench-" + "s" * 40,
            ALCOVE_DATA_DIR=tmp,
            ALCOVE_PUBLIC_URL=public,
            ALCOVE_LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
            **env,
        )
        processes = [
            await asyncio.create_subprocess_exec(
                *wrapper,
                sys.executable,
                "-m",
                "bench.fanout.serve",
                cwd=tmp,
                env={**environ, "ALCOVE_PORT": str(port)},
                stdout=asyncio.subprocess.DEVNULL,
            )
            for port in ports
        ]
        engine = create_engine(database)
        try:
            servers = []
            for port, process in zip(ports, processes, strict=True):
                own = f"http://127.0.0.1:{port}"
                await _wait_ready(own, process)
                db = sessionmaker(engine)
                servers.append(Server(public, process.pid, db, f"ws://127.0.0.1:{port}/ws"))
            yield servers
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                await process.wait()
            await engine.dispose()


async def _wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


class People:
    """The HTTP sessions and sockets the benchmark opened, closed together."""

    def __init__(self) -> None:
        self.connector = aiohttp.TCPConnector(limit=0)
        self.sessions: list[aiohttp.ClientSession] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.therapists = 0

    def session(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=self.connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        self.sessions.append(session)
        return session

    async def therapist(self, server: Server) -> tuple[int, aiohttp.ClientSession]:
        self.therapists += 1
        email = f"therapist{self.therapists}@example.com"
        therapist = await make_therapist(server.db, email=email, password=PASSWORD)
        http = self.session()
        async with http.get(f"{server.url}/login") as response:
            html = await response.text()
        marker = 'name="csrf_token" value="'
        start = html.index(marker) + len(marker)
        form = {"csrf_token": html[start : html.index('"', start)], "email": email}
        form["password"] = PASSWORD
        async with http.post(f"{server.url}/login", data=form, allow_redirects=False) as response:
            if response.status != 303:
                raise RuntimeError(f"sign-in failed with {response.status}")
        return therapist.id, http

    async def client(self, server: Server, therapist_id: int) -> tuple[int, aiohttp.ClientSession]:
        now = dt.datetime.now(dt.UTC)
        appointment, token = await make_appointment(server.db, therapist_id, starts_at=now)
        http = self.session()
        async with http.get(f"{server.url}/join/{token}", allow_redirects=False) as response:
            if response.status != 303:
                raise RuntimeError(f"the join link answered {response.status}")
        return appointment.id, http

    async def socket(
        self, server: Server, http: aiohttp.ClientSession, **hello: Any
    ) -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(server.ws_url, headers={"Origin": server.url})
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "version": 1, **hello}))
        await expect(ws, "welcome")
        return ws

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
        await self.connector.close()


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of type ``kind``, skipping others (and answering pings)."""
    async with asyncio.timeout(30):
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket ended while waiting for {kind}: {message!r}")
            data: dict[str, Any] = json.loads(message.data)
            if data["type"] == kind:
                return data
            if data["type"] == "ping":
                await ws.send_str(json.dumps({"type": "pong", "ts": data["ts"]}))


async def pairs_in_calls(
    server: Server, people: People, count: int, size: int, *, clients_on: Server | None = None
) -> list[Pair]:
    """``count`` therapist–client pairs, each admitted and in its call; the clients'
    sockets on ``clients_on`` (another instance) if given."""
    needed = (count + PER_THERAPIST - 1) // PER_THERAPIST
    therapists = [await people.therapist(server) for _ in range(needed)]
    devices = {"camera": "ok", "microphone": "ok"}
    pairs: list[Pair] = []
    for number in range(count):
        therapist_id, therapist_http = therapists[number // PER_THERAPIST]
        appointment_id, client_http = await people.client(server, therapist_id)
        client = await people.socket(clients_on or server, client_http, devices=devices)
        host = await people.socket(server, therapist_http, appointment=f"a-{appointment_id}")
        await host.send_str(json.dumps({"type": "admit", "participant": f"c-{appointment_id}"}))
        await expect(host, "peer-joined")
        await expect(client, "peer-joined")
        frames = candidate_frames(size, f"{number}h"), candidate_frames(size, f"{number}c")
        pairs.append(Pair(host, client, *frames))
    await _drain(people.sockets)
    return pairs


async def _drain(sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    """Read what is left from the set-up (lobby updates) so the load starts clean."""
    for ws in sockets:
        while True:
            try:
                message = await ws.receive(timeout=0.05)
            except TimeoutError:
                break
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket ended during set-up: {message!r}")


async def idle_participants(server: Server, people: People, count: int) -> None:
    """``count`` clients, each in the waiting room of an appointment of their own."""
    therapists = [await people.therapist(server) for _ in range(count // 100 or 1)]
    clients = [
        await people.client(server, therapists[n % len(therapists)][0]) for n in range(count)
    ]
    devices = {"camera": "ok", "microphone": "ok"}
    for start in range(0, count, 100):
        batch = clients[start : start + 100]
        await asyncio.gather(*(people.socket(server, http, devices=devices) for _id, http in batch))
