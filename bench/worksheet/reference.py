"""The reference: the Yjs project's own websocket server (npm ``@y/websocket-server``).

It is installed, pinned by ``reference/package-lock.json``, into ``reference/node_modules``
(git-ignored) the first time the benchmark runs, and started with ``node`` on a free
loopback port. Its wire protocol is y-websocket's: binary frames, each one y-protocols
message (``varuint`` message type, 0 = sync, 1 = awareness, then the message), and one
document per URL path.

The server starts every document empty; the first typist of each pair brings the same
weekly check-in layout that Alcove creates on the server, so that both servers hold
documents of the same shape and size.
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from bench.worksheet.load import Link, Pair, stop
from bench.worksheet.typist import Typist
from server.worksheets.builtin import builtin_template
from server.worksheets.document import new_document
from tests.conftest import free_port

HERE = Path(__file__).parent / "reference"
MODULES = HERE / "node_modules"
#: A copy of the lock file the installed modules came from: reinstall when it changes.
STAMP = MODULES / ".alcove-package-lock.json"
SERVER_JS = MODULES / "@y" / "websocket-server" / "src" / "server.js"


class ReferenceUnavailable(RuntimeError):
    """Node or npm is missing, or the install failed."""


def install() -> None:
    """``npm ci`` into ``reference/node_modules`` unless it is already there and current."""
    lock = HERE / "package-lock.json"
    if SERVER_JS.exists() and STAMP.exists() and filecmp.cmp(lock, STAMP, shallow=False):
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ReferenceUnavailable("node and npm are needed for the reference server")
    # --ignore-scripts: an optional dependency (leveldown, for persistence we do not use)
    # would otherwise try to build a native module.
    command = [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--ignore-scripts"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0 or not SERVER_JS.exists():
        raise ReferenceUnavailable(f"npm ci failed: {result.stderr.strip()[-500:]}")
    shutil.copyfile(lock, STAMP)


@contextlib.asynccontextmanager
async def running_reference() -> AsyncIterator[tuple[str, int]]:
    """The reference server on 127.0.0.1: yields its websocket base URL and process id."""
    install()
    node = shutil.which("node")
    assert node is not None
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    async with running([node, str(SERVER_JS)], port, env) as pid:
        yield f"ws://127.0.0.1:{port}", pid


@contextlib.asynccontextmanager
async def running_floor() -> AsyncIterator[tuple[str, int]]:
    """``bench.worksheet.floor`` (the same protocol on our stack): base URL and process id."""
    port = free_port()
    command = [sys.executable, "-m", "bench.worksheet.floor", str(port)]
    async with running(command, port, dict(os.environ)) as pid:
        yield f"ws://127.0.0.1:{port}", pid


@contextlib.asynccontextmanager
async def running(command: Sequence[str], port: int, env: dict[str, str]) -> AsyncIterator[int]:
    """A server that says "running at" on its first line, once it accepts on ``port``:
    yields its process id."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            line = await process.stdout.readline()
            if b"running at" not in line:
                raise ReferenceUnavailable(f"{command[-1]} did not start: {line!r}")
            await _accepting(port)
        # Keep its output drained so that a chatty server never blocks on a full pipe.
        drainer = asyncio.create_task(_drain(process.stdout))
        yield process.pid
        drainer.cancel()
    finally:
        await stop(process)


async def _accepting(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


class ReferenceLink(Link):
    """y-websocket framing: the sync message is the whole binary frame."""

    async def send(self, message: bytes) -> None:
        await self.ws.send_bytes(message)

    async def unwrap(self, frame: aiohttp.WSMessage) -> bytes | None:
        if frame.type is aiohttp.WSMsgType.BINARY:
            data: bytes = frame.data
            return data
        return None


async def connect_pairs(
    http: aiohttp.ClientSession, base: str, count: int, field: str, template_id: str
) -> Sequence[Pair]:
    """`count` pairs, each on its own document; the first typist seeds the layout."""
    template = builtin_template(template_id)

    async def link(room: str, typist: Typist) -> Link:
        ws = await http.ws_connect(f"{base}/{room}", autoping=True, max_msg_size=0)
        connected = ReferenceLink(ws, typist)
        connected.start()
        await connected.send(typist.sync_step1())  # as a y-websocket client does on open
        return connected

    async def pair(index: int) -> Pair:
        room = f"w-{index + 1}"
        first = await link(room, Typist(field, new_document(template)))
        # The seeding typist answers the server's step 1 with its whole document; once the
        # server has it, the second typist's step 1 brings the layout over.
        second_typist = Typist(field)
        second = await link(room, second_typist)
        first.typist.peer = second_typist
        second_typist.peer = first.typist
        return Pair(first, second)

    return await asyncio.gather(*(pair(i) for i in range(count)))
