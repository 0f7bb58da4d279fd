"""Schema migrations (Alembic), run at start-up by every process and by
``isa-broker db upgrade``. Several processes may start together: PostgreSQL serialises them
with an advisory lock, SQLite with a lock file beside the database.

Migrations only add (tests/test_migration_rule.py; docs/operations.md, Upgrades), so a
process of the previous version keeps working against a schema a newer version migrated:
during a rolling upgrade the database is at a revision this process's scripts do not know.
Such a process neither tries to migrate (Alembic would fail, "Can't locate revision") nor
reports migrations pending; it starts, and says so in its log."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("isa_broker.store")

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


@functools.cache
def known() -> frozenset[str]:
    """Every revision the code ships (read once per process, as :func:`head`)."""
    script = ScriptDirectory.from_config(_config(None))  # type: ignore[arg-type]
    return frozenset(r.revision for r in script.walk_revisions())


def newer_than_code(revision: str | None) -> bool:
    """Whether the database's ``revision`` is one this code does not know: a later version
    has migrated it."""
    return revision is not None and revision not in known()


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
    at = current(connection)
    if newer_than_code(at):
        log.warning(
            "the schema is at revision %s, newer than this version's newest (%s): "
            "running against it without migrating (migrations only add)",
            at,
            head(),
        )
        return
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
