"""Access tokens issued by an external OpenID Connect provider, verified with the provider's
published keys. The gateway is a resource server here; it never talks to the provider except
to fetch its discovery document and its JWK Set.

- Where the keys are: the ``jwks_uri`` of the provider's discovery document, found from
  ``oidc_issuer`` alone (``oidc_discovery``: OpenID Connect Discovery 1.0 s4, RFC 8414 s3;
  refused unless its ``issuer`` is the configured one exactly), or ``oidc_jwks_url`` when the
  operator names the set. Nothing is fetched until the first external token arrives, so a
  provider that is down when the gateway starts delays only its own tokens: they are refused
  until a fetch succeeds. The document is fetched again with the set once it is older than
  ``oidc_jwks_cache_seconds`` or the last fetch failed; a document that cannot be fetched
  or is refused then leaves the one already cached in use.
- Keys: the JWK Set document (RFC 7517 s5). Keys whose ``kty`` is not asymmetric, whose
  ``use`` is not ``sig``, that lack a ``kid`` or are unreadable are ignored (RFC 7517 s5);
  RSA keys under 2048 bits are ignored (RFC 8725 s3.5). A token names its key by ``kid``
  (OpenID Connect Core s10.1: required once a provider publishes several keys) and is checked
  against that key only. An unknown ``kid`` means the provider has rotated (OpenID Connect
  Core s10.1.1): the set is fetched again, at most once per ``oidc_jwks_min_refresh_seconds``.
  The set is cached ``oidc_jwks_cache_seconds``; while the provider is unreachable or
  answers with something that is not a JWK Set, the last good set is used until
  ``HARD_EXPIRY_FACTOR`` times that, then every external token is refused. Failed fetches
  are retried after 1, 2, 4... seconds, at most ``oidc_jwks_min_refresh_seconds`` apart, when
  a token needs them. A JWK Set without usable keys replaces the cache: the provider has
  withdrawn them.
- Algorithms (RFC 8725 s3.1, s3.2): only ``oidc_algorithms`` (asymmetric); the key's ``kty``
  (and its ``alg``, if it names one) must match the header's ``alg``, so ``none`` and an
  HMAC keyed with a public key never verify. ``jku``, ``x5u`` and ``jwk`` headers are never
  followed (RFC 8725 s3.10); other unknown header parameters are ignored unless listed in
  ``crit`` (RFC 7515 s4.1.11).
- Claims (RFC 9068 s4, RFC 8725 s3.8, s3.9): ``iss`` equals ``oidc_issuer`` exactly, ``aud``
  contains the gateway's audience, ``exp`` is required and at most ``MAX_LIFETIME_SECONDS``
  ahead, ``nbf`` and ``iat`` are honoured, all with ``token_leeway_seconds``. An explicit
  ``typ`` must name an access token (RFC 8725 s3.11, RFC 9068 s2.1). Sender-constrained
  tokens (``cnf``, RFC 9449 s6) are refused: their proof cannot be checked here.

Every failure raises the same ``AuthenticationFailed`` as a local token; the reason is logged."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry

from services.core.errors import AuthenticationFailed
from services.core.settings import Settings

from .oidc_discovery import (
    FETCH_TIMEOUT_SECONDS,
    DocumentUnavailable,
    ProviderMetadata,
    discover,
    fetch_json,
)

log = logging.getLogger("isa_broker.oidc")

MAX_JWKS_BYTES = 256 * 1024
JWKS_MEDIA_TYPES = "application/jwk-set+json, application/json"
MAX_TOKEN_CHARS = 16 * 1024
FIRST_RETRY_SECONDS = 1.0
HARD_EXPIRY_FACTOR = 10
MAX_LIFETIME_SECONDS = 24 * 3600
MAX_SUBJECT_CHARS = 255
USER_AGENT = "isa-broker-oidc/0.1"

#: The key type each accepted algorithm needs (RFC 7518 s3.1, RFC 8037 s3.1).
KEY_TYPE_FOR_ALG = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "EdDSA": "OKP",
}
ACCESS_TOKEN_TYPES = {"jwt", "at+jwt", "application/at+jwt"}
REJECTED = "the access token is invalid or expired"


@dataclass(frozen=True)
class ExternalIdentity:
    """A verified external token: ``subject`` is the configured subject claim's value;
    ``scopes`` is None when the token carries neither ``scope`` nor ``scp``."""

    subject: str
    scopes: frozenset[str] | None
    claims: dict[str, Any]


class _Rejected(Exception):
    """Internal: why a token is refused. Logged, then raised as ``AuthenticationFailed``."""


class ExternalIssuer:
    """Verifies access tokens from the provider named by ``settings.oidc.issuer``. One per
    process (it holds the discovery and JWKS caches); ``clock`` gives the time for
    ``exp``/``nbf``/``iat``, ``monotonic`` the time for the caches. Pass ``client`` to reuse
    an ``httpx.AsyncClient`` that does not follow redirects (it is then not closed by
    ``aclose``)."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.oidc.issuer is None:
            raise ValueError("ExternalIssuer needs oidc_issuer")
        jwks_url = settings.oidc.jwks_url
        if jwks_url is not None and httpx.URL(jwks_url).scheme not in ("https", "http"):
            raise ValueError("oidc_jwks_url must be an http(s) URL")
        self.issuer = settings.oidc.issuer
        #: the operator's JWKS URL; None: the discovery document's jwks_uri
        self.jwks_url = jwks_url
        self.require_https = settings.mode == "production"
        self.audience = settings.oidc.audience or settings.token_audience
        self.subject_claim = settings.oidc.subject_claim
        self.algorithms = frozenset(settings.oidc.algorithms) & KEY_TYPE_FOR_ALG.keys()
        self.leeway = settings.tokens.leeway_seconds
        self.cache_seconds = settings.oidc.jwks_cache_seconds
        self.min_refresh_seconds = settings.oidc.jwks_min_refresh_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=FETCH_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )
        self._metadata: ProviderMetadata | None = None  # the discovery document
        self._discovered_at = 0.0
        self._keys: dict[str, dict[str, Key]] = {}  # kid -> kty -> key
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._failures = 0  # failed fetches since the last successful one
        self._refresh_lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def handles(self, raw_token: str) -> bool:
        """Whether the token claims to come from this provider. Only routes the token to a
        verifier: nothing read here is trusted until ``verify`` has checked the signature."""
        try:
            return _segment(raw_token, 1).get("iss") == self.issuer
        except _Rejected:
            return False

    async def verify(self, raw_token: str) -> ExternalIdentity:
        try:
            return await self._verify(raw_token)
        except _Rejected as e:
            log.info("external access token rejected: %s", e)
            raise AuthenticationFailed(REJECTED) from e

    async def _verify(self, raw_token: str) -> ExternalIdentity:
        header = _segment(raw_token, 0)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise _Rejected("alg is not an accepted algorithm")
        if not isinstance(kid, str) or not kid:
            raise _Rejected("no kid in the header")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
            raise _Rejected("typ does not name an access token")
        key = await self._key_for(kid, alg)
        now = int(self._clock().timestamp())
        try:
            registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
            token = jwt.decode(raw_token, key, algorithms=[alg], registry=registry)
            JWTClaimsRegistry(
                now=now,
                leeway=self.leeway,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError, RecursionError) as e:
            raise _Rejected(f"signature or claims check failed: {type(e).__name__}") from e
        claims = dict(token.claims)
        exp = claims["exp"]
        iat = claims.get("iat", now)
        if exp - now > MAX_LIFETIME_SECONDS or exp - iat > MAX_LIFETIME_SECONDS:
            raise _Rejected("lifetime longer than allowed")
        if "cnf" in claims:
            raise _Rejected("sender-constrained (cnf) tokens are not supported")
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise _Rejected(f"{self.subject_claim} claim missing or not a short string")
        return ExternalIdentity(subject=subject, scopes=_scopes(claims), claims=claims)

    # -- keys ----------------------------------------------------------------------------------

    async def _key_for(self, kid: str, alg: str) -> Key:
        in_flight = self._refresh_lock.locked()
        if self._refresh_due(kid) or (in_flight and kid not in self._usable_keys()):
            async with self._refresh_lock:
                if self._refresh_due(kid):  # another request may have refreshed meanwhile
                    await self._refresh()
        usable = self._usable_keys()
        if not usable:
            raise _Rejected("no keys from the provider (not fetched yet, withdrawn or expired)")
        candidates = usable.get(kid)
        if not candidates:
            raise _Rejected("no key with this kid")
        key = candidates.get(KEY_TYPE_FOR_ALG[alg])
        if key is None:
            raise _Rejected("the key with this kid has another key type than alg needs")
        if key.get("alg") not in (None, alg):
            raise _Rejected("the key with this kid is for another alg")
        return key

    def _usable_keys(self) -> dict[str, dict[str, Key]]:
        """The cached keys, or none once they are older than the hard expiry (fail closed)."""
        if self._fetched_at is None:
            return {}
        if self._monotonic() - self._fetched_at >= self.cache_seconds * HARD_EXPIRY_FACTOR:
            return {}
        return self._keys

    def _refresh_due(self, kid: str) -> bool:
        now = self._monotonic()
        if self._attempted_at is None:
            return True
        if now - self._attempted_at < self._retry_interval():
            return False
        stale = self._fetched_at is None or now - self._fetched_at >= self.cache_seconds
        return stale or kid not in self._usable_keys()

    def _retry_interval(self) -> float:
        """Least time between two fetches: the minimum refresh interval after a success, a
        doubling backoff from ``FIRST_RETRY_SECONDS`` up to it after failures."""
        interval = min(self.cache_seconds, self.min_refresh_seconds)
        if self._failures:
            interval = min(interval, FIRST_RETRY_SECONDS * 2 ** min(self._failures - 1, 16))
        return interval

    async def _refresh(self) -> None:
        previous_attempt, self._attempted_at = self._attempted_at, self._monotonic()
        try:
            document = await fetch_json(
                self._client, await self._jwks_location(), MAX_JWKS_BYTES, JWKS_MEDIA_TYPES
            )
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise DocumentUnavailable("response is not a JWK Set (an object with a keys list)")
            keys = _import_keys(document)
        except asyncio.CancelledError:  # the request went away: not the provider's fault
            self._attempted_at = previous_attempt
            raise
        except DocumentUnavailable as e:
            self._failures += 1
            log.warning("external JWKS fetch failed, keeping cached keys: %s", e)
            return
        self._failures = 0
        self._keys = keys
        self._fetched_at = self._monotonic()
        log.info("external JWKS fetched: %d usable key(s)", sum(map(len, keys.values())))

    async def _jwks_location(self) -> str:
        """The operator's JWKS URL, else the discovery document's ``jwks_uri``, the document
        fetched again when it is older than the cache time or the last fetch failed."""
        if self.jwks_url is not None:
            return self.jwks_url
        cached = self._metadata
        age = self._monotonic() - self._discovered_at
        if cached is not None and age < self.cache_seconds and not self._failures:
            return cached.jwks_uri
        try:
            found = await discover(self._client, self.issuer, require_https=self.require_https)
        except DocumentUnavailable as e:
            if cached is None:
                raise DocumentUnavailable(f"discovery: {e}") from e
            log.warning("external provider discovery failed, keeping the cached document: %s", e)
            return cached.jwks_uri
        if cached is None or cached.jwks_uri != found.jwks_uri:
            log.info(
                "external provider discovered at %s: jwks_uri %s", found.source, found.jwks_uri
            )
        self._metadata, self._discovered_at = found, self._monotonic()
        return found.jwks_uri


def _import_keys(document: dict[str, Any]) -> dict[str, dict[str, Key]]:
    keys: dict[str, dict[str, Key]] = {}
    ambiguous: set[tuple[str, str]] = set()
    for data in document["keys"]:
        if not isinstance(data, dict):
            continue
        kid, kty = data.get("kid"), data.get("kty")
        if not isinstance(kid, str) or not kid or kty not in ("RSA", "EC", "OKP"):
            continue
        if data.get("use", "sig") != "sig" or (kty == "RSA" and _modulus_bits(data) < 2048):
            continue
        try:
            key = JWKRegistry.import_key(data)
        except (JoseError, ValueError, TypeError, KeyError):
            log.warning("external JWKS: ignored an unreadable %s key", kty)
            continue
        if kty in keys.get(kid, {}):
            ambiguous.add((kid, kty))
        keys.setdefault(kid, {})[kty] = key
    for kid, kty in ambiguous:  # two keys of one type under one kid: use neither
        log.warning("external JWKS: ignored keys sharing a kid")
        del keys[kid][kty]
    usable = {kid: by_type for kid, by_type in keys.items() if by_type}
    if not usable:  # the provider has withdrawn every key: so do we
        log.warning("external JWKS: no usable signing keys")
    return usable


def _modulus_bits(data: dict[str, Any]) -> int:
    try:
        return int.from_bytes(_b64decode(str(data.get("n", ""))), "big").bit_length()
    except (ValueError, binascii.Error):
        return 0


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _segment(raw_token: str, index: int) -> dict[str, Any]:
    """One part of a compact JWS, read without verification."""
    if len(raw_token) > MAX_TOKEN_CHARS:
        raise _Rejected("token too long")
    parts = raw_token.split(".")
    if len(parts) != 3:
        raise _Rejected("not a compact JWS")
    try:
        value = json.loads(_b64decode(parts[index]))
    except (ValueError, binascii.Error, RecursionError) as e:
        raise _Rejected("unreadable JWS part") from e
    if not isinstance(value, dict):
        raise _Rejected("JWS part is not a JSON object")
    return value


def _scopes(claims: dict[str, Any]) -> frozenset[str] | None:
    """``scope`` (RFC 9068 s2.2.3, space separated), else ``scp`` (a list, or a string as
    some providers send it)."""
    for name in ("scope", "scp"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return frozenset(value)
        raise _Rejected(f"{name} claim is neither a string nor a list of strings")
    return None
