"""A participant of one appointment and the state machine it moves through.

::

    waiting ──admit──> admitted <──peer arrives / goes──> in_call
       ^                  │  │                               │  │
       └──── send-back ───┘  └──────────── leave ──────────> left
                                                             │
    left ──rejoin──> waiting (client) / admitted (therapist)
    any state but ended ──end──> ended            (ended is final)

Every change is logged as ``old -> new`` and reported to a listener; setting the state it
already has changes nothing and reports nothing.  A transition the table does not allow
raises ``IllegalTransition`` naming the state the participant is in.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from signalling.effects import Handle
from signalling.parts import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_WELCOME_CHARS,
    DeviceSummary,
    ParticipantState,
    Role,
)

log = logging.getLogger(__name__)

WAITING = ParticipantState.WAITING
ADMITTED = ParticipantState.ADMITTED
IN_CALL = ParticipantState.IN_CALL
LEFT = ParticipantState.LEFT
ENDED = ParticipantState.ENDED

ALLOWED_TRANSITIONS: dict[ParticipantState, frozenset[ParticipantState]] = {
    WAITING: frozenset({ADMITTED, LEFT, ENDED}),
    ADMITTED: frozenset({IN_CALL, WAITING, LEFT, ENDED}),
    IN_CALL: frozenset({ADMITTED, WAITING, LEFT, ENDED}),
    LEFT: frozenset({WAITING, ADMITTED, ENDED}),
    ENDED: frozenset(),
}


class IllegalTransition(Exception):
    """A participant was asked to move to a state its current state does not allow."""

    def __init__(
        self, participant: str, current: ParticipantState, requested: ParticipantState
    ) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"participant {participant} is {current.value}: cannot become {requested.value} "
            f"(from {current.value} it may become {allowed})"
        )
        self.participant = participant
        self.current = current
        self.requested = requested


@dataclass(frozen=True)
class StateChange:
    """A participant's state changed; ``old`` is ``None`` when the participant first appears."""

    participant: str
    role: Role
    appointment: str
    old: ParticipantState | None
    new: ParticipantState


def _check_text(name: str, value: str, limit: int, *, empty: bool = False) -> None:
    if len(value) > limit or (not value and not empty):
        raise ValueError(f"seat {name} must be {'0' if empty else '1'}-{limit} characters")


@dataclass(frozen=True, kw_only=True)
class Seat:
    """Who a connection speaks for, as the server established it from the cookie.

    ``therapist`` is the id of the therapist who owns the appointment; ``name`` is the
    participant's display name; ``welcome`` the therapist's waiting-room text (clients only).
    """

    participant: str
    role: Role
    appointment: str
    therapist: str
    name: str
    start: dt.datetime
    end: dt.datetime
    welcome: str = ""
    #: Whether storage says the client was admitted (and not sent back since): after a
    #: restart, or on another instance, they come back admitted instead of waiting.
    admitted: bool = False

    def __post_init__(self) -> None:
        _check_text("participant", self.participant, MAX_ID_CHARS)
        _check_text("appointment", self.appointment, MAX_ID_CHARS)
        _check_text("therapist", self.therapist, MAX_ID_CHARS)
        _check_text("name", self.name, MAX_NAME_CHARS)
        _check_text("welcome", self.welcome, MAX_WELCOME_CHARS, empty=True)
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("seat start and end must be timezone-aware")


class Participant:
    """One participant of one appointment: its state, and its live connection if any."""

    def __init__(
        self,
        seat: Seat,
        state: ParticipantState,
        *,
        since: dt.datetime,
        on_change: Callable[[StateChange], None],
    ) -> None:
        self.seat = seat
        self._state = state
        self._on_change = on_change
        #: The live connection, or ``None`` while the participant is not connected.
        self.handle: Handle | None = None
        self.devices: DeviceSummary | None = None
        #: When the participant last entered the waiting room.
        self.waiting_since = since
        #: When an admitted participant's connection went away (None while connected).
        self.offline_since: dt.datetime | None = None
        log.info("participant %s: joined as %s", self.id, state.value)
        on_change(StateChange(self.id, self.role, self.appointment, None, state))

    def __repr__(self) -> str:
        online = "online" if self.online else "offline"
        return f"<Participant {self.id} {self.role.value} {self._state.value} {online}>"

    @property
    def id(self) -> str:
        return self.seat.participant

    @property
    def role(self) -> Role:
        return self.seat.role

    @property
    def appointment(self) -> str:
        return self.seat.appointment

    @property
    def state(self) -> ParticipantState:
        return self._state

    @property
    def online(self) -> bool:
        return self.handle is not None

    def transition(self, new: ParticipantState) -> bool:
        """Move to ``new``; return whether anything changed.

        Raises ``IllegalTransition`` if ``ALLOWED_TRANSITIONS`` does not allow it.
        """
        old = self._state
        if new is old:
            return False
        if new not in ALLOWED_TRANSITIONS[old]:
            raise IllegalTransition(self.id, old, new)
        self._state = new
        log.info("participant %s: %s -> %s", self.id, old.value, new.value)
        self._on_change(StateChange(self.id, self.role, self.appointment, old, new))
        return True
