"""Acknowledgement duties from the agreements, and their escalation.

A flow may declare ``acknowledge`` (see :class:`~services.core.isa.model.Duty`). When the
router routes a message, each permitted recipient of each such flow gets one duty on the
ORIGINAL message (the root of its lifecycle chain), due at the time the declaration gives,
with a ``duty-due`` timer at that time. The rows are written in the transaction that marks
the message routed (:func:`on_routed`), so they exist exactly when the routing does.

Lifecycle updates move the duties of their root:

* ``amended``: open duties are due again as the new state says (a ``within`` period still
  counts from when the duty was created); a party newly entitled gets a duty; a party no
  longer entitled has its duty ``cleared``;
* ``cancelled``: every open duty is ``cleared`` and its timer cancelled;
* ``released``: nothing changes (open duties stay until due).

Updates may be routed out of order (the reconciler republishes, partitions differ): a stale
update (an amendment older than one already routed, or the original once an amendment has
been routed) changes nothing, and a root already cancelled gets no duty at all.

At the due time, a duty still ``open`` escalates, once: status ``escalated`` and a
``duty-escalation`` event to the sender and the flow's escalation parties (:mod:`.events`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..clock import utc_z
from ..isa.engine import RecipientDecision
from ..isa.model import Duty, Flow, PolicySet, agreement_ref
from ..notices import SYSTEM_SENDER
from ..store import tables as t
from ..store.rows import row_dict
from ..store.sql import append_audit, insert_ignore
from ..store.timeliness import HandlerResult
from . import dip
from .events import emit

log = logging.getLogger("isa_broker.timeliness")

DUTY_TIMER = "duty-due"

#: what the router's recheck gives per party: a decision, or the reason it gets nothing
Permitted = Mapping[str, RecipientDecision | str]


def duty_id(root_id: str, recipient: str, agreement: str, flow: str) -> str:
    digest = hashlib.sha256(f"{root_id}|{recipient}|{agreement}|{flow}".encode()).hexdigest()
    return "dut_" + digest[:32]


def _value(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for name in path.split("."):
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def point_of(value: Any) -> dt.datetime | None:
    """A date (00:00 UTC of it) or a date-time from a message field, as a UTC instant."""
    if not isinstance(value, str):
        return None
    try:
        if "T" in value:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    except ValueError:
        return None


def due_at(duty: Duty, payload: Mapping[str, Any], since: dt.datetime) -> dt.datetime | None:
    """When a duty is due: ``since`` + ``within``, and/or the ``before`` point minus its
    offset; the earlier of the two. None when neither can be computed (a ``before`` field
    the message does not carry, and no ``within``)."""
    candidates = []
    if duty.within is not None:
        candidates.append(since + duty.within)
    if duty.before_field is not None:
        point = point_of(_value(payload, duty.before_field))
        if point is not None:
            candidates.append(point - duty.before_offset)
    return min(candidates) if candidates else None


def flow_of(policies: PolicySet, agreement_id: str, flow_id: str) -> Flow | None:
    agreement = policies.agreement(agreement_id)
    if agreement is None:
        return None
    return next((f for f in agreement.flows if f.id == flow_id), None)


def entitled(
    policies: PolicySet, permitted: Permitted
) -> dict[tuple[str, str, str], tuple[str, Duty]]:
    """(recipient, agreement, flow) -> (agreement version, duty) for each permitted
    recipient of each flow that declares a duty."""
    out: dict[tuple[str, str, str], tuple[str, Duty]] = {}
    for party, decision in permitted.items():
        if isinstance(decision, str):
            continue  # withheld: no duty
        for g in decision.grants:
            flow = flow_of(policies, g.agreement_id, g.flow_id)
            if flow is not None and flow.duty is not None:
                out[(party, g.agreement_id, g.flow_id)] = (g.agreement_version, flow.duty)
    return out


# -- at routing ----------------------------------------------------------------------------------


def on_routed(
    runtime: Any, message: dict[str, Any], permitted: Permitted, now: dt.datetime
) -> Callable[[AsyncConnection], Awaitable[None]] | None:
    """What the router writes, with its delivery rows, for a message it routes: duties and
    their timers, DIP breach timers, or the changes an update makes to those of its root.
    Passed to :meth:`Store.mark_routed` as ``also``."""
    if message.get("sender") == SYSTEM_SENDER:
        return None

    async def apply(c: AsyncConnection) -> None:
        await routed(c, runtime, message, permitted, now)

    return apply


async def routed(
    c: AsyncConnection,
    runtime: Any,
    message: dict[str, Any],
    permitted: Permitted,
    now: dt.datetime,
) -> None:
    root_id = message.get("refers_to") or message["id"]
    found = (await c.execute(sa.select(t.messages).where(t.messages.c.id == root_id))).first()
    if found is None:
        return
    root = row_dict(found)
    lifecycle = message.get("lifecycle")
    if lifecycle == "cancelled" or root.get("state") == "cancelled":
        await clear(c, root, now, "the notice was cancelled")
        return
    if lifecycle == "outcome":
        await dip.close(c, root_id)
        return
    if lifecycle is None:
        if root["message_type"] == "dip-breach":
            await dip.schedule(c, runtime.settings, root, now)
        if not await _amendment_routed(c, root_id, newer_than=0):
            await reconcile(c, runtime.engine.policies, root, message, permitted, now)
    elif lifecycle == "amended" and not await _amendment_routed(
        c, root_id, newer_than=int(message.get("version") or 0)
    ):
        await reconcile(c, runtime.engine.policies, root, message, permitted, now)


async def _amendment_routed(c: AsyncConnection, root_id: str, newer_than: int) -> bool:
    """Whether an amendment of ``root_id`` newer than version ``newer_than`` has already been
    routed (then the message being routed is stale for duties)."""
    m = t.messages
    r = await c.execute(
        sa.select(m.c.id)
        .where(
            m.c.refers_to == root_id,
            m.c.lifecycle == "amended",
            m.c.routed_at.is_not(None),
            m.c.version > newer_than,
        )
        .limit(1)
    )
    return r.first() is not None


async def reconcile(
    c: AsyncConnection,
    policies: PolicySet,
    root: dict[str, Any],
    message: dict[str, Any],
    permitted: Permitted,
    now: dt.datetime,
) -> None:
    """Make the root's duties what ``message`` (the original, or its latest amendment)
    entitles: new duties for parties entitled now, open ones due again, and those of
    parties no longer entitled cleared."""
    d = t.duties
    wanted = entitled(policies, permitted)
    existing = {
        (r.recipient, r.agreement, r.flow): row_dict(r)
        for r in (await c.execute(sa.select(d).where(d.c.message_id == root["id"]))).all()
    }
    for key, (version, duty) in sorted(wanted.items()):
        recipient, agreement, flow = key
        have = existing.get(key)
        since = have["created_at"] if have is not None else now
        due = due_at(duty, message["payload"], since)
        if due is None:
            log.warning(
                "no due time for the duty of %s under %s#%s on message_id=%s: %s is missing",
                recipient,
                agreement,
                flow,
                root["id"],
                duty.before_field,
            )
            continue
        if have is None:
            did = duty_id(root["id"], recipient, agreement, flow)
            await c.execute(
                insert_ignore(
                    c,
                    d,
                    {
                        "id": did,
                        "message_id": root["id"],
                        "message_type": root["message_type"],
                        "person": root["person"],
                        "sender": root["sender"],
                        "recipient": recipient,
                        "agreement": agreement,
                        "agreement_version": version,
                        "flow": flow,
                        "rule": duty.rule[:200],
                        "escalate_to": sorted(duty.escalate_to),
                        "due_at": due,
                        "status": "open",
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            )
            await _set_timer(c, did, due, root["id"])
            await append_audit(
                c,
                "duty_created",
                message_id=root["id"],
                message_type=root["message_type"],
                recipient=recipient,
                person=root["person"],
                detail={
                    "duty_id": did,
                    "agreement": agreement_ref(agreement, version),
                    "flow": flow,
                    "due_at": due.isoformat(),
                },
            )
        elif have["status"] in ("open", "cleared") and (
            have["due_at"] != due or have["status"] == "cleared"
        ):
            # moved (an amendment), or entitled again after an amendment had cleared it
            await c.execute(
                d.update()
                .where(d.c.id == have["id"], d.c.status.in_(("open", "cleared")))
                .values(status="open", due_at=due, updated_at=now)
            )
            await _set_timer(c, have["id"], due, root["id"])
    gone = [r["id"] for key, r in existing.items() if key not in wanted and r["status"] == "open"]
    if gone:
        await _clear_ids(c, root, gone, now, "no longer entitled after an amendment")


async def _set_timer(c: AsyncConnection, did: str, due: dt.datetime, root_id: str) -> None:
    """The duty's timer pending at ``due`` (created, moved, or revived after a clearing)."""
    tm = t.timers
    r = await c.execute(
        tm.update()
        .where(tm.c.kind == DUTY_TIMER, tm.c.subject == did, tm.c.status != "done")
        .values(due_at=due, status="pending")
    )
    if not r.rowcount:
        await c.execute(
            insert_ignore(
                c,
                tm,
                {
                    "kind": DUTY_TIMER,
                    "subject": did,
                    "due_at": due,
                    "status": "pending",
                    "attempts": 0,
                    "detail": {"message_id": root_id},
                },
            )
        )


async def clear(c: AsyncConnection, root: dict[str, Any], now: dt.datetime, reason: str) -> None:
    """Every open duty of the root ``cleared``, its timer cancelled."""
    d = t.duties
    ids = [
        r[0]
        for r in (
            await c.execute(
                sa.select(d.c.id).where(d.c.message_id == root["id"], d.c.status == "open")
            )
        ).all()
    ]
    if ids:
        await _clear_ids(c, root, ids, now, reason)


async def _clear_ids(
    c: AsyncConnection, root: dict[str, Any], ids: list[str], now: dt.datetime, reason: str
) -> None:
    d, tm = t.duties, t.timers
    await c.execute(
        d.update()
        .where(d.c.id.in_(ids), d.c.status == "open")
        .values(status="cleared", updated_at=now)
    )
    await c.execute(
        tm.update()
        .where(tm.c.kind == DUTY_TIMER, tm.c.subject.in_(ids), tm.c.status == "pending")
        .values(status="cancelled")
    )
    await append_audit(
        c,
        "duties_cleared",
        message_id=root["id"],
        message_type=root["message_type"],
        person=root["person"],
        detail={"duty_ids": sorted(ids), "reason": reason},
    )


# -- at the due time -----------------------------------------------------------------------------


async def escalate(c: AsyncConnection, timer: dict[str, Any], now: dt.datetime) -> HandlerResult:
    """The ``duty-due`` handler: a duty still open at its due time escalates, once."""
    d = t.duties
    found = (await c.execute(sa.select(d).where(d.c.id == timer["subject"]))).first()
    if found is None:
        return {"outcome": "no such duty"}
    duty = row_dict(found)
    if duty["status"] != "open":
        return {"outcome": f"duty {duty['status']}"}
    due: dt.datetime = duty["due_at"]
    if due > now:
        return due  # moved later since the timer was read
    r = await c.execute(
        d.update()
        .where(d.c.id == duty["id"], d.c.status == "open")
        .values(status="escalated", escalated_at=now, updated_at=now)
    )
    if not r.rowcount:
        return {"outcome": "acknowledged meanwhile"}
    root = {"id": duty["message_id"], "person": duty["person"]}
    targets = sorted({duty["sender"], *duty["escalate_to"]})
    event_id = await emit(
        c,
        kind="duty-escalation",
        key=duty["id"],
        about=root,
        targets=targets,
        now=now,
        data={
            "duty_id": duty["id"],
            "message_id": duty["message_id"],
            "message_type": duty["message_type"],
            "recipient": duty["recipient"],
            "sender": duty["sender"],
            "agreement": agreement_ref(duty["agreement"], duty["agreement_version"]),
            "flow": duty["flow"],
            "rule": duty["rule"],
            "due_at": utc_z(duty["due_at"]),
            "escalated_to": targets,
        },
    )
    await append_audit(
        c,
        "duty_escalated",
        message_id=duty["message_id"],
        message_type=duty["message_type"],
        actor=SYSTEM_SENDER,
        recipient=duty["recipient"],
        person=duty["person"],
        detail={"duty_id": duty["id"], "event_id": event_id, "escalated_to": targets},
    )
    log.warning(
        "duty_id=%s of %s on message_id=%s overdue; escalated to %s",
        duty["id"],
        duty["recipient"],
        duty["message_id"],
        ",".join(targets),
    )
    return {"outcome": "escalated", "event_id": event_id}
