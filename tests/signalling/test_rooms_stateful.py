"""Random sequences of joins, drops, admissions and ends — from call pages and from
dashboards — never break the room rules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from functools import partial
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from signalling import events
from signalling.effects import Handle
from signalling.messages import (
    Admit,
    Answer,
    Candidate,
    End,
    Leave,
    Lobby,
    Message,
    Offer,
    SendBack,
    TextMessage,
)
from signalling.parts import ParticipantState, Role
from tests.signalling.fakes import (
    CALL_ONLY,
    Board,
    RecordingConnection,
    client_seat,
    therapist_seat,
    watcher,
)

CLIENTS = ("c-1", "c-2")
HOSTS = ("h-1", "h-2")
EVERYONE = CLIENTS + HOSTS
APPOINTMENT = {"c-1": "a-1", "h-1": "a-1", "c-2": "a-2", "h-2": "a-2"}
MEDIA = (Offer(sdp="v=0"), Answer(sdp="v=0"), Candidate(candidate=None))
IN_CALL = ParticipantState.IN_CALL
#: Dashboards: two tabs of t-1's, and one of t-2's (who owns a-2 only in some runs).
DASHBOARDS = {"d-1": "t-1", "d-1b": "t-1", "d-2": "t-2"}
DASHBOARD = st.sampled_from(sorted(DASHBOARDS))


class RoomMachine(RuleBasedStateMachine):
    """One or two therapists, two appointments, and participants who come and go at random."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.board = Board()
        self.therapist_of = {"a-1": "t-1", "a-2": "t-1"}
        self.sockets: dict[str, list[tuple[Handle, RecordingConnection]]] = {
            p: [] for p in (*EVERYONE, *DASHBOARDS)
        }
        self.dropped: set[int] = set()
        self.violations: list[str] = []
        self.ended: list[str] = []
        self.board.registry.add_event_listener(self.on_event)

    def run(self, step: Coroutine[Any, Any, None]) -> None:
        self.loop.run_until_complete(step)

    def teardown(self) -> None:
        self.loop.close()

    @initialize(two_therapists=st.booleans())
    def appointments(self, two_therapists: bool) -> None:
        if two_therapists:
            self.therapist_of["a-2"] = "t-2"

    def seat(self, participant: str) -> Any:
        appointment = APPOINTMENT[participant]
        make = client_seat if participant in CLIENTS else therapist_seat
        return make(participant, appointment, self.therapist_of[appointment])

    def on_send(self, participant: str, message: Message) -> None:
        if message.TYPE in ("offer", "answer", "candidate"):
            state = self.board.state(participant)
            if state is not IN_CALL:
                self.violations.append(f"{participant} got {message.TYPE} while {state}")

    def on_dashboard_send(self, dashboard: str, message: Message) -> None:
        if message.TYPE in CALL_ONLY:
            self.violations.append(f"dashboard {dashboard} got {message.TYPE}")

    def on_event(self, event: events.RoomEvent) -> None:
        if isinstance(event, events.Ended):
            self.ended.append(event.appointment)

    def latest(self, participant: str) -> Handle | None:
        sockets = self.sockets[participant]
        return sockets[-1][0] if sockets else None

    def live(self, participant: str) -> list[tuple[Handle, RecordingConnection]]:
        return [
            (handle, connection)
            for handle, connection in self.sockets[participant]
            if not connection.closed and id(connection) not in self.dropped
        ]

    def send(self, participant: str, message: Message) -> None:
        handle = self.latest(participant)
        if handle is not None:
            self.run(self.board.switchboard.receive(handle, message))

    # Rules

    @rule(participant=st.sampled_from(EVERYONE))
    def join(self, participant: str) -> None:
        connection = RecordingConnection(participant, on_send=partial(self.on_send, participant))
        seat = self.seat(participant)

        async def join() -> None:
            handle = await self.board.switchboard.join(seat, connection)
            self.sockets[participant].append((handle, connection))

        self.run(join())

    @rule(dashboard=DASHBOARD)
    def open_dashboard(self, dashboard: str) -> None:
        connection = RecordingConnection(dashboard, partial(self.on_dashboard_send, dashboard))
        who = watcher(DASHBOARDS[dashboard])

        async def watch() -> None:
            handle = await self.board.switchboard.watch(who, connection)
            self.sockets[dashboard].append((handle, connection))

        self.run(watch())

    @rule(dashboard=DASHBOARD, client=st.sampled_from(CLIENTS))
    def admit_from_dashboard(self, dashboard: str, client: str) -> None:
        self.send(dashboard, Admit(participant=client))

    @rule(dashboard=DASHBOARD, client=st.sampled_from(CLIENTS))
    def send_back_from_dashboard(self, dashboard: str, client: str) -> None:
        self.send(dashboard, SendBack(participant=client))

    @rule(dashboard=DASHBOARD, appointment=st.sampled_from(("a-1", "a-2")))
    def end_from_dashboard(self, dashboard: str, appointment: str) -> None:
        self.send(dashboard, End(appointment=appointment))

    @rule(
        dashboard=DASHBOARD,
        message=st.sampled_from((TextMessage(participant="c-1", text="a moment"), Leave(), *MEDIA)),
    )
    def other_from_dashboard(self, dashboard: str, message: Message) -> None:
        self.send(dashboard, message)

    @rule(participant=st.sampled_from((*EVERYONE, *DASHBOARDS)))
    def drop(self, participant: str) -> None:
        for handle, connection in self.live(participant)[:1]:
            self.dropped.add(id(connection))
            self.run(connection.close(1006, "network gone"))
            self.run(self.board.switchboard.disconnect(handle))

    @rule(participant=st.sampled_from(EVERYONE))
    def leave(self, participant: str) -> None:
        self.send(participant, Leave())

    @rule(host=st.sampled_from(HOSTS), client=st.sampled_from(CLIENTS))
    def admit(self, host: str, client: str) -> None:
        self.send(host, Admit(participant=client))

    @rule(host=st.sampled_from(HOSTS), client=st.sampled_from(CLIENTS))
    def send_back(self, host: str, client: str) -> None:
        self.send(host, SendBack(participant=client))

    @rule(host=st.sampled_from(HOSTS), client=st.sampled_from(CLIENTS))
    def message(self, host: str, client: str) -> None:
        self.send(host, TextMessage(participant=client, text="a moment, please"))

    @rule(host=st.sampled_from(HOSTS), appointment=st.sampled_from(("a-1", "a-2")))
    def end(self, host: str, appointment: str) -> None:
        self.send(host, End(appointment=appointment))

    @rule(participant=st.sampled_from(EVERYONE), message=st.sampled_from(MEDIA))
    def relay(self, participant: str, message: Message) -> None:
        self.send(participant, message)

    # Invariants

    @invariant()
    def no_one_outside_the_call_receives_media_signalling(self) -> None:
        """Nor does a dashboard receive peer-joined or peer-left."""
        assert self.violations == []

    @invariant()
    def every_live_dashboard_shows_the_lobby_as_it_is(self) -> None:
        for dashboard, therapist in DASHBOARDS.items():
            for handle, connection in self.live(dashboard):
                assert self.board.registry.role_of(handle) is Role.THERAPIST
                assert connection.last(Lobby) == self.board.registry.lobby(therapist)
            for handle, connection in self.sockets[dashboard]:
                if (handle, connection) not in self.live(dashboard):
                    assert self.board.registry.role_of(handle) is None

    @invariant()
    def each_ended_appointment_reported_ended_once(self) -> None:
        assert len(self.ended) == len(set(self.ended))
        for appointment in ("a-1", "a-2"):
            room = self.board.registry.room(appointment)
            assert (room is not None and room.ended) == (appointment in self.ended)

    @invariant()
    def a_participant_holds_at_most_one_live_connection(self) -> None:
        for participant in EVERYONE:
            live = self.live(participant)
            assert len(live) <= 1, f"{participant} has {len(live)} live connections"
            known = self.board.registry.participant(participant)
            expected = known.handle if known is not None else None
            assert [handle for handle, _ in live] == ([expected] if expected else [])

    @invariant()
    def nothing_is_sent_on_a_closed_connection(self) -> None:
        for sockets in self.sockets.values():
            for _, connection in sockets:
                assert connection.late == []

    @invariant()
    def in_call_means_both_admitted_and_connected(self) -> None:
        for appointment in ("a-1", "a-2"):
            room = self.board.registry.room(appointment)
            if room is None:
                continue
            for member in room.members():
                if member.state is IN_CALL:
                    peer = room.peer_of(member)
                    assert peer is not None and peer.state is IN_CALL
                    assert member.online and peer.online
                if member.state is ParticipantState.WAITING:
                    assert member.role is Role.CLIENT and member.online

    @invariant()
    def ended_is_final(self) -> None:
        for appointment in ("a-1", "a-2"):
            room = self.board.registry.room(appointment)
            if room is not None and room.ended:
                assert all(m.state is ParticipantState.ENDED for m in room.members())
                assert not any(m.online for m in room.members())


RoomMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_room_rules_hold_whatever_happens = RoomMachine.TestCase
