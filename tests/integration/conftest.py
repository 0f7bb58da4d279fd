"""Fixtures of the store suites."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.core.clock import ManualClock
from services.core.runtime import Runtime
from services.core.store import Store
from tests.conftest import make_settings

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
