"""Acknowledgement duties from the agreements, with a controlled clock: the declaration and
the loader's refusals; duties created at routing; an acknowledged alert raises nothing; an
unacknowledged one escalates exactly once, at its due time and not a microsecond earlier; an
amended release moves its deadline; a cancelled release clears its duties; the API (lists,
acknowledgement, refusals, another agency's ids)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.errors import AgreementFileInvalid
from services.core.isa.loader import load_policies
from services.core.isa.model import parse_duration
from tests.core.timeliness.timeliness_world import (
    HOUSING,
    PDU,
    PRISON,
    RECOVERY,
    START,
    VAWG,
    VLO,
    World,
    notice,
    world,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
US = dt.timedelta(microseconds=1)

# -- the declaration -----------------------------------------------------------------------------


def test_demo_agreements_declare_duties_with_readable_rules() -> None:
    policies = load_policies(REPO / "isa_policies", REPO / "schemas")
    rules = {
        (a.id, f.id): (f.duty.rule, sorted(f.duty.escalate_to))
        for a in policies.agreements
        for f in a.flows
        if f.duty is not None
    }
    assert rules[("ISA-EB-020", "perpetrator-release-alert")] == (
        "within PT24H; at least P1D before release.date",
        [PDU],
    )
    assert rules[("ISA-EB-040", "release-to-housing")][0] == (
        "within P2D; at least P1D before release.date"
    )
    assert ("ISA-EB-040", "release-to-treatment") in rules
    assert ("ISA-EB-010", "release-to-probation") not in rules  # no duty declared there


def test_durations() -> None:
    assert parse_duration("PT24H") == dt.timedelta(hours=24)
    assert parse_duration("P1DT12H") == dt.timedelta(days=1, hours=12)
    assert parse_duration("P2W") == dt.timedelta(weeks=2)
    for bad in ("P1M", "P1Y", "24h", "P", "PT", "P1.5D"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_duration(bad)


Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "isa_policies"
    shutil.copytree(REPO / "isa_policies", target)
    return target


def _with_duty(policies: Path, spec: dict[str, Any]) -> None:
    path = policies / "agreements" / "ISA-EB-020.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["flows"][0]["acknowledge"] = spec
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


WHERE = "ISA-EB-020.yaml: ISA-EB-020 /flows/0 (perpetrator-release-alert) /acknowledge"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"before": {"field": "release.when"}, "escalate_to": [PDU]},
            f"{WHERE}/before: release-notice has no field 'release.when'",
        ),
        (
            {"before": {"field": "release.type"}, "escalate_to": [PDU]},
            f"{WHERE}/before: release-notice field 'release.type' is not a date",
        ),
        (
            {"within": "PT24H", "escalate_to": ["eastborough-police-iom"]},
            f"{WHERE}/escalate_to: 'eastborough-police-iom' is not a party to the agreement",
        ),
        ({"escalate_to": [PDU]}, f"{WHERE}: names neither 'within' nor 'before'"),
        ({"within": "P1M", "escalate_to": [PDU]}, f"{WHERE}: 'P1M' is not an ISO 8601 duration"),
        (
            {"before": {"field": "release.date", "offset": "1 day"}, "escalate_to": [PDU]},
            f"{WHERE}: '1 day' is not an ISO 8601 duration",
        ),
    ],
)
def test_a_bad_declaration_is_refused_naming_file_agreement_and_flow(
    policies: Path, spec: dict[str, Any], message: str
) -> None:
    _with_duty(policies, spec)
    with pytest.raises(AgreementFileInvalid) as info:
        load_policies(policies, REPO / "schemas")
    assert str(info.value).startswith(message), str(info.value)


def test_control_a_good_declaration_loads(policies: Path) -> None:
    _with_duty(
        policies,
        {
            "before": {"field": "release.conditional_release_date", "offset": "PT12H"},
            "escalate_to": ["kind:probation"],
        },
    )
    loaded = load_policies(policies, REPO / "schemas")
    duty = loaded.agreement("ISA-EB-020").flows[0].duty  # type: ignore[union-attr]
    assert duty is not None
    assert duty.rule == "at least PT12H before release.conditional_release_date"
    assert duty.escalate_to == {PDU} and duty.within is None


# -- duties at routing, acknowledgement and escalation -------------------------------------------


@pytest.fixture
async def w(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """On SQLite and on PostgreSQL (``database_url`` is parametrised over both)."""
    async with world(tmp_path, database_url) as it:
        yield it


async def _subscribe_inbox(w: World, party: str, types: list[str]) -> str:
    r = await w.http.post(
        "/v1/subscriptions",
        json={"message_types": types, "channel": "inbox"},
        headers=await w.headers(party),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_routing_creates_one_duty_per_entitled_recipient_and_flow(w: World) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    assert sorted(duties) == sorted([VAWG, VLO, HOUSING, RECOVERY])
    # within 24 h of routing (the release point is later): START + 24 h; housing: 2 days
    assert duties[VAWG]["due_at"] == START + dt.timedelta(hours=24)
    assert duties[HOUSING]["due_at"] == START + dt.timedelta(days=2)
    assert all(d["status"] == "open" and d["sender"] == PRISON for d in duties.values())
    timers = await w.runtime.store.list_timers(kind="duty-due")
    assert sorted(t["subject"] for t in timers) == sorted(d["id"] for d in duties.values())
    # routed twice (a repeat from the broker): nothing more
    message = await w.runtime.store.get_message(mid)
    assert message is not None and message["routed_at"] is not None
    await w.route(mid)
    assert len(await w.runtime.store.list_timers(kind="duty-due")) == 4


async def test_the_release_point_wins_when_it_is_earlier(w: World) -> None:
    # released in two days: at least a day before is tomorrow 00:00, before START + 24 h
    mid = await w.send(PRISON, "release-notice", notice(2))
    duties = await w.duties(mid)
    midnight = dt.datetime.combine(START.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert duties[VAWG]["due_at"] == midnight
    assert duties[HOUSING]["due_at"] == midnight


async def test_an_acknowledged_alert_raises_nothing(w: World) -> None:
    await _subscribe_inbox(w, PDU, ["licence-recall"])
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    for party in (VAWG, VLO, HOUSING, RECOVERY):
        action = {VAWG: "victim_contacted", HOUSING: "accommodation_offered"}.get(party)
        body = {"action": action} if action else {}
        r = await w.acknowledge(party, duties[party]["id"], **body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged" and r.json()["late"] is False
        assert r.json()["action"] == action
    w.clock.advance(dt.timedelta(days=30))
    assert await w.scheduler().run_due(w.clock()) == 0
    assert await w.events("duty-escalation") == []
    assert {d["status"] for d in (await w.duties(mid)).values()} == {"acknowledged"}
    assert await w.runtime.store.inbox_after(PDU, 0, 100) == []
    audit = await w.runtime.store.audit_entries(mid)
    assert sum(e["event"] == "duty_acknowledged" for e in audit) == 4
    assert not any(e["event"] == "duty_escalated" for e in audit)


async def test_an_unacknowledged_alert_escalates_once_at_its_due_time(w: World) -> None:
    pdu_sub = await _subscribe_inbox(w, PDU, ["licence-recall"])  # any type: still reached
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    # the others acknowledge; the VAWG service does not
    for party in (VLO, HOUSING, RECOVERY):
        assert (await w.acknowledge(party, duties[party]["id"])).status_code == 200
    due = duties[VAWG]["due_at"]
    scheduler = w.scheduler()

    w.clock.now = due - US  # not a microsecond early
    assert await scheduler.run_due(w.clock()) == 0
    assert (await w.runtime.store.get_duty(duties[VAWG]["id"]))["status"] == "open"  # type: ignore[index]

    w.clock.now = due
    assert await scheduler.run_due(w.clock()) == 1
    duty = await w.runtime.store.get_duty(duties[VAWG]["id"])
    assert duty is not None and duty["status"] == "escalated" and duty["escalated_at"] == due
    [event] = await w.events("duty-escalation")
    data = event["payload"]["data"]
    assert event["payload"]["type"] == "org.isa-broker.duty-escalation.v1"
    assert event["payload"]["subject"] == mid and event["person"] == duties[VAWG]["person"]
    assert data == {
        "duty_id": duty["id"],
        "message_id": mid,
        "message_type": "release-notice",
        "recipient": VAWG,
        "sender": PRISON,
        "agreement": "ISA-EB-020@1.2",
        "flow": "perpetrator-release-alert",
        "rule": "within PT24H; at least P1D before release.date",
        "due_at": due.isoformat().replace("+00:00", "Z"),
        "escalated_to": [PDU, PRISON],
    }
    # no personal data in the event: ids, codes and the deadline only
    message = await w.runtime.store.get_message(mid)
    assert message is not None
    text = json.dumps(event["payload"])
    for value in (
        message["payload"]["person"]["given_name"],
        message["payload"]["person"]["family_name"],
    ):
        assert value not in text
    # the PDU's subscription has a delivery; the prison, with none, a notice on its feed
    [delivery] = await w.runtime.store.list_deliveries(message_id=event["id"])
    assert delivery["recipient"] == PDU and delivery["subscription_id"] == pdu_sub
    [entry] = await w.runtime.store.inbox_after(PRISON, 0, 100)
    assert entry["kind"] == "notice"
    assert json.loads(entry["body"])["type"] == "org.isa-broker.duty-escalation.v1"

    # never again, however long the clock runs
    w.clock.advance(dt.timedelta(days=10))
    assert await scheduler.run_due(w.clock()) == 0
    assert len(await w.events("duty-escalation")) == 1
    audit = [e for e in await w.runtime.store.audit_entries(mid) if e["event"] == "duty_escalated"]
    assert len(audit) == 1 and audit[0]["recipient"] == VAWG

    # a late acknowledgement is still recorded, and marked late
    r = await w.acknowledge(VAWG, duty["id"], action="safety_plan_reviewed")
    assert r.status_code == 200 and r.json()["late"] is True, r.text
    assert r.json()["escalated_at"] is not None


async def test_an_amended_release_moves_its_deadline(w: World) -> None:
    body = notice(2)
    mid = await w.send(PRISON, "release-notice", body)
    before = await w.duties(mid)
    midnight = dt.datetime.combine(START.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert before[HOUSING]["due_at"] == midnight

    amended = notice(3)  # released a day later
    update = await w.update(PRISON, mid, "amend", amended)
    await w.route(update)
    after = await w.duties(mid)
    assert after[HOUSING]["due_at"] == midnight + dt.timedelta(days=1)
    # the VAWG duty: 24 h after it was created, now earlier than a day before release
    assert after[VAWG]["due_at"] == START + dt.timedelta(hours=24)
    timers = {t["subject"]: t for t in await w.runtime.store.list_timers(kind="duty-due")}
    assert timers[after[HOUSING]["id"]]["due_at"] == midnight + dt.timedelta(days=1)

    scheduler = w.scheduler()
    w.clock.now = midnight  # the old deadline: nothing
    assert await scheduler.run_due(w.clock()) == 0
    w.clock.now = midnight + dt.timedelta(days=1) - US
    escalated = await scheduler.run_due(w.clock())
    assert escalated == 3  # VAWG, VLO, treatment (24 h) - not housing
    assert (await w.runtime.store.get_duty(after[HOUSING]["id"]))["status"] == "open"  # type: ignore[index]
    w.clock.now = midnight + dt.timedelta(days=1)
    assert await scheduler.run_due(w.clock()) == 1
    assert (await w.runtime.store.get_duty(after[HOUSING]["id"]))["status"] == "escalated"  # type: ignore[index]


async def test_an_amendment_clears_a_party_no_longer_entitled_and_adds_a_new_one(
    w: World,
) -> None:
    body = notice(5)
    ost = body["resettlement_needs"].pop("opioid_substitution_therapy")
    mid = await w.send(PRISON, "release-notice", body)
    assert RECOVERY not in await w.duties(mid)

    amended = notice(5)
    amended["resettlement_needs"] = {"accommodation": False, "opioid_substitution_therapy": ost}
    amended["destination"]["no_fixed_abode"] = False
    w.clock.advance(dt.timedelta(hours=2))
    await w.route(await w.update(PRISON, mid, "amend", amended))
    after = await w.duties(mid)
    assert after[HOUSING]["status"] == "cleared"
    assert after[RECOVERY]["status"] == "open"
    assert after[RECOVERY]["due_at"] == w.clock() + dt.timedelta(hours=24)
    r = await w.acknowledge(HOUSING, after[HOUSING]["id"])
    assert r.status_code == 409 and r.json()["code"] == "duty_cleared", r.text


async def test_a_cancelled_release_clears_its_duties(w: World) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    assert (await w.acknowledge(VLO, duties[VLO]["id"])).status_code == 200
    cancel = await w.update(PRISON, mid, "cancel", {"reason": "exemption_panel_refused"})
    await w.route(cancel)
    after = await w.duties(mid)
    assert after[VLO]["status"] == "acknowledged"  # what was done stays done
    assert {after[p]["status"] for p in (VAWG, HOUSING, RECOVERY)} == {"cleared"}
    timers = await w.runtime.store.list_timers(kind="duty-due")
    assert {t["status"] for t in timers} == {"cancelled"}
    w.clock.advance(dt.timedelta(days=30))
    assert await w.scheduler().run_due(w.clock()) == 0
    assert await w.events("duty-escalation") == []
    r = await w.acknowledge(VAWG, duties[VAWG]["id"])
    assert r.status_code == 409 and r.json()["code"] == "duty_cleared", r.text


async def test_a_cancellation_that_overtook_its_original_leaves_no_duty(w: World) -> None:
    mid = await w.publish(PRISON, "release-notice", notice(5))
    cancel = await w.update(PRISON, mid, "cancel", {"reason": "issued_in_error"})
    await w.route(cancel)
    await w.route(mid)  # the original's record arrives last
    assert await w.duties(mid) == {}
    assert await w.runtime.store.list_timers(kind="duty-due") == []
    # control: an original routed first does get its duties
    other = await w.send(
        PRISON, "release-notice", notice(5, person={**notice(5)["person"], "crn": "X999999"})
    )
    assert len(await w.duties(other)) == 4


# -- the API -------------------------------------------------------------------------------------


async def test_acknowledging_refusals_each_with_a_control(w: World) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    vawg = duties[VAWG]["id"]
    # an action the flow does not allow: 422 naming those it does
    r = await w.acknowledge(VAWG, vawg, action="accommodation_offered")
    assert r.status_code == 422 and r.json()["code"] == "action_not_allowed", r.text
    assert (
        "victim_contacted" in r.json()["detail"]
        and "perpetrator-release-alert" in r.json()["detail"]
    )
    assert (await w.runtime.store.get_duty(vawg))["status"] == "open"  # type: ignore[index]
    # another agency's duty: 404, as for one that does not exist
    r = await w.acknowledge(HOUSING, vawg)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await w.acknowledge(HOUSING, "dut_" + "0" * 32)
    assert r.status_code == 404
    # the sender follows the duty but cannot acknowledge it
    r = await w.acknowledge(PRISON, vawg)
    assert r.status_code in (403, 404), r.text
    # control: the recipient with an allowed action
    w.clock.advance(dt.timedelta(hours=1))
    r = await w.acknowledge(VAWG, vawg, action="victim_contacted")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["acknowledged_at"].startswith("2026-12-02T10:00")
    assert first["acknowledged_by"] == w.creds[VAWG]["client_id"]
    # twice: the first acknowledgement stands (idempotent)
    w.clock.advance(dt.timedelta(hours=1))
    r = await w.acknowledge(VAWG, vawg, action="safety_plan_reviewed")
    assert r.status_code == 200 and r.json() == first, r.text


async def test_lists_by_role_and_the_overdue_list(w: World) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    assert (await w.acknowledge(VLO, duties[VLO]["id"])).status_code == 200

    async def ids(party: str, **params: Any) -> list[str]:
        r = await w.http.get("/v1/duties", params=params, headers=await w.headers(party))
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["duties"]]

    assert await ids(VAWG) == [duties[VAWG]["id"]]
    assert sorted(await ids(PRISON, role="sender")) == sorted(d["id"] for d in duties.values())
    assert len(await ids(PDU, role="escalation")) == 4
    assert await ids(PDU) == []  # the PDU holds no duty itself
    assert await ids(VAWG, status="overdue") == []
    w.clock.advance(dt.timedelta(hours=24))
    # overdue before the scheduler has looked, and after it escalated
    assert await ids(VAWG, status="overdue") == [duties[VAWG]["id"]]
    await w.scheduler().run_due(w.clock())
    assert await ids(VAWG, status="overdue") == [duties[VAWG]["id"]]
    assert await ids(VAWG, status="escalated") == [duties[VAWG]["id"]]
    overdue_for_sender = await ids(PRISON, role="sender", status="overdue")
    assert duties[VLO]["id"] not in overdue_for_sender and len(overdue_for_sender) == 2
    # paging
    r = await w.http.get(
        "/v1/duties", params={"role": "sender", "limit": 3}, headers=await w.headers(PRISON)
    )
    assert len(r.json()["duties"]) == 3 and r.json()["next_offset"] == 3
    # one duty: to its recipient, its sender and the escalation party; 404 to others
    url = f"/v1/duties/{duties[VAWG]['id']}"
    for party in (VAWG, PRISON, PDU):
        r = await w.http.get(url, headers=await w.headers(party))
        assert r.status_code == 200 and r.json()["allowed_actions"][0] == "victim_contacted"
    r = await w.http.get(url, headers=await w.headers(HOUSING))
    assert r.status_code == 404
