"""``isa-broker isa lint``: checks an IG officer runs before agreements go live.

Errors (the set would be refused at start-up): schema violations, unknown parties or fields,
bad CEL conditions, inconsistent references. Warnings (the set loads, but should be looked
at): flow fields missing from the data-item catalogue, special category data shared without
a condition, Part 3 flows from a body that is not a competent authority, a field both allowed
and hard-blocked for one party, agreements past their review date or expiring soon, parties
that have not signed, expired agreements still marked active."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ..errors import AgreementFileInvalid, PartyRegisterInvalid
from ..messages import MESSAGE_TYPES
from .loader import _read_yaml, _validator, load_parties, parse_agreement
from .model import Agreement, Party

SOON_DAYS = 90
REVIEW_SOON_DAYS = 30


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    source: str  # file name
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7} {self.source}: {self.message}"


def lint(policies_dir: Path, schemas_dir: Path, today: dt.date) -> list[Finding]:
    findings: list[Finding] = []
    try:
        parties = load_parties(policies_dir / "parties.yaml", schemas_dir)
    except PartyRegisterInvalid as e:
        return [Finding("error", "parties.yaml", e.detail)]
    validator = _validator(schemas_dir, "isa-agreement.schema.json")
    agreements: list[Agreement] = []
    for path in sorted((policies_dir / "agreements").glob("*.yaml")):
        try:
            doc = _read_yaml(path, AgreementFileInvalid)
            agreement = parse_agreement(doc, path.name, parties, validator)
        except AgreementFileInvalid as e:
            findings.append(Finding("error", path.name, e.detail.removeprefix(f"{path.name}: ")))
            continue
        if any(a.id == agreement.id for a in agreements):
            findings.append(
                Finding("error", path.name, f"agreement id {agreement.id} is used twice")
            )
            continue
        agreements.append(agreement)
    for a in agreements:
        findings.extend(_agreement_warnings(a, parties, today))
    findings.extend(_contradictions(agreements))
    return findings


def _classification(a: Agreement, message_type: str, path: str) -> set[str]:
    """Classifications the catalogue gives ``path`` (itself, an ancestor or descendants);
    empty when the path is not catalogued."""
    items = a.data_items.get(message_type, {})
    found = {c for k, c in items.items() if path == k or path.startswith(k + ".")}
    if found:
        return found
    leaves = [
        p
        for p, leaf in MESSAGE_TYPES[message_type].paths.items()
        if leaf and p.startswith(path + ".")
    ]
    below = {c for k, c in items.items() if k.startswith(path + ".")}
    covered = all(any(leaf == k or leaf.startswith(k + ".") for k in items) for leaf in leaves)
    return below if leaves and covered else set()


def _agreement_warnings(a: Agreement, parties: dict[str, Party], today: dt.date) -> list[Finding]:
    out: list[Finding] = []

    def warn(message: str) -> None:
        out.append(Finding("warning", a.source, f"{a.id}: {message}"))

    for flow in a.flows:
        for mt in sorted(flow.message_types):
            special = False
            for path in sorted(flow.fields):
                classes = _classification(a, mt, path)
                if not classes:
                    warn(f"flow {flow.id}: field {mt}:{path} is not in the data-item catalogue")
                special = special or "special-category" in classes
            if special and flow.condition is None:
                warn(f"flow {flow.id}: shares special category data ({mt}) without a condition")
        if flow.legal_regime.get("regime") == "dpa-2018-part-3":
            for sender in sorted(flow.senders):
                role = next((r for r in a.party_roles if r.id == sender), None)
                if role is not None and not role.competent_authority:
                    warn(
                        f"flow {flow.id}: DPA 2018 Part 3 regime but sender {sender} is not a "
                        "competent authority"
                    )
        overlap = _overlap(flow.fields, flow.prohibited)
        if overlap:
            warn(f"flow {flow.id}: fields both allowed and prohibited: {', '.join(overlap)}")
    if a.status == "active":
        if today > a.expires_on:
            warn(f"status is active but it expired on {a.expires_on}; it shares nothing")
        elif (a.expires_on - today).days <= SOON_DAYS:
            warn(f"expires on {a.expires_on}, in {(a.expires_on - today).days} days")
        if a.review_date is not None and today > a.review_date:
            warn(f"review was due on {a.review_date}")
        elif a.review_date is not None and (a.review_date - today).days <= REVIEW_SOON_DAYS:
            warn(f"review is due on {a.review_date}")
        signed = {s["party"] for s in a.signatories}
        unsigned = sorted(a.parties - signed)
        if unsigned:
            warn(f"not signed by {', '.join(unsigned)}")
    return out


def _overlap(allowed: frozenset[str], blocked: frozenset[str]) -> list[str]:
    return sorted(
        {
            x
            for a in allowed
            for b in blocked
            for x in (
                (a,) if (a == b or a.startswith(b + ".")) else (b,) if b.startswith(a + ".") else ()
            )
        }
    )


def _contradictions(agreements: list[Agreement]) -> list[Finding]:
    """A field a flow allows to a party while a hard block forbids it (the block wins)."""
    out: list[Finding] = []
    blocks = [(a, b) for a in agreements if a.status != "draft" for b in a.hard_blocks]
    for a in agreements:
        for flow in a.flows:
            for party in sorted(flow.recipients):
                for ba, block in blocks:
                    for mt in sorted(flow.message_types):
                        if not block.applies(party, mt):
                            continue
                        overlap = _overlap(flow.fields, block.fields)
                        if overlap:
                            out.append(
                                Finding(
                                    "warning",
                                    a.source,
                                    (
                                        f"{a.id}: flow {flow.id} allows {', '.join(overlap)} "
                                        f"to {party}, but hard block {block.id} of {ba.id} "
                                        "forbids it (the block wins)"
                                    ),
                                )
                            )
    return out
