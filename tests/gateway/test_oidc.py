"""Access tokens from an external OpenID Connect provider, whose discovery document and JWK
Set are served over real HTTP by a local uvicorn server with keys generated for this run."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from services.core.errors import AuthenticationFailed
from services.core.settings import Settings
from services.gateway.oidc import ExternalIdentity, ExternalIssuer
from services.gateway.oidc_discovery import (
    MetadataRefused,
    ProviderMetadata,
    discover,
    discovery_urls,
)
from tests.conftest import make_settings
from tests.servers import ThreadedServer

ISSUER = "https://idp.example.test/realms/justice"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
CACHE_SECONDS = 300.0


# -- the provider ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class Provider:
    """An OpenID provider's JWKS endpoint (plus broken variants) with a request counter, and
    any other documents (``documents``, by path: discovery documents, JWK Sets elsewhere)."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.requests = 0
        self.hold = False  # while True, JWKS answers wait
        self.documents: dict[str, Any] = {}  # path -> JSON value, or bytes sent as they are
        self.fetched: list[str] = []  # paths of the documents asked for
        self.down = False  # while True, every answer is 503
        self.url = ""
        self._http: ThreadedServer | None = None

    def _app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.requests += 1
            if self.down:
                return Response("starting", status_code=503)
            while self.hold:
                await asyncio.sleep(0.01)
            return JSONResponse(self.jwks)

        async def document(request: Request) -> Response:
            self.fetched.append(request.url.path)
            if self.down:
                return Response("starting", status_code=503)
            body = self.documents.get(request.url.path)
            if body is None:
                return Response("not found", status_code=404)
            if isinstance(body, bytes):
                return Response(body, media_type="application/json")
            return JSONResponse(body)

        async def big(request: Request) -> Response:
            return Response(b'{"keys": [' + b" " * 300_000 + b"]}", media_type="application/json")

        async def big_chunked(request: Request) -> Response:
            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"keys": ['
                for _ in range(40):
                    yield b" " * 10_000
                yield b"]}"

            return StreamingResponse(chunks(), media_type="application/json")

        return Starlette(
            routes=[
                Route("/jwks", jwks),
                Route("/big", big),
                Route("/big-chunked", big_chunked),
                Route("/html", lambda r: Response("<html></html>", media_type="text/html")),
                Route("/array", lambda r: JSONResponse([self.jwks])),
                Route("/keys-not-a-list", lambda r: JSONResponse({"keys": "none"})),
                Route("/redirect", lambda r: RedirectResponse("/jwks", status_code=302)),
                Route("/error", lambda r: Response("down", status_code=503)),
                Route("/{path:path}", document),
            ]
        )

    def start(self) -> None:
        """Serve from a thread with its own event loop, so one server outlives many tests."""
        self._http = ThreadedServer(self._app())
        self.url = self._http.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    def reset(self) -> None:
        self.jwks = {"keys": []}
        self.requests = 0
        self.hold = False
        self.documents = {}
        self.fetched = []
        self.down = False


class Monotonic:
    """An injectable monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shared_provider() -> Iterator[Provider]:
    p = Provider()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def provider(shared_provider: Provider) -> Provider:
    shared_provider.reset()
    return shared_provider


@pytest.fixture
def own_provider() -> Iterator[Provider]:
    """A provider this test may take down."""
    p = Provider()
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


MakeIssuer = Callable[..., ExternalIssuer]


@pytest.fixture
async def make_issuer(
    tmp_path: Path, provider: Provider, monotonic: Monotonic
) -> AsyncIterator[MakeIssuer]:
    made: list[ExternalIssuer] = []

    def _make(path: str = "/jwks", *, base: str | None = None, **overrides: Any) -> ExternalIssuer:
        settings: Settings = make_settings(
            tmp_path,
            oidc_issuer=ISSUER,
            oidc_jwks_url=(base or provider.url) + path,
            oidc_jwks_cache_seconds=CACHE_SECONDS,
            **overrides,
        )
        issuer = ExternalIssuer(settings, lambda: NOW, monotonic=monotonic)
        made.append(issuer)
        return issuer

    yield _make
    for issuer in made:
        await issuer.aclose()


@pytest.fixture
def audience(tmp_path: Path) -> str:
    return make_settings(tmp_path).token_audience


@pytest.fixture
def issuer(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, ec_key: ECKey
) -> ExternalIssuer:
    provider.jwks = public_jwks(rsa_key, ec_key)
    return make_issuer()


def claims_for(audience: str, **over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [audience, "account"],
        "sub": "3f1c9a3e-user",
        "azp": "hmp-northgate-app",
        "client_id": "hmp-northgate-app",
        "scope": "publish:release-notice inbox:read",
        "iat": T - 10,
        "nbf": T - 10,
        "exp": T + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: RSAKey | ECKey, claims: dict[str, Any], **header: Any) -> str:
    alg = header.pop("alg", "RS256" if isinstance(key, RSAKey) else "ES256")
    full = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode({k: v for k, v in full.items() if v is not None}, claims, key, [alg])


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    h = _b64(json.dumps(header).encode())
    p = _b64(json.dumps(claims).encode())
    return f"{h}.{p}.{_b64(signature)}"


async def refused(issuer: ExternalIssuer, token: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await issuer.verify(token)
    assert str(info.value) == "the access token is invalid or expired"
    assert info.value.status == 401


# -- accepted ---------------------------------------------------------------------------------


async def test_rs256_token_is_accepted_with_subject_and_scopes(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str
) -> None:
    token = sign(rsa_key, claims_for(audience))
    assert issuer.handles(token)
    identity = await issuer.verify(token)
    assert isinstance(identity, ExternalIdentity)
    assert identity.subject == "hmp-northgate-app"
    assert identity.scopes == {"publish:release-notice", "inbox:read"}
    assert identity.claims["sub"] == "3f1c9a3e-user"


async def test_es256_token_with_scp_list_and_a_single_audience_is_accepted(
    issuer: ExternalIssuer, ec_key: ECKey, audience: str
) -> None:
    claims = claims_for(audience, aud=audience, scope=None, scp=["inbox:read", "inbox:ack"])
    identity = await issuer.verify(sign(ec_key, claims, typ="JWT"))
    assert identity.subject == "hmp-northgate-app"
    assert identity.scopes == {"inbox:read", "inbox:ack"}


async def test_subject_claim_is_configurable_and_scopes_are_none_without_scope_claims(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    provider.jwks = public_jwks(rsa_key)
    issuer = make_issuer(oidc_subject_claim="azp", oidc_audience="https://broker.example/api")
    claims = claims_for("https://broker.example/api", scope=None, client_id=None)
    identity = await issuer.verify(sign(rsa_key, claims, typ=None))
    assert identity.subject == "hmp-northgate-app" and identity.scopes is None
    # the gateway's own audience is not accepted once another is configured
    await refused(issuer, sign(rsa_key, claims_for(audience)))


async def test_handles_only_compact_tokens_naming_the_provider(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str
) -> None:
    assert issuer.handles(sign(rsa_key, claims_for(audience)))
    assert not issuer.handles(sign(rsa_key, claims_for(audience, iss=ISSUER + "/")))
    assert not issuer.handles(sign(rsa_key, claims_for(audience, iss=None)))
    nested = _b64(b"[" * 5000)
    for junk in ("", "a.b.c", "not-a-jwt", "a.b.c.d.e", "x" * 20_000, f"{nested}.{nested}.x"):
        assert not issuer.handles(junk)
        await refused(issuer, junk)


# -- refused: claims --------------------------------------------------------------------------

CLAIM_FAILURES: dict[str, dict[str, Any]] = {
    "expired": {"exp": T - 31, "iat": T - 400, "nbf": T - 400},
    "not yet valid": {"nbf": T + 31},
    "issued in the future": {"iat": T + 31},
    "wrong audience": {"aud": ["https://other.example/api"]},
    "no audience": {"aud": None},
    "wrong issuer": {"iss": "https://idp.example.test/realms/other"},
    "issuer with a trailing slash": {"iss": ISSUER + "/"},
    "no exp": {"exp": None},
    "exp is not a number": {"exp": "tomorrow"},
    "exp more than a day ahead": {"exp": T + 24 * 3600 + 60},
    "lifetime more than a day": {"iat": T - 24 * 3600, "exp": T + 120},
    "no subject claim": {"client_id": None},
    "subject claim not a string": {"client_id": 42},
    "subject claim empty": {"client_id": ""},
    "subject claim too long": {"client_id": "x" * 256},
    "scope not a string": {"scope": 7},
    "sender-constrained": {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
}


@pytest.mark.parametrize("over", CLAIM_FAILURES.values(), ids=CLAIM_FAILURES.keys())
async def test_tokens_with_bad_claims_are_refused(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str, over: dict[str, Any]
) -> None:
    await refused(issuer, sign(rsa_key, claims_for(audience, **over)))


async def test_leeway_applies_to_exp_and_nbf(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str
) -> None:
    await issuer.verify(sign(rsa_key, claims_for(audience, exp=T - 20, iat=T - 300)))
    await issuer.verify(sign(rsa_key, claims_for(audience, nbf=T + 20, iat=T)))


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt"])
async def test_tokens_typed_as_something_else_are_refused(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str, typ: str
) -> None:
    await refused(issuer, sign(rsa_key, claims_for(audience), typ=typ))


# -- refused: algorithms and keys -------------------------------------------------------------


async def test_alg_none_is_refused(issuer: ExternalIssuer, rsa_key: RSAKey, audience: str) -> None:
    claims = claims_for(audience)
    await refused(issuer, unsigned({"alg": "none", "kid": rsa_key.kid}, claims))
    await refused(issuer, unsigned({"alg": "none"}, claims))


async def test_hs256_keyed_with_the_rsa_public_key_is_refused(
    issuer: ExternalIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    # the classic key confusion: the attacker knows the public key and uses it as an HMAC secret
    public_pem = rsa_key.as_pem(private=False)
    header = {"alg": "HS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    h = _b64(json.dumps(header).encode())
    p = _b64(json.dumps(claims_for(audience)).encode())
    mac = hmac.new(public_pem, f"{h}.{p}".encode(), hashlib.sha256).digest()
    await refused(issuer, f"{h}.{p}.{_b64(mac)}")
    # and an HMAC "key" published in the JWKS under that kid is never used either
    secret = b"0123456789abcdef0123456789abcdef"
    provider.jwks["keys"].append({"kty": "oct", "kid": "hmac-1", "k": _b64(secret)})
    header = {"alg": "HS256", "kid": "hmac-1"}
    h = _b64(json.dumps(header).encode())
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    await refused(issuer, f"{h}.{p}.{_b64(mac)}")


async def test_alg_that_does_not_match_the_key_is_refused(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, ec_key: ECKey, audience: str
) -> None:
    pinned = RSAKey.generate_key(2048, parameters={"kid": "rsa-ps", "alg": "PS256"})
    provider.jwks = public_jwks(rsa_key, ec_key, pinned)
    issuer = make_issuer()
    claims = claims_for(audience)
    # ES256 header naming the RSA key's kid (signed by the EC key)
    await refused(issuer, sign(ec_key, claims, kid=rsa_key.kid))
    # RS256 with a key the provider pinned to PS256
    pinned_rs = RSAKey.import_key(pinned.as_dict(private=True) | {"alg": "RS256"})
    await refused(issuer, sign(pinned_rs, claims, alg="RS256", kid="rsa-ps"))
    assert (await issuer.verify(sign(pinned, claims, alg="PS256"))).subject
    # an asymmetric algorithm the settings do not accept
    await refused(issuer, sign(rsa_key, claims, alg="RS512"))


async def test_unknown_kid_and_missing_kid_are_refused(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    provider.jwks = public_jwks(rsa_key)  # one key only: still never picked without a kid
    issuer = make_issuer()
    claims = claims_for(audience)
    await refused(issuer, sign(rsa_key, claims, kid="no-such-key"))
    await refused(issuer, sign(rsa_key, claims, kid=None))
    await refused(issuer, sign(rsa_key, claims, kid=""))


async def test_signature_by_another_key_under_a_published_kid_is_refused(
    issuer: ExternalIssuer, rsa_key: RSAKey, ec_key: ECKey, audience: str
) -> None:
    forged_rsa = RSAKey.generate_key(2048, parameters={"kid": rsa_key.kid})
    forged_ec = ECKey.generate_key("P-256", parameters={"kid": ec_key.kid})
    await refused(issuer, sign(forged_rsa, claims_for(audience)))
    await refused(issuer, sign(forged_ec, claims_for(audience)))


async def test_tampered_payload_is_refused(
    issuer: ExternalIssuer, rsa_key: RSAKey, audience: str
) -> None:
    token = sign(rsa_key, claims_for(audience))
    await issuer.verify(token)
    header, _, signature = token.split(".")
    payload = _b64(json.dumps(claims_for(audience, client_id="hmp-other-app")).encode())
    await refused(issuer, f"{header}.{payload}.{signature}")
    await refused(issuer, f"{header}.{token.split('.')[1]}.{signature[:-4]}AAAA")


async def test_unusable_keys_in_the_jwks_are_ignored(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, ec_key: ECKey, audience: str
) -> None:
    # an encryption key, a 1024-bit RSA key and a duplicated kid: none may verify anything
    enc_key = RSAKey.generate_key(2048, parameters={"kid": "enc-1"})
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    numbers = small.public_key().public_numbers()
    small_jwk = {
        "kty": "RSA",
        "kid": "small-1",
        "n": _b64(numbers.n.to_bytes(128, "big")),
        "e": _b64(numbers.e.to_bytes(3, "big")),
    }
    twin = RSAKey.generate_key(2048, parameters={"kid": rsa_key.kid})
    provider.jwks = {
        "keys": [
            enc_key.as_dict(private=False) | {"use": "enc"},
            small_jwk,
            rsa_key.as_dict(private=False),
            twin.as_dict(private=False),
            "not a key",
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "EC", "kid": "broken-ec", "crv": "P-256", "x": "AA", "y": "AA"},
            ec_key.as_dict(private=False),
        ]
    }
    issuer = make_issuer()
    claims = claims_for(audience)
    assert (await issuer.verify(sign(ec_key, claims))).subject  # the set itself was read
    await refused(issuer, sign(enc_key, claims))
    await refused(issuer, sign(rsa_key, claims))
    await refused(issuer, sign(twin, claims))
    h = _b64(json.dumps({"alg": "RS256", "kid": "small-1"}).encode())
    p = _b64(json.dumps(claims).encode())
    sig = small.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    await refused(issuer, f"{h}.{p}.{_b64(sig)}")


# -- the JWKS cache ---------------------------------------------------------------------------


async def test_rotated_key_is_accepted_after_one_refresh(
    issuer: ExternalIssuer,
    provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    ec_key: ECKey,
    audience: str,
) -> None:
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    assert provider.requests == 1
    new_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
    provider.jwks = public_jwks(rsa_key, ec_key, new_key)
    monotonic.now += 31  # the provider published its next key a little later
    identity = await issuer.verify(sign(new_key, claims_for(audience)))
    assert identity.subject == "hmp-northgate-app"
    assert provider.requests == 2
    await issuer.verify(sign(new_key, claims_for(audience)))
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    assert provider.requests == 2


async def test_a_flood_of_unknown_kids_refetches_at_most_once_per_30_seconds(
    issuer: ExternalIssuer,
    provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    monotonic.now += 31
    for _ in range(50):
        await refused(issuer, sign(rsa_key, claims_for(audience), kid=uuid.uuid4().hex))
    assert provider.requests == 2
    await asyncio.gather(
        *(refused(issuer, sign(rsa_key, claims_for(audience), kid=str(i))) for i in range(50))
    )
    monotonic.now += 29
    await refused(issuer, sign(rsa_key, claims_for(audience), kid="still-unknown"))
    assert provider.requests == 2
    monotonic.now += 2
    await refused(issuer, sign(rsa_key, claims_for(audience), kid="still-unknown"))
    assert provider.requests == 3


async def test_known_keys_do_not_wait_for_a_refresh_caused_by_an_unknown_kid(
    issuer: ExternalIssuer,
    provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    monotonic.now += 31
    provider.hold = True
    stuck = asyncio.create_task(issuer.verify(sign(rsa_key, claims_for(audience), kid="new")))
    while provider.requests < 2:
        await asyncio.sleep(0.01)
    # the refresh is in flight; a token with a known kid is verified without waiting for it
    identity = await asyncio.wait_for(issuer.verify(sign(rsa_key, claims_for(audience))), 1)
    assert identity.subject == "hmp-northgate-app"
    assert not stuck.done()
    provider.hold = False
    with pytest.raises(AuthenticationFailed):
        await stuck
    assert provider.requests == 2


async def test_a_fetch_cancelled_with_its_request_does_not_delay_the_next(
    issuer: ExternalIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    provider.hold = True
    first = asyncio.create_task(issuer.verify(sign(rsa_key, claims_for(audience))))
    while provider.requests < 1:
        await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    provider.hold = False
    assert (await issuer.verify(sign(rsa_key, claims_for(audience)))).subject
    assert provider.requests == 2


async def test_concurrent_first_requests_share_one_fetch(
    issuer: ExternalIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    tokens = [sign(rsa_key, claims_for(audience)) for _ in range(20)]
    identities = await asyncio.gather(*(issuer.verify(t) for t in tokens))
    assert len(identities) == 20
    assert provider.requests == 1


async def test_jwks_is_fetched_again_after_the_cache_time(
    issuer: ExternalIssuer,
    provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    ec_key: ECKey,
    audience: str,
) -> None:
    token = sign(rsa_key, claims_for(audience))
    await issuer.verify(token)
    monotonic.now += CACHE_SECONDS - 1
    await issuer.verify(token)
    assert provider.requests == 1
    provider.jwks = public_jwks(ec_key)  # the provider withdrew the RSA key
    monotonic.now += 2
    await refused(issuer, token)
    assert provider.requests == 2
    await issuer.verify(sign(ec_key, claims_for(audience)))
    provider.jwks = public_jwks()  # and then every key
    monotonic.now += CACHE_SECONDS
    await refused(issuer, sign(ec_key, claims_for(audience)))
    assert provider.requests == 3


async def test_cached_keys_are_used_while_the_provider_is_down_then_fail_closed(
    make_issuer: MakeIssuer,
    own_provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    own_provider.jwks = public_jwks(rsa_key)
    issuer = make_issuer(base=own_provider.url)
    token = sign(rsa_key, claims_for(audience))
    await issuer.verify(token)
    own_provider.stop()
    monotonic.now += CACHE_SECONDS + 1  # stale: a refresh is tried and fails
    assert (await issuer.verify(token)).subject == "hmp-northgate-app"
    monotonic.now += 31
    assert (await issuer.verify(token)).subject == "hmp-northgate-app"
    monotonic.now = 1000.0 + 10 * CACHE_SECONDS  # past the hard expiry
    await refused(issuer, token)


@pytest.mark.parametrize(
    "path",
    ["/big", "/big-chunked", "/html", "/array", "/keys-not-a-list", "/redirect", "/error"],
)
async def test_a_bad_jwks_response_is_not_used(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, audience: str, path: str
) -> None:
    provider.jwks = public_jwks(rsa_key)
    issuer = make_issuer(path)
    await refused(issuer, sign(rsa_key, claims_for(audience)))
    assert provider.requests == 0  # the redirect was not followed


async def test_a_bad_response_keeps_the_keys_already_cached(
    issuer: ExternalIssuer, provider: Provider, monotonic: Monotonic, rsa_key: RSAKey, audience: str
) -> None:
    token = sign(rsa_key, claims_for(audience))
    await issuer.verify(token)
    provider.jwks = {"keys": "garbage"}
    monotonic.now += CACHE_SECONDS + 1
    await issuer.verify(token)
    assert provider.requests == 2


# -- discovery: the issuer alone ---------------------------------------------------------------

REALM = "/realms/justice"
OPENID = REALM + "/.well-known/openid-configuration"
RFC8414 = "/.well-known/oauth-authorization-server" + REALM


@pytest.fixture
def discovered_issuer(provider: Provider) -> str:
    """An issuer with a path, like a Keycloak realm, served by the provider."""
    return provider.url + REALM


def metadata(issuer: str, jwks_uri: str, **over: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "token_endpoint": issuer + "/protocol/openid-connect/token",
        "grant_types_supported": ["client_credentials"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    document.update(over)
    return {k: v for k, v in document.items() if v is not None}


@pytest.fixture
async def make_discovering(
    tmp_path: Path, monotonic: Monotonic, discovered_issuer: str
) -> AsyncIterator[MakeIssuer]:
    """Issuers configured as operators now configure them: ``oidc_issuer`` and nothing else."""
    made: list[ExternalIssuer] = []

    def _make(issuer: str = discovered_issuer, **overrides: Any) -> ExternalIssuer:
        settings = make_settings(
            tmp_path, oidc_issuer=issuer, oidc_jwks_cache_seconds=CACHE_SECONDS, **overrides
        )
        verifier = ExternalIssuer(settings, lambda: NOW, monotonic=monotonic)
        made.append(verifier)
        return verifier

    yield _make
    for verifier in made:
        await verifier.aclose()


def discovered_claims(issuer: str, audience: str, **over: Any) -> dict[str, Any]:
    return claims_for(audience, iss=issuer, **over)


@pytest.mark.parametrize(
    ("issuer", "openid", "oauth"),
    [
        (
            "https://idp.example/realms/justice",
            "https://idp.example/realms/justice/.well-known/openid-configuration",
            "https://idp.example/.well-known/oauth-authorization-server/realms/justice",
        ),
        (
            "https://idp.example/realms/justice/",
            "https://idp.example/realms/justice/.well-known/openid-configuration",
            "https://idp.example/.well-known/oauth-authorization-server/realms/justice",
        ),
        (
            "https://idp.example:8443",
            "https://idp.example:8443/.well-known/openid-configuration",
            "https://idp.example:8443/.well-known/oauth-authorization-server",
        ),
    ],
)
def test_discovery_urls_follow_openid_discovery_then_rfc_8414(
    issuer: str, openid: str, oauth: str
) -> None:
    assert discovery_urls(issuer) == (openid, oauth)


async def test_keys_are_found_from_the_issuer_alone_and_cached(
    make_discovering: MakeIssuer,
    provider: Provider,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[OPENID] = metadata(discovered_issuer, provider.url + "/jwks")
    issuer = make_discovering()
    tokens = [sign(rsa_key, discovered_claims(discovered_issuer, audience)) for _ in range(20)]
    identities = await asyncio.gather(*(issuer.verify(t) for t in tokens))
    assert {i.subject for i in identities} == {"hmp-northgate-app"}
    # concurrent first requests share one discovery and one JWKS fetch; later ones none
    await issuer.verify(tokens[0])
    assert provider.fetched == [OPENID] and provider.requests == 1


async def test_rfc_8414_metadata_is_used_when_openid_configuration_is_404(
    make_discovering: MakeIssuer,
    provider: Provider,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[RFC8414] = metadata(discovered_issuer, provider.url + "/jwks")
    issuer = make_discovering()
    await issuer.verify(sign(rsa_key, discovered_claims(discovered_issuer, audience)))
    assert provider.fetched == [OPENID, RFC8414]


ISSUER_MISMATCHES = {
    "trailing slash": lambda i: i + "/",
    "another realm": lambda i: i.replace("justice", "health"),
    "another host for the same place": lambda i: i.replace("127.0.0.1", "localhost"),
    "upper case": lambda i: i.upper(),
    "missing": lambda i: None,
    "not a string": lambda i: [i],
}


@pytest.mark.parametrize("mismatch", ISSUER_MISMATCHES.values(), ids=ISSUER_MISMATCHES.keys())
async def test_a_document_naming_another_issuer_is_refused(
    make_discovering: MakeIssuer,
    provider: Provider,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
    mismatch: Callable[[str], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    document = metadata(discovered_issuer, provider.url + "/jwks")
    document["issuer"] = mismatch(discovered_issuer)
    provider.documents[OPENID] = {k: v for k, v in document.items() if v is not None}
    # a good RFC 8414 document is not looked for: only a 404 sends discovery there
    provider.documents[RFC8414] = metadata(discovered_issuer, provider.url + "/jwks")
    issuer = make_discovering()
    with caplog.at_level(logging.WARNING, logger="isa_broker.oidc"):
        await refused(issuer, sign(rsa_key, discovered_claims(discovered_issuer, audience)))
    assert provider.fetched == [OPENID] and provider.requests == 0
    assert "is not the configured issuer" in caplog.text


BAD_JWKS_URIS = {
    "missing": None,
    "empty": "",
    "not a string": {"url": "https://idp.example/jwks"},
    "relative": "/jwks",
    "a file": "file:///etc/passwd",
    "ftp": "ftp://idp.example/jwks",
    "no host": "https:///jwks",
}


@pytest.mark.parametrize("jwks_uri", BAD_JWKS_URIS.values(), ids=BAD_JWKS_URIS.keys())
async def test_a_document_without_a_usable_jwks_uri_is_refused(
    make_discovering: MakeIssuer,
    provider: Provider,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
    jwks_uri: Any,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[OPENID] = metadata(discovered_issuer, jwks_uri)
    issuer = make_discovering()
    await refused(issuer, sign(rsa_key, discovered_claims(discovered_issuer, audience)))
    assert provider.requests == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"issuer": "x", "pad": "' + b"x" * 70_000 + b'"}',
        b"<html>sign in</html>",
        b'["not", "an", "object"]',
    ],
    ids=["larger than 64 KiB", "not JSON", "not an object"],
)
async def test_an_oversize_or_malformed_document_is_refused(
    make_discovering: MakeIssuer,
    provider: Provider,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
    body: bytes,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[OPENID] = body
    issuer = make_discovering()
    await refused(issuer, sign(rsa_key, discovered_claims(discovered_issuer, audience)))
    assert provider.requests == 0


async def test_an_http_jwks_uri_is_refused_in_production(
    tmp_path: Path, rsa_key: RSAKey, audience: str
) -> None:
    """In production the issuer is https (settings) and so must the document's jwks_uri be:
    the keys are trusted because of the TLS connection they come over (RFC 8414 s2)."""
    idp = "https://idp.example.test/realms/justice"
    served = {
        idp + "/.well-known/openid-configuration": metadata(idp, "http://idp.example.test/jwks"),
        "http://idp.example.test/jwks": public_jwks(rsa_key),
        "https://idp.example.test/jwks": public_jwks(rsa_key),
    }
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json=served[str(request.url)])

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(MetadataRefused, match="not https"):
            await discover(client, idp, require_https=True)
        found = await discover(client, idp, require_https=False)  # dev mode
        assert found == ProviderMetadata(
            idp, "http://idp.example.test/jwks", idp + "/.well-known/openid-configuration"
        )
        # the verifier takes production from the settings (their other production rules
        # are not the point here, so the mode is set on settings that are otherwise dev's)
        settings = make_settings(tmp_path, oidc_issuer=idp).model_copy(
            update={"mode": "production"}
        )
        issuer = ExternalIssuer(settings, lambda: NOW, client=client)
        token = sign(rsa_key, claims_for(audience, iss=idp))
        asked.clear()
        await refused(issuer, token)
        assert asked == [idp + "/.well-known/openid-configuration"]  # the http set: never
        served[idp + "/.well-known/openid-configuration"] = metadata(
            idp, "https://idp.example.test/jwks"
        )
        issuer = ExternalIssuer(settings, lambda: NOW, client=client)
        assert (await issuer.verify(token)).subject == "hmp-northgate-app"


async def test_a_provider_down_at_start_is_retried_with_backoff_until_it_is_up(
    make_discovering: MakeIssuer,
    provider: Provider,
    monotonic: Monotonic,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[OPENID] = metadata(discovered_issuer, provider.url + "/jwks")
    provider.down = True
    issuer = make_discovering()  # nothing is fetched yet: starting cannot fail
    assert provider.fetched == []
    token = sign(rsa_key, discovered_claims(discovered_issuer, audience))
    attempts = []
    for step in (0, 0.5, 0.5, 1, 1, 2, 2, 4, 4, 8, 8, 15, 15, 29, 1):
        monotonic.now += step
        await refused(issuer, token)
        attempts.append(len(provider.fetched))
    # retried after 1, 2, 4, 8 and 16 seconds, then every 30 (oidc_jwks_min_refresh_seconds)
    assert attempts == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8]
    provider.down = False
    await refused(issuer, token)  # not yet: the next retry is due in 30 s
    monotonic.now += 30
    assert (await issuer.verify(token)).subject == "hmp-northgate-app"
    assert provider.requests == 1


async def test_an_unreachable_provider_refuses_its_tokens_quietly(
    make_discovering: MakeIssuer,
    own_provider: Provider,
    rsa_key: RSAKey,
    audience: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp = own_provider.url
    own_provider.stop()  # nothing listens there any more
    issuer = make_discovering(idp)
    with caplog.at_level(logging.WARNING, logger="isa_broker.oidc"):
        await refused(issuer, sign(rsa_key, claims_for(audience, iss=idp)))
    assert "discovery: ConnectError" in caplog.text


async def test_the_document_is_fetched_again_when_the_jwks_fetch_fails(
    make_discovering: MakeIssuer,
    provider: Provider,
    monotonic: Monotonic,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    """The provider moves its JWK Set (and, here, rotates its key at the same time)."""
    provider.documents["/keys/v1"] = public_jwks(rsa_key)
    provider.documents[OPENID] = metadata(discovered_issuer, provider.url + "/keys/v1")
    issuer = make_discovering()
    await issuer.verify(sign(rsa_key, discovered_claims(discovered_issuer, audience)))
    new_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
    del provider.documents["/keys/v1"]
    provider.documents["/keys/v2"] = public_jwks(new_key)
    provider.documents[OPENID] = metadata(discovered_issuer, provider.url + "/keys/v2")
    token = sign(new_key, discovered_claims(discovered_issuer, audience))
    monotonic.now += 30
    await refused(issuer, token)  # the cached jwks_uri answers 404
    monotonic.now += 1  # the first retry
    assert (await issuer.verify(token)).subject == "hmp-northgate-app"
    assert provider.fetched == [OPENID, "/keys/v1", "/keys/v1", OPENID, "/keys/v2"]


async def test_the_document_is_refreshed_with_the_keys_and_a_refused_one_is_not_used(
    make_discovering: MakeIssuer,
    provider: Provider,
    monotonic: Monotonic,
    discovered_issuer: str,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    provider.documents[OPENID] = metadata(discovered_issuer, provider.url + "/jwks")
    issuer = make_discovering()
    token = sign(rsa_key, discovered_claims(discovered_issuer, audience))
    await issuer.verify(token)
    # someone else's document appears where the provider's was
    provider.documents[OPENID] = metadata("https://attacker.example", provider.url + "/evil")
    monotonic.now += CACHE_SECONDS
    assert (await issuer.verify(token)).subject == "hmp-northgate-app"
    assert provider.fetched == [OPENID, OPENID] and provider.requests == 2


async def test_an_explicit_jwks_url_is_used_without_discovery(
    make_issuer: MakeIssuer, provider: Provider, rsa_key: RSAKey, audience: str
) -> None:
    provider.jwks = public_jwks(rsa_key)
    issuer = make_issuer()
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    assert provider.fetched == [] and provider.requests == 1


# -- key rotation: the minimum refresh interval ---------------------------------------------


async def test_a_rotation_is_picked_up_after_the_configured_minimum_interval(
    make_issuer: MakeIssuer,
    provider: Provider,
    monotonic: Monotonic,
    rsa_key: RSAKey,
    audience: str,
) -> None:
    provider.jwks = public_jwks(rsa_key)
    issuer = make_issuer(oidc_jwks_min_refresh_seconds=2)
    await issuer.verify(sign(rsa_key, claims_for(audience)))
    new_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})
    provider.jwks = public_jwks(new_key)  # rotated, and the old key withdrawn
    monotonic.now += 1.5
    await refused(issuer, sign(new_key, claims_for(audience)))
    assert provider.requests == 1
    monotonic.now += 0.5
    assert (await issuer.verify(sign(new_key, claims_for(audience)))).subject
    await refused(issuer, sign(rsa_key, claims_for(audience)))
    assert provider.requests == 2


@pytest.mark.parametrize("seconds", [0, 0.5, 301])
def test_the_minimum_refresh_interval_is_bounded(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(ValidationError, match="oidc_jwks_min_refresh_seconds"):
        make_settings(tmp_path, oidc_issuer=ISSUER, oidc_jwks_min_refresh_seconds=seconds)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"oidc_jwks_url": "https://idp.example/jwks"}, "OIDC_JWKS_URL needs"),
        ({"oidc_issuer": "idp.example"}, r"must be an http\(s\) URL"),
        ({"oidc_issuer": "https:///realms/x"}, r"must be an http\(s\) URL"),
        ({"oidc_issuer": "https://idp.example/?realm=x"}, "no query or fragment"),
        ({"oidc_issuer": "https://idp.example/#x"}, "no query or fragment"),
        ({"oidc_issuer": ISSUER, "oidc_jwks_url": "file:///jwks"}, r"must be an http\(s\) URL"),
    ],
)
def test_oidc_settings_that_cannot_work_are_refused(
    tmp_path: Path, values: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_settings(tmp_path, **values)


def test_the_issuer_alone_is_enough() -> None:
    settings = Settings(oidc_issuer=ISSUER)
    assert settings.oidc.jwks_url is None and settings.oidc.jwks_min_refresh_seconds == 30


PRODUCTION = {
    "mode": "production",
    "public_url": "https://broker.example",
    "kafka_bootstrap_servers": "kafka.example:9093",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "isa-broker",
    "kafka_sasl_password": "synthetic-password",
    "database_url": "postgresql+asyncpg://db.example/isa?sslmode=verify-full",
    "webhook_allow_http": False,
}


def production_problems(**values: Any) -> str:
    """What production mode refuses in these settings ('' if nothing). Only the OIDC
    problems matter here; the other production rules have their own tests."""
    try:
        Settings(**PRODUCTION, **values)
    except ValidationError as e:
        return str(e)
    return ""


def test_production_needs_an_https_issuer_for_discovery() -> None:
    http_issuer = "http://idp.example/realms/justice"
    problem = "ISA_BROKER_OIDC_ISSUER must be https:// in production"
    assert problem in production_problems(oidc_issuer=http_issuer)
    assert "OIDC" not in production_problems(oidc_issuer=ISSUER)
    # with the JWKS URL named, the issuer is only compared, never fetched
    explicit = production_problems(oidc_issuer=http_issuer, oidc_jwks_url=ISSUER + "/certs")
    assert "OIDC" not in explicit


# -- what the caller and the log see ----------------------------------------------------------


@pytest.fixture
def oidc_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="isa_broker.oidc")
    yield caplog


async def test_failures_look_identical_and_only_the_log_says_why(
    issuer: ExternalIssuer,
    rsa_key: RSAKey,
    audience: str,
    oidc_log: pytest.LogCaptureFixture,
) -> None:
    tokens = {
        "expired": sign(rsa_key, claims_for(audience, exp=T - 100, iat=T - 400)),
        "unknown kid": sign(rsa_key, claims_for(audience), kid="nope"),
        "none": unsigned({"alg": "none", "kid": rsa_key.kid}, claims_for(audience)),
    }
    details = set()
    for token in tokens.values():
        with pytest.raises(AuthenticationFailed) as info:
            await issuer.verify(token)
        details.add((type(info.value), info.value.detail, info.value.code))
    assert len(details) == 1
    reasons = [r.getMessage() for r in oidc_log.records if "rejected" in r.getMessage()]
    assert len(reasons) == 3 and all(r.levelno == logging.INFO for r in oidc_log.records)
    assert any("ExpiredTokenError" in r for r in reasons)
    assert any("no key with this kid" in r for r in reasons)
    assert any("alg" in r for r in reasons)
    logged = oidc_log.text
    for token in tokens.values():
        for part in token.split("."):
            assert not part or part not in logged
    assert "hmp-northgate-app" not in logged and "3f1c9a3e-user" not in logged
