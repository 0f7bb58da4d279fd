"""The gateway and the router as separate processes (``isa-broker gateway`` and
``isa-broker router``) sharing a Kafka broker and a store, as in production."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.core.kafka.embedded import free_port
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from tests.conftest import KAFKA_COMPAT
from tests.factories import release_notice

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "services.cli"]


@pytest.fixture
def env(tmp_path: Path, kafka_bootstrap: str) -> dict[str, str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ISA_BROKER_")}
    return {
        **clean,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ISA_BROKER_KAFKA_COMPAT": KAFKA_COMPAT,
        "ISA_BROKER_KAFKA_TOPIC_PREFIX": f"sep{uuid.uuid4().hex[:8]}",
        "ISA_BROKER_MODE": "dev",
        "ISA_BROKER_DATA_DIR": str(tmp_path / "data"),
        "ISA_BROKER_PORT": str(port),
        "ISA_BROKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ISA_BROKER_RELAY_POLL_SECONDS": "0.2",
        # the test's webhook receiver listens on this machine
        "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }


@pytest.fixture
def processes(env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    r = await Receivers(verify=False).start()  # signatures are checked below
    yield r
    await r.stop()


def _client(env: dict[str, str], party: str) -> dict[str, str]:
    out = subprocess.run(  # noqa: S603
        [*CLI, "clients", "create", "--party", party], env=env, capture_output=True, check=True
    )
    creds: dict[str, str] = json.loads(out.stdout)
    return creds


async def test_gateway_and_router_processes_deliver(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]], receivers: Receivers
) -> None:
    base = env["ISA_BROKER_PUBLIC_URL"]
    processes.append(subprocess.Popen([*CLI, "gateway"], env=env))  # noqa: S603
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(base + "/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    router_port = free_port()
    router_env = {**env, "ISA_BROKER_ROUTER_PORT": str(router_port)}
    processes.append(subprocess.Popen([*CLI, "router"], env=router_env))  # noqa: S603
    prison_creds, vawg_creds = _client(env, "hmp-northgate"), _client(env, "eastborough-vawg")
    prison = AgencyClient(base, prison_creds["client_id"], prison_creds["client_secret"])
    vawg = AgencyClient(base, vawg_creds["client_id"], vawg_creds["client_secret"])
    sub = await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))
    r = await prison.publish("release-notice", release_notice())
    assert r.status_code == 202, r.text
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=60)
    # the router process serves its own readiness (services.router.endpoint)
    async with httpx.AsyncClient() as http:
        ready = await http.get(f"http://127.0.0.1:{router_port}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["consumer"] == "ok"
    [req] = receivers.for_party("eastborough-vawg")
    Webhook(sub["secret"]).verify(req.body, req.headers)
    assert json.loads(req.body)["id"] == r.json()["id"]
    # the router records the outcome just after the receiver has answered
    for _ in range(200):
        deliveries = (await vawg.request("GET", "/v1/deliveries")).json()
        if [d["status"] for d in deliveries] == ["delivered"]:
            break
        await asyncio.sleep(0.05)
    assert [d["status"] for d in deliveries] == ["delivered"]
    await prison.aclose()
    await vawg.aclose()


def test_a_part_alone_needs_an_external_broker(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    out = subprocess.run([*CLI, "router"], env=env, capture_output=True, timeout=60)  # noqa: S603
    assert out.returncode == 2
    assert b"KAFKA_BOOTSTRAP_SERVERS" in out.stderr


@pytest.mark.parametrize("part", ["gateway", "router"])
def test_with_no_mode_set_the_parts_refuse_unsafe_settings(env: dict[str, str], part: str) -> None:
    """Production is the default: ``isa-broker gateway`` (or ``router``) started without
    ISA_BROKER_MODE refuses plain-http webhooks, SQLite, plaintext Kafka and the rest, and
    says how to ask for dev mode."""
    env = {k: v for k, v in env.items() if k != "ISA_BROKER_MODE"}
    env |= {"ISA_BROKER_KAFKA_REPLICATION_FACTOR": "1", "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "true"}
    env["ISA_BROKER_KAFKA_SASL_PASSWORD"] = "not-to-be-shown"  # noqa: S105 - a test value
    out = subprocess.run([*CLI, part], env=env, capture_output=True, timeout=60)  # noqa: S603
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "ISA_BROKER_WEBHOOK_ALLOW_HTTP must be false in production" in err
    assert "ISA_BROKER_PUBLIC_URL must be https://" in err
    assert "ISA_BROKER_DATABASE_URL must name PostgreSQL" in err  # the SQLite default
    # plaintext Kafka and topics on one broker
    assert "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT is refused in production" in err
    assert "ISA_BROKER_KAFKA_REPLICATION_FACTOR=1 is refused in production" in err
    assert "ISA_BROKER_MODE is not set" in err
    assert "Traceback" not in err
    assert "not-to-be-shown" not in err  # the settings' values are never repeated
    # the same part in dev mode, asked for, starts (and says so loudly)
    assert "DEVELOPMENT MODE" not in err


def test_dev_mode_is_announced(
    env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    """Asked for explicitly, dev mode starts, warns on stderr and on /healthz."""
    gateway = subprocess.Popen(  # noqa: S603
        [*CLI, "gateway"], env=env, stderr=subprocess.PIPE
    )
    processes.append(gateway)
    base = env["ISA_BROKER_PUBLIC_URL"]
    health = None
    for _ in range(400):
        try:
            health = httpx.get(base + "/healthz", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    assert health is not None and health.status_code == 200
    assert health.json()["mode"] == "dev"
    assert "DEVELOPMENT MODE" in health.json()["warning"]
    gateway.terminate()
    _, err = gateway.communicate(timeout=30)
    assert b"!!! DEVELOPMENT MODE (ISA_BROKER_MODE=dev)" in err
