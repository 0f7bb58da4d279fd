"""Synthetic test data. Every name, date and identifier here is invented."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

from services.core.messages import MESSAGE_TYPES


def example(message_type: str, index: int = 0) -> dict[str, Any]:
    """A valid synthetic body of ``message_type`` (from the schema's examples)."""
    model = MESSAGE_TYPES[message_type].model
    examples = model.model_config["json_schema_extra"]["examples"]  # type: ignore[index]
    return copy.deepcopy(examples[index])  # type: ignore[no-any-return]


def release_notice(days_ahead: int = 2, **overrides: Any) -> dict[str, Any]:
    body = example("release-notice")
    body["release"]["date"] = (dt.date.today() + dt.timedelta(days=days_ahead)).isoformat()
    body["destination"]["address"] = {
        "line1": "9 Nowhere Lane",
        "town": "Eastborough",
        "postcode": "ZZ9 9ZZ",
    }
    body["resettlement_needs"] = {
        "accommodation": True,
        "mental_health": True,
        "opioid_substitution_therapy": {"medication": "methadone", "daily_dose_mg": 35},
    }
    body.update(overrides)
    return body


def identifying(notice: dict[str, Any]) -> list[str]:
    """The values of a release notice that identify its person: none may appear in a log,
    a metric or a span."""
    person = notice["person"]
    return [
        person["given_name"],
        person["family_name"],
        person["pnc_id"],
        person["crn"],
        person["prison_number"],
        person["date_of_birth"],
        notice["destination"]["address"]["postcode"],
        notice["destination"]["address"]["line1"],
    ]


def message_row(**overrides: Any) -> dict[str, Any]:
    """A row of the ``messages`` table as the gateway stores one, with neutral values for
    what a test does not give."""
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "message_type": "release-notice",
        "sender": "hmp-northgate",
        "client_id": "c1",
        "purposes": None,
        "person": f"psn_{uuid.uuid4().hex[:32]}",
        "payload": {},
        "decision": {"recipients": []},
        "status": "pending",
        "accepted_at": dt.datetime.now(dt.UTC),
        "idempotency_key": None,
        "request_hash": "h",
    }
    row.update(overrides)
    return row
