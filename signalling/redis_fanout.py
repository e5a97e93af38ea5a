"""``RedisFanout``: the fan-out between instances, over Redis pub/sub.

Every instance publishes the effects it produces with ``PUBLISH`` and subscribes, on one
pub/sub connection, to the channels of the connections attached to it.  What shapes it:

- **Publishing is batched.**  The switchboard publishes one effect at a time, so a round
  trip per ``PUBLISH`` would cap the instance at one effect per round trip.  ``publish``
  only queues the payload; one writer task, on a connection of its own, writes all that is
  queued as one batch of ``PUBLISH`` commands, then reads their replies.  An idle writer
  sends a payload at the next turn of the event loop; what is published while a batch is
  in flight makes up the next one, so the busier the instance, the larger the batches.
  One queue and one writer keep every channel's order.  The queue is bounded: publishers
  wait for room when Redis falls behind.
- **The reader takes replies straight from the connection's parser** (RESP2, where a
  message is a plain reply), and all those parsed already at once
  (``signalling.redis_wire``): redis-py's ``PubSub.get_message`` costs several times more.
- **Subscribing waits for Redis's confirmation**, so a payload published right after
  ``subscribe`` returns (the ``welcome`` after a join) is not missed.
- **Redis going away is visible and survivable.**  ``healthy`` says whether both
  connections are up (``/readyz`` reports it); ``publish`` and ``subscribe`` raise
  ``FanoutUnavailable`` while Redis is known to be unreachable instead of queueing what
  cannot be delivered.  Payloads queued when a batch fails are dropped (delivery is at
  most once, as the ``Fanout`` protocol says).  The reader reconnects with backoff,
  subscribes to every channel again, and then calls each ``on_reconnect`` callback: what
  was published meanwhile is lost, so the owner must resynchronise.

The redis-py connections are made without its own retries: reconnecting is done here,
where it can be logged, reported and followed by the callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from signalling.fanout import Callback, FanoutUnavailable, Subscription
from signalling.redis_wire import Replies, publish_commands

log = logging.getLogger(__name__)

#: Called after the subscriber connection is back and every channel subscribed again.
ReconnectCallback = Callable[[], Awaitable[None]]

#: At most this many payloads go in one pipeline.
MAX_BATCH = 1024
#: At most this many payloads wait to be published before ``publish`` waits for room.
QUEUE_LIMIT = 10_000
#: Connections for publishing (and pings); the writer needs one at a time.
MAX_CONNECTIONS = 8
CONNECT_TIMEOUT = 2.0
#: How long one batch may take to be written and acknowledged.
PUBLISH_TIMEOUT = 5.0
#: How long ``subscribe`` waits for Redis to confirm.
SUBSCRIBE_TIMEOUT = 5.0
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

_NETWORK_ERRORS = (RedisError, OSError, TimeoutError)


def _jitter(delay: float) -> float:
    """``delay`` shortened by up to half at random, so instances do not retry in step."""
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - timing jitter, not a secret


def _connection_of(pubsub: PubSub | None) -> AbstractConnection | None:
    """The pub/sub connection, if it has one (redis-py types it as always ``None``)."""
    return cast("AbstractConnection | None", getattr(pubsub, "connection", None))


def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL: what a log line or an error may name (no password)."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    database = parts.path.strip("/")
    return f"{where}/{database}" if database else where


class _Channel:
    """One channel this instance is subscribed to, and its local subscribers."""

    __slots__ = ("callbacks", "name", "ready")

    def __init__(self, name: str) -> None:
        self.name = name
        self.callbacks: list[_RedisSubscription] = []
        #: Set when Redis has confirmed the subscription on the current connection.
        self.ready = asyncio.Event()


class _RedisSubscription:
    def __init__(self, fanout: RedisFanout, channel: str, callback: Callback) -> None:
        self._fanout = fanout
        self._channel = channel
        self.callback = callback
        self.active = True

    @property
    def channel(self) -> str:
        return self._channel

    async def cancel(self) -> None:
        if self.active:
            self.active = False
            await self._fanout._remove(self)


class RedisFanout:
    """A ``Fanout`` between instances over Redis pub/sub; ``start`` it, then ``aclose`` it."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = MAX_CONNECTIONS,
        queue_limit: int = QUEUE_LIMIT,
        client_name: str = "alcove",
    ) -> None:
        self.location = redis_location(url)
        options: dict[str, Any] = {
            "client_name": client_name,  # names the connections in Redis's CLIENT LIST
            "decode_responses": True,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            # RESP2: pub/sub messages are plain replies.  Under RESP3 they are push
            # notifications, which redis-py routes through a handler that logs each one.
            "protocol": 2,
            # No read timeout on the connections themselves: the subscriber waits for
            # payloads as long as there are none, and a timeout on each write would cost
            # the writer a task per batch; the writer times each batch instead.
            "socket_timeout": None,
        }
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=CONNECT_TIMEOUT, **options
        )
        self._client = Redis(connection_pool=self._pool)
        #: The writer's connection, taken from the pool on its first batch.
        self._writer_connection: AbstractConnection | None = None
        #: Set when the subscriber had to reconnect: the writer's connection may be dead too.
        self._writer_stale = False
        self._subscriber_pool = ConnectionPool.from_url(url, max_connections=2, **options)
        self._subscriber_client = Redis(connection_pool=self._subscriber_pool)
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._queue_limit = queue_limit
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        #: Set while nothing waits to be published (or publishing has failed).
        self._drained = asyncio.Event()
        self._drained.set()
        self._channels: dict[str, _Channel] = {}
        #: Per channel, the subscriptions sent and not yet confirmed, in the order sent.
        self._unconfirmed: dict[str, collections.deque[_Channel]] = {}
        self._pubsub: PubSub | None = None
        self._publisher_up = False
        self._subscriber_up = False
        self._first_attempt = asyncio.Event()
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Awaited, in a task of their own, after each reconnection of the subscriber.
        self.on_reconnect: list[ReconnectCallback] = []

    # Life cycle

    async def start(self) -> None:
        """Connect both sides, once each: an unreachable Redis is reported, not raised, and
        tried again in the background."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._client.ping()
            self._publisher_up = True
        except _NETWORK_ERRORS as exc:
            log.warning("Redis at %s is unreachable: %s", self.location, type(exc).__name__)
        self._spawn(self._write_forever())
        self._spawn(self._read_forever())
        await self._first_attempt.wait()

    async def aclose(self) -> None:
        """Publish what is queued (if Redis is up), then close every connection."""
        if self._closed:
            return
        if self._publisher_up and self._queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._drained.wait()
        self._closed = True
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._publisher_up = self._subscriber_up = False
        await self._client.aclose()
        await self._subscriber_client.aclose()
        await self._pool.disconnect()
        await self._subscriber_pool.disconnect()

    @property
    def healthy(self) -> bool:
        """Whether Redis is reachable for publishing and the subscriber connection is up."""
        return self._publisher_up and self._subscriber_up and not self._closed

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._report)

    def _report(self, task: asyncio.Task[None]) -> None:
        """Log a task that died of a bug: the fan-out is then unhealthy, not silently stuck."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("Redis fan-out task failed", exc_info=task.exception())
        self._publisher_up = self._subscriber_up = False
        self._room.set()  # waiting publishers now raise

    def _unavailable(self, what: str) -> FanoutUnavailable:
        if self._closed:
            return FanoutUnavailable(f"the Redis fan-out is closed: {what}")
        return FanoutUnavailable(f"Redis at {self.location} is unreachable: {what}")

    # Publishing

    async def publish(self, channel: str, payload: str) -> None:
        """Queue ``payload`` for the writer; ``FanoutUnavailable`` while Redis is down."""
        while True:
            if not self._publisher_up or self._closed:
                raise self._unavailable("the payload was not published")
            if len(self._queue) < self._queue_limit:
                break
            self._room.clear()
            await self._room.wait()
        self._queue.append((channel, payload))
        self._drained.clear()
        self._wake.set()

    async def _write_forever(self) -> None:
        if not self._publisher_up:
            await self._until_reachable()
        queue = self._queue
        while True:
            if not queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]
            self._room.set()
            try:
                await self._send(batch)
            except _NETWORK_ERRORS as exc:
                dropped = len(batch) + len(queue)
                queue.clear()
                self._publisher_up = False
                self._room.set()  # waiting publishers now raise
                self._drained.set()
                log.warning(
                    "Redis at %s is unreachable (%s): %d payloads dropped",
                    self.location,
                    type(exc).__name__,
                    dropped,
                )
                await self._until_reachable()

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        """``PUBLISH`` each of ``batch`` in one write and one round trip: the commands are
        written together on the writer's own connection, then their replies read."""
        connection = self._writer_connection
        if connection is not None and self._writer_stale:
            self._writer_connection = None
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)
            connection = None
        self._writer_stale = False
        if connection is None:
            connection = self._writer_connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
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
            self._writer_connection = None
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)
            raise

    async def _until_reachable(self) -> None:
        """Ping with backoff until Redis answers; then publishing is allowed again."""
        delay = BACKOFF_FIRST
        while True:
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, BACKOFF_MAX)
            with contextlib.suppress(*_NETWORK_ERRORS):
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._client.ping()
                self._publisher_up = True
                log.info("Redis at %s is reachable again for publishing", self.location)
                return

    # Subscribing

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        """Subscribe, and return once Redis has confirmed it; ``FanoutUnavailable`` while
        the subscriber connection is down or Redis does not confirm in time."""
        pubsub = self._pubsub
        if pubsub is None or not self._subscriber_up or self._closed:
            raise self._unavailable(f"cannot subscribe to {channel}")
        subscription = _RedisSubscription(self, channel, callback)
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(channel)
            entry.callbacks.append(subscription)
            await self._send_subscribe(pubsub, [entry])
        else:
            entry.callbacks.append(subscription)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await entry.ready.wait()
        except TimeoutError:
            await subscription.cancel()
            reason = f"Redis did not confirm the subscription to {channel}"
            raise self._unavailable(reason) from None
        return subscription

    async def _send_subscribe(self, pubsub: PubSub, entries: list[_Channel]) -> None:
        for entry in entries:
            self._unconfirmed.setdefault(entry.name, collections.deque()).append(entry)
        connection = _connection_of(pubsub)
        if connection is None or not entries:
            return
        with contextlib.suppress(*_NETWORK_ERRORS):  # the reader notices, and subscribes again
            await connection.send_command("SUBSCRIBE", *(entry.name for entry in entries))

    async def _remove(self, subscription: _RedisSubscription) -> None:
        entry = self._channels.get(subscription.channel)
        if entry is None or subscription not in entry.callbacks:
            return
        entry.callbacks.remove(subscription)
        if entry.callbacks:
            return
        del self._channels[entry.name]
        connection = _connection_of(self._pubsub) if self._subscriber_up else None
        if connection is not None:
            with contextlib.suppress(*_NETWORK_ERRORS):
                await connection.send_command("UNSUBSCRIBE", entry.name)

    # Reading

    async def _read_forever(self) -> None:
        delay = BACKOFF_FIRST
        lost = False
        while True:
            pubsub = self._subscriber_client.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._unconfirmed.clear()
                await self._send_subscribe(pubsub, list(self._channels.values()))
                self._pubsub = pubsub
                self._subscriber_up = True
                self._first_attempt.set()
                delay = BACKOFF_FIRST
                if lost:
                    log.info("Redis at %s: subscriber connection is back", self.location)
                    self._spawn(self._after_reconnect())
                lost = False
                await self._read(pubsub)
            except _NETWORK_ERRORS as exc:
                if self._subscriber_up or not lost:
                    log.warning(
                        "Redis at %s: subscriber connection lost (%s); reconnecting",
                        self.location,
                        type(exc).__name__,
                    )
                lost = True
                self._subscriber_up = False
                self._pubsub = None
                for entry in self._channels.values():
                    entry.ready.clear()
                self._first_attempt.set()
            finally:
                with contextlib.suppress(*_NETWORK_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, pubsub: PubSub) -> None:
        """Read the subscriber connection's replies straight from its parser: redis-py's
        ``get_message`` does far more per message than a relay can afford."""
        connection = _connection_of(pubsub)
        if connection is None:
            raise ConnectionError("the subscriber connection is not open")
        channels = self._channels
        replies = Replies(connection)
        while True:
            for reply in await replies.some():
                if isinstance(reply, ResponseError):
                    raise reply
                if type(reply) is not list or len(reply) != 3:
                    continue  # a PONG, or nothing this fan-out asked for
                kind, channel, data = reply
                if kind == "message":
                    entry = channels.get(channel)
                    if entry is not None:
                        await self._dispatch(entry, data)
                elif kind == "subscribe":
                    waiting = self._unconfirmed.get(channel)
                    if waiting:
                        waiting.popleft().ready.set()
                        if not waiting:
                            del self._unconfirmed[channel]

    async def _dispatch(self, entry: _Channel, payload: str) -> None:
        for subscription in tuple(entry.callbacks):
            if not subscription.active:
                continue
            try:
                await subscription.callback(payload)
            except Exception:
                log.exception("subscriber of %s failed", entry.name)

    async def _after_reconnect(self) -> None:
        """Once every channel is confirmed again, let the owners resynchronise.

        The writer's connection is replaced before its next batch: after Redis restarted it
        is dead, and the first batch written on it would be lost."""
        self._writer_stale = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                for entry in tuple(self._channels.values()):
                    await entry.ready.wait()
        for callback in tuple(self.on_reconnect):
            try:
                await callback()
            except Exception:
                log.exception("a reconnect callback of the Redis fan-out failed")
