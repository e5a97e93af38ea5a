"""``alcove serve`` as a real process on a fixed port, which the benchmark stops and starts.

A restart is only a restart if the server is a process that really exits: an in-process
test server would keep the event loop, the imports and the database engine warm.  The
process gets the environment a deployment would give it (SQLite in a temp dir, a drain time
of five seconds, join windows wide enough that the appointment stays open), and its output
goes to a log file that is shown if it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from server import accounts
from server.db import create_engine, sessionmaker
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, Client, JoinToken
from server.tokens import new_token, token_hash

ALCOVE = Path(sys.executable).with_name("alcove")
#: Signs the cookies of a throw-away instance.
SECRET = "bench-reconnect-" + "k" * 40
DRAIN_SECONDS = 5
#: How often readiness is polled: the resolution of "new process ready".
POLL_SECONDS = 0.01


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Booking:
    """What people need to reach the call: the therapist's account and the client's link."""

    email: str
    password: str
    appointment: str
    join_token: str


async def prepare_database(database_url: str) -> Booking:
    """Migrate a fresh database; one therapist with one appointment starting now."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        email, password = "bench.reconnect@example.com", "benchmark password"
        token = new_token()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        async with sessionmaker(engine)() as db, db.begin():
            therapist = await accounts.create_therapist(
                db, email=email, name="Bench Therapist", timezone="UTC", password=password
            )
            client = Client(
                therapist_id=therapist.id, name="Bench Client", email="client@example.com"
            )
            db.add(client)
            await db.flush()
            appointment = Appointment(
                therapist_id=therapist.id,
                client_id=client.id,
                starts_at=now,
                ends_at=now + dt.timedelta(minutes=50),
                status=AppointmentStatus.SCHEDULED.value,
            )
            db.add(appointment)
            await db.flush()
            db.add(
                JoinToken(
                    appointment_id=appointment.id,
                    token_hash=token_hash(token),
                    expires_at=appointment.ends_at + dt.timedelta(hours=2),
                )
            )
            reference = f"a-{appointment.id}"
    finally:
        await engine.dispose()
    return Booking(email, password, reference, token)


class Server:
    """One ``alcove serve`` process at a time on ``port``, restartable."""

    def __init__(self, database_url: str, workdir: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.log = workdir / "serve.log"
        self.process: asyncio.subprocess.Process | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
        self.env.update(
            ALCOVE_DATABASE_URL=database_url,
            ALCOVE_SECRET_KEY=SECRET,
            ALCOVE_DATA_DIR=str(workdir / "var"),
            ALCOVE_HOST="127.0.0.1",
            ALCOVE_PORT=str(port),
            ALCOVE_PUBLIC_URL=self.url,
            ALCOVE_JOIN_EARLY_MINUTES="180",
            ALCOVE_JOIN_GRACE_MINUTES="180",
            ALCOVE_SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
            ALCOVE_LOG_LEVEL="INFO",
        )

    def output(self) -> str:
        """The end of the server's log, for error messages."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    async def start(self) -> None:
        """Spawn the process and return once ``/readyz`` answers 200."""
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(ALCOVE), "serve", env=self.env, cwd=self.workdir, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 60
        # A fresh connection per probe: a kept-alive one would delay the next shutdown.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"alcove serve exited early:\n{self.output()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"alcove serve never became ready:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(POLL_SECONDS)

    async def terminate(self) -> int:
        """SIGTERM, as an orchestrator stops a container; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.process.wait()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def sign_in(url: str, email: str, password: str) -> aiohttp.ClientSession:
    """A cookie jar signed in as the therapist, through the sign-in form as a browser does."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{url}/login") as response:
        page = await response.text()
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    form = {"csrf_token": page[start : page.index('"', start)], "email": email}
    form["password"] = password
    async with http.post(f"{url}/login", data=form, allow_redirects=False) as response:
        if response.status != 303:
            await http.close()
            raise RuntimeError(f"sign-in answered {response.status}")
    return http


async def follow_join_link(url: str, token: str) -> aiohttp.ClientSession:
    """A cookie jar holding the client's participant cookie, from the join link."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{url}/join/{token}", allow_redirects=False) as response:
        if response.status != 303:
            await http.close()
            raise RuntimeError(f"the join link answered {response.status}")
    return http
