"""OAuth 2.0 client credentials for the broker's token endpoint (RFC 6749 s4.4), with the
two ways a client authenticates there:

* :class:`ClientSecret`: ``client_secret_basic`` (RFC 6749 s2.3.1), the secret the operator
  printed once, sent as HTTP Basic;
* :class:`PrivateKeyJwt`: ``private_key_jwt`` (RFC 7523 s2.2, OpenID Connect Core s9), a
  short assertion signed with the agency's own private key, whose public half the operator
  registered. Preferred: no shared secret exists. Each assertion carries a fresh ``jti``;
  the broker refuses one it has seen.

:class:`TokenSource` fetches an access token, keeps it, and fetches the next one
``refresh_margin`` seconds before it expires (the broker issues no refresh tokens: a new
client-credentials grant is the refresh). Concurrent callers share one fetch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from .errors import BrokerUnreachable, TokenError, token_error_from_response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: the algorithms the broker accepts for assertions
ASSERTION_ALGORITHMS = ("ES256", "ES384", "EdDSA", "PS256", "RS256")

SigningKey = ECKey | RSAKey | OKPKey


@dataclass(frozen=True, repr=False)
class ClientSecret:
    """``client_secret_basic``: the client id and the secret the operator printed once."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never the secret
        return f"ClientSecret(client_id={self.client_id!r})"


def _default_algorithm(key: SigningKey) -> str:
    alg = key.get("alg")
    if isinstance(alg, str) and alg in ASSERTION_ALGORITHMS:
        return alg
    if isinstance(key, ECKey):
        by_curve = {"P-256": "ES256", "P-384": "ES384"}
        if key.curve_name in by_curve:
            return by_curve[key.curve_name]
    elif isinstance(key, OKPKey):
        if key.curve_name == "Ed25519":
            return "EdDSA"
    elif isinstance(key, RSAKey):
        return "PS256"
    raise ValueError(
        f"private_key_jwt needs an EC P-256/P-384, Ed25519 or RSA key; name the algorithm "
        f"(one of {', '.join(ASSERTION_ALGORITHMS)}) for this one"
    )


class PrivateKeyJwt:
    """``private_key_jwt``: assertions signed with ``key`` (a private JWK as a dict, or a
    ``joserfc`` key) with ``algorithm`` (by default the key's ``alg``, else ES256 for
    P-256, ES384 for P-384, EdDSA for Ed25519, PS256 for RSA).

    ``audience`` is the token endpoint's URL as the broker names it (its
    ``/.well-known/oauth-authorization-server`` ``token_endpoint``); by default, the URL the
    client posts to. ``lifetime`` must stay within the broker's limit (300 s by default)."""

    def __init__(
        self,
        client_id: str,
        key: SigningKey | Mapping[str, Any],
        *,
        algorithm: str | None = None,
        audience: str | None = None,
        lifetime: int = 60,
    ) -> None:
        imported = (
            key if isinstance(key, ECKey | RSAKey | OKPKey) else JWKRegistry.import_key(dict(key))
        )
        if not isinstance(imported, ECKey | RSAKey | OKPKey) or not imported.is_private:
            raise ValueError("private_key_jwt needs the private key (a JWK with its d member)")
        self.client_id = client_id
        self.key: SigningKey = imported
        self.algorithm = algorithm or _default_algorithm(imported)
        if self.algorithm not in ASSERTION_ALGORITHMS:
            raise ValueError(
                f"the broker accepts assertions signed with {', '.join(ASSERTION_ALGORITHMS)}, "
                f"not {self.algorithm}"
            )
        self.audience = audience
        self.lifetime = lifetime

    def __repr__(self) -> str:  # never the key
        return f"PrivateKeyJwt(client_id={self.client_id!r}, algorithm={self.algorithm!r})"

    def assertion(self, audience: str, now: float) -> str:
        """A signed client assertion (RFC 7523 s3) for ``audience``, issued at ``now``."""
        issued = int(now)
        header: dict[str, Any] = {"alg": self.algorithm}
        if self.key.kid:
            header["kid"] = self.key.kid
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience or audience,
            "iat": issued,
            "exp": issued + self.lifetime,
            "jti": str(uuid.uuid4()),
        }
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as deprecated by RFC 9864 in favour of "Ed25519", which the
            # broker does not accept (yet): the same signature under the name it knows
            warnings.filterwarnings("ignore", "EdDSA is deprecated")
            return jwt.encode(header, claims, self.key, algorithms=[self.algorithm])


Credentials = ClientSecret | PrivateKeyJwt


@dataclass(frozen=True, repr=False)
class AccessToken:
    """A bearer token, when it expires and when the next one is fetched instead (on the
    source's clock, seconds)."""

    value: str
    expires_at: float
    refresh_at: float
    scopes: frozenset[str]

    def __repr__(self) -> str:  # never the token
        return f"AccessToken(expires_at={self.expires_at}, scopes={sorted(self.scopes)})"


class TokenSource:
    """Access tokens for one client, fetched with ``http`` from ``token_endpoint``, kept
    until ``refresh_margin`` seconds (at most half the lifetime) before they expire."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token_endpoint: str,
        credentials: Credentials,
        *,
        scopes: tuple[str, ...] | None = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self.token_endpoint = token_endpoint
        self.credentials = credentials
        self.scopes = scopes
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> AccessToken:
        """The current token, fetching a new one when it is (nearly) expired."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token
        async with self._lock:  # one fetch for every caller waiting here
            token = self._token
            if token is None or self._clock() >= token.refresh_at:
                token = self._token = await self._fetch()
            return token

    def invalidate(self, token: AccessToken | None = None) -> None:
        """Forget ``token`` (or whatever is held): the broker refused it (401)."""
        if token is None or self._token is token:
            self._token = None

    async def _fetch(self) -> AccessToken:
        data = {"grant_type": "client_credentials"}
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        creds = self.credentials
        auth: httpx.Auth | None = None
        if isinstance(creds, ClientSecret):
            auth = httpx.BasicAuth(creds.client_id, creds.client_secret)
        else:  # the assertion replaces the password; no Authorization header with it
            data["client_assertion_type"] = ASSERTION_TYPE
            data["client_assertion"] = creds.assertion(self.token_endpoint, self._clock())
        started = self._clock()
        try:
            if auth is not None:
                response = await self._http.post(self.token_endpoint, data=data, auth=auth)
            else:
                response = await self._http.post(self.token_endpoint, data=data)
        except httpx.TransportError as e:
            raise BrokerUnreachable(f"token endpoint {self.token_endpoint}: {e!r}") from e
        if response.status_code != 200:
            raise token_error_from_response(response)
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as e:
            raise TokenError(response.status_code, "invalid_response", "no access_token") from e
        if not isinstance(value, str):
            raise TokenError(response.status_code, "invalid_response", "no access_token")
        margin = min(self.refresh_margin, lifetime / 2)
        scopes = frozenset(str(body.get("scope") or "").split())
        return AccessToken(value, started + lifetime, started + lifetime - margin, scopes)
