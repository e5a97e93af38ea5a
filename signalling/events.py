"""What happened in the rooms, one event per act, for the server's audit trail.

``Registry.add_event_listener`` calls its listener with one ``RoomEvent`` per act, after the
act took effect, so the server can record each one as it comes:

- ``Joined``: a participant's connection was accepted (the first time, again after leaving,
  a reconnection or a replacement).  Not for an appointment that has ended (that socket is
  told ``ended`` and closed), and not for a therapist's lobby socket, which is no
  participant.
- ``Admitted``, ``SentBack``: the therapist let a client in, or moved them back (a client
  who was not connected when sent back has, in effect, left: still one ``SentBack``).
- ``Left``: a participant said ``leave``.  A connection that merely goes away is no event.
- ``Ended``: the therapist ended the appointment: one event per appointment, however many
  participants it had.

``by_therapist`` is the id of the therapist who acted, from their call page or their
dashboard alike.  A command that changes nothing (admitting a client twice, ending an ended
appointment) or is refused reports nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from signalling.parts import Role

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Joined:
    """``participant`` (of ``role``) connected to ``appointment``, owned by ``therapist``."""

    appointment: str
    participant: str
    role: Role
    therapist: str


@dataclass(frozen=True)
class Admitted:
    """``by_therapist`` let the client ``participant`` into ``appointment``."""

    appointment: str
    participant: str
    by_therapist: str


@dataclass(frozen=True)
class SentBack:
    """``by_therapist`` moved the client ``participant`` back to the waiting room."""

    appointment: str
    participant: str
    by_therapist: str


@dataclass(frozen=True)
class Left:
    """``participant`` (of ``role``) said ``leave``; ``therapist`` owns ``appointment``."""

    appointment: str
    participant: str
    role: Role
    therapist: str


@dataclass(frozen=True)
class Ended:
    """``by_therapist`` ended ``appointment``."""

    appointment: str
    by_therapist: str


RoomEvent = Joined | Admitted | SentBack | Left | Ended


class Listeners(Generic[T]):
    """Callbacks to tell of each ``T`` in turn; one that fails is logged, not the caller's
    problem, and does not keep the item from the others."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._listeners: list[Callable[[T], None]] = []

    def add(self, listener: Callable[[T], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, item: T) -> None:
        for listener in self._listeners:
            try:
                listener(item)
            except Exception:
                log.exception("%s listener failed on %s", self._what, item)
