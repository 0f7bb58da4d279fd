"""OAuth 2.0 client credentials grant (RFC 6749 s4.4) with client authentication by
``client_secret_basic`` (RFC 6749 s2.3.1) or ``private_key_jwt`` (RFC 7523 s2.2, OpenID
Connect Core s9), issuing ES256-signed JWT access tokens (RFC 9068 profile).

Every authentication failure answers the same ``invalid_client``; the reason is logged."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

from services.core.crypto.keys import secret_matches
from services.core.crypto.signing_keys import TOKEN_SIGNING_ALG
from services.core.errors import AuthenticationFailed, InvalidClient, InvalidRequest
from services.core.runtime import Runtime

from .oidc import ExternalIssuer

log = logging.getLogger("isa_broker.oauth")

#: how long a gateway trusts its cached view of whether a client is disabled
CLIENT_STATUS_TTL = 10.0
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ASSERTION_ALGS = ["ES256", "ES384", "EdDSA", "PS256", "RS256"]


class UnsupportedGrantType(InvalidRequest):
    code = "unsupported_grant_type"


class InvalidScope(InvalidRequest):
    code = "invalid_scope"


@dataclass(frozen=True)
class Principal:
    client_id: str
    party: str
    scopes: frozenset[str]


class TokenService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.external = (
            ExternalIssuer(settings, runtime.clock) if settings.oidc.issuer is not None else None
        )
        self._status: dict[str, tuple[bool, float]] = {}

    async def aclose(self) -> None:
        if self.external is not None:
            await self.external.aclose()

    # -- token endpoint ------------------------------------------------------------------------

    async def issue(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise UnsupportedGrantType("grant_type must be client_credentials")
        client = await self._authenticate(form, authorization)
        requested = set(form.get("scope", "").split()) if form.get("scope") else None
        granted = set(client["scopes"])
        if requested is not None:
            extra = sorted(requested - granted)
            if extra:
                raise InvalidScope(f"scope(s) not granted to this client: {' '.join(extra)}")
            granted = requested
        settings = self.runtime.settings
        moment = self.runtime.clock()
        now = int(moment.timestamp())
        key = self.runtime.keys.signing_key(moment)
        claims = {
            "iss": settings.issuer,
            "aud": settings.token_audience,
            "sub": client["client_id"],
            "client_id": client["client_id"],
            "party": client["party"],
            "scope": " ".join(sorted(granted)),
            "iat": now,
            "nbf": now,
            "exp": now + settings.tokens.access_token_ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": TOKEN_SIGNING_ALG, "kid": key.kid, "typ": "at+jwt"}
        token = jwt.encode(header, claims, key, algorithms=[TOKEN_SIGNING_ALG])
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": settings.tokens.access_token_ttl_seconds,
            "scope": claims["scope"],
        }

    async def _authenticate(
        self, form: dict[str, str], authorization: str | None
    ) -> dict[str, Any]:
        if form.get("client_assertion_type") or form.get("client_assertion"):
            if authorization:
                raise InvalidRequest("use one client authentication method, not two")
            return await self._private_key_jwt(form)
        if authorization and authorization.lower().startswith("basic "):
            return await self._client_secret_basic(authorization[6:].strip())
        raise InvalidClient("client authentication is required")

    async def _client_secret_basic(self, credentials: str) -> dict[str, Any]:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
            raw_id, raw_secret = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError) as e:
            raise InvalidClient("client authentication failed") from e
        client_id, secret = unquote(raw_id), unquote(raw_secret)
        client = await self.runtime.store.get_client(client_id)
        if (
            client is None
            or client["disabled"]
            or not client["secret_hash"]
            or not secret_matches(secret, client["secret_hash"])
        ):
            log.info("client_secret_basic rejected client_id=%s", client_id[:80])
            raise InvalidClient("client authentication failed")
        return client

    async def _private_key_jwt(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClient("client authentication failed")
        assertion = form.get("client_assertion", "")
        unverified_claims = _unverified_claims(assertion)
        client_id = str(unverified_claims.get("sub", ""))
        client = await self.runtime.store.get_client(client_id)
        if client is None or client["disabled"] or not client["jwks"]:
            log.info("client assertion for unknown or secret-only client")
            raise InvalidClient("client authentication failed")
        settings = self.runtime.settings
        now = int(self.runtime.clock().timestamp())
        try:
            token = jwt.decode(
                assertion, KeySet.import_key_set(client["jwks"]), algorithms=CLIENT_ASSERTION_ALGS
            )
            registry = JWTClaimsRegistry(
                now=now,
                leeway=settings.tokens.leeway_seconds,
                iss={"essential": True, "value": client_id},
                sub={"essential": True, "value": client_id},
                aud={"essential": True, "values": [settings.token_endpoint, settings.issuer]},
                exp={"essential": True},
                jti={"essential": True},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as e:
            log.info("client assertion rejected client_id=%s: %s", client_id, type(e).__name__)
            raise InvalidClient("client authentication failed") from e
        exp = int(token.claims["exp"])
        iat = int(token.claims.get("iat", now))
        if (
            exp - iat > settings.tokens.client_assertion_max_age_seconds
            or exp - now > settings.tokens.client_assertion_max_age_seconds
        ):
            log.info("client assertion lifetime too long client_id=%s", client_id)
            raise InvalidClient("client authentication failed")
        jti = str(token.claims["jti"])[:200]
        expires = dt.datetime.fromtimestamp(exp + settings.tokens.leeway_seconds, dt.UTC)
        if not await self.runtime.store.remember_assertion(
            f"{client_id}:{jti}", expires, self.runtime.clock()
        ):
            log.info("client assertion replayed client_id=%s", client_id)
            raise InvalidClient("client authentication failed")
        return client

    # -- access token verification -------------------------------------------------------------

    async def verify(self, authorization: str | None) -> Principal:
        """The principal behind a Bearer token: one of ours, or (when configured) one from the
        external OpenID Connect provider. Either way the client must be registered and not
        disabled; a disabled client's tokens stop working within ``CLIENT_STATUS_TTL``."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationFailed("a Bearer access token is required")
        raw = authorization[7:].strip()
        if self.external is not None and self.external.handles(raw):
            identity = await self.external.verify(raw)
            client = await self.runtime.store.client_by_external_subject(identity.subject)
            if client is None or client["disabled"]:
                log.info("external token for an unregistered or disabled subject")
                raise AuthenticationFailed("the access token is invalid or expired")
            granted = frozenset(client["scopes"])
            scopes = granted if identity.scopes is None else granted & identity.scopes
            return Principal(client["client_id"], client["party"], scopes)
        principal = self._verify_own(raw)
        if not await self._client_enabled(principal.client_id):
            log.info("token of a disabled or removed client %s", principal.client_id)
            raise AuthenticationFailed("the access token is invalid or expired")
        return principal

    async def _client_enabled(self, client_id: str) -> bool:
        now = time.monotonic()
        cached = self._status.get(client_id)
        if cached is not None and now - cached[1] < CLIENT_STATUS_TTL:
            return cached[0]
        client = await self.runtime.store.get_client(client_id)
        enabled = client is not None and not client["disabled"]
        if len(self._status) > 10_000:
            self._status.clear()
        self._status[client_id] = (enabled, now)
        return enabled

    def _verify_own(self, raw: str) -> Principal:
        settings = self.runtime.settings
        moment = self.runtime.clock()
        own_keys = self.runtime.keys.public_keys(moment)

        def by_kid(obj: GuestProtocol) -> Key:
            # only our own keys, found by kid; a token without a kid is refused
            kid = obj.headers().get("kid")
            if not isinstance(kid, str) or not kid:
                raise ValueError("no kid")
            return own_keys.get_by_kid(kid)

        try:
            token = jwt.decode(raw, by_kid, algorithms=[TOKEN_SIGNING_ALG])
            if token.header.get("typ") != "at+jwt":
                raise ValueError("typ is not at+jwt")
            JWTClaimsRegistry(
                now=int(moment.timestamp()),
                leeway=settings.tokens.leeway_seconds,
                iss={"essential": True, "value": settings.issuer},
                aud={"essential": True, "value": settings.token_audience},
                exp={"essential": True},
                sub={"essential": True},
                party={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as e:
            log.info("access token rejected: %s", type(e).__name__)
            raise AuthenticationFailed("the access token is invalid or expired") from e
        return Principal(
            client_id=str(token.claims["sub"]),
            party=str(token.claims["party"]),
            scopes=frozenset(str(token.claims.get("scope", "")).split()),
        )


def _unverified_claims(assertion: str) -> dict[str, Any]:
    """The claims of a compact JWS, read only to find which client's keys to verify it with;
    nothing read here is trusted until ``jwt.decode`` has checked the signature."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, RecursionError) as e:
        raise InvalidClient("client authentication failed") from e
    if not isinstance(claims, dict):
        raise InvalidClient("client authentication failed")
    return claims
