"""Request-wide behaviour: calm error pages, security headers, no inline script or style."""

from __future__ import annotations

import datetime as dt
import logging
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.logs import RequestIdFilter
from server.models import Appointment, AppointmentStatus, Therapist
from server.models import Client as ClientRecord
from server.settings import Settings
from tests.conftest import AiohttpClient, FakeClock, csrf_from, sign_in

Client = TestClient[Any, Any]
EXPLOSION = "database password is hunter2 and the client is Jane Q"


async def explode(_request: web.Request) -> web.Response:
    raise RuntimeError(EXPLOSION)


@pytest.fixture
async def app_client(aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock) -> Client:
    """The real application, plus one route that fails the way a bug would."""
    app = create_app(settings, clock=clock)
    app.router.add_get("/explode", explode)
    return await aiohttp_client(app)


def assert_calm_error_page(response: ClientResponse, page: str, status: int) -> None:
    assert response.status == status
    assert response.content_type == "text/html"
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) >= 8
    assert request_id in page
    assert "Traceback" not in page
    assert f"{status}: " not in page  # aiohttp's own bare error text
    assert '<a class="button" href="/">' in page  # a way onwards


async def test_unknown_page_gets_a_calm_404_with_the_request_id(app_client: Client) -> None:
    response = await app_client.get("/no/such/page")

    assert_calm_error_page(response, await response.text(), 404)


async def test_unhandled_error_gets_a_500_page_without_the_exception(
    app_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="server.middleware")

    response = await app_client.get("/explode")

    page = await response.text()
    assert_calm_error_page(response, page, 500)
    assert EXPLOSION not in page
    assert "RuntimeError" not in page
    assert "explode" not in page
    # The operator can find the failure from the reference the page shows.
    caplog.handler.addFilter(RequestIdFilter())
    logged = [
        r
        for r in caplog.records
        if getattr(r, "request_id", None) == response.headers["X-Request-Id"]
    ]
    assert logged
    assert logged[0].exc_info is not None


async def test_forbidden_request_gets_a_calm_403(app_client: Client) -> None:
    response = await app_client.post("/login", data={"email": "x@example.com"})

    assert_calm_error_page(response, await response.text(), 403)


async def test_wrong_method_gets_a_calm_4xx_page_that_keeps_allow(app_client: Client) -> None:
    response = await app_client.put("/login")

    assert_calm_error_page(response, await response.text(), 405)
    assert "POST" in response.headers["Allow"]


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


def assert_security_headers(response: ClientResponse) -> None:
    where = f"{response.method} {response.url.path} -> {response.status}"
    csp = response.headers.get("Content-Security-Policy")
    assert csp, where
    assert "unsafe-" not in csp, where
    directives = csp_directives(csp)
    assert directives["default-src"] == ["'self'"], where
    for kind in ("script-src", "style-src"):
        sources = directives.get(kind, directives["default-src"])
        assert all(
            source == "'self'" or source.startswith(("'nonce-", "'sha256-")) for source in sources
        ), (where, kind, sources)
    assert directives["object-src"] == ["'none'"], where
    assert directives["frame-ancestors"] == ["'none'"], where
    assert directives["base-uri"] in (["'none'"], ["'self'"]), where
    assert response.headers.get("Referrer-Policy") == "no-referrer", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where


async def test_every_kind_of_response_carries_the_security_headers(app_client: Client) -> None:
    responses = [
        await app_client.get("/login"),
        await app_client.get("/", allow_redirects=False),
        await app_client.get("/dashboard", allow_redirects=False),
        await app_client.get("/no/such/page"),
        await app_client.put("/login"),
        await app_client.post("/login", data={}),
        await app_client.get("/explode"),
        await app_client.get("/healthz"),
        await app_client.get("/readyz"),
        await app_client.get("/static/css/app.css"),
        await app_client.get("/static/css/missing.css"),
    ]

    expected = [200, 303, 303, 404, 405, 403, 500, 200, 200, 200, 404]
    assert [response.status for response in responses] == expected
    for response in responses:
        assert_security_headers(response)


async def test_signed_in_responses_carry_the_security_headers(
    app_client: Client, therapist: Therapist
) -> None:
    login = await sign_in(app_client)
    page = await app_client.get("/dashboard")
    logout = await app_client.post(
        "/logout", data={"csrf_token": csrf_from(await page.text())}, allow_redirects=False
    )

    assert [login.status, page.status, logout.status] == [303, 200, 303]
    for response in (login, page, logout):
        assert_security_headers(response)


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False
        self.tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("<script> without src")
        if tag == "style":
            self.problems.append("<style> element")
        if "style" in names:
            self.problems.append(f"style= on <{tag}>")
        self.problems += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        for name in ("href", "src", "action"):
            if names.get(name, "").strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script code")


def inline_code(page: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(page)
    finder.close()
    assert finder.tags > 10, "not an HTML page"
    return finder.problems


async def test_rendered_pages_have_no_inline_script_or_style(
    app_client: Client,
    therapist: Therapist,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> None:
    pages = {
        "sign-in": await app_client.get("/login"),
        "sign-in, expired": await app_client.get("/login?expired=idle"),
        "sign-in, failed": await sign_in(app_client, password="wrong password!"),
        "403": await app_client.post("/login", data={}),
        "404": await app_client.get("/no/such/page"),
        "405": await app_client.put("/login"),
        "500": await app_client.get("/explode"),
    }
    assert (await sign_in(app_client)).status == 303
    await add_appointments(db, therapist, clock.now)
    pages["dashboard"] = await app_client.get("/dashboard")

    for name, response in pages.items():
        assert response.content_type == "text/html", name
        assert inline_code(await response.text()) == [], name
    assert "Jordan Lee" in await pages["dashboard"].text()


async def add_appointments(
    db: async_sessionmaker[AsyncSession], therapist: Therapist, now: dt.datetime
) -> None:
    """One appointment in each status, all later today in the therapist's time zone."""
    async with db() as session, session.begin():
        person = ClientRecord(therapist_id=therapist.id, name="Jordan Lee", email="j@example.com")
        session.add(person)
        await session.flush()
        for hours, status in enumerate(AppointmentStatus, start=1):
            starts = now + dt.timedelta(hours=hours)
            session.add(
                Appointment(
                    therapist_id=therapist.id,
                    client_id=person.id,
                    starts_at=starts,
                    ends_at=starts + dt.timedelta(minutes=50),
                    status=status.value,
                )
            )
