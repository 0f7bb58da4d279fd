"""What readiness reports when a dependency is missing: the dependency and the kind of
failure, never a password."""

from __future__ import annotations

from pathlib import Path

from services.core.childproc import free_port
from services.core.health import liveness, readiness
from services.core.kafka.publisher import InMemoryPublisher
from services.core.settings import DEV_MODE_WARNING
from services.core.store import Store


async def test_an_unreachable_postgresql_and_kafka_make_it_not_ready() -> None:
    store = Store(f"postgresql+asyncpg://isa:synthetic-secret@127.0.0.1:{free_port()}/isa")
    publisher = InMemoryPublisher()
    publisher.fail_next(1)
    try:
        found = await readiness(store, publisher, {"consumer": lambda: False})
    finally:
        await store.aclose()
    assert not found.ready
    assert found.checks["store"].startswith("the store is unreachable (")
    assert found.checks["kafka"].startswith("Kafka did not answer")
    assert found.checks["consumer"] == "the consumer has stopped"
    body = found.body()
    assert body["status"] == "not_ready"
    assert "synthetic-secret" not in str(body)


async def test_a_fresh_store_is_not_ready_until_migrated(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    try:
        before = await readiness(store, InMemoryPublisher())
        await store.init_schema()
        after = await readiness(store, InMemoryPublisher(), {"consumer": lambda: True})
    finally:
        await store.aclose()
    assert before.checks == {
        "store": "schema migrations are pending (run 'isa-broker db upgrade')",
        "kafka": "ok",
    }
    assert after.ready and after.body() == {
        "status": "ready",
        "checks": {"store": "ok", "kafka": "ok", "consumer": "ok"},
    }


def test_liveness_says_when_unsafe_settings_are_accepted() -> None:
    assert liveness("production") == {"status": "ok", "mode": "production"}
    assert liveness("dev") == {"status": "ok", "mode": "dev", "warning": DEV_MODE_WARNING}
