"""The router's own HTTP endpoint: ``/livez`` and ``/readyz`` for the orchestrator and the
operator on call (:mod:`services.core.health`). A router has no API; this is all it
serves, on ``ISA_BROKER_HOST``:``ISA_BROKER_ROUTER_PORT``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.core.health import liveness, readiness
from services.core.kafka.publisher import Publisher
from services.core.runtime import Runtime


def create_endpoint(
    runtime: Runtime, publisher: Publisher, running: Mapping[str, Callable[[], bool]]
) -> FastAPI:
    """``running``: the router's tasks by name (the consumer, the dispatcher), each
    answering whether it still runs."""
    app = FastAPI(title="isa-broker router", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return liveness(runtime.settings.mode)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        found = await readiness(runtime.store, publisher, running)
        return JSONResponse(found.body(), status_code=200 if found.ready else 503)

    return app
