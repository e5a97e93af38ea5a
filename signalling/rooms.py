"""Rooms and the registry that holds them: who may see, hear and reach whom.

A ``Room`` is one appointment, owned by one therapist, with at most one therapist
participant and one client participant.  The ``Registry`` takes commands (join, watch,
disconnect, leave, admit, send back, message, end, relay) and answers each with the list of
effects — messages to deliver, connections to close — that carry it out.  It does no I/O and
holds no connection objects, only ``Handle``s, so it can be tested by reading its effects;
``signalling.switchboard`` is what carries them out.  Besides the participants' state
changes, it reports one ``signalling.events`` event per act, for the audit trail.  The rooms
and participants themselves are kept in a ``signalling.room_index.RoomIndex``.

The rules:

- Nobody is admitted automatically; a client waits until the therapist admits them, however
  early or late they are.
- ``offer``, ``answer`` and ``candidate`` go only between the two participants of one room,
  and only while both are ``in_call`` (admitted and connected).
- A participant has at most one live connection: a newer one replaces the older, which is
  sent ``replaced`` and closed with 4001.
- A therapist acts only on their own appointments' clients, from the call page or from a
  lobby socket (``signalling.lobby``) alike; anything else is ``not-found``, whether or not
  it exists.  A lobby socket is never in a room.
- ``end`` makes both participants ``ended``, sends both ``ended`` and closes them with 4003.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence

from signalling import events, views
from signalling.call import Room, close, send
from signalling.effects import Close, Deliver, Effect, Handle
from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.lobby import Lobbies, Watcher
from signalling.messages import (
    Admitted,
    Chat,
    Ended,
    Lobby,
    MediaState,
    MessageToWaiting,
    Relayed,
    SentBack,
)
from signalling.participants import (
    ADMITTED,
    ENDED,
    IN_CALL,
    LEFT,
    WAITING,
    Participant,
    Seat,
    StateChange,
)
from signalling.parts import DeviceSummary, IceServer, Role
from signalling.room_index import RoomIndex

log = logging.getLogger(__name__)

_NOT_FOUND = "no such participant"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _conflict(client: Participant, problem: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.CONFLICT, f"participant {client.id} is {client.state.value}: {problem}"
    )


class Registry:
    """Every room of this instance, and the rules for moving between their states."""

    def __init__(self, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self._clock = clock
        self._notify = events.Listeners[StateChange]("state change")
        self._index = RoomIndex(clock, self._notify)
        #: The index's own dictionaries, read here (one lookup for every relayed message).
        self._rooms = self._index.rooms
        self._participants = self._index.participants
        self._lobbies = Lobbies()
        self._emit = events.Listeners[events.RoomEvent]("room event")

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        """Call ``listener`` with every state change, after it happened."""
        self._notify.add(listener)

    def add_event_listener(self, listener: Callable[[events.RoomEvent], None]) -> None:
        """Call ``listener`` with one event per act (see ``signalling.events``), after it."""
        self._emit.add(listener)

    def participant(self, participant: str) -> Participant | None:
        return self._participants.get(participant)

    def room(self, appointment: str) -> Room | None:
        return self._rooms.get(appointment)

    def lobby(self, therapist: str) -> Lobby:
        """The therapist's clients who are waiting, admitted or in a call."""
        return views.lobby(room.client for room in self._index.rooms_of(therapist) if room.client)

    def role_of(self, handle: Handle) -> Role | None:
        """The role ``handle`` speaks in if it is a live connection (``None`` if stale)."""
        if self._lobbies.watcher(handle) is not None:
            return Role.THERAPIST
        participant = self._current(handle)
        return participant.role if participant is not None else None

    def join(
        self,
        seat: Seat,
        handle: Handle,
        *,
        ice_servers: Sequence[IceServer] = (),
        devices: DeviceSummary | None = None,
    ) -> list[Effect]:
        """A connection for ``seat`` arrived (first time, again after leaving, or reconnecting).

        ``ValueError`` if the seat contradicts what the registry knows (another owner for the
        appointment, another participant in the same role): that is the server's bug.
        """
        if handle.participant != seat.participant or handle.watcher:
            raise ValueError("handle and seat name different participants")
        room = self._index.room_for(seat)
        out: list[Effect] = []
        participant = self._participants.get(seat.participant)
        if participant is None:
            participant = self._index.create(room, seat)
        else:
            participant.seat = seat
            if participant.handle is not None:
                send(out, participant, views.replaced())
                close(out, participant, CloseCode.REPLACED, "replaced by a newer connection")
                room.settle(out)
            if participant.state is LEFT:
                if participant.role is Role.CLIENT:
                    participant.transition(WAITING)
                    participant.waiting_since = self._clock()
                else:
                    participant.transition(ADMITTED)
        if devices is not None and participant.role is Role.CLIENT:
            participant.devices = devices
        participant.handle = handle
        participant.offline_since = None
        send(out, participant, views.welcome(participant, ice_servers))
        if participant.state is ENDED:
            send(out, participant, Ended(appointment=room.appointment))
            close(out, participant, CloseCode.ENDED, "the appointment has ended")
            return out
        if participant.state is WAITING:
            send(out, participant, views.waiting(participant, self._clock()))
        room.settle(out)
        self._refresh_lobby(out, room.therapist, also=handle)
        self._emit(events.Joined(room.appointment, participant.id, seat.role, room.therapist))
        return out

    def watch(self, watcher: Watcher, handle: Handle) -> list[Effect]:
        """A therapist's lobby socket arrived: it is welcomed and sent the lobby."""
        self._lobbies.add(watcher, handle)
        out: list[Effect] = [Deliver(handle, views.lobby_welcome())]
        self._refresh_lobby(out, watcher.therapist, also=handle)
        return out

    def unwatch(self, handle: Handle) -> list[Effect]:
        """The lobby socket ``handle`` is gone.  Anything else is ignored."""
        watcher = self._lobbies.remove(handle)
        if watcher is not None and not self._index.has_rooms(watcher.therapist):
            self._lobbies.forget(watcher.therapist)
        return []

    def disconnect(self, handle: Handle) -> list[Effect]:
        """The connection ``handle`` went away without ``leave``.  Stale handles are ignored.

        A waiting client has left; an admitted participant stays admitted, to come back in.
        """
        if handle.watcher:
            return self.unwatch(handle)
        participant = self._current(handle)
        if participant is None:
            return []
        out: list[Effect] = []
        participant.handle = None
        if participant.state is WAITING:
            participant.transition(LEFT)
        else:
            participant.offline_since = self._clock()
        return self._finish(out, self._rooms[participant.appointment])

    def give_up(self, limit: dt.timedelta) -> list[Effect]:
        """Mark as left every admitted participant whose connection has been gone for
        ``limit`` or longer: the other side sees them leave, as if they had said ``leave``."""
        out: list[Effect] = []
        now = self._clock()
        for participant in list(self._participants.values()):
            since = participant.offline_since
            if since is None or participant.online or now - since < limit:
                continue
            participant.offline_since = None
            if participant.state not in (ADMITTED, IN_CALL):
                continue
            participant.transition(LEFT)
            room = self._rooms[participant.appointment]
            self._finish(out, room)
            self._emit(
                events.Left(room.appointment, participant.id, participant.role, room.therapist)
            )
        return out

    def leave(self, actor: Handle) -> list[Effect]:
        """The participant said ``leave``: they have left, and their connection is closed.

        A lobby socket is just closed.
        """
        if self._lobbies.watcher(actor) is not None:
            self.unwatch(actor)
            return [Close(actor, CloseCode.NORMAL, "left")]
        participant = self._current(actor)
        if participant is None:
            return []
        out: list[Effect] = []
        participant.transition(LEFT)
        close(out, participant, CloseCode.NORMAL, "left")
        room = self._rooms[participant.appointment]
        self._finish(out, room)
        self._emit(events.Left(room.appointment, participant.id, participant.role, room.therapist))
        return out

    def admit(self, actor: Handle, participant: str) -> list[Effect]:
        """Let a waiting client in.  Already admitted: nothing changes."""
        therapist = self._acting_therapist(actor)
        if therapist is None:
            return []
        client, room = self._client_of(therapist, participant)
        if client.state in (ADMITTED, IN_CALL):
            return []
        if client.state is not WAITING:
            raise _conflict(client, "cannot be admitted")
        out: list[Effect] = []
        client.transition(ADMITTED)
        send(out, client, Admitted())
        self._finish(out, room)
        self._emit(events.Admitted(room.appointment, client.id, therapist))
        return out

    def send_back(self, actor: Handle, participant: str) -> list[Effect]:
        """Move an admitted client back to the waiting room.  Already waiting: nothing changes.

        A client who is not connected has, in effect, left.
        """
        therapist = self._acting_therapist(actor)
        if therapist is None:
            return []
        client, room = self._client_of(therapist, participant)
        if client.state is WAITING:
            return []
        if client.state not in (ADMITTED, IN_CALL):
            raise _conflict(client, "cannot be sent back")
        out: list[Effect] = []
        if client.online:
            client.transition(WAITING)
            client.waiting_since = self._clock()
            send(out, client, SentBack())
            send(out, client, views.waiting(client, self._clock(), sent_back=True))
        else:
            client.transition(LEFT)
        self._finish(out, room)
        self._emit(events.SentBack(room.appointment, client.id, therapist))
        return out

    def message(self, actor: Handle, participant: str, text: str) -> list[Effect]:
        """Pass the therapist's text to a waiting client.  It is not kept."""
        therapist = self._acting_therapist(actor)
        if therapist is None:
            return []
        client, _ = self._client_of(therapist, participant)
        if client.state is not WAITING:
            raise _conflict(client, "is not waiting")
        out: list[Effect] = []
        send(out, client, MessageToWaiting(text=text))
        return out

    def end(self, actor: Handle, appointment: str) -> list[Effect]:
        """End the appointment for both participants.  Already ended: nothing changes."""
        therapist = self._acting_therapist(actor, "end an appointment")
        if therapist is None:
            return []
        room = self._rooms.get(appointment)
        if room is None or room.therapist != therapist:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such appointment")
        if room.ended:
            return []
        out: list[Effect] = []
        room.ended = True
        members = list(room.members())
        for member in members:
            member.transition(ENDED)
        for member in members:
            send(out, member, Ended(appointment=appointment))
            close(out, member, CloseCode.ENDED, "the appointment has ended")
        self._refresh_lobby(out, room.therapist)
        self._emit(events.Ended(appointment, therapist))
        return out

    def relay(self, actor: Handle, message: Relayed | Chat | MediaState) -> list[Effect]:
        """Pass media signalling to the other participant, if both are in the call."""
        # (Only a lobby socket's handle says ``watcher``: most messages skip the lookup.)
        if actor.watcher and self._lobbies.watcher(actor) is not None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"{message.TYPE} refused: a lobby socket is in no call"
            )
        sender = self._current(actor)
        if sender is None:
            return []
        state = sender.state
        if state is not ADMITTED and state is not IN_CALL:
            raise ProtocolError(
                ErrorCode.NOT_ADMITTED, f"{message.TYPE} dropped: you have not been admitted"
            )
        peer = self._rooms[sender.appointment].peer_of(sender)
        if state is not IN_CALL or peer is None or peer.state is not IN_CALL:
            log.debug("participant %s: %s dropped, no peer in the call", sender.id, message.TYPE)
            return []
        if peer.handle is None:
            return []
        relayed = message if message.id is None else dataclasses.replace(message, id=None)
        return [Deliver(peer.handle, relayed)]

    def relay_peer(self, actor: Handle) -> Handle | None:
        """The connection ``relay`` would pass ``actor``'s message to: the other
        participant's, when both are in the call; ``None`` whenever ``relay`` would do
        anything else (refuse, drop, ignore)."""
        sender = self._current(actor)
        if sender is None or sender.state is not IN_CALL:
            return None
        peer = self._rooms[sender.appointment].peer_of(sender)
        return peer.handle if peer is not None and peer.state is IN_CALL else None

    def chat(self, actor: Handle, message: Chat) -> list[Effect]:
        """Pass a chat line to the other participant; ``conflict`` if they are not in the
        call, so the sender can say it was not delivered.  Nothing is kept."""
        if self._lobbies.watcher(actor) is None:
            sender = self._current(actor)
            if sender is not None and sender.state is IN_CALL:
                out = self.relay(actor, message)
                if out:
                    return out
        raise ProtocolError(ErrorCode.CONFLICT, "chat: the other person is not in the call")

    def prune(self) -> int:
        """Forget rooms nobody is connected to and no client is admitted in; return how many.

        Ended rooms go too: the server must then refuse sockets for ended appointments
        (it learns of ``end`` from the ``events.Ended`` event).
        """
        gone = self._index.prune()
        for therapist in {room.therapist for room in gone}:
            if not self._index.has_rooms(therapist):
                self._lobbies.forget(therapist)
        return len(gone)

    def therapists(self) -> set[str]:
        """The therapists with a room or a lobby socket here."""
        return self._index.therapists() | self._lobbies.therapists()

    def forget(self, therapist: str) -> int:
        """Drop every room and lobby socket of ``therapist``, without a word to anyone: the
        rooms are held by another instance now (``signalling.routing``).  Returns how many
        rooms were dropped."""
        dropped = self._index.drop(therapist)
        self._lobbies.drop(therapist)
        return dropped

    def _current(self, handle: Handle) -> Participant | None:
        """The participant whose live connection is ``handle``; ``None`` for a stale handle."""
        participant = None if handle.watcher else self._participants.get(handle.participant)
        if participant is None or participant.handle != handle:
            log.debug("ignoring a command from stale connection %s", handle)
            return None
        return participant

    def _acting_therapist(self, actor: Handle, act: str = "do this") -> str | None:
        """The id of the therapist whose call page or lobby socket ``actor`` is; ``None`` for
        a stale connection, ``forbidden`` for a client's."""
        watcher = self._lobbies.watcher(actor)
        if watcher is not None:
            return watcher.therapist
        participant = self._current(actor)
        if participant is None:
            return None
        if participant.role is not Role.THERAPIST:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"only the therapist may {act}")
        return participant.seat.therapist

    def _client_of(self, therapist: str, participant: str) -> tuple[Participant, Room]:
        client = self._participants.get(participant)
        if client is None or client.role is not Role.CLIENT:
            raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND)
        room = self._rooms[client.appointment]
        if room.therapist != therapist:
            raise ProtocolError(ErrorCode.NOT_FOUND, _NOT_FOUND)
        return client, room

    def _finish(self, out: list[Effect], room: Room) -> list[Effect]:
        room.settle(out)
        self._refresh_lobby(out, room.therapist)
        return out

    def _refresh_lobby(
        self, out: list[Effect], therapist: str, *, also: Handle | None = None
    ) -> None:
        """Send the lobby to the therapist's connections if it changed (to ``also`` anyway)."""
        hosts = (room.host for room in self._index.rooms_of(therapist) if room.host)
        pages = [host.handle for host in hosts if host.handle is not None]
        self._lobbies.refresh(out, self.lobby(therapist), therapist, pages, also=also)
