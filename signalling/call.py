"""A room — one appointment and its two participants — and the rule that puts them in a call.

The pair is ``in_call`` exactly while both are admitted and connected: ``Room.settle``
restores that after every command, telling each connected participant ``peer-joined`` or
``peer-left`` about the other.  Only participants are ever in a room: a therapist's lobby
socket (``signalling.lobby``) is not, so it never brings anyone into a call.
"""

from __future__ import annotations

from collections.abc import Iterator

from signalling import views
from signalling.effects import Close, Deliver, Effect
from signalling.errors import CloseCode
from signalling.messages import Message
from signalling.participants import ADMITTED, IN_CALL, Participant
from signalling.parts import Role


def send(out: list[Effect], to: Participant, message: Message) -> None:
    """Deliver ``message`` to ``to``'s live connection, if it has one."""
    if to.handle is not None:
        out.append(Deliver(to.handle, message))


def close(out: list[Effect], to: Participant, code: CloseCode, reason: str) -> None:
    """Close ``to``'s live connection, if it has one; it has none afterwards."""
    if to.handle is not None:
        out.append(Close(to.handle, code, reason))
        to.handle = None


class Room:
    """One appointment: its owner, its two participants (once they appear), whether it ended."""

    def __init__(self, appointment: str, therapist: str) -> None:
        self.appointment = appointment
        self.therapist = therapist
        self.host: Participant | None = None
        self.client: Participant | None = None
        self.ended = False

    def member(self, role: Role) -> Participant | None:
        return self.host if role is Role.THERAPIST else self.client

    def members(self) -> Iterator[Participant]:
        yield from (p for p in (self.client, self.host) if p is not None)

    def peer_of(self, participant: Participant) -> Participant | None:
        return self.client if participant.role is Role.THERAPIST else self.host

    def settle(self, out: list[Effect]) -> None:
        """Put the pair in the call if both are admitted and connected, else take them out
        of it, telling each one still connected about the other."""
        host, client = self.host, self.client
        if (
            host is not None
            and client is not None
            and all(p.online and p.state in (ADMITTED, IN_CALL) for p in (host, client))
        ):
            if host.state is IN_CALL and client.state is IN_CALL:
                return
            host.transition(IN_CALL)
            client.transition(IN_CALL)
            for one, other in ((host, client), (client, host)):
                send(out, one, views.peer_joined(other))
            return
        for member in self.members():
            if member.state is IN_CALL:
                member.transition(ADMITTED)
                peer = self.peer_of(member)
                if peer is not None:
                    send(out, member, views.peer_left(peer))
