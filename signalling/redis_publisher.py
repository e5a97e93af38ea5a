"""``Publisher``: the side of the Redis fan-out that publishes, in batches.

The switchboard publishes one effect at a time, so a round trip per ``PUBLISH`` would cap
the instance at one effect per round trip.  ``publish`` only queues the payload; one writer
task, on a connection of its own, writes all that is queued as one batch of ``PUBLISH``
commands, then reads their replies.  Woken by a payload, the writer lets the event loop
turn once more before it takes the batch, so that what the sockets ready in that turn
publish goes in the same batch: it nearly doubled a busy instance's batches, for one turn's
wait.  What is published while a batch is in flight makes up the next one, so the busier
the instance, the larger the batches.  One queue and one writer keep every channel's
order.  The queue is bounded: publishers wait for room when Redis falls behind.

While Redis is known to be unreachable ``publish`` raises ``FanoutUnavailable`` instead of
queueing what cannot be delivered; payloads queued when a batch fails are dropped (delivery
is at most once, as the ``Fanout`` protocol says), and the writer pings with backoff until
Redis answers again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from signalling.fanout import FanoutUnavailable
from signalling.redis_wire import Replies, publish_commands

log = logging.getLogger(__name__)

#: At most this many payloads go in one pipeline.
MAX_BATCH = 1024
#: At most this many payloads wait to be published before ``publish`` waits for room.
QUEUE_LIMIT = 10_000
#: Connections for publishing (and pings); the writer needs one at a time.
MAX_CONNECTIONS = 8
CONNECT_TIMEOUT = 2.0
#: How long one batch may take to be written and acknowledged.
PUBLISH_TIMEOUT = 5.0
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

NETWORK_ERRORS = (RedisError, OSError, TimeoutError)


def jitter(delay: float) -> float:
    """``delay`` shortened by up to half at random, so instances do not retry in step."""
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - timing jitter, not a secret


def unavailable(location: str, closed: bool, what: str) -> FanoutUnavailable:
    """What the fan-out raises when it cannot do ``what``: closed, or Redis unreachable."""
    if closed:
        return FanoutUnavailable(f"the Redis fan-out is closed: {what}")
    return FanoutUnavailable(f"Redis at {location} is unreachable: {what}")


class Publisher:
    """The queue and the writer; ``start`` it, run ``write_forever`` in a task, ``aclose``
    it when done."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        *,
        location: str,
        max_connections: int = MAX_CONNECTIONS,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self._location = location
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=CONNECT_TIMEOUT, **options
        )
        self._client = Redis(connection_pool=self._pool)
        #: The writer's connection, taken from the pool on its first batch.
        self._connection: AbstractConnection | None = None
        #: Set when the writer's connection may be dead (the subscriber had to reconnect).
        self._stale = False
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._queue_limit = queue_limit
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        #: Set while nothing waits to be published (or publishing has failed).
        self._drained = asyncio.Event()
        self._drained.set()
        #: Whether Redis is taken to be reachable for publishing.
        self.up = False
        self.closed = False

    async def start(self) -> None:
        """Ping Redis once: an unreachable Redis is reported, not raised (the writer tries
        again)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._client.ping()
            self.up = True
        except NETWORK_ERRORS as exc:
            log.warning("Redis at %s is unreachable: %s", self._location, type(exc).__name__)

    async def drain(self) -> None:
        """Wait, up to ``CONNECT_TIMEOUT``, for what is queued to be published (if Redis is
        up)."""
        if self.up and self._queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._drained.wait()

    def fail(self) -> None:
        """Publishing is down (the writer died of a bug): waiting publishers now raise."""
        self.up = False
        self._room.set()

    def renew_connection(self) -> None:
        """Replace the writer's connection before its next batch: after Redis restarted it
        is dead, and the first batch written on it would be lost."""
        self._stale = True

    async def aclose(self) -> None:
        self.closed = True
        self.up = False
        await self._client.aclose()
        await self._pool.disconnect()

    async def publish(self, channel: str, payload: str) -> None:
        """Queue ``payload`` for the writer; ``FanoutUnavailable`` while Redis is down."""
        while not self.publish_now(channel, payload):
            if not self.up or self.closed:
                raise unavailable(self._location, self.closed, "the payload was not published")
            self._room.clear()
            await self._room.wait()

    def publish_now(self, channel: str, payload: str) -> bool:
        """Queue ``payload`` for the writer if Redis is up and the queue has room; whether
        it was (if not, ``publish`` waits for room, or raises)."""
        queue = self._queue
        if not self.up or self.closed or len(queue) >= self._queue_limit:
            return False
        queue.append((channel, payload))
        self._drained.clear()
        self._wake.set()
        return True

    async def write_forever(self) -> None:
        if not self.up:
            await self._until_reachable()
        queue = self._queue
        while True:
            if not queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0)  # one more turn: what it readies joins this batch
            batch = [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]
            self._room.set()
            try:
                await self._send(batch)
            except NETWORK_ERRORS as exc:
                dropped = len(batch) + len(queue)
                queue.clear()
                self.up = False
                self._room.set()  # waiting publishers now raise
                self._drained.set()
                log.warning(
                    "Redis at %s is unreachable (%s): %d payloads dropped",
                    self._location,
                    type(exc).__name__,
                    dropped,
                )
                await self._until_reachable()

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        """``PUBLISH`` each of ``batch`` in one write and one round trip: the commands are
        written together on the writer's own connection, then their replies read."""
        connection = self._connection
        if connection is not None and self._stale:
            self._connection = None
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)
            connection = None
        self._stale = False
        if connection is None:
            connection = self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await connection.send_packed_command(publish_commands(batch), check_health=False)
                replies = Replies(connection)
                left = len(batch)
                while left > 0:
                    answered = await replies.some()
                    for reply in answered:
                        if isinstance(reply, ResponseError):
                            raise reply
                    left -= len(answered)
        except BaseException:
            # The connection's state is unknown (a reply may be half read): never reuse it.
            self._connection = None
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)
            raise

    async def _until_reachable(self) -> None:
        """Ping with backoff until Redis answers; then publishing is allowed again."""
        delay = BACKOFF_FIRST
        while True:
            await asyncio.sleep(jitter(delay))
            delay = min(delay * 2, BACKOFF_MAX)
            with contextlib.suppress(*NETWORK_ERRORS):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._client.ping()
                self.up = True
                log.info("Redis at %s is reachable again for publishing", self._location)
                return
