"""Signing in: success, the generic failure, CSRF on the form, cookies and redirects."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts
from server.app import create_app
from server.models import AuditEvent, Therapist
from server.passwords import _DUMMY_PASSWORD
from server.sessions import PRELOGIN_COOKIE, SESSION_COOKIE
from server.settings import Settings
from tests.conftest import (
    THERAPIST_EMAIL,
    THERAPIST_PASSWORD,
    AiohttpClient,
    FakeClock,
    login_form_token,
    make_settings,
    sign_in,
)

Client = TestClient[Any, Any]
Sessions = async_sessionmaker[AsyncSession]

OTHER_EMAIL = "noor.haddad@example.com"
OTHER_PASSWORD = "another long secret"


def alert_text(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert found, "the page shows no error message"
    return html.unescape(found.group(1)).strip()


def hidden_value(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


async def add_therapist(db: Sessions, email: str, password: str, **changes: Any) -> Therapist:
    async with db() as session, session.begin():
        therapist = await accounts.create_therapist(
            session, email=email, name="Noor Haddad", timezone="Europe/Berlin", password=password
        )
    if changes:
        async with db() as session, session.begin():
            await session.execute(
                update(Therapist).where(Therapist.id == therapist.id).values(**changes)
            )
    return therapist


async def post_login(
    client: Client, *, email: str, password: str, next_url: str | None = None
) -> ClientResponse:
    data = {"csrf_token": await login_form_token(client), "email": email, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return await client.post("/login", data=data, allow_redirects=False)


async def test_right_password_signs_in_and_lands_on_the_dashboard(
    client: Client, therapist: Therapist
) -> None:
    response = await sign_in(client)

    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    assert response.cookies[SESSION_COOKIE].value
    page = await client.get("/dashboard", allow_redirects=False)
    assert page.status == 200
    assert therapist.display_name in await page.text()


async def test_wrong_password_unknown_email_and_inactive_account_get_the_same_generic_answer(
    client: Client, therapist: Therapist, db: Sessions
) -> None:
    await add_therapist(db, OTHER_EMAIL, OTHER_PASSWORD, is_active=False)
    attempts = {
        "wrong password": (THERAPIST_EMAIL, "not the password at all"),
        "unknown e-mail": ("nobody.here@example.com", THERAPIST_PASSWORD),
        "inactive account": (OTHER_EMAIL, OTHER_PASSWORD),
    }
    answers = {}
    for case, (email, password) in attempts.items():
        response = await post_login(client, email=email, password=password)
        page = await response.text()
        assert SESSION_COOKIE not in response.cookies, case
        # The page differs only by the request id and the echoed address.
        normalized = page.replace(response.headers["X-Request-Id"], "<id>").replace(email, "<e>")
        answers[case] = (response.status, alert_text(page), normalized)

    statuses = {status for status, _, _ in answers.values()}
    messages = {message for _, message, _ in answers.values()}
    pages = {normalized for _, _, normalized in answers.values()}
    assert statuses == {401}
    assert len(messages) == 1
    assert len(pages) == 1
    message = messages.pop()
    assert message
    assert "inactive" not in message.lower()
    assert "unknown" not in message.lower()
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303


async def test_account_without_a_password_hash_never_accepts_the_timing_dummy(
    client: Client, db: Sessions
) -> None:
    await add_therapist(db, OTHER_EMAIL, OTHER_PASSWORD, password_hash="")

    response = await post_login(client, email=OTHER_EMAIL, password=_DUMMY_PASSWORD)

    assert response.status == 401
    assert SESSION_COOKIE not in response.cookies


async def test_email_is_matched_whatever_the_letter_case_and_spacing(
    client: Client, therapist: Therapist
) -> None:
    response = await sign_in(client, email=f"  {THERAPIST_EMAIL.upper()} ")

    assert response.status == 303


def assert_calm_403(response: ClientResponse, page: str) -> None:
    assert response.status == 403
    assert response.content_type == "text/html"
    assert response.headers["X-Request-Id"] in page
    assert "403: Forbidden" not in page
    assert "Traceback" not in page


@pytest.mark.parametrize("token", [None, "", "forged-token", "other-browser"])
async def test_sign_in_without_the_forms_csrf_token_is_refused(
    client: Client,
    therapist: Therapist,
    aiohttp_client: AiohttpClient,
    settings: Settings,
    token: str | None,
) -> None:
    await login_form_token(client)  # this browser has its pre-login cookie
    if token == "other-browser":
        # A genuine token, but issued to another browser's pre-login cookie.
        other = await aiohttp_client(create_app(settings))
        token = await login_form_token(other)
    data = {"email": THERAPIST_EMAIL, "password": THERAPIST_PASSWORD}
    if token is not None:
        data["csrf_token"] = token

    response = await client.post("/login", data=data, allow_redirects=False)

    assert_calm_403(response, await response.text())
    assert SESSION_COOKIE not in response.cookies
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [("http://127.0.0.1:8080", False), ("https://alcove.example", True)],
)
async def test_cookies_are_httponly_lax_and_secure_exactly_when_the_public_url_is_https(
    aiohttp_client: AiohttpClient,
    therapist: Therapist,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    public_url: str,
    secure: bool,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_PUBLIC_URL=public_url)
    client = await aiohttp_client(create_app(settings, clock=clock))

    form = await client.get("/login")
    prelogin = form.cookies[PRELOGIN_COOKIE]
    # Sent by hand: a cookie jar keeps a Secure cookie away from plain http.
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_value(await form.text(), "csrf_token"),
            "email": THERAPIST_EMAIL,
            "password": THERAPIST_PASSWORD,
        },
        headers={"Cookie": f"{PRELOGIN_COOKIE}={prelogin.value}"},
        allow_redirects=False,
    )

    assert response.status == 303
    session = response.cookies[SESSION_COOKIE]
    for cookie in (prelogin, session):
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        assert bool(cookie["secure"]) is secure


OFF_SITE = [
    "//evil.example",
    "//evil.example/dashboard",
    "https://evil.example/",
    "/\\evil.example",
    "/\t/evil.example",  # browsers drop tabs and newlines: this would be //evil.example
    "/\n/evil.example",
    "evil.example",
]


async def test_next_pointing_off_site_is_not_followed(client: Client, therapist: Therapist) -> None:
    for next_url in OFF_SITE:
        client.session.cookie_jar.clear()  # a signed-out browser
        form = await client.get("/login", params={"next": next_url})
        assert hidden_value(await form.text(), "next") == "/dashboard", next_url

        response = await post_login(
            client, email=THERAPIST_EMAIL, password=THERAPIST_PASSWORD, next_url=next_url
        )

        assert response.status == 303, next_url
        assert response.headers["Location"] == "/dashboard", next_url
        # Signed in, the sign-in page redirects at once: the same rule applies.
        again = await client.get("/login", params={"next": next_url}, allow_redirects=False)
        assert again.status == 303, next_url
        assert again.headers["Location"] == "/dashboard", next_url


async def test_local_next_is_followed_after_sign_in(client: Client, therapist: Therapist) -> None:
    form = await client.get("/login", params={"next": "/dashboard?view=week"})
    assert hidden_value(await form.text(), "next") == "/dashboard?view=week"

    response = await post_login(
        client,
        email=THERAPIST_EMAIL,
        password=THERAPIST_PASSWORD,
        next_url="/dashboard?view=week",
    )

    assert response.headers["Location"] == "/dashboard?view=week"


async def test_sign_in_failure_sign_in_and_sign_out_are_audited_without_email_or_password(
    client: Client, therapist: Therapist, db: Sessions, clock: FakeClock
) -> None:
    wrong_password = "a wrong guess here"
    assert (await sign_in(client, password=wrong_password)).status == 401
    assert (await sign_in(client)).status == 303
    dashboard = await client.get("/dashboard")
    logout = await client.post(
        "/logout",
        data={"csrf_token": hidden_value(await dashboard.text(), "csrf_token")},
        allow_redirects=False,
    )
    assert logout.status == 303

    async with db() as session:
        events = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))

    assert [event.action for event in events] == ["login_failed", "login", "logout"]
    failed, login, logout_event = events
    assert failed.actor_type == "anonymous"
    assert failed.actor_id is None
    assert (login.actor_type, login.actor_id) == ("therapist", str(therapist.id))
    assert (logout_event.actor_type, logout_event.actor_id) == ("therapist", str(therapist.id))
    assert {event.source_ip for event in events} == {"127.0.0.1"}
    assert {event.at for event in events} == {clock.now}
    columns = [attribute.key for attribute in inspect(AuditEvent).column_attrs]
    assert "action" in columns
    secrets_ = [THERAPIST_EMAIL, "sam.rivera", wrong_password, THERAPIST_PASSWORD]
    for event in events:
        stored = " ".join(str(getattr(event, column)) for column in columns).lower()
        for secret in secrets_:
            assert secret.lower() not in stored, (event.action, secret)
