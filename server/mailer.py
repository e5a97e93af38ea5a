"""The e-mail worker: sends what the outbox holds when it is due, once.

Every instance runs one ``Mailer`` (started in the app's ``cleanup_ctx``).  Each round it

1. **claims** up to ``batch_size`` due, pending messages in one short write transaction
   (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
   writing its worker id and a lease into them, so no other instance takes them until the
   lease runs out;
2. for each message, in one short transaction, checks it is still pending, still its own
   and still wanted (no reminder for a cancelled appointment or a start that has moved),
   issues fresh join and manage tokens, renews the lease and marks the message as handed
   over (``sent_at`` on a pending row), then renders it;
3. hands it to the mail server (or the local ``.eml`` directory), and
4. marks it ``sent`` in its own short transaction right away -- or, on failure, schedules a
   retry with exponential backoff and jitter, giving up (``failed``) after
   ``max_attempts``.

A worker that dies leaves its claims behind; once their lease has run out, another worker
takes them.  A message it had handed over without recording the answer is sent again with
the same ``Message-ID`` (at least once, never silently lost): see the "E-mail outbox"
section of ``docs/ARCHITECTURE.md``.  Logs name messages by id and kind, and failures by
their class: never an address or a text that might quote one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from aiohttp import web
from sqlalchemy import Update, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from server import i18n
from server.db import sessionmaker, utcnow
from server.keys import CLOCK, ENGINE, SETTINGS, Clock
from server.mail_render import Links, Renderer
from server.mail_transport import Transport, transport_for
from server.middleware import CATALOGS
from server.models import (
    Appointment,
    AppointmentStatus,
    JoinToken,
    ManageToken,
    OutboxMessage,
    OutboxStatus,
)
from server.outbox import ANNOUNCEMENTS, MailKind, MessageKey, parse_key
from server.settings import Mode, Settings
from server.tokens import new_token, token_hash

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
BATCH_SIZE = 20
MAX_ATTEMPTS = 8
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(hours=1)
STOP_TIMEOUT_SECONDS = 10.0
#: ``last_error`` for a message whose worker died holding it, before / after handing it over.
LEASE_EXPIRED = "LeaseExpired"
UNCONFIRMED_SEND = "UnconfirmedSend"
_MARK_SENT_RETRIES = (0.2, 1.0, 3.0)


def new_worker_id() -> str:
    """Unique per process and per worker: ``<host>:<pid>:<random>``, at most 64 characters."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def backoff(attempts: int, rng: random.Random) -> dt.timedelta:
    """The wait after the ``attempts``-th failure: 30 s, 1 min, 2 min … capped at 1 h, ±20 %."""
    delay: dt.timedelta = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return delay * rng.uniform(0.8, 1.2)


def is_permanent(error: BaseException) -> bool:
    """A refusal that retrying cannot change: every recipient refused with a 5xx code."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    return False


@dataclass(frozen=True)
class _Prepared:
    message: EmailMessage
    label: str


class Mailer:
    """Claims due outbox messages and sends them.  ``run_once()`` is one round (for tests)."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        clock: Clock = utcnow,
        transport: Transport | None = None,
        catalogs: i18n.Catalogs | None = None,
        worker_id: str | None = None,
        lease: dt.timedelta = LEASE,
        batch_size: int = BATCH_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.transport = transport or transport_for(settings, clock)
        self.lease = lease
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self._engine = engine
        self._sessions = sessionmaker(engine)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not a secret
        translations = (catalogs or i18n.Catalogs()).get(i18n.DEFAULT_LOCALE)
        self._renderer = Renderer(settings, translations)
        self._sqlite = engine.dialect.name == "sqlite"
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_app(cls, app: web.Application) -> Mailer:
        return cls(app[SETTINGS], app[ENGINE], clock=app[CLOCK], catalogs=app[CATALOGS])

    # --- lifecycle -------------------------------------------------------------------------

    def announce(self) -> None:
        """Say once where e-mail goes; a warning in production when it goes nowhere."""
        directory = self.settings.local_mail_dir
        if directory is None:
            log.info(
                "e-mail: sending through %s:%s (%s)",
                self.settings.smtp_host,
                self.settings.smtp_port,
                self.settings.smtp_tls.value,
            )
        elif self.settings.mode is Mode.PRODUCTION:
            log.warning(
                "ALCOVE_SMTP_HOST is not set: e-mails are NOT sent, only written to %s",
                directory,
            )
        else:
            log.info("e-mail: not sent, written to %s (set ALCOVE_SMTP_HOST to send)", directory)

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self.run_forever(), name="alcove-mailer")

    async def stop(self, grace_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Finish the round in progress (sending what this worker holds), then stop.

        A round that takes longer than ``grace_seconds`` is cancelled, and the messages this
        worker still holds are released at once for the next worker instead of waiting
        for their lease to run out.
        """
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace_seconds)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        try:
            await self.release()
        except Exception as error:  # the database may be gone already; the lease covers it
            log.warning("e-mail worker: could not release its claims (%s)", type(error).__name__)
        await self.transport.close()

    async def run_forever(self) -> None:
        poll = self.settings.outbox_poll_seconds
        while not self._stopping.is_set():
            try:
                handled = await self.run_once()
            except Exception as error:
                log.warning("e-mail worker: round failed (%s)", type(error).__name__)
                handled = 0
            if handled >= self.batch_size:
                continue  # more may be due: go on at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), poll)

    # --- one round ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due and try to send each; return how many messages were claimed."""
        claimed = await self.claim()
        if not claimed:
            return 0
        try:
            async with self._marker() as marker:
                for message_id in claimed:
                    await self._deliver(message_id, marker)
        finally:
            await self.transport.close()
        return len(claimed)

    async def _write_transaction(self, db: AsyncSession) -> None:
        """Start a transaction that holds SQLite's write lock from its first statement.

        A deferred SQLite transaction that reads, then writes, fails outright (no waiting)
        when another connection wrote in between; taking the lock up front makes it wait.
        """
        if self._sqlite:
            await db.execute(text("BEGIN IMMEDIATE"))

    async def claim(self) -> list[int]:
        """Take up to ``batch_size`` due messages, including those of a worker that died."""
        now = self._clock()
        async with self._sessions() as db:
            await self._write_transaction(db)
            rows = (
                await db.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.kind,
                        OutboxMessage.claimed_by,
                        OutboxMessage.sent_at,
                        OutboxMessage.attempts,
                    )
                    .where(
                        OutboxMessage.status == OutboxStatus.PENDING.value,
                        OutboxMessage.next_attempt_at <= now,
                        or_(
                            OutboxMessage.claimed_until.is_(None),
                            OutboxMessage.claimed_until <= now,
                        ),
                    )
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            claimed: list[int] = []
            for row in rows:
                if row.claimed_by is None and row.sent_at is None:
                    claimed.append(row.id)
                    continue
                # Left behind by a worker that died (or was stopped mid-send): that attempt
                # counts, so a message that kills its worker every time ends up failed.
                unconfirmed = row.sent_at is not None
                error = UNCONFIRMED_SEND if unconfirmed else LEASE_EXPIRED
                attempts = row.attempts + 1
                values: dict[str, object] = {
                    "attempts": attempts,
                    "last_error": error,
                    "sent_at": None,
                    "claimed_by": None,
                    "claimed_until": None,
                }
                if attempts >= self.max_attempts:
                    values["status"] = OutboxStatus.FAILED.value
                    log.warning(
                        "outbox message %s (%s) failed after %d attempts (%s)",
                        row.id,
                        row.kind,
                        attempts,
                        error,
                    )
                else:
                    claimed.append(row.id)
                    if unconfirmed:
                        log.warning(
                            "outbox message %s (%s): its worker stopped after handing it to "
                            "the mail server, before the answer was stored; sending it again "
                            "with the same Message-ID",
                            row.id,
                            row.kind,
                        )
                await db.execute(
                    update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values)
                )
            if claimed:
                await db.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(claimed))
                    .values(claimed_by=self.worker_id, claimed_until=now + self.lease)
                )
            await db.commit()
        return claimed

    async def release(self) -> int:
        """Give back every message this worker holds (on shutdown); return how many."""
        async with self._sessions() as db:
            await self._write_transaction(db)
            result = await db.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.claimed_by == self.worker_id,
                    OutboxMessage.status == OutboxStatus.PENDING.value,
                )
                .values(claimed_by=None, claimed_until=None)
            )
            await db.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    # --- one message -----------------------------------------------------------------------

    async def _deliver(self, message_id: int, marker: AsyncConnection) -> None:
        try:
            prepared = await self._prepare(message_id)
        except Exception as error:
            await self._failed(message_id, error)
            return
        if prepared is None:
            return
        try:
            await self.transport.send(prepared.message, prepared.label)
        except Exception as error:
            await self._failed(message_id, error)
            return
        await self._mark_sent(message_id, marker)

    async def _prepare(self, message_id: int) -> _Prepared | None:
        """Check, issue links, mark as handed over and render -- or withdraw; one transaction."""
        now = self._clock()
        async with self._sessions() as db:
            await self._write_transaction(db)
            message = await db.scalar(
                select(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.claimed_by == self.worker_id,
                    OutboxMessage.status == OutboxStatus.PENDING.value,
                )
                .with_for_update()
            )
            if message is None:  # withdrawn meanwhile, or the lease ran out and it was taken
                return None
            appointment = None
            if message.appointment_id is not None:
                appointment = await db.scalar(
                    select(Appointment)
                    .where(Appointment.id == message.appointment_id)
                    .options(selectinload(Appointment.client), selectinload(Appointment.therapist))
                )
            key, reason = _check(message, appointment, now)
            if reason is not None or key is None or appointment is None:
                message.status = OutboxStatus.WITHDRAWN.value
                message.claimed_by = None
                message.claimed_until = None
                await db.commit()
                log.info("outbox message %s (%s) withdrawn: %s", message.id, message.kind, reason)
                return None
            links = self._issue_links(db, key.kind, appointment, now)
            message.claimed_until = now + self.lease
            message.sent_at = now  # handed over from here on: see the module's docstring
            rendered = self._renderer.render(
                key.kind, message.idempotency_key, appointment, links, now
            )
            await db.commit()
        return _Prepared(rendered, f"{key.kind.value}-{message_id}")

    def _issue_links(
        self, db: AsyncSession, kind: MailKind, appointment: Appointment, now: dt.datetime
    ) -> Links:
        """Fresh tokens for this message: only their hashes are stored, so none can be reused."""
        if kind is MailKind.CANCELLATION:
            return Links()
        base = self.settings.public_url
        join = new_token()
        grace = dt.timedelta(minutes=self.settings.join_grace_minutes)
        db.add(
            JoinToken(
                appointment_id=appointment.id,
                token_hash=token_hash(join),
                expires_at=appointment.ends_at + grace,
                created_at=now,
            )
        )
        manage_link = None
        if kind in ANNOUNCEMENTS:
            manage = new_token()
            db.add(
                ManageToken(
                    appointment_id=appointment.id,
                    token_hash=token_hash(manage),
                    expires_at=appointment.starts_at,
                    created_at=now,
                )
            )
            manage_link = f"{base}/manage/{manage}"
        return Links(join=f"{base}/join/{join}", manage=manage_link)

    @contextlib.asynccontextmanager
    async def _marker(self) -> AsyncIterator[AsyncConnection]:
        """A connection held for one round, to store sent-marks in a single round trip.

        The time between the mail server's "accepted" and the sent-mark being stored is the
        one window in which a dying worker causes a repeat, so the mark is one autocommit
        ``UPDATE`` on a connection already open -- no pool check-out, no ``BEGIN`` -- whose
        commit does not wait for the disk (PostgreSQL: ``synchronous_commit off``; SQLite:
        ``synchronous NORMAL``, restored afterwards).  It is visible to every other worker
        at once and survives this process dying; only a crash of the database server (or,
        on SQLite, of the machine) a moment later could lose it, and then the message is
        sent again, never lost.  Everything else, the tokens in particular, is
        committed durably before the message leaves.
        """
        async with self._engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            if self._sqlite:  # NORMAL: WAL commits sync at checkpoints, not each time
                level = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
                await connection.exec_driver_sql("PRAGMA synchronous = NORMAL")
                restore = f"PRAGMA synchronous = {int(level or 2)}"
            else:
                await connection.exec_driver_sql("SET synchronous_commit TO off")
                restore = "RESET synchronous_commit"
            try:
                yield connection
            finally:
                try:
                    await connection.exec_driver_sql(restore)
                except Exception:
                    await connection.invalidate()  # never back in the pool as it is

    def _sent_mark(self, message_id: int) -> Update:
        return (
            update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                OutboxMessage.claimed_by == self.worker_id,
                # Withdrawn while on the wire: it went out all the same.
                OutboxMessage.status.in_(
                    [OutboxStatus.PENDING.value, OutboxStatus.WITHDRAWN.value]
                ),
            )
            .values(
                status=OutboxStatus.SENT.value,
                sent_at=self._clock(),
                claimed_by=None,
                claimed_until=None,
            )
        )

    async def _mark_sent(self, message_id: int, marker: AsyncConnection) -> None:
        """Record the delivery at once; retried briefly, since a lost mark means a resend."""
        for delay in (*_MARK_SENT_RETRIES, None):
            try:
                if marker.invalidated:
                    async with self._engine.connect() as retry:
                        await retry.execution_options(isolation_level="AUTOCOMMIT")
                        result = await retry.execute(self._sent_mark(message_id))
                else:
                    result = await marker.execute(self._sent_mark(message_id))
                if not result.rowcount:
                    log.warning(
                        "outbox message %s was sent after its lease ran out; "
                        "another worker may send it again",
                        message_id,
                    )
                return
            except Exception as error:
                if not marker.invalidated:
                    await marker.invalidate()
                if delay is None:
                    log.warning(
                        "outbox message %s was sent but could not be marked (%s); "
                        "it will be sent again when its lease runs out",
                        message_id,
                        type(error).__name__,
                    )
                    return
                await asyncio.sleep(delay)

    async def _failed(self, message_id: int, error: BaseException) -> None:
        now = self._clock()
        error_class = type(error).__name__[:120]
        async with self._sessions() as db:
            await self._write_transaction(db)
            message = await db.scalar(
                select(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.claimed_by == self.worker_id,
                    OutboxMessage.status == OutboxStatus.PENDING.value,
                )
                .with_for_update()
            )
            if message is None:
                return
            message.attempts += 1
            message.last_error = error_class
            message.sent_at = None
            message.claimed_by = None
            message.claimed_until = None
            if message.attempts >= self.max_attempts or is_permanent(error):
                message.status = OutboxStatus.FAILED.value
                log.warning(
                    "outbox message %s (%s) failed after %d attempts (%s)",
                    message.id,
                    message.kind,
                    message.attempts,
                    error_class,
                )
            else:
                message.next_attempt_at = now + backoff(message.attempts, self._rng)
                log.info(
                    "outbox message %s (%s) not sent (%s); attempt %d, retrying at %s",
                    message.id,
                    message.kind,
                    error_class,
                    message.attempts,
                    message.next_attempt_at.isoformat(timespec="seconds"),
                )
            await db.commit()


def _check(
    message: OutboxMessage, appointment: Appointment | None, now: dt.datetime
) -> tuple[MessageKey | None, str | None]:
    """The message's key, and why it should no longer be sent (``None``: send it)."""
    try:
        key = parse_key(message.idempotency_key)
    except ValueError:
        return None, "unreadable key"
    if appointment is None:
        return key, "the appointment is gone"
    state = appointment.state
    if key.kind is MailKind.CANCELLATION:
        return key, None if state is AppointmentStatus.CANCELLED else "not cancelled"
    if state is not AppointmentStatus.SCHEDULED:
        return key, f"the appointment is {state.value}"
    if key.kind is MailKind.REMINDER:
        if key.starts_at != appointment.starts_at:
            return key, "the appointment has moved"
        if now >= appointment.starts_at:
            return key, "too late: the appointment has started"
        return key, None
    if key.sequence != appointment.sequence:
        return key, "superseded by a later change"
    if now >= appointment.ends_at:
        return key, "too late: the appointment is over"
    return key, None


MAILER = web.AppKey("mailer", Mailer)


async def mailer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run this instance's e-mail worker while the app runs; stop it cleanly on shutdown."""
    mailer = Mailer.from_app(app)
    app[MAILER] = mailer
    mailer.announce()
    mailer.start()
    yield
    await mailer.stop()


__all__: Sequence[str] = ("MAILER", "Mailer", "backoff", "is_permanent", "mailer_ctx")
