"""The therapist's side: weekly series that keep their wall-clock time across daylight saving,
all-or-nothing; moving or cancelling one occurrence or the rest; nobody else's records."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import booking
from server.models import Appointment, AppointmentSeries, Client, OutboxMessage
from tests.conftest import FakeClock
from tests.support.arrange import Bookable, local, make_bookable_therapist, make_client

Sessions = async_sessionmaker[AsyncSession]
ZONE = "America/New_York"
NEW_YORK = ZoneInfo(ZONE)
GRACE = dt.timedelta(minutes=30)
#: Tuesday 6 October 2026, 10:00 EDT; clocks go back on Sunday 1 November.
FIRST = local(ZONE, 2026, 10, 6, 10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db)


@pytest.fixture
async def client(db: Sessions, bookable: Bookable) -> Client:
    return await make_client(db, bookable.id)


async def series(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock, weeks: int = 16
) -> list[int]:
    return await booking.create_series(
        db,
        therapist_id=bookable.id,
        client_id=client.id,
        session_type_id=bookable.individual.id,
        first_local_start=FIRST,
        weeks=weeks,
        now=clock.now,
    )


async def appointments(db: Sessions, ids: list[int]) -> list[Appointment]:
    async with db() as session:
        rows = await session.scalars(
            select(Appointment).where(Appointment.id.in_(ids)).order_by(Appointment.starts_at)
        )
        return list(rows)


async def count(db: Sessions, table: type[Appointment | AppointmentSeries | OutboxMessage]) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_series_of_16_from_october_keeps_its_local_time_after_the_november_change(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock)

    rows = await appointments(db, ids)
    assert len(rows) == 16
    assert [r.starts_at.astimezone(NEW_YORK).strftime("%a %H:%M") for r in rows] == [
        "Tue 10:00"
    ] * 16
    assert {r.starts_at.hour for r in rows[:4]} == {14}  # EDT, UTC-4
    assert {r.starts_at.hour for r in rows[4:]} == {15}  # EST, UTC-5
    assert {r.ends_at - r.starts_at for r in rows} == {dt.timedelta(minutes=50)}
    assert len({r.series_id for r in rows}) == 1 and rows[0].series_id is not None
    async with db() as session:
        stored = await session.get(AppointmentSeries, rows[0].series_id)
    assert stored is not None
    assert (stored.timezone, stored.local_time, stored.weeks) == (ZONE, dt.time(10), 16)


async def test_a_series_queues_one_confirmation_and_every_weeks_reminders(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    await series(db, bookable, client, clock, weeks=3)

    async with db() as session:
        kinds = list(await session.scalars(select(OutboxMessage.kind)))
    assert sorted(kinds) == ["confirmation"] + ["reminder"] * 6


async def test_a_series_colliding_in_week_7_names_it_and_creates_nothing(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    week_7 = local(ZONE, 2026, 11, 17, 10, 30)
    await booking.create_appointment(
        db,
        therapist_id=bookable.id,
        client_id=client.id,
        session_type_id=bookable.consultation.id,
        start=week_7,
        now=clock.now,
    )
    before = (await count(db, Appointment), await count(db, OutboxMessage))

    with pytest.raises(booking.SlotTaken) as caught:
        await series(db, bookable, client, clock)

    assert caught.value.occurrence == 7
    assert caught.value.start == local(ZONE, 2026, 11, 17, 10).astimezone(dt.UTC)
    assert (await count(db, Appointment), await count(db, OutboxMessage)) == before
    assert await count(db, AppointmentSeries) == 0


@pytest.mark.parametrize(
    ("weeks", "first", "field"),
    [
        (0, FIRST, "weeks"),
        (105, FIRST, "weeks"),
        (4, local(ZONE, 2026, 9, 29, 10), "first_local_start"),
        (4, FIRST.replace(tzinfo=None), "first_local_start"),
    ],
    ids=["no-weeks", "too-many-weeks", "in-the-past", "naive"],
)
async def test_a_series_with_bad_weeks_or_start_is_a_booking_error(
    db: Sessions,
    bookable: Bookable,
    client: Client,
    clock: FakeClock,
    weeks: int,
    first: dt.datetime,
    field: str,
) -> None:
    with pytest.raises(booking.BookingError) as caught:
        await booking.create_series(
            db,
            therapist_id=bookable.id,
            client_id=client.id,
            session_type_id=bookable.individual.id,
            first_local_start=first,
            weeks=weeks,
            now=clock.now,
        )

    assert caught.value.field == field
    assert await count(db, Appointment) == 0


async def test_moving_occurrence_5_leaves_4_and_6_untouched(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock)
    before = await appointments(db, ids)
    new_start = local(ZONE, 2026, 11, 4, 15)

    await booking.move_occurrence(
        db,
        therapist_id=bookable.id,
        appointment_id=ids[4],
        new_start=new_start,
        now=clock.now,
        join_grace=GRACE,
    )

    after = {a.id: a for a in await appointments(db, ids)}
    moved = after[ids[4]]
    assert (moved.starts_at, moved.ends_at - moved.starts_at) == (
        new_start.astimezone(dt.UTC),
        dt.timedelta(minutes=50),
    )
    assert (moved.sequence, moved.status, moved.series_id) == (1, "scheduled", before[4].series_id)
    for index in (3, 5):
        untouched = after[ids[index]]
        assert (untouched.starts_at, untouched.sequence) == (before[index].starts_at, 0)
    async with db() as session:
        announced = list(
            await session.scalars(
                select(OutboxMessage.appointment_id).where(OutboxMessage.kind == "rescheduled")
            )
        )
    assert announced == [ids[4]]


async def test_moving_onto_another_appointment_is_slot_taken_and_changes_nothing(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock, weeks=2)

    with pytest.raises(booking.SlotTaken):
        await booking.move_occurrence(
            db,
            therapist_id=bookable.id,
            appointment_id=ids[0],
            new_start=local(ZONE, 2026, 10, 13, 10, 30),
            now=clock.now,
            join_grace=GRACE,
        )

    assert (await appointments(db, ids))[0].starts_at == FIRST.astimezone(dt.UTC)


async def test_cancelling_one_occurrence_cancels_only_that_one(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock)

    await booking.cancel_occurrence(
        db, therapist_id=bookable.id, appointment_id=ids[2], now=clock.now
    )

    statuses = [a.status for a in await appointments(db, ids)]
    assert statuses == ["scheduled"] * 2 + ["cancelled"] + ["scheduled"] * 13


async def test_cancelling_the_rest_of_a_series_from_occurrence_10_cancels_10_to_16_only(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock)

    cancelled = await booking.cancel_rest_of_series(
        db, therapist_id=bookable.id, from_appointment_id=ids[9], now=clock.now
    )

    rows = await appointments(db, ids)
    assert cancelled == ids[9:]
    assert [a.status for a in rows] == ["scheduled"] * 9 + ["cancelled"] * 7
    assert [a.sequence for a in rows] == [0] * 9 + [1] * 7
    async with db() as session:
        withdrawn_for = set(
            await session.scalars(
                select(OutboxMessage.appointment_id).where(OutboxMessage.status == "withdrawn")
            )
        )
    assert withdrawn_for == set(ids[9:])


async def test_another_therapist_can_touch_none_of_these(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock)
    other = await make_bookable_therapist(db, slug="kim-lee", email="kim@example.org")
    before = [(a.starts_at, a.status, a.sequence) for a in await appointments(db, ids)]

    with pytest.raises(booking.NotFound):
        await booking.move_occurrence(
            db,
            therapist_id=other.id,
            appointment_id=ids[4],
            new_start=local(ZONE, 2026, 11, 4, 15),
            now=clock.now,
            join_grace=GRACE,
        )
    with pytest.raises(booking.NotFound):
        await booking.cancel_occurrence(
            db, therapist_id=other.id, appointment_id=ids[4], now=clock.now
        )
    with pytest.raises(booking.NotFound):
        await booking.cancel_rest_of_series(
            db, therapist_id=other.id, from_appointment_id=ids[9], now=clock.now
        )
    with pytest.raises(booking.NotFound):  # their client
        await booking.create_appointment(
            db,
            therapist_id=other.id,
            client_id=client.id,
            session_type_id=other.individual.id,
            start=local(ZONE, 2026, 10, 7, 10),
            now=clock.now,
        )
    with pytest.raises(booking.NotFound):  # their session type
        await booking.create_series(
            db,
            therapist_id=other.id,
            client_id=(await make_client(db, other.id)).id,
            session_type_id=bookable.individual.id,
            first_local_start=FIRST,
            weeks=2,
            now=clock.now,
        )
    async with db() as session:
        assert await booking.client_record(session, other.id, client.id, clock.now) is None
        week = await booking.week_of(session, other.therapist, dt.date(2026, 10, 5))
    assert week == []
    after = [(a.starts_at, a.status, a.sequence) for a in await appointments(db, ids)]
    assert after == before
    assert await count(db, Appointment) == 16


async def test_a_one_off_appointment_for_a_client_may_be_outside_public_hours(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    saturday = local(ZONE, 2026, 10, 10, 8, 5)

    appointment_id = await booking.create_appointment(
        db,
        therapist_id=bookable.id,
        client_id=client.id,
        session_type_id=bookable.individual.id,
        start=saturday,
        now=clock.now,
    )

    [row] = await appointments(db, [appointment_id])
    assert (row.starts_at, row.buffer_minutes, row.series_id) == (
        saturday.astimezone(dt.UTC),
        10,
        None,
    )
    async with db() as session:
        kinds = sorted(await session.scalars(select(OutboxMessage.kind)))
    assert kinds == ["confirmation", "reminder", "reminder"]


async def test_a_week_is_the_therapists_local_week_and_leaves_out_cancelled_ones(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock, weeks=6)
    await booking.cancel_occurrence(
        db, therapist_id=bookable.id, appointment_id=ids[5], now=clock.now
    )

    async with db() as session:
        across_the_change = await booking.week_of(
            session, bookable.therapist, dt.date(2026, 10, 26)
        )
        after = await booking.week_of(session, bookable.therapist, dt.date(2026, 11, 9))
        with_cancelled = await booking.week_of(
            session, bookable.therapist, dt.date(2026, 11, 9), include_cancelled=True
        )

    assert [a.id for a in across_the_change] == [ids[3]]
    assert across_the_change[0].client.name == "Alex Morgan"
    assert after == []
    assert [a.id for a in with_cancelled] == [ids[5]]


async def test_a_client_record_has_upcoming_soonest_first_and_past_latest_first(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock, weeks=4)
    clock.now = local(ZONE, 2026, 10, 20, 10, 20).astimezone(dt.UTC)  # during week 3

    async with db() as session:
        record = await booking.client_record(session, bookable.id, client.id, clock.now)

    assert record is not None
    assert record.client.id == client.id
    assert [a.id for a in record.upcoming] == ids[2:]
    assert [a.id for a in record.past] == [ids[1], ids[0]]


async def test_the_rest_of_a_series_can_be_cancelled_from_an_occurrence_already_cancelled(
    db: Sessions, bookable: Bookable, client: Client, clock: FakeClock
) -> None:
    ids = await series(db, bookable, client, clock, weeks=4)
    await booking.cancel_occurrence(
        db, therapist_id=bookable.id, appointment_id=ids[1], now=clock.now
    )

    cancelled = await booking.cancel_rest_of_series(
        db, therapist_id=bookable.id, from_appointment_id=ids[1], now=clock.now
    )

    assert cancelled == ids[2:]
    assert [a.status for a in await appointments(db, ids)] == ["scheduled"] + ["cancelled"] * 3
