"""Coming back after a dropped connection: admitted participants are kept for a while, and
a client whose admission is stored comes back admitted."""

from __future__ import annotations

import dataclasses
import datetime as dt

from signalling import events
from signalling.messages import Lobby, PeerLeft, Welcome
from signalling.parts import ParticipantState
from tests.signalling.fakes import Board, client_seat, in_call

ADMITTED = ParticipantState.ADMITTED
IN_CALL = ParticipantState.IN_CALL
LEFT = ParticipantState.LEFT
WAITING = ParticipantState.WAITING
LIMIT = dt.timedelta(minutes=2)


async def test_an_admitted_client_who_drops_off_stays_admitted_and_the_therapist_is_told(
    board: Board,
) -> None:
    therapist, client = await in_call(board)

    await board.switchboard.disconnect(client.handle)

    assert board.state("c-1") is ADMITTED
    assert therapist.connection.last(PeerLeft).participant == "c-1"
    entry = therapist.connection.last(Lobby).participants[0]
    assert (entry.state, entry.online) == (ADMITTED, False)


async def test_a_client_who_comes_back_within_the_limit_is_in_the_call_without_admission(
    board: Board,
) -> None:
    _, client = await in_call(board)
    await board.switchboard.disconnect(client.handle)
    board.clock.advance(seconds=119)
    await board.switchboard.give_up(LIMIT)

    again = await board.join(client_seat())

    assert again.connection.last(Welcome).state is ADMITTED
    assert again.connection.types()[-1] == "peer-joined"
    assert "waiting" not in again.connection.types()
    assert board.state("c-1") is IN_CALL
    board.clock.advance(minutes=5)
    await board.switchboard.give_up(LIMIT)
    assert board.state("c-1") is IN_CALL


async def test_after_the_limit_without_a_reconnect_the_client_has_left_and_must_wait_again(
    board: Board,
) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.disconnect(client.handle)
    therapist.connection.clear()
    board.clock.advance(seconds=120)

    await board.switchboard.give_up(LIMIT)

    assert board.state("c-1") is LEFT
    assert therapist.connection.last(Lobby).participants == ()
    assert board.events[-1] == events.Left("a-1", "c-1", client_seat().role, "t-1")
    again = await board.join(client_seat())
    assert again.connection.last(Welcome).state is WAITING


async def test_a_therapist_who_never_comes_back_has_left_too(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.disconnect(therapist.handle)
    board.clock.advance(minutes=3)

    await board.switchboard.give_up(LIMIT)

    assert board.state("h-1") is LEFT
    assert client.connection.last(PeerLeft).participant == "h-1"
    assert board.state("c-1") is ADMITTED


async def test_a_client_whose_admission_is_stored_comes_back_admitted_to_a_new_registry(
    board: Board,
) -> None:
    seat = dataclasses.replace(client_seat(), admitted=True)

    client = await board.join(seat)

    assert client.connection.last(Welcome).state is ADMITTED
    assert "waiting" not in client.connection.types()
