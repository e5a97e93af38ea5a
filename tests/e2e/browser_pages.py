"""Browser tests of the pages a therapist sees before any call: sign-in, dashboard, 404.

Inner module: run by ``test_browser.py`` inside a private network namespace.
"""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import App
from tests.e2e.harness import (
    KINDS,
    Contexts,
    Kind,
    assert_accessible,
    assert_fits_width,
    focused,
    screenshot,
    sign_in,
    tab_to,
)
from tests.support.arrange import make_appointment, make_therapist

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"


async def arrange_day(app: App) -> None:
    """A therapist with one appointment starting now."""
    therapist = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    await make_appointment(app.db, therapist.id, starts_at=now, client_name=CLIENT_NAME)


@pytest.mark.parametrize("kind", KINDS)
async def test_login_page_is_accessible(contexts: Contexts, kind: Kind) -> None:
    page = await contexts.page(kind)
    await page.goto("/login")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await assert_accessible(page, f"login-{kind}")
    await assert_fits_width(page)
    await screenshot(page, f"login-{kind}")
    contexts.assert_clean()


@pytest.mark.parametrize("kind", KINDS)
async def test_dashboard_is_accessible(app: App, contexts: Contexts, kind: Kind) -> None:
    await arrange_day(app)
    page = await contexts.page(kind)
    await sign_in(page, EMAIL, PASSWORD)
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    await expect(page.get_by_text(CLIENT_NAME).first).to_be_visible()
    await assert_accessible(page, f"dashboard-{kind}")
    await assert_fits_width(page)
    await screenshot(page, f"dashboard-{kind}")
    contexts.assert_clean()


async def test_signing_in_works_with_the_keyboard_alone(app: App, contexts: Contexts) -> None:
    await arrange_day(app)
    page = await contexts.page("desktop")
    await page.goto("/login")

    # The first Tab reaches the skip link, which shows itself when focused.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()

    await tab_to(page, "#email", max_presses=5)
    await page.keyboard.type(EMAIL)
    await page.keyboard.press("Tab")
    assert await focused(page, "#password"), "Tab from the e-mail field goes to the password"
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")

    await page.wait_for_url("**/dashboard")
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    contexts.assert_clean()


@pytest.mark.parametrize("kind", KINDS)
async def test_not_found_page_is_accessible(contexts: Contexts, kind: Kind) -> None:
    page = await contexts.page(kind)
    response = await page.goto("/no-such-page")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="We could not find that page")).to_be_visible()
    await assert_accessible(page, f"not-found-{kind}")
    await assert_fits_width(page)
    await screenshot(page, f"not-found-{kind}")
    contexts.assert_clean()
