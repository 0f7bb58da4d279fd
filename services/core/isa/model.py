"""Immutable in-memory form of the register of parties and the agreements."""

from __future__ import annotations

import datetime as dt
import re
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


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<w>[0-9]+)W)?(?:(?P<d>[0-9]+)D)?"
    r"(?:T(?=[0-9])(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?$"
)


def parse_duration(text: str) -> dt.timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (``PT24H``, ``P1D``).
    Years and months are refused: their length varies, and a deadline must not."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration of weeks, days, hours, minutes or seconds "
            "(e.g. PT24H, P1D, P1DT12H)"
        )
    n = {k: int(v) if v else 0 for k, v in m.groupdict().items()}
    return dt.timedelta(weeks=n["w"], days=n["d"], hours=n["h"], minutes=n["m"], seconds=n["s"])


@dataclass(frozen=True)
class Duty:
    """What a flow asks of its recipients: acknowledge within a period after the delivery
    is recorded (``within``), and/or by a point relative to a date of the message
    (``before_field`` at 00:00 UTC minus ``before_offset``); with both, the earlier wins.
    Unacknowledged at the due time, the duty escalates to the sender and ``escalate_to``."""

    within: dt.timedelta | None
    within_text: str | None
    before_field: str | None
    before_offset: dt.timedelta
    before_offset_text: str | None
    escalate_to: frozenset[str]
    actions: tuple[str, ...] = ()

    @property
    def rule(self) -> str:
        """Human-readable, without personal data: ``within PT24H; at least P1D before
        release.date``."""
        parts = []
        if self.within_text:
            parts.append(f"within {self.within_text}")
        if self.before_field:
            if self.before_offset_text and self.before_offset:
                parts.append(f"at least {self.before_offset_text} before {self.before_field}")
            else:
                parts.append(f"before {self.before_field}")
        return "; ".join(parts)


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
    #: the acknowledgement duty this flow puts on its recipients, if any
    duty: Duty | None = None


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


def agreement_ref(agreement_id: str, version: str) -> str:
    """How an agreement version is referred to everywhere (logs, duties, events, exports):
    ``id@version``."""
    return f"{agreement_id}@{version}"


def rule_ref(agreement_id: str, version: str, rule: str) -> str:
    """How one rule of an agreement version - a flow, or a hard block - is referred to
    everywhere (explanations, disclosure records, a party's receivable fields):
    ``id@version#rule``."""
    return f"{agreement_ref(agreement_id, version)}#{rule}"


def parse_agreement_ref(ref: str) -> tuple[str, str]:
    """The id and version of an ``id@version`` reference (:func:`agreement_ref`); the
    version is empty when ``ref`` names no version."""
    agreement_id, _, version = ref.partition("@")
    return agreement_id, version


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
        return agreement_ref(self.id, self.version)


@dataclass(frozen=True)
class PolicySet:
    parties: dict[str, Party]
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)
    #: the files that say ``fictional: true`` (demo or test data; refused in production)
    fictional: tuple[str, ...] = ()

    def agreement(self, agreement_id: str) -> Agreement | None:
        return next((a for a in self.agreements if a.id == agreement_id), None)
