"""Immutable in-memory form of the register of parties and the agreements."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    kind: str
    area: str | None = None
    competent_authority: bool = False

    def as_cel(self) -> dict[str, Any]:
        """What a flow condition sees as ``sender`` or ``recipient``."""
        return {"id": self.id, "kind": self.kind, "area": self.area or ""}


@dataclass(frozen=True)
class AgreementParty:
    id: str
    role: str  # controller | joint-controller | processor
    competent_authority: bool


@dataclass(frozen=True)
class Flow:
    id: str
    senders: frozenset[str]
    recipients: frozenset[str]
    message_types: frozenset[str]
    purpose: str
    fields: frozenset[str]
    prohibited: frozenset[str] = frozenset()
    condition: str | None = None
    legal_regime: dict[str, str] = field(default_factory=dict)
    description: str = ""
    program: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class HardBlock:
    id: str
    fields: frozenset[str]
    parties: frozenset[str]
    reason: str
    message_types: frozenset[str] = frozenset()  # empty: every message type

    def applies(self, party: str, message_type: str) -> bool:
        return party in self.parties and (
            not self.message_types or message_type in self.message_types
        )


@dataclass(frozen=True)
class Agreement:
    id: str
    title: str
    version: str
    status: str
    parties: frozenset[str]
    purposes: dict[str, str]
    legal_gateways: tuple[str, ...]
    effective_from: dt.date
    expires_on: dt.date
    flows: tuple[Flow, ...]
    review_date: dt.date | None = None
    type: str = "information-sharing-protocol"
    supersedes: str | None = None
    party_roles: tuple[AgreementParty, ...] = ()
    signatories: tuple[dict[str, str], ...] = ()
    data_subjects: tuple[str, ...] = ()
    data_items: dict[str, dict[str, str]] = field(default_factory=dict)
    retention: dict[str, str] = field(default_factory=dict)
    dpia_reference: str | None = None
    breach_contacts: tuple[dict[str, str], ...] = ()
    hard_blocks: tuple[HardBlock, ...] = ()
    source: str = ""

    def not_in_force_reason(self, today: dt.date) -> str | None:
        """Why this agreement shares nothing on ``today``, or None when it is in force."""
        if self.status != "active":
            return f"{self.id} v{self.version} is {self.status}"
        if today < self.effective_from:
            return f"{self.id} v{self.version} is not effective until {self.effective_from}"
        if today > self.expires_on:
            return f"{self.id} v{self.version} expired on {self.expires_on}"
        return None

    def review_overdue(self, today: dt.date) -> bool:
        return self.review_date is not None and today > self.review_date

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


@dataclass(frozen=True)
class PolicySet:
    parties: dict[str, Party]
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)

    def agreement(self, agreement_id: str) -> Agreement | None:
        return next((a for a in self.agreements if a.id == agreement_id), None)
