"""Latency of one ISA decision, against cedarpy answering the same allow/deny questions in
the same run on the same machine.

    .venv/bin/python bench/isa_decisions.py [--quick] [--profile]

For synthetic policy sets of 10, 100 and 1,000 agreements (10 flows each, ~50 parties, the
three message types, some CEL conditions, prohibitions and a few hard blocks; seeded, so every
run builds the same sets) it measures, with ``time.perf_counter_ns`` around each call:

* our full decision with projection: ``engine.decide(sender, "release-notice", now, None,
  payload)`` and ``r.project(payload)`` for every recipient, as the gateway and router do;
* our allow/deny answer: ``decide`` with one purpose, then "is this recipient in it?";
* cedarpy (peer reference): ``is_authorized`` for the same (sender, recipient, purpose,
  payload) question against a pre-parsed ``cedarpy.PolicySet`` holding one ``permit`` per
  flow x sender x recipient, with the flow's condition translated into the ``when`` clause.

The allow/deny answers of both engines are compared and any disagreement is printed.
Nothing here fails the run: it is a benchmark. ``--profile`` adds a cProfile of the full
decision at the largest size."""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import platform
import pstats
import random
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import cedarpy
import cel

from services.core.errors import SharingRefused
from services.core.isa.engine import IsaEngine
from services.core.isa.model import Agreement, Flow, HardBlock, Party, PolicySet
from services.core.messages import MESSAGE_TYPES
from services.core.messages.fields import projector
from services.demo.scenario import release_notice

SEED = 20261125
SIZES = (10, 100, 1_000)
FLOWS_PER_AGREEMENT = 10
N_PARTIES = 50
PARTIES_PER_AGREEMENT = 8
FIELDS_PER_FLOW = 8
CONDITION = "message.risk.domestic_abuse == true"
CEDAR_CONDITION = "context.message.risk.domestic_abuse == true"
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
MT = "release-notice"  # every question is about a release notice (the payload is one)
TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
N_QUESTIONS = 40
TARGET_US = 20.0
TARGET_RATIO = 20.0


# --- synthetic policy sets ------------------------------------------------------------------


def make_parties(count: int = N_PARTIES) -> dict[str, Party]:
    return {
        f"p{i:04d}": Party(
            id=f"p{i:04d}",
            name=f"Synthetic party {i}",
            kind=KINDS[i % len(KINDS)],
            area=f"Area-{i % 5}",
            competent_authority=i % 3 == 0,
        )
        for i in range(count)
    }


def parties_for(n_agreements: int, sparse: bool) -> int:
    """Dense: the same 50 parties whatever the number of agreements, so a sender is in ever
    more flows. Sparse: the partnership grows by adding agencies, each party in about three
    agreements, as when more boroughs and services sign their own agreements."""
    if not sparse:
        return N_PARTIES
    return max(N_PARTIES, n_agreements * PARTIES_PER_AGREEMENT // 3)


def make_policies(n_agreements: int, parties: dict[str, Party]) -> PolicySet:
    rng = random.Random(SEED + n_agreements)
    ids = sorted(parties)
    program = cel.compile(CONDITION)
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
            # conditions only where the message type has a risk section
            conditional = mt != "dip-breach" and rng.random() < 0.25
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
                    condition=CONDITION if conditional else None,
                    legal_regime={"regime": "uk-gdpr", "condition": "synthetic"},
                    program=program if conditional else None,
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


# --- the questions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    sender: str
    purpose: str
    recipient: str


def make_questions(policies: PolicySet, n: int) -> tuple[list[str], list[Question]]:
    """Senders of release notices that hit existing flows, and allow/deny questions: three in
    four name a (sender, recipient, purpose) of an existing flow, one in four a random
    recipient and purpose (so some answers are deny)."""
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
    senders = sorted({q.sender for q in questions})
    return senders, questions


# --- Cedar translation ----------------------------------------------------------------------


def cedar_policies(policies: PolicySet) -> tuple[str, int]:
    """One permit per flow x sender x recipient; the purpose and the condition in ``when``."""
    out = []
    for a in policies.agreements:
        for f in a.flows:
            for mt in sorted(f.message_types):
                for s in sorted(f.senders):
                    for r in sorted(f.recipients - {s}):
                        when = f'context.purpose == "{f.purpose}"'
                        if f.condition:
                            when += f" && {CEDAR_CONDITION}"
                        out.append(
                            f'@id("{a.id}#{f.id}#{s}#{r}")\n'
                            f'permit(principal == Party::"{s}", '
                            f'action == Action::"send_{mt}", '
                            f'resource == Party::"{r}") when {{ {when} }};'
                        )
    return "\n".join(out), len(out)


def cedar_request(q: Question, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "principal": f'Party::"{q.sender}"',
        "action": f'Action::"send_{MT}"',
        "resource": f'Party::"{q.recipient}"',
        "context": {"purpose": q.purpose, "message": payload},
    }


# --- timing ---------------------------------------------------------------------------------


def timed(fn: Any, args: list[tuple[Any, ...]], iterations: int) -> list[int]:
    """ns per call, cycling through ``args``; a short warm-up first."""
    for a in args[: min(len(args), 20)]:
        fn(*a)
    gc.collect()
    out = []
    clock = time.perf_counter_ns
    n = len(args)
    for i in range(iterations):
        a = args[i % n]
        t = clock()
        fn(*a)
        out.append(clock() - t)
    return out


def med_us(ns: list[int]) -> float:
    return statistics.median(ns) / 1000


def p95_us(ns: list[int]) -> float:
    s = sorted(ns)
    return s[max(0, int(len(s) * 0.95) - 1)] / 1000


@dataclass
class Row:
    agreements: int
    cold_med: float
    flows: int
    candidates: float
    recipients: float
    cedar_policies: int
    cedar_parse_s: float
    full_med: float
    full_p95: float
    yn_med: float
    yn_p95: float
    cedar_med: float
    cedar_p95: float
    cedar_n: int
    disagreements: int
    allowed: int
    questions: int


def run_size(
    n_agreements: int,
    parties: dict[str, Party],
    payload: dict[str, Any],
    iterations: int,
    cedar_budget_s: float,
    profile: bool,
) -> Row:
    policies = make_policies(n_agreements, parties)
    engine = IsaEngine(policies)
    senders, questions = make_questions(policies, N_QUESTIONS)

    def full(sender: str) -> list[dict[str, Any]]:
        decision = engine.decide(sender, MT, NOW, None, payload)
        return [r.project(payload) for r in decision.recipients]

    def ours_allowed(q: Question) -> bool:
        try:
            decision = engine.decide(q.sender, MT, NOW, (q.purpose,), payload)
        except SharingRefused:
            return False
        return decision.recipient(q.recipient) is not None

    text, n_policies = cedar_policies(policies)
    t = time.perf_counter()
    cedar_set = cedarpy.PolicySet.from_str(text)
    parse_s = time.perf_counter() - t
    entities = cedarpy.Entities.from_json_str("[]")
    requests = [cedar_request(q, payload) for q in questions]

    def cedar_allowed(request: dict[str, Any]) -> bool:
        return cedarpy.is_authorized(request, cedar_set, entities).allowed

    # the answers must agree before the timings mean anything
    ours = [ours_allowed(q) for q in questions]
    theirs = [cedar_allowed(r) for r in requests]
    disagreements = sum(a != b for a, b in zip(ours, theirs, strict=True))

    shape = [engine.decide(s, MT, NOW, None, payload) for s in senders]
    candidates = statistics.mean(
        sum(s in f.senders and MT in f.message_types for a in policies.agreements for f in a.flows)
        for s in senders
    )
    recipients = statistics.mean(len(d.recipients) for d in shape)

    full_ns = timed(full, [(s,) for s in senders], iterations)

    # cold: the engine's compiled plans, condition outcomes and projectors dropped before
    # every call (outside the timing), as for the first message of a kind on a day
    cold_ns = []
    for i in range(max(50, iterations // 10)):
        engine._plans.clear()
        engine._memo.clear()
        projector.cache_clear()
        t = time.perf_counter_ns()
        full(senders[i % len(senders)])
        cold_ns.append(time.perf_counter_ns() - t)
    yn_ns = timed(ours_allowed, [(q,) for q in questions], iterations)
    # cedarpy gets as many iterations as fit the time budget (at least 100)
    probe = timed(cedar_allowed, [(r,) for r in requests], 20)
    per_call_s = statistics.median(probe) / 1e9
    cedar_n = max(100, min(iterations, int(cedar_budget_s / max(per_call_s, 1e-9))))
    cedar_ns = timed(cedar_allowed, [(r,) for r in requests], cedar_n)

    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(iterations):
            full(senders[i % len(senders)])
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
        stats.print_stats(20)
        print(
            f"\ncProfile, full decision + projection, {n_agreements} agreements, "
            f"{iterations} decisions (sorted by cumulative time):"
        )
        print("\n".join(buf.getvalue().splitlines()[4:]))

    return Row(
        agreements=n_agreements,
        flows=sum(len(a.flows) for a in policies.agreements),
        candidates=candidates,
        recipients=recipients,
        cedar_policies=n_policies,
        cedar_parse_s=parse_s,
        full_med=med_us(full_ns),
        cold_med=med_us(cold_ns),
        full_p95=p95_us(full_ns),
        yn_med=med_us(yn_ns),
        yn_p95=p95_us(yn_ns),
        cedar_med=med_us(cedar_ns),
        cedar_p95=p95_us(cedar_ns),
        cedar_n=cedar_n,
        disagreements=disagreements,
        allowed=sum(ours),
        questions=len(questions),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 iterations per size, not 2,000")
    ap.add_argument("--profile", action="store_true", help="cProfile the largest size")
    ap.add_argument(
        "--sparse",
        action="store_true",
        help="parties grow with agreements (each in about three), not a fixed 50",
    )
    args = ap.parse_args()
    iterations = 200 if args.quick else 2_000
    cedar_budget_s = 3.0 if args.quick else 20.0

    payload = release_notice(TODAY)
    mode = "sparse: parties grow with agreements" if args.sparse else f"dense: {N_PARTIES} parties"
    print(
        f"isa_decisions: {dt.date.today()}, Python {platform.python_version()}, "
        f"cedarpy {version('cedarpy')}, "
        f"{mode}, {FLOWS_PER_AGREEMENT} flows per agreement, "
        f"{iterations} iterations per measure, payload: release notice"
    )
    started = time.perf_counter()
    rows = []
    for n in SIZES:
        parties = make_parties(parties_for(n, args.sparse))
        row = run_size(
            n, parties, payload, iterations, cedar_budget_s, args.profile and n == SIZES[-1]
        )
        rows.append(row)
        print(
            f"  {n:>5} agreements done: {row.cedar_policies} Cedar policies parsed in "
            f"{row.cedar_parse_s:.2f} s; {row.allowed}/{row.questions} questions allowed, "
            f"{row.disagreements} disagreement(s) between the engines; cedarpy timed over "
            f"{row.cedar_n} calls"
        )

    print()
    head = (
        f"{'agreements':>10} {'flows':>6} {'cand.':>6} {'recip.':>6} │"
        f" {'ours decision+proj':>19} │ {'ours allow/deny':>16} │ {'cedarpy':>16} │"
        f" {'cedarpy/ours':>12} {'cedarpy/ours':>12}"
    )
    sub = (
        f"{'':>10} {'':>6} {'flows':>6} {'/dec.':>6} │"
        f" {'median':>9} {'p95':>9} │ {'median':>7} {'p95':>8} │ {'median':>7} {'p95':>8} │"
        f" {'allow/deny':>12} {'full':>12}"
    )
    print(head)
    print(sub)
    print("─" * len(head))
    for r in rows:
        print(
            f"{r.agreements:>10,} {r.flows:>6,} {r.candidates:>6.1f} {r.recipients:>6.1f} │"
            f" {r.full_med:>7.1f}µs {r.full_p95:>7.1f}µs │"
            f" {r.yn_med:>5.1f}µs {r.yn_p95:>6.1f}µs │"
            f" {r.cedar_med:>5.0f}µs {r.cedar_p95:>6.0f}µs │"
            f" {r.cedar_med / r.yn_med:>11.1f}× {r.cedar_med / r.full_med:>11.1f}×"
        )
    print(
        "\ncand. flows: candidate flows per (sender, release-notice) in the index; recip./dec.: "
        "recipients per full decision.\nours decision+proj: decide (no purpose named) + "
        "project for every recipient. ours allow/deny: decide with the question's purpose + "
        "recipient lookup.\ncedarpy: is_authorized(request, pre-parsed PolicySet, pre-parsed "
        "Entities) for the same question. ratios: cedarpy median / our median."
    )
    print(
        "\ncold (compiled plans, condition outcomes and projectors dropped before each call): "
        + "; ".join(f"{r.agreements:,} agreements {r.cold_med:.1f}µs" for r in rows)
    )
    largest = rows[-1]
    met_latency = largest.full_med < TARGET_US
    worst_ratio = min(r.cedar_med / r.yn_med for r in rows)
    met_ratio = worst_ratio >= TARGET_RATIO
    print()
    print(
        f"target: decision+projection median < {TARGET_US:.0f} µs at 1,000 agreements: "
        f"{'MET' if met_latency else 'NOT MET'} ({largest.full_med:.1f} µs)"
    )
    print(
        f"target: >= {TARGET_RATIO:.0f}x faster than cedarpy: "
        f"{'MET' if met_ratio else 'NOT MET'} (like-for-like allow/deny, lowest ratio over "
        f"the sizes: {worst_ratio:.1f}×)"
    )
    if any(r.disagreements for r in rows):
        print("warning: the engines disagreed on some allow/deny answers (see above)")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
