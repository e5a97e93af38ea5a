"""What participants are shown: welcome, waiting-room status, the therapist's lobby."""

from __future__ import annotations

import datetime as dt

from signalling import views
from signalling.messages import Lobby
from signalling.participants import Participant, Seat
from signalling.parts import MAX_LOBBY_ENTRIES, DeviceStatus, DeviceSummary, ParticipantState
from tests.signalling.fakes import T0, Board, client_seat, therapist_seat

S = ParticipantState


def participant(seat: Seat, state: ParticipantState = S.WAITING) -> Participant:
    return Participant(seat, state, since=T0, on_change=lambda change: None)


def test_welcome_makes_the_client_polite_and_the_therapist_not() -> None:
    assert views.welcome(participant(client_seat()), ()).polite is True
    assert views.welcome(participant(therapist_seat(), S.ADMITTED), ()).polite is False


def test_waiting_status_depends_on_the_time_and_the_reason() -> None:
    client = participant(client_seat(welcome="Hi."))
    minute = dt.timedelta(minutes=1)
    assert views.waiting(client, T0 - minute).status == views.STATUS_EARLY
    assert views.waiting(client, T0).status == views.STATUS_WAITING
    assert views.waiting(client, T0 - minute, sent_back=True).status == views.STATUS_SENT_BACK
    assert views.waiting(client, T0).welcome == "Hi."


def test_the_lobby_shows_waiting_admitted_and_in_call_clients_only() -> None:
    shown = [participant(client_seat(f"c-{s.value}", f"a-{s.value}"), s) for s in S]
    entries = views.lobby(shown).participants
    assert {e.state for e in entries} == {S.WAITING, S.ADMITTED, S.IN_CALL}


def test_the_lobby_is_ordered_by_start_then_arrival() -> None:
    early, late = participant(client_seat("c-1")), participant(client_seat("c-2"))
    early.waiting_since, late.waiting_since = T0, T0 + dt.timedelta(seconds=1)
    next_hour = participant(client_seat("c-0", start=T0 + dt.timedelta(hours=1)))
    entries = views.lobby([next_hour, late, early]).participants
    assert [e.participant for e in entries] == ["c-1", "c-2", "c-0"]


def test_the_lobby_is_capped() -> None:
    many = [participant(client_seat(f"c-{n}", f"a-{n}")) for n in range(MAX_LOBBY_ENTRIES + 5)]
    assert len(views.lobby(many).participants) == MAX_LOBBY_ENTRIES


async def test_the_lobby_lists_the_therapists_own_clients_with_their_devices() -> None:
    board = Board()
    later = T0 + dt.timedelta(hours=1)
    summary = DeviceSummary(camera=DeviceStatus.DENIED, microphone=DeviceStatus.OK)
    await board.join(client_seat("c-2", "a-2", start=later), devices=summary)
    await board.join(client_seat("c-1", "a-1"))
    await board.join(client_seat("c-9", "a-9", therapist="t-2"))
    therapist = await board.join(therapist_seat())

    entries = therapist.connection.last(Lobby).participants
    assert [(e.participant, e.appointment, e.start) for e in entries] == [
        ("c-1", "a-1", T0),
        ("c-2", "a-2", later),
    ]
    assert (entries[0].devices, entries[1].devices) == (None, summary)


async def test_every_page_of_the_therapist_sees_lobby_changes() -> None:
    board = Board()
    page_1 = await board.join(therapist_seat())
    page_2 = await board.join(therapist_seat("h-2", "a-2"))
    await board.join(client_seat("c-2", "a-2"))
    for page in (page_1, page_2):
        assert [e.participant for e in page.connection.last(Lobby).participants] == ["c-2"]
