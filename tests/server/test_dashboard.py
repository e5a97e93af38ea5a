"""The dashboard: today's appointments, where "today" is the therapist's own local day."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts
from server.dashboard import local_day_bounds
from server.models import Appointment, Therapist
from server.models import Client as ClientRecord
from tests.conftest import (
    THERAPIST_EMAIL,
    THERAPIST_PASSWORD,
    FakeClock,
    csrf_from,
    sign_in,
)

HttpClient = TestClient[Any, Any]
Sessions = async_sessionmaker[AsyncSession]
NEW_YORK = ZoneInfo("America/New_York")


async def book(
    db: Sessions, therapist_id: int, name: str, starts_at: dt.datetime, minutes: int = 50
) -> None:
    async with db() as session, session.begin():
        person = ClientRecord(therapist_id=therapist_id, name=name, email="c@example.com")
        session.add(person)
        await session.flush()
        session.add(
            Appointment(
                therapist_id=therapist_id,
                client_id=person.id,
                starts_at=starts_at.astimezone(dt.UTC),
                ends_at=(starts_at + dt.timedelta(minutes=minutes)).astimezone(dt.UTC),
            )
        )


def at(day: dt.date, hour: int, minute: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz)


@pytest.mark.parametrize(
    ("zone", "utc_now"),
    [
        # 04:00 on 2 March in New York: late last night there is early today in UTC.
        ("America/New_York", dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)),
        # 21:00 on 2 March in Tokyo: just after midnight tomorrow there is still today in UTC.
        ("Asia/Tokyo", dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)),
    ],
)
async def test_dashboard_shows_only_today_in_the_therapists_time_zone(
    client: HttpClient,
    therapist: Therapist,
    db: Sessions,
    clock: FakeClock,
    zone: str,
    utc_now: dt.datetime,
) -> None:
    clock.now = utc_now
    tz = ZoneInfo(zone)
    async with db() as session, session.begin():
        await session.execute(
            update(Therapist).where(Therapist.id == therapist.id).values(timezone=zone)
        )
    today = utc_now.astimezone(tz).date()
    yesterday, tomorrow = today - dt.timedelta(days=1), today + dt.timedelta(days=1)
    wanted = {
        "Ada Early": at(today, 0, 30, tz),
        "Ben Midday": at(today, 12, 0, tz),
        "Cleo Late": at(today, 23, 30, tz),
    }
    unwanted = {
        "Dev Yesterday": at(yesterday, 23, 30, tz),
        "Eve Tomorrow": at(tomorrow, 0, 30, tz),
        "Fay Tomorrow": at(tomorrow, 23, 30, tz),
    }
    # The point of the test: some excluded appointment falls on today's UTC date.
    assert any(when.astimezone(dt.UTC).date() == utc_now.date() for when in unwanted.values())
    for name, when in {**wanted, **unwanted}.items():
        await book(db, therapist.id, name, when)

    assert (await sign_in(client)).status == 303
    page = await (await client.get("/dashboard")).text()

    assert [name for name in {**wanted, **unwanted} if name in page] == list(wanted)
    assert zone in page
    # Listed in order of start time.
    assert page.index("Ada Early") < page.index("Ben Midday") < page.index("Cleo Late")


async def test_dashboard_shows_only_the_signed_in_therapists_appointments(
    client: HttpClient, therapist: Therapist, db: Sessions, clock: FakeClock
) -> None:
    async with db() as session, session.begin():
        colleague = await accounts.create_therapist(
            session,
            email="colleague@example.com",
            name="Kim Colleague",
            timezone="America/New_York",
            password="another long password",
        )
    soon = clock.now + dt.timedelta(hours=2)
    await book(db, therapist.id, "Mine Client", soon)
    await book(db, colleague.id, "Their Client", soon)

    assert (await sign_in(client)).status == 303
    page = await (await client.get("/dashboard")).text()

    assert "Mine Client" in page
    assert "Their Client" not in page


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        (dt.date(2026, 3, 8), 23),  # clocks spring forward at 02:00
        (dt.date(2026, 11, 1), 25),  # clocks fall back at 02:00
        (dt.date(2026, 3, 2), 24),
    ],
)
@pytest.mark.parametrize("local", [dt.time(0, 0), dt.time(1, 30), dt.time(12, 0), dt.time(23, 59)])
def test_local_day_bounds_run_from_local_midnight_to_local_midnight_across_dst(
    day: dt.date, hours: int, local: dt.time
) -> None:
    now = dt.datetime.combine(day, local, tzinfo=NEW_YORK).astimezone(dt.UTC)

    start, end = local_day_bounds(now, NEW_YORK)

    assert end - start == dt.timedelta(hours=hours)
    assert start <= now < end
    assert start.utcoffset() == end.utcoffset() == dt.timedelta(0)
    assert start.astimezone(NEW_YORK).replace(tzinfo=None) == dt.datetime.combine(day, dt.time())
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    assert end.astimezone(NEW_YORK).replace(tzinfo=None) == next_midnight


async def test_signed_out_visitor_is_sent_to_sign_in_and_then_back(
    client: HttpClient, therapist: Therapist
) -> None:
    response = await client.get("/dashboard", allow_redirects=False)

    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/dashboard"]}

    form = await (await client.get(response.headers["Location"])).text()
    next_field = re.search(r'name="next" value="([^"]*)"', form)
    assert next_field and next_field.group(1) == "/dashboard"
    signed_in = await client.post(
        "/login",
        data={
            "csrf_token": csrf_from(form),
            "email": THERAPIST_EMAIL,
            "password": THERAPIST_PASSWORD,
            "next": next_field.group(1),
        },
        allow_redirects=False,
    )
    assert signed_in.headers["Location"] == "/dashboard"
    assert (await client.get("/dashboard", allow_redirects=False)).status == 200
