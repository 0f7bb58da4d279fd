"""Client settings in one place, so the embedded broker's limits are worked around here and
nowhere else, and an Apache Kafka cluster gets the stronger settings.

Tansu 0.6 (the embedded broker) fails aiokafka's idempotent producer (InitProducerId), makes
JoinGroup wait half the session timeout, and adds ~130 ms per hop at the default
``fetch_max_wait_ms`` of 500.

Every client (producer, consumers, admin) connects with :meth:`KafkaProfile.client_kwargs`:
the bootstrap servers and the :class:`KafkaSecurity` of the settings (TLS with host name
verification, mutual TLS, SASL). Credentials are read from their files once, at start-up,
and never appear in a ``repr``, a log line or an error."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..settings import Settings


def _read_secret(path: Path, setting: str) -> str:
    """The first line of a credential file; the error names the setting and the path only."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigurationError(f"{setting}: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{setting}: {path} is not UTF-8 text") from None
    if not lines or not lines[0].strip():
        raise ConfigurationError(f"{setting}: {path} is empty")
    return lines[0].strip()


@dataclass(frozen=True)
class KafkaSecurity:
    """How the clients authenticate the brokers and themselves. PLAINTEXT by default (the
    embedded broker on loopback)."""

    protocol: str = "PLAINTEXT"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        password = None
        if settings.kafka.sasl_password is not None:
            password = settings.kafka.sasl_password.get_secret_value()
        elif settings.kafka.sasl_password_file is not None:
            password = _read_secret(
                settings.kafka.sasl_password_file, "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE"
            )
        key_password = None
        if settings.kafka.ssl_key_password_file is not None:
            key_password = _read_secret(
                settings.kafka.ssl_key_password_file, "ISA_BROKER_KAFKA_SSL_KEY_PASSWORD_FILE"
            )
        security = cls(
            protocol=settings.kafka.security_protocol,
            ca_file=settings.kafka.ssl_ca_file,
            cert_file=settings.kafka.ssl_cert_file,
            key_file=settings.kafka.ssl_key_file,
            key_password=key_password,
            sasl_mechanism=settings.kafka.sasl_mechanism,
            sasl_username=settings.kafka.sasl_username,
            sasl_password=password,
        )
        if security.uses_tls:
            security.ssl_context  # noqa: B018 - read the files now, not at the first connection
        return security

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2 or newer, the brokers' certificates checked against the CA file (or the
        system's trust store) and their host names verified; the client certificate if any."""
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
            )
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(
                f"ISA_BROKER_KAFKA_SSL_CA_FILE: cannot load CA certificates from "
                f"{self.ca_file} ({type(e).__name__})"
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file is not None and self.key_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, self.key_password)
            except (OSError, ssl.SSLError) as e:
                raise ConfigurationError(
                    f"ISA_BROKER_KAFKA_SSL_CERT_FILE / ISA_BROKER_KAFKA_SSL_KEY_FILE: cannot "
                    f"load the client certificate {self.cert_file} with its key "
                    f"{self.key_file} ({type(e).__name__})"
                ) from None
        return context

    def client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context
        if self.protocol.startswith("SASL_"):
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password
        return kw


@dataclass(frozen=True)
class KafkaProfile:
    bootstrap_servers: str
    embedded: bool
    topic_prefix: str = "isa"
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int = 1
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def client_kwargs(self) -> dict[str, Any]:
        """Connection settings for any aiokafka client: bootstrap servers and security."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security.client_kwargs()}

    def producer_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            **self.client_kwargs(),
            "acks": "all",
            "linger_ms": 5,
            "request_timeout_ms": 15000,
        }
        if not self.embedded:
            kw["enable_idempotence"] = True
        return kw

    def consumer_kwargs(self, group_id: str) -> dict[str, Any]:
        kw: dict[str, Any] = {
            **self.client_kwargs(),
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
