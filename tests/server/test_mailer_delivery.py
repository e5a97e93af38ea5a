"""How the e-mail worker delivers: retries, leases, dead and stopped workers, the local default.

Against a real SMTP server (aiosmtpd) and a real database; see ``test_mailer_processes.py`` for
worker processes killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import stat
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server import outbox
from server.app import create_app
from server.db import create_engine
from server.mail_queue import LEASE_EXPIRED, UNCONFIRMED_SEND, OutboxQueue
from server.mail_render import message_id
from server.mail_transport import SmtpTransport, Transport
from server.mailer import Mailer
from server.models import Appointment, AppointmentStatus, Therapist
from server.settings import Settings
from tests.conftest import AiohttpClient, FakeClock, free_port, make_settings
from tests.support.mail import (
    Sessions,
    SmtpSink,
    book,
    outbox_rows,
    smtp_settings,
)

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


async def test_a_reminder_waits_for_a_cancellation_being_committed_and_is_then_withdrawn(
    db: Sessions, therapist: Therapist, engine: AsyncEngine, clock: FakeClock
) -> None:
    starts_at = clock.now + dt.timedelta(days=3)
    appointment_id = await book(db, therapist, starts_at, clock.now)
    clock.now = starts_at - dt.timedelta(minutes=30)  # both reminders are due
    queue = OutboxQueue(engine, worker_id="worker-a", clock=clock)
    claimed = await queue.claim()
    reminder = next(r.id for r in await outbox_rows(db, appointment_id) if r.kind == "reminder")
    assert reminder in claimed

    async with db() as session:  # the booking service's transaction, not yet committed
        await session.begin()
        record = await session.get(Appointment, appointment_id)
        assert record is not None
        record.transition_to(AppointmentStatus.CANCELLED)
        record.sequence += 1
        await session.flush()  # the appointment is changed; its e-mails not yet touched
        handing_over = asyncio.create_task(queue.hand_over(reminder, lambda *_: "rendered"))
        await asyncio.sleep(0.3)
        assert not handing_over.done()  # it waits for the cancellation to commit or not
        await outbox.on_cancelled(session, record, clock.now)
        await session.commit()

    assert await handing_over is None
    statuses = {r.id: r.status for r in await outbox_rows(db, appointment_id)}
    assert statuses[reminder] == "withdrawn"


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
