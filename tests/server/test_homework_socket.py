"""``/homework/ws`` over a real websocket: who may open it, what it takes, what it refuses."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.homework import HOMEWORK_COOKIE
from server.homework_socket import carries_changes
from server.worksheet_models import Homework
from signalling.session import SYNC_RATE_BURST
from tests.conftest import FakeClock
from tests.server.test_homework import (
    homework_socket,
    homework_with_link,
    open_link,
    page_csrf,
    practice,
    serving,
    stored_homework,
)
from tests.server.test_ws import Cast
from tests.support.worksheet_client import WorksheetClient

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


async def opened(
    cast: Cast, db: Sessions, clock: FakeClock, email: str
) -> tuple[Homework, aiohttp.ClientSession]:
    """A therapist's client with homework, who opened its link (the session holds the cookie)."""
    people = await practice(db, clock, email)
    homework, token = await homework_with_link(db, people, clock)
    http, response = await open_link(cast, token)
    assert response.status == 303
    return homework, http


async def handshake_status(cast: Cast, cookies: dict[str, str], origin: str) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        http.cookie_jar.update_cookies(cookies)
        url = cast.url.replace("http", "ws", 1) + "/homework/ws"
        try:
            ws = await http.ws_connect(url, headers={"Origin": origin})
        except aiohttp.WSServerHandshakeError as error:
            return error.status
        await ws.close()
        return 101


async def test_another_clients_cookie_cannot_open_this_homework(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    mine, http = await opened(cast, db, clock, "sam@example.com")
    theirs, _other = await opened(cast, db, clock, "kim@example.com")
    cookie = next(c.value for c in http.cookie_jar if c.key == HOMEWORK_COOKIE)
    assert cookie.startswith(f"{mine.id}.")
    forged = f"{theirs.id}.{cookie.partition('.')[2]}"

    assert await handshake_status(cast, {HOMEWORK_COOKIE: cookie}, cast.url) == 101
    assert await handshake_status(cast, {HOMEWORK_COOKIE: forged}, cast.url) == 401
    assert await handshake_status(cast, {}, cast.url) == 401
    assert await handshake_status(cast, {HOMEWORK_COOKIE: cookie}, "https://evil.example") == 403


async def test_the_socket_takes_only_worksheet_traffic_and_pings(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    homework, http = await opened(cast, db, clock, "sam@example.com")
    socket = await homework_socket(cast, http)
    shown = await socket.expect("worksheet")
    assert shown["worksheet"] == f"w-{homework.worksheet_id}"
    await socket.expect("yjs")

    await socket.send({"type": "hello", "version": 1, "id": "m-1"})
    assert (await socket.expect("error"))["error"] == "forbidden"
    other = {"type": "editing", "worksheet": "w-999999", "field": None, "id": "m-2"}
    await socket.send(other)
    assert (await socket.expect("error"))["error"] == "not-found"
    garbage = base64.b64encode(b"\x00\x02\x09not-yjs").decode()
    await socket.send({"type": "yjs", "worksheet": shown["worksheet"], "data": garbage})
    assert (await socket.expect("error"))["error"] == "worksheet-refused"
    await socket.send({"type": "ping", "ts": 5})
    assert (await socket.expect("pong"))["ts"] == 5
    assert (await stored_homework(db, homework.id)).status == "assigned"

    await socket.send({"type": "nonsense"})
    assert (await socket.expect("error"))["error"] == "unknown-type"
    assert await socket.wait_closed() == 1008


async def test_two_tabs_of_the_same_homework_see_each_others_typing(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    homework, http = await opened(cast, db, clock, "sam@example.com")
    first = WorksheetClient(await homework_socket(cast, http), "first")
    second = WorksheetClient(await homework_socket(cast, http), "second")
    await first.expect_worksheet()
    await second.expect_worksheet()
    first.text("was_hard").insert(0, "Monday")
    await first.push()
    await second.until(lambda: second.content("was_hard") == "Monday")
    await first.socket.send({"type": "editing", "worksheet": first.worksheet, "field": "was_hard"})
    assert (await second.socket.expect("editing"))["field"] == "was_hard"
    assert (await stored_homework(db, homework.id)).status == "started"


async def test_homework_marked_done_closes_its_socket_for_good(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    _homework, http = await opened(cast, db, clock, "sam@example.com")
    csrf = await page_csrf(cast, http)
    async with http.post(f"{cast.url}/homework/done", data={"csrf_token": csrf}) as response:
        assert response.status == 200
    socket = await homework_socket(cast, http)
    assert await socket.wait_closed() == 4003
    async with http.get(f"{cast.url}/homework") as page:
        assert page.status == 410


def test_only_a_step_2_or_update_with_content_counts_as_a_change() -> None:
    assert not carries_changes(b"\x00\x00\x01\x00")  # step 1
    assert not carries_changes(b"\x00\x01\x02\x00\x00")  # an empty step 2
    assert carries_changes(b"\x00\x02\x05\x01\x01\x02\x03\x04")


async def test_a_flood_of_edits_is_rate_limited_and_the_socket_stays_open(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    _homework, http = await opened(cast, db, clock, "sam@example.com")
    socket = await homework_socket(cast, http)
    shown = await socket.expect("worksheet")
    editing = {"type": "editing", "worksheet": shown["worksheet"], "field": "mood"}
    for _ in range(SYNC_RATE_BURST + 100):  # more than the burst, at once
        await socket.send(editing)
    assert (await socket.expect("error"))["error"] == "rate-limited"
    await socket.send({"type": "ping", "ts": 9})
    assert (await socket.expect("pong"))["ts"] == 9


async def test_edits_made_offline_on_the_homework_page_survive_a_reload(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    _, http = await opened(cast, db, clock, "sam@example.com")
    page = WorksheetClient(await homework_socket(cast, http), "page")
    await page.expect_worksheet()
    page.text("went_well").insert(0, "Online.")
    await page.push()
    await saved_by(page)

    await page.socket.close()  # the network goes away
    for number in range(5):
        page.text("went_well").insert(len(page.text("went_well")), f" offline{number}")
    expected = "Online." + "".join(f" offline{n}" for n in range(5))
    await page.reattach(await homework_socket(cast, http))  # back online: the sync merges
    await saved_by(page)
    await page.socket.close()  # and the page is reloaded

    reloaded = WorksheetClient(await homework_socket(cast, http), "reloaded")
    await reloaded.expect_worksheet()
    await reloaded.until(lambda: reloaded.content("went_well") == expected)


async def saved_by(client: WorksheetClient) -> None:
    """Wait until the server announces a save covering everything it was sent."""
    while True:
        saved = await client.socket.expect("worksheet-saved")
        if saved["worksheet"] == client.worksheet:
            return
