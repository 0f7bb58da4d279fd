"""Store methods of the deliveries: what is due (in per-person order, the priority lane
first), leases between routers, one attempt's outcome in one transaction, requeueing
(replay, redelivery) and the history of attempts. Part of :class:`~.store.Store`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .base import StoreBase
from .rows import (
    OPEN_DELIVERY,
    TERMINAL_DELIVERY,
    chunks,
    disclosure,
    row_dict,
    row_or_none,
    to_utc,
)
from .sql import append_audit, append_audits, append_inbox, complete_if_settled
from .values import DeliveryOutcome, DueDelivery


class DeliveryStore(StoreBase):
    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.deliveries).where(t.deliveries.c.id == delivery_id))
            return row_or_none(r.first())

    async def due_deliveries(
        self, now: dt.datetime, limit: int, exclude: set[str]
    ) -> list[DueDelivery]:
        """Deliveries whose next attempt is due and that per-person order allows now: no
        earlier message about the same person is still unfinished for the same subscription,
        and none is still unrouted (it may concern this recipient too). Each row carries
        its message and subscription; the priority lane first, then oldest message first."""
        d, e, m = t.deliveries, t.deliveries.alias("e"), t.messages.alias("m")
        earlier_unfinished = (
            sa.select(e.c.id)
            .where(
                e.c.subscription_id == d.c.subscription_id,
                e.c.person == d.c.person,
                e.c.status.in_(OPEN_DELIVERY),
                sa.or_(
                    e.c.accepted_at < d.c.accepted_at,
                    sa.and_(e.c.accepted_at == d.c.accepted_at, e.c.message_id < d.c.message_id),
                ),
            )
            .exists()
        )
        earlier_unrouted = (
            sa.select(m.c.id)
            .where(
                m.c.person == d.c.person,
                m.c.routed_at.is_(None),
                m.c.status == "pending",
                m.c.accepted_at < d.c.accepted_at,
            )
            .exists()
        )
        q = (
            sa.select(
                d,
                t.messages.c.sender,
                t.messages.c.payload,
                t.messages.c.decision,
                t.messages.c.refers_to,
                t.messages.c.lifecycle,
                t.messages.c.version,
                t.messages.c.timeliness,
                t.subscriptions.c.url,
                t.subscriptions.c.secret,
                t.subscriptions.c.previous_secret,
                t.subscriptions.c.previous_secret_until,
                t.subscriptions.c.status.label("subscription_status"),
                t.subscriptions.c.failing_since,
                t.subscriptions.c.encrypt,
            )
            .join(t.messages, t.messages.c.id == d.c.message_id)
            .join(t.subscriptions, t.subscriptions.c.id == d.c.subscription_id)
            .where(
                d.c.status.in_(OPEN_DELIVERY),
                d.c.next_attempt_at <= now,
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                ~earlier_unfinished,
                ~earlier_unrouted,
            )
            # the priority lane first (services.core.timeliness.priority), then oldest first
            .order_by(d.c.priority.desc(), d.c.accepted_at, d.c.message_id)
            .limit(limit + len(exclude))
        )
        async with self._tx() as c:
            rows = [row_dict(r) for r in (await c.execute(q)).all()]
        return [cast(DueDelivery, r) for r in rows if r["id"] not in exclude][:limit]

    async def claim(
        self, ids: list[str], owner: str, now: dt.datetime, until: dt.datetime
    ) -> set[str]:
        """Lease deliveries to one router so that two routers never attempt one delivery at
        once; a lease outlives a crashed router only until ``until``.

        Only a delivery still open and due is leased: the rows were chosen from a read made
        before, and another router may have attempted and settled one since (its lease then
        cleared), which must not be attempted again."""
        if not ids:
            return set()
        d = t.deliveries
        lease = (
            d.update()
            .where(
                d.c.id.in_(ids),
                d.c.status.in_(OPEN_DELIVERY),
                d.c.next_attempt_at <= now,
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=until)
        )
        async with self._tx() as c:
            r = await c.execute(lease.returning(d.c.id))
            return {row[0] for row in r.all()}

    async def record_outcome(self, delivery: Mapping[str, Any], outcome: DeliveryOutcome) -> None:
        """Apply one attempt's outcome in one transaction: its history row, the delivery's new
        state (retrying with its next due time, or terminal with its disclosure-log entry,
        a delivered one with its retention), an inbox entry for the inbox channel, and the
        message's completion."""
        await self.record_outcomes([(delivery, outcome)])

    async def record_outcomes(
        self, outcomes: Sequence[tuple[Mapping[str, Any], DeliveryOutcome]]
    ) -> None:
        """Apply several attempts' outcomes (each as :meth:`record_outcome`) in one
        transaction, with one statement per kind of write rather than per outcome: a router
        records what its attempts did together (group commit), so that the store's round
        trips and commits do not grow with the deliveries. The outcomes are of different
        deliveries."""
        if not outcomes:
            return
        now = dt.datetime.now(dt.UTC)
        attempts: list[dict[str, Any]] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        recovered: set[str] = set()
        inbox: list[tuple[str, str, str]] = []
        audits: list[dict[str, Any]] = []
        settled: set[str] = set()
        for delivery, outcome in outcomes:
            values = _outcome_values(delivery, outcome, now)
            attempt = outcome.attempt
            if attempt is not None:
                attempts.append(
                    {
                        "delivery_id": delivery["id"],
                        "at": attempt.at,
                        "status_code": attempt.status_code,
                        "error": attempt.error[:500] if attempt.error else None,
                        "duration_ms": attempt.duration_ms,
                    }
                )
            updates.setdefault(tuple(sorted(values)), []).append(
                {"b_id": delivery["id"], **{f"b_{k}": v for k, v in values.items()}}
            )
            if outcome.endpoint_ok and delivery.get("subscription_id"):
                recovered.add(delivery["subscription_id"])
            if outcome.inbox_body is not None:
                inbox.append((delivery["recipient"], outcome.inbox_body, delivery["id"]))
            if outcome.status in TERMINAL_DELIVERY:
                logged = {**delivery, "fields": values["fields"], "grants": values["grants"]}
                kept = outcome.retention.logged() if outcome.retention is not None else {}
                audits.append(
                    {
                        "event": outcome.status,
                        "message_id": delivery["message_id"],
                        "message_type": delivery["message_type"],
                        "recipient": delivery["recipient"],
                        "person": delivery["person"],
                        "detail": {**disclosure(logged, outcome.reason), **kept},
                    }
                )
                settled.add(delivery["message_id"])
        d = t.deliveries
        async with self._tx() as c:
            if attempts:
                await c.execute(t.delivery_attempts.insert(), attempts)
            for keys, rows in updates.items():
                values = {k: sa.bindparam(f"b_{k}") for k in keys if k != "attempts"}
                if "attempts" in keys:  # an attempt was made: counted here
                    values["attempts"] = d.c.attempts + 1
                    for row in rows:
                        del row["b_attempts"]
                update = d.update().where(d.c.id == sa.bindparam("b_id")).values(values)
                await c.execute(update, rows)
            if recovered:
                await c.execute(
                    t.subscriptions.update()
                    .where(
                        t.subscriptions.c.id.in_(sorted(recovered)),
                        t.subscriptions.c.failing_since.is_not(None),
                    )
                    .values(failing_since=None)
                )
            for party, body, delivery_id in inbox:
                await append_inbox(c, party, "message", body, delivery_id)
            await append_audits(c, audits)
            for message_id in sorted(settled):
                await complete_if_settled(c, message_id)

    async def redeliver_channel(
        self, channel: str, since: dt.datetime, now: dt.datetime
    ) -> list[str]:
        """Queue again the deliveries on ``channel`` completed since ``since``: used for the
        ``kafka`` channel when the embedded broker restarted and lost its topics. Receivers
        de-duplicate on the delivery id, which stays the same."""
        d = t.deliveries
        async with self._tx() as c:
            rows = (
                await c.execute(
                    sa.select(
                        d.c.id, d.c.message_id, d.c.message_type, d.c.recipient, d.c.person
                    ).where(
                        d.c.channel == channel,
                        d.c.status == "delivered",
                        d.c.updated_at >= to_utc(since),
                    )
                )
            ).all()
            await self._requeue(
                c,
                rows,
                now,
                "redelivery_queued",
                None,
                {"reason": "the broker lost the agency topic"},
            )
        return [r[0] for r in rows]

    async def _requeue(
        self,
        c: AsyncConnection,
        rows: Sequence[Any],
        now: dt.datetime,
        event_name: str,
        actor: str | None,
        detail: dict[str, Any],
    ) -> None:
        """Queue deliveries again with a fresh retry schedule, reopen their messages, and
        log one ``event_name`` entry per delivery. ``rows``: (id, message_id, message_type,
        recipient, person)."""
        d = t.deliveries
        for chunk in chunks([r[0] for r in rows], 500):
            await c.execute(
                d.update()
                .where(d.c.id.in_(chunk))
                .values(
                    status="pending",
                    retry_index=0,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=dt.datetime.now(dt.UTC),
                )
            )
        for message_ids in chunks(sorted({r[1] for r in rows}), 500):
            await c.execute(
                t.messages.update()
                .where(t.messages.c.id.in_(message_ids))
                .values(status="pending", completed_at=None)
            )
        for r in rows:
            await append_audit(
                c,
                event_name,
                message_id=r[1],
                message_type=r[2],
                actor=actor,
                recipient=r[3],
                person=r[4],
                detail={"delivery_id": r[0], **detail},
            )

    async def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds (a router starting again after a crash)."""
        async with self._tx() as c:
            r = await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            return int(r.rowcount or 0)

    async def release(self, delivery_id: str) -> None:
        """Give up a lease without attempting (e.g. the router is stopping)."""
        async with self._tx() as c:
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery_id)
                .values(lease_owner=None, lease_until=None)
            )

    async def replay(
        self,
        party: str,
        now: dt.datetime,
        *,
        delivery_id: str | None = None,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[str]:
        """Queue dead-lettered deliveries of ``party`` again, with a fresh retry schedule,
        to subscriptions that are active. The ISAs in force are checked again when each
        is attempted. Returns the ids queued."""
        d = t.deliveries
        q = (
            sa.select(d.c.id, d.c.message_id, d.c.message_type, d.c.recipient, d.c.person)
            .join(t.subscriptions, t.subscriptions.c.id == d.c.subscription_id)
            .where(
                d.c.recipient == party,
                d.c.status == "dead_lettered",
                t.subscriptions.c.status == "active",
            )
        )
        q = _delivery_filters(q, since, until, id=delivery_id, subscription_id=subscription_id)
        async with self._tx() as c:
            rows = (await c.execute(q)).all()
            await self._requeue(c, rows, now, "replay_requested", party, {})
        return [r[0] for r in rows]

    async def list_deliveries(
        self,
        *,
        recipient: str | None = None,
        message_id: str | None = None,
        status: str | None = None,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        d = t.deliveries
        q = _delivery_filters(
            sa.select(d).order_by(d.c.created_at, d.c.id),
            since,
            until,
            recipient=recipient,
            message_id=message_id,
            status=status,
            subscription_id=subscription_id,
        )
        if limit is not None:
            q = q.limit(limit)
        async with self._tx() as c:
            return [row_dict(row) for row in (await c.execute(q)).all()]

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return (await self.attempts_of([delivery_id])).get(delivery_id, [])

    async def attempts_of(self, delivery_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._tx() as c:
            for chunk in chunks(delivery_ids, 500):
                r = await c.execute(
                    sa.select(t.delivery_attempts)
                    .where(t.delivery_attempts.c.delivery_id.in_(chunk))
                    .order_by(t.delivery_attempts.c.id)
                )
                for row in r.all():
                    x = row_dict(row)
                    out.setdefault(x["delivery_id"], []).append(x)
        return out


def _delivery_filters(
    q: Any, since: dt.datetime | None, until: dt.datetime | None, **equal: str | None
) -> Any:
    """Narrow a query on ``deliveries``: each given column equal to its value, and
    ``updated_at`` in [since, until)."""
    d = t.deliveries
    for column, value in equal.items():
        if value is not None:
            q = q.where(d.c[column] == value)
    if since is not None:
        q = q.where(d.c.updated_at >= to_utc(since))
    if until is not None:
        q = q.where(d.c.updated_at < to_utc(until))
    return q


def _outcome_values(
    delivery: Mapping[str, Any], outcome: DeliveryOutcome, now: dt.datetime
) -> dict[str, Any]:
    """The columns of ``delivery`` that ``outcome`` sets; ``attempts`` (True) when an attempt
    was made, counted in the statement."""
    attempt = outcome.attempt
    values: dict[str, Any] = {
        "status": outcome.status,
        "updated_at": now,
        "lease_owner": None,
        "lease_until": None,
        "fields": outcome.fields if outcome.fields is not None else delivery["fields"],
        "grants": outcome.grants if outcome.grants is not None else delivery["grants"],
    }
    if outcome.next_attempt_at is not None:
        values["next_attempt_at"] = outcome.next_attempt_at
    if outcome.status == "delivered":
        # on the clock accepted_at was read from: the attempt's start plus its duration
        values["delivered_at"] = attempt.ended_at if attempt is not None else now
    if outcome.retention is not None:
        values["retention"] = outcome.retention.period
        values["retain_until"] = outcome.retention.retain_until
    if outcome.retry_index is not None:
        values["retry_index"] = outcome.retry_index
    if attempt is not None:
        values["attempts"] = True
        values["last_status_code"] = attempt.status_code
    error = outcome.reason or (attempt.error if attempt is not None else None)
    values["last_error"] = error[:500] if error else None
    return values
