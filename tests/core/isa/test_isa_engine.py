"""The ISA engine: decide(), recheck() and the stored form of a decision."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.errors import SharingRefused
from services.core.isa import Agreement, Decision, Flow, Grant, IsaEngine, PolicySet
from services.core.isa.engine import Block, Consideration, RecipientDecision
from services.core.messages.fields import leaf_paths, project
from tests.core.isa.isa_builders import (
    NOW,
    TODAY,
    UK_GDPR,
    agreement,
    flow,
    hard_block,
    policy_set,
    refusal,
    replace_flow,
    with_agreement,
    without_agreement,
)
from tests.core.isa.isa_builders import release as _release

PRISON = "hmp-northgate"
PDU = "eastborough-pdu"
IOM = "eastborough-police-iom"
DIP = "eastborough-police-dip"
HOUSING = "eastborough-housing"
VAWG = "eastborough-vawg"
RECOVERY = "eastborough-recovery"
YOUTH = "westshire-youth-justice"


@pytest.fixture(scope="module")
def demo(demo_policies: PolicySet) -> IsaEngine:
    return IsaEngine(demo_policies)


# --- decide() on the demo set -------------------------------------------------------------

RELEASE_TO = {
    HOUSING: ("ISA-EB-001", "2.1", "release-to-housing", "resettlement"),
    PDU: ("ISA-EB-001", "2.1", "release-to-probation", "offender-management"),
    IOM: ("ISA-EB-001", "2.1", "release-to-iom", "public-protection"),
    RECOVERY: ("ISA-EB-001", "2.1", "release-to-treatment", "continuity-of-care"),
    VAWG: ("ISA-EB-002", "1.0", "perpetrator-release-alert", "victim-safety"),
}

VAWG_FIELDS = (
    "destination.local_authority",
    "licence_conditions.exclusion_zones",
    "licence_conditions.non_contact",
    "person.date_of_birth",
    "person.family_name",
    "person.given_name",
    "release.date",
    "release.type",
    "risk.domestic_abuse",
)


def test_release_notice_goes_to_the_five_eastborough_partners(demo: IsaEngine) -> None:
    decision = demo.decide(PRISON, "release-notice", NOW)
    assert decision.sender == PRISON
    assert decision.message_type == "release-notice"
    assert decision.decided_at == NOW
    assert [r.party for r in decision.recipients] == sorted(RELEASE_TO)
    for rd in decision.recipients:
        assert [(g.agreement_id, g.agreement_version, g.flow_id, g.purpose) for g in rd.grants] == [
            RELEASE_TO[rd.party]
        ]
    # ISA-WS-003 expired in 2022: the youth justice service gets nothing.
    assert decision.recipient(YOUTH) is None
    assert decision.agreements == [
        {"id": "ISA-EB-001", "version": "2.1"},
        {"id": "ISA-EB-002", "version": "1.0"},
    ]


def test_vawg_gets_exactly_the_alert_fields(demo: IsaEngine) -> None:
    vawg = demo.decide(PRISON, "release-notice", NOW).recipient(VAWG)
    assert vawg is not None
    assert vawg.grants[0].fields == VAWG_FIELDS
    assert vawg.allowed == frozenset(VAWG_FIELDS)


@pytest.mark.parametrize("index", [0, 1])
def test_vawg_never_sees_resettlement_needs_or_the_address(demo: IsaEngine, index: int) -> None:
    payload = _release(index)
    vawg = demo.decide(PRISON, "release-notice", NOW).recipient(VAWG)
    assert vawg is not None
    shared = vawg.project(payload)
    assert "resettlement_needs" not in shared
    assert "address" not in shared.get("destination", {})
    assert not {"prison_number", "pnc_id", "crn"} & set(shared["person"])
    disclosed = vawg.disclosed(payload)
    assert all(not p.startswith(("resettlement_needs", "destination.address")) for p in disclosed)
    assert set(disclosed) <= set(VAWG_FIELDS)


def test_vawg_projection_of_the_first_example(demo: IsaEngine) -> None:
    vawg = demo.decide(PRISON, "release-notice", NOW).recipient(VAWG)
    assert vawg is not None
    assert vawg.project(_release(0)) == {
        "person": {
            "given_name": "Alexis",
            "family_name": "Testperson",
            "date_of_birth": "1990-01-01",
        },
        "release": {"date": "2026-12-01", "type": "ecsl"},
        "destination": {"local_authority": "Eastborough"},
        "risk": {"domestic_abuse": True},
        "licence_conditions": {
            "exclusion_zones": [{"description": "Not to enter Example Road area", "area": "ZZ2"}],
            "non_contact": True,
        },
    }


def test_housing_gets_identity_timing_and_accommodation_only(demo: IsaEngine) -> None:
    housing = demo.decide(PRISON, "release-notice", NOW).recipient(HOUSING)
    assert housing is not None
    assert housing.disclosed(_release(0)) == [
        "destination.local_authority",
        "destination.no_fixed_abode",
        "person.date_of_birth",
        "person.family_name",
        "person.given_name",
        "person.prison_number",
        "release.date",
        "resettlement_needs.accommodation",
    ]


def test_probation_gets_the_whole_notice(demo: IsaEngine) -> None:
    payload = _release(0)
    pdu = demo.decide(PRISON, "release-notice", NOW).recipient(PDU)
    assert pdu is not None
    assert pdu.project(payload) == payload


def test_recovery_gets_opioid_therapy_but_not_risk(demo: IsaEngine) -> None:
    payload = _release(1)
    recovery = demo.decide(PRISON, "release-notice", NOW).recipient(RECOVERY)
    assert recovery is not None
    shared = recovery.project(payload)
    assert shared["resettlement_needs"] == {
        "opioid_substitution_therapy": payload["resettlement_needs"]["opioid_substitution_therapy"]
    }
    assert "risk" not in shared
    assert "prison_number" not in shared["person"]


def test_purposes_narrow_the_recipients(demo: IsaEngine) -> None:
    decision = demo.decide(PRISON, "release-notice", NOW, purposes=["victim-safety"])
    assert [r.party for r in decision.recipients] == [VAWG]
    decision = demo.decide(
        PRISON, "release-notice", NOW, purposes={"resettlement", "continuity-of-care"}
    )
    assert [r.party for r in decision.recipients] == [HOUSING, RECOVERY]


def test_licence_recall_goes_to_police_and_prison(demo: IsaEngine) -> None:
    decision = demo.decide(PDU, "licence-recall", NOW)
    assert [r.party for r in decision.recipients] == [IOM, PRISON]
    for rd in decision.recipients:
        assert rd.allowed == {"person", "recall", "risk"}


def test_dip_breach_goes_to_probation_and_treatment(demo: IsaEngine) -> None:
    decision = demo.decide(DIP, "dip-breach", NOW)
    assert [r.party for r in decision.recipients] == [PDU, RECOVERY]
    recovery = decision.recipient(RECOVERY)
    assert recovery is not None
    assert "breach.date" not in recovery.allowed
    assert {"breach.stl_expiry", "test.substances", "person.pnc_id"} <= recovery.allowed


def test_demo_refusals(demo: IsaEngine) -> None:
    assert refusal(demo, VAWG, "licence-recall").reason == "sender_not_party"
    assert refusal(demo, VAWG, "release-notice").reason == "no_agreement"
    assert refusal(demo, PRISON, "dip-breach").reason == "no_agreement"
    err = refusal(demo, PRISON, "release-notice", purposes=["marketing"])
    assert err.reason == "purpose_not_covered"
    assert (
        "continuity-of-care, offender-management, public-protection, resettlement, "
        "victim-safety, youth-transition" in err.detail
    )
    err = refusal(demo, PRISON, "release-notice", purposes=["youth-transition"])
    assert err.reason == "agreement_not_in_force"
    assert err.detail == (
        "no agreement in force permits this share: ISA-WS-003 v1.0 expired on 2022-12-31"
    )
    # The refusal carries the rules considered: the lapsed flow (flows for purposes not
    # asked for may be listed as purpose_not_requested, or left out).
    assert {
        "agreement": "ISA-WS-003",
        "version": "1.0",
        "flow": "release-to-youth-justice",
        "recipient": None,
        "outcome": "not_in_force",
        "detail": "ISA-WS-003 v1.0 expired on 2022-12-31",
    } in err.extra["rules"]
    assert {r["outcome"] for r in err.extra["rules"] if r["agreement"] != "ISA-WS-003"} <= {
        "purpose_not_requested"
    }
    err = refusal(demo, PRISON, "release-notice", purposes=["marketing"])
    assert {r["outcome"] for r in err.extra["rules"]} <= {"purpose_not_requested"}


def test_after_every_demo_agreement_has_expired(demo: IsaEngine) -> None:
    err = refusal(demo, PRISON, "release-notice", now=dt.datetime(2028, 4, 1, tzinfo=dt.UTC))
    assert err.reason == "agreement_not_in_force"
    assert "ISA-EB-001 v2.1 expired on 2028-03-31" in err.detail
    assert "ISA-EB-002 v1.0 expired on 2027-08-31" in err.detail


def test_vawg_alerts_only_start_when_its_agreement_is_effective(demo: IsaEngine) -> None:
    before = dt.datetime(2025, 8, 31, 23, 0, tzinfo=dt.UTC)
    decision = demo.decide(PRISON, "release-notice", before)
    assert VAWG not in {r.party for r in decision.recipients}
    on_the_day = dt.datetime(2025, 9, 1, 0, 0, tzinfo=dt.UTC)
    assert demo.decide(PRISON, "release-notice", on_the_day).recipient(VAWG) is not None
    last_day = dt.datetime(2027, 8, 31, 23, 59, tzinfo=dt.UTC)
    assert demo.decide(PRISON, "release-notice", last_day).recipient(VAWG) is not None


# --- refusal reasons with small policy sets ----------------------------------------------


def test_no_agreement_for_the_message_type() -> None:
    engine = IsaEngine(policy_set(agreement(flow(message_types=["dip-breach"]))))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "no_agreement"
    assert err.detail == "no information sharing agreement covers release-notice"


def test_no_agreement_in_an_empty_policy_set() -> None:
    assert refusal(IsaEngine(policy_set()), "a", "release-notice").reason == "no_agreement"


def test_sender_not_party() -> None:
    engine = IsaEngine(
        policy_set(agreement(flow(), id="ISA-T-001"), agreement(flow(), id="ISA-T-002"))
    )
    err = refusal(engine, "c", "release-notice")
    assert err.reason == "sender_not_party"
    assert err.detail == "party 'c' is not a party to any agreement covering release-notice"


def test_a_party_only_to_a_flowless_agreement_is_not_party_to_the_sharing() -> None:
    # An overarching agreement with hard blocks and no flows makes nobody a sender.
    umbrella = agreement(
        id="ISA-T-000", parties=["a", "b", "c"], hard_blocks=[hard_block(parties=["b"])]
    )
    engine = IsaEngine(policy_set(umbrella, agreement(flow(), id="ISA-T-001")))
    assert refusal(engine, "c", "release-notice").reason == "sender_not_party"


def test_party_without_a_sending_flow_has_no_agreement() -> None:
    engine = IsaEngine(policy_set(agreement(flow(), parties=["a", "b", "c"])))
    err = refusal(engine, "b", "release-notice")
    assert err.reason == "no_agreement"
    assert "'b'" in err.detail
    assert refusal(engine, "c", "release-notice").reason == "no_agreement"


def test_purpose_not_covered() -> None:
    engine = IsaEngine(policy_set(agreement(flow(purpose="p1"), flow(id="f2", purpose="p2"))))
    err = refusal(engine, "a", "release-notice", purposes=["p3", "p0"])
    assert err.reason == "purpose_not_covered"
    assert err.detail == (
        "purpose(s) p0, p3 not covered for 'a' sending release-notice; agreed purposes: p1, p2"
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"expires_on": dt.date(2026, 5, 31)}, "ISA-T-001 v1.0 expired on 2026-05-31"),
        ({"status": "suspended"}, "ISA-T-001 v1.0 is suspended"),
        ({"status": "draft"}, "ISA-T-001 v1.0 is draft"),
        ({"status": "terminated"}, "ISA-T-001 v1.0 is terminated"),
        ({"status": "expired"}, "ISA-T-001 v1.0 is expired"),
        (
            {"effective_from": dt.date(2026, 6, 2)},
            "ISA-T-001 v1.0 is not effective until 2026-06-02",
        ),
    ],
)
def test_agreement_not_in_force(changes: dict[str, Any], why: str) -> None:
    engine = IsaEngine(policy_set(dataclasses.replace(agreement(flow()), **changes)))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "agreement_not_in_force"
    assert err.detail == f"no agreement in force permits this share: {why}"


def test_agreement_in_force_on_its_first_and_last_day() -> None:
    a = agreement(flow(), effective_from=TODAY, expires_on=TODAY)
    decision = IsaEngine(policy_set(a)).decide("a", "release-notice", NOW)
    assert [r.party for r in decision.recipients] == ["b"]


def test_not_in_force_lists_every_reason() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(), id="ISA-T-002", status="suspended"),
            agreement(flow(), id="ISA-T-001", expires_on=dt.date(2020, 1, 1)),
        )
    )
    err = refusal(engine, "a", "release-notice")
    assert err.detail == (
        "no agreement in force permits this share: "
        "ISA-T-001 v1.0 expired on 2020-01-01; ISA-T-002 v1.0 is suspended"
    )


def test_no_recipient_when_the_only_recipient_is_the_sender() -> None:
    engine = IsaEngine(policy_set(agreement(flow(recipients=["a"]), parties=["a", "b"])))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "no_recipient"
    assert err.detail == (
        "no recipient is entitled to this release-notice from 'a' "
        "(conditions or blocks exclude every recipient)"
    )
    assert err.extra["rules"] == []


def test_sender_is_never_its_own_recipient() -> None:
    engine = IsaEngine(policy_set(agreement(flow(senders=["a", "b"], recipients=["a", "b"]))))
    assert [r.party for r in engine.decide("a", "release-notice", NOW).recipients] == ["b"]
    assert [r.party for r in engine.decide("b", "release-notice", NOW).recipients] == ["a"]


def test_refusal_order_prefers_purpose_over_not_in_force() -> None:
    engine = IsaEngine(policy_set(agreement(flow(purpose="p1"), status="suspended")))
    assert refusal(engine, "a", "release-notice", purposes=["p2"]).reason == "purpose_not_covered"
    assert refusal(engine, "a", "release-notice", purposes=["p1"]).reason == (
        "agreement_not_in_force"
    )


def test_an_in_force_agreement_is_used_when_another_is_not() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(recipients=["b"]), id="ISA-T-001", status="suspended"),
            agreement(flow(recipients=["c"]), id="ISA-T-002"),
        )
    )
    decision = engine.decide("a", "release-notice", NOW)
    assert [r.party for r in decision.recipients] == ["c"]
    assert decision.agreements == [{"id": "ISA-T-002", "version": "1.0"}]


def test_grants_from_several_flows_are_combined_per_recipient() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", fields=["person.given_name"], purpose="p1"),
                flow(id="f2", fields=["release.date"], purpose="p2", recipients=["b", "c"]),
                id="ISA-T-001",
            ),
            agreement(flow(id="g1", fields=["risk"], purpose="p3"), id="ISA-T-002", version="3"),
        )
    )
    decision = engine.decide("a", "release-notice", NOW)
    b = decision.recipient("b")
    c = decision.recipient("c")
    assert b is not None and c is not None
    assert [(g.agreement_id, g.flow_id) for g in b.grants] == [
        ("ISA-T-001", "f1"),
        ("ISA-T-001", "f2"),
        ("ISA-T-002", "g1"),
    ]
    assert b.allowed == {"person.given_name", "release.date", "risk"}
    assert c.allowed == {"release.date"}
    assert decision.agreements == [
        {"id": "ISA-T-001", "version": "1.0"},
        {"id": "ISA-T-002", "version": "3"},
    ]
    payload = _release(0)
    assert b.disclosed(payload) == [
        "person.given_name",
        "release.date",
        "risk.domestic_abuse",
        "risk.national_security_division",
        "risk.rosh_level",
        "risk.sex_offender_register",
    ]


def test_empty_purposes_means_any_purpose() -> None:
    engine = IsaEngine(policy_set(agreement(flow(purpose="p1"))))
    assert engine.decide("a", "release-notice", NOW, purposes=[]).recipients
    assert engine.decide("a", "release-notice", NOW, purposes=None).recipients


# --- the stored form ----------------------------------------------------------------------


def test_decision_round_trips_through_json(demo: IsaEngine) -> None:
    decision = demo.decide(PRISON, "release-notice", NOW, payload=_release(0))
    stored = json.loads(json.dumps(decision.to_dict()))
    assert stored["decided_at"] == "2026-06-01T12:00:00+00:00"
    assert stored["purposes"] == []
    assert stored["warnings"] == []
    assert stored["recipients"][0] == {
        "party": HOUSING,
        "grants": [
            {
                "agreement": "ISA-EB-001",
                "version": "2.1",
                "flow": "release-to-housing",
                "purpose": "resettlement",
                "fields": list(decision.recipients[0].grants[0].fields),
            }
        ],
        "blocks": [],
    }
    assert stored["considered"] == [
        {
            "agreement": "ISA-WS-003",
            "version": "1.0",
            "flow": "release-to-youth-justice",
            "recipient": None,
            "outcome": "not_in_force",
            "detail": "ISA-WS-003 v1.0 expired on 2022-12-31",
        }
    ]
    back = Decision.from_dict(stored)
    assert back == decision
    assert back.decided_at.tzinfo is not None
    assert back.to_dict() == decision.to_dict()


def test_a_decision_with_blocks_warnings_and_purposes_round_trips() -> None:
    a = agreement(
        flow(fields=["person"], condition="message.risk.domestic_abuse == true"),
        review_date=TODAY - dt.timedelta(days=1),
        hard_blocks=[hard_block()],
    )
    decision = IsaEngine(policy_set(a)).decide("a", "release-notice", NOW, ["p"], _release(0))
    assert decision.purposes == ("p",)
    assert decision.warnings
    assert decision.recipients[0].blocks
    back = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert back == decision


def test_a_stored_decision_without_the_new_keys_still_loads() -> None:
    # Decisions stored before blocks, considerations, warnings and purposes were recorded.
    old = {
        "sender": "a",
        "message_type": "release-notice",
        "decided_at": NOW.isoformat(),
        "recipients": [
            {
                "party": "b",
                "grants": [
                    {
                        "agreement": "ISA-T-001",
                        "version": "1.0",
                        "flow": "f1",
                        "purpose": "p",
                        "fields": ["person"],
                    }
                ],
            }
        ],
    }
    decision = Decision.from_dict(old)
    assert decision.recipients[0].blocks == ()
    assert (decision.considered, decision.warnings, decision.purposes) == ((), (), ())


def test_grant_block_consideration_and_recipient_round_trip() -> None:
    grant = Grant("ISA-T-001", "1.0", "f1", "p", ("a.b", "c"))
    assert Grant.from_dict(grant.to_dict()) == grant
    assert grant.ref == "ISA-T-001@1.0#f1"
    block = Block("ISA-T-000", "3", "hb", "hard_block", ("a.b",), "never")
    assert Block.from_dict(block.to_dict()) == block
    assert block.ref == "ISA-T-000@3#hb"
    consideration = Consideration("ISA-T-001", "1.0", "f1", "b", "condition_false", "why")
    assert Consideration.from_dict(consideration.to_dict()) == consideration
    rd = RecipientDecision("b", (grant, Grant("ISA-T-002", "2", "g", "q", ())), (block,))
    assert RecipientDecision.from_dict(json.loads(json.dumps(rd.to_dict()))) == rd


# --- recheck() -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def payload() -> dict[str, Any]:
    return _release(0)


@pytest.fixture(scope="module")
def decision(demo: IsaEngine, payload: dict[str, Any]) -> Decision:
    return demo.decide(PRISON, "release-notice", NOW, payload=payload)


def test_recheck_with_unchanged_policies_keeps_everything(
    demo: IsaEngine, decision: Decision, payload: dict[str, Any]
) -> None:
    later = NOW + dt.timedelta(days=30)
    current = demo.recheck(decision, later, payload)
    assert set(current) == set(RELEASE_TO)
    for rd in decision.recipients:
        assert current[rd.party] == rd


def test_recheck_withholds_when_an_agreement_is_suspended(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    engine = IsaEngine(with_agreement(demo_policies, dataclasses.replace(eb2, status="suspended")))
    current = engine.recheck(decision, NOW, payload)
    assert current[VAWG] == "ISA-EB-002 v1.0 is suspended"
    assert isinstance(current[PDU], RecipientDecision)
    assert current[PDU] == decision.recipient(PDU)


def test_recheck_withholds_when_an_agreement_is_removed(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    engine = IsaEngine(without_agreement(demo_policies, "ISA-EB-002"))
    current = engine.recheck(decision, NOW, payload)
    assert isinstance(current[VAWG], str)
    assert current[VAWG]
    assert all(isinstance(current[p], RecipientDecision) for p in set(RELEASE_TO) - {VAWG})


def test_recheck_reason_names_no_agreement_that_never_concerned_the_recipient(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    # Regression: the reason once listed every flow not in force (here the lapsed
    # ISA-WS-003, which never named VAWG).
    engine = IsaEngine(without_agreement(demo_policies, "ISA-EB-002"))
    withheld = engine.recheck(decision, NOW, payload)[VAWG]
    assert isinstance(withheld, str)
    assert "ISA-WS-003" not in withheld
    assert withheld == "no agreement in force now shares with eastborough-vawg"


def test_recheck_withholds_after_expiry(
    demo: IsaEngine, decision: Decision, payload: dict[str, Any]
) -> None:
    current = demo.recheck(decision, dt.datetime(2027, 9, 1, tzinfo=dt.UTC), payload)
    assert current[VAWG] == "ISA-EB-002 v1.0 expired on 2027-08-31"
    assert isinstance(current[HOUSING], RecipientDecision)


def test_recheck_withholds_every_recipient_with_the_refusal_when_nothing_is_in_force(
    demo: IsaEngine, decision: Decision, payload: dict[str, Any]
) -> None:
    current = demo.recheck(decision, dt.datetime(2028, 4, 1, tzinfo=dt.UTC), payload)
    assert set(current) == set(RELEASE_TO)
    reasons = set(current.values())
    assert len(reasons) == 1
    (reason,) = reasons
    assert isinstance(reason, str)
    assert reason.startswith("no agreement in force permits this share: ")
    assert "ISA-EB-001 v2.1 expired on 2028-03-31" in reason


def test_recheck_withholds_when_the_flow_is_gone(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    no_housing_flow = dataclasses.replace(
        eb1, flows=tuple(f for f in eb1.flows if f.id != "release-to-housing")
    )
    engine = IsaEngine(with_agreement(demo_policies, no_housing_flow))
    current = engine.recheck(decision, NOW, payload)
    assert current[HOUSING] == "no agreement in force now shares with eastborough-housing"
    assert isinstance(current[PDU], RecipientDecision)


def test_recheck_withholds_when_the_recipient_is_dropped_from_the_flow(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    moved = replace_flow(eb1, "release-to-iom", recipients=frozenset({PDU}))
    current = IsaEngine(with_agreement(demo_policies, moved)).recheck(decision, NOW, payload)
    assert current[IOM] == "no agreement in force now shares with eastborough-police-iom"
    # PDU was not granted the IOM flow's fields before, so its share does not grow.
    pdu, stored_pdu = current[PDU], decision.recipient(PDU)
    assert isinstance(pdu, RecipientDecision) and stored_pdu is not None
    assert pdu.disclosed(payload) == stored_pdu.disclosed(payload)


def test_recheck_narrows_when_a_flow_loses_fields(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    flow_ = eb2.flows[0]
    fewer = flow_.fields - {"licence_conditions.exclusion_zones", "licence_conditions.non_contact"}
    engine = IsaEngine(with_agreement(demo_policies, replace_flow(eb2, flow_.id, fields=fewer)))
    vawg = engine.recheck(decision, NOW, payload)[VAWG]
    assert isinstance(vawg, RecipientDecision)
    assert vawg.allowed == fewer
    assert vawg.grants[0].fields == tuple(sorted(fewer))
    assert "licence_conditions" not in vawg.project(payload)


def test_recheck_never_widens_when_a_flow_gains_fields(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    more = eb2.flows[0].fields | {"resettlement_needs", "destination.address"}
    engine = IsaEngine(
        with_agreement(demo_policies, replace_flow(eb2, eb2.flows[0].id, fields=more))
    )
    vawg = engine.recheck(decision, NOW, payload)[VAWG]
    assert isinstance(vawg, RecipientDecision)
    assert vawg.allowed == frozenset(VAWG_FIELDS)


def test_recheck_never_adds_a_recipient(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    ws3 = demo_policies.agreement("ISA-WS-003")
    assert ws3 is not None
    renewed = dataclasses.replace(ws3, expires_on=dt.date(2030, 1, 1))
    engine = IsaEngine(with_agreement(demo_policies, renewed))
    assert engine.decide(PRISON, "release-notice", NOW).recipient(YOUTH) is not None
    assert YOUTH not in engine.recheck(decision, NOW, payload)


def test_recheck_keeps_the_grants_still_in_force() -> None:
    a1 = agreement(flow(id="f1", fields=["person"]), id="ISA-T-001")
    a2 = agreement(flow(id="f2", fields=["release"]), id="ISA-T-002")
    decision = IsaEngine(policy_set(a1, a2)).decide("a", "release-notice", NOW)
    later = IsaEngine(policy_set(dataclasses.replace(a1, status="terminated"), a2))
    b = later.recheck(decision, NOW, _release(0))["b"]
    assert isinstance(b, RecipientDecision)
    assert [g.agreement_id for g in b.grants] == ["ISA-T-002"]
    assert b.allowed == {"release"}


def test_recheck_records_a_new_version_that_still_permits_the_share() -> None:
    a1 = agreement(flow(id="f1", fields=["person"]))
    decision = IsaEngine(policy_set(a1)).decide("a", "release-notice", NOW)
    later = IsaEngine(policy_set(dataclasses.replace(a1, version="1.1")))
    b = later.recheck(decision, NOW, _release(0))["b"]
    assert isinstance(b, RecipientDecision)
    assert [g.ref for g in b.grants] == ["ISA-T-001@1.1#f1"]


def test_recheck_gives_the_refusal_when_every_grant_is_withheld() -> None:
    a1 = agreement(flow(id="f1"), id="ISA-T-001")
    a2 = agreement(flow(id="f2"), id="ISA-T-002")
    decision = IsaEngine(policy_set(a1, a2)).decide("a", "release-notice", NOW)
    later = IsaEngine(policy_set(dataclasses.replace(a2, status="suspended")))
    assert later.recheck(decision, NOW, _release(0)) == {
        "b": "no agreement in force permits this share: ISA-T-002 v1.0 is suspended"
    }


def test_recheck_withholds_when_the_flow_no_longer_covers_the_message_type(
    demo_policies: PolicySet, decision: Decision, payload: dict[str, Any]
) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    v22 = dataclasses.replace(
        replace_flow(eb1, "release-to-housing", message_types=frozenset({"licence-recall"})),
        version="2.2",
    )
    engine = IsaEngine(with_agreement(demo_policies, v22))
    # A fresh decision no longer sends release notices to housing...
    assert engine.decide(PRISON, "release-notice", NOW).recipient(HOUSING) is None
    # ...so a stored decision must not deliver one either.
    assert isinstance(engine.recheck(decision, NOW, payload)[HOUSING], str)


def test_recheck_narrows_an_object_path_to_the_leaves_still_allowed() -> None:
    before = agreement(flow(fields=["person", "release"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = replace_flow(before, "f1", fields=frozenset({"person.given_name", "release"}))
    payload = _release(0)
    b = IsaEngine(policy_set(after)).recheck(decision, NOW, payload)["b"]
    expected = project(project(payload, {"person", "release"}), {"person.given_name", "release"})
    assert isinstance(b, RecipientDecision)
    assert b.project(payload) == expected


def test_recheck_keeps_a_narrower_stored_path_when_the_flow_widens() -> None:
    before = agreement(flow(fields=["person.given_name"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = replace_flow(before, "f1", fields=frozenset({"person"}))
    payload = _release(0)
    b = IsaEngine(policy_set(after)).recheck(decision, NOW, payload)["b"]
    assert isinstance(b, RecipientDecision)
    assert b.allowed == {"person.given_name"}
    assert b.disclosed(payload) == ["person.given_name"]


def test_recheck_withheld_reason_names_the_lost_fields() -> None:
    before = agreement(flow(fields=["person"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = replace_flow(before, "f1", fields=frozenset({"release"}))
    b = IsaEngine(policy_set(after)).recheck(decision, NOW, _release(0))["b"]
    assert b == "the agreements now in force no longer permit the fields first granted to b"


def test_recheck_keeps_the_stored_purposes() -> None:
    a = agreement(
        flow(id="f1", purpose="p1", fields=["person"]),
        flow(id="f2", purpose="p2", fields=["person"]),
    )
    decision = IsaEngine(policy_set(a)).decide("a", "release-notice", NOW, purposes=["p1"])
    assert decision.purposes == ("p1",)
    assert [g.flow_id for g in decision.recipients[0].grants] == ["f1"]
    # p1's flow is gone; p2's would permit the same fields, but p2 was never asked for.
    later = IsaEngine(policy_set(dataclasses.replace(a, flows=a.flows[1:], purposes={"p2": "x"})))
    withheld = later.recheck(decision, NOW, _release(0))["b"]
    assert isinstance(withheld, str)
    assert withheld.startswith("purpose(s) p1 not covered")


def test_recheck_applies_a_hard_block_added_since_the_decision() -> None:
    a = agreement(flow(fields=["person", "release"]))
    decision = IsaEngine(policy_set(a)).decide("a", "release-notice", NOW)
    umbrella = agreement(
        id="ISA-T-000",
        parties=["a", "b"],
        hard_blocks=[hard_block(fields=["person.date_of_birth"], parties=["b"])],
    )
    payload = _release(0)
    b = IsaEngine(policy_set(a, umbrella)).recheck(decision, NOW, payload)["b"]
    assert isinstance(b, RecipientDecision)
    assert b.blocked == {"person.date_of_birth"}
    assert "date_of_birth" not in b.project(payload)["person"]
    assert "person.given_name" in b.disclosed(payload)


def test_recheck_keeps_the_stored_blocks_and_withholds_when_old_and_new_cover_everything() -> None:
    stored_block = hard_block(id="old", fields=["release"], parties=["b"])
    a = agreement(flow(fields=["person", "release"]), hard_blocks=[stored_block])
    decision = IsaEngine(policy_set(a)).decide("a", "release-notice", NOW)
    assert decision.recipients[0].blocked == {"release"}
    # Now release is no longer blocked but person is: alone, either block leaves something.
    new_block = hard_block(id="new", fields=["person"], parties=["b"])
    later = IsaEngine(policy_set(dataclasses.replace(a, hard_blocks=(new_block,))))
    assert later.decide("a", "release-notice", NOW).recipient("b") is not None
    assert later.recheck(decision, NOW, _release(0)) == {"b": "every field for b is now blocked"}


def test_recheck_re_evaluates_conditions_against_the_payload() -> None:
    a = agreement(flow(fields=["person"], condition="message.risk.domestic_abuse == true"))
    engine = IsaEngine(policy_set(a))
    payload = _release(0)
    assert payload["risk"]["domestic_abuse"] is True
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert isinstance(engine.recheck(decision, NOW, payload)["b"], RecipientDecision)
    changed = copy.deepcopy(payload)
    changed["risk"]["domestic_abuse"] = False
    assert engine.recheck(decision, NOW, changed)["b"] == (
        "no recipient is entitled to this release-notice from 'a' "
        "(conditions or blocks exclude every recipient)"
    )


def test_recheck_withheld_reason_is_never_empty() -> None:
    before = agreement(flow(fields=["person"]), flow(id="f2", recipients=["c"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = dataclasses.replace(before, flows=before.flows[1:])
    b = IsaEngine(policy_set(after)).recheck(decision, NOW, _release(0))["b"]
    assert isinstance(b, str)
    assert b == "no agreement in force now shares with b"


# --- property: nothing beyond in-force flows naming the recipient ---------------------------

PARTIES = ["a", "b", "c", "d"]
PURPOSES = ["p1", "p2"]
TYPES = ["release-notice", "licence-recall"]
FIELDS = ["person", "person.given_name", "release.date", "risk", "recall", "risk.rosh_level"]
DAY = st.integers(min_value=-3, max_value=3).map(lambda n: TODAY + dt.timedelta(days=n))


def _subset(items: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(items), min_size=1)


FLOWS = st.builds(
    lambda senders, recipients, types, purpose, fields: (
        senders,
        recipients,
        types,
        purpose,
        fields,
    ),
    _subset(PARTIES),
    _subset(PARTIES),
    _subset(TYPES),
    st.sampled_from(PURPOSES),
    _subset(FIELDS),
)
AGREEMENTS = st.tuples(
    st.lists(FLOWS, min_size=1, max_size=3),
    st.sampled_from(["active", "active", "active", "suspended", "draft"]),
    DAY,
    DAY,
    st.frozensets(st.sampled_from(PARTIES)),
)


def _build(specs: list[Any]) -> PolicySet:
    agreements = []
    for i, (flows, status, start, end, extra_parties) in enumerate(specs):
        built = [
            Flow(f"f{j}", s, r, t, p, fl, legal_regime=dict(UK_GDPR))
            for j, (s, r, t, p, fl) in enumerate(flows)
        ]
        members = extra_parties | {x for f in built for x in f.senders | f.recipients}
        agreements.append(
            Agreement(
                id=f"ISA-H-{i:03d}",
                title="t",
                version=str(i + 1),
                status=status,
                parties=frozenset(members),
                purposes={f.purpose: "d" for f in built},
                legal_gateways=("x",),
                effective_from=min(start, end),
                expires_on=max(start, end),
                flows=tuple(built),
            )
        )
    return policy_set(*agreements)


def _in_force(a: Agreement) -> bool:
    return a.status == "active" and a.effective_from <= TODAY <= a.expires_on


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    specs=st.lists(AGREEMENTS, max_size=4),
    sender=st.sampled_from(PARTIES),
    message_type=st.sampled_from(TYPES),
    purposes=st.none() | st.sets(st.sampled_from([*PURPOSES, "p3"]), min_size=1),
)
def test_grants_never_exceed_in_force_flows_naming_the_recipient(
    specs: list[Any], sender: str, message_type: str, purposes: set[str] | None
) -> None:
    policies = _build(specs)
    eligible = [
        (a, f)
        for a in policies.agreements
        for f in a.flows
        if _in_force(a)
        and message_type in f.message_types
        and sender in f.senders
        and (purposes is None or f.purpose in purposes)
    ]
    expected_recipients = {r for _, f in eligible for r in f.recipients} - {sender}
    try:
        decision = IsaEngine(policies).decide(sender, message_type, NOW, purposes)
    except SharingRefused as e:
        assert e.reason in {
            "no_agreement",
            "sender_not_party",
            "purpose_not_covered",
            "agreement_not_in_force",
            "no_recipient",
        }
        assert expected_recipients == set(), (e.reason, e.detail)
        return
    assert {r.party for r in decision.recipients} == expected_recipients
    payload = _release(0)
    for rd in decision.recipients:
        assert rd.party != sender
        assert rd.blocks == ()
        union = frozenset().union(*(f.fields for _, f in eligible if rd.party in f.recipients))
        assert rd.allowed == union
        for g in rd.grants:
            a = policies.agreement(g.agreement_id)
            assert a is not None and _in_force(a)
            f = next(f for f in a.flows if f.id == g.flow_id)
            assert rd.party in f.recipients and sender in f.senders
            assert set(g.fields) == f.fields
        assert set(leaf_paths(rd.project(payload))) <= set(leaf_paths(project(payload, union)))
    # Re-checking immediately against the same policies changes no share.
    current = IsaEngine(policies).recheck(decision, NOW, payload)
    assert set(current) == {rd.party for rd in decision.recipients}
    for rd in decision.recipients:
        now_rd = current[rd.party]
        assert isinstance(now_rd, RecipientDecision)
        assert [g.ref for g in now_rd.grants] == [g.ref for g in rd.grants]
        assert now_rd.project(payload) == rd.project(payload)
    assert copy.deepcopy(decision) == decision
