"""Fixtures shared by the end-to-end tests: a whole embedded system (gateway, router, store)
on the session's broker, and demo webhook receivers that record every request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.demo.receivers import Receivers
from services.system import System, settings_for_local
from tests.conftest import KafkaTarget


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    """Records every request unchecked: the tests check the signatures themselves."""
    r = await Receivers(verify=False).start()
    yield r
    await r.stop()


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
