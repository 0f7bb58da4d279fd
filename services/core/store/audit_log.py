"""Store methods of the tamper-evident disclosure log (see :mod:`services.core.audit`):
sealing entries in ``seq`` order, reading them back for verification, and checkpoints.
Part of :class:`~services.core.store.store.Store`.

Sealing is one transaction. Only one sealer works at a time: on PostgreSQL it takes a
transaction-scoped advisory lock (another sealer skips its pass); on SQLite the database
has one writer. Whatever happens, the unique ``position`` and the conditional update
(``position IS NULL``) make a second sealer's pass fail and roll back rather than give
one position twice.

Reading the whole log back (verification, export, a sealer catching up at start-up) goes
page by page (keyset pagination on ``seq`` or ``position``, :data:`PAGE` rows a page, each
page its own short transaction), so that memory does not grow with the log."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..clock import log_timestamp
from . import tables as t
from .base import StoreBase
from .rows import row_dict
from .sql import append_audit

#: pg_advisory_xact_lock key of the sealer ("isa-seal" as an integer)
SEAL_LOCK = 0x6973612D7365616C
#: the chain hash before the first entry
CHAIN_START = bytes(32)
#: rows read per page when the log is read back
PAGE = 5000

_a = t.audit
#: an entry's columns with ``detail`` as the stored JSON text, so that a changed byte that
#: breaks the JSON is reported, not raised by the driver
ENTRY_COLUMNS = (
    _a.c.seq,
    _a.c.at,
    _a.c.event,
    _a.c.message_id,
    _a.c.message_type,
    _a.c.actor,
    _a.c.recipient,
    _a.c.person,
    sa.cast(_a.c.detail, sa.Text).label("detail"),
    _a.c.position,
    _a.c.leaf_hash,
    _a.c.chain_hash,
)


@dataclass(frozen=True)
class SealedEntry:
    seq: int
    position: int
    leaf: bytes
    chain: bytes


class _LostRace(Exception):
    """Another sealer sealed some of these entries first."""


def _after(tail: tuple[int, int, str] | None) -> tuple[int, int, bytes]:
    """The next position, the next ``seq`` expected and the chain hash so far."""
    if tail is None:
        return 0, 1, CHAIN_START
    return tail[0] + 1, tail[1] + 1, bytes.fromhex(tail[2])


def _entry(row: sa.Row[Any]) -> dict[str, Any]:
    out = dict(row._mapping)
    at = out["at"]
    if isinstance(at, dt.datetime) and at.tzinfo is None:
        out["at"] = at.replace(tzinfo=dt.UTC)
    return out


class AuditLogStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def seal_audit(
        self,
        leaf_of: Callable[[Mapping[str, Any]], bytes],
        *,
        settled_before: dt.datetime,
        limit: int = 1000,
    ) -> list[SealedEntry] | None:
        """Seal up to ``limit`` committed entries after the last sealed one, in ``seq``
        order, stopping at the first gap in ``seq`` unless the entry after the gap was
        written before ``settled_before`` (the gap is then a rolled-back transaction, not
        one still to commit). Returns what was sealed, or None when another sealer was at
        work.

        The entries are read in one transaction and sealed in a second, with the hashing in
        between, so that no store transaction (on SQLite, no writer of this process) waits
        for the hashing. The second one seals only if the last sealed entry is still the
        one the first one read."""
        async with self._tx() as c:
            tail = await self._sealed_tail(c)
            size, next_seq, chain = _after(tail)
            rows = await c.execute(
                sa.select(*ENTRY_COLUMNS)
                .where(_a.c.position.is_(None), _a.c.seq >= next_seq)
                .order_by(_a.c.seq)
                .limit(limit)
            )
            entries = [_entry(row) for row in rows.all()]
        sealed: list[SealedEntry] = []
        for entry in entries:
            if entry["seq"] != next_seq and entry["at"] >= settled_before:
                break  # an entry before this one may not have committed yet
            leaf = leaf_of(entry)
            chain = hashlib.sha256(chain + leaf).digest()
            sealed.append(SealedEntry(entry["seq"], size + len(sealed), leaf, chain))
            next_seq = entry["seq"] + 1
        if not sealed:
            return []
        try:
            async with self._tx() as c:
                if c.dialect.name == "postgresql":
                    lock = sa.select(sa.func.pg_try_advisory_xact_lock(SEAL_LOCK))
                    if not (await c.execute(lock)).scalar():
                        return None
                if await self._sealed_tail(c) != tail:
                    return None  # another sealer sealed since
                await c.execute(
                    _a.update()
                    .where(_a.c.seq == sa.bindparam("b_seq"), _a.c.position.is_(None))
                    .values(
                        position=sa.bindparam("b_position"),
                        leaf_hash=sa.bindparam("b_leaf"),
                        chain_hash=sa.bindparam("b_chain"),
                    ),
                    [
                        {
                            "b_seq": s.seq,
                            "b_position": s.position,
                            "b_leaf": s.leaf.hex(),
                            "b_chain": s.chain.hex(),
                        }
                        for s in sealed
                    ],
                )
                done = (
                    await c.execute(
                        sa.select(sa.func.count()).where(
                            _a.c.position >= size, _a.c.position < size + len(sealed)
                        )
                    )
                ).scalar()
                if done != len(sealed):
                    raise _LostRace
                return sealed
        except (IntegrityError, _LostRace):
            return None

    @staticmethod
    async def _sealed_tail(c: AsyncConnection) -> tuple[int, int, str] | None:
        """(position, seq, chain hash) of the last sealed entry."""
        row = (
            await c.execute(
                sa.select(_a.c.position, _a.c.seq, _a.c.chain_hash)
                .where(_a.c.position.is_not(None))
                .order_by(_a.c.position.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    async def sealed_tail(self) -> tuple[int, int] | None:
        """(position, seq) of the last sealed entry, or None before the first."""
        async with self._tx() as c:
            tail = await self._sealed_tail(c)
        return None if tail is None else (tail[0], tail[1])

    async def sealed_leaves(
        self, from_position: int = 0, before: int | None = None, *, page: int = PAGE
    ) -> AsyncIterator[tuple[int, bytes, bytes]]:
        """(position, leaf hash, chain hash) of the sealed entries from ``from_position``
        (to ``before``, exclusive, if given) in position order, as stored; read ``page``
        rows at a time."""
        after = from_position - 1
        while True:
            q = sa.select(_a.c.position, _a.c.leaf_hash, _a.c.chain_hash).where(
                _a.c.position > after
            )
            if before is not None:
                q = q.where(_a.c.position < before)
            async with self._tx() as c:
                rows = (await c.execute(q.order_by(_a.c.position).limit(page))).all()
            for p, h, ch in rows:
                yield int(p), bytes.fromhex(h), bytes.fromhex(ch)
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    async def log_entries(
        self, upto_seq: int | None = None, *, page: int = PAGE
    ) -> AsyncIterator[dict[str, Any]]:
        """The entries, sealed or not, in ``seq`` order (to ``upto_seq`` inclusive, if given),
        with ``detail`` as stored text; read ``page`` rows at a time."""
        after: int | None = None
        while True:
            q = sa.select(*ENTRY_COLUMNS)
            if after is not None:
                q = q.where(_a.c.seq > after)
            if upto_seq is not None:
                q = q.where(_a.c.seq <= upto_seq)
            async with self._tx() as c:
                rows = [_entry(row) for row in (await c.execute(q.order_by(_a.c.seq).limit(page)))]
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = int(rows[-1]["seq"])

    async def count_unsealed_after(self, tail: tuple[int, int] | None) -> int:
        """Entries not sealed as of ``tail`` (a :meth:`sealed_tail`): those after its
        ``seq`` that are unsealed or sealed after it."""
        position, seq = tail if tail is not None else (-1, 0)
        async with self._tx() as c:
            r = await c.execute(
                sa.select(sa.func.count()).where(
                    _a.c.seq > seq, sa.or_(_a.c.position.is_(None), _a.c.position > position)
                )
            )
            return int(r.scalar_one())

    async def add_audit_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        row = {**checkpoint, "signed_at": dt.datetime.fromisoformat(checkpoint["signed_at"])}
        with contextlib.suppress(IntegrityError):  # another sealer signed this size first
            async with self._tx() as c:
                await c.execute(t.audit_checkpoints.insert().values(**row))

    async def audit_checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint in tree-size order, ``signed_at`` as the signed text."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.audit_checkpoints).order_by(t.audit_checkpoints.c.tree_size)
            )
            out = []
            for row in r.all():
                cp = dict(row._mapping)
                cp["tree_size"] = int(cp["tree_size"])
                cp["signed_at"] = log_timestamp(cp["signed_at"])
                out.append(cp)
            return out

    async def audit(self, event_name: str, **fields: Any) -> None:
        async with self._tx() as c:
            await append_audit(c, event_name, **fields)

    async def audit_entries(
        self,
        message_id: str | None = None,
        *,
        party: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Disclosure-log entries in order; with ``party``, only those where it acted or
        received."""
        q = sa.select(t.audit).where(t.audit.c.seq > after).order_by(t.audit.c.seq)
        if message_id is not None:
            q = q.where(t.audit.c.message_id == message_id)
        if party is not None:
            q = q.where(sa.or_(t.audit.c.actor == party, t.audit.c.recipient == party))
        if limit is not None:
            q = q.limit(limit)
        async with self._tx() as c:
            return [row_dict(row) for row in (await c.execute(q)).all()]
