"""The floor: a relay with no protocol at all, on the same aiohttp and uvloop as ours.

It speaks just enough of PeerJS's protocol for ``bench.fanout.peerjs``'s clients: ``OPEN``
on connect, and each JSON message passed on to the socket named by its ``dst``, with
``src`` added.  No validation, no rooms, no admission, no metrics: what is left of relaying
a message in Python once all of that is taken away, so that the difference between it and
our relay is the price of our protocol, and the difference between it and PeerJS the price
of the language and the web framework.

Given a Redis URL, it is the floor of two instances: a message for a peer connected to
another process is published on that peer's channel (as ours publishes an effect on its
participant's), and each process subscribes to the channels of the peers connected to it
and writes what arrives to their sockets as it came. The publishes are written in batches,
one write at the event loop's next turn, and nothing is checked or waited for: no replies
read, no reconnection, no order across reconnections. Two of them relay as much as a
Python relay between two processes through Redis can, on the same cores.

    python -m bench.fanout.floor PORT [REDIS_URL NAMESPACE]
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

import hiredis
import orjson
import uvloop
from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", dict[str, web.WebSocketResponse])


def _command(*words: bytes) -> bytes:
    """The RESP bytes of one command."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class Bus:
    """Redis pub/sub with nothing else: one channel per peer, ``namespace:peer``."""

    def __init__(self, url: str, namespace: str, sockets: dict[str, web.WebSocketResponse]):
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._prefix = f"{namespace}:".encode()
        self._sockets = sockets
        self._batch: list[bytes] = []
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        published, self._publisher = await asyncio.open_connection(*self._address)
        subscribed, self._subscriber = await asyncio.open_connection(*self._address)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._discard(published)),
            loop.create_task(self._read(subscribed)),
        ]

    async def subscribe(self, peer: str) -> None:
        """Subscribe to ``peer``'s channel; return once Redis has confirmed it."""
        channel = self._prefix + peer.encode()
        confirmed = self._confirmations[channel] = asyncio.get_running_loop().create_future()
        self._subscriber.write(_command(b"SUBSCRIBE", channel))
        await confirmed

    def publish(self, peer: str, payload: bytes) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append(_command(b"PUBLISH", self._prefix + peer.encode(), payload))

    def _flush(self) -> None:
        self._publisher.write(b"".join(self._batch))
        self._batch.clear()

    async def _discard(self, replies: asyncio.StreamReader) -> None:
        while await replies.read(65536):
            pass

    async def _read(self, messages: asyncio.StreamReader) -> None:
        parser, skip = hiredis.Reader(), len(self._prefix)
        while data := await messages.read(65536):
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                kind, channel, payload = reply
                if kind == b"message":
                    to = self._sockets.get(channel[skip:].decode())
                    if to is not None:
                        await to.send_str(payload.decode())
                elif kind == b"subscribe" and channel in self._confirmations:
                    self._confirmations.pop(channel).set_result(None)


BUS = web.AppKey("bus", Bus)


async def peer(request: web.Request) -> web.StreamResponse:
    sockets = request.app[SOCKETS]
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    me = request.query.get("id", "")
    sockets[me] = ws
    bus = request.app.get(BUS)
    if bus is not None:
        await bus.subscribe(me)
    await ws.send_str('{"type":"OPEN"}')
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            data = orjson.loads(message.data)
            dst = data.get("dst") if isinstance(data, dict) else None
            if not isinstance(dst, str):
                continue
            data["src"] = me
            to = sockets.get(dst)
            if to is not None:
                await to.send_str(orjson.dumps(data).decode())
            elif bus is not None:
                bus.publish(dst, orjson.dumps(data))
    finally:
        if sockets.get(me) is ws:
            del sockets[me]
    return ws


async def ready(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def main() -> int:
    app = web.Application()
    app[SOCKETS] = {}
    app.router.add_get("/peerjs", peer)
    app.router.add_get("/peerjs/id", ready)
    port = int(sys.argv[1])
    if len(sys.argv) > 3:
        bus = app[BUS] = Bus(sys.argv[2], sys.argv[3], app[SOCKETS])

        async def connect(_app: web.Application) -> None:
            await bus.start()

        app.on_startup.append(connect)
    web.run_app(app, host="127.0.0.1", port=port, loop=uvloop.new_event_loop(), print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
