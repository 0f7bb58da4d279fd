from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.core.clients import create_client
from services.core.runtime import Runtime
from services.gateway.app import create_app

TokenFor = Callable[..., Awaitable[str]]


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=runtime.settings.public_url) as c:
        yield c


@pytest.fixture
def token_for(runtime: Runtime, http: httpx.AsyncClient) -> TokenFor:
    async def _token(party: str, scopes: list[str] | None = None) -> str:
        creds = await create_client(runtime, party, scopes=scopes)
        r = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    return _token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def problem_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code
    assert {"type", "title", "detail", "code"} <= body.keys()
    return body
