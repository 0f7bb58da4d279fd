"""End to end with real HTTP (uvicorn), the real broker and real webhook receivers, on a
clock the test moves: an overdue acknowledgement duty escalates to the sender's and the
escalation party's receivers, signed like any delivery; an acknowledged one raises nothing;
a cancelled notice's duties are cleared and raise nothing either. A recipient's receiver
acknowledges its duty knowing only what the delivery carried (``isadutyid``); an inbox entry
carries the same attributes; an amendment arrives with the deadline it moved."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from services.core.clock import ManualClock
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KAFKA_COMPAT
from tests.core.timeliness.timeliness_world import (
    HOUSING,
    PDU,
    PRISON,
    RECOVERY,
    START,
    VAWG,
    notice,
)

pytestmark = pytest.mark.integration

ESCALATION = "org.isa-broker.duty-escalation.v1"


@pytest.fixture
async def clocked(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[System]:
    settings = settings_for_local(
        tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_compat=KAFKA_COMPAT,
        kafka_topic_prefix=f"duty{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.1,
        scheduler_poll_seconds=0.05,
        webhook_retry_schedule=(0, 0.05, 0.1),
    )
    system = await System(settings, clock=ManualClock(START)).start()
    yield system
    await system.stop()


def _signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks v1 signature, checked by hand: the webhook timestamp is the
    business clock's (moved days ahead here), which a stock verifier would refuse as too new."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in headers["webhook-signature"].split()


async def _wait(probe: Any, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (found := await probe()):
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


async def test_an_overdue_duty_escalates_to_the_sender_and_the_escalation_party(
    clocked: System, receivers: Receivers
) -> None:
    runtime = clocked.runtime
    assert runtime is not None and isinstance(runtime.clock, ManualClock)
    creds = await ensure_demo_clients(runtime)
    clients = {
        p: AgencyClient(clocked.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }
    try:
        await _scenario(runtime, clients, receivers)
    finally:
        for c in clients.values():
            await c.aclose()


async def _scenario(runtime: Any, clients: dict[str, AgencyClient], receivers: Receivers) -> None:
    secrets = {
        PRISON: (await clients[PRISON].subscribe(["licence-recall"], receivers.url(PRISON)))[
            "secret"
        ],
        PDU: (await clients[PDU].subscribe(["release-notice"], receivers.url(PDU)))["secret"],
    }
    r = await clients[PRISON].publish("release-notice", notice(5))
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    # the PDU is a recipient of the notice itself (offender management): its copy arrives
    assert await receivers.wait_for({PDU}, timeout=30)

    async def duties() -> dict[str, dict[str, Any]]:
        r = await clients[PRISON].request(
            "GET", "/v1/duties", params={"role": "sender", "message_id": mid}
        )
        assert r.status_code == 200, r.text
        return {d["recipient"]: d for d in r.json()["duties"]}

    by_party = await _wait(duties)
    assert VAWG in by_party
    # the VAWG service acknowledges; the others do not
    r = await clients[VAWG].request(
        "POST",
        f"/v1/duties/{by_party[VAWG]['id']}/acknowledge",
        json={"action": "victim_contacted"},
    )
    assert r.status_code == 200 and r.json()["late"] is False, r.text
    overdue = {
        p for p, d in by_party.items() if p != VAWG and d["due_at"] <= "2026-12-03T09:00:00Z"
    }
    assert overdue  # VLO and treatment, due 24 h after routing

    runtime.clock.advance(dt.timedelta(hours=24))

    def escalations(party: str) -> list[dict[str, Any]]:
        out = []
        for req in receivers.for_party(party):
            event = json.loads(req.body)
            if event["type"] == ESCALATION:
                assert _signed(secrets[party], req.headers, req.body), req.headers
                out.append(event)
        return out

    async def both_told() -> bool:
        return all(len(escalations(p)) >= len(overdue) for p in (PRISON, PDU))

    await _wait(both_told)
    await asyncio.sleep(0.5)  # the scheduler looks many more times: still once each
    for party in (PRISON, PDU):
        events = escalations(party)
        assert sorted(e["data"]["recipient"] for e in events) == sorted(overdue), party
        assert all(e["data"]["message_id"] == mid and e["subject"] == mid for e in events)
        assert all(e["isarecipient"] == party for e in events)
        assert not any("isadutyid" in e or "isadutydue" in e for e in events)  # broker events
        assert VAWG not in {e["data"]["recipient"] for e in events}
    # the overdue list of the sender shows them, escalated
    r = await clients[PRISON].request(
        "GET", "/v1/duties", params={"role": "sender", "status": "overdue"}
    )
    assert {d["recipient"] for d in r.json()["duties"]} == overdue
    assert {d["status"] for d in r.json()["duties"]} == {"escalated"}

    # a cancelled notice's duties are cleared: nothing escalates, however long we wait
    body = notice(5)
    body["person"] = {**body["person"], "crn": "X777777", "pnc_id": "2026/0000777C"}
    r = await clients[PRISON].publish("release-notice", body)
    second = r.json()["id"]

    async def routed() -> bool:
        m = await runtime.store.get_message(second)
        return m is not None and m["routed_at"] is not None

    await _wait(routed)
    r = await clients[PRISON].request(
        "POST", f"/v1/messages/{second}/cancel", json={"reason": "exemption_panel_refused"}
    )
    assert r.status_code == 202, r.text
    cancel_id = r.json()["id"]

    async def cleared() -> bool:
        rows = await runtime.store.list_duties(PRISON, role="sender", message_id=second)
        m = await runtime.store.get_message(cancel_id)
        return (
            bool(rows)
            and m is not None
            and m["routed_at"] is not None
            and all(d["status"] == "cleared" for d in rows)
        )

    await _wait(cleared)
    before = len(escalations(PRISON))
    runtime.clock.advance(dt.timedelta(days=10))
    await asyncio.sleep(0.5)
    # the first notice's housing duty (due after 2 days) escalates now; nothing of the second
    await _wait(lambda: _more(escalations, PRISON, before))
    await asyncio.sleep(0.3)
    later = escalations(PRISON)[before:]
    assert {e["data"]["message_id"] for e in later} == {mid}


async def _more(escalations: Any, party: str, before: int) -> bool:
    return len(escalations(party)) > before


# -- acting on what a delivery carries -----------------------------------------------------------


@dataclass
class AcknowledgingReceivers(Receivers):
    """Webhook endpoints that do what an agency's system does with a delivery (as
    docs/integrators.md shows): verify the signature, then acknowledge each duty the event
    names in ``isadutyid``, with ``POST /v1/duties/{id}/acknowledge`` as the party's own
    client. Nothing else tells them of the duty."""

    clients: dict[str, AgencyClient] = field(default_factory=dict)
    #: (party, duty id, the broker's answer) of each acknowledgement made
    acknowledgements: list[tuple[str, str, httpx.Response]] = field(default_factory=list)

    async def _hook(self, request: Request) -> Response:
        before = len(self.received)
        answer = await super()._hook(request)  # verifies the signature; records a new one
        if len(self.received) == before:
            return answer  # refused, or a delivery already processed
        party = request.path_params["party"]
        event = json.loads(self.received[-1].body)
        for duty_id in filter(None, str(event.get("isadutyid", "")).split(",")):
            r = await self.clients[party].request("POST", f"/v1/duties/{duty_id}/acknowledge")
            self.acknowledgements.append((party, duty_id, r))
        return answer


def _events_of(receivers: Receivers, party: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receivers.for_party(party)]


async def test_a_receiver_acknowledges_its_duty_from_what_the_delivery_carried(
    clocked: System, receivers: Receivers
) -> None:
    runtime = clocked.runtime
    assert runtime is not None and isinstance(runtime.clock, ManualClock)
    clock = runtime.clock
    creds = await ensure_demo_clients(runtime)
    clients = {
        p: AgencyClient(clocked.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }
    # the receivers' clock is the broker's (moved by the test), for the timestamp tolerance
    acking = await AcknowledgingReceivers(
        clock=lambda: clock().timestamp(), clients={VAWG: clients[VAWG]}
    ).start()
    try:
        await _acting_on_deliveries(runtime, clients, acking, receivers)
    finally:
        await acking.stop()
        for c in clients.values():
            await c.aclose()


async def _acting_on_deliveries(
    runtime: Any,
    clients: dict[str, AgencyClient],
    acking: AcknowledgingReceivers,
    receivers: Receivers,
) -> None:
    vawg = await clients[VAWG].subscribe(["release-notice"], acking.url(VAWG))
    acking.trust(VAWG, vawg["secret"])
    for party in (HOUSING, PDU):  # these record only; the test reads what they were sent
        await clients[party].subscribe(["release-notice"], receivers.url(party))
    r = await clients[RECOVERY].request(
        "POST", "/v1/subscriptions", json={"message_types": ["release-notice"], "channel": "inbox"}
    )
    assert r.status_code == 201, r.text

    # released in two days: every duty is due at least a day before, at 00:00 tomorrow
    r = await clients[PRISON].publish("release-notice", notice(2))
    assert r.status_code == 202, r.text
    mid = r.json()["id"]

    # the VAWG service's receiver acknowledged, from the event alone
    async def acknowledged() -> bool:
        return bool(acking.acknowledgements)

    await _wait(acknowledged)
    [(party, duty_id, answer)] = acking.acknowledgements
    assert party == VAWG and answer.status_code == 200, answer.text
    [event] = _events_of(acking, VAWG)
    assert event["id"] == mid and event["isadutyid"] == duty_id
    assert event["isadutydue"] == "2026-12-03T00:00:00Z"
    # the sender reads the duty acknowledged, by the VAWG service's client
    r = await clients[PRISON].request("GET", f"/v1/duties/{duty_id}")
    assert r.status_code == 200, r.text
    duty = r.json()
    assert (duty["recipient"], duty["message_id"], duty["status"]) == (VAWG, mid, "acknowledged")
    assert duty["acknowledged_by"] == clients[VAWG].client_id and duty["late"] is False

    # housing's copy names housing's own duty; the probation service's flow has none
    assert await receivers.wait_for({HOUSING, PDU}, timeout=30)
    [housing] = _events_of(receivers, HOUSING)
    r = await clients[HOUSING].request("GET", "/v1/duties", params={"message_id": mid})
    [housing_duty] = r.json()["duties"]
    assert housing["isadutyid"] == housing_duty["id"] and housing_duty["status"] == "open"
    assert housing["isadutydue"] == "2026-12-03T00:00:00Z"
    [pdu] = _events_of(receivers, PDU)
    assert "isadutyid" not in pdu and "isadutydue" not in pdu

    # the inbox entry carries the same attributes; the treatment provider acknowledges with them
    async def inboxed_message() -> dict[str, Any] | None:
        r = await clients[RECOVERY].request("GET", "/v1/inbox", params={"after": 0, "wait": 5})
        assert r.status_code == 200, r.text
        entries = [e for e in r.json()["entries"] if e["kind"] == "message"]
        return next((e["event"] for e in entries if e["event"]["id"] == mid), None)

    inboxed = await _wait(inboxed_message)
    assert inboxed["isadutydue"] == "2026-12-03T00:00:00Z"
    r = await clients[RECOVERY].request("POST", f"/v1/duties/{inboxed['isadutyid']}/acknowledge")
    assert r.status_code == 200, r.text
    assert r.json()["recipient"] == RECOVERY and r.json()["status"] == "acknowledged"
    r = await clients[RECOVERY].request("GET", f"/v1/duties/{inboxed['isadutyid']}")
    assert r.json()["status"] == "acknowledged" and r.json()["message_id"] == mid

    # an amendment a day later in the release: housing's copy carries the moved deadline
    runtime.clock.advance(dt.timedelta(hours=2))
    r = await clients[PRISON].request("POST", f"/v1/messages/{mid}/amend", json=notice(3))
    assert r.status_code == 202, r.text
    update = r.json()["id"]

    async def amended(party: str, seen: Receivers) -> dict[str, Any] | None:
        return next((e for e in _events_of(seen, party) if e["id"] == update), None)

    housing_amended = await _wait(lambda: amended(HOUSING, receivers))
    assert housing_amended["isalifecycle"] == "amended" and housing_amended["isarefersto"] == mid
    assert housing_amended["isadutyid"] == housing_duty["id"]
    assert housing_amended["isadutydue"] == "2026-12-04T00:00:00Z"
    r = await clients[HOUSING].request("GET", f"/v1/duties/{housing_duty['id']}")
    assert r.json()["due_at"] == "2026-12-04T00:00:00Z"
    # the VAWG service has nothing left to acknowledge: its copy names no duty
    vawg_amended = await _wait(lambda: amended(VAWG, acking))
    assert "isadutyid" not in vawg_amended and "isadutydue" not in vawg_amended
    assert len(acking.acknowledgements) == 1

    # a cancellation names no duty (it cleared them)
    r = await clients[PRISON].request(
        "POST", f"/v1/messages/{mid}/cancel", json={"reason": "release_deferred"}
    )
    assert r.status_code == 202, r.text
    cancel = r.json()["id"]

    async def cancelled() -> dict[str, Any] | None:
        return next((e for e in _events_of(receivers, HOUSING) if e["id"] == cancel), None)

    housing_cancelled = await _wait(cancelled)
    assert housing_cancelled["isalifecycle"] == "cancelled"
    assert "isadutyid" not in housing_cancelled and "isadutydue" not in housing_cancelled
