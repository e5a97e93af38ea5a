"""The participant state machine: which transitions are legal, and what each one reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging

import pytest

from signalling.participants import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    Participant,
    Seat,
    StateChange,
)
from signalling.parts import ParticipantState, Role
from tests.signalling.fakes import T0, client_seat, therapist_seat

S = ParticipantState

LEGAL = {
    (S.WAITING, S.ADMITTED),  # admit
    (S.WAITING, S.LEFT),  # leave, or the waiting client's connection drops
    (S.WAITING, S.ENDED),
    (S.ADMITTED, S.IN_CALL),  # the other participant is there
    (S.ADMITTED, S.WAITING),  # send-back
    (S.ADMITTED, S.LEFT),
    (S.ADMITTED, S.ENDED),
    (S.IN_CALL, S.ADMITTED),  # the other participant went
    (S.IN_CALL, S.WAITING),  # send-back
    (S.IN_CALL, S.LEFT),
    (S.IN_CALL, S.ENDED),
    (S.LEFT, S.WAITING),  # a client comes back
    (S.LEFT, S.ADMITTED),  # a therapist comes back
    (S.LEFT, S.ENDED),
}
CHANGES = [(a, b) for a, b in itertools.product(S, S) if a is not b]


def make(
    state: ParticipantState, seat: Seat | None = None
) -> tuple[Participant, list[StateChange]]:
    changes: list[StateChange] = []
    participant = Participant(seat or client_seat(), state, since=T0, on_change=changes.append)
    changes.clear()
    return participant, changes


def test_the_table_is_the_documented_one() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert ALLOWED_TRANSITIONS[S.ENDED] == frozenset()


@pytest.mark.parametrize(("old", "new"), [c for c in CHANGES if c in LEGAL])
def test_legal_transition_changes_state_logs_and_reports_once(
    old: ParticipantState, new: ParticipantState, caplog: pytest.LogCaptureFixture
) -> None:
    participant, changes = make(old)
    with caplog.at_level(logging.INFO, logger="signalling.participants"):
        assert participant.transition(new) is True
    assert participant.state is new
    assert changes == [StateChange("c-1", Role.CLIENT, "a-1", old, new)]
    assert f"participant c-1: {old.value} -> {new.value}" in caplog.messages


@pytest.mark.parametrize(("old", "new"), [c for c in CHANGES if c not in LEGAL])
def test_illegal_transition_raises_naming_the_state(
    old: ParticipantState, new: ParticipantState
) -> None:
    participant, changes = make(old)
    with pytest.raises(IllegalTransition) as caught:
        participant.transition(new)
    assert f"participant c-1 is {old.value}: cannot become {new.value}" in str(caught.value)
    assert (caught.value.current, caught.value.requested) == (old, new)
    assert participant.state is old
    assert changes == []


@pytest.mark.parametrize("state", list(S))
def test_staying_in_the_same_state_reports_nothing(state: ParticipantState) -> None:
    participant, changes = make(state)
    assert participant.transition(state) is False
    assert changes == []


def test_ended_says_nothing_may_follow() -> None:
    participant, _ = make(S.ENDED)
    with pytest.raises(IllegalTransition, match=r"from ended it may become nothing"):
        participant.transition(S.WAITING)


def test_a_new_participant_is_reported_with_no_old_state() -> None:
    changes: list[StateChange] = []
    Participant(therapist_seat(), S.ADMITTED, since=T0, on_change=changes.append)
    assert changes == [StateChange("h-1", Role.THERAPIST, "a-1", None, S.ADMITTED)]


@pytest.mark.parametrize(
    "change",
    [
        {"participant": ""},
        {"participant": "p" * 65},
        {"name": ""},
        {"name": "n" * 201},
        {"welcome": "w" * 2001},
        {"start": dt.datetime(2026, 3, 2, 14)},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_seat_the_protocol_could_not_carry_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="seat"):
        dataclasses.replace(client_seat(), **change)  # type: ignore[arg-type]
