"""Rows as the domain code sees them: plain dicts with every time in UTC. SQLite hands back
naive datetimes (it stores what it was given, in UTC here); PostgreSQL aware ones.

A new delivery's row (:func:`new_delivery`, its id :func:`delivery_id`) is built here once,
for the router (a message's deliveries) and the broker's own events alike."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .values import StoredMessage

#: a delivery's outcomes after which nothing more is attempted
TERMINAL_DELIVERY = frozenset({"delivered", "dead_lettered", "withheld", "no_channel"})
#: a delivery still to be attempted: never yet (pending) or after a failure (retrying)
OPEN_DELIVERY = ("pending", "retrying")


def utc(value: Any) -> Any:
    """A naive datetime read back from the store, marked UTC; anything else unchanged."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def to_utc(value: dt.datetime) -> dt.datetime:
    """A time to compare with stored ones: SQLite compares them as text, so convert an
    aware time to UTC and take a naive one as UTC already."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def row_dict(row: Any) -> dict[str, Any]:
    """A result row as a dict, its times in UTC."""
    return {k: utc(v) for k, v in row._mapping.items()}


def row_or_none(row: Any) -> dict[str, Any] | None:
    """:func:`row_dict` of a row that may be missing."""
    return None if row is None else row_dict(row)


def stored_message(row: Any) -> StoredMessage | None:
    """A ``messages`` row that may be missing, as :class:`~.values.StoredMessage`."""
    return None if row is None else cast("StoredMessage", row_dict(row))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in lists of at most ``size`` (bounded ``IN (...)`` lists)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def disclosure(delivery: Mapping[str, Any], reason: str | None) -> dict[str, Any]:
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


def delivery_id(message_id: str, recipient: str, subscription_id: str | None) -> str:
    """A delivery's id, derived from the message, the recipient and the subscription: stable
    across redeliveries (receivers de-duplicate on it: ``webhook-id``), so that recording
    the same delivery twice records it once."""
    digest = hashlib.sha256(f"{message_id}|{recipient}|{subscription_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


def new_delivery(
    *,
    message_id: str,
    recipient: str,
    subscription_id: str | None,
    channel: str,
    status: str,
    person: str,
    accepted_at: dt.datetime,
    message_type: str,
    now: dt.datetime,
    fields: list[str] | None = None,
    grants: list[dict[str, Any]] | None = None,
    priority: int = 0,
    last_error: str | None = None,
    trace_context: str | None = None,
) -> dict[str, Any]:
    """The columns of a ``deliveries`` row as first recorded: not yet attempted and due at
    once, with its :func:`delivery_id`, and the message's person, acceptance time, type and
    priority copied so that the dispatcher keeps per-person order and lanes cheaply.
    ``fields`` and ``grants``: what the agreements disclose to the recipient, and under
    which grants (none for a withheld delivery or a broker event); ``last_error``: why a
    delivery recorded already terminal has none; ``trace_context``: the routing's
    ``traceparent`` (services.core.tracing)."""
    row: dict[str, Any] = {
        "id": delivery_id(message_id, recipient, subscription_id),
        "message_id": message_id,
        "recipient": recipient,
        "subscription_id": subscription_id,
        "channel": channel,
        "status": status,
        "fields": fields if fields is not None else [],
        "grants": grants if grants is not None else [],
        "attempts": 0,
        "retry_index": 0,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "person": person,
        "accepted_at": accepted_at,
        "message_type": message_type,
        "priority": priority,
        "trace_context": trace_context,
    }
    if last_error is not None:
        row["last_error"] = last_error
    return row
