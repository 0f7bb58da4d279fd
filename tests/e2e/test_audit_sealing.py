"""The router seals the disclosure log as messages flow, and the log verifies."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from services.core.audit.keys import LogSigningKeys
from services.core.audit.verify import verify_log
from services.demo.agency import AgencyClient
from services.demo.scenario import release_notice
from services.system import System, ensure_demo_clients

pytestmark = pytest.mark.integration


async def test_the_router_seals_the_log_while_messages_flow(system: System) -> None:
    assert system.runtime is not None and system.sealer is not None
    creds = await ensure_demo_clients(system.runtime)
    c = creds["hmp-northgate"]
    prison = AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
    try:
        r = await prison.publish("release-notice", release_notice(dt.date.today()))
        assert r.status_code == 202, r.text
    finally:
        await prison.aclose()
    store = system.runtime.store
    for _ in range(100):
        entries = [e async for e in store.log_entries()]
        sealed = any(e["event"] == "accepted" and e["position"] is not None for e in entries)
        if sealed and await store.audit_checkpoints():  # a pass checkpoints after sealing
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the router sealed nothing, or signed no checkpoint")
    verdict = await verify_log(store, LogSigningKeys(system.settings.data_dir))
    assert verdict.ok, verdict.message
