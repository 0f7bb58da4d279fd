"""Fixtures of the store suites."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.core.clock import ManualClock
from services.core.intake import person_identifier
from services.core.messages import MESSAGE_TYPES
from services.core.runtime import Runtime
from services.core.store import Store
from services.core.timeliness.priority import priority_of
from tests.conftest import make_settings
from tests.factories import message_row

#: where the manual clock of a runtime from ``make_runtime`` starts
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
MakeRuntime = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store on each database the ``database_url`` fixture names."""
    s = Store(database_url)
    await s.init_schema()
    yield s
    await s.aclose()


@pytest.fixture
async def make_runtime(tmp_path: Path, database_url: str) -> AsyncIterator[MakeRuntime]:
    """Makes runtimes (settings overrides as keywords) on each database, with a manual clock
    at :data:`T0` and no Kafka (the tests hand messages to the router themselves)."""
    made: list[Runtime] = []

    async def make(**overrides: Any) -> Runtime:
        settings = make_settings(tmp_path, database_url=database_url, **overrides)
        rt = await Runtime.create(settings, "127.0.0.1:9", embedded=False)  # Kafka unused
        rt.clock = ManualClock(T0)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.aclose()


async def accept(
    rt: Runtime, sender: str, mt: str, body: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Store an accepted message as the gateway does (decision, pseudonym, priority) and
    return it as stored; the test hands it to the router itself."""
    payload = MESSAGE_TYPES[mt].validate_json(json.dumps(body).encode())
    now = rt.clock()
    decision = rt.engine.decide(sender, mt, now, None, payload)
    row = message_row(
        message_type=mt,
        sender=sender,
        client_id="test",
        person=rt.keys.pseudonymise(person_identifier(payload)),
        payload=payload,
        decision=decision.to_dict(),
        accepted_at=now,
        priority=priority_of(mt, payload),
        **extra,
    )
    assert await rt.store.accept_message(row, "t") is None
    stored = await rt.store.get_message(str(row["id"]))
    assert stored is not None
    return stored
