from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.models import Therapist
from tests.conftest import sign_in


async def test_signed_in_therapist_sees_dashboard(
    client: TestClient[Any, Any], therapist: Therapist
) -> None:
    response = await sign_in(client)
    assert response.status == 303
    page = await client.get("/dashboard")
    assert page.status == 200
    assert "Sam Rivera" in await page.text()
