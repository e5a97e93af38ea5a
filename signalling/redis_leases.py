"""``RedisLeases``: who owns each therapist's rooms (``signalling.routing``), kept in Redis.

A lease is one key, ``<namespace>:alcove:owner:<therapist>``, holding the owner's instance
id, with an expiry (``LEASE_SECONDS``).  The owner renews its leases every
``RENEW_SECONDS``; if it dies without releasing them they lapse, and the next instance that
needs the rooms takes them.
Taking, renewing and releasing are each one Lua script, so two instances never both believe
they hold a lease for long: a renewal that finds another owner reports the lease as lost.

Other instances' leases are remembered for ``CACHE_SECONDS`` (and forgotten at once when an
ownership change is announced), so forwarding a command usually costs no round trip:
- a lease remembered for less than ``REFRESH_SECONDS`` more is looked up again in the
  background (a plain ``GET``, which never takes a lease), so a socket that keeps sending
  never waits for Redis while its therapist's rooms stay where they are;
- lookups of one therapist's owner at the same moment share one round trip.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from signalling.fanout import FanoutUnavailable
from signalling.redis_fanout import redis_location

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0
RENEW_SECONDS = 3.0
CACHE_SECONDS = 2.0
REFRESH_SECONDS = 0.5
TIMEOUT_SECONDS = 2.0

# KEYS[1] the lease, ARGV[1] this instance, ARGV[2] the lease in ms: the owner, taken if free.
_TAKE = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
# The owner after renewing: this instance's lease extended, or taken again if it lapsed.
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return owner
end
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_NETWORK_ERRORS = (RedisError, OSError, TimeoutError)


def _cancelling() -> bool:
    """Whether the running task is being cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def lease_key(namespace: str, therapist: str) -> str:
    return f"{namespace}:alcove:owner:{therapist}"


class RedisLeases:
    """``Leases`` in Redis; ``aclose`` it when done."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "alcove",
        instance: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._me = instance or secrets.token_hex(8)
        self._namespace = namespace
        self._lease_ms = int(lease_seconds * 1000)
        self._cache_seconds = cache_seconds
        self._refresh_seconds = refresh_seconds
        self.location = redis_location(url)
        options: dict[str, Any] = {
            "client_name": "alcove-leases",
            "decode_responses": True,
            "socket_connect_timeout": TIMEOUT_SECONDS,
            "socket_timeout": TIMEOUT_SECONDS,
            "retry": Retry(NoBackoff(), 0),
        }
        self._pool = BlockingConnectionPool.from_url(
            url, max_connections=4, timeout=TIMEOUT_SECONDS, **options
        )
        self._client = Redis(connection_pool=self._pool)
        self._take = self._client.register_script(_TAKE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._held: set[str] = set()
        #: Other instances' leases: therapist -> (owner, until when it is believed).
        self._cache: dict[str, tuple[str, float]] = {}
        #: The lookups in flight, by therapist: what those asking meanwhile wait for.
        self._finding: dict[str, asyncio.Future[str]] = {}
        #: The background lookups of remembered leases about to be forgotten.
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    @property
    def me(self) -> str:
        return self._me

    @property
    def held(self) -> AbstractSet[str]:
        return self._held

    def owner_now(self, therapist: str) -> str | None:
        if therapist in self._held:
            return self._me
        cached = self._cache.get(therapist)
        if cached is None:
            return None
        left = cached[1] - time.monotonic()
        if left <= 0:
            return None
        if left < self._refresh_seconds and therapist not in self._refreshing:
            self._refresh_soon(therapist, cached)
        return cached[0]

    async def owner(self, therapist: str) -> tuple[str, bool]:
        while True:
            known = self.owner_now(therapist)
            if known is not None:
                return known, False
            finding = self._finding.get(therapist)
            if finding is None:
                return await self._find(therapist)
            try:
                return await asyncio.shield(finding), False
            except asyncio.CancelledError:
                if not finding.cancelled() or _cancelling():
                    raise
                # The one looking it up went away before the answer: look again.

    async def _find(self, therapist: str) -> tuple[str, bool]:
        """Ask Redis for the owner (taking the lease if it is free), telling whoever asks
        meanwhile the same answer."""
        finding = asyncio.get_running_loop().create_future()
        self._finding[therapist] = finding
        try:
            owner = str(await self._call(self._take, therapist, "find the owner of some rooms"))
            taken = self._settle(therapist, owner)
        except Exception as exc:
            finding.set_exception(exc)
            finding.exception()  # nobody may be waiting: retrieved, so never logged
            raise
        except BaseException:
            finding.cancel()
            raise
        finally:
            del self._finding[therapist]
        finding.set_result(owner)
        return owner, taken

    def _refresh_soon(self, therapist: str, cached: tuple[str, float]) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh(therapist, cached))
        self._refreshing[therapist] = task
        task.add_done_callback(lambda _: self._refreshing.pop(therapist, None))

    async def _refresh(self, therapist: str, cached: tuple[str, float]) -> None:
        """Look up a remembered owner again before it is forgotten.  Only a plain read: a
        lease found free is forgotten, for the next message to take (and announce)."""
        key = lease_key(self._namespace, therapist)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                owner = await self._client.get(key)
        except _NETWORK_ERRORS:
            return  # the lookup once it is forgotten reports Redis as unreachable
        if self._cache.get(therapist) is not cached:
            return  # forgotten (an ownership change was announced) or looked up meanwhile
        if owner is None or owner == self._me:
            del self._cache[therapist]
        else:
            self._cache[therapist] = (str(owner), time.monotonic() + self._cache_seconds)

    async def renew(self, therapists: Iterable[str]) -> list[str]:
        wanted = set(therapists)
        for therapist in self._held - wanted:
            await self._call(self._release, therapist, "release a lease")
            self._held.discard(therapist)
        lost: list[str] = []
        for therapist in sorted(wanted):
            owner = str(await self._call(self._renew, therapist, "renew a lease"))
            if owner != self._me:
                lost.append(therapist)
            self._settle(therapist, owner)
        return lost

    async def release(self) -> list[str]:
        released = sorted(self._held)
        for therapist in released:
            try:
                await self._call(self._release, therapist, "release a lease")
            except FanoutUnavailable:
                break  # they lapse on their own
        self._held.clear()
        return released

    def forget(self, therapist: str) -> None:
        self._cache.pop(therapist, None)

    async def aclose(self) -> None:
        refreshing = tuple(self._refreshing.values())
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
        await self._client.aclose()
        await self._pool.disconnect()

    def _settle(self, therapist: str, owner: str) -> bool:
        """Remember ``owner``; whether this instance has just become the owner."""
        if owner == self._me:
            self._cache.pop(therapist, None)
            taken = therapist not in self._held
            self._held.add(therapist)
            if taken:
                log.info("took the lease of %s's rooms", therapist)
            return taken
        self._held.discard(therapist)
        self._cache[therapist] = (owner, time.monotonic() + self._cache_seconds)
        return False

    async def _call(self, script: Any, therapist: str, what: str) -> object:
        key = lease_key(self._namespace, therapist)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                try:
                    return await script(keys=[key], args=[self._me, self._lease_ms])
                except (RedisConnectionError, OSError):
                    # A pooled connection from before Redis restarted: once more, afresh.
                    return await script(keys=[key], args=[self._me, self._lease_ms])
        except _NETWORK_ERRORS as exc:
            raise FanoutUnavailable(
                f"Redis at {self.location} is unreachable: could not {what} ({type(exc).__name__})"
            ) from None
