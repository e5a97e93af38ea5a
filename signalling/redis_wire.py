"""What the Redis fan-out writes to a connection and reads from it, past redis-py's layers.

- ``publish_commands``: the RESP bytes of a batch of ``PUBLISH`` commands, written at once.
- ``Replies``: a connection's replies, in order, read from its parser.  redis-py wraps the
  parser's ``read_response`` in two more layers for every reply, for timeouts and health
  checks the fan-out does not use (it sets no socket timeout and times each batch itself).
  With hiredis, every complete reply in what was read from the socket is parsed already:
  those are taken at once, rather than through a coroutine each (a reader of pub/sub
  messages spent a tenth of a relayed message's CPU on that); ``some`` hands them over
  together, for a loop that awaits once per read rather than once per reply.

An error reply is returned, not raised: the caller raises it as the connection would.  One
saying the connection is unusable is raised, as the parser raises it.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - an older or newer redis-py: read one at a time
    NOT_ENOUGH_DATA = None


def publish_commands(batch: list[tuple[str, str]]) -> bytes:
    """The RESP bytes of one ``PUBLISH channel payload`` for each of ``batch``."""
    out = bytearray()
    for channel, payload in batch:
        name, data = channel.encode(), payload.encode()
        out += b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(name),
            name,
            len(data),
            data,
        )
    return bytes(out)


class Replies:
    """The replies of one connection, in the order they come."""

    __slots__ = ("_buffered", "_gets", "_read")

    def __init__(self, connection: AbstractConnection) -> None:
        parser = getattr(connection, "_parser", None)
        read = getattr(parser, "read_response", None)
        self._read: Callable[[], Awaitable[Any]] = (
            read if callable(read) else connection.read_response
        )
        # hiredis's reader, which ``read_response`` takes one reply from; it answers
        # ``NOT_ENOUGH_DATA`` once it holds no complete reply.
        reader = getattr(parser, "_reader", None)
        gets = getattr(reader, "gets", None)
        usable = callable(gets) and callable(read) and NOT_ENOUGH_DATA is not None
        self._gets: Callable[[], Any] | None = gets if usable else None
        self._buffered: collections.deque[Any] = collections.deque()

    async def some(self) -> list[Any]:
        """The replies parsed already, in order, or if there are none, those that one read
        from the connection brings: at least one.  One saying the connection is unusable
        is raised in its turn, after those before it were returned."""
        buffered = self._buffered
        if not buffered:
            reply = await self._read()  # raises an unusable one itself
            self._take_parsed()
            if not buffered:
                return [reply]
            buffered.appendleft(reply)
        out: list[Any] = []
        while buffered:
            reply = buffered.popleft()
            # Checked in line: this runs for every relayed message.
            if isinstance(reply, RedisConnectionError) or (
                type(reply) is list and reply and isinstance(reply[0], RedisConnectionError)
            ):
                if out:
                    buffered.appendleft(reply)  # raised by the next call
                    return out
                raise reply if isinstance(reply, RedisConnectionError) else reply[0]
            out.append(reply)
        return out

    def _take_parsed(self) -> None:
        gets = self._gets
        if gets is not None:
            more = gets()
            while more is not NOT_ENOUGH_DATA:
                self._buffered.append(more)
                more = gets()
