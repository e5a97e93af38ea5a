"""Several Alcove instances as real processes: one PostgreSQL database and one Redis server
shared between them, the Redis one started for the test alone so that it can be stopped and
started again while the instances run.

``alcove_instance`` serves like ``tests.server.test_shutdown.alcove_serve``, with the
settings that make an instance one of several: ``ALCOVE_REDIS_URL``, and a metrics token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url

from tests.conftest import (
    DEFAULT_POSTGRES_URL,
    TEST_DATABASE_URL,
    TEST_SECRET,
    _pg_admin,
    free_port,
    is_postgres,
)
from tests.support.signalling_client import Json, SignallingClient

ALCOVE = Path(sys.executable).with_name("alcove")
REDIS_SERVER = "redis-server"
#: How long any one step may take on a loaded machine before the test gives up on it.
DEADLINE = 20.0
DRAIN_SECONDS = 5
METRICS_TOKEN = "instances-metrics-" + "m" * 24

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = DEADLINE
) -> T:
    """Call ``probe`` every tenth of a second until it returns something other than ``None``;
    that.  An ``AssertionError`` naming ``what`` if it has not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.1)


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_server() -> str:
    """The PostgreSQL server the tests use: the configured one, else the local default."""
    return TEST_DATABASE_URL if is_postgres(TEST_DATABASE_URL) else DEFAULT_POSTGRES_URL


async def postgres_unreachable(server_url: str) -> str | None:
    """Why ``server_url`` cannot be used, or ``None`` when it answers."""
    try:
        conn = await _pg_admin(server_url)
    except Exception as exc:
        return f"PostgreSQL is not reachable at {make_url(server_url).host}: {exc}"
    await conn.close()
    return None


def database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` of the test's own, on a free port, keeping nothing on disk.

    ``stop`` kills it (as a crash would); ``start`` brings it back on the same port.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.log = directory / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        assert not self.running, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                REDIS_SERVER,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                stdout=out,
                stderr=out,
            )
        await eventually(self._pong, f"redis-server answering on {self.port}: {self.output()}")

    async def stop(self) -> None:
        """Kill it at once: no shutdown, connections simply drop."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def _pong(self) -> bool | None:
        assert self.process is not None
        assert self.process.returncode is None, self.output()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return None
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), timeout=2)
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True if answer.startswith(b"+PONG") else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


@contextlib.asynccontextmanager
async def private_redis(directory: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- Alcove instances ------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Instance:
    """One running ``alcove serve``."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path

    def output(self) -> str:
        return f"[{self.name}] " + self.log.read_text(errors="replace")[-4000:]

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``: its status and body."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/readyz") as response:
            body: dict[str, Any] = await response.json()
            return response.status, body

    async def metrics(self) -> Samples:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/metrics", headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            return samples(await response.text())

    async def readiness_becomes(self, redis: str) -> dict[str, Any]:
        """Poll ``/readyz`` until it reports Redis as ``redis`` (``"ok"`` or ``"down"``); its
        body then."""

        async def probe() -> dict[str, Any] | None:
            status, body = await self.readyz()
            if body.get("redis") != redis:
                return None
            assert status == (200 if redis == "ok" else 503), body
            return body

        return await eventually(probe, f"{self.name}'s /readyz reporting redis {redis}")

    async def exited(self, within: float = DEADLINE) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def alcove_instance(
    name: str,
    database_url: str,
    redis_url: str,
    directory: Path,
    *,
    port: int | None = None,
) -> AsyncIterator[Instance]:
    """``alcove serve`` as a real process named ``name`` (for its log) on ``port`` (a free one
    by default), passing signalling through ``redis_url``, ready (``/healthz`` answers).
    Killed on the way out if it is still running."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    home = directory / name
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
    env.update(
        ALCOVE_DATABASE_URL=database_url,
        ALCOVE_REDIS_URL=redis_url,
        ALCOVE_SECRET_KEY=TEST_SECRET,
        ALCOVE_DATA_DIR=str(home / "var"),
        ALCOVE_HOST="127.0.0.1",
        ALCOVE_PORT=str(port),
        ALCOVE_PUBLIC_URL=url,
        ALCOVE_JOIN_EARLY_MINUTES="180",
        ALCOVE_JOIN_GRACE_MINUTES="180",
        ALCOVE_SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        ALCOVE_METRICS_TOKEN=METRICS_TOKEN,
        ALCOVE_LOG_LEVEL="INFO",
    )
    log = home / f"serve-{port}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(ALCOVE), "serve", env=env, cwd=home, stdout=out, stderr=out
        )
    instance = Instance(name, process, url, log)
    try:

        async def healthy() -> bool | None:
            assert process.returncode is None, instance.output()
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
                    return True if response.status == 200 else None
            return None

        await eventually(healthy, f"{name} serving at {url}", within=30)
        yield instance
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- sockets ---------------------------------------------------------------------------------


async def lobby_entry(socket: SignallingClient, appointment: str, state: str) -> Json:
    """The entry of ``appointment`` in the first ``lobby`` that shows it in ``state``."""
    last: Json | None = None
    try:
        async with asyncio.timeout(DEADLINE):
            while True:
                last = await socket.take("lobby")
                for entry in last["participants"]:
                    if entry["appointment"] == appointment and entry["state"] == state:
                        return dict(entry)
    except TimeoutError:
        raise AssertionError(
            f"no lobby showed {appointment} {state} within {DEADLINE:.0f} s; last: {last}"
        ) from None


async def chat(sender: SignallingClient, receiver: SignallingClient, text: str) -> None:
    """``text`` sent as chat by ``sender`` arrives at ``receiver``."""
    await sender.send({"type": "chat", "text": text})
    try:
        async with asyncio.timeout(DEADLINE):
            while (await receiver.take("chat"))["text"] != text:
                pass
    except TimeoutError:
        errors = sender.of_type("error")
        raise AssertionError(f"chat {text!r} did not arrive; sender's errors: {errors}") from None


async def first_of(*waits: Awaitable[Json | None]) -> list[Json | None]:
    """Await ``waits`` until one has finished; what each returned (``None`` if it had not)."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [t.result() if t.done() and not t.cancelled() else None for t in tasks]


async def rejoin(
    http: aiohttp.ClientSession, url: str, why: str, **hello: str
) -> tuple[SignallingClient, Json]:
    """A new socket at ``url`` that got its ``welcome``, reconnecting as a browser does:
    again after each close (a refusal, 1013), up to ``DEADLINE``.  ``why`` the old one went,
    for the failure."""
    history = [why]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while loop.time() < deadline:
        socket = SignallingClient(http, url)
        welcome: Json | None = None
        try:
            await socket.connect()
            await socket.send({"type": "hello", "version": 1, **hello})
            async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                welcome, _ = await first_of(socket.take("welcome"), closed(socket))
        except (TimeoutError, aiohttp.ClientError) as exc:
            history.append(f"{type(exc).__name__} after {socket.received[-2:]}")
        if welcome is not None:
            return socket, welcome
        history.append(f"closed with {socket.close_code} after {socket.received[-2:]}")
        await socket.close()
        await asyncio.sleep(0.5)
    raise AssertionError(f"no way back in within {DEADLINE:.0f} s: {history}")


async def closed(socket: SignallingClient) -> None:
    await socket.closed.wait()
