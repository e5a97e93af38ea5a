"""Both databases, whatever ``ALCOVE_TEST_DATABASE_URL`` says: for the tests of what must
behave the same on SQLite and PostgreSQL (the schema, the constraints, the audit trail).

Import ``backend`` and ``backend_url`` into a test module to use them, and mark the tests
``every_database``: CI's PostgreSQL pass need not run them again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PostgresDatabases, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str | PostgresDatabases:
    """Both databases in every run, whatever ``ALCOVE_TEST_DATABASE_URL`` says."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'backend.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return databases


@pytest.fixture
async def backend_url(backend: str | PostgresDatabases) -> str:
    """A freshly migrated database on the backend under test."""
    url = backend if isinstance(backend, str) else await backend.create()
    await migrate(url)
    return url
