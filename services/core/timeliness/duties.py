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
``duty-escalation`` event to the sender and the flow's escalation parties (:mod:`.events`).

The rules are here (who is entitled, when a duty is due, its id, what an update changes, what
an escalation says); the rows are read and written by the store's
:class:`~services.core.store.duties.DutyRepository`, on the transaction
(:class:`~services.core.store.transaction.Transaction`) that :meth:`Store.mark_routed` or
:meth:`Store.fire_timer` hands in. Acknowledging a duty is the store's
:meth:`~services.core.store.timeliness.TimelinessStore.acknowledge_duty`."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..clock import utc_z
from ..isa.engine import RecipientDecision
from ..isa.model import Duty, Flow, PolicySet, agreement_ref
from ..notices import SYSTEM_SENDER
from ..store.duties import DUTY_TIMER as DUTY_TIMER
from ..store.timeliness import HandlerResult
from ..store.values import StoredMessage
from . import dip
from .events import emit

if TYPE_CHECKING:
    from ..store.duties import DutyRecord, Timer
    from ..store.transaction import Transaction

log = logging.getLogger("isa_broker.timeliness")

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
    runtime: Any, message: StoredMessage, permitted: Permitted, now: dt.datetime
) -> Callable[[Transaction], Awaitable[None]] | None:
    """What the router writes, with its delivery rows, for a message it routes: duties and
    their timers, DIP breach timers, or the changes an update makes to those of its root.
    Passed to :meth:`Store.mark_routed` as ``also``."""
    if message.get("sender") == SYSTEM_SENDER:
        return None

    async def apply(tx: Transaction) -> None:
        await routed(tx, runtime, message, permitted, now)

    return apply


async def routed(
    tx: Transaction,
    runtime: Any,
    message: StoredMessage,
    permitted: Permitted,
    now: dt.datetime,
) -> None:
    root_id = message.get("refers_to") or message["id"]
    root = await tx.messages.get(root_id)
    if root is None:
        return
    lifecycle = message.get("lifecycle")
    if lifecycle == "cancelled" or root.get("state") == "cancelled":
        await clear(tx, root, now, "the notice was cancelled")
        return
    if lifecycle == "outcome":
        await dip.close(tx, root_id)
        return
    if lifecycle is None:
        if root["message_type"] == "dip-breach":
            await dip.schedule(tx, runtime.settings, root, now)
        # stale for duties once an amendment (newer than any version) has been routed
        if not await tx.messages.amendment_routed(root_id, newer_than=0):
            await reconcile(tx, runtime.engine.policies, root, message, permitted, now)
    elif lifecycle == "amended" and not await tx.messages.amendment_routed(
        root_id, newer_than=int(message.get("version") or 0)
    ):
        await reconcile(tx, runtime.engine.policies, root, message, permitted, now)


async def reconcile(
    tx: Transaction,
    policies: PolicySet,
    root: StoredMessage,
    message: StoredMessage,
    permitted: Permitted,
    now: dt.datetime,
) -> None:
    """Make the root's duties what ``message`` (the original, or its latest amendment)
    entitles: new duties for parties entitled now, open ones due again, and those of
    parties no longer entitled cleared."""
    wanted = entitled(policies, permitted)
    existing: dict[tuple[str, str, str], DutyRecord] = {
        r.key: r for r in await tx.duties.duties_of(root["id"])
    }
    for key, (version, duty) in sorted(wanted.items()):
        recipient, agreement, flow = key
        have = existing.get(key)
        since = have.created_at if have is not None else now
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
            await tx.duties.insert_duty(
                duty_id=did,
                root=root,
                recipient=recipient,
                agreement=agreement,
                agreement_version=version,
                flow=flow,
                rule=duty.rule[:200],
                escalate_to=sorted(duty.escalate_to),
                due_at=due,
                now=now,
            )
            await tx.duties.set_timer(did, due, root["id"])
            await tx.audit.append(
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
        elif have.status in ("open", "cleared") and (
            have.due_at != due or have.status == "cleared"
        ):
            # moved (an amendment), or entitled again after an amendment had cleared it
            await tx.duties.move_duty(have.id, due, now)
            await tx.duties.set_timer(have.id, due, root["id"])
    gone = [r.id for key, r in existing.items() if key not in wanted and r.status == "open"]
    if gone:
        await _clear_ids(tx, root, gone, now, "no longer entitled after an amendment")


async def clear(tx: Transaction, root: StoredMessage, now: dt.datetime, reason: str) -> None:
    """Every open duty of the root ``cleared``, its timer cancelled."""
    ids = await tx.duties.open_duty_ids(root["id"])
    if ids:
        await _clear_ids(tx, root, ids, now, reason)


async def _clear_ids(
    tx: Transaction, root: StoredMessage, ids: list[str], now: dt.datetime, reason: str
) -> None:
    await tx.duties.clear_duties(ids, now)
    await tx.audit.append(
        "duties_cleared",
        message_id=root["id"],
        message_type=root["message_type"],
        person=root["person"],
        detail={"duty_ids": sorted(ids), "reason": reason},
    )


# -- at the due time -----------------------------------------------------------------------------


async def escalate(tx: Transaction, timer: Timer, now: dt.datetime) -> HandlerResult:
    """The ``duty-due`` handler: a duty still open at its due time escalates, once."""
    duty = await tx.duties.duty(timer.subject)
    if duty is None:
        return {"outcome": "no such duty"}
    if duty.status != "open":
        return {"outcome": f"duty {duty.status}"}
    if duty.due_at > now:
        return duty.due_at  # moved later since the timer was read
    if not await tx.duties.mark_escalated(duty.id, now):
        return {"outcome": "acknowledged meanwhile"}
    root = {"id": duty.message_id, "person": duty.person}
    targets = sorted({duty.sender, *duty.escalate_to})
    event_id = await emit(
        tx.events,
        kind="duty-escalation",
        key=duty.id,
        about=root,
        targets=targets,
        now=now,
        data={
            "duty_id": duty.id,
            "message_id": duty.message_id,
            "message_type": duty.message_type,
            "recipient": duty.recipient,
            "sender": duty.sender,
            "agreement": agreement_ref(duty.agreement, duty.agreement_version),
            "flow": duty.flow,
            "rule": duty.rule,
            "due_at": utc_z(duty.due_at),
            "escalated_to": targets,
        },
    )
    await tx.audit.append(
        "duty_escalated",
        message_id=duty.message_id,
        message_type=duty.message_type,
        actor=SYSTEM_SENDER,
        recipient=duty.recipient,
        person=duty.person,
        detail={"duty_id": duty.id, "event_id": event_id, "escalated_to": targets},
    )
    log.warning(
        "duty_id=%s of %s on message_id=%s overdue; escalated to %s",
        duty.id,
        duty.recipient,
        duty.message_id,
        ",".join(targets),
    )
    return {"outcome": "escalated", "event_id": event_id}
