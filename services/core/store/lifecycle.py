"""Store methods of the message lifecycle (see :mod:`services.core.timeliness.lifecycle`):
an update and its root's new state in one transaction, the chain of versions, and the
sender's list of its messages. Part of :class:`~services.core.store.store.Store`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import tables as t
from .messages import MessageStore, insert_accepted
from .rows import row_dict, stored_message, to_utc
from .sql import append_audit
from .values import StoredMessage

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class UpdateResult:
    """``stored``: the update was stored and the root moved on. Else ``existing``: an earlier
    request with the same Idempotency-Key (replay it); or ``root``: the root as it is now,
    whose state or version had changed since it was read (nothing was stored)."""

    stored: bool
    existing: StoredMessage | None = None
    root: StoredMessage | None = None


class LifecycleStore(MessageStore):
    async def accept_update(
        self,
        update: dict[str, Any],
        topic: str,
        *,
        expected_version: int,
        from_states: frozenset[str],
        to_state: str,
        audit_event: str,
        audit_detail: dict[str, Any],
        pseudonyms: Sequence[str] = (),
    ) -> UpdateResult:
        """Store an update (a message row with ``refers_to`` and ``lifecycle``), its outbox
        row and its disclosure-log entries, and move its root to ``to_state`` and the next
        version, in one transaction - only if the root is still at ``expected_version`` in
        one of ``from_states``. Of two concurrent updates one wins; the other stores
        nothing and gets the root as it now is. The update is indexed under the root's
        person and the ``pseudonyms`` of its own person's identifiers (subject access)."""
        root_id = update["refers_to"]
        m = t.messages
        try:
            async with self._tx() as c:
                moved = await c.execute(
                    m.update()
                    .where(
                        m.c.id == root_id,
                        m.c.state.in_(sorted(from_states)),
                        m.c.version == expected_version,
                    )
                    .values(state=to_state, version=expected_version + 1)
                )
                if not moved.rowcount:
                    now_root = (await c.execute(sa.select(m).where(m.c.id == root_id))).first()
                    return UpdateResult(False, root=stored_message(now_root))
                await insert_accepted(
                    c, {**update, "version": expected_version + 1}, topic, pseudonyms
                )
                await append_audit(
                    c,
                    audit_event,
                    message_id=update["id"],
                    message_type=update["message_type"],
                    actor=update["sender"],
                    person=update["person"],
                    detail={
                        "client_id": update["client_id"],
                        "refers_to": root_id,
                        "version": expected_version + 1,
                        "state": to_state,
                        **audit_detail,
                    },
                )
            return UpdateResult(True)
        except IntegrityError:
            if update.get("idempotency_key") is None:
                raise
            existing = await self.find_idempotent(update["client_id"], update["idempotency_key"])
            if existing is None:
                raise
            return UpdateResult(False, existing=existing)

    async def lifecycle_chain(self, root_id: str) -> list[dict[str, Any]]:
        """The root (version 1, whatever its ``version`` column says: that is the chain's
        latest) and every update that refers to it, oldest version first."""
        m = t.messages
        async with self._tx() as c:
            r = await c.execute(
                sa.select(m)
                .where(sa.or_(m.c.id == root_id, m.c.refers_to == root_id))
                # the root first: its version column carries the chain's latest number
                .order_by(sa.case((m.c.refers_to.is_(None), 0), else_=1), m.c.version)
            )
            return [row_dict(row) for row in r.all()]

    async def recipients_of(self, message_ids: list[str], party: str) -> dict[str, list[str]]:
        """Per message id, the statuses of ``party``'s deliveries of it."""
        d = t.deliveries
        out: dict[str, list[str]] = {}
        async with self._tx() as c:
            r = await c.execute(
                sa.select(d.c.message_id, d.c.status).where(
                    d.c.message_id.in_(message_ids), d.c.recipient == party
                )
            )
            for message_id, status in r.all():
                out.setdefault(message_id, []).append(status)
        return out

    async def list_root_messages(
        self,
        sender: str,
        *,
        message_type: str | None = None,
        state: str | None = None,
        short_notice: bool | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The originals ``sender`` sent, oldest first, with their current state (no
        updates: they are in each original's history). ``after``: the id of the last item
        of the previous page."""
        m = t.messages
        q = sa.select(
            m.c.id,
            m.c.message_type,
            m.c.state,
            m.c.version,
            m.c.accepted_at,
            m.c.timeliness,
            m.c.lifecycle,
        ).where(m.c.sender == sender, m.c.refers_to.is_(None))
        if message_type is not None:
            q = q.where(m.c.message_type == message_type)
        if state is not None:
            q = q.where(m.c.state == state)
        if short_notice is not None:
            flag = m.c.timeliness["short_notice"].as_boolean()
            q = q.where(flag.is_(True) if short_notice else sa.or_(flag.is_(None), ~flag))
        if since is not None:
            q = q.where(m.c.accepted_at >= to_utc(since))
        if until is not None:
            q = q.where(m.c.accepted_at < to_utc(until))
        if after is not None:
            cursor = (
                sa.select(m.c.accepted_at)
                .where(m.c.id == after, m.c.sender == sender)
                .scalar_subquery()
            )
            q = q.where(
                sa.or_(
                    m.c.accepted_at > cursor,
                    sa.and_(m.c.accepted_at == cursor, m.c.id > after),
                )
            )
        q = q.order_by(m.c.accepted_at, m.c.id).limit(limit)
        async with self._tx() as c:
            return [row_dict(row) for row in (await c.execute(q)).all()]
