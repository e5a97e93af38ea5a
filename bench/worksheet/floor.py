"""The floor: the reference server's protocol on Alcove's stack, with nothing else.

y-websocket's protocol (binary frames, one document per URL path) served by aiohttp on
uvloop, with a pycrdt document per room, as Alcove's server runs: on connect the server's
sync step 1; a step 1 answered with step 2; a step 2 or an update applied and passed on, as
it came, to the room's other sockets. No sign-in, no rooms of a call, no checks of who may
write or of the template's limits, no envelope, no saving, no metrics: what is left of a
keystroke in Python once all of that is taken away. The difference between it and Alcove
is the price of what Alcove does with a keystroke; the difference between it and the
reference, the price of the language, the web framework and pycrdt.

    python -m bench.worksheet.floor PORT
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import uvloop
from aiohttp import WSMsgType, web
from pycrdt import Doc, create_sync_message, handle_sync_message

#: y-websocket's message type of a sync message, and y-protocols' step of a step 1.
SYNC = 0
STEP1 = 0


@dataclass
class Room:
    doc: Doc[Any] = field(default_factory=Doc)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


ROOMS = web.AppKey("rooms", dict[str, Room])


async def typist(request: web.Request) -> web.StreamResponse:
    rooms = request.app[ROOMS]
    ws = web.WebSocketResponse(compress=False, max_msg_size=0)
    await ws.prepare(request)
    room = rooms.setdefault(request.path, Room())
    room.sockets.add(ws)
    await ws.send_bytes(create_sync_message(room.doc))
    try:
        async for message in ws:
            if message.type is not WSMsgType.BINARY:
                continue
            data: bytes = message.data
            if len(data) < 2 or data[0] != SYNC:
                continue  # awareness and the like: the typists send none
            reply = handle_sync_message(data[1:], room.doc)
            if reply is not None:
                await ws.send_bytes(reply)
            if data[1] != STEP1:
                for other in room.sockets:
                    if other is not ws:
                        await other.send_bytes(data)
    finally:
        room.sockets.discard(ws)
    return ws


def main() -> int:
    app = web.Application()
    app[ROOMS] = {}
    app.router.add_get("/{room}", typist)
    port = int(sys.argv[1])
    print(f"running at 127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, loop=uvloop.new_event_loop(), print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
