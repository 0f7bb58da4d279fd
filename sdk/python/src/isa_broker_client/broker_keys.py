"""The broker's delivery-signing public keys (``/.well-known/delivery-signing-keys.json``),
which every sealed delivery's signature must verify with (:mod:`.crypto`).

The broker rotates them (every 30 days by default): a next key is published before it signs
anything, and a retired key stays published as long as a record it signed can be on a
topic. So a ``kid`` not held means "fetch the set again", once per ``refresh_seconds``; the
set fetched replaces the one held, and a key the broker withdrew stops being accepted.
Fetches are https only (``allow_http`` for a local broker), follow no redirect and read at
most 64 KiB.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from .errors import BrokerKeysUnavailable

#: where the broker publishes the keys, under its public URL
BROKER_KEYS_PATH = "/.well-known/delivery-signing-keys.json"
#: the algorithm the broker signs deliveries with
SIG_ALG = "ES256"
KID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_JWKS_BYTES = 64 * 1024


def _signing_keys(jwks: Any) -> dict[str, ECKey]:
    """The P-256 public keys of a JWK set, by kid."""
    members = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(members, list) or not members:
        raise ValueError("a JWK set is a JSON object whose keys member is a non-empty array")
    found: dict[str, ECKey] = {}
    for jwk in members:
        if not isinstance(jwk, Mapping):
            raise ValueError("each member of keys must be a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not KID.match(kid):
            raise ValueError("each key needs a kid of 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        if "d" in jwk:
            raise ValueError(f"key {kid!r} holds a private key (member d)")
        if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
            raise ValueError(f"key {kid!r} is not an EC P-256 key ({SIG_ALG})")
        try:
            found[kid] = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y", "kid")})
        except (JoseError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"key {kid!r} is not a valid EC P-256 public key: {e}") from e
    return found


def _checked_url(url: str, allow_http: bool) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise ValueError(f"the broker keys URL must be https (http only when allowed): {url}")
    return url


def _jwks_of(response: httpx.Response) -> Any:
    response.raise_for_status()
    if len(response.content) > MAX_JWKS_BYTES:
        raise ValueError(f"the broker keys answer is larger than {MAX_JWKS_BYTES} bytes")
    return json.loads(response.content)


class BrokerKeys:
    """The broker's delivery-signing public keys, which every delivery's signature must
    verify with.

    Pin them: fetch the set once (:meth:`afetch`, or save it with :meth:`jwks`), compare
    :meth:`thumbprints` with the list the broker's operators give you, and load the saved
    file with :meth:`from_file` (``thumbprints=`` makes the comparison part of loading).
    Given ``url``, a delivery signed by a ``kid`` not held makes it fetch the set again
    (https unless ``allow_http``; no redirects), at most once per ``refresh_seconds``; the set
    fetched replaces the one held, so a key the broker withdrew stops being accepted. Without
    ``url`` the set never changes. ``http`` and ``sync_http`` are the clients the async and
    sync fetches use (by default, one made for each fetch)."""

    def __init__(
        self,
        jwks: Mapping[str, Any] | None = None,
        *,
        url: str | None = None,
        refresh_seconds: float = 300.0,
        allow_http: bool = False,
        http: httpx.AsyncClient | None = None,
        sync_http: httpx.Client | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if jwks is None and url is None:
            raise ValueError("give the broker's JWK set, its URL, or both")
        #: empty until fetched, when only the URL is given
        self._keys = _signing_keys(jwks) if jwks is not None else {}
        self.url = _checked_url(url, allow_http) if url is not None else None
        self.refresh_seconds = refresh_seconds
        self._http = http
        self._sync_http = sync_http
        self._timeout = timeout
        self._clock = clock
        self._refreshed: float | None = None  # never: an unknown kid is looked for at once

    @classmethod
    def from_file(
        cls, path: str | Path, *, thumbprints: Iterable[str] | None = None, **kw: Any
    ) -> BrokerKeys:
        """The JWK set saved in ``path``. With ``thumbprints`` (RFC 7638, as the broker's
        operators give them), every key in the file must have one of them."""
        keys = cls(json.loads(Path(path).read_text()), **kw)
        if thumbprints is not None:
            expected = set(thumbprints)
            unknown = sorted(k for k, t in keys.thumbprints().items() if t not in expected)
            if unknown:
                raise ValueError(f"{path}: keys {unknown} have none of the thumbprints given")
        return keys

    @classmethod
    async def afetch(
        cls,
        url: str,
        *,
        allow_http: bool = False,
        http: httpx.AsyncClient | None = None,
        **kw: Any,
    ) -> BrokerKeys:
        """The set fetched from ``url`` now (the broker's
        ``/.well-known/delivery-signing-keys.json``), refreshed from there later."""
        keys = cls(None, url=url, allow_http=allow_http, http=http, **kw)
        await keys.arefresh()
        return keys

    @classmethod
    def fetch(cls, url: str, *, allow_http: bool = False, **kw: Any) -> BrokerKeys:
        """:meth:`afetch` for synchronous code."""
        keys = cls(None, url=url, allow_http=allow_http, **kw)
        keys.refresh()
        return keys

    def thumbprints(self) -> dict[str, str]:
        """Each key's RFC 7638 SHA-256 thumbprint, by kid."""
        return {kid: key.thumbprint() for kid, key in self._keys.items()}

    def jwks(self) -> dict[str, Any]:
        """The keys held, as a JWK set (to save and pin them)."""
        return {"keys": [dict(k.as_dict(private=False)) for k in self._keys.values()]}

    def refresh(self) -> None:
        """Fetch the set from ``url`` now and hold it instead."""
        url = self._url()
        self._refreshed = self._clock()
        if self._sync_http is not None:
            response = self._sync_http.get(url, timeout=self._timeout, follow_redirects=False)
        else:
            response = httpx.get(url, timeout=self._timeout, follow_redirects=False)
        self._keys = _signing_keys(_jwks_of(response))

    async def arefresh(self) -> None:
        """:meth:`refresh`, awaiting the fetch."""
        url = self._url()
        self._refreshed = self._clock()
        if self._http is not None:
            response = await self._http.get(url, timeout=self._timeout, follow_redirects=False)
        else:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(url, follow_redirects=False)
        self._keys = _signing_keys(_jwks_of(response))

    def get(self, kid: str) -> ECKey | None:
        """The key named ``kid``, looking for an unknown one again at ``url`` when the last
        look was ``refresh_seconds`` ago."""
        if kid not in self._keys and self._due():
            try:
                self.refresh()
            except (httpx.HTTPError, ValueError) as e:
                raise self._unavailable(kid, e) from e
        return self._keys.get(kid)

    async def aget(self, kid: str) -> ECKey | None:
        """:meth:`get`, awaiting the fetch."""
        if kid not in self._keys and self._due():
            try:
                await self.arefresh()
            except (httpx.HTTPError, ValueError) as e:
                raise self._unavailable(kid, e) from e
        return self._keys.get(kid)

    def _url(self) -> str:
        if self.url is None:
            raise ValueError("these broker keys have no URL to refresh from")
        return self.url

    def _due(self) -> bool:
        if self.url is None:
            return False
        return self._refreshed is None or self._clock() - self._refreshed >= self.refresh_seconds

    def _unavailable(self, kid: str, cause: Exception) -> BrokerKeysUnavailable:
        return BrokerKeysUnavailable(
            f"signed with key {kid!r}, not among the broker keys held; fetching them again "
            f"from {self.url} failed: {type(cause).__name__}"
        )
