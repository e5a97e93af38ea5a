"""The client's manage link: see the appointment, cancel it or move it until the cutoff.

Re-exported by ``server.booking`` (read its docstring first).  The link is a bearer token
(expiring at the appointment's start).  Until the therapist's cutoff
(``reschedule_cutoff_hours`` before the start) it may cancel or move the appointment; after
it, ``TooLate`` carries the therapist's ``contact_text``.  A link whose appointment was
cancelled or has since been moved (moving revokes the old link and issues a new one) can
do nothing: ``NotChangeable``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from server import audit, booking_slots, outbox
from server import booking_records as records
from server import booking_store as store
from server.audit import Actor
from server.availability import Slot
from server.booking_rules import (
    BookingError,
    BookingProblem,
    NotChangeable,
    NotFound,
    SlotTaken,
    TooLate,
    aware_utc,
)
from server.models import Appointment, AppointmentStatus, ManageToken, SessionType, Therapist
from server.tokens import token_hash

MAX_TOKEN_LENGTH = 128


class LinkState(enum.StrEnum):
    CHANGEABLE = "changeable"
    #: Past the therapist's cutoff: show ``therapist.contact_text``.
    TOO_LATE = "too_late"
    #: Cancelled, moved (an old link), or no longer scheduled: the link can do nothing.
    STALE = "stale"


@dataclass(frozen=True)
class ManageLink:
    """What a manage link shows: the appointment (with therapist and client loaded)."""

    appointment: Appointment
    session_type: SessionType | None
    state: LinkState
    #: The last moment the client may cancel or reschedule online.
    cutoff_at: dt.datetime

    @property
    def therapist(self) -> Therapist:
        return self.appointment.therapist


@dataclass(frozen=True)
class Rescheduled:
    """A moved appointment and its new manage token (the old one no longer works).

    ``join_link_kept`` tells whether the old join link still works (the therapist's
    ``keep_join_link_on_reschedule``); if not, the mailer issues a fresh one.
    """

    appointment_id: int
    manage_token: str
    start: dt.datetime
    end: dt.datetime
    join_link_kept: bool


async def appointment_for_manage_token(
    db: AsyncSession, token: str, now: dt.datetime
) -> ManageLink | None:
    """What the manage link ``token`` refers to, and what it may do; ``None`` if unknown.

    A revoked link (the appointment was moved since) or one for an appointment that is not
    scheduled any more is ``STALE``; one past the cutoff is ``TOO_LATE``.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await db.scalar(
        select(ManageToken)
        .where(ManageToken.token_hash == token_hash(token))
        .options(
            selectinload(ManageToken.appointment).selectinload(Appointment.therapist),
            selectinload(ManageToken.appointment).selectinload(Appointment.client),
        )
        .execution_options(populate_existing=True)
    )
    if row is None:
        return None
    appointment = row.appointment
    therapist = appointment.therapist
    cutoff_at = appointment.starts_at - dt.timedelta(hours=therapist.reschedule_cutoff_hours)
    if row.revoked_at is not None or appointment.state is not AppointmentStatus.SCHEDULED:
        state = LinkState.STALE
    elif now >= cutoff_at or now >= row.expires_at:
        state = LinkState.TOO_LATE
    else:
        state = LinkState.CHANGEABLE
    return ManageLink(appointment, await _kind_of(db, appointment), state, cutoff_at)


async def slots_for_appointment(
    db: AsyncSession, appointment: Appointment, now: dt.datetime
) -> list[Slot]:
    """The free slots ``appointment`` could move to (its own time counts as free).

    ``appointment.therapist`` must be loaded (as in a ``ManageLink``).
    """
    kind = await _kind_of(db, appointment)
    return await booking_slots.offered_slots(
        db,
        appointment.therapist,
        store.rules_for_appointment(appointment, kind),
        now,
        ignore_appointment_id=appointment.id,
    )


async def cancel_by_client(
    sessionmaker: async_sessionmaker[AsyncSession],
    token: str,
    now: dt.datetime,
    *,
    source_ip: str | None = None,
) -> int:
    """Cancel the manage link's appointment; returns its id.

    Withdraws its pending e-mails (reminders included) and queues the cancellation in the
    same transaction.  Raises ``NotFound("link")``, ``NotChangeable`` or ``TooLate``.
    """
    async with store.write_transaction(sessionmaker) as db:
        appointment = (await _changeable_link(db, token, now)).appointment
        appointment.transition_to(AppointmentStatus.CANCELLED)
        appointment.sequence += 1
        await db.flush()
        _audit(db, now, appointment, "appointment_cancelled", source_ip)
        await outbox.on_cancelled(db, appointment, now)
        return appointment.id


async def reschedule_by_client(
    sessionmaker: async_sessionmaker[AsyncSession],
    token: str,
    new_start: dt.datetime,
    now: dt.datetime,
    *,
    join_grace: dt.timedelta,
    reminder_hours: Sequence[int] = outbox.DEFAULT_REMINDER_HOURS,
    source_ip: str | None = None,
) -> Rescheduled:
    """Move the manage link's appointment to the free slot at ``new_start``.

    The appointment keeps its id, length and buffer; its ``sequence`` goes up.  The old
    manage link stops working and a new one is returned.  The join link is kept (and
    extended) if the therapist's ``keep_join_link_on_reschedule`` says so, else revoked.
    Reminders for the old time are withdrawn and the change is queued for mailing.
    Raises ``NotFound("link")``, ``NotChangeable``, ``TooLate``, ``BookingError("start")``
    (not offered, or the current time) or ``SlotTaken``.
    """
    new_start = aware_utc(new_start, "start")
    try:
        async with store.write_transaction(sessionmaker) as db:
            link = await _changeable_link(db, token, now)
            appointment, therapist = link.appointment, link.therapist
            if new_start == appointment.starts_at:
                raise BookingError("start", "is the appointment's current time")
            rules = store.rules_for_appointment(appointment, link.session_type)
            await booking_slots.require_free(
                db, therapist, rules, new_start, now, moving=appointment.id
            )
            appointment.starts_at = new_start
            appointment.ends_at = new_start + rules.duration
            appointment.sequence += 1
            await db.flush()
            await records.revoke_manage_tokens(db, appointment.id, now)
            manage = await records.issue_manage_token(db, appointment)
            keep = therapist.keep_join_link_on_reschedule
            if keep:
                await records.extend_join_tokens(db, appointment, join_grace=join_grace)
            else:
                await records.revoke_join_tokens(db, appointment.id, now)
            _audit(db, now, appointment, "appointment_rescheduled", source_ip)
            await outbox.on_rescheduled(db, appointment, now, reminder_hours=reminder_hours)
            return Rescheduled(
                appointment.id, manage, appointment.starts_at, appointment.ends_at, keep
            )
    except IntegrityError as exc:
        if not store.is_overlap_violation(exc):
            raise
        raise await _explain_link(sessionmaker, token, new_start, now) from None


async def _changeable_link(db: AsyncSession, token: str, now: dt.datetime) -> ManageLink:
    """The link's appointment, with its therapist's calendar locked, if it may change."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise NotFound("link")
    therapist_id = await db.scalar(
        select(Appointment.therapist_id)
        .join(ManageToken, ManageToken.appointment_id == Appointment.id)
        .where(ManageToken.token_hash == token_hash(token))
    )
    if therapist_id is None:
        raise NotFound("link")
    await store.lock_therapist(db, therapist_id)
    link = await appointment_for_manage_token(db, token, now)  # read again, under the lock
    if link is None:
        raise NotFound("link")
    if link.state is LinkState.STALE:
        raise NotChangeable(f"the appointment is {link.appointment.state.value} or was moved")
    if link.state is LinkState.TOO_LATE:
        raise TooLate(link.therapist.contact_text, link.cutoff_at)
    return link


async def _explain_link(
    sessionmaker: async_sessionmaker[AsyncSession],
    token: str,
    start: dt.datetime,
    now: dt.datetime,
) -> BookingProblem:
    async with sessionmaker() as db:
        link = await appointment_for_manage_token(db, token, now)
        if link is None:
            return SlotTaken([])
        rules = store.rules_for_appointment(link.appointment, link.session_type)
        therapist_id, appointment_id = link.therapist.id, link.appointment.id
    return await booking_slots.explain_taken(
        sessionmaker, therapist_id, rules, start, now, moving=appointment_id
    )


async def _kind_of(db: AsyncSession, appointment: Appointment) -> SessionType | None:
    if appointment.session_type_id is None:
        return None
    return await db.get(SessionType, appointment.session_type_id)


def _audit(
    db: AsyncSession,
    now: dt.datetime,
    appointment: Appointment,
    action: str,
    source_ip: str | None,
) -> None:
    audit.record(
        db,
        at=now,
        actor=Actor.CLIENT,
        actor_id=appointment.client_id,
        action=action,
        record_type="appointment",
        record_id=appointment.id,
        source_ip=source_ip,
    )
