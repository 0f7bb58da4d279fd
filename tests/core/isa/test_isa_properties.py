"""Property-based tests of the ISA engine over generated agreements and release notices.

Policy sets are built directly (Agreement, Flow, HardBlock), with parties drawn from five
agencies of different kinds and areas, random statuses and dates around the decision date,
random field subsets of the release notice, prohibitions, hard blocks and conditions drawn
from a few fixed CEL expressions. Each property is checked against an oracle written here
without the engine: the CEL conditions have Python twins.

(a) projections stay within the applicable flows naming the recipient; (b) prohibited and
hard-blocked fields never appear; (c) nothing is shared under an agreement not in force;
(d) a party in no agreement receives nothing; (e) recheck never widens a stored decision;
and a long-lived engine, with its caches, decides as a fresh one."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import SharingRefused
from services.core.isa import Agreement, Decision, Flow, IsaEngine, Party, PolicySet
from services.core.isa.engine import RecipientDecision
from services.core.isa.model import HardBlock
from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import leaf_paths, project
from tests.core.isa.isa_builders import UK_GDPR, canonical
from tests.factories import release_notice

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The five agencies that agreements are made between, and one that is in none of them.
REGISTER = {
    p.id: p
    for p in (
        Party("prison", "Prison", "prison"),
        Party("pdu", "Probation", "probation", "Eastborough", competent_authority=True),
        Party("police", "Police", "police", "Eastborough", competent_authority=True),
        Party("housing", "Housing", "council-housing", "Westshire"),
        Party("vawg", "VAWG service", "vawg-service", "Eastborough"),
        Party("outsider", "Not in any agreement", "other", "Eastborough"),
    )
}
MEMBERS = ["prison", "pdu", "police", "housing", "vawg"]
OUTSIDER = "outsider"
PURPOSES = ["p1", "p2", "p3"]
PATHS = sorted(MESSAGE_TYPES["release-notice"].paths)
STATUSES = ["active"] * 10 + ["suspended", "draft", "expired", "terminated"]


def _get(m: Mapping[str, Any], *path: str) -> Any:
    """The value at ``path``; KeyError when absent, as CEL's field selection does."""
    node: Any = m
    for key in path:
        node = node[key]
    return node


Oracle = Callable[[Mapping[str, Any], Party, Party], bool]

# CEL condition -> the same test in Python (sender, recipient). An evaluation error is false.
CONDITIONS: dict[str, Oracle] = {
    "message.risk.domestic_abuse == true": lambda m, s, r: (
        _get(m, "risk", "domestic_abuse") is True
    ),
    "message.victim_contact_scheme == true": lambda m, s, r: (
        _get(m, "victim_contact_scheme") is True
    ),
    "has(message.resettlement_needs) && message.resettlement_needs.accommodation": lambda m, s, r: (
        "resettlement_needs" in m and _get(m, "resettlement_needs", "accommodation") is True
    ),
    "message.destination.local_authority == recipient.area": lambda m, s, r: (
        _get(m, "destination", "local_authority") == (r.area or "")
    ),
    'recipient.kind == "police" || has(message.risk.mappa)': lambda m, s, r: (
        r.kind == "police" or "mappa" in _get(m, "risk")
    ),
    # errors whenever the notice has no licence conditions
    "message.licence_conditions.non_contact == true": lambda m, s, r: (
        _get(m, "licence_conditions", "non_contact") is True
    ),
    'sender.kind == "prison" && recipient.id != "vawg"': lambda m, s, r: (
        s.kind == "prison" and r.id != "vawg"
    ),
}
PROGRAMS = {source: cel.compile(source) for source in CONDITIONS}


def _condition_holds(source: str | None, payload: Mapping[str, Any], s: str, r: str) -> bool:
    if source is None:
        return True
    try:
        return CONDITIONS[source](payload, REGISTER[s], REGISTER[r])
    except KeyError:
        return False


# --- strategies -------------------------------------------------------------------------------
# Built once: constructing strategies inside a composite costs more than drawing from them.

CONDITION = st.sampled_from([None] * 6 + sorted(CONDITIONS))
FIELD_SET = st.frozensets(st.sampled_from(PATHS), min_size=1, max_size=6)
BLOCKED_SET = st.frozensets(st.sampled_from(PATHS), min_size=1, max_size=2)
PROHIBITED_SET = st.just(frozenset()) | BLOCKED_SET
PURPOSE = st.sampled_from(PURPOSES)
FLOW_TYPES = st.sampled_from(
    [
        frozenset({"release-notice"}),
        frozenset({"release-notice"}),
        frozenset({"release-notice"}),
        frozenset({"release-notice", "licence-recall"}),
        frozenset({"licence-recall"}),
    ]
)
BLOCK_TYPES = st.sampled_from(
    [frozenset(), frozenset({"release-notice"}), frozenset({"licence-recall"})]
)
BLOCKED_PARTIES = st.frozensets(st.sampled_from([*MEMBERS, OUTSIDER]), min_size=1, max_size=2)
MEMBER_SET = st.frozensets(st.sampled_from(MEMBERS), min_size=2, max_size=5)
INDEX = st.integers(min_value=0, max_value=4)
INDEXES = st.frozensets(INDEX, min_size=1, max_size=3)
MOSTLY = st.sampled_from([True, True, True, False])
N_FLOWS = st.sampled_from([1, 2, 3, 0])
N_BLOCKS = st.integers(min_value=0, max_value=2)
STATUS = st.sampled_from(STATUSES)
VERSION = st.integers(min_value=1, max_value=3)


def _days(low: int, high: int) -> st.SearchStrategy[dt.date]:
    return st.integers(min_value=low, max_value=high).map(lambda n: TODAY + dt.timedelta(days=n))


# mostly in force on the decision day (decisions are made within two days of TODAY)
STARTS, ENDS, REVIEWS = _days(-6, 2), _days(-2, 6), st.none() | _days(-4, 4)


def _pick(
    draw: st.DrawFn, members: list[str], indexes: st.SearchStrategy[frozenset[int]]
) -> frozenset[str]:
    return frozenset(members[i % len(members)] for i in draw(indexes))


def _draw_flow(draw: st.DrawFn, index: int, members: list[str]) -> Flow:
    condition = draw(CONDITION)
    senders = _pick(draw, members, st.frozensets(INDEX, min_size=1, max_size=2))
    recipients = _pick(draw, members, INDEXES)
    others = [m for m in members if m not in senders]
    if others and draw(MOSTLY):  # mostly someone besides the senders
        recipients |= {others[draw(INDEX) % len(others)]}
    return Flow(
        id=f"f{index}",
        senders=senders,
        recipients=recipients,
        message_types=draw(FLOW_TYPES),
        purpose=draw(PURPOSE),
        fields=draw(FIELD_SET),
        prohibited=draw(PROHIBITED_SET),
        condition=condition,
        legal_regime=dict(UK_GDPR),
        program=PROGRAMS[condition] if condition else None,
    )


def _draw_block(draw: st.DrawFn, index: int) -> HardBlock:
    return HardBlock(
        id=f"hb{index}",
        fields=draw(BLOCKED_SET),
        parties=draw(BLOCKED_PARTIES),
        reason="generated",
        message_types=draw(BLOCK_TYPES),
    )


def _draw_agreement(draw: st.DrawFn, index: int) -> Agreement:
    members = sorted(draw(MEMBER_SET))
    built = [_draw_flow(draw, j, members) for j in range(draw(N_FLOWS))]
    blocks = [_draw_block(draw, k) for k in range(draw(N_BLOCKS))]
    start, end = draw(STARTS), draw(ENDS)
    return Agreement(
        id=f"ISA-P-{index:03d}",
        title="generated",
        version=str(draw(VERSION)),
        status=draw(STATUS),
        parties=frozenset(members),
        purposes={f.purpose: "generated" for f in built},
        legal_gateways=("Crime and Disorder Act 1998 s115",),
        effective_from=min(start, end),
        expires_on=max(start, end),
        flows=tuple(built),
        review_date=draw(REVIEWS),
        hard_blocks=tuple(blocks),
    )


N_AGREEMENTS = st.integers(min_value=1, max_value=3)
BOOL = st.booleans()
IDENTIFIERS = st.frozensets(st.sampled_from(["prison_number", "pnc_id", "crn"]), min_size=1)
AUTHORITY = st.sampled_from(["Eastborough", "Westshire"])
SENDER = st.sampled_from([*MEMBERS, OUTSIDER])
ASKED = (
    st.none()
    | st.none()
    | st.frozensets(st.sampled_from([*PURPOSES, "p9"]), min_size=1, max_size=2)
)
SHIFT = st.integers(min_value=-2, max_value=2)
LATER_DAYS = st.integers(min_value=0, max_value=3)
CHANGE = st.sampled_from(
    [
        "same",
        "same",
        "status",
        "version",
        "drop-flow",
        "fields",
        "prohibit",
        "block",
        "unblock",
        "cut-short",
    ]
)
LATER = st.sampled_from(["same", "changed", "changed", "other"])


@st.composite
def policy_sets(draw: st.DrawFn) -> PolicySet:
    n = draw(N_AGREEMENTS)
    return PolicySet(
        parties=dict(REGISTER), agreements=tuple(_draw_agreement(draw, i) for i in range(n))
    )


@st.composite
def release_notices(draw: st.DrawFn) -> dict[str, Any]:
    """A valid release notice in canonical form, with optional parts randomly dropped."""
    body = release_notice()
    body["release"]["date"] = "2026-06-03"
    person = body["person"]
    kept = draw(IDENTIFIERS)
    for ident in ("prison_number", "pnc_id", "crn"):
        if ident not in kept:
            del person[ident]
    if draw(BOOL):
        del person["gender"]
    if draw(BOOL):
        del body["release"]["conditional_release_date"]
    destination = body["destination"]
    destination["local_authority"] = draw(AUTHORITY)
    destination["no_fixed_abode"] = draw(BOOL)
    for optional in ("address", "probation_delivery_unit"):
        if draw(BOOL):
            del destination[optional]
    if draw(BOOL):
        del body["risk"]
    else:
        body["risk"]["domestic_abuse"] = draw(BOOL)
        if draw(BOOL):
            body["risk"]["mappa"] = {"category": "2", "level": "1"}
        if draw(BOOL):
            del body["risk"]["rosh_level"]
    if draw(BOOL):
        del body["licence_conditions"]
    elif draw(BOOL):
        body["licence_conditions"]["exclusion_zones"] = []
    needs = body["resettlement_needs"]
    if draw(BOOL):
        del body["resettlement_needs"]
    else:
        needs["accommodation"] = draw(BOOL)
        if draw(BOOL):
            del needs["opioid_substitution_therapy"]
    body["victim_contact_scheme"] = draw(BOOL)
    return canonical("release-notice", body)


@dataclass(frozen=True)
class Case:
    policies: PolicySet
    sender: str
    purposes: frozenset[str] | None
    payload: dict[str, Any]
    now: dt.datetime


@st.composite
def cases(draw: st.DrawFn) -> Case:
    policies = draw(policy_sets())
    senders = sorted({s for a in policies.agreements for f in a.flows for s in f.senders})
    return Case(
        policies=policies,
        # mostly a party that some flow lets send, so that most cases reach a decision
        sender=senders[draw(INDEX) % len(senders)] if senders and draw(MOSTLY) else draw(SENDER),
        purposes=draw(ASKED),
        payload=draw(release_notices()),
        now=NOW + dt.timedelta(days=draw(SHIFT)),
    )


@st.composite
def changed(draw: st.DrawFn, policies: PolicySet) -> PolicySet:
    """The policy set after the kind of change made between acceptance and delivery:
    agreements suspended or re-versioned, flows dropped, narrowed or widened, new
    prohibitions and hard blocks, hard blocks lifted, an agreement cut short."""
    out: list[Agreement] = []
    for a in policies.agreements:
        change = draw(CHANGE)
        if change == "status":
            a = dataclasses.replace(a, status=draw(STATUS))
        elif change == "version":
            a = dataclasses.replace(a, version=f"{a.version}.1")
        elif change == "block":
            block = _draw_block(draw, len(a.hard_blocks))
            a = dataclasses.replace(a, hard_blocks=(*a.hard_blocks, block))
        elif change == "unblock":
            a = dataclasses.replace(a, hard_blocks=())
        elif change == "cut-short":
            a = dataclasses.replace(a, expires_on=max(a.effective_from, TODAY - dt.timedelta(1)))
        elif a.flows:
            i = draw(INDEX) % len(a.flows)
            flows_ = list(a.flows)
            if change == "drop-flow":
                del flows_[i]
            elif change == "fields":  # may widen as well as narrow
                flows_[i] = dataclasses.replace(flows_[i], fields=draw(FIELD_SET))
            else:
                extra = draw(BLOCKED_SET)
                flows_[i] = dataclasses.replace(flows_[i], prohibited=flows_[i].prohibited | extra)
            a = dataclasses.replace(a, flows=tuple(flows_))
        out.append(a)
    return dataclasses.replace(policies, agreements=tuple(out))


@st.composite
def rechecks(draw: st.DrawFn) -> tuple[Case, PolicySet, dt.datetime]:
    case = draw(cases())
    later = draw(LATER)
    if later == "same":
        policies = case.policies
    elif later == "changed":
        policies = draw(changed(case.policies))
    else:
        policies = draw(policy_sets())
    when = case.now + dt.timedelta(days=draw(LATER_DAYS))
    return case, policies, when


# --- the oracle -------------------------------------------------------------------------------


def _in_force(a: Agreement, day: dt.date) -> bool:
    return a.status == "active" and a.effective_from <= day <= a.expires_on


def _applicable(case: Case, recipient: str, mt: str = "release-notice") -> list[Flow]:
    """Flows that may grant ``recipient`` something: in force on the day, asked for, naming
    the sender, the message type and the recipient, with a condition that holds."""
    return [
        f
        for a in case.policies.agreements
        if _in_force(a, case.now.date())
        for f in a.flows
        if mt in f.message_types
        and case.sender in f.senders
        and recipient in f.recipients
        and recipient != case.sender
        and (case.purposes is None or f.purpose in case.purposes)
        and _condition_holds(f.condition, case.payload, case.sender, recipient)
    ]


def _forbidden(case: Case, recipient: str, mt: str = "release-notice") -> set[str]:
    """Paths that must never reach ``recipient``: prohibitions of its applicable flows and
    the hard blocks of every agreement that is not a draft."""
    out = {p for f in _applicable(case, recipient, mt) for p in f.prohibited}
    for a in case.policies.agreements:
        if a.status == "draft":
            continue
        for b in a.hard_blocks:
            if recipient in b.parties and (not b.message_types or mt in b.message_types):
                out |= b.fields
    return out


def _under(path: str, prefixes: set[str] | frozenset[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _decide(case: Case) -> Decision | None:
    try:
        return IsaEngine(case.policies).decide(
            case.sender, "release-notice", case.now, case.purposes, case.payload
        )
    except SharingRefused as e:
        assert e.reason in {
            "no_agreement",
            "sender_not_party",
            "purpose_not_covered",
            "agreement_not_in_force",
            "no_recipient",
        }
        return None


# --- properties -------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(case=cases())
def test_a_projection_never_exceeds_the_applicable_flows_naming_the_recipient(
    case: Case,
) -> None:
    """(a) No projection holds a field outside the union of the fields of the applicable
    flows naming that recipient; the grants are exactly those flows."""
    decision = _decide(case)
    if decision is None:
        return
    for rd in decision.recipients:
        applicable = _applicable(case, rd.party)
        union = frozenset().union(*(f.fields for f in applicable))
        assert rd.allowed == union, rd.party
        assert set(rd.disclosed(case.payload)) <= set(leaf_paths(project(case.payload, union)))
        assert sorted(g.flow_id for g in rd.grants) == sorted(f.id for f in applicable)


@PROPERTY_SETTINGS
@given(case=cases())
def test_no_prohibited_or_hard_blocked_field_is_ever_disclosed(case: Case) -> None:
    """(b) No prohibited or hard-blocked field appears in any recipient's projection, and
    explain() agrees with the projection."""
    decision = _decide(case)
    if decision is None:
        return
    for rd in decision.recipients:
        forbidden = _forbidden(case, rd.party)
        assert forbidden <= rd.blocked, rd.party
        leaked = [p for p in rd.disclosed(case.payload) if _under(p, forbidden)]
        assert leaked == [], (rd.party, leaked)
        explained = rd.explain(case.payload)
        assert {p for p, e in explained.items() if e["disclosed"]} == set(
            rd.disclosed(case.payload)
        )


@PROPERTY_SETTINGS
@given(case=cases())
def test_nothing_is_shared_under_an_agreement_not_in_force(case: Case) -> None:
    """(c) Every grant's agreement is in force on the decision date."""
    decision = _decide(case)
    if decision is None:
        return
    day = case.now.date()
    for rd in decision.recipients:
        for g in rd.grants:
            a = case.policies.agreement(g.agreement_id)
            assert a is not None and a.version == g.agreement_version
            assert _in_force(a, day), (a.id, a.status, a.effective_from, a.expires_on)
    for c in decision.considered:
        if c.outcome == "not_in_force":
            a = case.policies.agreement(c.agreement_id)
            assert a is not None and not _in_force(a, day)
    for w in decision.warnings:
        a = case.policies.agreement(w.split(" ", 1)[0])
        assert a is not None and a.review_date is not None and a.review_date < day


@PROPERTY_SETTINGS
@given(case=cases())
def test_a_party_in_no_agreement_receives_nothing(case: Case) -> None:
    """(d) A party that is in no agreement receives nothing, and cannot send either."""
    members = {p for a in case.policies.agreements for p in a.parties}
    assert OUTSIDER not in members
    decision = _decide(case)
    if decision is None:
        return
    assert case.sender in members
    for rd in decision.recipients:
        assert rd.party in members
        assert rd.party != case.sender


@PROPERTY_SETTINGS
@given(recheck=rechecks())
def test_recheck_never_widens_a_stored_decision(
    recheck: tuple[Case, PolicySet, dt.datetime],
) -> None:
    """(e) Re-checking a stored decision later, against the same, a changed or another
    policy set, never discloses a field the stored decision did not, never adds a
    recipient, and applies what the current policies forbid."""
    case, policies, when = recheck
    decision = _decide(case)
    if decision is None:
        return
    stored = copy.deepcopy(decision.to_dict())
    current = IsaEngine(policies).recheck(decision, when, case.payload)
    assert decision.to_dict() == stored  # the stored decision is not altered
    assert set(current) == {rd.party for rd in decision.recipients}
    now_case = Case(policies, case.sender, case.purposes, case.payload, when)
    for rd in decision.recipients:
        now_rd = current[rd.party]
        if isinstance(now_rd, str):
            assert now_rd
            continue
        assert isinstance(now_rd, RecipientDecision)
        assert now_rd.party == rd.party
        before = set(rd.disclosed(case.payload))
        after = set(now_rd.disclosed(case.payload))
        assert after <= before, sorted(after - before)
        assert rd.blocked <= now_rd.blocked
        assert all(_under(p, rd.allowed) for p in now_rd.allowed)
        assert not any(_under(p, _forbidden(now_case, rd.party)) for p in after)
        for g in now_rd.grants:
            a = policies.agreement(g.agreement_id)
            assert a is not None and _in_force(a, when.date())


def _outcome(engine: IsaEngine, case: Case) -> Decision | tuple[str, str]:
    try:
        return engine.decide(case.sender, "release-notice", case.now, case.purposes, case.payload)
    except SharingRefused as e:
        return (e.reason, e.detail)


@st.composite
def query_runs(draw: st.DrawFn) -> list[Case]:
    """Several messages decided by one engine: the same policies, varied senders, purposes,
    days and payloads (some repeated)."""
    first = draw(cases())
    senders = sorted({s for a in first.policies.agreements for f in a.flows for s in f.senders})
    runs = [first]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if draw(MOSTLY):  # mostly the same sender and purposes with another message
            sender, purposes = first.sender, first.purposes
        else:
            sender = senders[draw(INDEX) % len(senders)] if senders else draw(SENDER)
            purposes = draw(ASKED)
        payload = draw(release_notices()) if draw(MOSTLY) else first.payload
        runs.append(
            Case(first.policies, sender, purposes, payload, NOW + dt.timedelta(days=draw(SHIFT)))
        )
    return runs


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(runs=query_runs())
def test_a_long_lived_engine_decides_as_a_fresh_one(runs: list[Case]) -> None:
    """The engine keeps plans and condition outcomes between decisions; they never leak
    from one message, sender, day or purpose to another."""
    engine = IsaEngine(runs[0].policies)
    for case in [*runs, *reversed(runs)]:
        assert _outcome(engine, case) == _outcome(IsaEngine(case.policies), case)
