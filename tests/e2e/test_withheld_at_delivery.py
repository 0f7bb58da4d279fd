"""A message accepted under an agreement that is suspended before delivery is not delivered
to that agreement's recipients, and the outcome is recorded."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest

from services.core.policy_watcher import PolicyWatcher
from services.core.settings import REPO_ROOT
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.router.router import Router
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KAFKA_COMPAT
from tests.factories import release_notice

pytestmark = pytest.mark.integration


async def test_suspended_before_delivery_is_withheld(tmp_path: Path, kafka_bootstrap: str) -> None:
    policies = tmp_path / "isa_policies"
    shutil.copytree(REPO_ROOT / "isa_policies", policies)
    settings = settings_for_local(
        tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_compat=KAFKA_COMPAT,
        kafka_topic_prefix=f"wd{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.2,
        policies_dir=policies,
        policies_reload_seconds=0,
    )
    receivers = await Receivers(
        verify=False
    ).start()  # records all; signatures: test_release_to_webhooks
    system = await System(settings).start(with_router=False)
    router_task = None
    try:
        assert system.runtime is not None and system.publisher is not None
        creds = await ensure_demo_clients(system.runtime)
        clients = {
            p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
            for p, c in creds.items()
        }
        for party in ("eastborough-vawg", "eastborough-housing"):
            await clients[party].subscribe(["release-notice"], receivers.url(party))
        r = await clients["hmp-northgate"].publish("release-notice", release_notice())
        assert r.status_code == 202
        assert "eastborough-vawg" in [x["party"] for x in r.json()["recipients"]]

        path = policies / "agreements" / "ISA-EB-020.yaml"
        path.write_text(path.read_text().replace("status: active", "status: suspended", 1))
        assert await PolicyWatcher(system.runtime).reload()

        router = Router(system.runtime, system.publisher)
        router_task = asyncio.create_task(router.serve())
        assert await receivers.wait_for({"eastborough-housing"}, timeout=30)
        store = system.runtime.store
        for _ in range(100):
            message = await store.get_message(r.json()["id"])
            if message and message["status"] == "complete":
                break
            await asyncio.sleep(0.05)
        deliveries = {
            d["recipient"]: d for d in await store.list_deliveries(message_id=r.json()["id"])
        }
        assert deliveries["eastborough-vawg"]["status"] == "withheld"
        assert deliveries["eastborough-housing"]["status"] == "delivered"
        assert receivers.for_party("eastborough-vawg") == []
        withheld = [
            e for e in await store.audit_entries(r.json()["id"]) if e["event"] == "withheld"
        ]
        # both recipients under the suspended agreement, whether subscribed or not
        assert sorted(e["recipient"] for e in withheld) == ["eastborough-vawg", "eastborough-vlo"]
        assert "ISA-EB-020 v1.2 is suspended" in withheld[0]["detail"]["reason"]
        for c in clients.values():
            await c.aclose()
    finally:
        if router_task is not None:
            router_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await router_task
            await router.aclose()
        await system.stop()
        await receivers.stop()
