"""The durable scheduler: a timer fires once even with two schedulers over one store (SQLite
and PostgreSQL), a handler that fails leaves its timer to fire again with nothing half-done,
a lease held by a crashed router runs out, and deadlines survive a restart of the router
(a new System over the same data directory and store)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.core.clock import ManualClock
from services.core.store.duties import Timer
from services.core.store.transaction import Transaction
from services.core.timeliness import scheduler as scheduler_module
from services.core.timeliness.scheduler import LEASE, RETRY
from services.system import System, settings_for_local
from tests.conftest import KAFKA_COMPAT
from tests.core.timeliness.timeliness_world import (
    PRISON,
    START,
    VAWG,
    World,
    notice,
    world,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path, database_url) as it:
        yield it


async def test_two_schedulers_fire_each_timer_once(w: World) -> None:
    ids = [await w.send(PRISON, "release-notice", notice(5)) for _ in range(3)]
    duties = [(await w.duties(mid))[VAWG]["id"] for mid in ids]
    w.clock.advance(dt.timedelta(days=3))
    a, b = w.scheduler("router-a"), w.scheduler("router-b")
    fired = await asyncio.gather(*(s.run_due(w.clock()) for s in (a, b, a, b)))
    assert sum(fired) == 12  # 3 notices x 4 duties, each once
    events = await w.events("duty-escalation")
    assert len(events) == 12
    assert len({e["payload"]["data"]["duty_id"] for e in events}) == 12
    assert {(await w.runtime.store.get_duty(d))["status"] for d in duties} == {"escalated"}  # type: ignore[index]
    escalated = [
        e
        for mid in ids
        for e in await w.runtime.store.audit_entries(mid)
        if e["event"] == "duty_escalated"
    ]
    assert len(escalated) == 12
    assert await a.run_due(w.clock()) == await b.run_due(w.clock()) == 0


async def test_a_claimed_timer_is_not_claimed_again_until_its_lease_runs_out(w: World) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    vawg = (await w.duties(mid))[VAWG]["id"]
    [timer] = [
        t for t in await w.runtime.store.list_timers(kind="duty-due") if t["subject"] == vawg
    ]
    now = timer["due_at"]
    store = w.runtime.store
    assert await store.claim_timer(timer["id"], "router-a", now, now + LEASE)
    assert not await store.claim_timer(timer["id"], "router-b", now, now + LEASE)
    # router-a dies holding it; router-b's look skips it until the lease has run out
    w.clock.now = now + LEASE - dt.timedelta(seconds=1)
    assert await w.scheduler("router-b").run_due(w.clock()) == 2  # VLO, treatment (24 h)
    assert (await store.get_duty(timer["subject"]))["status"] == "open"  # type: ignore[index]
    w.clock.now = now + LEASE + dt.timedelta(seconds=1)
    assert await w.scheduler("router-b").run_due(w.clock()) == 1
    assert (await store.get_duty(timer["subject"]))["status"] == "escalated"  # type: ignore[index]
    # router-a, back from the dead, can no longer settle what it had claimed
    assert await store.fire_timer(timer["id"], "router-a", w.clock(), _boom) == "lost"


async def test_a_restarted_scheduler_takes_its_own_leases_back_at_once(w: World) -> None:
    await w.send(PRISON, "release-notice", notice(5))
    w.clock.advance(dt.timedelta(days=3))
    now = w.clock()
    store = w.runtime.store
    for timer in await store.due_timers(now):
        assert await store.claim_timer(timer["id"], "router-a", now, now + LEASE)
    assert await w.scheduler("router-a").run_due(now) == 0  # leased, even to itself
    assert await store.release_timer_leases("router-a") == 4
    assert await w.scheduler("router-a").run_due(now) == 4


async def _boom(tx: Transaction, timer: Timer, now: dt.datetime) -> None:
    raise RuntimeError("handler failed half-way")


async def test_a_failing_handler_changes_nothing_and_fires_again(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await w.send(PRISON, "release-notice", notice(5))
    real = scheduler_module.HANDLERS["duty-due"]
    calls = 0

    async def half_then_fail(tx: Transaction, timer: Timer, now: dt.datetime) -> Any:
        nonlocal calls
        calls += 1
        await real(tx, timer, now)  # escalates (in the transaction) ...
        raise RuntimeError("... then the process dies")

    monkeypatch.setitem(scheduler_module.HANDLERS, "duty-due", half_then_fail)
    w.clock.advance(dt.timedelta(days=3))
    assert await w.scheduler().run_due(w.clock()) == 0
    assert calls == 4
    # nothing of the handler's work was kept: the transaction rolled back
    assert {d["status"] for d in (await w.duties(mid)).values()} == {"open"}
    assert await w.events("duty-escalation") == []
    timers = await w.runtime.store.list_timers(kind="duty-due")
    assert {t["status"] for t in timers} == {"pending"}
    assert all("dies" in (t["last_error"] or "") for t in timers)

    monkeypatch.setitem(scheduler_module.HANDLERS, "duty-due", real)
    assert await w.scheduler().run_due(w.clock()) == 0  # backing off
    w.clock.advance(RETRY + dt.timedelta(seconds=1))
    assert await w.scheduler().run_due(w.clock()) == 4
    assert len(await w.events("duty-escalation")) == 4


async def test_deadlines_survive_a_router_restart(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Stop the whole system (gateway, router, scheduler) after the notice was routed, start
    a new one over the same data directory and store, move the clock: the escalation fires,
    once."""
    clock = ManualClock(START)
    settings = settings_for_local(
        tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_compat=KAFKA_COMPAT,
        kafka_topic_prefix=f"sched{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.1,
        scheduler_poll_seconds=0.05,
    )
    system = await System(settings, clock=clock).start()
    try:
        assert system.runtime is not None and system.scheduler is not None
        async with world_over(system) as w:
            mid = await w.publish(PRISON, "release-notice", notice(5))
            duty = await _wait(lambda: w.runtime.store.list_duties(VAWG, message_id=mid))
    finally:
        await system.stop()

    clock.advance(dt.timedelta(days=2))  # past due while no router runs
    again = await System(settings, clock=clock).start()
    try:
        assert again.runtime is not None
        store = again.runtime.store
        escalated = await _wait(lambda: _status(store, duty[0]["id"], "escalated"), timeout=30)
        assert escalated
        await asyncio.sleep(0.3)  # several more looks of the scheduler
        async with world_over(again) as w2:
            events = await w2.events("duty-escalation")
        assert len([e for e in events if e["payload"]["data"]["duty_id"] == duty[0]["id"]]) == 1
    finally:
        await again.stop()


async def _status(store: Any, duty_id: str, status: str) -> list[Any]:
    d = await store.get_duty(duty_id)
    return [d] if d is not None and d["status"] == status else []


async def _wait(probe: Any, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def world_over(system: System) -> Any:
    """A :class:`World` speaking to a running system's gateway over real HTTP."""
    import contextlib

    import httpx

    @contextlib.asynccontextmanager
    async def cm() -> AsyncIterator[World]:
        assert system.runtime is not None
        async with httpx.AsyncClient(base_url=system.gateway_url) as http:
            clock = system.runtime.clock
            assert isinstance(clock, ManualClock)
            yield World(system.runtime, http, clock)

    return cm()
