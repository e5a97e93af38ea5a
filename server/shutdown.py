"""Graceful shutdown: drain the instance within ``ALCOVE_SHUTDOWN_DRAIN_SECONDS``.

On SIGTERM, aiohttp's ``run_app`` stops listening, runs ``on_shutdown``, waits up to its
``shutdown_timeout`` for requests still being handled, then runs ``cleanup_ctx``.  Here:

1. ``on_shutdown`` marks the instance as draining: ``/readyz`` answers 503 (``draining``)
   and a new ``/ws`` handshake gets 503 (on a kept-alive connection, say);
2. every live socket is closed with 1001 ("server going away") at once, so browsers
   reconnect (to another instance behind the load balancer), and the socket handlers are
   given part of the drain time to finish (which queues their last room audit events);
3. ``cleanup_ctx`` stops the e-mail worker and the room audit writer, each given no more
   than what is left of the drain time (``remaining``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiohttp import WSCloseCode, web

from server.keys import SETTINGS

log = logging.getLogger(__name__)

GOING_AWAY = int(WSCloseCode.GOING_AWAY)
GOING_AWAY_REASON = "server going away"
#: Shares of the drain time: closing the sockets (and their handlers finishing), then
#: requests still in flight (``run_app``'s ``shutdown_timeout``); the rest is for cleanup.
SOCKETS_SHARE = 0.4
REQUESTS_SHARE = 0.2


class Closable(Protocol):
    async def close(self, code: int, reason: str) -> None: ...


class Drain:
    """Whether this instance is draining, and the sockets it still serves."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self.sockets: set[Closable] = set()
        self._deadline: float | None = None
        self._emptied = asyncio.Event()

    def start(self) -> None:
        if not self.draining:
            self.draining = True
            self._deadline = asyncio.get_running_loop().time() + self.seconds

    def remaining(self) -> float:
        """Seconds left of the drain time (all of it before draining starts)."""
        if self._deadline is None:
            return self.seconds
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def add(self, socket: Closable) -> bool:
        """Track ``socket``; ``False`` if draining has begun (it should be closed)."""
        self.sockets.add(socket)
        self._emptied.clear()
        return not self.draining

    def discard(self, socket: Closable) -> None:
        self.sockets.discard(socket)
        if not self.sockets:
            self._emptied.set()

    async def close_all(self) -> None:
        """Close every live socket with 1001, concurrently; wait (bounded) for them to go."""
        sockets = list(self.sockets)
        if not sockets:
            return
        log.info("draining: closing %d sockets with %d", len(sockets), GOING_AWAY)
        await asyncio.gather(
            *(s.close(GOING_AWAY, GOING_AWAY_REASON) for s in sockets), return_exceptions=True
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._emptied.wait(), self.seconds * SOCKETS_SHARE)
        if self.sockets:
            log.warning("draining: %d sockets did not finish in time", len(self.sockets))


DRAIN = web.AppKey("drain", Drain)


def requests_timeout(seconds: float) -> float:
    """``run_app``'s ``shutdown_timeout`` for a drain time of ``seconds``."""
    return seconds * REQUESTS_SHARE


def grace(app: web.Application, limit: float) -> float:
    """At most ``limit`` seconds, and no more than what is left of the drain time."""
    drain = app.get(DRAIN)
    return limit if drain is None else min(limit, drain.remaining())


async def _on_shutdown(app: web.Application) -> None:
    drain = app[DRAIN]
    drain.start()
    log.info("draining: shutting down within %.0f seconds", drain.seconds)
    await drain.close_all()


def setup(app: web.Application) -> None:
    app[DRAIN] = Drain(float(app[SETTINGS].shutdown_drain_seconds))
    app.on_shutdown.append(_on_shutdown)
