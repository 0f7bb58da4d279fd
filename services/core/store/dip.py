"""The rows of DIP breach deadlines, in the caller's transaction: the ``dip-reminder:<n>``
and ``dip-expiry`` timers of a breach, its expiry, and the parties it reached. What
:mod:`services.core.timeliness.dip` decides (which reminders, when, to whom, what they say)
stays there; this module only reads and writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .sql import insert_ignore

REMINDER = "dip-reminder"
EXPIRY = "dip-expiry"


class BreachRepository:
    """DIP breach timers and state, over one transaction's connection."""

    def __init__(self, c: AsyncConnection) -> None:
        self._c = c

    async def add_timer(
        self, kind: str, breach_id: str, due_at: dt.datetime, detail: dict[str, Any]
    ) -> None:
        """A pending timer of the breach (nothing if one of that kind exists)."""
        await self._c.execute(
            insert_ignore(
                self._c,
                t.timers,
                {
                    "kind": kind,
                    "subject": breach_id,
                    "due_at": due_at,
                    "status": "pending",
                    "attempts": 0,
                    "detail": detail,
                },
            )
        )

    async def cancel_timers(self, breach_id: str) -> None:
        """The breach's pending reminders and expiry cancelled."""
        tm = t.timers
        await self._c.execute(
            tm.update()
            .where(
                tm.c.subject == breach_id,
                sa.or_(tm.c.kind == EXPIRY, tm.c.kind.like(f"{REMINDER}:%")),
                tm.c.status == "pending",
            )
            .values(status="cancelled")
        )

    async def reminders_due(self, breach_id: str, now: dt.datetime) -> list[str]:
        """The kinds of the breach's pending reminders due by ``now``."""
        tm = t.timers
        r = await self._c.execute(
            sa.select(tm.c.kind).where(
                tm.c.subject == breach_id,
                tm.c.kind.like(f"{REMINDER}:%"),
                tm.c.status == "pending",
                tm.c.due_at <= now,
            )
        )
        return [k for (k,) in r.all()]

    async def recipients(self, breach_id: str) -> list[str]:
        """Every recipient the breach was permitted to reach (a delivery not withheld)."""
        dl = t.deliveries
        r = await self._c.execute(
            sa.select(dl.c.recipient)
            .where(dl.c.message_id == breach_id, dl.c.status != "withheld")
            .distinct()
        )
        return [row[0] for row in r.all()]

    async def expire(self, breach_id: str) -> bool:
        """The breach ``expired`` if it is still open; False if it no longer is."""
        m = t.messages
        r = await self._c.execute(
            m.update()
            .where(m.c.id == breach_id, sa.or_(m.c.state.is_(None), m.c.state == "open"))
            .values(state="expired")
        )
        return bool(r.rowcount)
