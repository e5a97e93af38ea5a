"""RedisLeases decides, in a real Redis, which instance holds each therapist's rooms."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from signalling.fanout import FanoutUnavailable
from signalling.redis_leases import RedisLeases, lease_key
from tests.conftest import free_port
from tests.signalling.test_redis_fanout import REDIS_URL, redis_admin
from tests.support.instances import eventually

__all__ = ["redis_admin"]

Factory = Callable[..., RedisLeases]
WAIT = 10.0  # a bound on waiting for a lease to lapse, not a measurement


@pytest.fixture
def namespace() -> str:
    return f"alcove-test-{secrets.token_hex(6)}"


@pytest.fixture
async def leases(redis_admin: Redis, namespace: str) -> AsyncIterator[Factory]:
    made: list[RedisLeases] = []

    def make(instance: str, url: str = REDIS_URL, **options: float) -> RedisLeases:
        made.append(RedisLeases(url, namespace=namespace, instance=instance, **options))
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


async def test_the_first_instance_to_ask_takes_the_lease_and_the_others_see_it(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east, west = leases("east"), leases("west")

    assert await east.owner("t-1") == ("east", True)
    assert await west.owner("t-1") == ("east", False)
    assert await east.owner("t-1") == ("east", False)
    assert east.held == {"t-1"} and west.held == set()
    assert await redis_admin.get(lease_key(namespace, "t-1")) == "east"
    assert 0 < await redis_admin.pttl(lease_key(namespace, "t-1")) <= 10_000


async def test_renewing_keeps_the_wanted_leases_and_lets_the_others_go(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east, west = leases("east"), leases("west")
    await east.owner("t-1")
    await east.owner("t-2")

    assert await east.renew(["t-1"]) == []
    assert await west.renew(["t-1"]) == ["t-1"]  # east holds it: west has lost it

    assert east.held == {"t-1"}
    assert await redis_admin.get(lease_key(namespace, "t-2")) is None


async def test_a_released_lease_is_taken_by_the_next_instance_that_asks(leases: Factory) -> None:
    east, west = leases("east"), leases("west")
    await east.owner("t-1")
    assert await west.owner("t-1") == ("east", False)

    assert await east.release() == ["t-1"]
    west.forget("t-1")  # as the announcement of the move makes it

    assert await west.owner("t-1") == ("west", True)
    assert east.held == set()


async def test_a_lease_not_renewed_lapses_and_its_old_holder_learns_it_lost_it(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east, west = leases("east", lease_seconds=0.2), leases("west", cache_seconds=0.0)
    await east.owner("t-1")

    async def lapsed() -> bool | None:
        return None if await redis_admin.exists(lease_key(namespace, "t-1")) else True

    await eventually(lapsed, "the lease of t-1 lapsing", within=WAIT)

    assert await west.owner("t-1") == ("west", True)
    assert await east.renew(["t-1"]) == ["t-1"]
    assert east.held == set()


async def test_an_unreachable_redis_raises_fanout_unavailable_without_the_password(
    leases: Factory,
) -> None:
    port = free_port()
    unreachable = leases("east", f"redis://:hunter2-secret@127.0.0.1:{port}/0")

    with pytest.raises(FanoutUnavailable) as raised:
        await unreachable.owner("t-1")

    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(FanoutUnavailable):
        await unreachable.renew(["t-1"])
    assert await unreachable.release() == []
