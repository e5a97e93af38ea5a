"""Rooms across instances: each therapist's rooms live on one owner, reached from anywhere."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from signalling.effects import Handle
from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.fanout import LocalFanout
from signalling.messages import (
    Admit,
    Admitted,
    Answer,
    Chat,
    Error,
    Lobby,
    Offer,
    PeerJoined,
    Waiting,
)
from signalling.participants import Seat
from signalling.parts import (
    ConnectionSummary,
    ConnectionVerdict,
    DeviceStatus,
    DeviceSummary,
    IceServer,
    ParticipantState,
)
from signalling.rooms import Registry
from signalling.routing import Command, Moved, dump_command, dump_moved, load_command, load_moved
from signalling.switchboard import Switchboard
from tests.signalling.fakes import (
    Joined,
    MemoryLeases,
    RecordingConnection,
    client_seat,
    therapist_seat,
    watcher,
)


class Instance:
    """One app instance's switchboard, sharing the fan-out and the leases with the others."""

    def __init__(self, name: str, fanout: LocalFanout, store: dict[str, str]) -> None:
        self.leases = MemoryLeases(store, name)
        self.registry = Registry()
        self.switchboard = Switchboard(fanout, self.registry, leases=self.leases)

    async def join(self, seat: Seat, label: str) -> Joined:
        connection = RecordingConnection(label)
        return Joined(await self.switchboard.join(seat, connection), connection)

    async def watch(self) -> Joined:
        connection = RecordingConnection("dashboard")
        return Joined(await self.switchboard.watch(watcher(), connection), connection)


@pytest.fixture
async def instances() -> tuple[Instance, Instance, dict[str, str]]:
    fanout, store = LocalFanout(), dict[str, str]()
    east, west = Instance("east", fanout, store), Instance("west", fanout, store)
    await east.switchboard.start()
    await west.switchboard.start()
    return east, west, store


Pair = tuple[Instance, Instance, dict[str, str]]


async def call_across(east: Instance, west: Instance) -> tuple[Joined, Joined]:
    """The therapist on east (which takes the rooms), the client on west, both in the call."""
    therapist = await east.join(therapist_seat(), "therapist")
    client = await west.join(client_seat(), "client")
    await east.switchboard.receive(therapist.handle, Admit(participant="c-1"))
    return therapist, client


async def test_a_client_on_another_instance_waits_and_is_admitted_by_the_owner(
    instances: Pair,
) -> None:
    east, west, store = instances
    therapist = await east.join(therapist_seat(), "therapist")
    dashboard = await east.watch()
    client = await west.join(client_seat(), "client")

    assert client.connection.types() == ["welcome", "waiting"]
    waiting = dashboard.connection.last(Lobby).participants
    assert [(p.participant, p.state) for p in waiting] == [("c-1", ParticipantState.WAITING)]

    await east.switchboard.receive(dashboard.handle, Admit(participant="c-1"))

    assert client.connection.of(Admitted)
    assert client.connection.of(PeerJoined)
    assert therapist.connection.last(PeerJoined).participant == "c-1"
    assert store == {"t-1": "east"}
    assert west.registry.therapists() == set() and east.registry.therapists() == {"t-1"}


async def test_signalling_and_chat_cross_between_instances_both_ways(instances: Pair) -> None:
    east, west, _ = instances
    therapist, client = await call_across(east, west)

    await west.switchboard.receive(client.handle, Offer(sdp="v=0 client"))
    await east.switchboard.receive(therapist.handle, Answer(sdp="v=0 therapist"))
    await west.switchboard.receive(client.handle, Chat(text="can you hear me?"))
    await east.switchboard.receive(therapist.handle, Chat(text="yes, clearly"))

    assert therapist.connection.last(Offer).sdp == "v=0 client"
    assert client.connection.last(Answer).sdp == "v=0 therapist"
    assert therapist.connection.last(Chat).text == "can you hear me?"
    assert client.connection.last(Chat).text == "yes, clearly"
    assert west.switchboard.role_of(client.handle) is not None


async def test_a_socket_gone_on_another_instance_is_offline_at_the_owner(instances: Pair) -> None:
    east, west, _ = instances
    _, client = await call_across(east, west)

    await west.switchboard.disconnect(client.handle)

    participant = east.registry.participant("c-1")
    assert participant is not None and not participant.online
    assert participant.state is ParticipantState.ADMITTED  # still admitted, to come back


async def test_when_the_owner_hands_over_the_sockets_elsewhere_reconnect_still_admitted(
    instances: Pair,
) -> None:
    east, west, store = instances
    therapist, client = await call_across(east, west)

    await east.switchboard.hand_over()

    assert client.connection.close_code == CloseCode.MOVED
    assert store == {}
    # The browser reconnects to west; the database says the client was admitted.
    again = await west.join(dataclasses.replace(client_seat(), admitted=True), "client again")
    host = await west.join(therapist_seat(), "therapist again")

    assert store == {"t-1": "west"}
    assert not again.connection.of(Waiting)
    assert again.connection.last(PeerJoined).participant == "h-1"
    assert host.connection.last(PeerJoined).participant == "c-1"
    assert therapist.connection.close_code == CloseCode.MOVED  # east's own sockets move too


async def test_a_lease_lost_meanwhile_closes_the_sockets_registered_with_it(
    instances: Pair,
) -> None:
    east, west, store = instances
    therapist, client = await call_across(east, west)
    store["t-1"] = "west"  # east's lease lapsed (Redis was away) and west took the rooms

    await east.switchboard.keep_leases()
    await west.switchboard.receive(client.handle, Chat(text="still there?"))

    assert therapist.connection.close_code == CloseCode.MOVED
    assert client.connection.close_code == CloseCode.MOVED
    assert east.registry.therapists() == set()
    assert not therapist.connection.of(Chat)


async def test_an_announced_move_closes_the_sockets_registered_with_the_old_owner(
    instances: Pair,
) -> None:
    east, west, store = instances
    therapist, client = await call_across(east, west)
    store["t-1"] = "west"

    await west.switchboard.fanout.publish("alcove:rooms:moved", dump_moved(Moved("t-1", "west")))

    assert client.connection.close_code == CloseCode.MOVED
    assert therapist.connection.close_code == CloseCode.MOVED
    assert east.registry.therapists() == set()


async def test_a_command_reaching_an_instance_that_no_longer_holds_the_rooms_closes_the_socket(
    instances: Pair,
) -> None:
    east, west, store = instances
    _, client = await call_across(east, west)
    del store["t-1"]  # east let go (and is about to say so)

    late = Command("receive", "t-1", client.handle, message=Chat(text="hi"))
    await west.switchboard.fanout.publish("alcove:instance:east", dump_command(late))

    assert client.connection.close_code == CloseCode.MOVED


async def test_while_the_owner_cannot_be_found_messages_are_refused_as_unavailable(
    instances: Pair,
) -> None:
    east, west, _ = instances
    _, client = await call_across(east, west)
    west.leases.down = True

    await west.switchboard.receive(client.handle, Chat(text="hello?", id="m1"))
    with pytest.raises(ProtocolError) as refused:
        await west.join(client_seat("c-2", "a-2"), "another client")

    error = client.connection.last(Error)
    assert (error.error, error.id) == (ErrorCode.UNAVAILABLE, "m1")
    assert client.connection.close_code is None
    assert refused.value.code is ErrorCode.UNAVAILABLE
    assert not west.switchboard.is_local(client.handle._replace(participant="c-2"))


def test_commands_survive_the_trip_between_instances() -> None:
    devices = DeviceSummary(
        camera=DeviceStatus.OK,
        microphone=DeviceStatus.OK,
        connection=ConnectionSummary(
            verdict=ConnectionVerdict.GOOD, rtt_ms=40, loss_percent=0.5, kbps_up=900, kbps_down=None
        ),
    )
    join = Command(
        "join",
        "t-1",
        Handle("c-1", "tok"),
        seat=dataclasses.replace(client_seat(), admitted=True),
        ice_servers=(IceServer(urls=("turn:turn.example:3478",), username="1:c", credential="x"),),
        devices=devices,
    )
    receive = Command("receive", "t-1", join.handle, message=Offer(sdp="v=0", id="o1"))

    assert load_command(dump_command(join)) == join
    assert load_command(dump_command(receive)) == receive
    assert load_moved(dump_moved(Moved("t-1", None))) == Moved("t-1", None)
    without_message = '{"op": "receive", "therapist": "t-1", "participant": "c-1", "token": "t", '
    without_message += '"watcher": false}'
    not_a_message = without_message[:-1] + ', "message": "{}"}'
    for garbage in (
        "",
        "{}",
        '{"op": "explode"}',
        '{"op": "join", "therapist": 1}',
        "[1]",
        without_message,
        not_a_message,
    ):
        with pytest.raises(ValueError):
            load_command(garbage)
    with pytest.raises(ValueError):
        load_moved("{}")


async def test_after_redis_returns_the_owner_takes_its_leases_again_and_remote_sockets_resync(
    instances: Pair,
) -> None:
    east, west, store = instances
    therapist, client = await call_across(east, west)
    store.clear()  # Redis restarted empty: every lease is forgotten

    await east.switchboard.resync()
    await west.switchboard.resync()

    assert store == {"t-1": "east"}
    assert therapist.connection.close_code is None  # its rooms are held where it is
    assert client.connection.close_code == CloseCode.MOVED  # reconnects to learn the state


async def test_a_hello_forwarded_to_an_owner_that_never_answers_is_tried_again(
    instances: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("signalling.router.ANSWER_SECONDS", 0.01)
    _, west, store = instances
    store["t-1"] = "north"  # an instance cut off from Redis: nothing reaches its inbox

    client = await west.join(client_seat(), "client")
    answered = await west.join(client_seat("c-2", "a-2", "t-2"), "answered")
    await asyncio.sleep(0.1)

    assert client.connection.sent == []
    assert client.connection.close_code == CloseCode.MOVED
    assert answered.connection.close_code is None  # west holds t-2 and answered at once
