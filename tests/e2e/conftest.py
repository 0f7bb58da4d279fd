"""Fixtures shared by the end-to-end tests: a whole embedded system (gateway, router, store)
on the session's broker, and demo webhook receivers that record every request."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.core.kafka.embedded import free_port
from services.demo.receivers import Receivers
from services.system import System, settings_for_local
from tests.conftest import KAFKA_COMPAT, KafkaTarget


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    """Records every request unchecked: the tests check the signatures themselves."""
    r = await Receivers(verify=False).start()
    yield r
    await r.stop()


@pytest.fixture
def env(tmp_path: Path, kafka_bootstrap: str) -> dict[str, str]:
    """The environment of a gateway and a router started as processes of their own
    (``tests.parts``), in dev mode, sharing the session's broker and a SQLite store."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ISA_BROKER_", "OTEL_"))}
    return {
        **clean,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ISA_BROKER_KAFKA_COMPAT": KAFKA_COMPAT,
        "ISA_BROKER_KAFKA_TOPIC_PREFIX": f"sep{uuid.uuid4().hex[:8]}",
        "ISA_BROKER_MODE": "dev",
        "ISA_BROKER_DATA_DIR": str(tmp_path / "data"),
        "ISA_BROKER_PORT": str(port),
        "ISA_BROKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ISA_BROKER_RELAY_POLL_SECONDS": "0.2",
        # the test's webhook receiver listens on this machine
        "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }


@pytest.fixture
def processes(env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes a test starts; terminated (then killed) at its end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
async def system(tmp_path: Path, kafka: KafkaTarget) -> AsyncIterator[System]:
    """Loopback is allow-listed for webhooks (``settings_for_local``): the receivers are here.
    On the broker of the ``kafka`` fixture: modules marked ``both_brokers`` run on the Apache
    Kafka cluster too."""
    settings = settings_for_local(
        tmp_path / "data",
        **kafka.settings,
        kafka_topic_prefix=f"e2e{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.2,
        webhook_retry_schedule=(0, 0.05, 0.1),
    )
    s = await System(settings).start()
    yield s
    await s.stop()
