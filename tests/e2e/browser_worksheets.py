"""Shared worksheets in real browsers: filled in together during a call, kept as text (never
markup) on every page, and given as homework by e-mail.

Inner module: run by ``test_browser.py`` inside a private network namespace.  The app sends
its e-mail to a real SMTP server on the namespace's loopback (``SmtpSink``), as it would to
the practice's mail server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Dialog, Locator, Page, WebSocket, expect
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import worksheet_store
from server.app import create_app
from server.db import create_engine, sessionmaker
from server.homework_socket import HomeworkSession
from server.shutdown import DRAIN, Drain
from server.worksheet_models import Homework, HomeworkStatus, Worksheet
from server.worksheets import compact, new_document
from server.worksheets.builtin import builtin_template
from server.worksheets.templates import template_to_json
from tests.conftest import free_port, make_settings
from tests.e2e.conftest import App
from tests.e2e.harness import (
    Contexts,
    assert_accessible,
    assert_fits_width,
    screenshots,
    sign_in,
)
from tests.support.arrange import make_appointment, make_client, make_homework, make_therapist
from tests.support.mail import Received, SmtpSink

EMAIL = "sam.rivera@example.com"
PASSWORD = "a long enough password"
CLIENT_NAME = "Alex Morgan"
CLIENT_EMAIL = "alex.morgan@example.com"
THOUGHT_RECORD = "cbt-thought-record"
CHECK_IN = "weekly-check-in"
# What the product promises: the other person sees what is typed within a second.
SEEN_WITHIN_MS = 1_000
MAIL_WAIT_SECONDS = 15.0
# Markup a client might type, on purpose or not: it must stay text on every page.
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=2</script>"
XSS_TEXT = f"{XSS_IMG} and {XSS_SCRIPT}"
CLIENT_SITUATION = "Sunday dinner, he went quiet"
THERAPIST_SITUATION = "A text left unanswered"


pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server on the namespace's loopback, keeping what the app sends."""
    sink = SmtpSink(free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@dataclass(frozen=True)
class ServedApp(App):
    #: The sockets the app serves, as its shutdown closes them.
    drain: Drain


@pytest_asyncio.fixture(loop_scope="session")
async def app(migrated_url: str, tmp_path: Path, smtp: SmtpSink) -> AsyncIterator[ServedApp]:
    """As the shared ``app`` fixture, sending e-mail by SMTP and looking for it every second."""
    port = free_port()
    settings = make_settings(
        migrated_url,
        tmp_path / "var",
        ALCOVE_PUBLIC_URL=f"http://localhost:{port}",
        ALCOVE_OUTBOX_POLL_SECONDS="1",
        ALCOVE_SMTP_HOST="127.0.0.1",
        ALCOVE_SMTP_PORT=str(smtp.port),
        ALCOVE_SMTP_TLS="none",
        ALCOVE_MAIL_FROM="Practice Rivera <no-reply@therapy.example.org>",
    )
    web_app = create_app(settings)
    server = TestServer(web_app, host="127.0.0.1", port=port)
    await server.start_server()
    engine = create_engine(settings.database_url)
    try:
        yield ServedApp(
            url=settings.public_url,
            settings=settings,
            db=sessionmaker(engine),
            drain=web_app[DRAIN],
        )
    finally:
        await engine.dispose()
        await server.close()


def field(page: Page, path: str) -> Locator:
    """The control of a worksheet field, by its path (``went_well``, ``entries[1].situation``)."""
    return page.locator(f'#worksheet [data-field-path="{path}"]')


async def wait_until_loaded(page: Page) -> None:
    """The worksheet has the server's copy and can be typed into."""
    panel = page.locator("#worksheet")
    await expect(panel).to_have_attribute("data-state", re.compile(r"^(saved|saving)$"))
    await expect(panel.locator("fieldset.worksheet-fields")).to_be_enabled()


async def assert_nothing_injected(page: Page) -> None:
    """What was typed as markup stayed text: no element made of it, no script of it ran."""
    found = await page.evaluate(
        """() => ({
            xss: typeof window.__xss,
            images: document.querySelectorAll('img[src="x"]').length,
            scripts: [...document.scripts].filter(s => s.textContent.includes("__xss")).length,
        })"""
    )
    assert found == {"xss": "undefined", "images": 0, "scripts": 0}, f"{page.url}: {found}"


async def admitted_call(app: App, contexts: Contexts) -> tuple[Page, Page]:
    """A therapist on the call page (desktop) and their client in the call (phone)."""
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    appointment, token = await make_appointment(
        app.db, therapist_row.id, starts_at=now, client_name=CLIENT_NAME
    )
    therapist = await contexts.page("desktop")
    await sign_in(therapist, EMAIL, PASSWORD)
    client = await contexts.page("phone")
    await client.goto(f"/join/{token}")
    await client.wait_for_url("**/session")
    await client.locator("#join-waiting-room").click()
    await expect(client.locator("#waiting")).to_be_visible()
    lobby = therapist.locator("#lobby li[data-participant]")
    await expect(lobby).to_have_count(1)
    await lobby.locator('button[data-action="admit"]').click()
    await therapist.wait_for_url(re.compile(rf"/call/{appointment.id}$"))
    await expect(client.locator("#call")).to_be_visible()
    # The call is up on both sides, so both sockets are past their `welcome`: the picker's
    # request would be dropped before that.
    for page in (therapist, client):
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    return therapist, client


async def test_a_thought_record_is_filled_in_together_and_stays_text_everywhere(
    app: App, contexts: Contexts
) -> None:
    therapist, client = await admitted_call(app, contexts)

    # The therapist opens a thought record from the picker: it appears for both.
    await therapist.locator("#worksheet-choice").select_option(THOUGHT_RECORD)
    await therapist.locator("#worksheet-open").click()
    await wait_until_loaded(therapist)
    await expect(therapist.locator("#worksheet-close")).to_be_visible()
    worksheet_ref = await therapist.locator("#worksheet").get_attribute("data-worksheet-id")
    assert worksheet_ref is not None and re.fullmatch(r"w-\d+", worksheet_ref), worksheet_ref
    # On the client's phone it is a tab, marked as new until the client switches to it.
    await expect(client.locator("#worksheet")).to_have_attribute("data-worksheet-id", worksheet_ref)
    tab = client.locator("#tab-worksheet")
    await expect(tab).to_have_attribute("data-news", "true")
    await tab.click()
    await expect(tab).to_have_attribute("aria-selected", "true")
    await wait_until_loaded(client)
    await expect(client.locator("#worksheet .worksheet-title")).to_be_visible()

    # The client adds the first entry, the therapist a second one; both see both rows.
    await client.locator("#worksheet .worksheet-add-row").click()
    await expect(field(therapist, "entries[0].situation")).to_be_visible()
    await therapist.locator("#worksheet .worksheet-add-row").click()
    await expect(field(client, "entries[1].situation")).to_be_attached()

    # Both type at once, each into their own row, and each sees the other's text promptly.
    await asyncio.gather(
        field(client, "entries[0].situation").press_sequentially(CLIENT_SITUATION),
        field(therapist, "entries[1].situation").press_sequentially(THERAPIST_SITUATION),
    )
    await expect(field(therapist, "entries[0].situation")).to_have_value(
        CLIENT_SITUATION, timeout=SEEN_WITHIN_MS
    )
    await expect(field(client, "entries[1].situation")).to_have_value(
        THERAPIST_SITUATION, timeout=SEEN_WITHIN_MS
    )
    await expect(field(client, "entries[0].situation")).to_have_value(CLIENT_SITUATION)
    await expect(field(therapist, "entries[1].situation")).to_have_value(THERAPIST_SITUATION)
    await screenshots(therapist, "worksheet-call")
    await screenshots(client, "worksheet-call-client")

    # Markup typed on one side arrives as text on the other, in a textarea and in an input.
    await field(client, "entries[0].automatic_thought").fill(XSS_TEXT)
    await field(therapist, "entries[1].feeling").fill(XSS_TEXT)
    await expect(field(therapist, "entries[0].automatic_thought")).to_have_value(XSS_TEXT)
    await expect(field(client, "entries[1].feeling")).to_have_value(XSS_TEXT)
    for page in (therapist, client):
        await assert_nothing_injected(page)

    # The therapist's export shows the answers, as they were typed and as text.
    export = await therapist.context.new_page()
    number = worksheet_ref.removeprefix("w-")
    response = await export.goto(f"/therapist/worksheets/{number}")
    assert response is not None and response.status == 200
    answers = export.locator(".worksheet-answers")
    await expect(answers).to_contain_text(CLIENT_SITUATION)
    await expect(answers).to_contain_text(THERAPIST_SITUATION)
    await expect(answers.get_by_text(XSS_TEXT, exact=True)).to_have_count(2)
    await assert_nothing_injected(export)
    await assert_accessible(export, "worksheet-export-desktop")
    await export.close()

    await assert_fits_width(client)
    await assert_accessible(therapist, "worksheet-call-therapist-desktop")
    await assert_accessible(client, "worksheet-call-client-phone")
    contexts.assert_clean()


async def wait_for_mail(smtp: SmtpSink, to: str) -> Received:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAIL_WAIT_SECONDS
    while True:
        found = [r for r in list(smtp.received) if to in r.rcpt_tos]
        if found:
            return found[0]
        if loop.time() > deadline:
            raise AssertionError(f"no e-mail to the client after {MAIL_WAIT_SECONDS}s")
        await asyncio.sleep(0.2)


async def test_a_weekly_check_in_given_as_homework_is_filled_in_from_the_email(
    app: App, contexts: Contexts, smtp: SmtpSink
) -> None:
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    client_row = await make_client(app.db, therapist_row.id, name=CLIENT_NAME, email=CLIENT_EMAIL)
    due = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)

    # The therapist gives the weekly check-in as homework from the client's record.
    therapist = await contexts.page("desktop")
    await sign_in(therapist, EMAIL, PASSWORD)
    await therapist.goto(f"/clients/{client_row.id}")
    await therapist.locator("#homework-worksheet").select_option(CHECK_IN)
    await therapist.locator("#homework-due").fill(due.isoformat())
    await therapist.locator("#assign-homework-button").click()
    await therapist.wait_for_url(re.compile(r"done=homework-assigned"))
    record = therapist.locator("#worksheets")
    await expect(record.locator(".homework-status.homework-assigned")).to_be_visible()

    # The e-mail reaches the client's mail server, with a link and without the worksheet.
    mail = await wait_for_mail(smtp, CLIENT_EMAIL)
    body = mail.body
    link = re.search(rf"{re.escape(app.url)}/homework/[A-Za-z0-9_-]+", body)
    assert link, f"no homework link in the e-mail:\n{body}"
    assert "Weekly check-in" not in body and CLIENT_NAME not in body

    # The client opens it on a phone: the token leaves the address bar.
    client = await contexts.page("phone")
    await client.goto(link.group(0))
    await client.wait_for_url(re.compile(r"/homework$"))
    await wait_until_loaded(client)
    await expect(client.locator("#worksheet .worksheet-title")).to_have_text("Weekly check-in")

    # A scale and a long text, then "Mark as done".
    mood = client.locator('#worksheet [data-field-container="mood"]')
    await mood.locator("label.worksheet-option").nth(7).click()
    await expect(mood.locator('input[type="radio"][value="7"]')).to_be_checked()
    went_well = "We talked after dinner <b>without</b> raising our voices."
    await field(client, "went_well").fill(went_well)
    await assert_fits_width(client)
    await assert_accessible(client, "homework-phone")
    await screenshots(client, "homework")
    await client.locator("#homework-done").click()
    await client.wait_for_url(re.compile(r"/homework/done$"))
    await expect(client.locator("#done-heading")).to_be_visible()

    # The therapist's record shows it completed, and the worksheet holds the answers.
    await therapist.reload()
    await expect(record.locator(".homework-status.homework-completed")).to_be_visible()
    await record.locator('a[href^="/therapist/worksheets/"]').first.click()
    await therapist.wait_for_url(re.compile(r"/therapist/worksheets/\d+$"))
    answers = therapist.locator(".worksheet-answers")
    await expect(answers.locator('[aria-labelledby="answer-mood"]')).to_contain_text(
        re.compile(r"\b7 out of 10")
    )
    await expect(answers.locator('[aria-labelledby="answer-went_well"]')).to_have_text(
        re.compile(re.escape(went_well))
    )
    async with app.db() as session:
        homework = await session.scalar(select(Homework))
    assert homework is not None and homework.status == HomeworkStatus.COMPLETED.value
    assert homework.due_on == due
    contexts.assert_clean()


async def stored_text(app: App, worksheet_id: int) -> str:
    """The stored ``went_well`` answer."""
    async with app.db() as session:
        worksheet = await session.get(Worksheet, worksheet_id)
    assert worksheet is not None
    text: str = json.loads(worksheet.content)["went_well"]
    return text


async def check_in_homework(app: App) -> tuple[Homework, str]:
    """A weekly check-in given as homework to a therapist's client: the row and its link's
    token."""
    therapist_row = await make_therapist(app.db, email=EMAIL, password=PASSWORD, timezone="UTC")
    client_row = await make_client(app.db, therapist_row.id, name=CLIENT_NAME, email=CLIENT_EMAIL)
    return await make_homework(
        app.db,
        therapist_row.id,
        client_row.id,
        now=dt.datetime.now(dt.UTC),
        expires_in=dt.timedelta(days=7),
        template_key=CHECK_IN,
    )


async def open_homework(page: Page, token: str) -> None:
    """Follow the e-mailed link (which leaves the token out of the page's address) until
    the worksheet can be typed into."""
    await page.goto(f"/homework/{token}")
    await page.wait_for_url(re.compile(r"/homework$"))
    await wait_until_loaded(page)


async def test_what_was_typed_offline_comes_back_when_the_page_is_reloaded(
    app: ServedApp, contexts: Contexts
) -> None:
    homework, token = await check_in_homework(app)
    context = await contexts.new("phone")
    page = await context.new_page()

    async def leave(dialog: Dialog) -> None:
        # "Leave site? Changes you made may not be saved": the person reloads anyway.
        await dialog.accept()

    page.on("dialog", leave)
    await open_homework(page, token)
    panel = page.locator("#worksheet")
    went_well = field(page, "went_well")
    online = "We walked to the park together."
    await went_well.fill(online)
    await expect(panel).to_have_attribute("data-state", "saved")
    kept = "() => [sessionStorage.length, localStorage.length]"
    assert await page.evaluate(kept) == [0, 0]  # nothing is kept once it is stored

    # The phone loses the network (and with it the socket); the client carries on typing.
    # Chromium's offline emulation does not reliably stop a new websocket to this host, so
    # the server refuses them meanwhile, as it does while draining: nothing typed now can
    # reach it but through what the tab kept.
    await context.set_offline(True)
    app.drain.draining = True
    await app.drain.close_all()
    await expect(panel).to_have_attribute("data-state", "offline")
    offline = " On the way back he asked how I felt."
    await went_well.press("End")
    await went_well.press_sequentially(offline)
    await expect(went_well).to_have_value(online + offline)
    # Kept in this tab only, never where another tab or a later visitor could read it.
    await page.wait_for_function("() => sessionStorage.length === 1")
    assert await page.evaluate(kept) == [1, 0]

    # The page goes away while offline (a reload fails with no network), then comes back.
    with contextlib.suppress(PlaywrightError):
        await page.reload()
    await context.set_offline(False)
    app.drain.draining = False
    await page.goto("/homework")
    await wait_until_loaded(page)
    await expect(went_well).to_have_value(online + offline)
    await expect(panel).to_have_attribute("data-state", "saved")
    await page.wait_for_function("() => sessionStorage.length === 0")
    assert await page.evaluate(kept) == [0, 0]
    assert await stored_text(app, homework.worksheet_id) == online + offline
    contexts.assert_clean()


class HeldTyping:
    """The homework socket's ``yjs`` frames, held at the server once armed: the first one
    after arming passes, the rest wait until released, as if still on their way.  Saves
    wait too, once armed, until ``release_save``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.passed = asyncio.Event()
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.release_save = asyncio.Event()
        receive = HomeworkSession.receive
        save_states = worksheet_store.save_states

        async def held_receive(session: HomeworkSession, frame: str | bytes) -> None:
            if self.armed and isinstance(frame, str) and '"type":"yjs"' in frame:
                if not self.passed.is_set():
                    self.passed.set()
                else:
                    self.held.set()
                    await self.release.wait()
            await receive(session, frame)

        async def held_save(session: AsyncSession, saves: Any, **kwargs: Any) -> Any:
            if self.armed:
                await self.release_save.wait()
            return await save_states(session, saves, **kwargs)

        monkeypatch.setattr(HomeworkSession, "receive", held_receive)
        monkeypatch.setattr(worksheet_store, "save_states", held_save)


async def test_a_change_still_on_its_way_when_a_save_is_announced_is_not_called_saved(
    app: ServedApp, contexts: Contexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    homework, token = await check_in_homework(app)
    typing = HeldTyping(monkeypatch)
    page = await (await contexts.new("phone")).new_page()
    announced: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    def watch(socket: WebSocket) -> None:
        def frame(payload: str | bytes) -> None:
            if isinstance(payload, str) and '"worksheet-saved"' in payload:
                announced.append(json.loads(payload))
                arrived.set()

        socket.on("framereceived", frame)

    page.on("websocket", watch)
    await open_homework(page, token)
    panel = page.locator("#worksheet")
    went_well = field(page, "went_well")
    await went_well.fill("We walked")
    await expect(panel).to_have_attribute("data-state", "saved")

    # " twice" reaches the server and is saved; " today" is still on its way when the save
    # is announced.
    typing.armed = True
    await went_well.press("End")
    await went_well.press_sequentially(" twice")
    await typing.passed.wait()
    await went_well.press_sequentially(" today")
    async with asyncio.timeout(10):
        await typing.held.wait()
    arrived.clear()
    typing.release_save.set()
    async with asyncio.timeout(10):
        await arrived.wait()  # the save of " twice", announced with " today" on its way
    assert isinstance(announced[-1]["received"], int)
    await expect(panel).to_have_attribute("data-state", "saving")
    # What the server has not stored is still kept in the tab.
    assert await page.evaluate("() => sessionStorage.length") == 1

    typing.release.set()
    await expect(panel).to_have_attribute("data-state", "saved")
    await page.wait_for_function("() => sessionStorage.length === 0")
    assert await stored_text(app, homework.worksheet_id) == "We walked twice today"
    contexts.assert_clean()


# The panel on its own, in the real browser, with a stand-in for the socket: typing waits
# while the socket still holds earlier messages unsent, and a `rate-limited` error has every
# change sent again.  The page only provides the origin the modules are loaded from.
PANEL_ON_A_STALLED_SOCKET = """async ({template, state, field}) => {
    const { WorksheetPanel } = await import("/static/js/worksheet-panel.js");
    const sync = await import("/static/js/worksheet-sync.js");
    const Y = await import("/static/vendor/yjs.js");
    const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    const sent = [];
    let held = 0;
    const root = document.createElement("div");
    document.body.append(root);
    const panel = new WorksheetPanel(root, {
        send: (message) => { sent.push(message); return true; },
        buffered: () => held,
        storage: null,
    });
    panel.receive({ type: "worksheet", worksheet: "w-1", title: template.title, template });
    const initial = sync.fromBase64(state);
    panel.receive({ type: "yjs", worksheet: "w-1", data: sync.encodeData(sync.STEP2, initial) });
    const isUpdate = (m) => m.type === "yjs" && sync.decodeData(m.data).step === sync.UPDATE;
    const updates = () => sent.filter(isUpdate);
    const textOf = (messages) => {
        const doc = new Y.Doc();
        Y.applyUpdate(doc, initial);
        for (const m of messages) Y.applyUpdate(doc, sync.decodeData(m.data).payload);
        return doc.getMap("fields").get(field).toString();
    };
    const text = panel.doc.getMap("fields").get(field);
    const before = updates().length;

    held = 4096;  // the network stalled: the socket still holds what was sent before
    text.insert(0, "a");
    await pause(300);
    text.insert(1, "b");
    await pause(300);
    const whileHeld = updates().length - before;
    held = 0;
    await pause(300);
    const afterStall = updates().slice(before);

    panel.receive({ type: "error", error: "rate-limited", value: "yjs dropped: slow down" });
    panel.receive({ type: "error", error: "rate-limited", value: "yjs dropped: slow down" });
    await pause(200);
    const soonAfter = updates().length;
    await pause(1200);
    const resent = updates().slice(soonAfter);
    return {
        status: panel.status,
        whileHeld,
        afterStall: afterStall.length,
        stalledText: textOf(afterStall),
        resent: resent.length,
        resentText: textOf(resent),
    };
}"""


async def test_typing_waits_for_a_stalled_socket_and_a_dropped_change_is_sent_again(
    contexts: Contexts,
) -> None:
    template = builtin_template(CHECK_IN)
    page = await contexts.page("desktop")
    await page.goto("/login")
    state = base64.b64encode(compact(new_document(template))).decode()
    result = await page.evaluate(
        PANEL_ON_A_STALLED_SOCKET,
        {"template": template_to_json(template), "state": state, "field": "went_well"},
    )
    assert result == {
        "status": "saving",  # no save was announced: the changes are not called saved
        "whileHeld": 0,
        "afterStall": 1,
        "stalledText": "ab",
        "resent": 1,
        "resentText": "ab",
    }
    contexts.assert_clean()
