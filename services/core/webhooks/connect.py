"""The connection path of webhook deliveries, keeping to what :mod:`.urls` allows: each new
connection resolves the host once, every address is checked with
:func:`~.urls.refusal_reason`, and the socket goes to a checked address by number, so a DNS
answer that changes between the check and the connection (rebinding) cannot reach an
unchecked address. TLS still verifies the certificate against the host name: httpcore takes
the SNI and verified name from the request's origin, not from the address connected to.

Errors::

    httpcore.ConnectError
    └── AddressRefused       raised in the guarded backend; httpx.ConnectError at the client
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from .urls import IPAddress, Resolve, UrlPolicy, _ip_literal, _judge, resolve_host


class AddressRefused(httpcore.ConnectError):
    """A connection to a refused address was not made. Text: ``address refused: <why>``."""


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host once per connection, refuses (:class:`AddressRefused`) unless every
    address passes :func:`refusal_reason`, then connects to a checked address by number:
    ``backend`` (default anyio) never sees the host name, so cannot resolve it again."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        resolve: Resolve | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolve or resolve_host
        self._backend = backend or httpcore.AnyIOBackend()

    async def _checked_addresses(
        self, host: str, port: int, timeout: float | None = None
    ) -> list[IPAddress]:
        literal = _ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                async with asyncio.timeout(timeout):
                    addresses = list(await self._resolve(host, port))
            except TimeoutError as e:
                raise httpcore.ConnectTimeout(f"{host} did not resolve in time") from e
            except OSError as e:
                raise httpcore.ConnectError(f"{host} does not resolve ({e.strerror or e})") from e
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        for ip in addresses:
            judged = _judge(ip, self._policy)
            if judged is not None:
                where = str(ip) if literal else f"{host} resolves to {ip}"
                raise AddressRefused(f"address refused: {judged[0]}{judged[1]} ({where})")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        addresses = await self._checked_addresses(host, port, timeout)
        failure: Exception = httpcore.ConnectError(f"{host} could not be reached")
        for ip in addresses:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"{host} could not be reached in time")
            try:
                return await self._backend.connect_tcp(
                    str(ip),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("address refused: webhooks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


#: httpx's own defaults: 100 connections, 20 kept alive for 5 seconds
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# httpcore's exceptions as httpx's, most specific first (as httpx's own transport does)
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as e:
        for core_error, httpx_error in _HTTPX_ERRORS:
            if isinstance(e, core_error):
                raise httpx_error(str(e)) from e
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpx_errors():
                await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection goes through :class:`GuardedNetworkBackend`
    (httpx's own transport cannot be given a network backend). No proxy: one would connect
    on the broker's behalf, past the checks."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        resolve: Resolve | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy, resolve=resolve, backend=backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):
            raise TypeError("httpcore returned a synchronous stream to an async transport")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
