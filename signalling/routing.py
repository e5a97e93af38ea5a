"""Rooms across instances: which instance holds a therapist's rooms, and how commands reach it.

With one instance there is nothing to route: the switchboard runs every command on its own
registry.  With several (the Redis fan-out), a participant's socket may be attached to any
instance, but each therapist's rooms — every participant's state, the lobby sockets, the
live worksheets — are held by exactly one: the therapist's **owner**.  The owner holds a
lease (``Leases``), taken by the first instance that needs the rooms and renewed while it
holds any of them.  Another instance forwards the commands of its sockets to the owner's
inbox channel (``inbox_channel``) as ``Command``s; the owner runs them on its registry, and
their effects reach the sockets through the fan-out as usual.

When the owner changes (it shut down and released its leases, it crashed and its lease ran
out, or it lost a lease while Redis was away), the rooms are built again on the new owner
from what outlives a process — admission is stored in the database — and from the clients:
each instance closes its sockets that were registered with another owner, with 1012
(``CloseCode.MOVED``), and the browsers reconnect, without being sent back to the waiting
room.  An ownership change is announced on ``MOVED_CHANNEL`` (``Moved``), so this happens
at once rather than at the sockets' next message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from signalling.effects import Handle
from signalling.lobby import Watcher
from signalling.messages import Message
from signalling.participants import Seat
from signalling.parts import DeviceSummary, IceServer, Role
from signalling.protocol import CANDIDATE_PREFIX, encode, parse_message, plain_candidate
from signalling.wire import decode_struct, encode_struct

#: Ownership changes are announced here, to every instance.
MOVED_CHANNEL = "alcove:rooms:moved"


def inbox_channel(instance: str) -> str:
    """The fan-out channel on which ``instance`` receives the commands forwarded to it."""
    return f"alcove:instance:{instance}"


class Leases(Protocol):
    """Who owns each therapist's rooms.  Every method may raise ``FanoutUnavailable``."""

    @property
    def me(self) -> str:
        """This instance's id, unique among the running instances."""

    @property
    def held(self) -> AbstractSet[str]:
        """The therapists whose lease this instance holds (asked for every message: it may
        be a live view, to be read and not kept)."""

    async def owner(self, therapist: str) -> tuple[str, bool]:
        """The instance that owns ``therapist``'s rooms, taking the lease if nobody holds
        it; and whether this call took it."""

    def owner_now(self, therapist: str) -> str | None:
        """What ``owner`` would answer at once, without asking anyone: this instance, if it
        holds the lease, or the owner it remembers; ``None``: ask ``owner``.  Never
        raises."""

    async def renew(self, therapists: Iterable[str]) -> list[str]:
        """Extend this instance's leases of ``therapists`` (taking any that lapsed and
        nobody took); let go of the others it holds.  Returns those another instance holds
        now: this instance has lost them."""

    async def release(self) -> list[str]:
        """Give up every lease this instance holds (it is shutting down); returns them."""

    def forget(self, therapist: str) -> None:
        """Drop what is remembered of ``therapist``'s owner: it has changed."""


# Commands


Op = Literal["join", "watch", "receive", "disconnect"]


class Command(NamedTuple):
    """What a socket attached to one instance asks of the owner of its therapist's rooms (a
    named tuple: one is made on each side for every message forwarded)."""

    op: Op
    therapist: str
    handle: Handle
    seat: Seat | None = None
    watcher: Watcher | None = None
    ice_servers: tuple[IceServer, ...] = ()
    devices: DeviceSummary | None = None
    message: Message | None = None
    #: Instead of ``message``: a ``candidate`` frame written as a browser writes one
    #: (``plain_candidate``), read at the owner only if it cannot be passed on unparsed.
    frame: str | None = None


def _seat_json(seat: Seat) -> dict[str, Any]:
    return {
        "participant": seat.participant,
        "role": seat.role.value,
        "appointment": seat.appointment,
        "therapist": seat.therapist,
        "name": seat.name,
        "start": seat.start.isoformat(),
        "end": seat.end.isoformat(),
        "welcome": seat.welcome,
        "admitted": seat.admitted,
    }


def _seat(data: dict[str, Any]) -> Seat:
    return Seat(
        participant=str(data["participant"]),
        role=Role(data["role"]),
        appointment=str(data["appointment"]),
        therapist=str(data["therapist"]),
        name=str(data["name"]),
        start=dt.datetime.fromisoformat(str(data["start"])),
        end=dt.datetime.fromisoformat(str(data["end"])),
        welcome=str(data["welcome"]),
        admitted=data["admitted"] is True,
    )


def dump_command(command: Command) -> str:
    """The JSON text of ``command``, for the owner's inbox."""
    handle = command.handle
    data: dict[str, Any] = {
        "op": command.op,
        "therapist": command.therapist,
        "participant": handle.participant,
        "token": handle.token,
        "watcher": handle.watcher,
    }
    if command.seat is not None:
        data["seat"] = _seat_json(command.seat)
    if command.watcher is not None:
        data["lobby"] = {"therapist": command.watcher.therapist, "name": command.watcher.name}
    if command.ice_servers:
        data["ice"] = [encode_struct(server) for server in command.ice_servers]
    if command.devices is not None:
        data["devices"] = encode_struct(command.devices)
    if command.message is not None:
        data["message"] = encode(command.message)
    elif command.frame is not None:
        data["message"] = command.frame
    return orjson.dumps(data).decode()


def load_command(payload: str) -> Command:
    """The command ``dump_command`` wrote; ``ValueError`` for anything else."""
    try:
        data = orjson.loads(payload)
        op = data["op"]
        if op not in ("join", "watch", "receive", "disconnect"):
            raise ValueError(f"unknown op {op!r}")
        handle = Handle(str(data["participant"]), str(data["token"]), data["watcher"] is True)
        if op == "receive":  # by far the commonest: a message, and nothing else
            frame = str(data["message"])
            if frame.startswith(CANDIDATE_PREFIX) and plain_candidate(frame):
                return Command(op, str(data["therapist"]), handle, frame=frame)
            return Command(op, str(data["therapist"]), handle, message=parse_message(frame))
        lobby = data.get("lobby")
        devices = data.get("devices")
        message = data.get("message")
        return Command(
            op=op,
            therapist=str(data["therapist"]),
            handle=handle,
            seat=_seat(data["seat"]) if "seat" in data else None,
            watcher=Watcher(str(lobby["therapist"]), str(lobby["name"])) if lobby else None,
            ice_servers=tuple(
                decode_struct(IceServer, server, "ice") for server in data.get("ice", ())
            ),
            devices=decode_struct(DeviceSummary, devices, "devices") if devices else None,
            message=parse_message(str(message)) if message is not None else None,
        )
    except ValueError:
        raise
    except Exception as exc:  # a KeyError, TypeError or ProtocolError: not a command
        raise ValueError(f"not a command: {type(exc).__name__}: {exc}") from exc


# Ownership changes


@dataclass(frozen=True)
class Moved:
    """``therapist``'s rooms are now held by ``owner`` (``None``: by nobody, until the next
    instance that needs them takes the lease)."""

    therapist: str
    owner: str | None


def dump_moved(moved: Moved) -> str:
    return orjson.dumps({"therapist": moved.therapist, "owner": moved.owner}).decode()


def load_moved(payload: str) -> Moved:
    """The announcement ``dump_moved`` wrote; ``ValueError`` for anything else."""
    try:
        data = orjson.loads(payload)
        owner = data["owner"]
        return Moved(str(data["therapist"]), None if owner is None else str(owner))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an ownership change: {exc}") from exc
