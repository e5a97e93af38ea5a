"""For the e-mail tests: a real SMTP server to send to, and appointments to mail about."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import Counter
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import outbox
from server.models import Appointment, AppointmentStatus, Client, OutboxMessage, Therapist
from server.settings import Settings
from tests.conftest import make_settings
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
        return str(part.get_content())

    def invite(self) -> Calendar:
        (attachment,) = [
            p for p in self.message.iter_attachments() if p.get_content_type() == "text/calendar"
        ]
        assert attachment.get_param("method") in {"REQUEST", "CANCEL"}
        payload = attachment.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return Calendar.from_ical(payload)

    def sequence(self) -> int:
        value = self.event().decoded("SEQUENCE")
        assert isinstance(value, int)
        return value

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
