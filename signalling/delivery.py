"""Delivery: the connections attached to this instance, and the effects carried out on them.

Every effect — a message to deliver, a connection to close — is addressed to a ``Handle``.
An effect for a connection attached to this very instance is carried out at once; any other
is published on the recipient's fan-out channel.  Each instance subscribes to the channels
of the connections attached to it (a participant's channel, or a therapist's lobby channel
for their lobby sockets) and performs the effects addressed to its own connections (matched
by ``Handle`` token).  So the room logic never holds a reference to another participant's
connection, and two participants on different instances are reached the same way as two on
one instance, less one hop through the broker.

Effects are published in the order the registry produced them, across all commands: a
single drain loop empties one queue, so a later command's effects never overtake an
earlier one's.  A message for a connection attached here, with nothing waiting ahead of it,
goes straight to the socket without the queue; while it does, whatever else is published
waits behind it, as it would behind the drain loop.

``Delivery`` is the switchboard's half that knows the sockets and the fan-out;
``signalling.switchboard`` adds the commands.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

from signalling.effects import (
    Close,
    Deliver,
    Effect,
    Forwarded,
    Handle,
    Passed,
    channel_of,
    dump_effect,
    load_effect,
)
from signalling.errors import ErrorCode, ProtocolError
from signalling.fanout import Fanout, FanoutUnavailable, Subscription
from signalling.messages import Error, Message
from signalling.protocol import error_for

if TYPE_CHECKING:
    from signalling.router import Router

log = logging.getLogger(__name__)

UNAVAILABLE_VALUE = (
    "the other person could not be reached just now (the servers lost touch with each "
    "other); it will work again in a moment"
)


class Connection(Protocol):
    """One participant's socket, as the room logic sees it.

    ``send`` must not wait on a slow peer: queue the frame and return.  Every method may be
    called after the socket has gone away, and must then do nothing.
    """

    async def send(self, message: Message) -> None: ...

    async def send_frame(self, frame: str) -> None:
        """Send a message already encoded (by ``signalling.protocol.encode``, on another
        instance), as ``send`` does."""

    def send_now(self, frame: str) -> bool:
        """``send_frame`` at once, if that needs no waiting; whether it was done (``False``:
        nothing was, and ``send_frame`` is the way)."""

    async def close(self, code: int, reason: str) -> None: ...


class Delivery:
    """The local end of every channel: attached connections, the outbox and the fan-out."""

    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        #: Set by the switchboard with several instances (told what arrives for whom).
        self._router: Router | None = None
        #: The attached connections, by fan-out channel and token.
        self._local: dict[str, dict[str, Connection]] = {}
        #: The same connections by handle: the lookup for every message sent.
        self._attached: dict[Handle, Connection] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._outbox: collections.deque[Effect | Passed] = collections.deque()
        self._draining = False
        self._resume: set[asyncio.Task[None]] = set()
        #: Effects lost because the fan-out was down and their connection is elsewhere.
        self.undelivered = 0

    @property
    def fanout(self) -> Fanout:
        return self._fanout

    def is_local(self, handle: Handle) -> bool:
        """Whether ``handle``'s connection is attached to this instance and not closed."""
        return handle in self._attached

    async def send(self, handle: Handle, message: Message) -> None:
        """Send ``message`` to the connection ``handle``, in order with everything else."""
        if not (self._draining or self._outbox) and type(message) is not Error:
            # Nothing is waiting to go out ahead of it: to a connection attached here, it
            # goes straight to the socket (the drain loop would do no more).
            connection = self._reached(handle)
            if connection is not None:
                await self._straight(handle, connection.send(message))
                return
        await self._publish((Deliver(handle, message),))

    async def send_frame(self, handle: Handle, kind: str, frame: str) -> None:
        """``send`` for a message of type ``kind`` that is passed on as the ``frame`` it came
        in, unparsed: a frame ``encode`` would write the same."""
        if not (self._draining or self._outbox):
            connection = self._reached(handle)
            if connection is not None:
                if not connection.send_now(frame):
                    await self._straight(handle, connection.send_frame(frame))
                return
        await self._publish((Passed(handle, kind, frame),))

    def pass_on_now(self, to: Handle, kind: str, frame: str) -> bool:
        """Publish, in one step, a frame passed on unparsed for a connection of another
        instance, if nothing waits to go out ahead of it and the fan-out takes it at once
        (``Fanout.publish_now``); ``False``: nothing was done (``send_frame`` will do it)."""
        if self._draining or self._outbox:
            return False
        return self._fanout.publish_now(channel_of(to), dump_effect(Passed(to, kind, frame)))

    async def _straight(self, handle: Handle, sending: Awaitable[None]) -> None:
        """Await ``sending``, a send to ``handle``'s connection begun with nothing waiting
        ahead of it, as the drain loop would: what is published meanwhile waits behind it."""
        self._draining = True
        try:
            await sending
        except Exception:
            log.exception("could not carry out an effect on %s", channel_of(handle))
        finally:
            self._draining = False
        if self._outbox:
            await self._publish(())

    async def _publish_for(
        self,
        sender: Handle,
        effects: Sequence[Effect | Passed],
        reply_to: Message | None = None,
    ) -> None:
        """``_publish`` the effects of what ``sender`` sent (``reply_to``, if parsed), and
        tell ``sender`` ``unavailable`` if the fan-out lost any of them."""
        lost = self.undelivered
        await self._publish(effects)
        if self.undelivered > lost:
            error = ProtocolError(ErrorCode.UNAVAILABLE, UNAVAILABLE_VALUE)
            await self._perform_locally(Deliver(sender, error_for(error, reply_to)))

    async def publish(self, effects: Sequence[Effect]) -> None:
        """Carry out ``effects``, in order with all others, wherever their sockets are."""
        await self._publish(effects)

    async def perform_here(self, effects: Sequence[Effect]) -> None:
        """Carry out those of ``effects`` whose sockets are attached here; drop the rest."""
        for effect in effects:
            await self._perform_locally(effect)

    async def _publish(self, effects: Sequence[Effect | Passed]) -> None:
        self._outbox.extend(effects)
        if self._draining:
            return  # the running drain loop will get to them, in order
        self._draining = True
        try:
            while self._outbox:
                effect = self._outbox.popleft()
                try:
                    if await self._perform_locally(effect):
                        continue
                except Exception:
                    # One broken socket must not keep the effects from the others.
                    log.exception("could not carry out an effect on %s", channel_of(effect.to))
                    continue
                try:
                    await self._fanout.publish(channel_of(effect.to), dump_effect(effect))
                except FanoutUnavailable:
                    # Without the broker only this instance's own sockets can be reached.
                    self.undelivered += 1
        finally:
            self._draining = False
            if self._outbox:  # interrupted: finish in the background, keeping the order
                task = asyncio.get_running_loop().create_task(self._publish(()))
                self._resume.add(task)
                task.add_done_callback(self._resume.discard)

    def _on_payload(self, channel: str, payload: str) -> Awaitable[object] | None:
        """Carry out an effect published on ``channel`` (the fan-out's callback).  A frame
        another instance encoded, for a connection attached here with room for it, is
        written at once, in the fan-out reader's own step; anything else is returned for the
        reader to await."""
        try:
            effect = load_effect(payload)
        except ValueError:
            log.exception("dropping an unreadable effect on %s", channel)
            return None
        if not isinstance(effect, Forwarded):
            return self._perform_locally(effect)
        connection = self._reached(effect.to)
        if connection is None or connection.send_now(effect.frame):
            return None
        return connection.send_frame(effect.frame)

    async def _perform_locally(self, effect: Effect | Passed) -> bool:
        """Carry out ``effect`` if its connection is attached here; whether it was."""
        connection = self._reached(effect.to)
        if connection is None:
            return False  # another instance's connection, or one already closed
        if isinstance(effect, Passed):
            await connection.send_frame(effect.frame)
            return True
        if isinstance(effect, Close):
            await self._detach(effect.to)
            await connection.close(int(effect.code), effect.reason)
            return True
        message = effect.message
        if type(message) is Error:
            self.delivering_error(message)
        await connection.send(message)
        return True

    def _reached(self, handle: Handle) -> Connection | None:
        """The connection ``handle`` names, if it is attached here (the router is told that
        something arrived for it); ``None`` if not."""
        connection = self._attached.get(handle)
        if connection is not None and self._router is not None:
            self._router.heard(handle)
        return connection

    def receiving(self, handle: Handle, message: Message) -> None:
        """Called for each message a connection of this instance sent, before it is acted
        on (for the server's metrics)."""

    def relaying(self, kind: str) -> None:
        """Called for each message of type ``kind`` a connection of this instance sent that
        is passed on unparsed (``relay_frame``, ``forward_frame``) instead of ``receiving``
        (for the server's metrics)."""

    def delivering_error(self, error: Error) -> None:
        """Called for each ``error`` about to be sent to a connection of this instance (for
        the server's metrics)."""

    async def _attach(self, handle: Handle, connection: Connection) -> None:
        """Attach ``connection`` and subscribe to its channel.  While the fan-out is down,
        ``ProtocolError(UNAVAILABLE)``: the socket is refused, and the browser retries."""
        channel = channel_of(handle)
        self._local.setdefault(channel, {})[handle.token] = connection
        self._attached[handle] = connection
        if channel in self._subscriptions:
            return
        callback = partial(self._on_payload, channel)
        try:
            subscription = await self._fanout.subscribe(channel, callback)
        except FanoutUnavailable:
            log.warning("fan-out unavailable: a socket was refused")
            await self._detach(handle)
            raise ProtocolError(ErrorCode.UNAVAILABLE, UNAVAILABLE_VALUE) from None
        if channel in self._subscriptions:
            await subscription.cancel()  # a concurrent attach subscribed first
        else:
            self._subscriptions[channel] = subscription

    async def _detach(self, handle: Handle) -> None:
        channel = channel_of(handle)
        connections = self._local.get(channel)
        if connections is None or connections.pop(handle.token, None) is None:
            return
        self._attached.pop(handle, None)
        if not connections:
            del self._local[channel]
            subscription = self._subscriptions.pop(channel, None)
            if subscription is not None:
                await subscription.cancel()
