"""The rules added to the engine with agreement format v2: flow conditions over the message
and the parties, prohibited fields, hard blocks, explain() and review warnings."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

import cel
import pytest

from services.core.errors import SharingRefused
from services.core.isa import IsaEngine
from services.core.isa.engine import Consideration
from tests.core.isa.isa_builders import (
    NOW,
    TODAY,
    agreement,
    flow,
    hard_block,
    policy_set,
    refusal,
)
from tests.core.isa.isa_builders import release as _release

DA = "message.risk.domestic_abuse == true"


def _outcomes(considered: tuple[Consideration, ...]) -> list[tuple[str, str | None, str]]:
    return [(c.flow_id, c.recipient, c.outcome) for c in considered]


# --- conditions ----------------------------------------------------------------------------


def test_a_true_condition_grants() -> None:
    engine = IsaEngine(policy_set(agreement(flow(condition=DA))))
    payload = _release(0)
    assert payload["risk"]["domestic_abuse"] is True
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["b"]
    assert decision.considered == ()


def test_a_false_condition_is_recorded_and_grants_nothing() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition=DA),
                flow(id="f2", recipients=["c"]),
            )
        )
    )
    payload = _release(1)
    assert payload["risk"]["domestic_abuse"] is False
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["c"]
    assert decision.considered == (
        Consideration(
            "ISA-T-001", "1.0", "f1", "b", "condition_false", f"condition is false: {DA}"
        ),
    )


def test_a_condition_that_cannot_be_evaluated_counts_as_false_and_is_recorded() -> None:
    cond = "message.licence_conditions.non_contact == true"
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition=cond),
                flow(id="f2", recipients=["c"]),
            )
        )
    )
    payload = _release(1)
    assert "licence_conditions" not in payload
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["c"]
    (considered,) = decision.considered
    assert (considered.flow_id, considered.recipient, considered.outcome) == (
        "f1",
        "b",
        "condition_error",
    )
    assert considered.detail.startswith(f"{cond}: KeyError")


@pytest.mark.parametrize(
    "condition",
    [
        "message.release.type + 1 == 2",  # type error
        "int(message.person.given_name) > 0",  # function error
        "no_such_variable == true",  # undefined variable
    ],
)
def test_every_kind_of_evaluation_error_is_a_condition_error(condition: str) -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition=condition),
                flow(id="f2", recipients=["c"]),
            )
        )
    )
    decision = engine.decide("a", "release-notice", NOW, payload=_release(0))
    assert _outcomes(decision.considered) == [("f1", "b", "condition_error")]


@pytest.mark.parametrize(
    "condition",
    [
        'message.licence_conditions.exclusion_zones[0].area == "ZZ9"',  # index out of range
        "1 / (message.risk.domestic_abuse ? 0 : 1) == 1",  # division by zero
        "9223372036854775807 + 1 > 0",  # integer overflow
    ],
)
def test_arithmetic_and_index_errors_are_condition_errors(condition: str) -> None:
    # Regression: cel raises IndexError, ZeroDivisionError and OverflowError, which once
    # escaped decide() instead of being recorded.
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition=condition),
                flow(id="f2", recipients=["c"]),
            )
        )
    )
    payload = _release(0)
    payload["licence_conditions"]["exclusion_zones"] = []
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert _outcomes(decision.considered) == [("f1", "b", "condition_error")]


@pytest.mark.parametrize(
    "condition",
    [
        "!has(message.risk.mappa)",
        'message.licence_conditions.exclusion_zones.exists(z, z.area == "ZZ2")',
        'message.destination.local_authority.startsWith("East")',
    ],
)
def test_conditions_see_the_message_as_it_is(condition: str) -> None:
    # Regression: the engine hands CEL only the fields the conditions name; a path ending in
    # an absent field, a macro or a string method once lost its parent object.
    payload = _release(0)
    assert "mappa" not in payload["risk"]
    assert cel.compile(condition).execute(cel.Context({"message": payload})) is True
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition=condition),
                flow(id="f2", recipients=["c"]),
            )
        )
    )
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert decision.considered == ()
    assert [r.party for r in decision.recipients] == ["b", "c"]


def test_has_on_an_absent_field_is_false_not_an_error_when_its_parent_is_read() -> None:
    # The same condition alongside one that reads the parent object's other fields.
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", condition="!has(message.risk.mappa)"),
                flow(id="f2", recipients=["c"], condition="message.risk.rosh_level == 'high'"),
            )
        )
    )
    payload = _release(0)
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["b", "c"]


def test_without_a_payload_a_condition_on_the_message_is_a_condition_error() -> None:
    engine = IsaEngine(policy_set(agreement(flow(condition=DA))))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "no_recipient"
    assert [r["outcome"] for r in err.extra["rules"]] == ["condition_error"]


def test_conditions_are_evaluated_per_recipient_with_its_area() -> None:
    cond = "message.destination.local_authority == recipient.area"
    engine = IsaEngine(
        policy_set(
            agreement(flow(recipients=["east", "west"], condition=cond)),
            areas={"east": "Eastborough", "west": "Westshire"},
        )
    )
    payload = _release(0)
    assert payload["destination"]["local_authority"] == "Eastborough"
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["east"]
    assert _outcomes(decision.considered) == [("f1", "west", "condition_false")]
    payload["destination"]["local_authority"] = "Westshire"
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    assert [r.party for r in decision.recipients] == ["west"]


def test_a_recipient_without_an_area_sees_an_empty_area() -> None:
    engine = IsaEngine(policy_set(agreement(flow(condition='recipient.area == ""'))))
    assert engine.decide("a", "release-notice", NOW, payload=_release(0)).recipients


def test_conditions_can_use_the_kind_and_id_of_sender_and_recipient() -> None:
    cond = 'recipient.kind == "police" && sender.kind == "prison" && sender.id == "jail"'
    engine = IsaEngine(
        policy_set(
            agreement(flow(senders=["jail"], recipients=["cops", "council"], condition=cond)),
            kinds={"jail": "prison", "cops": "police", "council": "council-housing"},
        )
    )
    decision = engine.decide("jail", "release-notice", NOW, payload=_release(0))
    assert [r.party for r in decision.recipients] == ["cops"]
    assert _outcomes(decision.considered) == [("f1", "council", "condition_false")]


def test_when_every_condition_fails_the_share_is_refused_with_no_recipient() -> None:
    engine = IsaEngine(policy_set(agreement(flow(condition=DA))))
    err = refusal(engine, "a", "release-notice", payload=_release(1))
    assert err.reason == "no_recipient"
    assert err.extra["rules"] == [
        {
            "agreement": "ISA-T-001",
            "version": "1.0",
            "flow": "f1",
            "recipient": "b",
            "outcome": "condition_false",
            "detail": f"condition is false: {DA}",
        }
    ]


def test_a_flow_not_in_force_or_not_asked_for_is_considered_without_evaluating_it() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(id="f1", condition="1 / 0 == 1"), id="ISA-T-001", status="suspended"),
            agreement(
                flow(id="g1", purpose="q", condition="1 / 0 == 1"),
                flow(id="g2", purpose="p"),
                id="ISA-T-002",
            ),
        )
    )
    decision = engine.decide("a", "release-notice", NOW, purposes=["p"], payload=_release(0))
    assert [r.party for r in decision.recipients] == ["b"]
    # g1 (purpose q, not asked for) may be listed as purpose_not_requested or left out;
    # neither condition is evaluated, so neither is a condition_error.
    assert set(_outcomes(decision.considered)) - {("g1", None, "purpose_not_requested")} == {
        ("f1", None, "not_in_force"),
    }
    assert decision.purposes == ("p",)


# --- prohibited fields ---------------------------------------------------------------------


def test_prohibited_fields_are_removed_from_the_flows_own_grant() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(fields=["person", "destination"], prohibited=["destination.address"]),
            )
        )
    )
    payload = _release(0)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert b.allowed == {"person", "destination"}
    assert b.blocked == {"destination.address"}
    assert [(x.rule, x.kind) for x in b.blocks] == [("f1", "prohibited")]
    shared = b.project(payload)
    assert "address" not in shared["destination"]
    assert shared["destination"]["local_authority"] == "Eastborough"
    assert shared["person"] == payload["person"]


def test_a_prohibition_overrides_a_permission_from_another_flow_and_agreement() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(id="wide", fields=["destination"]), id="ISA-T-001"),
            agreement(
                flow(id="narrow", fields=["person"], prohibited=["destination.address"]),
                id="ISA-T-002",
            ),
        )
    )
    payload = _release(0)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert "destination.address.postcode" not in b.disclosed(payload)
    assert "destination.local_authority" in b.disclosed(payload)


def test_a_prohibition_binds_only_the_recipients_of_its_flow() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(
                    id="f1",
                    recipients=["b"],
                    fields=["person"],
                    prohibited=["person.date_of_birth"],
                ),
                flow(id="f2", recipients=["c"], fields=["person"]),
            )
        )
    )
    payload = _release(0)
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    b, c = decision.recipient("b"), decision.recipient("c")
    assert b is not None and c is not None
    assert "person.date_of_birth" not in b.disclosed(payload)
    assert "person.date_of_birth" in c.disclosed(payload)


def test_the_prohibition_of_a_flow_that_does_not_apply_has_no_effect() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", fields=["person"]),
                flow(id="f2", fields=["release"], prohibited=["person"], condition=DA),
            )
        )
    )
    payload = _release(1)  # no domestic-abuse flag: f2 does not apply
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert b.blocked == frozenset()
    assert b.project(payload) == {"person": payload["person"]}


# --- hard blocks ---------------------------------------------------------------------------


def _umbrella(*blocks: Any, status: str = "active", **kw: Any) -> Any:
    return agreement(id="ISA-T-000", parties=["a", "b"], status=status, hard_blocks=blocks, **kw)


def test_a_hard_block_of_another_agreement_overrides_a_permission() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person", "resettlement_needs"])),
            _umbrella(
                hard_block(
                    fields=["resettlement_needs.opioid_substitution_therapy"], reason="health data"
                )
            ),
        )
    )
    payload = _release(1)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert [(x.agreement_id, x.rule, x.kind, x.reason) for x in b.blocks] == [
        ("ISA-T-000", "hb1", "hard_block", "health data"),
    ]
    shared = b.project(payload)
    assert "opioid_substitution_therapy" not in shared["resettlement_needs"]
    assert shared["resettlement_needs"]["accommodation"] is True


def test_a_hard_block_applies_only_to_the_parties_it_names() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(recipients=["b", "c"], fields=["person"])),
            _umbrella(hard_block(fields=["person.date_of_birth"], parties=["b"])),
        )
    )
    decision = engine.decide("a", "release-notice", NOW)
    assert decision.recipient("b").blocked == {"person.date_of_birth"}  # type: ignore[union-attr]
    assert decision.recipient("c").blocked == frozenset()  # type: ignore[union-attr]


def test_a_hard_block_limited_to_other_message_types_does_not_apply() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person"])),
            _umbrella(hard_block(fields=["person"], message_types=["licence-recall"])),
        )
    )
    assert engine.decide("a", "release-notice", NOW).recipients[0].blocked == frozenset()
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person", "release"])),
            _umbrella(hard_block(fields=["person"], message_types=["release-notice"])),
        )
    )
    assert engine.decide("a", "release-notice", NOW).recipients[0].blocked == {"person"}


def test_hard_blocks_of_a_draft_agreement_do_not_apply() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person"])),
            _umbrella(hard_block(fields=["person.date_of_birth"]), status="draft"),
        )
    )
    payload = _release(0)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert b.blocks == ()
    assert "person.date_of_birth" in b.disclosed(payload)


@pytest.mark.parametrize("status", ["suspended", "expired", "terminated"])
def test_hard_blocks_of_agreements_not_in_force_still_apply_unless_draft(status: str) -> None:
    # The engine's rule: blocks of every agreement that is not a draft protect the data.
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person"])),
            _umbrella(hard_block(fields=["person.date_of_birth"]), status=status),
        )
    )
    b = engine.decide("a", "release-notice", NOW).recipients[0]
    assert b.blocked == {"person.date_of_birth"}


def test_a_hard_block_wins_over_a_permission_under_every_purpose() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(id="f1", purpose="p1", fields=["person"]),
                flow(id="f2", purpose="p2", fields=["person.date_of_birth", "release"]),
            ),
            _umbrella(hard_block(fields=["person.date_of_birth"])),
        )
    )
    payload = _release(0)
    for purposes in (None, ["p1"], ["p2"], ["p1", "p2"]):
        b = engine.decide("a", "release-notice", NOW, purposes, payload).recipients[0]
        assert "person.date_of_birth" not in b.disclosed(payload)


# --- recipients left with nothing ----------------------------------------------------------


def test_a_recipient_whose_every_field_is_blocked_is_dropped_and_recorded() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(recipients=["b", "c"], fields=["person.date_of_birth", "release.date"])),
            _umbrella(hard_block(fields=["person.date_of_birth", "release"], parties=["b"])),
        )
    )
    decision = engine.decide("a", "release-notice", NOW)
    assert [r.party for r in decision.recipients] == ["c"]
    assert decision.considered == (
        Consideration(
            "ISA-T-001",
            "1.0",
            "f1",
            "b",
            "all_fields_blocked",
            "prohibitions or hard blocks remove every permitted field",
        ),
    )


def test_a_flow_prohibiting_its_own_fields_shares_nothing() -> None:
    engine = IsaEngine(policy_set(agreement(flow(fields=["person"], prohibited=["person"]))))
    err = refusal(engine, "a", "release-notice")
    assert err.reason == "no_recipient"
    assert [r["outcome"] for r in err.extra["rules"]] == ["all_fields_blocked"]


def test_a_partly_blocked_object_still_discloses_the_rest() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person"])),
            _umbrella(hard_block(fields=["person.date_of_birth"])),
        )
    )
    payload = _release(0)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    assert "person.given_name" in b.disclosed(payload)


def test_a_recipient_whose_object_grant_has_every_child_blocked_is_dropped() -> None:
    # Regression: a grant of an object whose every field is blocked once kept the recipient,
    # which then received an empty projection.
    children = [
        "accommodation",
        "opioid_substitution_therapy",
        "mental_health",
        "benefits",
        "identity_documents",
    ]
    engine = IsaEngine(
        policy_set(
            agreement(flow(recipients=["b", "c"], fields=["resettlement_needs"])),
            _umbrella(hard_block(fields=[f"resettlement_needs.{c}" for c in children])),
        )
    )
    payload = _release(1)
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    b = decision.recipient("b")
    assert b is None, f"b kept with an empty share: {b.project(payload) if b else None}"
    assert ("f1", "b", "all_fields_blocked") in _outcomes(decision.considered)


# --- explain() -----------------------------------------------------------------------------


def test_explain_names_the_grants_and_blocks_for_every_field() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person", "release.date"], prohibited=["person.date_of_birth"])),
            _umbrella(hard_block(fields=["release.date"])),
            agreement(flow(id="g1", fields=["person.given_name"]), id="ISA-T-002", version="2"),
        )
    )
    payload = _release(1)
    b = engine.decide("a", "release-notice", NOW, payload=payload).recipients[0]
    explained = b.explain(payload)
    assert sorted(explained) == sorted(_leaves(payload))
    assert explained["person.given_name"] == {
        "disclosed": True,
        "allowed_by": ["ISA-T-001@1.0#f1", "ISA-T-002@2#g1"],
    }
    assert explained["person.family_name"] == {
        "disclosed": True,
        "allowed_by": ["ISA-T-001@1.0#f1"],
    }
    assert explained["person.date_of_birth"] == {
        "disclosed": False,
        "withheld_by": ["ISA-T-001@1.0#f1"],
        "would_be_allowed_by": ["ISA-T-001@1.0#f1"],
    }
    assert explained["release.date"] == {
        "disclosed": False,
        "withheld_by": ["ISA-T-000@1.0#hb1"],
        "would_be_allowed_by": ["ISA-T-001@1.0#f1"],
    }
    assert explained["release.type"] == {"disclosed": False, "withheld_by": ["no flow permits it"]}
    disclosed = {k for k, v in explained.items() if v["disclosed"]}
    assert disclosed == set(b.disclosed(payload))


def _leaves(d: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


# --- review warnings -----------------------------------------------------------------------


def test_an_overdue_review_of_an_agreement_used_is_a_warning() -> None:
    overdue = agreement(flow(), review_date=TODAY - dt.timedelta(days=1))
    decision = IsaEngine(policy_set(overdue)).decide("a", "release-notice", NOW)
    assert decision.warnings == (f"ISA-T-001 v1.0 review was due on {TODAY - dt.timedelta(1)}",)
    assert decision.to_dict()["warnings"] == list(decision.warnings)


@pytest.mark.parametrize("review", [None, TODAY, TODAY + dt.timedelta(days=1)])
def test_no_warning_before_or_on_the_review_date(review: dt.date | None) -> None:
    a = agreement(flow(), review_date=review)
    assert IsaEngine(policy_set(a)).decide("a", "release-notice", NOW).warnings == ()


def test_no_warning_for_an_overdue_agreement_that_was_not_used() -> None:
    past = TODAY - dt.timedelta(days=30)
    engine = IsaEngine(
        policy_set(
            agreement(flow(id="f1"), id="ISA-T-001", review_date=past, status="suspended"),
            agreement(flow(id="g1", purpose="q"), id="ISA-T-002", review_date=past),
            agreement(flow(id="h1", recipients=["c"]), id="ISA-T-003"),
        )
    )
    decision = engine.decide("a", "release-notice", NOW, purposes=["p"])
    assert decision.warnings == ()
    decision = engine.decide("a", "release-notice", NOW)
    assert decision.warnings == (f"ISA-T-002 v1.0 review was due on {past}",)


# --- the payload is never changed ----------------------------------------------------------


def test_decide_and_project_leave_the_payload_alone() -> None:
    engine = IsaEngine(
        policy_set(
            agreement(
                flow(
                    fields=["person", "destination"],
                    prohibited=["destination.address"],
                    condition=DA,
                )
            ),
            _umbrella(hard_block(fields=["person.date_of_birth"])),
        )
    )
    payload = _release(0)
    before = copy.deepcopy(payload)
    decision = engine.decide("a", "release-notice", NOW, payload=payload)
    decision.recipients[0].project(payload)
    decision.recipients[0].explain(payload)
    assert payload == before


def test_a_block_never_reaches_the_sender_side() -> None:
    # A hard block naming the sender does not stop it sending to others.
    engine = IsaEngine(
        policy_set(
            agreement(flow(fields=["person"])),
            _umbrella(hard_block(fields=["person"], parties=["a"])),
        )
    )
    assert [r.party for r in engine.decide("a", "release-notice", NOW).recipients] == ["b"]


def test_refusal_reasons_keep_their_order_with_conditions() -> None:
    # Purpose and in-force checks come before conditions are evaluated.
    a = agreement(flow(purpose="p1", condition=DA), status="suspended")
    engine = IsaEngine(policy_set(a))
    assert refusal(engine, "a", "release-notice", purposes=["p2"]).reason == "purpose_not_covered"
    assert refusal(engine, "a", "release-notice").reason == "agreement_not_in_force"
    engine = IsaEngine(policy_set(dataclasses.replace(a, status="active")))
    with pytest.raises(SharingRefused, match="no recipient"):
        engine.decide("a", "release-notice", NOW, payload=_release(1))
