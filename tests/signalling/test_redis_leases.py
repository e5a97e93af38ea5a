"""RedisLeases decides, in a real Redis, which instance holds each therapist's rooms."""

from __future__ import annotations

import asyncio
import contextlib
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


@contextlib.asynccontextmanager
async def commands_on(namespace: str, redis_admin: Redis) -> AsyncIterator[list[str]]:
    """The commands clients send Redis about ``namespace``'s keys while inside (seen through
    ``MONITOR``, on a connection of its own), by name, in order; those a script runs are
    left out."""
    seen: list[str] = []
    end = f"{namespace}:end"
    finished = asyncio.Event()
    watcher = Redis.from_url(REDIS_URL, decode_responses=True)
    started = asyncio.Event()

    async def watch() -> None:
        async with watcher.monitor() as monitor:
            started.set()
            while True:
                info = await monitor.next_command()
                command = str(info["command"])
                if end in command:
                    finished.set()
                elif namespace in command and info.get("client_type") != "lua":
                    seen.append(command.split()[0].upper())

    task = asyncio.create_task(watch())
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.sleep(0.05)  # MONITOR is answered before it takes effect
    try:
        yield seen
    finally:
        await redis_admin.exists(end)  # once it is seen, everything sent before it was too
        await asyncio.wait_for(finished.wait(), WAIT)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.aclose()


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


async def test_the_owner_is_known_at_once_where_it_is_held_or_remembered_and_only_there(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east, west, north = leases("east"), leases("west"), leases("north", cache_seconds=0.0)
    assert east.owner_now("t-1") is None  # nobody asked yet: only Redis can say

    await east.owner("t-1")
    await west.owner("t-1")
    await north.owner("t-1")

    assert east.owner_now("t-1") == "east"  # held
    assert west.owner_now("t-1") == "east"  # remembered
    assert north.owner_now("t-1") is None  # remembered for no time at all
    west.forget("t-1")
    assert west.owner_now("t-1") is None


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


async def test_lookups_of_one_owner_at_the_same_moment_share_one_round_trip(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east, west = leases("east"), leases("west")
    await east.owner("t-1")

    async with commands_on(namespace, redis_admin) as seen:
        answers = await asyncio.gather(*(west.owner("t-1") for _ in range(20)))
        took = await asyncio.gather(*(west.owner("t-2") for _ in range(20)))

    assert answers == [("east", False)] * 20
    assert sorted(took) == [("west", False)] * 19 + [("west", True)]  # told once, to announce
    assert seen == ["EVALSHA", "EVALSHA"]


async def test_a_remembered_owner_about_to_be_forgotten_is_looked_up_again_meanwhile(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east = leases("east")
    west = leases("west", cache_seconds=60.0, refresh_seconds=60.0)  # always about to go
    await east.owner("t-1")
    assert await west.owner("t-1") == ("east", False)
    await redis_admin.set(lease_key(namespace, "t-1"), "north")  # moved, not yet announced

    assert await west.owner("t-1") == ("east", False)  # answered at once, as remembered

    async def moved() -> bool | None:
        return True if await west.owner("t-1") == ("north", False) else None

    await eventually(moved, "west learning the new owner without being told", within=WAIT)


async def test_a_lookup_in_the_background_reads_and_never_takes_a_lease(
    leases: Factory, redis_admin: Redis, namespace: str
) -> None:
    east = leases("east")
    west = leases("west", cache_seconds=60.0, refresh_seconds=60.0)
    await east.owner("t-1")
    await west.owner("t-1")
    await redis_admin.delete(lease_key(namespace, "t-1"))  # lapsed

    async with commands_on(namespace, redis_admin) as seen:
        assert await west.owner("t-1") == ("east", False)

        async def read() -> bool | None:
            return True if seen else None

        await eventually(read, "the background lookup", within=WAIT)
        await asyncio.sleep(0.1)  # time for anything else it might have sent
    assert seen == ["GET"]
    assert await redis_admin.exists(lease_key(namespace, "t-1")) == 0

    # What it read is what the next message acts on: the lease is free, so it is taken.
    async with commands_on(namespace, redis_admin) as seen:
        assert await west.owner("t-1") == ("west", True)
    assert seen == ["EVALSHA"]


async def test_those_waiting_for_a_lookup_whose_asker_went_away_still_get_an_answer(
    leases: Factory,
) -> None:
    east, west = leases("east"), leases("west")
    await east.owner("t-1")
    asker = asyncio.create_task(west.owner("t-1"))
    await asyncio.sleep(0)  # its lookup is in flight
    waiting = [asyncio.create_task(west.owner("t-1")) for _ in range(5)]
    await asyncio.sleep(0)  # they wait for it

    asker.cancel()

    assert await asyncio.gather(*waiting) == [("east", False)] * 5
    with pytest.raises(asyncio.CancelledError):
        await asker
