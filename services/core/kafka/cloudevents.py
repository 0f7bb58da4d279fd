"""CloudEvents 1.0 Kafka protocol binding, binary content mode: attributes travel as
``ce_*`` headers, ``content-type`` as a header, the value is the JSON payload.
Headers carry ids and pseudonyms only, never personal data."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..clock import utc_z
from ..errors import InvalidRequest
from ..messages import get_message_type

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "urn:isa-broker:party:"


@dataclass(frozen=True)
class EventRecord:
    id: str
    source: str
    type: str
    time: dt.datetime
    subject: str
    data: dict[str, Any]

    @property
    def sender(self) -> str:
        return self.source.removeprefix(SOURCE_PREFIX)

    @property
    def message_type(self) -> str:
        # org.isa-broker.release-notice.v1 -> release-notice
        return self.type.split(".")[-2]


def event_of(message: dict[str, Any]) -> EventRecord:
    """The CloudEvent of a stored message (a row of the ``messages`` table)."""
    mt = get_message_type(message["message_type"])
    return EventRecord(
        id=message["id"],
        source=SOURCE_PREFIX + message["sender"],
        type=mt.ce_type,
        time=message["accepted_at"],
        subject=message["person"],
        data=message["payload"],
    )


def to_record(
    message_id: str,
    sender: str,
    message_type: str,
    accepted_at: dt.datetime,
    person: str,
    payload: dict[str, Any],
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) for one accepted message."""
    mt = get_message_type(message_type)
    headers = [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", message_id),
        ("ce_source", SOURCE_PREFIX + sender),
        ("ce_type", mt.ce_type),
        ("ce_time", utc_z(accepted_at)),
        ("ce_subject", person),
        ("ce_dataschema", f"https://isa-broker.example/schemas/{mt.schema_file}"),
        ("content-type", "application/json"),
    ]
    value = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return person.encode(), value, [(k, v.encode()) for k, v in headers]


def from_record(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], value: bytes
) -> EventRecord:
    try:
        h = {k: v.decode() for k, v in headers}
        if h["ce_specversion"] != SPEC_VERSION:
            raise InvalidRequest(f"unsupported CloudEvents specversion {h['ce_specversion']!r}")
        return EventRecord(
            id=h["ce_id"],
            source=h["ce_source"],
            type=h["ce_type"],
            time=dt.datetime.fromisoformat(h["ce_time"].replace("Z", "+00:00")),
            subject=h["ce_subject"],
            data=json.loads(value),
        )
    except (KeyError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise InvalidRequest(f"record is not a binary-mode CloudEvent: {e}") from e


def structured(event: EventRecord, data: dict[str, Any], extra: dict[str, Any]) -> bytes:
    """A structured-mode JSON CloudEvent (used for webhook bodies)."""
    body = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": utc_z(event.time),
        "subject": event.subject,
        "datacontenttype": "application/json",
        **extra,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()
