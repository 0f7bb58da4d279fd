"""The priority lane: a licence recall of a person unlawfully at large is one the police must
act on at once, so it is attempted ahead of every other delivery.

The lane is set at intake on the message (``messages.priority``), copied by the router to each
of its deliveries (``deliveries.priority``), and used by the dispatcher twice:

* :meth:`~services.core.store.store.Store.due_deliveries` returns due priority deliveries
  first (then oldest first);
* a reserve of in-flight slots (``priority_lane_reserved_slots``) only priority deliveries
  may use, and one slot per subscription beyond ``webhook_max_in_flight``, so a backlog of
  ordinary traffic, even to the same receiver, cannot hold a recall back.

Ahead of the dispatcher, the lane also holds in the outbox relay (priority messages are
published first) and in the router, which consumes the topics of :data:`PRIORITY_TYPES` with
a consumer of their own, so a backlog of release notices waiting to be routed cannot hold a
recall back either.

Per-person order still holds: a recall waits behind an earlier unfinished message about the
same person for the same subscription (the receiver must see them in order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NORMAL = 0
PRIORITY = 1

LANES = {NORMAL: "normal", PRIORITY: "priority"}

#: message types that can carry a priority message: their topics get a consumer of their own
PRIORITY_TYPES = ("licence-recall",)


def priority_of(message_type: str, payload: Mapping[str, Any]) -> int:
    """1 for a licence recall whose ``recall.unlawfully_at_large`` is true, else 0."""
    if message_type != "licence-recall":
        return NORMAL
    recall = payload.get("recall")
    if isinstance(recall, Mapping) and recall.get("unlawfully_at_large") is True:
        return PRIORITY
    return NORMAL


def lane_name(priority: int | None) -> str:
    return "priority" if priority else "normal"
