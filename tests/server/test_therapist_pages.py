"""The therapist's pages: the week, clients and their records, availability and settings."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.i18n import DEFAULT_LOCALE, Catalogs
from server.models import (
    Appointment,
    AuditEvent,
    Client,
    DateOverride,
    OutboxMessage,
    SessionType,
    Therapist,
    WeeklyHours,
)
from server.worksheets import BUILTIN_TEMPLATES
from tests.conftest import AiohttpClient, FakeClock, csrf_from, make_settings, sign_in
from tests.server.test_booking_pages import locale_words, without_times
from tests.server.test_i18n import extracted_messages, pseudo, untranslated, write_catalog
from tests.support.arrange import make_client, make_therapist

HttpClient = TestClient[Any, Any]
Sessions = async_sessionmaker[AsyncSession]
OTHER_EMAIL = "jo.other@example.com"
OTHER_PASSWORD = "another long password"


def shown(text: str) -> str:
    """Page text with entities decoded and narrow no-break spaces made plain."""
    return html.unescape(text).replace("\u202f", " ").replace("\xa0", " ")


async def signed_in(client: HttpClient) -> str:
    """Sign the default therapist in; returns the session's CSRF token."""
    assert (await sign_in(client)).status == 303
    return csrf_from(await (await client.get("/dashboard")).text())


async def page(client: HttpClient, path: str, status: int = 200) -> str:
    response = await client.get(path)
    assert response.status == status, (path, response.status)
    return shown(await response.text())


async def count(db: Sessions, table: type[Any], *where: Any) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def appointments_of(db: Sessions, client_id: int) -> list[Appointment]:
    async with db() as session:
        rows = await session.scalars(
            select(Appointment)
            .where(Appointment.client_id == client_id)
            .order_by(Appointment.starts_at)
        )
        return list(rows)


async def first_type_id(db: Sessions, therapist_id: int, name: str = "Individual session") -> int:
    async with db() as session:
        type_id = await session.scalar(
            select(SessionType.id).where(
                SessionType.therapist_id == therapist_id, SessionType.name == name
            )
        )
    assert type_id is not None
    return type_id


async def book_series(
    client: HttpClient,
    csrf: str,
    client_id: int,
    type_id: int,
    *,
    date: str,
    time: str = "10:00",
    weeks: str = "3",
    repeat: str = "weekly",
) -> Any:
    return await client.post(
        f"/clients/{client_id}/appointments",
        data={
            "csrf_token": csrf,
            "repeat": repeat,
            "session_type": str(type_id),
            "date": date,
            "time": time,
            "weeks": weeks,
        },
        allow_redirects=False,
    )


# --- navigation and access ----------------------------------------------------------------


async def test_every_page_has_the_main_navigation_with_the_current_one_marked(
    client: HttpClient, therapist: Therapist
) -> None:
    await signed_in(client)
    for path, current in [
        ("/dashboard", "Today"),
        ("/week", "Week"),
        ("/clients", "Clients"),
        ("/availability", "Availability"),
        ("/settings", "Settings"),
    ]:
        text = await page(client, path)
        nav = text[text.index('<nav class="main-nav"') : text.index("</nav>")]
        assert 'aria-label="Main"' in nav
        assert re.search(rf'aria-current="page">{current}</a>', nav), path
        assert nav.count('aria-current="page"') == 1, path


@pytest.mark.parametrize("path", ["/week", "/clients", "/clients/1", "/availability", "/settings"])
async def test_the_pages_need_a_signed_in_therapist(
    client: HttpClient, therapist: Therapist, path: str
) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login")


async def test_another_therapists_client_is_not_found(
    client: HttpClient, therapist: Therapist, db: Sessions, clock: FakeClock
) -> None:
    # Therapist A's client with one appointment.
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    assert (
        await book_series(client, csrf, mine.id, type_id, date="2026-03-10", repeat="once")
    ).status == 303
    (appointment,) = await appointments_of(db, mine.id)

    # Therapist B signs in on the same browser.
    other = await make_therapist(db, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    await client.post("/logout", data={"csrf_token": csrf})
    assert (await sign_in(client, OTHER_EMAIL, OTHER_PASSWORD)).status == 303
    csrf_b = csrf_from(await (await client.get("/dashboard")).text())
    base = f"/clients/{mine.id}/appointments/{appointment.id}"

    assert (await client.get(f"/clients/{mine.id}")).status == 404
    for action in ("move", "cancel", "cancel-series", "resend"):
        response = await client.post(
            f"{base}/{action}", data={"csrf_token": csrf_b, "date": "2026-03-11", "time": "10:00"}
        )
        assert response.status == 404, action
    other_type = await first_type_id(db, other.id)
    response = await book_series(client, csrf_b, mine.id, other_type, date="2026-03-12")
    assert response.status == 404
    assert (await appointments_of(db, mine.id))[0].starts_at == appointment.starts_at
    assert await count(db, Appointment) == 1
    assert "Alex Morgan" not in await page(client, "/clients")


async def test_state_changing_forms_refuse_a_missing_or_wrong_csrf_token(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-10", repeat="once")
    (appointment,) = await appointments_of(db, mine.id)

    posts = [
        ("/clients", {"name": "Someone", "email": "someone@example.com"}),
        (f"/clients/{mine.id}/appointments/{appointment.id}/cancel", {}),
        (f"/clients/{mine.id}/appointments/{appointment.id}/resend", {}),
        ("/availability/hours", {"start-0": "09:00", "end-0": "12:00"}),
        ("/settings", {"slug": "sam", "cutoff": "24"}),
        (f"/settings/types/{type_id}/deactivate", {}),
    ]
    for path, data in posts:
        assert (await client.post(path, data=data)).status == 403, path
        assert (await client.post(path, data={**data, "csrf_token": "wrong"})).status == 403
    assert await count(db, Client) == 1
    assert (await appointments_of(db, mine.id))[0].status == "scheduled"
    assert await count(db, OutboxMessage, OutboxMessage.kind == "invite_resent") == 0
    assert await count(db, WeeklyHours) == 0


# --- the week ------------------------------------------------------------------------------


async def test_the_week_shows_a_series_at_the_same_local_time_across_the_november_change(
    client: HttpClient, therapist: Therapist, db: Sessions, clock: FakeClock
) -> None:
    clock.now = dt.datetime(2026, 10, 20, 12, tzinfo=dt.UTC)
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id, name="Robin Quill")
    type_id = await first_type_id(db, therapist.id)

    # Mondays at 10:00 New York from 26 October; the clocks go back on 1 November.
    response = await book_series(client, csrf, mine.id, type_id, date="2026-10-26", weeks="3")
    assert response.status == 303, await response.text()

    starts = [a.starts_at for a in await appointments_of(db, mine.id)]
    assert starts == [
        dt.datetime(2026, 10, 26, 14, tzinfo=dt.UTC),  # EDT, UTC-4
        dt.datetime(2026, 11, 2, 15, tzinfo=dt.UTC),  # EST, UTC-5
        dt.datetime(2026, 11, 9, 15, tzinfo=dt.UTC),
    ]
    for week in ("2026-10-28", "2026-11-02"):  # any day picks its Monday-start week
        text = await page(client, f"/week?start={week}")
        monday = text[
            text.index('<li class="week-day') : text.index("</li>", text.index("week-appointment"))
        ]
        assert "Monday" in monday
        assert "10:00 AM–10:50 AM" in monday, week
        assert "Robin Quill" in monday and "Individual session" in monday
        assert "Weekly series" in monday and "Scheduled" in monday
    week_one = await page(client, "/week?start=2026-10-26")
    assert 'href="/week?start=2026-10-19"' in week_one
    assert 'href="/week?start=2026-11-02"' in week_one
    assert "Times in America/New_York" in week_one


async def test_the_week_lists_days_monday_first_and_marks_today(
    client: HttpClient, therapist: Therapist
) -> None:
    await signed_in(client)
    text = await page(client, "/week")  # the clock's Monday 2 March 2026, 04:00 in New York
    days = re.findall(r'<time datetime="(\d{4}-\d\d-\d\d)">', text)
    assert days == [f"2026-03-0{d}" for d in range(2, 9)]
    assert 'class="week-day today"' in text
    assert text.count("No appointments") == 7
    assert (await client.get("/week?start=nonsense", allow_redirects=False)).status == 303


@pytest.mark.parametrize("start", ["9999-12-31", "0001-01-01", "1999-12-31", "2200-01-01"])
async def test_a_week_far_outside_any_calendar_is_refused_not_a_server_error(
    client: HttpClient, therapist: Therapist, start: str
) -> None:
    await signed_in(client)

    response = await client.get(f"/week?start={start}", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/week"


# --- clients -----------------------------------------------------------------------------


async def test_adding_a_client_and_refusing_bad_or_duplicate_details(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)

    added = await client.post(
        "/clients",
        data={"csrf_token": csrf, "name": "Robin Quill", "email": "Robin@Example.net", "phone": ""},
        allow_redirects=False,
    )
    assert added.status == 303
    assert re.fullmatch(r"/clients/\d+\?done=client-added", added.headers["Location"])
    record = await page(client, added.headers["Location"])
    assert "Robin Quill" in record and "robin@example.net" in record
    assert "The client is added." in record

    bad = await client.post(
        "/clients", data={"csrf_token": csrf, "name": "", "email": "nope", "phone": "abc"}
    )
    assert bad.status == 422
    text = shown(await bad.text())
    assert 'id="client-name-error"' in text and 'id="client-email-error"' in text
    assert 'id="client-phone-error"' in text and 'value="nope"' in text

    again = await client.post(
        "/clients", data={"csrf_token": csrf, "name": "Robin Q.", "email": "robin@example.net"}
    )
    assert again.status == 422
    assert "you already have a client with this address" in shown(await again.text())
    assert await count(db, Client) == 1
    listing = await page(client, "/clients")
    assert "Robin Quill" in listing and "No upcoming appointment" in listing


async def test_resending_an_invite_queues_one_outbox_message(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-10", repeat="once")
    (appointment,) = await appointments_of(db, mine.id)

    response = await client.post(
        f"/clients/{mine.id}/appointments/{appointment.id}/resend",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/clients/{mine.id}?done=resent"
    assert await count(db, OutboxMessage, OutboxMessage.kind == "invite_resent") == 1
    assert "The invitation is queued" in await page(client, response.headers["Location"])


async def test_moving_one_occurrence_leaves_the_rest_of_the_series(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-10", weeks="3")
    first, second, third = await appointments_of(db, mine.id)

    record = await page(client, f"/clients/{mine.id}")
    assert record.count("Weekly series") >= 3
    assert record.count("Cancel the rest of the series") == 3
    response = await client.post(
        f"/clients/{mine.id}/appointments/{second.id}/move",
        data={"csrf_token": csrf, "date": "2026-03-18", "time": "14:30"},
        allow_redirects=False,
    )

    assert response.status == 303
    after = {a.id: a for a in await appointments_of(db, mine.id)}
    assert after[first.id].starts_at == first.starts_at
    assert after[third.id].starts_at == third.starts_at
    assert after[second.id].starts_at == dt.datetime(2026, 3, 18, 18, 30, tzinfo=dt.UTC)
    assert after[second.id].series_id == first.series_id


async def test_moving_into_the_past_or_onto_another_appointment_changes_nothing(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-10", weeks="2")
    first, _second = await appointments_of(db, mine.id)
    move = f"/clients/{mine.id}/appointments/{first.id}/move"

    past = await client.post(move, data={"csrf_token": csrf, "date": "2026-03-01", "time": "10:00"})
    clash = await client.post(
        move, data={"csrf_token": csrf, "date": "2026-03-17", "time": "10:30"}
    )

    assert past.status == 422
    assert "Choose a time in the future." in shown(await past.text())
    assert clash.status == 409
    clash_text = shown(await clash.text())
    assert "collides with another appointment" in clash_text
    assert 'value="10:30"' in clash_text  # what was typed is kept
    assert (await appointments_of(db, mine.id))[0].starts_at == first.starts_at


async def test_cancelling_one_occurrence_or_the_rest_of_the_series(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-10", weeks="4")
    one, _two, three, _four = await appointments_of(db, mine.id)

    cancel_one = await client.post(
        f"/clients/{mine.id}/appointments/{one.id}/cancel",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert cancel_one.status == 303
    assert [a.status for a in await appointments_of(db, mine.id)] == [
        "cancelled",
        "scheduled",
        "scheduled",
        "scheduled",
    ]

    rest = await client.post(
        f"/clients/{mine.id}/appointments/{three.id}/cancel-series",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert rest.status == 303
    assert rest.headers["Location"] == f"/clients/{mine.id}?done=series-cancelled"
    assert [a.status for a in await appointments_of(db, mine.id)] == [
        "cancelled",
        "scheduled",
        "cancelled",
        "cancelled",
    ]
    again = await client.post(
        f"/clients/{mine.id}/appointments/{one.id}/cancel", data={"csrf_token": csrf}
    )
    assert again.status == 409
    assert "no longer scheduled" in shown(await again.text())


async def test_a_new_appointment_form_names_its_problems(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id)
    type_id = await first_type_id(db, therapist.id)

    empty = await book_series(client, csrf, mine.id, type_id, date="", time="", weeks="99")
    assert empty.status == 422
    text = shown(await empty.text())
    for field in ("new-date", "new-time", "new-weeks"):
        assert f'id="{field}-error"' in text, field
    assert 'value="99"' in text

    gap = await book_series(client, csrf, mine.id, type_id, date="2026-03-08", time="02:30")
    assert gap.status == 422
    assert "this time does not exist on that date" in shown(await gap.text())
    assert await count(db, Appointment) == 0

    await book_series(client, csrf, mine.id, type_id, date="2026-03-24", repeat="once")
    clash = await book_series(client, csrf, mine.id, type_id, date="2026-03-10", weeks="3")
    assert clash.status == 409
    assert "Week 3" in shown(await clash.text())
    assert await count(db, Appointment) == 1  # the series was not half-booked


# --- availability --------------------------------------------------------------------------


async def hours_of(db: Sessions, therapist_id: int) -> list[tuple[int, str, str]]:
    async with db() as session:
        rows = await session.scalars(
            select(WeeklyHours)
            .where(WeeklyHours.therapist_id == therapist_id)
            .order_by(WeeklyHours.weekday, WeeklyHours.start_time)
        )
        return [(r.weekday, f"{r.start_time:%H:%M}", f"{r.end_time:%H:%M}") for r in rows]


async def test_weekly_hours_are_saved_whole_or_not_at_all(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    good = await client.post(
        "/availability/hours",
        data=[
            ("csrf_token", csrf),
            ("start-0", "09:00"),
            ("end-0", "12:00"),
            ("start-0", "13:00"),
            ("end-0", "17:00"),
            ("start-0", ""),
            ("end-0", ""),
            ("start-2", "10:00"),
            ("end-2", "16:00"),
        ],
        allow_redirects=False,
    )
    assert good.status == 303
    saved = [(0, "09:00", "12:00"), (0, "13:00", "17:00"), (2, "10:00", "16:00")]
    assert await hours_of(db, therapist.id) == saved
    text = await page(client, "/availability")
    assert 'value="13:00"' in text and "Your weekly hours are saved." not in text

    bad = await client.post(
        "/availability/hours",
        data=[
            ("csrf_token", csrf),
            ("start-0", "09:00"),
            ("end-0", "12:00"),
            ("start-0", "11:00"),
            ("end-0", "14:00"),
            ("start-1", "17:00"),
            ("end-1", "09:00"),
            ("start-3", "10:00"),
            ("end-3", ""),
        ],
    )
    assert bad.status == 422
    text = shown(await bad.text())
    assert "Nothing was saved" in text
    assert "overlaps another one" in text
    assert "must end after it starts" in text
    assert "Enter both a start and an end time" in text
    assert 'value="11:00"' in text  # typed rows are shown again
    assert await hours_of(db, therapist.id) == saved


async def test_date_overrides_are_added_checked_and_removed(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    off = await client.post(
        "/availability/overrides",
        data={"csrf_token": csrf, "date": "2026-03-12", "mode": "off"},
        allow_redirects=False,
    )
    assert off.status == 303
    text = await page(client, "/availability")
    assert "Thursday, March 12, 2026" in text and "Time off all day" in text

    clash = await client.post(
        "/availability/overrides",
        data={
            "csrf_token": csrf,
            "date": "2026-03-12",
            "mode": "add",
            "start": "18:00",
            "end": "20:00",
        },
    )
    assert clash.status == 422
    assert "already has a change of another kind" in shown(await clash.text())
    missing = await client.post(
        "/availability/overrides",
        data={"csrf_token": csrf, "date": "2026-03-13", "mode": "replace", "start": "10:00"},
    )
    assert missing.status == 422
    assert 'id="override-end-error"' in await missing.text()
    past = await client.post(
        "/availability/overrides", data={"csrf_token": csrf, "date": "2026-02-27", "mode": "off"}
    )
    assert past.status == 422
    assert await count(db, DateOverride) == 1

    async with db() as session:
        override_id = await session.scalar(select(DateOverride.id))
    removed = await client.post(
        f"/availability/overrides/{override_id}/delete",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert removed.status == 303
    assert await count(db, DateOverride) == 0


async def test_another_therapists_override_cannot_be_removed(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    other = await make_therapist(db, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    async with db() as session, session.begin():
        theirs = DateOverride(therapist_id=other.id, date=dt.date(2026, 3, 12), mode="off")
        session.add(theirs)
    csrf = await signed_in(client)
    response = await client.post(
        f"/availability/overrides/{theirs.id}/delete", data={"csrf_token": csrf}
    )
    assert response.status == 404
    assert await count(db, DateOverride) == 1


# --- settings --------------------------------------------------------------------------------


def settings_form(csrf: str, **overrides: str) -> dict[str, str]:
    values = {
        "csrf_token": csrf,
        "slug": "sam-rivera",
        "bio": "Individual and couples therapy.",
        "contact_text": "Call +1 555 0100.",
        "cutoff": "48",
        "keep_join_link": "yes",
    }
    values.update(overrides)
    return values


async def test_settings_are_saved_or_refused_naming_the_field(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    other = await make_therapist(db, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    async with db() as session, session.begin():
        row = await session.get(Therapist, other.id)
        assert row is not None
        row.slug = "taken-slug"

    for overrides, field, message in [
        ({"slug": "Bad Slug!"}, "slug", "Booking address: use 3 to 64"),
        ({"slug": "-edge-"}, "slug", "Booking address"),
        ({"slug": "taken-slug"}, "slug", "this address is taken"),
        ({"cutoff": "soon"}, "cutoff", "Cutoff: enter a whole number of hours"),
        ({"bio": "x" * 2001}, "bio", "About you: use at most 2000 characters."),
    ]:
        response = await client.post("/settings", data=settings_form(csrf, **overrides))
        assert response.status == 422, overrides
        text = shown(await response.text())
        assert f'id="{field}-error"' in text and message in text, overrides
        assert "Individual and couples therapy." in text or field == "bio"
    async with db() as session:
        unchanged = await session.get(Therapist, therapist.id)
    assert unchanged is not None and unchanged.slug is None and unchanged.bio == ""

    saved = await client.post("/settings", data=settings_form(csrf), allow_redirects=False)
    assert saved.status == 303
    async with db() as session:
        row = await session.get(Therapist, therapist.id)
    assert row is not None
    assert (row.slug, row.bio, row.contact_text) == (
        "sam-rivera",
        "Individual and couples therapy.",
        "Call +1 555 0100.",
    )
    assert row.reschedule_cutoff_hours == 48 and row.keep_join_link_on_reschedule
    assert "Your settings are saved." in await page(client, "/settings?done=profile")
    assert (await client.get("/book/sam-rivera")).status == 200


def type_form(csrf: str, **overrides: str) -> dict[str, str]:
    values = {
        "csrf_token": csrf,
        "name": "Couples session",
        "duration": "80",
        "price": "€140",
        "buffer": "10",
        "notice": "1440",
        "horizon": "30",
        "public": "yes",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if key != "public" or value}


async def test_session_types_are_edited_added_and_deactivated(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    type_id = await first_type_id(db, therapist.id)

    bad = await client.post(
        f"/settings/types/{type_id}", data=type_form(csrf, duration="3", horizon="")
    )
    assert bad.status == 422
    text = shown(await bad.text())
    prefix = f"type-{type_id}-"
    assert f'id="{prefix}duration-error"' in text and "Duration: enter whole minutes" in text
    assert f'id="{prefix}horizon-error"' in text and 'value="Couples session"' in text
    async with db() as session:
        kind = await session.get(SessionType, type_id)
    assert kind is not None and kind.name == "Individual session"

    good = await client.post(
        f"/settings/types/{type_id}", data=type_form(csrf, notice="0"), allow_redirects=False
    )
    assert good.status == 303
    async with db() as session:
        kind = await session.get(SessionType, type_id)
    assert kind is not None
    assert (kind.name, kind.duration_minutes, kind.price_text, kind.min_notice_minutes) == (
        "Couples session",
        80,
        "€140",
        0,
    )

    added = await client.post(
        "/settings/types",
        data=type_form(csrf, name="Walk and talk", public=""),
        allow_redirects=False,
    )
    assert added.status == 303
    async with db() as session:
        walk = await session.scalar(select(SessionType).where(SessionType.name == "Walk and talk"))
    assert walk is not None and not walk.is_public
    missing_name = await client.post("/settings/types", data=type_form(csrf, name=""))
    assert missing_name.status == 422
    assert 'id="new-name-error"' in await missing_name.text()

    off = await client.post(
        f"/settings/types/{type_id}/deactivate", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert off.status == 303
    async with db() as session:
        kind = await session.get(SessionType, type_id)
    assert kind is not None and not kind.is_active
    text = await page(client, "/settings")
    assert "No longer offered" in text and "Offer “Couples session” again" in text


async def test_another_therapists_session_type_is_not_found(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    other = await make_therapist(db, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    theirs = await first_type_id(db, other.id)
    csrf = await signed_in(client)
    assert (await client.post(f"/settings/types/{theirs}", data=type_form(csrf))).status == 404
    deactivate = await client.post(
        f"/settings/types/{theirs}/deactivate", data={"csrf_token": csrf}
    )
    assert deactivate.status == 404


# --- translations ----------------------------------------------------------------------------


async def test_every_visible_text_on_the_therapist_pages_comes_from_the_catalog(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    therapist: Therapist,
    db: Sessions,
) -> None:
    pseudo_dir = tmp_path / "pseudo"
    write_catalog(pseudo_dir, DEFAULT_LOCALE, {m: pseudo(m) for m in extracted_messages()})
    settings = make_settings(migrated_url, tmp_path / "var")
    client = await aiohttp_client(create_app(settings, clock=clock, catalogs=Catalogs(pseudo_dir)))
    csrf = await signed_in(client)
    mine = await make_client(db, therapist.id, name="Robin Quill", email="robin@example.net")
    type_id = await first_type_id(db, therapist.id)
    await book_series(client, csrf, mine.id, type_id, date="2026-03-03", weeks="3")
    await client.post(
        "/availability/overrides", data={"csrf_token": csrf, "date": "2026-03-12", "mode": "off"}
    )

    pages = {
        "week": await client.get("/week?start=2026-03-02"),
        "clients": await client.get("/clients"),
        "client": await client.get(f"/clients/{mine.id}?done=moved"),
        "availability": await client.get("/availability?done=hours"),
        "settings": await client.get("/settings?done=profile"),
        "client, errors": await book_series(client, csrf, mine.id, type_id, date="", time=""),
        "clients, errors": await client.post("/clients", data={"csrf_token": csrf}),
        "hours, errors": await client.post(
            "/availability/hours", data={"csrf_token": csrf, "start-0": "12:00", "end-0": "09:00"}
        ),
        "settings, errors": await client.post(
            "/settings", data=settings_form(csrf, slug="No!", cutoff="x")
        ),
        "types, errors": await client.post("/settings/types", data=type_form(csrf, duration="x")),
    }

    assert [r.status for r in pages.values()] == [200] * 5 + [422] * 5
    user_data = [
        therapist.display_name,
        therapist.timezone,
        "Robin Quill",
        "robin@example.net",
        "Individual session",
        "Free consultation",
        "Couples session",
        "Free",
        "€140",
        f"{settings.public_url}/book/",
        "Individual and couples therapy.",
        "Call +1 555 0100.",
        *(template.title for template in BUILTIN_TEMPLATES),  # content, offered as homework
        *locale_words(),
    ]
    user_data.sort(key=len, reverse=True)
    for name, response in pages.items():
        assert untranslated(without_times(await response.text()), user_data) == [], name


# --- the audit trail -------------------------------------------------------------------------


async def test_each_change_on_the_therapists_pages_is_audited_with_who_what_and_where(
    client: HttpClient, therapist: Therapist, db: Sessions
) -> None:
    csrf = await signed_in(client)
    hours = {"csrf_token": csrf, "start-0": "09:00", "end-0": "12:00"}
    assert (await client.post("/availability/hours", data=hours)).status == 200
    off = {"csrf_token": csrf, "date": "2026-03-12", "mode": "off"}
    assert (await client.post("/availability/overrides", data=off)).status == 200
    async with db() as session:
        override_id = await session.scalar(select(DateOverride.id))
    remove = f"/availability/overrides/{override_id}/delete"
    assert (await client.post(remove, data={"csrf_token": csrf})).status == 200
    added = {"csrf_token": csrf, "name": "Jordan Lee", "email": "jordan.lee@example.com"}
    assert (await client.post("/clients", data=added)).status == 200
    # Refused changes change nothing, and are not audited as changes.
    past = {"csrf_token": csrf, "date": "2026-02-27", "mode": "off"}
    assert (await client.post("/availability/overrides", data=past)).status == 422

    async with db() as session:
        client_id = await session.scalar(select(Client.id))
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.actor_type == "therapist", AuditEvent.action != "login")
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [(e.action, e.record_type, e.record_id) for e in events] == [
        ("weekly_hours_updated", "therapist", str(therapist.id)),
        ("date_override_added", "date_override", str(override_id)),
        ("date_override_removed", "date_override", str(override_id)),
        ("client_added", "client", str(client_id)),
    ]
    assert {(e.actor_id, e.source_ip) for e in events} == {(str(therapist.id), "127.0.0.1")}
