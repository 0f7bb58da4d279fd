"""Delivery throughput under load on the embedded system (one process): N release notices
posted by C concurrent workers about P persons, every entitled party subscribed by webhook.
Prints intake and delivery rates; the baseline, measured in the same run, is the rate of
bare signed webhook POSTs from the same sender to the same receivers.

The load with the data protection (topic encryption, the disclosure log's sealer) on and off
is compared by ``data_protection.py``, which runs ``run_load`` here.

    .venv/bin/python bench/throughput.py [--messages N] [--workers C] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.crypto import recipient
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.demo.scenario import release_notice
from services.router.webhook import WebhookSender
from services.system import System, ensure_demo_clients, settings_for_local

SENDER = "hmp-northgate"


async def baseline(receivers: Receivers, n: int) -> float:
    sender = WebhookSender.from_settings(settings_for_local(Path()))  # loopback allow-listed
    body = b'{"specversion":"1.0","data":{}}'
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await sender.attempt(receivers.url("baseline"), ["whsec_" + "A" * 32], f"b{i}", body, 0)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    await sender.aclose()
    receivers.received.clear()
    return n / (time.perf_counter() - started)


async def subscribe_all(
    clients: dict[str, AgencyClient], receivers: Receivers, *, encrypt: bool = False
) -> None:
    """Every party but the sender subscribes to release notices by webhook (the parties the
    agreements do not let receive them are refused, and receive nothing). With ``encrypt``
    each first registers a public key and asks for bodies encrypted to it (JWE)."""
    for party, client in clients.items():
        if party != SENDER:
            if encrypt:
                _, public = recipient.generate_key(f"{party}-bench")
                await client.request("POST", "/v1/encryption-keys", json={"jwk": public})
            await client.request(
                "POST",
                "/v1/subscriptions",
                json={
                    "message_types": ["release-notice"],
                    "webhook": {"url": receivers.url(party)},
                    "encrypt": encrypt,
                },
            )


async def post_notices(prison: AgencyClient, n: int, workers: int) -> tuple[float, int]:
    """n release notices about 200 people from ``workers`` concurrent senders; returns
    intake messages/s and the deliveries the decisions call for."""
    queue = list(range(n))
    expected = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal expected
        while queue:
            i = queue.pop()
            body = release_notice(datetime.date.today())
            k = i % 200
            body["person"].update(
                prison_number=f"Z{k:04d}XX", pnc_id=f"26/{k:06d}X", crn=f"X{k:06d}"
            )
            r = await prison.publish("release-notice", body)
            assert r.status_code == 202, r.text
            expected += len(r.json()["recipients"])

    await asyncio.gather(*(worker() for _ in range(workers)))
    return n / (time.perf_counter() - started), expected


@dataclass(frozen=True)
class Load:
    """One run of the load: its size and the rates measured."""

    messages: int
    deliveries: int
    workers: int
    intake: float  # messages accepted per second (first POST → last 202)
    delivered: float  # deliveries per second (first POST → last webhook received)
    baseline: float | None  # bare signed webhook POSTs per second, when measured


async def run_load(
    n: int,
    workers: int,
    *,
    baseline_posts: int = 2000,
    before_stop: Callable[[System], Awaitable[None]] | None = None,
    encrypt_bodies: bool = False,
    **overrides: Any,
) -> Load:
    """Run the load once on a fresh embedded system built with ``overrides`` (Settings
    fields); ``baseline_posts`` bare webhook POSTs first (0: none); ``before_stop`` is
    awaited with the system once every delivery has arrived, outside the timings;
    ``encrypt_bodies`` has every webhook body encrypted to its recipient."""
    with tempfile.TemporaryDirectory() as tmp:
        system = await System(
            settings_for_local(
                Path(tmp),
                rate_limit_per_minute=0,
                token_rate_limit_per_minute=0,
                relay_poll_seconds=0.2,
                **overrides,
            )
        ).start()
        receivers = await Receivers(verify=False).start()
        clients: dict[str, AgencyClient] = {}
        try:
            assert system.runtime is not None
            creds = await ensure_demo_clients(system.runtime)
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            await subscribe_all(clients, receivers, encrypt=encrypt_bodies)
            base = await baseline(receivers, baseline_posts) if baseline_posts else None
            started = time.perf_counter()
            intake, expected = await post_notices(clients[SENDER], n, workers)
            while len(receivers.received) < expected:
                await asyncio.sleep(0.05)
            total = time.perf_counter() - started
            if before_stop is not None:
                await before_stop(system)
            return Load(n, expected, workers, intake, expected / total, base)
        finally:
            for c in clients.values():
                await c.aclose()
            await receivers.stop()
            await system.stop()


async def main(n: int, workers: int) -> None:
    """Run the load once with the default settings and print the rates."""
    load = await run_load(n, workers)
    assert load.baseline is not None
    print(f"messages {n}, deliveries {load.deliveries}, {workers} concurrent senders")
    print(f"intake        {load.intake:8.1f} messages/s")
    print(f"delivered     {load.delivered:8.1f} deliveries/s (POST of first → last)")
    print(f"baseline      {load.baseline:8.1f} bare signed webhook POSTs/s (16 concurrent)")
    print(f"ratio         {load.delivered / load.baseline:8.3f} of the baseline")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(main(a.messages, a.workers))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        asyncio.run(main(a.messages, a.workers))
