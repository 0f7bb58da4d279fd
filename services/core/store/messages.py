"""Store methods of the messages and their outbox: intake's one transaction (message,
decision, outbox row, disclosure-log entry), Idempotency-Keys, the relay's outbox, the
reconciler's republishing, and the router marking a message routed with its delivery rows.
Part of :class:`~.store.Store`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .base import StoreBase
from .rows import (
    TERMINAL_DELIVERY,
    chunks,
    disclosure,
    row_dict,
    stored_message,
    to_utc,
    utc,
)
from .sql import (
    append_audit,
    append_audits,
    complete_if_settled,
    index_person,
    insert_ignore_many,
)
from .transaction import Transaction
from .values import StoredMessage


class MessageStore(StoreBase):
    async def accept_message(
        self, message: dict[str, Any], topic: str, pseudonyms: Sequence[str] = ()
    ) -> StoredMessage | None:
        """Store a message, its decision and its outbox row in one transaction, and index it
        under the ``pseudonyms`` of every identifier of its person (subject access).

        Returns None when stored; when the (client, Idempotency-Key) pair already exists,
        returns the existing message instead and stores nothing."""
        try:
            async with self._tx() as c:
                await insert_accepted(c, message, topic, pseudonyms)
            return None
        except IntegrityError:
            if message.get("idempotency_key") is None:
                raise
            existing = await self.find_idempotent(message["client_id"], message["idempotency_key"])
            if existing is None:
                raise
            return existing

    async def idempotent_unexpired(
        self, client_id: str, key: str, accepted_before: dt.datetime
    ) -> StoredMessage | None:
        """The message this client stored under Idempotency-Key ``key``, in one transaction;
        None when there is none, or when it was accepted before ``accepted_before``: the key
        has expired and is forgotten here so that it can be used again (the message is
        kept)."""
        m = t.messages
        async with self._tx() as c:
            r = await c.execute(
                sa.select(m).where(m.c.client_id == client_id, m.c.idempotency_key == key)
            )
            existing = stored_message(r.first())
            if existing is None or utc(existing["accepted_at"]) >= to_utc(accepted_before):
                return existing
            await c.execute(m.update().where(m.c.id == existing["id"]).values(idempotency_key=None))
            return None

    async def find_idempotent(self, client_id: str, key: str) -> StoredMessage | None:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.messages).where(
                    t.messages.c.client_id == client_id, t.messages.c.idempotency_key == key
                )
            )
            return stored_message(r.first())

    async def get_message(self, message_id: str) -> StoredMessage | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            return stored_message(r.first())

    async def unpublished(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self._tx() as c:
            q = (
                sa.select(t.outbox, t.messages)
                .join(t.messages, t.messages.c.id == t.outbox.c.message_id)
                .where(t.outbox.c.published_at.is_(None))
                # the priority lane first (a recall of a person unlawfully at large)
                .order_by(t.messages.c.priority.desc(), t.outbox.c.created_at)
                .limit(limit)
            )
            return [row_dict(x) for x in (await c.execute(q)).all()]

    async def mark_published(self, message_id: str, at: dt.datetime | None = None) -> None:
        async with self._tx() as c:
            await c.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(
                    published_at=at or dt.datetime.now(dt.UTC), attempts=t.outbox.c.attempts + 1
                )
            )

    async def mark_publish_failed(self, message_id: str, error: str) -> None:
        async with self._tx() as c:
            await c.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(attempts=t.outbox.c.attempts + 1, last_error=error[:500])
            )

    async def complete_if_settled(self, message_id: str) -> bool:
        """Mark a message complete when every delivery has a terminal outcome; whether this
        call completed it."""
        async with self._tx() as c:
            return await complete_if_settled(c, message_id)

    # -- reconciliation: messages the router has not seen --------------------------------------

    async def requeue_unrouted(
        self, now: dt.datetime, after_seconds: float, *, everything: bool = False
    ) -> list[str]:
        """Publish again the messages the router has not routed although they were published
        ``after_seconds`` ago (the broker or a consumer lost them). Each repeat waits twice as
        long as the one before (at most 64 times ``after_seconds``) so that a router that is
        down does not make the relay flood the broker. ``everything``: every unrouted message
        at once, used after the embedded broker restarted empty. Returns the message ids."""
        async with self._tx() as c:
            q = (
                sa.select(t.outbox.c.message_id, t.outbox.c.published_at, t.outbox.c.republished)
                .join(t.messages, t.messages.c.id == t.outbox.c.message_id)
                .where(
                    t.messages.c.routed_at.is_(None),
                    t.messages.c.status == "pending",
                    t.outbox.c.published_at.is_not(None),
                )
                .order_by(t.outbox.c.created_at)
                .limit(5000)
            )
            due = []
            for message_id, published_at, republished in (await c.execute(q)).all():
                wait = after_seconds * (2 ** min(int(republished), 6))
                if everything or utc(published_at) <= now - dt.timedelta(seconds=wait):
                    due.append(message_id)
            for chunk in chunks(due, 500):
                await c.execute(
                    t.outbox.update()
                    .where(t.outbox.c.message_id.in_(chunk))
                    .values(published_at=None, republished=t.outbox.c.republished + 1)
                )
            return due

    async def mark_routed(
        self,
        message_id: str,
        rows: list[dict[str, Any]],
        also: Callable[[Transaction], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Record the router's delivery rows for a message in one transaction, skipping rows
        that already exist (a record seen twice, or published again by the reconciler), and
        mark the message routed. Rows created already terminal (withheld, no channel) get
        their disclosure-log entry here. Returns the ids of the rows created.

        ``also`` writes further rows (duties, timers) in the same transaction, through its
        repositories (:class:`~services.core.store.transaction.Transaction`), only when
        this call is the one that marks the message routed, so that they are written once
        and a router killed in between loses nothing."""
        created: list[str] = []
        async with self._tx() as c:
            message = (
                await c.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            ).first()
            if message is None:
                return created
            m = message._mapping
            inserted = await insert_ignore_many(c, t.deliveries, rows)
            created = [row["id"] for row in rows if row["id"] in inserted]
            await append_audits(
                c,
                [
                    {
                        "event": row["status"],
                        "message_id": message_id,
                        "message_type": m["message_type"],
                        "recipient": row["recipient"],
                        "person": m["person"],
                        "detail": disclosure(row, row.get("last_error")),
                    }
                    for row in rows
                    if row["id"] in inserted and row["status"] in TERMINAL_DELIVERY
                ],
            )
            routed = await c.execute(
                t.messages.update()
                .where(t.messages.c.id == message_id, t.messages.c.routed_at.is_(None))
                .values(routed_at=dt.datetime.now(dt.UTC))
            )
            if also is not None and routed.rowcount:
                await also(Transaction(c))
            await complete_if_settled(c, message_id)
        return created


async def insert_accepted(
    c: AsyncConnection, message: dict[str, Any], topic: str, pseudonyms: Sequence[str]
) -> None:
    """Write an accepted message (an original or an update): its row, its person index, its
    outbox row and its ``accepted`` disclosure-log entry."""
    await c.execute(t.messages.insert().values(**message))
    await index_person(c, message["id"], [message["person"], *pseudonyms])
    await c.execute(
        t.outbox.insert().values(
            message_id=message["id"], topic=topic, created_at=message["accepted_at"], attempts=0
        )
    )
    await append_audit(
        c,
        "accepted",
        message_id=message["id"],
        message_type=message["message_type"],
        actor=message["sender"],
        person=message["person"],
        detail={"client_id": message["client_id"], "decision": message["decision"]},
    )
