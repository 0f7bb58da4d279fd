"""Configuration, read once at start-up from ``ISA_BROKER_*`` environment variables
(and ``KAFKA_BOOTSTRAP_SERVERS``). Library code receives a ``Settings`` object and never
reads the environment itself.

One module on purpose (about 650 lines): one ``Settings`` class is the whole list of what an
operator can set, each with its range, its default and, in ``production_problems``, what
production refuses; the settings table of ``docs/operations.md`` follows it entry by entry."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Networks an operator may not open to webhooks in production: loopback, link-local (where
#: cloud metadata services live) and the unspecified addresses.
NEVER_ALLOWLISTED_IN_PRODUCTION = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("::/128"),
)


#: how long a retired delivery-signing key stays published, unless set
DELIVERY_SIGNING_GRACE_DAYS = 30


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it, once both are resolved."""
    return path.resolve().is_relative_to(folder.resolve())


#: printed at start-up by a gateway or router in dev mode, and shown by its health endpoint
DEV_MODE_WARNING = (
    "DEVELOPMENT MODE (ISA_BROKER_MODE=dev): unsafe settings are accepted (plain-http "
    "webhooks, SQLite, plaintext Kafka, fictional demo agreements). Never use it with real "
    "people's data."
)


def _verified_tls(url: str) -> bool:
    from .errors import ConfigurationError
    from .store.connection import verified_tls

    try:
        return verified_tls(url)
    except ConfigurationError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ISA_BROKER_", extra="ignore")

    mode: Literal["dev", "production"] = Field(
        default="production",
        description="production (the default) refuses every unsafe setting (see "
        "production_problems); dev, for one machine only, accepts them and says so at "
        "start-up. isa-broker dev and demo always run in dev mode.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    data_dir: Path = Field(default=REPO_ROOT / ".data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://host/db. "
        "Default: SQLite file isa-broker.db in the data directory.",
    )
    policies_dir: Path = Field(default=REPO_ROOT / "isa_policies")
    schemas_dir: Path = Field(default=REPO_ROOT / "schemas")

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "ISA_BROKER_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="An external Kafka cluster. Unset: the embedded Tansu broker is started.",
    )
    kafka_compat: Literal["auto", "apache", "tansu"] = Field(
        default="auto",
        description="Client settings profile. auto: tansu for the embedded broker, apache for "
        "an external cluster. Set tansu when KAFKA_BOOTSTRAP_SERVERS names a Tansu broker.",
    )
    kafka_topic_prefix: str = "isa"
    kafka_partitions: int = Field(default=3, ge=1, le=1000)
    kafka_replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Replication factor of each topic the broker creates. Default: 3 in "
        "production (where 1 is refused), 1 in dev mode.",
    )
    kafka_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="min.insync.replicas of each topic the broker creates: with acks=all, a "
        "write is acknowledged only once this many replicas hold it. Default: 2 when the "
        "replication factor is 3 or more, else 1. Production needs at least 2 and fewer than "
        "the replication factor, so that one broker can be lost without losing or refusing "
        "writes.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How the Kafka clients connect: SASL_SSL (TLS and SASL), SSL (TLS, with a "
        "client certificate for mutual TLS), or in dev mode PLAINTEXT / SASL_PLAINTEXT. "
        "Production refuses PLAINTEXT and SASL without TLS.",
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CAs that sign the brokers' certificates. Default: the "
        "system's trust store. Broker host names are always verified.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None,
        description="PEM client certificate chain, for mutual TLS (with the key file).",
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password_file: Path | None = Field(
        default=None, description="File holding the password of an encrypted client key."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = Field(
        default=None,
        description="SASL mechanism, with SASL_SSL (or SASL_PLAINTEXT in dev mode).",
    )
    kafka_sasl_username: str | None = Field(
        default=None, max_length=255, description="SASL user name (the broker's principal)."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password. Prefer ISA_BROKER_KAFKA_SASL_PASSWORD_FILE; never both.",
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="File holding the SASL password (its first line)."
    )
    kafka_manage_agency_access: bool | None = Field(
        default=None,
        description="Manage a Kafka principal per agency with a kafka subscription (SCRAM "
        "credential issued once, ACLs to read its own topic and consumer groups only), "
        "removed when its last kafka subscription goes or the agency is disabled. Default: on "
        "for an external cluster reached with SASL_SSL, off otherwise.",
    )
    kafka_encryption: bool = Field(
        default=True,
        description="Encrypt the records of the message-type and dead-letter topics "
        "(AES-256-GCM envelope encryption; keys under <data_dir>/keys/kek/). Off only for "
        "debugging; refused in production.",
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The gateway's external base URL; token issuer and audience derive from it.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    access_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    client_assertion_max_age_seconds: int = Field(default=300, ge=30, le=3600)
    token_leeway_seconds: int = Field(
        default=30,
        ge=0,
        le=300,
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
    oidc_issuer: str | None = Field(
        default=None,
        description="Also accept access tokens from this external OpenID Connect provider "
        "(its `iss`; https in production). Its JWKS is found by OpenID discovery at "
        "<issuer>/.well-known/openid-configuration. The token's subject claim must name a "
        "client registered with --external-subject; the client's party and granted scopes "
        "apply.",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="The external provider's JWKS URL (https in production), used instead of "
        "the jwks_uri found by discovery. Unset: discovery.",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="The `aud` external tokens must carry. Default: the gateway's own audience.",
    )
    oidc_subject_claim: str = Field(
        default="client_id",
        max_length=64,
        description="The external token claim naming the client: client_id, azp or sub.",
    )
    oidc_algorithms: tuple[str, ...] = Field(
        default=("RS256", "PS256", "ES256"),
        min_length=1,
        description="Signature algorithms accepted from the external provider (never none or HS*).",
    )
    oidc_jwks_cache_seconds: float = Field(
        default=300,
        ge=10,
        le=86400,
        description="How long the external JWKS (and the discovery document) is cached. An "
        "unknown kid triggers a refresh, at most once per oidc_jwks_min_refresh_seconds.",
    )
    oidc_jwks_min_refresh_seconds: float = Field(
        default=30,
        ge=1,
        le=300,
        description="Least time between two fetches of the external JWKS caused by tokens "
        "naming an unknown kid (the provider has rotated its keys), so that a flood of such "
        "tokens cannot flood the provider. Also the longest wait between retries while the "
        "provider cannot be reached.",
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

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_schedule: tuple[float, ...] = Field(
        default=(0, 5, 300, 1800, 7200, 18000, 36000, 36000),
        min_length=1,
        max_length=50,
        description="Delays in seconds, as a JSON list: the first attempt is made at once, "
        "entry n (counting from 0) is the wait before attempt n+1, and the list's length is the "
        "number of attempts before the delivery is dead-lettered. Delays get +/-20% jitter; a "
        "longer Retry-After from the receiver wins.",
    )
    webhook_allow_http: bool = Field(
        default=True,
        description="Allow plain http:// webhook URLs. Default: true in dev mode, false in "
        "production (where true is refused).",
    )
    webhook_allowed_networks: tuple[str, ...] = Field(
        default=(),
        max_length=100,
        description="Networks (CIDR, JSON list) webhooks may reach although they are "
        "loopback, private, link-local or otherwise not public. Empty: public addresses only. "
        "Loopback, link-local and unspecified networks are refused in production.",
    )
    webhook_secret_overlap_seconds: int = Field(
        default=86400,
        ge=0,
        le=7 * 86400,
        description="After a webhook signing secret is rotated, deliveries carry signatures "
        "by both the old and the new secret for this long (default 24 h) unless the rotation "
        "asks for another overlap.",
    )
    webhook_max_in_flight: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Requests in flight at once to one subscription's endpoint, so that one "
        "slow receiver cannot hold up the others.",
    )
    endpoint_disable_after_seconds: float = Field(
        default=5 * 86400,
        ge=60,
        description="A webhook endpoint that has failed every attempt for this long is "
        "disabled; its pending deliveries are dead-lettered and its owner and the senders "
        "are told on their inbox feed.",
    )
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
    policies_reload_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="How often to look for changed agreement files (0: never reload).",
    )
    audit_seal_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How often each router seals new disclosure-log entries into the "
        "tamper-evident log (0: this process never seals; run 'isa-broker audit seal').",
    )
    audit_seal_settle_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="A gap in the disclosure log's sequence numbers is taken for a rolled-back "
        "transaction, and sealed past, once the entry after it is this old; until then the "
        "sealer waits for the missing entry to commit. Longer than any store transaction.",
    )
    retention_notify_seconds: float = Field(
        default=3600.0,
        ge=0,
        le=86400,
        description="How often each router sends the deletion notices that have fallen due "
        "(disclosures past the retention their agreement sets; 0: never, run "
        "'isa-broker retention notify' instead).",
    )
    audit_checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Least time between two signed checkpoints of the disclosure log; one is "
        "signed only when new entries were sealed.",
    )

    @field_validator("dip_reminder_days")
    @classmethod
    def _reminder_days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 365 for d in v):
            raise ValueError("each reminder point must be between 1 and 365 days before the STL")
        if len(set(v)) != len(v):
            raise ValueError("reminder points must not repeat")
        return v

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _delays_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= d <= 86400 for d in v):
            raise ValueError("each delay must be between 0 and 86400 seconds")
        return v

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as e:
                raise ValueError(f"{item!r} is not a network in CIDR form: {e}") from e
        return v

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}
        bad = sorted(set(v) - allowed)
        if bad:
            raise ValueError(
                f"not accepted: {bad}; use asymmetric algorithms from {sorted(allowed)}"
            )
        return v

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_jwks_url is not None and self.oidc_issuer is None:
            raise ValueError("ISA_BROKER_OIDC_JWKS_URL needs ISA_BROKER_OIDC_ISSUER")
        web = ("https://", "http://")
        if self.oidc_issuer is not None:
            # OpenID Connect Discovery 1.0 s2, RFC 8414 s2: a URL with a host and no query or
            # fragment, to which discovery appends its well-known path
            scheme_and_rest = self.oidc_issuer.split("://", 1)
            if not self.oidc_issuer.startswith(web) or not scheme_and_rest[1].split("/")[0]:
                raise ValueError("ISA_BROKER_OIDC_ISSUER must be an http(s) URL with a host")
            if "?" in self.oidc_issuer or "#" in self.oidc_issuer:
                raise ValueError("ISA_BROKER_OIDC_ISSUER must have no query or fragment")
        if self.oidc_jwks_url is not None and not self.oidc_jwks_url.startswith(web):
            raise ValueError("ISA_BROKER_OIDC_JWKS_URL must be an http(s) URL")
        if self.oidc_issuer is not None and self.oidc_issuer.rstrip("/") == self.issuer:
            raise ValueError(
                "ISA_BROKER_OIDC_ISSUER must be an external provider, not this gateway"
            )
        if self.oidc_subject_claim not in ("client_id", "azp", "sub"):
            raise ValueError("ISA_BROKER_OIDC_SUBJECT_CLAIM must be client_id, azp or sub")
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        protocol = self.kafka_security_protocol
        problems = []
        if protocol != "PLAINTEXT" and self.kafka_bootstrap_servers is None:
            problems.append(
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_BOOTSTRAP_SERVERS "
                "(the embedded broker speaks PLAINTEXT on loopback only)"
            )
        sasl = protocol.startswith("SASL_")
        if sasl:
            if self.kafka_sasl_mechanism is None:
                problems.append(f"{protocol} needs ISA_BROKER_KAFKA_SASL_MECHANISM")
            if not self.kafka_sasl_username:
                problems.append(f"{protocol} needs ISA_BROKER_KAFKA_SASL_USERNAME")
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                problems.append(
                    f"{protocol} needs ISA_BROKER_KAFKA_SASL_PASSWORD_FILE "
                    "(or ISA_BROKER_KAFKA_SASL_PASSWORD)"
                )
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username:
            problems.append(
                f"ISA_BROKER_KAFKA_SASL_* settings are given but "
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL is {protocol}: use SASL_SSL"
            )
        if self.kafka_sasl_password is not None and self.kafka_sasl_password_file is not None:
            problems.append(
                "give ISA_BROKER_KAFKA_SASL_PASSWORD or ISA_BROKER_KAFKA_SASL_PASSWORD_FILE, "
                "not both"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            problems.append(
                "ISA_BROKER_KAFKA_SSL_CERT_FILE and ISA_BROKER_KAFKA_SSL_KEY_FILE go together"
            )
        tls_files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and any(tls_files):
            problems.append(
                f"ISA_BROKER_KAFKA_SSL_* files are given but ISA_BROKER_KAFKA_SECURITY_PROTOCOL "
                f"is {protocol}: use SSL or SASL_SSL"
            )
        rf, isr = self.kafka_replication, self.kafka_min_insync
        if isr > rf:
            problems.append(
                f"ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS ({isr}) cannot exceed the replication "
                f"factor ({rf}): no write would ever be acknowledged"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.mode == "production":
            if "webhook_allow_http" not in self.model_fields_set:
                self.webhook_allow_http = False  # the default follows the mode
            problems = self.production_problems()
            if problems:
                if "mode" not in self.model_fields_set:
                    problems.append(
                        "(production rules apply because ISA_BROKER_MODE is not set; a "
                        "development system on one machine sets ISA_BROKER_MODE=dev)"
                    )
                raise ValueError("; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """Every setting that production mode refuses, each named with what is wrong.
        (The agreement files are checked when they are loaded: production refuses a set
        marked ``fictional``, such as the demo partnership shipped in ``isa_policies/``.)"""
        problems = []
        if _inside(self.data_dir, REPO_ROOT):
            problems.append(
                f"ISA_BROKER_DATA_DIR ({self.data_dir}) is inside the code folder "
                f"({REPO_ROOT}): keys and the store belong in a protected folder of their own"
            )
        for item in self.webhook_allowed_networks:
            net = ipaddress.ip_network(item)
            if any(net.overlaps(bad) for bad in NEVER_ALLOWLISTED_IN_PRODUCTION):
                problems.append(
                    f"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: {item} reaches loopback, "
                    "link-local (cloud metadata) or unspecified addresses"
                )
        if self.token_leeway_seconds > 60:
            problems.append("ISA_BROKER_TOKEN_LEEWAY_SECONDS must be at most 60 in production")
        if self.rate_limit_per_minute == 0 or self.token_rate_limit_per_minute == 0:
            problems.append("rate limits cannot be disabled (0) in production")
        if self.oidc_jwks_url is not None and not self.oidc_jwks_url.startswith("https://"):
            problems.append("ISA_BROKER_OIDC_JWKS_URL must be https:// in production")
        if (
            self.oidc_issuer is not None
            and self.oidc_jwks_url is None
            and not self.oidc_issuer.startswith("https://")
        ):
            problems.append(
                "ISA_BROKER_OIDC_ISSUER must be https:// in production: its discovery "
                "document names the keys tokens are checked with"
            )
        if self.webhook_allow_http:
            problems.append("ISA_BROKER_WEBHOOK_ALLOW_HTTP must be false in production")
        if not self.public_url.startswith("https://"):
            problems.append("ISA_BROKER_PUBLIC_URL must be https:// in production")
        if self.kafka_bootstrap_servers is None:
            problems.append("KAFKA_BOOTSTRAP_SERVERS is required in production")
        if not self.kafka_encryption:
            problems.append("ISA_BROKER_KAFKA_ENCRYPTION must be true in production")
        if self.database_url is None or not self.database_url.startswith("postgresql"):
            problems.append("ISA_BROKER_DATABASE_URL must name PostgreSQL in production")
        elif not _verified_tls(self.database_url):
            problems.append(
                "ISA_BROKER_DATABASE_URL must ask for verified TLS in production "
                "(sslmode=verify-full, with sslrootcert=CA file unless the system trusts "
                "the server's CA), or connect through a local socket (?host=/run/postgresql)"
            )
        if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            problems.append(
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} is "
                "refused in production: use SASL_SSL (or SSL with a client certificate)"
            )
        elif self.kafka_security_protocol == "SSL" and self.kafka_ssl_cert_file is None:
            problems.append(
                "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=SSL needs a client certificate in "
                "production (ISA_BROKER_KAFKA_SSL_CERT_FILE and _KEY_FILE), or the broker "
                "cannot tell who is connecting"
            )
        if self.kafka_replication < 2:
            problems.append(
                "ISA_BROKER_KAFKA_REPLICATION_FACTOR=1 is refused in production: a topic "
                "on one broker is lost with it (use 3)"
            )
        elif not 2 <= self.kafka_min_insync < self.kafka_replication:
            problems.append(
                f"ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS must be at least 2 and below the "
                f"replication factor ({self.kafka_replication}) in production, so that one "
                "broker can be lost without losing or refusing writes"
            )
        return problems

    @property
    def manages_agency_access(self) -> bool:
        """Whether the broker manages the agencies' Kafka principals and ACLs."""
        if self.kafka_manage_agency_access is not None:
            return self.kafka_manage_agency_access and self.kafka_bootstrap_servers is not None
        # credentials are issued over TLS only (services.core.kafka.acls)
        return self.kafka_bootstrap_servers is not None and self.kafka_security_protocol == (
            "SASL_SSL"
        )

    @property
    def kafka_replication(self) -> int:
        """The replication factor topics are created with (the setting, or its default)."""
        if self.kafka_replication_factor is not None:
            return self.kafka_replication_factor
        return 3 if self.mode == "production" else 1

    @property
    def kafka_min_insync(self) -> int:
        """The ``min.insync.replicas`` topics are created with (the setting, or its default)."""
        if self.kafka_min_insync_replicas is not None:
            return self.kafka_min_insync_replicas
        return 2 if self.kafka_replication >= 3 else 1

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def token_audience(self) -> str:
        return self.issuer + "/v1"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/oauth/token"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'isa-broker.db'}"

    @property
    def agreements_dir(self) -> Path:
        return self.policies_dir / "agreements"

    @property
    def parties_file(self) -> Path:
        return self.policies_dir / "parties.yaml"
