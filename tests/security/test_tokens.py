"""Attacks on authentication: forged, stale, misdirected and malformed access tokens on /v1;
a disabled client's token; forged and replayed client assertions at /oauth/token; guessing
client secrets. Every refusal has one shape: 401 ``unauthenticated`` on /v1 (RFC 6750), 401
``invalid_client`` at the token endpoint (RFC 6749 s5.2), whatever the reason."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from joserfc.jwk import ECKey, KeySet, RSAKey

from services.core.clients import create_client
from services.core.runtime import Runtime
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.gateway.conftest import basic, problem_of
from tests.security.helpers import (
    AGENCY_SCOPES,
    ASSERTION_TYPE,
    FORM,
    PDU,
    PRISON,
    TOKEN,
    VAWG,
    JwksServer,
    access_claims,
    bearer,
    gateway,
    hs256,
    signed,
    unsigned,
)

PROBE = "/v1/subscriptions"  # any /v1 route: authentication runs before the route


def _our_key(runtime: Runtime) -> Any:
    return runtime.keys.signing_key()


def _header(runtime: Runtime, **over: Any) -> dict[str, Any]:
    header = {"alg": "ES256", "kid": _our_key(runtime).kid, "typ": "at+jwt"}
    header.update(over)
    return {k: v for k, v in header.items() if v is not None}


def _pem_of(key: Any) -> bytes:
    """Our public key as PEM: what an attacker downloads and uses as an HMAC secret."""
    public = key.get_op_key("verify")
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


Forge = Callable[[Runtime, str], str]

#: name -> how to make the token from our runtime and a real, enabled client id
FORGERIES: dict[str, Forge] = {
    "forged_signature_same_kid": lambda rt, cid: signed(
        _header(rt),
        access_claims(rt.settings, cid, VAWG),
        ECKey.generate_key("P-256", parameters={"kid": _our_key(rt).kid}),
    ),
    "expired": lambda rt, cid: signed(
        _header(rt),
        access_claims(
            rt.settings,
            cid,
            VAWG,
            iat=int(time.time()) - 600,
            nbf=int(time.time()) - 600,
            exp=int(time.time()) - 45,  # beyond the 30 s leeway
        ),
        _our_key(rt),
    ),
    "not_yet_valid": lambda rt, cid: signed(
        _header(rt),
        access_claims(
            rt.settings,
            cid,
            VAWG,
            nbf=int(time.time()) + 120,
            exp=int(time.time()) + 300,
        ),
        _our_key(rt),
    ),
    "wrong_audience": lambda rt, cid: signed(
        _header(rt),
        access_claims(rt.settings, cid, VAWG, aud="https://other-gateway.example/v1"),
        _our_key(rt),
    ),
    "audience_is_the_issuer_not_the_api": lambda rt, cid: signed(
        _header(rt), access_claims(rt.settings, cid, VAWG, aud=rt.settings.issuer), _our_key(rt)
    ),
    "wrong_issuer": lambda rt, cid: signed(
        _header(rt),
        access_claims(rt.settings, cid, VAWG, iss="https://evil.example"),
        _our_key(rt),
    ),
    "no_expiry": lambda rt, cid: signed(
        _header(rt), access_claims(rt.settings, cid, VAWG, exp=None), _our_key(rt)
    ),
    "no_party_claim": lambda rt, cid: signed(
        _header(rt), access_claims(rt.settings, cid, VAWG, party=None), _our_key(rt)
    ),
    "alg_none": lambda rt, cid: unsigned(
        {"alg": "none", "typ": "at+jwt", "kid": _our_key(rt).kid},
        access_claims(rt.settings, cid, VAWG),
    ),
    "alg_none_no_kid": lambda rt, cid: unsigned(
        {"alg": "none", "typ": "at+jwt"}, access_claims(rt.settings, cid, VAWG)
    ),
    "alg_None_capitalised": lambda rt, cid: unsigned(
        {"alg": "None", "typ": "at+jwt", "kid": _our_key(rt).kid},
        access_claims(rt.settings, cid, VAWG),
    ),
    "hs256_keyed_with_our_public_pem": lambda rt, cid: hs256(
        _header(rt, alg="HS256"), access_claims(rt.settings, cid, VAWG), _pem_of(_our_key(rt))
    ),
    "hs256_keyed_with_our_public_jwk": lambda rt, cid: hs256(
        _header(rt, alg="HS256"),
        access_claims(rt.settings, cid, VAWG),
        json.dumps(_our_key(rt).as_dict(private=False)).encode(),
    ),
    "unknown_kid": lambda rt, cid: signed(
        _header(rt, kid="stranger"),
        access_claims(rt.settings, cid, VAWG),
        ECKey.generate_key("P-256", parameters={"kid": "stranger"}),
    ),
    "unknown_kid_signed_by_our_key": lambda rt, cid: signed(
        _header(rt, kid="stranger"), access_claims(rt.settings, cid, VAWG), _our_key(rt)
    ),
    "no_kid": lambda rt, cid: signed(
        _header(rt, kid=None), access_claims(rt.settings, cid, VAWG), _our_key(rt)
    ),
    "typ_JWT": lambda rt, cid: signed(
        _header(rt, typ="JWT"), access_claims(rt.settings, cid, VAWG), _our_key(rt)
    ),
    "typ_missing": lambda rt, cid: signed(
        _header(rt, typ=None), access_claims(rt.settings, cid, VAWG), _our_key(rt)
    ),
    "subject_not_a_registered_client": lambda rt, cid: signed(
        _header(rt), access_claims(rt.settings, "nobody.000000", VAWG), _our_key(rt)
    ),
    "embedded_jwk_header": lambda rt, cid: (
        lambda k: signed(
            {**_header(rt, kid=None), "jwk": k.as_dict(private=False)},
            access_claims(rt.settings, cid, VAWG),
            k,
        )
    )(ECKey.generate_key("P-256")),
}


def _valid(rt: Runtime, cid: str) -> str:
    return signed(_header(rt), access_claims(rt.settings, cid, VAWG), _our_key(rt))


async def test_a_hand_made_token_with_our_key_is_accepted(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Control: the forging helpers make tokens the gateway accepts when nothing is wrong,
    so each refusal below is for the one thing the forgery changes."""
    creds = await create_client(runtime, VAWG, scopes=AGENCY_SCOPES)
    r = await http.get(PROBE, headers=bearer(_valid(runtime, creds["client_id"])))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_or_invalid_access_token_is_401(
    http: httpx.AsyncClient, runtime: Runtime, forgery: str
) -> None:
    creds = await create_client(runtime, VAWG, scopes=AGENCY_SCOPES)
    token = FORGERIES[forgery](runtime, creds["client_id"])
    for method, path in [("GET", PROBE), ("GET", "/v1/deliveries"), ("GET", "/v1/inbox")]:
        r = await http.request(method, path, headers=bearer(token))
        assert r.status_code == 401, (forgery, path, r.text)
        body = problem_of(r)
        assert body["code"] == "unauthenticated"
        assert r.headers["www-authenticate"].startswith("Bearer")
    # nothing was done with it
    assert await runtime.store.list_subscriptions(VAWG) == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ..",
        "Bearer eyJhbGciOiJFUzI1NiJ9",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.e30.e30",
        "Bearer " + "A" * 4000,
        "Token abc",
        "Basic dXNlcjpwYXNz",
    ],
)
async def test_missing_garbage_or_truncated_token_is_401(
    http: httpx.AsyncClient, runtime: Runtime, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = await http.get(PROBE, headers=headers)
    assert r.status_code == 401, r.text
    assert problem_of(r)["code"] == "unauthenticated"


async def test_truncated_and_bit_flipped_real_tokens_are_401(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    token = await token_for(VAWG)
    assert (await http.get(PROBE, headers=bearer(token))).status_code == 200  # control
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    variants = {
        "truncated": token[:-10],
        "no_signature": f"{head}.{payload}.",
        "two_parts": f"{head}.{payload}",
        "signature_flipped": f"{head}.{payload}.{flipped}",
        "payload_swapped_for_more_scopes": ".".join(
            [head, _with_claims(payload, scope="admin ig:audit"), signature]
        ),
        "party_swapped": ".".join([head, _with_claims(payload, party=PRISON), signature]),
    }
    bodies = []
    for name, forged in variants.items():
        r = await http.get(PROBE, headers=bearer(forged))
        assert r.status_code == 401, (name, r.text)
        bodies.append(problem_of(r))
    # one answer whatever the reason (the reason is only logged)
    assert all(b == bodies[0] for b in bodies), bodies


def _with_claims(payload: str, **over: Any) -> str:
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(over)
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


async def test_every_refusal_looks_the_same(http: httpx.AsyncClient, runtime: Runtime) -> None:
    creds = await create_client(runtime, VAWG, scopes=AGENCY_SCOPES)
    bodies = {}
    for name, forge in FORGERIES.items():
        r = await http.get(PROBE, headers=bearer(forge(runtime, creds["client_id"])))
        bodies[name] = (r.status_code, r.json(), r.headers.get("www-authenticate"))
    distinct = {json.dumps(v, sort_keys=True) for v in bodies.values()}
    assert len(distinct) == 1, bodies


async def test_a_disabled_clients_token_stops_working(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any
) -> None:
    admin = bearer(await token_for(PRISON, ["admin"]))
    creds = await create_client(runtime, VAWG)
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"]))
    token = r.json()["access_token"]
    assert (await http.get(PROBE, headers=bearer(token))).status_code == 200
    r = await http.post(f"/v1/admin/clients/{creds['client_id']}/disable", headers=admin)
    assert r.status_code == 200, r.text
    http._transport.app.state.tokens._status.clear()  # type: ignore[attr-defined]  # skip the 10 s cache
    r = await http.get(PROBE, headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"
    # and it gets no new token
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # enabled again, the same token works again (it had not expired)
    r = await http.post(f"/v1/admin/clients/{creds['client_id']}/enable", headers=admin)
    assert r.status_code == 200
    http._transport.app.state.tokens._status.clear()  # type: ignore[attr-defined]
    assert (await http.get(PROBE, headers=bearer(token))).status_code == 200


# -- client authentication at the token endpoint -----------------------------------------------


def _assertion(key: ECKey, client_id: str, aud: str, **over: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(over)
    return signed(
        {"alg": "ES256", "kid": key.kid}, {k: v for k, v in claims.items() if v is not None}, key
    )


def _assertion_form(assertion: str) -> dict[str, str]:
    return {**FORM, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


async def _jwt_client(runtime: Runtime) -> tuple[ECKey, str]:
    key = ECKey.generate_key("P-256", parameters={"kid": "agency-key-1"})
    creds = await create_client(runtime, PDU, jwks=KeySet([key]).as_dict(private=False))
    return key, creds["client_id"]


async def test_a_valid_assertion_works_once_and_its_replay_is_refused(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    key, cid = await _jwt_client(runtime)
    form = _assertion_form(_assertion(key, cid, runtime.settings.token_endpoint))
    ok = await http.post(TOKEN, data=form)
    assert ok.status_code == 200, ok.text
    replay = await http.post(TOKEN, data=form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    # the same jti in a freshly signed assertion is a replay too
    key2_assertion = _assertion(
        key, cid, runtime.settings.token_endpoint, jti=_jti(form["client_assertion"])
    )
    again = await http.post(TOKEN, data=_assertion_form(key2_assertion))
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def _jti(assertion: str) -> str:
    payload = assertion.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


ASSERTION_FORGERIES: dict[str, Callable[[ECKey, str, str, Runtime], str]] = {
    "lifetime_too_long": lambda k, cid, aud, rt: _assertion(
        k, cid, aud, exp=int(time.time()) + 3600
    ),
    "issued_long_ago_still_valid": lambda k, cid, aud, rt: _assertion(
        k, cid, aud, iat=int(time.time()) - 3000, exp=int(time.time()) + 60
    ),
    "expired": lambda k, cid, aud, rt: _assertion(
        k, cid, aud, iat=int(time.time()) - 900, exp=int(time.time()) - 600
    ),
    "no_expiry": lambda k, cid, aud, rt: _assertion(k, cid, aud, exp=None),
    "no_jti": lambda k, cid, aud, rt: _assertion(k, cid, aud, jti=None),
    "wrong_audience": lambda k, cid, aud, rt: _assertion(k, cid, "https://elsewhere.example/token"),
    "audience_is_the_api": lambda k, cid, aud, rt: _assertion(k, cid, rt.settings.token_audience),
    "issuer_not_the_client": lambda k, cid, aud, rt: _assertion(k, cid, aud, iss="someone-else"),
    "signed_by_another_key_same_kid": lambda k, cid, aud, rt: _assertion(
        ECKey.generate_key("P-256", parameters={"kid": k.kid}), cid, aud
    ),
    "alg_none": lambda k, cid, aud, rt: unsigned(
        {"alg": "none", "kid": k.kid},
        {
            "iss": cid,
            "sub": cid,
            "aud": aud,
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        },
    ),
    "hs256_keyed_with_the_clients_public_jwk": lambda k, cid, aud, rt: hs256(
        {"alg": "HS256", "kid": k.kid},
        {
            "iss": cid,
            "sub": cid,
            "aud": aud,
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        },
        json.dumps(k.as_dict(private=False)).encode(),
    ),
}


@pytest.mark.parametrize("forgery", sorted(ASSERTION_FORGERIES))
async def test_bad_client_assertion_is_invalid_client(
    http: httpx.AsyncClient, runtime: Runtime, forgery: str
) -> None:
    key, cid = await _jwt_client(runtime)
    assertion = ASSERTION_FORGERIES[forgery](key, cid, runtime.settings.token_endpoint, runtime)
    r = await http.post(TOKEN, data=_assertion_form(assertion))
    assert r.status_code == 401, (forgery, r.text)
    assert r.json() == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }
    # control: the same client with a proper assertion gets a token
    ok = await http.post(
        TOKEN, data=_assertion_form(_assertion(key, cid, runtime.settings.token_endpoint))
    )
    assert ok.status_code == 200, ok.text


async def test_an_assertion_for_one_client_signed_by_another_clients_key_is_refused(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    victim_key, victim = await _jwt_client(runtime)
    attacker_key = ECKey.generate_key("P-256", parameters={"kid": victim_key.kid})
    await create_client(runtime, VAWG, jwks=KeySet([attacker_key]).as_dict(private=False))
    forged = _assertion(attacker_key, victim, runtime.settings.token_endpoint)
    r = await http.post(TOKEN, data=_assertion_form(forged))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_wrong_secret_and_unknown_client_answer_identically(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, PRISON)
    jwt_key, jwt_client = await _jwt_client(runtime)
    answers = {
        "wrong_secret": await http.post(
            TOKEN, data=FORM, headers=basic(creds["client_id"], "cs_wrong")
        ),
        "unknown_client": await http.post(TOKEN, data=FORM, headers=basic("nobody.1234", "cs_x")),
        "empty_secret": await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], "")),
        "secret_for_a_key_only_client": await http.post(
            TOKEN, data=FORM, headers=basic(jwt_client, "cs_guess")
        ),
        "secret_prefix": await http.post(
            TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"][:-1])
        ),
    }
    shapes = set()
    for name, r in answers.items():
        assert r.status_code == 401, (name, r.text)
        assert r.json() == {
            "error": "invalid_client",
            "error_description": "client authentication failed",
        }, name
        shapes.add((r.status_code, r.text, r.headers.get("www-authenticate")))
    assert len(shapes) == 1, shapes
    # control: the right secret works
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"]))
    assert r.status_code == 200


async def test_token_endpoint_does_not_echo_or_leak_secrets(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, PRISON)
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], "cs_wrong_guess"))
    assert "cs_wrong_guess" not in r.text and creds["client_secret"] not in r.text
    r = await http.post(TOKEN, data=FORM, headers=basic(creds["client_id"], creds["client_secret"]))
    assert creds["client_secret"] not in r.text
    assert r.headers["cache-control"] == "no-store"


# -- access tokens from the external OpenID Connect provider -----------------------------------

IDP = "https://idp.example.test/realms/justice"
SUBJECT = "vawg-service-account"


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig"})


@pytest.fixture
async def idp_gateway(
    tmp_path: Path, kafka_bootstrap: str, jwks_server: JwksServer, idp_key: RSAKey
) -> AsyncIterator[tuple[Runtime, FastAPI, httpx.AsyncClient]]:
    """A gateway that also accepts the provider's tokens (``oidc_issuer``/``oidc_jwks_url``),
    with ``SUBJECT`` registered as a client of the VAWG service."""
    jwks_server.jwks = {"keys": [idp_key.as_dict(private=False)]}
    settings = make_settings(tmp_path, oidc_issuer=IDP, oidc_jwks_url=jwks_server.url)
    rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    await create_client(rt, VAWG, external_subject=SUBJECT)
    try:
        async with gateway(rt) as (app, client):
            yield rt, app, client
    finally:
        await rt.aclose()


def _idp_claims(rt: Runtime, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": IDP,
        "aud": rt.settings.token_audience,
        "sub": SUBJECT,
        "client_id": SUBJECT,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


IDP_HEADER = {"alg": "RS256", "kid": "idp-1", "typ": "at+jwt"}


def _idp_pem(key: RSAKey) -> bytes:
    return bytes(
        key.get_op_key("verify").public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


IdpForge = Callable[[Runtime, RSAKey], str]
IDP_FORGERIES: dict[str, IdpForge] = {
    "unregistered_subject": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, sub="someone-else", client_id="someone-else"), k
    ),
    "forged_signature_same_kid": lambda rt, k: signed(
        IDP_HEADER,
        _idp_claims(rt),
        RSAKey.generate_key(2048, parameters={"kid": "idp-1"}),
    ),
    "expired": lambda rt, k: signed(
        IDP_HEADER,
        _idp_claims(rt, iat=int(time.time()) - 900, exp=int(time.time()) - 45),
        k,
    ),
    "not_yet_valid": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, nbf=int(time.time()) + 120), k
    ),
    "wrong_audience": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, aud="https://another-api.example"), k
    ),
    "wrong_issuer": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, iss="https://idp.example.test/realms/other"), k
    ),
    "provider_key_minting_our_issuer": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, iss=rt.settings.issuer, party=VAWG), k
    ),
    "our_key_claiming_the_provider": lambda rt, k: signed(
        {"alg": "ES256", "kid": rt.keys.signing_key().kid, "typ": "at+jwt"},
        _idp_claims(rt),
        rt.keys.signing_key(),
    ),
    "alg_none": lambda rt, k: unsigned({"alg": "none", "kid": "idp-1"}, _idp_claims(rt)),
    "hs256_keyed_with_provider_public_pem": lambda rt, k: hs256(
        {"alg": "HS256", "kid": "idp-1", "typ": "at+jwt"}, _idp_claims(rt), _idp_pem(k)
    ),
    "hs256_keyed_with_provider_public_jwk": lambda rt, k: hs256(
        {"alg": "HS256", "kid": "idp-1", "typ": "at+jwt"},
        _idp_claims(rt),
        json.dumps(k.as_dict(private=False)).encode(),
    ),
    "unknown_kid": lambda rt, k: signed(
        {**IDP_HEADER, "kid": "idp-unknown"},
        _idp_claims(rt),
        RSAKey.generate_key(2048, parameters={"kid": "idp-unknown"}),
    ),
    "no_kid": lambda rt, k: signed({"alg": "RS256", "typ": "at+jwt"}, _idp_claims(rt), k),
    "typ_not_an_access_token": lambda rt, k: signed(
        {**IDP_HEADER, "typ": "logout+jwt"}, _idp_claims(rt), k
    ),
    "lifetime_over_a_day": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, exp=int(time.time()) + 3 * 86400), k
    ),
    "sender_constrained_cnf": lambda rt, k: signed(
        IDP_HEADER, _idp_claims(rt, cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}), k
    ),
    "jku_header_pointing_elsewhere": lambda rt, k: (
        lambda other: signed(
            {**IDP_HEADER, "kid": "attacker", "jku": "http://127.0.0.1:9/jwks"},
            _idp_claims(rt),
            other,
        )
    )(RSAKey.generate_key(2048, parameters={"kid": "attacker"})),
}


async def test_a_provider_token_of_a_registered_subject_acts_as_its_party(
    idp_gateway: tuple[Runtime, FastAPI, httpx.AsyncClient], idp_key: RSAKey
) -> None:
    rt, _, client = idp_gateway
    # a party claim in the provider's token is not trusted: the registration decides
    token = signed(IDP_HEADER, _idp_claims(rt, party=PRISON), idp_key)
    body = {"message_types": ["release-notice"], "channel": "inbox"}
    r = await client.post("/v1/subscriptions", json=body, headers=bearer(token))
    assert r.status_code == 201, r.text
    stored = await rt.store.get_subscription(r.json()["id"])
    assert stored is not None and stored["party"] == VAWG
    assert await rt.store.list_subscriptions(PRISON) == []


@pytest.mark.parametrize("forgery", sorted(IDP_FORGERIES))
async def test_forged_or_invalid_provider_token_is_401(
    idp_gateway: tuple[Runtime, FastAPI, httpx.AsyncClient], idp_key: RSAKey, forgery: str
) -> None:
    rt, _, client = idp_gateway
    token = IDP_FORGERIES[forgery](rt, idp_key)
    r = await client.get(PROBE, headers=bearer(token))
    assert r.status_code == 401, (forgery, r.text)
    assert problem_of(r)["code"] == "unauthenticated"
    # control: a proper provider token works on the same gateway
    ok = await client.get(PROBE, headers=bearer(signed(IDP_HEADER, _idp_claims(rt), idp_key)))
    assert ok.status_code == 200, ok.text


async def test_a_provider_token_of_a_disabled_subject_is_401(
    idp_gateway: tuple[Runtime, FastAPI, httpx.AsyncClient], idp_key: RSAKey
) -> None:
    rt, _, client = idp_gateway
    token = signed(IDP_HEADER, _idp_claims(rt), idp_key)
    assert (await client.get(PROBE, headers=bearer(token))).status_code == 200
    registered = await rt.store.client_by_external_subject(SUBJECT)
    assert registered is not None
    await rt.store.set_client_disabled(registered["client_id"], True, actor="test")
    r = await client.get(PROBE, headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"


async def test_a_provider_token_cannot_widen_the_registered_scopes(
    idp_gateway: tuple[Runtime, FastAPI, httpx.AsyncClient], idp_key: RSAKey
) -> None:
    rt, _, client = idp_gateway
    token = signed(
        IDP_HEADER, _idp_claims(rt, scope="admin ig:audit audit:read inbox:read"), idp_key
    )
    for path in ("/v1/admin/clients", "/v1/audit", PROBE):
        r = await client.get(path, headers=bearer(token))
        assert r.status_code == 403, (path, r.text)
        assert problem_of(r)["code"] == "insufficient_scope"
    assert (await client.get("/v1/inbox", headers=bearer(token))).status_code == 200
