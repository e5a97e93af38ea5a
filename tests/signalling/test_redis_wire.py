"""What the Redis fan-out writes and reads, on a real connection to the test Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import BusyLoadingError, ResponseError

from signalling.redis_wire import Replies, publish_commands
from tests.signalling.test_redis_fanout import REDIS_URL, redis_admin

__all__ = ["redis_admin"]  # a fixture used here


@pytest.fixture
async def client(redis_admin: Redis) -> AsyncIterator[Redis]:
    """A client of the test Redis as the fan-out makes them: RESP2, replies decoded
    (``redis_admin`` skips the test if Redis is unreachable)."""
    redis = Redis.from_url(REDIS_URL, decode_responses=True, protocol=2)
    yield redis
    await redis.aclose()


@pytest.fixture
async def connection(client: Redis) -> AsyncIterator[AbstractConnection]:
    taken: AbstractConnection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    yield taken
    await client.connection_pool.release(taken)


class Reads:
    """How many times the connection's parser read a reply from the socket."""

    count = 0


@pytest.fixture
def reads(connection: AbstractConnection, monkeypatch: pytest.MonkeyPatch) -> Reads:
    parser: Any = getattr(connection, "_parser")  # noqa: B009 - redis-py's, not typed
    seen = Reads()
    read_response = type(parser).read_response

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.count += 1
        return await read_response(self, *args, **kwargs)

    monkeypatch.setattr(type(parser), "read_response", counted)
    return seen


def echoes(words: list[str]) -> bytes:
    return b"".join(
        b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words
    )


async def fifty_echoed(connection: AbstractConnection) -> list[str]:
    """Fifty words, sent to be echoed; their replies (a few hundred bytes, written by Redis
    at once) have arrived when this returns."""
    words = [f"word {n}" for n in range(50)]
    await connection.send_packed_command(echoes(words), check_health=False)
    await asyncio.sleep(0.05)
    return words


async def test_replies_come_in_order_and_those_parsed_already_come_with_the_first_read(
    connection: AbstractConnection, reads: Reads
) -> None:
    words = await fifty_echoed(connection)
    replies = Replies(connection)

    got = await replies.some()

    assert got == words
    assert reads.count == 1  # one read, then forty-nine parsed already


async def test_an_error_reply_is_returned_and_one_saying_the_connection_is_unusable_raised(
    connection: AbstractConnection,
) -> None:
    replies = Replies(connection)
    # Four replies read at once, as from the socket: a plain one, an error, a refusal while
    # Redis loads its data, and one more.
    parser: Any = getattr(connection, "_parser")  # noqa: B009
    parser._reader.feed(
        b"+first\r\n-ERR no such thing\r\n-LOADING Redis is loading the dataset\r\n+after\r\n"
    )

    first, error = await replies.some()  # those before the refusal, then the refusal
    assert first == "first"
    assert isinstance(error, ResponseError)
    assert str(error) == "no such thing"
    with pytest.raises(BusyLoadingError):
        await replies.some()
    assert await replies.some() == ["after"]


async def test_publish_commands_counts_the_bytes_of_each_payload_not_its_characters(
    client: Redis,
) -> None:
    channel = f"alcove-test:{secrets.token_hex(6)}:wire"
    payloads = ["plain", "café ☕ in the waiting room", "", "x" * 70_000]
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    publisher: AbstractConnection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await publisher.send_packed_command(
            publish_commands([(channel, p) for p in payloads]), check_health=False
        )
        replies = Replies(publisher)
        answered: list[object] = []
        while len(answered) < len(payloads):
            answered += await replies.some()
        assert answered == [1] * len(payloads)
        got: list[str] = []
        async with asyncio.timeout(10):
            while len(got) < len(payloads):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    got.append(message["data"])
    finally:
        await client.connection_pool.release(publisher)
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    assert got == payloads
