"""Worksheets in a call, through the running app and real websockets: opening one for both
people, concurrent and offline editing, saving, who may read and write, and bad updates."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pycrdt import create_update_message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.calls import SWITCHBOARD
from server.models import Appointment, AuditEvent
from server.worksheet_calls import CallWorksheets
from server.worksheet_models import CallWorksheet, Worksheet
from tests.conftest import FakeClock
from tests.server.test_ws import Cast, ref, round_trip, serving, therapist_with
from tests.support.signalling_client import Json, SignallingClient
from tests.support.worksheet_client import WorksheetClient

CHECK_IN = "weekly-check-in"


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


@dataclass
class Pair:
    appointment: Appointment
    token: str
    therapist: SignallingClient
    client: SignallingClient


async def admitted_pair(
    cast: Cast,
    db: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    email: str = "sam@example.com",
) -> Pair:
    """A therapist's call page and their admitted client, in the call."""
    _, [(appointment, token)] = await therapist_with(db, clock, email, "Alex Morgan")
    client = await cast.client(token)
    therapist = await cast.therapist(email, appointment)
    await admit(therapist, client)
    return Pair(appointment, token, therapist, client)


async def admit(therapist: SignallingClient, client: SignallingClient) -> None:
    lobby = await therapist.expect("lobby")
    while not any(e["state"] == "waiting" for e in lobby["participants"]):
        lobby = await therapist.expect("lobby")
    waiting = [e for e in lobby["participants"] if e["state"] == "waiting"]
    await therapist.send({"type": "admit", "participant": waiting[0]["participant"]})
    await client.expect("admitted")


async def open_worksheet(pair: Pair, template: str = CHECK_IN) -> tuple[WorksheetClient, ...]:
    await pair.therapist.send(
        {"type": "worksheet-open", "appointment": ref(pair.appointment), "template": template}
    )
    therapist = WorksheetClient(pair.therapist, "therapist")
    client = WorksheetClient(pair.client, "client")
    shown = await therapist.expect_worksheet()
    assert (await client.expect_worksheet())["worksheet"] == shown["worksheet"]
    return therapist, client


async def stored(db: async_sessionmaker[AsyncSession], worksheet: str) -> Worksheet:
    async with db() as session:
        row = await session.get(Worksheet, int(worksheet.removeprefix("w-")))
    assert row is not None
    return row


async def saved(socket: SignallingClient, worksheet: str, *, after: int = 0) -> int:
    """Wait for a ``worksheet-saved`` of ``worksheet`` past revision ``after`` (a save of
    changes, not the one that tells a newcomer all is stored); its revision."""
    while True:
        message = await socket.expect("worksheet-saved")
        if message["worksheet"] == worksheet and message["revision"] > after:
            revision: int = message["revision"]
            return revision


async def send_back(pair: Pair) -> None:
    """The therapist sends the client back to the waiting room (after the worksheet opened)."""
    participant = (await pair.therapist.expect("peer-joined"))["participant"]
    await pair.therapist.send({"type": "send-back", "participant": participant})
    await pair.client.expect("sent-back")
    await round_trip(pair.client)


async def closed_content(
    pair: Pair, db: async_sessionmaker[AsyncSession], worksheet: str
) -> dict[str, Any]:
    """Close ``worksheet`` in the call (which saves it) and read its stored fields."""
    await pair.therapist.send({"type": "worksheet-close", "worksheet": worksheet})
    await pair.therapist.expect("worksheet-closed")
    content: dict[str, Any] = json.loads((await stored(db, worksheet)).content)
    return content


# --- opening -------------------------------------------------------------------------


async def test_a_worksheet_the_therapist_opens_appears_for_both_with_its_template(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    await pair.therapist.send(
        {"type": "worksheet-open", "appointment": ref(pair.appointment), "template": CHECK_IN}
    )

    for socket in (pair.therapist, pair.client):
        shown = await socket.expect("worksheet")
        assert shown["title"] == "Weekly check-in"
        assert shown["template"]["id"] == CHECK_IN
        assert [f["id"] for f in shown["template"]["fields"]][:2] == ["week_of", "mood"]
        assert (await socket.expect("yjs"))["worksheet"] == shown["worksheet"]
    row = await stored(db, shown["worksheet"])
    assert (row.template_key, row.appointment_id) == (CHECK_IN, pair.appointment.id)


async def test_a_client_can_neither_open_nor_close_a_worksheet(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    opening = {"type": "worksheet-open", "appointment": ref(pair.appointment)}
    await pair.client.send({**opening, "template": CHECK_IN, "id": "m-1"})
    await pair.client.send({"type": "worksheet-close", "worksheet": "w-1", "id": "m-2"})

    for number in (1, 2):
        error = await pair.client.expect("error")
        assert (error["error"], error["id"]) == ("forbidden", f"m-{number}")
    await round_trip(pair.therapist)
    assert not pair.therapist.of_type("worksheet")


async def test_an_unknown_template_or_another_clients_worksheet_is_not_found(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    first = await admitted_pair(cast, db, clock)
    theirs, _ = await open_worksheet(first)
    second = await admitted_pair(cast, db, clock, email="bea@example.com")
    opening = {"type": "worksheet-open", "appointment": ref(second.appointment)}

    await second.therapist.send({**opening, "template": "no-such-template", "id": "m-1"})
    await second.therapist.send({**opening, "worksheet": theirs.worksheet, "id": "m-2"})
    await second.therapist.send({**opening, "template": "t-1", "id": "m-3"})
    await second.therapist.send(
        {**opening, "appointment": ref(first.appointment), "template": CHECK_IN, "id": "m-4"}
    )

    for number in (1, 2, 3, 4):
        error = await second.therapist.expect("error")
        assert (error["error"], error["id"]) == ("not-found", f"m-{number}")
    assert not second.client.of_type("worksheet")


# --- editing -------------------------------------------------------------------------


async def test_two_people_typing_into_one_field_in_200_interleaved_edits_lose_nothing(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    rng = random.Random(7)
    words: list[str] = []
    for number in range(200):
        editor = therapist if number % 2 == 0 else client
        text = editor.text("went_well")
        word = f"<{editor.name[0]}{number}>"
        words.append(word)
        # Between two earlier words, never inside one, so that every word stays whole.
        current = str(text)
        boundaries = [0, *(i + 1 for i, char in enumerate(current) if char == ">")]
        text.insert(rng.choice(boundaries), word)
        await editor.push()  # sent at once, without waiting for the other's edits

    total = sum(map(len, words))
    await therapist.until(lambda: len(therapist.content("went_well")) == total)
    await client.until(lambda: len(client.content("went_well")) == total)
    assert therapist.content("went_well") == client.content("went_well")
    final = therapist.content("went_well")
    assert all(final.count(word) == 1 for word in words)

    worksheet = therapist.worksheet
    assert worksheet is not None
    await pair.therapist.send({"type": "worksheet-close", "worksheet": worksheet})
    await pair.client.expect("worksheet-closed")
    row = await stored(db, worksheet)
    assert json.loads(row.content)["went_well"] == final == client.content("went_well")


async def test_edits_made_offline_merge_when_the_client_reconnects(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    client.text("was_hard").insert(0, "Sunday.")
    await client.push()
    await therapist.until(lambda: therapist.content("was_hard") == "Sunday.")

    await pair.client.close()
    for number in range(20):
        client.text("was_hard").insert(len(client.text("was_hard")), f" c{number}")
    therapist.text("was_hard").insert(0, "Before: ")
    await therapist.push()
    socket = await cast.client(pair.token)
    assert (await client.reattach(socket))["worksheet"] == client.worksheet

    expected = "Before: Sunday." + "".join(f" c{n}" for n in range(20))
    await client.until(lambda: client.content("was_hard") == expected)
    await therapist.until(lambda: therapist.content("was_hard") == expected)
    assert not socket.of_type("waiting")


async def test_every_saved_edit_is_still_there_after_the_server_restarts(
    migrated_url: str, tmp_path: Path, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async with serving(migrated_url, tmp_path / "var", clock) as cast:
        pair = await admitted_pair(cast, db, clock)
        therapist, client = await open_worksheet(pair)
        assert therapist.worksheet is not None
        worksheet = therapist.worksheet
        client.text("went_well").insert(0, "We talked on Tuesday.")
        await client.push()
        await saved(pair.therapist, worksheet)
        # Not yet saved when the server stops: the shutdown saves it.
        therapist.text("bring_to_session").insert(0, "Holidays")
        await therapist.push()
        await client.until(lambda: client.content("bring_to_session") == "Holidays")

    async with serving(migrated_url, tmp_path / "var2", clock) as cast:
        socket = await cast.therapist("sam@example.com", pair.appointment)
        again = WorksheetClient(socket, "therapist")
        assert (await again.expect_worksheet())["worksheet"] == worksheet
        await again.until(lambda: again.content("went_well") == "We talked on Tuesday.")
        assert again.content("bring_to_session") == "Holidays"
        restored = await saved(socket, worksheet, after=-1)  # all was stored on shutdown
        again.text("went_well").insert(0, "Again: ")
        await again.push()
        await saved(socket, worksheet, after=restored)
    content = json.loads((await stored(db, worksheet)).content)
    assert content["went_well"] == "Again: We talked on Tuesday."
    assert content["bring_to_session"] == "Holidays"


async def test_ending_the_session_saves_the_worksheet_and_takes_it_out_of_the_call(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    client.text("went_well").insert(0, "A walk together")
    await client.push()
    await therapist.until(lambda: therapist.content("went_well") == "A walk together")

    await pair.therapist.send({"type": "end", "appointment": ref(pair.appointment)})
    await pair.client.expect("ended")
    handler = cast.live.app[SWITCHBOARD].worksheets
    assert isinstance(handler, CallWorksheets)
    await handler.drain()

    assert client.worksheet is not None
    assert json.loads((await stored(db, client.worksheet)).content)["went_well"] == (
        "A walk together"
    )
    async with db() as session:
        assert await session.get(CallWorksheet, pair.appointment.id) is None


# --- access --------------------------------------------------------------------------


async def test_a_waiting_client_receives_nothing_of_the_worksheet_and_changes_nothing(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    assert therapist.worksheet is not None
    await send_back(pair)
    before, therapist_before = len(pair.client.received), len(pair.therapist.received)

    therapist.text("went_well").insert(0, "private")
    await therapist.push()
    await pair.therapist.send(
        {"type": "editing", "worksheet": therapist.worksheet, "field": "went_well"}
    )
    client.text("was_hard").insert(0, "intrusion")
    update = client.peer.take_outbox()[0]
    await pair.client.send(
        {"type": "yjs", "worksheet": therapist.worksheet, "data": encode(update), "id": "m-1"}
    )
    await pair.client.send(
        {"type": "editing", "worksheet": therapist.worksheet, "field": None, "id": "m-2"}
    )
    # As a browser writes it (no id): a keystroke's short way refuses it the same.
    await pair.client.send(
        {"type": "yjs", "worksheet": therapist.worksheet, "data": encode(update)}
    )
    therapist_before = len(pair.therapist.received)
    await round_trip(pair.client, pair.therapist)

    errors = pair.client.of_type("error")
    assert [(e["error"], e.get("id")) for e in errors] == [
        ("not-admitted", "m-1"),
        ("not-admitted", "m-2"),
        ("not-admitted", None),
    ]
    after = [m["type"] for m in pair.client.received[before:]]
    assert not {"worksheet", "yjs", "editing", "worksheet-saved"} & set(after)
    assert "yjs" not in [m["type"] for m in pair.therapist.received[therapist_before:]]
    content = await closed_content(pair, db, therapist.worksheet)
    assert (content["went_well"], content["was_hard"]) == ("private", "")


async def test_another_call_cannot_read_or_write_the_worksheet(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, _ = await open_worksheet(pair)
    assert therapist.worksheet is not None
    other = await admitted_pair(cast, db, clock, email="bea@example.com")
    await other.client.send(
        {"type": "yjs", "worksheet": therapist.worksheet, "data": encode(b"\x00\x00\x00")}
    )
    await other.therapist.send(
        {"type": "editing", "worksheet": therapist.worksheet, "field": "went_well"}
    )
    for socket in (other.client, other.therapist):
        assert (await socket.expect("error"))["error"] == "not-found"

    therapist.text("went_well").insert(0, "ours")
    await therapist.push()
    await round_trip(other.client, other.therapist)
    for socket in (other.client, other.therapist):
        assert not socket.of_type("worksheet", "yjs", "editing", "worksheet-saved")


# --- bad input -----------------------------------------------------------------------


async def test_an_update_over_a_field_limit_is_refused_and_the_document_is_unchanged(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    assert client.worksheet is not None
    client.text("went_well").insert(0, "fine")
    await client.push()
    await therapist.until(lambda: therapist.content("went_well") == "fine")

    client.text("went_well").insert(4, "x" * 5000)
    update = client.peer.take_outbox()[0]
    await pair.client.send(
        {"type": "yjs", "worksheet": client.worksheet, "data": encode(update), "id": "big"}
    )
    error = await pair.client.expect("error")
    assert (error["error"], error["id"]) == ("worksheet-refused", "big")
    assert error["value"].startswith("went_well: ")
    assert "5000" in error["value"]

    await round_trip(pair.therapist)
    assert therapist.content("went_well") == "fine"
    assert (await closed_content(pair, db, client.worksheet))["went_well"] == "fine"
    assert pair.client.close_code is None


async def test_a_malformed_yjs_message_is_refused_and_the_socket_stays_open(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, _ = await open_worksheet(pair)
    assert therapist.worksheet is not None
    corrupt = create_update_message(b"\x01\x01\xff\xff\xff\xff\x0f")
    await pair.client.send(
        {"type": "yjs", "worksheet": therapist.worksheet, "data": encode(corrupt), "id": "x"}
    )
    error = await pair.client.expect("error")
    assert (error["error"], error["id"]) == ("worksheet-refused", "x")

    await pair.client.send(
        {"type": "yjs", "worksheet": therapist.worksheet, "data": "not base64!", "id": "y"}
    )
    error = await pair.client.expect("error")
    assert error["error"] == "bad-message"


async def test_an_update_is_relayed_once_and_a_repeat_not_at_all(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    therapist, client = await open_worksheet(pair)
    assert client.worksheet is not None
    await therapist.stop()  # the test reads the therapist's socket itself
    client.text("went_well").insert(0, "a walk")
    (update,) = client.peer.take_outbox()
    sent = encode(update)
    message = {"type": "yjs", "worksheet": client.worksheet, "data": sent}
    await pair.client.send(message)
    relayed = await pair.therapist.expect("yjs")
    assert therapist.peer.receive(base64.b64decode(relayed["data"])) is None
    assert therapist.content("went_well") == "a walk"

    await pair.client.send(message)  # nothing new: nothing to relay
    await round_trip(pair.client, pair.therapist)
    assert pair.therapist.pending("yjs") == 0
    assert not pair.client.of_type("error")


async def covering(client: WorksheetClient) -> Json:
    """The first ``worksheet-saved`` covering every message ``client`` sent on its socket;
    none may claim more than it had sent."""
    while True:
        message = await client.socket.expect("worksheet-saved")
        assert message["received"] <= client.sent
        if message["received"] == client.sent:
            return message


async def test_a_save_tells_each_participant_how_many_of_its_messages_it_stored(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    _, client = await open_worksheet(pair)
    assert client.worksheet is not None
    client.text("went_well").insert(0, "We talked on Tuesday.")
    await client.push()
    assert client.sent == 3  # its sync step 1, its step 2 in answer to the server's, the edit
    assert (await covering(client))["received"] == 3

    # On a new socket the count starts again: a save of the old socket's messages covers
    # none of the new one's.
    await pair.client.close()
    socket = await cast.client(pair.token)
    await client.reattach(socket)
    assert (await socket.expect("worksheet-saved"))["received"] == 0
    client.text("went_well").insert(0, "Again: ")
    await client.push()
    await covering(client)
    assert json.loads((await stored(db, client.worksheet)).content)["went_well"] == (
        "Again: We talked on Tuesday."
    )


# --- audit ---------------------------------------------------------------------------


async def test_every_read_and_write_is_audited_without_the_content(
    cast: Cast, db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    pair = await admitted_pair(cast, db, clock)
    _, client = await open_worksheet(pair)
    assert client.worksheet is not None
    client.text("went_well").insert(0, "secret words")
    await client.push()
    await saved(pair.client, client.worksheet)

    async with db() as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.record_type == "worksheet")
                .order_by(AuditEvent.id)
            )
        ).all()
    actions = [(e.action, e.actor_type) for e in events]
    assert ("worksheet.open", "therapist") in actions
    assert ("worksheet.open", "client") in actions
    assert ("worksheet.write", "client") in actions
    assert all(e.record_id == client.worksheet.removeprefix("w-") for e in events)
    for event in events:
        assert "secret" not in " ".join(str(v) for v in vars(event).values())


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode()
