"""Client settings in one place, so the embedded broker's limits are worked around here and
nowhere else, and an Apache Kafka cluster gets the stronger settings.

Tansu 0.6 (the embedded broker) fails aiokafka's idempotent producer (InitProducerId), makes
JoinGroup wait half the session timeout, and adds ~130 ms per hop at the default
``fetch_max_wait_ms`` of 500."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KafkaProfile:
    bootstrap_servers: str
    embedded: bool
    topic_prefix: str = "isa"
    partitions: int = 3
    replication_factor: int = 1

    def producer_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "acks": "all",
            "linger_ms": 5,
            "request_timeout_ms": 15000,
        }
        if not self.embedded:
            kw["enable_idempotence"] = True
        return kw

    def consumer_kwargs(self, group_id: str) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
        }
        if self.embedded:
            kw.update(session_timeout_ms=3000, heartbeat_interval_ms=1000, fetch_max_wait_ms=20)
        else:
            kw.update(session_timeout_ms=30000, heartbeat_interval_ms=3000, fetch_max_wait_ms=100)
        return kw

    def topic(self, message_type: str) -> str:
        return f"{self.topic_prefix}.{message_type}.v1"

    def agency_topic(self, party: str) -> str:
        """Where the router publishes ``party``'s projections for a ``kafka`` subscription."""
        return f"{self.topic_prefix}.agency.{party}.v1"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter.v1"
