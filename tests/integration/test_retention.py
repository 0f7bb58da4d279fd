"""Retention of disclosures and deletion notices, with the real store (SQLite and
PostgreSQL), the real ISA engine on the demo agreements and the real router and dispatcher
(inbox channel: no Kafka). Time moves on a ManualClock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli import main
from services.core.clients import create_client
from services.core.clock import ManualClock
from services.core.isa.model import PolicySet
from services.core.kafka.publisher import InMemoryPublisher
from services.core.retention import (
    ACTION,
    NOTICE_TYPE,
    add_period,
    as_of_time,
    deletion_notice,
    notify_periodically,
    periods_for,
    retention_end,
)
from services.core.runtime import Runtime
from services.core.scopes import IG_AUDIT_SCOPE
from services.core.store import Store
from services.gateway.app import create_app
from services.router.dispatch import Dispatcher
from services.router.router import Router
from tests.factories import example
from tests.integration.conftest import T0, MakeRuntime, accept

pytestmark = pytest.mark.integration

PRISON, PDU = "hmp-northgate", "eastborough-pdu"
IOM, VLO = "eastborough-police-iom", "eastborough-vlo"
UTC = dt.UTC


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# -- calendar arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        (at(2026, 2, 28, 9), "P2Y", at(2028, 2, 28, 9)),
        (at(2028, 2, 29), "P1Y", at(2029, 2, 28)),  # no 29 February: the month's last day
        (at(2026, 1, 31), "P1M", at(2026, 2, 28)),
        (at(2026, 8, 31), "P6M", at(2027, 2, 28)),
        (at(2026, 11, 2, 9), "P2Y", at(2028, 11, 2, 9)),  # not 730 days: 2028 is a leap year
        (at(2026, 11, 2), "P1Y2M10D", at(2028, 1, 12)),
        (at(2026, 11, 2), "P2W", at(2026, 11, 16)),
        (at(2026, 11, 2), "PT24H", at(2026, 11, 3)),
    ],
)
def test_periods_are_calendar_based(start: dt.datetime, period: str, end: dt.datetime) -> None:
    assert add_period(start, period) == end


@pytest.mark.parametrize("bad", ["2Y", "P", "P1X", "P1YT", "1 year"])
def test_a_malformed_period_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="retention period"):
        add_period(T0, bad)


def test_several_agreements_keep_each_period_and_the_latest_end() -> None:
    periods = {"ISA-A@1": "P6M", "ISA-B@2": "P2Y", "ISA-C@1": None}
    assert retention_end(at(2026, 11, 2), periods) == ("P2Y", at(2028, 11, 2))
    assert retention_end(at(2026, 11, 2), {"ISA-C@1": None}) == (None, None)


def test_periods_come_from_the_granting_agreement_for_that_recipient() -> None:
    empty = PolicySet(parties={})
    grant = {"agreement": "ISA-X", "version": "1"}
    assert periods_for(empty, IOM, [grant]) == {"ISA-X@1": None}


def test_as_of_accepts_a_date_or_an_aware_date_time() -> None:
    assert as_of_time("2028-11-03") == at(2028, 11, 3)
    assert as_of_time("2028-11-03T12:00:00+01:00") == at(2028, 11, 3, 11)
    for bad in ("03/11/2028", "2028-11-03T12:00:00"):
        with pytest.raises(ValueError, match="--as-of"):
            as_of_time(bad)


# -- recorded with each delivery, listed, notified ---------------------------------------------


def release_notice(i: int) -> dict[str, Any]:
    body = example("release-notice")
    body["person"] = {
        "given_name": "Test",
        "family_name": f"Retention{i}",
        "date_of_birth": "1990-01-01",
        "pnc_id": f"26/{300000 + i}R",
        "crn": f"R{300000 + i}",
    }
    return body


async def deliver(rt: Runtime, i: int) -> dict[str, Any]:
    """Accept a release notice from the prison, route it and deliver it on every inbox."""
    stored = await accept(rt, PRISON, "release-notice", release_notice(i))
    publisher = InMemoryPublisher()
    await Router(rt, publisher).route(stored)
    dispatcher = Dispatcher(rt, publisher)
    try:
        for row in await rt.store.due_deliveries(rt.clock(), 100, set()):
            await dispatcher.attempt(row)
    finally:
        await dispatcher.aclose()
    assert publisher.records == [], "the inbox channel does not publish"
    return stored


async def subscribe_inboxes(rt: Runtime, *parties: str) -> None:
    for party in parties:
        await rt.store.add_subscription(
            {
                "id": str(uuid.uuid4()),
                "party": party,
                "message_types": ["release-notice"],
                "channel": "inbox",
                "created_at": T0,
                "status": "active",
            }
        )


async def test_retention_is_recorded_with_each_delivery(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, PDU, IOM, VLO)
    message = await deliver(rt, 1)
    rows = {r["recipient"]: r for r in await rt.store.list_deliveries(message_id=message["id"])}
    assert {p: rows[p]["status"] for p in (PDU, IOM, VLO)} == dict.fromkeys(
        (PDU, IOM, VLO), "delivered"
    )
    assert rows[IOM]["delivered_at"] == T0
    # ISA-EB-010 keeps two years for police IOM and six for probation, on the calendar
    assert (rows[IOM]["retention"], rows[IOM]["retain_until"]) == ("P2Y", at(2028, 11, 2, 9))
    assert (rows[PDU]["retention"], rows[PDU]["retain_until"]) == ("P6Y", at(2032, 11, 2, 9))
    # ISA-EB-020 declares none for the victim liaison officer: null, no default invented
    assert (rows[VLO]["retention"], rows[VLO]["retain_until"]) == (None, None)

    logged = {
        e["recipient"]: e["detail"]
        for e in await rt.store.audit_entries(message["id"])
        if e["event"] == "delivered"
    }
    assert logged[IOM]["retention"] == {"ISA-EB-010@2.1": "P2Y"}
    assert logged[IOM]["retain_until"] == "2028-11-02T09:00:00Z"
    assert logged[VLO]["retention"] == {"ISA-EB-020@1.2": None}
    assert logged[VLO]["retain_until"] is None

    undeclared = await rt.store.retention_undeclared()
    assert [(u["recipient"], u["message_id"]) for u in undeclared] == [(VLO, message["id"])]
    assert await rt.store.retention_undeclared(party=IOM) == []


async def test_notify_tells_each_recipient_once(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, PDU, IOM, VLO)
    message = await deliver(rt, 2)
    (iom,) = await rt.store.list_deliveries(message_id=message["id"], recipient=IOM)
    assert isinstance(rt.clock, ManualClock)

    # one second before the end nothing is due; at the end the IOM copy is
    assert await rt.store.retention_due(at(2028, 11, 2, 8, 59, 59)) == []
    due = await rt.store.retention_due(at(2028, 11, 2, 9))
    assert [(d["id"], d["deletion_notified_at"]) for d in due] == [(iom["id"], None)]

    rt.clock.advance(at(2028, 11, 3) - T0)
    now = rt.clock()
    sent = await rt.store.notify_retention_due(now, now, deletion_notice)
    assert [(s["recipient"], s["delivery_ids"]) for s in sent] == [(IOM, [iom["id"]])]
    # idempotent: a second run sends nothing
    assert await rt.store.notify_retention_due(now, now, deletion_notice) == []

    notices = await rt.store.inbox_after(IOM, 0, 100, kinds=("notice",))
    assert len(notices) == 1
    body = notices[0]["body"]
    event = json.loads(body)
    assert event["type"] == NOTICE_TYPE
    assert event["id"] == sent[0]["notice_id"]
    assert event["data"] == {
        "recipient": IOM,
        "action": ACTION,
        "deliveries": [
            {
                "delivery_id": iom["id"],
                "message_id": message["id"],
                "message_type": "release-notice",
                "agreements": ["ISA-EB-010@2.1"],
                "delivered_at": "2026-11-02T09:00:00Z",
                "retain_until": "2028-11-02T09:00:00Z",
            }
        ],
    }
    for personal in ("Retention2", "26/300002R", "R300002", "1990-01-01", message["person"]):
        assert personal not in body
    # nobody else was told: the others' retention has not ended
    assert await rt.store.inbox_after(PDU, 0, 100, kinds=("notice",)) == []

    logged = [
        e for e in await rt.store.audit_entries(message["id"]) if e["event"] == "deletion_notice"
    ]
    assert len(logged) == 1
    assert (logged[0]["recipient"], logged[0]["person"]) == (IOM, message["person"])
    assert logged[0]["detail"] == {
        "delivery_id": iom["id"],
        "notice_id": event["id"],
        "retention": "P2Y",
        "retain_until": "2028-11-02T09:00:00+00:00",
    }
    (listed,) = await rt.store.retention_due(now)
    assert listed["deletion_notified_at"] == now


async def test_notices_are_batched_and_runs_at_once_never_double_notify(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, IOM, PDU)
    for i in range(3):
        await deliver(rt, 10 + i)
    after = at(2028, 11, 3)
    # a batch of two: two notices for three deliveries, in one run
    sent = await rt.store.notify_retention_due(after, after, deletion_notice, batch=2)
    assert [(s["recipient"], len(s["delivery_ids"])) for s in sent] == [(IOM, 2), (IOM, 1)]

    # two runs at once (two stores, as two processes would be): each delivery once
    other = Store(database_url)
    try:
        later = at(2032, 11, 3)
        runs = await asyncio.gather(
            rt.store.notify_retention_due(later, later, deletion_notice, party=PDU),
            other.notify_retention_due(later, later, deletion_notice, party=PDU),
        )
    finally:
        await other.aclose()
    notified = [d for run in runs for s in run for d in s["delivery_ids"]]
    pdu = await rt.store.list_deliveries(recipient=PDU)
    assert len(pdu) == 3
    assert sorted(notified) == sorted(d["id"] for d in pdu)  # each exactly once
    notices = await rt.store.inbox_after(PDU, 0, 100, kinds=("notice",))
    assert sum(len(json.loads(n["body"])["data"]["deliveries"]) for n in notices) == 3


async def test_the_retention_commands(
    make_runtime: MakeRuntime,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, IOM, VLO)
    message = await deliver(rt, 30)
    (iom,) = await rt.store.list_deliveries(message_id=message["id"], recipient=IOM)
    monkeypatch.setenv("ISA_BROKER_DATABASE_URL", database_url)
    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> str:
        code = main(list(argv))
        assert code == 0
        return capsys.readouterr().out

    # the commands run their own event loop: run them from a thread
    out = await asyncio.to_thread(
        run, "retention", "due", "--as-of", "2028-11-03", "--format", "json"
    )
    doc = json.loads(out)
    assert [d["delivery_id"] for d in doc["due"]] == [iom["id"]]
    assert doc["due"][0]["deletion_notified_at"] is None
    assert doc["due"][0]["agreements"] == ["ISA-EB-010@2.1"]
    assert [d["recipient"] for d in doc["no_retention_declared"]] == [VLO]
    assert "Retention30" not in out and message["person"] not in out

    out = await asyncio.to_thread(
        run, "retention", "notify", "--as-of", "2028-11-03", "--party", IOM
    )
    assert out.endswith("1 deletion notice(s) sent for 1 delivery(ies)\n")
    out = await asyncio.to_thread(run, "retention", "notify", "--as-of", "2028-11-03")
    assert out == "0 deletion notice(s) sent for 0 delivery(ies)\n"
    table = await asyncio.to_thread(run, "retention", "due", "--as-of", "2028-11-03")
    assert iom["id"] in table and "not notified" not in table
    assert "no retention declared (the agreement must be corrected): 1" in table

    with pytest.raises(SystemExit, match="--as-of must be a date"):
        await asyncio.to_thread(main, ["retention", "due", "--as-of", "next week"])


async def test_ig_officers_read_the_due_list_over_http(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, IOM, VLO)
    message = await deliver(rt, 40)
    (iom,) = await rt.store.list_deliveries(message_id=message["id"], recipient=IOM)
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url=rt.settings.public_url) as http:
        creds = await create_client(rt, PRISON, scopes=[IG_AUDIT_SCOPE])
        r = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.get(
            "/v1/retention/due", params={"as_of": "2028-11-03T00:00:00Z"}, headers=headers
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(d["delivery_id"], d["retain_until"]) for d in body["due"]] == [
            (iom["id"], "2028-11-02T09:00:00Z")
        ]
        assert [d["recipient"] for d in body["no_retention_declared"]] == [VLO]
        assert "Retention40" not in r.text and message["person"] not in r.text

        r = await http.get(
            "/v1/retention/due", params={"as_of": "2028-11-03T00:00:00"}, headers=headers
        )
        assert r.status_code == 422
        assert "as_of" in r.text
    reads = [e for e in await rt.store.audit_entries() if e["event"] == "retention_read"]
    assert [(e["actor"], e["detail"]["due"]) for e in reads] == [(PRISON, 1)]


async def test_the_routers_retention_task_sends_what_falls_due_once(
    make_runtime: MakeRuntime,
) -> None:
    rt = await make_runtime()
    await subscribe_inboxes(rt, IOM)
    message = await deliver(rt, 9)
    assert isinstance(rt.clock, ManualClock)
    task = asyncio.create_task(notify_periodically(rt.store, rt.clock, 0.01))
    try:

        async def notices() -> list[dict[str, Any]]:
            return await rt.store.inbox_after(IOM, 0, 100, kinds=("notice",))

        for _ in range(20):  # several passes while nothing is due: nothing sent
            await asyncio.sleep(0.01)
        assert await notices() == []
        rt.clock.advance(at(2028, 11, 3) - T0)  # past the IOM team's two years
        for _ in range(500):
            if await notices():
                break
            await asyncio.sleep(0.01)
        for _ in range(20):  # later passes send nothing more
            await asyncio.sleep(0.01)
        [notice] = await notices()
        data = json.loads(notice["body"])["data"]
        assert [d["message_id"] for d in data["deliveries"]] == [message["id"]]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
