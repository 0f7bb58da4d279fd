"""The ISA engine: for (sender, message type, purposes, message, time) it answers which
parties may receive the message and, per recipient, which fields under which agreement and
flow, which fields were removed by which prohibition or hard block, and why every other
candidate flow did not apply; or it refuses, naming why.

Rules, in order:

1. Candidate flows are those naming the sender and the message type (compiled into an index
   at load time, so a decision never scans every agreement).
2. A flow applies when its agreement is in force on the decision date, its purpose was asked
   for (or no purpose was given), and its CEL condition, if any, is true for the recipient.
   A condition that cannot be evaluated (a missing field, a type error) is false.
3. Permissions of all applicable flows combine per recipient.
4. Prohibited fields of an applicable flow, and hard blocks of every agreement that is not a
   draft, override any permission. A recipient left with no field receives nothing.

Refusal reasons, checked in this order so the most useful one is reported:
``no_agreement``, ``sender_not_party``, ``purpose_not_covered``, ``agreement_not_in_force``,
``no_recipient`` (flows in force exist, but conditions or blocks leave nobody).

One module on purpose (about 700 lines): the rules above, the index built at load time and
the one pure ``decide`` that applies them are read together when an agreement's effect is
questioned, and nothing else in the product decides a share.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cel

from ..errors import SharingRefused
from ..messages import MESSAGE_TYPES
from ..messages.fields import leaf_paths, projector
from .model import Agreement, Flow, HardBlock, PolicySet, rule_ref

_MESSAGE_PATH = re.compile(r"\bmessage(?:\.[a-z_]+)+")
_MEMO_SIZE = 65_536
_PLANS_SIZE = 16_384
_OUTCOMES_SIZE = 256
_UNKNOWN = object()
_RECIPIENT_ATTR = re.compile(r"\brecipient\.(id|kind|area)\b")


@dataclass(frozen=True)
class Grant:
    agreement_id: str
    agreement_version: str
    flow_id: str
    purpose: str
    fields: tuple[str, ...]

    @property
    def ref(self) -> str:
        return rule_ref(self.agreement_id, self.agreement_version, self.flow_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement_id,
            "version": self.agreement_version,
            "flow": self.flow_id,
            "purpose": self.purpose,
            "fields": list(self.fields),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grant:
        return cls(d["agreement"], d["version"], d["flow"], d["purpose"], tuple(d["fields"]))


@dataclass(frozen=True)
class Block:
    """Fields removed from a recipient's share by a prohibition or a hard block."""

    agreement_id: str
    agreement_version: str
    rule: str  # flow id (prohibition) or hard-block id
    kind: str  # "prohibited" | "hard_block"
    fields: tuple[str, ...]
    reason: str = ""

    @property
    def ref(self) -> str:
        return rule_ref(self.agreement_id, self.agreement_version, self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement_id,
            "version": self.agreement_version,
            "rule": self.rule,
            "kind": self.kind,
            "fields": list(self.fields),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Block:
        return cls(
            d["agreement"], d["version"], d["rule"], d["kind"], tuple(d["fields"]), d["reason"]
        )


@dataclass(frozen=True)
class Consideration:
    """A candidate flow that did not grant anything, and why."""

    agreement_id: str
    agreement_version: str
    flow_id: str
    recipient: str | None
    outcome: str  # not_in_force | condition_false | condition_error | all_fields_blocked
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement_id,
            "version": self.agreement_version,
            "flow": self.flow_id,
            "recipient": self.recipient,
            "outcome": self.outcome,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Consideration:
        return cls(
            d["agreement"], d["version"], d["flow"], d["recipient"], d["outcome"], d["detail"]
        )


@dataclass(frozen=True)
class RecipientDecision:
    party: str
    grants: tuple[Grant, ...]
    blocks: tuple[Block, ...] = ()

    @cached_property
    def allowed(self) -> frozenset[str]:
        return frozenset(f for g in self.grants for f in g.fields)

    @cached_property
    def blocked(self) -> frozenset[str]:
        return frozenset(f for b in self.blocks for f in b.fields)

    @cached_property
    def _projector(self) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        return projector(self.allowed, self.blocked)

    def project(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return self._projector(payload)

    def disclosed(self, payload: Mapping[str, Any]) -> list[str]:
        return leaf_paths(self.project(payload))

    def explain(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Per field of the message: the grants that disclose it, or what withheld it."""
        out: dict[str, Any] = {}
        shared = set(self.disclosed(payload))
        for leaf in leaf_paths(payload):
            if leaf in shared:
                out[leaf] = {
                    "disclosed": True,
                    "allowed_by": [g.ref for g in self.grants if _covers(g.fields, leaf)],
                }
            else:
                blocked_by = [b.ref for b in self.blocks if _covers(b.fields, leaf)]
                allowed = [g.ref for g in self.grants if _covers(g.fields, leaf)]
                out[leaf] = {
                    "disclosed": False,
                    "withheld_by": blocked_by or ["no flow permits it"],
                    **({"would_be_allowed_by": allowed} if allowed else {}),
                }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "grants": [g.to_dict() for g in self.grants],
            "blocks": [b.to_dict() for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipientDecision:
        return cls(
            d["party"],
            tuple(Grant.from_dict(g) for g in d["grants"]),
            tuple(Block.from_dict(b) for b in d.get("blocks", [])),
        )


@dataclass(frozen=True)
class Decision:
    sender: str
    message_type: str
    decided_at: dt.datetime
    recipients: tuple[RecipientDecision, ...]
    considered: tuple[Consideration, ...] = ()
    warnings: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()

    @property
    def agreements(self) -> list[dict[str, str]]:
        refs = {(g.agreement_id, g.agreement_version) for r in self.recipients for g in r.grants}
        return [{"id": a, "version": v} for a, v in sorted(refs)]

    def recipient(self, party: str) -> RecipientDecision | None:
        return next((r for r in self.recipients if r.party == party), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "message_type": self.message_type,
            "decided_at": self.decided_at.isoformat(),
            "purposes": list(self.purposes),
            "recipients": [r.to_dict() for r in self.recipients],
            "considered": [c.to_dict() for c in self.considered],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(
            sender=d["sender"],
            message_type=d["message_type"],
            decided_at=dt.datetime.fromisoformat(d["decided_at"]),
            recipients=tuple(RecipientDecision.from_dict(r) for r in d["recipients"]),
            considered=tuple(Consideration.from_dict(c) for c in d.get("considered", [])),
            warnings=tuple(d.get("warnings", [])),
            purposes=tuple(d.get("purposes", [])),
        )


@dataclass
class _Share:
    grants: list[Grant] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


@dataclass
class _Plan:
    """A compiled decision for (sender, message type, purposes, day)."""

    applicable: list[tuple[Agreement, Flow]]
    considered: tuple[Consideration, ...]
    warnings: tuple[str, ...]
    checks: tuple[tuple[str, str | None], ...]
    programs: dict[tuple[str, str | None], tuple[Any, dict[str, Any] | None]]
    outcomes: dict[
        tuple[str | None, ...],
        tuple[tuple[RecipientDecision, ...], tuple[Consideration, ...]],
    ] = field(default_factory=dict)


class IsaEngine:
    """Decides shares against one immutable :class:`PolicySet`. Swap the engine to reload."""

    def __init__(self, policies: PolicySet) -> None:
        self.policies = policies
        self._index: dict[tuple[str, str], list[tuple[Agreement, Flow]]] = {}
        self._typed: set[str] = set()
        # per flow, computed once: the grant and prohibition it yields, and whether its
        # condition depends on the recipient (if not, it is evaluated once per decision)
        self._grant: dict[int, Grant] = {}
        self._prohibition: dict[int, Block] = {}
        self._per_recipient: dict[int, bool] = {}
        self._programs: dict[tuple[int, str], Any] = {}
        self._message_paths: set[str] | None = set()
        # Condition outcomes by (condition, recipient or None, the fields it reads): CEL is
        # pure, and handing values to it costs far more than looking the answer up.
        self._memo: dict[tuple[str, str | None, Any], str | None] = {}
        # Compiled decisions by (sender, message type, purposes, day), each with its outcomes
        # by the vector of condition results. The policy set is immutable, so they stay true.
        self._plans: dict[tuple[str, str, frozenset[str] | None, dt.date], _Plan] = {}
        self._members: dict[str, set[str]] = {}
        for agreement in policies.agreements:
            for flow in agreement.flows:
                self._grant[id(flow)] = Grant(
                    agreement.id,
                    agreement.version,
                    flow.id,
                    flow.purpose,
                    tuple(sorted(flow.fields)),
                )
                if flow.prohibited:
                    self._prohibition[id(flow)] = Block(
                        agreement.id,
                        agreement.version,
                        flow.id,
                        "prohibited",
                        tuple(sorted(flow.prohibited)),
                        "prohibited by the flow",
                    )
                self._prepare_condition(agreement, flow)
                for mt in flow.message_types:
                    self._typed.add(mt)
                    self._members.setdefault(mt, set()).update(agreement.parties)
                    for sender in flow.senders:
                        self._index.setdefault((sender, mt), []).append((agreement, flow))
        self._view_paths = sorted(
            p
            for p in (self._message_paths or ())
            if not any(p.startswith(q + ".") for q in (self._message_paths or ()))
        )
        # hard blocks indexed by the party they protect data from
        self._blocks: dict[str, list[tuple[HardBlock, Block]]] = {}
        for a in policies.agreements:
            if a.status == "draft":
                continue
            for b in a.hard_blocks:
                record = Block(
                    a.id, a.version, b.id, "hard_block", tuple(sorted(b.fields)), b.reason
                )
                for party in b.parties:
                    self._blocks.setdefault(party, []).append((b, record))

    def _prepare_condition(self, agreement: Agreement, flow: Flow) -> None:
        """Compile-time work on a flow's condition, so that a decision evaluates it cheaply:
        note which message fields it reads (only those are handed to CEL), and
        fold the recipient's register attributes into one program per recipient."""
        if flow.program is None or flow.condition is None:
            self._per_recipient[id(flow)] = False
            return
        paths = _MESSAGE_PATH.findall(flow.condition)
        if self._message_paths is not None:
            if re.search(r"\bmessage\b(?!\.[a-z_])", flow.condition):
                self._message_paths = None  # the whole message is used: hand it all over
            else:
                self._message_paths.update(p.removeprefix("message.") for p in paths)
        uses_recipient = "recipient" in flow.program.variables()
        self._per_recipient[id(flow)] = uses_recipient
        if not uses_recipient:
            return
        for party_id in flow.recipients:
            party = self.policies.parties[party_id].as_cel()
            folded = _RECIPIENT_ATTR.sub(_literal(party), flow.condition)
            try:
                program = cel.compile(folded)
            except ValueError:  # pragma: no cover - the original compiled, so this does too
                continue
            if "recipient" not in program.variables():
                self._programs[(id(flow), party_id)] = program

    def decide(
        self,
        sender: str,
        message_type: str,
        now: dt.datetime,
        purposes: Iterable[str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Decision:
        today = now.date()
        wanted = frozenset(purposes) if purposes else None
        key = (sender, message_type, wanted, today)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(sender, message_type, wanted, today)  # raises refusals
            if len(self._plans) >= _PLANS_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        results = self._condition_results(plan, sender, payload or {})
        vector = tuple(results[k] for k in plan.checks)
        outcome = plan.outcomes.get(vector)
        if outcome is None:
            outcome = self._outcome(plan, sender, message_type, results)
            if len(plan.outcomes) >= _OUTCOMES_SIZE:
                plan.outcomes.clear()
            plan.outcomes[vector] = outcome
        recipients, considered = outcome
        if not recipients:
            raise SharingRefused(
                f"no recipient is entitled to this {message_type} from {sender!r} "
                "(conditions or blocks exclude every recipient)",
                reason="no_recipient",
                rules=[c.to_dict() for c in considered],
            )
        return Decision(
            sender,
            message_type,
            now,
            recipients,
            considered,
            plan.warnings,
            tuple(sorted(wanted)) if wanted else (),
        )

    def _plan(
        self, sender: str, message_type: str, wanted: frozenset[str] | None, today: dt.date
    ) -> _Plan:
        """What does not depend on the message: the flows that apply on ``today`` for these
        purposes, the ones that do not and why, and the conditions left to evaluate."""
        candidates = self._index.get((sender, message_type), [])
        if not candidates:
            if message_type not in self._typed:
                raise SharingRefused(
                    f"no information sharing agreement covers {message_type}",
                    reason="no_agreement",
                )
            if sender not in self._members[message_type]:
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
        # Flows for purposes that were not asked for are left out of the explanation: the
        # sender chose the purposes. Only when none matches is that the refusal.
        on_purpose = 0
        for agreement, flow in candidates:
            if wanted is not None and flow.purpose not in wanted:
                continue
            on_purpose += 1
            reason = agreement.not_in_force_reason(today)
            if reason:
                considered.append(_consider(agreement, flow, None, "not_in_force", reason))
                continue
            applicable.append((agreement, flow))
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
        checks: dict[tuple[str, str | None], tuple[Any, dict[str, Any] | None]] = {}
        for _, flow in applicable:
            if flow.program is None or flow.condition is None:
                continue
            for party in sorted(flow.recipients - {sender}):
                per_party = self._per_recipient[id(flow)]
                ck = (flow.condition, party if per_party else None)
                if ck not in checks:
                    program = self._programs.get((id(flow), party), flow.program)
                    needs_var = program is flow.program and per_party
                    checks[ck] = (
                        program,
                        self.policies.parties[party].as_cel() if needs_var else None,
                    )
        warnings = tuple(
            sorted(
                {
                    f"{a.id} v{a.version} review was due on {a.review_date}"
                    for a, _ in applicable
                    if a.review_overdue(today)
                }
            )
        )
        return _Plan(applicable, tuple(considered), warnings, tuple(checks), checks)

    def _condition_results(
        self, plan: _Plan, sender: str, payload: Mapping[str, Any]
    ) -> dict[tuple[str, str | None], str | None]:
        """Each condition's outcome for this message: None when it holds, "" when false,
        else why it could not be evaluated."""
        results: dict[tuple[str, str | None], str | None] = {}
        if not plan.checks:
            return results
        view = self._condition_view(payload)
        view_key = (sender, _frozen(view))
        context: cel.Context | None = None
        for ck in plan.checks:
            memo_key = (*ck, view_key)
            found = self._memo.get(memo_key, _UNKNOWN)
            if found is _UNKNOWN:
                if context is None:
                    context = cel.Context(
                        {"message": view, "sender": self.policies.parties[sender].as_cel()}
                    )
                program, recipient = plan.programs[ck]
                found = _evaluate(program, context, recipient)
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[memo_key] = found
            results[ck] = found  # type: ignore[assignment]
        return results

    def _outcome(
        self,
        plan: _Plan,
        sender: str,
        message_type: str,
        results: dict[tuple[str, str | None], str | None],
    ) -> tuple[tuple[RecipientDecision, ...], tuple[Consideration, ...]]:
        """Recipients and explanations for one combination of condition outcomes."""
        considered = list(plan.considered)
        shares: dict[str, _Share] = {}
        for agreement, flow in plan.applicable:
            per_party = self._per_recipient[id(flow)]
            for party in sorted(flow.recipients - {sender}):
                if flow.program is not None and flow.condition is not None:
                    failed = results[(flow.condition, party if per_party else None)]
                    if failed is not None:
                        outcome = "condition_false" if failed == "" else "condition_error"
                        detail = (
                            f"condition is false: {flow.condition}"
                            if failed == ""
                            else f"{flow.condition}: {failed}"
                        )
                        considered.append(_consider(agreement, flow, party, outcome, detail))
                        continue
                share = shares.setdefault(party, _Share())
                share.grants.append(self._grant[id(flow)])
                if flow.prohibited:
                    share.blocks.append(self._prohibition[id(flow)])
        for party, share in shares.items():
            for block, record in self._blocks.get(party, ()):
                if block.applies(party, message_type):
                    share.blocks.append(record)
        kept: list[RecipientDecision] = []
        for party, sh in sorted(shares.items()):
            if not sh.blocks or _allowed_after_blocks(sh, message_type):
                kept.append(RecipientDecision(party, tuple(sh.grants), tuple(sh.blocks)))
            else:
                first = sh.grants[0]
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
        return tuple(kept), tuple(considered)

    def _condition_view(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Only the fields the conditions name, with the objects that hold them, so that
        ``has(message.risk.mappa)`` sees ``risk`` even when ``mappa`` is absent. (Handing
        values to CEL costs microseconds each, far more than evaluating a condition.)"""
        if self._message_paths is None:
            return dict(payload)
        view: dict[str, Any] = {}
        for path in self._view_paths:
            src: Any = payload
            dst = parent_dst = view
            parts = path.split(".")
            for i, part in enumerate(parts):
                if part not in src:
                    if i > 0:  # e.g. has(message.risk.mappa), risk.all(...): the whole object
                        parent_dst[parts[i - 1]] = dict(src)
                    break
                value = src[part]
                if i == len(parts) - 1 or not isinstance(value, Mapping):
                    dst[part] = value
                    break
                parent_dst, dst, src = dst, dst.setdefault(part, {}), value
        return view

    def recheck(
        self, decision: Decision, now: dt.datetime, payload: Mapping[str, Any]
    ) -> dict[str, RecipientDecision | str]:
        """Re-evaluate a stored decision at delivery time against the agreements now in force.

        Per original recipient: the share still permitted (never wider than the stored one:
        fields narrowed path by path, current prohibitions and hard blocks applied), or a
        string naming why it is withheld."""
        try:
            current = self.decide(
                decision.sender, decision.message_type, now, decision.purposes or None, payload
            )
        except SharingRefused as e:
            return {r.party: e.detail for r in decision.recipients}
        out: dict[str, RecipientDecision | str] = {}
        for rd in decision.recipients:
            now_rd = current.recipient(rd.party)
            if now_rd is None:
                why = [c.detail for c in current.considered if self._concerns(c, rd.party)]
                out[rd.party] = (
                    "; ".join(why) or f"no agreement in force now shares with {rd.party}"
                )
                continue
            before = rd.allowed
            grants = tuple(
                Grant(g.agreement_id, g.agreement_version, g.flow_id, g.purpose, kept)
                for g in now_rd.grants
                if (kept := narrow(g.fields, before))
            )
            if not grants:
                out[rd.party] = (
                    "the agreements now in force no longer permit the fields first granted "
                    f"to {rd.party}"
                )
                continue
            blocks = tuple(dict.fromkeys(now_rd.blocks + rd.blocks))  # each rule once
            narrowed = RecipientDecision(rd.party, grants, blocks)
            out[rd.party] = (
                narrowed
                if _has_unblocked(narrowed.allowed, narrowed.blocked, decision.message_type)
                else f"every field for {rd.party} is now blocked"
            )
        return out

    def _concerns(self, c: Consideration, party: str) -> bool:
        """Whether a flow that did not apply could have shared with ``party``."""
        if c.recipient is not None:
            return c.recipient == party
        agreement = self.policies.agreement(c.agreement_id)
        flow = next((f for f in agreement.flows if f.id == c.flow_id), None) if agreement else None
        return flow is not None and party in flow.recipients


def narrow(granted: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The paths covered by both sets, path-aware: ``person`` narrowed by
    ``person.given_name`` is ``person.given_name``."""
    allowed_set = set(allowed)
    out: set[str] = set()
    for g in granted:
        for a in allowed_set:
            if g == a or g.startswith(a + "."):
                out.add(g)
            elif a.startswith(g + "."):
                out.add(a)
    return tuple(sorted(out))


def _covers(paths: Iterable[str], leaf: str) -> bool:
    return any(leaf == p or leaf.startswith(p + ".") or p.startswith(leaf + ".") for p in paths)


def _allowed_after_blocks(share: _Share, message_type: str) -> bool:
    return _has_unblocked(
        {f for g in share.grants for f in g.fields},
        {f for b in share.blocks for f in b.fields},
        message_type,
    )


def _has_unblocked(allowed: Iterable[str], blocked: Iterable[str], message_type: str) -> bool:
    """Whether some field of the message type that an allowed path covers is not blocked.
    (An allowed ``person`` with a blocked ``person.date_of_birth`` still discloses the rest
    of ``person``; an allowed object whose every field is blocked discloses nothing.)"""
    blocked_set = set(blocked)
    leaves = MESSAGE_TYPES[message_type].leaves
    for path in allowed:
        below = [leaf for leaf in leaves if leaf == path or leaf.startswith(path + ".")]
        if any(not _covers_strict(blocked_set, leaf) for leaf in below or [path]):
            return True
    return False


def _covers_strict(blocked: set[str], path: str) -> bool:
    """True when ``path`` lies entirely inside a blocked path."""
    return any(path == b or path.startswith(b + ".") for b in blocked)


def _frozen(value: Any) -> Any:
    """A hashable copy of a JSON value, to key condition outcomes on the fields read."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("__list__", *(_frozen(v) for v in value))
    return (type(value).__name__, value)


def _literal(values: dict[str, Any]) -> Callable[[re.Match[str]], str]:
    """Replace ``recipient.<attr>`` by the attribute's value as a CEL string literal."""

    def replace(match: re.Match[str]) -> str:
        return json.dumps(values[match.group(1)])

    return replace


def _evaluate(program: Any, context: cel.Context, recipient: dict[str, Any] | None) -> str | None:
    """None when the condition holds; "" when it is false; else why it could not be
    evaluated (an error counts as false: fail closed)."""
    if recipient is not None:
        context.add_variable("recipient", recipient)
    try:
        return None if program.execute(context) is True else ""
    except Exception as e:  # noqa: BLE001 - any failure to evaluate counts as false
        return f"{type(e).__name__} {e}"


def _consider(
    agreement: Agreement, flow: Flow, recipient: str | None, outcome: str, detail: str
) -> Consideration:
    return Consideration(agreement.id, agreement.version, flow.id, recipient, outcome, detail)
