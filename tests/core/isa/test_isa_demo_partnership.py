"""The repository's own demo partnership (isa_policies/) and the headline decisions for the
release notice that ``isa-broker demo`` posts (services/demo/scenario.py)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from services.core.isa import IsaEngine, PolicySet, RecipientDecision, load_policies
from services.core.isa.engine import Decision
from services.demo import scenario
from tests.core.isa.isa_builders import canonical, refusal, replace_flow, with_agreement

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

PRISON = "hmp-northgate"
PDU = "eastborough-pdu"
IOM = "eastborough-police-iom"
DIP = "eastborough-police-dip"
HOUSING = "eastborough-housing"
VAWG = "eastborough-vawg"
VLO = "eastborough-vlo"
RECOVERY = "eastborough-recovery"
YOUTH = "westshire-youth-justice"
MENTAL_HEALTH = "eastborough-mental-health"

HEALTH = ("resettlement_needs.opioid_substitution_therapy", "resettlement_needs.mental_health")
ADDRESS = {"line1": "9 Nowhere Lane", "town": "Eastborough", "postcode": "ZZ9 9ZZ"}


@pytest.fixture(scope="module")
def partnership(repo_policies_dir: Path, schemas_dir: Path) -> PolicySet:
    return load_policies(repo_policies_dir, schemas_dir)


@pytest.fixture(scope="module")
def engine(partnership: PolicySet) -> IsaEngine:
    return IsaEngine(partnership)


@pytest.fixture
def notice() -> dict[str, Any]:
    """The demo's notice, in canonical form, as the broker stores it."""
    return canonical("release-notice", scenario.release_notice(NOW.date()))


@pytest.fixture
def decision(engine: IsaEngine, notice: dict[str, Any]) -> Decision:
    return engine.decide(PRISON, "release-notice", NOW, payload=notice)


def _get(decision: Decision, party: str) -> RecipientDecision:
    rd = decision.recipient(party)
    assert rd is not None, f"{party} is not a recipient"
    return rd


def _under(path: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


# --- loading --------------------------------------------------------------------------------


def test_the_demo_partnership_loads(partnership: PolicySet) -> None:
    assert [a.id for a in partnership.agreements] == [
        "ISA-EB-000",
        "ISA-EB-010",
        "ISA-EB-020",
        "ISA-EB-030",
        "ISA-EB-040",
        "ISA-EB-050",
        "ISA-WS-003",
    ]
    assert len(partnership.parties) == 10
    eb0 = partnership.agreement("ISA-EB-000")
    assert eb0 is not None
    assert eb0.flows == ()
    assert [b.id for b in eb0.hard_blocks] == [
        "health-data-stays-clinical",
        "no-release-address-to-victim-services",
    ]
    health, address = eb0.hard_blocks
    # kind: references in a hard block cover the whole register, not only the agreement.
    assert health.parties == {IOM, DIP, HOUSING, VAWG, VLO}
    assert address.parties == {VAWG, VLO}
    draft = partnership.agreement("ISA-EB-050")
    assert draft is not None and draft.status == "draft"


def test_kind_references_in_the_demo_flows_are_expanded(partnership: PolicySet) -> None:
    eb10 = partnership.agreement("ISA-EB-010")
    eb20 = partnership.agreement("ISA-EB-020")
    eb40 = partnership.agreement("ISA-EB-040")
    assert eb10 is not None and eb20 is not None and eb40 is not None
    housing = next(f for f in eb40.flows if f.id == "release-to-housing")
    assert housing.recipients == {HOUSING}  # kind:council-housing
    assert housing.condition is not None and "recipient.area" in housing.condition
    iom = next(f for f in eb10.flows if f.id == "release-to-iom")
    # ISA-EB-010's only police party is the IOM team; the DIP team is not a party to it.
    assert iom.recipients == {IOM}
    recall = next(f for f in eb20.flows if f.id == "perpetrator-recall-alert")
    assert recall.recipients == {VAWG, VLO}
    assert all(f.program is not None for f in eb20.flows)


def test_every_demo_flow_is_well_formed(partnership: PolicySet) -> None:
    from services.core.messages import MESSAGE_TYPES

    for agreement in partnership.agreements:
        assert agreement.review_date is not None
        for flow in agreement.flows:
            assert flow.senders | flow.recipients <= agreement.parties
            assert flow.purpose in agreement.purposes
            assert flow.legal_regime["regime"] in {"uk-gdpr", "dpa-2018-part-3"}
            for name in flow.message_types:
                assert (flow.fields | flow.prohibited) <= MESSAGE_TYPES[name].paths.keys()


# --- the demo release notice ------------------------------------------------------------------


def test_the_demo_notice_goes_to_the_partners_entitled_to_it(decision: Decision) -> None:
    assert [r.party for r in decision.recipients] == [HOUSING, PDU, IOM, RECOVERY, VAWG, VLO]
    assert set(scenario.ENTITLED) <= {r.party for r in decision.recipients}
    assert decision.recipient(scenario.NOT_ENTITLED) is None
    assert decision.recipient(MENTAL_HEALTH) is None
    assert decision.recipient(DIP) is None  # police, but not party to ISA-EB-010
    assert decision.agreements == [
        {"id": "ISA-EB-010", "version": "2.1"},
        {"id": "ISA-EB-020", "version": "1.2"},
        {"id": "ISA-EB-040", "version": "1.1"},
    ]
    assert decision.warnings == ()


def test_vawg_gets_neither_resettlement_needs_nor_the_address(
    decision: Decision, notice: dict[str, Any]
) -> None:
    vawg = _get(decision, VAWG)
    shared = vawg.project(notice)
    assert "resettlement_needs" not in shared
    assert "address" not in shared["destination"]
    assert not any(
        _under(p, {"resettlement_needs", "destination.address"}) for p in vawg.disclosed(notice)
    )
    assert shared["risk"] == {"domestic_abuse": True}
    assert (
        shared["licence_conditions"]["exclusion_zones"]
        == (notice["licence_conditions"]["exclusion_zones"])
    )


def test_vawg_never_gets_the_address_even_when_the_notice_has_one(
    engine: IsaEngine, notice: dict[str, Any]
) -> None:
    notice["destination"] = {**notice["destination"], "no_fixed_abode": False, "address": ADDRESS}
    decision = engine.decide(PRISON, "release-notice", NOW, payload=notice)
    vawg, vlo, pdu = _get(decision, VAWG), _get(decision, VLO), _get(decision, PDU)
    assert "destination.address" in vawg.blocked
    assert "destination.address" in vlo.blocked
    for rd in (vawg, vlo):
        assert not any(p.startswith("destination.address") for p in rd.disclosed(notice))
    assert pdu.project(notice)["destination"]["address"] == ADDRESS


def test_the_police_get_no_health_data(decision: Decision, notice: dict[str, Any]) -> None:
    iom = _get(decision, IOM)
    assert set(HEALTH) <= iom.blocked
    assert not any(_under(p, HEALTH) for p in iom.disclosed(notice))
    assert "resettlement_needs" not in iom.project(notice)
    assert iom.project(notice)["risk"]["mappa"] == notice["risk"]["mappa"]


def test_health_data_stays_with_probation_and_treatment(
    decision: Decision, notice: dict[str, Any]
) -> None:
    pdu, recovery, housing = _get(decision, PDU), _get(decision, RECOVERY), _get(decision, HOUSING)
    assert pdu.project(notice)["resettlement_needs"] == notice["resettlement_needs"]
    assert recovery.project(notice)["resettlement_needs"] == {
        "opioid_substitution_therapy": notice["resettlement_needs"]["opioid_substitution_therapy"]
    }
    assert housing.project(notice)["resettlement_needs"] == {"accommodation": True}
    for party in (HOUSING, VAWG, VLO, IOM):
        assert not any(_under(p, HEALTH) for p in _get(decision, party).disclosed(notice))


def test_the_hard_block_beats_a_wider_police_flow(
    partnership: PolicySet, notice: dict[str, Any]
) -> None:
    eb10 = partnership.agreement("ISA-EB-010")
    assert eb10 is not None
    iom_flow = next(f for f in eb10.flows if f.id == "release-to-iom")
    wider = replace_flow(eb10, "release-to-iom", fields=iom_flow.fields | {"resettlement_needs"})
    decision = IsaEngine(with_agreement(partnership, wider)).decide(
        PRISON, "release-notice", NOW, payload=notice
    )
    iom = _get(decision, IOM)
    assert "resettlement_needs" in iom.allowed
    assert set(iom.project(notice)["resettlement_needs"]) == {
        "accommodation",
        "benefits",
        "identity_documents",
    }
    explained = iom.explain(notice)
    assert explained["resettlement_needs.mental_health"] == {
        "disclosed": False,
        "withheld_by": ["ISA-EB-000@3.0#health-data-stays-clinical"],
        "would_be_allowed_by": ["ISA-EB-010@2.1#release-to-iom"],
    }


def test_the_draft_and_the_expired_agreements_appear_in_considered(decision: Decision) -> None:
    considered = {(c.agreement_id, c.flow_id): c for c in decision.considered}
    draft = considered[("ISA-EB-050", "release-to-mental-health")]
    assert (draft.outcome, draft.detail, draft.recipient) == (
        "not_in_force",
        "ISA-EB-050 v0.3 is draft",
        None,
    )
    lapsed = considered[("ISA-WS-003", "release-to-youth-justice")]
    assert (lapsed.outcome, lapsed.detail) == (
        "not_in_force",
        "ISA-WS-003 v1.0 expired on 2022-12-31",
    )
    assert set(considered) == {
        ("ISA-EB-050", "release-to-mental-health"),
        ("ISA-WS-003", "release-to-youth-justice"),
    }


def test_the_lapsed_youth_transition_share_is_refused(engine: IsaEngine) -> None:
    notice = scenario.release_notice(NOW.date())
    err = refusal(engine, PRISON, "release-notice", purposes=["youth-transition"], payload=notice)
    assert err.reason == "agreement_not_in_force"
    assert err.detail == (
        "no agreement in force permits this share: ISA-WS-003 v1.0 expired on 2022-12-31"
    )


def test_explain_for_vawg_names_its_grant_and_the_blocks(
    decision: Decision, notice: dict[str, Any]
) -> None:
    explained = _get(decision, VAWG).explain(notice)
    assert explained["release.date"] == {
        "disclosed": True,
        "allowed_by": ["ISA-EB-020@1.2#perpetrator-release-alert"],
    }
    assert explained["resettlement_needs.mental_health"] == {
        "disclosed": False,
        "withheld_by": ["ISA-EB-000@3.0#health-data-stays-clinical"],
    }
    assert explained["person.pnc_id"] == {
        "disclosed": False,
        "withheld_by": ["no flow permits it"],
    }


# --- conditions in the demo agreements --------------------------------------------------------


def test_without_the_domestic_abuse_flag_vawg_gets_nothing(
    engine: IsaEngine, notice: dict[str, Any]
) -> None:
    notice["risk"]["domestic_abuse"] = False
    decision = engine.decide(PRISON, "release-notice", NOW, payload=notice)
    assert decision.recipient(VAWG) is None
    assert (VAWG, "condition_false") in {(c.recipient, c.outcome) for c in decision.considered}


def test_housing_hears_only_of_releases_to_its_area_with_a_housing_need(
    engine: IsaEngine, notice: dict[str, Any]
) -> None:
    elsewhere = copy.deepcopy(notice)
    elsewhere["destination"]["local_authority"] = "Westshire"
    decision = engine.decide(PRISON, "release-notice", NOW, payload=elsewhere)
    assert decision.recipient(HOUSING) is None
    housed = copy.deepcopy(notice)
    housed["destination"]["no_fixed_abode"] = False
    housed["resettlement_needs"]["accommodation"] = False
    assert engine.decide(PRISON, "release-notice", NOW, payload=housed).recipient(HOUSING) is None
    housed["resettlement_needs"]["accommodation"] = True
    assert engine.decide(PRISON, "release-notice", NOW, payload=housed).recipient(HOUSING)


def test_treatment_hears_only_of_releases_on_opioid_substitution(
    engine: IsaEngine, notice: dict[str, Any]
) -> None:
    del notice["resettlement_needs"]["opioid_substitution_therapy"]
    decision = engine.decide(PRISON, "release-notice", NOW, payload=notice)
    assert decision.recipient(RECOVERY) is None


def test_iom_hears_only_of_mappa_or_high_risk_releases(
    engine: IsaEngine, notice: dict[str, Any]
) -> None:
    del notice["risk"]["mappa"]
    notice["risk"]["rosh_level"] = "medium"
    decision = engine.decide(PRISON, "release-notice", NOW, payload=notice)
    assert decision.recipient(IOM) is None
    notice["risk"]["rosh_level"] = "very_high"
    assert engine.decide(PRISON, "release-notice", NOW, payload=notice).recipient(IOM)


def test_an_overdue_review_is_warned_about(engine: IsaEngine, notice: dict[str, Any]) -> None:
    later = dt.datetime(2027, 1, 15, 9, 0, tzinfo=dt.UTC)
    decision = engine.decide(PRISON, "release-notice", later, payload=notice)
    assert decision.warnings == ("ISA-EB-020 v1.2 review was due on 2026-12-31",)


def test_recheck_against_unchanged_policies_returns_the_stored_share(
    engine: IsaEngine, decision: Decision, notice: dict[str, Any]
) -> None:
    # Regression: recheck() once recorded every prohibition and hard block twice.
    current = engine.recheck(decision, NOW + dt.timedelta(hours=1), notice)
    for rd in decision.recipients:
        assert current[rd.party] == rd


def test_recheck_against_unchanged_policies_discloses_the_same(
    engine: IsaEngine, decision: Decision, notice: dict[str, Any]
) -> None:
    current = engine.recheck(decision, NOW + dt.timedelta(hours=1), notice)
    assert set(current) == {r.party for r in decision.recipients}
    for rd in decision.recipients:
        now_rd = current[rd.party]
        assert isinstance(now_rd, RecipientDecision)
        assert now_rd.project(notice) == rd.project(notice)
        assert now_rd.blocked == rd.blocked


def test_recheck_after_the_vawg_agreement_is_suspended(
    partnership: PolicySet, decision: Decision, notice: dict[str, Any]
) -> None:
    eb20 = partnership.agreement("ISA-EB-020")
    assert eb20 is not None
    engine = IsaEngine(with_agreement(partnership, dataclasses.replace(eb20, status="suspended")))
    current = engine.recheck(decision, NOW, notice)
    assert current[VAWG] == "ISA-EB-020 v1.2 is suspended"
    assert current[VLO] == "ISA-EB-020 v1.2 is suspended"
    assert isinstance(current[PDU], RecipientDecision)
