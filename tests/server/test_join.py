"""The join link: a token in its window becomes a participant cookie and a clean `/session`
URL; outside the window, or for a bad token, a calm page instead; never a token in a log."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.join import PARTICIPANT_COOKIE
from server.logs import AccessLogger
from server.models import Appointment, AppointmentStatus, AuditEvent, JoinToken, Therapist
from server.settings import Settings
from server.tokens import new_token, token_hash
from tests.conftest import AiohttpClient, FakeClock, make_settings
from tests.support.arrange import make_appointment

HttpClient = TestClient[Any, Any]
Arrange = Callable[..., Awaitable[tuple[Appointment, str]]]

THERAPIST_NAME = "Sam Rivera"
CLIENT_NAME = "Robin Quillfeather"
CLIENT_EMAIL = "robin.quillfeather@example.net"
#: Pieces of the client's identity that must never travel in a URL.
CLIENT_DETAILS = ("robin", "quillfeather", "example.net")
INVALID_HEADING = "This link does not work"


@pytest.fixture
def arrange(db: async_sessionmaker[AsyncSession], clock: FakeClock) -> Arrange:
    """An appointment (by default starting in ten minutes) and its plain join token."""

    async def make(
        starts_in: dt.timedelta = dt.timedelta(minutes=10), **kwargs: Any
    ) -> tuple[Appointment, str]:
        async with db() as session, session.begin():
            # No password: nobody signs in here, and hashing one is slow.
            therapist = Therapist(
                email="sam@example.org",
                display_name=THERAPIST_NAME,
                timezone="Europe/London",
                password_hash="",
            )
            session.add(therapist)
        return await make_appointment(
            db,
            therapist.id,
            starts_at=clock.now + starts_in,
            client_name=CLIENT_NAME,
            client_email=CLIENT_EMAIL,
            **kwargs,
        )

    return make


def set_cookies(response: ClientResponse) -> list[str]:
    return response.headers.getall("Set-Cookie", [])


def participant_cookie(response: ClientResponse) -> str:
    cookies = [c for c in set_cookies(response) if c.startswith(f"{PARTICIPANT_COOKIE}=")]
    assert len(cookies) == 1, set_cookies(response)
    return cookies[0]


class Urls(HTMLParser):
    """Every URL a page links to or loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"href", "src", "action", "formaction", "poster", "data"} and value:
                self.urls.append(value)


def urls_in(page: str) -> list[str]:
    parser = Urls()
    parser.feed(page)
    parser.close()
    return parser.urls


def time_element(page: str, instant: dt.datetime) -> re.Match[str] | None:
    return re.search(rf'<time datetime="{re.escape(instant.isoformat())}" data-local="\w+">', page)


async def open_link(client: HttpClient, token: str) -> ClientResponse:
    return await client.get(f"/join/{token}", allow_redirects=False)


async def test_a_valid_link_in_its_window_redirects_to_session_with_an_http_only_lax_cookie(
    client: HttpClient, arrange: Arrange
) -> None:
    _appointment, token = await arrange()

    response = await open_link(client, token)

    assert response.status == 303
    assert response.headers["Location"] == "/session"
    assert token not in response.headers["Location"]
    cookie = participant_cookie(response)
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert token not in cookie
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_the_session_page_names_the_therapist_and_the_time_and_no_url_names_the_client(
    client: HttpClient, arrange: Arrange
) -> None:
    appointment, token = await arrange()

    redirect = await open_link(client, token)
    page_response = await client.get(redirect.headers["Location"], allow_redirects=False)

    page = await page_response.text()
    assert page_response.status == 200
    assert page_response.headers["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in page
    assert THERAPIST_NAME in page
    assert time_element(page, appointment.starts_at) is not None
    assert token not in page
    urls = [redirect.headers["Location"], page_response.headers.get("Location", ""), *urls_in(page)]
    assert len(urls) > 3  # the stylesheets and scripts are there to be checked
    for url in urls:
        for detail in CLIENT_DETAILS:
            assert detail not in unquote(url).lower(), url


async def test_too_early_a_page_says_when_to_come_back_and_sets_no_cookie(
    client: HttpClient, arrange: Arrange, clock: FakeClock
) -> None:
    appointment, token = await arrange()
    opens_at = appointment.starts_at - dt.timedelta(minutes=15)
    clock.now = opens_at - dt.timedelta(seconds=1)

    response = await open_link(client, token)

    page = await response.text()
    assert response.status == 200
    assert set_cookies(response) == []
    assert "You are a little early" in page
    assert time_element(page, opens_at) is not None
    assert time_element(page, appointment.starts_at) is not None
    assert "Please come back then, using the same link." in page
    assert THERAPIST_NAME in page

    clock.now = opens_at
    assert (await open_link(client, token)).status == 303


async def test_after_the_end_and_the_grace_period_the_link_shows_the_over_page(
    client: HttpClient, arrange: Arrange, clock: FakeClock
) -> None:
    appointment, token = await arrange()
    closes_at = appointment.ends_at + dt.timedelta(minutes=30)
    clock.now = closes_at - dt.timedelta(seconds=1)
    assert (await open_link(client, token)).status == 303

    clock.now = closes_at
    response = await open_link(client, token)

    assert response.status == 200
    assert set_cookies(response) == []
    assert "This session is over" in await response.text()


async def test_a_cancelled_appointment_shows_the_cancelled_page(
    client: HttpClient, arrange: Arrange
) -> None:
    appointment, token = await arrange(status=AppointmentStatus.CANCELLED)

    response = await open_link(client, token)

    page = await response.text()
    assert response.status == 200
    assert set_cookies(response) == []
    assert "This appointment was cancelled" in page
    assert time_element(page, appointment.starts_at) is not None
    assert "If you did not expect this, please contact your therapist." in page


@pytest.mark.parametrize(
    "token",
    [
        new_token(),
        "not-a-token",
        "%00%01%02",
        "%27%3B%20DROP%20TABLE%20join_tokens%3B--",
        "%E2%80%AE%F0%9F%94%91",
        "A" * 129,
        "A" * 4000,
    ],
    ids=["unknown", "garbage", "control", "sql", "unicode", "just-too-long", "overlong"],
)
async def test_an_unknown_garbage_or_overlong_token_gets_the_calm_404_page(
    client: HttpClient, arrange: Arrange, token: str
) -> None:
    await arrange()

    response = await open_link(client, token)

    page = await response.text()
    assert response.status == 404
    assert set_cookies(response) == []
    assert INVALID_HEADING in page
    assert "Traceback" not in page


@pytest.mark.parametrize("spoilt", ["revoked", "expired"])
async def test_a_revoked_or_expired_token_gets_the_same_friendly_refusal(
    client: HttpClient,
    arrange: Arrange,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    spoilt: str,
) -> None:
    _appointment, token = await arrange()
    unknown = await open_link(client, new_token())
    column = JoinToken.revoked_at if spoilt == "revoked" else JoinToken.expires_at
    async with db() as session, session.begin():
        await session.execute(
            update(JoinToken)
            .where(JoinToken.token_hash == token_hash(token))
            .values({column: clock.now})
        )

    response = await open_link(client, token)

    assert response.status == unknown.status == 404
    assert set_cookies(response) == []
    assert await response.text() == await unknown.text()
    assert INVALID_HEADING in await response.text()


async def test_the_join_window_follows_the_settings(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    arrange: Arrange,
) -> None:
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_JOIN_EARLY_MINUTES="5",
        ALCOVE_JOIN_GRACE_MINUTES="10",
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    appointment, token = await arrange()
    opens_at = appointment.starts_at - dt.timedelta(minutes=5)
    closes_at = appointment.ends_at + dt.timedelta(minutes=10)
    second = dt.timedelta(seconds=1)

    clock.now = opens_at - second
    early = await open_link(client, token)
    assert early.status == 200
    assert time_element(await early.text(), opens_at) is not None
    verdicts = []
    for now in (opens_at, closes_at - second, closes_at):
        clock.now = now
        response = await open_link(client, token)
        verdicts.append((response.status, "This session is over" in await response.text()))

    assert verdicts == [(303, False), (303, False), (200, True)]


async def test_opening_the_link_writes_one_audit_event_without_the_token(
    client: HttpClient, arrange: Arrange, db: async_sessionmaker[AsyncSession]
) -> None:
    appointment, token = await arrange()

    response = await open_link(client, token)

    assert response.status == 303
    async with db() as session:
        events = list((await session.scalars(select(AuditEvent))).all())
    assert [(e.action, e.actor_type, e.record_type, e.record_id) for e in events] == [
        ("join_link_opened", "client", "appointment", str(appointment.id))
    ]
    cookie_value = participant_cookie(response).split(";")[0].split("=", 1)[1]
    stored = " ".join(str(getattr(events[0], c.key)) for c in AuditEvent.__table__.columns)
    for secret in (token, token_hash(token), cookie_value, token_hash(cookie_value)):
        assert secret not in stored
    for detail in CLIENT_DETAILS:
        assert detail not in stored.lower()


async def test_the_access_log_never_holds_the_join_token(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    clock: FakeClock,
    arrange: Arrange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = TestServer(create_app(settings, clock=clock))
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    _appointment, token = await arrange()
    caplog.set_level(logging.DEBUG)

    redirect = await open_link(client, token)
    session_page = await client.get(redirect.headers["Location"])
    await session_page.read()

    assert (redirect.status, session_page.status) == (303, 200)
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert [line.split()[:3] for line in access] == [
        ["GET", "/join/[redacted]", "303"],
        ["GET", "/session", "200"],
    ]
    cookie_value = participant_cookie(redirect).split(";")[0].split("=", 1)[1]
    everything = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert token not in everything
    assert cookie_value not in everything
