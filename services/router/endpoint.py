"""The router's own HTTP endpoint: ``/livez`` and ``/readyz`` for the orchestrator
(:mod:`services.core.health`) and ``/metrics`` for monitoring (:mod:`services.core.metrics`).
A router has no API; this is all it serves, on ``ISA_BROKER_HOST``:``ISA_BROKER_ROUTER_PORT``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from services.core.health import liveness, readiness
from services.core.kafka.publisher import Publisher
from services.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.core.metrics import render as render_metrics
from services.core.runtime import Runtime


def create_endpoint(
    runtime: Runtime,
    publisher: Publisher,
    running: Mapping[str, Callable[[], bool]],
    lag: Callable[[], Awaitable[Mapping[str, int]]],
) -> FastAPI:
    """``running``: the router's tasks by name (the consumer, the dispatcher), each
    answering whether it still runs; ``lag``: its consumers' lag by topic."""
    app = FastAPI(
        title="isa-broker router",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry={"tracing": False, "logs": False, "metrics": False},
    )

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return liveness(runtime.settings.mode)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await render_metrics(runtime.store, runtime.clock(), lag, keys=runtime.keys)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        found = await readiness(runtime.store, publisher, running)
        return JSONResponse(found.body(), status_code=200 if found.ready else 503)

    return app
