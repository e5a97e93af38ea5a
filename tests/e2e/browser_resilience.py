"""A call that survives a real network: the client's websocket drops and comes back without
the therapist letting them in again, chat lines cross both ways, a shared screen starts and
stops without dropping the call, and a reloaded page goes straight back into the call.

Inner module: run by ``test_browser.py`` inside a private network namespace. The client's
websocket goes through Playwright's websocket routing, so the test can break it (and refuse
reconnections for a while) while the peer-to-peer media carries on untouched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.e2e.conftest import App
from tests.e2e.harness import (
    ARTIFACTS,
    Contexts,
    assert_accessible,
    assert_fits_width,
    sign_in,
    wait_for_video,
)
from tests.support.arrange import make_appointment, make_therapist

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"
# How long the client's websocket stays broken: long enough to be seen, far below the
# server's 120 s before an offline participant counts as left.
OUTAGE_S = 2.5
# The connection test measures for up to 10 s, then gives its verdict.
VERDICT_TIMEOUT_MS = 20_000

# Records, in the page, whether an element ever became visible (a MutationObserver plus a
# check on every animation frame), so a brief flash between two assertions is not missed.
WATCH_VISIBLE = """([selector, flag]) => {
    window[flag] = false;
    const check = () => {
        const el = document.querySelector(selector);
        if (el && !el.hidden && el.offsetParent !== null) window[flag] = true;
    };
    new MutationObserver(check).observe(document.body, {
        subtree: true, attributes: true, childList: true, attributeFilter: ["hidden", "class"],
    });
    const loop = () => { check(); requestAnimationFrame(loop); };
    loop();
}"""


@dataclass
class SocketSwitch:
    """The client's websockets, through Playwright: break them, refuse new ones for a while."""

    routes: list[WebSocketRoute] = field(default_factory=list)
    refusing: bool = False
    refused: int = 0

    async def handle(self, route: WebSocketRoute) -> None:
        if self.refusing:
            self.refused += 1
            await route.close(code=4000, reason="network down")
            return
        route.connect_to_server()
        self.routes.append(route)

    async def break_all(self) -> None:
        self.refusing = True
        for route in self.routes:
            await route.close(code=4000, reason="network down")
        self.routes.clear()


async def snap(page: Page, name: str) -> None:
    """A full-page screenshot under ``tests/artifacts/e2e/``, patient with a busy machine
    (two browsers decoding video while it is taken)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True, timeout=30_000)


async def video_time(page: Page) -> float:
    time: float = await page.evaluate("() => document.querySelector('#remote-video').currentTime")
    return time


async def test_the_call_survives_a_dropped_socket_and_carries_chat_and_a_shared_screen(
    app: App, contexts: Contexts
) -> None:
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    appointment, token = await make_appointment(
        app.db, therapist_row.id, starts_at=now, client_name=CLIENT_NAME
    )

    therapist = await contexts.page("desktop")
    await sign_in(therapist, EMAIL, PASSWORD)

    client_context = await contexts.new("phone")
    switch = SocketSwitch()
    await client_context.route_web_socket(re.compile(r"/ws$"), switch.handle)
    client = await client_context.new_page()
    await client.goto(f"/join/{token}")
    await client.wait_for_url("**/session")

    # (d) The connection test in the pre-join panel, with its verdict.
    await wait_for_video(client, "#preview-video", playing=True)
    await client.locator("#connection-test-start").click()
    await expect(client.locator("#connection-test-result")).to_be_visible(
        timeout=VERDICT_TIMEOUT_MS
    )
    await expect(client.locator("#connection-test-verdict")).not_to_be_empty()
    await snap(client, "resilience-connection-test-phone")

    # The client joins, the therapist admits them from the dashboard; they see each other.
    await client.locator("#join-waiting-room").click()
    await expect(client.locator("#waiting")).to_be_visible()
    lobby = therapist.locator("#lobby li[data-participant]")
    await expect(lobby).to_have_count(1)
    await lobby.locator('button[data-action="admit"]').click()
    await therapist.wait_for_url(re.compile(rf"/call/{appointment.id}$"))
    await expect(client.locator("#call")).to_be_visible()
    await wait_for_video(therapist, "#remote-video")
    await wait_for_video(client, "#remote-video")
    connected = '[data-state="connected"]'
    await expect(therapist.locator(f"#connection-state{connected}")).to_be_visible()
    await expect(client.locator(f"#connection-state{connected}")).to_be_visible()
    await expect(therapist.locator("#session-timer")).to_be_visible()
    await expect(therapist.locator("#session-ends")).to_contain_text("Ends at")

    # The therapist also keeps the dashboard open in another tab.
    dashboard = await therapist.context.new_page()
    await dashboard.goto("/dashboard")
    dashboard_entry = dashboard.locator("#lobby li[data-participant]")
    await expect(dashboard_entry).to_contain_text("In call")

    # (a) The client's websocket breaks and stays down for a while.
    await therapist.evaluate(WATCH_VISIBLE, ["#admit-client", "__sawAdmit"])
    await client.evaluate(WATCH_VISIBLE, ["#waiting", "__sawWaiting"])
    await client.evaluate(WATCH_VISIBLE, ["#prejoin", "__sawPrejoin"])
    await switch.break_all()
    await expect(client.locator("#network-status")).to_contain_text("Reconnecting")
    await expect(therapist.locator("#peer-presence")).to_have_text("Your client is reconnecting…")
    await expect(dashboard_entry).to_contain_text("reconnecting…")
    await expect(client.locator("#call")).to_be_visible()
    before = await video_time(client)
    await asyncio.sleep(OUTAGE_S)
    await snap(client, "resilience-reconnecting-phone")
    await snap(therapist, "resilience-client-reconnecting-desktop")
    # The media went on peer-to-peer meanwhile.
    assert await video_time(client) > before, "the remote video stopped during the outage"

    # The network is back: the client returns to the call by itself.
    switch.refusing = False
    await expect(client.locator("#network-status")).to_be_empty(timeout=15_000)
    await expect(therapist.locator("#peer-presence")).to_be_empty()
    await expect(dashboard_entry).to_contain_text("In call")
    await dashboard.close()
    await expect(client.locator("#call")).to_be_visible()
    await expect(client.locator(f"#connection-state{connected}")).to_be_visible()
    await expect(therapist.locator(f"#connection-state{connected}")).to_be_visible()
    assert not await client.evaluate("() => window.__sawWaiting"), "the waiting room was shown"
    assert not await client.evaluate("() => window.__sawPrejoin"), "the join screen was shown"
    assert not await therapist.evaluate("() => window.__sawAdmit"), "the therapist had to admit"
    assert len(switch.routes) == 1, "the client did not reconnect exactly once"

    # (b) Chat, both ways; the client's unread count shows while their panel is closed.
    await therapist.locator("#chat-toggle").click()
    await therapist.locator("#chat-input").fill("Can you hear me? <b>not bold</b>")
    await therapist.locator("#chat-input").press("Enter")
    await expect(client.locator("#chat-unread")).to_contain_text("1")
    await client.locator("#chat-toggle").click()
    await expect(client.locator("#chat-log")).to_contain_text("Can you hear me? <b>not bold</b>")
    assert await client.locator("#chat-log b").count() == 0, "chat text was parsed as markup"
    await expect(client.locator("#chat-panel")).to_be_visible()
    await client.locator("#chat-input").fill("Yes, loud and clear")
    await client.locator("#chat-form button[type=submit]").click()
    await expect(therapist.locator("#chat-log")).to_contain_text("Yes, loud and clear")
    await expect(therapist.locator(".chat-undelivered")).to_have_count(0)
    await assert_fits_width(client)
    await assert_accessible(client, "call-extras-client-phone")
    await assert_accessible(therapist, "call-extras-therapist-desktop")
    await snap(client, "resilience-chat-phone")

    # (c) The therapist shares their screen, and stops; the call stays connected throughout.
    share = therapist.locator("#share-screen")
    await expect(share).to_be_visible()
    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "true")
    await expect(client.locator("#remote-video.is-screen")).to_have_count(1)
    await expect(therapist.locator(f"#connection-state{connected}")).to_be_visible()
    await snap(client, "resilience-screen-shared-phone")
    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "false")
    await expect(client.locator("#remote-video.is-screen")).to_have_count(0)
    await expect(client.locator(f"#connection-state{connected}")).to_be_visible()
    await expect(therapist.locator(f"#connection-state{connected}")).to_be_visible()
    await wait_for_video(client, "#remote-video")

    # Audio only: the client sees a paused note instead of a frozen picture.
    await therapist.locator("#audio-only").click()
    await expect(client.locator(".remote-paused")).to_be_visible()
    await therapist.locator("#audio-only").click()
    await expect(client.locator(".remote-paused")).to_be_hidden()

    # A reload starts the client's side afresh while the therapist's call may still be up:
    # both end on new peer connections, and the client needs no second admission.
    await client.reload()
    await client.locator("#join-waiting-room").click()
    await expect(client.locator("#call")).to_be_visible()
    await expect(client.locator(f"#connection-state{connected}")).to_be_visible(timeout=20_000)
    await expect(therapist.locator(f"#connection-state{connected}")).to_be_visible()
    await wait_for_video(client, "#remote-video")
    assert not await therapist.evaluate("() => window.__sawAdmit"), "the therapist had to admit"

    contexts.assert_clean()


# The pure parts of the call's modules, run in the real browser (the project has no other
# JavaScript runner): the page only provides the origin the modules are loaded from.
MODULE_CHECKS = """async () => {
    const quality = await import("/static/js/quality.js");
    const timer = await import("/static/js/session-timer.js");
    const call = await import("/static/js/call.js");
    const reconnect = await import("/static/js/call-reconnect.js");
    const level = (rttMs, lossPercent, kbpsAvailable) =>
        quality.classifyQuality({ rttMs, lossPercent, kbpsAvailable });
    const entry = (state, online) => ({ state, online });
    return {
        good: level(40, 0, 2000),
        fairRtt: level(300, 0, 2000),
        poorLoss: level(40, 10, 2000),
        poorBitrate: level(40, 0, 100),
        unmeasured: level(null, null, null),
        partly: level(null, 0.5, null),
        loss: quality.lossBetween({ received: 100, lost: 0 }, { received: 190, lost: 10 }),
        lossWithoutTraffic: quality.lossBetween({ received: 5, lost: 0 }, { received: 5, lost: 0 }),
        elapsed: [timer.formatElapsed(65_000), timer.formatElapsed(3_725_000)],
        endingSoon: [timer.isEndingSoon(0, 4 * 60_000), timer.isEndingSoon(0, 6 * 60_000)],
        fingerprint: call.fingerprintOf("v=0\\r\\na=fingerprint:sha-256 AB:CD\\r\\n"),
        presence: [
            reconnect.clientPresence(null),
            reconnect.clientPresence(entry("waiting", true)),
            reconnect.clientPresence(entry("admitted", false)),
            reconnect.clientPresence(entry("in_call", true)),
        ],
    };
}"""


async def test_quality_timer_and_presence_rules_give_the_documented_answers(
    contexts: Contexts,
) -> None:
    page = await contexts.page("desktop")
    await page.goto("/login")
    result = await page.evaluate(MODULE_CHECKS)
    assert result == {
        "good": "good",
        "fairRtt": "fair",
        "poorLoss": "poor",
        "poorBitrate": "poor",
        "unmeasured": None,
        "partly": "good",
        "loss": 10,
        "lossWithoutTraffic": None,
        "elapsed": ["1:05", "1:02:05"],
        "endingSoon": [True, False],
        "fingerprint": "sha-256 ab:cd",
        "presence": ["left", "waiting", "reconnecting", "back"],
    }
    contexts.assert_clean()
