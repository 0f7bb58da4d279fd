"""Webhook delivery: one signed POST per attempt, with a retry schedule and dead letters.

The retry schedule is a list of delays (default in the spirit of Standard Webhooks:
immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with jitter; 429 and 503 answers'
Retry-After is honoured; 410 ends the delivery and disables the subscription. The outcome of
every attempt is stored."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from services.core.webhooks import signing

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
    def __init__(self, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def attempt(
        self, url: str, keys: list[str], delivery_id: str, body: bytes, timestamp: int
    ) -> AttemptResult:
        """POST once. ``keys`` are the subscription's signing keys (two during a rotation):
        each adds a signature to the ``webhook-signature`` header."""
        headers = {
            "content-type": "application/cloudevents+json",
            **signing.headers(keys, delivery_id, timestamp, body),
        }
        started = time.perf_counter()
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            elapsed = (time.perf_counter() - started) * 1000
            return AttemptResult(False, None, type(e).__name__, elapsed, True)
        elapsed = (time.perf_counter() - started) * 1000
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(True, code, None, elapsed, False)
        if code == 410:  # Gone: stop, and stop this subscription
            return AttemptResult(False, code, "HTTP 410", elapsed, False, gone=True)
        retry_after = (
            parse_retry_after(response.headers.get("retry-after", ""), time.time())
            if code in (429, 503)
            else None
        )
        return AttemptResult(False, code, f"HTTP {code}", elapsed, True, retry_after)


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
