"""A whole session in two real browsers: the client waits, the therapist admits, they see
each other, and the therapist ends the session.

Inner module: run by ``test_browser.py`` inside a private network namespace, where the two
Chromium contexts connect peer-to-peer over the namespace's veth addresses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import App
from tests.e2e.harness import (
    Contexts,
    assert_accessible,
    assert_fits_width,
    screenshots,
    sign_in,
    tab_to,
    wait_for_video,
)
from tests.support.arrange import make_appointment, make_therapist

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def end_session(therapist: Page, client: Page) -> None:
    """Press End session, and its confirming second press if it asks for one."""
    end = therapist.locator("#end-session")
    await end.click()
    ended = client.locator("#ended")
    for _ in range(20):
        if await ended.is_visible():
            return
        if await end.get_attribute("data-confirming") is not None:
            await end.click()
            return
        await asyncio.sleep(0.1)
    # Neither ended nor armed: press once more, in case it confirms some other way.
    if await end.is_visible() and await end.is_enabled():
        await end.click()


async def test_client_is_admitted_sees_the_therapist_and_the_therapist_ends_it(
    app: App, contexts: Contexts
) -> None:
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    appointment, token = await make_appointment(
        app.db, therapist_row.id, starts_at=now, client_name=CLIENT_NAME
    )

    # The therapist signs in and keeps the dashboard open.
    therapist = await contexts.page("desktop")
    await sign_in(therapist, EMAIL, PASSWORD)
    lobby = therapist.locator("#lobby li[data-participant]")

    # The client opens the join link on a phone: the pre-join check shows their camera.
    client = await contexts.page("phone")
    await client.goto(f"/join/{token}")
    await client.wait_for_url("**/session")
    await expect(client.locator("#prejoin")).to_be_visible()
    await wait_for_video(client, "#preview-video", playing=True)
    await assert_fits_width(client)
    await assert_accessible(client, "prejoin-phone")
    await screenshots(client, "prejoin")

    # With the keyboard alone, the client joins the waiting room.
    await tab_to(client, "#join-waiting-room")
    await client.keyboard.press("Enter")
    await expect(client.locator("#waiting")).to_be_visible()
    await expect(client.locator("#prejoin")).to_be_hidden()
    await assert_fits_width(client)
    await assert_accessible(client, "waiting-phone")
    await screenshots(client, "waiting-room")

    # The dashboard shows them waiting; the therapist admits them and goes to the call.
    try:
        await expect(lobby).to_have_count(1)
    except AssertionError as exc:
        status = await therapist.locator("#lobby-status").text_content()
        raise AssertionError(f"no one in the dashboard's lobby; its status: {status!r}") from exc
    await expect(lobby).to_contain_text(CLIENT_NAME)
    await assert_accessible(therapist, "dashboard-waiting-desktop")
    await screenshots(therapist, "dashboard-waiting")
    await lobby.locator('button[data-action="admit"]').click()
    await therapist.wait_for_url(re.compile(rf"/call/{appointment.id}$"))

    # Both see each other.
    await expect(client.locator("#call")).to_be_visible()
    await wait_for_video(therapist, "#remote-video")
    await wait_for_video(client, "#remote-video")
    await assert_accessible(therapist, "call-therapist-desktop")
    await assert_accessible(client, "call-client-phone")
    await assert_fits_width(client)
    await screenshots(therapist, "call-therapist")
    await screenshots(client, "call-client")

    # The therapist ends the session; the client is told.
    await end_session(therapist, client)
    await expect(client.locator("#ended")).to_be_visible()
    await expect(client.locator("#call")).to_be_hidden()
    contexts.assert_clean()
