"""Store methods of the inbox channel: a party's feed of messages and notices, and each
client's acknowledged cursor. Part of :class:`~.store.Store`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from . import tables as t
from .base import StoreBase
from .rows import row_dict
from .sql import append_audit, append_inbox


class InboxStore(StoreBase):
    async def add_notice(self, party: str, body: str) -> None:
        """A notice on a party's own feed (its inbox): ids and reasons, no personal data."""
        async with self._tx() as c:
            await append_inbox(c, party, "notice", body, None)

    async def inbox_after(
        self, party: str, after: int, limit: int, kinds: tuple[str, ...] = ("message", "notice")
    ) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.inbox)
                .where(t.inbox.c.party == party, t.inbox.c.seq > after, t.inbox.c.kind.in_(kinds))
                .order_by(t.inbox.c.seq)
                .limit(limit)
            )
            return [row_dict(row) for row in r.all()]

    async def inbox_cursor(self, client_id: str) -> int:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.inbox_cursors.c.cursor).where(t.inbox_cursors.c.client_id == client_id)
            )
            return int(r.scalar() or 0)

    async def ack_inbox(self, party: str, client_id: str, cursor: int) -> tuple[int, int] | None:
        """Move a client's acknowledged cursor forward to ``cursor`` (never back). Returns
        (previous, new), or None when ``cursor`` is beyond the newest entry of the inbox."""
        cursors = t.inbox_cursors
        async with self._tx() as c:
            newest = (
                await c.execute(
                    sa.select(sa.func.max(t.inbox.c.seq)).where(t.inbox.c.party == party)
                )
            ).scalar() or 0
            if cursor > newest:
                return None
            r = await c.execute(sa.select(cursors.c.cursor).where(cursors.c.client_id == client_id))
            previous = r.scalar()
            now = dt.datetime.now(dt.UTC)
            if previous is None:
                await c.execute(
                    cursors.insert().values(
                        client_id=client_id, party=party, cursor=cursor, updated_at=now
                    )
                )
                previous = 0
            elif cursor > previous:
                await c.execute(
                    cursors.update()
                    .where(cursors.c.client_id == client_id)
                    .values(cursor=cursor, updated_at=now)
                )
            new = max(int(previous), cursor)
            if new > previous:
                acked = await c.execute(
                    sa.select(t.inbox.c.delivery_id).where(
                        t.inbox.c.party == party,
                        t.inbox.c.seq > previous,
                        t.inbox.c.seq <= new,
                        t.inbox.c.delivery_id.is_not(None),
                    )
                )
                await append_audit(
                    c,
                    "inbox_acknowledged",
                    actor=party,
                    recipient=party,
                    detail={
                        "client_id": client_id,
                        "from": int(previous),
                        "to": new,
                        "delivery_ids": [row[0] for row in acked.all()],
                    },
                )
            return int(previous), new
