"""Store methods for retention (part of :class:`~services.core.store.store.Store`): the
delivered disclosures past their ``retain_until``, those with no retention declared, and
the deletion notices that tell recipients to delete them (services.core.retention).

A delivery is notified once: each batch is claimed with a conditional UPDATE on
``deletion_notified_at IS NULL`` in the same transaction that appends the notice to the
recipient's inbox and writes the ``deletion_notice`` entries, so that two runs at once
never notify one delivery twice and a run killed half-way loses nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..notices import SYSTEM_SENDER
from . import tables as t
from .base import StoreBase
from .rows import row_dict
from .sql import append_audit, append_inbox

#: (recipient, the deliveries claimed) -> (notice id, notice body)
NoticeBuilder = Callable[[str, Sequence[Mapping[str, Any]], dt.datetime], tuple[str, str]]

_d = t.deliveries
#: what the retention views show of a delivery: ids, dates and agreements, no personal data
_COLUMNS = (
    _d.c.id,
    _d.c.recipient,
    _d.c.message_id,
    _d.c.message_type,
    _d.c.grants,
    _d.c.delivered_at,
    _d.c.retention,
    _d.c.retain_until,
    _d.c.deletion_notified_at,
)


def _past_retention(as_of: dt.datetime, party: str | None) -> list[Any]:
    where = [
        _d.c.status == "delivered",
        _d.c.retain_until.is_not(None),
        _d.c.retain_until <= as_of.astimezone(dt.UTC),
    ]
    if party is not None:
        where.append(_d.c.recipient == party)
    return where


class RetentionStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def retention_due(
        self, as_of: dt.datetime, *, party: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Delivered disclosures whose ``retain_until`` is at or before ``as_of``, notified
        or not, soonest ended first."""
        q = (
            sa.select(*_COLUMNS)
            .where(*_past_retention(as_of, party))
            .order_by(_d.c.retain_until, _d.c.id)
        )
        if limit is not None:
            q = q.limit(limit)
        async with self._tx() as c:
            return [row_dict(r) for r in (await c.execute(q)).all()]

    async def retention_undeclared(
        self, *, party: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Delivered disclosures of agencies' messages for which no agreement declared a
        retention period for the recipient (broker events disclose nothing and are left
        out): the agreements need correcting."""
        q = (
            sa.select(*_COLUMNS)
            .join(t.messages, t.messages.c.id == _d.c.message_id)
            .where(
                _d.c.status == "delivered",
                _d.c.retain_until.is_(None),
                t.messages.c.sender != SYSTEM_SENDER,
            )
            .order_by(_d.c.delivered_at, _d.c.id)
        )
        if party is not None:
            q = q.where(_d.c.recipient == party)
        if limit is not None:
            q = q.limit(limit)
        async with self._tx() as c:
            return [row_dict(r) for r in (await c.execute(q)).all()]

    async def notify_retention_due(
        self,
        as_of: dt.datetime,
        now: dt.datetime,
        notice: NoticeBuilder,
        *,
        party: str | None = None,
        batch: int = 500,
    ) -> list[dict[str, Any]]:
        """Tell each recipient to delete its deliveries past retention at ``as_of`` and not
        yet notified: one inbox notice per recipient and batch of at most ``batch``
        deliveries. Returns one summary per notice sent (recipient, notice id, delivery
        ids); a second run sends nothing."""
        where = [*_past_retention(as_of, party), _d.c.deletion_notified_at.is_(None)]
        async with self._tx() as c:
            recipients = [
                r[0]
                for r in (
                    await c.execute(
                        sa.select(_d.c.recipient).where(*where).distinct().order_by(_d.c.recipient)
                    )
                ).all()
            ]
        sent: list[dict[str, Any]] = []
        for recipient in recipients:
            while True:
                summary = await self._notify_batch(recipient, where, now, notice, batch)
                if summary is None:
                    break
                if summary["delivery_ids"]:
                    sent.append(summary)
        return sent

    async def _notify_batch(
        self,
        recipient: str,
        where: list[Any],
        now: dt.datetime,
        notice: NoticeBuilder,
        batch: int,
    ) -> dict[str, Any] | None:
        """Claim and notify one batch of ``recipient``'s due deliveries in one transaction.
        None when none is left; an empty summary when another run claimed them first."""
        async with self._tx() as c:
            ids = [
                r[0]
                for r in (
                    await c.execute(
                        sa.select(_d.c.id)
                        .where(*where, _d.c.recipient == recipient)
                        .order_by(_d.c.retain_until, _d.c.id)
                        .limit(batch)
                    )
                ).all()
            ]
            if not ids:
                return None
            claimed = [
                row_dict(r)
                for r in (
                    await c.execute(
                        _d.update()
                        .where(_d.c.id.in_(ids), _d.c.deletion_notified_at.is_(None))
                        .values(deletion_notified_at=now)
                        .returning(*_COLUMNS, _d.c.person)
                    )
                ).all()
            ]
            if not claimed:
                return {"recipient": recipient, "notice_id": None, "delivery_ids": []}
            notice_id, body = notice(recipient, claimed, now)
            await append_inbox(c, recipient, "notice", body, None)
            for d in sorted(claimed, key=lambda d: (d["retain_until"], d["id"])):
                await append_audit(
                    c,
                    "deletion_notice",
                    message_id=d["message_id"],
                    message_type=d["message_type"],
                    recipient=recipient,
                    person=d["person"],
                    detail={
                        "delivery_id": d["id"],
                        "notice_id": notice_id,
                        "retention": d["retention"],
                        "retain_until": d["retain_until"].isoformat(),
                    },
                )
            return {
                "recipient": recipient,
                "notice_id": notice_id,
                "delivery_ids": sorted(d["id"] for d in claimed),
            }
