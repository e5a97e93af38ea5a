"""Keystrokes in a call's worksheet, through the running app and real websockets, on their
short way: a ``yjs`` frame written as a browser writes it reaches the worksheet unparsed,
with the same checks and the same answers as a parsed one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pycrdt import create_update_message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import ws as ws_module
from server.calls import SWITCHBOARD
from server.worksheet_calls import CallWorksheets
from signalling import protocol
from signalling import session as session_module
from signalling.messages import Message
from signalling.participants import WAITING, Participant
from signalling.parts import Role
from signalling.protocol import parse_message
from tests.conftest import FakeClock
from tests.server.test_worksheet_calls import (
    admitted_pair,
    closed_content,
    encode,
    open_worksheet,
)
from tests.server.test_ws import Cast, ref, serving


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The frames the sessions parsed."""
    frames: list[str] = []

    def parse(frame: str | bytes) -> Message:
        frames.append(frame if isinstance(frame, str) else frame.decode())
        return parse_message(frame)

    monkeypatch.setattr(session_module, "parse_message", parse)
    return frames


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The types of the messages the server encoded to send."""
    types: list[str] = []

    def encode_message(message: Message) -> str:
        types.append(message.TYPE)
        return protocol.encode(message)

    monkeypatch.setattr(ws_module, "encode", encode_message)
    return types


def yjs(worksheet: str, data: str) -> dict[str, str]:
    """A ``yjs`` message with its fields in the order the browser writes them."""
    return {"type": "yjs", "worksheet": worksheet, "data": data}


async def test_keystrokes_both_ways_are_applied_and_relayed_without_being_parsed(
    cast: Cast,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    parsed: list[str],
    encoded: list[str],
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    assert therapist.worksheet is not None
    assert "yjs" in encoded  # the server's sync step 1 and step 2 on opening
    encoded.clear()

    for n in range(10):
        therapist.text("went_well").insert(0, f"t{n} ")
        await therapist.push()
        client.text("was_hard").insert(0, f"c{n} ")
        await client.push()
    await therapist.until(lambda: therapist.content("was_hard").count("c") == 10)
    await client.until(lambda: client.content("went_well").count("t") == 10)

    assert therapist.content("was_hard") == client.content("was_hard")
    assert therapist.content("went_well") == client.content("went_well")
    assert not [frame for frame in parsed if '"type":"yjs"' in frame]
    # Nor written again: each keystroke's update, as the document wrote it, was the same
    # bytes as the browser's, so the other was sent the frame as it came.
    assert "yjs" not in encoded
    content = await closed_content(pair, db, therapist.worksheet)
    assert content["went_well"] == therapist.content("went_well")
    assert content["was_hard"].startswith("c9 c8 ")


async def test_a_browser_keystroke_the_short_way_refuses_gets_the_full_ways_answer(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock, parsed: list[str]
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, _ = await open_worksheet(pair)
    assert therapist.worksheet is not None
    other = await admitted_pair(cast, db, clock, email="bea@example.com")

    # Another call's worksheet: not found, as ever, and the socket stays open.
    await other.client.send(yjs(therapist.worksheet, "AAAA"))
    assert (await other.client.expect("error"))["error"] == "not-found"
    # A corrupt update, taken the short way: refused, and the socket stays open.
    corrupt = create_update_message(b"\x01\x01\xff\xff\xff\xff\x0f")
    await pair.client.send(yjs(therapist.worksheet, encode(corrupt)))
    refused = await pair.client.expect("error")
    assert refused["error"] == "worksheet-refused" and "id" not in refused
    assert json.dumps(yjs(therapist.worksheet, encode(corrupt)), separators=(",", ":")) not in (
        parsed
    )
    # Not standard base64: a malformed message, which closes the socket.
    await pair.client.send(yjs(therapist.worksheet, "AAA"))
    assert (await pair.client.expect("error"))["error"] == "bad-message"
    assert await pair.client.wait_closed() is not None
    assert json.dumps(yjs(therapist.worksheet, "AAA"), separators=(",", ":")) in parsed


async def test_a_keystroke_from_a_client_no_longer_admitted_is_left_to_the_full_way(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # The moment between a send-back and the worksheet hearing of it: the client still has
    # the worksheet open, but is waiting again.
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    assert therapist.worksheet is not None
    switchboard = cast.live.app[SWITCHBOARD]
    handler = switchboard.worksheets
    assert isinstance(handler, CallWorksheets)
    room = switchboard.registry.room(ref(pair.appointment))
    assert room is not None
    admitted = next(p for p in room.members() if p.role is Role.CLIENT)
    waiting = Participant(admitted.seat, WAITING, since=clock(), on_change=lambda change: None)
    waiting.handle = admitted.handle
    client.text("was_hard").insert(0, "intrusion")
    update = encode(client.peer.take_outbox()[0])

    assert not await handler.keystroke(waiting, therapist.worksheet, update)
    assert await handler.keystroke(admitted, therapist.worksheet, update)  # as it was admitted
    await therapist.until(lambda: therapist.content("was_hard") == "intrusion")
