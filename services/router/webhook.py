"""Webhook delivery: one signed POST per attempt, with a retry schedule and dead letters.

Retries here are deliberately simple (exponential from a base delay, a fixed number of
attempts); the outcome of every attempt is stored."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

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


class WebhookSender:
    def __init__(self, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def attempt(
        self, url: str, secret: str, delivery_id: str, body: bytes, timestamp: int
    ) -> AttemptResult:
        headers = {
            "content-type": "application/cloudevents+json",
            **signing.headers([secret], delivery_id, timestamp, body),
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
        # 410 Gone: the receiver asks us to stop; everything else may be transient.
        return AttemptResult(False, code, f"HTTP {code}", elapsed, code != 410)


def backoff(attempt: int, base: float) -> float:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1)."""
    return float(base * 2 ** (attempt - 1))


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
