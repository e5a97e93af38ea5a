"""Publish text to a named channel; every subscriber of that channel, on any instance, gets it.

The room logic reaches participants only through the fan-out: it publishes each effect
(``signalling.effects``) on the recipient's channel, and each instance subscribes to the
channels of the participants connected to it.  Payloads are plain text (JSON), so an
implementation over Redis pub/sub needs nothing more than ``PUBLISH`` and ``SUBSCRIBE``.

Guarantees an implementation must give: payloads published on one channel by one publisher
reach each subscriber in the order they were published; a subscriber's failure does not keep
a payload from the other subscribers; after ``Subscription.cancel`` returns, the callback is
not called again.  Delivery is at most once: a subscriber that is not subscribed when a
payload is published never sees it.

``LocalFanout`` is the in-process implementation, for a single instance and for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: Called with each payload published on the subscribed channel.  It either finishes with
#: the payload at once and returns ``None`` (a frame written straight to a socket: no
#: coroutine is made for it), or returns what the fan-out then awaits before it calls the
#: subscriber with the next payload.
Callback = Callable[[str], Awaitable[object] | None]


class FanoutUnavailable(Exception):
    """The fan-out cannot take a payload or a subscription now (its broker is unreachable).

    Raised instead of queueing work that could not be delivered: the caller decides what a
    lost effect means.  The message is one line, fit for an operator's log.
    """


class Subscription(Protocol):
    """One subscriber's interest in one channel."""

    @property
    def channel(self) -> str: ...

    async def cancel(self) -> None:
        """Stop receiving; calling it again does nothing."""


class Fanout(Protocol):
    """A publish/subscribe bus of text payloads on named channels."""

    async def publish(self, channel: str, payload: str) -> None:
        """Deliver ``payload`` to every current subscriber of ``channel``."""

    def publish_now(self, channel: str, payload: str) -> bool:
        """``publish`` in one step, if the fan-out can take ``payload`` at once (queue it,
        in order with everything published before); ``False``: it cannot, and ``publish``
        must be awaited instead, which then says why.  Never raises."""

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        """Call ``callback`` with every payload published on ``channel`` from now on."""


class _LocalSubscription:
    def __init__(self, fanout: LocalFanout, channel: str, callback: Callback) -> None:
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
            self._fanout._remove(self)


class LocalFanout:
    """The fan-out within one process: ``publish`` awaits each subscriber in turn."""

    def __init__(self) -> None:
        self._channels: dict[str, list[_LocalSubscription]] = {}

    async def publish(self, channel: str, payload: str) -> None:
        for subscription in tuple(self._channels.get(channel, ())):
            if not subscription.active:
                continue
            try:
                pending = subscription.callback(payload)
                if pending is not None:
                    await pending
            except Exception:
                log.exception("subscriber of %s failed", channel)

    def publish_now(self, channel: str, payload: str) -> bool:
        """Never: ``publish`` awaits each subscriber in turn."""
        return False

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        subscription = _LocalSubscription(self, channel, callback)
        self._channels.setdefault(channel, []).append(subscription)
        return subscription

    def subscribers(self, channel: str) -> int:
        """How many subscriptions ``channel`` has now."""
        return len(self._channels.get(channel, ()))

    def _remove(self, subscription: _LocalSubscription) -> None:
        subscriptions = self._channels.get(subscription.channel, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions:
            self._channels.pop(subscription.channel, None)
