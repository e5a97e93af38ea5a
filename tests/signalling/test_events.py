"""One event per act, for the audit trail: who joined, admitted, sent back, left or ended."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from signalling import events
from signalling.messages import Admit, End, Leave, Message, SendBack
from signalling.messages import TextMessage as Text
from signalling.parts import ParticipantState, Role
from tests.signalling.fakes import Board, Joined, client_seat, in_call, therapist_seat

CLIENT, THERAPIST = Role.CLIENT, Role.THERAPIST


@dataclass
class Cast:
    """The therapist's call page and dashboard, and their client, admitted or not."""

    page: Joined
    dashboard: Joined
    client: Joined


Step = Callable[[Board, Cast], Awaitable[object]]


def page(message: Message) -> Step:
    return lambda board, cast: board.switchboard.receive(cast.page.handle, message)


def dashboard(message: Message) -> Step:
    return lambda board, cast: board.switchboard.receive(cast.dashboard.handle, message)


def client(message: Message) -> Step:
    return lambda board, cast: board.switchboard.receive(cast.client.handle, message)


def client_drops(board: Board, cast: Cast) -> Awaitable[None]:
    return board.switchboard.disconnect(cast.client.handle)


def client_joins(board: Board, cast: Cast) -> Awaitable[Joined]:
    return board.join(client_seat())


def page_joins(board: Board, cast: Cast) -> Awaitable[Joined]:
    return board.join(therapist_seat())


def dashboard_opens(board: Board, cast: Cast) -> Awaitable[Joined]:
    return board.watch()


ADMIT, SEND_BACK, END = (
    Admit(participant="c-1"),
    SendBack(participant="c-1"),
    End(appointment="a-1"),
)

ADMITTED = events.Admitted("a-1", "c-1", by_therapist="t-1")
SENT_BACK = events.SentBack("a-1", "c-1", by_therapist="t-1")
ENDED = events.Ended("a-1", by_therapist="t-1")

#: (what happened first, the act, the events the act alone reports)
ACTS: list[tuple[str, list[Step], Step, list[events.RoomEvent]]] = [
    ("client connects again", [], client_joins, [events.Joined("a-1", "c-1", CLIENT, "t-1")]),
    ("call page reloads", [], page_joins, [events.Joined("a-1", "h-1", THERAPIST, "t-1")]),
    (
        "client comes back after leaving",
        [client(Leave())],
        client_joins,
        [events.Joined("a-1", "c-1", CLIENT, "t-1")],
    ),
    ("another dashboard opens", [], dashboard_opens, []),
    ("admit from the call page", [], page(ADMIT), [ADMITTED]),
    ("admit from the dashboard", [], dashboard(ADMIT), [ADMITTED]),
    ("admit twice", [dashboard(ADMIT)], page(ADMIT), []),
    ("admit one who left", [client(Leave())], dashboard(ADMIT), []),
    ("admit another's client", [], dashboard(Admit(participant="c-x")), []),
    ("admit, from the client", [], client(ADMIT), []),
    ("send back from the call page", [page(ADMIT)], page(SEND_BACK), [SENT_BACK]),
    ("send back from the dashboard", [page(ADMIT)], dashboard(SEND_BACK), [SENT_BACK]),
    (
        "send back one who dropped off",
        [page(ADMIT), client_drops],
        dashboard(SEND_BACK),
        [SENT_BACK],
    ),
    ("send back one who waits", [], dashboard(SEND_BACK), []),
    ("a message", [], dashboard(Text(participant="c-1", text="Soon")), []),
    ("the client leaves", [], client(Leave()), [events.Left("a-1", "c-1", CLIENT, "t-1")]),
    (
        "the call page leaves",
        [page(ADMIT)],
        page(Leave()),
        [events.Left("a-1", "h-1", THERAPIST, "t-1")],
    ),
    ("the dashboard leaves", [], dashboard(Leave()), []),
    ("the client drops off", [], client_drops, []),
    ("end from the call page", [page(ADMIT)], page(END), [ENDED]),
    ("end from the dashboard", [page(ADMIT)], dashboard(END), [ENDED]),
    ("call page comes back after the end", [dashboard(END)], page_joins, []),
    ("end an ended appointment", [page(END)], dashboard(END), []),
    ("client comes back after the end", [dashboard(END)], client_joins, []),
]


@pytest.mark.parametrize(
    ("before", "act", "expected"), [a[1:] for a in ACTS], ids=[a[0] for a in ACTS]
)
async def test_each_act_reports_exactly_its_own_events(
    board: Board, before: list[Step], act: Step, expected: list[events.RoomEvent]
) -> None:
    cast = Cast(
        await board.join(therapist_seat()), await board.watch(), await board.join(client_seat())
    )
    await board.join(client_seat("c-x", "a-x", therapist="t-2"))
    for step in before:
        await step(board, cast)
    seen = len(board.events)

    await act(board, cast)

    assert board.events[seen:] == expected


async def test_one_end_is_one_event_however_many_were_in_the_room(board: Board) -> None:
    therapist, _ = await in_call(board)
    dashboard = await board.watch()
    await board.switchboard.receive(dashboard.handle, End(appointment="a-1"))
    await board.switchboard.receive(therapist.handle, End(appointment="a-1"))  # a stale socket
    await board.switchboard.end(dashboard.handle, "a-1")

    assert [e for e in board.events if isinstance(e, events.Ended)] == [ENDED]
    ended = [c for c in board.changes if c.new is ParticipantState.ENDED]
    assert len(ended) == 2  # the state changes, by contrast, are one per participant


async def test_a_whole_session_reads_as_its_audit_trail(board: Board) -> None:
    therapist, client = await in_call(board)
    await board.switchboard.send_back(therapist.handle, "c-1")
    await board.switchboard.leave(client.handle)
    await board.join(client_seat())
    dashboard = await board.watch()
    await board.switchboard.admit(dashboard.handle, "c-1")
    await board.switchboard.end(dashboard.handle, "a-1")

    assert board.events == [
        events.Joined("a-1", "h-1", THERAPIST, "t-1"),
        events.Joined("a-1", "c-1", CLIENT, "t-1"),
        ADMITTED,
        SENT_BACK,
        events.Left("a-1", "c-1", CLIENT, "t-1"),
        events.Joined("a-1", "c-1", CLIENT, "t-1"),
        ADMITTED,
        ENDED,
    ]


async def test_an_event_is_reported_once_the_act_took_effect(board: Board) -> None:
    therapist, _ = await in_call(board)
    states: list[tuple[ParticipantState, ParticipantState]] = []
    board.registry.add_event_listener(
        lambda event: states.append((board.state("h-1"), board.state("c-1")))
    )
    await board.switchboard.end(therapist.handle, "a-1")
    assert states == [(ParticipantState.ENDED, ParticipantState.ENDED)]


async def test_a_failing_listener_is_logged_and_stops_nothing(
    board: Board, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: events.RoomEvent) -> None:
        raise RuntimeError("audit database down")

    board.registry.add_event_listener(broken)
    seen: list[events.RoomEvent] = []
    board.registry.add_event_listener(seen.append)
    with caplog.at_level(logging.ERROR, logger="signalling.events"):
        client = await board.join(client_seat())

    assert client.connection.types() == ["welcome", "waiting"]
    assert seen == [events.Joined("a-1", "c-1", CLIENT, "t-1")]
    assert "room event listener failed" in caplog.text
