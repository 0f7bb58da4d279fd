"""The groups of settings, each the settings one part of the broker reads, with their
ranges, defaults and the checks that concern one setting alone.

Each field's alias is the setting's flat name, the one an operator sets as
``ISA_BROKER_<NAME>`` and the one an error names (``services.core.settings.environment``):
``kafka.sasl_password`` is ``ISA_BROKER_KAFKA_SASL_PASSWORD``. A group whose names share a
prefix gives it once with ``_prefixed``; a field whose name does not follow it gives its own
alias. Checks that involve several groups or the mode live on ``Settings``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: how long a retired delivery-signing key stays published, unless set
DELIVERY_SIGNING_GRACE_DAYS = 30


def _prefixed(prefix: str) -> Callable[[str], str]:
    """The alias generator of a group whose flat names all start with ``prefix``."""
    return lambda name: prefix + name


class SettingsGroup(BaseModel):
    """Settings that belong together, read through their flat names (the fields' aliases).
    Defaults are validated too, as ``BaseSettings`` does (``30`` is stored as ``30.0``)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class KafkaSettings(SettingsGroup):
    """The Kafka cluster, how the clients reach it, and the topics the broker creates."""

    model_config = ConfigDict(alias_generator=_prefixed("kafka_"))

    bootstrap_servers: str | None = Field(
        default=None,
        description="An external Kafka cluster. Unset: the embedded Tansu broker is started. "
        "Also read from KAFKA_BOOTSTRAP_SERVERS, which wins.",
    )
    compat: Literal["auto", "apache", "tansu"] = Field(
        default="auto",
        description="Client settings profile. auto: tansu for the embedded broker, apache for "
        "an external cluster. Set tansu when KAFKA_BOOTSTRAP_SERVERS names a Tansu broker.",
    )
    topic_prefix: str = "isa"
    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=10,
        description="Replication factor of each topic the broker creates. Default: 3 in "
        "production (where 1 is refused), 1 in dev mode (Settings fills it in).",
    )
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        le=10,
        description="min.insync.replicas of each topic the broker creates: with acks=all, a "
        "write is acknowledged only once this many replicas hold it. Default: 2 when the "
        "replication factor is 3 or more, else 1 (Settings fills it in). Production needs at "
        "least 2 and fewer than the replication factor, so that one broker can be lost "
        "without losing or refusing writes.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How the Kafka clients connect: SASL_SSL (TLS and SASL), SSL (TLS, with a "
        "client certificate for mutual TLS), or in dev mode PLAINTEXT / SASL_PLAINTEXT. "
        "Production refuses PLAINTEXT and SASL without TLS.",
    )
    ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CAs that sign the brokers' certificates. Default: the "
        "system's trust store. Broker host names are always verified.",
    )
    ssl_cert_file: Path | None = Field(
        default=None,
        description="PEM client certificate chain, for mutual TLS (with the key file).",
    )
    ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    ssl_key_password_file: Path | None = Field(
        default=None, description="File holding the password of an encrypted client key."
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = Field(
        default=None,
        description="SASL mechanism, with SASL_SSL (or SASL_PLAINTEXT in dev mode).",
    )
    sasl_username: str | None = Field(
        default=None, max_length=255, description="SASL user name (the broker's principal)."
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password. Prefer ISA_BROKER_KAFKA_SASL_PASSWORD_FILE; never both.",
    )
    sasl_password_file: Path | None = Field(
        default=None, description="File holding the SASL password (its first line)."
    )
    manage_agency_access: bool | None = Field(
        default=None,
        description="Manage a Kafka principal per agency with a kafka subscription (SCRAM "
        "credential issued once, ACLs to read its own topic and consumer groups only), "
        "removed when its last kafka subscription goes or the agency is disabled. Default: on "
        "for an external cluster reached with SASL_SSL, off otherwise.",
    )
    encryption: bool = Field(
        default=True,
        description="Encrypt the records of the message-type and dead-letter topics "
        "(AES-256-GCM envelope encryption; keys under <data_dir>/keys/kek/). Off only for "
        "debugging; refused in production.",
    )

    @property
    def manages_agency_access(self) -> bool:
        """Whether the broker manages the agencies' Kafka principals and ACLs."""
        if self.manage_agency_access is not None:
            return self.manage_agency_access and self.bootstrap_servers is not None
        # credentials are issued over TLS only (services.core.kafka.acls)
        return self.bootstrap_servers is not None and self.security_protocol == "SASL_SSL"


class StoreSettings(SettingsGroup):
    """The database holding messages, deliveries, duties and the disclosure log."""

    url: str | None = Field(
        default=None,
        alias="database_url",
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://host/db. "
        "Default: SQLite file isa-broker.db in the data directory.",
    )
    pool_size: int = Field(
        default=10,
        ge=1,
        le=100,
        alias="database_pool_size",
        description="PostgreSQL connections each gateway and router keeps open; as many "
        "again are opened for a burst and closed after it.",
    )


class HttpSettings(SettingsGroup):
    """The gateway's HTTP server and the limits it sets on each request and client."""

    host: str = "127.0.0.1"
    port: int = 8000
    router_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the router's own endpoint (/livez, /readyz) on ISA_BROKER_HOST, "
        "served by 'isa-broker router'. Default: 8001 in production, 0 (none) in dev mode.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=10 * 1024 * 1024,
        description="Largest request body accepted; larger bodies get 413 before being read.",
    )
    max_json_depth: int = Field(
        default=16, ge=4, le=64, description="Deepest nesting of a JSON body's arrays/objects."
    )
    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        le=1_000_000,
        description="Requests per minute per client (token bucket, bursts up to a tenth of a "
        "minute's allowance); over it, 429 with Retry-After. 0 disables (not in production).",
    )
    token_rate_limit_per_minute: int = Field(
        default=60,
        ge=0,
        le=100_000,
        description="Token requests per minute per client id and per remote address. 0 "
        "disables (not in production).",
    )
    inbox_max_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        le=120,
        description="Longest long-poll a GET /v1/inbox may ask for.",
    )
    idempotency_key_ttl_hours: int = Field(
        default=24,
        ge=1,
        le=720,
        description="How long an Idempotency-Key replays its first answer; after that it "
        "may be used again for a new message.",
    )


class TokenSettings(SettingsGroup):
    """Access tokens and client assertions, and the rotation of the keys that sign them
    (the delivery-signing keys rotate with the token-signing keys)."""

    access_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    client_assertion_max_age_seconds: int = Field(default=300, ge=30, le=3600)
    leeway_seconds: int = Field(
        default=30,
        ge=0,
        le=300,
        alias="token_leeway_seconds",
        description="Clock skew allowed when checking exp, nbf and iat of access tokens and "
        "client assertions. At most 60 in production.",
    )
    signing_key_max_age_days: float = Field(
        default=30,
        gt=0,
        le=365,
        description="The gateway's token-signing key is rotated when it is this old: a next "
        "key is generated and published in the JWKS `signing_key_publish_ahead_seconds` before "
        "it signs anything; the old key stays published until its last token has expired.",
    )
    signing_key_publish_ahead_seconds: int = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="How long a next signing key is published before first use, so that "
        "resource servers caching the JWKS see it first.",
    )
    delivery_signing_key_grace_days: float = Field(
        default=DELIVERY_SIGNING_GRACE_DAYS,
        ge=1,
        le=365,
        description="How long a retired delivery-signing key (it signs the records and "
        "webhook bodies encrypted to agencies) stays published at "
        "/.well-known/delivery-signing-keys.json, so that agencies can still verify what it "
        "signed: at least the agency topics' retention (the brokers' log.retention, 7 days "
        "in deploy/compose.yaml) plus the longest a delivery may be retried or replayed. "
        "These keys rotate with signing_key_max_age_days and "
        "signing_key_publish_ahead_seconds, like the token-signing keys.",
    )


class OidcSettings(SettingsGroup):
    """An external OpenID Connect provider whose access tokens are accepted too."""

    model_config = ConfigDict(alias_generator=_prefixed("oidc_"))

    issuer: str | None = Field(
        default=None,
        description="Also accept access tokens from this external OpenID Connect provider "
        "(its `iss`; https in production). Its JWKS is found by OpenID discovery at "
        "<issuer>/.well-known/openid-configuration. The token's subject claim must name a "
        "client registered with --external-subject; the client's party and granted scopes "
        "apply.",
    )
    jwks_url: str | None = Field(
        default=None,
        description="The external provider's JWKS URL (https in production), used instead of "
        "the jwks_uri found by discovery. Unset: discovery.",
    )
    audience: str | None = Field(
        default=None,
        description="The `aud` external tokens must carry. Default: the gateway's own audience.",
    )
    subject_claim: str = Field(
        default="client_id",
        max_length=64,
        description="The external token claim naming the client: client_id, azp or sub.",
    )
    algorithms: tuple[str, ...] = Field(
        default=("RS256", "PS256", "ES256"),
        min_length=1,
        description="Signature algorithms accepted from the external provider (never none or HS*).",
    )
    jwks_cache_seconds: float = Field(
        default=300,
        ge=10,
        le=86400,
        description="How long the external JWKS (and the discovery document) is cached. An "
        "unknown kid triggers a refresh, at most once per oidc_jwks_min_refresh_seconds.",
    )
    jwks_min_refresh_seconds: float = Field(
        default=30,
        ge=1,
        le=300,
        description="Least time between two fetches of the external JWKS caused by tokens "
        "naming an unknown kid (the provider has rotated its keys), so that a flood of such "
        "tokens cannot flood the provider. Also the longest wait between retries while the "
        "provider cannot be reached.",
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}
        bad = sorted(set(v) - allowed)
        if bad:
            raise ValueError(
                f"not accepted: {bad}; use asymmetric algorithms from {sorted(allowed)}"
            )
        return v


class WebhookSettings(SettingsGroup):
    """Webhook deliveries: which URLs may be reached, how each attempt is made and retried,
    and when a failing endpoint is given up."""

    model_config = ConfigDict(alias_generator=_prefixed("webhook_"))

    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    retry_schedule: tuple[float, ...] = Field(
        default=(0, 5, 300, 1800, 7200, 18000, 36000, 36000),
        min_length=1,
        max_length=50,
        description="Delays in seconds, as a JSON list: the first attempt is made at once, "
        "entry n (counting from 0) is the wait before attempt n+1, and the list's length is the "
        "number of attempts before the delivery is dead-lettered. Delays get +/-20% jitter; a "
        "longer Retry-After from the receiver wins.",
    )
    allow_http: bool = Field(
        default=True,
        description="Allow plain http:// webhook URLs. Default: true in dev mode, false in "
        "production (where true is refused; Settings fills it in).",
    )
    allowed_networks: tuple[str, ...] = Field(
        default=(),
        max_length=100,
        description="Networks (CIDR, JSON list) webhooks may reach although they are "
        "loopback, private, link-local or otherwise not public. Empty: public addresses only. "
        "Loopback, link-local and unspecified networks are refused in production.",
    )
    secret_overlap_seconds: int = Field(
        default=86400,
        ge=0,
        le=7 * 86400,
        description="After a webhook signing secret is rotated, deliveries carry signatures "
        "by both the old and the new secret for this long (default 24 h) unless the rotation "
        "asks for another overlap.",
    )
    max_in_flight: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Requests in flight at once to one subscription's endpoint, so that one "
        "slow receiver cannot hold up the others.",
    )
    endpoint_disable_after_seconds: float = Field(
        default=5 * 86400,
        ge=60,
        alias="endpoint_disable_after_seconds",
        description="A webhook endpoint that has failed every attempt for this long is "
        "disabled; its pending deliveries are dead-lettered and its owner and the senders "
        "are told on their inbox feed.",
    )

    @field_validator("retry_schedule")
    @classmethod
    def _delays_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= d <= 86400 for d in v):
            raise ValueError("each delay must be between 0 and 86400 seconds")
        return v

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as e:
                raise ValueError(f"{item!r} is not a network in CIDR form: {e}") from e
        return v


class DeliverySettings(SettingsGroup):
    """The router's loops: the outbox relay, the reconciler and the dispatcher."""

    priority_lane_reserved_slots: int = Field(
        default=8,
        ge=0,
        le=32,
        description="Of a router's 64 attempts in flight, this many are kept for the priority "
        "lane (licence recalls of people unlawfully at large), so a backlog of ordinary "
        "traffic cannot hold a recall back; 0 disables the reserve (priority deliveries are "
        "still attempted first).",
    )
    dispatch_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="How often the router looks for deliveries that have become due.",
    )
    relay_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    reconcile_after_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86400,
        description="An accepted message that the router has not routed this long after it "
        "was published is published again (the broker may have lost it). Repeats back off "
        "exponentially up to 64 times this.",
    )


class TimelinessSettings(SettingsGroup):
    """Notice periods, DIP reminders and the scheduler that fires deadlines."""

    short_notice_days: float = Field(
        default=2.0,
        ge=0,
        le=365,
        description="A release notice whose notice period (time from notification to the "
        "release date) is under this many days is flagged short notice.",
    )
    dip_reminder_days: tuple[int, ...] = Field(
        default=(7, 2),
        max_length=10,
        description="Reminders of an open DIP breach go to its responsible recipients this many "
        "days before its statutory time limit expires, as a JSON list.",
    )
    scheduler_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the router looks for deadlines and reminders that have fallen "
        "due (escalations, DIP reminders and expiries).",
    )

    @field_validator("dip_reminder_days")
    @classmethod
    def _reminder_days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 365 for d in v):
            raise ValueError("each reminder point must be between 1 and 365 days before the STL")
        if len(set(v)) != len(v):
            raise ValueError("reminder points must not repeat")
        return v


class AuditSettings(SettingsGroup):
    """The tamper-evident disclosure log (sealing, signed checkpoints) and the deletion
    notices sent when disclosures pass their retention."""

    model_config = ConfigDict(alias_generator=_prefixed("audit_"))

    seal_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How often each router seals new disclosure-log entries into the "
        "tamper-evident log (0: this process never seals; run 'isa-broker audit seal').",
    )
    seal_settle_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="A gap in the disclosure log's sequence numbers is taken for a rolled-back "
        "transaction, and sealed past, once the entry after it is this old; until then the "
        "sealer waits for the missing entry to commit. Longer than any store transaction.",
    )
    checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Least time between two signed checkpoints of the disclosure log; one is "
        "signed only when new entries were sealed.",
    )
    retention_notify_seconds: float = Field(
        default=3600.0,
        ge=0,
        le=86400,
        alias="retention_notify_seconds",
        description="How often each router sends the deletion notices that have fallen due "
        "(disclosures past the retention their agreement sets; 0: never, run "
        "'isa-broker retention notify' instead).",
    )
