"""Fixtures of the fault-injection suite: the receiver farm, the product's processes (cleaned
up whatever happens, their output shown when a test fails) and the deployments the scenarios
run on: gateway and router as separate processes on the session's broker, or the whole
``isa-broker dev`` system with its embedded broker."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.core.kafka.embedded import free_port
from tests.conftest import KafkaTarget

from .harness import (
    SENDER,
    Proc,
    ReceiverFarm,
    Report,
    create_client,
    parties,
    subscribe_all,
    wait_for,
    wait_healthy,
)

#: retries a few seconds apart, so a receiver that recovers is reached within the test
QUICK_RETRIES = "[0,1,2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3]"

_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_REPORT_LINES = pytest.StashKey[list[str]]()


def messages_per_scenario() -> int:
    """``ISA_FAULTS_MESSAGES`` (default 2000): how many messages each scenario sends."""
    return int(os.environ.get("ISA_FAULTS_MESSAGES", "2000"))


def messages_per_cluster_scenario() -> int:
    """``ISA_FAULTS_CLUSTER_MESSAGES`` (default 800): how many messages each scenario on the
    Apache Kafka cluster sends. Fewer than on the embedded broker: these scenarios are about
    the cluster's faults, and each costs about 100 s of CI per thousand messages."""
    return int(os.environ.get("ISA_FAULTS_CLUSTER_MESSAGES", "800"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_REPORT_LINES, [])
    if lines:
        terminalreporter.section("fault-injection reports")
        for line in lines:
            terminalreporter.write_line(line)


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def show(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Callable[[Report], None]:
    """Print a report past pytest's capture (visible without ``-s``) and again in the
    terminal summary."""

    def _show(report: Report) -> None:
        with capsys.disabled():
            report.print()
        request.config.stash.setdefault(_REPORT_LINES, []).append(report.line())

    return _show


@pytest.fixture
def n_messages(request: pytest.FixtureRequest) -> int:
    if "kafka" in request.fixturenames:
        kafka: KafkaTarget = request.getfixturevalue("kafka")
        if kafka.name == "apache":
            return messages_per_cluster_scenario()
    return messages_per_scenario()


@pytest.fixture
async def farm() -> AsyncIterator[ReceiverFarm]:
    f = await ReceiverFarm().start()
    yield f
    await f.stop()


class Procs:
    """The product processes a test started; all are stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Proc] = []

    def add(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, self.log_dir)
        self.all.append(proc)
        return proc

    def tails(self) -> str:
        return "\n".join(
            f"----- last lines of {p.name} ({p.log_path}) -----\n{p.tail()}" for p in self.all
        )


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    registry = Procs(log_dir)
    try:
        yield registry
    finally:
        for p in registry.all:
            if p.popen is not None and p.popen.poll() is None:
                p.popen.terminate()
        for p in registry.all:
            p.stop()
        if _failed(request.node):
            print(registry.tails())


@dataclass
class Deployment:
    """A running system the scenarios send to."""

    base_url: str
    env: dict[str, str]
    data_dir: Path
    credentials: dict[str, dict[str, str]]
    subscribed: set[str]
    gateway: Proc | None = None
    router: Proc | None = None
    dev: Proc | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def processes(self) -> list[Proc]:
        return [p for p in (self.gateway, self.router, self.dev) if p is not None]

    @property
    def sender(self) -> tuple[str, str]:
        c = self.credentials[SENDER]
        return c["client_id"], c["client_secret"]


#: the load generator publishes as fast as it can: measuring rate limits is not its job
UNLIMITED = {"ISA_BROKER_RATE_LIMIT_PER_MINUTE": "0", "ISA_BROKER_TOKEN_RATE_LIMIT_PER_MINUTE": "0"}


def _clean_environ() -> dict[str, str]:
    """The test's environment without the product's settings (the scenario sets those) and
    without tracemalloc, which would slow the product's processes to a crawl."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ISA_BROKER_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "PYTHONTRACEMALLOC")
    }


StartSeparate = Callable[..., Awaitable[Deployment]]


@pytest.fixture
def start_separate(
    tmp_path: Path, kafka: KafkaTarget, procs: Procs, farm: ReceiverFarm
) -> StartSeparate:
    """Start ``isa-broker gateway`` and ``isa-broker router`` on the test's broker (the
    embedded one, or the Apache Kafka cluster for scenarios marked so) with a fresh store and
    topic prefix; register every party and subscribe all that may."""

    async def start(**extra_env: str) -> Deployment:
        port = free_port()
        env = {
            **_clean_environ(),
            **kafka.env,
            "ISA_BROKER_KAFKA_TOPIC_PREFIX": f"flt{uuid.uuid4().hex[:8]}",
            "ISA_BROKER_MODE": "dev",
            "ISA_BROKER_DATA_DIR": str(tmp_path / "data"),
            # the scenario's webhook receivers listen on this machine
            "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
            **UNLIMITED,
            "ISA_BROKER_PORT": str(port),
            "ISA_BROKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ISA_BROKER_RELAY_POLL_SECONDS": "0.2",
            "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "true",
            "ISA_BROKER_WEBHOOK_RETRY_SCHEDULE": QUICK_RETRIES,
            **extra_env,
        }
        base = env["ISA_BROKER_PUBLIC_URL"]
        gateway = procs.add("gateway", ["gateway"], env).start()
        await wait_healthy(base, proc=gateway)
        router = procs.add("router", ["router"], env).start()
        names = parties()
        found = await asyncio.gather(*(create_client(env, p) for p in names))
        credentials = {p: c for p, c in zip(names, found, strict=True) if c is not None}
        assert SENDER in credentials, "could not register the sending party"
        subscribed = await subscribe_all(base, credentials, farm)
        return Deployment(
            base, env, tmp_path / "data", credentials, subscribed, gateway=gateway, router=router
        )

    return start


StartDev = Callable[..., Awaitable[Deployment]]


@pytest.fixture
def start_dev(tmp_path: Path, procs: Procs, farm: ReceiverFarm) -> StartDev:
    """Start the whole system with its embedded broker (``isa-broker dev``); read the demo
    parties' credentials it writes and subscribe all that may."""

    async def start(**extra_env: str) -> Deployment:
        port = free_port()
        data_dir = tmp_path / "dev"
        env = {
            **_clean_environ(),
            "ISA_BROKER_RELAY_POLL_SECONDS": "0.2",
            "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "true",
            "ISA_BROKER_WEBHOOK_RETRY_SCHEDULE": QUICK_RETRIES,
            **UNLIMITED,
            **extra_env,
        }
        dev = procs.add("dev", ["dev", "--data-dir", str(data_dir), "--port", str(port)], env)
        dev.start()
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(base, timeout=90, proc=dev)
        clients_file = data_dir / "demo-clients.json"
        await wait_for(clients_file.exists, 30, "demo-clients.json")
        raw: dict[str, dict[str, str]] = json.loads(clients_file.read_text())
        credentials = {
            p: {"client_id": c["client_id"], "client_secret": c["client_secret"]}
            for p, c in raw.items()
            if c.get("client_secret")
        }
        subscribed = await subscribe_all(base, credentials, farm)
        return Deployment(base, env, data_dir, credentials, subscribed, dev=dev)

    return start
