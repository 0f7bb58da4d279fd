"""Store methods of the subscriptions: created, rotated, disabled and enabled, deleted (their
unfinished deliveries dead-lettered), and the endpoint's run of failures. Part of
:class:`~.store.Store`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .base import StoreBase
from .rows import TERMINAL_DELIVERY, disclosure, row_dict, row_or_none, utc
from .sql import append_audit, complete_if_settled


class SubscriptionStore(StoreBase):
    async def add_subscription(self, sub: dict[str, Any]) -> None:
        async with self._tx() as c:
            await c.execute(t.subscriptions.insert().values(**sub))
            await append_audit(
                c,
                "subscription_created",
                actor=sub["party"],
                detail={
                    "subscription_id": sub["id"],
                    "channel": sub.get("channel", "webhook"),
                    "message_types": sub["message_types"],
                },
            )

    async def rotate_subscription_secret(
        self, party: str, sub_id: str, secret: str, previous_until: dt.datetime
    ) -> dict[str, Any] | None:
        """Make ``secret`` the signing secret of the party's webhook subscription; the old one
        keeps signing too until ``previous_until``. None if no such subscription of theirs."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions).where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status != "deleted",
                    t.subscriptions.c.channel == "webhook",
                )
            )
            row = row_or_none(r.first())
            if row is None:
                return None
            values = {
                "secret": secret,
                "previous_secret": row["secret"],
                "previous_secret_until": previous_until,
            }
            await c.execute(
                t.subscriptions.update().where(t.subscriptions.c.id == sub_id).values(**values)
            )
            await append_audit(
                c,
                "subscription_secret_rotated",
                actor=party,
                detail={
                    "subscription_id": sub_id,
                    "previous_secret_until": previous_until.isoformat(),
                },
            )
            return {**row, **values}

    async def subscription_signing_keys(self) -> list[dict[str, Any]]:
        """Id, ``secret`` and ``previous_secret`` of every subscription that holds a webhook
        signing key (services.core.crypto.at_rest re-seals them)."""
        s = t.subscriptions
        async with self._tx() as c:
            r = await c.execute(
                sa.select(s.c.id, s.c.secret, s.c.previous_secret).where(
                    sa.or_(s.c.secret.is_not(None), s.c.previous_secret.is_not(None))
                )
            )
            return [dict(row._mapping) for row in r.all()]

    async def replace_signing_key(self, sub_id: str, column: str, old: str, new: str) -> bool:
        """Replace a stored signing key (``secret`` or ``previous_secret``) only if it is still
        ``old``; False when a rotation changed it meanwhile."""
        s = t.subscriptions
        async with self._tx() as c:
            r = await c.execute(
                s.update().where(s.c.id == sub_id, s.c[column] == old).values({column: new})
            )
            return bool(r.rowcount)

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.id == sub_id))
            return row_or_none(r.first())

    async def list_subscriptions(self, party: str) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions)
                .where(t.subscriptions.c.party == party)
                .order_by(t.subscriptions.c.created_at)
            )
            return [row_dict(row) for row in r.all()]

    async def delete_subscription(self, party: str, sub_id: str) -> bool:
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status != "deleted",
                )
                .values(status="deleted")
            )
            if r.rowcount:
                await append_audit(
                    c, "subscription_deleted", actor=party, detail={"subscription_id": sub_id}
                )
                await self._dead_letter_pending(c, sub_id, "subscription deleted")
            return bool(r.rowcount)

    async def disable_subscription(self, sub_id: str, reason: str) -> list[dict[str, Any]] | None:
        """Disable an active subscription and dead-letter its unfinished deliveries (they can
        be replayed once it is enabled again). Returns those deliveries with their senders,
        or None when the subscription was not active."""
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id, t.subscriptions.c.status == "active")
                .values(status="disabled", status_reason=reason[:500])
            )
            if not r.rowcount:
                return None
            await append_audit(
                c, "subscription_disabled", detail={"subscription_id": sub_id, "reason": reason}
            )
            return await self._dead_letter_pending(c, sub_id, f"subscription disabled: {reason}")

    async def _dead_letter_pending(
        self, c: AsyncConnection, sub_id: str, reason: str
    ) -> list[dict[str, Any]]:
        q = (
            sa.select(t.deliveries, t.messages.c.sender)
            .join(t.messages, t.messages.c.id == t.deliveries.c.message_id)
            .where(
                t.deliveries.c.subscription_id == sub_id,
                t.deliveries.c.status.not_in(TERMINAL_DELIVERY),
            )
        )
        rows = [row_dict(r) for r in (await c.execute(q)).all()]
        now = dt.datetime.now(dt.UTC)
        for row in rows:
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == row["id"])
                .values(
                    status="dead_lettered",
                    last_error=reason[:500],
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
            await append_audit(
                c,
                "dead_lettered",
                message_id=row["message_id"],
                message_type=row["message_type"],
                recipient=row["recipient"],
                person=row["person"],
                detail=disclosure(row, reason),
            )
            await complete_if_settled(c, row["message_id"])
        return rows

    async def enable_subscription(self, party: str, sub_id: str) -> dict[str, Any] | None:
        """Re-enable a disabled subscription of ``party``; None when it has none such."""
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status.in_(("active", "disabled")),
                )
                .values(status="active", status_reason=None, failing_since=None)
            )
            if not r.rowcount:
                return None
            await append_audit(
                c, "subscription_enabled", actor=party, detail={"subscription_id": sub_id}
            )
            row = await c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.id == sub_id))
            return row_or_none(row.first())

    async def active_subscriptions(self, party: str, message_type: str) -> list[dict[str, Any]]:
        return (await self.active_subscriptions_of([party], message_type)).get(party, [])

    async def active_subscriptions_of(
        self, parties: list[str], message_type: str, statuses: tuple[str, ...] = ("active",)
    ) -> dict[str, list[dict[str, Any]]]:
        """Per party, its subscriptions in one of ``statuses`` that take ``message_type``
        (one query)."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions)
                .where(t.subscriptions.c.party.in_(parties), t.subscriptions.c.status.in_(statuses))
                .order_by(t.subscriptions.c.created_at)
            )
            out: dict[str, list[dict[str, Any]]] = {}
            for row in r.all():
                sub = row_or_none(row)
                if sub is not None and message_type in sub["message_types"]:
                    out.setdefault(sub["party"], []).append(sub)
            return out

    async def endpoint_failed(self, sub_id: str, now: dt.datetime) -> dt.datetime:
        """Note a failed attempt; returns when the current run of failures began."""
        async with self._tx() as c:
            await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id, t.subscriptions.c.failing_since.is_(None))
                .values(failing_since=now)
            )
            r = await c.execute(
                sa.select(t.subscriptions.c.failing_since).where(t.subscriptions.c.id == sub_id)
            )
            since = r.scalar()
        return utc(since) if since is not None else now
