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
4. marks it ``sent`` right away, in one autocommit statement -- or, on failure, schedules
   a retry with exponential backoff and jitter, giving up (``failed``) after
   ``max_attempts``.

The table side of this (claims, leases, marks) is ``server.mail_queue``; what is sent is
built by ``server.mail_render`` and goes out through ``server.mail_transport``.

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
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from server import i18n, shutdown
from server.db import utcnow
from server.keys import CLOCK, ENGINE, SETTINGS, Clock
from server.mail_queue import BATCH_SIZE, LEASE, MAX_ATTEMPTS, OutboxQueue, new_worker_id
from server.mail_render import HomeworkMail, Links, Renderer, client_zone_of
from server.mail_transport import Transport, transport_for
from server.middleware import CATALOGS
from server.models import Appointment, Client, JoinToken, ManageToken, OutboxMessage, Therapist
from server.outbox import ANNOUNCEMENTS, MailKind, MessageKey
from server.settings import Mode, Settings
from server.tokens import new_token, token_hash
from server.worksheet_models import Homework
from server.worksheet_store import homework_open

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0


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
        self.transport = transport or transport_for(settings, clock)
        self.queue = OutboxQueue(
            engine,
            worker_id=worker_id or new_worker_id(),
            clock=clock,
            lease=lease,
            batch_size=batch_size,
            max_attempts=max_attempts,
            rng=rng,
        )
        translations = (catalogs or i18n.Catalogs()).get(i18n.DEFAULT_LOCALE)
        self._renderer = Renderer(settings, translations)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_app(cls, app: web.Application) -> Mailer:
        return cls(app[SETTINGS], app[ENGINE], clock=app[CLOCK], catalogs=app[CATALOGS])

    @property
    def worker_id(self) -> str:
        return self.queue.worker_id

    @property
    def lease(self) -> dt.timedelta:
        return self.queue.lease

    async def claim(self) -> list[int]:
        return await self.queue.claim()

    async def release(self) -> int:
        return await self.queue.release()

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
            if handled >= self.queue.batch_size:
                continue  # more may be due: go on at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), poll)

    # --- one round ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due and try to send each; return how many messages were claimed."""
        claimed = await self.queue.claim()
        if not claimed:
            return 0
        try:
            async with self.queue.marker() as marker:
                for message_id in claimed:
                    await self._deliver(message_id, marker)
        finally:
            await self.transport.close()
        return len(claimed)

    # --- one message -----------------------------------------------------------------------

    async def _deliver(self, message_id: int, marker: AsyncConnection) -> None:
        try:
            prepared = await self.queue.hand_over(message_id, self._build, self._build_homework)
        except Exception as error:
            await self.queue.failed(message_id, error)
            return
        if prepared is None:
            return
        try:
            await self.transport.send(prepared.message, prepared.label)
        except Exception as error:
            await self.queue.failed(message_id, error)
            return
        await self.queue.mark_sent(message_id, marker)

    def _build(
        self,
        db: AsyncSession,
        row: OutboxMessage,
        key: MessageKey,
        appointment: Appointment,
        now: dt.datetime,
    ) -> _Prepared:
        """Issue this message's links and render it (inside the hand-over transaction)."""
        links = self._issue_links(db, key.kind, appointment, now)
        message = self._renderer.render(key.kind, row.idempotency_key, appointment, links, now)
        return _Prepared(message, f"{key.kind.value}-{row.id}")

    async def _build_homework(
        self, db: AsyncSession, row: OutboxMessage, now: dt.datetime
    ) -> _Prepared | None:
        """A homework link, if the homework is still open: its token is made now, and the
        stored hash replaced, so only the newest e-mail's link works."""
        homework = await db.scalar(
            select(Homework).where(Homework.id == row.homework_id).with_for_update()
        )
        if homework is None or not homework_open(homework, now):
            return None
        therapist = await db.get(Therapist, homework.therapist_id)
        client = await db.get(Client, homework.client_id)
        if therapist is None or client is None:
            return None
        token = new_token()
        homework.token_hash = token_hash(token)
        zone = client_zone_of(client, therapist)
        mail = HomeworkMail(
            to=client.email,
            therapist=therapist.display_name,
            due_on=homework.due_on,
            expires_at=homework.expires_at,
            link=f"{self.settings.public_url}/homework/{token}",
            zone=zone,
        )
        message = self._renderer.render_homework(row.idempotency_key, mail, now)
        return _Prepared(message, f"{MailKind.HOMEWORK.value}-{row.id}")

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


MAILER = web.AppKey("mailer", Mailer)


async def mailer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run this instance's e-mail worker while the app runs; stop it cleanly on shutdown."""
    mailer = Mailer.from_app(app)
    app[MAILER] = mailer
    mailer.announce()
    mailer.start()
    yield
    await mailer.stop(shutdown.grace(app, STOP_TIMEOUT_SECONDS))
