"""Storing worksheets' states: several at once, each only if no one saved it meanwhile."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import worksheet_store
from server.worksheet_models import Worksheet
from server.worksheet_store import Save
from tests.conftest import FakeClock
from tests.support.arrange import make_client, make_therapist, make_worksheet, stored_worksheet


async def worksheets(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, count: int
) -> list[int]:
    therapist = await make_therapist(db, email="sam@example.com", password="a long password")
    client = await make_client(db, therapist.id)
    return [await make_worksheet(db, therapist.id, client.id, now=clock()) for _ in range(count)]


async def test_save_states_stores_each_document_whose_revision_is_the_one_expected(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    first, second, third, gone = await worksheets(db, clock, 4)
    async with db() as session, session.begin():
        # Someone saved the second meanwhile, and the fourth was deleted.
        await worksheet_store.save_states(session, [Save(second, b"theirs", "{}", 0)], now=clock())
        await session.execute(delete(Worksheet).where(Worksheet.id == gone))
    later = clock() + dt.timedelta(minutes=5)
    saves = [
        Save(first, b"\x00first", '{"a": "first"}', expected=0),
        Save(second, b"\x00mine", '{"a": "mine"}', expected=0),
        Save(third, b"\x00third\xff", '{"a": "third: café ☕"}', expected=0),
        Save(gone, b"\x00gone", "{}", expected=0),
    ]

    async with db() as session, session.begin():
        revisions = await worksheet_store.save_states(session, saves, now=later)

    assert revisions == {first: 1, third: 1}
    expected = {first: saves[0], third: saves[2]}
    for worksheet_id, save in expected.items():
        row = await stored_worksheet(db, worksheet_id)
        assert (row.state, row.content, row.revision) == (save.state, save.content, 1)
        assert row.updated_at == later
    untouched = await stored_worksheet(db, second)
    assert (untouched.state, untouched.revision) == (b"theirs", 1)


async def test_save_states_takes_one_statement_for_a_batch_and_more_only_past_the_chunk_size(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await worksheets(db, clock, 5)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    engine = db.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        async with db() as session, session.begin():
            saves = [Save(n, b"\x00one", "{}", expected=0) for n in ids]
            assert await worksheet_store.save_states(session, saves, now=clock()) == {
                n: 1 for n in ids
            }
        one = len(statements)
        monkeypatch.setattr(worksheet_store, "SAVES_PER_STATEMENT", 2)
        async with db() as session, session.begin():
            saves = [Save(n, b"\x00two", "{}", expected=1) for n in ids]
            assert await worksheet_store.save_states(session, saves, now=clock()) == {
                n: 2 for n in ids
            }
    finally:
        event.remove(engine, "before_cursor_execute", record)

    def updates(recorded: list[str]) -> int:
        return sum("UPDATE worksheets" in statement for statement in recorded)

    assert updates(statements[:one]) == 1  # five worksheets, one statement
    assert updates(statements[one:]) == 3  # two, two and one
    assert [(await stored_worksheet(db, n)).state for n in ids] == [b"\x00two"] * len(ids)


async def test_save_states_compiles_its_statement_once_and_reuses_it_for_batches_of_about_its_size(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    ids = await worksheets(db, clock, 5)
    cache: list[object] = []

    def record(*args: Any) -> None:
        context = args[4]
        if "UPDATE worksheets" in str(args[2]):
            cache.append(context.cache_hit)

    # Three documents, three again, then four: one statement of four rows for all three
    # batches (the last row empty in the first two).
    batches = [
        [Save(n, b"\x00one", "{}", expected=0) for n in ids[:3]],
        [Save(n, b"\x00two", "{}", expected=1) for n in ids[:3]],
        [Save(n, b"\x00three", "{}", expected=2) for n in ids[:3]]
        + [Save(ids[3], b"\x00three", "{}", expected=0)],
    ]
    engine = db.kw["bind"].sync_engine
    event.listen(engine, "after_cursor_execute", record)
    try:
        for saves in batches:
            async with db() as session, session.begin():
                stored = await worksheet_store.save_states(session, saves, now=clock())
            assert stored == {save.worksheet_id: save.expected + 1 for save in saves}
    finally:
        event.remove(engine, "after_cursor_execute", record)

    # The first batch may compile the statement; the others reuse it (rows given as VALUES
    # were compiled afresh every time: milliseconds a batch).
    assert len(cache) == 3
    assert all(hit is CacheStats.CACHE_HIT for hit in cache[1:])
    assert [(await stored_worksheet(db, n)).state for n in ids[:4]] == [b"\x00three"] * 4
    assert (await stored_worksheet(db, ids[4])).revision == 0  # never given: untouched


async def test_save_states_with_nothing_to_save_writes_nothing(
    db: async_sessionmaker[AsyncSession], clock: FakeClock
) -> None:
    async with db() as session, session.begin():
        assert await worksheet_store.save_states(session, [], now=clock()) == {}
