"""A small world for the duty, DIP and scheduler tests: the real store (SQLite or
PostgreSQL), the real gateway over ASGI (intake and the lifecycle routes), the real router's
``route`` (no Kafka consumer: the test routes each accepted message itself), the real
scheduler, and a :class:`ManualClock` that only moves when the test moves it."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.core.clients import create_client
from services.core.clock import ManualClock
from services.core.kafka.publisher import InMemoryPublisher
from services.core.runtime import Runtime
from services.core.timeliness.scheduler import Scheduler
from services.gateway.app import create_app
from services.router.router import Router
from tests.conftest import make_settings
from tests.factories import example, release_notice

PRISON = "hmp-northgate"
PDU = "eastborough-pdu"
VAWG = "eastborough-vawg"
VLO = "eastborough-vlo"
HOUSING = "eastborough-housing"
RECOVERY = "eastborough-recovery"
POLICE_DIP = "eastborough-police-dip"
POLICE_IOM = "eastborough-police-iom"

#: a Wednesday morning; the demo agreements are in force
START = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
#: nothing listens here: only the store matters in these tests
NO_KAFKA = "127.0.0.1:9"


def notice(release_in_days: int, **overrides: Any) -> dict[str, Any]:
    """A release notice (VAWG, VLO, housing and treatment are all entitled) releasing the
    person ``release_in_days`` after START."""
    body = release_notice(**overrides)
    body["release"]["date"] = (START.date() + dt.timedelta(days=release_in_days)).isoformat()
    body["risk"] = {**body.get("risk", {}), "domestic_abuse": True}
    return body


def breach(stl_in_days: int, pnc: str = "2026/0000123A") -> dict[str, Any]:
    body = example("dip-breach")
    body["person"]["pnc_id"] = pnc
    body["breach"]["stl_expiry"] = (START.date() + dt.timedelta(days=stl_in_days)).isoformat()
    body["breach"].pop("outcome", None)
    return body


@dataclass
class World:
    runtime: Runtime
    http: httpx.AsyncClient
    clock: ManualClock
    creds: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def headers(self, party: str) -> dict[str, str]:
        """A fresh token each time: the clock moves days, tokens live minutes."""
        if party not in self.creds:
            self.creds[party] = await create_client(self.runtime, party)
        c = self.creds[party]
        r = await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def publish(self, party: str, message_type: str, body: dict[str, Any]) -> str:
        r = await self.http.post(
            f"/v1/messages/{message_type}", json=body, headers=await self.headers(party)
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    async def update(self, party: str, message_id: str, verb: str, body: Any) -> str:
        r = await self.http.post(
            f"/v1/messages/{message_id}/{verb}", json=body, headers=await self.headers(party)
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    async def route(self, message_id: str) -> None:
        """What the router does when the message's record arrives."""
        message = await self.runtime.store.get_message(message_id)
        assert message is not None
        router = Router(self.runtime, InMemoryPublisher())
        try:
            await router.route(message)
        finally:
            await router.aclose()

    async def send(self, party: str, message_type: str, body: dict[str, Any]) -> str:
        message_id = await self.publish(party, message_type, body)
        await self.route(message_id)
        return message_id

    async def duties(self, message_id: str) -> dict[str, dict[str, Any]]:
        """recipient -> duty row, for the duties of one message."""
        rows = []
        for party in (VAWG, VLO, HOUSING, RECOVERY, PDU, POLICE_IOM, POLICE_DIP):
            rows += await self.runtime.store.list_duties(party, message_id=message_id)
        return {r["recipient"]: r for r in rows}

    async def acknowledge(self, party: str, duty_id: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            f"/v1/duties/{duty_id}/acknowledge", json=body, headers=await self.headers(party)
        )

    async def events(self, kind: str) -> list[dict[str, Any]]:
        """Broker events of ``kind`` recorded so far (the messages rows), oldest first."""
        from sqlalchemy import select

        from services.core.store import tables as t

        async with self.runtime.store._tx() as c:
            rows = (
                await c.execute(
                    select(t.messages)
                    .where(t.messages.c.message_type == kind)
                    .order_by(t.messages.c.accepted_at)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    def scheduler(self, owner: str = "test-scheduler") -> Scheduler:
        return Scheduler(self.runtime, owner)


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[World]:
    settings = make_settings(tmp_path, database_url=database_url, **overrides)
    runtime = await Runtime.create(settings, NO_KAFKA, embedded=True)
    clock = ManualClock(START)
    runtime.clock = clock
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
            yield World(runtime, http, clock)
        await app.state.tokens.aclose()
    finally:
        await runtime.aclose()
