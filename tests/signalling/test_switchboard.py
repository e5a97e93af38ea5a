"""The switchboard: commands from every socket, on this instance's registry or another's."""

from __future__ import annotations

from signalling import switchboard as switchboard_module
from signalling.effects import channel_for, lobby_channel_for
from signalling.errors import CloseCode, ErrorCode
from signalling.fanout import LocalFanout
from signalling.messages import (
    Admit,
    Answer,
    Candidate,
    Error,
    Hello,
    Lobby,
    MediaState,
    Offer,
    Ping,
    Pong,
    VideoState,
    Waiting,
)
from signalling.parts import ParticipantState, Role
from signalling.protocol import encode, parse_message
from signalling.rooms import Registry
from signalling.switchboard import Switchboard
from tests.signalling.fakes import (
    Board,
    RecordingConnection,
    client_seat,
    in_call,
    therapist_seat,
    watcher,
)


async def test_participants_on_two_instances_reach_each_other_through_the_fanout() -> None:
    fanout, registry = LocalFanout(), Registry()  # what Redis and shared state will be
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    therapist, client = RecordingConnection("h"), RecordingConnection("c")
    h = await east.join(therapist_seat(), therapist)
    c = await west.join(client_seat(), client)

    await east.admit(h, "c-1")
    await east.relay(h, Offer(sdp="v=0 o"))
    await west.relay(c, Answer(sdp="v=0 a"))

    assert client.types() == ["welcome", "waiting", "admitted", "peer-joined", "offer"]
    assert therapist.types()[-3:] == ["peer-joined", "lobby", "answer"]
    assert east.is_local(h) and not west.is_local(h)


async def test_a_message_from_another_instance_is_sent_as_the_frame_that_instance_wrote() -> None:
    class Frames(RecordingConnection):
        """Records the frames it is handed whole (``send_frame``) apart from the messages."""

        def __init__(self, label: str) -> None:
            super().__init__(label)
            self.frames: list[str] = []

        async def send_frame(self, frame: str) -> None:
            self.frames.append(frame)
            await super().send_frame(frame)

    fanout, registry = LocalFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    therapist, client = Frames("h"), Frames("c")
    h = await east.join(therapist_seat(), therapist)
    c = await west.join(client_seat(), client)
    await east.admit(h, "c-1")
    offer = parse_message('{"type":"offer","sdp":"v=0 o"}')
    assert isinstance(offer, Offer)

    await east.relay(h, offer)
    await west.relay(c, Answer(sdp="v=0 a"))

    assert client.frames[-1] == '{"type":"offer","sdp":"v=0 o"}'
    assert client.last(Offer) == offer
    assert therapist.frames[-1] == encode(Answer(sdp="v=0 a"))
    assert therapist.last(Answer) == Answer(sdp="v=0 a")


async def test_a_dashboard_on_another_instance_sees_the_lobby_and_admits() -> None:
    fanout, registry = LocalFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    dashboard, client = RecordingConnection("dashboard"), RecordingConnection("c")
    d = await east.watch(watcher(), dashboard)
    await west.join(client_seat(), client)

    await east.receive(d, Admit(participant="c-1"))

    assert client.types() == ["welcome", "waiting", "admitted"]
    assert dashboard.types() == ["welcome", "lobby", "lobby", "lobby"]
    assert dashboard.last(Lobby).participants[0].state is ParticipantState.ADMITTED
    assert east.is_local(d) and not west.is_local(d)
    assert fanout.subscribers(lobby_channel_for("t-1")) == 1


async def test_a_newer_connection_on_another_instance_closes_the_older_one() -> None:
    fanout, registry = LocalFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    old, new = RecordingConnection("old"), RecordingConnection("new")
    first = await west.join(client_seat(), old)
    second = await east.join(client_seat(), new)

    assert old.close_code == CloseCode.REPLACED
    assert old.last(Error).error is ErrorCode.REPLACED
    assert new.types() == ["welcome", "waiting"]
    assert not west.is_local(first) and east.is_local(second)
    assert fanout.subscribers(channel_for("c-1")) == 1  # west let go of the channel


async def test_ping_is_answered_with_pong_and_other_misplaced_messages_refused() -> None:
    board = Board()
    client = await board.join(client_seat())
    client.connection.clear()

    await board.switchboard.receive(client.handle, Ping(ts=12.5, id="p"))
    await board.switchboard.receive(client.handle, Pong(ts=1))
    await board.switchboard.receive(client.handle, Hello(version=1, id="h"))
    await board.switchboard.receive(client.handle, Waiting(welcome="", status="", id="w"))

    assert client.connection.sent == [
        Pong(ts=12.5),
        Error(error=ErrorCode.BAD_MESSAGE, value="hello was already received", id="h"),
        Error(error=ErrorCode.FORBIDDEN, value="'waiting' is sent by the server only", id="w"),
    ]


async def test_messages_from_a_replaced_connection_are_ignored() -> None:
    board = Board()
    old = await board.join(client_seat())
    await board.join(client_seat())
    old.connection.clear()
    await board.switchboard.receive(old.handle, Ping(ts=1))
    assert old.connection.sent == old.connection.late == []


def test_every_relayed_message_may_be_sent_by_either_role() -> None:
    # The switchboard relays these without asking the sender's role.
    assert switchboard_module._RELAYED_TYPES
    assert all(set(kind.SENDERS) == set(Role) for kind in switchboard_module._RELAYED_TYPES)


async def test_media_from_a_replaced_connection_is_dropped_without_a_word(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.join(therapist_seat())  # the therapist's newer socket replaces the first
    client.connection.clear()

    await board.switchboard.receive(therapist.handle, Candidate(candidate=None, id="c"))
    await board.switchboard.receive(
        therapist.handle, MediaState(video=VideoState.PAUSED, screen=False)
    )

    assert client.connection.sent == []
    assert therapist.connection.late == []
