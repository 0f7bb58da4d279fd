"""Kafka client security settings become the clients' connection arguments
(services.core.kafka.config), without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from services.core.errors import ConfigurationError
from services.core.kafka.config import KafkaProfile, KafkaSecurity
from services.core.settings import Settings
from tests.certs import TestCA

CLUSTER = "kafka-1.example:9093,kafka-2.example:9093"


def _secret(tmp_path: Path, value: str = "synthetic-kafka-pw") -> Path:
    path = tmp_path / "kafka-password"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_plaintext_by_default() -> None:
    security = KafkaSecurity.from_settings(Settings())
    assert security.client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_reads_the_password_file_and_verifies_host_names(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=CLUSTER,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=ca.cert_file,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="isa-broker",
        kafka_sasl_password_file=_secret(tmp_path),
    )
    security = KafkaSecurity.from_settings(settings)
    kw = KafkaProfile(CLUSTER, embedded=False, security=security).producer_kwargs()
    assert kw["bootstrap_servers"] == CLUSTER
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "isa-broker"
    assert kw["sasl_plain_password"] == "synthetic-kafka-pw"
    assert kw["enable_idempotence"] is True and kw["acks"] == "all"
    context = kw["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    # the consumers connect the same way
    consumer = KafkaProfile(CLUSTER, embedded=False, security=security).consumer_kwargs("g")
    assert consumer["ssl_context"] is context
    # the password is never shown
    assert "synthetic-kafka-pw" not in repr(security)


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    client = ca.client("isa-broker")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=CLUSTER,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca.cert_file,
        kafka_ssl_cert_file=client.cert_file,
        kafka_ssl_key_file=client.key_file,
    )
    kw = KafkaSecurity.from_settings(settings).client_kwargs()
    assert kw["security_protocol"] == "SSL" and "sasl_mechanism" not in kw
    assert isinstance(kw["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"kafka_sasl_password_file": "MISSING"},
            "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE: cannot read",
        ),
        ({"kafka_sasl_password_file": "EMPTY"}, "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE: "),
        ({"kafka_ssl_ca_file": "MISSING"}, "ISA_BROKER_KAFKA_SSL_CA_FILE: cannot load"),
        ({"kafka_ssl_ca_file": "GARBAGE"}, "ISA_BROKER_KAFKA_SSL_CA_FILE: cannot load"),
    ],
)
def test_unreadable_files_are_named_at_start_up(
    tmp_path: Path, changes: dict[str, str], problem: str
) -> None:
    files = {
        "MISSING": tmp_path / "absent",
        "EMPTY": tmp_path / "empty",
        "GARBAGE": tmp_path / "garbage.pem",
    }
    files["EMPTY"].write_text("\n")
    files["GARBAGE"].write_text("not a certificate synthetic-kafka-pw\n")
    values: dict[str, object] = {
        "KAFKA_BOOTSTRAP_SERVERS": CLUSTER,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": "isa-broker",
        "kafka_sasl_password_file": _secret(tmp_path),
    }
    values.update({k: files[v] for k, v in changes.items()})
    with pytest.raises(ConfigurationError) as info:
        KafkaSecurity.from_settings(Settings(**values))  # type: ignore[arg-type]
    assert problem in str(info.value)
    assert "synthetic-kafka-pw" not in str(info.value)
