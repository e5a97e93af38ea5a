"""Benchmark: live worksheet update latency and server CPU, Alcove against the Yjs reference.

``pairs`` worksheets are open at once, each shared by two typists (the therapist and the
client of a call); every typist types into the same long-text field of its worksheet at
``rate`` updates a second, each update one character as a y-protocols update message. The
latency of an update is the time from its send by one typist until the other has received
and applied it. The same load, with the same pycrdt typists, runs against the reference
Node server (``@y/websocket-server`` with ``yjs``), against Alcove's own server (``alcove
serve`` in a separate process, so that its CPU time can be read), and against the floor
(``bench.worksheet.floor``: the reference's protocol on Alcove's stack, aiohttp, uvloop and
pycrdt, with nothing else), alternating for ``rounds`` rounds so that all see the same
machine; the rounds are pooled.

    python -m bench.worksheet [--pairs 50] [--rate 20] [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from bench.common import frozen_heap, machine, percentile
from bench.worksheet import alcove, reference
from bench.worksheet.load import Pair, Result, drive, pooled, wait_ready

FIELD = "went_well"
TEMPLATE = "weekly-check-in"
REFERENCE = "reference (@y/websocket-server)"
ALCOVE = "Alcove"
FLOOR = "floor (aiohttp + pycrdt, no checks)"


async def run_reference(args: argparse.Namespace) -> Result:
    return await _run_y_websocket(REFERENCE, reference.running_reference(), args)


async def run_floor(args: argparse.Namespace) -> Result:
    return await _run_y_websocket(FLOOR, reference.running_floor(), args)


async def _run_y_websocket(
    label: str,
    server: contextlib.AbstractAsyncContextManager[tuple[str, int]],
    args: argparse.Namespace,
) -> Result:
    """A server of y-websocket's protocol (the reference, or the floor), given running."""
    async with (
        server as (base, pid),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        pairs = await reference.connect_pairs(http, base, args.pairs, FIELD, TEMPLATE)
        return await _measure(label, pairs, pid, args)


async def run_alcove(args: argparse.Namespace) -> Result:
    async with alcove.running_alcove(args.pairs) as served:
        pairs = await alcove.connect_pairs(served, FIELD, TEMPLATE)
        return await _measure(ALCOVE, pairs, served.pid, args)


async def _measure(label: str, pairs: Sequence[Pair], pid: int, args: argparse.Namespace) -> Result:
    try:
        await wait_ready(pairs)
        print(f"{label}: {len(pairs)} worksheets open; typing", file=sys.stderr, flush=True)
        with frozen_heap():
            return await drive(
                label, pairs, pid, rate=args.rate, warmup=args.warmup, seconds=args.seconds
            )
    finally:
        await asyncio.gather(*(link.close() for pair in pairs for link in pair.links))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _row(result: Result) -> str:
    return (
        f"| {result.label} | {_ms(result.latency(0.5))} | {_ms(result.latency(0.99))} "
        f"| {result.cpu_per_update * 1e6:.0f} µs | {result.server_cpu / result.window:.0%} "
        f"| {result.relayed / result.window:.0f} |"
    )


def report(rounds: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(
        f"bench/worksheet: {args.pairs} worksheets ({2 * args.pairs} typists), "
        f"{args.rate:g} updates/s per typist, {len(next(iter(rounds.values())))} round(s) of "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up"
    )
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    results = {label: pooled(label, each) for label, each in rounds.items()}
    offered = 2 * args.pairs * args.rate
    print(
        "| server | p50 | p99 | CPU per update | server CPU (of one core) "
        f"| updates relayed/s (of {offered:.0f} sent) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for result in results.values():
        print(_row(result))
    for name, label, base in (
        ("ours / reference", ALCOVE, REFERENCE),
        ("floor / reference", FLOOR, REFERENCE),
        ("ours / floor", ALCOVE, FLOOR),
    ):
        if label in results and base in results:
            mine, theirs = results[label], results[base]
            print(
                f"| {name} | {mine.latency(0.5) / theirs.latency(0.5):.2f}× "
                f"| {mine.latency(0.99) / theirs.latency(0.99):.2f}× "
                f"| {mine.cpu_per_update / theirs.cpu_per_update:.2f}× | | |"
            )
    print()
    for label, each in rounds.items():
        for number, result in enumerate(each, 1):
            print(
                f"{label}, round {number}: p50 {_ms(result.latency(0.5))}, "
                f"p99 {_ms(result.latency(0.99))}, {result.cpu_per_update * 1e6:.0f} µs/update; "
                f"{result.sent} updates sent, {result.lost} lost, "
                f"{result.relayed / result.window:.0f} relayed/s, "
                f"{result.diverged} worksheets diverged; generator CPU "
                f"{result.generator_cpu / result.window:.0%}, send slip p99 "
                f"{_ms(percentile(result.slips, 0.99))}"
            )
            for error in sorted(set(result.errors))[:5]:
                print(f"  server error: {error} (x{result.errors.count(error)})")


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed (it is optional: the benchmark works without)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run
    run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    return run


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    chosen = {"reference": REFERENCE, "alcove": ALCOVE, "floor": FLOOR}
    servers = [REFERENCE, ALCOVE, FLOOR] if args.only is None else [chosen[args.only]]
    try:
        if REFERENCE in servers:
            reference.install()
    except reference.ReferenceUnavailable as error:
        print(f"bench/worksheet: skipping the reference server: {error}")
        servers.remove(REFERENCE)
    rounds: dict[str, list[Result]] = {label: [] for label in servers}
    runners = {REFERENCE: run_reference, ALCOVE: run_alcove, FLOOR: run_floor}
    for number in range(args.rounds):
        # Alternate which goes first, so that neither always follows the other's aftermath.
        order = servers if number % 2 == 0 else servers[::-1]
        for label in order:
            rounds[label].append(await runners[label](args))
    report(rounds, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="updates/s per typist")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per round")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=("reference", "alcove", "floor"), help="one server only")
    _event_loop_runner()(main(parser.parse_args()))
