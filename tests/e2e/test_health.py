"""Liveness and readiness of a running gateway and a router started on its own, over real
HTTP: ready while the store and Kafka answer, not ready (503, naming what is wrong) while a
schema migration is pending or Kafka is gone, alive throughout."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from services.core.childproc import free_port
from services.core.kafka.embedded import EmbeddedBroker
from services.core.store.migrate import head
from services.system import System, settings_for_local

pytestmark = pytest.mark.integration


async def ready_state(http: httpx.AsyncClient, base: str) -> tuple[int, dict[str, str]]:
    r = await http.get(base + "/readyz")
    return r.status_code, r.json()["checks"]


async def wait_for(http: httpx.AsyncClient, base: str, status: int) -> dict[str, str]:
    """The checks once ``/readyz`` answers ``status`` (within 20 s)."""
    code, checks = 0, {}
    for _ in range(100):
        code, checks = await ready_state(http, base)
        if code == status:
            return checks
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base}/readyz stayed {code}: {checks}")


def set_schema_revision(database: Path, revision: str) -> None:
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))


async def test_ready_while_its_dependencies_answer_and_not_while_one_is_missing(
    tmp_path: Path,
) -> None:
    broker = EmbeddedBroker(port=free_port()).start()
    router_port = free_port()
    settings = settings_for_local(
        tmp_path / "d",
        kafka_compat="tansu",
        kafka_bootstrap_servers=broker.bootstrap_servers,
        router_port=router_port,
    )
    gateway = router = None
    try:
        gateway = await System(settings).start(with_router=False)
        router = await System(settings).start(with_gateway=False)
        bases = {"gateway": settings.public_url, "router": f"http://127.0.0.1:{router_port}"}
        async with httpx.AsyncClient(timeout=10) as http:
            checks = await wait_for(http, bases["gateway"], 200)
            assert checks == {"store": "ok", "kafka": "ok"}
            checks = await wait_for(http, bases["router"], 200)
            assert checks == {"store": "ok", "kafka": "ok", "consumer": "ok", "dispatcher": "ok"}
            for base in bases.values():
                assert (await http.get(base + "/readyz")).json()["status"] == "ready"
                # both serve the metrics too (services.core.metrics)
                scraped = await http.get(base + "/metrics")
                assert scraped.status_code == 200
                assert "\nisa_broker_store_up 1.0\n" in scraped.text

            # a rolling upgrade: the code expects a newer schema than the database has
            database = settings.data_dir / "isa-broker.db"
            set_schema_revision(database, "0007")
            for base in bases.values():
                checks = await wait_for(http, base, 503)
                assert checks["store"] == (
                    "schema migrations are pending (run 'isa-broker db upgrade')"
                )
                assert checks["kafka"] == "ok"
                assert (await http.get(base + "/livez")).json()["status"] == "ok"
            set_schema_revision(database, head())
            for base in bases.values():
                await wait_for(http, base, 200)

            # Kafka goes away: not ready, still alive
            broker.stop()
            for base in bases.values():
                checks = await wait_for(http, base, 503)
                assert checks["kafka"].startswith("Kafka did not answer")
                assert checks["store"] == "ok"
                live = await http.get(base + "/livez")
                assert live.status_code == 200 and live.json()["mode"] == "dev"
            assert (await http.get(bases["gateway"] + "/healthz")).status_code == 200
    finally:
        for system in (router, gateway):
            if system is not None:
                await system.stop()
        broker.stop()
