"""What a delivered message tells its recipient of the acknowledgement duties it holds.

A flow that declares ``acknowledge`` puts a duty on each permitted recipient of a message
(:mod:`.duties`). The delivered event says so, so that the recipient's system can act on the
event alone: CloudEvent extension attributes (names of lowercase letters and digits, at most
20 characters; string values, as the CloudEvents type system allows):

* ``isadutyid``: the ids of the recipient's duties on the message's original (the root of its
  lifecycle chain) that still await its acknowledgement - ``open``, or ``escalated`` (past
  due; a late acknowledgement is still recorded) - comma separated, earliest due first.
  Nearly always one: a recipient has one duty per agreement flow that declares one;
* ``isadutydue``: the earliest of their due times, RFC 3339 in UTC with ``Z``.

Both are absent when no such duty exists. They are read when each attempt is made, so they
state what holds then: an amendment that moved a deadline is delivered with the new time
(its routing transaction moved the duty before its delivery could be attempted); an attempt
after the acknowledgement, or after the duty was cleared, carries none.

Delivery is the hot path, so the store is read only when a duty can exist: never for a
cancellation (its routing cleared every duty), nor for a share none of whose flows, under the
agreements in force, declares a duty. Broker events (escalations, DIP reminders) do not come
here: they are sent as stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..clock import utc_z
from ..isa.engine import RecipientDecision
from ..isa.model import PolicySet
from ..store.timeliness import AwaitedDuty
from .duties import entitled
from .lifecycle import CANCEL

DUTY_ID = "isadutyid"
DUTY_DUE = "isadutydue"


class DutyReader(Protocol):
    async def duties_awaiting(self, recipient: str, message_id: str) -> list[AwaitedDuty]: ...


def may_hold_duty(
    policies: PolicySet, delivery: Mapping[str, Any], permitted: RecipientDecision
) -> bool:
    """Whether the recipient of ``delivery`` can hold a duty on its message: not a
    cancellation, and some flow of its share declares one."""
    if delivery.get("lifecycle") == CANCEL.lifecycle:
        return False
    return bool(entitled(policies, {permitted.party: permitted}))


async def awaited_duties(
    store: DutyReader,
    policies: PolicySet,
    delivery: Mapping[str, Any],
    permitted: RecipientDecision,
) -> list[AwaitedDuty]:
    """The duties of the recipient of ``delivery`` (a due-delivery row: ``recipient``,
    ``message_id``, ``refers_to``, ``lifecycle``) that await its acknowledgement, as the
    store holds them now; none, without reading the store, when there cannot be any."""
    if not may_hold_duty(policies, delivery, permitted):
        return []
    root = delivery.get("refers_to") or delivery["message_id"]
    return await store.duties_awaiting(delivery["recipient"], str(root))


def duty_extensions(duties: Sequence[AwaitedDuty]) -> dict[str, str]:
    """The extension attributes for ``duties``: ``isadutyid`` and ``isadutydue``, or none."""
    if not duties:
        return {}
    ordered = sorted(duties, key=lambda d: (d.due_at, d.id))
    return {
        DUTY_ID: ",".join(d.id for d in ordered),
        DUTY_DUE: utc_z(ordered[0].due_at),
    }
