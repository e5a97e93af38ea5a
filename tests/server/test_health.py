"""Liveness and readiness probes, against a real database and an unreachable one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.conftest import AiohttpClient, FakeClock, make_settings

HttpClient = TestClient[Any, Any]
# Nothing listens on port 1: connecting is refused at once.
UNREACHABLE_DATABASE = "postgresql+asyncpg://alcove@127.0.0.1:1/alcove"


async def test_healthz_answers_while_the_process_runs(client: HttpClient) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_the_database_answers(client: HttpClient) -> None:
    response = await client.get("/readyz")

    assert response.status == 200
    assert (await response.json())["database"] == "ok"


async def test_readyz_is_unavailable_when_the_database_is_unreachable(
    aiohttp_client: AiohttpClient, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(UNREACHABLE_DATABASE, tmp_path / "var")
    client = await aiohttp_client(create_app(settings, clock=clock))

    ready = await client.get("/readyz")
    alive = await client.get("/healthz")

    assert ready.status == 503
    body = await ready.json()
    assert body["database"] == "down"
    assert "Error" not in str(body)  # no exception names or text
    assert alive.status == 200  # a database outage is no reason to restart the process
