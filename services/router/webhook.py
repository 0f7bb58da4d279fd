"""Webhook delivery: one signed POST per attempt, with a retry schedule and dead letters.

The retry schedule is a list of delays (default in the spirit of Standard Webhooks:
immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with jitter; 429 and 503 answers'
Retry-After is honoured; 410 ends the delivery and disables the subscription; redirects are
not followed (a 3xx is a failed attempt). The outcome of every attempt is stored.

Every connection goes through :class:`~services.core.webhooks.connect.GuardedTransport`: the
host is resolved once, every address is checked against the :class:`UrlPolicy`, and the
connection goes to a checked address. Environment proxies are ignored (``trust_env=False``):
a proxy would connect on the broker's behalf, past those checks."""

from __future__ import annotations

import logging
import random
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from services.core import tracing
from services.core.settings import Settings
from services.core.webhooks import signing
from services.core.webhooks.connect import GuardedTransport
from services.core.webhooks.urls import (
    Resolve,
    UrlPolicy,
    WebhookUrlRefused,
    check_url_form,
)

log = logging.getLogger("isa_broker.router")

USER_AGENT = "isa-broker-webhooks/0.1"


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    retryable: bool
    retry_after: float | None = None  # seconds, from a 429 or 503 Retry-After header
    gone: bool = False  # 410: the receiver asks never to be called again


class WebhookSender:
    """Signed POSTs to webhook URLs that ``policy`` permits. ``resolve`` and ``ssl_context``
    replace the system resolver and the default CA bundle (tests)."""

    def __init__(
        self,
        timeout: float,
        policy: UrlPolicy,
        *,
        resolve: Resolve | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(policy, resolve=resolve, ssl_context=ssl_context),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        return cls(settings.webhooks.timeout_seconds, UrlPolicy.from_settings(settings))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def attempt(
        self,
        url: str,
        keys: list[str],
        delivery_id: str,
        body: bytes,
        timestamp: int,
        content_type: str = "application/cloudevents+json",
    ) -> AttemptResult:
        """POST once. ``keys`` are the subscription's signing keys (two during a rotation):
        each adds a signature to the ``webhook-signature`` header. An encrypted body is
        ``application/jose`` (services.core.crypto.recipient)."""
        headers = {
            "content-type": content_type,
            **signing.headers(keys, delivery_id, timestamp, body),
        }
        # W3C Trace Context: the attempt's span, when traces are on (services.core.tracing)
        trace = tracing.traceparent()
        if trace is not None:
            headers[tracing.TRACEPARENT] = trace
        started = time.perf_counter()
        try:
            # the URL's form (the policy may have changed since the subscription was made);
            # its addresses are checked on connecting, by the transport
            check_url_form(url, self._policy)
            response = await self._client.post(url, content=body, headers=headers)
        except WebhookUrlRefused as e:
            elapsed = (time.perf_counter() - started) * 1000
            return AttemptResult(False, None, e.detail, elapsed, True)
        except httpx.HTTPError as e:
            elapsed = (time.perf_counter() - started) * 1000
            return AttemptResult(False, None, describe_error(e, url), elapsed, True)
        elapsed = (time.perf_counter() - started) * 1000
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(True, code, None, elapsed, False)
        if 300 <= code < 400:
            error = f"redirect not followed (HTTP {code})"
            return AttemptResult(False, code, error, elapsed, True)
        if code == 410:  # Gone: stop, and stop this subscription
            return AttemptResult(False, code, "HTTP 410", elapsed, False, gone=True)
        retry_after = (
            parse_retry_after(response.headers.get("retry-after", ""), time.time())
            if code in (429, 503)
            else None
        )
        return AttemptResult(False, code, f"HTTP {code}", elapsed, True, retry_after)


def describe_error(error: httpx.HTTPError, url: str) -> str:
    """The exception's type and text, for the delivery's history; the URL's query string
    (which may carry a token) is blanked wherever it appears."""
    text = str(error)
    described = f"{type(error).__name__}: {text}" if text else type(error).__name__
    query = url.partition("?")[2].partition("#")[0]
    return described.replace(query, "[redacted]") if query else described


MAX_RETRY_AFTER = 24 * 3600.0


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date, RFC 9110
    s10.2.3), at most a day; None when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), MAX_RETRY_AFTER)


def next_delay(
    attempts: int, schedule: tuple[float, ...], retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds before the next attempt after ``attempts`` have failed, or None when the
    schedule is exhausted. Delays get +/-20% jitter so that many deliveries failing together
    do not retry together; a receiver's Retry-After is honoured when it asks for longer."""
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts]
    if delay > 0:
        delay *= rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
