"""A day-long receiver outage, simulated with a controllable clock (no real waiting).

The system runs with the product's default retry schedule (immediately, 5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 10 h, each +/-20% jitter: 22 to 33 hours in all). Forty release notices
about eight people are published over ten simulated hours. One receiver is down for twenty
hours, another for three days; the clock then moves on in ten-minute steps for four days.
Every delivery must end delivered or dead-lettered with its attempt history; both receivers
must get what they got exactly once and in per-person order; the dead letters are then
replayed through the API and arrive.

Per-person order holds a person's later messages back while an earlier one is retrying, so
at the receiver down for three days the first message about each person runs out of
attempts, and the later ones, whose schedules started only then, arrive once it is back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.core.clock import ManualClock
from services.core.kafka.embedded import free_port
from services.core.timeliness.events import EVENT_TYPES
from services.demo.agency import AgencyClient
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KAFKA_COMPAT
from tests.factories import release_notice

pytestmark = pytest.mark.integration

START = dt.datetime.now(dt.UTC).replace(microsecond=0)
DOWN_FOR = {
    "eastborough-housing": dt.timedelta(hours=20),
    "eastborough-vawg": dt.timedelta(days=3),
}
MESSAGES, PERSONS = 40, 8
BROKER_EVENT_TYPES = frozenset(EVENT_TYPES.values())


class Farm:
    """Receivers whose availability follows the fake clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.port = free_port()
        self.received: list[tuple[str, str, str]] = []  # party, webhook-id, message id
        self.refused: dict[str, int] = {}
        self.broker_events = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def url(self, party: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{party}"

    async def _hook(self, request: Request) -> Response:
        party = request.path_params["party"]
        if self.clock.now < START + DOWN_FOR.get(party, dt.timedelta(0)):
            self.refused[party] = self.refused.get(party, 0) + 1
            return Response(status_code=500)
        body = json.loads(await request.body())
        if body["type"] in BROKER_EVENT_TYPES:
            # escalations of the release notices' acknowledgement duties, raised by the
            # broker as the clock moves on: counted apart from the messages under test
            self.broker_events += 1
            return Response(status_code=204)
        self.received.append((party, request.headers["webhook-id"], body["id"]))
        return Response(status_code=204)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hooks/{party}", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


@pytest.fixture
async def clock_system(
    tmp_path: Path, kafka_bootstrap: str
) -> AsyncIterator[tuple[System, ManualClock, Farm]]:
    settings = settings_for_local(
        tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_compat=KAFKA_COMPAT,
        kafka_topic_prefix=f"day{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.1,
        dispatch_poll_seconds=0.05,
        webhook_timeout_seconds=5,
        # every call fetches a fresh token (they expire as the fake clock jumps)
        token_rate_limit_per_minute=0,
    )
    clock = ManualClock(START)
    farm = Farm(clock)
    await farm.start()
    system = await System(settings).start()
    assert system.runtime is not None
    system.runtime.clock = clock
    yield system, clock, farm
    await system.stop()
    await farm.stop()


async def _quiet(system: System, message_ids: list[str], routed: set[str]) -> None:
    """Wait until the router has routed everything and nothing due is left or in flight."""
    assert system.runtime is not None and system.router is not None
    store, dispatcher = system.runtime.store, system.router.dispatcher
    dispatcher.wake()
    for _ in range(1500):
        await asyncio.sleep(0.02)
        due = await store.due_deliveries(system.runtime.clock(), 1, set())
        pending = await store.unpublished()  # accepted, not yet published by the relay
        for m in set(message_ids) - routed:
            if (await store.get_message(m) or {}).get("routed_at") is not None:
                routed.add(m)
        unrouted = set(message_ids) - routed
        if not due and not pending and not unrouted and dispatcher.in_flight == 0:
            return
    raise AssertionError("the router did not settle")


async def test_day_long_outage_ends_delivered_or_dead_lettered(
    clock_system: tuple[System, ManualClock, Farm],
) -> None:
    system, clock, farm = clock_system
    assert system.runtime is not None
    store = system.runtime.store
    creds = await ensure_demo_clients(system.runtime)
    clients = {
        p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }

    async def call(party: str, method: str, path: str, **kw: Any) -> Any:
        clients[party]._token = None  # tokens expire as the fake clock moves on
        return await clients[party].request(method, path, **kw)

    subscribed: dict[str, str] = {}
    for party in clients:
        r = await call(
            party,
            "POST",
            "/v1/subscriptions",
            json={"message_types": ["release-notice"], "webhook": {"url": farm.url(party)}},
        )
        if r.status_code == 201:
            subscribed[party] = r.json()["id"]
    assert set(DOWN_FOR) <= set(subscribed)

    order: dict[str, tuple[int, int]] = {}  # message id -> (person, sequence)
    routed: set[str] = set()
    expected: set[tuple[str, str]] = set()
    for i in range(MESSAGES):
        person, seq = i % PERSONS, i // PERSONS
        body = release_notice(days_ahead=10)
        body["person"].update(
            prison_number=f"Z{person:04d}DL", pnc_id=f"26/{person:06d}L", crn=f"L{person:06d}"
        )
        body["release"]["establishment"] = f"HMP Northgate (fictional) wing {seq}"
        r = await call("hmp-northgate", "POST", "/v1/messages/release-notice", json=body)
        assert r.status_code == 202, r.text
        order[r.json()["id"]] = (person, seq)
        expected |= {
            (x["party"], r.json()["id"]) for x in r.json()["recipients"] if x["party"] in subscribed
        }
        await _quiet(system, list(order), routed)
        clock.now += dt.timedelta(minutes=15)

    while clock.now < START + dt.timedelta(days=4):
        clock.now += dt.timedelta(minutes=10)
        await _quiet(system, list(order), routed)

    # every delivery has ended: delivered or dead-lettered, nothing pending
    deliveries = [d for d in await store.list_deliveries() if d["message_id"] in order]
    statuses = {(d["recipient"], d["status"]) for d in deliveries}
    assert {s for _, s in statuses} <= {"delivered", "dead_lettered"}, statuses
    by_party: dict[str, list[dict[str, Any]]] = {}
    for d in deliveries:
        by_party.setdefault(d["recipient"], []).append(d)
    # per-person order holds the later messages about a person back while an earlier one is
    # retrying, so at the three-day receiver the first ones run out of attempts and the
    # later ones (their schedules started later) arrive once it is back
    vawg_dead = [d for d in by_party["eastborough-vawg"] if d["status"] == "dead_lettered"]
    assert len(vawg_dead) >= PERSONS
    assert all(
        d["status"] == "delivered"
        for p, ds in by_party.items()
        if p != "eastborough-vawg"
        for d in ds
    )

    # the twenty-hour outage: everything arrived exactly once, in per-person order
    got = {(p, m) for p, _, m in farm.received}
    housing = [m for p, _, m in farm.received if p == "eastborough-housing"]
    assert (
        len(housing)
        == len(set(housing))
        == len([1 for p, m in expected if p == "eastborough-housing"])
    )
    violations = 0
    for party in subscribed:
        last: dict[int, int] = {}
        for p, _, m in farm.received:
            if p != party:
                continue
            person, seq = order[m]
            if seq < last.get(person, -1):
                violations += 1
            last[person] = max(seq, last.get(person, -1))
    assert violations == 0
    dead_pairs = {("eastborough-vawg", d["message_id"]) for d in vawg_dead}
    assert got == expected - dead_pairs

    # the three-day outage: dead letters with their whole history, listed through the API
    r = await call("eastborough-vawg", "GET", "/v1/dead-letters", params={"limit": 1000})
    assert r.status_code == 200
    dead = r.json()
    schedule = len(system.settings.webhooks.retry_schedule)
    assert sorted(d["id"] for d in dead) == sorted(d["id"] for d in vawg_dead)
    assert all(len(d["history"]) == schedule for d in dead)
    assert all(a["status_code"] == 500 for d in dead for a in d["history"])
    assert all("retry schedule exhausted" in d["last_error"] for d in dead)
    spans = [
        dt.datetime.fromisoformat(d["history"][-1]["at"])
        - dt.datetime.fromisoformat(d["history"][0]["at"])
        for d in dead
    ]
    assert min(spans) > dt.timedelta(hours=20)  # the schedule, not a burst

    # replay them all (the receiver is back): each arrives once, with its delivery id
    r = await call(
        "eastborough-vawg",
        "POST",
        "/v1/dead-letters/replay",
        json={"subscription_id": subscribed["eastborough-vawg"]},
    )
    assert r.status_code == 202, r.text
    assert sorted(r.json()["replayed"]) == sorted(d["id"] for d in dead)
    await _quiet(system, list(order), routed)
    replayed = {(p, m) for p, _, m in farm.received} - got
    assert replayed == dead_pairs
    ids = [w for p, w, _ in farm.received]
    assert len(ids) == len(set(ids))  # each delivery id arrived once
    remaining = await call("eastborough-vawg", "GET", "/v1/dead-letters")
    assert remaining.json() == []

    print(
        f"\nFAULTS day_long_outage (simulated {clock.now - START}): accepted={len(order)} "
        f"expected={len(expected)} delivered={len(got) + len(replayed)} "
        f"dead_lettered_then_replayed={len(dead)} refused_attempts={farm.refused} "
        f"duplicates={len(farm.received) - len({(p, w) for p, w, _ in farm.received})} "
        f"lost=0 order_violations={violations}"
    )
    for c in clients.values():
        await c.aclose()
