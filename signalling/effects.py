"""What the room logic asks the network to do, addressed so that any instance can do it.

The room logic never holds a connection object.  It addresses a connection by its
``Handle`` — the participant's id plus a token unique to that connection — and returns
``Deliver`` and ``Close`` effects.  Effects travel as JSON text on the connection's fan-out
channel (``channel_of``: the participant's, or for a therapist's lobby socket the
therapist's lobby channel), and whichever instance holds the connection with that token
carries them out.  A ``Deliver`` arrives there as a ``Forwarded``: the frame the
producing instance encoded, sent on as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import orjson

from signalling.errors import CloseCode, ProtocolError
from signalling.messages import Error, Message
from signalling.protocol import encode, parse_message

#: A websocket close reason may hold at most 123 bytes.
MAX_CLOSE_REASON_BYTES = 123


class Handle(NamedTuple):
    """The address of one connection: whose it is, and a token unique to the connection.

    For a call socket ``participant`` is the participant's id.  For a therapist's lobby
    socket (``watcher``) it is the therapist's id: a lobby socket is no participant.

    A named tuple (not a dataclass) since every message looks one up and compares it:
    hashing and comparing a tuple costs a fraction of a dataclass's generated methods.
    """

    participant: str
    token: str
    watcher: bool = False


class Deliver(NamedTuple):
    """Send ``message`` on the connection ``to`` (a named tuple: one is made for every
    message sent)."""

    to: Handle
    message: Message


@dataclass(frozen=True)
class Close:
    """Close the connection ``to`` with ``code`` and a short ``reason``."""

    to: Handle
    code: CloseCode
    reason: str

    def __post_init__(self) -> None:
        if len(self.reason.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
            raise ValueError(f"close reason longer than {MAX_CLOSE_REASON_BYTES} bytes")


Effect = Deliver | Close


class Forwarded(NamedTuple):
    """A ``Deliver`` as it arrives from the instance that produced it: ``frame`` is its
    message as that instance's ``encode`` wrote it (and so checked it), for the connection
    ``to``.  It is sent on as it came: parsing it again would check nothing new, and would
    cost more than the rest of its way through this instance."""

    to: Handle
    frame: str


class Passed(NamedTuple):
    """A relayed message passed on unparsed, as the ``frame`` it came in (a frame that
    ``encode`` would write the same: ``Switchboard.relay_frame``), of type ``kind``, for the
    connection ``to``; it crosses to another instance as a ``Deliver`` does."""

    to: Handle
    kind: str
    frame: str


def channel_for(participant: str) -> str:
    """The fan-out channel on which a participant's connections receive their effects."""
    return f"alcove:participant:{participant}"


def lobby_channel_for(therapist: str) -> str:
    """The fan-out channel on which a therapist's lobby sockets receive their effects."""
    return f"alcove:lobby:{therapist}"


def channel_of(handle: Handle) -> str:
    """The fan-out channel of the connection ``handle``."""
    if handle.watcher:
        return lobby_channel_for(handle.participant)
    return channel_for(handle.participant)


def dump_effect(effect: Effect | Passed) -> str:
    """The JSON text of ``effect``, for the fan-out (``orjson``: this runs for every effect
    that crosses to another instance)."""
    address: dict[str, object] = {"participant": effect.to.participant, "token": effect.to.token}
    if effect.to.watcher:
        address["watcher"] = True
    if isinstance(effect, Passed):
        data = {"kind": "deliver", **address, "type": effect.kind, "message": effect.frame}
    elif isinstance(effect, Deliver):
        message = effect.message
        data = {"kind": "deliver", **address, "type": message.TYPE, "message": encode(message)}
    else:
        data = {"kind": "close", **address, "code": int(effect.code), "reason": effect.reason}
    return orjson.dumps(data).decode()


def load_effect(payload: str) -> Effect | Forwarded:
    """The effect ``dump_effect`` wrote; ``ValueError`` for anything else.

    A ``Deliver`` comes back as a ``Forwarded`` frame, except an ``error`` (this instance
    counts the errors it delivers, by code) and one written without its ``type`` (by an
    older instance, during a rolling upgrade): those are parsed again."""
    try:
        data = orjson.loads(payload)
        to = Handle(str(data["participant"]), str(data["token"]), data.get("watcher") is True)
        if data["kind"] == "deliver":
            frame = data["message"]
            if not isinstance(frame, str):
                raise TypeError(f"message: expected a string, got {type(frame).__name__}")
            kind = data.get("type")
            if isinstance(kind, str) and kind != Error.TYPE:
                return Forwarded(to, frame)
            return Deliver(to, parse_message(frame))
        if data["kind"] == "close":
            return Close(to, CloseCode(int(data["code"])), str(data["reason"]))
    except (KeyError, TypeError, ValueError, ProtocolError) as exc:
        raise ValueError(f"not an effect: {exc}") from exc
    raise ValueError(f"not an effect: unknown kind {data['kind']!r}")
