"""Store methods for subscription filters, cohort watch-lists and the priority lane's
latency figures. Part of :class:`~services.core.store.store.Store`.

Cohort members are keyed pseudonyms only (never an identifier in clear); audit entries for
cohort changes carry counts only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .base import StoreBase
from .rows import utc
from .sql import append_audit

#: deliveries that count as "the subscription got this version" for lifecycle updates (a
#: dead letter may still be replayed, so its updates must follow it)
GIVEN = ("pending", "retrying", "delivered", "dead_lettered")


def nearest_rank(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ordered, non-empty list."""
    rank = max(1, int(-(-q * len(ordered) // 1)))  # ceil(q * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]


def lane_latency(
    rows: Iterable[Sequence[Any]],
) -> dict[str, dict[str, float | int | None]]:
    """Per lane (``priority``, ``normal``): count, p50, p95 and max in milliseconds of
    ``delivered_at - accepted_at``, from rows of (priority, accepted_at, delivered_at)."""
    samples: dict[str, list[float]] = {"priority": [], "normal": []}
    for priority, accepted, delivered in rows:
        ms = (utc(delivered) - utc(accepted)).total_seconds() * 1000
        samples["priority" if priority else "normal"].append(max(ms, 0.0))
    out: dict[str, dict[str, float | int | None]] = {}
    for lane, values in samples.items():
        values.sort()
        out[lane] = {
            "count": len(values),
            "p50_ms": round(nearest_rank(values, 0.5), 1) if values else None,
            "p95_ms": round(nearest_rank(values, 0.95), 1) if values else None,
            "max_ms": round(values[-1], 1) if values else None,
        }
    return out


class FilterStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def _own_subscription(
        self, c: AsyncConnection, party: str, sub_id: str
    ) -> dict[str, Any] | None:
        r = await c.execute(
            sa.select(t.subscriptions).where(
                t.subscriptions.c.id == sub_id,
                t.subscriptions.c.party == party,
                t.subscriptions.c.status != "deleted",
            )
        )
        row = r.first()
        return {k: utc(v) for k, v in row._mapping.items()} if row is not None else None

    async def set_subscription_filters(
        self, party: str, sub_id: str, filters: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Replace the filters of the party's subscription (None: no filters). Returns the
        subscription, or None when the party has no such subscription."""
        async with self._tx() as c:
            row = await self._own_subscription(c, party, sub_id)
            if row is None:
                return None
            await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id)
                .values(filters=filters)
            )
            await append_audit(
                c,
                "subscription_filters_set",
                actor=party,
                detail={"subscription_id": sub_id, "filters": sorted(filters or {})},
            )
            return {**row, "filters": filters}

    async def change_cohort(
        self,
        party: str,
        sub_id: str,
        add: list[str],
        remove: list[str],
        now: dt.datetime,
        limit: int,
    ) -> dict[str, int] | None:
        """Add and remove cohort members (pseudonyms) of the party's subscription, in one
        transaction. Returns counts ``added``, ``removed``, ``total``; None when the party
        has no such subscription. Raises ValueError (nothing changed) when the cohort would
        exceed ``limit``."""
        async with self._tx() as c:
            if await self._own_subscription(c, party, sub_id) is None:
                return None
            cm = t.cohort_members
            removed = 0
            if remove:
                r = await c.execute(
                    cm.delete().where(cm.c.subscription_id == sub_id, cm.c.person.in_(remove))
                )
                removed = int(r.rowcount or 0)
            existing: set[str] = set()
            if add:
                found = await c.execute(
                    sa.select(cm.c.person).where(
                        cm.c.subscription_id == sub_id, cm.c.person.in_(add)
                    )
                )
                existing = {str(p) for p in found.scalars()}
            new = sorted(set(add) - existing)
            total = (
                await c.execute(
                    sa.select(sa.func.count()).select_from(cm).where(cm.c.subscription_id == sub_id)
                )
            ).scalar_one()
            if total + len(new) > limit:
                raise ValueError(
                    f"the cohort would hold {total + len(new)} identifiers; at most {limit}"
                )
            if new:
                await c.execute(
                    cm.insert(),
                    [{"subscription_id": sub_id, "person": p, "added_at": now} for p in new],
                )
            await append_audit(
                c,
                "cohort_changed",
                actor=party,
                detail={
                    "subscription_id": sub_id,
                    "added": len(new),
                    "removed": removed,
                    "total": int(total) + len(new),
                },
            )
            return {"added": len(new), "removed": removed, "total": int(total) + len(new)}

    async def cohort_of(self, party: str, sub_id: str) -> list[str] | None:
        """The pseudonyms in the cohort of the party's subscription (None: no such one)."""
        async with self._tx() as c:
            if await self._own_subscription(c, party, sub_id) is None:
                return None
            cm = t.cohort_members
            r = await c.execute(
                sa.select(cm.c.person).where(cm.c.subscription_id == sub_id).order_by(cm.c.person)
            )
            return list(r.scalars())

    async def cohort_hits(self, sub_ids: list[str], persons: list[str]) -> set[tuple[str, str]]:
        """(subscription id, pseudonym) for each of ``persons`` in each one's cohort."""
        if not sub_ids or not persons:
            return set()
        cm = t.cohort_members
        async with self._tx() as c:
            r = await c.execute(
                sa.select(cm.c.subscription_id, cm.c.person).where(
                    cm.c.subscription_id.in_(sub_ids), cm.c.person.in_(persons)
                )
            )
            return {(str(a), str(b)) for a, b in r.all()}

    async def subscriptions_given(self, root_id: str, sub_ids: list[str]) -> set[str]:
        """Which of ``sub_ids`` got a delivery of the message ``root_id`` or of an earlier
        update referring to it (so that a later update reaches them whatever it says)."""
        if not sub_ids:
            return set()
        d, m = t.deliveries, t.messages
        async with self._tx() as c:
            r = await c.execute(
                sa.select(d.c.subscription_id)
                .join(m, m.c.id == d.c.message_id)
                .where(
                    sa.or_(m.c.id == root_id, m.c.refers_to == root_id),
                    d.c.subscription_id.in_(sub_ids),
                    d.c.status.in_(GIVEN),
                )
                .distinct()
            )
            return {str(x) for x in r.scalars()}

    async def delivery_latency_by_lane(
        self,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        recipient: str | None = None,
        sender: str | None = None,
    ) -> dict[str, dict[str, float | int | None]]:
        """Per lane (``priority``, ``normal``): count, p50, p95 and max of ``delivered_at -
        accepted_at`` in milliseconds, over deliveries delivered in [since, until) (to
        ``recipient``, of messages from ``sender``, when given)."""
        d = t.deliveries
        q = sa.select(d.c.priority, d.c.accepted_at, d.c.delivered_at).where(
            d.c.status == "delivered", d.c.delivered_at.is_not(None), d.c.accepted_at.is_not(None)
        )
        if since is not None:
            q = q.where(d.c.delivered_at >= since.astimezone(dt.UTC))
        if until is not None:
            q = q.where(d.c.delivered_at < until.astimezone(dt.UTC))
        if recipient is not None:
            q = q.where(d.c.recipient == recipient)
        if sender is not None:
            q = q.join(t.messages, t.messages.c.id == d.c.message_id).where(
                t.messages.c.sender == sender
            )
        async with self._tx() as c:
            return lane_latency((await c.execute(q)).all())
