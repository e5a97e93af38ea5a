"""The switchboard: runs the registry's commands and carries out their effects.

A message from a socket is handed to the registry of the instance holding the rooms (the
router says which), to the worksheet handler, or, for the commonest messages, passed on by
a short way (``relay_here``, ``worksheet_lane``); the effects go out through ``Delivery``
(``signalling.delivery``): at once to a connection attached here, through the fan-out to
any other.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Protocol

from signalling.delivery import Connection, Delivery
from signalling.effects import Deliver, Effect, Handle, Passed
from signalling.errors import ErrorCode, ProtocolError
from signalling.fanout import Fanout
from signalling.lobby import Watcher
from signalling.messages import (
    Admit,
    Answer,
    CallConnected,
    Candidate,
    Chat,
    End,
    Hello,
    Leave,
    MediaState,
    Message,
    Offer,
    Ping,
    Pong,
    Relayed,
    SendBack,
    TextMessage,
)
from signalling.participants import Participant, Seat
from signalling.parts import DeviceSummary, IceServer, Role
from signalling.protocol import check_direction, error_for
from signalling.rooms import Registry
from signalling.router import Router
from signalling.routing import Leases
from signalling.worksheet_messages import (
    Editing,
    WorksheetClose,
    WorksheetCommand,
    WorksheetOpen,
    Yjs,
)

log = logging.getLogger(__name__)


class WorksheetHandler(Protocol):
    """Where worksheet messages go: the server, which knows the documents and the records.

    ``sender`` is the live participant who sent ``message``; refusals are raised as
    ``ProtocolError`` and answered with ``error``.
    """

    async def handle(self, sender: Participant, message: WorksheetCommand) -> None: ...

    async def keystroke(
        self, sender: Participant, worksheet: str, data: str, frame: str | None = None
    ) -> bool:
        """``handle`` for a ``yjs`` message not parsed (its ``worksheet`` and base64 ``data``
        as the frame has them), if the worksheet it names is the one open for ``sender``
        here; ``False`` (having done nothing): ``handle`` it after all.  ``frame``, if given,
        is the frame itself, written as ``encode`` would write the message: it may be
        passed on as it came."""
        ...


_WORKSHEET_TYPES = frozenset({WorksheetOpen, WorksheetClose, Yjs, Editing})
#: Relayed to the other participant in the call; each is sent by both roles.
_RELAYED_TYPES: frozenset[type[Message]] = frozenset({Candidate, Offer, Answer, MediaState})


def _handler_failed(kind: str) -> ProtocolError:
    """What the sender is told when the worksheet handler failed on a ``kind`` message other
    than by refusing it (a bug: logged, with the exception being handled)."""
    log.exception("the worksheet handler failed on %s", kind)
    return ProtocolError(ErrorCode.WORKSHEET_REFUSED, f"{kind} could not be handled; try again")


def _new_token() -> str:
    return secrets.token_urlsafe(12)


class Switchboard(Delivery):
    """Commands in, effects out through the ``Fanout``."""

    def __init__(
        self,
        fanout: Fanout,
        registry: Registry | None = None,
        *,
        new_token: Callable[[], str] = _new_token,
        leases: Leases | None = None,
    ) -> None:
        super().__init__(fanout)
        self.registry = registry if registry is not None else Registry()
        #: With several instances: where each therapist's rooms are held.
        self._router = Router(self, leases) if leases is not None else None
        self._new_token = new_token
        #: Set by the server; without one, worksheet messages are refused.
        self.worksheets: WorksheetHandler | None = None

    # Connections

    async def join(
        self,
        seat: Seat,
        connection: Connection,
        *,
        ice_servers: Sequence[IceServer] = (),
        devices: DeviceSummary | None = None,
    ) -> Handle:
        """Connect ``connection`` as ``seat``: it receives ``welcome`` and what follows.

        A live older connection of the same participant is replaced and closed with 4001.
        """
        handle = Handle(seat.participant, self._new_token())
        await self._attach(handle, connection)
        try:
            if self._router is not None and await self._router.join(
                seat, handle, ice_servers, devices
            ):
                return handle  # the rooms are held by another instance
            effects = self.registry.join(seat, handle, ice_servers=ice_servers, devices=devices)
        except Exception:
            await self._detach(handle)
            raise
        await self._publish(effects)
        return handle

    async def watch(self, watcher: Watcher, connection: Connection) -> Handle:
        """Connect ``connection`` as one of ``watcher``'s lobby sockets: it receives
        ``welcome``, the lobby, and every change of the lobby.  Other lobby sockets of the
        same therapist stay open."""
        handle = Handle(watcher.therapist, self._new_token(), watcher=True)
        await self._attach(handle, connection)
        try:
            if self._router is not None and await self._router.watch(watcher, handle):
                return handle
            effects = self.registry.watch(watcher, handle)
        except Exception:
            await self._detach(handle)
            raise
        await self._publish(effects)
        return handle

    async def disconnect(self, handle: Handle) -> None:
        """The socket of ``handle`` (a participant's or a lobby socket) is gone.  Safe to
        call for a replaced or closed handle."""
        await self._detach(handle)
        if self._router is not None and await self._router.disconnect(handle):
            return
        await self._publish(self.registry.disconnect(handle))

    def role_of(self, handle: Handle) -> Role | None:
        """The role ``handle`` speaks in, if it is live here or in the registry here."""
        role = self._router.role_of(handle) if self._router is not None else None
        return role if role is not None else self.registry.role_of(handle)

    # Between instances (with ``leases`` only)

    async def start(self) -> None:
        """Take the commands other instances forward here (``FanoutUnavailable`` while the
        fan-out is down: try again).  Nothing to do for a single instance."""
        if self._router is not None:
            await self._router.start()

    async def keep_leases(self) -> None:
        """Renew the leases of the rooms held here (every few seconds)."""
        if self._router is not None:
            await self._router.keep_leases()

    async def resync(self) -> None:
        """The fan-out is back after losing touch: see ``Router.resync``."""
        if self._router is not None:
            await self._router.resync()

    async def hand_over(self) -> None:
        """Let go of the rooms held here (shutting down): their sockets elsewhere reconnect
        and the rooms are built again on another instance."""
        if self._router is not None:
            await self._router.hand_over()
            await self._router.stop()

    # Messages and commands

    async def receive(self, handle: Handle, message: Message) -> None:
        """Act on a parsed message from ``handle``; refusals are answered with ``error``."""
        self.receiving(handle, message)
        if self._router is not None and await self._router.receive(handle, message):
            return
        await self.receive_here(handle, message)

    async def receive_here(self, handle: Handle, message: Message) -> None:
        """``receive``, on the registry of this instance."""
        try:
            if type(message) in _RELAYED_TYPES:
                # The commonest by far (candidates, mostly), and sent by either role:
                # ``relay`` itself refuses a lobby socket, and ignores a stale connection.
                effects = self.registry.relay(handle, message)  # type: ignore[arg-type]
            else:
                role = self.registry.role_of(handle)
                if role is None:
                    return  # a stale connection
                check_direction(message, role)
                if type(message) in _WORKSHEET_TYPES:
                    await self._worksheet(handle, message)  # type: ignore[arg-type]
                    return
                effects = self._command(handle, message)
        except ProtocolError as exc:
            effects = [Deliver(handle, error_for(exc, message))]
        await self._publish_for(handle, effects, message)

    def relay_here(self, handle: Handle) -> tuple[Handle, Connection | None] | None:
        """Where a message relayed from ``handle`` goes, if it can go there at once: the
        rooms are held here (``forwards`` says no), nothing waits in the outbox ahead of it
        and both participants are in the call.  The peer's handle, and its connection if it
        is attached here (``None``: it is reached through the fan-out); found in one
        synchronous step, for the commonest frame of all (``_reached``, inlined).  ``None``:
        the message is forwarded (``forwards``) or takes the full way (``receive``)."""
        router = self._router
        if self._draining or self._outbox or (router is not None and router.forwards(handle)):
            return None
        peer = self.registry.relay_peer(handle)
        if peer is None:
            return None
        connection = self._attached.get(peer)
        if connection is not None and router is not None:
            router.heard(peer)
        return peer, connection

    def forwards(self, handle: Handle) -> bool:
        """Whether a message from ``handle`` may have to go to another instance."""
        return self._router is not None and self._router.forwards(handle)

    def forward_now(self, handle: Handle, frame: str) -> bool:
        """``forward_frame`` in one step, if it can be (``Router.forward_now``); ``False``:
        nothing was done, and ``forward_frame`` must be awaited."""
        return self._router is not None and self._router.forward_now(handle, frame)

    async def forward_frame(self, handle: Handle, frame: str) -> bool:
        """Send a ``plain_candidate`` frame, unparsed, to the instance holding ``handle``'s
        rooms, as ``receive`` sends a message there; ``False``: they are held here after
        all (take the way of ``receive_here``)."""
        return self._router is not None and await self._router.receive(handle, frame=frame)

    def relay_now(self, lane: tuple[Handle, Connection | None], kind: str, frame: str) -> bool:
        """Pass a relayed frame on where ``relay_here`` said (``lane``), in the same step, if
        it can go at once: written to the peer's connection here with room for it
        (``Connection.send_now``), or taken by the fan-out for the peer's instance
        (``pass_on_now``).  ``False``: nothing was done, and ``relay_frame`` must be
        awaited."""
        connection = lane[1]
        if connection is not None:
            return connection.send_now(frame)
        return self.pass_on_now(lane[0], kind, frame)

    async def relay_frame(
        self, sender: Handle, lane: tuple[Handle, Connection | None], kind: str, frame: str
    ) -> None:
        """Pass a relayed frame on, unparsed, where ``relay_here`` said (``lane``), when it
        could not go at once (``relay_now``, which the caller tries first, in the same
        step): through the fan-out, or to the connection here behind nothing.  What
        ``receive_here`` does with the message, for a frame that ``encode`` would write the
        same (``signalling.protocol.plain_candidate``)."""
        peer, connection = lane
        if connection is None:
            await self._publish_for(sender, (Passed(peer, kind, frame),))
        else:
            # Nothing can have come between: nothing need wait behind it, either.
            await self._straight(peer, connection.send_frame(frame))

    def worksheet_lane(self, handle: Handle) -> Participant | None:
        """The sender a ``yjs`` frame from ``handle`` may be handed to the worksheet handler
        as (``keystroke``): a live participant whose rooms are held here.  ``None``: the
        message takes the full way (``receive``)."""
        if self.worksheets is None or self.forwards(handle):
            return None
        return self._live_sender(handle)

    async def keystroke(self, sender: Participant, worksheet: str, data: str, frame: str) -> bool:
        """``receive_here`` for a ``yjs`` frame not parsed (``plain_yjs``), from the sender
        ``worksheet_lane`` gave, with the worksheet and base64 data the frame has; ``False``
        (having done nothing): it takes the full way after all."""
        assert sender.handle is not None and self.worksheets is not None
        try:
            taken = await self.worksheets.keystroke(sender, worksheet, data, frame)
        except Exception as exc:
            error = exc if isinstance(exc, ProtocolError) else _handler_failed(Yjs.TYPE)
            await self._publish((Deliver(sender.handle, error_for(error)),))
            taken = True
        if taken:
            self.relaying(Yjs.TYPE)
        return taken

    def _live_sender(self, handle: Handle) -> Participant | None:
        """The participant whose live call socket ``handle`` is; None for a lobby socket or
        a replaced connection."""
        if handle.watcher:
            return None
        sender = self.registry.participant(handle.participant)
        return sender if sender is not None and sender.handle == handle else None

    async def _worksheet(self, handle: Handle, message: WorksheetCommand) -> None:
        sender = self._live_sender(handle)
        if sender is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"{message.TYPE} refused: a lobby socket has no worksheet"
            )
        if self.worksheets is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "worksheets are not available here")
        try:
            await self.worksheets.handle(sender, message)
        except ProtocolError:
            raise
        except Exception:
            raise _handler_failed(message.TYPE) from None

    async def leave(self, actor: Handle) -> None:
        await self._publish(self.registry.leave(actor))

    async def admit(self, actor: Handle, participant: str) -> None:
        await self._publish(self.registry.admit(actor, participant))

    async def send_back(self, actor: Handle, participant: str) -> None:
        await self._publish(self.registry.send_back(actor, participant))

    async def message(self, actor: Handle, participant: str, text: str) -> None:
        await self._publish(self.registry.message(actor, participant, text))

    async def end(self, actor: Handle, appointment: str) -> None:
        await self._publish(self.registry.end(actor, appointment))

    async def give_up(self, limit: dt.timedelta) -> None:
        """Mark as left the participants gone for ``limit`` without reconnecting."""
        await self._publish(self.registry.give_up(limit))

    async def relay(self, actor: Handle, message: Relayed) -> None:
        await self._publish(self.registry.relay(actor, message))

    def _command(self, handle: Handle, message: Message) -> list[Effect]:
        """The effects of ``message`` (neither relayed media nor a worksheet message: the
        caller has routed those)."""
        registry = self.registry
        match message:
            case Admit():
                return registry.admit(handle, message.participant)
            case SendBack():
                return registry.send_back(handle, message.participant)
            case TextMessage():
                return registry.message(handle, message.participant, message.text)
            case End():
                return registry.end(handle, message.appointment)
            case Leave():
                return registry.leave(handle)
            case Chat():
                return registry.chat(handle, message)
            case Ping():
                return [Deliver(handle, Pong(ts=message.ts))]
            case CallConnected():
                return []  # for the server's metrics (see ``server.metrics``)
            case Pong():
                return []
            case Hello():
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "hello was already received")
        raise ProtocolError(ErrorCode.FORBIDDEN, f"{message.TYPE!r} is sent by the server only")
