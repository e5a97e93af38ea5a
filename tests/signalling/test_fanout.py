"""LocalFanout delivers each payload to the subscribers of its channel, in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import pytest

from signalling.fanout import Fanout, LocalFanout


class Inbox:
    def __init__(self) -> None:
        self.payloads: list[str] = []

    async def __call__(self, payload: str) -> None:
        self.payloads.append(payload)


async def test_a_payload_reaches_the_subscribers_of_its_channel_only() -> None:
    fanout = LocalFanout()
    first, second, elsewhere = Inbox(), Inbox(), Inbox()
    await fanout.subscribe("room:1", first)
    await fanout.subscribe("room:1", second)
    await fanout.subscribe("room:2", elsewhere)

    await fanout.publish("room:1", "hello")

    assert first.payloads == second.payloads == ["hello"]
    assert elsewhere.payloads == []


async def test_payloads_arrive_in_the_order_they_were_published() -> None:
    fanout = LocalFanout()
    inbox = Inbox()
    await fanout.subscribe("c", inbox)
    for n in range(5):
        await fanout.publish("c", str(n))
    assert inbox.payloads == ["0", "1", "2", "3", "4"]


async def test_a_subscriber_may_finish_at_once_or_hand_back_what_to_await(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fanout = LocalFanout()
    seen: list[str] = []

    async def later(payload: str) -> None:
        await asyncio.sleep(0)
        seen.append(payload)

    def at_once_or_later(payload: str) -> Awaitable[None] | None:
        if payload == "now":
            seen.append(payload)
            return None
        return later(payload)

    await fanout.subscribe("c", at_once_or_later)
    for payload in ("now", "later", "now"):
        await fanout.publish("c", payload)

    assert seen == ["now", "later", "now"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_payload_nobody_listens_for_is_gone_for_a_later_subscriber() -> None:
    fanout = LocalFanout()
    await fanout.publish("empty", "lost")  # nobody subscribed: no error, nothing kept
    inbox = Inbox()
    await fanout.subscribe("empty", inbox)
    await fanout.publish("empty", "seen")
    assert inbox.payloads == ["seen"]


async def test_after_cancel_the_callback_is_not_called_again() -> None:
    fanout = LocalFanout()
    kept, cancelled = Inbox(), Inbox()
    await fanout.subscribe("c", kept)
    subscription = await fanout.subscribe("c", cancelled)
    assert subscription.channel == "c"
    await fanout.publish("c", "one")
    await subscription.cancel()
    await subscription.cancel()  # twice is harmless
    await fanout.publish("c", "two")

    assert cancelled.payloads == ["one"]
    assert kept.payloads == ["one", "two"]
    assert fanout.subscribers("c") == 1


async def test_the_last_cancel_forgets_the_channel() -> None:
    fanout = LocalFanout()
    subscription = await fanout.subscribe("c", Inbox())
    await subscription.cancel()
    assert fanout.subscribers("c") == 0
    assert fanout._channels == {}


async def test_a_subscriber_cancelled_during_delivery_misses_that_payload() -> None:
    fanout = LocalFanout()
    later = Inbox()

    async def cancel_the_other(payload: str) -> None:
        await other.cancel()

    await fanout.subscribe("c", cancel_the_other)
    other = await fanout.subscribe("c", later)
    await fanout.publish("c", "x")
    assert later.payloads == []


async def test_a_failing_subscriber_does_not_keep_the_payload_from_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fanout = LocalFanout()
    inbox = Inbox()

    async def broken(payload: str) -> None:
        raise RuntimeError("boom")

    await fanout.subscribe("c", broken)
    await fanout.subscribe("c", inbox)
    with caplog.at_level(logging.ERROR, logger="signalling.fanout"):
        await fanout.publish("c", "x")
    assert inbox.payloads == ["x"]
    assert "subscriber of c failed" in caplog.text


def test_local_fanout_is_a_fanout() -> None:
    fanout: Fanout = LocalFanout()
    assert fanout is not None
