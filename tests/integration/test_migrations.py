"""Migrations build the schema the code expects, on SQLite and PostgreSQL, and are safe to
run again and from several processes at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from services.core.store import Store, metadata
from services.core.store.migrate import current, head

pytestmark = pytest.mark.integration


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    store = Store(database_url)
    try:
        await store.init_schema()
        await store.init_schema()  # a second run is a no-op
        async with store.engine.connect() as conn:
            assert await conn.run_sync(current) == head()
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"messages", "outbox", "deliveries", "audit", "alembic_version"} <= tables
    finally:
        await store.aclose()


async def test_concurrent_start_ups_migrate_once(database_url: str) -> None:
    stores = [Store(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.init_schema() for s in stores))
        async with stores[0].engine.connect() as conn:
            assert await conn.run_sync(current) == head()
    finally:
        for s in stores:
            await s.aclose()


def test_db_upgrade_command(tmp_path: Path) -> None:
    env = {"ISA_BROKER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "services.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"schema at revision {head()}" in out.stdout
    assert (tmp_path / "isa-broker.db").exists()
