"""The timeliness report a partnership board reads: how much notice releases were given,
whether alerts were acknowledged in time, how many escalations were raised, whether drug
programme breaches were progressed before their statutory time limit, and how fast the
priority lane delivered. Counts, durations and ids only: no personal data.

Computed from the store on demand (``GET /v1/reports/timeliness``, the demo's summary), so
its numbers are the store's numbers by construction."""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

import sqlalchemy as sa

from ..notices import SYSTEM_SENDER
from . import tables as t
from .base import StoreBase
from .filters import lane_latency, nearest_rank
from .rows import utc

RELEASE = "release-notice"
DIP = "dip-breach"
RECALL = "licence-recall"


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        "median": round(statistics.median(values), 2) if values else None,
        "min": round(min(values), 2) if values else None,
        "p10": round(nearest_rank(sorted(values), 0.10), 2) if values else None,
        "max": round(max(values), 2) if values else None,
    }


class ReportStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def backlog(self, now: dt.datetime) -> dict[str, int]:
        """Work the system still has to do as at ``now``: messages not yet routed, deliveries
        due, deadlines and reminders due. All zero: the system is idle."""
        m, d, tm = t.messages, t.deliveries, t.timers
        async with self._tx() as c:
            unrouted = await c.scalar(
                sa.select(sa.func.count())
                .select_from(m)
                .where(m.c.routed_at.is_(None), m.c.status == "pending")
            )
            due = await c.scalar(
                sa.select(sa.func.count())
                .select_from(d)
                .where(d.c.status.in_(("pending", "retrying")), d.c.next_attempt_at <= now)
            )
            timers = await c.scalar(
                sa.select(sa.func.count())
                .select_from(tm)
                .where(tm.c.status == "pending", tm.c.due_at <= now)
            )
        return {
            "unrouted_messages": int(unrouted or 0),
            "due_deliveries": int(due or 0),
            "due_timers": int(timers or 0),
        }

    async def timeliness_report(
        self,
        now: dt.datetime,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        sender: str | None = None,
    ) -> dict[str, Any]:
        """Everything about original messages accepted in [since, until) (and, with
        ``sender``, sent by that party), judged as at ``now``."""
        m = t.messages
        roots = sa.select(
            m.c.id, m.c.message_type, m.c.state, m.c.timeliness, m.c.priority, m.c.accepted_at
        ).where(m.c.refers_to.is_(None), m.c.sender != SYSTEM_SENDER)
        if since is not None:
            roots = roots.where(m.c.accepted_at >= since)
        if until is not None:
            roots = roots.where(m.c.accepted_at < until)
        if sender is not None:
            roots = roots.where(m.c.sender == sender)
        async with self._tx() as c:
            messages = [dict(r._mapping) for r in (await c.execute(roots)).all()]
            ids = [r["id"] for r in messages]
            updates: list[dict[str, Any]] = []
            duties: list[dict[str, Any]] = []
            timers: list[dict[str, Any]] = []
            lanes: list[dict[str, Any]] = []
            for chunk in [ids[i : i + 500] for i in range(0, len(ids), 500)]:
                updates += [
                    dict(r._mapping)
                    for r in await c.execute(
                        sa.select(m.c.refers_to, m.c.lifecycle).where(m.c.refers_to.in_(chunk))
                    )
                ]
                duties += [
                    dict(r._mapping)
                    for r in await c.execute(
                        sa.select(t.duties).where(t.duties.c.message_id.in_(chunk))
                    )
                ]
                timers += [
                    dict(r._mapping)
                    for r in await c.execute(
                        sa.select(
                            t.timers.c.kind,
                            t.timers.c.status,
                            t.timers.c.subject,
                            t.timers.c.detail,
                        ).where(t.timers.c.subject.in_(chunk))
                    )
                ]
                d = t.deliveries
                lanes += [
                    dict(r._mapping)
                    for r in await c.execute(
                        sa.select(d.c.priority, d.c.accepted_at, d.c.delivered_at).where(
                            d.c.message_id.in_(chunk),
                            d.c.status == "delivered",
                            d.c.delivered_at.is_not(None),
                        )
                    )
                ]
        return {
            "as_at": now.isoformat(),
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "release_notices": _releases(messages, updates),
            "duties": _duties(duties, now),
            "dip_breaches": _dip(messages, timers),
            "licence_recalls": {
                "sent": sum(1 for r in messages if r["message_type"] == RECALL),
                "priority_lane": sum(
                    1 for r in messages if r["message_type"] == RECALL and r["priority"]
                ),
            },
            "delivery_latency": lane_latency(
                (r["priority"], r["accepted_at"], r["delivered_at"]) for r in lanes
            ),
        }


def _releases(messages: list[dict[str, Any]], updates: list[dict[str, Any]]) -> dict[str, Any]:
    notices = [r for r in messages if r["message_type"] == RELEASE]
    ids = {r["id"] for r in notices}
    amended = {u["refers_to"] for u in updates if u["lifecycle"] == "amended"} & ids
    facts = [r["timeliness"] or {} for r in notices]
    notice_days = [float(f["notice_days"]) for f in facts if f.get("notice_days") is not None]
    days_early = [float(f["days_early"]) for f in facts if f.get("days_early") is not None]
    return {
        "sent": len(notices),
        "amended": len(amended),
        "cancelled": sum(1 for r in notices if r["state"] == "cancelled"),
        "released": sum(1 for r in notices if r["state"] == "released"),
        "short_notice": sum(1 for f in facts if f.get("short_notice")),
        "notice_days": _summary(notice_days),
        "early_releases": len(days_early),
        "days_early": _summary(days_early),
    }


def _duties(duties: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    out = {
        "total": len(duties),
        "acknowledged_on_time": 0,
        "acknowledged_late": 0,
        "missing": 0,
        "not_yet_due": 0,
        "cleared": 0,
        "escalations": 0,
    }
    for d in duties:
        if d["escalated_at"] is not None:
            out["escalations"] += 1
        if d["acknowledged_at"] is not None:
            out["acknowledged_late" if d["late"] else "acknowledged_on_time"] += 1
        elif d["status"] == "cleared":
            out["cleared"] += 1
        elif (utc(d["due_at"]) or now) <= now:
            out["missing"] += 1
        else:
            out["not_yet_due"] += 1
    return out


def _dip(messages: list[dict[str, Any]], timers: list[dict[str, Any]]) -> dict[str, Any]:
    breaches = [r for r in messages if r["message_type"] == DIP]
    ids = {r["id"] for r in breaches}
    return {
        "total": len(breaches),
        "closed_before_stl": sum(1 for r in breaches if r["state"] == "closed"),
        "expired": sum(1 for r in breaches if r["state"] == "expired"),
        "open": sum(1 for r in breaches if r["state"] == "open"),
        "reminders_sent": sum(
            1
            for x in timers
            if x["subject"] in ids
            and x["kind"].startswith("dip-reminder")
            and x["status"] == "done"
            # a reminder point that fired without sending (a later one was due) is not counted
            and (x["detail"] or {}).get("sent")
        ),
    }
