"""Therapist sessions: idle and absolute timeouts, id rotation at sign-in, and sign-out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.models import AuthSession, Therapist
from server.sessions import PRELOGIN_COOKIE, SESSION_COOKIE
from tests.conftest import (
    THERAPIST_EMAIL,
    THERAPIST_PASSWORD,
    AiohttpClient,
    FakeClock,
    csrf_from,
    login_form_token,
    make_settings,
    sign_in,
)

Client = TestClient[Any, Any]
Sessions = async_sessionmaker[AsyncSession]


def cookie(client: Client, name: str) -> str | None:
    morsel = client.session.cookie_jar.filter_cookies(client.make_url("/")).get(name)
    return morsel.value if morsel is not None else None


def use_cookie(client: Client, name: str, value: str) -> None:
    """Make the browser present ``value`` as cookie ``name`` from now on."""
    jar = client.session.cookie_jar
    jar.clear(lambda morsel: morsel.key == name)
    jar.update_cookies({name: value}, response_url=client.make_url("/"))


async def signed_in_cookie(client: Client) -> str:
    response = await sign_in(client)
    assert response.status == 303
    value = cookie(client, SESSION_COOKIE)
    assert value
    return value


async def dashboard(client: Client) -> ClientResponse:
    return await client.get("/dashboard", allow_redirects=False)


def assert_sent_to_sign_in_as_expired(response: ClientResponse, why: str = "idle") -> None:
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/dashboard"], "expired": [why]}


def notice(page: str) -> str | None:
    found = re.search(r'class="notice" role="status">(.*?)</p>', page, re.S)
    return found.group(1).strip() if found else None


async def session_rows(db: Sessions) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(AuthSession)) or 0)


async def test_session_expires_after_31_idle_minutes_with_a_notice(
    client: Client, therapist: Therapist, clock: FakeClock, db: Sessions
) -> None:
    await signed_in_cookie(client)
    clock.advance(minutes=29)
    assert (await dashboard(client)).status == 200

    clock.advance(minutes=31)
    response = await dashboard(client)

    assert_sent_to_sign_in_as_expired(response)
    assert await session_rows(db) == 0
    login = await client.get(response.headers["Location"])
    assert notice(await login.text())
    assert notice(await (await client.get("/login")).text()) is None


async def test_activity_every_20_minutes_keeps_the_session_alive(
    client: Client, therapist: Therapist, clock: FakeClock
) -> None:
    await signed_in_cookie(client)
    for _ in range(9):  # three hours, far past the 30-minute idle limit
        clock.advance(minutes=20)
        assert (await dashboard(client)).status == 200


async def test_session_ends_12_hours_after_sign_in_despite_constant_activity(
    client: Client, therapist: Therapist, clock: FakeClock
) -> None:
    await signed_in_cookie(client)
    for _ in range(35):  # 11 h 40 min
        clock.advance(minutes=20)
        assert (await dashboard(client)).status == 200

    clock.advance(minutes=21)  # 12 h 01 min after sign-in, 21 min after the last request
    response = await dashboard(client)

    assert_sent_to_sign_in_as_expired(response, "max")
    login = await client.get(response.headers["Location"])
    assert "inactivity" not in (notice(await login.text()) or "inactivity")


async def test_idle_timeout_follows_the_setting(
    aiohttp_client: AiohttpClient,
    therapist: Therapist,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_SESSION_IDLE_MINUTES="5")
    client = await aiohttp_client(create_app(settings, clock=clock))
    await signed_in_cookie(client)
    clock.advance(minutes=4)
    assert (await dashboard(client)).status == 200

    clock.advance(minutes=6)

    assert_sent_to_sign_in_as_expired(await dashboard(client))


async def test_absolute_timeout_follows_the_setting(
    aiohttp_client: AiohttpClient,
    therapist: Therapist,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_SESSION_MAX_HOURS="1")
    client = await aiohttp_client(create_app(settings, clock=clock))
    await signed_in_cookie(client)
    for _ in range(3):  # one hour
        clock.advance(minutes=20)
        assert (await dashboard(client)).status == 200

    clock.advance(minutes=1)

    assert_sent_to_sign_in_as_expired(await dashboard(client), "max")


@pytest.mark.parametrize("planted", ["made-up-by-an-attacker", "attackers-own-session"])
async def test_cookie_planted_before_sign_in_is_replaced_and_then_useless(
    client: Client, therapist: Therapist, planted: str
) -> None:
    if planted == "attackers-own-session":
        # Session fixation with a real, working session id.
        planted = await signed_in_cookie(client)
        client.session.cookie_jar.clear()
    form = {
        "csrf_token": await login_form_token(client),
        "email": THERAPIST_EMAIL,
        "password": THERAPIST_PASSWORD,
    }
    use_cookie(client, SESSION_COOKIE, planted)  # pushed in while the form is open

    response = await client.post("/login", data=form, allow_redirects=False)

    assert response.status == 303
    issued = cookie(client, SESSION_COOKIE)
    assert issued and issued != planted
    assert (await dashboard(client)).status == 200
    use_cookie(client, SESSION_COOKIE, planted)
    assert (await dashboard(client)).status == 303


async def test_signing_in_again_issues_a_new_session_id(
    client: Client, therapist: Therapist
) -> None:
    # A second tab still shows the sign-in form from before the first sign-in.
    token = await login_form_token(client)
    prelogin = cookie(client, PRELOGIN_COOKIE)
    assert prelogin
    form = {"csrf_token": token, "email": THERAPIST_EMAIL, "password": THERAPIST_PASSWORD}
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 303
    first = cookie(client, SESSION_COOKIE)
    assert first

    use_cookie(client, PRELOGIN_COOKIE, prelogin)
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 303
    second = cookie(client, SESSION_COOKIE)

    assert second and second != first
    assert (await dashboard(client)).status == 200
    use_cookie(client, SESSION_COOKIE, first)
    assert (await dashboard(client)).status == 303


async def test_sign_out_deletes_the_session_on_the_server(
    client: Client, therapist: Therapist, db: Sessions
) -> None:
    old = await signed_in_cookie(client)
    page = await dashboard(client)

    response = await client.post(
        "/logout", data={"csrf_token": csrf_from(await page.text())}, allow_redirects=False
    )

    assert response.status == 303
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert cookie(client, SESSION_COOKIE) is None
    assert await session_rows(db) == 0
    login = await client.get(response.headers["Location"])
    assert notice(await login.text())
    # The cookie the browser held before is worth nothing now.
    use_cookie(client, SESSION_COOKIE, old)
    assert (await dashboard(client)).status == 303


@pytest.mark.parametrize("token", [None, "", "guessed", "sign-in-form-token"])
async def test_sign_out_without_the_sessions_csrf_token_is_refused_and_keeps_the_session(
    client: Client, therapist: Therapist, db: Sessions, token: str | None
) -> None:
    if token == "sign-in-form-token":
        token = await login_form_token(client)
    await signed_in_cookie(client)
    data = {} if token is None else {"csrf_token": token}

    response = await client.post("/logout", data=data, allow_redirects=False)

    assert response.status == 403
    page = await response.text()
    assert response.headers["X-Request-Id"] in page
    assert "403: Forbidden" not in page
    assert await session_rows(db) == 1
    assert (await dashboard(client)).status == 200
