"""Topic creation at start-up (and again by the reconciler, since the embedded broker forgets
its topics when it restarts): one topic per message type, the dead-letter topic, and one
topic per registered party for agencies that consume their projections from Kafka.

On a real cluster each topic is created with the profile's replication factor and
``min.insync.replicas``, and :func:`check_durability` reads back what the cluster actually
holds: a topic made earlier by hand, by an older configuration or by the broker's automatic
creation may not survive the loss of one broker. A topic survives it when it has at least two
replicas and its ``min.insync.replicas`` is below its replica count (writes with
``acks=all`` go on with one broker down) and at least 2 (an acknowledged write is on two
brokers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from ..errors import Unavailable
from ..messages import MESSAGE_TYPES
from .config import KafkaProfile

TOPIC_ALREADY_EXISTS = 36
MIN_INSYNC = "min.insync.replicas"


def all_topics(profile: KafkaProfile, parties: Iterable[str] = ()) -> list[str]:
    return (
        [profile.topic(name) for name in MESSAGE_TYPES]
        + [profile.dead_letter_topic]
        + [profile.agency_topic(p) for p in sorted(parties)]
    )


def _new_topic(profile: KafkaProfile, name: str) -> NewTopic:
    if profile.embedded:  # the embedded broker has one node and ignores topic configs
        return NewTopic(name, profile.partitions, profile.replication_factor)
    return NewTopic(
        name,
        profile.partitions,
        profile.replication_factor,
        topic_configs={MIN_INSYNC: str(profile.min_insync_replicas)},
    )


async def ensure_topics(profile: KafkaProfile, parties: Iterable[str] = ()) -> list[str]:
    """Create any missing topic; an existing one is left as it is. Returns the topic names."""
    names = all_topics(profile, parties)
    admin = AIOKafkaAdminClient(**profile.client_kwargs())
    try:
        await admin.start()
        response = await admin.create_topics([_new_topic(profile, n) for n in names])
    except KafkaError as e:
        raise Unavailable(
            f"cannot create topics on {profile.bootstrap_servers}: {type(e).__name__}"
        ) from e
    finally:
        await admin.close()
    for topic, code, message in _errors(response):
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise Unavailable(f"creating topic {topic} failed: error {code} {message}")
    return names


@dataclass(frozen=True)
class TopicDurability:
    """What the cluster holds for one topic: the fewest replicas of any of its partitions and
    its effective ``min.insync.replicas``."""

    topic: str
    replicas: int
    min_insync_replicas: int

    @property
    def problem(self) -> str | None:
        """Why this topic cannot survive the loss of one broker, or None."""
        r, m = self.replicas, self.min_insync_replicas
        if r < 2:
            return f"{self.topic}: {r} replica, lost with its broker"
        if m >= r:
            return (
                f"{self.topic}: min.insync.replicas={m} with {r} replicas, so writes stop "
                "when one broker is down"
            )
        if m < 2:
            return (
                f"{self.topic}: min.insync.replicas={m}, so an acknowledged write may be on "
                "one broker only"
            )
        return None


async def describe_durability(profile: KafkaProfile, names: list[str]) -> list[TopicDurability]:
    """Read back the replica count and ``min.insync.replicas`` of ``names`` from the cluster."""
    admin = AIOKafkaAdminClient(**profile.client_kwargs())
    try:
        await admin.start()
        topics = await admin.describe_topics(names)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, configs={MIN_INSYNC: ""}) for n in names]
        )
    except KafkaError as e:
        raise Unavailable(
            f"cannot read the topics' configuration on {profile.bootstrap_servers}: "
            f"{type(e).__name__}"
        ) from e
    finally:
        await admin.close()
    replicas: dict[str, int] = {}
    for topic in topics:
        partitions = topic.get("partitions") or []
        if topic.get("error_code", 0) or not partitions:
            raise Unavailable(
                f"cannot describe topic {topic.get('topic')}: error {topic.get('error_code')}"
            )
        replicas[topic["topic"]] = min(len(p["replicas"]) for p in partitions)
    min_insync: dict[str, int] = {}
    for response in configs:
        for resource in _as_object(response)["resources"]:
            if resource["error_code"]:
                raise Unavailable(
                    f"cannot read the configuration of topic {resource['resource_name']}: "
                    f"error {resource['error_code']} {resource['error_message']}"
                )
            for entry in resource["config_entries"]:
                if entry["config_names"] == MIN_INSYNC:
                    min_insync[resource["resource_name"]] = int(entry["config_value"])
    return [TopicDurability(n, replicas.get(n, 0), min_insync.get(n, 1)) for n in names]


def _as_object(response: Any) -> dict[str, Any]:
    obj: dict[str, Any] = response.to_object()
    return obj


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((topic, code, message))
    return out
