"""Topic creation at start-up (and again by the reconciler, since the embedded broker forgets
its topics when it restarts): one topic per message type, the dead-letter topic, and one
topic per registered party for agencies that consume their projections from Kafka."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from ..errors import Unavailable
from ..messages import MESSAGE_TYPES
from .config import KafkaProfile

TOPIC_ALREADY_EXISTS = 36


def all_topics(profile: KafkaProfile, parties: Iterable[str] = ()) -> list[str]:
    return (
        [profile.topic(name) for name in MESSAGE_TYPES]
        + [profile.dead_letter_topic]
        + [profile.agency_topic(p) for p in sorted(parties)]
    )


async def ensure_topics(profile: KafkaProfile, parties: Iterable[str] = ()) -> list[str]:
    """Create any missing topic; an existing one is left as it is. Returns the topic names."""
    names = all_topics(profile, parties)
    admin = AIOKafkaAdminClient(bootstrap_servers=profile.bootstrap_servers)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(n, profile.partitions, profile.replication_factor) for n in names]
        )
    except KafkaError as e:
        raise Unavailable(f"cannot create topics on {profile.bootstrap_servers}: {e}") from e
    finally:
        await admin.close()
    for topic, code, message in _errors(response):
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise Unavailable(f"creating topic {topic} failed: error {code} {message}")
    return names


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((topic, code, message))
    return out
