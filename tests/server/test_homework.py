"""Homework, through the running app: the therapist assigns a worksheet, the e-mail goes out
through the outbox to a real SMTP server, its link opens the page (a cookie, a clean
address), the client fills the worksheet in over ``/homework/ws`` and marks it done, and the
therapist's record and dashboard say so.  Expired and foreign links change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.app import create_app
from server.homework import EXPIRY_AFTER_DUE, EXPIRY_WITHOUT_DUE, HOMEWORK_COOKIE, expiry_for
from server.logs import redact_path
from server.mailer import Mailer
from server.models import AuditEvent, Client, OutboxMessage
from server.tokens import new_token, token_hash
from server.worksheet_models import Homework, Worksheet
from tests.conftest import FakeClock, LiveServer, csrf_from, free_port, make_settings
from tests.server.test_ws import Cast, therapist_with
from tests.support.arrange import make_homework
from tests.support.mail import SmtpSink
from tests.support.signalling_client import SignallingClient
from tests.support.worksheet_client import WorksheetClient

Sessions = async_sessionmaker[AsyncSession]
THERAPIST_EMAIL = "sam@example.com"
CLIENT_NAME = "Robin Quillfeather"
CHECK_IN = "weekly-check-in"
CHECK_IN_TITLE = "Weekly check-in"
ANSWER = "We cooked together on Sunday"


# --- helpers shared by the homework tests ------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(
    database_url: str, data_dir: Path, clock: FakeClock, smtp_port: int | None = None
) -> AsyncIterator[Cast]:
    """The app on a free port; with ``smtp_port``, sending its e-mail there (the app's own
    worker looks only once, at start: the test runs a worker round when it wants one)."""
    port = free_port()
    env = {"ALCOVE_PUBLIC_URL": f"http://127.0.0.1:{port}", "ALCOVE_OUTBOX_POLL_SECONDS": "3600"}
    if smtp_port is not None:
        env |= {
            "ALCOVE_SMTP_HOST": "127.0.0.1",
            "ALCOVE_SMTP_PORT": str(smtp_port),
            "ALCOVE_SMTP_TLS": "none",
            "ALCOVE_MAIL_FROM": "Practice Rivera <no-reply@therapy.example.org>",
        }
    settings = make_settings(database_url, data_dir, **env)
    server = TestServer(create_app(settings, clock=clock), host="127.0.0.1", port=port)
    await server.start_server()
    cast = Cast(LiveServer(settings, server), clock)
    try:
        yield cast
    finally:
        await cast.aclose()
        await server.close()


class HomeworkSocket(SignallingClient):
    """The homework page's socket: ``/homework/ws``, with the cookie of ``http``."""

    async def connect(self, *, origin: str | None = None) -> None:
        url = self.base_url.replace("http", "ws", 1) + "/homework/ws"
        self.ws = await self.http.ws_connect(
            url, headers={"Origin": origin or self.base_url}, autoping=True
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())


async def homework_socket(cast: Cast, http: aiohttp.ClientSession) -> HomeworkSocket:
    socket = HomeworkSocket(http, cast.url)
    cast._sockets.append(socket)
    await socket.connect()
    return socket


@dataclass
class Practice:
    therapist_id: int
    client_id: int


async def practice(db: Sessions, clock: FakeClock, email: str = THERAPIST_EMAIL) -> Practice:
    therapist, [(appointment, _token)] = await therapist_with(db, clock, email, CLIENT_NAME)
    return Practice(therapist.id, appointment.client_id)


async def homework_with_link(
    db: Sessions,
    people: Practice,
    clock: FakeClock,
    *,
    expires_in: dt.timedelta = EXPIRY_WITHOUT_DUE,
) -> tuple[Homework, str]:
    """A check-in given as homework, and a working link token for it (as if e-mailed)."""
    return await make_homework(
        db,
        people.therapist_id,
        people.client_id,
        now=clock.now,
        expires_in=expires_in,
        template_key=CHECK_IN,
    )


async def open_link(cast: Cast, token: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
    http = cast.http()
    response = await http.get(f"{cast.url}/homework/{token}", allow_redirects=False)
    await response.read()
    return http, response


async def page_csrf(cast: Cast, http: aiohttp.ClientSession) -> str:
    async with http.get(f"{cast.url}/homework") as response:
        assert response.status == 200
        return csrf_from(await response.text())


async def stored_homework(db: Sessions, homework_id: int) -> Homework:
    async with db() as session:
        row = await session.get(Homework, homework_id)
    assert row is not None
    return row


async def audit_actions(db: Sessions, record_type: str) -> list[AuditEvent]:
    async with db() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.record_type == record_type).order_by(AuditEvent.id)
        )
        return list(rows)


# --- the whole way, with real e-mail -----------------------------------------------------------


@pytest.fixture
async def mailing(
    migrated_url: str, tmp_path: Path, clock: FakeClock, smtp: SmtpSink
) -> AsyncIterator[Cast]:
    async with serving(migrated_url, tmp_path / "var", clock, smtp.port) as cast:
        yield cast


async def test_assigned_homework_is_mailed_filled_in_over_its_socket_and_marked_done(
    mailing: Cast, db: Sessions, clock: FakeClock, smtp: SmtpSink, engine: AsyncEngine
) -> None:
    cast = mailing
    people = await practice(db, clock)
    therapist = await cast.therapist_http(THERAPIST_EMAIL)
    record = f"{cast.url}/clients/{people.client_id}"
    async with therapist.get(record) as response:
        csrf = csrf_from(await response.text())
    due = (clock.now + dt.timedelta(days=5)).date().isoformat()
    form = {"csrf_token": csrf, "worksheet": CHECK_IN, "due": due}
    async with therapist.post(f"{record}/homework", data=form, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"].endswith("done=homework-assigned#worksheets")

    async with db() as session:
        (homework,) = (await session.scalars(select(Homework))).all()
        (queued,) = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "homework"))
        ).all()
    assert (homework.status, homework.due_on) == ("assigned", dt.date.fromisoformat(due))
    assert (queued.homework_id, queued.idempotency_key) == (homework.id, f"homework:{homework.id}")

    await Mailer(cast.live.settings, engine, clock=clock).run_once()
    (mail,) = smtp.received
    body = mail.body
    for private in (CHECK_IN_TITLE, CLIENT_NAME, "Robin", "mood", "went_well"):
        assert private not in body
        assert private not in str(mail.message["Subject"])
    assert mail.rcpt_tos == [await _client_email(db, people.client_id)]
    found = re.search(re.escape(cast.url) + r"/homework/(\S+)", body)
    assert found is not None, body
    token = found[1]
    assert (await stored_homework(db, homework.id)).token_hash == token_hash(token)

    client, response = await open_link(cast, token)
    assert response.status == 303
    assert response.headers["Location"] == "/homework"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    (cookie,) = [c for c in response.headers.getall("Set-Cookie") if c.startswith(HOMEWORK_COOKIE)]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and token not in cookie
    async with client.get(f"{cast.url}/homework") as page:
        html = await page.text()
        assert page.status == 200
        assert token not in str(page.url)
    assert 'id="worksheet"' in html and 'id="homework-done"' in html
    assert "Therapist sam@example.com" in html

    socket = await homework_socket(cast, client)
    sheet = WorksheetClient(socket, "client")
    shown = await sheet.expect_worksheet()
    assert shown["title"] == CHECK_IN_TITLE
    sheet.text("went_well").insert(0, ANSWER)
    sheet.peer.fields["mood"] = 7
    await sheet.push()
    # Frames are handled in order: once the ping is answered, the edit has been taken.
    await socket.send({"type": "ping", "ts": 1})
    await socket.expect("pong")
    assert (await stored_homework(db, homework.id)).status == "started"

    csrf = await page_csrf(cast, client)
    async with client.post(f"{cast.url}/homework/done", data={"csrf_token": csrf}) as done:
        assert done.status == 200
        assert "Thank you" in await done.text()
    row = await stored_homework(db, homework.id)
    assert (row.status, row.completed_at) == ("completed", clock.now)
    async with db() as session:
        worksheet = await session.get(Worksheet, row.worksheet_id)
    assert worksheet is not None
    content = json.loads(worksheet.content)
    assert (content["went_well"], content["mood"]) == (ANSWER, 7)

    async with therapist.get(record) as response:
        assert "Homework completed" in await response.text()
    async with therapist.get(f"{cast.url}/dashboard") as response:
        assert "Homework completed" in await response.text()
    actions = [e.action for e in await audit_actions(db, "homework")]
    assert actions == ["homework.assigned", "homework.link_opened", "homework.completed"]
    client_events = [(e.action, e.actor_type) for e in await audit_actions(db, "worksheet")]
    assert ("worksheet.open", "client") in client_events
    assert ("worksheet.write", "client") in client_events
    async with db() as session:
        every = [
            json.dumps([e.action, e.record_id, e.actor_id, e.source_ip])
            for e in await session.scalars(select(AuditEvent))
        ]
    assert not [line for line in every if "cooked" in line or token in line]


async def test_homework_no_longer_open_when_its_mail_is_due_is_not_mailed(
    mailing: Cast, db: Sessions, clock: FakeClock, smtp: SmtpSink, engine: AsyncEngine
) -> None:
    people = await practice(db, clock)
    therapist = await mailing.therapist_http(THERAPIST_EMAIL)
    record = f"{mailing.url}/clients/{people.client_id}"
    async with therapist.get(record) as response:
        csrf = csrf_from(await response.text())
    form = {"csrf_token": csrf, "worksheet": CHECK_IN, "due": ""}
    async with therapist.post(f"{record}/homework", data=form, allow_redirects=False) as response:
        assert response.status == 303
    clock.advance(days=15)  # the link would have expired: the worker was down all along

    await Mailer(mailing.live.settings, engine, clock=clock).run_once()
    assert smtp.count() == 0
    async with db() as session:
        (queued,) = await session.scalars(select(OutboxMessage))
    assert queued.status == "withdrawn"


def test_the_access_log_hides_a_homework_links_token() -> None:
    token = new_token()
    assert redact_path(f"/homework/{token}") == "/homework/[redacted]"


async def test_a_due_date_in_the_past_or_unreadable_is_refused_and_nothing_is_written(
    mailing: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    therapist = await mailing.therapist_http(THERAPIST_EMAIL)
    record = f"{mailing.url}/clients/{people.client_id}"
    async with therapist.get(record) as response:
        csrf = csrf_from(await response.text())
    yesterday = (clock.now - dt.timedelta(days=1)).date().isoformat()
    for due, message in ((yesterday, "today or a later date"), ("next week", "a date like")):
        form = {"csrf_token": csrf, "worksheet": CHECK_IN, "due": due}
        async with therapist.post(f"{record}/homework", data=form) as response:
            assert response.status == 422
            assert message in await response.text()
    form = {"csrf_token": csrf, "worksheet": "w-999", "due": ""}
    async with therapist.post(f"{record}/homework", data=form) as response:
        assert response.status == 422
    async with db() as session:
        assert (await session.scalars(select(Homework))).all() == []
        assert (await session.scalars(select(Worksheet))).all() == []
        assert (await session.scalars(select(OutboxMessage))).all() == []


async def test_an_expired_link_gets_the_friendly_page_and_changes_nothing(
    mailing: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, token = await homework_with_link(db, people, clock, expires_in=dt.timedelta(days=1))
    clock.advance(days=2)
    _http, response = await open_link(mailing, token)
    assert response.status == 410
    assert HOMEWORK_COOKIE not in response.headers.get("Set-Cookie", "")
    assert "This link has expired" in await response.text()
    assert "ask your therapist for a new link" in await response.text()
    assert (await stored_homework(db, homework.id)).status == "assigned"
    assert await audit_actions(db, "homework") == []

    _http, unknown = await open_link(mailing, new_token())
    assert unknown.status == 404
    assert "This link does not work" in await unknown.text()


async def test_assigning_a_worksheet_again_retires_the_earlier_link(
    mailing: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    first, token = await homework_with_link(db, people, clock)
    therapist = await mailing.therapist_http(THERAPIST_EMAIL)
    record = f"{mailing.url}/clients/{people.client_id}"
    async with therapist.get(record) as response:
        html = await response.text()
    assert f'value="w-{first.worksheet_id}"' in html
    form = {"csrf_token": csrf_from(html), "worksheet": f"w-{first.worksheet_id}", "due": ""}
    async with therapist.post(f"{record}/homework", data=form, allow_redirects=False) as response:
        assert response.status == 303
    assert (await stored_homework(db, first.id)).status == "withdrawn"
    _http, response = await open_link(mailing, token)
    assert response.status == 410


def test_a_link_lasts_a_week_past_its_due_date_or_two_weeks_without_one() -> None:
    import zoneinfo

    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert expiry_for(None, now, zone) == now + EXPIRY_WITHOUT_DUE
    due = dt.date(2026, 3, 10)
    last_day = due + EXPIRY_AFTER_DUE
    expected = dt.datetime(2026, 3, 18, tzinfo=zone).astimezone(dt.UTC)
    assert expiry_for(due, now, zone) == expected
    assert expected.astimezone(zone).date() == last_day + dt.timedelta(days=1)


async def test_done_needs_the_pages_form_token(
    mailing: Cast, db: Sessions, clock: FakeClock
) -> None:
    people = await practice(db, clock)
    homework, token = await homework_with_link(db, people, clock)
    http, _response = await open_link(mailing, token)
    async with http.post(f"{mailing.url}/homework/done", data={"csrf_token": "x"}) as response:
        assert response.status == 403
    assert (await stored_homework(db, homework.id)).status == "assigned"


async def _client_email(db: Sessions, client_id: int) -> str:
    async with db() as session:
        client = await session.get(Client, client_id)
    assert client is not None
    return client.email


async def test_a_therapist_cannot_give_homework_to_another_therapists_client(
    mailing: Cast, db: Sessions, clock: FakeClock
) -> None:
    theirs = await practice(db, clock)
    mine = await practice(db, clock, "kim@example.com")
    http = await mailing.therapist_http("kim@example.com")
    async with http.get(f"{mailing.url}/clients/{mine.client_id}") as response:
        csrf = csrf_from(await response.text())
    form = {"csrf_token": csrf, "worksheet": CHECK_IN, "due": ""}
    target = f"{mailing.url}/clients/{theirs.client_id}/homework"
    async with http.post(target, data=form) as response:
        assert response.status == 404
    async with db() as session:
        assert (await session.scalars(select(Homework))).all() == []
        assert (await session.scalars(select(OutboxMessage))).all() == []
