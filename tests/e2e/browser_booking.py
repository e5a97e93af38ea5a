"""A client books a consultation on a phone, gets the e-mail, and reaches the waiting room.

Inner module: run by ``test_browser.py`` inside a private network namespace.  The e-mail is
read from the ``.eml`` file the local mailer writes under ``<data dir>/outbox/``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect
from sqlalchemy import select, update

from server import booking
from server.app import create_app
from server.db import create_engine, sessionmaker
from server.models import SessionType, Therapist, WeeklyHours
from tests.conftest import free_port, make_settings
from tests.e2e.conftest import App
from tests.e2e.harness import (
    Contexts,
    assert_accessible,
    assert_fits_width,
    screenshots,
    sign_in,
    tab_to,
)
from tests.support.arrange import make_bookable_therapist, make_therapist

pytestmark = pytest.mark.asyncio(loop_scope="session")

THERAPIST_ZONE = "America/New_York"
CLIENT_ZONE = "Europe/Berlin"
CLIENT_NAME = "Robin Quill"
CLIENT_EMAIL = "robin.quill@example.net"
ALL_DAY = {weekday: [(dt.time(0, 0), dt.time(23, 59))] for weekday in range(7)}
MAIL_WAIT_SECONDS = 15.0
THERAPIST_EMAIL = "jo.therapist@example.com"
THERAPIST_PASSWORD = "a long enough password"


@pytest_asyncio.fixture(loop_scope="session")
async def app(migrated_url: str, tmp_path: Path) -> AsyncIterator[App]:
    """As the shared ``app`` fixture, with the e-mail worker looking for mail every second,
    and join links opening an hour early: the practice's day ends at 23:59, so in the last
    half hour of it the first free time is the next day's first, up to 30 minutes away, and
    the link to a session booked then must still lead to the waiting room."""
    port = free_port()
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_PUBLIC_URL=f"http://localhost:{port}",
        ALCOVE_OUTBOX_POLL_SECONDS="1",
        ALCOVE_JOIN_EARLY_MINUTES="60",
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    engine = create_engine(settings.database_url)
    try:
        yield App(url=settings.public_url, settings=settings, db=sessionmaker(engine))
    finally:
        await engine.dispose()
        await server.close()


async def arrange_open_practice(app: App) -> None:
    """A therapist taking bookings all day, every day, with consultations bookable right now."""
    bookable = await make_bookable_therapist(app.db, timezone=THERAPIST_ZONE, hours=ALL_DAY)
    async with app.db() as session, session.begin():
        await session.execute(
            update(SessionType)
            .where(SessionType.id == bookable.consultation.id)
            .values(min_notice_minutes=0)
        )


async def in_zone(page: Page, zone: str) -> None:
    """Make the page's clock read ``zone``, as a browser there would."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setTimezoneOverride", {"timezoneId": zone})


def read_mail(outbox: Path, kind: str) -> tuple[EmailMessage | None, list[str]]:
    """The first ``kind`` e-mail written to ``outbox`` (or none yet), and every file there."""
    names = sorted(path.name for path in outbox.glob("*")) if outbox.is_dir() else []
    found = [name for name in names if f"-{kind}-" in name and name.endswith(".eml")]
    if not found:
        return None, names
    message = email.message_from_bytes(
        (outbox / found[0]).read_bytes(), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    return message, names


async def wait_for_mail(outbox: Path, kind: str) -> EmailMessage:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAIL_WAIT_SECONDS
    while True:
        message, names = await asyncio.to_thread(read_mail, outbox, kind)
        if message is not None:
            return message
        if loop.time() > deadline:
            raise AssertionError(f"no {kind} e-mail after {MAIL_WAIT_SECONDS}s in {names}")
        await asyncio.sleep(0.2)


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, "the e-mail has no text part"
    return str(body.get_content())


async def test_a_client_books_on_a_phone_and_joins_from_the_email(
    app: App, contexts: Contexts
) -> None:
    await arrange_open_practice(app)
    page = await contexts.page("phone")
    await in_zone(page, CLIENT_ZONE)

    # The booking page detects the client's zone and shows today's free times in it.
    await page.goto("/book/sam-rivera")
    await expect(page.get_by_role("heading", name="Book a session with Sam Rivera")).to_be_visible()
    await expect(page.locator("#times-zone-note")).to_have_text("Times are shown in Europe/Berlin.")
    await expect(page.get_by_label("Your time zone")).to_have_value(CLIENT_ZONE)
    await expect(page.locator("#timezone")).to_have_value(CLIENT_ZONE)
    await expect(page.locator("#times-legend")).to_contain_text("(Europe/Berlin)")
    first_time = page.locator("#time-list label").first
    await expect(first_time).to_be_visible()
    await assert_fits_width(page)
    await assert_accessible(page, "booking-phone")
    await screenshots(page, "booking")

    # The client picks the first time and fills in the form.
    await first_time.click()
    chosen = await page.locator('#time-list input[name="start"]:checked').get_attribute("value")
    assert chosen is not None
    await page.get_by_label("Your name").fill(CLIENT_NAME)
    await page.get_by_label("E-mail address").fill(CLIENT_EMAIL)
    await page.get_by_label("What brings you here? (optional)").fill("Trouble sleeping.")
    await page.get_by_label("I agree to have my sessions by video").check()
    await page.get_by_label("I have read the privacy notice").check()
    await page.get_by_role("button", name="Book this time").click()

    # The confirmation: no token, name or e-mail in its address.
    await page.wait_for_url("**/book/sam-rivera/confirmed")
    assert page.url.endswith("/book/sam-rivera/confirmed")
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    sent = page.get_by_text("We've e-mailed you the details and a link to join.")
    await expect(sent).to_be_visible()
    await expect(page.locator(".booked-details")).to_contain_text("Europe/Berlin")
    await assert_fits_width(page)
    await assert_accessible(page, "booking-confirmed-phone")
    await screenshots(page, "booking-confirmed")

    # The confirmation e-mail arrives with the join link.
    mail = await wait_for_mail(app.settings.data_dir / "outbox", "confirmation")
    assert CLIENT_EMAIL in str(mail["To"])
    text = plain_text(mail)
    assert "Trouble sleeping" not in text  # the note is clinical: never mailed
    join = re.search(rf"{re.escape(app.url)}/join/[A-Za-z0-9_-]+", text)
    assert join, f"no join link in the e-mail:\n{text}"
    assert re.search(rf"{re.escape(app.url)}/manage/[A-Za-z0-9_-]+", text)

    # The slot starts within the join window: the link leads to the waiting room.
    await page.goto(join.group(0))
    await page.wait_for_url("**/session")
    await expect(page.locator("#prejoin")).to_be_visible()
    await page.locator("#join-waiting-room").click()
    await expect(page.locator("#waiting")).to_be_visible()
    contexts.assert_clean()


async def test_the_manage_link_shows_the_time_and_other_times_in_the_clients_zone(
    app: App, contexts: Contexts
) -> None:
    await arrange_open_practice(app)
    async with app.db() as session:
        therapist = await session.scalar(select(Therapist))
        individual = await session.scalar(
            select(SessionType).where(SessionType.name == "Individual session")
        )
    assert therapist is not None and individual is not None
    now = dt.datetime.now(dt.UTC)
    start = (now + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    booked = await booking.book(
        app.db,
        therapist_id=therapist.id,
        session_type_id=individual.id,
        start=start,
        client=booking.ClientDetails(CLIENT_NAME, CLIENT_EMAIL, None, None, CLIENT_ZONE),
        now=now,
        join_grace=dt.timedelta(minutes=app.settings.join_grace_minutes),
    )
    page = await contexts.page("phone")
    await in_zone(page, CLIENT_ZONE)

    await page.goto(f"/manage/{booked.manage_token}")
    await page.wait_for_url("**/manage")
    assert booked.manage_token not in page.url
    await expect(page.get_by_role("heading", name="Your appointment")).to_be_visible()
    await expect(page.locator("#times-zone-note")).to_have_text("Times are shown in Europe/Berlin.")
    await expect(page.locator("#time-list label").first).to_be_visible()
    await assert_fits_width(page)
    await assert_accessible(page, "manage-phone")
    await screenshots(page, "manage")

    await page.get_by_role("button", name="Cancel this appointment").click()
    await page.wait_for_url("**/manage?done=cancelled")
    await expect(page.get_by_role("heading", name="This appointment is cancelled")).to_be_visible()
    await assert_accessible(page, "manage-cancelled-phone")
    contexts.assert_clean()


async def test_booking_works_with_the_keyboard_alone(app: App, contexts: Contexts) -> None:
    await arrange_open_practice(app)
    page = await contexts.page("desktop")
    await in_zone(page, CLIENT_ZONE)
    await page.goto("/book/sam-rivera")
    await expect(page.locator("#times-zone-note")).to_contain_text("Europe/Berlin")

    # The days are one stop for Tab; the arrow keys move between them, Enter picks one.
    await tab_to(page, "#calendar button[aria-pressed='true']", max_presses=30)
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("Enter")
    second_day = page.locator("#calendar button[data-day]").nth(1)
    await expect(second_day).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#slots-status")).to_contain_text("free times")

    # The times are one radio group: Tab reaches it, Space chooses the focused time.
    await tab_to(page, "#time-list input[name='start']", max_presses=5)
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("Space")
    chosen = page.locator("#time-list input[name='start']:checked")
    await expect(chosen).to_have_count(1)

    await tab_to(page, "#name", max_presses=5)
    await page.keyboard.type(CLIENT_NAME)
    await page.keyboard.press("Tab")
    await page.keyboard.type(CLIENT_EMAIL)
    await tab_to(page, "#consent_telehealth", max_presses=6)
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await tab_to(page, "#book-submit", max_presses=6)
    await page.keyboard.press("Enter")

    await page.wait_for_url("**/book/sam-rivera/confirmed")
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    contexts.assert_clean()


async def test_the_therapist_edits_weekly_hours_with_add_and_remove(
    app: App, contexts: Contexts
) -> None:
    therapist = await make_therapist(app.db, email=THERAPIST_EMAIL, password=THERAPIST_PASSWORD)
    page = await contexts.page("desktop")
    await sign_in(page, THERAPIST_EMAIL, THERAPIST_PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Availability").click()
    await page.wait_for_url("**/availability")

    monday = page.locator("fieldset.weekday").first
    await monday.get_by_label("From").first.fill("09:00")
    await monday.get_by_label("To").first.fill("12:00")
    await monday.get_by_role("button", name="Add a range").click()
    await expect(monday.locator("li.hours-row")).to_have_count(2)
    await expect(monday.get_by_label("From").nth(1)).to_be_focused()
    await page.keyboard.type("1300")
    await monday.get_by_label("To").nth(1).fill("17:00")
    await monday.get_by_role("button", name="Add a range").click()
    await monday.get_by_role("button", name="Remove").nth(2).click()
    await expect(monday.locator("li.hours-row")).to_have_count(2)
    await assert_accessible(page, "availability-desktop")
    await page.get_by_role("button", name="Save weekly hours").click()
    await expect(page.get_by_text("Your weekly hours are saved.")).to_be_visible()

    async with app.db() as session:
        rows = await session.scalars(
            select(WeeklyHours)
            .where(WeeklyHours.therapist_id == therapist.id)
            .order_by(WeeklyHours.start_time)
        )
        saved = [(r.weekday, r.start_time, r.end_time) for r in rows]
    assert saved == [(0, dt.time(9), dt.time(12)), (0, dt.time(13), dt.time(17))]

    for path, name in (("/week", "week"), ("/clients", "clients"), ("/settings", "settings")):
        await page.goto(path)
        await assert_accessible(page, f"{name}-desktop")
    contexts.assert_clean()
