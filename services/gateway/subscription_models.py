"""The request and response bodies of ``/v1/subscriptions`` (:mod:`.subscriptions`), in the
``SubscriptionCreate`` / ``SubscriptionPublic`` pattern; their descriptions are the OpenAPI
document's."""

from __future__ import annotations

import datetime as dt
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.core.kafka.acls import PartyCredential, party_group_prefix
from services.core.messages import MESSAGE_TYPES
from services.core.runtime import Runtime
from services.core.timeliness.filters import (
    SubscriptionFilters,
)
from services.core.webhooks.signing import SignatureScheme

MessageTypeName = Literal["release-notice", "licence-recall", "dip-breach"]
assert set(MessageTypeName.__args__) == set(MESSAGE_TYPES)  # type: ignore[attr-defined]  # noqa: S101


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, examples=["https://vawg.example/isa-webhook"])

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        if parts.fragment:
            raise ValueError("must not have a fragment")
        return v


Channel = Literal["webhook", "inbox", "kafka"]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_types: list[MessageTypeName] = Field(min_length=1, max_length=len(MESSAGE_TYPES))
    channel: Channel = Field(
        default="webhook",
        description="webhook: signed POSTs to `webhook.url`; inbox: pulled with "
        "GET /v1/inbox; kafka: published to the agency's own topic (`kafka_topic`).",
    )
    webhook: Webhook | None = Field(default=None, validate_default=True)
    signature_scheme: SignatureScheme = Field(
        default="v1",
        description="Webhook only. v1: HMAC-SHA256 with a `whsec_` secret, returned once; "
        "v1a: ed25519, the broker keeps the secret key and returns the `whpk_` public key "
        "(Standard Webhooks, Signature scheme).",
    )
    encrypt: bool = Field(
        default=False,
        description="Webhook only: send each body as a compact JWE (`application/jose`) "
        "encrypted to the party's registered public key (POST /v1/encryption-keys), signed "
        "as usual over the JWE. Records on a Kafka topic are always encrypted so; either "
        "needs a registered key (422 encryption_key_required).",
    )

    filters: SubscriptionFilters | None = Field(
        default=None,
        description="Narrowing filters: only messages matching all of them are delivered. "
        "They can only narrow what the agreements allow; one that could never match for the "
        "caller under the agreements in force is refused (422 filter_never_matches).",
    )

    @field_validator("webhook")
    @classmethod
    def _webhook_iff_channel(cls, v: Webhook | None, info: ValidationInfo) -> Webhook | None:
        channel = info.data.get("channel", "webhook")
        if channel == "webhook" and v is None:
            raise ValueError("is required when channel is 'webhook'")
        if channel != "webhook" and v is not None:
            raise ValueError(f"must be absent when channel is {channel!r}")
        return v

    @field_validator("signature_scheme")
    @classmethod
    def _scheme_only_for_webhooks(cls, v: SignatureScheme, info: ValidationInfo) -> SignatureScheme:
        channel = info.data.get("channel", "webhook")
        if channel != "webhook":
            raise ValueError(f"must be absent when channel is {channel!r} (webhooks only)")
        return v

    @field_validator("encrypt")
    @classmethod
    def _encrypt_only_for_webhooks(cls, v: bool, info: ValidationInfo) -> bool:
        channel = info.data.get("channel", "webhook")
        if v and channel == "inbox":
            raise ValueError("must be false when channel is 'inbox' (pulled over the API)")
        return v


MAX_OVERLAP_SECONDS = 7 * 86400


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_OVERLAP_SECONDS,
        description="How long deliveries keep a signature by the previous key too. Default: "
        "the broker's webhook_secret_overlap_seconds (24 h unless configured); 0 stops the "
        "previous key at once.",
    )


class SubscriptionPublic(BaseModel):
    id: str
    message_types: list[str]
    channel: Channel
    webhook: Webhook | None = None
    kafka_topic: str | None = Field(
        default=None, description="For channel kafka: the topic the agency consumes."
    )
    status: Literal["active", "disabled"]
    status_reason: str | None = Field(
        default=None, description="Why the subscription was disabled (410 Gone, failing too long)."
    )
    created_at: dt.datetime
    signature_scheme: SignatureScheme | None = Field(
        default=None, description="For channel webhook: how deliveries are signed (v1 or v1a)."
    )
    public_key: str | None = Field(
        default=None,
        description="For v1a webhooks: the `whpk_` ed25519 public key to verify deliveries "
        "with. Not a secret: readable at any time.",
    )
    previous_secret_until: dt.datetime | None = Field(
        default=None,
        description="While a rotation's overlap runs: until when deliveries also carry a "
        "signature by the previous key.",
    )
    filters: SubscriptionFilters | None = Field(
        default=None, description="The narrowing filters, if any (null: everything permitted)"
    )
    encrypt: bool = Field(
        default=False,
        description="Deliveries are compact JWE encrypted to the party's current public key "
        "(always true for channel kafka).",
    )


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: SubscriptionFilters | None = Field(
        description="The new filters, replacing the old ones; null removes them. Refused "
        "(422 filter_never_matches) if one could never match under the agreements in force."
    )


class CohortChanged(BaseModel):
    subscription_id: str
    added: int = Field(description="Identifiers newly added (already present: not counted)")
    removed: int = Field(description="Identifiers removed (absent: not counted)")
    total: int = Field(description="Identifiers now in the cohort")


class CohortPublic(BaseModel):
    subscription_id: str
    total: int = Field(description="Identifiers in the cohort")
    members: list[str] = Field(
        description="One opaque handle per identifier (`cm_`), for reconciling counts and "
        "spotting changes. Identifiers are not stored in clear, so cannot be shown; the "
        "handles are particular to this subscription and are not the pseudonyms messages "
        "carry (so this API cannot be used to learn who a message is about)."
    )


class KafkaCredential(BaseModel):
    """The agency's own Kafka principal: SCRAM over SASL_SSL, allowed by the cluster to read
    its topic and consumer groups named ``<party>.<anything>``, nothing else."""

    username: str
    password: str = Field(description="Shown once (here only); the broker keeps no copy.")
    mechanism: str = Field(examples=["SCRAM-SHA-512"])
    topic: str
    group_prefix: str = Field(description="Name the agency's consumer groups with this prefix.")

    @classmethod
    def of(cls, credential: PartyCredential, runtime: Runtime) -> KafkaCredential:
        return cls(
            username=credential.username,
            password=credential.password,
            mechanism=str(credential.mechanism),
            topic=runtime.kafka.agency_topic(credential.party),
            group_prefix=party_group_prefix(credential.party),
        )


class SubscriptionCreated(SubscriptionPublic):
    secret: str | None = Field(
        default=None,
        description="For v1 webhooks: the `whsec_` signing secret, shown once (here only)",
    )
    kafka_credential: KafkaCredential | None = Field(
        default=None,
        description="For the party's first kafka subscription on a cluster whose principals "
        "the broker manages: the credential to consume its topic with, shown once (here only). "
        "POST /v1/kafka-credential issues a new one.",
    )


class SubscriptionSecretRotated(SubscriptionPublic):
    secret: str | None = Field(
        default=None,
        description="For v1 webhooks: the new `whsec_` signing secret, shown once (here only). "
        "For v1a the new public key is in `public_key`.",
    )
