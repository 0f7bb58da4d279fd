"""The sealer: gives committed disclosure-log entries their place in the tamper-evident log
and signs checkpoints. It runs in each router next to the scheduler (only one seals at a
time, see :mod:`services.core.store.audit_log`) and on demand (``isa-broker audit seal``).

A pass seals, in ``seq`` order, every committed entry after the last sealed one: position
``p`` (0, 1, 2, ... without gaps), ``leaf_hash = SHA-256(0x00 || canonical bytes)`` and
``chain_hash = SHA-256(chain_hash(p-1) || leaf_hash)`` (32 zero bytes before the first).
PostgreSQL hands out ``seq`` values when rows are inserted but transactions commit in any
order, so a pass stops at the first gap in ``seq``: an entry still to commit must not be
passed over. A gap counts as a rolled-back transaction (and is passed) once the entry after
it is older than the settle window. When it sealed something and the last checkpoint is at
least ``checkpoint_seconds`` old, a pass signs a checkpoint: the RFC 9162 Merkle tree hash of
every sealed entry and the chain hash of the last.

Entries are written by the business transactions as before; sealing reads and updates
them afterwards, so exchange never waits for it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from ..clock import log_timestamp
from ..errors import Unavailable
from ..store import Store
from ..store.audit_log import PAGE
from .canonical import entry_leaf
from .keys import LogSigningKeys
from .merkle import CompactRange

log = logging.getLogger("isa_broker.audit")


def _wall_clock() -> dt.datetime:
    # entries carry the wall-clock time they were written (never the business clock)
    return dt.datetime.now(dt.UTC)


class Sealer:
    def __init__(
        self,
        store: Store,
        keys: LogSigningKeys,
        *,
        settle_seconds: float = 5.0,
        checkpoint_seconds: float = 60.0,
        batch: int = 250,
        page: int = PAGE,
        clock: Callable[[], dt.datetime] = _wall_clock,
    ) -> None:
        self.store = store
        self.keys = keys
        self.settle = dt.timedelta(seconds=settle_seconds)
        self.checkpoint_every = dt.timedelta(seconds=checkpoint_seconds)
        self.batch = batch
        self.page = page
        self.clock = clock
        self._tree = CompactRange()
        self._chain = b""
        self._checkpointed_at: dt.datetime | None = None
        self._checkpointed_size = -1

    @property
    def sealed(self) -> int:
        """Entries sealed so far, as this sealer knows."""
        return self._tree.size

    async def seal_once(self) -> int:
        """One sealing pass (at most ``batch`` entries); how many it sealed."""
        sealed = await self.store.seal_audit(
            entry_leaf, settled_before=self.clock() - self.settle, limit=self.batch
        )
        if not sealed:
            return 0
        if sealed[0].position != self._tree.size:
            await self._catch_up(sealed[0].position)
        for s in sealed:
            if s.position == self._tree.size:
                self._tree.append(s.leaf)
                self._chain = s.chain
        return len(sealed)

    async def seal_now(self, *, checkpoint: bool = True) -> int:
        """Seal everything sealable now; with ``checkpoint``, sign a checkpoint of the
        result unless one of that size exists. Returns how many entries it sealed."""
        total = 0
        while True:
            n = await self.seal_once()
            total += n
            if n < self.batch:
                break
            await asyncio.sleep(0)  # let exchange run between batches
        if checkpoint:
            await self.checkpoint()
        return total

    async def checkpoint(self) -> dict[str, object] | None:
        """Sign and store a checkpoint of every entry sealed so far (none if it exists)."""
        await self._catch_up(None)
        if self._tree.size == 0 or self._tree.size == self._checkpointed_size:
            return None
        now = self.clock()
        cp = self.keys.sign(
            {
                "tree_size": self._tree.size,
                "root_hash": self._tree.root().hex(),
                "chain_hash": self._chain.hex(),
                "signed_at": log_timestamp(now),
            }
        )
        await self.store.add_audit_checkpoint(cp)
        self._checkpointed_at, self._checkpointed_size = now, self._tree.size
        return cp

    async def _catch_up(self, upto: int | None) -> None:
        """Bring the in-memory tree up to the stored sealed entries (``upto`` exclusive, or
        all): at start-up, and after another router sealed some. Reads them page by page."""
        async for position, leaf, chain in self.store.sealed_leaves(
            self._tree.size, upto, page=self.page
        ):
            if position != self._tree.size:
                raise Unavailable(f"sealed positions are not contiguous at {self._tree.size}")
            self._tree.append(leaf)
            self._chain = chain

    async def run(self, every: float) -> None:
        """Seal every ``every`` seconds until cancelled; checkpoint when due."""
        while True:
            try:
                await self.seal_now(checkpoint=False)
                due = (
                    self._checkpointed_at is None
                    or self.clock() - self._checkpointed_at >= self.checkpoint_every
                )
                if due and self._tree.size != self._checkpointed_size:
                    await self.checkpoint()
            except Unavailable as e:
                log.warning("sealing the disclosure log: %s", e)
            except ValueError as e:
                # an unsealed entry whose stored detail is not JSON: never sealed as is
                log.error("sealing the disclosure log stopped: %s", e)
            await asyncio.sleep(every)
