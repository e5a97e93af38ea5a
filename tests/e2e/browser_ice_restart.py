"""ICE restarts in real browsers: when the media path between the two browsers is cut, or
the therapist's network changes, the therapist's page (the impolite side) restarts ICE
through signalling, and the call carries on in the same page and the same peer connection.

Inner module: run by ``test_browser.py`` inside a private network namespace.  The two
Chromium contexts reach each other over the namespace's veth addresses (10.99.0.x), whose
packets the kernel delivers through ``lo``; ``media_cut()`` drops exactly those with ``tc``,
so the media stops while the websockets on 127.0.0.1 carry on.

The tests reach the peer connections the way a DevTools user would: an init script, run by
the browser before the page's own scripts and outside its Content-Security-Policy, lists
each ``RTCPeerConnection`` the page makes.  The app itself exposes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.conftest import App, in_private_network
from tests.e2e.harness import ARTIFACTS, Contexts, sign_in
from tests.support.arrange import make_appointment, make_therapist

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"
THOUGHT_RECORD = "cbt-thought-record"
SITUATION = "Sunday dinner, he went quiet"
# Generous: ICE notices the cut after a few seconds, then waits three more before it
# restarts, on a machine where two browsers decode video at once.
RESTART_TIMEOUT_MS = 45_000
# Frames that must arrive after the restart before the video counts as flowing again.
FRAMES_AFTER = 10

# Lists the page's peer connections in ``window.__peerConnections``, in order of creation.
RECORD_PEER_CONNECTIONS = """(() => {
    const made = [];
    Object.defineProperty(window, "__peerConnections", { value: made });
    window.RTCPeerConnection = new Proxy(window.RTCPeerConnection, {
        construct(target, args, newTarget) {
            const pc = Reflect.construct(target, args, newTarget);
            made.push(pc);
            return pc;
        },
    });
})();"""

# The call's peer connection: the one open connection with a remote description.
_ACTIVE = """const active = () => {
    const open = window.__peerConnections.filter(
        (pc) => pc.signalingState !== "closed" && pc.remoteDescription !== null);
    return open.length === 1 ? open[0] : null;
};"""

SNAPSHOT = (
    "() => {"
    + _ACTIVE
    + """
    const pc = active();
    if (!pc) return null;
    const line = (d, name) => {
        const m = d ? new RegExp(`^a=${name}:(.+)$`, "m").exec(d.sdp) : null;
        return m ? m[1].trim() : null;
    };
    return {
        index: window.__peerConnections.indexOf(pc),
        local_ufrag: line(pc.localDescription, "ice-ufrag"),
        remote_ufrag: line(pc.remoteDescription, "ice-ufrag"),
        local_type: pc.localDescription ? pc.localDescription.type : null,
        fingerprint: line(pc.localDescription, "fingerprint"),
        signaling_state: pc.signalingState,
        ice_state: pc.iceConnectionState,
    };
}"""
)

# The video frames the call's peer connection has decoded so far (-1: no call).
_DECODED = """const decoded = async () => {
    const pc = active();
    if (!pc) return -1;
    let frames = 0;
    (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
    });
    return frames;
};"""
FRAMES_DECODED = "async () => {" + _ACTIVE + _DECODED + "return await decoded(); }"
# Waits until the call has decoded ``floor`` frames: wait_for_function would take the
# promise of an async predicate for a true value at once.
FRAMES_REACH = (
    "async (floor) => {"
    + _ACTIVE
    + _DECODED
    + """
    while ((await decoded()) < floor) await new Promise((r) => setTimeout(r, 200));
}"""
)

# Counts the frames the remote <video> presents from now on, in ``window[flag]``.
COUNT_PRESENTED = """(flag) => {
    window[flag] = 0;
    const video = document.querySelector("#remote-video");
    const tick = () => { window[flag] += 1; video.requestVideoFrameCallback(tick); };
    video.requestVideoFrameCallback(tick);
}"""

# Same ICE credentials as ``before`` no more, on both ends, and the negotiation is over.
RESTARTED = (
    "(before) => {"
    + _ACTIVE
    + """
    const pc = active();
    if (!pc || pc.signalingState !== "stable") return false;
    const ufrag = (d) => /^a=ice-ufrag:(\\S+)$/m.exec(d.sdp)[1];
    return ufrag(pc.localDescription) !== before.local_ufrag
        && ufrag(pc.remoteDescription) !== before.remote_ufrag;
}"""
)

ICE_CONNECTED = (
    "() => {"
    + _ACTIVE
    + """
    const pc = active();
    return pc !== null && ["connected", "completed"].includes(pc.iceConnectionState)
        && pc.connectionState === "connected";
}"""
)


@dataclass(frozen=True)
class IceSnapshot:
    """What one side's peer connection says about its ICE session."""

    index: int
    local_ufrag: str
    remote_ufrag: str
    local_type: str
    fingerprint: str
    signaling_state: str
    ice_state: str


async def snapshot(page: Page) -> IceSnapshot:
    found: dict[str, Any] | None = await page.evaluate(SNAPSHOT)
    assert found is not None, f"{page.url}: not exactly one open peer connection"
    return IceSnapshot(**found)


async def frames_decoded(page: Page) -> int:
    decoded: int = await page.evaluate(FRAMES_DECODED)
    return decoded


async def wait_for_restart(page: Page, before: IceSnapshot) -> IceSnapshot:
    """Both ICE credentials of ``page``'s peer connection changed; the negotiation is over."""
    try:
        await page.wait_for_function(
            RESTARTED, arg=before.__dict__, polling=200, timeout=RESTART_TIMEOUT_MS
        )
    except PlaywrightTimeoutError:
        now: dict[str, Any] | None = await page.evaluate(SNAPSHOT)
        raise AssertionError(
            f"{page.url}: no ICE restart within {RESTART_TIMEOUT_MS / 1000:.0f} s;"
            f" before: {before}, now: {now}"
        ) from None
    return await snapshot(page)


async def wait_for_frames(page: Page, flag: str) -> None:
    """Video frames are decoded and presented again on ``page``, from now on."""
    floor = await frames_decoded(page)
    assert floor >= 0, f"{page.url}: no peer connection to read statistics from"
    await page.evaluate(COUNT_PRESENTED, flag)
    try:
        await asyncio.wait_for(
            page.evaluate(FRAMES_REACH, floor + FRAMES_AFTER), RESTART_TIMEOUT_MS / 1000
        )
        await page.wait_for_function(
            "([flag, n]) => window[flag] >= n",
            arg=[flag, FRAMES_AFTER],
            timeout=RESTART_TIMEOUT_MS,
        )
    except (TimeoutError, PlaywrightTimeoutError):
        decoded = await frames_decoded(page)
        presented = await page.evaluate("(flag) => window[flag]", flag)
        raise AssertionError(
            f"{page.url}: the video did not resume: {decoded - floor} frames decoded and"
            f" {presented} presented since the restart, {FRAMES_AFTER} of each expected"
        ) from None


async def tc(*parts: str) -> None:
    """Run ``tc`` with the words of ``parts``."""
    command = " ".join(parts)
    process = await asyncio.create_subprocess_exec(
        "tc", *command.split(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        reason = f"`tc {command}` failed: {output.decode(errors='replace').strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@asynccontextmanager
async def media_cut() -> AsyncIterator[None]:
    """Drop every packet between the namespace's veth addresses (the browsers' media and
    ICE checks), and nothing else: unclassified packets leave ``lo``'s htb queue directly.
    """
    assert in_private_network(), "refusing to touch the traffic control of the host"
    await tc("qdisc add dev lo root handle 1: htb")
    try:
        await tc("class add dev lo parent 1: classid 1:2 htb rate 1mbit")
        await tc("qdisc add dev lo parent 1:2 handle 2: blackhole")
        await tc(
            "filter add dev lo parent 1: protocol ip prio 1",
            "u32 match ip src 10.99.0.0/24 flowid 1:2",
        )
        yield
    finally:
        await tc("qdisc del dev lo root")


async def snap(page: Page, name: str) -> None:
    """A full-page screenshot under ``tests/artifacts/e2e/``, patient with a busy machine."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True, timeout=30_000)


async def in_call(app: App, contexts: Contexts) -> tuple[Page, Page]:
    """A therapist on the call page (desktop) and their client in the call (phone), both
    connected, each page carrying a marker that a reload would lose."""
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    appointment, token = await make_appointment(
        app.db, therapist_row.id, starts_at=now, client_name=CLIENT_NAME
    )
    therapist_context = await contexts.new("desktop")
    await therapist_context.add_init_script(RECORD_PEER_CONNECTIONS)
    therapist = await therapist_context.new_page()
    await sign_in(therapist, EMAIL, PASSWORD)
    client_context = await contexts.new("phone")
    await client_context.add_init_script(RECORD_PEER_CONNECTIONS)
    client = await client_context.new_page()
    await client.goto(f"/join/{token}")
    await client.wait_for_url("**/session")
    await client.locator("#join-waiting-room").click()
    await expect(client.locator("#waiting")).to_be_visible()
    lobby = therapist.locator("#lobby li[data-participant]")
    await expect(lobby).to_have_count(1)
    await lobby.locator('button[data-action="admit"]').click()
    await therapist.wait_for_url(re.compile(rf"/call/{appointment.id}$"))
    await expect(client.locator("#call")).to_be_visible()
    for page in (therapist, client):
        await expect(page.locator("#connection-state")).to_have_attribute(
            "data-state", "connected", timeout=20_000
        )
        await page.wait_for_function(ICE_CONNECTED)
        await page.evaluate("() => { window.__notReloaded = true; }")
    return therapist, client


def assert_restarted_by_the_therapist(therapist: IceSnapshot, client: IceSnapshot) -> None:
    """The last negotiation was the therapist's offer (the impolite side restarts ICE), and
    both ends agree on the new credentials."""
    assert (therapist.local_type, client.local_type) == ("offer", "answer"), (therapist, client)
    assert therapist.local_ufrag == client.remote_ufrag, (therapist, client)
    assert client.local_ufrag == therapist.remote_ufrag, (therapist, client)


async def assert_same_page_and_connection(page: Page, before: IceSnapshot) -> IceSnapshot:
    """``page`` was not reloaded, and its peer connection is the one it had, connected."""
    assert await page.evaluate("() => window.__notReloaded === true"), f"{page.url} reloaded"
    await page.wait_for_function(ICE_CONNECTED, timeout=RESTART_TIMEOUT_MS)
    await expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    after = await snapshot(page)
    assert after.index == before.index, f"{page.url}: a new peer connection replaced the call's"
    assert after.fingerprint == before.fingerprint, f"{page.url}: the DTLS certificate changed"
    assert after.local_ufrag != before.local_ufrag and after.remote_ufrag != before.remote_ufrag
    return after


async def test_a_cut_media_path_is_restarted_through_signalling_and_the_call_goes_on(
    app: App, contexts: Contexts
) -> None:
    therapist, client = await in_call(app, contexts)

    # A worksheet is open, and the client works on it in its tab: that must survive.
    await therapist.locator("#worksheet-choice").select_option(THOUGHT_RECORD)
    await therapist.locator("#worksheet-open").click()
    await expect(therapist.locator("#worksheet-close")).to_be_visible()
    worksheet_ref = await therapist.locator("#worksheet").get_attribute("data-worksheet-id")
    assert worksheet_ref is not None
    tab = client.locator("#tab-worksheet")
    await tab.click()
    await expect(tab).to_have_attribute("aria-selected", "true")
    await client.locator("#worksheet .worksheet-add-row").click()
    situation = client.locator('#worksheet [data-field-path="entries[0].situation"]')
    await situation.fill(SITUATION)
    await expect(
        therapist.locator('#worksheet [data-field-path="entries[0].situation"]')
    ).to_have_value(SITUATION)

    therapist_before = await snapshot(therapist)
    client_before = await snapshot(client)
    assert therapist_before.local_ufrag == client_before.remote_ufrag
    assert client_before.local_ufrag == therapist_before.remote_ufrag

    async with media_cut():
        # ICE notices, the page says so; the therapist's page restarts ICE by itself, and
        # the new offer and answer cross through signalling while the media path is down.
        await expect(therapist.locator("#connection-state")).to_have_attribute(
            "data-state", re.compile(r"^(reconnecting|failed)$"), timeout=RESTART_TIMEOUT_MS
        )
        await snap(therapist, "ice-restart-cut-therapist-desktop")
        offered = await wait_for_restart(therapist, therapist_before)
        answered = await wait_for_restart(client, client_before)
        assert_restarted_by_the_therapist(offered, answered)
        # Negotiated while no media could pass: only the websockets carried it.
        assert offered.ice_state not in ("connected", "completed"), offered

    therapist_after = await assert_same_page_and_connection(therapist, therapist_before)
    client_after = await assert_same_page_and_connection(client, client_before)
    assert_restarted_by_the_therapist(therapist_after, client_after)

    # The client's page kept its state: the worksheet tab, the worksheet and what was typed.
    await expect(tab).to_have_attribute("aria-selected", "true")
    await expect(client.locator("#call-layout")).to_have_attribute("data-tab", "worksheet")
    await expect(client.locator("#worksheet")).to_have_attribute("data-worksheet-id", worksheet_ref)
    await expect(situation).to_have_value(SITUATION)
    await expect(therapist.locator("#worksheet")).to_have_attribute(
        "data-worksheet-id", worksheet_ref
    )

    # Video flows again both ways: decoded, and presented by the visible <video>.
    await wait_for_frames(therapist, "__framesAfterRestart")
    await client.locator("#tab-video").click()
    await wait_for_frames(client, "__framesAfterRestart")
    await snap(therapist, "ice-restart-resumed-therapist-desktop")
    await snap(client, "ice-restart-resumed-client-phone")
    contexts.assert_clean()


# What the browser fires when the device is back online, or moves to another network.
NETWORK_EVENTS = {
    "online": "() => window.dispatchEvent(new Event('online'))",
    "connection-change": "() => navigator.connection.dispatchEvent(new Event('change'))",
}


@pytest.mark.parametrize("event", sorted(NETWORK_EVENTS))
async def test_a_network_change_on_the_therapists_side_restarts_ice(
    app: App, contexts: Contexts, event: str
) -> None:
    therapist, client = await in_call(app, contexts)
    therapist_before = await snapshot(therapist)
    client_before = await snapshot(client)

    await therapist.evaluate(NETWORK_EVENTS[event])
    offered = await wait_for_restart(therapist, therapist_before)
    answered = await wait_for_restart(client, client_before)
    assert_restarted_by_the_therapist(offered, answered)

    await assert_same_page_and_connection(therapist, therapist_before)
    await assert_same_page_and_connection(client, client_before)
    await wait_for_frames(therapist, "__framesAfterRestart")
    await wait_for_frames(client, "__framesAfterRestart")
    await snap(client, f"ice-restart-{event}-client-phone")
    contexts.assert_clean()
