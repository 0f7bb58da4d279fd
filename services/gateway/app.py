"""The FastAPI application factory.

Requests pass :class:`~.limits.RequestLimits` (size, media type, JSON depth and well-formedness)
before any route; ``/v1`` routes then authenticate and apply the per-client rate limit in the
``CurrentAgency`` dependency. The token endpoint limits itself per remote address and per
claimed client id and answers in the RFC 6749 s5.2 shape: HTTP 429 with ``Retry-After`` and
``{"error": "temporarily_unavailable"}``. RFC 6749 defines no token-endpoint code for this;
``temporarily_unavailable`` is its registered code for "try again later" (s4.1.2.1), which
OAuth client libraries already surface, whereas ``slow_down`` belongs to device-code polling
(RFC 8628) and an invented code would mean nothing to them. HTTP-level retry logic keys on the
429 and ``Retry-After``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.telemetry import TelemetryConfig
from pydantic_core import from_json

from services.core.errors import InvalidClient, InvalidRequest, RateLimited
from services.core.health import liveness, readiness
from services.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.core.metrics import render as render_metrics
from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime
from services.core.scopes import ALL_SCOPES

from . import (
    admin,
    audit,
    decisions,
    deliveries,
    docs_pages,
    duties,
    encryption_keys,
    lifecycle,
    messages,
    problems,
    reports,
    retention,
    subject_access,
    subscriptions,
)
from .limits import Monotonic, RateLimits, RequestLimits, nesting_exceeds
from .oauth import TokenService
from .openapi import build as build_openapi

log = logging.getLogger("isa_broker.gateway")

API_VERSION = "0.1.0"
ROUTERS = (
    messages.router,
    lifecycle.router,
    subscriptions.router,
    encryption_keys.router,
    deliveries.router,
    decisions.router,
    audit.router,
    subject_access.router,
    reports.router,
    retention.router,
    duties.router,
    admin.router,
)


def _probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in PROBES


#: FastAPI's own OpenTelemetry instrumentation makes each request's server span (method,
#: route template, path, status; the trace an agency sends in ``traceparent`` is continued)
#: once services.core.tracing has installed a tracer provider, and nothing otherwise. Not its
#: logs: they would carry validation errors with the input values, which may name a person;
#: not its metrics (Prometheus has ours); not the probes, polled every few seconds.
REQUEST_TELEMETRY: TelemetryConfig = {
    "logs": False,
    "metrics": False,
    "auto_configure": False,
    "exclude": _probe,
}
PROBES = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})


def create_app(
    runtime: Runtime,
    relay: OutboxRelay | None = None,
    *,
    monotonic: Monotonic = time.monotonic,
) -> FastAPI:
    """Build the gateway. With a ``relay`` the app runs it for its lifetime. ``monotonic`` is
    the rate limits' clock (tests pass a fake one)."""

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
            await app.state.tokens.aclose()

    app = FastAPI(
        title="isa-broker gateway",
        version=API_VERSION,
        description="Publish criminal-justice events; each is checked against the Information "
        "Sharing Agreements and delivered to every entitled partner, minimised per recipient.",
        lifespan=lifespan,
        telemetry=REQUEST_TELEMETRY,
        # served by docs_pages, from the package's own files rather than a CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.relay = relay
    app.state.tokens = TokenService(runtime)
    app.state.rate_limits = limits = RateLimits.from_settings(runtime.settings, monotonic)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=runtime.settings.http.max_body_bytes,
        max_json_depth=runtime.settings.http.max_json_depth,
    )
    problems.install(app)
    docs_pages.install(app)
    for router in ROUTERS:
        app.include_router(router)

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
        authorization = request.headers.get("authorization")
        try:
            address = request.client.host if request.client else ""
            limits.token_addresses.check(address, "to the token endpoint from this address")
            if ctype != "application/x-www-form-urlencoded":
                raise InvalidRequest("Content-Type must be application/x-www-form-urlencoded")
            fields = _parse_form(await request.body())
            client_id = _claimed_client_id(
                fields, authorization, runtime.settings.http.max_json_depth
            )
            if client_id is not None:
                limits.token_clients.check(client_id[:200], "to the token endpoint for this client")
            body = await app.state.tokens.issue(fields, authorization)
        except RateLimited as e:
            headers["Retry-After"] = str(e.retry_after)
            return JSONResponse(
                {"error": "temporarily_unavailable", "error_description": e.detail},
                status_code=e.status,
                headers=headers,
            )
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
        return runtime.keys.jwks(runtime.clock())

    @app.get(
        "/.well-known/delivery-signing-keys.json",
        tags=["oauth"],
        summary="Delivery-signing public keys",
        description="The keys (a JWK Set, ES256) that sign every Kafka record and webhook body "
        "encrypted to an agency: the active one, a next one published before it signs, and "
        "retired ones while records they signed may still be read "
        "(`ISA_BROKER_DELIVERY_SIGNING_KEY_GRACE_DAYS`). Agencies verify each record against "
        "them after decrypting it.",
    )
    async def delivery_signing_keys() -> dict[str, Any]:
        return runtime.keys.delivery_jwks(runtime.clock())

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
            # not RFC 8414: where agencies find the keys that sign their deliveries
            "isa_delivery_signing_jwks_uri": s.issuer + "/.well-known/delivery-signing-keys.json",
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

    @app.get("/livez", tags=["operations"], summary="Liveness")
    @app.get("/healthz", tags=["operations"], summary="Liveness (the older name of /livez)")
    async def livez() -> dict[str, str]:
        """``status: ok`` while the process serves; in dev mode also ``mode: dev`` and a
        ``warning`` that unsafe settings are accepted, so that a monitor can tell."""
        return liveness(runtime.settings.mode)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        """This process's counters and the store's gauges in the Prometheus text format
        (catalogue: docs/operations.md, Metrics). Ids, types and outcomes only. Serve it to
        the monitoring network, not through the agencies' load balancer."""
        body = await render_metrics(runtime.store, runtime.clock(), keys=runtime.keys)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness",
        responses={503: {"description": "not ready: the failing checks say why"}},
    )
    async def readyz() -> JSONResponse:
        """``200`` with every check ``ok`` when the gateway can accept messages now: the
        store answers and is at the newest schema, and Kafka answers (the outbox relay's
        producer). ``503`` otherwise, each failing check saying what is wrong."""
        found = await readiness(runtime.store, relay.publisher if relay is not None else None)
        return JSONResponse(found.body(), status_code=200 if found.ready else 503)

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            app.openapi_schema = build_openapi(app, ROUTERS)
        return app.openapi_schema

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


def _claimed_client_id(
    fields: dict[str, str], authorization: str | None, max_depth: int
) -> str | None:
    """The client id a token request claims, unverified (from Basic credentials or the client
    assertion's ``sub``): used only to key the per-client rate limit. None if there is none.

    An assertion whose payload is not a JSON object nested at most ``max_depth`` deep is
    refused here as ``invalid_client``, like every other authentication failure, so that no
    Python ``json`` parser downstream meets a pathologically deep payload."""
    if authorization is not None and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return unquote(decoded.split(":", 1)[0]) or None
    assertion = fields.get("client_assertion")
    if not assertion:
        return None
    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not a compact JWS")
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        if nesting_exceeds(payload, max_depth):
            raise ValueError("nested too deeply")
        claims = from_json(payload)
    except (ValueError, binascii.Error) as e:
        log.info("client assertion is malformed: %s", e)
        raise InvalidClient("client authentication failed") from e
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None
