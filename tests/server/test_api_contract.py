"""The OpenAPI document is valid, describes exactly the API's routes, and stays true:
schemathesis sends generated requests -- valid and invalid -- to a live server and checks
that none gets a 5xx and every answer has a documented status, content type and shape."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from server import openapi
from server.app import create_app
from server.db import create_engine, sessionmaker
from tests.conftest import FakeClock, free_port, make_settings
from tests.support.arrange import make_bookable_therapist

#: The clock of the server under test: the document's example start, 2026-03-04T15:00:00Z,
#: is then a free Wednesday 10:00 in New York, so the examples phase books for real.
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
MAX_EXAMPLES = 100

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 9457,
        "suppress-health-check": ["too_slow", "filter_too_much"],
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            # Well-formed is not bookable: a valid-looking start may not be a free slot, an
            # e-mail address valid by the schema's `format` may not be one by ours.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "410", "422"]}
        },
    }
)


def test_the_openapi_document_is_a_valid_openapi_3_1_document() -> None:
    document = openapi.document()

    validate(document)

    assert document["openapi"] == "3.1.0"


def test_the_document_describes_exactly_the_routes_under_api_v1(tmp_path: Path) -> None:
    app = create_app(make_settings("sqlite+aiosqlite://", tmp_path))
    routes = {
        (route.method.lower(), route.resource.canonical.removeprefix("/api/v1"))
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }

    documented = {
        (method, path) for path, item in openapi.document()["paths"].items() for method in item
    }

    assert documented == routes


def test_the_served_document_is_this_document(api_server: ThreadedServer) -> None:
    with urllib.request.urlopen(f"{api_server.url}/api/v1/openapi.json") as response:  # noqa: S310
        served = json.load(response)

    assert served == openapi.document()


def test_every_documented_problem_code_has_a_documented_status() -> None:
    document = openapi.document()
    statuses = {
        status
        for item in document["paths"].values()
        for operation in item.values()
        for status in operation["responses"]
    }

    assert {"400", "404", "409", "410", "413", "415", "422"} <= statuses


class ThreadedServer:
    """The app on a real port, served from a thread of its own, for a synchronous client."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.settings = make_settings(
            url, tmp_path / "var", ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{self.port}"
        )
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        return self.settings.public_url

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        engine = create_engine(self.settings.database_url)
        await make_bookable_therapist(sessionmaker(engine))
        await engine.dispose()
        app: web.Application = create_app(self.settings, clock=FakeClock(NOW))
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        if not self.ready.wait(timeout=30):
            raise RuntimeError("the API server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture
def api_server(migrated_url: str, tmp_path: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(migrated_url, tmp_path) as server:
        yield server


schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # One server (and database) per operation, shared by its examples, as intended.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_generated_requests_get_documented_answers_and_never_a_5xx(
    case: Any, api_server: ThreadedServer
) -> None:
    case.call_and_validate(base_url=f"{api_server.url}/api/v1")
