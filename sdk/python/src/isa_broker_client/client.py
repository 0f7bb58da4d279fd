"""The broker's HTTP API for an agency, on ``httpx.AsyncClient``: :class:`BrokerClient`,
one client of one agency, made of the API's areas (:mod:`.publishing`, :mod:`.subscribing`,
:mod:`.receiving`) over one transport (:mod:`._transport`: tokens, retries, errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from .broker_keys import BROKER_KEYS_PATH, BrokerKeys
from .errors import BrokerUnreachable
from .publishing import Publishing
from .receiving import Receiving
from .subscribing import Subscribing


class BrokerClient(Publishing, Subscribing, Receiving):
    """One agency client of the broker at ``base_url`` (``https://isa-broker.example``).

    ``credentials`` is a :class:`~isa_broker_client.auth.ClientSecret` or
    :class:`~isa_broker_client.auth.PrivateKeyJwt`; ``scopes`` narrows the tokens to a subset
    of the client's scopes. ``retries`` and ``max_retry_wait`` bound the retries
    (:mod:`._transport`). Use it as an async context manager, or call :meth:`aclose`.
    ``transport`` (an ``httpx.MockTransport``, say) replaces the network in tests."""

    async def metadata(self) -> dict[str, Any]:
        """The authorisation server metadata (RFC 8414)."""
        body: dict[str, Any] = await self._public_json("/.well-known/oauth-authorization-server")
        return body

    async def broker_keys(
        self, *, thumbprints: Sequence[str] | None = None, refresh_seconds: float = 300.0
    ) -> BrokerKeys:
        """The broker's delivery-signing keys, fetched now from
        ``/.well-known/delivery-signing-keys.json`` and again (through this client) when a
        delivery names a key not held. With ``thumbprints`` (as the broker's operators give
        them out of band), a key with none of them is refused."""
        keys = BrokerKeys(
            None,
            url=self.base_url + BROKER_KEYS_PATH,
            allow_http=self.base_url.startswith("http://"),
            http=self._http,
            refresh_seconds=refresh_seconds,
        )
        try:
            await keys.arefresh()
        except httpx.TransportError as e:
            raise BrokerUnreachable(f"GET {BROKER_KEYS_PATH}: {type(e).__name__}") from e
        if thumbprints is not None:
            unknown = sorted(k for k, t in keys.thumbprints().items() if t not in thumbprints)
            if unknown:
                raise ValueError(f"broker keys {unknown} have none of the thumbprints given")
        return keys
