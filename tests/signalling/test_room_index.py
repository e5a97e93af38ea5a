"""The room index keeps rooms, participants and each therapist's appointments in step."""

from __future__ import annotations

import pytest

from signalling import events
from signalling.effects import Handle
from signalling.participants import ADMITTED, ENDED, WAITING, Seat, StateChange
from signalling.room_index import RoomIndex
from tests.signalling.fakes import T0, client_seat, therapist_seat


def index() -> RoomIndex:
    return RoomIndex(lambda: T0, events.Listeners[StateChange]("state change"))


def test_a_seat_gets_its_room_once_and_starts_as_its_role_says() -> None:
    rooms = index()
    host_seat, client = therapist_seat(), client_seat()
    room = rooms.room_for(host_seat)

    host = rooms.create(room, host_seat)
    waiting = rooms.create(rooms.room_for(client), client)

    assert rooms.room_for(client) is room and room.host is host and room.client is waiting
    assert (host.state, waiting.state) == (ADMITTED, WAITING)
    assert rooms.rooms_of("t-1") == [room] and rooms.therapists() == {"t-1"}


def test_whoever_first_comes_to_an_ended_room_starts_ended() -> None:
    rooms = index()
    seat = client_seat()
    room = rooms.room_for(seat)
    room.ended = True

    assert rooms.create(room, seat).state is ENDED


@pytest.mark.parametrize(
    ("seat", "problem"),
    [
        (client_seat("c-1", "a-2"), "someone else's"),
        (client_seat("c-9", "a-1", "t-2"), "another therapist"),
        (client_seat("c-9", "a-1"), "already has a client"),
    ],
)
def test_a_seat_that_contradicts_what_is_known_is_refused(seat: Seat, problem: str) -> None:
    rooms = index()
    first = client_seat()
    rooms.create(rooms.room_for(first), first)

    with pytest.raises(ValueError, match=problem):
        rooms.room_for(seat)


def test_pruning_forgets_rooms_nobody_is_in_and_dropping_forgets_a_therapists_rooms() -> None:
    rooms = index()
    for seat in (
        client_seat("c-1", "a-1"),
        client_seat("c-2", "a-2"),
        client_seat("c-3", "a-3", "t-2"),
    ):
        rooms.create(rooms.room_for(seat), seat)
    rooms.participants["c-1"].handle = Handle("c-1", "tok")  # connected: kept

    assert sorted(room.appointment for room in rooms.prune()) == ["a-2", "a-3"]
    assert rooms.therapists() == {"t-1"} and set(rooms.participants) == {"c-1"}
    assert not rooms.has_rooms("t-2")

    assert rooms.drop("t-1") == 1
    assert rooms.rooms == {} and rooms.participants == {} and rooms.therapists() == set()
