"""The client's manage link: cancel or move the appointment until the therapist's cutoff; a
moved appointment keeps its id and gets a new link; an old link can do nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import booking, join
from server.models import Appointment, AuditEvent, JoinToken, ManageToken, OutboxMessage
from server.tokens import token_hash
from tests.conftest import FakeClock
from tests.support.arrange import Bookable, local, make_bookable_therapist

Sessions = async_sessionmaker[AsyncSession]
ZONE = "America/New_York"
GRACE = dt.timedelta(minutes=30)
WEDNESDAY_10 = local(ZONE, 2026, 3, 4, 10)
THURSDAY_14 = local(ZONE, 2026, 3, 5, 14)
CONTACT = "Please call the practice on +1 555 0100."


async def book(
    db: Sessions, bookable: Bookable, clock: FakeClock, start: dt.datetime = WEDNESDAY_10
) -> booking.Booked:
    return await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=bookable.individual.id,
        start=start,
        client=booking.ClientDetails(
            "Robin Quill", f"robin.{start.day}.{start.hour}@example.net", None, None, "UTC"
        ),
        now=clock.now,
        join_grace=GRACE,
    )


async def reschedule(
    db: Sessions, token: str, clock: FakeClock, start: dt.datetime = THURSDAY_14
) -> booking.Rescheduled:
    return await booking.reschedule_by_client(db, token, start, clock.now, join_grace=GRACE)


async def stored(db: Sessions, appointment_id: int) -> Appointment:
    async with db() as session:
        appointment = await session.get(Appointment, appointment_id)
        assert appointment is not None
        return appointment


async def mails(db: Sessions, appointment_id: int) -> list[tuple[str, str, dt.datetime]]:
    async with db() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.appointment_id == appointment_id)
            .order_by(OutboxMessage.id)
        )
        return [(row.kind, row.status, row.due_at) for row in rows]


async def link_state(db: Sessions, token: str, now: dt.datetime) -> booking.LinkState | None:
    async with db() as session:
        link = await booking.appointment_for_manage_token(session, token, now)
    return None if link is None else link.state


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db, contact_text=CONTACT)


async def test_cancelling_before_the_cutoff_cancels_and_withdraws_pending_mail_in_one_go(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)
    clock.advance(hours=1)

    cancelled = await booking.cancel_by_client(db, booked.manage_token, clock.now)

    appointment = await stored(db, booked.appointment_id)
    assert cancelled == booked.appointment_id
    assert (appointment.status, appointment.sequence) == ("cancelled", 1)
    assert [(kind, status) for kind, status, _ in await mails(db, booked.appointment_id)] == [
        ("confirmation", "withdrawn"),
        ("reminder", "withdrawn"),
        ("reminder", "withdrawn"),
        ("cancellation", "pending"),
    ]
    async with db() as session:
        actions = list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["appointment_booked", "appointment_cancelled"]


async def test_after_the_cutoff_the_link_is_too_late_and_says_whom_to_contact(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)
    clock.now = booked.start - dt.timedelta(hours=23)

    with pytest.raises(booking.TooLate) as cancelling:
        await booking.cancel_by_client(db, booked.manage_token, clock.now)
    with pytest.raises(booking.TooLate) as moving:
        await reschedule(db, booked.manage_token, clock)

    assert cancelling.value.contact_text == moving.value.contact_text == CONTACT
    assert cancelling.value.cutoff_at == booked.start - dt.timedelta(hours=24)
    assert await link_state(db, booked.manage_token, clock.now) is booking.LinkState.TOO_LATE
    appointment = await stored(db, booked.appointment_id)
    assert (appointment.status, appointment.starts_at, appointment.sequence) == (
        "scheduled",
        booked.start,
        0,
    )


async def test_the_cutoff_is_the_therapists_own(db: Sessions, clock: FakeClock) -> None:
    bookable = await make_bookable_therapist(db, reschedule_cutoff_hours=2)
    booked = await book(db, bookable, clock)
    clock.now = booked.start - dt.timedelta(hours=3)

    await booking.cancel_by_client(db, booked.manage_token, clock.now)

    assert (await stored(db, booked.appointment_id)).status == "cancelled"


async def test_a_link_for_a_cancelled_appointment_can_do_nothing(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)
    await booking.cancel_by_client(db, booked.manage_token, clock.now)

    with pytest.raises(booking.NotChangeable):
        await booking.cancel_by_client(db, booked.manage_token, clock.now)
    with pytest.raises(booking.NotChangeable):
        await reschedule(db, booked.manage_token, clock)

    assert await link_state(db, booked.manage_token, clock.now) is booking.LinkState.STALE
    assert (await stored(db, booked.appointment_id)).sequence == 1


async def test_an_unknown_link_is_not_found(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    for token in ("no-such-token", "", "x" * 500):
        with pytest.raises(booking.NotFound):
            await booking.cancel_by_client(db, token, clock.now)
        with pytest.raises(booking.NotFound):
            await reschedule(db, token, clock)
        assert await link_state(db, token, clock.now) is None


async def test_a_reschedule_moves_the_same_appointment_and_requeues_its_mail(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)
    clock.advance(minutes=5)

    moved = await reschedule(db, booked.manage_token, clock)

    new_start = THURSDAY_14.astimezone(dt.UTC)
    appointment = await stored(db, booked.appointment_id)
    assert moved.appointment_id == booked.appointment_id
    assert (moved.start, moved.end) == (new_start, new_start + dt.timedelta(minutes=50))
    assert (appointment.starts_at, appointment.ends_at) == (moved.start, moved.end)
    assert (appointment.status, appointment.sequence) == ("scheduled", 1)
    assert await mails(db, booked.appointment_id) == [
        ("confirmation", "pending", clock.now - dt.timedelta(minutes=5)),
        ("reminder", "withdrawn", booked.start - dt.timedelta(hours=24)),
        ("reminder", "withdrawn", booked.start - dt.timedelta(hours=1)),
        ("rescheduled", "pending", clock.now),
        ("reminder", "pending", new_start - dt.timedelta(hours=24)),
        ("reminder", "pending", new_start - dt.timedelta(hours=1)),
    ]


async def test_a_reschedule_issues_a_new_manage_link_and_the_old_one_can_do_nothing(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)

    moved = await reschedule(db, booked.manage_token, clock)

    assert moved.manage_token != booked.manage_token
    assert await link_state(db, booked.manage_token, clock.now) is booking.LinkState.STALE
    assert await link_state(db, moved.manage_token, clock.now) is booking.LinkState.CHANGEABLE
    with pytest.raises(booking.NotChangeable):
        await booking.cancel_by_client(db, booked.manage_token, clock.now)
    with pytest.raises(booking.NotChangeable):
        await reschedule(db, booked.manage_token, clock, WEDNESDAY_10)
    async with db() as session:
        new = await session.scalar(
            select(ManageToken).where(ManageToken.token_hash == token_hash(moved.manage_token))
        )
    assert new is not None and new.expires_at == moved.start
    await booking.cancel_by_client(db, moved.manage_token, clock.now)
    assert (await stored(db, booked.appointment_id)).status == "cancelled"


async def test_a_reschedule_revokes_the_old_join_link_by_default(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)

    moved = await reschedule(db, booked.manage_token, clock)

    async with db() as session:
        token = await session.scalar(select(JoinToken))
        found = await join.appointment_for_token(session, booked.join_token, moved.start)
    assert not moved.join_link_kept
    assert token is not None and token.revoked_at == clock.now
    assert found is None


async def test_with_the_keep_policy_the_old_join_link_works_for_the_new_time(
    db: Sessions, clock: FakeClock
) -> None:
    bookable = await make_bookable_therapist(db, keep_join_link_on_reschedule=True)
    booked = await book(db, bookable, clock)

    moved = await reschedule(db, booked.manage_token, clock)

    async with db() as session:
        token = await session.scalar(select(JoinToken))
        found = await join.appointment_for_token(
            session, booked.join_token, moved.end + dt.timedelta(minutes=10)
        )
    assert moved.join_link_kept
    assert token is not None and token.revoked_at is None
    assert token.expires_at == moved.end + GRACE
    assert found is not None and found.id == booked.appointment_id


async def test_a_reschedule_to_a_taken_time_is_refused_and_changes_nothing(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)
    other = await book(db, bookable, clock, THURSDAY_14)

    with pytest.raises(booking.SlotTaken) as caught:
        await reschedule(db, booked.manage_token, clock, THURSDAY_14 + dt.timedelta(minutes=30))

    assert caught.value.nearest
    assert other.start not in [slot.start for slot in caught.value.nearest]
    appointment = await stored(db, booked.appointment_id)
    assert (appointment.starts_at, appointment.sequence) == (booked.start, 0)
    assert await link_state(db, booked.manage_token, clock.now) is booking.LinkState.CHANGEABLE


async def test_a_reschedule_may_overlap_the_appointments_own_old_time(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)

    moved = await reschedule(
        db, booked.manage_token, clock, WEDNESDAY_10 + dt.timedelta(minutes=15)
    )

    assert moved.start == booked.start + dt.timedelta(minutes=15)


@pytest.mark.parametrize(
    "start",
    [WEDNESDAY_10, local(ZONE, 2026, 3, 7, 10), local(ZONE, 2026, 3, 2, 12)],
    ids=["same-time", "day-off", "too-soon"],
)
async def test_a_reschedule_to_a_time_not_offered_is_a_booking_error_on_start(
    db: Sessions, bookable: Bookable, clock: FakeClock, start: dt.datetime
) -> None:
    booked = await book(db, bookable, clock)

    with pytest.raises(booking.BookingError) as caught:
        await reschedule(db, booked.manage_token, clock, start)

    assert caught.value.field == "start"
    assert (await stored(db, booked.appointment_id)).sequence == 0


async def test_the_slots_to_move_to_count_the_appointments_own_time_as_free(
    db: Sessions, bookable: Bookable, clock: FakeClock
) -> None:
    booked = await book(db, bookable, clock)

    async with db() as session:
        link = await booking.appointment_for_manage_token(session, booked.manage_token, clock.now)
        assert link is not None
        slots = await booking.slots_for_appointment(session, link.appointment, clock.now)

    assert booked.start in [slot.start for slot in slots]
    assert link.therapist.id == bookable.id
    assert link.session_type is not None and link.session_type.id == bookable.individual.id
