"""Public booking: a free slot becomes a client, an appointment, two links, an audit event and
its e-mails in one transaction -- and anything else changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import accounts, booking
from server.models import (
    Appointment,
    AuditEvent,
    Client,
    JoinToken,
    ManageToken,
    OutboxMessage,
    SessionType,
)
from server.tokens import token_hash
from tests.conftest import FakeClock
from tests.support.arrange import Bookable, local, make_bookable_therapist

Sessions = async_sessionmaker[AsyncSession]
ZONE = "America/New_York"
GRACE = dt.timedelta(minutes=30)
#: Wednesday 10:00 in New York, two days after the clock's Monday 09:00 UTC.
WEDNESDAY_10 = local(ZONE, 2026, 3, 4, 10)
TABLES = (Client, Appointment, JoinToken, ManageToken, AuditEvent, OutboxMessage)


def details(**overrides: str | None) -> booking.ClientDetails:
    values: dict[str, str | None] = {
        "name": "Robin Quill",
        "email": "Robin.Quill@Example.net",
        "phone": "+1 (555) 010-2030",
        "note": "Trouble sleeping since the move.",
        "timezone": "Europe/Berlin",
    }
    values.update(overrides)
    return booking.ClientDetails(**values)  # type: ignore[arg-type]


async def book(
    db: Sessions,
    bookable: Bookable,
    clock: FakeClock,
    start: dt.datetime = WEDNESDAY_10,
    *,
    kind: SessionType | None = None,
    client: booking.ClientDetails | None = None,
) -> booking.Booked:
    return await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=(kind or bookable.individual).id,
        start=start,
        client=client or details(),
        now=clock.now,
        join_grace=GRACE,
    )


async def row_counts(db: Sessions) -> dict[str, int]:
    async with db() as session:
        return {
            table.__tablename__: int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
            for table in TABLES
        }


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db)


async def test_a_new_therapist_offers_a_free_consultation_and_a_50_minute_session(
    db: Sessions,
) -> None:
    async with db() as session, session.begin():
        therapist = await accounts.create_therapist(
            session,
            email="noor@example.org",
            name="Noor Haddad",
            timezone="Asia/Amman",
            password="a long enough passphrase",
        )
    async with db() as session:
        kinds = await booking.session_types(session, therapist.id, public_only=True)

    assert [
        (k.name, k.duration_minutes, k.buffer_minutes, k.price_text, k.is_public) for k in kinds
    ] == [
        ("Free consultation", 15, 0, "Free", True),
        ("Individual session", 50, 10, "", True),
    ]
    assert {(k.min_notice_minutes, k.horizon_days) for k in kinds} == {(24 * 60, 60)}


async def test_booking_stores_client_appointment_links_audit_event_and_three_emails(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)

    start = WEDNESDAY_10.astimezone(dt.UTC)
    end = start + dt.timedelta(minutes=50)
    assert (booked.start, booked.end) == (start, end)
    assert await row_counts(db) == {
        "clients": 1,
        "appointments": 1,
        "join_tokens": 1,
        "manage_tokens": 1,
        "audit_events": 1,
        "outbox": 3,
    }
    async with db() as session:
        client = (await session.scalars(select(Client))).one()
        appointment = (await session.scalars(select(Appointment))).one()
        join = (await session.scalars(select(JoinToken))).one()
        manage = (await session.scalars(select(ManageToken))).one()
        event = (await session.scalars(select(AuditEvent))).one()
        mails = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.due_at)))
    assert (client.name, client.email, client.phone, client.timezone) == (
        "Robin Quill",
        "robin.quill@example.net",
        "+1 (555) 010-2030",
        "Europe/Berlin",
    )
    assert appointment.id == booked.appointment_id
    assert (appointment.client_id, appointment.therapist_id) == (client.id, bookable.id)
    assert (appointment.starts_at, appointment.ends_at) == (start, end)
    assert appointment.session_type_id == bookable.individual.id
    assert (appointment.buffer_minutes, appointment.sequence, appointment.status) == (
        10,
        0,
        "scheduled",
    )
    assert appointment.intake_note == "Trouble sleeping since the move."
    assert join.token_hash == token_hash(booked.join_token)
    assert join.expires_at == end + GRACE
    assert manage.token_hash == token_hash(booked.manage_token)
    assert manage.expires_at == start
    assert (event.action, event.actor_type, event.actor_id, event.record_id) == (
        "appointment_booked",
        "client",
        str(client.id),
        str(appointment.id),
    )
    assert [(m.kind, m.due_at) for m in mails] == [
        ("confirmation", clock.now),
        ("reminder", start - dt.timedelta(hours=24)),
        ("reminder", start - dt.timedelta(hours=1)),
    ]


async def test_a_booking_sooner_than_a_day_ahead_queues_only_the_reminders_still_ahead(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    async with db() as session, session.begin():
        await session.execute(
            update(SessionType)
            .where(SessionType.id == bookable.consultation.id)
            .values(min_notice_minutes=60)
        )
    soon = local(ZONE, 2026, 3, 2, 9)  # 14:00 UTC: five hours after the clock

    booked = await book(db, bookable, clock, soon, kind=bookable.consultation)

    async with db() as session:
        kinds = list(await session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))
    assert booked.start == soon.astimezone(dt.UTC)
    assert kinds == ["confirmation", "reminder"]


async def test_a_returning_client_is_found_by_email_whatever_its_case(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    first = await book(db, bookable, clock)
    second = await book(
        db,
        bookable,
        clock,
        WEDNESDAY_10 + dt.timedelta(hours=2),
        client=details(name="Someone Else", email="ROBIN.QUILL@example.net"),
    )

    async with db() as session:
        clients = list(await session.scalars(select(Client)))
        owners = set(await session.scalars(select(Appointment.client_id)))
    assert first.appointment_id != second.appointment_id
    assert [c.name for c in clients] == ["Robin Quill"]  # a public form renames nobody
    assert owners == {clients[0].id}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "   "),
        ("name", "x" * 201),
        ("name", "Robin\x00Quill"),
        ("email", "robin at example.net"),
        ("email", "robin@example"),
        ("phone", "call me maybe"),
        ("phone", "1" * 41),
        ("note", "x" * 2001),
        ("note", "half a surrogate \ud800"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../../etc/passwd"),
    ],
)
def test_invalid_client_details_raise_a_booking_error_naming_the_field(
    field: str, value: str
) -> None:
    with pytest.raises(booking.BookingError) as caught:
        details(**{field: value})

    assert caught.value.field == field
    assert [e.field for e in caught.value.errors] == [field]


def test_client_details_report_every_bad_field_at_once() -> None:
    with pytest.raises(booking.BookingError) as caught:
        details(name="", email="nope", timezone="Nowhere")

    assert [e.field for e in caught.value.errors] == ["name", "email", "timezone"]


def test_client_details_are_normalised_and_empty_optional_fields_become_none() -> None:
    client = details(name="  Robin   Quill ", email=" ROBIN@Example.NET ", phone=" ", note="\n")

    assert (client.name, client.email, client.phone, client.note) == (
        "Robin Quill",
        "robin@example.net",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (local(ZONE, 2026, 3, 2, 16), "at least 24 hours"),  # seven hours ahead
        (local(ZONE, 2026, 5, 5, 10), "within 60 days"),  # 64 days ahead
        (local(ZONE, 2026, 3, 4, 7), "not one of the times offered"),  # before hours
        (local(ZONE, 2026, 3, 7, 10), "not one of the times offered"),  # a Saturday
        (local(ZONE, 2026, 3, 4, 10, 5), "not one of the times offered"),  # off the grid
        (local(ZONE, 2026, 3, 4, 16, 30), "not one of the times offered"),  # runs past 17:00
    ],
    ids=["min-notice", "horizon", "before-hours", "day-off", "off-grid", "past-closing"],
)
async def test_a_start_that_is_not_offered_is_refused_and_nothing_is_written(
    db: Sessions, bookable: Bookable, clock: FakeClock, start: dt.datetime, message: str
) -> None:
    with pytest.raises(booking.BookingError) as caught:
        await book(db, bookable, clock, start)

    assert caught.value.field == "start"
    assert message in caught.value.message
    assert set((await row_counts(db)).values()) == {0}


async def test_a_naive_start_is_refused_as_bad_input(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    with pytest.raises(booking.BookingError) as caught:
        await book(db, bookable, clock, WEDNESDAY_10.replace(tzinfo=None))

    assert caught.value.field == "start"


async def test_a_private_or_another_therapists_session_type_cannot_be_booked(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    other = await make_bookable_therapist(db, slug="kim-lee", email="kim@example.org")
    async with db() as session, session.begin():
        await session.execute(
            update(SessionType)
            .where(SessionType.id == bookable.consultation.id)
            .values(is_public=False)
        )

    for kind in (bookable.consultation, other.individual):
        with pytest.raises(booking.BookingError) as caught:
            await book(db, bookable, clock, kind=kind)
        assert caught.value.field == "session_type"
    assert set((await row_counts(db)).values()) == {0}


async def test_a_taken_slot_raises_slot_taken_with_the_three_nearest_free_starts(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    await book(db, bookable, clock)

    with pytest.raises(booking.SlotTaken) as caught:
        await book(db, bookable, clock, client=details(email="other@example.net"))

    # 10:00-10:50 plus a 10-minute buffer: 09:00 is the latest start that ends by 10:00.
    assert [s.start.astimezone(WEDNESDAY_10.tzinfo).time() for s in caught.value.nearest] == [
        dt.time(9),
        dt.time(11),
        dt.time(11, 15),
    ]
    assert (await row_counts(db))["appointments"] == 1
    assert (await row_counts(db))["clients"] == 1


@pytest.mark.parametrize(
    ("taken", "taken_kind", "wanted", "wanted_kind"),
    [
        ((10, 0), "individual", (10, 45), "consultation"),  # starts in the session's buffer
        ((10, 0), "individual", (10, 30), "consultation"),  # overlaps the session itself
        ((10, 45), "consultation", (10, 0), "individual"),  # its buffer reaches the next one
    ],
    ids=["into-buffer", "overlap", "own-buffer"],
)
async def test_overlaps_with_a_session_or_its_buffer_are_taken(
    db: Sessions,
    bookable: Bookable,
    clock: FakeClock,
    taken: tuple[int, int],
    taken_kind: str,
    wanted: tuple[int, int],
    wanted_kind: str,
) -> None:
    # 45 minutes plus a 10-minute buffer: the buffer ends off the 15-minute grid.
    async with db() as session, session.begin():
        await session.execute(
            update(SessionType)
            .where(SessionType.id == bookable.individual.id)
            .values(duration_minutes=45)
        )
    await book(
        db, bookable, clock, local(ZONE, 2026, 3, 4, *taken), kind=getattr(bookable, taken_kind)
    )

    with pytest.raises(booking.SlotTaken):
        await book(
            db,
            bookable,
            clock,
            local(ZONE, 2026, 3, 4, *wanted),
            kind=getattr(bookable, wanted_kind),
            client=details(email="other@example.net"),
        )


async def test_slots_leave_out_live_appointments_and_their_buffers_but_not_cancelled_ones(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    kept = await book(db, bookable, clock)
    dropped = await book(db, bookable, clock, WEDNESDAY_10 + dt.timedelta(hours=3))
    await booking.cancel_by_client(db, dropped.manage_token, clock.now)

    async with db() as session:
        slots = await booking.slots_for(
            session, bookable.therapist, bookable.consultation, clock.now
        )

    wednesday = [s.start for s in slots if s.start.astimezone(WEDNESDAY_10.tzinfo).day == 4]
    assert kept.start not in wednesday
    assert kept.start + dt.timedelta(minutes=45) not in wednesday  # the buffer
    assert kept.start + dt.timedelta(hours=1) in wednesday
    assert WEDNESDAY_10.astimezone(dt.UTC) + dt.timedelta(hours=3) in wednesday


async def test_a_slug_finds_its_therapist_in_any_case_and_nothing_else_finds_one(
    db: Sessions, bookable: Bookable
) -> None:
    async with db() as session:
        assert await booking.public_therapist(session, "sam-rivera") is not None
        assert await booking.public_therapist(session, "Sam-Rivera") is not None
        assert await booking.public_therapist(session, "sam-rivera\x00") is None
        assert await booking.public_therapist(session, "nobody") is None
        assert await booking.public_therapist(session, "x" * 1000) is None
