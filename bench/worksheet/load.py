"""The load: pairs of typists sending updates at a fixed rate, and what it measured.

The load is open-loop: every typist has a schedule (``rate`` updates a second, at a random
phase) and keeps to it whatever the server does, as people typing would. A send that the
generator itself could not make on time is counted as *slip*, so that an overloaded
generator is visible instead of being mistaken for a slow server.

Latencies are taken for the updates sent inside the measurement window (after a warm-up);
the server's CPU time is read from ``/proc/<pid>/stat`` at the edges of the same window and
divided by the number of updates sent in it (each update is relayed to one peer).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import percentile
from bench.worksheet.typist import Typist, converged


class Link(abc.ABC):
    """One typist's websocket to a server: sends its messages, feeds it what arrives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, typist: Typist) -> None:
        self.ws = ws
        self.typist = typist
        #: Error messages the server sent (refused or rate-limited updates).
        self.errors: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def send(self, message: bytes) -> None:
        """Put one sync message on the wire, in the server's envelope."""

    @abc.abstractmethod
    async def unwrap(self, frame: aiohttp.WSMessage) -> bytes | None:
        """The sync message in `frame`, or None for a frame that carries none."""

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            message = await self.unwrap(frame)
            if message is None:
                continue
            reply = self.typist.receive(message)
            if reply is not None:
                await self.send(reply)

    async def close(self) -> None:
        """Close without waiting long: a server still working through a backlog may take
        its time to answer the close."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout(2):
                await self.ws.close()


@dataclass(frozen=True)
class Pair:
    first: Link
    second: Link

    @property
    def links(self) -> tuple[Link, Link]:
        return (self.first, self.second)


async def wait_ready(pairs: Sequence[Pair], within: float = 30.0) -> None:
    """Until every typist has the field to type into (the initial sync is done)."""
    deadline = time.perf_counter() + within
    while not all(link.typist.ready for pair in pairs for link in pair.links):
        if time.perf_counter() > deadline:
            missing = sum(not link.typist.ready for pair in pairs for link in pair.links)
            raise TimeoutError(f"{missing} typists never received the worksheet")
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), utime and stime; `fields` starts at field 3.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Result:
    """One server's figures."""

    label: str
    latencies: list[float]
    sent: int
    delivered: int
    #: Updates that reached the peer during the window, whenever they were sent: what the
    #: server relayed in it (less than `sent` when it falls behind).
    relayed: int
    lost: int
    #: Pairs whose two copies of the field differ at the end (should be none).
    diverged: int
    errors: list[str]
    server_cpu: float
    generator_cpu: float
    window: float
    slips: list[float] = field(default_factory=list)

    def latency(self, fraction: float) -> float:
        """The `fraction` quantile of the latencies, counting an update never delivered as
        infinitely late (so a server that falls behind has an infinite p99, not a good one)."""
        if self.lost == 0:
            return percentile(self.latencies, fraction)
        ordered = sorted(self.latencies) + [math.inf] * self.lost
        return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]

    @property
    def cpu_per_update(self) -> float:
        """Server CPU time per update relayed in the window."""
        return self.server_cpu / self.relayed if self.relayed else math.nan


async def drive(
    label: str,
    pairs: Sequence[Pair],
    server_pid: int,
    *,
    rate: float,
    warmup: float,
    seconds: float,
    drain: float = 10.0,
) -> Result:
    """Type at `rate` updates a second per typist for `warmup` + `seconds`; measure the last
    `seconds`."""
    links = [link for pair in pairs for link in pair.links]
    interval = 1.0 / rate
    begin = time.perf_counter() + 0.2
    window_start = begin + warmup
    window_end = window_start + seconds
    slips: list[float] = []

    async def type_on(link: Link) -> None:
        first = begin + random.random() * interval
        k = 0
        while True:
            due = first + k * interval
            if due >= window_end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if due >= window_start:
                slips.append(time.perf_counter() - due)
            if link.ws.closed:
                link.errors.append(f"the server closed the socket ({link.ws.close_code})")
                return
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await link.send(link.typist.type_one())
            k += 1

    async def read_cpu_at(moment: float) -> tuple[float, float]:
        await asyncio.sleep(max(0.0, moment - time.perf_counter()))
        return cpu_seconds(server_pid), own_cpu_seconds()

    start_cpu = asyncio.create_task(read_cpu_at(window_start))
    end_cpu = asyncio.create_task(read_cpu_at(window_end))
    await asyncio.gather(*(type_on(link) for link in links))
    (server0, own0), (server1, own1) = await asyncio.gather(start_cpu, end_cpu)

    def outstanding() -> int:
        return sum(
            len(link.typist.sent_at) - peer.received
            for link in links
            if (peer := link.typist.peer) is not None
        )

    for _ in range(int(drain / 0.05)):
        if outstanding() == 0:
            break
        await asyncio.sleep(0.05)

    latencies: list[float] = []
    sent = 0
    relayed = 0
    for link in links:
        typist = link.typist
        sent += sum(window_start <= at < window_end for at in typist.sent_at)
        for sent_at, latency in typist.latencies:
            if window_start <= sent_at < window_end:
                latencies.append(latency)
            if window_start <= sent_at + latency < window_end:
                relayed += 1
    delivered = len(latencies)
    return Result(
        label=label,
        latencies=latencies,
        sent=sent,
        delivered=delivered,
        relayed=relayed,
        lost=sent - delivered,
        diverged=sum(not converged(pair.first.typist, pair.second.typist) for pair in pairs),
        errors=[error for link in links for error in link.errors],
        server_cpu=server1 - server0,
        generator_cpu=own1 - own0,
        window=seconds,
        slips=slips,
    )


def pooled(label: str, results: Sequence[Result]) -> Result:
    """Several rounds against one server as one result: every latency, all the CPU time."""
    return Result(
        label=label,
        latencies=[latency for result in results for latency in result.latencies],
        sent=sum(result.sent for result in results),
        delivered=sum(result.delivered for result in results),
        relayed=sum(result.relayed for result in results),
        lost=sum(result.lost for result in results),
        diverged=sum(result.diverged for result in results),
        errors=[error for result in results for error in result.errors],
        server_cpu=sum(result.server_cpu for result in results),
        generator_cpu=sum(result.generator_cpu for result in results),
        window=sum(result.window for result in results),
        slips=[slip for result in results for slip in result.slips],
    )


async def stop(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Terminate a server we started; kill it if it does not stop within `grace` seconds
    (one that fell far behind may still be draining its sockets)."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
