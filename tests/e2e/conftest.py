"""Fixtures for the inner browser tests (``browser_*.py``), run by ``test_browser.py``.

One Chromium for the whole inner session; per test a fresh migrated database, the app
served in-process on 127.0.0.1 (its public URL ``http://localhost:<port>``, a secure context
for getUserMedia), and browser contexts that are closed afterwards.  Everything runs in the
session's event loop, which the browser lives in.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, async_playwright
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.db import create_engine, sessionmaker
from server.settings import Settings
from tests.conftest import free_port, make_settings
from tests.e2e import harness, netns


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In an inner run, append each test's outcome to the file ``test_browser.py`` reads."""
    path = os.environ.get(harness.REPORT_ENV)
    if not path or not netns.is_marked():
        return
    xfail = getattr(report, "wasxfail", None)
    if report.failed:
        outcome, message = "failed", f"{report.when}: {report.longreprtext[-2000:]}"
    elif report.skipped:
        outcome = "xfailed" if xfail is not None else "skipped"
        message = str(xfail) if xfail is not None else str(report.longrepr)
    elif report.when == "call":
        outcome, message = ("xpassed", str(xfail)) if xfail is not None else ("passed", "")
    else:
        return
    line = {"nodeid": report.nodeid, "outcome": outcome, "message": message}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def in_private_network() -> bool:
    """Whether this process runs in the namespace ``netns.py`` set up (and not the host's)."""
    names = {name for _, name in socket.if_nameindex()}
    return netns.is_marked() and names == netns.INTERFACES


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not in_private_network():
        pytest.fail(
            "the browser tests run only inside their private network namespace: "
            "run `pytest tests/e2e/test_browser.py` (as root), not these modules directly"
        )
    async with async_playwright() as playwright:
        chromium = await harness.launch_browser(playwright)
        yield chromium
        await chromium.close()


@dataclass(frozen=True)
class App:
    url: str
    settings: Settings
    db: async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture(loop_scope="session")
async def app(migrated_url: str, tmp_path: Path) -> AsyncIterator[App]:
    """The app on a fresh database, served in this process."""
    port = free_port()
    settings = make_settings(
        migrated_url, tmp_path / "var", ALCOVE_PUBLIC_URL=f"http://localhost:{port}"
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    engine = create_engine(settings.database_url)
    try:
        yield App(url=settings.public_url, settings=settings, db=sessionmaker(engine))
    finally:
        await engine.dispose()
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def contexts(
    browser: Browser, app: App, request: pytest.FixtureRequest
) -> AsyncIterator[harness.Contexts]:
    opened = harness.Contexts(browser, app.url)
    yield opened
    await opened.close(request.node.name)
