"""The call: who may signal to whom, dropping off and coming back, leaving and ending."""

from __future__ import annotations

import pytest

from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.messages import (
    Answer,
    Candidate,
    End,
    Ended,
    Leave,
    Lobby,
    Offer,
    PeerLeft,
    Welcome,
)
from signalling.parts import ParticipantState, Role
from tests.signalling.fakes import Board, client_seat, errors, in_call, media, therapist_seat

WAITING = ParticipantState.WAITING
ADMITTED = ParticipantState.ADMITTED
IN_CALL = ParticipantState.IN_CALL
LEFT = ParticipantState.LEFT
ENDED = ParticipantState.ENDED


async def test_an_unadmitted_client_gets_no_media_signalling(board: Board) -> None:
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())

    await board.switchboard.receive(therapist.handle, Offer(sdp="v=0", id="o-1"))
    await board.switchboard.receive(client.handle, Offer(sdp="v=0", id="o-2"))
    await board.switchboard.receive(client.handle, Candidate(candidate=None, id="c-9"))

    assert media(client) == media(therapist) == []
    assert errors(client) == [(ErrorCode.NOT_ADMITTED, "o-2"), (ErrorCode.NOT_ADMITTED, "c-9")]
    assert errors(therapist) == []  # an admitted sender's early offer is simply dropped


async def test_media_signalling_is_relayed_between_the_two_in_the_call_only(board: Board) -> None:
    therapist, client = await in_call(board)
    next_client = await board.join(client_seat("c-2", "a-2"))
    next_therapist_page = await board.join(therapist_seat("h-2", "a-2"))

    await board.switchboard.receive(therapist.handle, Offer(sdp="v=0 offer", id="m-1"))
    await board.switchboard.receive(client.handle, Answer(sdp="v=0 answer"))
    await board.switchboard.receive(client.handle, Candidate(candidate=None))

    assert media(client) == [Offer(sdp="v=0 offer")]  # without the sender's id
    assert media(therapist) == [Answer(sdp="v=0 answer"), Candidate(candidate=None)]
    for bystander in (next_client, next_therapist_page):
        assert media(bystander) == []


async def test_reconnecting_during_a_call_keeps_the_admission(board: Board) -> None:
    therapist, client = await in_call(board)

    await board.switchboard.disconnect(client.handle)
    assert therapist.connection.types() == ["peer-left", "lobby"]
    (entry,) = therapist.connection.last(Lobby).participants
    assert (entry.state, entry.online) == (ADMITTED, False)

    back = await board.join(client_seat())
    assert back.connection.last(Welcome).state is ADMITTED
    assert back.connection.types() == ["welcome", "peer-joined"]
    assert therapist.connection.types()[-2:] == ["peer-joined", "lobby"]
    assert board.state("c-1") is IN_CALL


async def test_replacing_a_connection_during_a_call_restarts_the_call(board: Board) -> None:
    therapist, client = await in_call(board)
    replacement = await board.join(client_seat())

    assert client.connection.close_code == CloseCode.REPLACED
    assert therapist.connection.types() == ["peer-left", "peer-joined"]
    assert replacement.connection.types() == ["welcome", "peer-joined"]
    assert board.state("c-1") is IN_CALL


async def test_a_client_who_left_must_be_admitted_again(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.receive(client.handle, Leave())
    assert client.connection.close_code == CloseCode.NORMAL
    assert therapist.connection.types()[0] == "peer-left"

    back = await board.join(client_seat())
    assert back.connection.types() == ["welcome", "waiting"]
    assert board.state("c-1") is WAITING


async def test_a_therapist_who_leaves_finds_the_client_still_admitted(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.leave(therapist.handle)
    assert client.connection.sent == [PeerLeft(participant="h-1", role=Role.THERAPIST)]
    assert (board.state("h-1"), board.state("c-1")) == (LEFT, ADMITTED)

    back = await board.join(therapist_seat())
    assert back.connection.last(Welcome).state is ADMITTED
    assert client.connection.types()[-1] == "peer-joined"
    assert board.state("c-1") is IN_CALL


async def test_end_ends_the_appointment_for_both(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.receive(therapist.handle, End(appointment="a-1"))

    for joined in (therapist, client):
        assert joined.connection.sent == [Ended(appointment="a-1")]
        assert joined.connection.close_code == CloseCode.ENDED
    assert (board.state("h-1"), board.state("c-1")) == (ENDED, ENDED)


async def test_ended_is_final(board: Board) -> None:
    therapist, _ = await in_call(board)
    await board.switchboard.end(therapist.handle, "a-1")

    back = await board.join(client_seat())
    assert back.connection.types() == ["welcome", "ended"]
    assert back.connection.last(Welcome).state is ENDED
    assert back.connection.close_code == CloseCode.ENDED

    other_page = await board.join(therapist_seat("h-2", "a-2"))
    await board.switchboard.end(other_page.handle, "a-1")  # again: nothing changes
    with pytest.raises(ProtocolError) as caught:
        await board.switchboard.admit(other_page.handle, "c-1")
    assert caught.value.code is ErrorCode.CONFLICT
    assert other_page.connection.last(Lobby).participants == ()


async def test_a_client_arriving_after_the_end_is_told_at_once(board: Board) -> None:
    therapist = await board.join(therapist_seat())
    await board.switchboard.end(therapist.handle, "a-1")
    late = await board.join(client_seat())
    assert late.connection.types() == ["welcome", "ended"]
    assert board.state("c-1") is ENDED


async def test_each_state_change_is_reported_once(board: Board) -> None:
    therapist, _ = await in_call(board)
    await board.switchboard.end(therapist.handle, "a-1")
    seen = [(c.participant, c.old, c.new) for c in board.changes]
    assert seen == [
        ("h-1", None, ADMITTED),
        ("c-1", None, WAITING),
        ("c-1", WAITING, ADMITTED),
        ("h-1", ADMITTED, IN_CALL),
        ("c-1", ADMITTED, IN_CALL),
        ("c-1", IN_CALL, ENDED),
        ("h-1", IN_CALL, ENDED),
    ]
