"""End to end with a real, OpenID Certified provider: panva's oidc-provider on Node.js
(``tests/oidc_provider/``) issues JWT access tokens (RFC 9068) by the client credentials grant
for the gateway's audience (RFC 8707 resource indicator). The gateway is given the provider's
issuer and nothing else: it finds the keys by OpenID discovery, accepts the tokens of the
client registered with an external subject, and follows the provider's key rotations while it
keeps running. Keys and client secrets are generated for each run.

Needs ``node`` (20 or later) and ``npm``: the provider is installed with ``npm ci`` on first
use. Without them the test is skipped loudly, and fails in CI."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.core.clients import create_client
from services.system import System, settings_for_local
from tests.conftest import KafkaTarget, missing
from tests.factories import release_notice
from tests.oidc_provider.provider import (
    OpenIDProvider,
    OpenIDProviderError,
    ProviderClient,
    free_port,
    install,
    prerequisites,
    signing_key,
)

pytestmark = pytest.mark.integration

PARTY = "hmp-northgate"
SCOPES = "publish:release-notice inbox:read"
#: the gateway fetches the JWKS again for an unknown kid at most this often
MIN_REFRESH_SECONDS = 1.0


@pytest.fixture(scope="session")
def provider_installed() -> None:
    reason = prerequisites()
    if reason is not None:
        missing(reason)
    try:
        install()
    except OpenIDProviderError as e:
        missing(f"the OpenID provider could not be installed: {e}")


@dataclass
class World:
    provider: OpenIDProvider
    system: System
    registered: ProviderClient  # registered at the gateway with an external subject
    stranger: ProviderClient  # a client of the provider the gateway knows nothing of

    @property
    def audience(self) -> str:
        return self.system.settings.token_audience


@pytest.fixture
async def world(
    provider_installed: None, tmp_path: Path, kafka: KafkaTarget
) -> AsyncIterator[World]:
    """The gateway (with router and store, as ``isa-broker dev`` runs them) configured with the
    provider's issuer only, and the provider, not started yet."""
    registered = ProviderClient("hmp-northgate-case-system", secrets.token_urlsafe(32), SCOPES)
    stranger = ProviderClient("unregistered-system", secrets.token_urlsafe(32), SCOPES)
    provider_port = free_port()
    settings = settings_for_local(
        tmp_path / "data",
        **kafka.settings,
        kafka_topic_prefix=f"e2e{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.2,
        oidc_issuer=f"http://127.0.0.1:{provider_port}",
        oidc_jwks_min_refresh_seconds=MIN_REFRESH_SECONDS,
    )
    assert settings.oidc.jwks_url is None  # discovery, nothing else
    provider = OpenIDProvider(
        resource=settings.token_audience,
        scopes=SCOPES,
        clients=[registered, stranger],
        log_path=tmp_path / "oidc-provider.log",
        port=provider_port,
    )
    system = await System(settings).start()
    try:
        yield World(provider, system, registered, stranger)
    finally:
        await system.stop()
        await provider.stop()


# -- as an agency's system does it --------------------------------------------------------------


async def provider_token(http: httpx.AsyncClient, world: World, client: ProviderClient) -> str:
    """Find the token endpoint by discovery, then ask it for an access token for the gateway
    (client credentials, client_secret_basic, ``resource`` naming the gateway's audience)."""
    issuer = world.provider.issuer
    metadata = (await http.get(issuer + "/.well-known/openid-configuration")).json()
    assert metadata["issuer"] == issuer
    r = await http.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": world.audience, "scope": SCOPES},
        auth=(client.client_id, client.client_secret),
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"
    return str(r.json()["access_token"])


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(segment: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * 4))
        return value

    header, payload, _ = token.split(".")
    return part(header), part(payload)


def signed_as_the_provider(key: RSAKey, claims: dict[str, Any]) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["RS256"])


async def publish(http: httpx.AsyncClient, world: World, token: str) -> httpx.Response:
    return await http.post(
        f"{world.system.gateway_url}/v1/messages/release-notice",
        json=release_notice(),
        headers={"Authorization": f"Bearer {token}"},
    )


async def accepted_within(
    seconds: float, attempt: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """Try until 202. Until the gateway fetches the provider's keys again (it does so at most
    once per ``MIN_REFRESH_SECONDS`` when a token names a key it does not know), the answer is
    401, and nothing else is allowed."""
    deadline = time.monotonic() + seconds
    statuses = []
    while True:
        r = await attempt()
        statuses.append(r.status_code)
        if r.status_code == 202:
            return r
        assert r.status_code == 401 and time.monotonic() < deadline, statuses
        await asyncio.sleep(0.1)


# -- the test -----------------------------------------------------------------------------------


async def test_tokens_of_a_certified_provider_found_by_discovery_and_its_key_rotations(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="isa_broker.oidc")
    system, provider = world.system, world.provider
    assert system.runtime is not None
    registration = await create_client(
        system.runtime, PARTY, external_subject=world.registered.client_id
    )
    first, second, third = signing_key("2031-01"), signing_key("2031-02"), signing_key("2031-03")

    async with httpx.AsyncClient(timeout=10) as http:
        # 1. The provider is down when the gateway starts: the gateway serves, and refuses
        #    tokens naming the provider (here one signed as the provider will sign) while it
        #    cannot discover the provider's keys.
        assert (await http.get(f"{system.gateway_url}/healthz")).status_code == 200
        now = int(time.time())
        early = signed_as_the_provider(
            first,
            {
                "iss": provider.issuer,
                "aud": world.audience,
                "client_id": world.registered.client_id,
                "sub": world.registered.client_id,
                "scope": SCOPES,
                "iat": now,
                "exp": now + 300,
            },
        )
        assert (await publish(http, world, early)).status_code == 401

        # 2. The provider comes up. Its token, found and fetched as an agency's system does,
        #    is accepted once the gateway retries discovery (backing off from one second).
        await provider.start([first])
        token = await provider_token(http, world, world.registered)
        header, claims = unverified(token)
        assert header == {"alg": "RS256", "typ": "at+jwt", "kid": first.kid}
        assert claims["iss"] == provider.issuer and claims["aud"] == world.audience
        assert claims["client_id"] == world.registered.client_id and claims["scope"] == SCOPES
        r = await accepted_within(10, lambda: publish(http, world, token))
        stored = await system.runtime.store.get_message(r.json()["id"])
        assert stored is not None
        assert (stored["sender"], stored["client_id"]) == (PARTY, registration["client_id"])

        # 3. The provider rotates: a new key signs, the old one stays published. The running
        #    gateway accepts the new key's tokens after one fetch of the JWKS, and the old
        #    key's tokens still.
        await provider.rotate([second, first])
        rotated = await provider_token(http, world, world.registered)
        assert unverified(rotated)[0]["kid"] == second.kid
        await accepted_within(MIN_REFRESH_SECONDS + 5, lambda: publish(http, world, rotated))
        assert (await publish(http, world, token)).status_code == 202

        # 4. The provider rotates again and withdraws both earlier keys: the newest key's
        #    tokens are accepted, the earlier keys' (still unexpired) tokens are refused.
        await provider.rotate([third])
        newest = await provider_token(http, world, world.registered)
        assert unverified(newest)[0]["kid"] == third.kid
        await accepted_within(MIN_REFRESH_SECONDS + 5, lambda: publish(http, world, newest))
        assert (await publish(http, world, token)).status_code == 401
        assert (await publish(http, world, rotated)).status_code == 401

        # 5. A genuine token of a client the gateway has not registered is refused.
        foreign = await provider_token(http, world, world.stranger)
        assert unverified(foreign)[1]["client_id"] == world.stranger.client_id
        r = await publish(http, world, foreign)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"

        # the gateway found the keys by discovery, and was never restarted
        assert (await http.get(f"{system.gateway_url}/healthz")).status_code == 200
    discovered = [m for m in caplog.messages if m.startswith("external provider discovered")]
    assert discovered == [
        f"external provider discovered at {provider.issuer}/.well-known/openid-configuration: "
        f"jwks_uri {provider.issuer}/jwks"
    ]
    assert provider.starts == 3
