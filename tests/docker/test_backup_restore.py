"""The backup and restore commands of docs/OPERATIONS.md, run against a real PostgreSQL.

The commands are read from the document itself: each ``docker compose … exec -T db <tool>
…`` line is run as ``<tool> -h 127.0.0.1 -p 5432 …`` with the same flags, the test
server's superuser for ``-U alcove`` and a throw-away database for the database ``alcove``.
A database is migrated with ``alcove migrate``, given a therapist with ``alcove therapist
create`` (the documented way to add the first one), dumped, dropped and restored, and the
therapist must be back.

Needs PostgreSQL on 127.0.0.1:5432 with trust authentication for ``postgres`` and its
client tools (Debian: ``postgresql``, ``postgresql-client``), as .ci/run sets up. Without
them the test is skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.support import OPERATIONS

HOST = "127.0.0.1"
PORT = "5432"
SUPERUSER = "postgres"
DOCUMENTED_PREFIX = "docker compose -f docker/compose.yaml --env-file docker/.env exec -T db "
TOOLS = ("pg_dump", "pg_restore", "dropdb", "createdb")
EMAIL = "backup.check@example.org"
NAME = "Robin Backup"

pytestmark = pytest.mark.slow


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run should have provided it")
    pytest.skip(reason)


def documented_command(tool: str) -> tuple[list[str], str | None]:
    """The documented ``exec -T db`` command for ``tool``: its words, and the redirection
    (``"<"`` or ``">"``) if it reads or writes the dump through one."""
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith(DOCUMENTED_PREFIX):
            continue
        words = shlex.split(stripped[len(DOCUMENTED_PREFIX) :])
        if words[0] != tool:
            continue
        for index, word in enumerate(words):
            if word in {"<", ">"}:
                assert words[index + 1 :] == ["backup.dump"], stripped
                return words[:index], word
        return words, None
    raise AssertionError(f"docs/OPERATIONS.md shows no `{DOCUMENTED_PREFIX}{tool} …` command")


def localized(words: list[str], database: str) -> list[str]:
    """``words`` aimed at the test server: its superuser instead of the ``alcove`` user,
    ``database`` instead of the ``alcove`` database."""
    binary = shutil.which(words[0])
    assert binary is not None
    result = [binary, "-h", HOST, "-p", PORT]
    previous = ""
    for word in words[1:]:
        if word == "alcove":
            result.append(SUPERUSER if previous == "-U" else database)
        else:
            result.append(word)
        previous = word
    return result


def run_documented(tool: str, database: str, dump: Path) -> subprocess.CompletedProcess[bytes]:
    words, redirection = documented_command(tool)
    command = localized(words, database)
    if redirection == ">":
        with dump.open("wb") as out:
            return subprocess.run(
                command, stdout=out, stderr=subprocess.PIPE, timeout=120, check=False
            )
    if redirection == "<":
        with dump.open("rb") as source:
            return subprocess.run(
                command, stdin=source, capture_output=True, timeout=120, check=False
            )
    return subprocess.run(command, capture_output=True, timeout=120, check=False)


def alcove(
    database: str, data_dir: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The ``alcove`` command of this virtualenv, on ``database``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALCOVE_")}
    env.update(
        ALCOVE_MODE="development",
        ALCOVE_DATA_DIR=str(data_dir),
        ALCOVE_DATABASE_URL=f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{PORT}/{database}",
    )
    return subprocess.run(
        [str(Path(sys.executable).with_name("alcove")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir,  # no stray .env
        timeout=120,
        check=False,
    )


async def connect(database: str) -> Any:
    import asyncpg

    return await asyncpg.connect(host=HOST, port=int(PORT), user=SUPERUSER, database=database)


async def therapists(database: str) -> list[tuple[str, str]]:
    conn = await connect(database)
    try:
        rows = await conn.fetch("SELECT email, display_name FROM therapists ORDER BY email")
    finally:
        await conn.close()
    return [(row["email"], row["display_name"]) for row in rows]


async def execute(database: str, statement: str) -> None:
    conn = await connect(database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    for tool in TOOLS:
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install postgresql-client)")
    try:
        admin = await asyncio.wait_for(connect("postgres"), timeout=5)
    except Exception as exc:  # no server, or no trust authentication: say which
        unavailable(f"no PostgreSQL for {SUPERUSER} on {HOST}:{PORT} ({type(exc).__name__})")
    name = f"alcove_backup_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await connect("postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def test_the_documented_commands_are_the_ones_this_test_runs() -> None:
    dump, direction = documented_command("pg_dump")
    assert direction == ">" and "-Fc" in dump
    restore, direction = documented_command("pg_restore")
    assert direction == "<" and {"--clean", "--if-exists"} <= set(restore)
    assert documented_command("dropdb")[1] is None
    assert documented_command("createdb")[1] is None


async def test_a_documented_backup_restores_with_the_documented_commands(
    database: str, tmp_path: Path
) -> None:
    migrated = alcove(database, tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    created = alcove(
        database,
        tmp_path,
        "therapist",
        "create",
        "--email",
        EMAIL,
        "--name",
        NAME,
        "--timezone",
        "Europe/Berlin",
        stdin="a long enough password\n",
    )
    assert created.returncode == 0, created.stderr
    assert await therapists(database) == [(EMAIL, NAME)]

    dump = tmp_path / "backup.dump"
    dumped = run_documented("pg_dump", database, dump)
    assert dumped.returncode == 0, dumped.stderr
    assert dump.read_bytes().startswith(b"PGDMP"), "not pg_dump's custom format"

    # Restore as documented: drop the database, create it empty, pg_restore into it.
    for tool in ("dropdb", "createdb", "pg_restore"):
        result = run_documented(tool, database, dump)
        assert result.returncode == 0, f"{tool}: {result.stderr!r}"
    assert await therapists(database) == [(EMAIL, NAME)]

    # The restored schema is the migrated one: nothing left for `alcove migrate` to do
    # (the `up -d` after a restore runs it).
    again = alcove(database, tmp_path, "migrate")
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr

    # pg_restore --clean --if-exists alone also replaces a database that still has the schema.
    await execute(database, "UPDATE therapists SET display_name = 'Changed After The Backup'")
    over = run_documented("pg_restore", database, dump)
    assert over.returncode == 0, over.stderr
    assert await therapists(database) == [(EMAIL, NAME)]
