"""Alcove's side: ``alcove serve`` in its own process, and typists on its session sockets.

The app runs as a separate process (not inside the load generator, as ``bench/join`` has
it) so that its CPU time can be read from ``/proc`` apart from the generator's. Each pair is
a therapist and a client of an appointment that starts now: both sign in (the therapist
through the sign-in form, the client through the join link), say ``hello``, the therapist
admits the client and opens the weekly check-in with ``worksheet-open``. From then on the
two speak the Yjs sync protocol, each message base64'd in a ``yjs`` envelope on the same
socket (docs/PROTOCOL.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from bench.common import migrate_database
from bench.worksheet.load import Link, Pair, stop
from bench.worksheet.typist import Typist
from server.db import create_engine, sessionmaker
from tests.conftest import free_port
from tests.support.arrange import make_appointment, make_therapist

PASSWORD = "benchmark password"  # noqa: S105  (throw-away accounts in a temp database)
ROOT = Path(__file__).resolve().parents[2]

Json = dict[str, Any]


@dataclass(frozen=True)
class Seat:
    """One pair's accounts: the therapist's e-mail, the appointment and its join token."""

    email: str
    appointment: int
    token: str


@dataclass
class Served:
    base_url: str
    pid: int
    seats: list[Seat]
    http: aiohttp.ClientSession = field(init=False)


@contextlib.asynccontextmanager
async def running_alcove(pairs: int) -> AsyncIterator[Served]:
    """``alcove serve`` on a free port, with a fresh SQLite database holding `pairs`
    therapists, each with an appointment starting now."""
    with tempfile.TemporaryDirectory(prefix="alcove-bench-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "ALCOVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/alcove.db",
            "ALCOVE_SECRET_KEY": "bench-" + "s" * 40,
            "ALCOVE_DATA_DIR": tmp,
            "ALCOVE_PUBLIC_URL": base,
            "ALCOVE_HOST": "127.0.0.1",
            "ALCOVE_PORT": str(port),
            "ALCOVE_LOG_LEVEL": "WARNING",
        }
        await migrate_database(env["ALCOVE_DATABASE_URL"])
        seats = await _arrange(env["ALCOVE_DATABASE_URL"], pairs)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None,
        )
        served = Served(base, process.pid, seats)
        served.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            await _wait_healthy(served.http, base, process)
            yield served
        finally:
            await served.http.close()
            await stop(process)


async def _arrange(url: str, pairs: int) -> list[Seat]:
    engine = create_engine(url)
    db = sessionmaker(engine)
    seats: list[Seat] = []
    try:
        now = dt.datetime.now(dt.UTC)
        for index in range(pairs):
            email = f"bench{index}@example.com"
            therapist = await make_therapist(db, email=email, password=PASSWORD)
            appointment, token = await make_appointment(db, therapist.id, starts_at=now)
            seats.append(Seat(email, appointment.id, token))
    finally:
        await engine.dispose()
    return seats


async def _wait_healthy(
    http: aiohttp.ClientSession, base: str, process: asyncio.subprocess.Process
) -> None:
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"alcove serve exited with {process.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError("alcove serve did not become healthy")


async def _cookies(base: str, login: tuple[str, str] | None, token: str | None) -> str:
    """The Cookie header a browser would send to ``/ws`` after signing in or joining."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        if login is not None:
            async with session.get(f"{base}/login") as response:
                html = await response.text()
            marker = 'name="csrf_token" value="'
            start = html.index(marker) + len(marker)
            csrf = html[start : html.index('"', start)]
            form = {"csrf_token": csrf, "email": login[0], "password": login[1]}
            async with session.post(f"{base}/login", data=form, allow_redirects=False) as answer:
                if answer.status != 303:
                    raise RuntimeError(f"sign-in answered {answer.status}")
        else:
            async with session.get(f"{base}/join/{token}", allow_redirects=False) as answer:
                if answer.status != 303:
                    raise RuntimeError(f"the join link answered {answer.status}")
        cookies = session.cookie_jar.filter_cookies(URL(f"{base}/ws"))
        return "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())


class AlcoveLink(Link):
    """The session socket: JSON text frames; Yjs messages base64'd in ``yjs`` envelopes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, typist: Typist) -> None:
        super().__init__(ws, typist)
        self.worksheet: str | None = None
        self.inbox: asyncio.Queue[Json] = asyncio.Queue()

    async def send(self, message: bytes) -> None:
        assert self.worksheet is not None
        data = base64.b64encode(message).decode("ascii")
        await self.ws.send_str(f'{{"type":"yjs","worksheet":"{self.worksheet}","data":"{data}"}}')

    async def send_json(self, message: Json) -> None:
        await self.ws.send_str(json.dumps(message))

    async def unwrap(self, frame: aiohttp.WSMessage) -> bytes | None:
        if frame.type is not aiohttp.WSMsgType.TEXT:
            return None
        message: Json = json.loads(frame.data)
        kind = message["type"]
        if kind == "yjs":
            return base64.b64decode(message["data"])
        if kind == "ping":
            await self.send_json({"type": "pong", "ts": message["ts"]})
        elif kind == "worksheet":
            # As the browser does: keep (or create) the document, send our step 1.
            self.worksheet = message["worksheet"]
            await self.send(self.typist.sync_step1())
        elif kind == "error":
            self.errors.append(f"{message['error']}: {message.get('value', '')}")
        self.inbox.put_nowait(message)
        return None

    async def expect(self, kind: str, within: float = 30.0) -> Json:
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message["type"] == kind:
                    return message
                if message["type"] == "error":
                    raise RuntimeError(f"waiting for {kind}: {message}")


async def connect_pairs(served: Served, field_id: str, template_id: str) -> Sequence[Pair]:
    """A call per seat, admitted, with the worksheet open on both sides."""
    base = served.base_url
    ws_url = base.replace("http", "ws", 1) + "/ws"

    async def link(cookie: str) -> AlcoveLink:
        ws = await served.http.ws_connect(
            ws_url, headers={"Origin": base, "Cookie": cookie}, autoping=True
        )
        connected = AlcoveLink(ws, Typist(field_id))
        connected.start()
        return connected

    async def pair(seat: Seat) -> Pair:
        therapist_cookie = await _cookies(base, (seat.email, PASSWORD), None)
        client_cookie = await _cookies(base, None, seat.token)
        client = await link(client_cookie)
        await client.send_json(
            {"type": "hello", "version": 1, "devices": {"camera": "ok", "microphone": "ok"}}
        )
        await client.expect("welcome")
        therapist = await link(therapist_cookie)
        appointment = f"a-{seat.appointment}"
        await therapist.send_json({"type": "hello", "version": 1, "appointment": appointment})
        await therapist.expect("welcome")
        lobby = await therapist.expect("lobby")
        participant = next(
            entry["participant"]
            for entry in lobby["participants"]
            if entry["appointment"] == appointment
        )
        await therapist.send_json({"type": "admit", "participant": participant})
        await client.expect("admitted")
        await therapist.send_json(
            {"type": "worksheet-open", "appointment": appointment, "template": template_id}
        )
        await asyncio.gather(therapist.expect("worksheet"), client.expect("worksheet"))
        therapist.typist.peer = client.typist
        client.typist.peer = therapist.typist
        return Pair(therapist, client)

    # Sign-ins hash passwords on the server: a few at a time is as fast as all at once.
    limit = asyncio.Semaphore(4)

    async def limited(seat: Seat) -> Pair:
        async with limit:
            return await pair(seat)

    return await asyncio.gather(*(limited(seat) for seat in served.seats))
