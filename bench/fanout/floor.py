"""The floor: a relay with no protocol at all, on the same aiohttp and uvloop as ours.

It speaks just enough of PeerJS's protocol for ``bench.fanout.peerjs``'s clients: ``OPEN``
on connect, and each JSON message passed on to the socket named by its ``dst``, with
``src`` added.  No validation, no rooms, no admission, no metrics: what is left of relaying
a message in Python once all of that is taken away, so that the difference between it and
our relay is the price of our protocol, and the difference between it and PeerJS the price
of the language and the web framework.

    python -m bench.fanout.floor PORT
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", dict[str, web.WebSocketResponse])


async def peer(request: web.Request) -> web.StreamResponse:
    sockets = request.app[SOCKETS]
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    me = request.query.get("id", "")
    sockets[me] = ws
    await ws.send_str('{"type":"OPEN"}')
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            data = orjson.loads(message.data)
            dst = data.get("dst") if isinstance(data, dict) else None
            to = sockets.get(dst) if isinstance(dst, str) else None
            if to is not None:
                data["src"] = me
                await to.send_str(orjson.dumps(data).decode())
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
    web.run_app(app, host="127.0.0.1", port=port, loop=uvloop.new_event_loop(), print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
