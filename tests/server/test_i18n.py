"""Translations: catalogs in step with the sources, new languages by catalog alone, and no
visible text that bypasses gettext."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.i18n import DEFAULT_LOCALE, LOCALE_DIR, Catalogs
from server.models import Appointment, AppointmentStatus, Therapist
from server.models import Client as ClientRecord
from server.settings import Settings
from tests.conftest import AiohttpClient, FakeClock, csrf_from, make_settings, sign_in

HttpClient = TestClient[Any, Any]
MessageId = str | tuple[str, ...]
ROOT = Path(__file__).resolve().parents[2]
EN_CATALOG = LOCALE_DIR / DEFAULT_LOCALE / "LC_MESSAGES" / "messages.po"
PRODUCT_NAME = "Alcove"  # a name, not text to translate


def extracted_messages() -> set[MessageId]:
    """Every message the sources ask gettext for, found as ``pybabel extract`` finds them."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle, "babel.cfg")  # type: ignore[no-untyped-call]
    return {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT, method_map, options_map
        )
    }


def catalog_messages(path: Path) -> set[MessageId]:
    with path.open("rb") as handle:
        catalog = read_po(handle)
    return {
        message.id if isinstance(message.id, str) else tuple(message.id)
        for message in catalog
        if message.id
    }


def write_catalog(locale_dir: Path, lang: str, translations: dict[MessageId, Any]) -> None:
    catalog = Catalog(locale=lang)
    for msgid, msgstr in translations.items():
        catalog.add(msgid, msgstr)
    folder = locale_dir / lang / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "messages.po").open("wb") as handle:
        write_po(handle, catalog)


def test_source_messages_and_the_catalogs_are_in_step() -> None:
    in_sources = extracted_messages()

    assert "Sign in" in in_sources  # from templates
    assert any(isinstance(message, tuple) for message in in_sources)  # from Python, plural
    for catalog in (EN_CATALOG, LOCALE_DIR / "messages.pot"):
        in_catalog = catalog_messages(catalog)
        assert in_sources - in_catalog == set(), f"missing from {catalog.name}; run pybabel"
        assert in_catalog - in_sources == set(), f"obsolete in {catalog.name}; run pybabel"


@pytest.fixture
def locale_dir(tmp_path: Path) -> Path:
    """The shipped English catalog plus a German and a Brazilian Portuguese one."""
    root = tmp_path / "locale"
    (root / "en" / "LC_MESSAGES").mkdir(parents=True)
    shutil.copy(EN_CATALOG, root / "en" / "LC_MESSAGES" / "messages.po")
    write_catalog(
        root,
        "de",
        {"Sign in": "Anmelden", "Password": "Passwort", "E-mail address": "E-Mail-Adresse"},
    )
    write_catalog(root, "pt_BR", {"Sign in": "Entrar", "Password": "Senha"})
    return root


@pytest.fixture
async def translated(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock, locale_dir: Path
) -> HttpClient:
    return await aiohttp_client(create_app(settings, clock=clock, catalogs=Catalogs(locale_dir)))


@pytest.mark.parametrize(
    ("accept_language", "lang", "expected", "absent"),
    [
        ("de", "de", ["Anmelden", "Passwort", "E-Mail-Adresse"], ["Password"]),
        ("de-DE,de;q=0.9,en;q=0.5", "de", ["Anmelden"], ["Password"]),
        ("en;q=0.4, de;q=0.8", "de", ["Anmelden"], ["Password"]),
        ("pt-BR,pt;q=0.9", "pt-BR", ["Entrar", "Senha"], ["Password"]),
        ("fr-FR,fr;q=0.9", "en", ["Sign in", "Password"], ["Anmelden", "Entrar"]),
        (None, "en", ["Sign in", "Password"], ["Anmelden", "Entrar"]),
    ],
)
async def test_a_language_is_added_by_adding_its_catalog(
    translated: HttpClient,
    accept_language: str | None,
    lang: str,
    expected: list[str],
    absent: list[str],
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}

    response = await translated.get("/login", headers=headers)

    page = await response.text()
    assert f'<html lang="{lang}">' in page
    for text in expected:
        assert text in page
    for text in absent:
        assert f">{text}<" not in page


def test_shipped_languages_are_exactly_the_catalogs_on_disk(locale_dir: Path) -> None:
    assert Catalogs(locale_dir).languages == ["de", "en", "pt_BR"]
    assert Catalogs(locale_dir / "nowhere").languages == [DEFAULT_LOCALE]


# --- pseudo-locale: every visible text node must come from a catalog ---------------------

OPEN, CLOSE = "⟦", "⟧"
WRAPPED = re.compile(f"{OPEN}[^{CLOSE}]*{CLOSE}")
LETTER = re.compile(r"[^\W\d_]")
VISIBLE_ATTRIBUTES = ("aria-label", "title", "alt", "placeholder")
NOT_TEXT = {"script", "style", "time"}  # <time> holds localized dates and times: data


class VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in NOT_TEXT:
            self._skipping.append(tag)
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value:
                self.texts.append(value)
        values = dict(attrs)
        if tag == "input" and values.get("type") in {"submit", "button"} and values.get("value"):
            self.texts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.texts.append(data.strip())


def untranslated(page: str, user_data: list[str]) -> list[str]:
    parser = VisibleText()
    parser.feed(page)
    parser.close()
    assert any(OPEN in text for text in parser.texts), "the pseudo-locale was not used"
    left = []
    for text in parser.texts:
        rest = WRAPPED.sub("", text)
        for value in [*user_data, PRODUCT_NAME]:
            rest = rest.replace(value, "")
        if LETTER.search(rest):
            left.append(text)
    return left


def pseudo(message: MessageId) -> Any:
    if isinstance(message, tuple):
        return tuple(f"{OPEN}{form}{CLOSE}" for form in message)
    return f"{OPEN}{message}{CLOSE}"


async def explode(_request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def test_every_visible_text_comes_from_the_catalog(
    aiohttp_client: AiohttpClient,
    migrated_url: str,
    tmp_path: Path,
    clock: FakeClock,
    therapist: Therapist,
    db: async_sessionmaker[AsyncSession],
) -> None:
    # The default language's catalog wraps every message: unwrapped words did not use it.
    pseudo_dir = tmp_path / "pseudo"
    write_catalog(pseudo_dir, DEFAULT_LOCALE, {m: pseudo(m) for m in extracted_messages()})
    settings = make_settings(migrated_url, tmp_path / "var", ALCOVE_LOGIN_MAX_FAILURES="1")
    app = create_app(settings, clock=clock, catalogs=Catalogs(pseudo_dir))
    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    clients = await add_appointments(db, therapist, clock.now)

    assert (await sign_in(client)).status == 303
    pages = {
        "dashboard": await client.get("/dashboard"),
        "404": await client.get("/no/such/page"),
        "405": await client.put("/login"),
        "500": await client.get("/explode"),
        "403": await client.post("/logout", data={"csrf_token": "wrong"}),
    }
    dashboard_page = await pages["dashboard"].text()
    pages["signed out"] = await client.post(
        "/logout", data={"csrf_token": csrf_from(dashboard_page)}
    )
    pages["sign-in"] = await client.get("/login")
    pages["sign-in, expired"] = await client.get("/login?expired=idle")
    pages["sign-in, failed"] = await sign_in(client, password="wrong password!")
    pages["sign-in, throttled"] = await sign_in(client, password="wrong password!")

    assert [r.status for r in pages.values()] == [200, 404, 405, 500, 403, 200, 200, 200, 401, 429]
    user_data = [therapist.display_name, therapist.email, *clients]
    for name, response in pages.items():
        assert untranslated(await response.text(), user_data) == [], name
    for client_name in clients:
        assert client_name in dashboard_page


async def add_appointments(
    db: async_sessionmaker[AsyncSession], therapist: Therapist, now: dt.datetime
) -> list[str]:
    """One appointment in each status later today; returns the clients' names."""
    names = []
    async with db() as session, session.begin():
        for hours, status in enumerate(AppointmentStatus, start=1):
            person = ClientRecord(
                therapist_id=therapist.id, name=f"Client {status.value}", email="c@example.com"
            )
            session.add(person)
            await session.flush()
            starts = now + dt.timedelta(hours=hours)
            session.add(
                Appointment(
                    therapist_id=therapist.id,
                    client_id=person.id,
                    starts_at=starts,
                    ends_at=starts + dt.timedelta(minutes=50),
                    status=status.value,
                )
            )
            names.append(person.name)
    return names
