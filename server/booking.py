"""The booking service: what the public pages, the therapist's pages and the JSON API share.

Read this module's names as the service's whole surface::

    from server import booking

Clients (public booking page, manage link, ``/api/v1``):

* ``ClientDetails(name, email, phone, note, timezone)`` -- validated on construction.
* ``public_therapist(db, slug)``, ``session_types(db, therapist_id, public_only=...)``,
  ``session_type(db, therapist_id, session_type_id, public_only=...)``,
  ``slots_for(db, therapist, session_type, now)``.
* ``book(...) -> Booked`` (below).
* ``appointment_for_manage_token(db, token, now) -> ManageLink | None``,
  ``slots_for_appointment(db, appointment, now)``, ``cancel_by_client(...) -> int``,
  ``reschedule_by_client(...) -> Rescheduled`` (``server.booking_manage``).

Therapists (``server.booking_therapist``): ``create_appointment``, ``create_series``,
``move_occurrence``, ``cancel_occurrence``, ``cancel_rest_of_series``; and, reading
(``server.booking_calendar``), ``week_of(db, therapist, monday_local)`` and
``client_record(db, therapist_id, client_id, now) -> ClientRecord | None``.

For the mailer: ``issue_join_token(db, appointment, join_grace=...)`` and
``issue_manage_token(db, appointment)`` add a fresh link and return its plain token.

Conventions: every instant is an aware datetime (stored and returned in UTC); ``now`` is
always passed in (the app's clock).  Functions taking a ``sessionmaker`` own their
transaction and write everything -- records, tokens, audit event, outbox messages -- or
nothing; those taking a session (``db``) only read.  ``join_grace`` is how long after its
end a join link still works (``Settings.join_grace_minutes``); pass
``reminder_hours=settings.reminder_hours`` wherever it is accepted.  Refusals are the
exceptions of ``server.booking_rules``: ``BookingError`` (bad input; ``field``,
``message`` and all ``errors``), ``SlotTaken`` (``nearest`` free slots), ``TooLate``
(``contact_text``), ``NotChangeable`` and ``NotFound`` (``what``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import audit, booking_slots, outbox
from server import booking_records as records
from server import booking_store as store
from server.audit import Actor
from server.booking_calendar import ClientRecord, client_record, week_of
from server.booking_manage import (
    MAX_TOKEN_LENGTH,
    LinkState,
    ManageLink,
    Rescheduled,
    appointment_for_manage_token,
    cancel_by_client,
    reschedule_by_client,
    slots_for_appointment,
)
from server.booking_records import issue_join_token, issue_manage_token
from server.booking_rules import (
    BookingError,
    BookingProblem,
    ClientDetails,
    FieldError,
    NotChangeable,
    NotFound,
    SlotTaken,
    TooLate,
    aware_utc,
)
from server.booking_slots import slots_for
from server.booking_store import public_therapist, session_type, session_types
from server.booking_therapist import (
    cancel_occurrence,
    cancel_rest_of_series,
    create_appointment,
    create_series,
    move_occurrence,
)
from server.models import Appointment, AppointmentStatus, Therapist

__all__ = [
    "MAX_TOKEN_LENGTH",
    "Booked",
    "BookingError",
    "BookingProblem",
    "ClientDetails",
    "ClientRecord",
    "FieldError",
    "LinkState",
    "ManageLink",
    "NotChangeable",
    "NotFound",
    "Rescheduled",
    "SlotTaken",
    "TooLate",
    "appointment_for_manage_token",
    "book",
    "cancel_by_client",
    "cancel_occurrence",
    "cancel_rest_of_series",
    "client_record",
    "create_appointment",
    "create_series",
    "issue_join_token",
    "issue_manage_token",
    "move_occurrence",
    "public_therapist",
    "reschedule_by_client",
    "session_type",
    "session_types",
    "slots_for",
    "slots_for_appointment",
    "week_of",
]


@dataclass(frozen=True)
class Booked:
    """A stored booking.  The plain tokens exist only here: show or send them, then forget."""

    appointment_id: int
    join_token: str
    manage_token: str
    start: dt.datetime
    end: dt.datetime


async def book(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    therapist_id: int,
    session_type_id: int,
    start: dt.datetime,
    client: ClientDetails,
    now: dt.datetime,
    join_grace: dt.timedelta,
    reminder_hours: Sequence[int] = outbox.DEFAULT_REMINDER_HOURS,
    source_ip: str | None = None,
) -> Booked:
    """Book one free slot of a public session type, all in one transaction.

    ``start`` must be one of ``slots_for(...)``'s starts at this moment.  Stores (or reuses,
    by therapist and e-mail) the client, the appointment with the type's buffer and the
    client's note, a join token (until the end plus ``join_grace``), a manage token (until
    the start), an audit event and the confirmation and reminder e-mails.

    Raises ``NotFound("therapist")``, ``BookingError`` (``session_type``; ``start`` naive,
    too soon, too far ahead or never offered), or ``SlotTaken`` with the nearest free
    slots when someone else has the time (or it would overlap an appointment or buffer).
    """
    start = aware_utc(start, "start")
    try:
        async with store.write_transaction(sessionmaker) as db:
            therapist = await db.get(Therapist, therapist_id)
            if therapist is None or not therapist.is_active:
                raise NotFound("therapist")
            kind = await session_type(db, therapist_id, session_type_id, public_only=True)
            if kind is None:
                raise BookingError("session_type", "is not a session type offered here")
            rules = store.rules_of(kind)
            await booking_slots.require_free(db, therapist, rules, start, now, lock=True)
            record = await records.find_or_add_client(db, therapist_id, client)
            appointment = Appointment(
                therapist_id=therapist_id,
                client_id=record.id,
                starts_at=start,
                ends_at=start + rules.duration,
                status=AppointmentStatus.SCHEDULED.value,
                session_type_id=kind.id,
                buffer_minutes=kind.buffer_minutes,
                intake_note=client.note,
            )
            db.add(appointment)
            await db.flush()
            join = await issue_join_token(db, appointment, join_grace=join_grace)
            manage = await issue_manage_token(db, appointment)
            audit.record(
                db,
                at=now,
                actor=Actor.CLIENT,
                actor_id=record.id,
                action="appointment_booked",
                record_type="appointment",
                record_id=appointment.id,
                source_ip=source_ip,
            )
            await outbox.on_booked(db, appointment, now, reminder_hours=reminder_hours)
            return Booked(appointment.id, join, manage, appointment.starts_at, appointment.ends_at)
    except IntegrityError as exc:
        if not store.is_overlap_violation(exc):
            raise
        # PostgreSQL's exclusion constraint caught what the check missed: the time is taken.
        raise await booking_slots.explain_taken(
            sessionmaker, therapist_id, rules, start, now
        ) from None
