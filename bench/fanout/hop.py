"""The Redis hop alone: publish → callback through two ``RedisFanout``s, against ``LocalFanout``.

Two ``RedisFanout`` objects in one process stand for two instances: each pair has a channel
subscribed on each, and passes one payload back and forth as the relay load does (one in
flight per pair).  The same loop over one ``LocalFanout`` is the in-process baseline.  The
latency is from calling ``publish`` to the subscriber's callback being called.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from bench.common import frozen_heap
from bench.fanout.relay import Result
from signalling.fanout import Fanout, LocalFanout
from signalling.redis_fanout import RedisFanout


async def closed_loop(
    first: Fanout, second: Fanout, *, pairs: int, size: int, warmup: float, seconds: float
) -> Result:
    result = Result()
    payload = "x" * size
    prefix = f"bench:{secrets.token_hex(4)}:"
    clock = time.perf_counter
    began = clock()
    record_from = began + warmup
    stop_at = record_from + seconds

    async def run(number: int) -> None:
        arrived = asyncio.Event()
        sent = 0.0

        async def on_payload(_payload: str) -> None:
            if sent >= record_from:
                result.latencies.append(clock() - sent)
            arrived.set()

        to_second, to_first = f"{prefix}{number}:b", f"{prefix}{number}:a"
        await second.subscribe(to_second, on_payload)
        await first.subscribe(to_first, on_payload)
        publishers = ((first, to_second), (second, to_first))
        turn = 0
        while True:
            sent = clock()
            if sent >= stop_at:
                return
            fanout, channel = publishers[turn]
            arrived.clear()
            await fanout.publish(channel, payload)
            await arrived.wait()
            turn ^= 1

    with frozen_heap():
        await asyncio.gather(*(run(n) for n in range(pairs)))
    result.seconds = seconds
    return result


async def measure(
    redis_url: str, *, pairs: int, size: int, warmup: float, seconds: float
) -> dict[str, Result]:
    """``{"local": …, "redis": …}`` for the loop of ``pairs`` pairs."""
    local = LocalFanout()
    results = {
        "local": await closed_loop(
            local, local, pairs=pairs, size=size, warmup=warmup, seconds=seconds
        )
    }
    first, second = RedisFanout(redis_url), RedisFanout(redis_url)
    await first.start()
    await second.start()
    try:
        if not (first.healthy and second.healthy):
            raise RuntimeError(f"Redis at {first.location} is unreachable")
        results["redis"] = await closed_loop(
            first, second, pairs=pairs, size=size, warmup=warmup, seconds=seconds
        )
    finally:
        await first.aclose()
        await second.aclose()
    return results
