"""Events the broker itself raises (an escalation of an overdue duty, a DIP breach reminder
or expiry), delivered like any other message.

Each event is a ``messages`` row of its own (sender ``isa-broker``, routed at once, never
published to Kafka) whose ``payload`` is the whole structured CloudEvent, ids only, and one
``deliveries`` row per active subscription of each target party, whatever message types the
subscription takes: an agency's systems listen where they listen. A party with no active
subscription gets the event on its inbox feed as a notice. The dispatcher sends the stored
event as it is: it carries no personal data, so there is nothing to project or re-check.

The event's row carries the person pseudonym of the message it is about, so that it is
delivered after that message to a recipient that has both (per-person order); the CloudEvent's
``subject`` is the message id, never the pseudonym."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..clock import utc_z
from ..notices import SYSTEM_SENDER
from ..store import tables as t
from ..store.rows import new_delivery
from ..store.sql import append_inbox, insert_ignore

SOURCE = "urn:isa-broker:scheduler"
#: message_type (the row's) -> CloudEvents type
EVENT_TYPES = {
    "duty-escalation": "org.isa-broker.duty-escalation.v1",
    "dip-breach-reminder": "org.isa-broker.dip-breach-reminder.v1",
    "dip-breach-expired": "org.isa-broker.dip-breach-expired.v1",
}
_NAMESPACE = uuid.UUID("5b0c3c1e-6f0a-4c0e-9d7c-3b1f7d2a6e41")


def is_system_event(row: dict[str, Any]) -> bool:
    """A delivery (or message) row of a broker event rather than an agency's message."""
    return row.get("sender") == SYSTEM_SENDER and row.get("message_type") in EVENT_TYPES


def event_body(row: dict[str, Any]) -> bytes:
    """The body the dispatcher sends for a delivery of a broker event: the stored event,
    with the recipient and the delivery id added as for any message."""
    event = dict(row["payload"])
    data = event.pop("data")
    event.update({"isarecipient": row["recipient"], "isadeliveryid": row["id"], "data": data})
    return json.dumps(event, separators=(",", ":")).encode()


async def emit(
    c: AsyncConnection,
    *,
    kind: str,
    key: str,
    about: dict[str, Any],
    targets: list[str],
    data: dict[str, Any],
    now: dt.datetime,
) -> str | None:
    """Record one broker event about the message ``about`` (a ``messages`` row) for each of
    ``targets``, in the caller's transaction. ``key`` names the occurrence (the timer or
    duty it comes from): recording the same occurrence twice records nothing the second
    time. Returns the event's id, or None when it was recorded before."""
    event_id = str(uuid.uuid5(_NAMESPACE, f"{kind}|{key}"))
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": EVENT_TYPES[kind],
        "time": utc_z(now),
        "subject": about["id"],
        "datacontenttype": "application/json",
        "data": data,
    }
    parties = sorted(set(targets))
    inserted = await c.execute(
        insert_ignore(
            c,
            t.messages,
            {
                "id": event_id,
                "message_type": kind,
                "sender": SYSTEM_SENDER,
                "client_id": SYSTEM_SENDER,
                "purposes": None,
                "person": about["person"],
                "payload": event,
                "decision": {"system_event": True, "recipients": parties},
                "status": "pending",
                "accepted_at": now,
                "routed_at": now,
            },
        )
    )
    if not inserted.rowcount:
        return None
    subs = (
        await c.execute(
            sa.select(t.subscriptions).where(
                t.subscriptions.c.party.in_(parties), t.subscriptions.c.status == "active"
            )
        )
    ).all()
    by_party: dict[str, list[Any]] = {}
    for sub in subs:
        by_party.setdefault(sub.party, []).append(sub)
    delivered = False
    for party in parties:
        if party not in by_party:
            body = dict(event)
            body.pop("data")
            body.update({"isarecipient": party, "data": data})
            await append_inbox(c, party, "notice", json.dumps(body, separators=(",", ":")), None)
            continue
        for sub in by_party[party]:
            delivered = True
            await c.execute(
                insert_ignore(
                    c,
                    t.deliveries,
                    new_delivery(
                        message_id=event_id,
                        recipient=party,
                        subscription_id=sub.id,
                        channel=sub.channel,
                        status="pending",
                        person=about["person"],
                        accepted_at=now,
                        message_type=kind,
                        now=now,
                    ),
                )
            )
    if not delivered:
        await c.execute(
            t.messages.update()
            .where(t.messages.c.id == event_id)
            .values(status="complete", completed_at=now)
        )
    return event_id
