"""End to end through real HTTP, the real broker and real webhooks: an IOM team's subscription
with a cohort filter receives only its cohort's release notices; a recall of a person
unlawfully at large travels in the priority lane to the police receiver, and its latency is
reported in its own lane."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.core.store.rows import TERMINAL_DELIVERY
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients
from tests.factories import example, release_notice

pytestmark = pytest.mark.integration

IOM, PRISON, PDU = "eastborough-police-iom", "hmp-northgate", "eastborough-pdu"


def _notice(pnc: str, crn: str) -> dict[str, Any]:
    body = release_notice()
    body["person"] = {**body["person"], "pnc_id": pnc, "crn": crn, "prison_number": "C1234DE"}
    body["risk"] = {"rosh_level": "very_high"}  # the IOM team is sent it
    return body


def _recall(pnc: str, crn: str, *, ual: bool) -> dict[str, Any]:
    body = example("licence-recall")
    body["person"] = {**body["person"], "pnc_id": pnc, "crn": crn}
    body["recall"]["unlawfully_at_large"] = ual
    return body


async def _settled(system: System, message_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The message's deliveries once it is routed and each delivery is finished."""
    assert system.runtime is not None
    store = system.runtime.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await store.get_message(message_id)
        rows = await store.list_deliveries(message_id=message_id)
        if message and message["routed_at"] and all(r["status"] in TERMINAL_DELIVERY for r in rows):
            return rows
        assert loop.time() < deadline, (message_id, rows)
        await asyncio.sleep(0.05)


async def test_cohort_filter_and_priority_lane(system: System, receivers: Receivers) -> None:
    assert system.runtime is not None
    creds = await ensure_demo_clients(system.runtime)
    clients = {
        p: AgencyClient(system.gateway_url, creds[p]["client_id"], creds[p]["client_secret"])
        for p in (IOM, PRISON, PDU)
    }
    iom = clients[IOM]
    cohort_sub = await iom.subscribe(
        ["release-notice"], receivers.url("iom-cohort"), filters={"cohort": True}
    )
    recall_sub = await iom.subscribe(
        ["licence-recall"], receivers.url("iom-recalls"), filters={"unlawfully_at_large": True}
    )
    everything = await iom.subscribe(["release-notice"], receivers.url("iom-all"))
    r = await iom.request(
        "PUT",
        f"/v1/subscriptions/{cohort_sub['id']}/cohort",
        json={"add": [{"pnc_id": "24/700001A"}, {"crn": "Q700002"}]},
    )
    assert r.status_code == 200 and r.json()["total"] == 2, r.text

    notices = {
        "in the cohort by PNC": _notice("24/700001A", "Q700001"),
        "in the cohort by CRN": _notice("24/700002B", "Q700002"),
        "not in the cohort": _notice("24/700003C", "Q700003"),
    }
    ids = {}
    for name, body in notices.items():
        r = await clients[PRISON].publish("release-notice", body)
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
    rows = {name: await _settled(system, mid) for name, mid in ids.items()}
    by_sub = {name: {d["subscription_id"] for d in r} for name, r in rows.items()}
    assert cohort_sub["id"] in by_sub["in the cohort by PNC"]
    assert cohort_sub["id"] in by_sub["in the cohort by CRN"]
    assert cohort_sub["id"] not in by_sub["not in the cohort"]
    # control: the unfiltered subscription of the same agency got all three
    assert all(everything["id"] in subs for subs in by_sub.values())
    got = [json.loads(x.body)["id"] for x in receivers.for_party("iom-cohort")]
    assert sorted(got) == sorted([ids["in the cohort by PNC"], ids["in the cohort by CRN"]])
    assert len(receivers.for_party("iom-all")) == 3

    r = await clients[PDU].publish("licence-recall", _recall("24/700004D", "Q700004", ual=False))
    assert r.status_code == 202, r.text
    ordinary = r.json()["id"]
    r = await clients[PDU].publish("licence-recall", _recall("24/700005E", "Q700005", ual=True))
    assert r.status_code == 202, r.text
    urgent = r.json()["id"]
    assert await receivers.wait_for({"iom-recalls"}, timeout=30)
    [delivered] = receivers.for_party("iom-recalls")
    assert json.loads(delivered.body)["id"] == urgent
    await _settled(system, ordinary)
    urgent_rows = await _settled(system, urgent)
    store = system.runtime.store
    assert (await store.get_message(urgent))["priority"] == 1  # type: ignore[index]
    assert (await store.get_message(ordinary))["priority"] == 0  # type: ignore[index]
    mine = [d for d in urgent_rows if d["subscription_id"] == recall_sub["id"]]
    assert [(d["priority"], d["delivered_at"] is not None) for d in mine] == [(1, True)]
    assert len(receivers.for_party("iom-recalls")) == 1  # the ordinary recall was filtered

    r = await iom.request("GET", "/v1/deliveries/latency")
    assert r.status_code == 200, r.text
    lanes = r.json()["received"]
    assert lanes["priority"]["count"] == 1 and lanes["normal"]["count"] == 5
    for c in clients.values():
        await c.aclose()
