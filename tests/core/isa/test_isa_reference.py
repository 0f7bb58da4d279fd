"""The engine decides as the rules read plainly.

``reference_decide`` below applies the rules of ``services/core/isa/engine.py`` the slow,
obvious way: every agreement scanned, every condition handed to CEL with the whole message
(and the recipient as a variable), nothing kept between decisions. The engine, with its
index, plans, per-recipient share tables, conditions answered in Python and memoised
outcomes, must give the same decision (or the same refusal, word for word) and the same
projections, over many policy sets and many varied messages, including messages with
missing parts and values of the wrong type (where the Python form of a condition gives way
to CEL)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import SharingRefused
from services.core.isa import Agreement, Decision, Flow, Grant, IsaEngine, Party, PolicySet
from services.core.isa.engine import Block, Consideration, RecipientDecision
from services.core.isa.model import HardBlock
from services.core.messages import MESSAGE_TYPES
from tests.core.isa.isa_builders import UK_GDPR, canonical

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
MT = "release-notice"
PATHS = sorted(MESSAGE_TYPES[MT].paths)

REGISTER = {
    p.id: p
    for p in (
        Party("prison", "Prison", "prison", "Eastborough"),
        Party("pdu", "Probation", "probation", "Eastborough", competent_authority=True),
        Party("police", "Police", "police", "Westshire", competent_authority=True),
        Party("housing", "Housing", "council-housing", "Westshire"),
        Party("vawg", "VAWG service", "vawg-service", "Eastborough"),
        Party("clinic", "Clinic", "treatment-provider"),  # no area: "" to a condition
        Party("outsider", "In no agreement", "other", "Eastborough"),
    )
}
MEMBERS = sorted(set(REGISTER) - {"outsider"})

CONDITIONS = (
    # in the subset the engine answers in Python
    "message.risk.domestic_abuse == true",
    "message.victim_contact_scheme == true",
    "has(message.risk.mappa) || "
    '(has(message.risk.rosh_level) && message.risk.rosh_level in ["high", "very_high"])',
    "has(message.resettlement_needs) && message.resettlement_needs.mental_health",
    "message.destination.local_authority == recipient.area && "
    "(message.destination.no_fixed_abode || "
    "(has(message.resettlement_needs) && message.resettlement_needs.accommodation))",
    'recipient.kind == "police" || has(message.risk.mappa)',
    'sender.kind == "prison" && recipient.id != "vawg"',
    "message.licence_conditions.non_contact == true",  # an error without licence conditions
    "message.resettlement_needs.accommodation",  # an error without resettlement needs
    '!message.destination.no_fixed_abode && message.risk.rosh_level >= "medium"',
    'message.destination.local_authority in ["Eastborough", "Westshire"]',
    "message.resettlement_needs.opioid_substitution_therapy.daily_dose_mg > 30",
    # outside it: CEL alone
    "size(message.person.given_name) > 3",
    "message.risk.rosh_level == null || message.release.type == 'ecsl'",
)
PROGRAMS = {c: cel.compile(c) for c in CONDITIONS}


# --- the rules, read plainly ---------------------------------------------------------------


def reference_decide(
    policies: PolicySet,
    sender: str,
    message_type: str,
    now: dt.datetime,
    purposes: Iterable[str] | None,
    payload: Mapping[str, Any],
) -> Decision:
    today = now.date()
    wanted = frozenset(purposes) if purposes else None
    candidates = [
        (a, f)
        for a in policies.agreements
        for f in a.flows
        if sender in f.senders and message_type in f.message_types
    ]
    if not candidates:
        covering = [
            a for a in policies.agreements if any(message_type in f.message_types for f in a.flows)
        ]
        if not covering:
            raise SharingRefused(
                f"no information sharing agreement covers {message_type}", reason="no_agreement"
            )
        if not any(sender in a.parties for a in covering):
            raise SharingRefused(
                f"party {sender!r} is not a party to any agreement covering {message_type}",
                reason="sender_not_party",
            )
        raise SharingRefused(
            f"no flow in any agreement permits {sender!r} to send {message_type}",
            reason="no_agreement",
        )
    considered: list[Consideration] = []
    applicable: list[tuple[Agreement, Flow]] = []
    on_purpose = 0
    for a, f in candidates:
        if wanted is not None and f.purpose not in wanted:
            continue
        on_purpose += 1
        reason = a.not_in_force_reason(today)
        if reason:
            considered.append(Consideration(a.id, a.version, f.id, None, "not_in_force", reason))
        else:
            applicable.append((a, f))
    if not applicable:
        rules = [c.to_dict() for c in considered]
        if on_purpose == 0 and wanted is not None:
            agreed = ", ".join(sorted({f.purpose for _, f in candidates}))
            raise SharingRefused(
                f"purpose(s) {', '.join(sorted(wanted))} not covered for {sender!r} sending "
                f"{message_type}; agreed purposes: {agreed}",
                reason="purpose_not_covered",
                rules=rules,
            )
        reasons = sorted({c.detail for c in considered if c.outcome == "not_in_force"})
        raise SharingRefused(
            "no agreement in force permits this share: " + "; ".join(reasons),
            reason="agreement_not_in_force",
            rules=rules,
        )
    shares: dict[str, tuple[list[Grant], list[Block]]] = {}
    for a, f in applicable:
        for party in sorted(f.recipients - {sender}):
            if f.condition is not None:
                failed = _evaluate(policies, f.condition, sender, party, payload)
                if failed is not None:
                    outcome, detail = (
                        ("condition_false", f"condition is false: {f.condition}")
                        if failed == ""
                        else ("condition_error", f"{f.condition}: {failed}")
                    )
                    considered.append(Consideration(a.id, a.version, f.id, party, outcome, detail))
                    continue
            grants, blocks = shares.setdefault(party, ([], []))
            grants.append(Grant(a.id, a.version, f.id, f.purpose, tuple(sorted(f.fields))))
            if f.prohibited:
                blocks.append(
                    Block(
                        a.id,
                        a.version,
                        f.id,
                        "prohibited",
                        tuple(sorted(f.prohibited)),
                        "prohibited by the flow",
                    )
                )
    for party, (_, blocks) in shares.items():
        for a in policies.agreements:
            if a.status == "draft":
                continue
            for b in a.hard_blocks:
                if b.applies(party, message_type):
                    blocks.append(
                        Block(
                            a.id, a.version, b.id, "hard_block", tuple(sorted(b.fields)), b.reason
                        )
                    )
    kept: list[RecipientDecision] = []
    for party, (grants, blocks) in sorted(shares.items()):
        allowed = {f for g in grants for f in g.fields}
        blocked = {f for b in blocks for f in b.fields}
        if not blocks or _keeps_a_field(allowed, blocked, message_type):
            kept.append(RecipientDecision(party, tuple(grants), tuple(blocks)))
        else:
            first = grants[0]
            considered.append(
                Consideration(
                    first.agreement_id,
                    first.agreement_version,
                    first.flow_id,
                    party,
                    "all_fields_blocked",
                    "prohibitions or hard blocks remove every permitted field",
                )
            )
    if not kept:
        raise SharingRefused(
            f"no recipient is entitled to this {message_type} from {sender!r} "
            "(conditions or blocks exclude every recipient)",
            reason="no_recipient",
            rules=[c.to_dict() for c in considered],
        )
    warnings = {
        f"{a.id} v{a.version} review was due on {a.review_date}"
        for a, _ in applicable
        if a.review_overdue(today)
    }
    return Decision(
        sender,
        message_type,
        now,
        tuple(kept),
        tuple(considered),
        tuple(sorted(warnings)),
        tuple(sorted(wanted)) if wanted else (),
    )


def _evaluate(
    policies: PolicySet, condition: str, sender: str, party: str, payload: Mapping[str, Any]
) -> str | None:
    program = PROGRAMS[condition]
    context = cel.Context({"message": dict(payload), "sender": policies.parties[sender].as_cel()})
    if "recipient" in program.variables():
        context.add_variable("recipient", policies.parties[party].as_cel())
    try:
        return None if program.execute(context) is True else ""
    except Exception as e:  # noqa: BLE001 - an error is false, and its text is reported
        return f"{type(e).__name__} {e}"


def _keeps_a_field(allowed: set[str], blocked: set[str], message_type: str) -> bool:
    leaves = MESSAGE_TYPES[message_type].leaves
    for path in allowed:
        below = [leaf for leaf in leaves if leaf == path or leaf.startswith(path + ".")]
        for leaf in below or [path]:
            if not any(leaf == b or leaf.startswith(b + ".") for b in blocked):
                return True
    return False


def outcome(
    decide: Any, sender: str, purposes: Iterable[str] | None, payload: Mapping[str, Any]
) -> tuple[Any, ...]:
    """What a caller can observe: the decision, what each recipient is shown and the field
    sets behind it; or the refusal, word for word."""
    try:
        d = decide(sender, MT, NOW, purposes, payload)
    except SharingRefused as e:
        return ("refused", e.reason, e.detail, e.extra)
    return (
        "decided",
        d.to_dict(),
        [(r.party, r.project(payload), r.allowed, r.blocked) for r in d.recipients],
    )


# --- messages -------------------------------------------------------------------------------


def varied_notice(rng: random.Random) -> dict[str, Any]:
    """A valid release notice in canonical form, every field a condition reads drawn."""
    needs: dict[str, Any] = {
        "accommodation": rng.random() < 0.5,
        "mental_health": rng.random() < 0.5,
    }
    if rng.random() < 0.3:
        needs["opioid_substitution_therapy"] = {
            "medication": "methadone",
            "daily_dose_mg": rng.choice((10, 30, 45, 32.5)),
        }
    body: dict[str, Any] = {
        "person": {
            "crn": f"X{rng.randint(0, 999_999):06d}",
            "given_name": rng.choice(("Al", "Sam", "Jordan")),
            "family_name": "Testperson",
            "date_of_birth": "1990-01-01",
        },
        "release": {
            "date": "2026-06-03",
            "type": rng.choice(("ecsl", "parole", "conditional_release")),
            "establishment": "HMP Northgate (fictional)",
        },
        "destination": {
            "no_fixed_abode": rng.random() < 0.4,
            "local_authority": rng.choice(("Eastborough", "Westshire", "Northmoor")),
        },
        "risk": {"domestic_abuse": rng.random() < 0.4},
        "victim_contact_scheme": rng.random() < 0.4,
    }
    if rng.random() < 0.4:
        body["risk"]["mappa"] = {"category": rng.choice("123"), "level": rng.choice("12")}
    if rng.random() < 0.7:
        body["risk"]["rosh_level"] = rng.choice(("low", "medium", "high", "very_high"))
    if rng.random() < 0.5:
        body["licence_conditions"] = {"non_contact": rng.random() < 0.5}
    if rng.random() < 0.6:
        body["resettlement_needs"] = needs
    if rng.random() < 0.3:
        body["destination"]["address"] = {
            "line1": "1 Example Street",
            "town": "Exampletown",
            "postcode": "ZZ1 1ZZ",
        }
    return canonical(MT, body)


def odd_notice(rng: random.Random) -> dict[str, Any]:
    """A varied notice with a part missing or of the wrong type, as a message that was never
    validated could be: the conditions' Python form must give way to CEL."""
    body = varied_notice(rng)
    change = rng.randrange(10)
    if change == 0:
        body["risk"]["domestic_abuse"] = rng.choice(("yes", 1, None))
    elif change == 1:
        body["risk"] = rng.choice((None, "high", [], {}))
    elif change == 2:
        body["destination"]["local_authority"] = rng.choice((3, None, "Éastborough"))
    elif change == 3:
        body["resettlement_needs"] = rng.choice(([], None, {"accommodation": "no"}))
    elif change == 4:
        del body["destination"]
    elif change == 5:
        body["victim_contact_scheme"] = rng.choice((1, 0.0, "true"))
    elif change == 6:
        body["risk"]["rosh_level"] = rng.choice((2, True, "zz"))
    elif change == 7:
        body["licence_conditions"] = {"non_contact": 1}
    elif change == 8:
        del body[rng.choice(("victim_contact_scheme", "risk"))]
    else:
        del body["risk"]["domestic_abuse"]
    return body


# --- policy sets ----------------------------------------------------------------------------


def random_policies(rng: random.Random, n_agreements: int, flows: int) -> PolicySet:
    agreements = []
    for a in range(n_agreements):
        members = rng.sample(MEMBERS, rng.randint(2, len(MEMBERS)))
        built = []
        for f in range(flows):
            senders = rng.sample(members, rng.choice((1, 1, 2)))
            recipients = rng.sample(members, rng.randint(1, len(members)))
            condition = rng.choice(CONDITIONS) if rng.random() < 0.6 else None
            built.append(
                Flow(
                    id=f"f{f}",
                    senders=frozenset(senders),
                    recipients=frozenset(recipients),
                    message_types=frozenset(
                        rng.choice(([MT], [MT], [MT, "licence-recall"], ["licence-recall"]))
                    ),
                    purpose=rng.choice(("p1", "p2", "p3")),
                    fields=frozenset(rng.sample(PATHS, rng.randint(1, 6))),
                    prohibited=frozenset(rng.sample(PATHS, 1) if rng.random() < 0.3 else ()),
                    condition=condition,
                    legal_regime=dict(UK_GDPR),
                    program=PROGRAMS[condition] if condition else None,
                )
            )
        blocks = tuple(
            HardBlock(
                id=f"hb{k}",
                fields=frozenset(rng.sample(PATHS, rng.randint(1, 2))),
                parties=frozenset(rng.sample([*MEMBERS, "outsider"], 2)),
                reason="generated",
                message_types=frozenset(rng.choice(((), (MT,), ("licence-recall",)))),
            )
            for k in range(rng.choice((0, 0, 1, 2)))
        )
        start = TODAY + dt.timedelta(days=rng.randint(-30, 3))
        agreements.append(
            Agreement(
                id=f"ISA-R-{a:03d}",
                title="generated",
                version=str(rng.randint(1, 3)),
                status=rng.choice(("active",) * 8 + ("suspended", "draft", "expired")),
                parties=frozenset(members),
                purposes={"p1": "x", "p2": "y", "p3": "z"},
                legal_gateways=("Crime and Disorder Act 1998 s115",),
                effective_from=start,
                expires_on=start + dt.timedelta(days=rng.randint(0, 60)),
                flows=tuple(built),
                review_date=rng.choice((None, TODAY - dt.timedelta(days=1), TODAY)),
                hard_blocks=blocks,
            )
        )
    return PolicySet(parties=dict(REGISTER), agreements=tuple(agreements))


def compare_over(policies: PolicySet, rng: random.Random, decisions: int) -> int:
    """Decide ``decisions`` times with one long-lived engine (its caches warm across
    messages, senders and purposes) and with the reference; return how many decided."""
    engine = IsaEngine(policies)
    senders = [*MEMBERS, "outsider"]
    decided = 0
    for _ in range(decisions):
        sender = rng.choice(senders)
        purposes = rng.choice((None, None, ("p1",), ("p2", "p3"), ("p9",)))
        payload = odd_notice(rng) if rng.random() < 0.25 else varied_notice(rng)
        ours = outcome(engine.decide, sender, purposes, payload)
        theirs = outcome(lambda *a: reference_decide(policies, *a), sender, purposes, payload)
        assert ours == theirs, (sender, purposes, payload)
        decided += ours[0] == "decided"
    return decided


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_the_engine_decides_as_the_reference_over_varied_messages(seed: int) -> None:
    """Many agreements among six parties, so that one decision reaches every recipient
    through several conditional flows; 400 messages each, one in four malformed."""
    rng = random.Random(seed)
    policies = random_policies(rng, n_agreements=12, flows=6)
    assert compare_over(policies, rng, 400) > 50


def test_a_recipient_behind_many_conditions_decides_as_the_reference() -> None:
    """One recipient behind more distinct conditions than a plan compiles a table for:
    its share is then worked out for each message."""
    flows = tuple(
        Flow(
            id=f"f{i}",
            senders=frozenset({"prison"}),
            recipients=frozenset({"police", "vawg"}),
            message_types=frozenset({MT}),
            purpose="p1",
            fields=frozenset({PATHS[i * 3 % len(PATHS)]}),
            prohibited=frozenset({PATHS[(i * 7 + 1) % len(PATHS)]} if i % 3 == 0 else ()),
            condition=condition,
            legal_regime=dict(UK_GDPR),
            program=PROGRAMS[condition],
        )
        for i, condition in enumerate(CONDITIONS)
    )
    agreement = Agreement(
        id="ISA-MANY",
        title="many conditions",
        version="1",
        status="active",
        parties=frozenset({"prison", "police", "vawg"}),
        purposes={"p1": "x"},
        legal_gateways=("Crime and Disorder Act 1998 s115",),
        effective_from=TODAY - dt.timedelta(days=1),
        expires_on=TODAY + dt.timedelta(days=1),
        flows=flows,
    )
    policies = PolicySet(parties=dict(REGISTER), agreements=(agreement,))
    engine = IsaEngine(policies)
    rng = random.Random(7)
    for _ in range(300):
        payload = odd_notice(rng) if rng.random() < 0.25 else varied_notice(rng)
        assert outcome(engine.decide, "prison", None, payload) == outcome(
            lambda *a: reference_decide(policies, *a), "prison", None, payload
        )


SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=SEEDS, agreements=st.integers(1, 4), flows=st.integers(1, 4))
def test_small_policy_sets_decide_as_the_reference(seed: int, agreements: int, flows: int) -> None:
    rng = random.Random(seed)
    compare_over(random_policies(rng, agreements, flows), rng, 40)
