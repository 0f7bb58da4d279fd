"""Everything a running service needs, built once from :class:`Settings`: the store, the ISA
engine, the key store and the Kafka profile. Gateway and router both take a ``Runtime``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .clock import Clock, utc_now
from .crypto.at_rest import SigningKeysAtRest, reseal_all
from .crypto.envelope import Envelope
from .crypto.keys import KeyStore
from .crypto.signing_keys import RotationPolicy
from .errors import ConfigurationError
from .isa import IsaEngine, load_policies
from .kafka.agency_access import AgencyAccess
from .kafka.config import KafkaProfile, KafkaSecurity
from .kafka.encryption import TopicEncryption
from .settings import Settings
from .store import Store

log = logging.getLogger("isa_broker.runtime")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    engine: IsaEngine
    keys: KeyStore
    kafka: KafkaProfile
    #: seals and opens the records of the shared topics (message types, dead letters)
    topic_encryption: TopicEncryption
    clock: Clock = field(default=utc_now)

    @classmethod
    async def create(cls, settings: Settings, bootstrap_servers: str, *, embedded: bool) -> Runtime:
        # the agreement files first: a refused set opens nothing
        engine = IsaEngine(
            load_policies(
                settings.policies_dir,
                settings.schemas_dir,
                refuse_fictional=settings.mode == "production",
            )
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = Store(settings.resolved_database_url, pool_size=settings.store.pool_size)
        try:
            return await cls._assemble(settings, store, engine, bootstrap_servers, embedded)
        except BaseException:
            await store.aclose()
            raise

    @classmethod
    async def _assemble(
        cls,
        settings: Settings,
        store: Store,
        engine: IsaEngine,
        bootstrap_servers: str,
        embedded: bool,
    ) -> Runtime:
        await store.init_schema()
        profile = KafkaProfile(
            bootstrap_servers=bootstrap_servers,
            embedded=embedded,
            topic_prefix=settings.kafka.topic_prefix,
            partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            min_insync_replicas=settings.kafka.min_insync_replicas,
            security=KafkaSecurity.from_settings(settings),
        )
        keys = KeyStore(
            settings.data_dir,
            RotationPolicy.from_settings(settings),
            delivery_rotation=RotationPolicy.for_delivery_signing(settings),
        )
        envelope = Envelope(keys.kek)
        encryption = TopicEncryption(envelope, enabled=settings.kafka.encryption)
        runtime = cls(settings, store, engine, keys, profile, encryption)
        # webhook signing keys stored in clear (before sealing existed) or under an older
        # key-encryption key are sealed under the current one
        await reseal_all(store, runtime.signing_keys_at_rest)
        return runtime

    @property
    def agency_access(self) -> AgencyAccess:
        """The agencies' Kafka principals and ACLs (services.core.kafka.agency_access)."""
        return AgencyAccess(
            self.store, self.kafka, manage=self.settings.kafka.manages_agency_access
        )

    @property
    def signing_keys_at_rest(self) -> SigningKeysAtRest:
        """Seals and opens the webhook signing keys stored with the subscriptions."""
        return SigningKeysAtRest(self.topic_encryption.envelope)

    async def aclose(self) -> None:
        await self.store.aclose()

    async def ensure_topics(self) -> list[str]:
        """Create any missing topic, agency topics of every registered party included."""
        from .kafka.topics import ensure_topics

        return await ensure_topics(self.kafka, list(self.engine.policies.parties))

    async def check_topics(self) -> None:
        """At start-up on a real cluster: every topic must survive the loss of one broker
        (services.core.kafka.topics). One that cannot is refused in production and reported
        loudly in dev mode."""
        if self.kafka.embedded:
            return
        from .kafka.topics import all_topics, describe_durability

        names = all_topics(self.kafka, list(self.engine.policies.parties))
        weak = [d.problem for d in await describe_durability(self.kafka, names) if d.problem]
        if not weak:
            return
        message = "topics that cannot survive the loss of one broker: " + "; ".join(
            p for p in weak if p
        )
        if self.settings.mode == "production":
            raise ConfigurationError(
                message + ". Refused in production: raise their replication factor and "
                "min.insync.replicas (kafka-reassign-partitions, kafka-configs), or delete them "
                "so that they are created again with ISA_BROKER_KAFKA_REPLICATION_FACTOR and "
                "ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS"
            )
        log.error("!!! %s", message)
