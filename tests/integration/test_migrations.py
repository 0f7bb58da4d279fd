"""Migrations build the schema the code expects, on SQLite and PostgreSQL, and are safe to
run again and from several processes at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from services.core.store import Store, metadata
from services.core.store import tables as t
from services.core.store.migrate import _config, current, head

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
    env = {"ISA_BROKER_MODE": "dev", "ISA_BROKER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
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


async def test_existing_clients_are_given_the_timeliness_scopes(database_url: str) -> None:
    """0004: a client registered before it keeps working with the new endpoints; going back
    down takes exactly those scopes away again."""
    store = Store(database_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0003"))
            now = dt.datetime.now(dt.UTC)
            for client_id, scopes in (
                ("sender", ["publish:release-notice", "decisions:read"]),
                ("recipient", ["deliveries:read", "subscriptions:manage"]),
                ("operator", ["admin"]),
            ):
                await conn.execute(
                    sa.insert(t.clients).values(
                        client_id=client_id,
                        party="p",
                        scopes=scopes,
                        created_at=now,
                        disabled=False,
                    )
                )
        await store.init_schema()
        async with store.engine.connect() as conn:
            rows = dict(
                (await conn.execute(sa.select(t.clients.c.client_id, t.clients.c.scopes))).all()
            )
        assert sorted(rows["sender"]) == [
            "decisions:read",
            "duties:read",
            "messages:read",
            "publish:release-notice",
            "reports:read",
        ]
        assert sorted(rows["recipient"]) == [
            "deliveries:read",
            "duties:ack",
            "duties:read",
            "messages:read",
            "subscriptions:manage",
        ]
        assert rows["operator"] == ["admin", "messages:read"]
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0003"))
            rows = dict(
                (await conn.execute(sa.select(t.clients.c.client_id, t.clients.c.scopes))).all()
            )
        assert sorted(rows["sender"]) == ["decisions:read", "publish:release-notice"]
        assert rows["operator"] == ["admin"]
    finally:
        await store.aclose()


async def test_a_schema_migrated_by_a_newer_version_is_used_as_it_is(database_url: str) -> None:
    """A rolling upgrade: the new version has migrated the database to a revision this code
    does not ship. This process starts without trying to migrate (Alembic alone would fail,
    "Can't locate revision") and reports no migration pending, since migrations only add."""
    store = Store(database_url)
    try:
        await store.init_schema()
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zz-later'"))
        await store.init_schema()  # as a restart of a previous-version process does
        assert await store.schema_is_current()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(current) == "zz-later"  # left as the newer version set it
        # while a revision this code knows, but older than its newest, is a pending migration
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        assert not await store.schema_is_current()
    finally:
        await store.aclose()
