"""Text chat and media state in the call: relayed to the other person at once, kept nowhere."""

from __future__ import annotations

from signalling.errors import ErrorCode
from signalling.messages import Chat, MediaState, VideoState
from tests.signalling.fakes import Board, client_seat, errors, in_call, therapist_seat


async def test_a_chat_line_reaches_the_other_person_both_ways(board: Board) -> None:
    therapist, client = await in_call(board)

    await board.switchboard.receive(client.handle, Chat(text="My audio dropped", id="c1"))
    await board.switchboard.receive(therapist.handle, Chat(text="I can read you", id="t1"))

    assert therapist.connection.of(Chat) == [Chat(text="My audio dropped")]
    assert client.connection.of(Chat) == [Chat(text="I can read you")]
    assert errors(therapist) == errors(client) == []


async def test_a_chat_line_with_nobody_in_the_call_is_refused_as_undelivered(
    board: Board,
) -> None:
    therapist = await board.join(therapist_seat())
    waiting = await board.join(client_seat())

    await board.switchboard.receive(therapist.handle, Chat(text="Hello?", id="t1"))
    await board.switchboard.receive(waiting.handle, Chat(text="Anyone?", id="c1"))

    assert errors(therapist) == [(ErrorCode.CONFLICT, "t1")]
    assert errors(waiting) == [(ErrorCode.CONFLICT, "c1")]
    assert waiting.connection.of(Chat) == therapist.connection.of(Chat) == []


async def test_the_server_keeps_no_chat_line(board: Board) -> None:
    _, client = await in_call(board)
    await board.switchboard.receive(client.handle, Chat(text="a private line"))

    assert "a private line" not in repr(vars(board.registry))
    assert not any("private" in repr(event) for event in board.events)


async def test_what_each_side_sends_is_relayed_so_a_paused_camera_shows_as_paused(
    board: Board,
) -> None:
    therapist, client = await in_call(board)

    await board.switchboard.receive(
        client.handle, MediaState(video=VideoState.PAUSED, screen=False, id="m1")
    )
    await board.switchboard.receive(therapist.handle, MediaState(video=VideoState.ON, screen=True))

    assert therapist.connection.of(MediaState) == [
        MediaState(video=VideoState.PAUSED, screen=False)
    ]
    assert client.connection.of(MediaState) == [MediaState(video=VideoState.ON, screen=True)]
