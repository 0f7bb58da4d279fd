"""Access tokens: both client authentication methods, the cache, the refresh before expiry
and after a 401, and the token endpoint's errors."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
import warnings

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from isa_broker_client import BrokerClient, ClientSecret, PrivateKeyJwt, TokenError
from isa_broker_client.auth import ASSERTION_TYPE, TokenSource

BASE = "https://isa-broker.test"
TOKEN_ENDPOINT = BASE + "/oauth/token"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_server(issued: list[dict[str, str]], expires_in: int = 300) -> httpx.MockTransport:
    """A token endpoint that records each request's form and Authorization header."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url == TOKEN_ENDPOINT
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        form["authorization"] = request.headers.get("authorization", "")
        issued.append(form)
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{len(issued)}",
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": "inbox:read inbox:ack",
            },
        )

    return httpx.MockTransport(handle)


async def test_client_secret_basic_and_cache_until_shortly_before_expiry() -> None:
    issued: list[dict[str, str]] = []
    clock = Clock()
    async with httpx.AsyncClient(transport=token_server(issued)) as http:
        source = TokenSource(
            http, TOKEN_ENDPOINT, ClientSecret("eastborough-vawg.c1", "s3cret"), clock=clock
        )
        first = await source.token()
        assert first.value == "token-1"
        assert first.scopes == {"inbox:read", "inbox:ack"}
        expected = base64.b64encode(b"eastborough-vawg.c1:s3cret").decode()
        assert issued[0] == {
            "grant_type": "client_credentials",
            "authorization": f"Basic {expected}",
        }

        clock.now += 269  # 300 s token, refreshed 30 s before it expires
        assert (await source.token()).value == "token-1"
        clock.now += 1
        assert (await source.token()).value == "token-2"
        assert len(issued) == 2


async def test_concurrent_callers_share_one_fetch() -> None:
    issued: list[dict[str, str]] = []
    async with httpx.AsyncClient(transport=token_server(issued)) as http:
        source = TokenSource(http, TOKEN_ENDPOINT, ClientSecret("c", "s"))
        tokens = await asyncio.gather(*(source.token() for _ in range(5)))
    assert {t.value for t in tokens} == {"token-1"}
    assert len(issued) == 1


async def test_short_lived_token_is_refreshed_at_half_its_life() -> None:
    issued: list[dict[str, str]] = []
    clock = Clock()
    async with httpx.AsyncClient(transport=token_server(issued, expires_in=20)) as http:
        source = TokenSource(http, TOKEN_ENDPOINT, ClientSecret("c", "s"), clock=clock)
        await source.token()
        clock.now += 10
        assert (await source.token()).value == "token-2"


async def test_scopes_are_requested() -> None:
    issued: list[dict[str, str]] = []
    async with httpx.AsyncClient(transport=token_server(issued)) as http:
        source = TokenSource(
            http, TOKEN_ENDPOINT, ClientSecret("c", "s"), scopes=("inbox:read", "inbox:ack")
        )
        await source.token()
    assert issued[0]["scope"] == "inbox:read inbox:ack"


def decode(assertion: str, key: ECKey | OKPKey | RSAKey, alg: str) -> jwt.Token:
    """The assertion as the broker reads it (which names Ed25519 signatures EdDSA)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "EdDSA is deprecated")
        return jwt.decode(assertion, key, algorithms=[alg])


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ECKey.generate_key("P-256", parameters={"kid": "vawg-2026-01"}), "ES256"),
        (ECKey.generate_key("P-384"), "ES384"),
        (OKPKey.generate_key("Ed25519"), "EdDSA"),
        (RSAKey.generate_key(2048), "PS256"),
    ],
    ids=["P-256", "P-384", "Ed25519", "RSA"],
)
async def test_private_key_jwt_assertion(key: ECKey | OKPKey | RSAKey, alg: str) -> None:
    issued: list[dict[str, str]] = []
    clock = Clock()
    credentials = PrivateKeyJwt("eastborough-vawg.c2", key.as_dict(private=True))
    assert credentials.algorithm == alg
    private_member = str(key.as_dict(private=True)["d"])
    assert private_member not in repr(credentials)
    async with httpx.AsyncClient(transport=token_server(issued)) as http:
        source = TokenSource(http, TOKEN_ENDPOINT, credentials, clock=clock)
        await source.token()
        source.invalidate()
        await source.token()
    form = issued[0]
    assert form["authorization"] == ""  # no Authorization header beside an assertion
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    token = decode(form["client_assertion"], key, alg)
    assert token.header["alg"] == alg
    assert token.header.get("kid") == key.kid
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "eastborough-vawg.c2"
    assert claims["aud"] == TOKEN_ENDPOINT
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 60
    second = decode(issued[1]["client_assertion"], key, alg).claims
    assert second["jti"] != claims["jti"]  # a jti is never reused


def test_private_key_jwt_needs_a_private_key() -> None:
    public = ECKey.generate_key("P-256").as_dict(private=False)
    with pytest.raises(ValueError, match="private key"):
        PrivateKeyJwt("c", public)
    with pytest.raises(ValueError, match="accepts assertions signed with"):
        PrivateKeyJwt("c", ECKey.generate_key("P-256").as_dict(private=True), algorithm="HS256")


def test_private_key_jwt_audience_can_be_named() -> None:
    key = ECKey.generate_key("P-256")
    credentials = PrivateKeyJwt("c", key, audience="https://isa-broker.example/oauth/token")
    claims = jwt.decode(credentials.assertion(TOKEN_ENDPOINT, 0), key).claims
    assert claims["aud"] == "https://isa-broker.example/oauth/token"


async def test_token_endpoint_errors_are_token_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"retry-after": "7"},
            json={"error": "temporarily_unavailable", "error_description": "slow down"},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        source = TokenSource(http, TOKEN_ENDPOINT, ClientSecret("c", "s"))
        with pytest.raises(TokenError) as raised:
            await source.token()
    assert (raised.value.status, raised.value.error) == (429, "temporarily_unavailable")
    assert raised.value.retry_after == 7
    assert "s3cret" not in str(raised.value)


async def test_a_401_fetches_one_new_token_and_repeats() -> None:
    issued: list[dict[str, str]] = []
    seen: list[str] = []
    tokens = token_server(issued)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return tokens.handle_request(request)
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer token-1":  # revoked meanwhile
            return httpx.Response(401, json={"code": "unauthenticated", "status": 401})
        return httpx.Response(200, json=[])

    client = BrokerClient(BASE, ClientSecret("c", "s"), transport=httpx.MockTransport(handle))
    async with client:
        assert await client.list_subscriptions() == []
    assert seen == ["Bearer token-1", "Bearer token-2"]
