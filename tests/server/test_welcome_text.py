"""The therapist's waiting-room welcome text: edited on the dashboard, shown to waiting clients."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.models import AuditEvent, Therapist
from tests.conftest import csrf_from, sign_in


async def dashboard_token(client: TestClient[Any, Any]) -> str:
    page = await client.get("/dashboard")
    assert page.status == 200
    return csrf_from(await page.text())


async def test_saving_the_welcome_text_stores_it_and_shows_it_back(
    client: TestClient[Any, Any], therapist: Therapist, db: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(client)
    token = await dashboard_token(client)

    response = await client.post(
        "/dashboard/welcome",
        data={"csrf_token": token, "welcome_text": "  Welcome! I'll be with you shortly.  "},
        allow_redirects=False,
    )

    assert response.status == 303
    async with db() as session:
        stored = await session.get(Therapist, therapist.id)
        assert stored is not None and stored.welcome_text == "Welcome! I'll be with you shortly."
        actions = list(await session.scalars(select(AuditEvent.action)))
    assert "welcome_text_updated" in actions
    page = await (await client.get(response.headers["Location"])).text()
    assert "Welcome! I&#39;ll be with you shortly." in page


async def test_too_long_a_welcome_text_is_refused_and_nothing_changes(
    client: TestClient[Any, Any], therapist: Therapist, db: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(client)
    token = await dashboard_token(client)

    response = await client.post(
        "/dashboard/welcome", data={"csrf_token": token, "welcome_text": "x" * 2001}
    )

    assert response.status == 200
    assert "at most 2000 characters" in await response.text()
    async with db() as session:
        stored = await session.get(Therapist, therapist.id)
        assert stored is not None and stored.welcome_text == ""


async def test_saving_the_welcome_text_without_the_csrf_token_is_refused(
    client: TestClient[Any, Any], therapist: Therapist, db: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(client)

    response = await client.post("/dashboard/welcome", data={"welcome_text": "Hi"})

    assert response.status == 403
    async with db() as session:
        stored = await session.get(Therapist, therapist.id)
        assert stored is not None and stored.welcome_text == ""
