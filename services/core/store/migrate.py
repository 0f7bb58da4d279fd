"""Schema migrations (Alembic), run at start-up by every process and by
``isa-broker db upgrade``. Several processes may start together: PostgreSQL serialises them
with an advisory lock, SQLite with a lock file beside the database."""

from __future__ import annotations

import asyncio
import fcntl
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_ID = 0x15AB20  # pg_advisory_xact_lock key shared by every isa-broker process


def _config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision the code ships. Read once per process: the migration scripts
    ship with the code, and readiness asks at every probe (loading them is file I/O and
    imports, in the event loop)."""
    script = ScriptDirectory.from_config(_config(None))  # type: ignore[arg-type]
    revision = script.get_current_head()
    assert revision is not None  # noqa: S101
    return revision


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@asynccontextmanager
async def _file_lock(database: str | None) -> AsyncIterator[None]:
    """An exclusive lock on ``<database>.migrate.lock``, waited for in a thread so that the
    event loop (and whoever holds the lock in this process) keeps running."""
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as fh:
        await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_ID})
    command.upgrade(_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    sqlite_file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    async with _file_lock(sqlite_file), engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(current)
