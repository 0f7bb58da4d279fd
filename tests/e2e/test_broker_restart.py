"""The embedded broker is supervised: killed, it is restarted empty, its topics recreated and
the clients reconnected, every message it lost is published again and delivered, and what it
lost from an agency's own topic is delivered there again.

The whole system runs as ``isa-broker dev`` in a child process (as a user runs it), and the
test kills that process's broker with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.core.crypto import recipient
from services.core.kafka.config import KafkaProfile
from services.core.kafka.embedded import free_port
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from tests.factories import release_notice

pytestmark = pytest.mark.integration


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, data = free_port(), tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISA_BROKER_", "KAFKA_"))}
    env.update(ISA_BROKER_RELAY_POLL_SECONDS="0.2", ISA_BROKER_RECONCILE_AFTER_SECONDS="2")
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "services.cli", "dev", "--port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", data
        assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_killed_broker_is_restarted_and_nothing_is_lost(dev: tuple[str, Path]) -> None:
    base, data = dev
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                if (await http.get(base + "/healthz")).status_code == 200 and (
                    data / "demo-clients.json"
                ).exists():
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    creds = json.loads((data / "demo-clients.json").read_text())
    receivers = await Receivers(
        verify=False
    ).start()  # records all; signatures: test_release_to_webhooks
    prison, vawg, housing = (
        AgencyClient(base, creds[p]["client_id"], creds[p]["client_secret"])
        for p in ("hmp-northgate", "eastborough-vawg", "eastborough-housing")
    )
    try:
        await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))
        housing_key, public = recipient.generate_key("housing-restart-1")
        r = await housing.request("POST", "/v1/encryption-keys", json={"jwk": public})
        assert r.status_code == 201, r.text
        r = await housing.request(
            "POST",
            "/v1/subscriptions",
            json={"message_types": ["release-notice"], "channel": "kafka"},
        )
        assert r.status_code == 201, r.text
        agency_topic = r.json()["kafka_topic"]
        for_housing: set[str] = set()

        async def publish(i: int) -> str:
            body = release_notice()
            body["person"].update(pnc_id=f"26/{i:06d}B", crn=f"B{i:06d}")
            r = await prison.publish("release-notice", body)
            assert r.status_code == 202, r.text
            if "eastborough-housing" in [x["party"] for x in r.json()["recipients"]]:
                for_housing.add(r.json()["id"])
            return str(r.json()["id"])

        before = [await publish(i) for i in range(5)]
        assert await receivers.wait_for({"eastborough-vawg"}, timeout=30)
        old_pid = int((data / "broker.pid").read_text())
        os.kill(old_pid, signal.SIGKILL)
        # accepted while the broker is down or just back (and empty)
        after = [await publish(i) for i in range(5, 15)]
        expected = set(before + after)
        got: set[str] = set()
        for _ in range(600):
            got = {json.loads(r.body)["id"] for r in receivers.for_party("eastborough-vawg")}
            if got >= expected:
                break
            await asyncio.sleep(0.1)
        assert got == expected, f"missing {len(expected - got)} of {len(expected)}"
        # the agency topic lost what was delivered before the restart: delivered again
        assert len(for_housing) == len(expected)
        bootstrap = re.search(r"kafka bootstrap\s+(\S+)", (data.parent / "dev.log").read_text())
        assert bootstrap is not None
        async with httpx.AsyncClient() as http:  # as an agency: the broker's published keys
            jwks = (await http.get(base + recipient.BROKER_KEYS_PATH)).json()
        broker = recipient.BrokerKeys(jwks)
        on_topic = await _consume_ids(
            bootstrap.group(1), agency_topic, for_housing, housing_key, broker
        )
        assert on_topic >= for_housing, f"missing {len(for_housing - on_topic)} on {agency_topic}"
        dev_log = (data.parent / "dev.log").read_text()
        assert "embedded broker exited; restarting it" in dev_log
        assert "agency-topic deliveries queued again" in dev_log
        new_pid = int((data / "broker.pid").read_text())
        assert new_pid != old_pid
        os.kill(new_pid, 0)  # the restarted broker is running
        log = (data / "broker.log").read_text(errors="replace")
        assert log  # the broker's own output is kept beside the data
    finally:
        for client in (prison, vawg, housing):
            await client.aclose()
        await receivers.stop()


async def _consume_ids(
    bootstrap: str,
    topic: str,
    want: set[str],
    key: dict[str, Any],
    broker_keys: recipient.BrokerKeys,
) -> set[str]:
    """Message ids of the CloudEvents on ``topic`` (each decrypted with the agency's ``key``
    and its signature checked with ``broker_keys``), read until ``want`` are all seen or
    60 s."""
    profile = KafkaProfile(bootstrap_servers=bootstrap, embedded=True)
    consumer = AIOKafkaConsumer(topic, **profile.consumer_kwargs(f"check-{uuid.uuid4().hex}"))
    seen: set[str] = set()
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not want <= seen and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                seen |= {
                    recipient.open_record(
                        rec.value or b"",
                        rec.headers,
                        [key],
                        broker_keys=broker_keys,
                        recipient="eastborough-housing",
                    ).event["id"]
                    for rec in records
                }
    finally:
        await consumer.stop()
    return seen
