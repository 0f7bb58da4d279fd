"""Group commit of attempts' outcomes (services/router/outcomes.py), against a stand-in for
the store's two methods: outcomes arriving during a write share the next one, a caller
returns only once its own is written, and a failure reaches only the callers it concerns."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from services.core.errors import Unavailable
from services.core.store import Store
from services.core.store.values import DeliveryOutcome
from services.router.outcomes import MAX_BATCH, OutcomeRecorder

OK = DeliveryOutcome("delivered")


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.bad: set[str] = set()
        self.down = False

    async def record_outcomes(
        self, outcomes: Sequence[tuple[Mapping[str, Any], DeliveryOutcome]]
    ) -> None:
        await self.gate.wait()
        if self.down:
            raise Unavailable("the store is unavailable")
        ids = [str(d["id"]) for d, _ in outcomes]
        if self.bad & set(ids):
            raise ValueError("a bad outcome")
        self.batches.append(ids)

    async def record_outcome(self, delivery: Mapping[str, Any], outcome: DeliveryOutcome) -> None:
        if delivery["id"] in self.bad:
            raise ValueError(f"bad {delivery['id']}")
        self.singles.append(str(delivery["id"]))


def recorder(store: FakeStore) -> OutcomeRecorder:
    return OutcomeRecorder(cast(Store, store))


async def test_a_quiet_router_writes_each_outcome_at_once() -> None:
    store = FakeStore()
    outcomes = recorder(store)
    await outcomes.record({"id": "d1"}, OK)
    await outcomes.record({"id": "d2"}, OK)
    assert store.batches == [["d1"], ["d2"]]


async def test_outcomes_arriving_during_a_write_share_the_next() -> None:
    store = FakeStore()
    outcomes = recorder(store)
    store.gate.clear()
    first = asyncio.create_task(outcomes.record({"id": "d0"}, OK))
    await asyncio.sleep(0.01)  # d0's write is in flight, held at the gate
    rest = [asyncio.create_task(outcomes.record({"id": f"d{i}"}, OK)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in [first, *rest])  # nobody returns before its commit
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.batches == [["d0"], ["d1", "d2", "d3", "d4", "d5"]]


async def test_a_batch_holds_at_most_max_batch() -> None:
    store = FakeStore()
    outcomes = recorder(store)
    store.gate.clear()
    tasks = [asyncio.create_task(outcomes.record({"id": f"d{i}"}, OK)) for i in range(250)]
    await asyncio.sleep(0.01)
    store.gate.set()
    await asyncio.gather(*tasks)
    assert [len(b) for b in store.batches] == [MAX_BATCH, MAX_BATCH, 50]


async def test_a_bad_outcome_fails_alone() -> None:
    store = FakeStore()
    store.bad = {"d2"}
    outcomes = recorder(store)
    store.gate.clear()
    tasks = {i: asyncio.create_task(outcomes.record({"id": f"d{i}"}, OK)) for i in range(1, 4)}
    await asyncio.sleep(0.01)
    store.gate.set()
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError) and "d2" in str(results[1])
    assert store.singles == ["d1", "d3"]  # written again one at a time


async def test_an_unavailable_store_fails_every_waiting_outcome() -> None:
    store = FakeStore()
    store.down = True
    outcomes = recorder(store)
    results = await asyncio.gather(
        *(outcomes.record({"id": f"d{i}"}, OK) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    assert store.singles == []


async def test_an_attempt_cancelled_while_its_outcome_is_written_still_has_it_written() -> None:
    store = FakeStore()
    outcomes = recorder(store)
    store.gate.clear()
    attempt = asyncio.create_task(outcomes.record({"id": "d1"}, OK))
    await asyncio.sleep(0.01)
    attempt.cancel()  # the router stopping
    with pytest.raises(asyncio.CancelledError):
        await attempt
    store.gate.set()
    await outcomes.aclose()
    assert store.batches == [["d1"]]
