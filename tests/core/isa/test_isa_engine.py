"""The ISA engine: decide(), recheck() and the stored form of a decision."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.errors import Forbidden, SharingRefused
from services.core.isa import Agreement, Decision, Flow, Grant, IsaEngine, Party, PolicySet
from services.core.isa.engine import RecipientDecision
from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import leaf_paths, project

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()

PRISON = "hmp-northgate"
PDU = "eastborough-pdu"
IOM = "eastborough-police-iom"
DIP = "eastborough-police-dip"
HOUSING = "eastborough-housing"
VAWG = "eastborough-vawg"
RECOVERY = "eastborough-recovery"
YOUTH = "westshire-youth-justice"


def _release(index: int = 0) -> dict[str, Any]:
    mt = MESSAGE_TYPES["release-notice"]
    extra = mt.model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    return mt.validate_json(json.dumps(extra["examples"][index]).encode())


# --- small policy builders --------------------------------------------------------------


def flow(
    id: str = "f1",
    senders: Iterable[str] = ("a",),
    recipients: Iterable[str] = ("b",),
    message_types: Iterable[str] = ("release-notice",),
    purpose: str = "p",
    fields: Iterable[str] = ("person",),
) -> Flow:
    return Flow(
        id=id,
        senders=frozenset(senders),
        recipients=frozenset(recipients),
        message_types=frozenset(message_types),
        purpose=purpose,
        fields=frozenset(fields),
    )


def agreement(
    *flows: Flow,
    id: str = "ISA-T-001",
    version: str = "1.0",
    status: str = "active",
    parties: Iterable[str] | None = None,
    effective_from: dt.date = dt.date(2025, 1, 1),
    expires_on: dt.date = dt.date(2027, 12, 31),
) -> Agreement:
    members = (
        frozenset(parties)
        if parties is not None
        else frozenset(p for f in flows for p in f.senders | f.recipients)
    )
    return Agreement(
        id=id,
        title=f"Test agreement {id}",
        version=version,
        status=status,
        parties=members,
        purposes={f.purpose: "a purpose" for f in flows},
        lawful_basis=("Crime and Disorder Act 1998 s115",),
        effective_from=effective_from,
        expires_on=expires_on,
        flows=tuple(flows),
    )


def policy_set(*agreements: Agreement) -> PolicySet:
    ids = {p for a in agreements for p in a.parties} | {"a", "b", "c"}
    return PolicySet(
        parties={p: Party(id=p, name=p.title(), kind="other") for p in sorted(ids)},
        agreements=tuple(agreements),
    )


def replace_flow(a: Agreement, flow_id: str, **changes: Any) -> Agreement:
    return dataclasses.replace(
        a, flows=tuple(dataclasses.replace(f, **changes) if f.id == flow_id else f for f in a.flows)
    )


def with_agreement(policies: PolicySet, new: Agreement) -> PolicySet:
    return dataclasses.replace(
        policies, agreements=tuple(new if a.id == new.id else a for a in policies.agreements)
    )


def without_agreement(policies: PolicySet, agreement_id: str) -> PolicySet:
    return dataclasses.replace(
        policies, agreements=tuple(a for a in policies.agreements if a.id != agreement_id)
    )


def refusal(engine: IsaEngine, sender: str, mt: str, **kw: Any) -> SharingRefused:
    with pytest.raises(SharingRefused) as info:
        engine.decide(sender, mt, kw.pop("now", NOW), **kw)
    assert isinstance(info.value, Forbidden)
    assert info.value.status == 403
    assert info.value.extra["reason"] == info.value.reason
    return info.value


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
        "person": {"given_name": "Alexis", "family_name": "Testperson",
                   "date_of_birth": "1990-01-01"},
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
    assert "continuity-of-care, offender-management, public-protection, resettlement, " \
        "victim-safety, youth-transition" in err.detail
    err = refusal(demo, PRISON, "release-notice", purposes=["youth-transition"])
    assert err.reason == "agreement_not_in_force"
    assert err.detail == (
        "no agreement in force permits this share: ISA-WS-003 v1.0 expired on 2022-12-31"
    )


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
    assert err.detail == (
        "party 'c' is not a party to any agreement covering release-notice (ISA-T-001, ISA-T-002)"
    )


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
    engine = IsaEngine(policy_set(
        agreement(flow(), id="ISA-T-002", status="suspended"),
        agreement(flow(), id="ISA-T-001", expires_on=dt.date(2020, 1, 1)),
    ))
    err = refusal(engine, "a", "release-notice")
    assert err.detail == (
        "no agreement in force permits this share: "
        "ISA-T-001 v1.0 expired on 2020-01-01; ISA-T-002 v1.0 is suspended"
    )


def test_no_recipient_when_the_only_recipient_is_the_sender() -> None:
    engine = IsaEngine(policy_set(agreement(flow(recipients=["a"]), parties=["a", "b"])))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "no_recipient"
    assert err.detail == "agreements in force name no recipient for release-notice from 'a'"


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
    engine = IsaEngine(policy_set(
        agreement(flow(recipients=["b"]), id="ISA-T-001", status="suspended"),
        agreement(flow(recipients=["c"]), id="ISA-T-002"),
    ))
    decision = engine.decide("a", "release-notice", NOW)
    assert [r.party for r in decision.recipients] == ["c"]
    assert decision.agreements == [{"id": "ISA-T-002", "version": "1.0"}]


def test_grants_from_several_flows_are_combined_per_recipient() -> None:
    engine = IsaEngine(policy_set(
        agreement(flow(id="f1", fields=["person.given_name"], purpose="p1"),
                  flow(id="f2", fields=["release.date"], purpose="p2", recipients=["b", "c"]),
                  id="ISA-T-001"),
        agreement(flow(id="g1", fields=["risk"], purpose="p3"), id="ISA-T-002", version="3"),
    ))
    decision = engine.decide("a", "release-notice", NOW)
    b = decision.recipient("b")
    c = decision.recipient("c")
    assert b is not None and c is not None
    assert [(g.agreement_id, g.flow_id) for g in b.grants] == [
        ("ISA-T-001", "f1"), ("ISA-T-001", "f2"), ("ISA-T-002", "g1"),
    ]
    assert b.allowed == {"person.given_name", "release.date", "risk"}
    assert c.allowed == {"release.date"}
    assert decision.agreements == [
        {"id": "ISA-T-001", "version": "1.0"}, {"id": "ISA-T-002", "version": "3"},
    ]
    payload = _release(0)
    assert b.disclosed(payload) == ["person.given_name", "release.date", "risk.domestic_abuse",
                                    "risk.national_security_division", "risk.rosh_level",
                                    "risk.sex_offender_register"]


def test_empty_purposes_means_any_purpose() -> None:
    engine = IsaEngine(policy_set(agreement(flow(purpose="p1"))))
    assert engine.decide("a", "release-notice", NOW, purposes=[]).recipients
    assert engine.decide("a", "release-notice", NOW, purposes=None).recipients


# --- the stored form ----------------------------------------------------------------------


def test_decision_round_trips_through_json(demo: IsaEngine) -> None:
    decision = demo.decide(PRISON, "release-notice", NOW)
    stored = json.loads(json.dumps(decision.to_dict()))
    assert stored["decided_at"] == "2026-06-01T12:00:00+00:00"
    assert stored["recipients"][0] == {
        "party": HOUSING,
        "grants": [{
            "agreement": "ISA-EB-001", "version": "2.1", "flow": "release-to-housing",
            "purpose": "resettlement", "fields": list(decision.recipients[0].grants[0].fields),
        }],
    }
    back = Decision.from_dict(stored)
    assert back == decision
    assert back.decided_at.tzinfo is not None
    assert back.to_dict() == decision.to_dict()


def test_grant_and_recipient_round_trip() -> None:
    grant = Grant("ISA-T-001", "1.0", "f1", "p", ("a.b", "c"))
    assert Grant.from_dict(grant.to_dict()) == grant
    rd = RecipientDecision("b", (grant, Grant("ISA-T-002", "2", "g", "q", ())))
    assert RecipientDecision.from_dict(json.loads(json.dumps(rd.to_dict()))) == rd


# --- recheck() -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decision(demo: IsaEngine) -> Decision:
    return demo.decide(PRISON, "release-notice", NOW)


def test_recheck_with_unchanged_policies_keeps_everything(
    demo: IsaEngine, decision: Decision
) -> None:
    later = NOW + dt.timedelta(days=30)
    current = demo.recheck(decision, later)
    assert set(current) == set(RELEASE_TO)
    for rd in decision.recipients:
        assert current[rd.party] == rd


def test_recheck_withholds_when_an_agreement_is_suspended(
    demo_policies: PolicySet, decision: Decision
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    engine = IsaEngine(with_agreement(demo_policies, dataclasses.replace(eb2, status="suspended")))
    current = engine.recheck(decision, NOW)
    assert current[VAWG] == "ISA-EB-002 v1.0 is suspended"
    assert isinstance(current[PDU], RecipientDecision)
    assert current[PDU] == decision.recipient(PDU)


def test_recheck_withholds_when_an_agreement_is_removed(
    demo_policies: PolicySet, decision: Decision
) -> None:
    engine = IsaEngine(without_agreement(demo_policies, "ISA-EB-002"))
    current = engine.recheck(decision, NOW)
    assert current[VAWG] == "ISA-EB-002 no longer exists"
    assert all(isinstance(current[p], RecipientDecision) for p in set(RELEASE_TO) - {VAWG})


def test_recheck_withholds_after_expiry(demo: IsaEngine, decision: Decision) -> None:
    current = demo.recheck(decision, dt.datetime(2027, 9, 1, tzinfo=dt.UTC))
    assert current[VAWG] == "ISA-EB-002 v1.0 expired on 2027-08-31"
    assert isinstance(current[HOUSING], RecipientDecision)


def test_recheck_withholds_when_the_flow_is_gone(
    demo_policies: PolicySet, decision: Decision
) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    no_housing_flow = dataclasses.replace(
        eb1, flows=tuple(f for f in eb1.flows if f.id != "release-to-housing")
    )
    current = IsaEngine(with_agreement(demo_policies, no_housing_flow)).recheck(decision, NOW)
    assert current[HOUSING] == (
        "ISA-EB-001@2.1 flow release-to-housing no longer permits hmp-northgate to send "
        "release-notice to eastborough-housing for resettlement"
    )
    assert isinstance(current[PDU], RecipientDecision)


def test_recheck_withholds_when_the_recipient_is_dropped_from_the_flow(
    demo_policies: PolicySet, decision: Decision
) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    moved = replace_flow(eb1, "release-to-iom", recipients=frozenset({PDU}))
    current = IsaEngine(with_agreement(demo_policies, moved)).recheck(decision, NOW)
    assert current[IOM] == (
        "ISA-EB-001@2.1 flow release-to-iom no longer permits hmp-northgate to send "
        "release-notice to eastborough-police-iom for public-protection"
    )


def test_recheck_narrows_when_a_flow_loses_fields(
    demo_policies: PolicySet, decision: Decision
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    flow_ = eb2.flows[0]
    fewer = flow_.fields - {"licence_conditions.exclusion_zones", "licence_conditions.non_contact"}
    engine = IsaEngine(with_agreement(
        demo_policies, replace_flow(eb2, flow_.id, fields=fewer)
    ))
    vawg = engine.recheck(decision, NOW)[VAWG]
    assert isinstance(vawg, RecipientDecision)
    assert vawg.allowed == fewer
    assert vawg.grants[0].fields == tuple(sorted(fewer))
    assert "licence_conditions" not in vawg.project(_release(0))


def test_recheck_never_widens_when_a_flow_gains_fields(
    demo_policies: PolicySet, decision: Decision
) -> None:
    eb2 = demo_policies.agreement("ISA-EB-002")
    assert eb2 is not None
    more = eb2.flows[0].fields | {"resettlement_needs", "destination.address"}
    engine = IsaEngine(with_agreement(demo_policies, replace_flow(eb2, eb2.flows[0].id,
                                                                  fields=more)))
    vawg = engine.recheck(decision, NOW)[VAWG]
    assert isinstance(vawg, RecipientDecision)
    assert vawg.allowed == frozenset(VAWG_FIELDS)


def test_recheck_keeps_the_grants_still_in_force() -> None:
    a1 = agreement(flow(id="f1", fields=["person"]), id="ISA-T-001")
    a2 = agreement(flow(id="f2", fields=["release"]), id="ISA-T-002")
    decision = IsaEngine(policy_set(a1, a2)).decide("a", "release-notice", NOW)
    later = IsaEngine(policy_set(dataclasses.replace(a1, status="terminated"), a2))
    b = later.recheck(decision, NOW)["b"]
    assert isinstance(b, RecipientDecision)
    assert [g.agreement_id for g in b.grants] == ["ISA-T-002"]
    assert b.allowed == {"release"}


def test_recheck_joins_the_reasons_when_every_grant_is_withheld() -> None:
    a1 = agreement(flow(id="f1"), id="ISA-T-001")
    a2 = agreement(flow(id="f2"), id="ISA-T-002")
    decision = IsaEngine(policy_set(a1, a2)).decide("a", "release-notice", NOW)
    later = IsaEngine(policy_set(dataclasses.replace(a2, status="suspended")))
    assert later.recheck(decision, NOW) == {
        "b": "ISA-T-001 no longer exists; ISA-T-002 v1.0 is suspended"
    }


def test_recheck_withholds_when_the_flow_no_longer_covers_the_message_type(
    demo_policies: PolicySet, decision: Decision
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
    assert isinstance(engine.recheck(decision, NOW)[HOUSING], str)


def test_recheck_narrows_an_object_path_to_the_leaves_still_allowed() -> None:
    before = agreement(flow(fields=["person", "release"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = replace_flow(before, "f1", fields=frozenset({"person.given_name", "release"}))
    b = IsaEngine(policy_set(after)).recheck(decision, NOW)["b"]
    payload = _release(0)
    expected = project(project(payload, {"person", "release"}), {"person.given_name", "release"})
    assert isinstance(b, RecipientDecision)
    assert b.project(payload) == expected


def test_recheck_withheld_reason_is_never_empty() -> None:
    before = agreement(flow(fields=["person"]))
    decision = IsaEngine(policy_set(before)).decide("a", "release-notice", NOW)
    after = replace_flow(before, "f1", fields=frozenset({"release"}))
    b = IsaEngine(policy_set(after)).recheck(decision, NOW)["b"]
    assert isinstance(b, str)
    assert b != ""


# --- property: nothing beyond in-force flows naming the recipient ---------------------------

PARTIES = ["a", "b", "c", "d"]
PURPOSES = ["p1", "p2"]
TYPES = ["release-notice", "licence-recall"]
FIELDS = ["person", "person.given_name", "release.date", "risk", "recall", "risk.rosh_level"]
DAY = st.integers(min_value=-3, max_value=3).map(lambda n: TODAY + dt.timedelta(days=n))


def _subset(items: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(items), min_size=1)


FLOWS = st.builds(
    lambda senders, recipients, types, purpose, fields: (senders, recipients, types, purpose,
                                                          fields),
    _subset(PARTIES), _subset(PARTIES), _subset(TYPES), st.sampled_from(PURPOSES), _subset(FIELDS),
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
            Flow(f"f{j}", s, r, t, p, fl) for j, (s, r, t, p, fl) in enumerate(flows)
        ]
        members = extra_parties | {x for f in built for x in f.senders | f.recipients}
        agreements.append(Agreement(
            id=f"ISA-H-{i:03d}", title="t", version=str(i + 1), status=status,
            parties=frozenset(members), purposes={f.purpose: "d" for f in built},
            lawful_basis=("x",), effective_from=min(start, end), expires_on=max(start, end),
            flows=tuple(built),
        ))
    return policy_set(*agreements)


def _in_force(a: Agreement) -> bool:
    return a.status == "active" and a.effective_from <= TODAY <= a.expires_on


@settings(max_examples=250, deadline=None, database=None)
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
        (a, f) for a in policies.agreements for f in a.flows
        if _in_force(a) and message_type in f.message_types and sender in f.senders
        and (purposes is None or f.purpose in purposes)
    ]
    expected_recipients = {r for _, f in eligible for r in f.recipients} - {sender}
    try:
        decision = IsaEngine(policies).decide(sender, message_type, NOW, purposes)
    except SharingRefused as e:
        assert e.reason in {"no_agreement", "sender_not_party", "purpose_not_covered",
                            "agreement_not_in_force", "no_recipient"}
        assert expected_recipients == set(), (e.reason, e.detail)
        return
    assert {r.party for r in decision.recipients} == expected_recipients
    for rd in decision.recipients:
        assert rd.party != sender
        union = frozenset().union(*(f.fields for _, f in eligible if rd.party in f.recipients))
        assert rd.allowed <= union
        assert rd.allowed == union
        for g in rd.grants:
            a = policies.agreement(g.agreement_id)
            assert a is not None and _in_force(a)
            f = next(f for f in a.flows if f.id == g.flow_id)
            assert rd.party in f.recipients and sender in f.senders
            assert set(g.fields) == f.fields
        payload = _release(0)
        assert set(leaf_paths(rd.project(payload))) <= set(leaf_paths(project(payload, union)))
    # Re-checking immediately against the same policies changes nothing.
    current = IsaEngine(policies).recheck(decision, NOW)
    assert current == {rd.party: rd for rd in decision.recipients}
    assert copy.deepcopy(decision) == decision
