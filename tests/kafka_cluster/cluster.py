"""A real Apache Kafka cluster for tests: three KRaft nodes in combined mode (each one both
broker and controller, three controller voters) on loopback ports, secured as a deployment is.

Security, generated afresh for every run:

- a CA and one certificate per node (EC P-256, SAN ``127.0.0.1`` and ``localhost``), kept as
  PEM files that Kafka reads directly (``ssl.keystore.type=PEM``), so no keytool is needed;
  clients verify the host name (Kafka's default ``https`` endpoint identification);
- the listener ``CLIENT`` is ``SASL_SSL`` with SCRAM-SHA-512 and also carries replication,
  as user ``broker``; the users and their random passwords are written at format time;
- the listener ``CONTROLLER`` is ``SSL`` with client certificates required: a node
  certificate's ``CN=broker`` maps to ``User:broker``. SCRAM credentials live in the metadata
  log, which a controller must reach before it could check them;
- ``StandardAuthorizer``, ``allow.everyone.if.no.acl.found=false``; ``User:broker`` and
  ``User:admin`` (the harness's own requests and tools) are super users; ``User:isa-broker``
  gets exactly ``PRODUCT_ACLS``.

The jars come from Maven Central through ``pom.xml`` beside this module, copied once into a
cache outside the repository (``kafka_libs``). The JVMs share a class-data archive (AppCDS)
kept in that cache; the first cluster that stops cleanly writes it.

Long-running JVMs are bound to the thread that starts them (PR_SET_PDEATHSIG), so they are
started from a thread of the cluster's own that lives until ``stop``: ``start``, ``restart``
and ``start_all`` may be called from any thread (``asyncio.to_thread`` included).

Errors: ``KafkaClusterError`` (a ``RuntimeError``) for anything the harness cannot do; a start
failure carries the end of the failing node's log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.core.childproc import bind_to_parent, free_port
from tests.certs import TestCA

POM = Path(__file__).with_name("pom.xml")
KAFKA_VERSION = re.search(r"<kafka\.version>([^<]+)<", POM.read_text()).group(1)  # type: ignore[union-attr]
PRODUCT_USER = "isa-broker"
BROKER_USER = "broker"
ADMIN_USER = "admin"
SCRAM = "SCRAM-SHA-512"

# Kafka's codes (org.apache.kafka.common.acl.AclOperation, resource.ResourceType, ...)
_ANY, _LITERAL, _ALLOW = 1, 3, 3
TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = 2, 3, 4, 5
ALL, CREATE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = (
    2, 5, 7, 8, 10, 11, 12
)  # fmt: skip
# (resource type, literal name, operation) allowed to the product; everything else is denied
PRODUCT_ACLS: tuple[tuple[int, str, int], ...] = (
    (TOPIC, "*", ALL),
    (GROUP, "*", ALL),
    (TRANSACTIONAL_ID, "*", ALL),
    *(
        (CLUSTER, "kafka-cluster", op)
        for op in (CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER, ALTER_CONFIGS, IDEMPOTENT_WRITE)
    ),
)

# Measured on 2 cores: with C1 only and one compiler thread a start costs ~45% less CPU than
# with Kafka's own G1 and tiered compilation; the class-data archive saves ~20% more.
_JVM_COMMON = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)
SERVER_JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", *_JVM_COMMON)
TOOL_JVM_OPTIONS = ("-Xmx256m", *_JVM_COMMON)
STARTED = b"Kafka Server started"
QUORUMLESS_GRACE = 12.0  # a normal last stop takes ~6 s (the quorum leader's resignation)
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = {target}
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger = {level}, OUT
"""


class KafkaClusterError(RuntimeError):
    """The cluster could not be obtained, started, changed or queried."""


# --- Java and the jars --------------------------------------------------------------------


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home, "bin", "java"), os.X_OK):
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


# also read at import: the tests' autouse fixture strips ISA_BROKER_* variables before a
# session cluster that a test asks for lazily is started
_CACHE_AT_IMPORT = os.environ.get("ISA_BROKER_KAFKA_CACHE")


def default_cache_dir() -> Path:
    configured = os.environ.get("ISA_BROKER_KAFKA_CACHE") or _CACHE_AT_IMPORT
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "isa-broker" / f"kafka-{KAFKA_VERSION}"


def _cache_complete(cache: Path) -> bool:
    marker = cache / ".complete"
    return marker.is_file() and marker.read_text() == hashlib.sha256(POM.read_bytes()).hexdigest()


def kafka_prerequisites(cache: Path | None = None) -> str | None:
    """Why the cluster cannot run here (a sentence for a skip message), or None if it can."""
    java = _java()
    if java is None:
        return "java (17 or later) is not installed; the Kafka test cluster needs it"
    try:
        out = subprocess.run(  # noqa: S603 - a fixed command, no shell
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{java} -version failed: {e}"
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_392"
        major = int(found.group(2))
    if major < 17:
        return f"Kafka {KAFKA_VERSION} needs Java 17 or later; {java} is {major or 'unknown'}"
    if not _cache_complete(cache or default_cache_dir()) and shutil.which("mvn") is None:
        return "mvn (Maven) is not installed; it fetches the Kafka jars on first use"
    return None


def kafka_libs(cache: Path | None = None) -> Path:
    """The directory of Kafka's jars, copied there from Maven Central on first use.

    A marker (the hash of ``pom.xml``) is written after a complete copy; a lock file keeps
    concurrent test processes from copying at the same time."""
    cache = cache or default_cache_dir()
    lib = cache / "lib"
    if _cache_complete(cache):
        return lib
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f"{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cache_complete(cache):
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaClusterError("mvn (Maven) is needed to fetch the Kafka jars")
        shutil.rmtree(cache, ignore_errors=True)  # jars and class archives of another pom
        partial = cache / "lib.partial"
        command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise KafkaClusterError(f"fetching Kafka {KAFKA_VERSION} with Maven failed:\n{tail}")
        partial.rename(lib)
        (cache / ".complete").write_text(hashlib.sha256(POM.read_bytes()).hexdigest())
    return lib


def _class_archive_path(lib: Path, java: str) -> Path:
    """The AppCDS archive for these jars and this JVM (a new JDK gets a new one)."""
    home = Path(java).resolve().parent.parent
    jvm = next(home.glob("lib/server/libjvm.so"), Path(java).resolve())
    key = hashlib.sha256(f"{jvm}:{jvm.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    return lib.parent / f"classes-{key}.jsa"


# --- certificates -------------------------------------------------------------------------


def _write_secret(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def make_pki(tls_dir: Path, node_ids: list[int]) -> Path:
    """Write ``ca.pem`` and, per node, ``node-<id>.pem`` (PKCS#8 key, then the certificate
    chain; Kafka's PEM key store format). Each node's certificate serves its listeners and
    identifies it, as ``CN=broker``, to the others' controller listener. Returns the CA file."""
    ca = TestCA(tls_dir, "isa-broker test cluster CA", days=7)
    ca_file = tls_dir / "ca.pem"
    ca.cert_file.replace(ca_file)
    for node_id in node_ids:
        issued = ca.issue(
            [
                (NameOID.ORGANIZATION_NAME, "isa-broker-tests"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, f"node-{node_id}"),
                (NameOID.COMMON_NAME, BROKER_USER),
            ],
            hosts=["127.0.0.1", "localhost"],
            usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            stem=f"node-{node_id}",
        )
        chain = issued.key_file.read_bytes() + issued.cert_file.read_bytes()
        _write_secret(tls_dir / f"node-{node_id}.pem", chain + ca_file.read_bytes())
        issued.cert_file.unlink()
        issued.key_file.unlink()
    return ca_file


# --- helpers ------------------------------------------------------------------------------


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{k}={str(v).replace(chr(92), chr(92) * 2)}\n" for k, v in values.items())


def _jaas(user: str, password: str) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";'
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


T = TypeVar("T")


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run async work from synchronous code, whether or not the caller has a running loop."""

    async def main() -> T:
        return await factory()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


@dataclass
class _Node:
    node_id: int
    home: Path
    client_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --- the cluster --------------------------------------------------------------------------


class KafkaCluster:
    """``with KafkaCluster(tmp_path) as cluster: ...``, or ``start()`` then ``stop()``."""

    def __init__(
        self, workdir: Path, nodes: int = 3, *, cache: Path | None = None, timeout: float = 120.0
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.workdir = Path(workdir)
        self.timeout = timeout
        self._cache = cache
        self._lib: Path | None = None
        self._archiving: tuple[int, Path] | None = None  # (node, archive it writes at exit)
        self._nodes = {i: _Node(i, self.workdir / f"node-{i}") for i in range(1, nodes + 1)}
        self._passwords = {
            u: secrets.token_urlsafe(24) for u in (BROKER_USER, ADMIN_USER, PRODUCT_USER)
        }
        self._replicas = min(3, nodes)
        # the JVMs die with the thread that started them: this one lives until stop()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-spawner")

    # --- what tests read ---

    @property
    def node_ids(self) -> list[int]:
        return list(self._nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.client_port}" for n in self._nodes.values())

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def product_credentials(self) -> tuple[str, str]:
        return PRODUCT_USER, self._passwords[PRODUCT_USER]

    def password(self, user: str) -> str:
        try:
            return self._passwords[user]
        except KeyError:
            raise KeyError(f"no user {user!r} in this cluster; add it with add_user") from None

    def log_file(self, node_id: int) -> Path:
        return self._nodes[node_id].log

    def is_running(self, node_id: int) -> bool:
        return self._nodes[node_id].running

    def pid(self, node_id: int) -> int | None:
        node = self._nodes[node_id]
        return node.proc.pid if node.proc is not None and node.running else None

    def client_env(self, user: str = PRODUCT_USER) -> dict[str, str]:
        """The product's settings for this cluster, the password in a 0600 file."""
        secret = _write_secret(self.workdir / "secrets" / f"{user}.password", self.password(user))
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ISA_BROKER_KAFKA_SSL_CA_FILE": str(self.ca_file),
            "ISA_BROKER_KAFKA_SASL_MECHANISM": SCRAM,
            "ISA_BROKER_KAFKA_SASL_USERNAME": user,
            "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "ISA_BROKER_KAFKA_REPLICATION_FACTOR": str(self._replicas),
            "ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS": str(min(2, self._replicas)),
        }

    def aiokafka_kwargs(self, user: str = PRODUCT_USER) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client, as ``user``."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=str(self.ca_file)),
            "sasl_mechanism": SCRAM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.password(user),
        }

    # --- life cycle ---

    def start(self) -> KafkaCluster:
        """Format fresh storage, start every node, wait until ready, grant the product's ACLs."""
        deadline = time.monotonic() + self.timeout
        self._lib = kafka_libs(self._cache)
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_pki(self.workdir / "tls", self.node_ids)
        self._write_configs()
        self._format()
        try:
            self._launch(self.node_ids, deadline)
            self.wait_ready(max(10.0, deadline - time.monotonic()))
            _run_coroutine(self._grant_product_acls)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every node at once (SIGKILL): the teardown. ``stop_all`` stops them cleanly."""
        if self._archiving:  # that node writes the class archive as it stops
            self._stop_nodes([self._archiving[0]], graceful=True, timeout=30)
        self._stop_nodes(self.node_ids, graceful=False)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, as in a crash or a power cut."""
        self._stop_nodes([node_id], graceful=False)

    def terminate(self, node_id: int, timeout: float = 60.0) -> None:
        """SIGTERM one node and wait for its controlled shutdown (SIGKILL after ``timeout``)."""
        self._stop_nodes([node_id], graceful=True, timeout=timeout)

    def restart(self, node_id: int, timeout: float = 60.0) -> None:
        """Start a stopped node again with its data; return once it is registered again."""
        if self.is_running(node_id):
            raise KafkaClusterError(f"node {node_id} is running; kill or terminate it first")
        deadline = time.monotonic() + timeout
        self._launch([node_id], deadline)
        self._wait_registered(deadline)

    def stop_all(self, timeout: float = 60.0) -> None:
        """SIGTERM every node and wait (a clean whole-cluster stop; data kept)."""
        self._stop_nodes(self.node_ids, graceful=True, timeout=timeout)

    def start_all(self, timeout: float | None = None) -> None:
        """Start every stopped node with its data; return once all are registered."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._launch([i for i in self.node_ids if not self.is_running(i)], deadline)
        self._wait_registered(deadline)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every node is registered, and a topic with a replica on each can be created."""
        deadline = time.monotonic() + timeout
        self._wait_registered(deadline)
        _run_coroutine(lambda: self._create_probe_topic(deadline))

    # --- changes and questions ---

    def add_user(self, name: str, password: str | None = None) -> str:
        """Create a SCRAM-SHA-512 user without ACLs; return its password once it can log in."""
        password = password or secrets.token_urlsafe(24)
        self._tool(
            "kafka.admin.ConfigCommand",
            "--alter", "--entity-type", "users", "--entity-name", name,
            "--add-config", f"{SCRAM}=[iterations=4096,password={password}]",
        )  # fmt: skip
        self._passwords[name] = password
        _run_coroutine(lambda: self._await_login(name, time.monotonic() + 30))
        return password

    async def leader_of(self, topic: str, partition: int, timeout: float = 30.0) -> int:
        """The leader of ``topic``/``partition``, waiting for one that is a running node."""
        deadline = time.monotonic() + timeout
        async with self._admin() as admin:
            while True:
                leader = -1
                for t in await admin.describe_topics([topic]):
                    for p in t["partitions"]:
                        if p["partition"] == partition:
                            leader = p["leader"]
                if leader in self._nodes and self.is_running(leader):
                    return int(leader)
                if time.monotonic() > deadline:
                    raise KafkaClusterError(f"{topic}/{partition} has no leader (last: {leader})")
                await asyncio.sleep(0.2)

    async def active_controller(self) -> int:
        """The KRaft quorum's leader, from DescribeQuorum (``kafka-metadata-quorum``)."""
        out = await self._tool_async(
            "org.apache.kafka.tools.MetadataQuorumCommand", "describe", "--status"
        )
        found = re.search(r"^LeaderId:\s*(-?\d+)", out, re.MULTILINE)
        if found is None:
            raise KafkaClusterError(f"no LeaderId in the quorum's description:\n{out}")
        return int(found.group(1))

    # --- configuration ---

    def _write_configs(self) -> None:
        tls = self.workdir / "tls"
        out = _LOG4J2.format(target="SYSTEM_OUT", level="INFO")
        (self.workdir / "log4j2.properties").write_text(out)
        err = _LOG4J2.format(target="SYSTEM_ERR", level="WARN")
        (self.workdir / "tools-log4j2.properties").write_text(err)
        voters = ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self._nodes.values()
        )
        r, isr = self._replicas, min(2, self._replicas)
        for node in self._nodes.values():
            shutil.rmtree(node.home / "data", ignore_errors=True)  # fresh storage every start
            (node.home / "data").mkdir(parents=True)
            node.log.unlink(missing_ok=True)
            config: dict[str, object] = {
                "process.roles": "broker,controller",
                "node.id": node.node_id,
                "controller.quorum.voters": voters,
                "listeners": f"CLIENT://127.0.0.1:{node.client_port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}",
                "advertised.listeners": f"CLIENT://127.0.0.1:{node.client_port}",
                "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SSL",
                "inter.broker.listener.name": "CLIENT",
                "controller.listener.names": "CONTROLLER",
                "sasl.enabled.mechanisms": SCRAM,
                "sasl.mechanism.inter.broker.protocol": SCRAM,
                f"listener.name.client.{SCRAM.lower()}.sasl.jaas.config": _jaas(
                    BROKER_USER, self._passwords[BROKER_USER]
                ),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": tls / f"node-{node.node_id}.pem",
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": tls / "ca.pem",
                "listener.name.controller.ssl.client.auth": "required",
                "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),OU=node-[0-9]+,.*$/$1/,DEFAULT",
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found": "false",
                "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
                "log.dirs": node.home / "data",
                "auto.create.topics.enable": "false",
                "default.replication.factor": r,
                "min.insync.replicas": isr,
                "offsets.topic.replication.factor": r,
                "offsets.topic.num.partitions": 5,
                "transaction.state.log.replication.factor": r,
                "transaction.state.log.min.isr": isr,
                "transaction.state.log.num.partitions": 5,
                "share.coordinator.state.topic.replication.factor": r,
                "share.coordinator.state.topic.min.isr": isr,
                "group.initial.rebalance.delay.ms": 0,
                # a killed node is fenced (and its partitions move) in ~3 s instead of 9 s
                "broker.heartbeat.interval.ms": 500,
                "broker.session.timeout.ms": 3000,
                "num.network.threads": 2,
                "num.io.threads": 4,
                "num.recovery.threads.per.data.dir": 1,
                "background.threads": 4,
            }
            _write_secret(node.config, _properties(config))
        admin = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM,
            "sasl.jaas.config": _jaas(ADMIN_USER, self._passwords[ADMIN_USER]),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls / "ca.pem",
        }
        _write_secret(self.workdir / "secrets" / "admin.properties", _properties(admin))

    def _java_command(
        self, options: tuple[str, ...], main: str, *, log4j: str, archive_to: Path | None = None
    ) -> list[str]:
        java = _java()
        if java is None or self._lib is None:
            raise KafkaClusterError("java or the Kafka jars are missing; see kafka_prerequisites()")
        archive = _class_archive_path(self._lib, java)
        if archive_to is not None:
            options += (f"-XX:ArchiveClassesAtExit={archive_to}", "-Xlog:cds=off")
        elif archive.is_file():
            options += (f"-XX:SharedArchiveFile={archive}",)
        log4j_config = f"-Dlog4j2.configurationFile={self.workdir / log4j}"
        return [java, *options, log4j_config, "-cp", f"{self._lib}/*", main]

    def _class_archive(self) -> Path | None:
        java = _java()
        return _class_archive_path(self._lib, java) if java and self._lib else None

    # --- processes ---

    def _format(self) -> None:
        """``kafka-storage format`` for every node at once, with the SCRAM users."""
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram: list[str] = []
        for user, password in self._passwords.items():
            scram += ["--add-scram", f"{SCRAM}=[name={user},password={password}]"]
        base = self._java_command(
            TOOL_JVM_OPTIONS, "kafka.tools.StorageTool", log4j="tools-log4j2.properties"
        )
        procs = {
            n.node_id: subprocess.Popen(  # noqa: S603 - fixed java command, no shell
                [*base, "format", "-t", cluster_id, "-c", str(n.config), *scram],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=bind_to_parent,  # noqa: PLW1509
            )
            for n in self._nodes.values()
        }
        for node_id, proc in procs.items():
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise KafkaClusterError(
                    f"formatting node {node_id} failed:\n{out.decode()[-3000:]}"
                )

    def _launch(self, node_ids: list[int], deadline: float) -> None:
        """Start the JVMs of ``node_ids`` and wait until each logs that it has started."""
        marks: dict[int, int] = {}
        for node_id in node_ids:
            node = self._nodes[node_id]
            archive_to = None
            archive = self._class_archive()
            if self._archiving is None and archive is not None and not archive.is_file():
                archive_to = self.workdir / f"classes.{node_id}.jsa"
                self._archiving = (node_id, archive_to)
            command = self._java_command(
                SERVER_JVM_OPTIONS, "kafka.Kafka", log4j="log4j2.properties", archive_to=archive_to
            )
            marks[node_id] = node.log.stat().st_size if node.log.exists() else 0
            with open(node.log, "ab") as log:
                node.proc = self._spawner.submit(
                    subprocess.Popen,  # fixed java command, no shell
                    [*command, str(node.config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=node.home,
                    preexec_fn=bind_to_parent,
                ).result()
        waiting = set(node_ids)
        while waiting:
            for node_id in sorted(waiting):
                node = self._nodes[node_id]
                if node.proc is not None and node.proc.poll() is not None:
                    self._fail(node_id, f"node {node_id} exited with code {node.proc.returncode}")
                with open(node.log, "rb") as f:
                    f.seek(marks[node_id])
                    if STARTED in f.read():
                        waiting.discard(node_id)
            if waiting and time.monotonic() > deadline:
                self._fail(min(waiting), f"node {min(waiting)} did not start in time")
            time.sleep(0.1)

    def _fail(self, node_id: int, why: str) -> NoReturn:
        log = self._nodes[node_id].log
        raise KafkaClusterError(f"{why}; the end of {log}:\n{_tail(log)}")

    def _stop_nodes(self, node_ids: list[int], *, graceful: bool, timeout: float = 60) -> None:
        """SIGTERM (or SIGKILL) the nodes and wait. A node still stopping once most voters
        are gone is killed after ``QUORUMLESS_GRACE`` seconds: its controlled shutdown needs
        the quorum, and Kafka would wait for it for five minutes."""
        if graceful and self._archiving and self._archiving[0] in node_ids and len(node_ids) > 1:
            # the node writing the class archive first, while the quorum is whole
            self._stop_nodes([self._archiving[0]], graceful=True, timeout=timeout)
        procs = [n.proc for i in node_ids if (n := self._nodes[i]).proc is not None and n.running]
        for proc in procs:
            if graceful:
                proc.terminate()
            else:
                proc.kill()
        deadline = time.monotonic() + timeout
        majority = len(self._nodes) // 2 + 1
        quorum_lost: float | None = None
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if sum(n.running for n in self._nodes.values()) < majority:
                quorum_lost = quorum_lost or now
            if now > deadline or (quorum_lost and now - quorum_lost > QUORUMLESS_GRACE):
                for proc in procs:
                    proc.kill()
            time.sleep(0.05)
        self._keep_class_archive()

    def _keep_class_archive(self) -> None:
        """Move the archive a cleanly stopped node wrote into the cache, for later runs."""
        if self._archiving is None:
            return
        node_id, written = self._archiving
        proc = self._nodes[node_id].proc
        if proc is None or proc.poll() is None:
            return
        archive = self._class_archive()
        if proc.returncode >= 0 and written.is_file() and archive is not None:
            os.replace(written, archive)  # atomic: a concurrent run sees all of it or nothing
        written.unlink(missing_ok=True)
        self._archiving = None  # if there is still no archive, the next node started writes it

    # --- tools and requests ---

    def _tool_command(self, main: str, args: tuple[str, ...]) -> list[str]:
        running = [n for n in self._nodes.values() if n.running]
        if not running:
            raise KafkaClusterError("no node is running")
        bootstrap = ",".join(f"127.0.0.1:{n.client_port}" for n in running)
        config = str(self.workdir / "secrets" / "admin.properties")
        base = self._java_command(TOOL_JVM_OPTIONS, main, log4j="tools-log4j2.properties")
        return [*base, "--bootstrap-server", bootstrap, "--command-config", config, *args]

    def _tool(self, main: str, *args: str) -> str:
        command = self._tool_command(main, args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
        if done.returncode != 0:
            raise KafkaClusterError(f"{main} {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    async def _tool_async(self, main: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self._tool_command(main, args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise KafkaClusterError(f"{main} {' '.join(args[:2])} failed:\n{err.decode()[-3000:]}")
        return out.decode()

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        admin = AIOKafkaAdminClient(**self.aiokafka_kwargs(ADMIN_USER), request_timeout_ms=10000)
        try:
            await admin.start()
            yield admin
        finally:
            await admin.close()

    def _wait_registered(self, deadline: float) -> None:
        """Every running node appears in the cluster's metadata as a broker."""
        wanted = {i for i in self.node_ids if self.is_running(i)}

        async def registered() -> set[int]:
            seen: set[int] = set()
            while time.monotonic() < deadline:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    async with self._admin() as admin:
                        while time.monotonic() < deadline:
                            brokers = (await admin.describe_cluster())["brokers"]
                            seen = {b["node_id"] for b in brokers}
                            if wanted <= seen:
                                return seen
                            await asyncio.sleep(0.2)
                await asyncio.sleep(0.5)
            return seen

        seen = _run_coroutine(registered)
        if not wanted <= seen:
            missing = min(wanted - seen)
            self._fail(missing, f"node {missing} did not register (brokers: {sorted(seen)})")

    async def _create_probe_topic(self, deadline: float) -> None:
        name = f"harness.ready.{secrets.token_hex(4)}"
        async with self._admin() as admin:
            while True:
                response = await admin.create_topics([NewTopic(name, 1, self._replicas)])
                code = response.topic_errors[0][1]
                if code in (0, 36):  # created (36: by an earlier attempt)
                    break
                if time.monotonic() > deadline:
                    raise KafkaClusterError(
                        f"cannot create a topic of {self._replicas} replicas: {code}"
                    )
                await asyncio.sleep(0.3)
            await admin.delete_topics([name])

    async def _grant_product_acls(self) -> None:
        """Create ``PRODUCT_ACLS``, then wait until every node's authorizer holds them."""
        client = AIOKafkaClient(**self.aiokafka_kwargs(ADMIN_USER))
        principal = f"User:{PRODUCT_USER}"
        try:
            await client.bootstrap()
            for resource_type, name, operation in PRODUCT_ACLS:
                request = CreateAclsRequest(
                    resource_type, name, _LITERAL, principal, "*", operation, _ALLOW
                )
                response = await client.send(client.get_random_node(), request)
                code, message = response.creation_responses[0][:2]
                if code != 0:
                    raise KafkaClusterError(f"granting {principal} {operation} failed: {message}")
            query = DescribeAclsRequest(_ANY, None, _ANY, principal, None, _ANY, _ANY)
            for node_id in self.node_ids:
                while True:
                    response = await client.send(node_id, query)
                    if sum(len(r[-1]) for r in response.resources) >= len(PRODUCT_ACLS):
                        break
                    await asyncio.sleep(0.05)
        finally:
            await client.close()

    async def _await_login(self, user: str, deadline: float) -> None:
        """A new SCRAM user can log in on every node (credentials travel as metadata)."""
        for node in self._nodes.values():
            if not node.running:
                continue
            kwargs = self.aiokafka_kwargs(user)
            kwargs["bootstrap_servers"] = f"127.0.0.1:{node.client_port}"
            while True:
                client = AIOKafkaAdminClient(**kwargs)
                try:
                    await client.start()
                    break
                except KafkaError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
                finally:
                    await client.close()
