"""The client's worksheets on their record, and one worksheet's printable page: only for its
therapist, audited, up to date while someone is typing, and never markup from the answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.models import AuditEvent
from server.worksheet_models import Worksheet
from tests.conftest import FakeClock
from tests.server.test_homework import (
    homework_socket,
    homework_with_link,
    open_link,
    practice,
    serving,
)
from tests.server.test_ws import Cast
from tests.support.worksheet_client import WorksheetClient

Sessions = async_sessionmaker[AsyncSession]
SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


async def reads(db: Sessions) -> list[AuditEvent]:
    async with db() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "worksheet.read")
        )
        return list(rows)


async def test_the_record_lists_the_clients_worksheets_with_their_homework(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, _token = await homework_with_link(db, people, clock)
    therapist = await cast.therapist_http("sam@example.com")
    async with therapist.get(f"{cast.url}/clients/{people.client_id}") as response:
        html = await response.text()
    assert f'href="/therapist/worksheets/{homework.worksheet_id}"' in html
    assert "Weekly check-in" in html
    assert "Homework assigned" in html
    assert "Started " in html and "Last changed " in html


async def test_another_therapist_cannot_see_the_worksheet(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, _token = await homework_with_link(db, people, clock)
    await practice(db, clock, "kim@example.com")
    other = await cast.therapist_http("kim@example.com")
    async with other.get(f"{cast.url}/therapist/worksheets/{homework.worksheet_id}") as response:
        assert response.status == 404
        assert "Weekly check-in" not in await response.text()
    async with other.get(f"{cast.url}/therapist/worksheets/not-a-number") as response:
        assert response.status == 404
    assert await reads(db) == []


async def test_stored_markup_is_shown_as_text_and_the_read_is_audited_without_content(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, _token = await homework_with_link(db, people, clock)
    async with db() as session, session.begin():
        worksheet = await session.get(Worksheet, homework.worksheet_id)
        assert worksheet is not None
        worksheet.title = SCRIPT
        worksheet.content = json.dumps(
            {"went_well": SCRIPT, "was_hard": ATTRIBUTE, "mood": 3, "week_of": None}
        )
    therapist = await cast.therapist_http("sam@example.com")
    async with therapist.get(f"{cast.url}/therapist/worksheets/{homework.worksheet_id}") as page:
        html = await page.text()
        assert page.status == 200
        assert page.headers["Cache-Control"] == "no-store"
    assert SCRIPT not in html and ATTRIBUTE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "3 out of 10" in html
    assert 'id="print-button"' in html and "print.js" in html and "print.css" in html
    assert "<script>" not in html.replace('<script type="module"', "")
    (event,) = await reads(db)
    assert (event.actor_type, event.record_type) == ("therapist", "worksheet")
    assert event.record_id == str(homework.worksheet_id)
    assert "alert" not in json.dumps([event.action, event.record_id, event.source_ip])


async def test_the_page_shows_what_is_being_typed_right_now(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, token = await homework_with_link(db, people, clock)
    http, _response = await open_link(cast, token)
    sheet = WorksheetClient(await homework_socket(cast, http), "client")
    await sheet.expect_worksheet()
    sheet.text("bring_to_session").insert(0, "The holidays with his family")
    await sheet.push()
    await sheet.socket.send({"type": "ping", "ts": 1})
    await sheet.socket.expect("pong")  # the edit is in the live document; the page saves it

    therapist = await cast.therapist_http("sam@example.com")
    async with therapist.get(f"{cast.url}/therapist/worksheets/{homework.worksheet_id}") as page:
        assert "The holidays with his family" in await page.text()
