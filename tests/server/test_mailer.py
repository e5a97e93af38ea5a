"""The e-mail worker against a real SMTP server (aiosmtpd, on a free port) and a real database.

Appointments are arranged in the database and their messages queued through ``server.outbox``
as the booking service does; a ``Mailer`` driven by a ``FakeClock`` sends them round by round
(``run_once``), so reminder times can be passed without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import stat
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from unittest.mock import ANY

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import outbox
from server.app import create_app
from server.db import create_engine
from server.mail_render import message_id
from server.mail_transport import SmtpTransport, Transport
from server.mailer import LEASE_EXPIRED, UNCONFIRMED_SEND, Mailer
from server.models import (
    Appointment,
    AppointmentStatus,
    Client,
    JoinToken,
    ManageToken,
    OutboxMessage,
    OutboxStatus,
    Therapist,
)
from server.settings import Settings
from server.tokens import token_hash
from tests.conftest import AiohttpClient, FakeClock, free_port, make_settings
from tests.support.arrange import make_appointment

CLIENT_NAME = "Alex Morgan"
CLIENT_EMAIL = "alex.morgan@example.com"
CLIENT_ZONE = "Europe/Berlin"
INTAKE_NOTE = "Panic attacks since the divorce; sleeping badly"
PUBLIC_URL = "http://127.0.0.1:8080"
JOIN_LINK = re.compile(re.escape(PUBLIC_URL) + r"/join/(\S+)")
MANAGE_LINK = re.compile(re.escape(PUBLIC_URL) + r"/manage/(\S+)")
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r?$", re.MULTILINE | re.IGNORECASE)

Sessions = async_sessionmaker[AsyncSession]


# --- a real SMTP server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One accepted message, kept as received; parsed when a test looks into it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        found = MESSAGE_ID.search(self.raw)
        assert found is not None, "no Message-ID"
        return found[1].decode()

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def invite(self) -> Calendar:
        (attachment,) = [
            p for p in self.message.iter_attachments() if p.get_content_type() == "text/calendar"
        ]
        assert attachment.get_param("method") in {"REQUEST", "CANCEL"}
        return Calendar.from_ical(attachment.get_payload(decode=True))

    def event(self) -> Event:
        (event,) = self.invite().walk("VEVENT")
        assert isinstance(event, Event)
        return event


class SmtpSink:
    """An SMTP server that keeps every message it accepts, and refuses some on request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Received] = []
        self.refuse_next = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 Try again later"
            # Kept raw: parsing here would hold up the test's other thread at each message.
            raw = bytes(envelope.content or b"")  # type: ignore[arg-type]
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw))
        return "250 2.0.0 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def message_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(r.message_id for r in self.received)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    yield sink
    sink.stop()


def smtp_settings(url: str, data_dir: Path, port: int, **env: str) -> Settings:
    return make_settings(
        url,
        data_dir,
        ALCOVE_SMTP_HOST="127.0.0.1",
        ALCOVE_SMTP_PORT=str(port),
        ALCOVE_SMTP_TLS="none",
        ALCOVE_MAIL_FROM="Practice Rivera <no-reply@therapy.example.org>",
        ALCOVE_PUBLIC_URL=PUBLIC_URL,
        **env,
    )


@pytest.fixture
def mail_settings(migrated_url: str, tmp_path: Path, smtp: SmtpSink) -> Settings:
    return smtp_settings(migrated_url, tmp_path / "var", smtp.port)


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


# --- arranging appointments ------------------------------------------------------------------


async def book(
    db: Sessions,
    therapist: Therapist,
    starts_at: dt.datetime,
    now: dt.datetime,
    *,
    client_zone: str | None = CLIENT_ZONE,
) -> int:
    """An appointment with an intake note, queued for mailing as the booking service does."""
    appointment, _token = await make_appointment(
        db, therapist.id, starts_at=starts_at, client_name=CLIENT_NAME, client_email=CLIENT_EMAIL
    )
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment.id)
        client = await session.get(Client, appointment.client_id)
        assert record is not None and client is not None
        client.timezone = client_zone
        record.intake_note = INTAKE_NOTE
        await outbox.on_booked(session, record, now)
    return appointment.id


async def cancel(db: Sessions, appointment_id: int, now: dt.datetime, *, announce: bool) -> None:
    """Cancel as the booking service does (``announce``), or behind the outbox's back."""
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        record.transition_to(AppointmentStatus.CANCELLED)
        record.sequence += 1
        if announce:
            await outbox.on_cancelled(session, record, now)


async def move(
    db: Sessions, appointment_id: int, to: dt.datetime, now: dt.datetime, *, announce: bool
) -> None:
    async with db() as session, session.begin():
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        record.starts_at, record.ends_at = to, to + (record.ends_at - record.starts_at)
        record.sequence += 1
        if announce:
            await outbox.on_rescheduled(session, record, now)


async def outbox_rows(db: Sessions, appointment_id: int | None = None) -> list[OutboxMessage]:
    async with db() as session:
        statement = select(OutboxMessage).order_by(OutboxMessage.id)
        if appointment_id is not None:
            statement = statement.where(OutboxMessage.appointment_id == appointment_id)
        return list(await session.scalars(statement))


async def appointment(db: Sessions, appointment_id: int) -> Appointment:
    async with db() as session:
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        return record


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
    assert int(event["SEQUENCE"]) == 0
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
    assert int(cancellation.event()["SEQUENCE"]) > int(confirmation.event()["SEQUENCE"])
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
    assert int(moved.event()["SEQUENCE"]) == 1
    assert moved.event().decoded("DTSTART").astimezone(dt.UTC) == later
    assert MANAGE_LINK.search(moved.body) is not None
    announcements = {r.kind: r.status for r in await outbox_rows(db, appointment_id)}
    assert announcements == {"confirmation": "withdrawn", "rescheduled": "sent", "reminder": ANY}


# --- failures, retries and leases ------------------------------------------------------------


async def test_an_smtp_failure_is_retried_with_backoff_and_sent_once_the_server_is_back(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    sink = SmtpSink(free_port())  # not started yet: the server is down
    settings = smtp_settings(migrated_url, tmp_path / "var", sink.port)
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)
    mailer = Mailer(settings, engine, clock=clock)
    booked_at = clock.now

    await mailer.run_once()
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.attempts, row.claimed_by, row.sent_at) == ("pending", 1, None, None)
    assert row.last_error is not None and "@" not in row.last_error
    first_wait = row.next_attempt_at - booked_at
    assert dt.timedelta(seconds=24) <= first_wait <= dt.timedelta(seconds=36)

    sink.start()
    try:
        sink.refuse_next = 1  # back, but not ready: 451
        assert await mailer.run_once() == 0  # not due again yet
        clock.now = row.next_attempt_at
        assert await mailer.run_once() == 1
        (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
        assert (row.status, row.attempts, row.last_error) == ("pending", 2, "SMTPDataError")
        second_wait = row.next_attempt_at - clock.now
        assert dt.timedelta(seconds=48) <= second_wait <= dt.timedelta(seconds=72)
        assert sink.count() == 0

        clock.now = row.next_attempt_at
        await mailer.run_once()
        clock.advance(hours=2)
        await mailer.run_once()
        await Mailer(settings, engine, clock=clock).run_once()
    finally:
        sink.stop()

    assert sink.count() == 1
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.attempts) == ("sent", 2)


async def test_a_message_that_keeps_failing_is_marked_failed_with_a_warning_naming_no_address(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = smtp_settings(migrated_url, tmp_path / "var", free_port())  # nobody listens
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)
    mailer = Mailer(settings, engine, clock=clock, max_attempts=3)

    with caplog.at_level(logging.INFO, logger="server.mailer"):
        for _ in range(5):
            await mailer.run_once()
            clock.advance(hours=1)

    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.attempts) == ("failed", 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed after 3 attempts" in w for w in warnings), warnings
    assert all("@" not in r.getMessage() for r in caplog.records)


class Crash(BaseException):
    """The worker's process dying: nothing after it runs."""


class CrashAfterSending:
    """Hands the message to the real server, then dies before the sent-mark."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, message: EmailMessage, label: str) -> None:
        await self.inner.send(message, label)
        raise Crash

    async def close(self) -> None:
        await self.inner.close()


async def test_a_dead_workers_claim_is_taken_over_once_its_lease_runs_out(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)
    dead = Mailer(mail_settings, engine, clock=clock)
    other = Mailer(mail_settings, engine, clock=clock)
    assert len(await dead.claim()) == 1  # the confirmation; then it dies

    assert await other.run_once() == 0  # still leased to the dead worker
    clock.now += dead.lease
    assert await other.run_once() == 1

    assert smtp.count() == 1
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.last_error, row.attempts) == ("sent", LEASE_EXPIRED, 1)


async def test_a_message_handed_over_by_a_worker_that_died_is_sent_again_with_its_message_id(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    # The one case of "at least once": the server accepted it, the worker died before the
    # sent-mark.  The repeat carries the same Message-ID, and the row says what happened.
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)
    dying = CrashAfterSending(SmtpTransport(mail_settings))
    with pytest.raises(Crash):
        await Mailer(mail_settings, engine, clock=clock, transport=dying).run_once()
    clock.now += dt.timedelta(seconds=61)

    await Mailer(mail_settings, engine, clock=clock).run_once()

    assert smtp.message_ids().most_common() == [(smtp.received[0].message_id, 2)]
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.last_error) == ("sent", UNCONFIRMED_SEND)


async def test_two_workers_on_one_database_send_each_due_message_once(
    db: Sessions,
    therapist: Therapist,
    migrated_url: str,
    mail_settings: Settings,
    smtp: SmtpSink,
    clock: FakeClock,
) -> None:
    for day in range(1, 31):
        await book(db, therapist, clock.now + dt.timedelta(days=day), clock.now)
    engines = [create_engine(migrated_url), create_engine(migrated_url)]
    workers = [Mailer(mail_settings, e, clock=clock, batch_size=4) for e in engines]

    async def drain(worker: Mailer) -> int:
        total = 0
        while handled := await worker.run_once():
            total += handled
        return total

    try:
        counts = await asyncio.gather(*(drain(w) for w in workers))
    finally:
        for e in engines:
            await e.dispose()

    assert sum(counts) == 30 and all(counts), counts
    assert sorted(smtp.message_ids().values()) == [1] * 30


# --- stopping, and the local default ---------------------------------------------------------


async def test_stopping_a_worker_releases_what_it_holds_for_the_next_one(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    mail_settings: Settings,
    clock: FakeClock,
) -> None:
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)
    mailer = Mailer(mail_settings, engine, clock=clock)
    assert await mailer.claim() != []

    await mailer.stop()

    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    assert (row.status, row.claimed_by, row.claimed_until) == ("pending", None, None)


async def test_without_an_smtp_host_each_message_is_written_as_a_private_eml_file(
    db: Sessions,
    therapist: Therapist,
    engine: AsyncEngine,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    settings = make_settings(migrated_url, tmp_path / "var")
    appointment_id = await book(db, therapist, clock.now + dt.timedelta(days=3), clock.now)

    await Mailer(settings, engine, clock=clock).run_once()

    folder = tmp_path / "var" / "outbox"
    (row,) = [r for r in await outbox_rows(db, appointment_id) if r.kind == "confirmation"]
    (path,) = folder.iterdir()
    assert path.name == f"20260302T090000000000Z-confirmation-{row.id}.eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert parsed["Message-ID"] == message_id(row.idempotency_key, settings)
    assert row.status == "sent"


async def test_the_app_runs_the_worker_and_stops_it_on_shutdown(
    aiohttp_client: AiohttpClient,
    db: Sessions,
    therapist: Therapist,
    migrated_url: str,
    tmp_path: Path,
    smtp: SmtpSink,
) -> None:
    settings = smtp_settings(migrated_url, tmp_path / "var", smtp.port)
    now = dt.datetime.now(dt.UTC)
    await book(db, therapist, now + dt.timedelta(days=2), now)
    web = await aiohttp_client(create_app(settings))

    for _ in range(100):
        if smtp.count():
            break
        await asyncio.sleep(0.05)
    await web.close()

    assert smtp.count() == 1
    assert all(r.claimed_by is None for r in await outbox_rows(db))


async def test_production_without_an_smtp_host_warns_once_at_start(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_MODE="production",
        ALCOVE_PUBLIC_URL="https://therapy.example.org",
    )
    with caplog.at_level(logging.INFO, logger="server.mailer"):
        web = await aiohttp_client(create_app(settings))
        await web.close()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ALCOVE_SMTP_HOST" in warnings[0], warnings
