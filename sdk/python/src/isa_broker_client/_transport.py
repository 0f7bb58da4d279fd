"""The transport under every API call: the ``httpx.AsyncClient``, the access token, the
retries, and the translation of error answers into :mod:`isa_broker_client.errors`.

Every call takes an access token from :class:`~isa_broker_client.auth.TokenSource` (fetched
once, refreshed before it expires, fetched again once if the broker answers ``401``) and
turns an error answer into the exception of its problem ``code``.

Retries are few and only where repeating cannot do anything twice: a ``429`` (refused before
the request was looked at) is waited out and repeated; a ``503`` or no answer at all is
repeated for reads, acknowledgements (idempotent at the broker) and publishes (which always
carry an ``Idempotency-Key``, so the broker answers a repeat with the first ``202``). Waits
follow ``Retry-After`` up to ``max_retry_wait`` seconds; a longer one is raised to you.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from ._version import __version__
from .auth import Credentials, TokenSource
from .errors import BrokerUnreachable, error_from_response, retry_after_seconds

Params = list[tuple[str, str | int | float | bool | None]]


def segment(value: str) -> str:
    """An id as one path segment, whatever it holds."""
    return urllib.parse.quote(value, safe="")


def utc(value: dt.datetime) -> str:
    """A date-time as the broker's queries want it: UTC, ending in ``Z``."""
    if value.tzinfo is None:
        raise ValueError("give an aware datetime (with tzinfo), e.g. datetime.now(UTC)")
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def params_of(**values: Any) -> Params:
    """Query parameters without the ``None`` ones, date-times in UTC."""
    out: Params = []
    for name, value in values.items():
        if value is None:
            continue
        out.append((name, utc(value) if isinstance(value, dt.datetime) else value))
    return out


def _backoff(attempt: int) -> float:
    """Seconds before repeat ``attempt + 1`` when the broker named no wait: 1, 2, 4, 8..."""
    return min(2.0**attempt, 8.0)


class Transport:
    """The connection to the broker at ``base_url`` as one client (see :class:`BrokerClient`
    for the arguments)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        scopes: Sequence[str] | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"user-agent": f"isa-broker-client-python/{__version__}"},
        )
        self.tokens = TokenSource(
            self._http,
            self.base_url + "/oauth/token",
            credentials,
            scopes=tuple(scopes) if scopes else None,
        )
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._timeout = timeout
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = False,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One authenticated call to ``path`` (``/v1/...``), for routes this class does not
        wrap. ``repeatable``: the call may be sent again after a ``503`` or no answer (see the
        module docstring). Raises the :class:`~isa_broker_client.errors.ProblemError` of an
        error answer, or :class:`~isa_broker_client.errors.BrokerUnreachable`."""
        url = self.base_url + path
        attempt = 0
        refreshed = False
        while True:
            token = await self.tokens.token()
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers={**(headers or {}), "authorization": f"Bearer {token.value}"},
                    timeout=timeout if timeout is not None else self._timeout,
                )
            except httpx.TransportError as e:
                if repeatable and attempt < self.retries:
                    await self._sleep(_backoff(attempt))
                    attempt += 1
                    continue
                raise BrokerUnreachable(f"{method} {path}: {type(e).__name__}") from e
            status = response.status_code
            if status == 401 and not refreshed:  # expired or revoked: one new token
                self.tokens.invalidate(token)
                refreshed = True
                continue
            if (status == 429 or (status == 503 and repeatable)) and attempt < self.retries:
                asked = retry_after_seconds(response.headers.get("retry-after"))
                wait = float(asked) if asked is not None else _backoff(attempt)
                if wait <= self.max_retry_wait:
                    attempt += 1
                    await self._sleep(wait)
                    continue
            if status >= 400:
                raise error_from_response(response)
            return response

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self.request(method, path, **kw)).json()

    async def _public_json(self, path: str) -> Any:
        """An unauthenticated ``GET`` (the ``/.well-known`` documents)."""
        try:
            response = await self._http.get(self.base_url + path)
        except httpx.TransportError as e:
            raise BrokerUnreachable(f"GET {path}: {type(e).__name__}") from e
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.json()
