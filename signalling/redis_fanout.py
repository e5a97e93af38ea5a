"""``RedisFanout``: the fan-out between instances, over Redis pub/sub.

Every instance publishes the effects it produces with ``PUBLISH`` and subscribes, on one
pub/sub connection, to the channels of the connections attached to it.  What shapes it:

- **Publishing is batched** (``signalling.redis_publisher``): ``publish`` queues, and one
  writer task writes what is queued as one batch of ``PUBLISH`` commands.
- **The reader takes replies straight from the connection's parser** (RESP2, where a
  message is a plain reply), and all those parsed already at once
  (``signalling.redis_wire``): redis-py's ``PubSub.get_message`` costs several times more.
- **Subscribing waits for Redis's confirmation**, so a payload published right after
  ``subscribe`` returns (the ``welcome`` after a join) is not missed.
- **Redis going away is visible and survivable.**  ``healthy`` says whether both sides
  are up (``/readyz`` reports it); ``publish`` and ``subscribe`` raise
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from signalling.fanout import Callback, FanoutUnavailable, Subscription
from signalling.redis_publisher import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    CONNECT_TIMEOUT,
    MAX_CONNECTIONS,
    NETWORK_ERRORS,
    QUEUE_LIMIT,
    Publisher,
    jitter,
    unavailable,
)
from signalling.redis_wire import Replies

log = logging.getLogger(__name__)

#: Called after the subscriber connection is back and every channel subscribed again.
ReconnectCallback = Callable[[], Awaitable[None]]

#: How long ``subscribe`` waits for Redis to confirm.
SUBSCRIBE_TIMEOUT = 5.0


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
        self._publisher = Publisher(
            url, options, location=self.location, max_connections=max_connections,
            queue_limit=queue_limit,
        )  # fmt: skip
        #: ``Fanout.publish``: the publisher's own, so a payload takes no extra step.
        self.publish = self._publisher.publish
        #: ``Fanout.publish_now``: the publisher's own, likewise.
        self.publish_now = self._publisher.publish_now
        self._subscriber_pool = ConnectionPool.from_url(url, max_connections=2, **options)
        self._subscriber_client = Redis(connection_pool=self._subscriber_pool)
        self._channels: dict[str, _Channel] = {}
        #: Per channel, the subscriptions sent and not yet confirmed, in the order sent.
        self._unconfirmed: dict[str, collections.deque[_Channel]] = {}
        self._pubsub: PubSub | None = None
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
        await self._publisher.start()
        self._spawn(self._publisher.write_forever())
        self._spawn(self._read_forever())
        await self._first_attempt.wait()

    async def aclose(self) -> None:
        """Publish what is queued (if Redis is up), then close every connection."""
        if self._closed:
            return
        await self._publisher.drain()
        self._closed = self._publisher.closed = True
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._subscriber_up = False
        await self._publisher.aclose()
        await self._subscriber_client.aclose()
        await self._subscriber_pool.disconnect()

    @property
    def healthy(self) -> bool:
        """Whether Redis is reachable for publishing and the subscriber connection is up."""
        return self._publisher.up and self._subscriber_up and not self._closed

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
        self._subscriber_up = False
        self._publisher.fail()

    def _unavailable(self, what: str) -> FanoutUnavailable:
        return unavailable(self.location, self._closed, what)

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
        with contextlib.suppress(*NETWORK_ERRORS):  # the reader notices, and subscribes again
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
            with contextlib.suppress(*NETWORK_ERRORS):
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
            except NETWORK_ERRORS as exc:
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
                with contextlib.suppress(*NETWORK_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(jitter(delay))
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
                    if entry is None:
                        continue
                    callbacks = entry.callbacks
                    if len(callbacks) != 1:
                        await self._dispatch(entry, data)
                        continue
                    # The common case, in line: one subscriber, which mostly finishes at once.
                    try:
                        pending = callbacks[0].callback(data)
                        if pending is not None:
                            await pending
                    except Exception:
                        log.exception("subscriber of %s failed", channel)
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
                pending = subscription.callback(payload)
                if pending is not None:
                    await pending
            except Exception:
                log.exception("subscriber of %s failed", entry.name)

    async def _after_reconnect(self) -> None:
        """Once every channel is confirmed again, let the owners resynchronise.

        The writer's connection is replaced before its next batch: after Redis restarted it
        is dead, and the first batch written on it would be lost."""
        self._publisher.renew_connection()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                for entry in tuple(self._channels.values()):
                    await entry.ready.wait()
        for callback in tuple(self.on_reconnect):
            try:
                await callback()
            except Exception:
                log.exception("a reconnect callback of the Redis fan-out failed")
