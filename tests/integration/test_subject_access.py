"""Subject access and IG queries on the disclosure log, against a real store (SQLite and
PostgreSQL). Synthetic people only."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from typing import Any

import pytest

from services.core.audit.subject_access import disclosures, subject_access, to_csv
from services.core.isa.model import PolicySet
from services.core.messages.models import PersonIdentifiers
from services.core.messages.person import identifier_keys
from services.core.store import Store
from services.core.store.subject_access import DisclosureQuery
from tests.factories import message_row

pytestmark = pytest.mark.integration

PRISON, VAWG, HOUSING = "hmp-northgate", "eastborough-vawg", "eastborough-housing"
ALICE = {"pnc_id": "26/000001D", "crn": "X100001"}
BOB = {"pnc_id": "26/000002E", "crn": "X100002", "prison_number": "A1234BC"}
NO_POLICIES = PolicySet(parties={})


def psn(identifier: str) -> str:
    return "psn_" + hmac.new(b"test-key", identifier.encode(), hashlib.sha256).hexdigest()[:32]


def _grant(agreement: str, version: str = "1.0") -> dict[str, Any]:
    return {
        "agreement": agreement,
        "version": version,
        "flow": "release-to-vawg",
        "purpose": "victim-safety",
        "fields": ["release.date"],
    }


async def _send(
    store: Store, person: dict[str, str], *, agreement: str = "isa-vawg", to: str = VAWG
) -> dict[str, Any]:
    """A message about ``person`` keyed by its first identifier, delivered to ``to``."""
    keys = identifier_keys(person)
    message = message_row(
        sender=PRISON,
        person=psn(keys[0]),
        payload={"person": person},
        state="announced",
        decision={
            "recipients": [
                {
                    "party": to,
                    "grants": [_grant(agreement)],
                    "blocks": [
                        {
                            "agreement": agreement,
                            "version": "1.0",
                            "rule": "no-health",
                            "kind": "prohibited",
                            "fields": ["resettlement_needs.mental_health"],
                            "reason": "",
                        }
                    ],
                }
            ]
        },
    )
    assert await store.accept_message(message, "t", [psn(k) for k in keys]) is None
    now = dt.datetime.now(dt.UTC)
    delivery = {
        "id": "msg_" + uuid.uuid4().hex,
        "message_id": message["id"],
        "recipient": to,
        "subscription_id": None,
        "channel": "inbox",
        "status": "delivered",
        "fields": ["release.date"],
        "grants": [_grant(agreement)],
        "attempts": 1,
        "retry_index": 0,
        "person": message["person"],
        "accepted_at": message["accepted_at"],
        "message_type": "release-notice",
        "created_at": now,
        "updated_at": now,
    }
    await store.mark_routed(message["id"], [delivery])
    return message


async def _search(store: Store, **identifiers: str) -> list[Any]:
    return await subject_access(
        store, psn, NO_POLICIES, PersonIdentifiers(**identifiers), actor="ig", client_id="ig-1"
    )


async def test_a_crn_search_finds_messages_keyed_by_pnc_id_and_nobody_elses(
    store: Store,
) -> None:
    alice = await _send(store, ALICE)
    bob = await _send(store, BOB, to=HOUSING)
    lines = await _search(store, crn=ALICE["crn"])
    assert {line.message_id for line in lines} == {alice["id"]}
    assert {line.event for line in lines} == {"accepted", "delivered"}
    delivered = next(line for line in lines if line.event == "delivered")
    assert delivered.sender == PRISON and delivered.recipient == VAWG
    assert delivered.agreements == ["isa-vawg@1.0"]
    assert delivered.flows == ["isa-vawg@1.0#release-to-vawg"]
    assert delivered.purposes == ["victim-safety"]
    assert delivered.fields_disclosed == ["release.date"]
    assert delivered.fields_withheld == ["resettlement_needs.mental_health"]
    # Bob by prison number (not his key): only his
    lines = await _search(store, prison_number=BOB["prison_number"])
    assert {line.message_id for line in lines} == {bob["id"]}
    assert ALICE["pnc_id"] not in to_csv(lines) and BOB["crn"] not in to_csv(lines)


async def test_messages_stored_before_the_index_are_found_by_their_key(store: Store) -> None:
    old = await _send(store, ALICE)
    async with store.engine.begin() as c:  # as if stored before revision 0008
        from services.core.store import tables as t

        await c.execute(t.person_index.delete())
    assert {line.message_id for line in await _search(store, pnc_id=ALICE["pnc_id"])} == {old["id"]}
    assert await _search(store, crn=ALICE["crn"]) == []


async def test_lifecycle_updates_and_refusals_are_included(store: Store) -> None:
    root = await _send(store, ALICE)
    update = {**root, "id": str(uuid.uuid4()), "refers_to": root["id"], "lifecycle": "cancel"}
    result = await store.accept_update(
        update,
        "t",
        expected_version=1,
        from_states=frozenset({"announced"}),
        to_state="cancelled",
        audit_event="cancelled",
        audit_detail={"reason": "other"},
        pseudonyms=[psn(k) for k in identifier_keys(ALICE)],
    )
    assert result.stored
    await store.audit("refused", actor=PRISON, person=root["person"], detail={"reason": "x"})
    events = [line.event for line in await _search(store, crn=ALICE["crn"])]
    assert {"refused", "cancelled"} <= set(events)


async def test_ig_queries_filter_by_agreement_party_and_period_and_page(store: Store) -> None:
    start = dt.datetime.now(dt.UTC)
    a = await _send(store, ALICE, agreement="isa-vawg")
    b = await _send(store, BOB, agreement="isa-housing", to=HOUSING)

    async def ids(**query: Any) -> list[str | None]:
        lines, _ = await disclosures(
            store, NO_POLICIES, DisclosureQuery(**query), actor="ig", client_id="ig-1"
        )
        return [line.message_id for line in lines]

    assert await ids(agreement="isa-vawg") == [a["id"]]
    assert await ids(agreement="isa-vawg", version="2.0") == []
    assert await ids(party=HOUSING) == [b["id"]]
    assert await ids(party=PRISON) == [a["id"], b["id"]]  # as sender
    assert await ids(party=PRISON, agreement="isa-housing") == [b["id"]]
    assert await ids(since=start) == [a["id"], b["id"]]
    assert await ids(until=start) == []
    everything = DisclosureQuery()
    first, after = await disclosures(
        store, NO_POLICIES, everything, actor="ig", client_id="i", limit=1
    )
    rest, _ = await disclosures(
        store, NO_POLICIES, everything, actor="ig", client_id="i", after=after
    )
    assert [x.message_id for x in first + rest] == [a["id"], b["id"]]


async def test_every_search_is_logged_with_pseudonyms_never_identifiers(store: Store) -> None:
    await _send(store, ALICE)
    lines = await _search(store, pnc_id=ALICE["pnc_id"], crn=ALICE["crn"])
    await disclosures(
        store, NO_POLICIES, DisclosureQuery(agreement="isa-vawg"), actor="ig", client_id="ig-1"
    )
    log = await store.audit_entries()
    sar = [e for e in log if e["event"] == "subject_access"]
    ig = [e for e in log if e["event"] == "ig_query"]
    assert len(sar) == len(ig) == 1
    assert sar[0]["actor"] == "ig" and sar[0]["detail"]["client_id"] == "ig-1"
    assert sar[0]["detail"]["persons"] == sorted(psn(k) for k in identifier_keys(ALICE))
    assert sar[0]["detail"]["entries"] == len(lines)
    assert ig[0]["detail"]["agreement"] == "isa-vawg" and ig[0]["detail"]["entries"] == 1
    text = repr(log)
    assert ALICE["pnc_id"] not in text and ALICE["crn"] not in text


def test_csv_cells_never_start_a_formula() -> None:
    from services.core.audit.subject_access import Disclosure

    line = Disclosure(
        seq=1,
        at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        event="delivered",
        message_id="=HYPERLINK(1)",
        message_type=None,
        sender="+x",
        recipient="-y",
        actor="@z",
        person=None,
        agreements=["a@1", "b@2"],
        flows=[],
        purposes=[],
        lawful_basis=[],
        fields_disclosed=[],
        fields_withheld=[],
    )
    header, row = to_csv([line]).splitlines()
    assert header.startswith("seq,at,event,message_id")
    assert "'=HYPERLINK(1)" in row and "'+x" in row and "'-y" in row and "'@z" in row
    assert "a@1;b@2" in row
