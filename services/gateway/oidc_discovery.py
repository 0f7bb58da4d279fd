"""Finding an external OpenID provider's keys from its issuer alone, and the bounded fetch of
the JSON documents a provider publishes (its metadata and its JWK Set).

- Where (OpenID Connect Discovery 1.0 s4.1): ``<issuer>/.well-known/openid-configuration``,
  any trailing ``/`` of the issuer removed first. If that answers 404, the authorization
  server metadata of RFC 8414 s3.1, whose well-known segment goes between the host and the
  issuer's path: ``https://host/.well-known/oauth-authorization-server/path``.
- What is checked (OpenID Connect Discovery 1.0 s4.3, RFC 8414 s3.3): the document is a JSON
  object whose ``issuer`` is identical to the configured issuer, character for character (a
  document naming another issuer is refused: its keys would be someone else's), and whose
  ``jwks_uri`` is an absolute http(s) URL, https in production (RFC 8414 s2: the set is
  trusted because of the TLS connection it comes over).
- How (both documents): a GET without redirects, with a timeout and a size limit checked
  against ``Content-Length`` and again while reading, so that a provider (or whoever answers
  in its place) cannot make the gateway wait or hold an unbounded body.

Errors, internal to the gateway's token verification (logged, never shown to a caller)::

    Exception
    └── DocumentUnavailable      the document could not be fetched, or is not JSON of its shape
        ├── MetadataRefused      a discovery document that must not be used (issuer, jwks_uri)
        └── _NotFound            HTTP 404 (discovery then tries the next well-known place)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

FETCH_TIMEOUT_SECONDS = 5.0
MAX_METADATA_BYTES = 64 * 1024
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
OAUTH_AUTHORIZATION_SERVER = "/.well-known/oauth-authorization-server"
JSON = "application/json"


class DocumentUnavailable(Exception):
    """A provider's document could not be fetched or read; the message says why."""


class MetadataRefused(DocumentUnavailable):
    """A discovery document was read but must not be used."""


class _NotFound(DocumentUnavailable):
    """HTTP 404: for discovery, a reason to look at the next well-known place."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What the gateway uses of a provider's discovery document."""

    issuer: str
    jwks_uri: str
    #: where the document was found (for the log)
    source: str


def discovery_urls(issuer: str) -> tuple[str, str]:
    """The OpenID Connect discovery URL of ``issuer``, then the RFC 8414 one."""
    base = issuer.rstrip("/")
    url = urlsplit(base)
    origin = f"{url.scheme}://{url.netloc}"
    return base + OPENID_CONFIGURATION, origin + OAUTH_AUTHORIZATION_SERVER + url.path


async def discover(
    client: httpx.AsyncClient, issuer: str, *, require_https: bool
) -> ProviderMetadata:
    """Fetch and check the discovery document of ``issuer``. Raises ``DocumentUnavailable``
    (or ``MetadataRefused``)."""
    openid, oauth = discovery_urls(issuer)
    try:
        document, source = await fetch_json(client, openid, MAX_METADATA_BYTES, JSON), openid
    except _NotFound:
        try:
            document, source = await fetch_json(client, oauth, MAX_METADATA_BYTES, JSON), oauth
        except _NotFound as e:
            raise DocumentUnavailable("no discovery document (HTTP 404 at both places)") from e
    return _checked(document, issuer, source, require_https=require_https)


def _checked(
    document: object, issuer: str, source: str, *, require_https: bool
) -> ProviderMetadata:
    if not isinstance(document, dict):
        raise DocumentUnavailable("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        found = document.get("issuer")
        shown = found[:200] if isinstance(found, str) else type(found).__name__
        raise MetadataRefused(
            f"the discovery document's issuer {shown!r} is not the configured issuer "
            f"{issuer!r} (OpenID Connect Discovery 1.0 s4.3)"
        )
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise MetadataRefused("the discovery document has no jwks_uri")
    try:
        url = httpx.URL(jwks_uri)
    except httpx.InvalidURL as e:
        raise MetadataRefused("the discovery document's jwks_uri is not a URL") from e
    if url.scheme not in ("https", "http") or not url.host:
        raise MetadataRefused("the discovery document's jwks_uri is not an absolute http(s) URL")
    if require_https and url.scheme != "https":
        raise MetadataRefused("the discovery document's jwks_uri is not https:// (production)")
    return ProviderMetadata(issuer=issuer, jwks_uri=jwks_uri, source=source)


async def fetch_json(client: httpx.AsyncClient, url: str, max_bytes: int, accept: str) -> Any:
    """GET ``url`` and parse its JSON body of at most ``max_bytes``. Redirects are not
    followed (the client must not follow them). Raises ``DocumentUnavailable``."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
            body = await _fetch(client, url, max_bytes, accept)
    except (httpx.HTTPError, TimeoutError) as e:
        raise DocumentUnavailable(type(e).__name__) from e
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise DocumentUnavailable("response is not JSON") from e


async def _fetch(client: httpx.AsyncClient, url: str, max_bytes: int, accept: str) -> bytes:
    async with client.stream("GET", url, headers={"Accept": accept}) as response:
        if response.status_code == 404:
            raise _NotFound("HTTP 404")
        if response.status_code != 200:
            raise DocumentUnavailable(f"HTTP {response.status_code}")
        declared = response.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > max_bytes:
            raise DocumentUnavailable(f"response larger than {max_bytes} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise DocumentUnavailable(f"response larger than {max_bytes} bytes")
    return bytes(body)
