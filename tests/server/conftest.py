"""Fixtures shared by the e-mail tests: a real SMTP server, settings that send to it, and an
engine on the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import create_engine
from server.settings import Settings
from tests.conftest import free_port
from tests.support.mail import SmtpSink, smtp_settings


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def mail_settings(migrated_url: str, tmp_path: Path, smtp: SmtpSink) -> Settings:
    return smtp_settings(migrated_url, tmp_path / "var", smtp.port)


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()
