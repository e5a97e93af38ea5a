"""``/metrics``: off without a token, refused with a wrong one, and what a real session and a
real booking leave in it — without a name, e-mail address or token in any label."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import outbox
from server.app import create_app
from server.metrics import Metrics, TimedFanout
from server.settings import SettingsError
from signalling.fanout import LocalFanout
from tests.conftest import AiohttpClient, FakeClock, LiveServer, free_port, make_settings
from tests.server.test_api import BOOKINGS, booking_body
from tests.server.test_calls import latest_lobby
from tests.server.test_ws import Cast, round_trip, therapist_with
from tests.support.arrange import make_bookable_therapist

TOKEN = "metrics-token-" + "m" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Sessions = async_sessionmaker[AsyncSession]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@contextlib.asynccontextmanager
async def serving_metrics(url: str, data_dir: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    """As ``tests.server.test_ws.serving``, with ``/metrics`` turned on."""
    port = free_port()
    settings = make_settings(
        url,
        data_dir,
        ALCOVE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ALCOVE_METRICS_TOKEN=TOKEN,
    )
    server = TestServer(create_app(settings, clock=clock), host="127.0.0.1", port=port)
    await server.start_server()
    cast = Cast(LiveServer(settings, server), clock)
    try:
        yield cast
    finally:
        await cast.aclose()
        await server.close()


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving_metrics(migrated_url, tmp_path / "var", clock) as served:
        yield served


async def scrape(cast: Cast) -> tuple[str, Samples]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{cast.url}/metrics", headers=AUTH) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        text = await response.text()
    return text, samples(text)


# --- access ------------------------------------------------------------------------------


async def test_without_a_token_there_is_no_metrics_endpoint(client: TestClient[Any, Any]) -> None:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 404


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
async def test_a_missing_or_wrong_token_is_401(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    header: str | None,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_METRICS_TOKEN=TOKEN)
    http = await aiohttp_client(create_app(settings, clock=clock))
    headers = {} if header is None else {"Authorization": header}
    response = await http.get("/metrics", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "alcove_" not in await response.text()

    right = await http.get("/metrics", headers=AUTH)
    assert right.status == 200
    assert "alcove_rooms" in await right.text()


def test_a_short_token_is_refused(migrated_url: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ALCOVE_METRICS_TOKEN"):
        make_settings(migrated_url, tmp_path / "var", ALCOVE_METRICS_TOKEN="short")


def test_every_app_has_a_registry_of_its_own(clock: FakeClock) -> None:
    first, second = Metrics(clock), Metrics(clock)
    first.bookings.labels(result="booked").inc()
    assert second.registry is not first.registry
    name, booked = "alcove_booking_outcomes_total", {"result": "booked"}
    assert first.registry.get_sample_value(name, booked) == 1
    assert second.registry.get_sample_value(name, booked) == 0


# --- a real session and a real booking ------------------------------------------------------


async def test_a_session_and_a_booking_show_in_the_scrape(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    _, [(appointment, token)] = await therapist_with(db, clock, "sam@example.com", "Alex Morgan")
    client = await cast.client(token)
    call_page = await cast.therapist("sam@example.com", appointment)
    [entry] = await latest_lobby(call_page)
    _, before = await scrape(cast)
    assert value(before, "alcove_connected_participants") == 2
    assert value(before, "alcove_rooms", state="waiting") == 1
    assert value(before, "alcove_rooms", state="in_call") == 0

    clock.advance(minutes=3)
    await call_page.send({"type": "admit", "participant": entry["participant"]})
    await client.expect("admitted")
    await call_page.expect("peer-joined")
    await client.send({"type": "admit", "participant": entry["participant"], "id": "x"})
    assert (await client.expect("error"))["error"] == "forbidden"
    await client.send({"type": "call-connected", "admitToConnectedMs": 840})
    await call_page.send({"type": "call-connected", "admitToConnectedMs": 10, "id": "y"})
    assert (await call_page.expect("error"))["error"] == "forbidden"
    # A candidate as a browser writes it is relayed unparsed, and still counted.
    line = "candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host"
    candidate = {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "9fq2"}
    await client.send({"type": "candidate", "candidate": candidate})
    assert (await call_page.expect("candidate"))["candidate"] == candidate
    await round_trip(client, call_page)
    text, after = await scrape(cast)

    assert value(after, "alcove_connected_participants") == 2
    assert value(after, "alcove_rooms", state="waiting") == 0
    assert value(after, "alcove_rooms", state="in_call") == 1
    assert value(after, "alcove_waiting_room_seconds_count") == 1
    assert value(after, "alcove_waiting_room_seconds_sum") == 180
    assert value(after, "alcove_waiting_room_seconds_bucket", le="120.0") == 0
    assert value(after, "alcove_waiting_room_seconds_bucket", le="300.0") == 1
    received = "alcove_signalling_messages_received_total"
    assert value(after, received, type="hello") == 2
    assert value(after, received, type="admit") == 2  # the client's too, refused
    assert value(after, received, type="ping") >= 2
    assert value(after, received, type="candidate") == 1
    assert value(after, "alcove_signalling_errors_total", code="forbidden") == 2
    assert value(after, "alcove_admit_to_connected_seconds_count") == 1
    assert value(after, "alcove_admit_to_connected_seconds_sum") == 0.84
    assert value(after, "alcove_admit_to_connected_seconds_bucket", le="0.5") == 0
    assert value(after, "alcove_admit_to_connected_seconds_bucket", le="1.0") == 1
    # Both sockets are on this one instance: their effects never take the fan-out's hop.
    assert value(after, "alcove_fanout_lag_seconds_count") == 0

    async with aiohttp.ClientSession() as http:
        bookable = await make_bookable_therapist(db)
        async with http.post(cast.url + BOOKINGS, json=booking_body(bookable)) as response:
            assert response.status == 201, await response.text()
        async with http.post(cast.url + BOOKINGS, json=booking_body(bookable)) as response:
            assert response.status == 409
        async with http.post(cast.url + BOOKINGS, json={"start": "soon"}) as response:
            assert response.status == 422
    text, booked = await scrape(cast)
    assert value(booked, "alcove_booking_outcomes_total", result="booked") == 1
    assert value(booked, "alcove_booking_outcomes_total", result="slot_taken") == 1
    assert value(booked, "alcove_booking_outcomes_total", result="invalid") == 1
    async with db() as session:
        pending = await outbox.pending_count(session)
    assert pending > 0
    assert value(booked, "alcove_outbox_pending") == pending

    labels = {v for scraped in (after, booked) for (_, pairs) in scraped for _, v in pairs}
    for secret in ("Alex Morgan", "sam@example.com", "Robin Quill", "robin@example.net", token):
        assert secret not in text
        assert not any(secret in label for label in labels)
    assert not any(label.startswith(("a-", "c-", "t-")) for label in labels)


async def test_the_lag_of_one_payload_in_sixteen_is_observed_and_every_payload_arrives() -> None:
    metrics = Metrics(FakeClock())
    fanout = TimedFanout(LocalFanout(), metrics)
    received: list[str] = []

    async def receive(payload: str) -> None:
        received.append(payload)

    await fanout.subscribe("channel", receive)
    sent = [f'{{"n":{n},"text":"with spaces, and 0 1.5 digits"}}' for n in range(33)]
    for payload in sent:
        await fanout.publish("channel", payload)

    assert received == sent
    assert metrics.registry.get_sample_value("alcove_fanout_lag_seconds_count") == 3  # 0, 16, 32


async def test_a_payload_stamped_by_an_instance_that_timed_every_one_is_observed() -> None:
    metrics = Metrics(FakeClock())
    inner = LocalFanout()
    fanout = TimedFanout(inner, metrics)
    received: list[str] = []

    async def receive(payload: str) -> None:
        received.append(payload)

    await fanout.subscribe("channel", receive)
    await inner.publish("channel", f"{time.time() - 0.002!r} {{}}")

    assert received == ["{}"]
    assert (metrics.registry.get_sample_value("alcove_fanout_lag_seconds_sum") or 0) >= 0.002
