"""Log lines: JSON with the request id, and an access log that never holds bearer tokens or
query strings."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.logs import (
    AccessLogger,
    JsonFormatter,
    RedactTokensFilter,
    RequestIdFilter,
    current_request_id,
    redact_path,
)
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
    record = next(r for r in caplog.records if r.name == "aiohttp.access")
    assert getattr(record, "request_id", None) == response.headers["X-Request-Id"]
    assert TOKEN not in line
    assert "x=1" not in line
    assert "someone" not in line


def test_a_json_log_line_carries_the_request_id_of_the_request_it_happened_in() -> None:
    token = current_request_id.set("3f9a0c1d2e4b5a6c")
    try:
        record = logging.LogRecord(
            "server.x", logging.WARNING, __file__, 1, "slot %s", ("a",), None
        )
        assert RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "slot a"
    assert (entry["level"], entry["logger"]) == ("WARNING", "server.x")
    assert entry["request_id"] == "3f9a0c1d2e4b5a6c"
    assert entry["ts"].endswith("+00:00")


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "server.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)

    assert "\n" not in line.strip()
    assert "ValueError: boom" in json.loads(line)["exception"]


async def test_what_a_handler_logs_carries_the_id_the_response_names(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings, clock=clock)

    async def noisy(request: web.Request) -> web.Response:
        logging.getLogger("server.noisy").warning("handled a slot")
        return web.Response(text="ok")

    app.router.add_get("/noisy", noisy)
    client = await aiohttp_client(app)
    caplog.handler.addFilter(RequestIdFilter())

    first = await client.get("/noisy")
    second = await client.get("/noisy")

    records = [r for r in caplog.records if r.name == "server.noisy"]
    assert [getattr(r, "request_id", None) for r in records] == [
        first.headers["X-Request-Id"],
        second.headers["X-Request-Id"],
    ]
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        (
            f'127.0.0.1 "GET /join/{TOKEN} HTTP/1.1" 303',
            '127.0.0.1 "GET /join/[redacted] HTTP/1.1" 303',
        ),
        (f'"GET /homework/{TOKEN}?a=b HTTP/1.1"', '"GET /homework/[redacted] HTTP/1.1"'),
        (f'"GET /MANAGE//{TOKEN}/cancel HTTP/1.1"', '"GET /MANAGE//[redacted]/cancel HTTP/1.1"'),
        ('"GET /login?email=someone@example.com HTTP/1.1"', '"GET /login HTTP/1.1"'),
    ],
)
def test_another_runners_access_log_line_loses_tokens_and_queries(line: str, logged: str) -> None:
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, "%s", (line,), None)

    assert RedactTokensFilter().filter(record)

    assert record.getMessage() == logged
