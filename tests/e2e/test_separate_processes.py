"""The gateway and the router as separate processes (``isa-broker gateway`` and
``isa-broker router``) sharing a Kafka broker and a store, as in production."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
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
    processes.append(subprocess.Popen([*CLI, "router"], env=env))  # noqa: S603
    prison_creds, vawg_creds = _client(env, "hmp-northgate"), _client(env, "eastborough-vawg")
    prison = AgencyClient(base, prison_creds["client_id"], prison_creds["client_secret"])
    vawg = AgencyClient(base, vawg_creds["client_id"], vawg_creds["client_secret"])
    sub = await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))
    r = await prison.publish("release-notice", release_notice())
    assert r.status_code == 202, r.text
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=60)
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


def test_production_mode_refuses_unsafe_settings(env: dict[str, str]) -> None:
    env = {**env, "ISA_BROKER_MODE": "production", "ISA_BROKER_KAFKA_REPLICATION_FACTOR": "1"}
    out = subprocess.run([*CLI, "gateway"], env=env, capture_output=True, timeout=60)  # noqa: S603
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "ISA_BROKER_PUBLIC_URL must be https://" in err
    assert "ISA_BROKER_DATABASE_URL must name PostgreSQL" in err
    # plaintext Kafka and topics on one broker
    assert "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT is refused in production" in err
    assert "ISA_BROKER_KAFKA_REPLICATION_FACTOR=1 is refused in production" in err
    assert "Traceback" not in err
