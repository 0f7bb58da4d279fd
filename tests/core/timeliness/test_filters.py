"""Subscription filters (unit): the model, what a party can ever receive, the refusals of
filters that could never match (each with a control that passes), matching on the party's
own projection, and that the router's filter step only ever narrows. Also priority_of."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.core.isa import IsaEngine
from services.core.messages.person import identifier_keys
from services.core.timeliness.filters import (
    CohortChange,
    FilterNeverMatches,
    Narrowing,
    SubscriptionFilters,
    check_filters,
    matches,
    receivable,
)
from services.core.timeliness.priority import priority_of
from tests.core.isa.isa_builders import (
    NOW,
    TODAY,
    agreement,
    canonical,
    flow,
    hard_block,
    policy_set,
    release,
)
from tests.factories import example

P = policy_set(
    agreement(
        flow(
            "to-police",
            senders=["prison"],
            recipients=["police"],
            fields=["person", "release", "destination", "risk"],
        ),
        flow(
            "recall-to-police",
            senders=["probation"],
            recipients=["police", "victims"],
            message_types=["licence-recall"],
            fields=["person", "recall", "risk"],
        ),
        flow(
            "to-victims",
            senders=["prison"],
            recipients=["victims"],
            fields=["person.given_name", "destination", "risk.domestic_abuse"],
            prohibited=["destination.address"],
        ),
        id="ISA-T-001",
        hard_blocks=[hard_block("no-ids", ["person.crn", "person.pnc_id"], ["victims"])],
    ),
    agreement(
        flow(
            "dip-to-victims",
            senders=["police"],
            recipients=["victims"],
            message_types=["dip-breach"],
            fields=["breach"],
        ),
        id="ISA-T-002",
        status="suspended",
    ),
)


def _filters(**kw: Any) -> SubscriptionFilters:
    return SubscriptionFilters.model_validate(kw)


def _refusal(party: str, types: list[str], **kw: Any) -> FilterNeverMatches:
    with pytest.raises(FilterNeverMatches) as info:
        check_filters(_filters(**kw), P, party, types, TODAY)
    assert info.value.status == 422 and info.value.code == "filter_never_matches"
    return info.value


# -- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"risk": {}},
        {"cohort": False},
        {"cohort": 1},
        {"risk": {"mappa": "true"}},
        {"risk": {"rosh_levels": ["extreme"]}},
        {"risk": {"rosh_levels": []}},
        {"local_authorities": []},
        {"local_authorities": ["x" * 101]},
        {"local_authorities": ["East\nborough"]},
        {"local_authorities": ["a"] * 101},
        {"postcode": ["ZZ1"]},
        {"unlawfully_at_large": False},
    ],
)
def test_bad_filter_objects_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SubscriptionFilters.model_validate(body)


def test_a_valid_filter_object_is_stored_without_unset_kinds() -> None:
    f = _filters(local_authorities=["Eastborough"], risk={"rosh_levels": ["high", "very_high"]})
    assert f.stored() == {
        "local_authorities": ["Eastborough"],
        "risk": {"rosh_levels": ["high", "very_high"]},
    }
    assert SubscriptionFilters.model_validate(f.stored()) == f


def test_cohort_changes_need_a_valid_identifier() -> None:
    ok = CohortChange.model_validate({"add": [{"pnc_id": "24/123456X", "crn": "X123456"}]})
    assert ok.add[0].identifiers() == ["pnc_id:24/123456X", "crn:X123456"]
    for bad in (
        {},
        {"add": [{}]},
        {"add": [{"pnc_id": "123456"}]},
        {"add": [{"crn": "x123456"}]},
        {"add": [{"prison_number": "A1234B"}]},
        {"add": [{"name": "Alexis"}]},
        {"add": [{"crn": "X123456"}] * 1001},
    ):
        with pytest.raises(ValidationError):
            CohortChange.model_validate(bad)


# -- what a party can ever receive ---------------------------------------------------------------


def test_receivable_follows_flows_prohibitions_hard_blocks_and_agreements_in_force() -> None:
    police = receivable(P, "police", "release-notice", TODAY)
    assert police.flows == ("ISA-T-001@1.0#to-police",)
    assert police.can_receive("destination.local_authority")
    assert police.can_receive("risk.mappa") and police.can_receive("person.pnc_id")
    victims = receivable(P, "victims", "release-notice", TODAY)
    assert victims.can_receive("destination.local_authority")  # control
    assert not victims.can_receive("destination.address")  # the flow prohibits it
    assert not victims.can_receive("risk.mappa")  # no flow discloses it
    assert not victims.can_receive("person.crn")  # a hard block withholds it
    # a suspended agreement's flow is not in force: nothing of a DIP breach reaches victims
    assert receivable(P, "victims", "dip-breach", TODAY).flows == ()
    # a party's own flow as a sender only does not make it a recipient
    assert receivable(P, "prison", "release-notice", TODAY).flows == ()


# -- refusals of filters that could never match, each with its control --------------------------


def test_a_filter_kind_the_message_type_lacks_is_refused() -> None:
    e = _refusal("police", ["licence-recall"], local_authorities=["Eastborough"])
    assert e.extra["problems"] == [
        {
            "filter": "local_authorities",
            "message_type": "licence-recall",
            "reason": "a licence-recall has no field destination.local_authority",
        }
    ]
    assert "local_authorities" in e.detail and "licence-recall" in e.detail
    check_filters(_filters(local_authorities=["E"]), P, "police", ["release-notice"], TODAY)
    e = _refusal("police", ["release-notice"], unlawfully_at_large=True)
    assert e.extra["problems"][0]["filter"] == "unlawfully_at_large"
    check_filters(_filters(unlawfully_at_large=True), P, "police", ["licence-recall"], TODAY)


def test_a_field_no_flow_discloses_to_the_party_is_refused() -> None:
    e = _refusal("victims", ["release-notice"], risk={"mappa": True})
    (problem,) = e.extra["problems"]
    assert problem["filter"] == "risk.mappa"
    assert "ISA-T-001@1.0#to-victims" in problem["reason"]
    assert "would tell it the value" in problem["reason"]
    check_filters(_filters(risk={"mappa": True}), P, "police", ["release-notice"], TODAY)
    check_filters(_filters(risk={"domestic_abuse": True}), P, "victims", ["release-notice"], TODAY)


def test_a_cohort_is_refused_to_a_party_that_sees_no_identifier() -> None:
    e = _refusal("victims", ["release-notice"], cohort=True)
    (problem,) = e.extra["problems"]
    assert "hard block ISA-T-001@1.0#no-ids" in problem["reason"]
    check_filters(_filters(cohort=True), P, "police", ["release-notice", "licence-recall"], TODAY)


def test_a_message_type_no_flow_in_force_sends_is_refused() -> None:
    e = _refusal("victims", ["dip-breach"], cohort=True)
    assert "no agreement in force has a flow of dip-breach to victims" in e.detail
    # every problem is listed: both message types fail for the local-authority filter
    e = _refusal("police", ["dip-breach", "licence-recall"], local_authorities=["E"])
    assert {(p["filter"], p["message_type"]) for p in e.extra["problems"]} == {
        ("local_authorities", "dip-breach"),
        ("local_authorities", "licence-recall"),
    }
    assert "1 more" in e.detail


def test_no_filters_are_not_checked() -> None:
    check_filters(None, P, "victims", ["dip-breach"], TODAY)


# -- matching on the projection --------------------------------------------------------------


def _never(ids: Any) -> bool:
    raise AssertionError("cohort consulted without a cohort filter")


def test_matching_is_and_across_kinds_and_or_within_a_list() -> None:
    body = release()  # Eastborough, rosh high, domestic abuse
    f = {"local_authorities": ["Westshire", "eastborough"], "risk": {"rosh_levels": ["high"]}}
    assert matches(f, body, _never)
    assert not matches({**f, "risk": {"rosh_levels": ["very_high"]}}, body, _never)
    assert not matches({**f, "local_authorities": ["Westshire"]}, body, _never)
    assert matches({"risk": {"domestic_abuse": True}}, body, _never)
    assert not matches({"risk": {"mappa": True}}, body, _never)
    assert matches({"risk": {"mappa": True}}, release(1), _never)
    assert not matches({"probation_delivery_units": ["Eastborough PDU"]}, release(1), _never)
    assert matches({"probation_delivery_units": ["Eastborough PDU"]}, body, _never)
    assert not matches({"future_kind": True}, body, _never)  # fails closed


def test_unlawfully_at_large_and_cohort_match() -> None:
    recall = canonical("licence-recall", example("licence-recall"))
    assert matches({"unlawfully_at_large": True}, recall, _never)
    other = canonical("licence-recall", example("licence-recall", 1))
    assert not matches({"unlawfully_at_large": True}, other, _never)
    seen: list[list[str]] = []

    def cohort(ids: Any) -> bool:
        seen.append(list(ids))
        return "crn:X123456" in ids

    assert matches({"cohort": True}, recall, cohort)
    assert seen == [["pnc_id:24/123456X", "crn:X123456"]]
    assert not matches({"cohort": True}, other, cohort)
    # no identifier in the projection: no match, and the cohort is not even consulted
    assert not matches({"cohort": True}, {"person": {"given_name": "A"}}, _never)


def test_filters_are_evaluated_on_the_recipients_projection_only() -> None:
    """A victims service filtering on MAPPA must not learn it: its projection lacks risk.mappa,
    so the filter never matches, whatever the value."""
    engine = IsaEngine(P)
    body = release(1)  # MAPPA
    decision = engine.decide("prison", "release-notice", NOW, payload=body)
    victims = decision.recipient("victims")
    police = decision.recipient("police")
    assert victims is not None and police is not None
    sub = {"id": "s1", "filters": {"risk": {"mappa": True}}}
    narrowing = Narrowing()
    assert narrowing.keep([sub], police, body) == [sub]  # control
    assert narrowing.keep([sub], victims, body) == []


def test_narrowing_only_narrows_and_lifecycle_updates_pass() -> None:
    engine = IsaEngine(P)
    body = release(0)
    police = engine.decide("prison", "release-notice", NOW, payload=body).recipient("police")
    assert police is not None
    subs: list[dict[str, Any]] = [
        {"id": "plain", "filters": None},
        {"id": "match", "filters": {"local_authorities": ["Eastborough"]}},
        {"id": "miss", "filters": {"local_authorities": ["Westshire"]}},
        {"id": "cohort", "filters": {"cohort": True}},
        {"id": "got-root", "filters": {"local_authorities": ["Westshire"]}},
    ]
    person = body["person"]
    pseudonyms = {k: f"psn_{k}" for k in identifier_keys(person)}
    hits = {("cohort", pseudonyms["crn:X123456"])}
    kept = Narrowing(pseudonyms, hits, received={"got-root"}).keep(subs, police, body)
    assert [s["id"] for s in kept] == ["plain", "match", "cohort", "got-root"]
    assert all(any(s is k for s in subs) for k in kept)  # a subset of what it was given
    assert [s["id"] for s in Narrowing().keep(subs, police, body)] == ["plain", "match"]
    assert Narrowing().keep([], police, body) == []


# -- the priority lane ---------------------------------------------------------------------------


def test_priority_of() -> None:
    recall = example("licence-recall")
    assert priority_of("licence-recall", recall) == 1
    assert priority_of("licence-recall", example("licence-recall", 1)) == 0
    assert priority_of("licence-recall", {**recall, "recall": {"unlawfully_at_large": "yes"}}) == 0
    assert priority_of("release-notice", {"recall": {"unlawfully_at_large": True}}) == 0
    assert priority_of("dip-breach", example("dip-breach")) == 0
