"""What the e-mail worker decides about one message: whether it is still wanted, whether a
failure is final, and when to try again.  Pure functions, no I/O (``server.mail_queue``
applies them inside its transactions).
"""

from __future__ import annotations

import datetime as dt
import random

import aiosmtplib

from server.models import Appointment, AppointmentStatus, OutboxMessage
from server.outbox import MailKind, MessageKey, parse_key

BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_CAP = dt.timedelta(hours=1)


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


def why_not(
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
