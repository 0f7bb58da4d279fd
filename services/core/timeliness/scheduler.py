"""The durable scheduler: deadlines and reminders are ``timers`` rows in the store, not
timers in memory, so they survive restarts and fire once however many routers run.

Each router runs one :class:`Scheduler` next to its dispatcher. A look (:meth:`run_due`)
reads the pending rows due by ``runtime.clock()``, claims each with a conditional UPDATE (a
lease), runs the handler for the row's kind and marks the row ``done`` in the same
transaction (:meth:`Store.fire_timer`). A router killed half-way leaves the row pending:
its lease runs out and the row fires then, in whichever router looks first; a restarted
router takes its own leases back at once. Handlers are idempotent besides: an escalation
fires only for a duty still ``open``, an expiry only for a breach still ``open``, and a
broker event has an id derived from its occurrence.

A handler receives the transaction's repositories
(:class:`~services.core.store.transaction.Transaction`) and the timer
(:class:`~services.core.store.duties.Timer`), never a connection: the rows it reads and
writes are the store's (:mod:`services.core.store.duties`, :mod:`services.core.store.dip`,
:mod:`services.core.store.events`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from ..errors import Unavailable
from ..runtime import Runtime
from ..store.timeliness import TimerHandler
from . import dip, duties

log = logging.getLogger("isa_broker.scheduler")

#: timer kind (before any ``:``) -> handler
HANDLERS: dict[str, TimerHandler] = {
    duties.DUTY_TIMER: duties.escalate,
    dip.REMINDER: dip.remind,
    dip.EXPIRY: dip.expire,
}
#: how long a claimed timer is ours; a handler is one transaction, far shorter than this
LEASE = dt.timedelta(seconds=120)
#: a handler that raised is tried again after this long
RETRY = dt.timedelta(seconds=60)
BATCH = 100


class Scheduler:
    def __init__(
        self, runtime: Runtime, owner: str, on_event: Callable[[], None] | None = None
    ) -> None:
        self.runtime = runtime
        self.owner = owner
        #: called after a look that fired something (the dispatcher's ``wake``)
        self.on_event = on_event
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New timers were written: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Look for due timers every ``scheduler_poll_seconds`` until cancelled."""
        poll = self.runtime.settings.timeliness.scheduler_poll_seconds
        with contextlib.suppress(Unavailable):
            released = await self.runtime.store.release_timer_leases(self.owner)
            if released:
                log.warning("took back %d timers leased before a restart", released)
        while True:
            self._wake.clear()
            try:
                await self.run_due(self.runtime.clock())
            except Unavailable as e:
                log.warning("scheduler: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    async def run_due(self, now: dt.datetime) -> int:
        """Fire every timer due by ``now`` that this scheduler can claim; returns how many
        it fired (done or rescheduled)."""
        store = self.runtime.store
        fired = 0
        while True:
            rows = await store.due_timers(now, BATCH)
            progressed = 0
            for row in rows:
                if not await store.claim_timer(row["id"], self.owner, now, now + LEASE):
                    continue  # another router has it
                progressed += 1
                handler = HANDLERS.get(row["kind"].split(":", 1)[0])
                if handler is None:
                    await store.timer_failed(
                        row["id"], self.owner, f"no handler for kind {row['kind']!r}", now + RETRY
                    )
                    continue
                try:
                    outcome = await store.fire_timer(row["id"], self.owner, now, handler)
                except Unavailable:
                    raise
                except Exception as e:  # a bug must not stop the loop; the row is retried
                    log.exception("timer id=%s kind=%s failed", row["id"], row["kind"])
                    with contextlib.suppress(Unavailable):
                        await store.timer_failed(
                            row["id"], self.owner, f"{type(e).__name__}: {e}", now + RETRY
                        )
                    continue
                if outcome != "lost":
                    fired += 1
            if len(rows) < BATCH or not progressed:
                break
        if fired and self.on_event is not None:
            self.on_event()
        return fired
