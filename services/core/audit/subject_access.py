"""Subject access (UK GDPR Art 15; DPA 2018 s45 and s62) and information governance queries
on the disclosure log, shared by the gateway (``/v1/audit/subject-access``,
``/v1/audit/disclosures``) and the ``isa-broker audit`` command.

Each entry becomes one :class:`Disclosure` line: when, what happened, who sent it and to
whom, under which agreement(s), version, flow, purpose and lawful basis (the agreement's
``legal_gateways``), the fields disclosed and withheld by name, and the retention period
when the entry carries one. Lines hold ids, pseudonyms and field names, never a value.

Every search is itself logged (event ``subject_access`` or ``ig_query``) with the client,
the query, the pseudonym(s) searched - never the identifiers - and the count returned."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field

from ..isa.model import PolicySet, agreement_ref, parse_agreement_ref, rule_ref
from ..messages.models import PersonIdentifiers
from ..store.subject_access import DisclosureQuery

SUBJECT_ACCESS_EVENT = "subject_access"
IG_QUERY_EVENT = "ig_query"
#: first characters a spreadsheet reads as a formula (CSV injection, OWASP)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Disclosure(BaseModel):
    """One disclosure-log entry as a line of a subject access or IG export."""

    seq: int = Field(description="Position in the disclosure log")
    at: dt.datetime = Field(description="When it happened (UTC)")
    event: str = Field(
        description="delivered | withheld | dead_lettered | no_channel | accepted | refused "
        "| amended | cancelled | ... | duty_created | duty_acknowledged | duty_escalated"
    )
    message_id: str | None
    message_type: str | None
    sender: str | None = Field(description="The party that sent the message")
    recipient: str | None = Field(description="The party it was (or was not) disclosed to")
    actor: str | None = Field(description="The party that acted, when not the sender")
    person: str | None = Field(description="Keyed pseudonym the entry is keyed by")
    agreements: list[str] = Field(description="Agreement(s) as id@version")
    flows: list[str] = Field(description="Flow(s) as id@version#flow")
    purposes: list[str]
    lawful_basis: list[str] = Field(description="The agreements' legal gateways")
    fields_disclosed: list[str] = Field(description="Dotted paths of the fields disclosed")
    fields_withheld: list[str] = Field(description="Dotted paths of the fields withheld")
    retention: str | None = Field(None, description="Retention period (ISO 8601) if recorded")
    retain_until: str | None = Field(None, description="End of retention if recorded")
    delivery_id: str | None = None
    channel: str | None = None
    reason: str | None = Field(None, description="Why refused, withheld or dead-lettered")


COLUMNS = tuple(Disclosure.model_fields)


class DisclosureSource(Protocol):
    """The store queries used here (``SubjectAccessStore``, mixed into the store)."""

    async def subject_access_entries(self, pseudonyms: Sequence[str]) -> list[dict[str, Any]]: ...

    async def disclosure_entries(
        self, query: DisclosureQuery, *, after: int = ..., limit: int = ...
    ) -> tuple[list[dict[str, Any]], int]: ...

    async def audit(self, event_name: str, **fields: Any) -> None: ...


async def subject_access(
    store: DisclosureSource,
    pseudonymise: Callable[[str], str],
    policies: PolicySet,
    person: PersonIdentifiers,
    *,
    actor: str,
    client_id: str,
) -> list[Disclosure]:
    """Every disclosure-log entry about ``person`` (by any of its identifiers), logged."""
    pseudonyms = sorted({pseudonymise(k) for k in person.identifiers()})
    lines = [disclosure(e, policies) for e in await store.subject_access_entries(pseudonyms)]
    await store.audit(
        SUBJECT_ACCESS_EVENT,
        actor=actor,
        detail={
            "client_id": client_id,
            "query": "subject_access",
            "persons": pseudonyms,
            "entries": len(lines),
        },
    )
    return lines


async def disclosures(
    store: DisclosureSource,
    policies: PolicySet,
    query: DisclosureQuery,
    *,
    actor: str,
    client_id: str,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[Disclosure], int]:
    """A page of the disclosures ``query`` matches, logged; and the next ``after``."""
    rows, next_after = await store.disclosure_entries(query, after=after, limit=limit)
    lines = [disclosure(e, policies) for e in rows]
    await store.audit(
        IG_QUERY_EVENT,
        actor=actor,
        detail={
            "client_id": client_id,
            "query": "disclosures",
            **query.logged(),
            "after": after,
            "entries": len(lines),
        },
    )
    return lines, next_after


def disclosure(entry: Mapping[str, Any], policies: PolicySet) -> Disclosure:
    """One entry (with its message's ``sender`` and ``decision``) as an export line."""
    detail: Mapping[str, Any] = entry.get("detail") or {}
    recipient = entry.get("recipient")
    grants = _grants(detail, entry.get("decision"), recipient)
    refs = sorted({(g["agreement"], g["version"]) for g in grants})
    if not refs and isinstance(detail.get("agreement"), str) and "@" in detail["agreement"]:
        agreement_id, version = parse_agreement_ref(detail["agreement"])  # duty entries
        refs = [(agreement_id, version)]
        grants = [{"agreement": agreement_id, "version": version, "flow": detail.get("flow")}]
    fields = sorted(str(f) for f in detail.get("fields") or [])
    event = str(entry["event"])
    withheld = set(_blocked(entry.get("decision"), recipient))
    if event == "withheld":
        withheld |= set(fields)
    return Disclosure(
        seq=entry["seq"],
        at=entry["at"],
        event=event,
        message_id=entry.get("message_id"),
        message_type=entry.get("message_type"),
        sender=entry.get("sender") or (entry.get("actor") if event == "refused" else None),
        recipient=recipient,
        actor=entry.get("actor"),
        person=entry.get("person"),
        agreements=[agreement_ref(a, v) for a, v in refs],
        flows=sorted(
            {rule_ref(g["agreement"], g["version"], g["flow"]) for g in grants if g.get("flow")}
        ),
        purposes=sorted({str(g["purpose"]) for g in grants if g.get("purpose")}),
        lawful_basis=_lawful_basis(refs, policies),
        fields_disclosed=fields if event == "delivered" else [],
        fields_withheld=sorted(withheld),
        retention=_text(detail.get("retention")),
        retain_until=_text(detail.get("retain_until")),
        delivery_id=_text(detail.get("delivery_id")),
        channel=_text(detail.get("channel")),
        reason=_text(detail.get("reason")),
    )


def _grants(
    detail: Mapping[str, Any], decision: Any, recipient: str | None
) -> list[dict[str, Any]]:
    """The entry's own grants (a delivery outcome), else its message's decision's grants to
    ``recipient`` (or to every recipient when the entry has none)."""
    own = detail.get("grants")
    if isinstance(own, list):
        return [g for g in own if isinstance(g, dict)]
    return [g for r in _recipients(decision, recipient) for g in r.get("grants") or []]


def _blocked(decision: Any, recipient: str | None) -> Iterable[str]:
    if recipient is None:
        return []
    return [
        f
        for r in _recipients(decision, recipient)
        for b in r.get("blocks") or []
        for f in b["fields"]
    ]


def _recipients(decision: Any, recipient: str | None) -> list[dict[str, Any]]:
    if not isinstance(decision, Mapping):
        return []
    return [
        r
        for r in decision.get("recipients") or []
        if isinstance(r, dict) and (recipient is None or r.get("party") == recipient)
    ]


def _lawful_basis(refs: Iterable[tuple[str, str]], policies: PolicySet) -> list[str]:
    """The legal gateways of each agreement at that version, as loaded; an agreement at a
    version no longer loaded gives none (its YAML holds them)."""
    out: list[str] = []
    for agreement_id, version in refs:
        for a in policies.agreements:
            if a.id == agreement_id and a.version == version:
                out.extend(g for g in a.legal_gateways if g not in out)
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- CSV -------------------------------------------------------------------------------------


def csv_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading ``'`` before = + - @ (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def to_csv(lines: Iterable[Disclosure]) -> str:
    """A header row and one row per line; lists joined with ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for line in lines:
        row = []
        for name in COLUMNS:
            value = getattr(line, name)
            if isinstance(value, list):
                text = ";".join(value)
            elif isinstance(value, dt.datetime):
                text = value.isoformat()
            else:
                text = "" if value is None else str(value)
            row.append(csv_safe(text))
        writer.writerow(row)
    return out.getvalue()


def to_json(lines: Iterable[Disclosure]) -> list[dict[str, Any]]:
    return [line.model_dump(mode="json") for line in lines]
