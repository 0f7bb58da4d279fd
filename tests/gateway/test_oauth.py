"""OAuth 2.0 client credentials: client_secret_basic, private_key_jwt, token checks."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from services.core.clients import create_client
from services.core.runtime import Runtime
from tests.gateway.conftest import basic, bearer, problem_of

TOKEN = "/oauth/token"
FORM = {"grant_type": "client_credentials"}


async def test_client_secret_basic_issues_an_es256_jwt_verifiable_with_the_jwks(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, "hmp-northgate")
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert all("d" not in k for k in jwks["keys"])
    token = jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert token.header["alg"] == "ES256" and token.header["kid"] == jwks["keys"][0]["kid"]
    c = token.claims
    assert c["iss"] == runtime.settings.issuer and c["aud"] == runtime.settings.token_audience
    assert c["sub"] == creds["client_id"] and c["party"] == "hmp-northgate"
    assert c["exp"] - c["iat"] == runtime.settings.tokens.access_token_ttl_seconds
    # least privilege from the agreements: it sends release notices and receives recalls
    assert c["scope"] == (
        "decisions:read deliveries:read duties:read inbox:ack inbox:read messages:read "
        "publish:release-notice reports:read subscriptions:manage"
    )


async def test_wrong_secret_and_unknown_client_look_identical(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, "hmp-northgate")
    wrong = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], "cs_wrong"))
    unknown = await http.post(TOKEN, data=FORM, headers=basic("nobody.123", "cs_wrong"))
    none = await http.post(TOKEN, data=FORM)
    for r in (wrong, unknown, none):
        assert r.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": "invalid_client", "error_description": "client authentication failed"}
    )


async def test_unsupported_grant_and_scope_escalation(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, "hmp-northgate")
    h = basic(creds["client_id"], creds["client_secret"])
    r = await http.post(TOKEN, data={"grant_type": "password"}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await http.post(TOKEN, data={**FORM, "scope": "publish:dip-breach"}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await http.post(TOKEN, json=FORM, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def _assertion(key: ECKey, client_id: str, aud: str, **over: object) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **over,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


async def test_private_key_jwt_and_replay(http: httpx.AsyncClient, runtime: Runtime) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "agency-1"})
    creds = await create_client(
        runtime, "eastborough-pdu", jwks=KeySet([key]).as_dict(private=False)
    )
    assert "client_secret" not in creds
    assertion = _assertion(key, creds["client_id"], runtime.settings.token_endpoint)
    form = {
        **FORM,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    ok = await http.post(TOKEN, data=form)
    assert ok.status_code == 200, ok.text
    replay = await http.post(TOKEN, data=form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize("change", ["other_key", "wrong_aud", "expired", "too_long"])
async def test_bad_client_assertions_are_refused(
    http: httpx.AsyncClient, runtime: Runtime, change: str
) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "agency-1"})
    creds = await create_client(
        runtime, "eastborough-pdu", jwks=KeySet([key]).as_dict(private=False)
    )
    cid, aud = creds["client_id"], runtime.settings.token_endpoint
    now = int(time.time())
    assertion = {
        "other_key": lambda: _assertion(
            ECKey.generate_key("P-256", parameters={"kid": "agency-1"}), cid, aud
        ),
        "wrong_aud": lambda: _assertion(key, cid, "https://elsewhere.example/token"),
        "expired": lambda: _assertion(key, cid, aud, iat=now - 900, exp=now - 600),
        "too_long": lambda: _assertion(key, cid, aud, exp=now + 86400),
    }[change]()
    r = await http.post(
        TOKEN,
        data={
            **FORM,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def _claims(runtime: Runtime, now: int) -> dict[str, object]:
    """The claims of an access token of ours, valid for a minute from ``now``."""
    s = runtime.settings
    return {
        "iss": s.issuer,
        "aud": s.token_audience,
        "sub": "x",
        "party": "hmp-northgate",
        "scope": "publish:release-notice",
        "iat": now,
        "exp": now + 60,
    }


def _b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "kind",
    ["alg_none", "hs256_with_public_key", "wrong_aud", "expired", "foreign_key", "unknown_kid"],
)
async def test_forged_access_tokens_are_401(
    http: httpx.AsyncClient, runtime: Runtime, kind: str
) -> None:
    now = int(time.time())
    claims = _claims(runtime, now)
    own = runtime.keys.signing_key()
    if kind == "alg_none":
        token = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(claims)}."
    elif kind == "hs256_with_public_key":
        secret = json.dumps(own.as_dict(private=False)).encode()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            token = jwt.encode(
                {"alg": "HS256", "kid": own.kid, "typ": "at+jwt"},
                claims,
                OctKey.import_key(secret),
                algorithms=["HS256"],
            )
    else:
        key = own
        header = {"alg": "ES256", "kid": own.kid, "typ": "at+jwt"}
        if kind == "wrong_aud":
            claims["aud"] = "https://other.example/v1"
        elif kind == "expired":
            claims.update(iat=now - 3600, exp=now - 600)
        elif kind == "foreign_key":
            key = ECKey.generate_key("P-256", parameters={"kid": own.kid})
        elif kind == "unknown_kid":
            key = ECKey.generate_key("P-256", parameters={"kid": "stranger"})
            header["kid"] = "stranger"
        token = jwt.encode(header, claims, key)
    r = await http.get("/v1/subscriptions", headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"


async def test_authlib_client_obtains_a_token(runtime: Runtime) -> None:
    """An independent OAuth 2.0 client implementation (authlib) interoperates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from authlib.integrations.httpx_client import AsyncOAuth2Client
    from services.gateway.app import create_app

    creds = await create_client(runtime, "eastborough-vawg")
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with AsyncOAuth2Client(
        creds["client_id"],
        creds["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        transport=transport,
        base_url=runtime.settings.public_url,
    ) as c:
        token = await c.fetch_token(
            runtime.settings.token_endpoint, grant_type="client_credentials"
        )
        assert token["token_type"] == "Bearer"
        r = await c.get("/v1/subscriptions")
        assert r.status_code == 200 and r.json() == []


async def test_signing_key_rotation_keeps_old_tokens_valid_until_expiry(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    import datetime as dt

    t0 = dt.datetime.now(dt.UTC)
    runtime.clock = lambda: t0
    creds = await create_client(runtime, "hmp-northgate")
    auth = basic(creds["client_id"], creds["client_secret"])

    async def token_now() -> str:
        r = await http.post(TOKEN, data=FORM, headers=auth)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    old_token = await token_now()
    old_kid = _kid(old_token)

    # rotation publishes the next key at once; it signs only after publish_ahead (1 h)
    nxt = runtime.keys.signing.rotate(t0)
    kids = [k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]]
    assert set(kids) == {old_kid, nxt.kid}
    assert _kid(await token_now()) == old_kid

    # after the switch new tokens carry the new kid and the old token still works ...
    runtime.clock = lambda: t0 + dt.timedelta(hours=1, seconds=1)
    new_token = await token_now()
    assert _kid(new_token) == nxt.kid
    assert (await http.get("/v1/subscriptions", headers=bearer(new_token))).status_code == 200
    # (the old token itself expired after 5 min; one issued just before the switch has not)
    runtime.clock = lambda: t0 + dt.timedelta(hours=1) - dt.timedelta(seconds=10)
    last_old = await token_now()
    assert _kid(last_old) == old_kid
    runtime.clock = lambda: t0 + dt.timedelta(hours=1, minutes=4)
    assert (await http.get("/v1/subscriptions", headers=bearer(last_old))).status_code == 200

    # ... until the old key is withdrawn, after the token lifetime plus skew
    runtime.clock = lambda: t0 + dt.timedelta(hours=1, minutes=6)
    kids = [k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [nxt.kid]
    r = await http.get("/v1/subscriptions", headers=bearer(last_old))
    assert r.status_code == 401


async def test_a_token_without_kid_is_refused(http: httpx.AsyncClient, runtime: Runtime) -> None:
    now = int(time.time())
    claims = _claims(runtime, now)
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, runtime.keys.signing_key())
    r = await http.get("/v1/subscriptions", headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"


async def test_assertion_replay_is_refused_by_another_gateway_replica(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The jti cache is in the store: a second gateway sharing it refuses the replay."""
    from services.gateway.app import create_app

    key = ECKey.generate_key("P-256", parameters={"kid": "agency-1"})
    creds = await create_client(
        runtime, "eastborough-pdu", jwks=KeySet([key]).as_dict(private=False)
    )
    form = {
        **FORM,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _assertion(key, creds["client_id"], runtime.settings.token_endpoint),
    }
    assert (await http.post(TOKEN, data=form)).status_code == 200
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)),
        base_url=runtime.settings.public_url,
    )
    async with other:
        replay = await other.post(TOKEN, data=form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def _kid(token: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return str(header["kid"])
