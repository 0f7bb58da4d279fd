"""What the metrics endpoints read of the store at each scrape (:mod:`services.core.metrics`):
counts and ages of the work in hand, never anything about a person. Part of
:class:`~services.core.store.store.Store`."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from . import tables as t
from .base import StoreBase
from .dip import EXPIRY
from .rows import to_utc, utc

#: a DIP breach counts as nearing its STL this long before its expiry timer fires
STL_WARNING = dt.timedelta(days=1)


class GaugeStore(StoreBase):
    async def operational_state(self, now: dt.datetime) -> dict[str, float]:
        """As at ``now``: each gauge's value by name (ages in seconds, 0 when nothing waits).
        A handful of aggregate queries over indexed columns, in one read transaction."""
        m, o, d, s, du, tm, a = (
            t.messages,
            t.outbox,
            t.deliveries,
            t.subscriptions,
            t.duties,
            t.timers,
            t.audit,
        )
        count = sa.func.count()

        def age(oldest: dt.datetime | None) -> float:
            return max(0.0, (now - utc(oldest)).total_seconds()) if oldest is not None else 0.0

        out: dict[str, float] = {}
        async with self._tx() as c:
            n, oldest = (
                await c.execute(
                    sa.select(count, sa.func.min(o.c.created_at)).where(o.c.published_at.is_(None))
                )
            ).one()
            out["outbox_unpublished"], out["outbox_oldest_unpublished_seconds"] = n, age(oldest)
            n, oldest = (
                await c.execute(
                    sa.select(count, sa.func.min(m.c.accepted_at)).where(
                        m.c.routed_at.is_(None), m.c.status == "pending"
                    )
                )
            ).one()
            out["messages_unrouted"], out["messages_oldest_unrouted_seconds"] = n, age(oldest)
            by_status: dict[str, int] = dict(
                (
                    await c.execute(
                        sa.select(d.c.status, count)
                        .where(d.c.status.in_(("pending", "retrying", "dead_lettered")))
                        .group_by(d.c.status)
                    )
                ).all()
            )
            for status in ("pending", "retrying", "dead_lettered"):
                out[f"deliveries_{status}"] = by_status.get(status, 0)
            oldest = await c.scalar(
                sa.select(sa.func.min(d.c.created_at)).where(d.c.status == "retrying")
            )
            out["deliveries_oldest_retrying_seconds"] = age(oldest)
            out["subscriptions_disabled"] = (
                await c.scalar(sa.select(count).select_from(s).where(s.c.status == "disabled")) or 0
            )
            when = to_utc(now)
            out["duties_open"] = (
                await c.scalar(
                    sa.select(count)
                    .select_from(du)
                    .where(du.c.status == "open", du.c.due_at > when)
                )
                or 0
            )
            out["duties_overdue"] = (
                await c.scalar(
                    sa.select(count)
                    .select_from(du)
                    .where(du.c.status == "open", du.c.due_at <= when)
                )
                or 0
            )
            out["duties_escalated"] = (
                await c.scalar(sa.select(count).select_from(du).where(du.c.status == "escalated"))
                or 0
            )
            out["dip_breaches_nearing_stl"] = (
                await c.scalar(
                    sa.select(count)
                    .select_from(tm)
                    .where(
                        tm.c.kind == EXPIRY,
                        tm.c.status == "pending",
                        tm.c.due_at <= to_utc(now + STL_WARNING),
                    )
                )
                or 0
            )
            n, oldest = (
                await c.execute(sa.select(count, sa.func.min(a.c.at)).where(a.c.position.is_(None)))
            ).one()
            out["audit_unsealed"], out["audit_oldest_unsealed_seconds"] = n, age(oldest)
        return {k: float(v) for k, v in out.items()}
