"""The therapist's dashboard: a lobby socket that sees and runs the waiting room, never a call."""

from __future__ import annotations

import pytest

from signalling.effects import channel_for, lobby_channel_for
from signalling.errors import CloseCode, ErrorCode
from signalling.events import Ended as EndedEvent
from signalling.lobby import Watcher
from signalling.messages import (
    Admit,
    Candidate,
    End,
    Ended,
    Leave,
    Lobby,
    MessageToWaiting,
    Offer,
    Ping,
    Pong,
    SendBack,
    SentBack,
    TextMessage,
    Waiting,
    Welcome,
)
from signalling.parts import ParticipantState, Role
from signalling.views import STATUS_SENT_BACK
from tests.signalling.fakes import (
    CALL_ONLY,
    Board,
    Joined,
    client_seat,
    errors,
    in_call,
    media,
    therapist_seat,
    watcher,
)

WAITING = ParticipantState.WAITING
ADMITTED = ParticipantState.ADMITTED
IN_CALL = ParticipantState.IN_CALL
ENDED = ParticipantState.ENDED


def call_only(joined: Joined) -> list[str]:
    """What a lobby socket must never be sent: media signalling, peer-joined, peer-left."""
    return [
        t
        for t in joined.connection.types() + [m.TYPE for m in joined.connection.late]
        if t in CALL_ONLY
    ]


def lobby_of(joined: Joined) -> list[tuple[str, ParticipantState]]:
    return [(e.participant, e.state) for e in joined.connection.last(Lobby).participants]


async def test_a_lobby_socket_is_welcomed_as_no_participant_and_sent_the_lobby(
    board: Board,
) -> None:
    await board.join(client_seat())
    dashboard = await board.watch()

    assert dashboard.connection.types() == ["welcome", "lobby"]
    welcome = dashboard.connection.last(Welcome)
    assert welcome.lobby and welcome.role is Role.THERAPIST
    assert (welcome.participant, welcome.appointment, welcome.state) == (None, None, None)
    assert (welcome.ice_servers, welcome.polite) == ((), False)
    assert lobby_of(dashboard) == [("c-1", WAITING)]
    assert [c.participant for c in board.changes] == ["c-1"]  # the dashboard is no participant


async def test_a_lobby_socket_with_no_live_room_is_sent_an_empty_lobby(board: Board) -> None:
    dashboard = await board.watch()
    assert dashboard.connection.types() == ["welcome", "lobby"]
    assert lobby_of(dashboard) == []


async def test_the_lobby_spans_the_therapists_appointments_and_no_one_elses(board: Board) -> None:
    dashboard = await board.watch()
    await board.join(client_seat("c-1", "a-1"))
    await board.join(client_seat("c-2", "a-2"))
    await board.join(client_seat("c-9", "a-9", therapist="t-2"))

    assert dashboard.connection.types() == ["welcome", "lobby", "lobby", "lobby"]
    assert lobby_of(dashboard) == [("c-1", WAITING), ("c-2", WAITING)]


async def test_an_open_dashboard_does_not_put_the_therapist_in_the_room(board: Board) -> None:
    dashboard = await board.watch()
    client = await board.join(client_seat())

    await board.switchboard.receive(dashboard.handle, Admit(participant="c-1"))

    assert client.connection.types() == ["welcome", "waiting", "admitted"]
    assert board.state("c-1") is ADMITTED
    assert lobby_of(dashboard) == [("c-1", ADMITTED)]

    therapist = await board.join(therapist_seat())  # the call page opens
    assert client.connection.types()[-1] == "peer-joined"
    assert therapist.connection.types() == ["welcome", "peer-joined", "lobby"]
    assert lobby_of(dashboard) == [("c-1", IN_CALL)]
    assert call_only(dashboard) == []


async def test_the_dashboard_sends_back_and_messages_like_the_call_page(board: Board) -> None:
    therapist, client = await in_call(board)
    dashboard = await board.watch()
    dashboard.connection.clear()

    await board.switchboard.receive(dashboard.handle, SendBack(participant="c-1"))
    await board.switchboard.receive(
        dashboard.handle, TextMessage(participant="c-1", text="One moment")
    )

    assert client.connection.sent == [
        SentBack(),
        Waiting(welcome="Make yourself comfortable.", status=STATUS_SENT_BACK),
        MessageToWaiting(text="One moment"),
    ]
    assert therapist.connection.types() == ["peer-left", "lobby"]
    assert dashboard.connection.types() == ["lobby"]
    assert lobby_of(dashboard) == [("c-1", WAITING)]


@pytest.mark.parametrize("with_therapist", [True, False], ids=["in a call", "client only"])
async def test_end_from_the_dashboard_ends_the_appointment_for_everyone_in_it(
    board: Board, with_therapist: bool
) -> None:
    in_room = list(await in_call(board)) if with_therapist else [await board.join(client_seat())]
    dashboard = await board.watch()
    for joined in (*in_room, dashboard):
        joined.connection.clear()

    await board.switchboard.receive(dashboard.handle, End(appointment="a-1"))

    for joined in in_room:
        assert joined.connection.sent == [Ended(appointment="a-1")]
        assert joined.connection.close_code == CloseCode.ENDED
        assert board.state(joined.participant) is ENDED
    room = board.registry.room("a-1")
    assert room is not None and room.ended
    assert dashboard.connection.types() == ["lobby"]
    assert lobby_of(dashboard) == []
    assert not dashboard.connection.closed
    assert [e for e in board.events if isinstance(e, EndedEvent)] == [EndedEvent("a-1", "t-1")]


async def test_a_lobby_socket_gets_no_media_and_may_send_none(board: Board) -> None:
    therapist, client = await in_call(board)
    dashboard = await board.watch()

    await board.switchboard.receive(therapist.handle, Offer(sdp="v=0"))
    await board.switchboard.receive(client.handle, Candidate(candidate=None))
    await board.switchboard.receive(dashboard.handle, Offer(sdp="v=0 sneaky", id="o"))
    await board.switchboard.receive(dashboard.handle, Candidate(candidate=None, id="c"))

    assert call_only(dashboard) == []
    assert errors(dashboard) == [(ErrorCode.FORBIDDEN, "o"), (ErrorCode.FORBIDDEN, "c")]
    assert media(client) == [Offer(sdp="v=0")]
    assert media(therapist) == [Candidate(candidate=None)]
    assert not dashboard.connection.closed


async def test_several_dashboards_all_see_the_lobby_and_none_replaces_another(
    board: Board,
) -> None:
    tabs = [await board.watch(label=f"tab {n}") for n in range(3)]
    await board.join(client_seat())
    await board.switchboard.receive(tabs[1].handle, Admit(participant="c-1"))

    for tab in tabs:
        assert tab.connection.types() == ["welcome", "lobby", "lobby", "lobby"]
        assert lobby_of(tab) == [("c-1", ADMITTED)]
        assert not tab.connection.closed and errors(tab) == []


async def test_a_dashboard_that_leaves_is_closed_and_hears_no_more(board: Board) -> None:
    dashboard = await board.watch()
    other_tab = await board.watch()

    await board.switchboard.receive(dashboard.handle, Leave())
    await board.join(client_seat())
    await board.switchboard.receive(dashboard.handle, Admit(participant="c-1"))  # a late frame

    assert dashboard.connection.close_code == CloseCode.NORMAL
    assert dashboard.connection.types() == ["welcome", "lobby"]
    assert dashboard.connection.late == []
    assert board.state("c-1") is WAITING
    assert lobby_of(other_tab) == [("c-1", WAITING)]


async def test_a_dashboard_that_drops_off_releases_its_channel(board: Board) -> None:
    dashboard = await board.watch()
    await board.switchboard.disconnect(dashboard.handle)
    await board.switchboard.disconnect(dashboard.handle)  # twice is harmless
    await board.join(client_seat())

    assert not board.switchboard.is_local(dashboard.handle)
    assert board.fanout.subscribers(lobby_channel_for("t-1")) == 0
    assert board.registry.role_of(dashboard.handle) is None
    assert dashboard.connection.types() == ["welcome", "lobby"]


async def test_a_dashboard_answers_ping(board: Board) -> None:
    dashboard = await board.watch()
    dashboard.connection.clear()
    await board.switchboard.receive(dashboard.handle, Ping(ts=5, id="p"))
    assert dashboard.connection.sent == [Pong(ts=5)]


async def test_a_therapist_whose_id_is_also_a_participant_id_keeps_the_two_apart(
    board: Board,
) -> None:
    dashboard = await board.watch(watcher("c-1"))  # therapist "c-1", of no appointment here
    client = await board.join(client_seat("c-1"))  # participant "c-1", t-1's client

    assert channel_for("c-1") != lobby_channel_for("c-1")
    assert dashboard.connection.types() == ["welcome", "lobby"]
    assert lobby_of(dashboard) == []
    assert client.connection.types() == ["welcome", "waiting"]
    await board.switchboard.receive(dashboard.handle, Admit(participant="c-1", id="q"))
    assert errors(dashboard) == [(ErrorCode.NOT_FOUND, "q")]
    assert board.registry.role_of(client.handle) is Role.CLIENT


async def test_a_lobby_handle_cannot_join_as_a_participant(board: Board) -> None:
    dashboard = await board.watch()
    with pytest.raises(ValueError, match="different participants"):
        board.registry.join(therapist_seat(therapist="t-1"), dashboard.handle)
    with pytest.raises(ValueError, match="already watching"):
        board.registry.watch(watcher(), dashboard.handle)


@pytest.mark.parametrize(
    ("therapist", "name"),
    [("", "Sam"), ("t" * 65, "Sam"), ("t-1", ""), ("t-1", "n" * 201)],
    ids=["empty id", "long id", "empty name", "long name"],
)
def test_a_watcher_the_protocol_could_not_carry_is_refused(therapist: str, name: str) -> None:
    with pytest.raises(ValueError, match="watcher"):
        Watcher(therapist, name)
