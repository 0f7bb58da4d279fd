"""Fixtures of the store suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.core.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store on each database the ``database_url`` fixture names."""
    s = Store(database_url)
    await s.init_schema()
    yield s
    await s.aclose()
