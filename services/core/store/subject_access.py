"""Store queries of subject access (UK GDPR Art 15; DPA 2018 s45 and s62) and of the
information governance queries on the disclosure log. Part of
:class:`~services.core.store.store.Store`.

A message is keyed (``messages.person``, ``audit.person``) by the pseudonym of its FIRST
present identifier only. ``person_index`` holds the pseudonym of every identifier its person
carried, written in the transaction that stores the message, so that a search by CRN finds a
message keyed by PNC id. Messages stored before ``person_index`` existed are found through the
pseudonym they are keyed by only.

Entries are returned with the sender of their message (``sender``) and its ISA decision
(``decision``, for the fields withheld from each recipient), both read from ``messages``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import tables as t
from .base import StoreBase
from .rows import row_dict, to_utc

#: the disclosure-log events of a delivery's outcome: what was disclosed, or not, to whom
DISCLOSURE_EVENTS = ("delivered", "withheld", "dead_lettered", "no_channel")
#: rows read per pass while filtering disclosures by agreement (kept in each entry's grants)
_SCAN = 500


@dataclass(frozen=True)
class DisclosureQuery:
    """An IG query on the disclosures: under ``agreement`` (at ``version``) if given, with
    ``party`` as the message's sender or the recipient, ``at`` in [since, until)."""

    agreement: str | None = None
    version: str | None = None
    party: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def logged(self) -> dict[str, str]:
        """The filters given, as the disclosure log records them."""
        out = {"agreement": self.agreement, "version": self.version, "party": self.party}
        out |= {k: v.isoformat() for k, v in (("since", self.since), ("until", self.until)) if v}
        return {k: v for k, v in out.items() if v is not None}


class SubjectAccessStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def subject_access_entries(self, pseudonyms: Sequence[str]) -> list[dict[str, Any]]:
        """Every disclosure-log entry about the person of ``pseudonyms`` (the keyed pseudonyms
        of the identifiers searched), in ``seq`` order: the entries of each message that
        carried any of them, of the updates to those messages, and every entry keyed by one of
        them or by the pseudonym such a message is keyed by (a refusal, a duty)."""
        m, a, px = t.messages, t.audit, t.person_index
        wanted = sorted(set(pseudonyms))
        async with self._tx() as c:
            found = (
                await c.execute(sa.select(px.c.message_id).where(px.c.pseudonym.in_(wanted)))
            ).all()
            message_ids = {row[0] for row in found}
            keyed = set(wanted)
            if message_ids:
                r = await c.execute(
                    sa.select(m.c.id, m.c.person).where(
                        sa.or_(m.c.id.in_(message_ids), m.c.refers_to.in_(message_ids))
                    )
                )
                for message_id, person in r.all():
                    message_ids.add(message_id)
                    keyed.add(person)
            match: sa.ColumnElement[bool] = a.c.person.in_(sorted(keyed))
            if message_ids:
                match = sa.or_(match, a.c.message_id.in_(sorted(message_ids)))
            r = await c.execute(_with_message(match).order_by(a.c.seq))
            return _rows(r.all())

    async def disclosure_entries(
        self, query: DisclosureQuery, *, after: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Delivery-outcome entries (:data:`DISCLOSURE_EVENTS`) matching ``query`` after
        ``seq`` ``after``, in ``seq`` order. Returns up to ``limit`` entries and the ``seq``
        to pass as ``after`` for the next page."""
        agreement, version, party = query.agreement, query.version, query.party
        since, until = query.since, query.until
        a, m = t.audit, t.messages
        cond: list[Any] = [a.c.event.in_(DISCLOSURE_EVENTS)]
        if party is not None:
            cond.append(sa.or_(a.c.recipient == party, m.c.sender == party))
        if since is not None:
            cond.append(a.c.at >= to_utc(since))
        if until is not None:
            cond.append(a.c.at < to_utc(until))
        if agreement is not None:  # narrowed in SQL on the JSON text, then exactly below
            cond.append(sa.cast(a.c.detail, sa.Text).contains(f'"{agreement}"', autoescape=True))
        out: list[dict[str, Any]] = []
        cursor = after
        async with self._tx() as c:
            while len(out) < limit:
                batch = limit if agreement is None else _SCAN
                q = _with_message(sa.and_(a.c.seq > cursor, *cond)).order_by(a.c.seq).limit(batch)
                rows = _rows((await c.execute(q)).all())
                for row in rows:
                    cursor = row["seq"]
                    if agreement is None or _under(row, agreement, version):
                        out.append(row)
                        if len(out) == limit:
                            break
                if len(rows) < batch:
                    break
        return out, cursor


def _with_message(where: Any) -> Any:
    """Audit entries matching ``where``, with their message's sender and decision."""
    a, m = t.audit, t.messages
    return (
        sa.select(
            a.c.seq,
            a.c.at,
            a.c.event,
            a.c.message_id,
            a.c.message_type,
            a.c.actor,
            a.c.recipient,
            a.c.person,
            a.c.detail,
            m.c.sender,
            m.c.decision,
        )
        .select_from(a.outerjoin(m, m.c.id == a.c.message_id))
        .where(where)
    )


def _under(entry: dict[str, Any], agreement: str, version: str | None) -> bool:
    grants = (entry.get("detail") or {}).get("grants") or []
    return any(
        isinstance(g, dict)
        and g.get("agreement") == agreement
        and (version is None or g.get("version") == version)
        for g in grants
    )


def _rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [row_dict(row) for row in rows]
