"""The reference: the PeerJS server (npm package ``peer``), driven the way its clients do.

The package is installed by the benchmark into ``bench/fanout/.peerjs/`` (git-ignored) and
started with its own command on 127.0.0.1.  A PeerJS client is a websocket to
``/peerjs?key=peerjs&id=<id>&token=<token>``; the server answers ``{"type":"OPEN"}`` and
passes ``{"type":"CANDIDATE","dst":<peer>,"payload":…}`` on to the socket of ``<peer>``,
adding ``src``.  It has no rooms, admission or authentication: it is the floor of what a
signalling relay can cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.fanout.relay import VARIANTS, Pair
from tests.conftest import free_port

VERSION = "1.0.2"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = Path(__file__).resolve().parent / ".peerjs"
SERVER = PREFIX / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"


def install() -> None:
    """``npm install peer@VERSION`` into the git-ignored prefix, once."""
    if SERVER.is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing (Debian: apt-get install npm): it installs PeerJS")
    PREFIX.mkdir(exist_ok=True)
    subprocess.run(  # noqa: S603 - fixed arguments
        [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", f"peer@{VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class PeerServer:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def running_server(
    *, floor: bool = False, redis: tuple[str, str] | None = None, wrapper: Sequence[str] = ()
) -> AsyncIterator[PeerServer]:
    """PeerJS on a free port; with ``floor``, ``bench.fanout.floor`` instead (the same
    protocol, relayed by aiohttp with nothing else), reaching other floors through Redis
    if ``redis`` (its URL and the channels' namespace) is given, and run under
    ``wrapper`` (``valgrind`` and its options) if that is given."""
    port = free_port()
    if floor:
        floor_command = ["-m", "bench.fanout.floor", str(port), *(redis or ())]
        command = [*wrapper, sys.executable, *floor_command]
    else:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is missing: it runs PeerJS")
        command = [node, str(SERVER), "--host", "127.0.0.1", "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/peerjs/id") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{command[1]} did not start")
        yield PeerServer(url, process.pid)
    finally:
        process.terminate()
        await process.wait()


def candidate_frame(destination: str, size: int, tag: str = "") -> str:
    """A PeerJS ``CANDIDATE`` of exactly ``size`` bytes, as the PeerJS client sends one;
    ``tag`` makes it differ from others."""

    def frame(pad: str) -> str:
        line = f"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx {tag}{pad}"
        payload = {
            "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0},
            "type": "media",
            "connectionId": "mc_bench",
        }
        message = {"type": "CANDIDATE", "payload": payload, "dst": destination}
        return json.dumps(message, separators=(",", ":"))

    return frame("x" * max(0, size - len(frame(""))))


def is_relayed(data: str) -> bool:
    return '"type":"CANDIDATE"' in data


def nothing_to_answer(data: str) -> str | None:
    return None


class Peers:
    def __init__(self) -> None:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def socket(self, server: PeerServer, peer_id: str) -> aiohttp.ClientWebSocketResponse:
        query = f"key=peerjs&id={peer_id}&token={secrets.token_hex(8)}"
        ws = await self.http.ws_connect(f"{server.url.replace('http', 'ws', 1)}/peerjs?{query}")
        self.sockets.append(ws)
        message = await ws.receive(timeout=30)
        if json.loads(message.data).get("type") != "OPEN":
            raise RuntimeError(f"PeerJS refused {peer_id}: {message.data}")
        return ws

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await self.http.close()


async def pairs(
    server: PeerServer, peers: Peers, count: int, size: int, b_on: PeerServer | None = None
) -> list[Pair]:
    """``count`` pairs of peers on ``server``; with ``b_on``, each pair's second peer on
    that server instead."""
    made: list[Pair] = []
    for number in range(count):
        a, b = f"p{number}a", f"p{number}b"
        made.append(
            Pair(
                await peers.socket(server, a),
                await peers.socket(b_on or server, b),
                [candidate_frame(b, size, f"{a}.{n} ") for n in range(VARIANTS)],
                [candidate_frame(a, size, f"{b}.{n} ") for n in range(VARIANTS)],
            )
        )
    return made


async def idle(server: PeerServer, peers: Peers, count: int, offset: int = 0) -> None:
    for start in range(offset, offset + count, 100):
        await asyncio.gather(
            *(
                peers.socket(server, f"idle{n}")
                for n in range(start, min(start + 100, offset + count))
            )
        )
