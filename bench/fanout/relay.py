"""A closed-loop relay load: pairs of websockets passing one message back and forth.

Each pair keeps exactly one message in flight: one side sends a frame, the server relays it
to the other side, which sends the next one back as soon as it has it.  The latency of one
message is from the moment it is handed to the client's socket to the moment the other
client has read it (both clients are in this process, on one clock).  Throughput is relayed
messages a second over all pairs.  Anything else the server sends (its pings) is answered
or skipped, and not counted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.common import frozen_heap, percentile

#: Decides what to do with a frame that is not the relayed one; returns a reply or ``None``.
Other = Callable[[str], str | None]


#: Distinct frames each side of a pair cycles through: every relayed message is a new text,
#: as real candidates are, so no server can answer from a cache of recent frames.
VARIANTS = 64


@dataclass
class Pair:
    """Two connected sockets and the frames each sends to the other, in turn."""

    a: aiohttp.ClientWebSocketResponse
    b: aiohttp.ClientWebSocketResponse
    a_to_b: Sequence[str]
    b_to_a: Sequence[str]


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: CPU time the server process used while recording (0 when not measured).
    server_cpu: float = 0.0
    #: CPU time this process (the load) used while recording.
    load_cpu: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        p50 = percentile(self.latencies, 0.5) * 1000
        p99 = percentile(self.latencies, 0.99) * 1000
        cpu = ""
        if self.server_cpu and self.latencies:
            cpu = (
                f"   CPU µs/msg: server {self.server_cpu / len(self.latencies) * 1e6:4.0f}"
                f", load {self.load_cpu / len(self.latencies) * 1e6:4.0f}"
            )
        return (
            f"{self.throughput:9.0f} msg/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
            f"{cpu}   n={len(self.latencies)}"
        )


async def _next_relayed(
    ws: aiohttp.ClientWebSocketResponse, relayed: Callable[[str], bool], other: Other
) -> None:
    while True:
        message = await ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"the relay socket ended: {message.type!r} {message.data!r}")
        data: str = message.data
        if relayed(data):
            return
        reply = other(data)
        if reply is not None:
            await ws.send_str(reply)


async def run(
    pairs: list[Pair],
    relayed: Callable[[str], bool],
    other: Other,
    *,
    warmup: float,
    seconds: float,
    server_pid: int | Sequence[int] | None = None,
) -> Result:
    """Run every pair for ``warmup`` + ``seconds``; record the last ``seconds`` only (and
    the CPU time process ``server_pid`` used meanwhile, or processes: their sum)."""
    pids = [server_pid] if isinstance(server_pid, int) else list(server_pid or ())
    result = Result()
    began = time.perf_counter()
    record_from = began + warmup
    stop_at = record_from + seconds

    async def account() -> None:
        if not pids:
            return
        await asyncio.sleep(record_from - time.perf_counter())
        before, own = sum(map(cpu_seconds, pids)), time.process_time()
        await asyncio.sleep(stop_at - time.perf_counter())
        result.server_cpu = sum(map(cpu_seconds, pids)) - before
        result.load_cpu = time.process_time() - own

    async def loop(pair: Pair) -> None:
        sender, receiver, frames, back = pair.a, pair.b, pair.a_to_b, pair.b_to_a
        record = result.latencies.append
        clock = time.perf_counter
        turn = 0
        while True:
            sent = clock()
            if sent >= stop_at:
                return
            await sender.send_str(frames[(turn // 2) % len(frames)])
            await _next_relayed(receiver, relayed, other)
            if sent >= record_from:
                record(clock() - sent)
            sender, receiver, frames, back = receiver, sender, back, frames
            turn += 1

    with frozen_heap():
        await asyncio.gather(account(), *(loop(pair) for pair in pairs))
    result.seconds = seconds
    return result


Opener = Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
