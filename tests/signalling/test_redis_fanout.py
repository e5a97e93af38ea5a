"""RedisFanout carries payloads between instances through a real Redis, and survives losing it.

Each test uses channels of its own (a random prefix), so tests may share the server.  Two
``RedisFanout`` objects in one process stand for two app instances: they share nothing but
Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.calls import REDIS_FANOUT
from server.models import Therapist
from server.settings import SettingsError, load_settings
from signalling import redis_publisher
from signalling.fanout import FanoutUnavailable
from signalling.redis_fanout import RedisFanout
from signalling.redis_wire import publish_commands
from tests.conftest import (
    THERAPIST_EMAIL,
    THERAPIST_PASSWORD,
    AiohttpClient,
    FakeClock,
    free_port,
    make_settings,
)
from tests.support.arrange import make_appointment
from tests.support.instances import eventually, private_redis
from tests.support.signalling_client import SignallingClient, client_session, sign_in_session

REDIS_URL = os.environ.get("ALCOVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WAIT = 10.0  # how long to wait for a delivery before failing: a bound, not a measurement

Factory = Callable[..., Awaitable[RedisFanout]]


class Inbox:
    """Collects payloads; ``wait_for`` returns once ``count`` have arrived."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._arrived = asyncio.Event()

    async def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(WAIT):
            while len(self.payloads) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.payloads


class Mixed:
    """A subscriber that finishes with an even payload at once and hands back, for an odd
    one, a coroutine that takes a few turns of the event loop before it records it."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.handed_back = 0

    def __call__(self, payload: str) -> Awaitable[None] | None:
        if int(payload) % 2 == 0:
            self.payloads.append(payload)
            return None
        self.handed_back += 1
        return self._slowly(payload)

    async def _slowly(self, payload: str) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.payloads.append(payload)


@pytest.fixture
async def redis_admin() -> AsyncIterator[Redis]:
    """A plain client of the test Redis, to look at and disturb it from outside."""
    admin = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await admin.ping()
    except Exception as exc:
        await admin.aclose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield admin
    await admin.aclose()


@pytest.fixture
async def fanouts(redis_admin: Redis) -> AsyncIterator[Factory]:
    """Started RedisFanouts (on the test Redis unless given a URL), closed after the test."""
    made: list[RedisFanout] = []

    async def make(url: str = REDIS_URL, **options: object) -> RedisFanout:
        fanout = RedisFanout(url, **options)  # type: ignore[arg-type]
        await fanout.start()
        made.append(fanout)
        return fanout

    yield make
    for fanout in made:
        await fanout.aclose()


@pytest.fixture
def prefix() -> str:
    return f"alcove-test:{secrets.token_hex(6)}:"


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_payloads_reach_both_instances_in_the_order_they_were_published(
    fanouts: Factory, prefix: str
) -> None:
    first, second = await fanouts(), await fanouts()
    here, there, elsewhere = Inbox(), Inbox(), Inbox()
    await first.subscribe(f"{prefix}room", here)
    await second.subscribe(f"{prefix}room", there)
    await second.subscribe(f"{prefix}other", elsewhere)

    for n in range(200):
        await first.publish(f"{prefix}room", str(n))
    await second.publish(f"{prefix}other", "done")

    expected = [str(n) for n in range(200)]
    assert await here.wait_for(200) == expected
    assert await there.wait_for(200) == expected
    assert await elsewhere.wait_for(1) == ["done"]


async def test_a_cancelled_subscriber_receives_nothing_more(fanouts: Factory, prefix: str) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    cancelled, staying = Inbox(), Inbox()
    subscription = await subscriber.subscribe(f"{prefix}c", cancelled)
    await subscriber.subscribe(f"{prefix}c", staying)
    await publisher.publish(f"{prefix}c", "before")
    await staying.wait_for(1)

    await subscription.cancel()
    await subscription.cancel()  # again: nothing happens
    await publisher.publish(f"{prefix}c", "after")

    # Both subscribers are served by one connection, in order: once ``staying`` has
    # "after", the cancelled one would have had it too.
    assert await staying.wait_for(2) == ["before", "after"]
    assert cancelled.payloads == ["before"]


async def test_a_channel_without_local_subscribers_is_unsubscribed_in_redis(
    fanouts: Factory, redis_admin: Redis, prefix: str
) -> None:
    fanout = await fanouts()
    subscription = await fanout.subscribe(f"{prefix}gone", Inbox())
    assert await redis_admin.pubsub_numsub(f"{prefix}gone") == [(f"{prefix}gone", 1)]

    await subscription.cancel()
    await fanout.subscribe(f"{prefix}sync", Inbox())  # confirmed after the unsubscribe

    assert await redis_admin.pubsub_numsub(f"{prefix}gone") == [(f"{prefix}gone", 0)]


async def test_a_failing_subscriber_does_not_keep_the_payload_from_the_others(
    fanouts: Factory, prefix: str
) -> None:
    fanout = await fanouts()
    inbox = Inbox()

    async def broken(payload: str) -> None:
        raise RuntimeError("subscriber bug")

    await fanout.subscribe(f"{prefix}c", broken)
    await fanout.subscribe(f"{prefix}c", inbox)
    await fanout.publish(f"{prefix}c", "still delivered")

    assert await inbox.wait_for(1) == ["still delivered"]


async def test_a_subscriber_finishing_at_once_or_later_gets_every_payload_in_order(
    fanouts: Factory, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    mixed, last = Mixed(), Inbox()
    await subscriber.subscribe(f"{prefix}c", mixed)
    await subscriber.subscribe(f"{prefix}last", last)

    for n in range(100):
        await publisher.publish(f"{prefix}c", str(n))
    await publisher.publish(f"{prefix}last", "done")

    # One reader serves both channels in order: once "done" is in, so is all of ``c``, each
    # payload handed back awaited before the next was given out.
    assert await last.wait_for(1) == ["done"]
    assert mixed.payloads == [str(n) for n in range(100)]
    assert mixed.handed_back == 50
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_what_is_published_in_the_turn_after_the_writer_woke_joins_its_batch(
    fanouts: Factory, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    inbox = Inbox()
    await subscriber.subscribe(f"{prefix}c", inbox)
    batches: list[int] = []

    def noted(batch: list[tuple[str, str]]) -> bytes:
        batches.append(len(batch))
        return publish_commands(batch)

    monkeypatch.setattr(redis_publisher, "publish_commands", noted)

    await publisher.publish(f"{prefix}c", "1")  # wakes the writer
    await asyncio.sleep(0)  # the writer's turn: it waits one more
    await publisher.publish(f"{prefix}c", "2")

    assert await inbox.wait_for(2) == ["1", "2"]
    assert batches == [2]


async def test_publish_now_queues_at_once_in_order_with_publish_and_says_no_when_it_cannot(
    fanouts: Factory, prefix: str
) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    inbox = Inbox()
    await subscriber.subscribe(f"{prefix}c", inbox)

    await publisher.publish(f"{prefix}c", "1")
    assert publisher.publish_now(f"{prefix}c", "2") is True
    await publisher.publish(f"{prefix}c", "3")
    assert await inbox.wait_for(3) == ["1", "2", "3"]

    full = await fanouts(queue_limit=1)
    assert full.publish_now(f"{prefix}c", "4") is True
    assert full.publish_now(f"{prefix}c", "5") is False  # no room: publish would wait
    assert await inbox.wait_for(4) == ["1", "2", "3", "4"]

    down = await fanouts(closed_port_url())
    assert down.publish_now(f"{prefix}c", "lost") is False
    with pytest.raises(FanoutUnavailable):
        await down.publish(f"{prefix}c", "lost")


async def test_a_sole_subscriber_failing_at_once_does_not_stop_the_reader(
    fanouts: Factory, prefix: str
) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    inbox = Inbox()

    def broken(payload: str) -> None:
        raise RuntimeError("subscriber bug")

    await subscriber.subscribe(f"{prefix}broken", broken)
    await subscriber.subscribe(f"{prefix}fine", inbox)
    await publisher.publish(f"{prefix}broken", "lost to the bug")
    await publisher.publish(f"{prefix}fine", "still delivered")

    assert await inbox.wait_for(1) == ["still delivered"]


async def test_publishing_while_redis_is_unreachable_raises_fanout_unavailable(
    fanouts: Factory, prefix: str
) -> None:
    url = closed_port_url()
    fanout = await fanouts(url)

    assert not fanout.healthy
    with pytest.raises(FanoutUnavailable, match=r"Redis at 127\.0\.0\.1:\d+/0 is unreachable"):
        await fanout.publish(f"{prefix}c", "lost")
    with pytest.raises(FanoutUnavailable, match="cannot subscribe"):
        await fanout.subscribe(f"{prefix}c", Inbox())


async def test_the_unavailable_error_names_no_password(fanouts: Factory, prefix: str) -> None:
    port = free_port()
    fanout = await fanouts(f"redis://:hunter2-secret@127.0.0.1:{port}/0")

    with pytest.raises(FanoutUnavailable) as raised:
        await fanout.publish(f"{prefix}c", "lost")

    assert "hunter2" not in str(raised.value)
    assert f"127.0.0.1:{port}" in str(raised.value)


async def _subscriber_connection_ids(admin: Redis, name: str) -> list[str]:
    clients = await admin.client_list(_type="pubsub")
    return [str(client["id"]) for client in clients if client.get("name") == name]


async def test_after_the_subscriber_connection_is_killed_deliveries_resume(
    fanouts: Factory, redis_admin: Redis, prefix: str
) -> None:
    name = f"alcove-test-{secrets.token_hex(4)}"
    publisher, subscriber = await fanouts(), await fanouts(client_name=name)
    inbox = Inbox()
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    subscriber.on_reconnect.append(on_reconnect)
    await subscriber.subscribe(f"{prefix}c", inbox)
    await publisher.publish(f"{prefix}c", "before")
    await inbox.wait_for(1)

    # Only this test's connection: other tests may be using the same Redis.
    (connection_id,) = await _subscriber_connection_ids(redis_admin, name)
    await redis_admin.execute_command(  # type: ignore[no-untyped-call]
        "CLIENT", "KILL", "ID", connection_id, "TYPE", "pubsub"
    )
    async with asyncio.timeout(WAIT):
        await reconnected.wait()
    await publisher.publish(f"{prefix}c", "after")

    assert await inbox.wait_for(2) == ["before", "after"]
    assert subscriber.healthy
    assert await _subscriber_connection_ids(redis_admin, name) != [connection_id]


async def test_a_hundred_concurrent_publishers_do_not_raise_and_keep_their_order(
    fanouts: Factory, prefix: str
) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    inboxes = [Inbox() for _ in range(100)]
    for number, inbox in enumerate(inboxes):
        await subscriber.subscribe(f"{prefix}{number}", inbox)

    async def publish(number: int) -> None:
        for n in range(20):
            await publisher.publish(f"{prefix}{number}", str(n))

    await asyncio.gather(*(publish(number) for number in range(100)))

    for inbox in inboxes:
        assert await inbox.wait_for(20) == [str(n) for n in range(20)]


async def test_a_full_queue_makes_publishers_wait_instead_of_failing(
    fanouts: Factory, prefix: str
) -> None:
    publisher, subscriber = await fanouts(queue_limit=5), await fanouts()
    inbox = Inbox()
    await subscriber.subscribe(f"{prefix}c", inbox)

    await asyncio.gather(*(publisher.publish(f"{prefix}c", str(n)) for n in range(50)))

    assert sorted(await inbox.wait_for(50), key=int) == [str(n) for n in range(50)]


async def test_closing_publishes_what_is_queued_first(fanouts: Factory, prefix: str) -> None:
    publisher, subscriber = await fanouts(), await fanouts()
    inbox = Inbox()
    await subscriber.subscribe(f"{prefix}c", inbox)
    for n in range(10):
        await publisher.publish(f"{prefix}c", str(n))

    await publisher.aclose()

    assert await inbox.wait_for(10) == [str(n) for n in range(10)]
    with pytest.raises(FanoutUnavailable, match="closed"):
        await publisher.publish(f"{prefix}c", "late")


# --- the app with ALCOVE_REDIS_URL: /readyz, and a call ---------------------------------------


async def test_readyz_is_ready_when_the_configured_redis_answers(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    redis_admin: Redis,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_REDIS_URL=REDIS_URL)
    client = await aiohttp_client(create_app(settings, clock=clock))

    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready", "database": "ok", "redis": "ok"}


async def test_readyz_is_unavailable_when_the_configured_redis_is_unreachable(
    aiohttp_client: AiohttpClient, migrated_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    url = closed_port_url()
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_REDIS_URL=url)
    client = await aiohttp_client(create_app(settings, clock=clock))

    ready = await client.get("/readyz")
    alive = await client.get("/healthz")

    assert ready.status == 503
    assert await ready.json() == {"status": "unavailable", "database": "ok", "redis": "down"}
    assert alive.status == 200


async def test_a_call_is_set_up_and_relayed_when_every_effect_goes_through_redis(
    migrated_url: str,
    tmp_path: Path,
    redis_admin: Redis,
    db: async_sessionmaker[AsyncSession],
    therapist: Therapist,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        migrated_url, tmp_path / "var", ALCOVE_PUBLIC_URL=url, ALCOVE_REDIS_URL=REDIS_URL
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    now = dt.datetime.now(dt.UTC)
    appointment, token = await make_appointment(db, therapist.id, starts_at=now)
    therapist_http = await sign_in_session(url, THERAPIST_EMAIL, THERAPIST_PASSWORD)
    client_http = await client_session(url, token)
    host, client = SignallingClient(therapist_http, url), SignallingClient(client_http, url)
    try:
        await client.connect()
        await client.hello(devices={"camera": "ok", "microphone": "ok"})
        await host.connect()
        await host.hello(appointment=f"a-{appointment.id}")
        await host.send({"type": "admit", "participant": f"c-{appointment.id}"})
        await host.expect("peer-joined")
        await client.expect("peer-joined")
        line = "candidate:1 1 udp 2122260223 192.0.2.1 9 typ host"
        candidate = {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
        await host.send({"type": "candidate", "candidate": candidate})

        relayed = await client.expect("candidate")

        assert relayed["candidate"] == candidate
        assert server.app[REDIS_FANOUT].healthy
    finally:
        await host.close()
        await client.close()
        await therapist_http.close()
        await client_http.close()
        await server.close()


# --- ALCOVE_REDIS_URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["http://redis:6379", "redis-host:6379", "redis://", "redis://:pw-secret@redis:99999/0"],
)
def test_a_malformed_redis_url_stops_alcove_with_one_line_without_the_password(
    tmp_path: Path, raw: str
) -> None:
    with pytest.raises(SettingsError, match="ALCOVE_REDIS_URL") as raised:
        load_settings({"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_REDIS_URL": raw}, env_file=None)

    assert "\n" not in str(raised.value)
    assert "pw-secret" not in str(raised.value)


def test_redis_and_rediss_urls_are_accepted_and_never_shown(tmp_path: Path) -> None:
    for url in ("redis://redis:6379/0", "rediss://:pw-secret@redis.example.org:6380/2"):
        settings = load_settings(
            {"ALCOVE_DATA_DIR": str(tmp_path), "ALCOVE_REDIS_URL": url}, env_file=None
        )
        assert settings.redis_url == url
        assert "pw-secret" not in repr(settings)


async def test_the_first_payload_after_redis_restarted_is_not_lost(
    fanouts: Factory, prefix: str, tmp_path: Path
) -> None:
    async with private_redis(tmp_path / "redis") as redis:
        publisher, subscriber = await fanouts(redis.url), await fanouts(redis.url)
        inbox = Inbox()
        await subscriber.subscribe(f"{prefix}c", inbox)
        await publisher.publish(f"{prefix}c", "before")
        await inbox.wait_for(1)
        back = [asyncio.Event(), asyncio.Event()]
        for fanout, event in zip((publisher, subscriber), back, strict=True):
            fanout.on_reconnect.append(partial(_set, event))

        await redis.stop()
        await redis.start()
        async with asyncio.timeout(WAIT):
            for event in back:
                await event.wait()
        await publisher.publish(f"{prefix}c", "after")

        assert await inbox.wait_for(2) == ["before", "after"]


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_publish_redis_refuses_is_reported_lost_and_the_next_one_goes_through(
    fanouts: Factory, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Replies are read from redis-py's parser, past its connection's own checks: an error
    # reply must still count as a failed publish, not pass unnoticed.
    async with private_redis(tmp_path / "redis") as redis:
        publisher, subscriber = await fanouts(redis.url), await fanouts(redis.url)
        inbox = Inbox()
        await subscriber.subscribe(f"{prefix}c", inbox)
        admin = Redis.from_url(redis.url, decode_responses=True)
        try:
            await admin.acl_setuser("default", enabled=True, nopass=True, commands=["-publish"])
            await publisher.publish(f"{prefix}c", "refused")

            async def dropped() -> bool | None:
                return True if "1 payloads dropped" in caplog.text else None

            await eventually(dropped, "the refused payload reported lost")
            await admin.acl_setuser("default", enabled=True, nopass=True, commands=["+publish"])

            async def accepted() -> bool | None:
                try:
                    await publisher.publish(f"{prefix}c", "accepted")
                except FanoutUnavailable:  # until its ping has found Redis again
                    return None
                return True

            await eventually(accepted, "publishing again")
        finally:
            await admin.aclose()

        assert await inbox.wait_for(1) == ["accepted"]
