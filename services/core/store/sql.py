"""Statements shared by the store's repositories and the handlers that write in their
transactions: an insert that ignores a duplicate key, an entry appended to the disclosure
log, an entry appended to a party's inbox, a message indexed under its person's pseudonyms,
a message marked complete once its deliveries are settled. Each takes the transaction's
connection, so what it writes commits or rolls back with the rest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables as t
from .rows import TERMINAL_DELIVERY


def insert_ignore(
    c: AsyncConnection, table: sa.Table, row: dict[str, Any] | Sequence[dict[str, Any]]
) -> Any:
    """INSERT of a row (or of rows with the same columns) that does nothing for a row whose
    key exists (both dialects)."""
    if c.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).values(row).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).values(row).on_conflict_do_nothing()


async def insert_ignore_many(
    c: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]], key: str = "id"
) -> set[Any]:
    """INSERT of several rows, skipping those whose key exists, in one statement per set of
    columns (both dialects); the ``key`` values of the rows inserted."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    inserted: set[Any] = set()
    for group in groups.values():
        statement = insert_ignore(c, table, group).returning(table.c[key])
        inserted.update(r[0] for r in (await c.execute(statement)).all())
    return inserted


async def append_audit(c: AsyncConnection, event_name: str, **fields: Any) -> None:
    """An entry of the disclosure log (ids, pseudonyms and field names only; ``detail`` a
    JSON object), sealed later by the sealer."""
    detail = fields.pop("detail", {})
    await c.execute(
        t.audit.insert().values(
            at=dt.datetime.now(dt.UTC), event=event_name, detail=detail, **fields
        )
    )


async def append_audits(c: AsyncConnection, entries: Sequence[Mapping[str, Any]]) -> None:
    """Several disclosure-log entries (each the fields of :func:`append_audit`, ``event``
    its event name) in one statement, in the order given."""
    if not entries:
        return
    at = dt.datetime.now(dt.UTC)
    await c.execute(t.audit.insert(), [{"at": at, "detail": {}, **entry} for entry in entries])


async def append_inbox(
    c: AsyncConnection, party: str, kind: str, body: str, delivery_id: str | None
) -> None:
    """An entry on ``party``'s inbox feed (``kind`` message or notice)."""
    if c.dialect.name == "postgresql":
        # sequence numbers must become visible in order, or a reader could move its
        # cursor past an entry committed later with a smaller number
        await c.execute(sa.text("LOCK TABLE inbox IN SHARE ROW EXCLUSIVE MODE"))
    await c.execute(
        t.inbox.insert().values(
            party=party,
            kind=kind,
            delivery_id=delivery_id,
            body=body,
            created_at=dt.datetime.now(dt.UTC),
        )
    )


async def index_person(c: AsyncConnection, message_id: str, pseudonyms: Iterable[str]) -> None:
    """Record that message ``message_id`` is about the person of each pseudonym (subject
    access finds a person's messages through this index)."""
    rows = [{"pseudonym": p, "message_id": message_id} for p in sorted(set(pseudonyms))]
    if rows:
        await c.execute(t.person_index.insert(), rows)


async def complete_if_settled(c: AsyncConnection, message_id: str) -> bool:
    """Mark a routed, pending message complete when every delivery has a terminal outcome,
    in one statement; whether this call completed it."""
    open_delivery = (
        sa.select(t.deliveries.c.id)
        .where(
            t.deliveries.c.message_id == message_id,
            t.deliveries.c.status.not_in(TERMINAL_DELIVERY),
        )
        .exists()
    )
    r = await c.execute(
        t.messages.update()
        .where(
            t.messages.c.id == message_id,
            t.messages.c.status == "pending",
            t.messages.c.routed_at.is_not(None),
            ~open_delivery,
        )
        .values(status="complete", completed_at=dt.datetime.now(dt.UTC))
    )
    return bool(r.rowcount)
