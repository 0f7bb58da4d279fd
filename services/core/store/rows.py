"""Rows as the domain code sees them: plain dicts with every time in UTC. SQLite hands back
naive datetimes (it stores what it was given, in UTC here); PostgreSQL aware ones."""

from __future__ import annotations

import datetime as dt
from typing import Any


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
