"""Benchmark: slot computation with a full calendar, and booking throughput on PostgreSQL.

1. Slots: a therapist with a year of appointments (four a weekday, half a year back and half
   ahead) asks for the free times of a 50-minute session over the 60-day horizon; timed
   through the service (``booking.slots_for``, database reads included) and for the pure
   computation alone (``availability.available_slots``).
2. Bookings: 50 concurrent clients book distinct free slots through the real JSON API of an
   app on PostgreSQL, each as fast as it can; throughput and latency of ``POST …/bookings``.

    python -m bench.booking [--runs 50] [--bookings 300]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import statistics
import time
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import machine, percentile, running_app, summary_ms
from server import availability, booking
from server.db import create_engine, sessionmaker
from server.models import Appointment, AppointmentStatus
from tests.conftest import DEFAULT_POSTGRES_URL, PostgresDatabases
from tests.support.arrange import make_bookable_therapist, make_client

CLIENTS = 50


async def fill_a_year(db: async_sessionmaker[AsyncSession], therapist_id: int, zone: str) -> int:
    """Four appointments each weekday from half a year ago to half a year ahead."""
    client = await make_client(db, therapist_id)
    tz = zoneinfo.ZoneInfo(zone)
    today = dt.datetime.now(tz).date()
    rows = 0
    async with db() as session, session.begin():
        for offset in range(-182, 183):
            day = today + dt.timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            for hour in (9, 11, 13, 15):
                start = dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(dt.UTC)
                session.add(
                    Appointment(
                        therapist_id=therapist_id,
                        client_id=client.id,
                        starts_at=start,
                        ends_at=start + dt.timedelta(minutes=50),
                        buffer_minutes=10,
                        status=AppointmentStatus.SCHEDULED.value,
                    )
                )
                rows += 1
    return rows


async def bench_slots(url: str, runs: int) -> None:
    engine = create_engine(url)
    db = sessionmaker(engine)
    try:
        bookable = await make_bookable_therapist(db)
        rows = await fill_a_year(db, bookable.therapist.id, bookable.therapist.timezone)
        service: list[float] = []
        pure: list[float] = []
        count = 0
        for _ in range(runs):
            now = dt.datetime.now(dt.UTC)
            started = time.perf_counter()
            async with db() as session:
                slots = await booking.slots_for(
                    session, bookable.therapist, bookable.individual, now
                )
            service.append(time.perf_counter() - started)
            count = len(slots)
        hours, rules, busy = await _pure_inputs(db, bookable)
        for _ in range(runs):
            now = dt.datetime.now(dt.UTC)
            started = time.perf_counter()
            availability.available_slots(hours=hours, rules=rules, now=now, busy=busy)
            pure.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    print(f"\nslots: {rows} appointments, 60-day horizon, {count} free 50-min slots, {runs} runs")
    print(f"  service (database reads included)  {summary_ms(service)}")
    print(f"  computation alone                  {summary_ms(pure)}")


async def _pure_inputs(
    db: async_sessionmaker[AsyncSession], bookable: Any
) -> tuple[availability.WeeklyHours, availability.SessionTypeRules, list[availability.Busy]]:
    from sqlalchemy import select

    from server.models import WeeklyHours

    async with db() as session:
        hour_rows = list(
            await session.scalars(
                select(WeeklyHours).where(WeeklyHours.therapist_id == bookable.therapist.id)
            )
        )
        appointments = list(
            await session.scalars(
                select(Appointment).where(Appointment.therapist_id == bookable.therapist.id)
            )
        )
    days: dict[int, list[tuple[dt.time, dt.time]]] = {}
    for row in hour_rows:
        days.setdefault(row.weekday, []).append((row.start_time, row.end_time))
    hours = availability.WeeklyHours.from_mapping(bookable.therapist.timezone, days)
    kind = bookable.individual
    rules = availability.SessionTypeRules(
        duration=dt.timedelta(minutes=kind.duration_minutes),
        buffer_after=dt.timedelta(minutes=kind.buffer_minutes),
        min_notice=dt.timedelta(minutes=kind.min_notice_minutes),
        horizon=dt.timedelta(days=kind.horizon_days),
    )
    busy = [
        availability.Busy(a.starts_at, a.ends_at, dt.timedelta(minutes=a.buffer_minutes))
        for a in appointments
    ]
    return hours, rules, busy


@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    databases = PostgresDatabases(DEFAULT_POSTGRES_URL)
    try:
        yield await databases.create()
    finally:
        await databases.drop_all()


async def bench_bookings(total: int) -> None:
    async with fresh_postgres() as empty, running_app(ALCOVE_DATABASE_URL=empty) as settings:
        engine = create_engine(settings.database_url)
        bookable = await make_bookable_therapist(sessionmaker(engine))
        await engine.dispose()
        api = f"{settings.public_url}/api/v1/therapists/{bookable.therapist.slug}"
        kind = bookable.individual.id
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            today = dt.date.today()
            window: dict[str, str | int] = {
                "session_type": kind,
                "from": today.isoformat(),
                "to": (today + dt.timedelta(days=60)).isoformat(),
            }
            async with http.get(f"{api}/slots", params=window) as response:
                response.raise_for_status()
                offered = (await response.json())["slots"]
            starts = _non_overlapping([s["start"] for s in offered], minutes=60)[:total]
            queue: asyncio.Queue[str] = asyncio.Queue()
            for start in starts:
                queue.put_nowait(start)
            latencies: list[float] = []
            statuses: dict[int, int] = {}

            async def client(number: int) -> None:
                while not queue.empty():
                    start = queue.get_nowait()
                    body = {
                        "session_type": kind,
                        "start": start,
                        "name": f"Client {number}",
                        "email": f"client{number}@example.com",
                        "timezone": "Europe/Berlin",
                        "consent_telehealth": True,
                        "consent_privacy": True,
                    }
                    began = time.perf_counter()
                    async with http.post(f"{api}/bookings", json=body) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                    latencies.append(time.perf_counter() - began)

            began = time.perf_counter()
            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
            elapsed = time.perf_counter() - began
    booked = statuses.get(201, 0)
    print(f"\nbookings: PostgreSQL, {CLIENTS} concurrent clients, {len(starts)} distinct slots")
    print(f"  statuses {dict(sorted(statuses.items()))}")
    print(f"  throughput {booked / elapsed:8.1f} bookings/s over {elapsed:.1f} s")
    print(
        f"  latency  p50 {percentile(latencies, 0.5) * 1000:8.1f} ms"
        f"   p95 {percentile(latencies, 0.95) * 1000:8.1f} ms"
        f"   mean {statistics.fmean(latencies) * 1000:8.1f} ms"
    )


def _non_overlapping(starts: list[str], *, minutes: int) -> list[str]:
    chosen: list[str] = []
    last: dt.datetime | None = None
    for raw in starts:
        start = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if last is None or start - last >= dt.timedelta(minutes=minutes):
            chosen.append(raw)
            last = start
    return chosen


async def main(runs: int, total: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    print("bench/booking")
    print(f"machine: {machine()}")
    async with fresh_postgres() as url:
        from bench.common import migrate_database

        await migrate_database(url)
        await bench_slots(url, runs)
    await bench_bookings(total)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--bookings", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.bookings))
