"""Configuration, read once at start-up from ``ISA_BROKER_*`` environment variables
(and ``KAFKA_BOOTSTRAP_SERVERS``). Library code receives a ``Settings`` object and never
reads the environment itself.

``Settings`` is the whole list of what an operator can set. A few settings are global (the
mode, the folders, the public URL); the others sit in groups, one per part of the broker
that reads them (``groups``):

- ``kafka``: the cluster, the clients' security and the topics (``settings.kafka.*``);
- ``store``: the database (``settings.store.url``);
- ``http``: the gateway's address and its limits per request and client;
- ``tokens``: access tokens, client assertions and the rotation of the signing keys;
- ``oidc``: an external OpenID Connect provider;
- ``webhooks``: which URLs webhooks may reach, timeouts and retries;
- ``delivery``: the router's relay, reconciler and dispatcher;
- ``timeliness``: short notice, DIP reminders and the scheduler;
- ``audit``: sealing and checkpoints of the disclosure log, and retention notices.

Grouping is for the code only: each setting keeps its flat name, ``ISA_BROKER_<NAME>``, in
the environment, as a keyword of ``Settings(...)`` and in error messages (``environment``).

A package rather than one module because the list outgrew one sitting: ``groups`` is the
list itself, each setting with its range, its default and the checks of that setting alone;
``environment`` maps the flat names to the groups and back; this module holds the whole,
the checks that involve several groups or the mode, and, in ``production_problems``, what
production refuses. The settings table of ``docs/operations.md`` names exactly the variables
read (tests/core/test_core_settings.py checks it)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from . import environment
from .groups import (
    DELIVERY_SIGNING_GRACE_DAYS,
    AuditSettings,
    DeliverySettings,
    HttpSettings,
    KafkaSettings,
    OidcSettings,
    StoreSettings,
    TimelinessSettings,
    TokenSettings,
    WebhookSettings,
)

__all__ = [
    "DELIVERY_SIGNING_GRACE_DAYS",
    "DEV_MODE_WARNING",
    "NEVER_ALLOWLISTED_IN_PRODUCTION",
    "REPO_ROOT",
    "AuditSettings",
    "DeliverySettings",
    "HttpSettings",
    "KafkaSettings",
    "OidcSettings",
    "Settings",
    "StoreSettings",
    "TimelinessSettings",
    "TokenSettings",
    "WebhookSettings",
]

REPO_ROOT = Path(__file__).resolve().parents[3]

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
    from ..errors import ConfigurationError
    from ..store.connection import verified_tls

    try:
        return verified_tls(url)
    except ConfigurationError:
        return False


#: the router's endpoint in production, unless set
ROUTER_PORT = 8001


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    mode: Literal["dev", "production"] = Field(
        default="production",
        description="production (the default) refuses every unsafe setting (see "
        "production_problems); dev, for one machine only, accepts them and says so at "
        "start-up. isa-broker dev and demo always run in dev mode.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: 'LEVEL logger: message' lines; json: one JSON object per line, "
        "with the ids a message names as fields (services.core.logs).",
    )
    data_dir: Path = Field(default=REPO_ROOT / ".data")
    policies_dir: Path = Field(default=REPO_ROOT / "isa_policies")
    schemas_dir: Path = Field(default=REPO_ROOT / "schemas")
    policies_reload_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="How often to look for changed agreement files (0: never reload).",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The gateway's external base URL; token issuer and audience derive from it.",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    timeliness: TimelinessSettings = Field(default_factory=TimelinessSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then the environment by the flat names; no .env file
        and no secrets folder (neither is configured, and both would read nested names)."""
        return init_settings, environment.FlatEnvironment(settings_cls)

    @classmethod
    def variable_for(cls, loc: tuple[int | str, ...]) -> str | None:
        """The environment variable a validation error's location names."""
        return environment.variable_for(cls, loc)

    @model_validator(mode="before")
    @classmethod
    def _flat_names_into_groups(cls, data: Any) -> Any:
        """``Settings(kafka_sasl_username=...)``: a flat keyword goes to its group, over
        what the environment gave that group."""
        if isinstance(data, dict):
            return environment.nest(cls, data)
        return data

    @model_validator(mode="after")
    def _defaults_follow_the_mode(self) -> Settings:
        """The defaults that depend on the mode, or on another setting, once it is known."""
        production = self.mode == "production"
        if "allow_http" not in self.webhooks.model_fields_set:
            self.webhooks.allow_http = not production
        if "router_port" not in self.http.model_fields_set:
            self.http.router_port = ROUTER_PORT if production else 0
        kafka = self.kafka
        if "replication_factor" not in kafka.model_fields_set:
            kafka.replication_factor = 3 if production else 1
        if "min_insync_replicas" not in kafka.model_fields_set:
            kafka.min_insync_replicas = 2 if kafka.replication_factor >= 3 else 1
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        oidc = self.oidc
        if oidc.jwks_url is not None and oidc.issuer is None:
            raise ValueError("ISA_BROKER_OIDC_JWKS_URL needs ISA_BROKER_OIDC_ISSUER")
        web = ("https://", "http://")
        if oidc.issuer is not None:
            # OpenID Connect Discovery 1.0 s2, RFC 8414 s2: a URL with a host and no query or
            # fragment, to which discovery appends its well-known path
            scheme_and_rest = oidc.issuer.split("://", 1)
            if not oidc.issuer.startswith(web) or not scheme_and_rest[1].split("/")[0]:
                raise ValueError("ISA_BROKER_OIDC_ISSUER must be an http(s) URL with a host")
            if "?" in oidc.issuer or "#" in oidc.issuer:
                raise ValueError("ISA_BROKER_OIDC_ISSUER must have no query or fragment")
        if oidc.jwks_url is not None and not oidc.jwks_url.startswith(web):
            raise ValueError("ISA_BROKER_OIDC_JWKS_URL must be an http(s) URL")
        if oidc.issuer is not None and oidc.issuer.rstrip("/") == self.issuer:
            raise ValueError(
                "ISA_BROKER_OIDC_ISSUER must be an external provider, not this gateway"
            )
        if oidc.subject_claim not in ("client_id", "azp", "sub"):
            raise ValueError("ISA_BROKER_OIDC_SUBJECT_CLAIM must be client_id, azp or sub")
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        kafka = self.kafka
        protocol = kafka.security_protocol
        problems = []
        if protocol != "PLAINTEXT" and kafka.bootstrap_servers is None:
            problems.append(
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_BOOTSTRAP_SERVERS "
                "(the embedded broker speaks PLAINTEXT on loopback only)"
            )
        sasl = protocol.startswith("SASL_")
        if sasl:
            if kafka.sasl_mechanism is None:
                problems.append(f"{protocol} needs ISA_BROKER_KAFKA_SASL_MECHANISM")
            if not kafka.sasl_username:
                problems.append(f"{protocol} needs ISA_BROKER_KAFKA_SASL_USERNAME")
            if kafka.sasl_password is None and kafka.sasl_password_file is None:
                problems.append(
                    f"{protocol} needs ISA_BROKER_KAFKA_SASL_PASSWORD_FILE "
                    "(or ISA_BROKER_KAFKA_SASL_PASSWORD)"
                )
        elif kafka.sasl_mechanism or kafka.sasl_username:
            problems.append(
                f"ISA_BROKER_KAFKA_SASL_* settings are given but "
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL is {protocol}: use SASL_SSL"
            )
        if kafka.sasl_password is not None and kafka.sasl_password_file is not None:
            problems.append(
                "give ISA_BROKER_KAFKA_SASL_PASSWORD or ISA_BROKER_KAFKA_SASL_PASSWORD_FILE, "
                "not both"
            )
        if (kafka.ssl_cert_file is None) != (kafka.ssl_key_file is None):
            problems.append(
                "ISA_BROKER_KAFKA_SSL_CERT_FILE and ISA_BROKER_KAFKA_SSL_KEY_FILE go together"
            )
        tls_files = (kafka.ssl_ca_file, kafka.ssl_cert_file, kafka.ssl_key_file)
        if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and any(tls_files):
            problems.append(
                f"ISA_BROKER_KAFKA_SSL_* files are given but ISA_BROKER_KAFKA_SECURITY_PROTOCOL "
                f"is {protocol}: use SSL or SASL_SSL"
            )
        rf, isr = kafka.replication_factor, kafka.min_insync_replicas
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
        kafka, oidc = self.kafka, self.oidc
        problems = []
        if _inside(self.data_dir, REPO_ROOT):
            problems.append(
                f"ISA_BROKER_DATA_DIR ({self.data_dir}) is inside the code folder "
                f"({REPO_ROOT}): keys and the store belong in a protected folder of their own"
            )
        for item in self.webhooks.allowed_networks:
            net = ipaddress.ip_network(item)
            if any(net.overlaps(bad) for bad in NEVER_ALLOWLISTED_IN_PRODUCTION):
                problems.append(
                    f"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: {item} reaches loopback, "
                    "link-local (cloud metadata) or unspecified addresses"
                )
        if self.tokens.leeway_seconds > 60:
            problems.append("ISA_BROKER_TOKEN_LEEWAY_SECONDS must be at most 60 in production")
        if self.http.rate_limit_per_minute == 0 or self.http.token_rate_limit_per_minute == 0:
            problems.append("rate limits cannot be disabled (0) in production")
        if oidc.jwks_url is not None and not oidc.jwks_url.startswith("https://"):
            problems.append("ISA_BROKER_OIDC_JWKS_URL must be https:// in production")
        if (
            oidc.issuer is not None
            and oidc.jwks_url is None
            and not oidc.issuer.startswith("https://")
        ):
            problems.append(
                "ISA_BROKER_OIDC_ISSUER must be https:// in production: its discovery "
                "document names the keys tokens are checked with"
            )
        if self.webhooks.allow_http:
            problems.append("ISA_BROKER_WEBHOOK_ALLOW_HTTP must be false in production")
        if not self.public_url.startswith("https://"):
            problems.append("ISA_BROKER_PUBLIC_URL must be https:// in production")
        if kafka.bootstrap_servers is None:
            problems.append("KAFKA_BOOTSTRAP_SERVERS is required in production")
        if not kafka.encryption:
            problems.append("ISA_BROKER_KAFKA_ENCRYPTION must be true in production")
        database_url = self.store.url
        if database_url is None or not database_url.startswith("postgresql"):
            problems.append("ISA_BROKER_DATABASE_URL must name PostgreSQL in production")
        elif not _verified_tls(database_url):
            problems.append(
                "ISA_BROKER_DATABASE_URL must ask for verified TLS in production "
                "(sslmode=verify-full, with sslrootcert=CA file unless the system trusts "
                "the server's CA), or connect through a local socket (?host=/run/postgresql)"
            )
        if kafka.security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            problems.append(
                f"ISA_BROKER_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol} is "
                "refused in production: use SASL_SSL (or SSL with a client certificate)"
            )
        elif kafka.security_protocol == "SSL" and kafka.ssl_cert_file is None:
            problems.append(
                "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=SSL needs a client certificate in "
                "production (ISA_BROKER_KAFKA_SSL_CERT_FILE and _KEY_FILE), or the broker "
                "cannot tell who is connecting"
            )
        if kafka.replication_factor < 2:
            problems.append(
                "ISA_BROKER_KAFKA_REPLICATION_FACTOR=1 is refused in production: a topic "
                "on one broker is lost with it (use 3)"
            )
        elif not 2 <= kafka.min_insync_replicas < kafka.replication_factor:
            problems.append(
                f"ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS must be at least 2 and below the "
                f"replication factor ({kafka.replication_factor}) in production, so that one "
                "broker can be lost without losing or refusing writes"
            )
        return problems

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
        """The store's URL: the setting, or the SQLite file in the data directory."""
        if self.store.url:
            return self.store.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'isa-broker.db'}"

    @property
    def agreements_dir(self) -> Path:
        return self.policies_dir / "agreements"

    @property
    def parties_file(self) -> Path:
        return self.policies_dir / "parties.yaml"
