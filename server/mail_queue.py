"""The worker's side of the outbox table: claims, leases, hand-over, sent-marks, retries.

Every method is one short transaction of its own (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
row locks, ``SKIP LOCKED`` when claiming), so a worker holds no lock while it talks to the
mail server.  A row's life, for the worker holding it:

``pending`` (claimable when due and unleased) → claimed (``claimed_by``, ``claimed_until``)
→ handed over (``sent_at`` set, still ``pending``) → ``sent``; or back to ``pending`` with a
later ``next_attempt_at`` after a failure, ``failed`` after ``max_attempts``, ``withdrawn``
when no longer wanted.  A row found claimed by a worker whose lease ran out counts as a
failed attempt (``LeaseExpired``, or ``UnconfirmedSend`` if it had been handed over) and is
claimed again.  See the "E-mail outbox" section of ``docs/ARCHITECTURE.md``.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Update, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from server.db import sessionmaker
from server.keys import Clock
from server.mail_policy import backoff, is_permanent, why_not
from server.models import Appointment, OutboxMessage, OutboxStatus
from server.outbox import MessageKey

log = logging.getLogger("server.mailer")  # one logger for the whole e-mail worker

LEASE = dt.timedelta(seconds=60)
BATCH_SIZE = 20
MAX_ATTEMPTS = 8
#: ``last_error`` for a message whose worker died holding it, before / after handing it over.
LEASE_EXPIRED = "LeaseExpired"
UNCONFIRMED_SEND = "UnconfirmedSend"
_MARK_SENT_RETRIES = (0.2, 1.0, 3.0)

T = TypeVar("T")
#: Builds what is sent, inside the hand-over transaction: (session, row, key, appointment, now).
Build = Callable[[AsyncSession, OutboxMessage, MessageKey, Appointment, dt.datetime], T]
#: Builds a homework e-mail, inside the hand-over transaction: (session, row, now); ``None``
#: when the homework is no longer open (the message is then withdrawn).
HomeworkBuild = Callable[[AsyncSession, OutboxMessage, dt.datetime], Awaitable[T | None]]


def new_worker_id() -> str:
    """Unique per process and per worker: ``<host>:<pid>:<random>``, at most 64 characters."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class OutboxQueue:
    """One worker's claims on the outbox table."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        worker_id: str,
        clock: Clock,
        lease: dt.timedelta = LEASE,
        batch_size: int = BATCH_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        rng: random.Random | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.lease = lease
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self._engine = engine
        self._sessions = sessionmaker(engine)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not a secret
        self._sqlite = engine.dialect.name == "sqlite"

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

    async def hand_over(
        self, message_id: int, build: Build[T], homework: HomeworkBuild[T] | None = None
    ) -> T | None:
        """Check the message is still ours and wanted, and ``build`` it; or withdraw it.

        One transaction: what ``build`` adds (the link tokens) is committed together with
        the hand-over mark (``sent_at`` on the pending row) and a renewed lease, before the
        message leaves.  ``None`` when it is not to be sent (any more).
        """
        now = self._clock()
        async with self._sessions() as db:
            await self._write_transaction(db)
            # PostgreSQL: share-lock the appointment first, so a cancellation or move being
            # committed right now is waited for and seen (and cannot commit until this
            # hand-over has); then the row, in the order the booking service locks them.
            appointment_id = await db.scalar(
                select(OutboxMessage.appointment_id).where(OutboxMessage.id == message_id)
            )
            if appointment_id is not None:
                await db.execute(
                    select(Appointment.id)
                    .where(Appointment.id == appointment_id)
                    .with_for_update(read=True)
                )
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
            if message.homework_id is not None:  # a homework link: no appointment
                built_homework = None if homework is None else await homework(db, message, now)
                if built_homework is not None:
                    message.claimed_until = now + self.lease
                    message.sent_at = now
                    await db.commit()
                    return built_homework
            appointment = None
            if message.appointment_id is not None:
                appointment = await db.scalar(
                    select(Appointment)
                    .where(Appointment.id == message.appointment_id)
                    .options(selectinload(Appointment.client), selectinload(Appointment.therapist))
                    .execution_options(populate_existing=True)
                )
            key, reason = why_not(message, appointment, now)
            if message.homework_id is not None:
                reason = "the homework is no longer open"
            if reason is not None or key is None or appointment is None:
                message.status = OutboxStatus.WITHDRAWN.value
                message.claimed_by = None
                message.claimed_until = None
                await db.commit()
                log.info("outbox message %s (%s) withdrawn: %s", message.id, message.kind, reason)
                return None
            built = build(db, message, key, appointment, now)
            message.claimed_until = now + self.lease
            message.sent_at = now  # handed over from here on: see the module's docstring
            await db.commit()
        return built

    @contextlib.asynccontextmanager
    async def marker(self) -> AsyncIterator[AsyncConnection]:
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

    async def mark_sent(self, message_id: int, marker: AsyncConnection) -> None:
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

    async def failed(self, message_id: int, error: BaseException) -> None:
        """Count a failed attempt: retry later with backoff, or give up."""
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
