"""Time, read through one interface so that tests and the demo can move it.

Every deadline, reminder and escalation reads ``runtime.clock()``; nothing in the product
calls ``datetime.now`` for a business decision. :class:`ManualClock` stands still until told
to move (tests); :class:`OffsetClock` runs with real time but can be moved ahead (the demo
scenario jumps days ahead so that deadlines fall due in seconds)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_z(value: dt.datetime) -> str:
    """An instant as RFC 3339 in UTC with ``Z`` (the form CloudEvents ``time`` uses)."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def log_timestamp(at: dt.datetime) -> str:
    """An instant as the disclosure log writes it (entries' ``at``, checkpoints'
    ``signed_at``): UTC, always six fractional digits, ``Z``; a naive value is taken as UTC
    (SQLite returns them so)."""
    at = at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock's time must be timezone-aware")
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        self.now += delta
        return self.now


class OffsetClock:
    """Real time plus an offset that only grows."""

    def __init__(self, offset: dt.timedelta = dt.timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> dt.datetime:
        return utc_now() + self.offset

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        if delta < dt.timedelta(0):
            raise ValueError("time does not move backwards")
        self.offset += delta
        return self()
