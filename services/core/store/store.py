"""Async data layer. Domain code calls these methods; no SQLAlchemy or driver exception
escapes them except as :class:`Unavailable`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import Unavailable
from ..retention import recorded_retention
from . import tables as t
from .audit_log import AuditLogStore
from .connection import connection_for
from .filters import FilterStore
from .lifecycle import LifecycleStore
from .migrate import upgrade
from .party_keys import PartyKeyStore
from .reports import ReportStore
from .retention import RetentionStore
from .rows import row_dict, to_utc, utc
from .sql import append_audit, append_inbox, insert_ignore
from .subject_access import SubjectAccessStore
from .timeliness import TimelinessStore
from .transaction import Transaction

TERMINAL_DELIVERY = frozenset({"delivered", "dead_lettered", "withheld", "no_channel"})
#: a delivery still to be attempted: never yet (pending) or after a failure (retrying)
OPEN_DELIVERY = ("pending", "retrying")


def _row(row: sa.Row[Any] | None) -> dict[str, Any] | None:
    return None if row is None else row_dict(row)


class Store(
    ReportStore,
    TimelinessStore,
    FilterStore,
    LifecycleStore,
    AuditLogStore,
    SubjectAccessStore,
    RetentionStore,
    PartyKeyStore,
):
    def __init__(self, url: str) -> None:
        self.url = url
        # TLS options of the URL (sslmode, sslrootcert, ...) become the driver's SSL context
        connection = connection_for(url)
        kwargs: dict[str, Any] = {"connect_args": dict(connection.connect_args)}
        if url.startswith("sqlite"):
            kwargs["connect_args"]["timeout"] = 30
        self.engine: AsyncEngine = create_async_engine(connection.url, **kwargs)
        # SQLite has one writer at a time and makes a waiting writer sleep in growing steps
        # (up to 100 ms each); queueing this process's transactions here instead keeps its
        # own writers from ever waiting on each other that way.
        self._serial: asyncio.Lock | None = None
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self._serial = asyncio.Lock()

    async def init_schema(self) -> None:
        """Apply any pending schema migration (see :mod:`services.core.store.migrate`)."""
        try:
            await upgrade(self.engine)
        except (DBAPIError, OSError, ssl.SSLError) as e:
            # unreachable, refused (pg_hba.conf, password), or a certificate that does not verify
            where = self.engine.url.render_as_string()  # the password, if any, is masked
            reason = getattr(e, "orig", None) or e
            raise Unavailable(
                f"the store at {where} is unavailable ({type(reason).__name__}: {reason})"
            ) from e

    async def aclose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._serial or contextlib.nullcontext(), self.engine.begin() as conn:
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
        external_subject: str | None = None,
    ) -> None:
        """Raise :class:`ValueError` if ``external_subject`` is already another client's."""
        try:
            async with self._tx() as c:
                await c.execute(
                    t.clients.insert().values(
                        client_id=client_id,
                        party=party,
                        secret_hash=secret_hash,
                        jwks=jwks,
                        scopes=scopes,
                        external_subject=external_subject,
                        created_at=dt.datetime.now(dt.UTC),
                        disabled=False,
                    )
                )
                await self._audit(
                    c,
                    "client_registered",
                    actor=party,
                    detail={"client_id": client_id, "scopes": scopes},
                )
        except IntegrityError as e:
            raise ValueError("external_subject is already registered to another client") from e

    async def get_client(self, client_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).where(t.clients.c.client_id == client_id))
            return _row(r.first())

    async def client_by_external_subject(self, subject: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).where(t.clients.c.external_subject == subject))
            return _row(r.first())

    async def list_clients(self) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).order_by(t.clients.c.created_at))
            return [x for x in (_row(row) for row in r.all()) if x is not None]

    async def set_client_disabled(self, client_id: str, disabled: bool, actor: str) -> bool:
        async with self._tx() as c:
            r = await c.execute(
                t.clients.update()
                .where(t.clients.c.client_id == client_id)
                .values(disabled=disabled)
            )
            if not r.rowcount:
                return False
            await self._audit(
                c,
                "client_disabled" if disabled else "client_enabled",
                actor=actor,
                detail={"client_id": client_id},
            )
            return True

    async def remember_assertion(self, key: str, expires_at: dt.datetime, now: dt.datetime) -> bool:
        """Record a client assertion's ``iss:jti``; False if it was already seen and has not
        expired (a replay). Expired entries are purged on the way."""
        async with self._tx() as c:
            await c.execute(
                t.client_assertions.delete().where(t.client_assertions.c.expires_at <= now)
            )
            inserted = await c.execute(
                insert_ignore(c, t.client_assertions, {"key": key, "expires_at": expires_at})
            )
            return bool(inserted.rowcount)

    # -- messages and outbox -------------------------------------------------------------------

    async def accept_message(
        self, message: dict[str, Any], topic: str, pseudonyms: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """Store a message, its decision and its outbox row in one transaction, and index it
        under the ``pseudonyms`` of every identifier of its person (subject access).

        Returns None when stored; when the (client, Idempotency-Key) pair already exists,
        returns the existing message instead and stores nothing."""
        try:
            async with self._tx() as c:
                await c.execute(t.messages.insert().values(**message))
                await self._index_person(c, message["id"], [message["person"], *pseudonyms])
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
                # the priority lane first (a recall of a person unlawfully at large)
                .order_by(t.messages.c.priority.desc(), t.outbox.c.created_at)
                .limit(limit)
            )
            return [r for r in (_row(x) for x in (await c.execute(q)).all()) if r is not None]

    async def mark_published(self, message_id: str, at: dt.datetime | None = None) -> None:
        async with self._tx() as c:
            await c.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(
                    published_at=at or dt.datetime.now(dt.UTC), attempts=t.outbox.c.attempts + 1
                )
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
            return await self._complete_if_settled(c, message_id)

    @staticmethod
    async def _complete_if_settled(c: AsyncConnection, message_id: str) -> bool:
        r = await c.execute(
            sa.select(t.deliveries.c.id)
            .where(
                t.deliveries.c.message_id == message_id,
                t.deliveries.c.status.not_in(TERMINAL_DELIVERY),
            )
            .limit(1)
        )
        if r.first() is not None:
            return False
        await c.execute(
            t.messages.update()
            .where(
                t.messages.c.id == message_id,
                t.messages.c.status == "pending",
                t.messages.c.routed_at.is_not(None),
            )
            .values(status="complete", completed_at=dt.datetime.now(dt.UTC))
        )
        return True

    # -- reconciliation ------------------------------------------------------------------------

    async def requeue_unrouted(
        self, now: dt.datetime, after_seconds: float, *, everything: bool = False
    ) -> list[str]:
        """Publish again the messages the router has not routed although they were published
        ``after_seconds`` ago (the broker or a consumer lost them). Each repeat waits twice as
        long as the one before (at most 64 times ``after_seconds``) so that a router that is
        down does not make the relay flood the broker. ``everything``: every unrouted message
        at once, used after the embedded broker restarted empty. Returns the message ids."""
        async with self._tx() as c:
            q = (
                sa.select(t.outbox.c.message_id, t.outbox.c.published_at, t.outbox.c.republished)
                .join(t.messages, t.messages.c.id == t.outbox.c.message_id)
                .where(
                    t.messages.c.routed_at.is_(None),
                    t.messages.c.status == "pending",
                    t.outbox.c.published_at.is_not(None),
                )
                .order_by(t.outbox.c.created_at)
                .limit(5000)
            )
            due = []
            for message_id, published_at, republished in (await c.execute(q)).all():
                wait = after_seconds * (2 ** min(int(republished), 6))
                if everything or utc(published_at) <= now - dt.timedelta(seconds=wait):
                    due.append(message_id)
            for chunk in _chunks(due, 500):
                await c.execute(
                    t.outbox.update()
                    .where(t.outbox.c.message_id.in_(chunk))
                    .values(published_at=None, republished=t.outbox.c.republished + 1)
                )
            return due

    async def mark_routed(
        self,
        message_id: str,
        rows: list[dict[str, Any]],
        also: Callable[[Transaction], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Record the router's delivery rows for a message in one transaction, skipping rows
        that already exist (a record seen twice, or published again by the reconciler), and
        mark the message routed. Rows created already terminal (withheld, no channel) get
        their disclosure-log entry here. Returns the ids of the rows created.

        ``also`` writes further rows (duties, timers) in the same transaction, through its
        repositories (:class:`~services.core.store.transaction.Transaction`), only when
        this call is the one that marks the message routed, so that they are written once
        and a router killed in between loses nothing."""
        created: list[str] = []
        async with self._tx() as c:
            message = (
                await c.execute(sa.select(t.messages).where(t.messages.c.id == message_id))
            ).first()
            if message is None:
                return created
            m = message._mapping
            for row in rows:
                r = await c.execute(insert_ignore(c, t.deliveries, row))
                if not r.rowcount:
                    continue
                created.append(row["id"])
                if row["status"] in TERMINAL_DELIVERY:
                    await self._audit(
                        c,
                        row["status"],
                        message_id=message_id,
                        message_type=m["message_type"],
                        recipient=row["recipient"],
                        person=m["person"],
                        detail=_disclosure(row, row.get("last_error")),
                    )
            routed = await c.execute(
                t.messages.update()
                .where(t.messages.c.id == message_id, t.messages.c.routed_at.is_(None))
                .values(routed_at=dt.datetime.now(dt.UTC))
            )
            if also is not None and routed.rowcount:
                await also(Transaction(c))
            await self._complete_if_settled(c, message_id)
        return created

    # -- subscriptions -------------------------------------------------------------------------

    async def add_subscription(self, sub: dict[str, Any]) -> None:
        async with self._tx() as c:
            await c.execute(t.subscriptions.insert().values(**sub))
            await self._audit(
                c,
                "subscription_created",
                actor=sub["party"],
                detail={
                    "subscription_id": sub["id"],
                    "channel": sub.get("channel", "webhook"),
                    "message_types": sub["message_types"],
                },
            )

    async def rotate_subscription_secret(
        self, party: str, sub_id: str, secret: str, previous_until: dt.datetime
    ) -> dict[str, Any] | None:
        """Make ``secret`` the signing secret of the party's webhook subscription; the old one
        keeps signing too until ``previous_until``. None if no such subscription of theirs."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions).where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status != "deleted",
                    t.subscriptions.c.channel == "webhook",
                )
            )
            row = _row(r.first())
            if row is None:
                return None
            values = {
                "secret": secret,
                "previous_secret": row["secret"],
                "previous_secret_until": previous_until,
            }
            await c.execute(
                t.subscriptions.update().where(t.subscriptions.c.id == sub_id).values(**values)
            )
            await self._audit(
                c,
                "subscription_secret_rotated",
                actor=party,
                detail={
                    "subscription_id": sub_id,
                    "previous_secret_until": previous_until.isoformat(),
                },
            )
            return {**row, **values}

    async def subscription_signing_keys(self) -> list[dict[str, Any]]:
        """Id, ``secret`` and ``previous_secret`` of every subscription that holds a webhook
        signing key (services.core.crypto.at_rest re-seals them)."""
        s = t.subscriptions
        async with self._tx() as c:
            r = await c.execute(
                sa.select(s.c.id, s.c.secret, s.c.previous_secret).where(
                    sa.or_(s.c.secret.is_not(None), s.c.previous_secret.is_not(None))
                )
            )
            return [dict(row._mapping) for row in r.all()]

    async def replace_signing_key(self, sub_id: str, column: str, old: str, new: str) -> bool:
        """Replace a stored signing key (``secret`` or ``previous_secret``) only if it is still
        ``old``; False when a rotation changed it meanwhile."""
        s = t.subscriptions
        async with self._tx() as c:
            r = await c.execute(
                s.update().where(s.c.id == sub_id, s.c[column] == old).values({column: new})
            )
            return bool(r.rowcount)

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.id == sub_id))
            return _row(r.first())

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
                await self._dead_letter_pending(c, sub_id, "subscription deleted")
            return bool(r.rowcount)

    async def disable_subscription(self, sub_id: str, reason: str) -> list[dict[str, Any]] | None:
        """Disable an active subscription and dead-letter its unfinished deliveries (they can
        be replayed once it is enabled again). Returns those deliveries with their senders,
        or None when the subscription was not active."""
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id, t.subscriptions.c.status == "active")
                .values(status="disabled", status_reason=reason[:500])
            )
            if not r.rowcount:
                return None
            await self._audit(
                c, "subscription_disabled", detail={"subscription_id": sub_id, "reason": reason}
            )
            return await self._dead_letter_pending(c, sub_id, f"subscription disabled: {reason}")

    async def _dead_letter_pending(
        self, c: AsyncConnection, sub_id: str, reason: str
    ) -> list[dict[str, Any]]:
        q = (
            sa.select(t.deliveries, t.messages.c.sender)
            .join(t.messages, t.messages.c.id == t.deliveries.c.message_id)
            .where(
                t.deliveries.c.subscription_id == sub_id,
                t.deliveries.c.status.not_in(TERMINAL_DELIVERY),
            )
        )
        rows = [x for x in (_row(r) for r in (await c.execute(q)).all()) if x is not None]
        now = dt.datetime.now(dt.UTC)
        for row in rows:
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == row["id"])
                .values(
                    status="dead_lettered",
                    last_error=reason[:500],
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
            await self._audit(
                c,
                "dead_lettered",
                message_id=row["message_id"],
                message_type=row["message_type"],
                recipient=row["recipient"],
                person=row["person"],
                detail=_disclosure(row, reason),
            )
            await self._complete_if_settled(c, row["message_id"])
        return rows

    async def enable_subscription(self, party: str, sub_id: str) -> dict[str, Any] | None:
        """Re-enable a disabled subscription of ``party``; None when it has none such."""
        async with self._tx() as c:
            r = await c.execute(
                t.subscriptions.update()
                .where(
                    t.subscriptions.c.id == sub_id,
                    t.subscriptions.c.party == party,
                    t.subscriptions.c.status.in_(("active", "disabled")),
                )
                .values(status="active", status_reason=None, failing_since=None)
            )
            if not r.rowcount:
                return None
            await self._audit(
                c, "subscription_enabled", actor=party, detail={"subscription_id": sub_id}
            )
            row = await c.execute(sa.select(t.subscriptions).where(t.subscriptions.c.id == sub_id))
            return _row(row.first())

    async def active_subscriptions(self, party: str, message_type: str) -> list[dict[str, Any]]:
        return (await self.active_subscriptions_of([party], message_type)).get(party, [])

    async def active_subscriptions_of(
        self, parties: list[str], message_type: str, statuses: tuple[str, ...] = ("active",)
    ) -> dict[str, list[dict[str, Any]]]:
        """Per party, its subscriptions in one of ``statuses`` that take ``message_type``
        (one query)."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(t.subscriptions)
                .where(t.subscriptions.c.party.in_(parties), t.subscriptions.c.status.in_(statuses))
                .order_by(t.subscriptions.c.created_at)
            )
            out: dict[str, list[dict[str, Any]]] = {}
            for row in r.all():
                sub = _row(row)
                if sub is not None and message_type in sub["message_types"]:
                    out.setdefault(sub["party"], []).append(sub)
            return out

    async def endpoint_failed(self, sub_id: str, now: dt.datetime) -> dt.datetime:
        """Note a failed attempt; returns when the current run of failures began."""
        async with self._tx() as c:
            await c.execute(
                t.subscriptions.update()
                .where(t.subscriptions.c.id == sub_id, t.subscriptions.c.failing_since.is_(None))
                .values(failing_since=now)
            )
            r = await c.execute(
                sa.select(t.subscriptions.c.failing_since).where(t.subscriptions.c.id == sub_id)
            )
            since = r.scalar()
        return utc(since) if since is not None else now

    # -- deliveries ----------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.deliveries).where(t.deliveries.c.id == delivery_id))
            return _row(r.first())

    async def due_deliveries(
        self, now: dt.datetime, limit: int, exclude: set[str]
    ) -> list[dict[str, Any]]:
        """Deliveries whose next attempt is due and that per-person order allows now: no
        earlier message about the same person is still unfinished for the same subscription,
        and none is still unrouted (it may concern this recipient too). Each row carries
        its message and subscription; the priority lane first, then oldest message first."""
        d, e, m = t.deliveries, t.deliveries.alias("e"), t.messages.alias("m")
        earlier_unfinished = (
            sa.select(e.c.id)
            .where(
                e.c.subscription_id == d.c.subscription_id,
                e.c.person == d.c.person,
                e.c.status.in_(OPEN_DELIVERY),
                sa.or_(
                    e.c.accepted_at < d.c.accepted_at,
                    sa.and_(e.c.accepted_at == d.c.accepted_at, e.c.message_id < d.c.message_id),
                ),
            )
            .exists()
        )
        earlier_unrouted = (
            sa.select(m.c.id)
            .where(
                m.c.person == d.c.person,
                m.c.routed_at.is_(None),
                m.c.status == "pending",
                m.c.accepted_at < d.c.accepted_at,
            )
            .exists()
        )
        q = (
            sa.select(
                d,
                t.messages.c.sender,
                t.messages.c.payload,
                t.messages.c.decision,
                t.messages.c.refers_to,
                t.messages.c.lifecycle,
                t.messages.c.version,
                t.messages.c.timeliness,
                t.subscriptions.c.url,
                t.subscriptions.c.secret,
                t.subscriptions.c.previous_secret,
                t.subscriptions.c.previous_secret_until,
                t.subscriptions.c.status.label("subscription_status"),
                t.subscriptions.c.failing_since,
                t.subscriptions.c.encrypt,
            )
            .join(t.messages, t.messages.c.id == d.c.message_id)
            .join(t.subscriptions, t.subscriptions.c.id == d.c.subscription_id)
            .where(
                d.c.status.in_(OPEN_DELIVERY),
                d.c.next_attempt_at <= now,
                sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                ~earlier_unfinished,
                ~earlier_unrouted,
            )
            # the priority lane first (services.core.timeliness.priority), then oldest first
            .order_by(d.c.priority.desc(), d.c.accepted_at, d.c.message_id)
            .limit(limit + len(exclude))
        )
        async with self._tx() as c:
            rows = [x for x in (_row(r) for r in (await c.execute(q)).all()) if x is not None]
        return [r for r in rows if r["id"] not in exclude][:limit]

    async def claim(
        self, ids: list[str], owner: str, now: dt.datetime, until: dt.datetime
    ) -> set[str]:
        """Lease deliveries to one router so that two routers never attempt one delivery at
        once; a lease outlives a crashed router only until ``until``."""
        if not ids:
            return set()
        async with self._tx() as c:
            await c.execute(
                t.deliveries.update()
                .where(
                    t.deliveries.c.id.in_(ids),
                    sa.or_(t.deliveries.c.lease_until.is_(None), t.deliveries.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=until)
            )
            r = await c.execute(
                sa.select(t.deliveries.c.id).where(
                    t.deliveries.c.id.in_(ids),
                    t.deliveries.c.lease_owner == owner,
                    t.deliveries.c.lease_until == until,
                )
            )
            return {row[0] for row in r.all()}

    async def record_outcome(
        self,
        delivery: dict[str, Any],
        status: str,
        *,
        attempt: dict[str, Any] | None = None,
        next_attempt_at: dt.datetime | None = None,
        retry_index: int | None = None,
        reason: str | None = None,
        inbox_body: str | None = None,
        endpoint_ok: bool = False,
    ) -> None:
        """Apply one attempt's outcome in one transaction: its history row, the delivery's new
        state (retrying with its next due time, or terminal with its disclosure-log entry),
        an inbox entry for the inbox channel, and the message's completion."""
        now = dt.datetime.now(dt.UTC)
        values: dict[str, Any] = {
            "status": status,
            "updated_at": now,
            "lease_owner": None,
            "lease_until": None,
            "fields": delivery["fields"],
            "grants": delivery["grants"],
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        kept: dict[str, Any] = {}
        if status == "delivered":
            # on the clock accepted_at was read from: the attempt's start plus its duration
            values["delivered_at"] = (
                attempt["at"] + dt.timedelta(milliseconds=attempt.get("duration_ms") or 0.0)
                if attempt is not None and attempt.get("at") is not None
                else now
            )
            # how long the recipient may keep it (services.core.retention)
            columns, kept = recorded_retention(delivery, values["delivered_at"])
            values.update(columns)
        if retry_index is not None:
            values["retry_index"] = retry_index
        if attempt is not None:
            values["attempts"] = t.deliveries.c.attempts + 1
            values["last_status_code"] = attempt.get("status_code")
        error = reason or (attempt or {}).get("error")
        values["last_error"] = error[:500] if error else None
        async with self._tx() as c:
            if attempt is not None:
                await c.execute(
                    t.delivery_attempts.insert().values(
                        delivery_id=delivery["id"],
                        at=attempt.get("at", now),
                        status_code=attempt.get("status_code"),
                        error=attempt["error"][:500] if attempt.get("error") else None,
                        duration_ms=attempt.get("duration_ms", 0.0),
                    )
                )
            await c.execute(
                t.deliveries.update().where(t.deliveries.c.id == delivery["id"]).values(**values)
            )
            if endpoint_ok and delivery.get("subscription_id"):
                await c.execute(
                    t.subscriptions.update()
                    .where(
                        t.subscriptions.c.id == delivery["subscription_id"],
                        t.subscriptions.c.failing_since.is_not(None),
                    )
                    .values(failing_since=None)
                )
            if inbox_body is not None:
                await self._append_inbox(
                    c, delivery["recipient"], "message", inbox_body, delivery["id"]
                )
            if status in TERMINAL_DELIVERY:
                await self._audit(
                    c,
                    status,
                    message_id=delivery["message_id"],
                    message_type=delivery["message_type"],
                    recipient=delivery["recipient"],
                    person=delivery["person"],
                    detail={**_disclosure(delivery, reason), **kept},
                )
                await self._complete_if_settled(c, delivery["message_id"])

    async def redeliver_channel(
        self, channel: str, since: dt.datetime, now: dt.datetime
    ) -> list[str]:
        """Queue again the deliveries on ``channel`` completed since ``since``: used for the
        ``kafka`` channel when the embedded broker restarted and lost its topics. Receivers
        de-duplicate on the delivery id, which stays the same."""
        d = t.deliveries
        async with self._tx() as c:
            rows = (
                await c.execute(
                    sa.select(
                        d.c.id, d.c.message_id, d.c.message_type, d.c.recipient, d.c.person
                    ).where(
                        d.c.channel == channel,
                        d.c.status == "delivered",
                        d.c.updated_at >= to_utc(since),
                    )
                )
            ).all()
            await self._requeue(
                c,
                rows,
                now,
                "redelivery_queued",
                None,
                {"reason": "the broker lost the agency topic"},
            )
        return [r[0] for r in rows]

    async def _requeue(
        self,
        c: AsyncConnection,
        rows: Sequence[Any],
        now: dt.datetime,
        event_name: str,
        actor: str | None,
        detail: dict[str, Any],
    ) -> None:
        """Queue deliveries again with a fresh retry schedule, reopen their messages, and
        log one ``event_name`` entry per delivery. ``rows``: (id, message_id, message_type,
        recipient, person)."""
        d = t.deliveries
        for chunk in _chunks([r[0] for r in rows], 500):
            await c.execute(
                d.update()
                .where(d.c.id.in_(chunk))
                .values(
                    status="pending",
                    retry_index=0,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=dt.datetime.now(dt.UTC),
                )
            )
        for message_ids in _chunks(sorted({r[1] for r in rows}), 500):
            await c.execute(
                t.messages.update()
                .where(t.messages.c.id.in_(message_ids))
                .values(status="pending", completed_at=None)
            )
        for r in rows:
            await self._audit(
                c,
                event_name,
                message_id=r[1],
                message_type=r[2],
                actor=actor,
                recipient=r[3],
                person=r[4],
                detail={"delivery_id": r[0], **detail},
            )

    async def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds (a router starting again after a crash)."""
        async with self._tx() as c:
            r = await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            return int(r.rowcount or 0)

    async def release(self, delivery_id: str) -> None:
        """Give up a lease without attempting (e.g. the router is stopping)."""
        async with self._tx() as c:
            await c.execute(
                t.deliveries.update()
                .where(t.deliveries.c.id == delivery_id)
                .values(lease_owner=None, lease_until=None)
            )

    async def replay(
        self,
        party: str,
        now: dt.datetime,
        *,
        delivery_id: str | None = None,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[str]:
        """Queue dead-lettered deliveries of ``party`` again, with a fresh retry schedule,
        to subscriptions that are active. The ISAs in force are checked again when each
        is attempted. Returns the ids queued."""
        d = t.deliveries
        q = (
            sa.select(d.c.id, d.c.message_id, d.c.message_type, d.c.recipient, d.c.person)
            .join(t.subscriptions, t.subscriptions.c.id == d.c.subscription_id)
            .where(
                d.c.recipient == party,
                d.c.status == "dead_lettered",
                t.subscriptions.c.status == "active",
            )
        )
        q = _delivery_filters(q, since, until, id=delivery_id, subscription_id=subscription_id)
        async with self._tx() as c:
            rows = (await c.execute(q)).all()
            await self._requeue(c, rows, now, "replay_requested", party, {})
        return [r[0] for r in rows]

    async def list_deliveries(
        self,
        *,
        recipient: str | None = None,
        message_id: str | None = None,
        status: str | None = None,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        d = t.deliveries
        q = _delivery_filters(
            sa.select(d).order_by(d.c.created_at, d.c.id),
            since,
            until,
            recipient=recipient,
            message_id=message_id,
            status=status,
            subscription_id=subscription_id,
        )
        if limit is not None:
            q = q.limit(limit)
        async with self._tx() as c:
            return [x for x in (_row(row) for row in (await c.execute(q)).all()) if x is not None]

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return (await self.attempts_of([delivery_id])).get(delivery_id, [])

    async def attempts_of(self, delivery_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._tx() as c:
            for chunk in _chunks(delivery_ids, 500):
                r = await c.execute(
                    sa.select(t.delivery_attempts)
                    .where(t.delivery_attempts.c.delivery_id.in_(chunk))
                    .order_by(t.delivery_attempts.c.id)
                )
                for row in r.all():
                    x = _row(row)
                    assert x is not None  # noqa: S101
                    out.setdefault(x["delivery_id"], []).append(x)
        return out

    # -- inbox ---------------------------------------------------------------------------------

    async def add_notice(self, party: str, body: str) -> None:
        """A notice on a party's own feed (its inbox): ids and reasons, no personal data."""
        async with self._tx() as c:
            await self._append_inbox(c, party, "notice", body, None)

    _append_inbox = staticmethod(append_inbox)

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
            return [x for x in (_row(row) for row in r.all()) if x is not None]

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
                await self._audit(
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

    # -- disclosure log ------------------------------------------------------------------------

    async def audit(self, event_name: str, **fields: Any) -> None:
        async with self._tx() as c:
            await self._audit(c, event_name, **fields)

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
            return [x for x in (_row(row) for row in (await c.execute(q)).all()) if x is not None]

    _audit = staticmethod(append_audit)


def _disclosure(delivery: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The disclosure-log detail of a delivery outcome: field names and grants, no values."""
    detail: dict[str, Any] = {
        "delivery_id": delivery["id"],
        "channel": delivery["channel"],
        "fields": delivery["fields"],
        "grants": delivery["grants"],
    }
    if delivery.get("subscription_id"):
        detail["subscription_id"] = delivery["subscription_id"]
    if reason:
        detail["reason"] = reason
    return detail


def _delivery_filters(
    q: Any, since: dt.datetime | None, until: dt.datetime | None, **equal: str | None
) -> Any:
    """Narrow a query on ``deliveries``: each given column equal to its value, and
    ``updated_at`` in [since, until)."""
    d = t.deliveries
    for column, value in equal.items():
        if value is not None:
            q = q.where(d.c[column] == value)
    if since is not None:
        q = q.where(d.c.updated_at >= to_utc(since))
    if until is not None:
        q = q.where(d.c.updated_at < to_utc(until))
    return q


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
