"""``RoomIndex``: where the registry keeps its rooms and their participants.

Rooms by appointment, participants by id, and each therapist's appointments, kept in step:
a seat's room and participant are made on first use (once the seat is known not to
contradict what is known), and rooms nobody needs any more are pruned, or all of one
therapist's dropped when another instance holds them now.  The rules for moving between
states are ``signalling.rooms``'s; this only keeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from signalling import events
from signalling.call import Room
from signalling.participants import (
    ADMITTED,
    ENDED,
    IN_CALL,
    WAITING,
    Participant,
    Seat,
    StateChange,
)
from signalling.parts import Role


class RoomIndex:
    """Every room of this instance and its participants.

    ``rooms`` and ``participants`` are the index's own dictionaries, to be read (the
    registry looks a room up for every relayed message); only the index changes them."""

    def __init__(
        self, clock: Callable[[], dt.datetime], notify: events.Listeners[StateChange]
    ) -> None:
        self._clock = clock
        self._notify = notify
        self.rooms: dict[str, Room] = {}
        self.participants: dict[str, Participant] = {}
        self._by_therapist: dict[str, set[str]] = {}

    def has_rooms(self, therapist: str) -> bool:
        return therapist in self._by_therapist

    def therapists(self) -> set[str]:
        """The therapists with a room here."""
        return set(self._by_therapist)

    def rooms_of(self, therapist: str) -> list[Room]:
        """The therapist's rooms, in the order of their appointments."""
        return [self.rooms[a] for a in sorted(self._by_therapist.get(therapist, ()))]

    def room_for(self, seat: Seat) -> Room:
        """The seat's room, made if need be, once the seat is known not to contradict it
        (``ValueError`` if it does: another owner for the appointment, another participant
        in the same role)."""
        known = self.participants.get(seat.participant)
        if known is not None and (known.appointment, known.role) != (seat.appointment, seat.role):
            raise ValueError(f"participant {seat.participant} is someone else's")
        room = self.rooms.get(seat.appointment)
        if room is None:
            room = self.rooms[seat.appointment] = Room(seat.appointment, seat.therapist)
            self._by_therapist.setdefault(seat.therapist, set()).add(seat.appointment)
        elif room.therapist != seat.therapist:
            raise ValueError(f"appointment {seat.appointment} belongs to another therapist")
        other = room.member(seat.role)
        if other is not None and other.id != seat.participant:
            raise ValueError(f"appointment {seat.appointment} already has a {seat.role}")
        return room

    def create(self, room: Room, seat: Seat) -> Participant:
        """The seat's participant, new in ``room``: a therapist or an admitted client starts
        admitted, another client waiting, anyone in an ended room ended."""
        state = ADMITTED if seat.role is Role.THERAPIST or seat.admitted else WAITING
        if room.ended:
            state = ENDED
        participant = Participant(seat, state, since=self._clock(), on_change=self._notify)
        self.participants[seat.participant] = participant
        if seat.role is Role.THERAPIST:
            room.host = participant
        else:
            room.client = participant
        return participant

    def prune(self) -> list[Room]:
        """Forget the rooms nobody is connected to and no client is admitted in; those."""
        gone = [
            room
            for room in self.rooms.values()
            if not any(p.online for p in room.members())
            and (room.client is None or room.client.state not in (ADMITTED, IN_CALL))
        ]
        for room in gone:
            del self.rooms[room.appointment]
            for member in room.members():
                del self.participants[member.id]
            appointments = self._by_therapist[room.therapist]
            appointments.discard(room.appointment)
            if not appointments:
                del self._by_therapist[room.therapist]
        return gone

    def drop(self, therapist: str) -> int:
        """Drop every room of ``therapist``; how many there were."""
        appointments = self._by_therapist.pop(therapist, set())
        for appointment in appointments:
            room = self.rooms.pop(appointment)
            for member in room.members():
                self.participants.pop(member.id, None)
        return len(appointments)
