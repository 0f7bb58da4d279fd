"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from services.core.errors import InvalidRequest
from services.core.messages import MESSAGE_TYPES
from services.core.outbox import OutboxRelay
from services.core.runtime import ALL_SCOPES, Runtime

from . import decisions, deliveries, messages, problems, subscriptions
from .oauth import TokenService

API_VERSION = "0.1.0"


def create_app(runtime: Runtime, relay: OutboxRelay | None = None) -> FastAPI:
    """Build the gateway. With a ``relay`` the app runs it for its lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(relay.run(), name="outbox-relay") if relay else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="isa-broker gateway",
        version=API_VERSION,
        description="Publish criminal-justice events; each is checked against the Information "
        "Sharing Agreements and delivered to every entitled partner, minimised per recipient.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.relay = relay
    app.state.tokens = TokenService(runtime)
    problems.install(app)
    app.include_router(messages.router)
    app.include_router(subscriptions.router)
    app.include_router(deliveries.router)
    app.include_router(decisions.router)

    @app.post(
        "/oauth/token",
        tags=["oauth"],
        summary="OAuth 2.0 token endpoint (client credentials)",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"const": "client_credentials"},
                                "scope": {"type": "string"},
                                "client_assertion_type": {"type": "string"},
                                "client_assertion": {"type": "string"},
                            },
                        }
                    }
                }
            }
        },
    )
    async def token(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            if ctype != "application/x-www-form-urlencoded":
                raise InvalidRequest("Content-Type must be application/x-www-form-urlencoded")
            fields = _parse_form(await request.body())
            body = await app.state.tokens.issue(fields, request.headers.get("authorization"))
        except InvalidRequest as e:
            # RFC 6749 s5.2 error response
            if e.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="isa-broker"'
            return JSONResponse(
                {"error": e.code, "error_description": e.detail},
                status_code=e.status,
                headers=headers,
            )
        return JSONResponse(body, headers=headers)

    @app.get("/.well-known/jwks.json", tags=["oauth"], summary="Token-signing public keys")
    async def jwks() -> dict[str, Any]:
        return runtime.keys.jwks()

    @app.get(
        "/.well-known/oauth-authorization-server",
        tags=["oauth"],
        summary="Authorization server metadata (RFC 8414)",
    )
    async def metadata() -> dict[str, Any]:
        s = runtime.settings
        return {
            "issuer": s.issuer,
            "token_endpoint": s.token_endpoint,
            "jwks_uri": s.issuer + "/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": [
                "ES256",
                "ES384",
                "EdDSA",
                "PS256",
                "RS256",
            ],
            "scopes_supported": ALL_SCOPES,
        }

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(mt.model, "validation") for mt in MESSAGE_TYPES.values()],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components["securitySchemes"] = {
            "oauth2": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": "/oauth/token",
                        "scopes": {s: s for s in ALL_SCOPES},
                    }
                },
            }
        }
        for path, ops in schema["paths"].items():
            if path.startswith("/v1/"):
                for op in ops.values():
                    op["security"] = [{"oauth2": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


MAX_FORM_BYTES = 16 * 1024


def _parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded, strictly: each parameter at most once
    (RFC 6749 s3.2: "Request and response parameters MUST NOT be included more than once")."""
    if len(body) > MAX_FORM_BYTES:
        raise InvalidRequest("the token request is too large")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidRequest("the token request body is not form-encoded") from e
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise InvalidRequest(f"parameter {key!r} is repeated")
        fields[key] = value
    return fields
