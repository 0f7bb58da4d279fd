"""Async data layer. Domain code calls these methods; no SQLAlchemy or driver exception
escapes them except as :class:`Unavailable`."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import Unavailable
from . import tables as t
from .migrate import upgrade

TERMINAL_DELIVERY = frozenset({"delivered", "dead_lettered", "withheld", "no_channel"})


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _row(row: sa.Row[Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: _utc(v) for k, v in row._mapping.items()}


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def init_schema(self) -> None:
        """Apply any pending schema migration (see :mod:`services.core.store.migrate`)."""
        try:
            await upgrade(self.engine)
        except OperationalError as e:
            where = self.engine.url.render_as_string()  # the password, if any, is masked
            raise Unavailable(f"the store at {where} is unavailable") from e

    async def aclose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise Unavailable("the store is unavailable") from e

    # -- clients -------------------------------------------------------------------------------

    async def add_client(
        self,
        client_id: str,
        party: str,
        scopes: list[str],
        *,
        secret_hash: str | None = None,
        jwks: dict[str, Any] | None = None,
    ) -> None:
        async with self._tx() as c:
            await c.execute(
                t.clients.insert().values(
                    client_id=client_id,
                    party=party,
                    secret_hash=secret_hash,
                    jwks=jwks,
                    scopes=scopes,
                    created_at=dt.datetime.now(dt.UTC),
                    disabled=False,
                )
            )

    async def get_client(self, client_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).where(t.clients.c.client_id == client_id))
            return _row(r.first())

    # -- messages and outbox -------------------------------------------------------------------

    async def accept_message(self, message: dict[str, Any], topic: str) -> dict[str, Any] | None:
        """Store a message, its decision and its outbox row in one transaction.

        Returns None when stored; when the (client, Idempotency-Key) pair already exists,
        returns the existing message instead and stores nothing."""
        try:
            async with self._tx() as c:
                await c.execute(t.messages.insert().values(**message))
                await c.execute(
                    t.outbox.insert().values(
                        message_id=message["id"],
                        topic=topic,
                        created_at=message["accepted_at"],
                        attempts=0,
                    )
                )
                await self._audit(
                    c,
                    "accepted",
                    message_id=message["id"],
                    message_type=message["message_type"],
                    actor=message["sender"],
                    person=message["person"],
                    detail={"client_id": message["client_id"], "decision": message["decision"]},
                )
            return None
        except IntegrityError:
            if message.get("idempotency_key") is None:
                raise
            existing = await self.find_idempotent(message["client_id"], message["idempotency_key"])
            if existing is None:
                raise
            return existing

    async def release_idempotency_key(
        self, client_id: str, key: str, accepted_before: dt.datetime
    ) -> bool:
        """Forget an expired Idempotency-Key (used before ``accepted_before``) so that it can
        be used again. The message it named is kept."""
        async with self._tx() as c:
            r = await c.execute(
                t.messages.update()
                .where(
                    t.messages.c.client_id == client_id,
                    t.messages.c.idempotency_key == key,
                    t.messages.c.accepted_at < accepted_before,
                )
                .values(idempotency_key=None)
            )
            return bool(r.rowcount)

    async def find_idempotent(self, client_id: str, key: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.messages).where(
                    t.messages.c.client_id == client_id, t.messages.c.idempotency_key == key
                )
            )
            return _row(r.first())

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            return _row(r.first())

    async def unpublished(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self._tx() as c:
            q = (
                sa.select(t.outbox, t.messages)
                .join(t.messages, t.messages.c.id == t.outbox.c.message_id)
                .where(t.outbox.c.published_at.is_(None))
                .order_by(t.outbox.c.created_at)
                .limit(limit)
            )
            return [r for r in (_row(x) for x in (await c.execute(q)).all()) if r is not None]

    async def mark_published(self, message_id: str) -> None:
        async with self._tx() as c:
            await c.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(published_at=dt.datetime.now(dt.UTC), attempts=t.outbox.c.attempts + 1)
            )

    async def mark_publish_failed(self, message_id: str, error: str) -> None:
        async with self._tx() as c:
            await c.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(attempts=t.outbox.c.attempts + 1, last_error=error[:500])
            )

    async def complete_if_settled(self, message_id: str) -> bool:
        """Mark a message complete when every delivery has a terminal outcome."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.deliveries.c.status).where(t.deliveries.c.message_id == message_id)
            )
            statuses = [row[0] for row in r.all()]
            if any(s not in TERMINAL_DELIVERY for s in statuses):
                return False
            await c.execute(
                t.messages.update()
                .where(t.messages.c.id == message_id, t.messages.c.status == "pending")
                .values(status="complete", completed_at=dt.datetime.now(dt.UTC))
            )
            return True

    # -- subscriptions -------------------------------------------------------------------------

    async def add_subscription(self, sub: dict[str, Any]) -> None:
        async with self._tx() as c:
            await c.execute(t.subscriptions.insert().values(**sub))
            await self._audit(
                c,
                "subscription_created",
                actor=sub["party"],
                detail={"subscription_id": sub["id"], "message_types": sub["message_types"]},
            )

    async def list_subscriptions(self, party: str) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions)
                .where(t.subscriptions.c.party == party)
                .order_by(t.subscriptions.c.created_at)
            )
            return [x for x in (_row(row) for row in r.all()) if x is not None]

    async def delete_subscription(self, party: str, sub_id: str) -> bool:
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status != "deleted",
                )
                .values(status="deleted")
            )
            if r.rowcount:
                await self._audit(
                    c, "subscription_deleted", actor=party, detail={"subscription_id": sub_id}
                )
            return bool(r.rowcount)

    async def disable_subscription(self, sub_id: str, reason: str) -> bool:
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id, t.subscriptions.c.status == "active")
                .values(status="disabled")
            )
            if r.rowcount:
                await self._audit(
                    c, "subscription_disabled", detail={"subscription_id": sub_id, "reason": reason}
                )
            return bool(r.rowcount)

    async def active_subscriptions(self, party: str, message_type: str) -> list[dict[str, Any]]:
        subs = await self.list_subscriptions(party)
        return [s for s in subs if s["status"] == "active" and message_type in s["message_types"]]

    # -- deliveries ----------------------------------------------------------------------------

    async def ensure_delivery(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """Create the delivery row unless it exists (the router may see a record twice)."""
        try:
            async with self._tx() as c:
                await c.execute(t.deliveries.insert().values(**delivery))
        except IntegrityError:
            pass
        existing = await self.get_delivery(delivery["id"])
        assert existing is not None  # noqa: S101 - just inserted or already present
        return existing

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.deliveries).where(t.deliveries.c.id == delivery_id))
            return _row(r.first())

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        new_status: str,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        async with self._tx() as c:
            await c.execute(
                t.delivery_attempts.insert().values(
                    delivery_id=delivery_id,
                    at=now,
                    status_code=status_code,
                    error=error[:500] if error else None,
                    duration_ms=duration_ms,
                )
            )
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery_id)
                .values(
                    attempts=t.deliveries.c.attempts + 1,
                    last_status_code=status_code,
                    last_error=error[:500] if error else None,
                    status=new_status,
                    updated_at=now,
                )
            )

    async def settle_delivery(
        self,
        delivery: dict[str, Any],
        status: str,
        *,
        message_type: str,
        person: str,
        reason: str | None = None,
    ) -> None:
        """Record a terminal outcome and its disclosure-log entry (field names, never values)."""
        now = dt.datetime.now(dt.UTC)
        detail: dict[str, Any] = {
            "delivery_id": delivery["id"],
            "channel": delivery["channel"],
            "fields": delivery["fields"],
            "grants": delivery["grants"],
        }
        if reason:
            detail["reason"] = reason
        async with self._tx() as c:
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery["id"])
                .values(status=status, updated_at=now)
            )
            await self._audit(
                c,
                status,
                message_id=delivery["message_id"],
                message_type=message_type,
                recipient=delivery["recipient"],
                person=person,
                detail=detail,
            )

    async def list_deliveries(
        self, *, recipient: str | None = None, message_id: str | None = None
    ) -> list[dict[str, Any]]:
        q = sa.select(t.deliveries).order_by(t.deliveries.c.created_at)
        if recipient is not None:
            q = q.where(t.deliveries.c.recipient == recipient)
        if message_id is not None:
            q = q.where(t.deliveries.c.message_id == message_id)
        async with self._tx() as c:
            return [x for x in (_row(row) for row in (await c.execute(q)).all()) if x is not None]

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.delivery_attempts)
                .where(t.delivery_attempts.c.delivery_id == delivery_id)
                .order_by(t.delivery_attempts.c.id)
            )
            return [x for x in (_row(row) for row in r.all()) if x is not None]

    # -- disclosure log ------------------------------------------------------------------------

    async def audit(self, event_name: str, **fields: Any) -> None:
        async with self._tx() as c:
            await self._audit(c, event_name, **fields)

    async def audit_entries(self, message_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(t.audit).order_by(t.audit.c.seq)
        if message_id is not None:
            q = q.where(t.audit.c.message_id == message_id)
        async with self._tx() as c:
            return [x for x in (_row(row) for row in (await c.execute(q)).all()) if x is not None]

    @staticmethod
    async def _audit(c: AsyncConnection, event_name: str, **fields: Any) -> None:
        detail = fields.pop("detail", {})
        await c.execute(
            t.audit.insert().values(
                at=dt.datetime.now(dt.UTC), event=event_name, detail=detail, **fields
            )
        )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
