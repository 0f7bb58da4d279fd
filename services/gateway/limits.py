"""Input limits and rate limits: whatever a client sends, it gets a 4xx problem, never a 500.

:class:`RequestLimits` is a pure ASGI middleware in front of every route. It checks, in order:

1. each header value is at most :data:`MAX_HEADER_BYTES` long, else 431 ``header_too_large``;
2. the decoded path and query hold no control character (``%00`` and the like; no store
   accepts U+0000), else 400 ``invalid_request``;
3. a ``Content-Length`` is a number no larger than ``max_body_bytes``, else 400, or 413
   ``payload_too_large`` at once, before a byte of the body is read;
4. under ``/v1/`` a request with a body says ``Content-Type: application/json``, optionally
   with ``charset=utf-8``, else 415 ``unsupported_media_type``. Other types, ``+json``
   suffixes included, are refused: ``application/merge-patch+json`` or
   ``application/problem+json`` carry semantics this API does not implement, and JSON is
   UTF-8 only (RFC 8259 s8.1). ``/oauth/token`` checks its own form content type;
5. the body is read and counted as it streams (chunked or not) and cut off with 413 as soon
   as it passes ``max_body_bytes``; it is buffered, so buffering is bounded by that limit;
6. under ``/v1/``: nesting at most ``max_json_depth`` deep, else 400 ``json_too_deep``,
   found by :func:`nesting_exceeds` (strings stripped, brackets counted) before any parser
   sees the body, since Python's ``json`` recurses once per level and dies of RecursionError;
7. under ``/v1/``: well-formed JSON (UTF-8, no NaN/Infinity, no lone surrogate, numbers the
   parsers accept) without U+0000 in any string, else 422 ``validation_failed`` naming the
   cause and, for U+0000, each field by JSON pointer.

Only then does the application run, reading the buffered body as one message.

:class:`RateLimiter` is a token bucket per key. The gateway keeps three (see
:class:`RateLimits`): per client on ``/v1`` (applied after authentication, by the
``CurrentAgency`` dependency), and per claimed client id and per remote address on the token
endpoint. Buckets live in this process's memory: with several gateway replicas each enforces
the limit on its own share of the traffic, so a client may get up to replicas x the limit.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic_core import from_json
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.errors import (
    InvalidRequest,
    IsaBrokerError,
    JsonTooDeep,
    MalformedJson,
    PayloadTooLarge,
    RateLimited,
    RequestHeaderTooLarge,
    UnsupportedMediaType,
)
from services.core.settings import Settings

from .problems import render

#: Longest value of any one request header (an access token is well under 2 KiB).
MAX_HEADER_BYTES = 8 * 1024
JSON_MEDIA_TYPE = "application/json"

Monotonic = Callable[[], float]

# -- the middleware ------------------------------------------------------------------------------


class RequestLimits:
    """Pure ASGI middleware enforcing the limits in the module docstring. Refusals are RFC 9457
    problems rendered by :func:`services.gateway.problems.render`, like every other error."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_json_depth: int,
        json_prefix: str = "/v1/",
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.json_prefix = json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._admit(scope, receive)
        except IsaBrokerError as e:
            await render(e)(scope, receive, send)
            return
        if body is None:  # the client went away while sending
            return
        await self.app(scope, _replay(body, receive), send)

    async def _admit(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, once every limit is met; None if the client disconnected."""
        _check_headers(scope)
        _check_target(scope)
        headers = Headers(scope=scope)
        declared = _content_length(headers.get("content-length"))
        if declared is not None and declared > self.max_body_bytes:
            raise self._too_large()
        speaks_json = str(scope["path"]).startswith(self.json_prefix)
        announced = bool(declared) or "transfer-encoding" in headers
        if speaks_json and announced:
            _check_media_type(headers.get("content-type"))
        body = await self._read(receive)
        if body and speaks_json:
            if not announced:  # a body without Content-Length or Transfer-Encoding (HTTP/2)
                _check_media_type(headers.get("content-type"))
            self._check_json(body)
        return body

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the body exceeds {self.max_body_bytes} bytes", max_bytes=self.max_body_bytes
        )

    def _check_json(self, body: bytes) -> None:
        limit = self.max_json_depth
        if nesting_exceeds(body, limit):
            raise JsonTooDeep(
                f"the JSON body is nested more than {limit} levels deep", max_depth=limit
            )
        try:
            value = from_json(body, allow_inf_nan=False)
        except ValueError as e:  # the parser's message names a position, never content
            raise MalformedJson(
                f"the body is not valid JSON: {e}",
                [{"pointer": "", "code": "json_invalid", "message": str(e)}],
            ) from e
        if b"\\u0000" in body:
            pointers = list(_nul_pointers(value, ""))
            if pointers:
                raise MalformedJson(
                    "U+0000 is not accepted in a string: "
                    + ", ".join(p or "/" for p in pointers[:5]),
                    [
                        {"pointer": p, "code": "string_nul", "message": "contains U+0000"}
                        for p in pointers
                    ],
                )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the application the buffered body, then passes through (so
    the application still hears ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _check_headers(scope: Scope) -> None:
    for name, value in scope["headers"]:
        if len(value) > MAX_HEADER_BYTES:
            header = name.decode("latin-1")
            raise RequestHeaderTooLarge(
                f"the {header} header is longer than {MAX_HEADER_BYTES} bytes",
                header=header,
                max_bytes=MAX_HEADER_BYTES,
            )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")


def _check_target(scope: Scope) -> None:
    query: bytes = scope.get("query_string", b"")
    if _CONTROL.search(str(scope["path"])) or _CONTROL_BYTES.search(unquote_to_bytes(query)):
        raise InvalidRequest("the request path or query contains a control character")


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise InvalidRequest("Content-Length must be a non-negative integer")
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18  # beyond any limit, without int()'s


def _check_media_type(value: str | None) -> None:
    if value is None or not is_json_media_type(value):
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON_MEDIA_TYPE} (optionally with charset=utf-8)",
            expected=JSON_MEDIA_TYPE,
        )


def is_json_media_type(value: str) -> bool:
    """``application/json``, with no charset or ``charset=utf-8`` (case-insensitive)."""
    media, _, params = value.partition(";")
    if media.strip().lower() != JSON_MEDIA_TYPE:
        return False
    for param in params.split(";"):
        name, _, arg = param.partition("=")
        if name.strip().lower() == "charset" and arg.strip().strip('"').lower() != "utf-8":
            return False
    return True


# -- JSON depth, without parsing -----------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")


def nesting_exceeds(text: bytes, limit: int) -> bool:
    """Whether the arrays and objects of a JSON text nest more than ``limit`` deep.

    Strings are removed first (so brackets inside them do not count), every other byte but
    brackets dropped, then innermost ``()`` pairs removed ``limit`` times: a pair left over
    nests deeper. All of it runs at C speed (``re`` and ``bytes`` methods), about ``limit``
    passes over the body at worst. Exact for balanced input; unbalanced input is not JSON,
    and counts as too deep only when more than ``limit`` brackets are left open (the parser,
    whose recursion is bounded, reports the rest as malformed)."""
    brackets = _STRING.sub(b"", text).translate(_AS_PARENS, _NOT_BRACKET)
    for _ in range(limit):
        if b"()" not in brackets:
            break
        brackets = brackets.replace(b"()", b"")
    return b"()" in brackets or brackets.count(b"(") > limit


def _nul_pointers(value: Any, pointer: str) -> Iterator[str]:
    """JSON pointers (RFC 6901) of the strings and keys that hold U+0000. Recursion is
    bounded by the depth limit checked before parsing."""
    if isinstance(value, str):
        if "\x00" in value:
            yield pointer
    elif isinstance(value, dict):
        for key, item in value.items():
            here = pointer + "/" + key.replace("~", "~0").replace("/", "~1")
            if "\x00" in key:
                yield here.replace("\x00", "\\u0000")
            yield from _nul_pointers(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_pointers(item, f"{pointer}/{index}")


# -- rate limits ---------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per key: ``per_minute`` tokens a minute, holding at most ``burst``
    (default a tenth of a minute's allowance, at least 1). A full bucket is the same as no
    bucket, so buckets idle long enough to refill are dropped; beyond ``max_keys`` the least
    recently used is dropped too (forgiving what it owed). ``per_minute=0`` disables it.

    Not thread-safe: call it from the event loop only (``async`` dependencies, handlers)."""

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        clock: Monotonic = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self.burst = max(1, per_minute // 10) if burst is None else max(1, burst)
        self._rate = per_minute / 60.0  # tokens a second
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend a token of ``key``'s bucket and return 0.0; or, if it has none, spend
        nothing and return the seconds until it will have one."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        state = self._buckets.pop(key, None)
        tokens = float(self.burst)
        if state is not None:
            tokens = min(tokens, state[0] + max(0.0, now - state[1]) * self._rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens, now)  # the most recently used goes last
        self._evict(now)
        return wait

    def check(self, key: str, whose: str) -> None:
        """:meth:`take`, raising :class:`RateLimited` (with whole seconds, at least 1) when
        ``key`` is over its limit. ``whose`` finishes the sentence "more than N requests a
        minute ..."."""
        wait = self.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"more than {self.per_minute} requests a minute {whose}; retry in {seconds} s",
                retry_after=seconds,
            )

    def _evict(self, now: float) -> None:
        # Ordered by last use, so once the oldest bucket is not idle no other one is.
        idle_after = self.burst / self._rate
        while self._buckets:
            key, (_, at) = next(iter(self._buckets.items()))
            if now - at < idle_after and len(self._buckets) <= self._max_keys:
                return
            del self._buckets[key]


@dataclass(frozen=True)
class RateLimits:
    """The gateway's limiters, built from :class:`Settings`.

    * ``clients``: every ``/v1`` request, per authenticated client id,
      ``rate_limit_per_minute`` with bursts of a tenth of it;
    * ``token_clients``: token requests per claimed (not yet verified) client id,
      ``token_rate_limit_per_minute`` with bursts of a tenth of it. Failed attempts count
      too: that is what slows guessing a client's secret, at the price that someone who
      knows a client id can make that client wait;
    * ``token_addresses``: token requests per remote address, ``token_rate_limit_per_minute``
      with bursts of a whole minute's allowance, since one address often fronts many clients
      (an agency's proxy, a NAT) that fetch tokens at the same moment. The address is the
      ASGI client address: behind a reverse proxy run uvicorn with ``--proxy-headers`` and
      ``--forwarded-allow-ips`` so that it is the caller's, not the proxy's.
    """

    clients: RateLimiter
    token_clients: RateLimiter
    token_addresses: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings, clock: Monotonic = time.monotonic) -> RateLimits:
        token = settings.http.token_rate_limit_per_minute
        return cls(
            clients=RateLimiter(settings.http.rate_limit_per_minute, clock=clock),
            token_clients=RateLimiter(token, clock=clock),
            token_addresses=RateLimiter(token, burst=token, clock=clock),
        )
