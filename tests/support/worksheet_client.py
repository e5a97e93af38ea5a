"""A browser's worksheet over a real session websocket: a pycrdt document kept in step with
the server through ``worksheet`` and ``yjs`` messages, as the call page does with Yjs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable

from pycrdt import Text

from tests.server.worksheets.peers import Peer
from tests.support.signalling_client import Json, SignallingClient


class WorksheetClient:
    """One participant's copy of the worksheet open in their call.

    ``start`` runs a reader that answers the server's sync messages; local edits are made on
    ``peer.doc`` (``text``) and sent with ``push``.  The document outlives the socket: after
    ``reattach`` to a new socket, the sync handshake merges what was edited meanwhile.
    """

    def __init__(self, socket: SignallingClient, name: str) -> None:
        self.socket = socket
        self.name = name
        self.peer = Peer(name)
        self.worksheet: str | None = None
        self.refused: list[Json] = []
        #: ``yjs`` messages sent on the current socket, as a browser counts them.
        self.sent = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def expect_worksheet(self, within: float = 10.0) -> Json:
        """Wait for ``worksheet``, answer it as the browser does (its own sync step 1), and
        wait until the server's document has arrived."""
        shown = await self.socket.expect("worksheet", within=within)
        if shown["worksheet"] != self.worksheet:
            self.worksheet = shown["worksheet"]
            self.peer = Peer(self.name)
        await self._send(self.peer.sync_step1())
        self._start()
        # The server creates the shared types (text, checklist, group); the plain answers
        # (scale, choice, date) stay absent until someone answers.
        shared = {"short_text", "long_text", "checklist", "group"}
        fields = {f["id"] for f in shown["template"]["fields"] if f["kind"] in shared}
        await self.until(lambda: fields <= set(self.peer.fields.keys()), within=within)
        return shown

    async def reattach(self, socket: SignallingClient) -> Json:
        """Carry on over a new socket (a reconnect), keeping the document and its edits."""
        await self.stop()
        self.socket = socket
        self.sent = 0
        return await self.expect_worksheet()

    def text(self, field_id: str) -> Text:
        return self.peer.text(field_id)

    def content(self, field_id: str) -> str:
        return str(self.peer.text(field_id))

    async def push(self) -> int:
        """Send every local change made since the last push; how many messages went."""
        messages = self.peer.take_outbox()
        for message in messages:
            await self._send(message)
        return len(messages)

    async def until(self, check: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``check()`` holds for this document (the reader applies what arrives)."""
        async with asyncio.timeout(within):
            while not check():
                await self._changed.wait()
                self._changed.clear()

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    def _start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self.socket.take("yjs")
            if message["worksheet"] != self.worksheet:
                continue
            reply = self.peer.receive(base64.b64decode(message["data"]))
            self._changed.set()
            if reply is not None:
                await self._send(reply)

    async def _send(self, data: bytes) -> None:
        assert self.worksheet is not None
        await self.socket.send(
            {"type": "yjs", "worksheet": self.worksheet, "data": base64.b64encode(data).decode()}
        )
        self.sent += 1
