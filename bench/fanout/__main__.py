"""Benchmark: signalling relay latency and throughput, memory per idle participant, and the
Redis hop; ours against the reference PeerJS server.

1. Relay.  ``--pairs`` pairs of websockets relay ``--size``-byte ``candidate`` messages in a
   closed loop (one message in flight per pair) through a server in its own process: ours
   (each pair a therapist and an admitted client in a call; the per-socket rate limit
   lifted, see ``bench.fanout.serve``), ours as two instances sharing Redis (each pair's
   therapist on one, its client on the other: every message crosses Redis once), and
   PeerJS (``CANDIDATE`` messages between two peer ids).  And the floor: the same PeerJS
   clients through ``bench.fanout.floor``, a relay with no protocol on the same aiohttp
   and uvloop as ours; and the floor in two processes sharing Redis (each pair's second
   peer on the second), the yardstick of our two instances.
2. The Redis hop.  The same loop straight on the fan-out: two ``RedisFanout`` instances in
   this process against one ``LocalFanout``; publish → callback latency.  Once with the
   relay's load, once with a single pair (the hop without queueing).
3. Memory.  ``--idle`` websockets connected and idle (ours: clients in the waiting room of
   their own appointments, after ``hello``; PeerJS: peers after ``OPEN``); the growth of
   the server process's resident set, per socket.

The load runs in this process (with uvloop if it is installed), the server in another.

With ``--rounds N`` the five relays run N times, one after another in each round (every
other round in the reverse order, so that no relay always runs first, or always right after
another), and the summary takes, for each, its round of median throughput: on a small
machine one run of a relay can land in a slower regime than the next (the two instances,
Redis and the load share two cores), and the ratios should not hang on one draw.

    python -m bench.fanout [--pairs 100] [--size 200] [--seconds 10] [--idle 2000]
                           [--rounds 1]
    python -m bench.fanout --instructions [--pairs 20] [--seconds 10]

``--instructions`` counts instead what our relay's servers execute a message, under
callgrind: a figure the machine's load does not move (``bench.fanout.instructions``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets

from bench.common import machine, percentile
from bench.fanout import alcove, hop, instructions, peerjs, relay

REDIS_URL = os.environ.get("ALCOVE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WARMUP = 2.0
WARM_SOCKETS = 50
SETTLE = 2.0


async def relay_ours(args: argparse.Namespace, *, instances: int = 1) -> relay.Result:
    """Our relay on one instance, or on two sharing Redis (each pair's therapist on the
    first, its client on the second: every message crosses Redis once)."""
    env = {"ALCOVE_REDIS_URL": REDIS_URL} if instances > 1 else {}
    async with alcove.running_servers(instances, **env) as servers:
        people = alcove.People()
        try:
            pairs = await alcove.pairs_in_calls(
                servers[0], people, args.pairs, args.size, clients_on=servers[-1]
            )
            return await relay.run(
                pairs,
                alcove.is_relayed,
                alcove.answer_pings,
                warmup=WARMUP,
                seconds=args.seconds,
                server_pid=tuple(server.pid for server in servers),
            )
        finally:
            await people.close()


async def relay_peerjs(
    args: argparse.Namespace, *, floor: bool = False, instances: int = 1
) -> relay.Result:
    """PeerJS; with ``floor``, the same clients through ``bench.fanout.floor``: one, or two
    sharing Redis (each pair's second peer on the second: every message crosses Redis
    once)."""
    redis = (REDIS_URL, f"floor-{secrets.token_hex(4)}") if instances > 1 else None
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(peerjs.running_server(floor=floor, redis=redis))
            for _ in range(instances)
        ]
        peers = peerjs.Peers()
        try:
            pairs = await peerjs.pairs(servers[0], peers, args.pairs, args.size, servers[-1])
            return await relay.run(
                pairs,
                peerjs.is_relayed,
                peerjs.nothing_to_answer,
                warmup=WARMUP,
                seconds=args.seconds,
                server_pid=tuple(server.pid for server in servers),
            )
        finally:
            await peers.close()


async def memory_ours(count: int) -> float:
    async with alcove.running_server() as server:
        people = alcove.People()
        try:
            await alcove.idle_participants(server, people, WARM_SOCKETS)
            await asyncio.sleep(SETTLE)
            before = relay.rss_bytes(server.pid)
            await alcove.idle_participants(server, people, count)
            await asyncio.sleep(SETTLE)
            after = relay.rss_bytes(server.pid)
        finally:
            await people.close()
    return (after - before) / count


async def memory_peerjs(count: int) -> float:
    async with peerjs.running_server() as server:
        peers = peerjs.Peers()
        try:
            await peerjs.idle(server, peers, WARM_SOCKETS)
            await asyncio.sleep(SETTLE)
            before = relay.rss_bytes(server.pid)
            await peerjs.idle(server, peers, count, offset=WARM_SOCKETS)
            await asyncio.sleep(SETTLE)
            after = relay.rss_bytes(server.pid)
        finally:
            await peers.close()
    return (after - before) / count


#: The relays measured, in the order each round runs them, and their labels.
RELAYS = {
    "ours": "ours (in-process fan-out)  ",
    "two": "ours (two instances, Redis)",
    "peerjs": f"PeerJS {peerjs.VERSION}               ",
    "floor": "floor (aiohttp, no protocol) ",
    "floor2": "floor, two processes (Redis) ",
}


async def _relay(name: str, args: argparse.Namespace) -> relay.Result:
    if name == "ours":
        return await relay_ours(args)
    if name == "two":
        return await relay_ours(args, instances=2)
    return await relay_peerjs(args, floor=name != "peerjs", instances=2 if name == "floor2" else 1)


def _order(round_number: int) -> list[str]:
    """The relays in the order round ``round_number`` (from 1) runs them."""
    names = list(RELAYS)
    return names if round_number % 2 else names[::-1]


def _median(results: list[relay.Result]) -> relay.Result:
    """The result of median throughput (the lower middle one of an even number)."""
    ordered = sorted(results, key=lambda result: result.throughput)
    return ordered[(len(ordered) - 1) // 2]


def _cpu_per_message(results: list[relay.Result]) -> float:
    """The server's CPU seconds a relayed message, over all of ``results``."""
    messages = sum(len(result.latencies) for result in results)
    return sum(result.server_cpu for result in results) / messages if messages else 0.0


def _ms(result: relay.Result, fraction: float) -> float:
    return percentile(result.latencies, fraction) * 1000


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(f"bench/fanout: {args.pairs} pairs, {args.size}-byte messages, closed loop, ", end="")
    print(f"{args.seconds:g} s measured after {WARMUP:g} s")
    print(f"machine: {machine()}")
    peerjs.install()

    print("\nrelay through the server (latency: send -> the other side has read it)")
    runs: dict[str, list[relay.Result]] = {name: [] for name in RELAYS}
    for round_number in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"  round {round_number}")
        for name in _order(round_number):
            result = await _relay(name, args)
            runs[name].append(result)
            print(f"  {RELAYS[name]}{result.line()}")
    ours, ours_redis, reference, floor, floor_redis = (_median(runs[name]) for name in RELAYS)
    if args.rounds > 1:
        print(f"  the round of median throughput, of {args.rounds}, for each:")
        for name, label in RELAYS.items():
            print(f"  {label}{_median(runs[name]).line()}")
        each = zip(*(runs[name] for name in RELAYS), strict=True)
        rounds = [[result.throughput for result in results] for results in each]
        print(
            "  within each round: ours / PeerJS throughput "
            + ", ".join(f"{one / peer:.2f}x" for one, _, peer, _, _ in rounds)
            + "; two instances / one "
            + ", ".join(f"{two / one:.2f}x" for one, two, _, _, _ in rounds)
            + "; the floor's two processes / one "
            + ", ".join(f"{two / one:.2f}x" for _, _, _, one, two in rounds)
        )
    print(
        f"  ours / PeerJS: throughput {ours.throughput / reference.throughput:.2f}x, "
        f"p50 {_ms(ours, 0.5) / _ms(reference, 0.5):.2f}x, "
        f"p99 {_ms(ours, 0.99) / _ms(reference, 0.99):.2f}x"
    )
    print(
        f"  floor / PeerJS: throughput {floor.throughput / reference.throughput:.2f}x, "
        f"p99 {_ms(floor, 0.99) / _ms(reference, 0.99):.2f}x; "
        f"ours / floor: throughput {ours.throughput / floor.throughput:.2f}x"
    )
    print(
        f"  two instances / one: throughput {ours_redis.throughput / ours.throughput:.2f}x, "
        f"p50 +{_ms(ours_redis, 0.5) - _ms(ours, 0.5):.3f} ms; the floor's two processes / "
        f"one: throughput {floor_redis.throughput / floor.throughput:.2f}x, "
        f"p50 +{_ms(floor_redis, 0.5) - _ms(floor, 0.5):.3f} ms"
    )
    # Throughput on a shared machine follows what else runs; the CPU a message costs each
    # server, over every round, follows the server's own work far more closely.
    cpu = {name: _cpu_per_message(runs[name]) for name in RELAYS}
    print(
        "  server CPU a message, all rounds: "
        + ", ".join(f"{name} {cpu[name] * 1e6:.1f} µs" for name in RELAYS)
        + f"; ours / PeerJS {cpu['ours'] / cpu['peerjs']:.2f}x, "
        f"two instances / one {cpu['two'] / cpu['ours']:.2f}x, "
        f"the floor's two processes / one {cpu['floor2'] / cpu['floor']:.2f}x"
    )

    print("\nthe Redis hop (publish -> callback, two RedisFanouts in one process)")
    for pairs in (args.pairs, 1):
        results = await hop.measure(
            REDIS_URL, pairs=pairs, size=args.size, warmup=WARMUP, seconds=args.seconds
        )
        local, redis = results["local"], results["redis"]
        print(f"  {pairs:3d} pair(s), LocalFanout  {local.line()}")
        print(f"  {pairs:3d} pair(s), RedisFanout  {redis.line()}")
        print(f"  {pairs:3d} pair(s), added p50 {_ms(redis, 0.5) - _ms(local, 0.5):.3f} ms")

    print(f"\nmemory per idle connected participant ({args.idle} websockets, RSS growth)")
    print(f"  ours    {await memory_ours(args.idle) / 1024:7.1f} KiB")
    print(f"  PeerJS  {await memory_peerjs(args.idle) / 1024:7.1f} KiB")


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the relays this many times, interleaved; the figures are each one's "
        "round of median throughput",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead: count the instructions our relay's servers execute a message, under "
        "callgrind (bench.fanout.instructions; fewer --pairs suffice)",
    )
    _event_loop_policy()
    arguments = parser.parse_args()
    if arguments.instructions:
        asyncio.run(instructions.report(arguments, REDIS_URL))
    else:
        asyncio.run(main(arguments))
