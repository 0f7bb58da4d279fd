"""The gateway and the router as separate processes (``isa-broker gateway`` and
``isa-broker router``) sharing a Kafka broker and a store, as in production."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.core.kafka.embedded import free_port
from services.demo.receivers import Receivers
from tests.factories import release_notice
from tests.parts import CLI, agency

pytestmark = pytest.mark.integration


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
    prison, vawg = agency(env, "hmp-northgate"), agency(env, "eastborough-vawg")
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
