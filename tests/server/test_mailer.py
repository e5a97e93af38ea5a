"""What the e-mail worker sends, as a real SMTP server (aiosmtpd, on a free port) receives it.

Appointments are arranged in the database and their messages queued through ``server.outbox``
as the booking service does (or through the booking service itself); a ``Mailer`` driven by
a ``FakeClock`` sends them round by round (``run_once``), so reminder times can be passed
without waiting.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from unittest.mock import ANY

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server import booking, outbox
from server.app import create_app
from server.mail_render import message_id
from server.mailer import Mailer
from server.models import Appointment, JoinToken, ManageToken, OutboxStatus, Therapist
from server.settings import Settings
from server.tokens import token_hash
from tests.conftest import AiohttpClient, FakeClock
from tests.support.arrange import local, make_bookable_therapist
from tests.support.mail import (
    CLIENT_EMAIL,
    CLIENT_NAME,
    CLIENT_ZONE,
    INTAKE_NOTE,
    JOIN_LINK,
    MANAGE_LINK,
    Sessions,
    SmtpSink,
    book,
    cancel,
    move,
    outbox_rows,
)

# --- what a booking's confirmation carries ---------------------------------------------------


async def test_a_booking_confirmation_reaches_the_smtp_server_with_an_invite_in_the_clients_zone(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=3, hours=5)
    appointment_id = await book(db, therapist, starts_at, clock.now)

    assert await Mailer(mail_settings, engine, clock=clock).run_once() == 1

    (mail,) = smtp.received
    assert mail.rcpt_tos == [CLIENT_EMAIL]
    assert mail.mail_from == "no-reply@therapy.example.org"
    assert str(mail.message["To"]) == CLIENT_EMAIL
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert mail.message_id == message_id(row.idempotency_key, mail_settings)
    assert row.status == OutboxStatus.SENT.value and row.sent_at == clock.now

    event = mail.event()
    assert mail.invite()["METHOD"] == "REQUEST"
    assert event["DTSTART"].params["TZID"] == CLIENT_ZONE
    assert event.decoded("DTSTART").astimezone(dt.UTC) == starts_at
    assert event.decoded("DTEND").astimezone(dt.UTC) == starts_at + dt.timedelta(minutes=50)
    assert str(event["UID"]) == f"appointment-{appointment_id}@127.0.0.1"
    assert mail.sequence() == 0
    assert therapist.display_name in str(event["SUMMARY"])

    body = mail.body
    assert therapist.display_name in body
    assert "Thursday, March 5, 2026" in body and "3:00" in body and CLIENT_ZONE in body
    assert "emergency" in body
    for secret in (INTAKE_NOTE, "Panic", CLIENT_NAME):
        assert secret not in mail.raw.decode("utf-8", "replace"), secret
    assert CLIENT_NAME not in str(mail.message["Subject"])

    manage = MANAGE_LINK.search(body)
    assert manage is not None
    async with db() as session:
        link = await session.scalar(
            select(ManageToken).where(ManageToken.token_hash == token_hash(manage[1]))
        )
    assert link is not None and link.expires_at == starts_at

    join = JOIN_LINK.search(body)
    assert join is not None
    assert JOIN_LINK.search(str(event["LOCATION"])) is not None


async def test_the_join_link_in_a_confirmation_opens_the_session(
    aiohttp_client: AiohttpClient,
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=1)
    await book(db, therapist, starts_at, clock.now)
    await Mailer(mail_settings, engine, clock=clock).run_once()
    join = JOIN_LINK.search(smtp.received[0].body)
    assert join is not None
    async with db() as session:
        token = await session.scalar(
            select(JoinToken).where(JoinToken.token_hash == token_hash(join[1]))
        )
    assert token is not None
    assert token.expires_at == starts_at + dt.timedelta(minutes=50 + 30)

    clock.now = starts_at - dt.timedelta(minutes=5)
    web = await aiohttp_client(create_app(mail_settings, clock=clock))
    response = await web.get(f"/join/{join[1]}", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/session"


async def test_without_a_client_zone_the_invite_is_in_the_therapists_zone(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=2)
    await book(db, therapist, starts_at, clock.now, client_zone=None)

    await Mailer(mail_settings, engine, clock=clock).run_once()

    event = smtp.received[0].event()
    assert event["DTSTART"].params["TZID"] == therapist.timezone == "America/New_York"
    assert event.decoded("DTSTART").astimezone(dt.UTC) == starts_at
    assert "America/New_York" in smtp.received[0].body


# --- cancellations and moves -----------------------------------------------------------------


async def test_a_cancellation_sends_cancel_for_the_same_event_and_no_reminder_ever_follows(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=3)
    appointment_id = await book(db, therapist, starts_at, clock.now)
    mailer = Mailer(mail_settings, engine, clock=clock)
    await mailer.run_once()
    clock.advance(hours=1)
    await cancel(db, appointment_id, clock.now, announce=True)

    await mailer.run_once()
    for moment in (
        starts_at - dt.timedelta(hours=24),
        starts_at - dt.timedelta(hours=1),
        starts_at,
    ):
        clock.now = moment + dt.timedelta(minutes=1)
        await mailer.run_once()

    assert [m.message["Subject"] for m in smtp.received][1].startswith("Your appointment on")
    confirmation, cancellation = smtp.received
    assert cancellation.invite()["METHOD"] == "CANCEL"
    assert str(cancellation.event()["STATUS"]) == "CANCELLED"
    assert cancellation.event()["UID"] == confirmation.event()["UID"]
    assert cancellation.sequence() > confirmation.sequence()
    assert JOIN_LINK.search(cancellation.body) is None
    assert "cancelled" in cancellation.body


async def test_a_reminder_still_queued_for_a_cancelled_appointment_is_withdrawn_not_sent(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=3)
    appointment_id = await book(db, therapist, starts_at, clock.now)
    await cancel(db, appointment_id, clock.now, announce=False)  # reminders left pending
    mailer = Mailer(mail_settings, engine, clock=clock)

    clock.now = starts_at - dt.timedelta(minutes=30)
    await mailer.run_once()

    assert smtp.received == []
    assert {r.status for r in await outbox_rows(db, appointment_id)} == {"withdrawn"}


async def test_a_reminder_for_a_start_that_has_moved_is_withdrawn_and_the_new_one_is_sent(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=3)
    appointment_id = await book(db, therapist, starts_at, clock.now)
    mailer = Mailer(mail_settings, engine, clock=clock)
    await mailer.run_once()  # the confirmation
    later = starts_at + dt.timedelta(hours=6)
    await move(db, appointment_id, later, clock.now, announce=False)  # old reminders left
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        await outbox.schedule_reminders(session, record, clock.now)

    clock.now = later - dt.timedelta(minutes=59)
    await mailer.run_once()

    subjects = [str(m.message["Subject"]) for m in smtp.received]
    assert len(subjects) == 3, subjects  # confirmation, and the new 24 h and 1 h reminders
    reminder = smtp.received[-1]
    assert reminder.message.get_content_type() == "text/plain"  # no invite attached
    assert JOIN_LINK.search(reminder.body) is not None
    assert "4:00" in reminder.body  # 15:00 UTC in Berlin: the new time
    statuses = Counter((r.kind, r.status) for r in await outbox_rows(db, appointment_id))
    assert statuses == {
        ("confirmation", "sent"): 1,
        ("reminder", "withdrawn"): 2,
        ("reminder", "sent"): 2,
    }


async def test_a_move_sends_an_updated_invite_and_a_stale_confirmation_is_not_sent(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    starts_at = clock.now + dt.timedelta(days=3)
    appointment_id = await book(db, therapist, starts_at, clock.now)
    later = starts_at + dt.timedelta(days=1)
    await move(db, appointment_id, later, clock.now, announce=True)  # before anything was sent

    await Mailer(mail_settings, engine, clock=clock).run_once()

    (moved,) = smtp.received
    assert "moved" in str(moved.message["Subject"])
    assert moved.invite()["METHOD"] == "REQUEST"
    assert moved.sequence() == 1
    assert moved.event().decoded("DTSTART").astimezone(dt.UTC) == later
    assert MANAGE_LINK.search(moved.body) is not None
    announcements = {r.kind: r.status for r in await outbox_rows(db, appointment_id)}
    assert announcements == {"confirmation": "withdrawn", "rescheduled": "sent", "reminder": ANY}


# --- through the booking service -------------------------------------------------------------


async def test_booked_then_cancelled_through_the_booking_service_the_client_gets_both_invites(
    db: Sessions, engine: AsyncEngine, mail_settings: Settings, smtp: SmtpSink, clock: FakeClock
) -> None:
    bookable = await make_bookable_therapist(db)
    starts_at = local("America/New_York", 2026, 3, 4, 10)  # Wednesday; the clock says Monday
    await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=bookable.individual.id,
        start=starts_at,
        client=booking.ClientDetails(
            name=CLIENT_NAME, email=CLIENT_EMAIL, phone=None, note=INTAKE_NOTE, timezone=CLIENT_ZONE
        ),
        now=clock.now,
        join_grace=dt.timedelta(minutes=mail_settings.join_grace_minutes),
    )
    mailer = Mailer(mail_settings, engine, clock=clock)

    await mailer.run_once()
    (confirmation,) = smtp.received
    assert confirmation.event()["DTSTART"].params["TZID"] == CLIENT_ZONE
    assert confirmation.event().decoded("DTSTART").astimezone(dt.UTC) == starts_at
    assert INTAKE_NOTE not in confirmation.raw.decode("utf-8", "replace")
    manage = MANAGE_LINK.search(confirmation.body)
    assert manage is not None

    clock.advance(hours=2)
    await booking.cancel_by_client(db, manage[1], clock.now)  # the link from the e-mail works
    await mailer.run_once()
    for lead in (dt.timedelta(hours=24), dt.timedelta(hours=1), dt.timedelta(0)):
        clock.now = starts_at - lead + dt.timedelta(minutes=1)
        await mailer.run_once()

    assert len(smtp.received) == 2
    cancellation = smtp.received[1]
    assert cancellation.invite()["METHOD"] == "CANCEL"
    assert cancellation.event()["UID"] == confirmation.event()["UID"]
    assert cancellation.sequence() > confirmation.sequence()
