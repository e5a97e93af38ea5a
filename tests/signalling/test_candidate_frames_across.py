"""A ``candidate`` written as a browser writes it crosses instances unparsed, both ways: to
the instance holding the rooms as a command carrying the frame, and from there to the
other participant's instance as the frame itself; refused as clearly as any message when
the other instance cannot be reached."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable

import pytest

from signalling.effects import Forwarded, Handle, load_effect
from signalling.errors import ErrorCode
from signalling.fanout import Callback, LocalFanout, Subscription
from signalling.messages import Admit, Candidate, Error
from signalling.participants import Seat
from signalling.parts import Role
from signalling.protocol import parse_message
from signalling.rooms import Registry
from signalling.routing import Command, dump_command, load_command
from signalling.session import Session
from signalling.switchboard import Switchboard
from tests.signalling.fakes import (
    Clock,
    Held,
    Joined,
    RecordingConnection,
    client_seat,
    errors,
    seated,
    therapist_seat,
)
from tests.signalling.test_candidate_frames import LINE, browser_frame, fields
from tests.signalling.test_routing import Instance
from tests.signalling.test_switchboard_outage import Broker

UP = browser_frame(fields(f"{LINE} up", usernameFragment="c1ie"))
DOWN = browser_frame(fields(f"{LINE} down", usernameFragment="th3r"))


def person(
    switchboard: Switchboard, seat: Seat, *, at_once: bool = False
) -> tuple[Session, RecordingConnection]:
    """A socket's session for ``seat`` on ``switchboard``, and its connection; with
    ``at_once``, one that writes a frame at once, as a socket with room does."""
    connection = (
        Held(seat.role.value, at_once=True) if at_once else RecordingConnection(seat.role.value)
    )
    return seated(switchboard, seat, connection), connection


class Watching(LocalFanout):
    """A LocalFanout that notes each payload a subscriber did not finish with at once (it
    returned something to await)."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: list[str] = []

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        def noting(payload: str) -> Awaitable[object] | None:
            pending = callback(payload)
            if pending is not None:
                self.awaited.append(payload)
            return pending

        return await super().subscribe(channel, noting)


async def hello(session: Session, seat: Seat) -> Handle:
    appointment = ',"appointment":"a-1"' if seat.role is Role.THERAPIST else ""
    await session.receive('{"type":"hello","version":1' + appointment + "}")
    assert session.handle is not None
    return session.handle


def candidates(connection: RecordingConnection) -> list[str]:
    """The ``candidate`` frames ``connection`` was sent as they came."""
    return [frame for frame in connection.frames if frame.startswith('{"type":"candidate"')]


async def call_across(
    fanout: LocalFanout | None = None, *, at_once: bool = False
) -> tuple[Instance, Instance, list[tuple[Session, RecordingConnection]]]:
    """The therapist's session on east (which takes the rooms), the client's on west, both
    in the call."""
    fanout, store = fanout or LocalFanout(), dict[str, str]()
    east, west = Instance("east", fanout, store), Instance("west", fanout, store)
    await east.switchboard.start()
    await west.switchboard.start()
    therapist = person(east.switchboard, therapist_seat(), at_once=at_once)
    client = person(west.switchboard, client_seat(), at_once=at_once)
    host = await hello(therapist[0], therapist_seat())
    await hello(client[0], client_seat())
    await east.switchboard.receive(host, Admit(participant="c-1"))
    therapist[1].clear()
    client[1].clear()
    return east, west, [therapist, client]


async def test_a_browser_candidate_crosses_instances_unparsed_both_ways(parsed: list[str]) -> None:
    _, _, [(therapist, therapist_socket), (client, client_socket)] = await call_across()

    await client.receive(UP)  # west -> the owner, east -> the therapist's socket
    await therapist.receive(DOWN)  # east -> west -> the client's socket

    assert candidates(therapist_socket) == [UP]
    assert candidates(client_socket) == [DOWN]
    assert UP not in parsed and DOWN not in parsed
    assert therapist_socket.of(Error) == client_socket.of(Error) == []


async def test_a_candidate_for_a_socket_with_room_is_written_in_the_fanout_readers_own_step(
    parsed: list[str],
) -> None:
    fanout = Watching()
    _, _, [(therapist, therapist_socket), (client, client_socket)] = await call_across(
        fanout, at_once=True
    )
    fanout.awaited.clear()

    await client.receive(UP)  # a command to the owner, east: written to the therapist's socket
    await therapist.receive(DOWN)  # an effect for west: written to the client's socket

    # Neither the owner's inbox nor the client's channel left anything to await: each
    # frame was written while the subscriber had it, with no coroutine made for it.
    assert fanout.awaited == []
    assert candidates(therapist_socket) == [UP]
    assert candidates(client_socket) == [DOWN]
    assert isinstance(therapist_socket, Held) and isinstance(client_socket, Held)
    assert therapist_socket.at_once[-1:] == [UP] and client_socket.at_once[-1:] == [DOWN]
    assert UP not in parsed and DOWN not in parsed


class Queueing(Watching):
    """A fan-out that takes payloads at once (``publish_now``) into a queue that one task
    delivers, in order, as the Redis publisher's writer does; ``taken`` holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[str] = []
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._writer: asyncio.Task[None] | None = None

    def publish_now(self, channel: str, payload: str) -> bool:
        self.taken.append(payload)
        self._queue.append((channel, payload))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def _write(self) -> None:
        while self._queue:
            await self.publish(*self._queue.popleft())

    async def delivered(self) -> None:
        while self._writer is not None and not self._writer.done():
            await self._writer


async def test_a_candidate_crossing_instances_is_handed_to_the_fanout_in_one_step_both_ways(
    parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fanout = Queueing()
    _, _, [(therapist, therapist_socket), (client, client_socket)] = await call_across(
        fanout, at_once=True
    )
    fanout.taken.clear()
    fanout.awaited.clear()
    assert client.handle is not None

    async def not_this_way(*args: object) -> bool:
        raise AssertionError("through a coroutine")

    # Neither the client's instance forwarding to the owner, nor the owner passing the
    # therapist's frame on to the client's instance, takes a coroutine for it.
    monkeypatch.setattr(Switchboard, "forward_frame", not_this_way)
    monkeypatch.setattr(Switchboard, "relay_frame", not_this_way)
    await client.receive(UP)  # west -> east's inbox, taken at once
    await therapist.receive(DOWN)  # east -> the client's channel, taken at once
    command, effect = fanout.taken
    assert load_command(command).frame == UP
    assert load_effect(effect) == Forwarded(client.handle, DOWN)
    await fanout.delivered()

    assert candidates(therapist_socket) == [UP]
    assert candidates(client_socket) == [DOWN]
    assert fanout.awaited == []  # and written at once where they arrived
    assert UP not in parsed and DOWN not in parsed


async def test_a_candidate_with_an_id_still_crosses_parsed_and_without_its_id(
    parsed: list[str],
) -> None:
    _, _, [(_, therapist_socket), (client, _)] = await call_across()
    frame = browser_frame(fields(), id="c-9")

    await client.receive(frame)

    assert frame in parsed
    assert [c.id for c in therapist_socket.of(Candidate)] == [None]


async def test_while_the_owner_cannot_be_found_a_plain_candidate_is_refused_as_unavailable() -> (
    None
):
    _, west, [(_, therapist_socket), (client, client_socket)] = await call_across()
    west.leases.down = True

    await client.receive(UP)

    assert [e.error for e in client_socket.of(Error)] == [ErrorCode.UNAVAILABLE]
    assert client_socket.close_code is None
    assert candidates(therapist_socket) == []


async def test_a_candidate_for_another_instance_while_the_broker_is_down_gets_unavailable() -> None:
    broker = Broker()
    shared = Registry(clock=Clock())  # as the rooms will be, once they are shared
    here, there = Switchboard(broker, shared), Switchboard(broker, shared)
    therapist = Joined(await there.join(therapist_seat(), t_conn := RecordingConnection()), t_conn)
    client, client_socket = person(here, client_seat())
    handle = await hello(client, client_seat())
    await there.receive(therapist.handle, Admit(participant="c-1"))
    broker.down = True

    await client.receive(UP)

    assert [e.error for e in client_socket.of(Error)] == [ErrorCode.UNAVAILABLE]
    assert candidates(t_conn) == []
    broker.down = False
    await client.receive(UP)
    assert candidates(t_conn) == [UP]
    assert errors(Joined(handle, client_socket)) == [(ErrorCode.UNAVAILABLE, None)]


def test_a_command_carries_a_plain_candidate_as_its_frame_and_anything_else_parsed() -> None:
    handle = Handle("c-1", "tok")
    plain = Command("receive", "t-1", handle, frame=UP)
    with_id = browser_frame(fields(), id="c-9")

    assert load_command(dump_command(plain)) == plain
    assert load_command(dump_command(Command("receive", "t-1", handle, message=parse_message(UP))))
    assert load_command(dump_command(plain)).message is None
    loaded = load_command(dump_command(Command("receive", "t-1", handle, frame=with_id)))
    assert loaded.frame is None and loaded.message == parse_message(with_id)
