"""The rows of the events the broker itself raises (:mod:`services.core.timeliness.events`
builds them and decides who gets them), in the caller's transaction: the event's own
``messages`` row, a ``deliveries`` row per active subscription of a target party, a notice
on the inbox of a party with none, and the event completed when nothing is to be sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..notices import SYSTEM_SENDER
from . import tables as t
from .rows import new_delivery
from .sql import append_inbox, insert_ignore


@dataclass(frozen=True)
class Listener:
    """An active subscription of a party, where a broker event for it is delivered."""

    party: str
    subscription_id: str
    channel: str


class EventRepository:
    """Broker events and their deliveries, over one transaction's connection."""

    def __init__(self, c: AsyncConnection) -> None:
        self._c = c

    async def record_event(
        self,
        *,
        event_id: str,
        kind: str,
        person: str,
        event: dict[str, Any],
        parties: Sequence[str],
        now: dt.datetime,
    ) -> bool:
        """The event's ``messages`` row (sender ``isa-broker``, routed at once); False when
        an event with that id was recorded before (then nothing is written)."""
        inserted = await self._c.execute(
            insert_ignore(
                self._c,
                t.messages,
                {
                    "id": event_id,
                    "message_type": kind,
                    "sender": SYSTEM_SENDER,
                    "client_id": SYSTEM_SENDER,
                    "purposes": None,
                    "person": person,
                    "payload": event,
                    "decision": {"system_event": True, "recipients": list(parties)},
                    "status": "pending",
                    "accepted_at": now,
                    "routed_at": now,
                },
            )
        )
        return bool(inserted.rowcount)

    async def listeners(self, parties: Sequence[str]) -> list[Listener]:
        """The active subscriptions of ``parties``, whatever message types they take."""
        s = t.subscriptions
        rows = (
            await self._c.execute(
                sa.select(s).where(s.c.party.in_(parties), s.c.status == "active")
            )
        ).all()
        return [Listener(r.party, r.id, r.channel) for r in rows]

    async def notify(self, party: str, body: str) -> None:
        """A notice on ``party``'s inbox feed."""
        await append_inbox(self._c, party, "notice", body, None)

    async def add_delivery(
        self,
        *,
        event_id: str,
        kind: str,
        listener: Listener,
        person: str,
        now: dt.datetime,
    ) -> None:
        """A pending delivery of the event to ``listener`` (nothing if it exists)."""
        await self._c.execute(
            insert_ignore(
                self._c,
                t.deliveries,
                new_delivery(
                    message_id=event_id,
                    recipient=listener.party,
                    subscription_id=listener.subscription_id,
                    channel=listener.channel,
                    status="pending",
                    person=person,
                    accepted_at=now,
                    message_type=kind,
                    now=now,
                ),
            )
        )

    async def complete(self, event_id: str, now: dt.datetime) -> None:
        """The event ``complete``: nothing of it is to be delivered."""
        m = t.messages
        await self._c.execute(
            m.update().where(m.c.id == event_id).values(status="complete", completed_at=now)
        )
