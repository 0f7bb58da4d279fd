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
``subject`` is the message id, never the pseudonym.

This module builds the event and decides who gets it how; the rows are written by the
store's :class:`~services.core.store.events.EventRepository`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..clock import utc_z
from ..notices import SYSTEM_SENDER

if TYPE_CHECKING:
    from ..store.events import EventRepository, Listener

SOURCE = "urn:isa-broker:scheduler"
#: message_type (the row's) -> CloudEvents type
EVENT_TYPES = {
    "duty-escalation": "org.isa-broker.duty-escalation.v1",
    "dip-breach-reminder": "org.isa-broker.dip-breach-reminder.v1",
    "dip-breach-expired": "org.isa-broker.dip-breach-expired.v1",
}
_NAMESPACE = uuid.UUID("5b0c3c1e-6f0a-4c0e-9d7c-3b1f7d2a6e41")


def is_system_event(row: Mapping[str, Any]) -> bool:
    """A delivery (or message) row of a broker event rather than an agency's message."""
    return row.get("sender") == SYSTEM_SENDER and row.get("message_type") in EVENT_TYPES


def event_body(row: Mapping[str, Any]) -> bytes:
    """The body the dispatcher sends for a delivery of a broker event: the stored event,
    with the recipient and the delivery id added as for any message."""
    event = dict(row["payload"])
    data = event.pop("data")
    event.update({"isarecipient": row["recipient"], "isadeliveryid": row["id"], "data": data})
    return json.dumps(event, separators=(",", ":")).encode()


async def emit(
    events: EventRepository,
    *,
    kind: str,
    key: str,
    about: Mapping[str, Any],
    targets: list[str],
    data: dict[str, Any],
    now: dt.datetime,
) -> str | None:
    """Record one broker event about the message ``about`` (a ``messages`` row) for each of
    ``targets``, in the caller's transaction (``events``: its repository,
    :class:`~services.core.store.events.EventRepository`). ``key`` names the occurrence (the
    timer or duty it comes from): recording the same occurrence twice records nothing the
    second time. Returns the event's id, or None when it was recorded before."""
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
    person = about["person"]
    if not await events.record_event(
        event_id=event_id, kind=kind, person=person, event=event, parties=parties, now=now
    ):
        return None
    by_party: dict[str, list[Listener]] = {}
    for listener in await events.listeners(parties):
        by_party.setdefault(listener.party, []).append(listener)
    delivered = False
    for party in parties:
        if party not in by_party:
            body = dict(event)
            body.pop("data")
            body.update({"isarecipient": party, "data": data})
            await events.notify(party, json.dumps(body, separators=(",", ":")))
            continue
        for listener in by_party[party]:
            delivered = True
            await events.add_delivery(
                event_id=event_id, kind=kind, listener=listener, person=person, now=now
            )
    if not delivered:
        await events.complete(event_id, now)
    return event_id
