"""Who a message is about, by the identifiers the agencies know a person by: the Police
National Computer id, the probation case reference (CRN) and the prison number.

One place for the list and its order. The order is the one messages are keyed by: events
about one person are keyed by the keyed pseudonym of the first identifier the message
carries, so that they stay in order on one partition. The identifier strings
(``pnc_id:24/123456X``) are pseudonymised before any lookup and never stored in clear."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the identifiers, in the order messages are keyed by them
IDENTIFIERS = ("pnc_id", "crn", "prison_number")


def identifier_keys(person: Mapping[str, Any]) -> list[str]:
    """The identifier strings of a message's ``person``, in :data:`IDENTIFIERS` order."""
    return [f"{n}:{person[n]}" for n in IDENTIFIERS if isinstance(person.get(n), str)]


def person_key(person: Mapping[str, Any]) -> str | None:
    """The identifier string events about this person are keyed by (the first one it
    carries), or None when it carries none."""
    keys = identifier_keys(person)
    return keys[0] if keys else None
