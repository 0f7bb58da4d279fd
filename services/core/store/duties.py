"""The rows of acknowledgement duties and their ``duty-due`` timers, in the caller's
transaction: what :mod:`services.core.timeliness.duties` writes when the router routes a
message and when a duty falls due, and a recipient's acknowledgement. The rules (who is
entitled, when a duty is due, what an amendment changes, what an escalation says) stay
there; this module only reads and writes.

Also the typed timer a handler of the durable scheduler receives (:class:`Timer`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..isa.model import agreement_ref
from . import tables as t
from .rows import row_dict
from .sql import append_audit, insert_ignore
from .values import StoredMessage

#: the timer kind of a duty's due time (its subject the duty's id)
DUTY_TIMER = "duty-due"


@dataclass(frozen=True)
class DutyRecord:
    """A duty as recorded: the recipient's obligation to acknowledge the original message
    ``message_id`` under one flow, by ``due_at``."""

    id: str
    message_id: str
    message_type: str
    person: str
    sender: str
    recipient: str
    agreement: str
    agreement_version: str
    flow: str
    rule: str
    escalate_to: tuple[str, ...]
    due_at: dt.datetime
    status: str
    created_at: dt.datetime

    @property
    def key(self) -> tuple[str, str, str]:
        """(recipient, agreement, flow): one duty per key on a message."""
        return (self.recipient, self.agreement, self.flow)

    @classmethod
    def of(cls, row: Any) -> DutyRecord:
        r = row_dict(row)
        return cls(
            id=r["id"],
            message_id=r["message_id"],
            message_type=r["message_type"],
            person=r["person"],
            sender=r["sender"],
            recipient=r["recipient"],
            agreement=r["agreement"],
            agreement_version=r["agreement_version"],
            flow=r["flow"],
            rule=r["rule"],
            escalate_to=tuple(r["escalate_to"] or ()),
            due_at=r["due_at"],
            status=r["status"],
            created_at=r["created_at"],
        )


@dataclass(frozen=True)
class Timer:
    """A ``timers`` row as its handler sees it: what fires (``kind``), about what
    (``subject``: a duty or message id), when."""

    id: int
    kind: str
    subject: str
    due_at: dt.datetime
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: dict[str, Any]) -> Timer:
        return cls(
            id=row["id"],
            kind=row["kind"],
            subject=row["subject"],
            due_at=row["due_at"],
            detail=dict(row["detail"] or {}),
        )


class DutyRepository:
    """Duties and their timers, over one transaction's connection."""

    def __init__(self, c: AsyncConnection) -> None:
        self._c = c

    async def duties_of(self, root_id: str) -> list[DutyRecord]:
        """Every duty on the original message ``root_id``, whatever its status."""
        d = t.duties
        rows = (await self._c.execute(sa.select(d).where(d.c.message_id == root_id))).all()
        return [DutyRecord.of(r) for r in rows]

    async def open_duty_ids(self, root_id: str) -> list[str]:
        d = t.duties
        q = sa.select(d.c.id).where(d.c.message_id == root_id, d.c.status == "open")
        return [r[0] for r in (await self._c.execute(q)).all()]

    async def duty(self, duty_id: str) -> DutyRecord | None:
        d = t.duties
        found = (await self._c.execute(sa.select(d).where(d.c.id == duty_id))).first()
        return DutyRecord.of(found) if found is not None else None

    async def insert_duty(
        self,
        *,
        duty_id: str,
        root: StoredMessage,
        recipient: str,
        agreement: str,
        agreement_version: str,
        flow: str,
        rule: str,
        escalate_to: Sequence[str],
        due_at: dt.datetime,
        now: dt.datetime,
    ) -> None:
        """A new ``open`` duty on the original message ``root`` (nothing if it exists)."""
        await self._c.execute(
            insert_ignore(
                self._c,
                t.duties,
                {
                    "id": duty_id,
                    "message_id": root["id"],
                    "message_type": root["message_type"],
                    "person": root["person"],
                    "sender": root["sender"],
                    "recipient": recipient,
                    "agreement": agreement,
                    "agreement_version": agreement_version,
                    "flow": flow,
                    "rule": rule,
                    "escalate_to": list(escalate_to),
                    "due_at": due_at,
                    "status": "open",
                    "created_at": now,
                    "updated_at": now,
                },
            )
        )

    async def move_duty(self, duty_id: str, due_at: dt.datetime, now: dt.datetime) -> None:
        """An open or cleared duty ``open`` again, due at ``due_at``."""
        d = t.duties
        await self._c.execute(
            d.update()
            .where(d.c.id == duty_id, d.c.status.in_(("open", "cleared")))
            .values(status="open", due_at=due_at, updated_at=now)
        )

    async def set_timer(self, duty_id: str, due_at: dt.datetime, root_id: str) -> None:
        """The duty's timer pending at ``due_at`` (created, moved, or revived after a
        clearing)."""
        tm = t.timers
        r = await self._c.execute(
            tm.update()
            .where(tm.c.kind == DUTY_TIMER, tm.c.subject == duty_id, tm.c.status != "done")
            .values(due_at=due_at, status="pending")
        )
        if not r.rowcount:
            await self._c.execute(
                insert_ignore(
                    self._c,
                    tm,
                    {
                        "kind": DUTY_TIMER,
                        "subject": duty_id,
                        "due_at": due_at,
                        "status": "pending",
                        "attempts": 0,
                        "detail": {"message_id": root_id},
                    },
                )
            )

    async def clear_duties(self, duty_ids: Sequence[str], now: dt.datetime) -> None:
        """The open ones of ``duty_ids`` ``cleared``, their pending timers cancelled."""
        d = t.duties
        await self._c.execute(
            d.update()
            .where(d.c.id.in_(duty_ids), d.c.status == "open")
            .values(status="cleared", updated_at=now)
        )
        tm = t.timers
        await self._c.execute(
            tm.update()
            .where(tm.c.kind == DUTY_TIMER, tm.c.subject.in_(duty_ids), tm.c.status == "pending")
            .values(status="cancelled")
        )

    async def mark_escalated(self, duty_id: str, now: dt.datetime) -> bool:
        """The duty ``escalated`` if it is still open; False if it no longer is."""
        d = t.duties
        r = await self._c.execute(
            d.update()
            .where(d.c.id == duty_id, d.c.status == "open")
            .values(status="escalated", escalated_at=now, updated_at=now)
        )
        return bool(r.rowcount)

    async def acknowledge(
        self,
        duty_id: str,
        party: str,
        client_id: str,
        action: str | None,
        now: dt.datetime,
    ) -> tuple[str, dict[str, Any]] | None:
        """Acknowledge ``party``'s duty: ``(outcome, duty)`` with outcome ``acknowledged``
        (now), ``already`` (an earlier acknowledgement stands, unchanged) or ``cleared``;
        None when it is not a duty of ``party``. The duty's timer is cancelled with it, and
        the acknowledgement entered in the disclosure log."""
        c = self._c
        d, tm = t.duties, t.timers
        found = (
            await c.execute(sa.select(d).where(d.c.id == duty_id, d.c.recipient == party))
        ).first()
        if found is None:
            return None
        duty = row_dict(found)
        if duty["status"] == "cleared":
            return "cleared", duty
        if duty["status"] == "acknowledged":
            return "already", duty
        late = now > duty["due_at"]
        values = {
            "status": "acknowledged",
            "acknowledged_at": now,
            "acknowledged_by": client_id,
            "action": action,
            "late": late,
            "updated_at": now,
        }
        r = await c.execute(
            d.update()
            .where(d.c.id == duty_id, d.c.status.in_(("open", "escalated")))
            .values(**values)
        )
        if not r.rowcount:  # raced with a clearing or another acknowledgement
            again = row_dict((await c.execute(sa.select(d).where(d.c.id == duty_id))).one())
            return ("cleared" if again["status"] == "cleared" else "already"), again
        await c.execute(
            tm.update()
            .where(tm.c.kind == DUTY_TIMER, tm.c.subject == duty_id, tm.c.status == "pending")
            .values(status="cancelled")
        )
        await append_audit(
            c,
            "duty_acknowledged",
            message_id=duty["message_id"],
            message_type=duty["message_type"],
            actor=party,
            recipient=party,
            person=duty["person"],
            detail={
                "duty_id": duty_id,
                "client_id": client_id,
                "action": action,
                "late": late,
                "agreement": agreement_ref(duty["agreement"], duty["agreement_version"]),
                "flow": duty["flow"],
            },
        )
        return "acknowledged", {**duty, **values}
