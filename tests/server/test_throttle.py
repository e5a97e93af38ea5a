"""Sign-in throttling per account and per source address, over a sliding window."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.models import Therapist
from server.sessions import SESSION_COOKIE
from server.settings import Settings
from tests.conftest import (
    THERAPIST_EMAIL,
    THERAPIST_PASSWORD,
    AiohttpClient,
    FakeClock,
    login_form_token,
    make_settings,
)

Client = TestClient[Any, Any]
WRONG = "definitely not it"
PROXY = "127.0.0.1"  # the test client's address, trusted as a reverse proxy below


@pytest.fixture
def proxied_settings(migrated_url: str, tmp_path: Path) -> Settings:
    """Settings trusting the test client as a proxy, so each request can name its address."""
    return make_settings(migrated_url, tmp_path / "var", ALCOVE_TRUSTED_PROXIES=PROXY)


@pytest.fixture
async def proxied(
    aiohttp_client: AiohttpClient, proxied_settings: Settings, clock: FakeClock
) -> Client:
    return await aiohttp_client(create_app(proxied_settings, clock=clock))


async def attempt(
    client: Client, email: str, password: str, *, ip: str | None = None
) -> ClientResponse:
    """One sign-in attempt from a fresh browser, optionally behind the trusted proxy."""
    client.session.cookie_jar.clear()
    headers = {"X-Forwarded-For": ip} if ip else {}
    token = await login_form_token(client)
    return await client.post(
        "/login",
        data={"csrf_token": token, "email": email, "password": password},
        headers=headers,
        allow_redirects=False,
    )


def alert_text(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert found
    return html.unescape(found.group(1)).strip()


async def assert_throttled(response: ClientResponse) -> int:
    """Check a 429 answer and return its ``Retry-After`` in seconds."""
    assert response.status == 429
    assert SESSION_COOKIE not in response.cookies
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert alert_text(await response.text())
    return int(retry_after)


async def test_sixth_attempt_on_one_account_is_refused_even_with_the_right_password(
    proxied: Client, proxied_settings: Settings, therapist: Therapist, clock: FakeClock
) -> None:
    # Five failures a minute apart, each from its own address and spelling of the e-mail,
    # so only the per-account count can add up.
    spellings = [THERAPIST_EMAIL, THERAPIST_EMAIL.upper(), f" {THERAPIST_EMAIL}"]
    for n in range(5):
        if n:
            clock.advance(minutes=1)
        email = spellings[n % len(spellings)]
        assert (await attempt(proxied, email, WRONG, ip=f"198.51.100.{n + 1}")).status == 401

    response = await attempt(proxied, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="203.0.113.9")

    retry_after = await assert_throttled(response)
    # The oldest failure leaves the window 15 minutes after it happened, 4 minutes ago.
    assert retry_after == (proxied_settings.login_window_minutes - 4) * 60
    assert (await proxied.get("/dashboard", allow_redirects=False)).status == 303

    clock.advance(seconds=retry_after - 1)
    still = await attempt(proxied, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="203.0.113.9")
    assert await assert_throttled(still) == 1

    clock.advance(seconds=1)
    response = await attempt(proxied, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="203.0.113.9")
    assert response.status == 303
    assert (await proxied.get("/dashboard", allow_redirects=False)).status == 200


async def test_one_address_failing_on_many_accounts_is_throttled_for_every_account(
    proxied: Client, therapist: Therapist
) -> None:
    attacker = "203.0.113.66"
    for n in range(5):
        response = await attempt(proxied, f"guess{n}@example.com", WRONG, ip=attacker)
        assert response.status == 401

    blocked = await attempt(proxied, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip=attacker)
    assert 0 < await assert_throttled(blocked) <= 15 * 60

    # The same account from another address is not affected.
    elsewhere = await attempt(proxied, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="198.51.100.7")
    assert elsewhere.status == 303


async def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_address_limit(
    client: Client, therapist: Therapist
) -> None:
    for n in range(5):
        response = await attempt(client, f"guess{n}@example.com", WRONG, ip=f"192.0.2.{n}")
        assert response.status == 401

    blocked = await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="192.0.2.200")

    await assert_throttled(blocked)


async def test_failures_older_than_the_window_no_longer_count(
    client: Client, therapist: Therapist, clock: FakeClock
) -> None:
    for _ in range(4):
        assert (await attempt(client, THERAPIST_EMAIL, WRONG)).status == 401
    clock.advance(minutes=15)
    for _ in range(4):
        assert (await attempt(client, THERAPIST_EMAIL, WRONG)).status == 401

    response = await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD)

    assert response.status == 303


async def test_throttle_message_counts_the_minutes_left_in_good_english(
    client: Client, therapist: Therapist, clock: FakeClock
) -> None:
    for _ in range(5):
        assert (await attempt(client, THERAPIST_EMAIL, WRONG)).status == 401

    first = await attempt(client, THERAPIST_EMAIL, WRONG)
    assert await assert_throttled(first) == 15 * 60
    assert "wait 15 minutes" in alert_text(await first.text())

    clock.advance(minutes=14, seconds=30)
    last = await attempt(client, THERAPIST_EMAIL, WRONG)
    assert await assert_throttled(last) == 30
    assert "wait 1 minute " in alert_text(await last.text())


async def test_sign_in_resets_the_accounts_count_but_not_the_addresss(
    aiohttp_client: AiohttpClient,
    therapist: Therapist,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_TRUSTED_PROXIES=PROXY,
        ALCOVE_LOGIN_MAX_FAILURES="2",
    )
    client = await aiohttp_client(create_app(settings, clock=clock))

    # The therapist's own typo is forgiven by the sign-in that follows it...
    assert (await attempt(client, THERAPIST_EMAIL, WRONG, ip="192.0.2.1")).status == 401
    assert (
        await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="192.0.2.2")
    ).status == 303
    assert (await attempt(client, THERAPIST_EMAIL, WRONG, ip="192.0.2.3")).status == 401
    assert (
        await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip="192.0.2.4")
    ).status == 303

    # ...but a sign-in does not wipe what an address did to other accounts.
    spray = "203.0.113.5"
    assert (await attempt(client, "guess1@example.com", WRONG, ip=spray)).status == 401
    assert (await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip=spray)).status == 303
    assert (await attempt(client, "guess2@example.com", WRONG, ip=spray)).status == 401
    await assert_throttled(await attempt(client, THERAPIST_EMAIL, THERAPIST_PASSWORD, ip=spray))
