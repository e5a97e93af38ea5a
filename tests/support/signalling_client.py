"""A participant's side of the signalling protocol, speaking plain JSON over a real websocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

Json = dict[str, Any]
RELAYED = frozenset({"offer", "answer", "candidate"})
RELAYED_QUEUE = "relayed"


async def sign_in_session(base_url: str, email: str, password: str) -> aiohttp.ClientSession:
    """An HTTP session signed in as a therapist through the real sign-in form."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{base_url}/login") as response:
        html = await response.text()
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    token = html[start : html.index('"', start)]
    form = {"csrf_token": token, "email": email, "password": password}
    async with session.post(f"{base_url}/login", data=form, allow_redirects=False) as response:
        if response.status != 303:
            await session.close()
            raise AssertionError(f"sign-in failed with {response.status}")
    return session


async def client_session(base_url: str, join_token: str) -> aiohttp.ClientSession:
    """An HTTP session holding the participant cookie the join link gives."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(f"{base_url}/join/{join_token}", allow_redirects=False) as response:
        if response.status != 303:
            await session.close()
            raise AssertionError(f"join link answered {response.status}")
    return session


class SignallingClient:
    """One participant's websocket: send messages, wait for the next one of a type."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: list[Json] = []
        self._queues: dict[str, asyncio.Queue[Json]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    async def connect(self, *, origin: str | None = None) -> None:
        url = self.base_url.replace("http", "ws", 1) + "/ws"
        self.ws = await self.http.ws_connect(
            url, headers={"Origin": origin or self.base_url}, autoping=True
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def hello(self, **fields: Any) -> Json:
        await self.send({"type": "hello", "version": 1, **fields})
        return await self.expect("welcome")

    async def send(self, message: Json) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    def _queue(self, kind: str) -> asyncio.Queue[Json]:
        kind = RELAYED_QUEUE if kind in RELAYED else kind
        return self._queues.setdefault(kind, asyncio.Queue())

    async def expect(self, kind: str, within: float = 10.0) -> Json:
        """The next message of type ``kind`` not yet taken (each type has its own queue;
        ``offer``, ``answer`` and ``candidate`` share one, in order)."""
        async with asyncio.timeout(within):
            return await self._queue(kind).get()

    async def take(self, kind: str) -> Json:
        """The next message of type ``kind``, with no time limit (for background readers)."""
        return await self._queue(kind).get()

    async def expect_relayed(self) -> Json:
        """The next ``offer``, ``answer`` or ``candidate``, with no time limit."""
        return await self._queue(RELAYED_QUEUE).get()

    def pending(self, kind: str) -> int:
        return self._queue(kind).qsize()

    def of_type(self, *kinds: str) -> list[Json]:
        return [m for m in self.received if m["type"] in kinds]

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type is aiohttp.WSMsgType.TEXT:
                message = json.loads(frame.data)
                self.received.append(message)
                if message["type"] == "ping":
                    await self.send({"type": "pong", "ts": message["ts"]})
                self._queue(message["type"]).put_nowait(message)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def wait_closed(self, within: float = 10.0) -> int | None:
        async with asyncio.timeout(within):
            await self.closed.wait()
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
