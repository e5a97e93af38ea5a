"""Deployments sharing one broker: each sees only its own channels.

Every channel name a ``NamespacedFanout`` is given is prefixed with the deployment's
namespace, so two deployments (or two test databases) on one Redis never reach each other's
sockets or rooms.  The server derives the namespace from the database URL: the instances
that share a database are one deployment, and share their rooms.
"""

from __future__ import annotations

import hashlib

from signalling.fanout import Callback, Fanout, Subscription


def namespace_for(identity: str) -> str:
    """A short, stable namespace for ``identity`` (which may hold a password: it is hashed)."""
    return "alcove-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


class NamespacedFanout:
    """A ``Fanout`` whose channels are those of ``inner`` under ``namespace``."""

    def __init__(self, inner: Fanout, namespace: str) -> None:
        self._inner = inner
        self._prefix = f"{namespace}:"

    async def publish(self, channel: str, payload: str) -> None:
        await self._inner.publish(self._prefix + channel, payload)

    def publish_now(self, channel: str, payload: str) -> bool:
        return self._inner.publish_now(self._prefix + channel, payload)

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        return await self._inner.subscribe(self._prefix + channel, callback)
