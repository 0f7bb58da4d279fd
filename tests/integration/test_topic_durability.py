"""Topics as a cluster needs them, on the real three-broker Apache Kafka cluster: created
with the replication factor and min.insync.replicas of the settings, and read back at
start-up, where a topic that cannot survive the loss of one broker is reported (dev) or
refused (production)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.core.errors import ConfigurationError
from services.core.kafka.topics import all_topics, describe_durability
from services.core.runtime import Runtime
from tests.conftest import KafkaTarget, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster]


async def _runtime(tmp_path: Path, kafka: KafkaTarget, prefix: str) -> Runtime:
    settings = make_settings(tmp_path, **{**kafka.settings, "kafka_topic_prefix": prefix})
    return await Runtime.create(settings, kafka.bootstrap_servers, embedded=False)


async def test_topics_are_created_to_survive_a_broker_loss(
    tmp_path: Path, kafka: KafkaTarget, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await _runtime(tmp_path, kafka, f"dur{uuid.uuid4().hex[:8]}")
    try:
        names = await runtime.ensure_topics()
        held = await describe_durability(runtime.kafka, names)
        assert {(d.replicas, d.min_insync_replicas) for d in held} == {(3, 2)}
        assert all(d.problem is None for d in held)
        with caplog.at_level(logging.ERROR):
            await runtime.check_topics()
        assert "cannot survive" not in caplog.text
    finally:
        await runtime.aclose()


@pytest.mark.parametrize(
    ("replicas", "min_insync", "problem"),
    [
        (1, 1, "1 replica, lost with its broker"),
        (3, 3, "min.insync.replicas=3 with 3 replicas, so writes stop when one broker is down"),
        (3, 1, "min.insync.replicas=1, so an acknowledged write may be on one broker only"),
    ],
)
async def test_an_existing_weak_topic_is_reported_in_dev_and_refused_in_production(
    tmp_path: Path,
    kafka: KafkaTarget,
    caplog: pytest.LogCaptureFixture,
    replicas: int,
    min_insync: int,
    problem: str,
) -> None:
    prefix = f"weak{uuid.uuid4().hex[:8]}"
    weak = f"{prefix}.release-notice.v1"
    admin = AIOKafkaAdminClient(**kafka.client)
    await admin.start()
    try:  # made before the broker starts, by hand or by an older configuration
        await admin.create_topics(
            [NewTopic(weak, 1, replicas, topic_configs={"min.insync.replicas": str(min_insync)})]
        )
    finally:
        await admin.close()
    runtime = await _runtime(tmp_path, kafka, prefix)
    try:
        await runtime.ensure_topics()  # leaves the existing topic as it is
        with caplog.at_level(logging.ERROR):
            await runtime.check_topics()
        assert f"!!! topics that cannot survive the loss of one broker: {weak}: {problem}" in (
            caplog.text
        )
        others = [
            t for t in all_topics(runtime.kafka, runtime.engine.policies.parties) if t != weak
        ]
        assert not any(t in caplog.text for t in others)
        runtime.settings = runtime.settings.model_copy(update={"mode": "production"})
        with pytest.raises(ConfigurationError, match=f"{weak}: .*Refused in production"):
            await runtime.check_topics()
    finally:
        await runtime.aclose()
