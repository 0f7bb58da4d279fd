"""A release notice's lifecycle end to end, through real HTTP (uvicorn), the real broker and
real webhook receivers: the original reaches three recipients (flagged short notice), an
amendment lowering the risk no longer reaches the police, and the cancellation reaches all
three again, each with its own projection of the version it was entitled to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients
from tests.gateway.test_lifecycle import NEW_ADDRESS, lowered, notice

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

POLICE = "eastborough-police-iom"
RECIPIENTS = ["eastborough-vawg", "eastborough-housing", POLICE]


async def _events(receivers: Receivers, party: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events ``party`` received, waiting up to 30 s for them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(receivers.for_party(party)) < count:
        assert loop.time() < deadline, (party, len(receivers.for_party(party)))
        await asyncio.sleep(0.05)
    return [json.loads(r.body) for r in receivers.for_party(party)]


async def test_cancellation_reaches_everyone_the_original_reached(
    system: System, receivers: Receivers
) -> None:
    assert system.runtime is not None
    creds = await ensure_demo_clients(system.runtime)
    clients = {
        p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }
    for party in RECIPIENTS:
        await clients[party].subscribe(["release-notice"], receivers.url(party))
    prison = clients["hmp-northgate"]

    first = notice(days_ahead=1, early_by=14)
    r = await prison.publish("release-notice", first)
    assert r.status_code == 202, r.text
    root = r.json()["id"]
    assert r.json()["timeliness"]["short_notice"] is True
    originals = {p: (await _events(receivers, p, 1))[0] for p in RECIPIENTS}
    for party, event in originals.items():
        assert event["id"] == root and event["isalifecycle"] == "original"
        assert event["isashortnotice"] == "true" and event["isadaysearly"] == 14
        assert float(event["isanoticedays"]) == r.json()["timeliness"]["notice_days"]
        assert event["isaversion"] == 1 and "isarefersto" not in event, party

    r = await prison.request("POST", f"/v1/messages/{root}/amend", json=lowered(first))
    assert r.status_code == 202, r.text
    amended = r.json()["id"]
    assert POLICE not in {x["party"] for x in r.json()["recipients"]}
    for party in ("eastborough-vawg", "eastborough-housing"):
        event = (await _events(receivers, party, 2))[1]
        assert (event["id"], event["isalifecycle"], event["isarefersto"]) == (
            amended,
            "amended",
            root,
        )
        assert event["isaversion"] == 2 and event["isashortnotice"] == "true"

    r = await prison.request("POST", f"/v1/messages/{root}/cancel", json={"reason": "recalled"})
    assert r.status_code == 202, r.text
    cancelled = r.json()["id"]
    housing = await _events(receivers, "eastborough-housing", 3)
    vawg = await _events(receivers, "eastborough-vawg", 3)
    police = await _events(receivers, POLICE, 2)  # the original and the cancellation only
    for event in (housing[2], vawg[2], police[1]):
        assert (event["id"], event["isalifecycle"], event["isarefersto"]) == (
            cancelled,
            "cancelled",
            root,
        )
        assert event["isaversion"] == 3 and event["isacancelreason"] == "recalled"
    # the police, excluded from the amendment, see the cancellation of what they were told:
    # the original's address and date, never the amended ones
    assert police[1]["data"] == originals[POLICE]["data"]
    assert police[1]["isanoticedays"] == originals[POLICE]["isanoticedays"]
    assert NEW_ADDRESS["line1"] not in json.dumps(police)
    # housing was told of the amendment: its cancellation shows the amended date
    assert housing[2]["data"]["release"] == housing[1]["data"]["release"]
    assert housing[2]["data"]["release"]["date"] != housing[0]["data"]["release"]["date"]
    assert "address" not in json.dumps(housing)

    # GET /v1/messages/{id}: the state, and each caller's own history
    r = await prison.request("GET", f"/v1/messages/{root}")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["version"]) == ("cancelled", 3)
    assert [h["lifecycle"] for h in r.json()["history"]] == ["original", "amended", "cancelled"]
    r = await clients[POLICE].request("GET", f"/v1/messages/{cancelled}")
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["history"]] == [root, cancelled]
    assert r.json()["history"][1]["payload"] == police[1]["data"]
    r = await clients["eastborough-housing"].request("GET", f"/v1/messages/{root}")
    assert [h["payload"] for h in r.json()["history"]] == [e["data"] for e in housing]
    r = await clients["eastborough-police-dip"].request("GET", f"/v1/messages/{root}")
    assert r.status_code == 404
    for c in clients.values():
        await c.aclose()
