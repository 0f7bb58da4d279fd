"""``isa-broker isa coverage``: the partnership matrix (who can send what to whom under the
agreements in force), the partnership's stated needs that no agreement in force covers, and
agreements expiring or due for review soon."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigurationError
from ..messages import MESSAGE_TYPES
from .model import PolicySet

SOON_DAYS = 90


@dataclass(frozen=True)
class Need:
    message_type: str
    sender: str
    recipient: str
    why: str


@dataclass(frozen=True)
class NeedStatus:
    need: Need
    status: str  # covered | conditional | not_in_force | not_covered
    detail: str


@dataclass
class Coverage:
    matrix: dict[str, dict[tuple[str, str], list[str]]] = field(default_factory=dict)
    needs: list[NeedStatus] = field(default_factory=list)
    expiring: list[tuple[str, dt.date, int]] = field(default_factory=list)
    reviews_due: list[tuple[str, dt.date]] = field(default_factory=list)


def load_needs(path: Path, policies: PolicySet) -> list[Need]:
    if not path.exists():
        return []
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigurationError(f"{path.name}: not valid YAML{at}") from e
    if doc is not None and not (isinstance(doc, dict) and isinstance(doc.get("needs", []), list)):
        raise ConfigurationError(f"{path.name}: expected a mapping with a list under 'needs'")
    needs = []
    for i, item in enumerate((doc or {}).get("needs", [])):
        try:
            need = Need(item["message_type"], item["from"], item["to"], item.get("why", ""))
        except (KeyError, TypeError) as e:
            raise ConfigurationError(f"{path.name}: /needs/{i} lacks {e}") from e
        unknown = [p for p in (need.sender, need.recipient) if p not in policies.parties]
        if need.message_type not in MESSAGE_TYPES or unknown:
            raise ConfigurationError(
                f"{path.name}: /needs/{i} names an unknown message type or party "
                f"{unknown or need.message_type}"
            )
        needs.append(need)
    return needs


def coverage(policies: PolicySet, needs: list[Need], today: dt.date) -> Coverage:
    out = Coverage()
    dormant: dict[tuple[str, str, str], list[str]] = {}
    for a in policies.agreements:
        reason = a.not_in_force_reason(today)
        for flow in a.flows:
            for mt in flow.message_types:
                for s in flow.senders:
                    for r in flow.recipients - {s}:
                        ref = f"{a.id}#{flow.id}" + (" (if condition)" if flow.condition else "")
                        if reason is None:
                            out.matrix.setdefault(mt, {}).setdefault((s, r), []).append(ref)
                        else:
                            dormant.setdefault((mt, s, r), []).append(reason)
        if a.status == "active" and reason is None:
            days = (a.expires_on - today).days
            if days <= SOON_DAYS:
                out.expiring.append((a.id, a.expires_on, days))
            if a.review_date is not None and a.review_date <= today + dt.timedelta(days=SOON_DAYS):
                out.reviews_due.append((a.id, a.review_date))
    for need in needs:
        refs = out.matrix.get(need.message_type, {}).get((need.sender, need.recipient), [])
        if refs:
            conditional = all("(if condition)" in r for r in refs)
            out.needs.append(
                NeedStatus(need, "conditional" if conditional else "covered", ", ".join(refs))
            )
        elif (need.message_type, need.sender, need.recipient) in dormant:
            out.needs.append(
                NeedStatus(
                    need,
                    "not_in_force",
                    "; ".join(
                        sorted(set(dormant[(need.message_type, need.sender, need.recipient)]))
                    ),
                )
            )
        else:
            out.needs.append(NeedStatus(need, "not_covered", "no agreement has such a flow"))
    return out
