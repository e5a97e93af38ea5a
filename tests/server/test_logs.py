"""The access log never holds bearer tokens or query strings."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.logs import AccessLogger, redact_path
from server.settings import Settings
from tests.conftest import AiohttpClient, FakeClock

HttpClient = TestClient[Any, Any]
TOKEN = "Zq3x9LkVb0sT7mW2nR5pY8cF1dH4gJ6a"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/join/{TOKEN}", "/join/[redacted]"),
        (f"/join/{TOKEN}?x=1", "/join/[redacted]"),
        (f"/manage/{TOKEN}/cancel", "/manage/[redacted]/cancel"),
        (f"/homework/{TOKEN}#answers", "/homework/[redacted]"),
        (f"//join/{TOKEN}", "//join/[redacted]"),
        (f"/static/../join/{TOKEN}", "/static/../join/[redacted]"),
        (f"/%6Aoin/{TOKEN}", "/%6Aoin/[redacted]"),
        (f"/JOIN/{TOKEN}", "/JOIN/[redacted]"),
        (f"/join//{TOKEN}", "/join//[redacted]"),
        (f"/join%2F{TOKEN}", "/[redacted]"),
        ("/dashboard?next=/join/secret", "/dashboard"),
        ("/login?email=someone@example.com", "/login"),
        ("/static/css/app.css", "/static/css/app.css"),
        ("/join/", "/join/"),
        ("/", "/"),
    ],
)
def test_redact_path_removes_tokens_and_the_query(path: str, logged: str) -> None:
    assert redact_path(path) == logged


@pytest.fixture
async def logged_client(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock
) -> HttpClient:
    """The real application served with Alcove's access logger, as ``alcove serve`` does."""
    server = TestServer(create_app(settings, clock=clock))
    await server.start_server(access_log_class=AccessLogger)
    return await aiohttp_client(server)


@pytest.mark.parametrize("prefix", ["join", "manage", "homework"])
async def test_access_log_of_a_token_link_holds_neither_token_nor_query(
    logged_client: HttpClient, caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")

    response = await logged_client.get(f"/{prefix}/{TOKEN}?x=1&email=someone@example.com")
    await response.read()

    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1
    line = lines[0]
    assert f"GET /{prefix}/[redacted] {response.status}" in line
    assert f"request_id={response.headers['X-Request-Id']}" in line
    assert TOKEN not in line
    assert "x=1" not in line
    assert "someone" not in line
