"""The manage link over the JSON API: cancel and reschedule with the token in the path, and
a problem for every way that can fail -- too late, out of date, taken, unknown."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import FakeClock
from tests.server.test_api import (
    CONTACT,
    WEDNESDAY_10,
    ZONE,
    Http,
    booked,
    http,
    problem,
)
from tests.support.arrange import Bookable, local, make_bookable_therapist

__all__ = ["http"]  # the fixture, shared with test_api

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db, contact_text=CONTACT)


def manage_path(booking: dict[str, Any], action: str) -> str:
    token = booking["manage_url"].rsplit("/", 1)[1]
    return f"/api/v1/manage/{token}/{action}"


async def test_cancel_by_manage_link_is_200_and_a_second_time_410(
    http: Http, bookable: Bookable
) -> None:
    booking = await booked(http, bookable)

    response = await http.post(manage_path(booking, "cancel"), json={})
    again = await http.post(manage_path(booking, "cancel"), json={})

    assert response.status == 200
    assert await response.json() == {"appointment": booking["appointment"], "status": "cancelled"}
    await problem(again, 410, "not-changeable")


async def test_cancel_accepts_an_empty_json_body_but_no_fields(
    http: Http, bookable: Bookable
) -> None:
    booking = await booked(http, bookable)

    refused = await http.post(manage_path(booking, "cancel"), json={"reason": "ill"})
    accepted = await http.post(
        manage_path(booking, "cancel"), data=b"", headers={"Content-Type": "application/json"}
    )

    await problem(refused, 422, "validation-failed")
    assert accepted.status == 200


async def test_past_the_cutoff_the_manage_link_is_a_409_too_late_with_the_contact(
    http: Http, bookable: Bookable, clock: FakeClock
) -> None:
    booking = await booked(http, bookable)
    clock.now = local(ZONE, 2026, 3, 3, 11).astimezone(dt.UTC)

    cancelling = await problem(
        await http.post(manage_path(booking, "cancel"), json={}), 409, "too-late"
    )
    moving = await problem(
        await http.post(manage_path(booking, "reschedule"), json={"start": "2026-03-05T15:00:00Z"}),
        409,
        "too-late",
    )

    assert cancelling["contact"] == moving["contact"] == CONTACT
    assert cancelling["cutoff"] == "2026-03-03T15:00:00Z"


async def test_reschedule_by_manage_link_returns_the_new_time_and_a_new_link(
    http: Http, bookable: Bookable
) -> None:
    booking = await booked(http, bookable)

    response = await http.post(
        manage_path(booking, "reschedule"), json={"start": "2026-03-05T15:00:00Z"}
    )
    stale = await http.post(manage_path(booking, "cancel"), json={})

    assert response.status == 200
    moved = await response.json()
    assert moved["appointment"] == booking["appointment"]
    assert (moved["start"], moved["end"]) == ("2026-03-05T15:00:00Z", "2026-03-05T15:50:00Z")
    assert moved["manage_url"] != booking["manage_url"]
    await problem(stale, 410, "not-changeable")
    assert (await http.post(manage_path(moved, "cancel"), json={})).status == 200


async def test_reschedule_problems_taken_invalid_and_unknown(
    http: Http, bookable: Bookable
) -> None:
    booking = await booked(http, bookable)
    await booked(http, bookable, start="2026-03-05T15:00:00Z", email="kim@example.net")
    path = manage_path(booking, "reschedule")

    taken = await problem(
        await http.post(path, json={"start": "2026-03-05T15:30:00Z"}), 409, "slot-taken"
    )
    invalid = await problem(await http.post(path, json={"start": 5}), 422, "validation-failed")
    await problem(await http.post(path, json={}), 422, "validation-failed")
    await problem(await http.post(path, data="start=x"), 415, "unsupported-media-type")
    await problem(
        await http.post("/api/v1/manage/nope/reschedule", json={"start": WEDNESDAY_10}),
        404,
        "unknown-link",
    )
    await problem(
        await http.post(f"/api/v1/manage/{'x' * 300}/cancel", json={}), 404, "unknown-link"
    )

    assert taken["nearest"]
    assert invalid["errors"] == [
        {
            "field": "start",
            "message": "must be a date and time with an offset, e.g. 2026-03-04T15:00:00Z",
        }
    ]
