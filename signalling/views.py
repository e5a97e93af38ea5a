"""What each participant is shown: the messages built from the state of a room."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from signalling.errors import ErrorCode
from signalling.messages import Error, Lobby, PeerJoined, PeerLeft, Waiting, Welcome
from signalling.participants import Participant
from signalling.parts import LOBBY_STATES, MAX_LOBBY_ENTRIES, IceServer, LobbyEntry, Role
from signalling.protocol import PROTOCOL_VERSION

STATUS_WAITING = "Your therapist knows you are here and will let you in."
STATUS_EARLY = "You are early. Your therapist will let you in when it is time."
STATUS_SENT_BACK = "Your therapist has moved you back to the waiting room."


def welcome(participant: Participant, ice_servers: Sequence[IceServer]) -> Welcome:
    """The answer to ``hello``; the client is the polite peer."""
    return Welcome(
        version=PROTOCOL_VERSION,
        role=participant.role,
        participant=participant.id,
        appointment=participant.appointment,
        state=participant.state,
        ice_servers=tuple(ice_servers),
        polite=participant.role is Role.CLIENT,
    )


def lobby_welcome() -> Welcome:
    """The answer to a lobby socket's ``hello``: a therapist, but no participant."""
    return Welcome(
        version=PROTOCOL_VERSION,
        role=Role.THERAPIST,
        participant=None,
        appointment=None,
        state=None,
        ice_servers=(),
        polite=False,
    )


def waiting(client: Participant, now: dt.datetime, *, sent_back: bool = False) -> Waiting:
    """The waiting room: the therapist's welcome text and a status line."""
    if sent_back:
        status = STATUS_SENT_BACK
    elif now < client.seat.start:
        status = STATUS_EARLY
    else:
        status = STATUS_WAITING
    return Waiting(welcome=client.seat.welcome, status=status)


def lobby(clients: Iterable[Participant]) -> Lobby:
    """The clients who are waiting, admitted or in a call, by appointment start then arrival."""
    entries = [
        LobbyEntry(
            participant=client.id,
            appointment=client.appointment,
            name=client.seat.name,
            start=client.seat.start,
            end=client.seat.end,
            waiting_since=client.waiting_since,
            devices=client.devices,
            state=client.state,
            online=client.online,
        )
        for client in clients
        if client.state in LOBBY_STATES
    ]
    entries.sort(key=lambda e: (e.start, e.waiting_since, e.participant))
    return Lobby(participants=tuple(entries[:MAX_LOBBY_ENTRIES]))


def peer_joined(other: Participant) -> PeerJoined:
    return PeerJoined(participant=other.id, role=other.role, name=other.seat.name)


def peer_left(other: Participant) -> PeerLeft:
    return PeerLeft(participant=other.id, role=other.role)


def replaced() -> Error:
    return Error(error=ErrorCode.REPLACED, value="this participant connected again elsewhere")
