"""The embedded broker is supervised: killed, it is restarted empty, its topics recreated and
the clients reconnected, and every message it lost is published again and delivered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients, settings_for_local
from tests.factories import release_notice

pytestmark = pytest.mark.integration


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[System]:
    settings = settings_for_local(
        tmp_path / "data", relay_poll_seconds=0.2, reconcile_after_seconds=2
    )
    system = await System(settings).start()
    yield system
    await system.stop()


async def test_killed_broker_is_restarted_and_nothing_is_lost(embedded: System) -> None:
    system = embedded
    assert system.runtime is not None and system.broker is not None
    receivers = await Receivers().start()
    try:
        creds = await ensure_demo_clients(system.runtime)
        prison, vawg = (
            AgencyClient(system.gateway_url, creds[p]["client_id"], creds[p]["client_secret"])
            for p in ("hmp-northgate", "eastborough-vawg")
        )
        await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))

        async def publish(i: int) -> str:
            body = release_notice()
            body["person"].update(pnc_id=f"26/{i:06d}B", crn=f"B{i:06d}")
            r = await prison.publish("release-notice", body)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

        before = [await publish(i) for i in range(5)]
        assert await receivers.wait_for({"eastborough-vawg"}, timeout=30)
        old_pid = system.broker.pid
        assert old_pid is not None
        pid_file = system.settings.data_dir / "broker.pid"
        assert int(pid_file.read_text()) == old_pid
        os.kill(old_pid, signal.SIGKILL)
        # accepted while the broker is down or just back (and empty)
        after = [await publish(i) for i in range(5, 15)]
        expected = set(before + after)
        for _ in range(600):
            got = {json.loads(r.body)["id"] for r in receivers.for_party("eastborough-vawg")}
            if got >= expected:
                break
            await asyncio.sleep(0.1)
        assert got == expected, f"missing {len(expected - got)} of {len(expected)}"
        assert system.broker_restarts == 1
        assert system.broker.pid != old_pid and int(pid_file.read_text()) == system.broker.pid
        await prison.aclose()
        await vawg.aclose()
    finally:
        await receivers.stop()
