"""Latency of one ISA decision, warm and cold, over thousands of synthetic people, against
cedarpy answering the same allow/deny questions in the same run on the same machine.

    .venv/bin/python bench/isa_decisions.py [--shape dense|sparse|both] [--quick]
        [--people N] [--cedar-policies per-flow|per-recipient] [--profile]

Policy sets: 10, 100 and 1,000 synthetic agreements (10 flows each, 8 parties per agreement,
the three message types; on about a quarter of the release-notice and recall flows one of
five CEL conditions modelled on the demonstration agreements, one of which reads the
recipient's area; some prohibitions and hard blocks; seeded). Two shapes: *dense*, always
the same 50 parties, so a sender is in ever more flows; *sparse*, the partnership grows by
adding agencies (each party in about three agreements).

Payloads: ``--people`` (default 5,000) release notices about synthetic people, every field
drawn at random (names, identifiers, dates, address, risk, licence conditions, resettlement
needs), among them every field a condition reads; each is validated by the release-notice
model, so it has the canonical form the gateway hands to the engine.

Questions: 200 (sender, recipient, purpose); three in four name a (sender, recipient,
purpose) of an existing release-notice flow, one in four a random recipient and purpose.

Measured, with ``time.perf_counter_ns`` around each call:

* engine, decision with projection: ``decide(sender, "release-notice", now, None, payload)``
  and ``project(payload)`` for every recipient, as the gateway and the router do (and, for
  information, the decision alone);
* engine, allow/deny: ``decide`` with the question's purpose, then "is the recipient in it?";
* cedarpy, allow/deny: ``is_authorized`` for the same question (see ``CedarReference`` for
  what is prepared once and what is counted per call).

Each of them warm and cold:

* warm: one payload, the same for every decision, the questions cycling: every cache warm;
* cold: every decision about a person not used before in that measure, and before each
  call, untimed, the engine forgets everything it kept from earlier messages: the memoised
  condition outcomes and the decisions kept per combination of condition outcomes
  (``IsaEngine.forget(plans=False)``). What stays depends on the agreements alone: the plans
  per (sender, type, purposes, day), which hold each recipient's share for every
  combination of its conditions, and the projectors per pair of field sets (compiled after
  three uses), as in a broker after the first message of its kind that day;
* first of the day (engine only, for information): as cold, with the plans and projectors
  dropped too.

Untimed warm-up: every question over five people (1,000 people in all). The measures of a
size take turns in four rounds, so that the machine's load weighs on each alike. The
engine's and cedarpy's allow/deny answers are compared on every timed question, warm and
cold; a disagreement is printed. Nothing fails the run: it is a benchmark. ``--profile``
adds a cProfile of the cold decision with projection at the largest size."""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import math
import os
import platform
import pstats
import random
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cedarpy
import cel

from services.core.errors import SharingRefused
from services.core.isa.engine import IsaEngine
from services.core.isa.model import Agreement, Flow, HardBlock, Party, PolicySet
from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import projector

SEED = 20261125
SIZES = (10, 100, 1_000)
SHAPES = ("sparse", "dense")
FLOWS_PER_AGREEMENT = 10
N_PARTIES = 50
PARTIES_PER_AGREEMENT = 8
FIELDS_PER_FLOW = 8
N_QUESTIONS = 200
PURPOSES = ("public-protection", "offender-management", "safeguarding")
KINDS = (
    "prison",
    "probation",
    "police",
    "council-housing",
    "vawg-service",
    "treatment-provider",
    "mental-health",
    "youth-justice",
    "victim-liaison",
)
N_AREAS = 5  # parties sit in Area-0 .. Area-4; people are released to Area-0 .. Area-7
MT = "release-notice"  # every question is about a release notice
TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
TARGET_US = 20.0
TARGET_RATIO = 20.0
ROOT = Path(__file__).resolve().parent.parent


# --- conditions: CEL for the engine, the same test in Cedar -----------------------------------


@dataclass(frozen=True)
class Condition:
    cel: str
    cedar: str
    types: frozenset[str]  # the message types that carry every field it reads


CONDITIONS = (
    Condition(
        "message.risk.domestic_abuse == true",
        "context.message.risk.domestic_abuse == true",
        frozenset({"release-notice", "licence-recall"}),
    ),
    Condition(
        "message.victim_contact_scheme == true",
        "context.message.victim_contact_scheme == true",
        frozenset({"release-notice"}),
    ),
    Condition(
        "has(message.risk.mappa) || "
        '(has(message.risk.rosh_level) && message.risk.rosh_level in ["high", "very_high"])',
        "context.message.risk has mappa || (context.message.risk has rosh_level && "
        '["high", "very_high"].contains(context.message.risk.rosh_level))',
        frozenset({"release-notice", "licence-recall"}),
    ),
    Condition(
        "has(message.resettlement_needs) && message.resettlement_needs.mental_health",
        "context.message has resettlement_needs && "
        "context.message.resettlement_needs.mental_health",
        frozenset({"release-notice"}),
    ),
    Condition(  # depends on the recipient: one program per recipient in the engine
        "message.destination.local_authority == recipient.area && "
        "(message.destination.no_fixed_abode || "
        "(has(message.resettlement_needs) && message.resettlement_needs.accommodation))",
        "context.message.destination.local_authority == resource.area && "
        "(context.message.destination.no_fixed_abode || "
        "(context.message has resettlement_needs && "
        "context.message.resettlement_needs.accommodation))",
        frozenset({"release-notice"}),
    ),
)
#: every message field a condition reads (Cedar's context holds only these)
CONDITION_PATHS = (
    "destination.local_authority",
    "destination.no_fixed_abode",
    "resettlement_needs.accommodation",
    "resettlement_needs.mental_health",
    "risk.domestic_abuse",
    "risk.mappa",
    "risk.rosh_level",
    "victim_contact_scheme",
)


# --- synthetic policy sets ------------------------------------------------------------------


def make_parties(count: int) -> dict[str, Party]:
    return {
        f"p{i:04d}": Party(
            id=f"p{i:04d}",
            name=f"Synthetic party {i}",
            kind=KINDS[i % len(KINDS)],
            area=f"Area-{i % N_AREAS}",
            competent_authority=i % 3 == 0,
        )
        for i in range(count)
    }


def parties_for(n_agreements: int, shape: str) -> int:
    """Dense: the same 50 parties whatever the number of agreements, so a sender is in ever
    more flows. Sparse: the partnership grows by adding agencies, each party in about three
    agreements, as when more boroughs and services sign their own agreements."""
    if shape == "dense":
        return N_PARTIES
    return max(N_PARTIES, n_agreements * PARTIES_PER_AGREEMENT // 3)


def make_policies(n_agreements: int, parties: dict[str, Party]) -> PolicySet:
    rng = random.Random(SEED + n_agreements)
    ids = sorted(parties)
    programs = {c.cel: cel.compile(c.cel) for c in CONDITIONS}
    agreements = []
    for a in range(n_agreements):
        members = rng.sample(ids, PARTIES_PER_AGREEMENT)
        flows = []
        for f in range(FLOWS_PER_AGREEMENT):
            mt = rng.choice(tuple(MESSAGE_TYPES))
            senders = rng.sample(members, rng.choice((1, 1, 2)))
            others = [p for p in members if p not in senders]
            recipients = rng.sample(others, rng.randint(1, 3))
            paths = list(MESSAGE_TYPES[mt].paths)
            fields = rng.sample(paths, FIELDS_PER_FLOW)
            usable = [c for c in CONDITIONS if mt in c.types]
            condition = rng.choice(usable).cel if usable and rng.random() < 0.25 else None
            prohibited = (
                frozenset(rng.sample([p for p in paths if p not in fields], 1))
                if rng.random() < 0.1
                else frozenset()
            )
            flows.append(
                Flow(
                    id=f"flow-{f}",
                    senders=frozenset(senders),
                    recipients=frozenset(recipients),
                    message_types=frozenset({mt}),
                    purpose=rng.choice(PURPOSES),
                    fields=frozenset(fields),
                    prohibited=prohibited,
                    condition=condition,
                    legal_regime={"regime": "uk-gdpr", "condition": "synthetic"},
                    program=programs[condition] if condition else None,
                )
            )
        blocks: tuple[HardBlock, ...] = ()
        if a % 20 == 0:  # a few hard blocks: one agreement in twenty has one
            blocks = (
                HardBlock(
                    id=f"hb-{a}",
                    fields=frozenset({"resettlement_needs.opioid_substitution_therapy"}),
                    parties=frozenset(rng.sample(ids, 2)),
                    reason="synthetic: health data never to these parties",
                    message_types=frozenset({MT}),
                ),
            )
        agreements.append(
            Agreement(
                id=f"ISA-SYN-{a:04d}",
                title=f"Synthetic agreement {a}",
                version="1",
                status="active",
                parties=frozenset(members),
                purposes={p: f"synthetic {p}" for p in PURPOSES},
                legal_gateways=("synthetic",),
                effective_from=dt.date(2026, 1, 1),
                expires_on=dt.date(2029, 12, 31),
                review_date=dt.date(2028, 1, 1),
                flows=tuple(flows),
                hard_blocks=blocks,
            )
        )
    return PolicySet(parties=parties, agreements=tuple(agreements))


# --- synthetic people -----------------------------------------------------------------------

GIVEN = ("Alex", "Sam", "Jordan", "Casey", "Robin", "Morgan", "Taylor", "Jamie", "Drew", "Quinn")
FAMILY = ("Testperson", "Sample", "Placeholder", "Example", "Fictional", "Synthetic", "Mockley")
PRISONS = ("HMP Northgate (fictional)", "HMP Southmoor (fictional)", "HMP Eastfield (fictional)")
LETTERS = "ABCDEFGHJKLMNPRSTVWXYZ"


def make_person(rng: random.Random) -> dict[str, Any]:
    """A release notice about one synthetic person, every field drawn at random."""
    letter = rng.choice(LETTERS)

    def two() -> str:
        return rng.choice(LETTERS) + rng.choice(LETTERS)

    person: dict[str, Any] = {
        "given_name": rng.choice(GIVEN),
        "family_name": rng.choice(FAMILY),
        "date_of_birth": (
            dt.date(1960, 1, 1) + dt.timedelta(days=rng.randint(0, 15_000))
        ).isoformat(),
    }
    ids = {
        "prison_number": f"{letter}{rng.randint(0, 9999):04d}{two()}",
        "pnc_id": f"{rng.randint(10, 26)}/{rng.randint(1, 999_999)}{rng.choice(LETTERS)}",
        "crn": f"{letter}{rng.randint(0, 999_999):06d}",
    }
    for key in rng.sample(sorted(ids), rng.randint(1, 3)):
        person[key] = ids[key]
    if rng.random() < 0.8:
        person["gender"] = rng.choice(("male", "female", "non_binary", "not_stated"))
    release: dict[str, Any] = {
        "date": (TODAY + dt.timedelta(days=rng.randint(1, 28))).isoformat(),
        "type": rng.choice(
            ("conditional_release", "ecsl", "home_detention_curfew", "parole", "end_of_sentence")
        ),
        "establishment": rng.choice(PRISONS),
    }
    if rng.random() < 0.5:
        release["conditional_release_date"] = (
            TODAY + dt.timedelta(days=rng.randint(30, 120))
        ).isoformat()
    no_fixed_abode = rng.random() < 0.3
    destination: dict[str, Any] = {
        "no_fixed_abode": no_fixed_abode,
        "local_authority": f"Area-{rng.randrange(8)}",
    }
    if not no_fixed_abode:
        destination["address"] = {
            "line1": f"{rng.randint(1, 200)} Example Street",
            "town": "Exampletown",
            "postcode": f"ZZ{rng.randint(1, 9)} {rng.randint(1, 9)}{two()}",
        }
    if rng.random() < 0.7:
        destination["probation_delivery_unit"] = f"PDU {rng.randint(1, 12)}"
    risk: dict[str, Any] = {
        "domestic_abuse": rng.random() < 0.35,
        "national_security_division": rng.random() < 0.02,
        "sex_offender_register": rng.random() < 0.1,
    }
    if rng.random() < 0.3:
        risk["mappa"] = {"category": rng.choice("1234"), "level": rng.choice("123")}
    if rng.random() < 0.8:
        risk["rosh_level"] = rng.choice(("low", "medium", "high", "very_high"))
    notice: dict[str, Any] = {
        "person": person,
        "release": release,
        "destination": destination,
        "risk": risk,
        "victim_contact_scheme": rng.random() < 0.3,
    }
    if rng.random() < 0.7:
        notice["licence_conditions"] = {
            "exclusion_zones": [
                {"description": f"Must not enter zone {z} (fictional)", "area": f"ZZ{z}"}
                for z in rng.sample(range(1, 10), rng.randint(0, 3))
            ],
            "non_contact": rng.random() < 0.5,
            "electronic_monitoring": rng.random() < 0.4,
        }
    if rng.random() < 0.6:
        needs: dict[str, Any] = {
            "accommodation": rng.random() < 0.5,
            "mental_health": rng.random() < 0.4,
            "benefits": rng.random() < 0.5,
            "identity_documents": rng.random() < 0.3,
        }
        if rng.random() < 0.2:
            needs["opioid_substitution_therapy"] = {
                "medication": rng.choice(("methadone", "buprenorphine")),
                "daily_dose_mg": rng.randint(5, 120),
            }
        notice["resettlement_needs"] = needs
    # the canonical form the gateway stores and hands to the engine
    return MESSAGE_TYPES[MT].validate_json(json.dumps(notice).encode())


def make_people(n: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    return [make_person(rng) for _ in range(n)]


def condition_variety(people: list[dict[str, Any]]) -> int:
    """How many distinct combinations of the fields the conditions read the people have."""
    return len({json.dumps(message_view(p), sort_keys=True) for p in people})


# --- the questions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    sender: str
    purpose: str
    recipient: str


def make_questions(policies: PolicySet, n: int) -> list[Question]:
    """Three in four name a (sender, recipient, purpose) of an existing release-notice flow,
    one in four a random recipient and purpose (so some answers are deny)."""
    rng = random.Random(SEED)
    hits = [
        (s, r, f.purpose)
        for a in policies.agreements
        for f in a.flows
        if MT in f.message_types
        for s in sorted(f.senders)
        for r in sorted(f.recipients - {s})
    ]
    ids = sorted(policies.parties)
    questions = []
    for i in range(n):
        s, r, p = rng.choice(hits)
        if i % 4 == 3:
            r = rng.choice([x for x in ids if x != s])
            p = rng.choice(PURPOSES)
        questions.append(Question(s, p, r))
    return questions


# --- the engine -----------------------------------------------------------------------------


class EngineUnderTest:
    """What the gateway and router do with the engine, and the caches a measure drops."""

    def __init__(self, policies: PolicySet) -> None:
        self.engine = IsaEngine(policies)

    def decide_and_project(self, sender: str, payload: Mapping[str, Any]) -> int:
        try:
            decision = self.engine.decide(sender, MT, NOW, None, payload)
        except SharingRefused:
            return 0
        return len([r.project(payload) for r in decision.recipients])

    def decide(self, sender: str, payload: Mapping[str, Any]) -> int:
        try:
            return len(self.engine.decide(sender, MT, NOW, None, payload).recipients)
        except SharingRefused:
            return 0

    def allowed(self, q: Question, payload: Mapping[str, Any]) -> bool:
        try:
            decision = self.engine.decide(q.sender, MT, NOW, (q.purpose,), payload)
        except SharingRefused:
            return False
        return decision.recipient(q.recipient) is not None

    def forget_payloads(self) -> None:
        """Everything the engine keeps that depends on a payload."""
        self.engine.forget(plans=False)

    def forget_all(self) -> None:
        """And the plans and projectors too: the first message of its kind on a day."""
        self.engine.forget(plans=True)
        projector.cache_clear()


# --- Cedar ----------------------------------------------------------------------------------


def message_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the conditions read, with the objects that hold them."""
    view: dict[str, Any] = {}
    for path in CONDITION_PATHS:
        src: Any = payload
        dst = view
        parts = path.split(".")
        for part in parts[:-1]:
            src = src.get(part) if isinstance(src, Mapping) else None
            if src is None:
                break
            dst = dst.setdefault(part, {})
        else:
            if isinstance(src, Mapping) and parts[-1] in src:
                dst[parts[-1]] = src[parts[-1]]
    return view


def cedar_per_flow(policies: PolicySet) -> tuple[str, list[dict[str, Any]]]:
    """One permit per flow, as a Cedar integration would write the agreements: the flow's
    senders and recipients are groups that parties belong to (entity parents, built once),
    the purpose and the condition are in ``when``, and a sender is never its own recipient.
    Returns the policies and the entities (every party, with ``kind``, ``area`` and the
    groups it is in)."""
    by_cel = {c.cel: c.cedar for c in CONDITIONS}
    parents: dict[str, list[dict[str, str]]] = {p: [] for p in policies.parties}
    out = []
    for a in policies.agreements:
        for f in a.flows:
            group = f"{a.id}#{f.id}"
            for s in sorted(f.senders):
                parents[s].append({"type": "Senders", "id": group})
            for r in sorted(f.recipients):
                parents[r].append({"type": "Recipients", "id": group})
            when = f'context.purpose == "{f.purpose}" && principal != resource'
            if f.condition:
                when += f" && ({by_cel[f.condition]})"
            for mt in sorted(f.message_types):
                out.append(
                    f'@id("{group}")\n'
                    f'permit(principal in Senders::"{group}", action == Action::"send_{mt}", '
                    f'resource in Recipients::"{group}") when {{ {when} }};'
                )
    entities = [
        {
            "uid": {"type": "Party", "id": p.id},
            "attrs": {"kind": p.kind, "area": p.area or ""},
            "parents": parents[p.id],
        }
        for p in policies.parties.values()
    ]
    return "\n".join(out), entities


def cedar_per_recipient(policies: PolicySet) -> tuple[str, list[dict[str, Any]]]:
    """One permit per flow x sender x recipient (``--cedar-policies per-recipient``):
    more policies, no groups."""
    by_cel = {c.cel: c.cedar for c in CONDITIONS}
    out = []
    for a in policies.agreements:
        for f in a.flows:
            for mt in sorted(f.message_types):
                for s in sorted(f.senders):
                    for r in sorted(f.recipients - {s}):
                        when = f'context.purpose == "{f.purpose}"'
                        if f.condition:
                            when += f" && ({by_cel[f.condition]})"
                        out.append(
                            f'@id("{a.id}#{f.id}#{s}#{r}")\n'
                            f'permit(principal == Party::"{s}", '
                            f'action == Action::"send_{mt}", '
                            f'resource == Party::"{r}") when {{ {when} }};'
                        )
    entities = [
        {
            "uid": {"type": "Party", "id": p.id},
            "attrs": {"kind": p.kind, "area": p.area or ""},
            "parents": [],
        }
        for p in policies.parties.values()
    ]
    return "\n".join(out), entities


TRANSLATIONS = {"per-flow": cedar_per_flow, "per-recipient": cedar_per_recipient}

CEDAR_SCHEMA = """
entity Senders;
entity Recipients;
entity Party in [Senders, Recipients] { kind: String, area: String };
type Mappa = { category: String, level: String };
type Message = {
  destination: { local_authority: String, no_fixed_abode: Bool },
  resettlement_needs?: { accommodation: Bool, mental_health: Bool },
  risk: { domestic_abuse: Bool, mappa?: Mappa, rosh_level?: String },
  victim_contact_scheme: Bool,
};
action "send_release-notice", "send_licence-recall", "send_dip-breach"
  appliesTo { principal: Party, resource: Party, context: { purpose: String, message: Message } };
"""


class CedarReference:
    """cedarpy prepared as an integration would prepare it.

    Once, not counted: the policy text (``cedar_per_flow``) parsed into a
    ``cedarpy.PolicySet``; the register of parties (kind, area, the flows' sender and
    recipient groups each is in) parsed into a ``cedarpy.Entities`` handle; the schema parsed
    and the policies validated against it (a sample at the larger sizes; the schema is not
    passed per call, where it would only add validation of the request, which the engine
    does not do either: intake validates the message).

    Per call, counted: the request (principal, action, resource as Cedar strings), its
    context (the purpose and the message fields the conditions read, copied from the payload
    by ``message_view``), cedarpy's ``json.dumps`` of the context, Cedar parsing it and
    evaluating the policies, and cedarpy's answer object."""

    def __init__(self, policies: PolicySet, translation: str) -> None:
        text, entities = TRANSLATIONS[translation](policies)
        self.n_policies = text.count("permit(")
        t = time.perf_counter()
        self.policies = cedarpy.PolicySet.from_str(text)
        self.entities = cedarpy.Entities.from_json_str(json.dumps(entities))
        self.prepare_s = time.perf_counter() - t
        schema = cedarpy.Schema.from_str(CEDAR_SCHEMA)
        sample = "\n".join(text.split("\n")[:4_000])  # validation is slow; the policies are alike
        self.valid = cedarpy.validate_policies(sample, schema).validation_passed

    def allowed(self, q: Question, payload: Mapping[str, Any]) -> bool:
        request = {
            "principal": f'Party::"{q.sender}"',
            "action": f'Action::"send_{MT}"',
            "resource": f'Party::"{q.recipient}"',
            "context": {"purpose": q.purpose, "message": message_view(payload)},
        }
        return cedarpy.is_authorized(request, self.policies, self.entities).allowed


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Figure:
    ns: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ns)

    @property
    def median(self) -> float:
        return statistics.median(self.ns) / 1000

    @property
    def p99(self) -> float:
        s = sorted(self.ns)
        return s[max(0, math.ceil(len(s) * 0.99) - 1)] / 1000


class Measure:
    """Calls timed with ``time.perf_counter_ns``, in slices, so that the measures of one size
    can take turns (the machine's load then weighs on each alike); ``before`` runs untimed
    before each call."""

    def __init__(
        self,
        calls: Iterator[tuple[Callable[..., Any], tuple[Any, ...]]],
        before: Callable[[], None] | None = None,
        answers: list[Any] | None = None,
    ) -> None:
        self.calls = calls
        self.before = before
        self.answers = answers
        self.figure = Figure()

    def run(self, budget_s: float, at_least: int, at_most: int) -> None:
        """Up to ``at_most`` calls, or ``budget_s`` of them once ``at_least`` are done."""
        gc.collect()
        clock = time.perf_counter_ns
        ns = self.figure.ns
        spent, budget_ns = 0, budget_s * 1e9
        for done, (fn, args) in enumerate(self.calls, start=1):
            if self.before is not None:
                self.before()
            t = clock()
            answer = fn(*args)
            took = clock() - t
            ns.append(took)
            if self.answers is not None:
                self.answers.append(answer)
            spent += took
            if done >= at_most or (done >= at_least and spent > budget_ns):
                return


ROUNDS = 4
LABELS = {
    "full warm": "engine, decision + projection, warm",
    "full cold": "engine, decision + projection, cold",
    "decide cold": "engine, decision alone, cold",
    "full first": "engine, decision + projection, first of day",
    "allow warm": "engine, allow/deny, warm",
    "allow cold": "engine, allow/deny, cold",
    "cedar warm": "cedarpy, allow/deny, warm",
    "cedar cold": "cedarpy, allow/deny, cold",
}


@dataclass
class Row:
    shape: str
    agreements: int
    parties: int
    flows: int
    candidates: float
    recipients: float
    cedar_policies: int
    cedar_prepare_s: float
    cedar_valid: bool
    figures: dict[str, Figure]
    disagreements: int
    compared: int
    allowed: int
    load: tuple[float, float]


def run_size(
    shape: str,
    n_agreements: int,
    people: list[dict[str, Any]],
    scale: float,
    translation: str,
    profile: bool,
) -> Row:
    load_start = os.getloadavg()[0]
    parties = make_parties(parties_for(n_agreements, shape))
    policies = make_policies(n_agreements, parties)
    questions = make_questions(policies, N_QUESTIONS)
    ours = EngineUnderTest(policies)
    cedar = CedarReference(policies, translation)
    warm_payload, cold_people = people[0], people[1:]
    nq = len(questions)

    def warm(fn: Callable[..., Any], full: bool) -> Iterator[tuple[Any, tuple[Any, ...]]]:
        i = 0
        while True:
            q = questions[i % nq]
            yield fn, ((q.sender if full else q), warm_payload)
            i += 1

    def cold(fn: Callable[..., Any], full: bool) -> Iterator[tuple[Any, tuple[Any, ...]]]:
        """A person not seen before in this measure for every call."""
        for i, payload in enumerate(cold_people):
            q = questions[i % nq]
            yield fn, ((q.sender if full else q), payload)

    # Warm-up, untimed: every question over five people each (1,000 different people in
    # all), so that plans exist and the projectors used often are compiled, as in a running
    # broker; none of the people is the warm payload or comes first in the cold measures.
    for i, q in enumerate(questions):
        for payload in people[-5 * (i + 1) :][:5]:
            ours.decide_and_project(q.sender, payload)
            ours.allowed(q, payload)
    for q in questions[:20]:
        cedar.allowed(q, warm_payload)

    answers: dict[str, list[bool]] = {k: [] for k in ("ew", "ec", "cw", "cc")}
    measures = {
        "full warm": Measure(warm(ours.decide_and_project, True)),
        "full cold": Measure(cold(ours.decide_and_project, True), ours.forget_payloads),
        "decide cold": Measure(cold(ours.decide, True), ours.forget_payloads),
        "full first": Measure(cold(ours.decide_and_project, True), ours.forget_all),
        "allow warm": Measure(warm(ours.allowed, False), answers=answers["ew"]),
        "allow cold": Measure(cold(ours.allowed, False), ours.forget_payloads, answers["ec"]),
        "cedar warm": Measure(warm(cedar.allowed, False), answers=answers["cw"]),
        "cedar cold": Measure(cold(cedar.allowed, False), answers=answers["cc"]),
    }
    # per measure over the rounds: (seconds, at least, at most) calls
    limits = {
        "full first": (1.5 * scale, 50, int(4_000 * scale)),
        "cedar warm": (6 * scale, 100, int(4_000 * scale)),
        "cedar cold": (6 * scale, 100, int(4_000 * scale)),
    }
    first = measures.pop("full first")  # last: it drops the plans and projectors
    for _ in range(ROUNDS):
        for key, m in measures.items():
            seconds, at_least, at_most = limits.get(key, (2.5 * scale, 200, int(20_000 * scale)))
            m.run(seconds / ROUNDS, at_least // ROUNDS, at_most // ROUNDS)
    if profile:  # the cold path, before the plans and projectors are dropped
        prof = cProfile.Profile()
        for i, payload in enumerate(cold_people[:2_000]):
            ours.forget_payloads()
            prof.enable()
            ours.decide_and_project(questions[i % nq].sender, payload)
            prof.disable()
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(18)
            print(
                f"\ncProfile, {shape}, {n_agreements:,} agreements, cold decision with "
                f"projection, 2,000 decisions, by {order}:"
            )
            print("\n".join(buf.getvalue().splitlines()[4:]))

    first.run(*limits["full first"])
    measures["full first"] = first
    figures = {k: m.figure for k, m in measures.items()}
    disagreements = compared = 0
    for ours_key, theirs_key in (("ew", "cw"), ("ec", "cc")):
        pairs = list(zip(answers[ours_key], answers[theirs_key], strict=False))
        compared += len(pairs)
        disagreements += sum(a != b for a, b in pairs)

    senders = sorted({q.sender for q in questions})
    candidates = statistics.mean(
        sum(s in f.senders and MT in f.message_types for a in policies.agreements for f in a.flows)
        for s in senders
    )
    recipients = statistics.mean(
        ours.decide_and_project(q.sender, p) for q, p in zip(questions, cold_people, strict=False)
    )

    return Row(
        shape=shape,
        agreements=n_agreements,
        parties=len(parties),
        flows=sum(len(a.flows) for a in policies.agreements),
        candidates=candidates,
        recipients=recipients,
        cedar_policies=cedar.n_policies,
        cedar_prepare_s=cedar.prepare_s,
        cedar_valid=cedar.valid,
        figures=figures,
        disagreements=disagreements,
        compared=compared,
        allowed=sum(answers["cc"]),
        load=(load_start, os.getloadavg()[0]),
    )


# --- report ---------------------------------------------------------------------------------


def commit() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(  # noqa: S603
                ["git", *args],  # noqa: S607
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git(
        "status",
        "--porcelain",
        "--",
        "services/core/isa",
        "services/core/messages",
        "bench/isa_decisions.py",
    )
    return head + (" with uncommitted changes to the engine or this bench" if dirty else "")


def ratio(cedar: Figure, ours: Figure) -> float:
    """How many times faster the engine is than cedarpy (medians)."""
    return cedar.median / ours.median


def ratios(r: Row, temp: str) -> tuple[float, float]:
    """cedarpy ÷ engine: allow/deny against allow/deny, and the engine's decision with
    projection against cedarpy's allow/deny."""
    f = r.figures
    theirs = f[f"cedar {temp}"]
    return ratio(theirs, f[f"allow {temp}"]), ratio(theirs, f[f"full {temp}"])


def print_row(r: Row) -> None:
    f = r.figures
    print(
        f"\n{r.shape}, {r.agreements:,} agreements: {r.parties:,} parties, {r.flows:,} flows, "
        f"{r.candidates:.1f} candidate flows per sender, {r.recipients:.1f} recipients per "
        f"decision; {r.cedar_policies:,} Cedar policies and the entities parsed in "
        f"{r.cedar_prepare_s:.2f} s (schema validation: "
        f"{'passed' if r.cedar_valid else 'FAILED'}); load {r.load[0]:.2f} -> {r.load[1]:.2f}"
    )
    print(f"  {'':<44} {'median':>10} {'p99':>10} {'n':>7}")
    for key, label in LABELS.items():
        fig = f[key]
        print(f"  {label:<44} {fig.median:>8.1f}µs {fig.p99:>8.1f}µs {fig.n:>7,}")
    for temp in ("warm", "cold"):
        like, full = ratios(r, temp)
        print(
            f"  cedarpy ÷ engine, {temp}: {like:,.0f}× allow/deny against allow/deny, "
            f"{full:,.0f}× the engine's decision with projection against an allow/deny"
        )
    print(
        f"  answers compared: {r.compared:,}, {r.disagreements} disagreement(s); "
        f"{r.allowed:,} of the {f['cedar cold'].n:,} cold questions allowed"
    )


def print_summary(rows: list[Row]) -> None:
    def pair(fig: Figure) -> str:
        return (
            f"{fig.median:,.1f} / {fig.p99:,.1f}"
            if fig.median < 1_000
            else (f"{fig.median:,.0f} / {fig.p99:,.0f}")
        )

    print(
        "\n| shape | agreements | cand. flows | recipients | engine with projection, warm "
        "| engine with projection, cold | engine allow/deny, warm | engine allow/deny, cold "
        "| cedarpy, warm | cedarpy, cold | cedarpy ÷ engine, warm | cedarpy ÷ engine, cold |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f = r.figures
        (lw, fw), (lc, fc) = ratios(r, "warm"), ratios(r, "cold")
        print(
            f"| {r.shape} | {r.agreements:,} | {r.candidates:.1f} | {r.recipients:.1f} | "
            f"{pair(f['full warm'])} | {pair(f['full cold'])} | {pair(f['allow warm'])} | "
            f"{pair(f['allow cold'])} | {pair(f['cedar warm'])} | {pair(f['cedar cold'])} | "
            f"{lw:,.0f}× / {fw:,.0f}× | {lc:,.0f}× / {fc:,.0f}× |"
        )
    print(
        "(µs per decision, median / p99; ratios: allow/deny against allow/deny / the "
        "engine's decision with projection against cedarpy's allow/deny)"
    )


def print_targets(rows: list[Row]) -> None:
    print()
    for temp in ("warm", "cold"):
        for i, what in enumerate(("allow/deny", "decision with projection")):
            x, worst = min(((ratios(r, temp)[i], r) for r in rows), key=lambda p: p[0])
            print(
                f"target: engine >= {TARGET_RATIO:.0f}× faster than cedarpy, {temp}, {what}: "
                f"{'MET' if x >= TARGET_RATIO else 'NOT MET'} (lowest {x:.1f}×, "
                f"{worst.shape}, {worst.agreements:,} agreements)"
            )
    for r in rows:
        if r.agreements != max(SIZES):
            continue
        for temp in ("warm", "cold"):
            m = r.figures[f"full {temp}"].median
            print(
                f"target: decision with projection <= {TARGET_US:.0f} µs at "
                f"{r.agreements:,} agreements, {r.shape}, {temp}: "
                f"{'MET' if m <= TARGET_US else 'NOT MET'} ({m:.1f} µs median)"
            )
    if any(r.disagreements for r in rows):
        print("warning: the engines disagreed on some allow/deny answers (see above)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=(*SHAPES, "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="a fifth of the calls and time")
    ap.add_argument("--people", type=int, default=5_000, help="synthetic people (payloads)")
    ap.add_argument(
        "--cedar-policies",
        choices=tuple(TRANSLATIONS),
        default="per-flow",
        help="how the agreements are written in Cedar (default: one permit per flow)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the cold path, largest size")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    shapes = SHAPES if args.shape == "both" else (args.shape,)

    load_start = os.getloadavg()
    started = time.perf_counter()
    people = make_people(args.people)
    print(
        f"isa_decisions: {dt.datetime.now().isoformat(timespec='seconds')}, commit {commit()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"cedarpy {version('cedarpy')}, common-expression-language "
        f"{version('common-expression-language')}; Cedar policies {args.cedar_policies}"
    )
    print(
        f"{len(people):,} synthetic people ({condition_variety(people):,} distinct combinations "
        f"of the fields the conditions read), {N_QUESTIONS} questions, "
        f"{FLOWS_PER_AGREEMENT} flows per agreement; load average at start "
        + " / ".join(f"{x:.2f}" for x in load_start)
        + " (1, 5, 15 min)"
    )
    rows = []
    for shape in shapes:
        for n in SIZES:
            profile = args.profile and n == SIZES[-1]
            row = run_size(shape, n, people, scale, args.cedar_policies, profile)
            rows.append(row)
            print_row(row)
    print_summary(rows)
    print_targets(rows)
    print(
        "\nload average at end "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" (1, 5, 15 min); wall time {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
