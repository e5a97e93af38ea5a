"""The JSON API: bookings and manage links over HTTP, and every error an RFC 9457 problem --
bad JSON, wrong types, a form post, a huge body, an unknown path -- never a 500 or a page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.models import Appointment
from server.settings import Settings
from tests.conftest import AiohttpClient, FakeClock
from tests.support.arrange import Bookable, make_bookable_therapist

Sessions = async_sessionmaker[AsyncSession]
Http = TestClient[Any, Any]
ZONE = "America/New_York"
BOOKINGS = "/api/v1/therapists/sam-rivera/bookings"
WEDNESDAY_10 = "2026-03-04T15:00:00Z"  # 10:00 in New York
CONTACT = "Call the practice on +1 555 0100."


async def explode(_request: web.Request) -> web.Response:
    raise RuntimeError("the database password is hunter2")


@pytest.fixture
async def http(aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock) -> Http:
    app = create_app(settings, clock=clock)
    app.router.add_get("/api/v1/explode", explode)
    return await aiohttp_client(app)


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db, contact_text=CONTACT)


def booking_body(bookable: Bookable, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_type": bookable.individual.id,
        "start": WEDNESDAY_10,
        "name": "Robin Quill",
        "email": "robin@example.net",
        "phone": "+49 30 1234567",
        "note": "Anxiety at work.",
        "timezone": "Europe/Berlin",
        "consent_telehealth": True,
        "consent_privacy": True,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


async def problem(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(await response.text())
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert (body["status"], body["code"], body["type"]) == (
        status,
        code,
        f"urn:alcove:problem:{code}",
    )
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


async def appointment_count(db: Sessions) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(Appointment)) or 0)


async def booked(http: Http, bookable: Bookable, **changes: Any) -> dict[str, Any]:
    response = await http.post(BOOKINGS, json=booking_body(bookable, **changes))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def manage_path(booking: dict[str, Any], action: str) -> str:
    token = booking["manage_url"].rsplit("/", 1)[1]
    return f"/api/v1/manage/{token}/{action}"


async def test_session_types_are_the_therapists_public_ones_in_order(
    http: Http, bookable: Bookable
) -> None:
    response = await http.get("/api/v1/therapists/sam-rivera/session-types")

    assert response.status == 200
    body = await response.json()
    assert body["therapist"] == {"slug": "sam-rivera", "name": "Sam Rivera", "timezone": ZONE}
    assert [(t["name"], t["duration_minutes"]) for t in body["session_types"]] == [
        ("Free consultation", 15),
        ("Individual session", 50),
    ]


async def test_slots_are_utc_instants_within_the_therapists_local_dates(
    http: Http, bookable: Bookable
) -> None:
    response = await http.get(
        "/api/v1/therapists/sam-rivera/slots",
        params={"session_type": bookable.individual.id, "from": "2026-03-04", "to": "2026-03-04"},
    )

    assert response.status == 200
    body = await response.json()
    starts = [slot["start"] for slot in body["slots"]]
    assert (body["timezone"], body["from"], body["to"]) == (ZONE, "2026-03-04", "2026-03-04")
    assert starts[0] == "2026-03-04T14:00:00Z"  # 09:00 EST
    assert starts[-1] == "2026-03-04T21:00:00Z"  # 16:00, the last to end by 17:00
    assert len(starts) == 29
    assert body["slots"][0]["end"] == "2026-03-04T14:50:00Z"


async def test_slots_default_to_two_weeks_from_the_therapists_today(
    http: Http, bookable: Bookable
) -> None:
    response = await http.get(
        "/api/v1/therapists/sam-rivera/slots", params={"session_type": bookable.consultation.id}
    )

    body = await response.json()
    assert (body["from"], body["to"]) == ("2026-03-02", "2026-03-15")
    assert body["slots"][0]["start"] == "2026-03-03T14:00:00Z"  # a day's notice from Monday


async def test_a_booking_is_201_with_times_and_a_manage_url_but_no_join_token(
    http: Http, bookable: Bookable, settings: Settings, db: Sessions
) -> None:
    response = await http.post(BOOKINGS, json=booking_body(bookable))

    assert response.status == 201
    body = await response.json()
    assert set(body) == {"appointment", "start", "end", "manage_url"}
    assert (body["start"], body["end"]) == (WEDNESDAY_10, "2026-03-04T15:50:00Z")
    assert body["manage_url"].startswith(f"{settings.public_url}/manage/")
    assert "Set-Cookie" not in response.headers
    assert "join" not in await response.text()
    assert await appointment_count(db) == 1


async def test_a_taken_slot_is_a_409_problem_with_the_nearest_free_times(
    http: Http, bookable: Bookable, db: Sessions
) -> None:
    await booked(http, bookable)

    response = await http.post(BOOKINGS, json=booking_body(bookable, email="kim@example.net"))

    body = await problem(response, 409, "slot-taken")
    assert [slot["start"] for slot in body["nearest"]] == [
        "2026-03-04T14:00:00Z",
        "2026-03-04T16:00:00Z",
        "2026-03-04T16:15:00Z",
    ]
    assert await appointment_count(db) == 1


async def test_invalid_fields_are_one_422_problem_listing_each_of_them(
    http: Http, bookable: Bookable, db: Sessions
) -> None:
    body = booking_body(
        bookable,
        session_type=True,
        start="next Wednesday",
        name=42,
        email="robin",
        phone="call me",
        timezone="Mars/Olympus",
        consent_privacy=False,
        colour="blue",
    )

    response = await http.post(BOOKINGS, json=body)

    details = await problem(response, 422, "validation-failed")
    assert {e["field"] for e in details["errors"]} == {
        "colour",
        "session_type",
        "start",
        "name",
        "consent_privacy",
    }
    assert await appointment_count(db) == 0


async def test_invalid_client_details_are_reported_by_field(http: Http, bookable: Bookable) -> None:
    response = await http.post(
        BOOKINGS, json=booking_body(bookable, email="robin", phone="call me", timezone="Mars")
    )

    details = await problem(response, 422, "validation-failed")
    assert [e["field"] for e in details["errors"]] == ["email", "phone", "timezone"]


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("2026-03-02T18:00:00Z", "at least 24 hours"),
        ("2026-03-04T10:00:00", "offset"),
        ("2026-03-04T15:07:00Z", "not one of the times offered"),
        ("0001-01-01T00:00:00+01:00", "offset"),
        ("2026-03-04T15:00:00Z\n", "offset"),
        ("2026-02-30T15:00:00Z", "offset"),
    ],
    ids=["too-soon", "naive", "off-grid", "overflow", "newline", "no-such-day"],
)
async def test_a_start_that_is_not_offered_is_a_422_on_start(
    http: Http, bookable: Bookable, start: str, message: str
) -> None:
    response = await http.post(BOOKINGS, json=booking_body(bookable, start=start))

    details = await problem(response, 422, "validation-failed")
    assert [e["field"] for e in details["errors"]] == ["start"]
    assert message in details["errors"][0]["message"]


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "malformed-json"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "malformed-json"),
        (b'{"a": NaN}', {"Content-Type": "application/json"}, 400, "malformed-json"),
        (b"\xff\xfe{}", {"Content-Type": "application/json"}, 400, "malformed-json"),
        (b"[" * 60000, {"Content-Type": "application/json"}, 400, "malformed-json"),
        (b"name=Robin", {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
        (b"{}", {"Content-Type": "text/plain"}, 415, None),
        (b"{" + b" " * 70000 + b"}", {"Content-Type": "application/json"}, 413, None),
    ],
    ids=["syntax", "array", "nan", "not-utf8", "deep", "form", "text", "too-large"],
)
async def test_a_malformed_request_is_a_4xx_problem(
    http: Http,
    bookable: Bookable,
    data: bytes,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = await http.post(BOOKINGS, data=data, headers=headers)

    codes = {413: "payload-too-large", 415: "unsupported-media-type"}
    await problem(response, status, code or codes[status])


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (10**40, "session_type"),
        (-1, "session_type"),
        ("1", "session_type"),
        (None, "name"),
        ({"$gt": ""}, "email"),
    ],
)
async def test_values_of_the_wrong_type_or_range_are_a_422(
    http: Http, bookable: Bookable, value: object, field: str
) -> None:
    response = await http.post(BOOKINGS, json=booking_body(bookable, **{field: value}))

    details = await problem(response, 422, "validation-failed")
    assert [e["field"] for e in details["errors"]] == [field]


async def test_unknown_therapists_paths_and_methods_are_problems_not_pages(
    http: Http, bookable: Bookable
) -> None:
    await problem(
        await http.get("/api/v1/therapists/nobody/session-types"), 404, "therapist-not-found"
    )
    await problem(
        await http.post("/api/v1/therapists/nobody/bookings", json=booking_body(bookable)),
        404,
        "therapist-not-found",
    )
    await problem(await http.get("/api/v1/no/such/thing"), 404, "not-found")
    await problem(await http.get("/api/v2/therapists"), 404, "not-found")
    response = await http.delete(BOOKINGS)
    await problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({}, ["session_type"]),
        ({"session_type": "one"}, ["session_type"]),
        ({"session_type": "99999999999"}, ["session_type"]),
        ({"session_type": "1", "from": "2026-13-01"}, ["from"]),
        ({"session_type": "1", "from": "2026-W10-1"}, ["from"]),
        ({"session_type": "1\n"}, ["session_type"]),
        ({"session_type": "1", "from": "٢٠٢٦-03-04"}, ["from"]),
        ({"session_type": "1", "from": "2026-03-10", "to": "2026-03-01"}, ["to"]),
        ({"session_type": "1", "from": "2026-03-01", "to": "2026-06-01"}, ["to"]),
        ({"session_type": "1", "from": "9999-12-31"}, ["from"]),
        ({"session_type": "999"}, ["session_type"]),
    ],
    ids=[
        "missing",
        "word",
        "huge",
        "month-13",
        "week-date",
        "newline",
        "arabic-digits",
        "reversed",
        "long",
        "far",
        "unknown",
    ],
)
async def test_bad_slot_queries_are_a_422_naming_the_parameter(
    http: Http, bookable: Bookable, query: dict[str, str], fields: list[str]
) -> None:
    response = await http.get("/api/v1/therapists/sam-rivera/slots", params=query)

    details = await problem(response, 422, "validation-failed")
    assert [e["field"] for e in details["errors"]] == fields


async def test_an_unexpected_failure_is_a_500_problem_that_tells_nothing(http: Http) -> None:
    response = await http.get("/api/v1/explode")

    body = await problem(response, 500, "internal-error")
    assert "hunter2" not in json.dumps(body)


async def test_the_openapi_document_is_served_as_json(http: Http) -> None:
    response = await http.get("/api/v1/openapi.json")

    assert response.status == 200
    assert (await response.json())["openapi"] == "3.1.0"


@pytest.mark.parametrize(
    "slug", ["%00", "sam%00rivera", "%F0%9F%98%80", "%ED%A0%80", "%FF", "sam-rivera%0A"]
)
async def test_odd_bytes_in_a_slug_are_a_404_problem_not_a_database_error(
    http: Http, bookable: Bookable, slug: str
) -> None:
    response = await http.get(f"/api/v1/therapists/{slug}/session-types")

    await problem(response, 404, "therapist-not-found")
