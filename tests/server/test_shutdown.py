"""Graceful shutdown: on SIGTERM the instance drains, tells every participant to reconnect
(close code 1001) and exits within ``ALCOVE_SHUTDOWN_DRAIN_SECONDS``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db import create_engine, sessionmaker
from server.models import AuditEvent, Therapist
from server.shutdown import DRAIN, Drain, grace, requests_timeout
from tests.conftest import TEST_SECRET, LiveServer, free_port
from tests.support.arrange import make_appointment
from tests.support.signalling_client import SignallingClient, client_session

ALCOVE = Path(sys.executable).with_name("alcove")
CLIENTS = 50
PER_THERAPIST = 5
DRAIN_SECONDS = 5
SLACK_SECONDS = 3.0


async def arrange_clients(db: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    """``count`` appointments, five per therapist an hour apart (no overlaps), all of them
    within the (widened) join window now; their join tokens."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    tokens: list[str] = []
    for t in range(count // PER_THERAPIST):
        async with db() as session, session.begin():
            therapist = Therapist(
                email=f"therapist{t}@example.com",
                display_name=f"Therapist {t}",
                timezone="Europe/London",
                password_hash="",
            )
            session.add(therapist)
        for slot in range(PER_THERAPIST):
            _appointment, token = await make_appointment(
                db,
                therapist.id,
                starts_at=now + dt.timedelta(hours=slot - PER_THERAPIST // 2),
                client_name=f"Client {t}-{slot}",
                client_email=f"client{t}.{slot}@example.com",
            )
            tokens.append(token)
    return tokens


class Served:
    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.asynccontextmanager
async def alcove_serve(
    database_url: str, tmp_path: Path, *, port: int | None = None
) -> AsyncIterator[Served]:
    """``alcove serve`` as a real process on ``port`` (a free one by default), ready
    (``/healthz`` answers)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCOVE_")}
    env.update(
        ALCOVE_DATABASE_URL=database_url,
        ALCOVE_SECRET_KEY=TEST_SECRET,
        ALCOVE_DATA_DIR=str(tmp_path / "var"),
        ALCOVE_HOST="127.0.0.1",
        ALCOVE_PORT=str(port),
        ALCOVE_PUBLIC_URL=url,
        ALCOVE_JOIN_EARLY_MINUTES="180",
        ALCOVE_JOIN_GRACE_MINUTES="180",
        ALCOVE_SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        ALCOVE_LOG_LEVEL="INFO",
    )
    log = tmp_path / f"serve-{port}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(ALCOVE), "serve", env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    served = Served(process, url, log)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, served.output()
                assert time.monotonic() < deadline, served.output()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def count_audit(database_url: str, action: str) -> int:
    engine = create_engine(database_url)
    try:
        async with sessionmaker(engine)() as db:
            found = await db.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
            )
    finally:
        await engine.dispose()
    return int(found or 0)


@pytest.mark.slow
async def test_sigterm_closes_every_socket_with_1001_and_exits_within_the_drain_time(
    migrated_url: str, tmp_path: Path
) -> None:
    engine = create_engine(migrated_url)
    try:
        tokens = await arrange_clients(sessionmaker(engine), CLIENTS)
    finally:
        await engine.dispose()
    http: list[aiohttp.ClientSession] = []
    try:
        async with alcove_serve(migrated_url, tmp_path) as served:
            http = list(await asyncio.gather(*(client_session(served.url, t) for t in tokens)))
            sockets = [SignallingClient(session, served.url) for session in http]

            async def join(socket: SignallingClient) -> Any:
                await socket.connect()
                return await socket.hello()

            welcomes = await asyncio.gather(*(join(s) for s in sockets))
            assert [w["type"] for w in welcomes] == ["welcome"] * CLIENTS

            sent = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(s.wait_closed(within=DRAIN_SECONDS) for s in sockets))
            assert codes == [1001] * CLIENTS, served.output()
            async with asyncio.timeout(DRAIN_SECONDS + SLACK_SECONDS):
                status = await served.process.wait()
            elapsed = time.monotonic() - sent
            assert status == 0, served.output()
            assert elapsed < DRAIN_SECONDS + SLACK_SECONDS
    finally:
        await asyncio.gather(*(session.close() for session in http))
    # The room audit writer was flushed before the process exited: every arrival is on the
    # record.  (A waiting client whose socket drops is not audited as leaving: only ``leave``.)
    assert await count_audit(migrated_url, "join") == CLIENTS


async def test_while_draining_readyz_and_new_websockets_get_503(live_server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_server.url}/readyz") as response:
            assert response.status == 200
        await live_server.app.shutdown()  # what run_app does first on SIGTERM
        assert live_server.app[DRAIN].draining
        async with http.get(f"{live_server.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
        async with http.get(f"{live_server.url}/healthz") as response:
            assert response.status == 200  # alive, just not taking new work
        ws_url = live_server.url.replace("http", "ws", 1) + "/ws"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url, headers={"Origin": live_server.url})
        assert refused.value.status == 503


async def test_shutdown_closes_a_connected_socket_with_1001(
    live_server: LiveServer, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db() as session, session.begin():
        therapist = Therapist(
            email="solo@example.com", display_name="Solo", timezone="UTC", password_hash=""
        )
        session.add(therapist)
    _appointment, token = await make_appointment(
        db, therapist.id, starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0)
    )
    http = await client_session(live_server.url, token)
    try:
        socket = SignallingClient(http, live_server.url)
        await socket.connect()
        await socket.hello()
        assert len(live_server.app[DRAIN].sockets) == 1
        await live_server.app.shutdown()
        assert await socket.wait_closed(within=5) == 1001
        assert not live_server.app[DRAIN].sockets  # its handler finished during on_shutdown
    finally:
        await http.close()


async def test_cleanup_gets_no_more_than_what_is_left_of_the_drain_time() -> None:
    drain = Drain(4.0)
    assert drain.remaining() == 4.0  # not draining yet: all of it
    drain.start()
    await asyncio.sleep(0.05)
    assert 3.0 < drain.remaining() < 4.0
    app = web.Application()
    app[DRAIN] = drain
    assert grace(app, 10.0) == pytest.approx(drain.remaining(), abs=0.05)
    assert grace(app, 1.0) == 1.0
    assert requests_timeout(10) == pytest.approx(2.0)
