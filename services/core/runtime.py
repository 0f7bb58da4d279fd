"""Everything a running service needs, built once from :class:`Settings`: the store, the ISA
engine, the key store and the Kafka profile. Gateway and router both take a ``Runtime``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from .crypto.keys import KeyStore
from .isa import IsaEngine, load_policies
from .kafka.config import KafkaProfile
from .messages import MESSAGE_TYPES
from .settings import Settings
from .store import Store

Clock = Callable[[], dt.datetime]

#: Information governance officers: read any decision. Never granted by default.
IG_AUDIT_SCOPE = "ig:audit"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    engine: IsaEngine
    keys: KeyStore
    kafka: KafkaProfile
    clock: Clock = field(default=utc_now)

    @classmethod
    async def create(cls, settings: Settings, bootstrap_servers: str, *, embedded: bool) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(settings.resolved_database_url)
        await store.init_schema()
        engine = IsaEngine(load_policies(settings.policies_dir, settings.schemas_dir))
        profile = KafkaProfile(
            bootstrap_servers=bootstrap_servers,
            embedded=embedded,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
        return cls(settings, store, engine, KeyStore(settings.data_dir), profile)

    async def aclose(self) -> None:
        await self.store.aclose()

    async def ensure_topics(self) -> list[str]:
        """Create any missing topic, agency topics of every registered party included."""
        from .kafka.topics import ensure_topics

        return await ensure_topics(self.kafka, list(self.engine.policies.parties))

    def default_scopes(self, party: str) -> list[str]:
        """Least privilege: publish scopes only for the message types the agreements let this
        party send; subscription and delivery scopes only if it is a recipient somewhere."""
        scopes: set[str] = set()
        for agreement in self.engine.policies.agreements:
            for flow in agreement.flows:
                if party in flow.senders:
                    scopes.update(f"publish:{mt}" for mt in flow.message_types)
                    scopes.add("decisions:read")
                if party in flow.recipients:
                    scopes.update({"subscriptions:manage", "deliveries:read"})
        return sorted(scopes)


ALL_SCOPES = sorted(
    [f"publish:{name}" for name in MESSAGE_TYPES]
    + ["subscriptions:manage", "deliveries:read", "decisions:read", IG_AUDIT_SCOPE]
)
