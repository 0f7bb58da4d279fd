"""Helpers for the security suite: scope sets, hand-made (forged) JWTs, an in-process gateway
client, and routing a published message to its deliveries without a Kafka consumer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.core.clients import create_client
from services.core.kafka.publisher import InMemoryPublisher
from services.core.runtime import Runtime
from services.core.scopes import ADMIN_SCOPE, ALL_SCOPES, IG_AUDIT_SCOPE
from services.core.settings import Settings
from services.core.store.rows import TERMINAL_DELIVERY
from services.gateway.app import create_app
from services.router.router import Router
from tests.servers import ThreadedServer

PRISON = "hmp-northgate"
PDU = "eastborough-pdu"
VAWG = "eastborough-vawg"
HOUSING = "eastborough-housing"
POLICE_DIP = "eastborough-police-dip"

#: every scope an agency may hold: no operator (admin), no information-governance (ig:audit)
AGENCY_SCOPES = sorted(set(ALL_SCOPES) - {ADMIN_SCOPE, IG_AUDIT_SCOPE})
ALL_BUT_ADMIN = sorted(set(ALL_SCOPES) - {ADMIN_SCOPE})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN = "/oauth/token"
FORM = {"grant_type": "client_credentials"}


# -- hand-made JWTs ----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with whatever signature bytes (none by default): no library refuses."""
    return f"{b64json(header)}.{b64json(claims)}.{b64url(signature)}"


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 by hand, so that no library's guard against keying an HMAC with a public
    key stops the forgery from being made."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def signed(header: dict[str, Any], claims: dict[str, Any], key: ECKey | RSAKey) -> str:
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def access_claims(settings: Settings, client_id: str, party: str, /, **over: Any) -> dict[str, Any]:
    """The claims of one of our own access tokens (see ``TokenService.issue``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.token_audience,
        "sub": client_id,
        "client_id": client_id,
        "party": party,
        "scope": " ".join(AGENCY_SCOPES),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(8),
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def header_of(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


# -- gateway -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway(runtime: Runtime) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A gateway on ``runtime`` and an httpx client speaking ASGI to it."""
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=runtime.settings.public_url) as c:
        yield app, c
    await app.state.tokens.aclose()


async def token_of(
    http: httpx.AsyncClient, runtime: Runtime, party: str, scopes: list[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """A fresh client of ``party`` (default scopes unless given) and an access token for it."""
    creds = await create_client(runtime, party, scopes=scopes)
    r = await http.post(TOKEN, data=FORM, auth=(creds["client_id"], creds["client_secret"]))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"]), creds


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem_text(body: dict[str, Any]) -> str:
    """The detail of a problem and the message of each of its field errors, as one string."""
    parts = [str(body.get("detail", ""))]
    parts += [str(e.get("message", "")) for e in body.get("errors", []) or []]
    return " | ".join(parts)


# -- routing without a consumer ----------------------------------------------------------------


async def route_and_settle(runtime: Runtime, message_id: str, timeout: float = 20.0) -> None:
    """What the router does with an accepted message: record its deliveries, then run the
    dispatcher until every delivery has a terminal outcome (delivered, dead-lettered,
    withheld or no channel)."""
    router = Router(runtime, InMemoryPublisher())
    message = await runtime.store.get_message(message_id)
    assert message is not None, message_id
    await router.route(message)
    task = asyncio.create_task(router.dispatcher.run(), name="test-dispatcher")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rows = await runtime.store.list_deliveries(message_id=message_id)
            if rows and all(r["status"] in TERMINAL_DELIVERY for r in rows):
                return
            assert loop.time() < deadline, [(r["id"], r["status"]) for r in rows]
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await router.aclose()


# -- an external OpenID Connect provider's JWKS endpoint ---------------------------------------


class JwksServer:
    """Serves ``jwks`` at ``/jwks`` over real HTTP from a thread with its own event loop."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.url = ""
        self._http: ThreadedServer | None = None

    def start(self) -> JwksServer:
        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse(self.jwks)

        self._http = ThreadedServer(Starlette(routes=[Route("/jwks", jwks)]))
        self.url = self._http.start() + "/jwks"
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
