"""Notices on a party's inbox feed (``GET /v1/inbox``, entry kind ``notice``): CloudEvents the
broker itself writes to tell a party something about its own deliveries (a subscription
disabled, a recipient's endpoint disabled, disclosures past their retention). Ids, dates,
party ids and codes only: never personal data."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from .clock import utc_z

#: the sender of the broker's own events (escalations, DIP reminders and expiries)
SYSTEM_SENDER = "isa-broker"


def notice_event(
    kind: str,
    data: dict[str, Any],
    *,
    source: str,
    at: dt.datetime,
    event_id: str | None = None,
    **attributes: str,
) -> str:
    """The JSON of a notice of type ``org.isa-broker.notice.<kind>.v1``. ``event_id``
    defaults to a random UUID; give a stable one where a receiver should de-duplicate a
    notice written again. ``attributes`` are extension attributes (e.g. ``isarecipient``)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": f"org.isa-broker.notice.{kind}.v1",
        "time": utc_z(at),
        "datacontenttype": "application/json",
        **attributes,
        "data": data,
    }
    return json.dumps(event, separators=(",", ":"))
