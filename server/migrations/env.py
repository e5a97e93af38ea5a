"""Alembic environment: runs migrations on a connection handed over by ``server.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from server import (
    models,  # noqa: F401  (registers the tables)
    worksheet_models,  # noqa: F401  (registers the worksheet tables)
)
from server.db import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `alcove migrate`, not the alembic command")
run_migrations(connection)
