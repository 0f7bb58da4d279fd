"""Subscription filters that can only narrow.

A subscription may carry filters (local authority, Probation Delivery Unit, risk flags, a
licence recall's unlawfully-at-large flag, and a cohort watch-list). They are applied by the
router AFTER the ISA decision, to the subscriptions of a party the decision already permits,
and they are evaluated on that party's own projection of the message (exactly the fields it
would receive). So a filter can drop a delivery, never add one, and it never reads a field the
party may not see: the arrival of a message must not tell a party the value of a field the
agreements withhold from it.

At create or update time a filter is refused (422 ``filter_never_matches``) when under the
agreements in force it could never match for this party: a filter kind the message type does
not have (local authority on a DIP breach), a message type no flow in force sends the party,
or a field no flow in force discloses to it (or a hard block withholds from it).

Cohorts: an IOM team lists the people it manages by PNC id, CRN or prison number. Each
identifier is kept only as the keyed pseudonym messages are keyed by
(``runtime.keys.pseudonymise("pnc_id:24/123456X")``, see ``person_identifier`` in
:mod:`services.core.intake`); the router pseudonymises every identifier the party's
projection carries and matches if any is in the cohort, so a member matches whichever
identifier a message is keyed by, as long as the list has that identifier.

Errors::

    InvalidRequest
    └── FilterNeverMatches    422  filter_never_matches   (names filter, type and reason)
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ..errors import InvalidRequest
from ..isa.model import PolicySet, rule_ref
from ..messages import MESSAGE_TYPES
from ..messages.models import PersonIdentifiers, RoshLevel, Str
from ..messages.person import IDENTIFIERS, identifier_keys

if TYPE_CHECKING:
    from ..isa.engine import RecipientDecision

log = logging.getLogger("isa_broker.filters")

MAX_LIST = 100
MAX_COHORT_CHANGE = 1000
#: identifiers one subscription's cohort may hold
MAX_COHORT = 10_000


class FilterNeverMatches(InvalidRequest):
    """A filter that could never match under the agreements in force for this party."""

    code = "filter_never_matches"
    status = 422
    title = "Subscription filter could never match"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _json_true(value: Any) -> Any:
    if not isinstance(value, bool):  # 1 == True in Python; the API takes JSON true only
        raise ValueError("must be true (omit the filter not to filter on it)")
    return value


#: a flag filter: JSON ``true`` only (omit it not to filter)
TrueFlag = Annotated[Literal[True], BeforeValidator(_json_true)]

#: as the message schema spells them (a Literal, so strict validation accepts JSON strings)
RoshLevelName = Literal["low", "medium", "high", "very_high"]
assert set(RoshLevelName.__args__) == {r.value for r in RoshLevel}  # type: ignore[attr-defined]  # noqa: S101


class RiskFilter(_Strict):
    """Each flag given must be set on the person; ``rosh_levels``: one of them."""

    mappa: TrueFlag | None = Field(None, description="Only people managed under MAPPA")
    rosh_levels: list[RoshLevelName] | None = Field(
        None, min_length=1, max_length=4, description="Only these risk-of-serious-harm levels"
    )
    domestic_abuse: TrueFlag | None = None
    national_security_division: TrueFlag | None = None
    sex_offender_register: TrueFlag | None = None

    @model_validator(mode="after")
    def _something(self) -> RiskFilter:
        if not self.model_dump(exclude_none=True):
            raise ValueError("risk must set at least one filter (omit it not to filter on risk)")
        return self


LocalName = Annotated[Str, StringConstraints(max_length=100)]


class SubscriptionFilters(_Strict):
    """Narrowing filters: a message is delivered to the subscription only if it matches ALL
    of them (and, within a list, ANY value). They are evaluated on what the agreements let
    the subscriber receive, so they can never widen it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"cohort": True},
                {"local_authorities": ["Eastborough"], "risk": {"rosh_levels": ["high"]}},
            ]
        }
    )

    local_authorities: list[LocalName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST,
        description="Release notices to one of these local authorities "
        "(destination.local_authority, compared ignoring case)",
    )
    probation_delivery_units: list[LocalName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST,
        description="Release notices to one of these PDUs (destination.probation_delivery_unit)",
    )
    risk: RiskFilter | None = None
    unlawfully_at_large: TrueFlag | None = Field(
        None, description="Licence recalls of people unlawfully at large only"
    )
    cohort: TrueFlag | None = Field(
        None,
        description="Only people in the subscription's cohort watch-list "
        "(PUT /v1/subscriptions/{id}/cohort)",
    )

    @model_validator(mode="after")
    def _something(self) -> SubscriptionFilters:
        if not self.model_dump(exclude_none=True):
            raise ValueError("filters must set at least one filter; use null for none")
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON form kept in ``subscriptions.filters``."""
        dumped: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return dumped


# -- filter kinds: the fields each one reads --------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str  # as the client spells it: "local_authorities", "risk.mappa"
    paths: tuple[str, ...]  # the field(s) it reads; several: any of them will do


_RISK_PATHS = {
    "mappa": "risk.mappa",
    "rosh_levels": "risk.rosh_level",
    "domestic_abuse": "risk.domestic_abuse",
    "national_security_division": "risk.national_security_division",
    "sex_offender_register": "risk.sex_offender_register",
}


def kinds_of(filters: Mapping[str, Any]) -> list[Kind]:
    """The filter kinds set in a (stored) filter object, with the fields they read."""
    out: list[Kind] = []
    if filters.get("local_authorities"):
        out.append(Kind("local_authorities", ("destination.local_authority",)))
    if filters.get("probation_delivery_units"):
        out.append(Kind("probation_delivery_units", ("destination.probation_delivery_unit",)))
    for name, value in (filters.get("risk") or {}).items():
        if value is not None:
            out.append(Kind(f"risk.{name}", (_RISK_PATHS[name],)))
    if filters.get("unlawfully_at_large"):
        out.append(Kind("unlawfully_at_large", ("recall.unlawfully_at_large",)))
    if filters.get("cohort"):
        out.append(Kind("cohort", tuple(f"person.{n}" for n in IDENTIFIERS)))
    return out


# -- what a party can ever receive ------------------------------------------------------------


@dataclass(frozen=True)
class Receivable:
    """What ``party`` can ever receive of ``message_type`` under the agreements in force on
    a day: the flows to it and the leaf paths they can disclose."""

    party: str
    message_type: str
    flows: tuple[str, ...]
    leaves: frozenset[str]
    blocks: tuple[tuple[str, frozenset[str]], ...] = field(default=())

    def can_receive(self, path: str) -> bool:
        """Whether some value at or under ``path`` can reach the party."""
        return any(leaf == path or leaf.startswith(path + ".") for leaf in self.leaves)

    def why_not(self, paths: Sequence[str]) -> str:
        path = " or ".join(paths)
        if not self.flows:
            return (
                f"no agreement in force has a flow of {self.message_type} to {self.party}, "
                "so the subscription never receives one"
            )
        blockers = [
            ref for ref, fields in self.blocks if any(_covers(f, p) for f in fields for p in paths)
        ]
        if blockers:
            return (
                f"{path} is withheld from {self.party} by hard block {', '.join(blockers)}; a "
                "filter on a field the party may not see would tell it the value"
            )
        return (
            f"no flow in force discloses {path} of a {self.message_type} to {self.party} "
            f"(its flows: {', '.join(self.flows)}); a filter on a field the party may not see "
            "would tell it the value"
        )


def _covers(outer: str, path: str) -> bool:
    return path == outer or path.startswith(outer + ".") or outer.startswith(path + ".")


def receivable(policies: PolicySet, party: str, message_type: str, day: dt.date) -> Receivable:
    """Which field paths ``party`` can ever receive for ``message_type`` on ``day``: those a
    flow in force to it discloses (less the flow's own prohibitions) and no hard block of a
    non-draft agreement withholds from it (the engine's rules, without the conditions: a
    condition may hold for some message, so this is what can EVER be received)."""
    leaves_of = MESSAGE_TYPES[message_type].leaves
    flows: list[str] = []
    leaves: set[str] = set()
    for agreement in policies.agreements:
        if agreement.not_in_force_reason(day) is not None:
            continue
        for flow in agreement.flows:
            if message_type not in flow.message_types or party not in flow.recipients:
                continue
            if not flow.senders - {party}:
                continue
            flows.append(rule_ref(agreement.id, agreement.version, flow.id))
            for leaf in leaves_of:
                if any(leaf == p or leaf.startswith(p + ".") for p in flow.fields) and not any(
                    leaf == p or leaf.startswith(p + ".") for p in flow.prohibited
                ):
                    leaves.add(leaf)
    blocks = tuple(
        (rule_ref(a.id, a.version, b.id), b.fields)
        for a in policies.agreements
        if a.status != "draft"
        for b in a.hard_blocks
        if b.applies(party, message_type)
    )
    for _, fields in blocks:
        leaves = {x for x in leaves if not any(x == f or x.startswith(f + ".") for f in fields)}
    return Receivable(party, message_type, tuple(flows), frozenset(leaves), blocks)


def check_filters(
    filters: SubscriptionFilters | None,
    policies: PolicySet,
    party: str,
    message_types: Iterable[str],
    day: dt.date,
) -> None:
    """Refuse filters that could never match for ``party`` on any of ``message_types``
    under the agreements in force on ``day`` (raises :class:`FilterNeverMatches` naming each
    filter, message type and reason). No filters: nothing to check."""
    if filters is None:
        return
    problems: list[dict[str, str]] = []
    for mt in sorted(set(message_types)):
        paths = MESSAGE_TYPES[mt].paths
        can = receivable(policies, party, mt, day)
        for kind in kinds_of(filters.stored()):
            existing = [p for p in kind.paths if p in paths]
            if not existing:
                reason = f"a {mt} has no field {' or '.join(kind.paths)}"
            elif any(can.can_receive(p) for p in existing):
                continue
            else:
                reason = can.why_not(existing)
            problems.append({"filter": kind.name, "message_type": mt, "reason": reason})
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more, in `problems`)" if len(problems) > 1 else ""
        raise FilterNeverMatches(
            f"filter {first['filter']} could never match a {first['message_type']} for "
            f"{party}: {first['reason']}{more}",
            problems=problems,
        )


# -- matching ---------------------------------------------------------------------------------


def _value(projection: Mapping[str, Any], path: str) -> Any:
    node: Any = projection
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def matches(
    filters: Mapping[str, Any],
    projection: Mapping[str, Any],
    in_cohort: Callable[[Sequence[str]], bool],
) -> bool:
    """Whether a recipient's projection matches every filter. ``in_cohort`` answers for the
    identifier strings the projection carries. A filter kind not understood fails closed."""
    known = {
        "local_authorities",
        "probation_delivery_units",
        "risk",
        "unlawfully_at_large",
        "cohort",
    }
    if set(filters) - known:
        log.warning("unknown filter kinds %s: not matched", sorted(set(filters) - known))
        return False
    for key, path in (
        ("local_authorities", "destination.local_authority"),
        ("probation_delivery_units", "destination.probation_delivery_unit"),
    ):
        wanted = filters.get(key)
        if wanted:
            value = _value(projection, path)
            if not isinstance(value, str) or value.casefold() not in {w.casefold() for w in wanted}:
                return False
    for name, want in (filters.get("risk") or {}).items():
        if want is None:
            continue
        value = _value(projection, _RISK_PATHS.get(name, "\0"))
        if name == "mappa":
            if not isinstance(value, Mapping) or not value:
                return False
        elif name == "rosh_levels":
            if value not in want:
                return False
        elif value is not True:
            return False
    if (
        filters.get("unlawfully_at_large")
        and _value(projection, "recall.unlawfully_at_large") is not True
    ):
        return False
    if filters.get("cohort"):
        person = projection.get("person")
        ids = identifier_keys(person) if isinstance(person, Mapping) else []
        if not ids or not in_cohort(ids):
            return False
    return True


class Narrowing:
    """The router's filter step for one message: which of a permitted party's subscriptions
    keep their delivery. :meth:`keep` returns a subset of what it is given, so filters can
    only narrow what the ISA decision allows."""

    def __init__(
        self,
        pseudonyms: Mapping[str, str] | None = None,
        cohort_hits: set[tuple[str, str]] | None = None,
        received: set[str] | None = None,
    ) -> None:
        self.pseudonyms = dict(pseudonyms or {})
        self.cohort_hits = cohort_hits or set()
        self.received = received or set()

    @classmethod
    async def load(
        cls,
        store: Any,
        pseudonymise: Callable[[str], str],
        message: Mapping[str, Any],
        subscriptions: Iterable[Mapping[str, Any]],
    ) -> Narrowing:
        """Look up, in at most two queries, what the filters of these subscriptions need:
        which cohorts hold this message's person, and (for a lifecycle update) which
        subscriptions received an earlier version of the same root."""
        filtered = [s for s in subscriptions if s.get("filters")]
        if not filtered:
            return cls()
        person = message["payload"].get("person") or {}
        pseudonyms = {k: pseudonymise(k) for k in identifier_keys(person)}
        cohort_subs = [str(s["id"]) for s in filtered if (s["filters"] or {}).get("cohort")]
        hits: set[tuple[str, str]] = set()
        if cohort_subs and pseudonyms:
            hits = await store.cohort_hits(cohort_subs, sorted(set(pseudonyms.values())))
        received: set[str] = set()
        root = message.get("refers_to")
        if root:
            received = await store.subscriptions_given(root, [str(s["id"]) for s in filtered])
        return cls(pseudonyms, hits, received)

    def keep(
        self,
        subscriptions: Sequence[dict[str, Any]],
        permitted: RecipientDecision,
        payload: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """The subscriptions whose filters the party's own projection matches, and those that
        received an earlier version of a lifecycle update's root (a cancellation must reach
        whoever got the notice, whatever it says now)."""
        projection: dict[str, Any] | None = None
        kept: list[dict[str, Any]] = []
        for sub in subscriptions:
            filters = sub.get("filters")
            if not filters or sub["id"] in self.received:
                kept.append(sub)
                continue
            if projection is None:
                projection = permitted.project(payload)
            sub_id = str(sub["id"])

            def in_cohort(ids: Sequence[str], sub_id: str = sub_id) -> bool:
                return any(
                    (sub_id, self.pseudonyms[i]) in self.cohort_hits
                    for i in ids
                    if i in self.pseudonyms
                )

            if matches(filters, projection, in_cohort):
                kept.append(sub)
        return kept


# -- cohort watch-list entries ----------------------------------------------------------------


class CohortMember(PersonIdentifiers):
    """One person on a cohort watch-list, by one or more of their identifiers (give every one
    you know: a message matches if it carries any of them)."""


class CohortChange(_Strict):
    add: list[CohortMember] = Field(default_factory=list, max_length=MAX_COHORT_CHANGE)
    remove: list[CohortMember] = Field(default_factory=list, max_length=MAX_COHORT_CHANGE)

    @model_validator(mode="after")
    def _something(self) -> CohortChange:
        if not self.add and not self.remove:
            raise ValueError("add or remove at least one member")
        return self
