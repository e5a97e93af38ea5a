"""When the fan-out between instances is down: what this instance can still do itself, and
the clear error for what it cannot."""

from __future__ import annotations

from signalling.errors import CloseCode, ErrorCode
from signalling.fanout import Callback, FanoutUnavailable, LocalFanout, Subscription
from signalling.messages import Admit, Candidate, Chat, Error
from signalling.parts import Role
from signalling.rooms import Registry
from signalling.switchboard import Switchboard
from tests.signalling.fakes import (
    Board,
    Clock,
    Joined,
    RecordingConnection,
    client_seat,
    errors,
    in_call,
    therapist_seat,
)
from tests.signalling.test_session import session_for

HELLO = '{"type": "hello", "version": 1}'


class Broker(LocalFanout):
    """The in-process fan-out with a switch: while ``down``, it refuses as a lost Redis does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def publish(self, channel: str, payload: str) -> None:
        if self.down:
            raise FanoutUnavailable("redis is unreachable: the payload was not published")
        await super().publish(channel, payload)

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        if self.down:
            raise FanoutUnavailable(f"redis is unreachable: cannot subscribe to {channel}")
        return await super().subscribe(channel, callback)


def outage_board() -> tuple[Board, Broker]:
    board = Board()
    broker = Broker()
    board.fanout = broker
    board.switchboard = Switchboard(broker, board.registry)
    return board, broker


async def test_a_call_on_one_instance_keeps_its_signalling_while_the_broker_is_down() -> None:
    board, broker = outage_board()
    therapist, client = await in_call(board)
    broker.down = True

    await board.switchboard.receive(client.handle, Candidate(candidate=None))
    await board.switchboard.receive(therapist.handle, Chat(text="still here", id="t1"))

    assert therapist.connection.of(Candidate) == [Candidate(candidate=None)]
    assert client.connection.types()[-1] == "chat"
    assert errors(therapist) == errors(client) == []


async def test_a_message_for_someone_on_another_instance_gets_unavailable_and_then_works() -> None:
    broker = Broker()
    shared = Registry(clock=Clock())  # as the rooms will be, once they are shared
    here, there = Switchboard(broker, shared), Switchboard(broker, shared)
    therapist = Joined(await there.join(therapist_seat(), t_conn := RecordingConnection()), t_conn)
    client = Joined(await here.join(client_seat(), c_conn := RecordingConnection()), c_conn)
    await there.receive(therapist.handle, Admit(participant=client.participant))
    broker.down = True

    await here.receive(client.handle, Candidate(candidate=None, id="c1"))

    assert errors(client) == [(ErrorCode.UNAVAILABLE, "c1")]
    assert "could not be reached" in client.connection.last(Error).value
    assert therapist.connection.of(Candidate) == []
    broker.down = False
    await here.receive(client.handle, Candidate(candidate=None, id="c2"))
    assert therapist.connection.of(Candidate) == [Candidate(candidate=None)]
    assert errors(client) == [(ErrorCode.UNAVAILABLE, "c1")]


async def test_a_new_socket_while_the_broker_is_down_is_told_to_come_back_with_1013() -> None:
    board, broker = outage_board()
    broker.down = True
    session, connection, _ = session_for(board, Role.CLIENT)

    await session.receive(HELLO)

    assert connection.last(Error).error is ErrorCode.UNAVAILABLE
    assert connection.close_code == CloseCode.TRY_AGAIN_LATER
    assert session.closed
    assert board.registry.participant("c-1") is None
    broker.down = False
    again, connection, _ = session_for(board, Role.CLIENT)
    await again.receive(HELLO)
    assert connection.types()[:2] == ["welcome", "waiting"]
