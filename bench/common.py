"""Shared pieces of the benchmarks: a real app on a free port, a fresh database, statistics."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from aiohttp.test_utils import TestServer

from server.app import create_app
from server.db import create_engine
from server.migrate import upgrade
from server.settings import Settings, load_settings
from tests.conftest import free_port


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile, by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep everything the load's process holds so far (modules, its clients, their
    sockets) out of the collector's full passes while the load runs.

    A full pass walks every object the collector tracks.  Over a load generator's heap it
    stalls the clients' event loop for several milliseconds, and how often one runs depends
    on how much garbage the clients of the server under test make: those stalls would be
    counted against that server as its latency.  What the run allocates afresh is still
    collected.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def summary_ms(values: Sequence[float]) -> str:
    p50 = percentile(values, 0.5) * 1000
    p95 = percentile(values, 0.95) * 1000
    mean = statistics.fmean(values) * 1000
    return f"p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   mean {mean:8.1f} ms   n={len(values)}"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


async def migrate_database(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def running_app(**env: str) -> AsyncIterator[Settings]:
    """The app on 127.0.0.1 with a fresh, migrated database (SQLite in a temp dir unless
    ``ALCOVE_DATABASE_URL`` names another, empty one)."""
    with tempfile.TemporaryDirectory(prefix="alcove-bench-") as tmp:
        port = free_port()
        values = {
            "ALCOVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/alcove.db",
            "ALCOVE_SECRET_KEY": "bench-" + "s" * 40,
            "ALCOVE_DATA_DIR": tmp,
            "ALCOVE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ALCOVE_LOG_LEVEL": "WARNING",
        }
        values.update(env)
        settings = load_settings(values, env_file=None)
        await migrate_database(settings.database_url)
        server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield settings
        finally:
            await server.close()
