"""Alembic environment: migrate the connection handed over by the store.

`app.stores.sql_engine.upgrade_schema` opens a transaction on the store's own (async)
engine and calls Alembic inside `AsyncConnection.run_sync`, so migrations never block the
event loop and run with the same connection settings (SQLite pragmas, write lock) as the
store. There is deliberately no URL-based mode: nothing here opens connections.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from app.stores.sql_tables import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError(
        "Parley migrations run through app.stores.sql_engine.upgrade_schema(), "
        "which passes an open connection in config.attributes['connection']."
    )
run_migrations(_connection)
