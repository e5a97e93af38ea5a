"""Instructions a relayed message: our relay and its floor counted by callgrind, not timed.

On a shared machine a relay's throughput, and even its CPU time, move by a tenth from one
run to the next with what else runs, so a change of a few per cent cannot be seen in them.
The number of instructions the servers execute for a relayed message moves by a fraction
of a per cent. Each instance of ``bench.fanout.serve`` runs under
``valgrind --tool=callgrind`` with its instrumentation off while it starts and while the
pairs are set up; it is switched on (``callgrind_control``) only while the pairs relay, in a
closed loop as in the timed relay, then the counts are dumped and summed over the instances.

What is counted is the servers' own instructions in user space: not the kernel's work for
their sockets, which is the same for any server, and not the load's. Under valgrind the
servers run some fifty times slower, so fewer pairs suffice; what runs on a timer (leases,
pings) is then a larger share of the count, but it is a few thousand instructions a second
against tens of millions.

The floor (``bench.fanout.floor``) is counted the same way, in one process and in two
sharing Redis: how many instructions a relayed message costs with no protocol at all, and
how many more its crossing between processes costs, with nothing but the crossing.

    python -m bench.fanout --instructions [--pairs 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.fanout import alcove, peerjs, relay

#: The label of each relay counted, the relay, and its number of instances.
RELAYS = {
    "ours (in-process fan-out)   ": ("ours", 1),
    "ours (two instances, Redis) ": ("ours", 2),
    "floor (aiohttp, no protocol)": ("floor", 1),
    "floor, two processes (Redis)": ("floor", 2),
}

#: The servers' process ids, the pairs relaying through them, and how to tell a relayed
#: frame and answer any other.
Running = tuple[list[int], list[relay.Pair], Callable[[str], bool], relay.Other]


@dataclass(frozen=True)
class Count:
    messages: int
    instructions: int

    @property
    def per_message(self) -> float:
        return self.instructions / self.messages if self.messages else 0.0


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _control(option: str, pid: int) -> None:
    """``callgrind_control option pid``: switch the instrumentation, or dump the counts."""
    control = shutil.which("callgrind_control")
    if control is None:
        raise RuntimeError("callgrind_control is not installed")
    arguments = [control, option, str(pid)]
    subprocess.run(arguments, check=True, capture_output=True)  # noqa: S603 - fixed arguments


def _totals(directory: Path) -> int:
    """The instructions in every dump callgrind wrote to ``directory`` (its last ``totals:``
    line each: the dumps hold only what ran while instrumented)."""
    total = 0
    for dump in directory.iterdir():
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


def _wrapper(directory: Path) -> Sequence[str]:
    return (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={directory}/callgrind.%p",
        "-q",
    )


@contextlib.asynccontextmanager
async def _ours(
    instances: int, args: argparse.Namespace, redis_url: str, wrapper: Sequence[str]
) -> AsyncIterator[Running]:
    env = {"ALCOVE_REDIS_URL": redis_url} if instances > 1 else {}
    async with alcove.running_servers(instances, wrapper=wrapper, **env) as servers:
        people = alcove.People()
        try:
            pairs = await alcove.pairs_in_calls(
                servers[0], people, args.pairs, args.size, clients_on=servers[-1]
            )
            yield [server.pid for server in servers], pairs, alcove.is_relayed, alcove.answer_pings
        finally:
            await people.close()


@contextlib.asynccontextmanager
async def _floor(
    instances: int, args: argparse.Namespace, redis_url: str, wrapper: Sequence[str]
) -> AsyncIterator[Running]:
    redis = (redis_url, f"floor-{secrets.token_hex(4)}") if instances > 1 else None
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                peerjs.running_server(floor=True, redis=redis, wrapper=wrapper)
            )
            for _ in range(instances)
        ]
        peers = peerjs.Peers()
        try:
            pairs = await peerjs.pairs(servers[0], peers, args.pairs, args.size, servers[-1])
            yield (
                [server.pid for server in servers],
                pairs,
                peerjs.is_relayed,
                peerjs.nothing_to_answer,
            )
        finally:
            await peers.close()


async def count(name: str, instances: int, args: argparse.Namespace, redis_url: str) -> Count:
    """Run ``args.pairs`` pairs through ``instances`` instances of relay ``name`` (``ours``
    or ``floor``) under callgrind for ``args.seconds``, instrumented while they relay; the
    messages relayed and the servers' instructions meanwhile."""
    running = _ours if name == "ours" else _floor
    with tempfile.TemporaryDirectory(prefix="alcove-callgrind-") as tmp:
        directory = Path(tmp)
        async with running(instances, args, redis_url, _wrapper(directory)) as found:
            pids, pairs, is_relayed, answer = found
            for pid in pids:
                _control("--instr=on", pid)
            try:
                result = await relay.run(
                    pairs, is_relayed, answer, warmup=0.0, seconds=args.seconds
                )
            finally:
                for pid in pids:
                    _control("--instr=off", pid)
                    _control("--dump", pid)
        return Count(len(result.latencies), _totals(directory))


async def report(args: argparse.Namespace, redis_url: str) -> None:
    print(f"instructions a relayed message, by callgrind ({args.pairs} pairs, {args.seconds:g} s)")
    if not available():
        print("  not counted: valgrind (with callgrind_control) is not installed")
        return
    counts: dict[str, Count] = {}
    for label, (name, instances) in RELAYS.items():
        counts[label] = found = await count(name, instances, args, redis_url)
        print(
            f"  {label}  {found.per_message:9,.0f} instructions a message "
            f"(servers, user space; {found.messages} messages)"
        )
    one, two, floor_one, floor_two = (counts[label].per_message for label in RELAYS)
    print(
        f"  two instances / one: {two / one:.2f}x; the floor's two processes / one: "
        f"{floor_two / floor_one:.2f}x; ours / the floor: one {one / floor_one:.2f}x, "
        f"two {two / floor_two:.2f}x"
    )
