"""The gateway's liveness and readiness endpoints, as its OpenAPI document describes them."""

from __future__ import annotations

import httpx


async def test_live_and_ready_are_served_and_documented(http: httpx.AsyncClient) -> None:
    live = await http.get("/livez")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert (await http.get("/healthz")).json() == live.json()
    ready = await http.get("/readyz")
    # no outbox relay in this app, so no Kafka check: the store answers and is migrated
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok"}}
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"/livez", "/healthz", "/readyz", "/metrics"} <= paths.keys()
    assert "503" in paths["/readyz"]["get"]["responses"]
