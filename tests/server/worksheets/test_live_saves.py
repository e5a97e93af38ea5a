"""Saving the live worksheets: edits to several worksheets due at once are stored together,
each with its revision, audit event and ``worksheet-saved``, on the real database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import worksheet_store
from server.audit import Actor
from server.models import AuditEvent
from server.worksheet_live import LiveWorksheets
from server.worksheet_models import Worksheet
from signalling.messages import Message
from signalling.protocol import parse_message
from signalling.worksheet_messages import WorksheetSaved, Yjs
from tests.conftest import FakeClock
from tests.server.worksheets.peers import Peer
from tests.support.arrange import (
    make_client,
    make_therapist,
    make_worksheet,
    stored_worksheet,
)
from tests.support.instances import eventually

CHECK_IN = "weekly-check-in"


class Recorder:
    """A subscriber that keeps what it is sent."""

    def __init__(self, key: str, actor: tuple[Actor, int]) -> None:
        self.key = key
        self.actor = actor
        #: The socket it stands for: a reconnect is a new one.
        self.connection: object = 1
        self.received: list[Message] = []
        self.arrived = asyncio.Event()

    async def deliver(self, message: Message) -> None:
        self.received.append(message)
        self.arrived.set()

    async def relay(self, frame: str) -> None:
        await self.deliver(parse_message(frame))

    def saved(self) -> list[int]:
        return [m.revision for m in self.received if isinstance(m, WorksheetSaved)]


async def new_check_in(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, therapist_id: int, client_id: int
) -> int:
    """A weekly check-in of ``client_id``'s, outside any appointment; its id."""
    return await make_worksheet(db, therapist_id, client_id, now=clock(), template_key=CHECK_IN)


async def check_ins_of_one_client(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, count: int
) -> tuple[list[int], list[Recorder]]:
    """``count`` weekly check-ins of one client's, and a recorder standing for the client on
    each."""
    therapist = await make_therapist(db, email="sam@example.com", password="a long password")
    client = await make_client(db, therapist.id)
    ids = [await new_check_in(db, clock, therapist.id, client.id) for _ in range(count)]
    return ids, [Recorder(f"client-{n}", (Actor.CLIENT, client.id)) for n in ids]


async def synced_peer(live: LiveWorksheets, worksheet_id: int, person: Recorder) -> Peer:
    """``person``'s copy of the worksheet, attached and brought up to date."""
    await live.attach(worksheet_id, person)
    peer = Peer(person.key)
    await live.receive(worksheet_id, person, peer.sync_step1())
    step2 = person.received[-1]
    assert isinstance(step2, Yjs)
    peer.receive(step2.data)
    return peer


async def until_saved(person: Recorder) -> None:
    """Wait for the first ``worksheet-saved`` after the one sent on attaching."""
    async with asyncio.timeout(10):
        while person.saved() == [0]:
            await person.arrived.wait()
            person.arrived.clear()


async def test_worksheets_due_together_are_saved_together_skipping_one_deleted_meanwhile(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    ids, people = await check_ins_of_one_client(db, clock, 3)
    live = LiveWorksheets(db, clock, save_delay=0.05)
    for worksheet_id, person in zip(ids, people, strict=True):
        peer = await synced_peer(live, worksheet_id, person)
        assert person.saved() == [0]  # nothing unsaved yet
        peer.text("went_well").insert(0, f"walked {worksheet_id}")
        await live.receive(worksheet_id, person, peer.take_outbox()[0])
    async with db() as session, session.begin():
        await session.execute(delete(Worksheet).where(Worksheet.id == ids[1]))

    for person in (people[0], people[2]):
        await until_saved(person)
    await live.close()

    assert (people[0].saved(), people[1].saved(), people[2].saved()) == ([0, 1], [0], [0, 1])
    async with db() as session:
        for worksheet_id in (ids[0], ids[2]):
            row = await session.get(Worksheet, worksheet_id)
            assert row is not None
            assert row.revision == 1
            assert json.loads(row.content)["went_well"] == f"walked {worksheet_id}"
        writes = set(
            await session.scalars(
                select(AuditEvent.record_id).where(AuditEvent.action == "worksheet.write")
            )
        )
        assert {str(ids[0]), str(ids[2])} <= writes


async def test_two_instances_editing_one_worksheet_store_the_union_of_their_edits(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # The call's copy on one instance, the client's homework page on another: each holds its
    # own document, and each save merges what the other stored first.
    therapist = await make_therapist(db, email="sam@example.com", password="a long password")
    client = await make_client(db, therapist.id)
    worksheet_id = await new_check_in(db, clock, therapist.id, client.id)
    east, west = LiveWorksheets(db, clock), LiveWorksheets(db, clock)
    host = Recorder("therapist", (Actor.THERAPIST, therapist.id))
    guest = Recorder("client", (Actor.CLIENT, client.id))
    peers = {
        person.key: await synced_peer(live, worksheet_id, person)
        for live, person in ((east, host), (west, guest))
    }
    peers["therapist"].text("went_well").insert(0, "noticed the pattern")
    await east.receive(worksheet_id, host, peers["therapist"].take_outbox()[0])
    peers["client"].text("was_hard").insert(0, "Sunday evening")
    await west.receive(worksheet_id, guest, peers["client"].take_outbox()[0])

    await east.flush()
    await west.flush()  # saved after east: merges east's edit before storing
    for message in guest.received:
        if isinstance(message, Yjs):
            peers["client"].receive(message.data)
    await east.close()
    await west.close()

    async with db() as session:
        row = await session.get(Worksheet, worksheet_id)
        assert row is not None
        stored = json.loads(row.content)
    assert (stored["went_well"], stored["was_hard"]) == ("noticed the pattern", "Sunday evening")
    assert row.revision == 2
    assert str(peers["client"].text("went_well")) == "noticed the pattern"  # relayed to them
    assert guest.saved()[-1] == 2 and host.saved()[-1] == 1


async def test_worksheets_changed_within_one_delay_are_saved_in_one_transaction(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # Fifty calls typing at once must not cost fifty commits a second: a worksheet changed
    # late in the delay joins the batch already waiting instead of starting its own timer.
    ids, people = await check_ins_of_one_client(db, clock, 2)
    live = LiveWorksheets(db, clock, save_delay=1.0)
    peers = [
        await synced_peer(live, worksheet_id, person)
        for worksheet_id, person in zip(ids, people, strict=True)
    ]
    commits: list[float] = []

    def count(_connection: object) -> None:
        commits.append(time.monotonic())

    engine = db.kw["bind"].sync_engine
    event.listen(engine, "commit", count)
    try:
        for worksheet_id, person, peer in zip(ids, people, peers, strict=True):
            peer.text("went_well").insert(0, f"walked {worksheet_id}")
            await live.receive(worksheet_id, person, peer.take_outbox()[0])
            await asyncio.sleep(0.2)  # the second change comes 0.2 s into the first's delay
        for person in people:
            await until_saved(person)
    finally:
        event.remove(engine, "commit", count)
        await live.close()

    assert [person.saved() for person in people] == [[0, 1], [0, 1]]
    assert len(commits) == 1


class Ticker:
    """A task that counts the turns of the event loop it gets, while it runs."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class TurnRecorder(Recorder):
    """A recorder that notes, with each ``worksheet-saved``, how many turns ``ticker`` had."""

    def __init__(self, key: str, actor: tuple[Actor, int], ticker: Ticker) -> None:
        super().__init__(key, actor)
        self.ticker = ticker
        self.turns_when_saved: list[int] = []

    async def deliver(self, message: Message) -> None:
        if isinstance(message, WorksheetSaved) and message.revision > 0:
            self.turns_when_saved.append(self.ticker.turns)
        await super().deliver(message)


async def test_a_batch_lets_keystrokes_in_between_the_worksheets_it_announces(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # A batch of fifty saves told a hundred people at once, without a turn of the event loop
    # in between: every keystroke arriving meanwhile waited for all of it.
    ids, plain = await check_ins_of_one_client(db, clock, 3)
    ticker = Ticker()
    people = [TurnRecorder(person.key, person.actor, ticker) for person in plain]
    live = LiveWorksheets(db, clock, save_delay=0.05)
    statements: list[str] = []

    def executed(*args: object) -> None:
        statements.append(str(args[2]))

    engine = db.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", executed)
    try:
        peers = [
            await synced_peer(live, worksheet_id, person)
            for worksheet_id, person in zip(ids, people, strict=True)
        ]
        for worksheet_id, person, peer in zip(ids, people, peers, strict=True):
            peer.text("went_well").insert(0, f"walked {worksheet_id}")
            await live.receive(worksheet_id, person, peer.take_outbox()[0])
        for person in people:
            await until_saved(person)
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        await live.close()
        await ticker.stop()

    assert [person.saved() for person in people] == [[0, 1]] * 3
    assert sum("UPDATE worksheets" in statement for statement in statements) == 1  # one batch
    turns = [person.turns_when_saved[0] for person in people]
    assert turns[0] < turns[1] < turns[2]


# --- the database away ----------------------------------------------------------------


async def rename(db: async_sessionmaker[AsyncSession], old: str, new: str) -> None:
    async with db() as session, session.begin():
        await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


@contextlib.asynccontextmanager
async def worksheets_away(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """The database cannot store worksheets (their table is renamed) until the block ends."""
    await rename(db, "worksheets", "worksheets_away")
    try:
        yield
    finally:
        await rename(db, "worksheets_away", "worksheets")


async def one_check_in(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> tuple[int, Recorder, LiveWorksheets, Peer]:
    """A weekly check-in open for its client on live worksheets saving after 0.05 s."""
    [worksheet_id], [person] = await check_ins_of_one_client(db, clock, 1)
    live = LiveWorksheets(db, clock, save_delay=0.05)
    return worksheet_id, person, live, await synced_peer(live, worksheet_id, person)


async def until_logged(caplog: pytest.LogCaptureFixture, needle: str, times: int = 1) -> None:
    async def logged() -> bool | None:
        count = sum(needle in record.getMessage() for record in caplog.records)
        return True if count >= times else None

    await eventually(logged, f"{needle!r} logged {times} times")


async def test_a_save_that_failed_is_tried_again_until_it_is_stored_without_more_typing(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    worksheet_id, person, live, peer = await one_check_in(db, clock)
    async with worksheets_away(db):
        peer.text("went_well").insert(0, "the last words before the outage")
        await live.receive(worksheet_id, person, peer.take_outbox()[0])
        await until_logged(caplog, "could not save 1 worksheets")
        await until_logged(caplog, "still cannot save 1 worksheets", times=2)  # backing off

    await until_saved(person)  # nobody typed again
    await live.close()

    assert person.saved() == [0, 1]
    row = await stored_worksheet(db, worksheet_id)
    assert json.loads(row.content)["went_well"] == "the last words before the outage"
    assert any("saved again" in record.getMessage() for record in caplog.records)
    assert "last words" not in caplog.text  # no content in the log of the failures
    delays = [
        float(record.getMessage().rsplit("in ", 1)[1].removesuffix(" s"))
        for record in caplog.records
        if "save 1 worksheets" in record.getMessage()
    ]
    assert delays[:3] == [0.05, 0.1, 0.2]


async def test_a_worksheet_left_unsaved_stays_loaded_until_a_retry_stores_it(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    worksheet_id, person, live, peer = await one_check_in(db, clock)
    async with worksheets_away(db):
        peer.text("was_hard").insert(0, "closed the tab at once")
        await live.receive(worksheet_id, person, peer.take_outbox()[0])
        await live.detach(worksheet_id, person.key)  # the last one leaves: the flush fails
        await until_logged(caplog, "could not save 1 worksheets")
        assert live.is_live(worksheet_id)  # its edits are still only here

    async def unloaded() -> bool | None:
        return None if live.is_live(worksheet_id) else True

    await eventually(unloaded, "stored by a retry, then unloaded")
    await live.close()
    row = await stored_worksheet(db, worksheet_id)
    assert json.loads(row.content)["was_hard"] == "closed the tab at once"
    assert row.revision == 1


async def test_a_batch_writes_each_worksheet_once_and_all_its_audit_events_together(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # The worksheets of a batch are stored in one statement, and the audit events of the
    # whole batch in one more: not one statement each.
    ids, clients = await check_ins_of_one_client(db, clock, 3)
    therapist = Recorder("therapist", (Actor.THERAPIST, 1))
    # All six edits fall within one delay, so that they are saved in one batch.
    live = LiveWorksheets(db, clock, save_delay=1.0)
    statements: list[str] = []

    def record(*args: object) -> None:
        words = str(args[2]).lower().split()
        if words[0] == "with":  # the rows given, then what is done with them
            words = words[words.index("update") :]
        if words[0] in ("update", "insert"):
            statements.append(" ".join(words[:3] if words[0] == "insert" else words[:2]))

    engine = db.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for worksheet_id, client in zip(ids, clients, strict=True):
            for person, words in ((client, "walked"), (therapist, "noted")):
                peer = await synced_peer(live, worksheet_id, person)
                peer.text("went_well").insert(0, f"{words} {worksheet_id} ")
                await live.receive(worksheet_id, person, peer.take_outbox()[0])
        edited = len(statements)  # what opening the worksheets wrote (their audit events)
        for client in clients:
            await until_saved(client)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        await live.close()

    assert statements[edited:] == ["update worksheets", "insert into audit_events"]
    async with db() as session:
        writes = (
            await session.scalars(
                select(AuditEvent.actor_type).where(AuditEvent.action == "worksheet.write")
            )
        ).all()
    assert sorted(writes) == ["client"] * 3 + ["therapist"] * 3


# --- while a save is being written ------------------------------------------------------


class HeldSaves:
    """Saves that wait, on reaching the database, until released (then all pass at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        store = worksheet_store.save_states

        async def held(session: AsyncSession, saves: Any, **kwargs: Any) -> dict[int, int]:
            self.writing.set()
            await self.release.wait()
            return await store(session, saves, **kwargs)

        monkeypatch.setattr(worksheet_store, "save_states", held)

    async def until_writing(self) -> None:
        async with asyncio.timeout(10):
            await self.writing.wait()


async def until_revision(person: Recorder, revision: int) -> None:
    async with asyncio.timeout(10):
        while revision not in person.saved():
            await person.arrived.wait()
            person.arrived.clear()


async def test_a_worksheet_opened_while_a_save_is_written_is_called_saved_once_it_is_stored(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    worksheet_id, client, live, peer = await one_check_in(db, clock)
    saves = HeldSaves(monkeypatch)
    peer.text("went_well").insert(0, "walked twice")
    await live.receive(worksheet_id, client, peer.take_outbox()[0])
    await saves.until_writing()  # the document is taken, but not stored yet

    therapist = Recorder("therapist", (Actor.THERAPIST, 1))
    await live.attach(worksheet_id, therapist)
    assert therapist.saved() == []  # not "saved" at revision 0: "walked twice" is not stored
    saves.release.set()
    await until_revision(therapist, 1)
    await live.close()

    assert (therapist.saved(), client.saved()) == ([1], [0, 1])
    assert (
        json.loads((await stored_worksheet(db, worksheet_id)).content)["went_well"]
        == "walked twice"
    )


async def test_a_change_arriving_while_a_save_is_written_is_acknowledged_by_the_next_save(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save announces itself only to those whose changes it stored, all of them: the
    # therapist's line arrives while the client's is being stored, and the therapist's page
    # must keep saying "Saving" until the next save has stored it.
    worksheet_id, client, live, client_peer = await one_check_in(db, clock)
    therapist = Recorder("therapist", (Actor.THERAPIST, 1))
    therapist_peer = await synced_peer(live, worksheet_id, therapist)
    saves = HeldSaves(monkeypatch)
    client_peer.text("went_well").insert(0, "walked twice")
    await live.receive(worksheet_id, client, client_peer.take_outbox()[0])
    await saves.until_writing()
    therapist_peer.text("was_hard").insert(0, "noted: Sunday evenings")
    await live.receive(worksheet_id, therapist, therapist_peer.take_outbox()[0])

    saves.release.set()
    await until_revision(therapist, 2)
    await live.close()

    assert client.saved() == [0, 1, 2]
    assert therapist.saved() == [0, 2]  # revision 1 did not hold the therapist's line
    stored = json.loads((await stored_worksheet(db, worksheet_id)).content)
    assert (stored["went_well"], stored["was_hard"]) == ("walked twice", "noted: Sunday evenings")


def last_saved(person: Recorder) -> WorksheetSaved:
    saved = [m for m in person.received if isinstance(m, WorksheetSaved)]
    assert saved, "no worksheet-saved yet"
    return saved[-1]


async def test_a_save_says_how_many_messages_from_the_connection_it_covers_not_one_after(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the save of "walked" is written, the browser asks for the server's state again
    # (message 3, which changes nothing) and then types on (message 4, on its way): the save
    # covers what had arrived when it began, no more.
    worksheet_id, client, live, peer = await one_check_in(db, clock)  # step 1: message 1
    assert last_saved(client).received == 0  # on attaching: nothing had arrived yet
    saves = HeldSaves(monkeypatch)
    peer.text("went_well").insert(0, "walked")
    await live.receive(worksheet_id, client, peer.take_outbox()[0])  # message 2
    await saves.until_writing()
    await live.receive(worksheet_id, client, peer.sync_step1())  # message 3
    peer.text("went_well").insert(6, " twice")
    late = peer.take_outbox()[0]  # message 4, still on its way
    saves.release.set()
    await until_revision(client, 1)
    assert last_saved(client).received == 2

    await live.receive(worksheet_id, client, late)
    await until_revision(client, 2)
    await live.close()
    assert last_saved(client).received == 4
    assert (
        json.loads((await stored_worksheet(db, worksheet_id)).content)["went_well"]
        == "walked twice"
    )


async def test_a_new_connection_is_counted_from_nothing_and_a_save_of_the_old_one_covers_none(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    worksheet_id, client, live, peer = await one_check_in(db, clock)
    therapist = Recorder("therapist", (Actor.THERAPIST, 1))
    await synced_peer(live, worksheet_id, therapist)  # keeps the worksheet loaded throughout
    saves = HeldSaves(monkeypatch)
    peer.text("went_well").insert(0, "walked")
    await live.receive(worksheet_id, client, peer.take_outbox()[0])  # message 2 of socket 1
    await saves.until_writing()
    # The socket drops and the page comes back on a new one while the save is written: the
    # save's count is of the old socket's messages, and covers none of the new one's.
    client.connection = 2
    await live.attach(worksheet_id, client)
    await live.receive(worksheet_id, client, peer.sync_step1())  # message 1 of socket 2
    saves.release.set()
    await until_revision(client, 1)
    assert last_saved(client).received == 0

    peer.text("went_well").insert(6, " twice")
    await live.receive(worksheet_id, client, peer.take_outbox()[0])  # message 2 of socket 2
    await until_revision(client, 2)
    assert last_saved(client).received == 2
    # Gone and back on the same socket (sent back to the waiting room, admitted again): the
    # page counts afresh, and so does the server.
    await live.detach(worksheet_id, client.key)
    await live.attach(worksheet_id, client)
    assert last_saved(client).received == 0
    await live.close()


async def test_attached_again_on_the_connection_it_was_shown_on_a_subscriber_is_sent_nothing(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    # The therapist opens the worksheet as the client joins the call: both the opening and
    # the joining attach the client. Shown twice, the page would sync twice.
    worksheet_id, client, live, _ = await one_check_in(db, clock)
    before = list(client.received)
    await live.attach(worksheet_id, client)
    assert client.received == before

    client.connection = 2  # a reconnect: the new page needs it all again
    await live.attach(worksheet_id, client)
    assert [type(m).__name__ for m in client.received[len(before) :]] == [
        "WorksheetShown",
        "Yjs",
        "WorksheetSaved",
    ]
    await live.close()
    async with db() as session:
        opened = await session.scalar(
            select(func.count()).where(AuditEvent.action == "worksheet.open")
        )
    assert opened == 2  # once a connection
