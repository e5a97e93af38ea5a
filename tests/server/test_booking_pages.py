"""The client's public pages: booking at /book/<slug>, its confirmation, and the manage link."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from babel.dates import get_day_names, get_month_names, get_period_names
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import booking
from server.app import create_app
from server.booking_pages import BOOKED_COOKIE
from server.booking_picker import zone_options
from server.i18n import DEFAULT_LOCALE, Catalogs
from server.keys import SETTINGS
from server.manage_pages import MANAGE_COOKIE, manage_csrf
from server.models import Appointment, AuditEvent, Client, OutboxMessage, SessionType, Therapist
from tests.conftest import AiohttpClient, FakeClock, csrf_from, make_settings
from tests.server.test_i18n import extracted_messages, pseudo, untranslated, write_catalog
from tests.support.arrange import Bookable, local, make_bookable_therapist

HttpClient = TestClient[Any, Any]
Sessions = async_sessionmaker[AsyncSession]
ZONE = "America/New_York"
GRACE = dt.timedelta(minutes=30)
#: Wednesday 10:00 in New York; the clock stands at Monday 2 March 2026, 09:00 UTC.
WEDNESDAY_10 = local(ZONE, 2026, 3, 4, 10)
START_RADIO = re.compile(r'name="start" id="(start|nearest)-\d+" value="([^"]+)"')


@pytest.fixture
async def bookable(db: Sessions) -> Bookable:
    return await make_bookable_therapist(db)


def starts_in(page: str, kind: str = "start") -> list[str]:
    return [value for found, value in START_RADIO.findall(page) if found == kind]


def form_for(page: str, start: str, **overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "csrf_token": csrf_from(page),
        "session_type_id": re.search(r'name="session_type_id" value="(\d+)"', page).group(1),  # type: ignore[union-attr]
        "timezone": "Europe/Berlin",
        "start": start,
        "name": "Robin Quill",
        "email": "robin.quill@example.net",
        "phone": "+1 555 010 2030",
        "note": "Trouble sleeping since the move.",
        "consent_telehealth": "yes",
        "consent_privacy": "yes",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


async def count(db: Sessions, table: type[Any]) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def open_page(client: HttpClient, path: str = "/book/sam-rivera") -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.text()


# --- the booking page ----------------------------------------------------------------------


async def test_the_page_shows_the_therapist_the_public_types_and_free_times(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    async with db() as session, session.begin():
        therapist = await session.get(Therapist, bookable.id)
        assert therapist is not None
        therapist.bio = "Couples and individuals; evenings available."
        session.add(
            SessionType(
                therapist_id=bookable.id,
                name="Private intake",
                duration_minutes=30,
                is_public=False,
            )
        )

    page = await open_page(client)

    assert "Sam Rivera" in page
    assert "Couples and individuals; evenings available." in page
    assert "Free consultation" in page and "Individual session" in page
    assert "Private intake" not in page
    assert "15 minutes" in page and "Free" in page
    # The first public type is chosen; without JavaScript its times are in the therapist's zone.
    starts = starts_in(page)
    assert starts, "no free times rendered"
    # The first free day is Tuesday 3 March (24 hours' notice), from 09:00 in New York.
    assert starts[0] == "2026-03-03T14:00:00Z"
    assert "Times are shown in America/New York." in page
    assert 'id="zone"' in page and '<label for="zone">' in page
    assert "/api/v1/therapists/sam-rivera/slots?session_type=" in page
    assert "If you are in crisis, call your local emergency number." in page
    assert "Only your therapist sees this." in page


async def test_an_unknown_slug_is_not_found(client: HttpClient, bookable: Bookable) -> None:
    response = await client.get("/book/nobody-here")
    assert response.status == 404


async def test_a_chosen_zone_and_day_are_rendered_without_javascript(
    client: HttpClient, bookable: Bookable
) -> None:
    page = await open_page(client, "/book/sam-rivera?zone=Europe/Berlin&day=2026-03-04")

    assert "Times are shown in Europe/Berlin." in page
    # Wednesday 4 March from 09:00 New York = 15:00 Berlin.
    assert starts_in(page)[0] == "2026-03-04T14:00:00Z"
    assert ">3:00\u202fPM<" in page or ">3:00 PM<" in page
    assert 'href="/book/sam-rivera?type=' in page  # days are links


async def test_booking_happy_path_redirects_to_a_confirmation_without_personal_data(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    page = await open_page(client)
    start = starts_in(page)[0]

    response = await client.post(
        "/book/sam-rivera", data=form_for(page, start), allow_redirects=False
    )

    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location == "/book/sam-rivera/confirmed"
    assert await count(db, Appointment) == 1
    async with db() as session:
        appointment = await session.scalar(select(Appointment))
        person = await session.scalar(select(Client))
    assert appointment is not None and person is not None
    assert appointment.starts_at == dt.datetime(2026, 3, 3, 14, tzinfo=dt.UTC)
    assert appointment.intake_note == "Trouble sleeping since the move."
    assert person.timezone == "Europe/Berlin"
    cookie = response.cookies[BOOKED_COOKIE]
    assert cookie["httponly"] and cookie["path"] == "/book/sam-rivera/confirmed"
    for secret in ("robin", "Robin", "example.net", "Quill"):
        assert secret not in location and secret not in cookie.value

    confirmed = await client.get(location)
    text = html.unescape(await confirmed.text())
    assert confirmed.status == 200
    assert "We've e-mailed you the details and a link to join." in text
    # In the client's zone: 09:00 New York is 15:00 in Berlin.
    assert "Tuesday, March 3, 2026, 3:00" in text
    assert "Europe/Berlin" in text
    assert "Free consultation" in text


async def test_the_confirmation_without_its_cookie_shows_nothing_of_a_booking(
    client: HttpClient, bookable: Bookable
) -> None:
    response = await client.get("/book/sam-rivera/confirmed")
    text = html.unescape(await response.text())
    assert response.status == 200
    assert "We've e-mailed you" not in text
    assert "the confirmation e-mail has everything you need" in text


async def test_a_forged_confirmation_cookie_is_ignored(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=bookable.individual.id,
        start=WEDNESDAY_10,
        client=booking.ClientDetails("Robin Quill", "r@example.net", None, None, ZONE),
        now=clock.now,
        join_grace=GRACE,
    )
    client.session.cookie_jar.update_cookies({BOOKED_COOKIE: f"e30.{'0' * 64}"})
    text = await (await client.get("/book/sam-rivera/confirmed")).text()
    assert "Robin" not in text
    assert "e-mailed you the details" not in text


async def test_validation_errors_keep_the_input_and_write_nothing(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    page = await open_page(client)
    start = starts_in(page)[0]

    response = await client.post(
        "/book/sam-rivera",
        data=form_for(page, start, email="not an address", phone="call me maybe"),
    )

    assert response.status == 422
    text = await response.text()
    assert 'id="email-error"' in text and "like name@example.com" in text
    assert 'id="phone-error"' in text
    assert 'aria-invalid="true"' in text
    assert 'value="Robin Quill"' in text
    assert 'value="not an address"' in text
    assert "Trouble sleeping since the move." in text
    assert re.search(rf'value="{start}"\s+required checked', text)  # still chosen
    assert await count(db, Appointment) == 0
    assert await count(db, Client) == 0
    assert await count(db, OutboxMessage) == 0


async def test_consent_is_required(client: HttpClient, bookable: Bookable, db: Sessions) -> None:
    page = await open_page(client)
    start = starts_in(page)[0]

    response = await client.post(
        "/book/sam-rivera",
        data=form_for(page, start, consent_telehealth=None, consent_privacy=None),
    )

    assert response.status == 422
    text = await response.text()
    assert 'id="consent_telehealth-error"' in text
    assert 'id="consent_privacy-error"' in text
    assert 'value="robin.quill@example.net"' in text
    assert await count(db, Appointment) == 0


async def test_no_time_chosen_is_an_error_next_to_the_times(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    page = await open_page(client)
    response = await client.post("/book/sam-rivera", data={**form_for(page, ""), "start": ""})
    assert response.status == 422
    text = await response.text()
    assert 'id="start-error"' in text and "Please choose a time." in text
    assert await count(db, Appointment) == 0


@pytest.mark.parametrize(
    "start", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-12:00", "2026-13-01T10:00:00Z"]
)
async def test_an_impossible_time_is_an_error_next_to_the_times_not_a_server_error(
    client: HttpClient, bookable: Bookable, db: Sessions, start: str
) -> None:
    page = await open_page(client)
    response = await client.post("/book/sam-rivera", data={**form_for(page, ""), "start": start})
    assert response.status == 422
    assert 'id="start-error"' in await response.text()
    assert await count(db, Appointment) == 0


async def test_a_time_just_taken_is_shown_again_with_the_nearest_free_times(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    page = await open_page(client)
    start = starts_in(page)[2]  # 09:30 New York
    # Someone else books it first.
    await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=bookable.consultation.id,
        start=dt.datetime.fromisoformat(start),
        client=booking.ClientDetails("Other Person", "other@example.net", None, None, ZONE),
        now=clock.now,
        join_grace=GRACE,
    )

    response = await client.post("/book/sam-rivera", data=form_for(page, start))

    assert response.status == 409
    text = html.unescape(await response.text())
    assert "That time was just taken — here are the nearest free times" in text
    # 09:15 and 09:45 are a quarter of an hour away; 09:00 wins the tie with 10:00.
    assert starts_in(text, "nearest") == [
        "2026-03-03T14:00:00Z",
        "2026-03-03T14:15:00Z",
        "2026-03-03T14:45:00Z",
    ]
    assert 'value="Robin Quill"' in text
    assert await count(db, Appointment) == 1


async def test_booking_without_the_csrf_token_is_refused(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    page = await open_page(client)
    data = form_for(page, starts_in(page)[0])

    missing = await client.post("/book/sam-rivera", data={**data, "csrf_token": ""})
    wrong = await client.post("/book/sam-rivera", data={**data, "csrf_token": "x" * 64})

    assert missing.status == 403 and wrong.status == 403
    assert await count(db, Appointment) == 0


async def test_a_hidden_or_inactive_session_type_cannot_be_booked(
    client: HttpClient, bookable: Bookable, db: Sessions
) -> None:
    page = await open_page(client)
    start = starts_in(page)[0]
    async with db() as session, session.begin():
        kind = await session.get(SessionType, bookable.consultation.id)
        assert kind is not None
        kind.is_public = False

    response = await client.post("/book/sam-rivera", data=form_for(page, start))

    assert response.status == 422
    assert await count(db, Appointment) == 0


# --- the manage link ---------------------------------------------------------------------------


async def book_directly(
    db: Sessions, bookable: Bookable, clock: FakeClock, start: dt.datetime = WEDNESDAY_10
) -> booking.Booked:
    return await booking.book(
        db,
        therapist_id=bookable.id,
        session_type_id=bookable.individual.id,
        start=start,
        client=booking.ClientDetails(
            "Robin Quill", "robin@example.net", None, None, "Europe/Berlin"
        ),
        now=clock.now,
        join_grace=GRACE,
    )


async def open_manage(client: HttpClient, token: str) -> str:
    response = await client.get(f"/manage/{token}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/manage"
    cookie = response.cookies[MANAGE_COOKIE]
    assert cookie["httponly"] and cookie["path"] == "/manage"
    page = await client.get("/manage")
    return html.unescape(await page.text())


async def appointment(db: Sessions, appointment_id: int) -> Appointment:
    async with db() as session:
        row = await session.get(Appointment, appointment_id)
    assert row is not None
    return row


async def test_the_manage_link_shows_the_appointment_in_the_clients_zone(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)

    page = await open_manage(client, booked.manage_token)

    assert "Your appointment" in page
    assert "Sam Rivera" in page and "Individual session" in page
    # 10:00 New York on 4 March is 16:00 in Berlin, the client's zone.
    assert "Wednesday, March 4, 2026, 4:00" in page and "(Europe/Berlin)" in page
    assert 'data-local="datetime"' in page
    assert "Cancel this appointment" in page and "Choose another time" in page
    assert booked.manage_token not in page


async def test_the_client_cancels_before_the_cutoff(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    page = await open_manage(client, booked.manage_token)

    refused = await client.post("/manage/cancel", data={}, allow_redirects=False)
    assert refused.status == 403
    response = await client.post(
        "/manage/cancel", data={"csrf_token": csrf_from(page)}, allow_redirects=False
    )

    assert response.status == 303
    assert response.headers["Location"] == "/manage?done=cancelled"
    assert (await appointment(db, booked.appointment_id)).status == "cancelled"
    after = html.unescape(await (await client.get("/manage?done=cancelled")).text())
    assert "Your appointment is cancelled." in after
    assert "Cancel this appointment" not in after
    async with db() as session:
        kinds = list(await session.scalars(select(OutboxMessage.kind)))
    assert "cancellation" in kinds


async def test_after_the_cutoff_the_client_is_told_whom_to_contact(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    clock.now = WEDNESDAY_10.astimezone(dt.UTC) - dt.timedelta(hours=23)

    page = await open_manage(client, booked.manage_token)

    assert "It is less than 24 hours before your session" in page
    assert "Call the practice on +1 555 0100." in page
    assert 'action="/manage/cancel"' not in page
    # A cancel posted anyway (an old tab) changes nothing.
    token_page = await client.get("/manage")
    assert token_page.status == 200
    response = await client.post(
        "/manage/cancel",
        data={"csrf_token": _manage_csrf(client, booked.manage_token)},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/manage"
    assert (await appointment(db, booked.appointment_id)).status == "scheduled"


def _manage_csrf(client: HttpClient, token: str) -> str:
    return manage_csrf(client.app[SETTINGS].secret_key, token)


async def test_a_stale_link_only_says_what_happened(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    moved = await booking.reschedule_by_client(
        db,
        booked.manage_token,
        local(ZONE, 2026, 3, 5, 11),
        clock.now,
        join_grace=GRACE,
    )

    old = await open_manage(client, booked.manage_token)
    assert "This appointment was moved" in old
    assert "Cancel this appointment" not in old

    await booking.cancel_by_client(db, moved.manage_token, clock.now)
    cancelled = await open_manage(client, moved.manage_token)
    assert "This appointment is cancelled" in cancelled
    assert "Choose another time" not in cancelled


async def test_an_unknown_manage_link_is_not_found(client: HttpClient, bookable: Bookable) -> None:
    response = await client.get("/manage/not-a-real-token")
    assert response.status == 404
    assert "This link does not work" in await response.text()
    assert (await client.get("/manage")).status == 404


async def test_the_client_moves_the_appointment_to_another_free_time(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    page = await open_manage(client, booked.manage_token)
    starts = starts_in(page)
    assert starts, "no times to move to"
    assert 'id="slots-data"' in page
    new_start = "2026-03-05T15:00:00Z"  # Thursday 10:00 New York
    assert f'"{new_start}"' in page  # in the JSON the script reads

    response = await client.post(
        "/manage/reschedule",
        data={"csrf_token": csrf_from(page), "start": new_start, "timezone": "Europe/Berlin"},
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == "/manage?done=moved"
    moved = await appointment(db, booked.appointment_id)
    assert moved.starts_at == dt.datetime(2026, 3, 5, 15, tzinfo=dt.UTC)
    # The cookie now holds the new link: the page still works and shows the new time.
    after = html.unescape(await (await client.get("/manage?done=moved")).text())
    assert "Your appointment has a new time." in after
    assert "Thursday, March 5, 2026, 4:00" in after


async def test_moving_to_a_taken_time_offers_the_nearest_free_ones(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    page = await open_manage(client, booked.manage_token)
    taken = local(ZONE, 2026, 3, 5, 10)
    await book_directly(db, bookable, clock, start=taken)

    response = await client.post(
        "/manage/reschedule",
        data={"csrf_token": csrf_from(page), "start": "2026-03-05T15:00:00Z"},
    )

    assert response.status == 409
    text = html.unescape(await response.text())
    assert "That time was just taken" in text
    assert starts_in(text, "nearest")
    assert (await appointment(db, booked.appointment_id)).starts_at == WEDNESDAY_10


async def test_the_manage_token_is_never_logged_or_audited_in_clear(
    client: HttpClient, bookable: Bookable, db: Sessions, clock: FakeClock
) -> None:
    booked = await book_directly(db, bookable, clock)
    page = await open_manage(client, booked.manage_token)
    await client.post("/manage/cancel", data={"csrf_token": csrf_from(page)})
    async with db() as session:
        events = list(await session.scalars(select(AuditEvent)))
    assert [e.action for e in events][-1] == "appointment_cancelled"
    assert all(booked.manage_token not in str(vars(e)) for e in events)


# --- translations ----------------------------------------------------------------------------


def locale_words() -> list[str]:
    """Names of months, weekdays and day periods: CLDR data, not text of ours to translate."""
    words: list[str] = []
    for width in ("wide", "abbreviated"):
        words += [str(name) for name in get_month_names(width, locale="en").values()]
        words += [str(name) for name in get_day_names(width, locale="en").values()]
    words += [str(name) for name in get_period_names(locale="en").values()]
    return sorted(set(words), key=len, reverse=True)


async def test_every_visible_text_on_the_public_pages_comes_from_the_catalog(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    bookable: Bookable,
    db: Sessions,
) -> None:
    pseudo_dir = tmp_path / "pseudo"
    write_catalog(pseudo_dir, DEFAULT_LOCALE, {m: pseudo(m) for m in extracted_messages()})
    settings = make_settings(migrated_url, tmp_path / "var")
    app = create_app(settings, clock=clock, catalogs=Catalogs(pseudo_dir))
    client = await aiohttp_client(app)

    booking_page = await client.get("/book/sam-rivera")
    text = await booking_page.text()
    pages = {"booking": booking_page}
    pages["consent missing"] = await client.post(
        "/book/sam-rivera", data=form_for(text, starts_in(text)[0], consent_privacy=None)
    )
    taken = dt.datetime.fromisoformat(starts_in(text)[1])
    await book_directly(db, bookable, clock, start=taken)
    pages["taken"] = await client.post("/book/sam-rivera", data=form_for(text, starts_in(text)[1]))
    pages["booked"] = await client.post("/book/sam-rivera", data=form_for(text, starts_in(text)[0]))
    pages["not found"] = await client.get("/book/nobody")
    booked = await book_directly(db, bookable, clock)
    pages["manage"] = await client.get(f"/manage/{booked.manage_token}")
    clock.now = WEDNESDAY_10.astimezone(dt.UTC) - dt.timedelta(hours=2)
    pages["manage, too late"] = await client.get("/manage")
    await booking.cancel_by_client(db, booked.manage_token, WEDNESDAY_10 - dt.timedelta(days=2))
    pages["manage, cancelled"] = await client.get("/manage")
    pages["manage, unknown"] = await client.get("/manage/nope")
    client.session.cookie_jar.clear()
    pages["confirmed, expired"] = await client.get("/book/sam-rivera/confirmed")

    statuses = [response.status for response in pages.values()]
    assert statuses == [200, 422, 409, 200, 404, 200, 200, 200, 404, 200]
    user_data = [
        "Sam Rivera",
        "Free consultation",
        "Individual session",
        "Free",
        "Robin Quill",
        "robin.quill@example.net",
        "Trouble sleeping since the move.",
        "Call the practice on +1 555 0100.",
        *(label for _, label in zone_options("UTC")),
        *locale_words(),
    ]
    user_data.sort(key=len, reverse=True)  # "Africa/Freetown" before "Free"
    for name, response in pages.items():
        assert untranslated(without_times(await response.text()), user_data) == [], name


def without_times(page: str) -> str:
    """The page with its ``<time>`` elements (data, placeholders in sentences) taken out."""
    return re.sub(r"<time[^>]*>.*?</time>", "", page, flags=re.S)
