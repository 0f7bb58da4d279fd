"""Group commit of the attempts' outcomes.

A router has up to :data:`~.dispatch.MAX_IN_FLIGHT` attempts in flight. Each outcome used to
be its own transaction of five or six statements, and under load those round trips and
commits cost a router more CPU than the attempts themselves. Here the outcomes that arrive
while one write is in flight are written together by the next, in one transaction
(:meth:`~services.core.store.deliveries.DeliveryStore.record_outcomes`): no outcome waits
for a timer, and a quiet router still writes each one at once.

Nothing is weakened: an attempt's caller returns only once its outcome is committed, as
before, so a delivery is still settled before its lease is given up. A batch that fails is
written again one outcome at a time, so that one bad outcome fails alone; a store that is
unavailable fails them all at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from services.core.errors import Unavailable
from services.core.store import Store
from services.core.store.values import DeliveryOutcome

#: outcomes written in one transaction at most
MAX_BATCH = 100

_Waiting = tuple[Mapping[str, Any], DeliveryOutcome, "asyncio.Future[BaseException | None]"]


class OutcomeRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, delivery: Mapping[str, Any], outcome: DeliveryOutcome) -> None:
        """Record ``outcome`` of ``delivery``; returns once it is committed, raises what
        writing it raised."""
        done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, outcome, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="record-outcomes")
        # shielded: an attempt cancelled now (the router stopping) still has its outcome
        # written by the writer, which aclose() waits for
        error = await asyncio.shield(done)
        if error is not None:
            raise error

    async def aclose(self) -> None:
        """Wait until every outcome handed over is written (or has failed)."""
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._write_batch(batch)
                batch = []
        except BaseException as e:  # cancelled: nobody may be left waiting
            for _, _, done in [*batch, *self._waiting]:
                if not done.done():
                    done.set_result(e)
            self._waiting = []
            raise

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        try:
            await self._store.record_outcomes([(d, o) for d, o, _ in batch])
        except Unavailable as e:
            for _, _, done in batch:
                done.set_result(e)
            return
        except Exception as e:
            if len(batch) == 1:
                batch[0][2].set_result(e)
                return
            for delivery, outcome, done in batch:  # so that one bad outcome fails alone
                try:
                    await self._store.record_outcome(delivery, outcome)
                except Exception as alone:
                    done.set_result(alone)
                else:
                    done.set_result(None)
            return
        for _, _, done in batch:
            done.set_result(None)
