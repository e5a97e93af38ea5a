"""What the e-mail worker decides about one message, as pure functions."""

from __future__ import annotations

import datetime as dt
import random

import aiosmtplib
import pytest

from server.mail_policy import BACKOFF_CAP, backoff, is_permanent, why_not
from server.models import Appointment, AppointmentStatus, OutboxMessage
from server.outbox import MailKind, key_for, reminder_key

START = dt.datetime(2026, 12, 14, 9, 0, tzinfo=dt.UTC)


def appointment(status: AppointmentStatus = AppointmentStatus.SCHEDULED) -> Appointment:
    return Appointment(
        id=7, starts_at=START, ends_at=START + dt.timedelta(minutes=50), status=status.value,
        sequence=2,
    )  # fmt: skip


def message(key: str) -> OutboxMessage:
    return OutboxMessage(idempotency_key=key)


def test_the_wait_doubles_from_thirty_seconds_up_to_an_hour_give_or_take_a_fifth() -> None:
    rng = random.Random(5)
    for attempts, middle in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (30, 3600)]:
        wait = backoff(attempts, rng).total_seconds()
        assert 0.8 * middle <= wait <= 1.2 * middle
    assert backoff(40, rng) <= BACKOFF_CAP * 1.2


def test_only_every_recipient_refused_for_good_makes_a_failure_final() -> None:
    def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
        return aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(code, "no", "a@example.com") for code in codes]
        )

    assert is_permanent(refused(550))
    assert is_permanent(refused(550, 553))
    assert not is_permanent(refused(550, 450))  # one may still take it later
    assert not is_permanent(refused())
    assert not is_permanent(aiosmtplib.SMTPServerDisconnected("gone"))


@pytest.mark.parametrize(
    ("status", "kind", "now", "reason"),
    [
        (AppointmentStatus.SCHEDULED, MailKind.CONFIRMATION, START, None),
        (AppointmentStatus.CANCELLED, MailKind.CONFIRMATION, START, "the appointment is cancelled"),
        (AppointmentStatus.CANCELLED, MailKind.CANCELLATION, START, None),
        (AppointmentStatus.SCHEDULED, MailKind.CANCELLATION, START, "not cancelled"),
        (
            AppointmentStatus.SCHEDULED,
            MailKind.CONFIRMATION,
            START + dt.timedelta(hours=1),
            "too late: the appointment is over",
        ),
    ],
)
def test_an_announcement_is_sent_only_while_it_is_still_true(
    status: AppointmentStatus, kind: MailKind, now: dt.datetime, reason: str | None
) -> None:
    booked = appointment(status)
    key, why = why_not(message(key_for(kind, booked)), booked, now)

    assert key is not None and key.kind is kind and key.appointment_id == 7
    assert why == reason


def test_an_announcement_of_an_older_version_is_not_sent() -> None:
    booked = appointment()
    queued = message(key_for(MailKind.CONFIRMATION, booked))
    booked.sequence = 3  # changed again since

    assert why_not(queued, booked, START)[1] == "superseded by a later change"


def test_a_reminder_is_not_sent_once_the_appointment_moved_or_began() -> None:
    booked = appointment()
    queued = message(reminder_key(booked, 24))
    early = START - dt.timedelta(hours=24)

    assert why_not(queued, booked, early)[1] is None
    assert why_not(queued, booked, START)[1] == "too late: the appointment has started"
    booked.starts_at = START + dt.timedelta(days=1)
    assert why_not(queued, booked, early)[1] == "the appointment has moved"


def test_a_message_whose_appointment_or_key_is_gone_is_not_sent() -> None:
    key, why = why_not(message(key_for(MailKind.CONFIRMATION, appointment())), None, START)

    assert key is not None and why == "the appointment is gone"
    assert why_not(message("nonsense"), appointment(), START) == (None, "unreadable key")
