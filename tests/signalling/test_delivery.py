"""Delivery reaches every connection, here at once or elsewhere through the fan-out, in
order."""

from __future__ import annotations

import asyncio

import pytest

from signalling.effects import channel_for
from signalling.fanout import LocalFanout
from signalling.messages import Admitted, MediaState, Message, PeerJoined, Pong, VideoState
from signalling.rooms import Registry
from signalling.switchboard import Switchboard
from tests.signalling.fakes import (
    Board,
    Call,
    Held,
    RecordingConnection,
    client_seat,
    media_stuck_on_its_way,
    therapist_seat,
)
from tests.signalling.test_candidate_frames import browser_frame, fields


class SpyFanout(LocalFanout):
    """A LocalFanout that remembers every publication, and can fail the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, str]] = []
        self.fail_next = False

    async def publish(self, channel: str, payload: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("fan-out unavailable")
        self.published.append((channel, payload))
        await super().publish(channel, payload)


async def test_effects_for_a_connection_attached_here_skip_the_fanout() -> None:
    fanout = SpyFanout()
    switchboard = Switchboard(fanout)
    connection = RecordingConnection()
    await switchboard.join(client_seat(), connection)

    assert fanout.published == []
    assert connection.types() == ["welcome", "waiting"]


async def test_effects_for_a_connection_elsewhere_travel_on_its_channel() -> None:
    fanout, registry = SpyFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    therapist = RecordingConnection("h")
    h = await east.join(therapist_seat(), therapist)
    await west.join(client_seat(), RecordingConnection("c"))
    fanout.published.clear()

    await east.admit(h, "c-1")

    channels = {channel for channel, _ in fanout.published}
    assert channels == {channel_for("c-1")}
    assert therapist.types()[-2:] == ["peer-joined", "lobby"]


async def test_effects_keep_their_order_across_concurrent_commands() -> None:
    board = Board()

    class Slow(RecordingConnection):
        async def send(self, message: Message) -> None:
            for _ in range(3):
                await asyncio.sleep(0)
            await super().send(message)

    therapist_connection, client_connection = Slow("h"), Slow("c")
    h = await board.switchboard.join(therapist_seat(), therapist_connection)
    await board.switchboard.join(client_seat(), client_connection)

    await asyncio.gather(
        board.switchboard.admit(h, "c-1"),
        board.switchboard.send_back(h, "c-1"),
        board.switchboard.admit(h, "c-1"),
    )
    for _ in range(50):
        await asyncio.sleep(0)

    assert client_connection.types() == [
        "welcome",
        "waiting",
        "admitted",
        "peer-joined",
        "sent-back",
        "waiting",
        "admitted",
        "peer-joined",
    ]
    assert therapist_connection.sent[-1] == board.registry.lobby("t-1")


async def test_a_disconnected_connection_releases_its_channel() -> None:
    board = Board()
    client = await board.join(client_seat())
    await board.switchboard.disconnect(client.handle)
    await board.switchboard.disconnect(client.handle)  # twice is harmless

    assert not board.switchboard.is_local(client.handle)
    assert board.fanout.subscribers(channel_for("c-1")) == 0


async def test_a_connection_that_fails_to_send_does_not_stop_the_others() -> None:
    board = Board()

    class Broken(RecordingConnection):
        async def send(self, message: Message) -> None:
            raise ConnectionResetError("gone")

    therapist = await board.join(therapist_seat())
    await board.switchboard.join(client_seat(), Broken("c"))
    await board.switchboard.admit(therapist.handle, "c-1")

    assert therapist.connection.last(PeerJoined).participant == "c-1"


async def test_delivery_interrupted_by_the_fanout_finishes_in_the_background() -> None:
    fanout, registry = SpyFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    therapist = RecordingConnection()
    h = await east.join(therapist_seat(), therapist)
    client = RecordingConnection()
    c = await west.join(client_seat(), client)
    fanout.fail_next = True

    with pytest.raises(ConnectionError):
        await east.admit(h, c.participant)
    for _ in range(5):
        await asyncio.sleep(0)

    assert Admitted() not in client.sent  # at most once: the failed publication is lost
    assert client.last(PeerJoined).participant == "h-1"  # the rest still arrives, in order


async def test_a_message_sent_straight_to_a_socket_never_overtakes_one_on_its_way() -> None:
    call, held, media = await media_stuck_on_its_way()
    assert call.therapist.handle is not None

    sending = asyncio.create_task(call.board.switchboard.send(call.therapist.handle, Pong(ts=1)))
    await asyncio.sleep(0)
    held.release.set()
    await asyncio.gather(media, sending)

    assert held.types() == ["media", "pong"]


async def test_a_message_sent_after_an_interrupted_delivery_waits_for_the_rest_of_it() -> None:
    fanout, registry = SpyFanout(), Registry()
    east, west = Switchboard(fanout, registry), Switchboard(fanout, registry)
    therapist = RecordingConnection()
    h = await east.join(therapist_seat(), therapist)
    c = await west.join(client_seat(), RecordingConnection())
    therapist.clear()
    fanout.fail_next = True
    with pytest.raises(ConnectionError):
        await east.admit(h, "c-1")  # the client's part fails; the therapist's is still queued
    assert east.relay_here(h) is None  # nor may a candidate pass it

    await east.send(h, Pong(ts=1))

    assert therapist.types() == ["peer-joined", "lobby", "pong"]
    assert east.relay_here(h) == (c, None)  # the client's socket is attached to west


async def test_what_is_sent_while_a_message_goes_straight_to_a_socket_waits_for_it() -> None:
    held = Held("therapist")
    call = Call(therapist_socket=held)
    await call.start()
    assert call.therapist.handle is not None
    switchboard = call.board.switchboard
    media = MediaState(video=VideoState.ON, screen=False)

    first = asyncio.create_task(switchboard.send(call.therapist.handle, media))
    await held.holding.wait()  # on its way straight to the socket, and stuck
    second = asyncio.create_task(switchboard.send(call.therapist.handle, Pong(ts=2)))
    await asyncio.sleep(0)  # the pong is on its way
    await call.client.receive(browser_frame(fields()))  # and then a candidate
    held.release.set()
    await asyncio.gather(first, second)

    assert held.types() == ["media", "pong", "candidate"]


async def test_a_candidate_a_socket_can_take_at_once_is_written_at_once() -> None:
    held = Held("therapist", at_once=True)
    call = Call(therapist_socket=held)
    await call.start()
    frame = browser_frame(fields())

    await call.client.receive(frame)

    assert held.at_once == [frame]
    assert held.types()[-1] == "candidate"


async def test_a_candidate_is_not_written_at_once_past_a_message_on_its_way() -> None:
    call, held, media = await media_stuck_on_its_way(at_once=True)

    passing = asyncio.create_task(call.client.receive(browser_frame(fields())))
    await asyncio.sleep(0)
    held.release.set()
    await asyncio.gather(media, passing)

    assert held.types() == ["media", "candidate"]
    assert held.at_once == []  # it waited behind the media, the full way
