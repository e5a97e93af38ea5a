"""The migration chain: up to head, down to base and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server import migrate
from server.db import Base, create_engine, sessionmaker
from server.models import Therapist
from tests.conftest import PostgresDatabases
from tests.server.test_cli import alcove_env, run_alcove

MODEL_TABLES = set(Base.metadata.tables)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def assert_up_down_up(url: str) -> None:
    engine = create_engine(url)
    try:
        assert await migrate.current_revision(engine) is None
        assert await table_names(engine) == set()

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert await table_names(engine) == MODEL_TABLES
        assert await migrate.schema_drift(engine) == []

        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert await table_names(engine) == set()

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert await table_names(engine) == MODEL_TABLES
        assert await migrate.schema_drift(engine) == []
    finally:
        await engine.dispose()


async def test_migrations_go_up_to_head_down_to_base_and_up_again_on_sqlite(
    tmp_path: Path,
) -> None:
    await assert_up_down_up(f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}")


async def test_migrations_go_up_to_head_down_to_base_and_up_again_on_postgresql(
    postgres_databases: PostgresDatabases,
) -> None:
    await assert_up_down_up(await postgres_databases.create())


async def test_schema_drift_reports_a_migrated_schema_that_differs_from_the_models(
    migrated_url: str,
) -> None:
    engine = create_engine(migrated_url)
    try:
        assert await migrate.schema_drift(engine) == []
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_clients_therapist_email"))

        drift = await migrate.schema_drift(engine)
    finally:
        await engine.dispose()

    assert [diff[0] for diff in drift] == ["add_index"]
    assert drift[0][1].name == "ix_clients_therapist_email"


async def test_schema_drift_is_empty_in_a_process_that_imported_only_the_migrate_module(
    migrated_url: str, tmp_path: Path
) -> None:
    script = (
        "import asyncio, sys\n"
        "from server import migrate\n"
        "from server.db import create_engine\n"
        "async def main() -> None:\n"
        "    engine = create_engine(sys.argv[1])\n"
        "    print(len(await migrate.schema_drift(engine)))\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        migrated_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "0"


def test_migration_chain_has_a_single_head_reachable_from_base() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    version_files = sorted(
        path for path in (migrate.MIGRATIONS_DIR / "versions").glob("*.py") if path.stem[0] != "_"
    )

    heads = scripts.get_heads()
    chain = list(scripts.walk_revisions("base", "heads"))

    assert heads == [migrate.head_revision()]
    assert len(chain) == len(version_files)
    assert chain[-1].down_revision is None
    assert len(scripts.get_bases()) == 1


async def test_alcove_migrate_is_idempotent_and_keeps_existing_data(
    database_url: str, tmp_path: Path
) -> None:
    env = alcove_env(ALCOVE_DATABASE_URL=database_url, ALCOVE_DATA_DIR=str(tmp_path / "var"))

    first = await run_alcove("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "database is up to date" in first.stdout

    engine = create_engine(database_url)
    try:
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with sessionmaker(engine)() as db, db.begin():
            db.add(
                Therapist(
                    email="kept@example.com",
                    display_name="Kept",
                    timezone="UTC",
                    password_hash="x",
                )
            )

        second = await run_alcove("migrate", env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert "database is up to date" in second.stdout
        assert "Traceback" not in second.stderr

        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert await migrate.schema_drift(engine) == []
        async with sessionmaker(engine)() as db:
            emails = list(await db.scalars(select(Therapist.email)))
            total = await db.scalar(select(func.count()).select_from(Therapist))
    finally:
        await engine.dispose()
    assert emails == ["kept@example.com"]
    assert total == 1
