"""Agency principals on a real Apache Kafka cluster (three KRaft nodes, SASL_SSL with
SCRAM-SHA-512, StandardAuthorizer): the product principal issues each party a credential
and grants its ACLs; the cluster then lets the party read its own topic with its own
groups, refuses everything else, and after revocation refuses the party's login."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from services.core.kafka.acl_wire import (
    AclBindingFilter,
    ScramCredentialInfo,
    ScramMechanism,
    ScramUser,
)
from services.core.kafka.acls import (
    AccessControlFailed,
    ClusterAccess,
    PartyCredential,
    grant_party,
    issue_party_credential,
    party_bindings,
    party_principal,
    revoke_party,
)
from services.core.kafka.config import KafkaProfile, KafkaSecurity
from tests.kafka_cluster.cluster import PRODUCT_USER, KafkaCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def cluster(apache_cluster: KafkaCluster) -> KafkaCluster:
    """The session's three-broker cluster; every test uses parties and a prefix of its own."""
    return apache_cluster


@pytest.fixture
def profile(cluster: KafkaCluster) -> KafkaProfile:
    """The product's settings, with a topic prefix of its own for each test."""
    security = KafkaSecurity(
        protocol="SASL_SSL",
        ca_file=cluster.ca_file,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=PRODUCT_USER,
        sasl_password=cluster.password(PRODUCT_USER),
    )
    prefix = f"isa-{secrets.token_hex(3)}"
    return KafkaProfile(
        cluster.bootstrap_servers, embedded=False, topic_prefix=prefix, security=security
    )


@pytest.fixture
async def access(profile: KafkaProfile) -> AsyncIterator[ClusterAccess]:
    async with ClusterAccess.connect(profile) as product_access:
        yield product_access


def new_party(role: str) -> str:
    return f"{role}-{secrets.token_hex(3)}"


def as_party(cluster: KafkaCluster, credential: PartyCredential) -> dict[str, Any]:
    """aiokafka settings of the agency: SCRAM-SHA-512 with the issued password over TLS."""
    return cluster.aiokafka_kwargs() | {
        "sasl_mechanism": credential.mechanism.value,
        "sasl_plain_username": credential.username,
        "sasl_plain_password": credential.password,
    }


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """``check()`` once it stops raising: credentials and ACLs reach every broker through
    the metadata log, a moment after the controller accepted them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, KafkaError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def log_in(server: str, kwargs: dict[str, Any]) -> None:
    """One SASL handshake with the broker at ``server``."""
    host, port = server.rsplit(":", 1)
    settings = {k: v for k, v in kwargs.items() if k != "bootstrap_servers"}
    connection = AIOKafkaConnection(host, int(port), request_timeout_ms=5000, **settings)
    try:
        await connection.connect()
    finally:
        # Wait for the TLS close: a socket still closing when the test's event loop ends is
        # reported as unclosed by a later test.
        await asyncio.wait_for(connection.close(), 60)


async def log_in_everywhere(cluster: KafkaCluster, kwargs: dict[str, Any]) -> None:
    for server in cluster.bootstrap_servers.split(","):
        await log_in(server, kwargs)


async def refused_everywhere(cluster: KafkaCluster, kwargs: dict[str, Any]) -> None:
    """Every broker refuses the login (raises AssertionError while one still accepts)."""
    for server in cluster.bootstrap_servers.split(","):
        try:
            await log_in(server, kwargs)
        except SaslAuthenticationFailed:
            continue
        raise AssertionError(f"{server} still accepts {kwargs['sasl_plain_username']}")


@contextlib.asynccontextmanager
async def consumer(topic: str, group: str, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    c = AIOKafkaConsumer(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kwargs,
    )
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def read_one(topic: str, group: str, kwargs: dict[str, Any]) -> bytes:
    async with consumer(topic, group, kwargs) as c:
        record = await asyncio.wait_for(c.getone(), 20)
        await c.commit()
        return bytes(record.value)


async def produce(topic: str, value: bytes, kwargs: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(acks="all", **kwargs)
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, value), 20)
    finally:
        await producer.stop()


async def create_topics(profile: KafkaProfile, *parties: str) -> None:
    admin = AIOKafkaAdminClient(**profile.client_kwargs())
    try:
        await admin.start()
        topics = [NewTopic(profile.agency_topic(p), 1, 3) for p in parties]
        response = await admin.create_topics(topics)
        assert [code for _, code, *_ in response.topic_errors] == [0] * len(parties)
    finally:
        await admin.close()


async def test_a_party_reads_its_own_topic_and_nothing_else(
    cluster: KafkaCluster,
    profile: KafkaProfile,
    access: ClusterAccess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # aiokafka logs every request it sends at DEBUG
    a, b = new_party("north"), new_party("south")
    await create_topics(profile, a, b)
    cred_a = await issue_party_credential(access, a)
    cred_b = await issue_party_credential(access, b)
    assert await grant_party(access, profile, a) == party_bindings(profile, a)
    await grant_party(access, profile, b)
    await grant_party(access, profile, a)  # again: nothing changes
    product = cluster.aiokafka_kwargs(PRODUCT_USER)
    for party in (a, b):
        await produce(profile.agency_topic(party), f"for {party}".encode(), product)

    async def bindings_of_a() -> None:
        held = await access.describe_acls(AclBindingFilter(principal=party_principal(a)))
        assert sorted(held, key=str) == sorted(party_bindings(profile, a), key=str)

    await eventually(bindings_of_a)
    assert await access.describe_scram_users([cred_a.username, cred_b.username, "nobody"]) == [
        ScramUser(u, (ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),))
        for u in sorted([cred_a.username, cred_b.username])
    ]

    party_a = as_party(cluster, cred_a)
    await eventually(lambda: log_in_everywhere(cluster, party_a))
    own_topic = profile.agency_topic(a)
    value = await eventually(lambda: read_one(own_topic, f"{a}.case-system", party_a))
    assert value == f"for {a}".encode()

    # refused by the cluster itself, not by this code
    with pytest.raises(TopicAuthorizationFailedError):
        await read_one(profile.agency_topic(b), f"{a}.case-system", party_a)
    # b's namespace, the product's, and a's own name without the dot
    for group in (f"{b}.case-system", "isa-broker-router", a):
        with pytest.raises(GroupAuthorizationFailedError):
            await read_one(own_topic, group, party_a)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(own_topic, b"forged", party_a)
    async with ClusterAccess.connect(**party_a) as agency_access:
        with pytest.raises(AccessControlFailed) as refused:
            await agency_access.describe_acls()
        assert refused.value.kafka_error == 31  # CLUSTER_AUTHORIZATION_FAILED

    deleted = await revoke_party(access, a)
    assert sorted(deleted, key=str) == sorted(party_bindings(profile, a), key=str)
    assert await revoke_party(access, a) == []  # again: nothing left to remove

    await eventually(lambda: refused_everywhere(cluster, party_a))
    assert await access.describe_acls(AclBindingFilter(principal=party_principal(a))) == []
    assert await access.describe_scram_users([cred_a.username]) == []
    # b is untouched
    party_b = as_party(cluster, cred_b)
    b_topic = profile.agency_topic(b)
    assert await eventually(lambda: read_one(b_topic, f"{b}.x", party_b)) == f"for {b}".encode()
    logged = caplog.text
    assert "AlterUserScramCredentialsRequest_v0" in logged and "<redacted>" in logged
    assert cred_a.password not in logged and cred_b.password not in logged


async def test_reissuing_a_credential_retires_the_old_password(
    cluster: KafkaCluster, access: ClusterAccess
) -> None:
    party = new_party("east")
    first = await issue_party_credential(access, party)
    await eventually(lambda: log_in_everywhere(cluster, as_party(cluster, first)))
    second = await issue_party_credential(access, party)
    assert second.password != first.password
    await eventually(lambda: log_in_everywhere(cluster, as_party(cluster, second)))
    await refused_everywhere(cluster, as_party(cluster, first))
    await revoke_party(access, party)
    await eventually(lambda: refused_everywhere(cluster, as_party(cluster, second)))
