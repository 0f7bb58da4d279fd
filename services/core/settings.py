"""Configuration, read once at start-up from ``ISA_BROKER_*`` environment variables
(and ``KAFKA_BOOTSTRAP_SERVERS``). Library code receives a ``Settings`` object and never
reads the environment itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ISA_BROKER_", extra="ignore")

    mode: Literal["dev", "production"] = "dev"
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
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The gateway's external base URL; token issuer and audience derive from it.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    access_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    client_assertion_max_age_seconds: int = Field(default=300, ge=30, le=3600)

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
        default=True, description="Allow plain http:// webhook URLs (dev only)."
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

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _delays_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= d <= 86400 for d in v):
            raise ValueError("each delay must be between 0 and 86400 seconds")
        return v

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.mode == "production":
            problems = []
            if self.webhook_allow_http:
                problems.append("ISA_BROKER_WEBHOOK_ALLOW_HTTP must be false in production")
            if not self.public_url.startswith("https://"):
                problems.append("ISA_BROKER_PUBLIC_URL must be https:// in production")
            if self.kafka_bootstrap_servers is None:
                problems.append("KAFKA_BOOTSTRAP_SERVERS is required in production")
            if self.database_url is None or not self.database_url.startswith("postgresql"):
                problems.append("ISA_BROKER_DATABASE_URL must name PostgreSQL in production")
            if problems:
                raise ValueError("; ".join(problems))
        return self

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
