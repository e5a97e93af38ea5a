"""server.ws: the text frames written straight to the transport are what a websocket client
reads, whatever their length."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from server.ws import SocketConnection, text_frame

Client = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]

TEXTS = web.AppKey("texts", list[str])
AT_ONCE = web.AppKey("at_once", list[bool])


async def write_frames(request: web.Request) -> web.StreamResponse:
    """Send each of the app's texts as a frame from ``text_frame``, then close."""
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    assert request.transport is not None
    for text in request.app[TEXTS]:
        request.transport.write(text_frame(text))
    await ws.close()
    return ws


async def received(aiohttp_client: Client, texts: list[str]) -> list[tuple[WSMsgType, object]]:
    """What a websocket client reads from ``write_frames``, up to the close."""
    app = web.Application()
    app[TEXTS] = texts
    app.router.add_get("/", write_frames)
    client = await aiohttp_client(app)
    messages = []
    async with client.ws_connect("/", max_msg_size=2**20) as ws:
        async for message in ws:
            messages.append((message.type, message.data))
    return messages


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
async def test_a_text_frame_of_any_length_reads_back_as_the_text(
    aiohttp_client: Client, length: int
) -> None:
    text = "x" * length
    assert await received(aiohttp_client, [text]) == [(WSMsgType.TEXT, text)]


async def test_the_length_counts_bytes_not_characters(aiohttp_client: Client) -> None:
    text = "Łódź, café, 日本 " * 10  # 160 characters, and more bytes
    frame = text_frame(text)
    assert frame[1] == 126  # a 16-bit length follows
    assert int.from_bytes(frame[2:4], "big") == len(text.encode()) > len(text)
    assert await received(aiohttp_client, [text]) == [(WSMsgType.TEXT, text)]


async def test_frames_written_one_after_another_read_back_in_order(
    aiohttp_client: Client,
) -> None:
    texts = ["a", "b" * 200, "c" * 70000, "d"]
    assert await received(aiohttp_client, texts) == [(WSMsgType.TEXT, t) for t in texts]


async def texts_read(aiohttp_client: Client, app: web.Application) -> list[str]:
    """What a websocket client of ``app``'s ``/`` reads, up to the close."""
    client = await aiohttp_client(app)
    async with client.ws_connect("/", max_msg_size=2**20) as ws:
        return [message.data async for message in ws]


async def send_now_frames(request: web.Request) -> web.StreamResponse:
    """A small frame written at once; a frame too large for the room left in the transport's
    buffer, queued; a small one asked to go at once after it, which must not; then a close."""
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    connection = SocketConnection(ws, transport=request.transport)
    at_once = request.app[AT_ONCE]
    at_once.append(connection.send_now("first"))
    await connection.send_frame("x" * 70000)
    at_once.append(connection.send_now("last"))
    if not at_once[-1]:
        await connection.send_frame("last")
    await connection.close(1000, "done")
    at_once.append(connection.send_now("after the close"))  # dropped, and said to be done
    await connection.finish()
    return ws


async def test_a_frame_goes_at_once_only_with_nothing_queued_ahead_of_it(
    aiohttp_client: Client,
) -> None:
    app = web.Application()
    app[AT_ONCE] = []
    app.router.add_get("/", send_now_frames)

    assert await texts_read(aiohttp_client, app) == ["first", "x" * 70000, "last"]
    assert app[AT_ONCE] == [True, False, True]


TASKS = web.AppKey("tasks", list[int])


async def count_tasks(request: web.Request) -> web.StreamResponse:
    """The number of running tasks: before the connection is made, once it is, after a frame
    that goes at once, and after one too large for the room left in the transport's buffer."""
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    tasks = request.app[TASKS]
    tasks.append(len(asyncio.all_tasks()))
    connection = SocketConnection(ws, transport=request.transport)
    tasks.append(len(asyncio.all_tasks()))
    await connection.send_frame("at once")
    tasks.append(len(asyncio.all_tasks()))
    await connection.send_frame("y" * 70000)  # queued: the writer is made now
    tasks.append(len(asyncio.all_tasks()))
    await connection.close(1000, "done")
    await connection.finish()
    return ws


async def test_a_socket_gets_a_writer_task_only_once_a_frame_must_wait(
    aiohttp_client: Client,
) -> None:
    app = web.Application()
    app[TASKS] = []
    app.router.add_get("/", count_tasks)

    assert await texts_read(aiohttp_client, app) == ["at once", "y" * 70000]
    before, made, sent_at_once, queued = app[TASKS]
    assert made == sent_at_once == before
    assert queued == before + 1
