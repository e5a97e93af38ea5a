"""Shared fixtures: a clean, migrated database per test, settings, a controllable clock.

Tests run on SQLite by default.  With ``ALCOVE_TEST_DATABASE_URL`` pointing at
PostgreSQL, every test gets its own freshly created database on that server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts
from server.app import create_app
from server.db import create_engine, sessionmaker
from server.migrate import upgrade
from server.models import Therapist
from server.settings import Settings, load_settings
from tests.support.leaks import SECRETS, Collector, leaks

TEST_DATABASE_URL = os.environ.get("ALCOVE_TEST_DATABASE_URL", "")
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TEST_SECRET = "test-secret-" + "x" * 40
THERAPIST_EMAIL = "sam.rivera@example.com"
THERAPIST_PASSWORD = "correct horse battery"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


class FakeClock:
    """A clock the test moves by hand; the app reads it instead of the system time."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


async def _pg_admin(url: str) -> Any:
    import asyncpg

    plain = make_url(url).set(drivername="postgresql")
    return await asyncpg.connect(plain.render_as_string(hide_password=False))


class PostgresDatabases:
    """Creates throw-away databases on a PostgreSQL server, and drops them afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"alcove_t_{secrets.token_hex(6)}"
        conn = await _pg_admin(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        if not self.created:
            return
        conn = await _pg_admin(self.server_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture(scope="session", autouse=True)
def no_phi_in_logs() -> Iterator[Collector]:
    """Every log line of the run, checked at the end for e-mail addresses and for the
    tokens and client names the tests used (``tests.support.leaks``)."""
    collector = Collector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(level)
    found = leaks(collector.lines, SECRETS)
    assert not found, f"{len(found)} log lines hold PHI or tokens:\n" + "\n".join(found[:20])


@pytest.fixture
async def postgres_databases() -> AsyncIterator[PostgresDatabases]:
    """Fresh PostgreSQL databases on the test server (the default local one if none is set)."""
    server = TEST_DATABASE_URL if is_postgres(TEST_DATABASE_URL) else DEFAULT_POSTGRES_URL
    databases = PostgresDatabases(server)
    try:
        conn = await _pg_admin(server)
        await conn.close()
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {make_url(server).host}: {exc}")
    yield databases
    await databases.drop_all()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the kind under test, used by this test alone."""
    if is_postgres(TEST_DATABASE_URL):
        databases = PostgresDatabases(TEST_DATABASE_URL)
        yield await databases.create()
        await databases.drop_all()
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'alcove.db'}"


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


class MigratedTemplates:
    """One database per kind, migrated once per test process, that tests get copies of.

    Migrating takes longer than most tests; copying is cheap: SQLite's backup API, and
    PostgreSQL's ``CREATE DATABASE … TEMPLATE``.  The migrations themselves are tested
    step by step in ``tests/server/test_migrate.py``.
    """

    def __init__(self) -> None:
        self.sqlite: Path | None = None
        self.postgres: str | None = None

    async def sqlite_copy(self, target_url: str, scratch: Path) -> None:
        if self.sqlite is None:
            template = scratch / f"migrated-{os.getpid()}.db"
            await migrate(f"sqlite+aiosqlite:///{template}")
            self.sqlite = template
        target = make_url(target_url).database
        assert target is not None
        with (
            contextlib.closing(sqlite3.connect(self.sqlite)) as source,
            contextlib.closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)

    async def postgres_copy(self, server_url: str) -> str:
        conn = await _pg_admin(server_url)
        try:
            if self.postgres is None:
                name = f"alcove_template_{secrets.token_hex(6)}"
                await conn.execute(f'CREATE DATABASE "{name}"')
                self.postgres = name
                await migrate(_database(server_url, name))
            copy = f"alcove_t_{secrets.token_hex(6)}"
            await conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{self.postgres}"')
        finally:
            await conn.close()
        return copy

    def drop(self, server_url: str) -> None:
        if self.postgres is None:
            return
        name, self.postgres = self.postgres, None

        async def drop() -> None:
            conn = await _pg_admin(server_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


def _database(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates()
    yield templates
    if is_postgres(TEST_DATABASE_URL):
        templates.drop(TEST_DATABASE_URL)


@pytest.fixture
async def migrated_url(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    migrated_templates: MigratedTemplates,
) -> AsyncIterator[str]:
    """A database of the kind under test at the latest schema, used by this test alone."""
    if is_postgres(TEST_DATABASE_URL):
        databases = PostgresDatabases(TEST_DATABASE_URL)
        name = await migrated_templates.postgres_copy(TEST_DATABASE_URL)
        databases.created.append(name)
        yield _database(TEST_DATABASE_URL, name)
        await databases.drop_all()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'alcove.db'}"
        await migrated_templates.sqlite_copy(url, tmp_path_factory.getbasetemp())
        yield url


def make_settings(database_url: str, data_dir: Path, **env: str) -> Settings:
    values = {
        "ALCOVE_DATABASE_URL": database_url,
        "ALCOVE_SECRET_KEY": TEST_SECRET,
        "ALCOVE_DATA_DIR": str(data_dir),
        "ALCOVE_PUBLIC_URL": "http://127.0.0.1:8080",
    }
    values.update(env)
    return load_settings(values, env_file=None)


@pytest.fixture
def settings(migrated_url: str, tmp_path: Path) -> Settings:
    return make_settings(migrated_url, tmp_path / "var")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test database, for arranging and checking records."""
    engine = create_engine(settings.database_url)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def therapist(db: async_sessionmaker[AsyncSession]) -> Therapist:
    async with db() as session, session.begin():
        return await accounts.create_therapist(
            session,
            email=THERAPIST_EMAIL,
            name="Sam Rivera",
            timezone="America/New_York",
            password=THERAPIST_PASSWORD,
        )


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings, clock=clock))


async def login_form_token(client: TestClient[Any, Any]) -> str:
    response = await client.get("/login")
    assert response.status == 200
    html = await response.text()
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def sign_in(
    client: TestClient[Any, Any],
    email: str = THERAPIST_EMAIL,
    password: str = THERAPIST_PASSWORD,
) -> Any:
    token = await login_form_token(client)
    return await client.post(
        "/login",
        data={"csrf_token": token, "email": email, "password": password},
        allow_redirects=False,
    )


def csrf_from(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The app served on a real port, with settings whose public URL is that port."""

    def __init__(self, settings: Settings, server: TestServer) -> None:
        self.settings = settings
        self.server = server

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def app(self) -> web.Application:
        """The running application, to reach its keys (the audit writer, the switchboard)."""
        return self.server.app


@pytest.fixture
async def live_server(migrated_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = make_settings(
        migrated_url, tmp_path / "var", ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}"
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    yield LiveServer(settings, server)
    await server.close()
