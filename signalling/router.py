"""The switchboard's routing between instances (see ``signalling.routing`` for the design).

A ``Router`` belongs to one ``Switchboard`` when several instances share a fan-out.  For
each socket attached here it remembers its ``Home``: the therapist whose rooms it belongs to
and the owner it was registered with.  A command from such a socket goes to the registry
here if this instance owns the rooms, or else to the owner's inbox.  A socket whose rooms
have moved since it was registered is closed with 1012, and its browser reconnects; the
owner learns who is admitted from the database, so nobody goes back to the waiting room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signalling.effects import Close, Deliver, Effect, Handle
from signalling.errors import CloseCode, ErrorCode, ProtocolError
from signalling.fanout import FanoutUnavailable, Subscription
from signalling.lobby import Watcher
from signalling.messages import Candidate, Message
from signalling.participants import Seat
from signalling.parts import DeviceSummary, IceServer, Role
from signalling.protocol import error_for, parse_message
from signalling.routing import (
    MOVED_CHANNEL,
    Command,
    Leases,
    Moved,
    dump_command,
    dump_moved,
    inbox_channel,
    load_command,
    load_moved,
)

if TYPE_CHECKING:
    from signalling.switchboard import Switchboard

log = logging.getLogger(__name__)

MOVED_REASON = "the room moved to another server; reconnecting"
#: A socket whose forwarded ``hello`` has had no answer for this long is closed with 1012,
#: and its browser tries again: the command was lost (the owner was cut off from Redis).
ANSWER_SECONDS = 5.0
UNREACHABLE = (
    "the server holding this session could not be reached just now; it will work again in a moment"
)


@dataclass(frozen=True)
class Home:
    """Where an attached socket's commands go."""

    handle: Handle
    therapist: str
    role: Role
    owner: str


class Router:
    """Sends each attached socket's commands to the owner of its therapist's rooms."""

    def __init__(self, switchboard: Switchboard, leases: Leases) -> None:
        self._switchboard = switchboard
        self._leases = leases
        self._homes: dict[str, Home] = {}
        self._subscriptions: list[Subscription] = []
        #: The sockets whose forwarded ``hello`` has not been answered yet, by token.
        self._unanswered: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._me = leases.me

    @property
    def me(self) -> str:
        return self._me

    def role_of(self, handle: Handle) -> Role | None:
        """The role of a socket attached here, wherever its rooms are held."""
        home = self._homes.get(handle.token)
        return home.role if home is not None and home.handle == handle else None

    async def start(self) -> None:
        """Listen for forwarded commands and ownership changes (``FanoutUnavailable`` while
        the fan-out is down: try again)."""
        if self._subscriptions:
            return
        fanout = self._switchboard.fanout
        inbox = await fanout.subscribe(inbox_channel(self.me), self._on_command)
        try:
            moved = await fanout.subscribe(MOVED_CHANNEL, self._on_moved)
        except FanoutUnavailable:
            await inbox.cancel()
            raise
        self._subscriptions = [inbox, moved]

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.cancel()
        self._subscriptions = []

    # From the sockets attached here

    async def join(
        self,
        seat: Seat,
        handle: Handle,
        ice_servers: Sequence[IceServer],
        devices: DeviceSummary | None,
    ) -> bool:
        """Register a new socket; whether its ``join`` went to another instance.

        ``ProtocolError(UNAVAILABLE)`` if the owner cannot be found or reached."""
        command = Command(
            "join", seat.therapist, handle, seat=seat, ice_servers=tuple(ice_servers),
            devices=devices,
        )  # fmt: skip
        return await self._register(command, seat.role)

    async def watch(self, watcher: Watcher, handle: Handle) -> bool:
        command = Command("watch", watcher.therapist, handle, watcher=watcher)
        return await self._register(command, Role.THERAPIST)

    async def receive(
        self, handle: Handle, message: Message | None = None, *, frame: str | None = None
    ) -> bool:
        """Whether ``message`` (or, unparsed, ``frame``: a ``plain_candidate``) was dealt
        with here (forwarded, or refused because the rooms moved or cannot be reached);
        ``False``: the registry here holds the rooms."""
        home = self._homes.get(handle.token)
        if home is None:
            return False
        try:
            owner = await self._owner(home.therapist)
        except FanoutUnavailable:
            await self._refuse(handle, message)
            return True
        if owner != home.owner:
            await self._close(home)
            return True
        if owner == self.me:
            return False
        try:
            command = Command("receive", home.therapist, handle, message=message, frame=frame)
            await self._switchboard.fanout.publish(inbox_channel(owner), dump_command(command))
        except FanoutUnavailable:
            await self._refuse(handle, message)
        return True

    def forward_now(self, handle: Handle, frame: str) -> bool:
        """``receive`` of a ``plain_candidate`` frame in one step, if it can be: the owner of
        the rooms known at once (``Leases.owner_now``), still the one the socket came to and
        another instance, and the fan-out taking the command at once
        (``Fanout.publish_now``).  ``False``: nothing was done, and ``receive`` must be
        awaited."""
        home = self._homes.get(handle.token)
        if home is None:
            return False
        owner = self._leases.owner_now(home.therapist)
        if owner is None or owner != home.owner or owner == self._me:
            return False
        command = Command("receive", home.therapist, handle, frame=frame)
        return self._switchboard.fanout.publish_now(inbox_channel(owner), dump_command(command))

    async def disconnect(self, handle: Handle) -> bool:
        """Forget a socket that went away; whether its rooms are held elsewhere (and were
        told, if they could be)."""
        self.heard(handle)
        home = self._homes.pop(handle.token, None)
        if home is None or home.owner == self.me:
            return False
        try:
            command = Command("disconnect", home.therapist, handle)
            await self._switchboard.fanout.publish(inbox_channel(home.owner), dump_command(command))
        except FanoutUnavailable:
            log.info("could not tell another instance that a socket went away")
        return True

    def forwards(self, handle: Handle) -> bool:
        """Whether a message from ``handle`` may have to go to another instance (``receive``
        decides); ``False``: its rooms are held here, or it is a forwarded one's."""
        home = self._homes.get(handle.token)
        if home is None:
            return False
        return home.owner != self._me or home.therapist not in self._leases.held

    def heard(self, handle: Handle) -> None:
        """Something arrived for ``handle``: its ``hello`` was answered."""
        timer = self._unanswered.pop(handle.token, None)
        if timer is not None:
            timer.cancel()

    def _expect_answer(self, home: Home) -> None:
        def unanswered() -> None:
            self._unanswered.pop(home.handle.token, None)
            if self._homes.get(home.handle.token) is home:
                log.info("a forwarded hello had no answer: the socket tries again")
                task = asyncio.get_running_loop().create_task(self._close(home))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

        loop = asyncio.get_running_loop()
        self._unanswered[home.handle.token] = loop.call_later(ANSWER_SECONDS, unanswered)

    async def _register(self, command: Command, role: Role) -> bool:
        try:
            owner = await self._owner(command.therapist)
        except FanoutUnavailable as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE, UNREACHABLE) from exc
        home = Home(command.handle, command.therapist, role, owner)
        self._homes[command.handle.token] = home
        if owner == self.me:
            return False
        self._expect_answer(home)
        try:
            await self._switchboard.fanout.publish(inbox_channel(owner), dump_command(command))
        except FanoutUnavailable as exc:
            self._homes.pop(command.handle.token, None)
            self.heard(command.handle)
            raise ProtocolError(ErrorCode.UNAVAILABLE, UNREACHABLE) from exc
        return True

    async def _owner(self, therapist: str) -> str:
        owner, taken = await self._leases.owner(therapist)
        if taken:
            await self._announce(Moved(therapist, owner))
        return owner

    async def _refuse(self, handle: Handle, message: Message | None) -> None:
        error = ProtocolError(ErrorCode.UNAVAILABLE, UNREACHABLE)
        await self._switchboard.perform_here([Deliver(handle, error_for(error, message))])

    # At the owner

    def _on_command(self, payload: str) -> Awaitable[object] | None:
        """Carry out a command forwarded to the rooms held here (the inbox's callback).  A
        plain candidate whose peer's connection is attached here, with room for it, is
        written at once, in the fan-out reader's own step; anything else is returned for the
        reader to await."""
        try:
            command = load_command(payload)
        except ValueError:
            log.exception("dropping an unreadable command")
            return None
        frame = command.frame
        if frame is not None and command.therapist in self._leases.held:
            # A candidate as a browser writes it: passed on unparsed if it can be.
            switchboard = self._switchboard
            lane = switchboard.relay_here(command.handle)
            if lane is not None:
                if switchboard.relay_now(lane, Candidate.TYPE, frame):
                    return None
                return switchboard.relay_frame(command.handle, lane, Candidate.TYPE, frame)
        return self._carry_out(command)

    async def _carry_out(self, command: Command) -> None:
        switchboard = self._switchboard
        if command.therapist not in self._leases.held:
            # Sent before the rooms moved away from here: the socket reconnects to the owner.
            if command.op != "disconnect":
                await switchboard.publish([Close(command.handle, CloseCode.MOVED, MOVED_REASON)])
            return
        registry = switchboard.registry
        effects: list[Effect] = []
        try:
            if command.op == "join" and command.seat is not None:
                effects = registry.join(
                    command.seat,
                    command.handle,
                    ice_servers=command.ice_servers,
                    devices=command.devices,
                )
            elif command.op == "watch" and command.watcher is not None:
                effects = registry.watch(command.watcher, command.handle)
            elif command.op == "disconnect":
                effects = registry.disconnect(command.handle)
            elif command.op == "receive" and command.frame is not None:
                # A candidate the short way (``_on_command``) could not pass on: the peer is
                # not in the call, or something waits in the outbox.
                await switchboard.receive_here(command.handle, parse_message(command.frame))
                return
            elif command.op == "receive" and command.message is not None:
                await switchboard.receive_here(command.handle, command.message)
                return
        except ValueError:
            log.exception("could not carry out a forwarded %s", command.op)
            effects = [Close(command.handle, CloseCode.MOVED, MOVED_REASON)]
        await switchboard.publish(effects)

    # Ownership changes

    async def _on_moved(self, payload: str) -> None:
        try:
            moved = load_moved(payload)
        except ValueError:
            log.exception("dropping an unreadable ownership change")
            return
        self._leases.forget(moved.therapist)
        if moved.owner != self.me:
            self._forget_rooms(moved.therapist)
        for home in list(self._homes.values()):
            if home.therapist == moved.therapist and home.owner != moved.owner:
                await self._close(home)

    async def keep_leases(self) -> None:
        """Renew the leases of the rooms held here; close what was lost meanwhile."""
        lost = await self._leases.renew(self._switchboard.registry.therapists())
        for therapist in lost:
            log.warning("lost the lease of %s's rooms to another instance", therapist)
            self._forget_rooms(therapist)
            for home in list(self._homes.values()):
                if home.therapist == therapist and home.owner == self.me:
                    await self._close(home)

    async def resync(self) -> None:
        """After the fan-out lost touch (what was published meanwhile is lost): the sockets
        attached here whose rooms are held elsewhere reconnect, and so learn the state of
        their rooms afresh; the rooms held here lost nothing of their own.  The leases are
        renewed first: a Redis that restarted empty has forgotten them, and the sooner they
        are taken again, the sooner an instance that took them meanwhile hears of it (and the
        shorter two instances both believe they hold the same rooms)."""
        try:
            await self.keep_leases()
        except FanoutUnavailable as exc:
            log.warning("could not renew the leases after Redis came back: %s", exc)
        for home in list(self._homes.values()):
            if home.owner != self.me:
                await self._close(home)

    async def hand_over(self) -> None:
        """Give up every lease (shutting down), and tell the other instances at once."""
        for therapist in await self._leases.release():
            try:
                await self._announce(Moved(therapist, None))
            except FanoutUnavailable:
                break  # the leases were released: the others find out at their next command

    async def _announce(self, moved: Moved) -> None:
        await self._switchboard.fanout.publish(MOVED_CHANNEL, dump_moved(moved))

    def _forget_rooms(self, therapist: str) -> None:
        dropped = self._switchboard.registry.forget(therapist)
        if dropped:
            log.info("dropped %d rooms now held by another instance", dropped)

    async def _close(self, home: Home) -> None:
        self._homes.pop(home.handle.token, None)
        await self._switchboard.perform_here([Close(home.handle, CloseCode.MOVED, MOVED_REASON)])
