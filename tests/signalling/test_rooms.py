"""The waiting room, as clients and therapists experience it."""

from __future__ import annotations

import datetime as dt

import pytest

from signalling.effects import channel_for
from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.messages import (
    Admit,
    End,
    Error,
    Leave,
    Lobby,
    MessageToWaiting,
    PeerJoined,
    SendBack,
    SentBack,
    TextMessage,
    Waiting,
    Welcome,
)
from signalling.participants import Seat
from signalling.parts import IceServer, ParticipantState, Role
from signalling.views import STATUS_EARLY, STATUS_SENT_BACK, STATUS_WAITING
from tests.signalling.fakes import (
    T0,
    Board,
    client_seat,
    errors,
    in_call,
    therapist_seat,
)

WAITING = ParticipantState.WAITING
ADMITTED = ParticipantState.ADMITTED
IN_CALL = ParticipantState.IN_CALL
LEFT = ParticipantState.LEFT
ENDED = ParticipantState.ENDED


async def test_a_client_who_joins_is_welcomed_into_the_waiting_room(board: Board) -> None:
    ice = (IceServer(urls=("stun:stun.example.org",)),)
    client = await board.join(client_seat(welcome="Hello there."), ice_servers=ice)

    assert client.connection.types() == ["welcome", "waiting"]
    welcome = client.connection.last(Welcome)
    assert (welcome.role, welcome.state, welcome.polite) == (Role.CLIENT, WAITING, True)
    assert (welcome.participant, welcome.appointment, welcome.ice_servers) == ("c-1", "a-1", ice)
    assert client.connection.last(Waiting) == Waiting(welcome="Hello there.", status=STATUS_WAITING)


async def test_the_therapist_is_admitted_on_joining_and_sees_the_lobby(board: Board) -> None:
    await board.join(client_seat())
    therapist = await board.join(therapist_seat())

    assert therapist.connection.types() == ["welcome", "lobby"]
    welcome = therapist.connection.last(Welcome)
    assert (welcome.role, welcome.state, welcome.polite) == (Role.THERAPIST, ADMITTED, False)
    (entry,) = therapist.connection.last(Lobby).participants
    assert (entry.participant, entry.state, entry.online) == ("c-1", WAITING, True)


async def test_early_arrival_is_not_admitted_automatically(board: Board) -> None:
    board.clock.now = T0 - dt.timedelta(minutes=20)
    client = await board.join(client_seat())
    await board.join(therapist_seat())
    board.clock.advance(minutes=30)
    await board.join(therapist_seat())  # the therapist reloads the page after the start

    assert client.connection.last(Waiting).status == STATUS_EARLY
    assert board.state("c-1") is WAITING
    assert client.connection.types() == ["welcome", "waiting"]


async def test_admit_lets_the_client_in_and_starts_the_call(board: Board) -> None:
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())
    therapist.connection.clear()

    await board.switchboard.admit(therapist.handle, "c-1")

    assert client.connection.types()[-2:] == ["admitted", "peer-joined"]
    assert client.connection.last(PeerJoined) == PeerJoined(
        participant="h-1", role=Role.THERAPIST, name="Sam Rivera"
    )
    assert therapist.connection.types() == ["peer-joined", "lobby"]
    assert therapist.connection.last(PeerJoined).participant == "c-1"
    assert therapist.connection.last(Lobby).participants[0].state is IN_CALL
    assert (board.state("h-1"), board.state("c-1")) == (IN_CALL, IN_CALL)


async def test_an_admitted_client_waits_for_the_therapist_to_join(board: Board) -> None:
    other = await board.join(therapist_seat("h-2", "a-2"))
    client = await board.join(client_seat())
    await board.switchboard.admit(other.handle, "c-1")  # from the therapist's other page
    assert client.connection.types()[-1] == "admitted"
    assert board.state("c-1") is ADMITTED

    therapist = await board.join(therapist_seat())

    assert client.connection.types()[-1] == "peer-joined"
    assert therapist.connection.types() == ["welcome", "peer-joined", "lobby"]


@pytest.mark.parametrize(
    "command",
    [
        Admit(participant="c-x", id="q"),
        SendBack(participant="c-x", id="q"),
        TextMessage(participant="c-x", text="hi", id="q"),
        Admit(participant="nobody", id="q"),
        Admit(participant="h-x", id="q"),
        End(appointment="a-x", id="q"),
        End(appointment="nothing", id="q"),
    ],
    ids=lambda m: f"{m.TYPE} {getattr(m, 'participant', getattr(m, 'appointment', ''))}",
)
@pytest.mark.parametrize("via", ["call page", "dashboard"])
async def test_a_therapist_cannot_act_on_another_therapists_appointment(
    board: Board, command: Admit, via: str
) -> None:
    therapist = await (board.join(therapist_seat()) if via == "call page" else board.watch())
    stranger = await board.join(client_seat("c-x", "a-x", therapist="t-2"))
    await board.join(therapist_seat("h-x", "a-x", therapist="t-2"))

    await board.switchboard.receive(therapist.handle, command)

    (error,) = therapist.connection.of(Error)
    assert (error.error, error.id) == (ErrorCode.NOT_FOUND, "q")
    assert "c-x" not in error.value and "a-x" not in error.value
    assert board.state("c-x") is WAITING
    assert stranger.connection.types() == ["welcome", "waiting"]


async def test_a_client_may_not_act_as_the_therapist(board: Board) -> None:
    client = await board.join(client_seat())
    await board.switchboard.receive(client.handle, Admit(participant="c-1", id="q"))
    await board.switchboard.receive(client.handle, End(appointment="a-1"))
    assert errors(client) == [(ErrorCode.FORBIDDEN, "q"), (ErrorCode.FORBIDDEN, None)]
    assert board.state("c-1") is WAITING
    with pytest.raises(ProtocolError, match="only the therapist"):
        await board.switchboard.end(client.handle, "a-1")


async def test_a_second_connection_replaces_the_first(board: Board) -> None:
    first = await board.join(client_seat())
    second = await board.join(client_seat())

    assert errors(first) == [(ErrorCode.REPLACED, None)]
    assert first.connection.close_code == CloseCode.REPLACED
    assert "newer connection" in first.connection.close_reason
    assert second.connection.types() == ["welcome", "waiting"]
    assert not second.connection.closed

    await board.switchboard.receive(first.handle, Leave())  # a late frame from the old tab
    await board.switchboard.disconnect(first.handle)  # and its socket finally going away
    assert board.state("c-1") is WAITING
    assert not second.connection.closed
    assert first.connection.late == []


async def test_a_waiting_client_who_drops_off_has_left_and_waits_again_on_return(
    board: Board,
) -> None:
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())
    await board.switchboard.disconnect(client.handle)
    assert board.state("c-1") is LEFT
    assert therapist.connection.last(Lobby).participants == ()

    board.clock.advance(minutes=3)
    back = await board.join(client_seat())
    assert back.connection.last(Welcome).state is WAITING
    (entry,) = therapist.connection.last(Lobby).participants
    assert entry.waiting_since == T0 + dt.timedelta(minutes=3)


async def test_send_back_returns_the_client_to_the_waiting_room(board: Board) -> None:
    therapist, client = await in_call(board)
    board.clock.advance(minutes=10)
    await board.switchboard.send_back(therapist.handle, "c-1")

    assert client.connection.sent == [
        SentBack(),
        Waiting(welcome="Make yourself comfortable.", status=STATUS_SENT_BACK),
    ]
    assert therapist.connection.types() == ["peer-left", "lobby"]
    (entry,) = therapist.connection.last(Lobby).participants
    assert (entry.state, entry.waiting_since) == (WAITING, T0 + dt.timedelta(minutes=10))
    assert (board.state("h-1"), board.state("c-1")) == (ADMITTED, WAITING)


async def test_sending_back_a_client_who_dropped_off_counts_as_left(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.disconnect(client.handle)
    await board.switchboard.send_back(therapist.handle, "c-1")
    assert board.state("c-1") is LEFT
    back = await board.join(client_seat())
    assert back.connection.last(Welcome).state is WAITING


async def test_a_message_reaches_a_waiting_client_only(board: Board) -> None:
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())
    therapist.connection.clear()

    await board.switchboard.receive(therapist.handle, TextMessage(participant="c-1", text="Soon!"))
    assert client.connection.sent[-1] == MessageToWaiting(text="Soon!")
    assert therapist.connection.sent == []  # no lobby: nothing changed

    await board.switchboard.admit(therapist.handle, "c-1")
    await board.switchboard.receive(
        therapist.handle, TextMessage(participant="c-1", text="Hi", id="m")
    )
    assert errors(therapist) == [(ErrorCode.CONFLICT, "m")]


async def test_admitting_twice_changes_nothing(board: Board) -> None:
    therapist, client = await in_call(board)
    changes = len(board.changes)
    await board.switchboard.admit(therapist.handle, "c-1")
    await board.switchboard.send_back(therapist.handle, "c-1")
    await board.switchboard.send_back(therapist.handle, "c-1")
    assert client.connection.types() == ["sent-back", "waiting"]
    assert len(board.changes) == changes + 2  # h-1 in_call -> admitted, c-1 in_call -> waiting


async def test_admitting_a_client_who_left_is_a_conflict(board: Board) -> None:
    therapist = await board.join(therapist_seat())
    client = await board.join(client_seat())
    await board.switchboard.receive(client.handle, Leave())
    await board.switchboard.receive(therapist.handle, Admit(participant="c-1", id="a"))
    assert errors(therapist) == [(ErrorCode.CONFLICT, "a")]
    assert "left" in therapist.connection.last(Error).value


@pytest.mark.parametrize(
    ("first", "second", "problem"),
    [
        (client_seat(), client_seat("c-1", "a-2"), "someone else's"),
        (client_seat(), client_seat("c-2"), "already has a client"),
        (client_seat(), client_seat("c-2", therapist="t-2"), "another therapist"),
        (client_seat(), therapist_seat("c-1"), "someone else's"),
    ],
)
async def test_a_seat_that_contradicts_the_registry_is_refused(
    board: Board, first: Seat, second: Seat, problem: str
) -> None:
    joined = await board.join(first)
    with pytest.raises(ValueError, match=problem):
        await board.join(second)
    assert board.switchboard.is_local(joined.handle)
    if second.appointment != first.appointment:
        assert board.registry.room(second.appointment) is None
    assert board.fanout.subscribers(channel_for(second.participant)) == int(
        second.participant == first.participant
    )


async def test_prune_forgets_rooms_no_one_needs(board: Board) -> None:
    therapist, client = await in_call(board)
    gone = await board.join(client_seat("c-2", "a-2"))
    await board.switchboard.disconnect(gone.handle)
    ended = await board.join(therapist_seat("h-3", "a-3"))
    await board.switchboard.end(ended.handle, "a-3")
    await board.switchboard.disconnect(client.handle)
    await board.switchboard.disconnect(therapist.handle)

    assert board.registry.prune() == 2  # a-2 (client left) and a-3 (ended)
    assert board.registry.room("a-1") is not None  # c-1 is still admitted
    assert board.registry.participant("c-2") is None
