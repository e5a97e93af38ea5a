"""Benchmark: a call's signalling comes back after a dropped websocket and a server restart.

A therapist and a client, each an aiortc peer on loopback, are in a call through ``alcove
serve`` (a process of its own, SQLite in a temp dir).  Then, in the same call:

1. **Websocket drops.** The client's websocket is closed (its peer connection is not) and a
   new one opened at once with the same cookies; timed until the client has ``welcome`` with
   state ``admitted`` and ``peer-joined``.
2. **Server restarts.** The server gets SIGTERM mid-call and is started again on the same
   port; timed from SIGTERM until both participants have ``welcome`` and ``peer-joined``
   from the new process, split into the old process exiting, the new one becoming ready
   (``/readyz``), and the sockets resuming.

Every received video frame is time-stamped, so each outage also reports how many frames
arrived while the signalling was away and the longest wait between two frames across it:
the media is peer to peer and should not notice (15 fps is a frame every 67 ms).

    python -m bench.reconnect [--drops 30] [--restarts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aioice.ice

from bench.reconnect.call import FPS, Side, start_call
from bench.reconnect.serve import Server, follow_join_link, free_port, prepare_database, sign_in

#: After each outage, how long to let media run before looking at its frames (and before the
#: next outage): long enough for the frame after the outage to have arrived.
SETTLE_SECONDS = 1.0


def loopback(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """aioice leaves out 127.0.0.1 when it gathers candidates; here it is all there is."""
    return ["127.0.0.1"]


@dataclass
class Outage:
    """One outage of the signalling, in seconds from its start, and what the media did."""

    marks: dict[str, float]
    frames: int = 0
    expected_frames: float = 0.0
    longest_gap: float = 0.0
    quiet_gap: float = 0.0


def observe_media(outage: Outage, sides: Sequence[Side], start: float, end: float) -> None:
    """Frames both peers received during ``[start, end]``, against what 15 fps would give."""
    outage.frames = sum(side.peer.frames_between(start, end) for side in sides)
    outage.expected_frames = len(sides) * FPS * (end - start)
    outage.longest_gap = max(side.peer.longest_gap(start, end) for side in sides)
    # The control: the same measure over the quiet second before the outage.
    quiet = (start - SETTLE_SECONDS, start - 0.1)
    outage.quiet_gap = max(side.peer.longest_gap(*quiet) for side in sides)


async def drop(url: str, therapist: Side, client: Side) -> Outage:
    therapist.socket.forget("peer-left", "peer-joined")
    started = time.perf_counter()
    await client.socket.close()  # the websocket only: the peer connection stays
    closed = time.perf_counter()
    welcome = await client.resume(url)
    welcomed = time.perf_counter()
    if welcome["state"] != "admitted":
        raise RuntimeError(f"the client came back {welcome['state']}, not admitted")
    await client.socket.expect("peer-joined")
    restored = time.perf_counter()
    await therapist.socket.expect("peer-joined")
    if not client.socket.queue("waiting").empty():
        raise RuntimeError("the client was sent to the waiting room")
    await asyncio.sleep(SETTLE_SECONDS)
    outage = Outage(
        {
            "closed": closed - started,
            "welcome": welcomed - started,
            "restored": restored - started,
        }
    )
    observe_media(outage, (therapist, client), started, restored)
    return outage


async def restart(server: Server, therapist: Side, client: Side) -> Outage:
    started = time.perf_counter()
    status = await server.terminate()
    exited = time.perf_counter()
    if status != 0:
        raise RuntimeError(f"alcove serve exited with {status}:\n{server.output()}")
    codes = [await side.socket.wait_closed() for side in (therapist, client)]
    if codes != [1001, 1001]:
        raise RuntimeError(f"sockets closed with {codes}, not 1001")
    await server.start()
    ready = time.perf_counter()

    async def back(side: Side, states: tuple[str, ...]) -> float:
        welcome = await side.resume(server.url)
        if welcome["state"] not in states:
            raise RuntimeError(f"{welcome['role']} came back {welcome['state']}")
        await side.socket.expect("peer-joined")
        return time.perf_counter()

    times = await asyncio.gather(
        back(therapist, ("admitted", "in_call")), back(client, ("admitted",))
    )
    resumed = max(times)
    if not client.socket.queue("waiting").empty():
        raise RuntimeError("the client was sent to the waiting room")
    await asyncio.sleep(SETTLE_SECONDS)
    outage = Outage(
        {
            "exited": exited - started,
            "ready": ready - exited,
            "resumed": resumed - ready,
            "total": resumed - started,
        }
    )
    observe_media(outage, (therapist, client), started, resumed)
    return outage


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile, interpolating linearly between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def row(label: str, values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
    return f"| {label} | {p50:,.1f} ms | {p95:,.1f} ms | {max(ms):,.1f} ms |"


def media_rows(outages: Sequence[Outage]) -> list[str]:
    frames = sum(o.frames for o in outages)
    expected = sum(o.expected_frames for o in outages)
    return [
        row("longest wait between two video frames across it", [o.longest_gap for o in outages]),
        row("(control: the same over the second before it)", [o.quiet_gap for o in outages]),
        f"| video frames received during the outages (both peers, all runs) | {frames} "
        f"| of ~{expected:.0f} at {FPS} fps | |",
    ]


def machine() -> str:
    cpu = "unknown CPU"
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB"
                break
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    busy = "; shared and loaded" if load[0] > cores else ""
    return (
        f"{cpu}, {cores} cores{memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{busy}"
    )


def report(drops: Sequence[Outage], restarts: Sequence[Outage], load_before: str) -> None:
    print()
    print("bench/reconnect: one call, two aiortc peers on loopback, alcove serve on SQLite")
    print(f"| websocket drop → state restored ({len(drops)} runs) | p50 | p95 | max |")
    print("| --- | --- | --- | --- |")
    print(row("close → `welcome` (admitted)", [o.marks["welcome"] for o in drops]))
    print(row("close → `welcome` + `peer-joined`", [o.marks["restored"] for o in drops]))
    print(row("(of which closing the old socket)", [o.marks["closed"] for o in drops]))
    for line in media_rows(drops):
        print(line)
    print()
    print(f"| server restart → both resumed ({len(restarts)} runs) | p50 | p95 | max |")
    print("| --- | --- | --- | --- |")
    print(row("SIGTERM → old process exited", [o.marks["exited"] for o in restarts]))
    print(row("exited → new process ready (`/readyz`)", [o.marks["ready"] for o in restarts]))
    print(
        row("ready → both have `welcome` + `peer-joined`", [o.marks["resumed"] for o in restarts])
    )
    print(row("SIGTERM → both resumed", [o.marks["total"] for o in restarts]))
    for line in media_rows(restarts):
        print(line)
    print()
    print(f"machine: {machine()} (load average before: {load_before})")


async def main(drops: int, restarts: int) -> None:
    aioice.ice.get_host_addresses = loopback
    logging.basicConfig(level=logging.WARNING)
    load = os.getloadavg()
    load_before = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    with tempfile.TemporaryDirectory(prefix="alcove-reconnect-") as tmp:
        workdir = Path(tmp)
        booking = await prepare_database(f"sqlite+aiosqlite:///{workdir}/alcove.db")
        server = Server(f"sqlite+aiosqlite:///{workdir}/alcove.db", workdir, free_port())
        sides: list[Side] = []
        try:
            await server.start()
            therapist_http = await sign_in(server.url, booking.email, booking.password)
            therapist = Side(
                therapist_http, server.url, polite=False, appointment=booking.appointment
            )
            sides.append(therapist)
            client_http = await follow_join_link(server.url, booking.join_token)
            client = Side(client_http, server.url, polite=True)
            sides.append(client)
            await start_call(server.url, therapist, client, booking.appointment)
            dropped = [await drop(server.url, therapist, client) for _ in range(drops)]
            restarted = [await restart(server, therapist, client) for _ in range(restarts)]
        finally:
            for side in sides:
                await side.close()
            await server.kill()
    report(dropped, restarted, load_before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drops", type=int, default=30)
    parser.add_argument("--restarts", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.drops, arguments.restarts))
