"""Immutable in-memory form of the register of parties and the agreements."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    kind: str
    area: str | None = None
    competent_authority: bool = False


@dataclass(frozen=True)
class Flow:
    id: str
    senders: frozenset[str]
    recipients: frozenset[str]
    message_types: frozenset[str]
    purpose: str
    fields: frozenset[str]
    description: str = ""


@dataclass(frozen=True)
class Agreement:
    id: str
    title: str
    version: str
    status: str
    parties: frozenset[str]
    purposes: dict[str, str]
    lawful_basis: tuple[str, ...]
    effective_from: dt.date
    expires_on: dt.date
    flows: tuple[Flow, ...]
    review_date: dt.date | None = None
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

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


@dataclass(frozen=True)
class PolicySet:
    parties: dict[str, Party]
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)

    def agreement(self, agreement_id: str) -> Agreement | None:
        return next((a for a in self.agreements if a.id == agreement_id), None)
