"""One transaction of the store as domain code sees it: typed repositories over its
connection, never the connection itself, a table or a statement helper.

The store builds a :class:`Transaction` where domain code writes in a transaction the store
opened: the router's further writes when it marks a message routed (``also`` of
:meth:`Store.mark_routed`) and a timer's handler (:meth:`Store.fire_timer`). Everything
written through it commits or rolls back with the rest of that transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .dip import BreachRepository
from .duties import DutyRepository
from .events import EventRepository
from .rows import stored_message
from .sql import append_audit
from .values import StoredMessage


class MessageReads:
    """The messages a deadline is about."""

    def __init__(self, c: AsyncConnection) -> None:
        self._c = c

    async def get(self, message_id: str) -> StoredMessage | None:
        """A ``messages`` row as the rest of the store hands it out."""
        m = t.messages
        return stored_message(
            (await self._c.execute(sa.select(m).where(m.c.id == message_id))).first()
        )

    async def amendment_routed(self, root_id: str, newer_than: int) -> bool:
        """Whether an amendment of ``root_id`` newer than version ``newer_than`` has already
        been routed."""
        m = t.messages
        r = await self._c.execute(
            sa.select(m.c.id)
            .where(
                m.c.refers_to == root_id,
                m.c.lifecycle == "amended",
                m.c.routed_at.is_not(None),
                m.c.version > newer_than,
            )
            .limit(1)
        )
        return r.first() is not None


class AuditAppender:
    """The disclosure log, appended to in the transaction (ids, pseudonyms and field names
    only; ``detail`` a JSON object)."""

    def __init__(self, c: AsyncConnection) -> None:
        self._c = c

    async def append(self, event_name: str, **fields: Any) -> None:
        await append_audit(self._c, event_name, **fields)


class Transaction:
    """Typed repositories over one open transaction's connection."""

    def __init__(self, c: AsyncConnection) -> None:
        self.messages = MessageReads(c)
        self.duties = DutyRepository(c)
        self.breaches = BreachRepository(c)
        self.events = EventRepository(c)
        self.audit = AuditAppender(c)
