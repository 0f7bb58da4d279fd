"""The three-node Apache Kafka test cluster (tests/kafka_cluster/cluster.py) does what the
product's tests rely on: SASL_SSL with SCRAM-SHA-512 and a verified certificate, ACLs that
let the product's principal work and refuse a principal without any, replication that keeps
accepting ``acks=all`` writes with one node down, and nodes that come back with their data."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import socket
import ssl
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.helpers import create_ssl_context
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import missing
from tests.kafka_cluster.cluster import (
    PRODUCT_USER,
    KafkaCluster,
    KafkaClusterError,
    kafka_prerequisites,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    reason = kafka_prerequisites()
    if reason:
        missing(reason)
    with KafkaCluster(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture
def whole(cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The cluster, with every node running again after the test."""
    yield cluster
    if not all(cluster.is_running(i) for i in cluster.node_ids):
        cluster.start_all()


@asynccontextmanager
async def admin_as(cluster: KafkaCluster, user: str = PRODUCT_USER) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(**cluster.aiokafka_kwargs(user))
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def topic(cluster: KafkaCluster) -> str:
    """A topic the product creates: one partition, three replicas, two of them in sync."""
    name = f"t{secrets.token_hex(5)}.harness"
    async with admin_as(cluster) as admin:
        new = NewTopic(name, 1, 3, topic_configs={"min.insync.replicas": "2"})
        response = await admin.create_topics([new])
    assert response.topic_errors[0][1] == 0, response
    return name


async def produce(cluster: KafkaCluster, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(
        **cluster.aiokafka_kwargs(), acks="all", enable_idempotence=True, request_timeout_ms=30000
    )
    await producer.start()
    try:
        for value in values:
            await asyncio.wait_for(producer.send_and_wait(topic, value), 60)
    finally:
        await producer.stop()


async def consume(cluster: KafkaCluster, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        **cluster.aiokafka_kwargs(),
        group_id=f"g{secrets.token_hex(4)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            record = await asyncio.wait_for(consumer.getone(), 60)
            values.append(record.value)
        await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def in_sync(cluster: KafkaCluster, topic: str) -> set[int]:
    async with admin_as(cluster) as admin:
        (described,) = await admin.describe_topics([topic])
    return set(described["partitions"][0]["isr"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.5)


def other_ca_context() -> ssl.SSLContext:
    """A client context that trusts a CA of its own, not the cluster's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return create_ssl_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())


def servers(cluster: KafkaCluster) -> list[tuple[str, int]]:
    return [(h, int(p)) for h, p in (s.split(":") for s in cluster.bootstrap_servers.split(","))]


# --- what the harness hands to tests -------------------------------------------------------


def test_prerequisites_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "")
    assert "java" in (kafka_prerequisites() or "")


def test_the_cluster_is_three_secured_nodes_on_loopback(cluster: KafkaCluster) -> None:
    assert cluster.node_ids == [1, 2, 3]
    assert [host for host, _ in servers(cluster)] == ["127.0.0.1"] * 3
    assert cluster.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    user, password = cluster.product_credentials
    assert user == PRODUCT_USER == "isa-broker" and len(password) >= 24
    for node_id in cluster.node_ids:
        assert cluster.is_running(node_id)
        assert b"Kafka Server started" in cluster.log_file(node_id).read_bytes()


def test_client_env_gives_the_product_its_settings(cluster: KafkaCluster) -> None:
    env = cluster.client_env()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == cluster.bootstrap_servers
    assert env["ISA_BROKER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["ISA_BROKER_KAFKA_SSL_CA_FILE"] == str(cluster.ca_file)
    assert env["ISA_BROKER_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["ISA_BROKER_KAFKA_SASL_USERNAME"] == "isa-broker"
    assert env["ISA_BROKER_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    secret = Path(env["ISA_BROKER_KAFKA_SASL_PASSWORD_FILE"])
    assert secret.read_text() == cluster.product_credentials[1]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


# --- security -------------------------------------------------------------------------------


async def test_the_product_creates_a_replicated_topic_and_round_trips(
    cluster: KafkaCluster, topic: str
) -> None:
    assert await in_sync(cluster, topic) == {1, 2, 3}
    async with admin_as(cluster) as admin:
        (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {entry[0]: entry[1] for entry in configs.resources[0][4]}
    assert entries["min.insync.replicas"] == "2"

    await produce(cluster, topic, b"one", b"two")
    assert await consume(cluster, topic, 2) == [b"one", b"two"]


async def test_a_wrong_password_is_refused(cluster: KafkaCluster) -> None:
    kwargs = cluster.aiokafka_kwargs()
    for host, port in servers(cluster):
        connection = AIOKafkaConnection(
            host,
            port,
            security_protocol="SASL_SSL",
            ssl_context=kwargs["ssl_context"],
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=PRODUCT_USER,
            sasl_plain_password="not-the-password",
        )
        with pytest.raises(SaslAuthenticationFailed):
            await connection.connect()
        # aiokafka starts the TLS close on the refusal without waiting for it; a socket still
        # closing when this test's event loop ends is reported as unclosed by a later test.
        await asyncio.wait_for(connection.close(), 60)


async def test_a_user_without_acls_is_refused_a_read(cluster: KafkaCluster, topic: str) -> None:
    user = f"nobody-{secrets.token_hex(3)}"
    cluster.add_user(user)  # returns once the user can log in on every node
    consumer = AIOKafkaConsumer(
        topic, **cluster.aiokafka_kwargs(user), auto_offset_reset="earliest"
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
            await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()


async def test_a_client_without_the_ca_fails_the_tls_handshake(cluster: KafkaCluster) -> None:
    for host, port in servers(cluster):
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(host, port, ssl=other_ca_context())

    producer = AIOKafkaProducer(**cluster.aiokafka_kwargs() | {"ssl_context": other_ca_context()})
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()


async def test_the_client_checks_the_brokers_host_name(cluster: KafkaCluster) -> None:
    context = create_ssl_context(cafile=str(cluster.ca_file))
    host, port = servers(cluster)[0]
    _, writer = await asyncio.open_connection(host, port, ssl=context)  # SAN 127.0.0.1
    writer.close()
    await writer.wait_closed()
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        await asyncio.open_connection(host, port, ssl=context, server_hostname="kafka.invalid")


# --- failures and restarts (each leaves every node running) ---------------------------------


async def test_acks_all_writes_survive_the_leaders_death_and_it_rejoins(
    whole: KafkaCluster, topic: str
) -> None:
    cluster = whole
    await produce(cluster, topic, b"before")
    leader = await cluster.leader_of(topic, 0)

    cluster.kill(leader)
    assert not cluster.is_running(leader)
    await produce(cluster, topic, b"with two of three")  # min.insync.replicas=2 still met
    assert await cluster.leader_of(topic, 0) != leader

    cluster.restart(leader)
    assert cluster.is_running(leader)

    async def all_in_sync() -> bool:
        return await in_sync(cluster, topic) == {1, 2, 3}

    await eventually(all_in_sync)
    assert await consume(cluster, topic, 2) == [b"before", b"with two of three"]


async def test_the_controller_role_moves_when_its_node_stops(whole: KafkaCluster) -> None:
    cluster = whole
    controller = await cluster.active_controller()
    assert controller in cluster.node_ids

    cluster.terminate(controller)  # SIGTERM: a controlled shutdown
    assert not cluster.is_running(controller)

    async def moved() -> bool:
        return await cluster.active_controller() not in (controller, -1)

    await eventually(moved)
    cluster.restart(controller)
    assert cluster.is_running(controller)


async def test_a_whole_cluster_restart_keeps_the_data(whole: KafkaCluster, topic: str) -> None:
    cluster = whole
    await produce(cluster, topic, b"kept")
    cluster.stop_all()
    assert not any(cluster.is_running(i) for i in cluster.node_ids)
    cluster.start_all()
    assert all(cluster.is_running(i) for i in cluster.node_ids)
    assert await consume(cluster, topic, 1) == [b"kept"]


def test_a_failed_start_shows_the_end_of_the_nodes_log(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    """A one-node cluster whose client port is taken cannot start."""
    single = KafkaCluster(tmp_path / "kafka", nodes=1, timeout=60)
    ((host, port),) = servers(single)
    with socket.socket() as taken:
        taken.bind((host, port))
        taken.listen()
        with pytest.raises(KafkaClusterError) as failed:
            single.start()
    message = str(failed.value)
    assert str(single.log_file(1)) in message
    assert "Address already in use" in message
    assert not single.is_running(1)
