"""The ISA engine: for (sender, message type, purposes, time) it answers which parties may
receive the message and, per recipient, which fields and under which agreement and flow; or
it refuses, naming why.

Refusal reasons, checked in this order so the most useful one is reported:

``no_agreement``           no agreement has a flow for the message type at all, or none lets
                           this sender send it
``sender_not_party``       agreements cover the message type but the sender is party to none
``purpose_not_covered``    flows exist for the sender but none for the purposes asked
``agreement_not_in_force`` the only covering agreements are expired, suspended, draft,
                           terminated or not yet effective
``no_recipient``           flows in force exist but name no recipient other than the sender
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SharingRefused
from ..messages.fields import leaf_paths, project
from .model import Agreement, Flow, PolicySet


@dataclass(frozen=True)
class Grant:
    agreement_id: str
    agreement_version: str
    flow_id: str
    purpose: str
    fields: tuple[str, ...]

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
class RecipientDecision:
    party: str
    grants: tuple[Grant, ...]

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(f for g in self.grants for f in g.fields)

    def project(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return project(payload, self.allowed)

    def disclosed(self, payload: Mapping[str, Any]) -> list[str]:
        return leaf_paths(self.project(payload))

    def to_dict(self) -> dict[str, Any]:
        return {"party": self.party, "grants": [g.to_dict() for g in self.grants]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipientDecision:
        return cls(d["party"], tuple(Grant.from_dict(g) for g in d["grants"]))


@dataclass(frozen=True)
class Decision:
    sender: str
    message_type: str
    decided_at: dt.datetime
    recipients: tuple[RecipientDecision, ...]

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
            "recipients": [r.to_dict() for r in self.recipients],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(
            sender=d["sender"],
            message_type=d["message_type"],
            decided_at=dt.datetime.fromisoformat(d["decided_at"]),
            recipients=tuple(RecipientDecision.from_dict(r) for r in d["recipients"]),
        )


class IsaEngine:
    """Decides shares against one immutable :class:`PolicySet`. Swap the engine to reload."""

    def __init__(self, policies: PolicySet) -> None:
        self.policies = policies

    def decide(
        self,
        sender: str,
        message_type: str,
        now: dt.datetime,
        purposes: Iterable[str] | None = None,
    ) -> Decision:
        today = now.date()
        wanted = set(purposes) if purposes else None
        typed = [
            (a, f)
            for a in self.policies.agreements
            for f in a.flows
            if message_type in f.message_types
        ]
        if not typed:
            raise SharingRefused(
                f"no information sharing agreement covers {message_type}", reason="no_agreement"
            )
        if not any(sender in a.parties for a, _ in typed):
            ids = sorted({a.id for a, _ in typed})
            raise SharingRefused(
                f"party {sender!r} is not a party to any agreement covering {message_type} "
                f"({', '.join(ids)})",
                reason="sender_not_party",
            )
        own = [(a, f) for a, f in typed if sender in f.senders]
        if not own:
            raise SharingRefused(
                f"no flow in any agreement permits {sender!r} to send {message_type}",
                reason="no_agreement",
            )
        if wanted is not None:
            on_purpose = [(a, f) for a, f in own if f.purpose in wanted]
            if not on_purpose:
                allowed = ", ".join(sorted({f.purpose for _, f in own}))
                raise SharingRefused(
                    f"purpose(s) {', '.join(sorted(wanted))} not covered for {sender!r} sending "
                    f"{message_type}; agreed purposes: {allowed}",
                    reason="purpose_not_covered",
                )
            own = on_purpose
        in_force = [(a, f) for a, f in own if a.not_in_force_reason(today) is None]
        if not in_force:
            reasons = sorted({r for a, _ in own if (r := a.not_in_force_reason(today))})
            raise SharingRefused(
                "no agreement in force permits this share: " + "; ".join(reasons),
                reason="agreement_not_in_force",
            )
        recipients = _group_by_recipient(in_force, sender)
        if not recipients:
            raise SharingRefused(
                f"agreements in force name no recipient for {message_type} from {sender!r}",
                reason="no_recipient",
            )
        return Decision(sender, message_type, now, recipients)

    def recheck(self, decision: Decision, now: dt.datetime) -> dict[str, RecipientDecision | str]:
        """Re-evaluate a stored decision at delivery time.

        Each grant is kept only while its agreement is in force and its flow still lets the
        sender send this message type to this recipient for the same purpose; its fields are
        narrowed to what the flow allows now. Returns, per original recipient, the narrowed
        :class:`RecipientDecision` or a string naming why the share is withheld."""
        out: dict[str, RecipientDecision | str] = {}
        for rd in decision.recipients:
            kept: list[Grant] = []
            why: list[str] = []
            for g in rd.grants:
                agreement = self.policies.agreement(g.agreement_id)
                if agreement is None:
                    why.append(f"{g.agreement_id} no longer exists")
                    continue
                reason = agreement.not_in_force_reason(now.date())
                if reason:
                    why.append(reason)
                    continue
                flow = next((f for f in agreement.flows if f.id == g.flow_id), None)
                if (
                    flow is None
                    or rd.party not in flow.recipients
                    or decision.sender not in flow.senders
                    or decision.message_type not in flow.message_types
                    or flow.purpose != g.purpose
                ):
                    why.append(
                        f"{agreement.ref} flow {g.flow_id} no longer permits {decision.sender} "
                        f"to send {decision.message_type} to {rd.party} for {g.purpose}"
                    )
                    continue
                fields = narrow(g.fields, flow.fields)
                if not fields:
                    why.append(f"{agreement.ref} flow {g.flow_id} no longer permits those fields")
                    continue
                kept.append(Grant(g.agreement_id, agreement.version, g.flow_id, g.purpose, fields))
            out[rd.party] = RecipientDecision(rd.party, tuple(kept)) if kept else "; ".join(why)
        return out


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


def _group_by_recipient(
    flows: list[tuple[Agreement, Flow]], sender: str
) -> tuple[RecipientDecision, ...]:
    grants: dict[str, list[Grant]] = {}
    for agreement, flow in flows:
        for party in sorted(flow.recipients - {sender}):
            grants.setdefault(party, []).append(
                Grant(
                    agreement.id,
                    agreement.version,
                    flow.id,
                    flow.purpose,
                    tuple(sorted(flow.fields)),
                )
            )
    return tuple(RecipientDecision(p, tuple(gs)) for p, gs in sorted(grants.items()))
