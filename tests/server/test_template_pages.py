"""The therapist's own templates: written as JSON, checked on save, offered for sessions and
homework, and edited without changing the worksheets already started from them."""

from __future__ import annotations

import html as html_lib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.models import AuditEvent
from server.worksheet_models import Worksheet, WorksheetTemplate
from tests.conftest import FakeClock, csrf_from
from tests.server.test_homework import practice, serving
from tests.server.test_ws import Cast

Sessions = async_sessionmaker[AsyncSession]

FEELINGS: dict[str, Any] = {
    "id": "feelings",
    "title": "Feelings this week",
    "fields": [
        {"id": "word", "label": "One word", "kind": "short_text"},
        {"id": "when", "label": "When", "kind": "date"},
        {"id": "mood", "label": "Mood", "kind": "scale"},
    ],
}


@pytest.fixture
async def cast(migrated_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock) as served:
        yield served


async def post_template(
    cast: Cast, http: aiohttp.ClientSession, body: str, template_id: int | None = None
) -> tuple[int, str]:
    async with http.get(f"{cast.url}/therapist/templates/new") as response:
        csrf = csrf_from(await response.text())
    target = f"{cast.url}/therapist/templates" + (f"/{template_id}" if template_id else "")
    form = {"csrf_token": csrf, "body": body}
    async with http.post(target, data=form, allow_redirects=False) as response:
        return response.status, await response.text()


async def stored_templates(db: Sessions) -> list[WorksheetTemplate]:
    async with db() as session:
        return list(await session.scalars(select(WorksheetTemplate)))


async def test_a_new_template_starts_from_a_built_in_and_is_offered_once_saved(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    http = await cast.therapist_http("sam@example.com")
    async with http.get(f"{cast.url}/therapist/templates/new?from=goals-and-values") as page:
        text = html_lib.unescape(await page.text())
    assert '"id": "my-goals-and-values"' in text

    status, _body = await post_template(cast, http, json.dumps(FEELINGS))
    assert status == 303
    (row,) = await stored_templates(db)
    assert (row.slug, row.title) == ("feelings", "Feelings this week")
    async with http.get(f"{cast.url}/therapist/templates") as page:
        listing = await page.text()
    assert "Feelings this week" in listing and f"/therapist/templates/{row.id}/edit" in listing
    async with http.get(f"{cast.url}/clients/{people.client_id}") as page:
        assert f'value="t-{row.id}"' in await page.text()
    async with db() as session:
        (event,) = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "template.created")
        )
    assert (event.record_type, event.record_id) == ("worksheet_template", str(row.id))


async def test_an_invalid_template_names_the_field_keeps_the_text_and_saves_nothing(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    await practice(db, clock)
    http = await cast.therapist_http("sam@example.com")
    broken = json.loads(json.dumps(FEELINGS))
    broken["fields"][2]["kind"] = "slider"
    body = json.dumps(broken, indent=2)
    status, page = await post_template(cast, http, body)
    assert status == 422
    shown = html_lib.unescape(page)
    assert 'fields[2] (id "mood"): unknown kind "slider"' in shown
    assert body in shown
    for text in ("{not json", ""):
        status, _page = await post_template(cast, http, text)
        assert status == 422
    assert await stored_templates(db) == []


async def test_a_second_template_with_the_same_id_is_refused_clearly(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    await practice(db, clock)
    http = await cast.therapist_http("sam@example.com")
    assert (await post_template(cast, http, json.dumps(FEELINGS)))[0] == 303
    status, page = await post_template(cast, http, json.dumps({**FEELINGS, "title": "Again"}))
    assert status == 422
    assert "You already have a template with the id" in html_lib.unescape(page)
    assert [row.title for row in await stored_templates(db)] == ["Feelings this week"]


async def test_editing_a_template_leaves_worksheets_started_from_it_unchanged(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    http = await cast.therapist_http("sam@example.com")
    assert (await post_template(cast, http, json.dumps(FEELINGS)))[0] == 303
    (row,) = await stored_templates(db)
    record = f"{cast.url}/clients/{people.client_id}"
    async with http.get(record) as page:
        csrf = csrf_from(await page.text())
    form = {"csrf_token": csrf, "worksheet": f"t-{row.id}", "due": ""}
    async with http.post(f"{record}/homework", data=form, allow_redirects=False) as response:
        assert response.status == 303

    changed = {**FEELINGS, "title": "Renamed", "fields": FEELINGS["fields"][:1]}
    assert (await post_template(cast, http, json.dumps(changed), row.id))[0] == 303
    async with db() as session:
        (worksheet,) = await session.scalars(select(Worksheet))
        edited = await session.get(WorksheetTemplate, row.id)
    assert edited is not None and edited.title == "Renamed"
    assert worksheet.title == "Feelings this week"
    assert [f["id"] for f in json.loads(worksheet.template_json)["fields"]] == [
        "word",
        "when",
        "mood",
    ]


async def test_another_therapist_cannot_open_or_change_a_template(
    cast: Cast, db: Sessions, clock: FakeClock
) -> None:
    await practice(db, clock)
    await practice(db, clock, "kim@example.com")
    mine = await cast.therapist_http("sam@example.com")
    assert (await post_template(cast, mine, json.dumps(FEELINGS)))[0] == 303
    (row,) = await stored_templates(db)
    theirs = await cast.therapist_http("kim@example.com")
    async with theirs.get(f"{cast.url}/therapist/templates/{row.id}/edit") as response:
        assert response.status == 404
    changed = json.dumps({**FEELINGS, "title": "Taken over"})
    assert (await post_template(cast, theirs, changed, row.id))[0] == 404
    assert [r.title for r in await stored_templates(db)] == ["Feelings this week"]
