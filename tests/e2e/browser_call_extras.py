"""The call's extras in real browsers: either side turns its video off (audio only) and back
on, a link that stays poor offers audio only, a camera or microphone is switched mid-call
without renegotiating, and the quality indicator and the session timer say what they should.

Inner module: run by ``test_browser.py`` inside a private network namespace.  The peer
connections are reached the way ``browser_ice_restart.py`` reaches them (an init script
lists them), and a second init script counts the offers each page makes.  The poor link is
a real one: ``tc`` squeezes the traffic between the namespace's veth addresses (the
browsers' media) through a narrow queue, while the websockets on 127.0.0.1 keep their speed.

This module starts its own Chromium with three fake cameras, so that there is another camera
to switch to (Chromium's fake devices already include several microphones).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e import harness
from tests.e2e.browser_ice_restart import (
    _ACTIVE,
    COUNT_PRESENTED,
    ICE_CONNECTED,
    RECORD_PEER_CONNECTIONS,
    snap,
    tc,
)
from tests.e2e.conftest import App, in_private_network
from tests.e2e.harness import Contexts, Kind, sign_in
from tests.support.arrange import make_appointment, make_therapist

pytestmark = pytest.mark.asyncio(loop_scope="session")

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"
# The therapist sees the session in UTC, the client in their own time zone.
CLIENT_ZONE = "America/New_York"
# Generous: two browsers decode video at once on a small, shared machine.
MEDIA_TIMEOUT_MS = 45_000
# The prompt needs 10 s of poor samples, after the estimates have sunk to the narrow link.
WEAK_TIMEOUT_MS = 90_000
# Frames (or audio packets) that must arrive before media counts as flowing.
ENOUGH = 10
# Chromium's second fake camera gives depth frames (Y16), which no video encoder takes: the
# third (MJPEG) is an ordinary camera.
SECOND_CAMERA = "fake_device_2"
SECOND_MICROPHONE = "Fake Audio Input 1"

# Counts, in ``window.__offersMade``, the offers this page's peer connections set locally
# (every offer the page sends, renegotiations and ICE restarts included).
COUNT_OFFERS = """(() => {
    let made = 0;
    Object.defineProperty(window, "__offersMade", { get: () => made });
    const proto = window.RTCPeerConnection.prototype;
    const original = proto.setLocalDescription;
    proto.setLocalDescription = async function (...args) {
        const result = await original.apply(this, args);
        if (this.localDescription && this.localDescription.type === "offer") made += 1;
        return result;
    };
})();"""

# What the call's senders of ``kind`` carry: one entry per transceiver of that kind.
SENDERS = (
    "(kind) => {"
    + _ACTIVE
    + """
    const pc = active();
    if (!pc) return null;
    return pc.getTransceivers()
        .filter((t) => t.receiver.track.kind === kind && !t.stopped)
        .map((t) => {
            const track = t.sender.track;
            return track && {
                id: track.id, label: track.label, state: track.readyState,
                enabled: track.enabled, device: track.getSettings().deviceId || "",
            };
        });
}"""
)

# Video frames decoded plus audio packets received by the call's peer connection so far.
_RECEIVED = """const received = async (kind) => {
    const pc = active();
    if (!pc) return -1;
    let count = 0;
    (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === kind)
            count += (kind === "video" ? r.framesDecoded : r.packetsReceived) || 0;
    });
    return count;
};"""
RECEIVED = "async (kind) => {" + _ACTIVE + _RECEIVED + "return await received(kind); }"
RECEIVED_REACH = (
    "async ([kind, floor]) => {"
    + _ACTIVE
    + _RECEIVED
    + """
    while ((await received(kind)) < floor) await new Promise((r) => setTimeout(r, 200));
}"""
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Chromium as ``harness.launch_browser`` starts it, with three fake cameras."""
    if not in_private_network():
        pytest.fail("the browser tests run only inside their private network namespace")
    fake = "--use-fake-device-for-media-stream"
    args = [f"{fake}=device-count=3" if a == fake else a for a in harness.CHROMIUM_ARGS]
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(harness.CHROMIUM), args=args, headless=True
        )
        yield chromium
        await chromium.close()


async def senders(page: Page, kind: str) -> list[dict[str, Any] | None]:
    found: list[dict[str, Any] | None] | None = await page.evaluate(SENDERS, kind)
    assert found, f"{page.url}: no open call with a {kind} transceiver"
    return found


async def wait_for_senders(page: Page, kind: str, test: str, *, label: str = "") -> None:
    """Wait until ``test`` ("none": no track at all, "label": a live track named ``label``)
    holds for the call's ``kind`` senders on ``page``."""
    check = (
        f"([kind, label]) => {{ const found = ({SENDERS})(kind);"
        " if (!found || found.length === 0) return false;"
        + (
            " return found.every((s) => s === null); }"
            if test == "none"
            else " return found.some((s) => s && s.label === label && s.state === 'live'); }"
        )
    )
    try:
        await page.wait_for_function(check, arg=[kind, label], timeout=MEDIA_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        now = await page.evaluate(SENDERS, kind)
        raise AssertionError(f"{page.url}: {kind} senders never became {test}: {now}") from None


async def offers_made(page: Page) -> int:
    made: int = await page.evaluate("() => window.__offersMade")
    return made


async def assert_no_new_offer(therapist: Page, client: Page, before: tuple[int, int]) -> None:
    """Neither page made an offer since ``before`` (the therapist's and the client's count)."""
    now = (await offers_made(therapist), await offers_made(client))
    assert now == before, f"renegotiated: offers made (therapist, client) went {before} -> {now}"


async def wait_for_media(page: Page, kind: str, flag: str = "") -> None:
    """``kind`` media reaches ``page`` from now on: ``ENOUGH`` more video frames decoded
    (and, with ``flag``, presented by the remote <video>) or audio packets received."""
    floor: int = await page.evaluate(RECEIVED, kind)
    assert floor >= 0, f"{page.url}: no peer connection to read statistics from"
    if flag:
        await page.evaluate(COUNT_PRESENTED, flag)
    try:
        await asyncio.wait_for(
            page.evaluate(RECEIVED_REACH, [kind, floor + ENOUGH]), MEDIA_TIMEOUT_MS / 1000
        )
        if flag:
            await page.wait_for_function(
                "([flag, n]) => window[flag] >= n", arg=[flag, ENOUGH], timeout=MEDIA_TIMEOUT_MS
            )
    except (TimeoutError, PlaywrightTimeoutError):
        now: int = await page.evaluate(RECEIVED, kind)
        shown = await page.evaluate("(flag) => window[flag]", flag) if flag else "-"
        raise AssertionError(
            f"{page.url}: {kind} does not flow: {now - floor} received and {shown} presented,"
            f" {ENOUGH} expected"
        ) from None


def ends_at(end: dt.datetime, zone: str) -> re.Pattern[str]:
    """How an en-US page in ``zone`` says the session ends: "Ends at 3:50 PM"."""
    local = end.astimezone(zoneinfo.ZoneInfo(zone))
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return re.compile(rf"^Ends at {hour}:{local.minute:02d}\s{half}$")


@asynccontextmanager
async def weak_link() -> AsyncIterator[None]:
    """Squeeze every packet between the namespace's veth addresses (media and ICE checks,
    both ways) through 96 kbit/s and a queue of eight packets: what does not fit is lost,
    what fits waits.  Unclassified packets (the websockets) leave ``lo``'s htb directly."""
    assert in_private_network(), "refusing to touch the traffic control of the host"
    await tc("qdisc add dev lo root handle 1: htb")
    try:
        await tc("class add dev lo parent 1: classid 1:2 htb rate 96kbit ceil 96kbit")
        await tc("qdisc add dev lo parent 1:2 handle 2: pfifo limit 8")
        await tc(
            "filter add dev lo parent 1: protocol ip prio 1",
            "u32 match ip src 10.99.0.0/24 flowid 1:2",
        )
        yield
    finally:
        await tc("qdisc del dev lo root")


async def in_call(app: App, contexts: Contexts) -> tuple[Page, Page, dt.datetime]:
    """A therapist (desktop, UTC) and their client (phone, ``CLIENT_ZONE``) in a connected
    call of an appointment that began 7 minutes ago and lasts 45; returns its end."""
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    starts = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=7)
    appointment, token = await make_appointment(
        app.db, therapist_row.id, starts_at=starts, minutes=45, client_name=CLIENT_NAME
    )
    pages: list[Page] = []
    sides: tuple[tuple[Kind, str], ...] = (("desktop", "UTC"), ("phone", CLIENT_ZONE))
    for kind, zone in sides:
        context = await contexts.new(kind, timezone_id=zone)
        await context.add_init_script(RECORD_PEER_CONNECTIONS)
        await context.add_init_script(COUNT_OFFERS)
        pages.append(await context.new_page())
    therapist, client = pages
    await sign_in(therapist, EMAIL, PASSWORD)
    await client.goto(f"/join/{token}")
    await client.wait_for_url("**/session")
    await client.locator("#join-waiting-room").click()
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
    return therapist, client, starts + dt.timedelta(minutes=45)


async def test_the_quality_verdict_and_the_scheduled_end_show_during_the_call(
    app: App, contexts: Contexts
) -> None:
    therapist, client, end = await in_call(app, contexts)
    for page, zone in ((therapist, "UTC"), (client, CLIENT_ZONE)):
        quality = page.locator("#call-quality")
        await expect(quality).to_have_attribute(
            "data-level", re.compile(r"^(good|fair|poor)$"), timeout=20_000
        )
        await expect(quality).to_be_visible()
        await expect(quality).to_have_text(re.compile(r"^Connection: (good|fair|poor)$"))
        await expect(page.locator("#session-timer")).to_be_visible()
        await expect(page.locator("#session-elapsed")).to_have_text(re.compile(r"^\d+:\d\d$"))
        await expect(page.locator("#session-ends")).to_have_text(ends_at(end, zone))
    contexts.assert_clean()


async def test_either_side_turns_its_video_off_and_on_and_the_other_side_sees_why(
    app: App, contexts: Contexts
) -> None:
    therapist, client, _ = await in_call(app, contexts)
    await wait_for_media(client, "video", "__framesBefore")
    offers = (await offers_made(therapist), await offers_made(client))

    for n, (sender, viewer) in enumerate(((therapist, client), (client, therapist))):
        button = sender.locator("#audio-only")
        camera = await senders(sender, "video")
        assert all(s and s["state"] == "live" for s in camera), camera

        await button.click()
        await expect(button).to_have_attribute("aria-pressed", "true")
        # No video leaves the sender any more, and the viewer is told so instead of being
        # left with the last frame; the voice carries on.
        await wait_for_senders(sender, "video", "none")
        note = viewer.locator(".remote-paused")
        await expect(note).to_be_visible()
        await expect(note).to_have_text("Video paused — audio only")
        await expect(viewer.locator("#remote-video")).to_be_hidden()
        await wait_for_media(viewer, "audio")
        await snap(viewer, f"call-extras-video-paused-{n}")

        await button.click()
        await expect(button).to_have_attribute("aria-pressed", "false")
        await expect(note).to_be_hidden()
        await expect(viewer.locator("#remote-video")).to_be_visible()
        # ``replaceTrack`` settles a moment after the page has said so.
        labels = [s["label"] for s in camera if s]
        await wait_for_senders(sender, "video", "label", label=str(labels[0]))
        assert await senders(sender, "video") == camera, "the camera did not come back"
        await wait_for_media(viewer, "video", f"__framesAgain{n}")

    # All of it without a new offer.
    await assert_no_new_offer(therapist, client, offers)
    contexts.assert_clean()


async def test_a_link_that_stays_poor_offers_audio_only(app: App, contexts: Contexts) -> None:
    therapist, client, _ = await in_call(app, contexts)
    await wait_for_media(therapist, "video")
    for page in (therapist, client):
        await expect(page.locator("#weak-prompt")).to_be_hidden()
    async with weak_link():
        prompt = therapist.locator("#weak-prompt")
        await expect(prompt).to_be_visible(timeout=WEAK_TIMEOUT_MS)
        await expect(prompt).to_contain_text("Your connection is weak. Switch to audio only?")
        await expect(therapist.locator("#call-quality")).to_have_attribute("data-level", "poor")
        await snap(therapist, "call-extras-weak-prompt-desktop")
        await prompt.get_by_role("button", name="Switch to audio only").click()
        await expect(prompt).to_be_hidden()
        await expect(therapist.locator("#audio-only")).to_have_attribute("aria-pressed", "true")
        await expect(client.locator(".remote-paused")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
        # ``replaceTrack(null)`` settles a moment after the page has said so.
        await wait_for_senders(therapist, "video", "none")
        assert all(s is None for s in await senders(therapist, "video"))
    contexts.assert_clean()


async def test_a_camera_or_microphone_switched_mid_call_keeps_the_media_flowing(
    app: App, contexts: Contexts
) -> None:
    therapist, client, _ = await in_call(app, contexts)
    await wait_for_media(therapist, "video", "__framesBefore")
    offers = (await offers_made(therapist), await offers_made(client))
    received = await therapist.evaluate(
        "() => window.__peerConnections.flatMap((pc) => pc.getReceivers())"
        ".map((r) => r.track.id).sort()"
    )

    # The client picks the other camera, then another microphone, in the call's own settings.
    await client.locator(".call-devices summary").click()
    switches = (
        ("#call-camera-select", "video", SECOND_CAMERA),
        ("#call-microphone-select", "audio", SECOND_MICROPHONE),
    )
    for select, kind, label in switches:
        before = await senders(client, kind)
        await client.locator(select).select_option(label=label)
        await wait_for_senders(client, kind, "label", label=label)
        after = await senders(client, kind)
        assert after != before, (before, after)
        await wait_for_media(therapist, kind, f"__after{kind}" if kind == "video" else "")

    # The therapist switches camera too, from the call page's device settings.
    await therapist.locator(".device-settings summary").click()
    await therapist.locator("#camera-select").select_option(label=SECOND_CAMERA)
    await wait_for_senders(therapist, "video", "label", label=SECOND_CAMERA)
    await wait_for_media(client, "video", "__afterTherapistCamera")

    # Tracks were replaced in the senders: no offer, and the same receiving tracks.
    await assert_no_new_offer(therapist, client, offers)
    assert received == await therapist.evaluate(
        "() => window.__peerConnections.flatMap((pc) => pc.getReceivers())"
        ".map((r) => r.track.id).sort()"
    )
    contexts.assert_clean()


async def test_either_side_mutes_and_turns_its_camera_off_and_its_own_page_says_so(
    app: App, contexts: Contexts
) -> None:
    therapist, client, _ = await in_call(app, contexts)
    for page in (therapist, client):
        mute, camera = page.locator("#mute"), page.locator("#camera")
        state, own = page.locator("#self-state"), page.locator("#local-video")
        await expect(state).to_have_text("")

        await mute.click()
        await expect(mute).to_have_attribute("aria-pressed", "true")
        await expect(state).to_have_text("Your microphone is muted.")
        assert [s and s["enabled"] for s in await senders(page, "audio")] == [False]

        await camera.click()
        await expect(camera).to_have_attribute("aria-pressed", "true")
        await expect(state).to_have_text("Your microphone is muted and your camera is off.")
        await expect(own).to_have_class(re.compile(r"\bis-off\b"))
        assert [s and s["enabled"] for s in await senders(page, "video")] == [False]

        await mute.click()
        await camera.click()
        await expect(state).to_have_text("")
        await expect(own).not_to_have_class(re.compile(r"\bis-off\b"))
        assert [s and s["enabled"] for s in await senders(page, "audio")] == [True]
        assert [s and s["enabled"] for s in await senders(page, "video")] == [True]
    contexts.assert_clean()
