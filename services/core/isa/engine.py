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

How a decision stays cheap, without changing what it decides: a *plan* per (sender, type,
purposes, day) holds the applicable flows, the conditions to evaluate and, per candidate
recipient, its share for every combination of the conditions that concern it; a decision
then evaluates the conditions (in Python where ``conditions`` is certain of CEL's answer,
by CEL otherwise, memoised) and looks the shares up. Outcomes are kept per combination of
condition results. ``tests/core/isa/test_isa_reference.py`` holds the engine to the rules
applied plainly.

One module on purpose (about 900 lines): the rules above, the index built at load time and
the one pure ``decide`` that applies them are read together when an agreement's effect is
questioned, and nothing else in the product decides a share.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import cel

from ..errors import SharingRefused
from ..messages import MESSAGE_TYPES
from ..messages.fields import Projector, leaf_paths, projector
from .conditions import Evaluator, Unsure, compile_condition
from .model import Agreement, Flow, HardBlock, PolicySet, rule_ref

_MESSAGE_PATH = re.compile(r"\bmessage(?:\.[a-z_]+)+")
_MEMO_SIZE = 65_536
_PLANS_SIZE = 16_384
_OUTCOMES_SIZE = 256
#: a recipient's shares are compiled for every combination of at most this many conditions
_SHARE_TABLE_CONDITIONS = 6
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
    def _projector(self) -> Projector:
        return projector(self.allowed, self.blocked)

    def project(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        projector = self._projector
        compiled = projector.function  # once compiled, call it without the wrapper
        return compiled(payload) if compiled is not None else projector(payload)

    @classmethod
    def _of(
        cls,
        party: str,
        grants: tuple[Grant, ...],
        blocks: tuple[Block, ...],
        allowed: frozenset[str],
        blocked: frozenset[str],
    ) -> RecipientDecision:
        """As the engine builds one, with the field sets it has already computed."""
        decision = cls(party, grants, blocks)
        decision.__dict__["allowed"] = allowed  # what the cached properties would compute
        decision.__dict__["blocked"] = blocked
        return decision

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


@dataclass(frozen=True)
class _Check:
    """One condition to evaluate for a message: the source evaluated (the flow's, or its
    form folded for one recipient), its CEL program, the recipient handed to it when the
    recipient could not be folded in, and its Python form (``conditions``) if it has one."""

    key: tuple[str, str | None]
    program: Any
    recipient: dict[str, Any] | None
    python: Evaluator | None


@dataclass(frozen=True)
class _Entry:
    """One recipient of one applicable flow, in the order the rules consider them."""

    agreement: Agreement
    flow: Flow
    party: str
    check: int  # index into the plan's checks; -1 when the flow has no condition
    grant: Grant
    fields: frozenset[str]
    prohibition: Block | None
    condition_false: Consideration | None


#: what one recipient is left with: its decision, why it gets nothing, or no flow at all
_Share = RecipientDecision | Consideration | None


@dataclass(frozen=True)
class _Recipient:
    """One candidate recipient in a plan: its entries, the checks among them, and its share
    for each combination of those checks (bit i set: ``checks[i]`` holds), compiled with
    the plan unless there are too many combinations."""

    party: str
    entries: tuple[_Entry, ...]
    hard_blocks: tuple[Block, ...]
    checks: tuple[int, ...]
    shares: tuple[_Share, ...] | None


@dataclass
class _Plan:
    """A compiled decision for (sender, message type, purposes, day): everything that does
    not depend on the message, so that a decision only evaluates the conditions and looks
    up each recipient's share."""

    conditional: tuple[_Entry, ...]
    recipients: tuple[_Recipient, ...]
    considered: tuple[Consideration, ...]
    warnings: tuple[str, ...]
    checks: tuple[_Check, ...]
    purposes: tuple[str, ...]
    sender: dict[str, Any]
    message_type: str
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
        self._fields: dict[int, frozenset[str]] = {}
        self._per_recipient: dict[int, bool] = {}
        # a condition folded for one recipient: (flow, party) -> its source and program
        self._folded: dict[tuple[int, str], tuple[str, Any]] = {}
        self._python: dict[str, Evaluator | None] = {}
        self._message_paths: set[str] | None = set()
        # Outcomes of the conditions CEL evaluates, by (source, recipient or None, the fields
        # read): CEL is pure, and handing values to it costs far more than looking up.
        self._memo: dict[tuple[str, str | None, Any], str | None] = {}
        # Whether a recipient keeps a field, by (allowed, blocked, message type): a function
        # of the agreements' field sets alone.
        self._unblocked: dict[tuple[frozenset[str], frozenset[str], str], bool] = {}
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
                self._fields[id(flow)] = frozenset(flow.fields)
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
        self._python_form(flow.condition)
        if not uses_recipient:
            return
        by_source: dict[str, Any] = {}
        for party_id in sorted(flow.recipients):
            party = self.policies.parties[party_id].as_cel()
            folded = _RECIPIENT_ATTR.sub(_literal(party), flow.condition)
            program = by_source.get(folded)
            if program is None:
                try:
                    program = by_source[folded] = cel.compile(folded)
                except ValueError:  # pragma: no cover - the original compiled, so this does too
                    continue
            if "recipient" not in program.variables():
                self._folded[(id(flow), party_id)] = (folded, program)
                self._python_form(folded)

    def _python_form(self, source: str) -> Evaluator | None:
        if source not in self._python:
            self._python[source] = compile_condition(source)
        return self._python[source]

    def forget(self, *, plans: bool = True) -> None:
        """Drop what the engine keeps between decisions: condition outcomes and decision
        outcomes (which depend on the messages seen) and, unless ``plans`` is false, the
        plans (which depend only on sender, type, purposes and day). Decisions are the same
        either way; only their cost changes (measured by ``bench/isa_decisions.py``)."""
        self._memo.clear()
        if plans:
            self._plans.clear()
            self._unblocked.clear()
        else:
            for plan in self._plans.values():
                plan.outcomes.clear()

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
        vector = self._condition_results(plan, sender, payload or {}) if plan.checks else ()
        outcome = plan.outcomes.get(vector)
        if outcome is None:
            outcome = self._outcome(plan, vector)
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
            sender, message_type, now, recipients, considered, plan.warnings, plan.purposes
        )

    def _plan(
        self, sender: str, message_type: str, wanted: frozenset[str] | None, today: dt.date
    ) -> _Plan:
        """What does not depend on the message: the flows that apply on ``today`` for these
        purposes, the ones that do not and why, each (flow, recipient) with its grant and
        prohibition, the hard blocks on each recipient, and the conditions to evaluate."""
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
        checks: list[_Check] = []
        check_index: dict[tuple[str, str | None], int] = {}
        entries: list[_Entry] = []
        for agreement, flow in applicable:
            for party in sorted(flow.recipients - {sender}):
                index, false = -1, None
                if flow.program is not None and flow.condition is not None:
                    check = self._check(flow, flow.condition, party)
                    index = check_index.setdefault(check.key, len(checks))
                    if index == len(checks):
                        checks.append(check)
                    false = _consider(
                        agreement,
                        flow,
                        party,
                        "condition_false",
                        f"condition is false: {flow.condition}",
                    )
                entries.append(
                    _Entry(
                        agreement,
                        flow,
                        party,
                        index,
                        self._grant[id(flow)],
                        self._fields[id(flow)],
                        self._prohibition.get(id(flow)),
                        false,
                    )
                )
        by_party: dict[str, list[_Entry]] = {}
        for entry in entries:
            by_party.setdefault(entry.party, []).append(entry)
        recipients = tuple(
            self._recipient(party, tuple(by_party[party]), message_type)
            for party in sorted(by_party)
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
        return _Plan(
            tuple(e for e in entries if e.check >= 0),
            recipients,
            tuple(considered),
            warnings,
            tuple(checks),
            tuple(sorted(wanted)) if wanted else (),
            self.policies.parties[sender].as_cel(),
            message_type,
        )

    def _recipient(self, party: str, entries: tuple[_Entry, ...], message_type: str) -> _Recipient:
        hard_blocks = tuple(
            record
            for block, record in self._blocks.get(party, ())
            if block.applies(party, message_type)
        )
        checks = tuple(dict.fromkeys(e.check for e in entries if e.check >= 0))
        shares = None
        if len(checks) <= _SHARE_TABLE_CONDITIONS:
            shares = tuple(
                self._share(
                    party,
                    [e for e in entries if e.check < 0 or mask >> checks.index(e.check) & 1],
                    hard_blocks,
                    message_type,
                )
                for mask in range(1 << len(checks))
            )
        return _Recipient(party, entries, hard_blocks, checks, shares)

    def _check(self, flow: Flow, condition: str, party: str) -> _Check:
        """The condition of ``flow`` as evaluated for ``party``: folded for it when the
        condition reads the recipient's attributes, otherwise the flow's own (with the
        recipient handed over when it could not be folded in)."""
        folded = self._folded.get((id(flow), party)) if self._per_recipient[id(flow)] else None
        if folded is not None:
            source, program = folded
            return _Check((source, None), program, None, self._python_form(source))
        recipient = self.policies.parties[party].as_cel() if self._per_recipient[id(flow)] else None
        return _Check(
            (condition, party if recipient is not None else None),
            flow.program,
            recipient,
            self._python_form(condition),
        )

    def _condition_results(
        self, plan: _Plan, sender: str, payload: Mapping[str, Any]
    ) -> tuple[str | None, ...]:
        """Each check's outcome for this message: None when it holds, "" when false, else
        why it could not be evaluated. Python answers where it is certain of CEL's answer;
        CEL answers the rest, through a view of the fields the conditions read."""
        results: list[str | None] = []
        view_key: Any = None
        context: cel.Context | None = None
        for check in plan.checks:
            if check.python is not None:
                try:
                    value = check.python(payload, plan.sender, check.recipient)
                except Unsure:
                    pass
                else:
                    if type(value) is bool:
                        results.append(None if value else "")
                        continue
            if view_key is None:
                view = self._condition_view(payload)
                view_key = (sender, _frozen(view))
            memo_key = (*check.key, view_key)
            found = self._memo.get(memo_key, _UNKNOWN)
            if found is _UNKNOWN:
                if context is None:
                    context = cel.Context({"message": view, "sender": plan.sender})
                found = _evaluate(check.program, context, check.recipient)
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[memo_key] = found
            results.append(found)  # type: ignore[arg-type]
        return tuple(results)

    def _outcome(
        self, plan: _Plan, results: tuple[str | None, ...]
    ) -> tuple[tuple[RecipientDecision, ...], tuple[Consideration, ...]]:
        """Recipients and explanations for one combination of condition outcomes."""
        considered = list(plan.considered)
        for entry in plan.conditional:
            failed = results[entry.check]
            if failed is None:
                continue
            considered.append(
                entry.condition_false  # type: ignore[arg-type]
                if failed == ""
                else _consider(
                    entry.agreement,
                    entry.flow,
                    entry.party,
                    "condition_error",
                    f"{entry.flow.condition}: {failed}",
                )
            )
        kept: list[RecipientDecision] = []
        for recipient in plan.recipients:
            if recipient.shares is None:
                share = self._share(
                    recipient.party,
                    [e for e in recipient.entries if e.check < 0 or results[e.check] is None],
                    recipient.hard_blocks,
                    plan.message_type,
                )
            else:
                mask = 0
                for bit, check in enumerate(recipient.checks):
                    if results[check] is None:
                        mask |= 1 << bit
                share = recipient.shares[mask]
            if type(share) is RecipientDecision:
                kept.append(share)
            elif share is not None:
                considered.append(share)  # type: ignore[arg-type]
        return tuple(kept), tuple(considered)

    def _share(
        self,
        party: str,
        entries: list[_Entry],
        hard_blocks: tuple[Block, ...],
        message_type: str,
    ) -> _Share:
        """What ``party`` receives from the flows of ``entries`` (those that apply): the
        grants combined, less prohibitions and hard blocks; or, when they remove every
        field, why it receives nothing."""
        if not entries:
            return None
        blocks = (*(e.prohibition for e in entries if e.prohibition is not None), *hard_blocks)
        allowed = frozenset().union(*(e.fields for e in entries))
        blocked = frozenset(f for b in blocks for f in b.fields)
        if blocks and not self._keeps_a_field(allowed, blocked, message_type):
            first = entries[0].grant
            return Consideration(
                first.agreement_id,
                first.agreement_version,
                first.flow_id,
                party,
                "all_fields_blocked",
                "prohibitions or hard blocks remove every permitted field",
            )
        return RecipientDecision._of(
            party, tuple(e.grant for e in entries), blocks, allowed, blocked
        )

    def _keeps_a_field(
        self, allowed: frozenset[str], blocked: frozenset[str], message_type: str
    ) -> bool:
        key = (allowed, blocked, message_type)
        found = self._unblocked.get(key)
        if found is None:
            found = _has_unblocked(allowed, blocked, message_type)
            if len(self._unblocked) >= _MEMO_SIZE:
                self._unblocked.clear()
            self._unblocked[key] = found
        return found

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


def _has_unblocked(allowed: Iterable[str], blocked: Iterable[str], message_type: str) -> bool:
    """Whether some field of the message type that an allowed path covers is not blocked.
    (An allowed ``person`` with a blocked ``person.date_of_birth`` still discloses the rest
    of ``person``; an allowed object whose every field is blocked discloses nothing.)"""
    blocked_set = frozenset(blocked)
    return any(
        not _covers_strict(blocked_set, leaf)
        for path in allowed
        for leaf in _leaves_under(message_type, path)
    )


@lru_cache(maxsize=4096)
def _leaves_under(message_type: str, path: str) -> tuple[str, ...]:
    """The fields of the message type at or below ``path`` (``path`` itself if none)."""
    leaves = MESSAGE_TYPES[message_type].leaves
    return tuple(leaf for leaf in leaves if leaf == path or leaf.startswith(path + ".")) or (path,)


def _covers_strict(blocked: frozenset[str], path: str) -> bool:
    """True when ``path`` lies entirely inside a blocked path: ``path`` or one of the
    objects that hold it is blocked."""
    if path in blocked:
        return True
    dot = path.find(".")
    while dot != -1:
        if path[:dot] in blocked:
            return True
        dot = path.find(".", dot + 1)
    return False


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
