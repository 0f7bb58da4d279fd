"""Store methods for acknowledgement duties, DIP breach deadlines and the durable scheduler
(part of :class:`~services.core.store.store.Store`).

The scheduler's contract: a ``timers`` row fires once. A router claims a due row with a
conditional UPDATE (a lease), then runs the row's handler and marks the row ``done`` in ONE
transaction, so that a router killed half-way re-fires the row (once its lease has run out)
rather than losing it; handlers are idempotent besides. A handler writes through the
transaction's repositories (:class:`~.transaction.Transaction`: duties and their timers in
:mod:`.duties`, DIP breach timers in :mod:`.dip`, broker events in :mod:`.events`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import tables as t
from .base import StoreBase
from .duties import Timer
from .rows import row_dict, to_utc
from .transaction import Transaction

#: what a timer's handler answers: None or a dict (done; the dict is kept as the row's
#: ``detail``), or a time to fire again (the deadline moved)
HandlerResult = dict[str, Any] | dt.datetime | None
#: a timer's handler: runs in the transaction that settles the timer, through its
#: repositories (:class:`~services.core.store.transaction.Transaction`)
TimerHandler = Callable[[Transaction, Timer, dt.datetime], Awaitable[HandlerResult]]

DUTY_STATUSES = ("open", "acknowledged", "escalated", "cleared")
#: a duty still to be acknowledged: before its due time (open) or after it (escalated)
AWAITING_ACKNOWLEDGEMENT = ("open", "escalated")


@dataclass(frozen=True)
class AwaitedDuty:
    """A duty that awaits its recipient's acknowledgement: its id and when it is due."""

    id: str
    due_at: dt.datetime


class TimelinessStore(StoreBase):
    """Duties, DIP breaches and timers. Needs the host class's ``_tx``."""

    async def due_timers(self, now: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Pending timers due by ``now`` whose lease (if any) has run out, earliest first."""
        tm = t.timers
        q = (
            sa.select(tm)
            .where(
                tm.c.status == "pending",
                tm.c.due_at <= now,
                sa.or_(tm.c.lease_until.is_(None), tm.c.lease_until < now),
            )
            .order_by(tm.c.due_at, tm.c.id)
            .limit(limit)
        )
        async with self._tx() as c:
            return [row_dict(r) for r in (await c.execute(q)).all()]

    async def claim_timer(
        self, timer_id: int, owner: str, now: dt.datetime, until: dt.datetime
    ) -> bool:
        """Lease one due timer to ``owner``: a conditional UPDATE, so that of two routers
        looking at the same row only one gets it."""
        tm = t.timers
        async with self._tx() as c:
            r = await c.execute(
                tm.update()
                .where(
                    tm.c.id == timer_id,
                    tm.c.status == "pending",
                    tm.c.due_at <= now,
                    sa.or_(tm.c.lease_until.is_(None), tm.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=until, attempts=tm.c.attempts + 1)
            )
            return bool(r.rowcount)

    async def fire_timer(
        self, timer_id: int, owner: str, now: dt.datetime, handler: TimerHandler
    ) -> str:
        """Run ``handler`` for a timer ``owner`` holds and settle the row, in one transaction.
        Returns ``done``, ``rescheduled``, or ``lost`` (no longer pending or no longer ours:
        cancelled meanwhile, or the lease ran out and another router took it)."""
        tm = t.timers
        async with self._tx() as c:
            q = sa.select(tm).where(
                tm.c.id == timer_id, tm.c.status == "pending", tm.c.lease_owner == owner
            )
            if c.dialect.name == "postgresql":
                q = q.with_for_update()
            found = (await c.execute(q)).first()
            if found is None:
                return "lost"
            timer = row_dict(found)
            result = await handler(Transaction(c), Timer.of(timer), now)
            if isinstance(result, dt.datetime):
                await c.execute(
                    tm.update()
                    .where(tm.c.id == timer_id)
                    .values(due_at=result, lease_owner=None, lease_until=None)
                )
                return "rescheduled"
            await c.execute(
                tm.update()
                .where(tm.c.id == timer_id)
                .values(
                    status="done",
                    fired_at=now,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                    detail={**(timer["detail"] or {}), **(result or {})},
                )
            )
            return "done"

    async def timer_failed(
        self, timer_id: int, owner: str, error: str, retry_at: dt.datetime
    ) -> None:
        """A handler raised: keep the row pending, leased until ``retry_at`` (a back-off)."""
        tm = t.timers
        async with self._tx() as c:
            await c.execute(
                tm.update()
                .where(tm.c.id == timer_id, tm.c.lease_owner == owner, tm.c.status == "pending")
                .values(lease_until=retry_at, last_error=error[:500])
            )

    async def release_timer_leases(self, owner: str) -> int:
        """Give up the leases ``owner`` held before a restart, so its timers fire at once."""
        tm = t.timers
        async with self._tx() as c:
            r = await c.execute(
                tm.update()
                .where(tm.c.lease_owner == owner, tm.c.status == "pending")
                .values(lease_owner=None, lease_until=None)
            )
            return int(r.rowcount or 0)

    async def list_timers(
        self, *, subject: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        tm = t.timers
        q = sa.select(tm).order_by(tm.c.due_at, tm.c.id)
        if subject is not None:
            q = q.where(tm.c.subject == subject)
        if kind is not None:
            q = q.where(tm.c.kind == kind)
        async with self._tx() as c:
            return [row_dict(r) for r in (await c.execute(q)).all()]

    # -- duties --------------------------------------------------------------------------------

    async def get_duty(self, duty_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = (await c.execute(sa.select(t.duties).where(t.duties.c.id == duty_id))).first()
            return row_dict(r) if r is not None else None

    async def duties_awaiting(self, recipient: str, message_id: str) -> list[AwaitedDuty]:
        """``recipient``'s duties on the original ``message_id`` still to be acknowledged
        (open or escalated), earliest due first. One indexed read (``uq_duty``)."""
        d = t.duties
        q = (
            sa.select(d.c.id, d.c.due_at)
            .where(
                d.c.message_id == message_id,
                d.c.recipient == recipient,
                d.c.status.in_(AWAITING_ACKNOWLEDGEMENT),
            )
            .order_by(d.c.due_at, d.c.id)
        )
        async with self._tx() as c:
            rows = (await c.execute(q)).all()
        return [AwaitedDuty(r.id, to_utc(r.due_at)) for r in rows]

    async def list_duties(
        self,
        party: str,
        *,
        role: str = "recipient",
        status: str | None = None,
        now: dt.datetime | None = None,
        message_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The duties ``party`` holds (``recipient``), set (``sender``), or would be told of
        when overdue (``escalation``). ``status=overdue``: open or escalated, past due and
        not acknowledged (needs ``now``)."""
        d = t.duties
        q = sa.select(d).order_by(d.c.due_at, d.c.id)
        if role == "recipient":
            q = q.where(d.c.recipient == party)
        elif role == "sender":
            q = q.where(d.c.sender == party)
        if status == "overdue":
            assert now is not None  # noqa: S101
            q = q.where(d.c.status.in_(("open", "escalated")), d.c.due_at <= now)
        elif status is not None:
            q = q.where(d.c.status == status)
        if message_id is not None:
            q = q.where(d.c.message_id == message_id)
        async with self._tx() as c:
            rows = [row_dict(r) for r in (await c.execute(q)).all()]
        if role == "escalation":
            # escalate_to is a JSON list: filtered here, portably across both dialects
            rows = [r for r in rows if party in (r["escalate_to"] or [])]
        return rows[offset : offset + limit]

    async def acknowledge_duty(
        self,
        duty_id: str,
        party: str,
        client_id: str,
        action: str | None,
        now: dt.datetime,
    ) -> tuple[str, dict[str, Any]] | None:
        """Acknowledge ``party``'s duty in one transaction (see
        :meth:`~.duties.DutyRepository.acknowledge`)."""
        async with self.transaction() as tx:
            return await tx.duties.acknowledge(duty_id, party, client_id, action, now)

    # -- DIP breaches --------------------------------------------------------------------------

    async def dip_breaches_of(
        self, party: str, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Original DIP breaches ``party`` sent or was permitted to receive (a delivery that
        was not withheld), with their timers and outcome updates, oldest first."""
        m, dl = t.messages, t.deliveries
        received = (
            sa.select(dl.c.id)
            .where(
                dl.c.message_id == m.c.id,
                dl.c.recipient == party,
                dl.c.status != "withheld",
            )
            .exists()
        )
        q = (
            sa.select(m)
            .where(
                m.c.message_type == "dip-breach",
                m.c.refers_to.is_(None),
                sa.or_(m.c.sender == party, received),
            )
            .order_by(m.c.accepted_at, m.c.id)
        )
        if state is not None:
            q = q.where(m.c.state == state)
        q = q.limit(limit).offset(offset)
        async with self._tx() as c:
            rows = [row_dict(r) for r in (await c.execute(q)).all()]
            ids = [r["id"] for r in rows]
            timers: dict[str, list[dict[str, Any]]] = {}
            updates: dict[str, list[dict[str, Any]]] = {}
            if ids:
                for r in (
                    await c.execute(
                        sa.select(t.timers)
                        .where(t.timers.c.subject.in_(ids), t.timers.c.kind.like("dip-%"))
                        .order_by(t.timers.c.due_at)
                    )
                ).all():
                    x = row_dict(r)
                    timers.setdefault(x["subject"], []).append(x)
                for r in (
                    await c.execute(
                        sa.select(m.c.id, m.c.refers_to, m.c.lifecycle, m.c.payload, m.c.version)
                        .where(m.c.refers_to.in_(ids))
                        .order_by(m.c.version)
                    )
                ).all():
                    x = row_dict(r)
                    updates.setdefault(x["refers_to"], []).append(x)
        for breach in rows:
            breach["timers"] = timers.get(breach["id"], [])
            breach["updates"] = updates.get(breach["id"], [])
        return rows
