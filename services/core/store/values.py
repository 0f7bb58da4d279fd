"""Typed values that cross the store's boundary: a stored message and the due delivery the
store hands the dispatcher (rows, only read), and the outcome the dispatcher hands back
(an attempt, what was disclosed and under which grants, and how long the recipient may
keep it). Nothing is added to a row on the way and read back by the store.

Duties and timers have theirs in :mod:`.duties` (``DutyRecord``, ``Timer``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ..clock import utc_z


class StoredMessage(TypedDict):
    """A message as stored (an original, or an update with ``refers_to`` and
    ``lifecycle``): the sender's payload, the ISA decision at intake, its state. Only read."""

    id: str
    message_type: str
    sender: str
    client_id: str
    purposes: list[str] | None
    person: str
    payload: dict[str, Any]
    decision: dict[str, Any]
    status: str
    accepted_at: dt.datetime
    completed_at: dt.datetime | None
    idempotency_key: str | None
    request_hash: str | None
    routed_at: dt.datetime | None
    refers_to: str | None
    lifecycle: str | None
    state: str | None
    version: int
    timeliness: dict[str, Any] | None
    priority: int
    trace_context: str | None


class DueDelivery(TypedDict):
    """A delivery due for an attempt, with what the dispatcher needs of its message and of
    its subscription (:meth:`~.deliveries.DeliveryStore.due_deliveries`). Only read."""

    # the delivery
    id: str
    message_id: str
    recipient: str
    subscription_id: str  # due deliveries are those of a subscription
    channel: str
    status: str
    fields: list[str]
    grants: list[dict[str, Any]]
    attempts: int
    retry_index: int
    person: str
    accepted_at: dt.datetime
    message_type: str
    priority: int
    trace_context: str | None
    # its message
    sender: str
    payload: dict[str, Any]
    decision: dict[str, Any]
    refers_to: str | None
    lifecycle: str | None
    version: int
    timeliness: dict[str, Any] | None
    # its subscription
    url: str | None
    secret: str | None
    previous_secret: str | None
    previous_secret_until: dt.datetime | None
    subscription_status: str
    failing_since: dt.datetime | None
    encrypt: bool


@dataclass(frozen=True)
class Attempt:
    """One attempt on a channel: when it started, the receiver's HTTP status if any, the
    error if it failed, and how long it took."""

    at: dt.datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0

    @property
    def ended_at(self) -> dt.datetime:
        """When it ended, on the clock ``at`` was read from."""
        return self.at + dt.timedelta(milliseconds=self.duration_ms)


@dataclass(frozen=True)
class Retention:
    """How long the recipient may keep a delivery (:func:`services.core.retention.retention_of`):
    each granting agreement's period (``agreement@version`` -> ISO 8601 duration, or None),
    the one that holds longest, and when it ends."""

    periods: Mapping[str, str | None]
    period: str | None
    retain_until: dt.datetime | None

    def logged(self) -> dict[str, Any]:
        """As the disclosure log records it."""
        end = self.retain_until
        return {
            "retention": dict(self.periods),
            "retain_until": utc_z(end) if end is not None else None,
        }


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt (or a decision not to attempt) did to a delivery.

    ``status``: the delivery's new status (``retrying`` with ``next_attempt_at`` and
    ``retry_index``, or terminal). ``fields`` and ``grants``: what the agreements in force
    disclosed, and under which grants, when it was attempted (None keeps what was recorded
    at routing). ``retention``: for a delivered message, how long the recipient may keep
    it. ``inbox_body``: the entry an inbox delivery appends. ``endpoint_ok``: the endpoint
    answered, ending its run of failures."""

    status: str
    attempt: Attempt | None = None
    next_attempt_at: dt.datetime | None = None
    retry_index: int | None = None
    reason: str | None = None
    fields: list[str] | None = None
    grants: list[dict[str, Any]] | None = None
    retention: Retention | None = None
    inbox_body: str | None = None
    endpoint_ok: bool = False
