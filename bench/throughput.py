"""Delivery throughput under load on the embedded system (one process): N release notices
posted by C concurrent workers about P persons, every entitled party subscribed by webhook.
Prints intake and delivery rates; the baseline, measured in the same run, is the rate of
bare signed webhook POSTs from the same sender to the same receivers.

``--compare-encryption`` runs the load with the shared topics' encryption on (the default)
and off, alternately, R times each on fresh systems, and prints the medians and ratios,
after the cost of sealing and opening one record.

    .venv/bin/python bench/throughput.py [--messages N] [--profile]
        [--compare-encryption [--rounds R]]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import pstats
import statistics
import tempfile
import time
from pathlib import Path

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


async def subscribe_all(clients: dict[str, AgencyClient], receivers: Receivers) -> None:
    """Every party but the sender subscribes to release notices by webhook (the parties the
    agreements do not let receive them are refused, and receive nothing)."""
    for party, client in clients.items():
        if party != SENDER:
            await client.request(
                "POST",
                "/v1/subscriptions",
                json={
                    "message_types": ["release-notice"],
                    "webhook": {"url": receivers.url(party)},
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


async def main(n: int, workers: int, *, encryption: bool = True) -> tuple[float, float]:
    """Run the load once; returns (intake messages/s, deliveries/s)."""
    with tempfile.TemporaryDirectory() as tmp:
        system = await System(
            settings_for_local(
                Path(tmp),
                rate_limit_per_minute=0,
                token_rate_limit_per_minute=0,
                relay_poll_seconds=0.2,
                kafka_encryption=encryption,
            )
        ).start()
        receivers = await Receivers(verify=False).start()
        try:
            assert system.runtime is not None
            creds = await ensure_demo_clients(system.runtime)
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            await subscribe_all(clients, receivers)
            base = await baseline(receivers, 2000)
            started = time.perf_counter()
            _, expected = await post_notices(clients[SENDER], n, workers)
            intake = time.perf_counter() - started
            while len(receivers.received) < expected:
                await asyncio.sleep(0.05)
            total = time.perf_counter() - started
            state = "on" if encryption else "off"
            print(f"messages {n}, deliveries {expected}, {workers} concurrent senders")
            print(f"topic encryption {state}")
            print(f"intake        {n / intake:8.1f} messages/s")
            print(f"delivered     {expected / total:8.1f} deliveries/s (POST of first → last)")
            print(f"baseline      {base:8.1f} bare signed webhook POSTs/s (16 concurrent)")
            print(f"ratio         {expected / total / base:8.3f} of the baseline")
            for c in clients.values():
                await c.aclose()
            return n / intake, expected / total
        finally:
            await receivers.stop()
            await system.stop()


def seal_and_open_cost(rounds: int = 5000) -> tuple[float, float]:
    """Microseconds to seal and to open one release-notice record (file KEKs, warm)."""
    import json

    from services.core.crypto.envelope import Envelope
    from services.core.crypto.kek import FileKeyEncryptionKeys
    from services.core.kafka.encryption import TopicEncryption

    with tempfile.TemporaryDirectory() as tmp:
        enc = TopicEncryption(Envelope(FileKeyEncryptionKeys(Path(tmp) / "kek")))
        value = json.dumps(release_notice(datetime.date.today())).encode()
        headers = [("ce_id", b"0b9c3a52-5f0e-4f7e-9d27-2d0c8b1a0001")]
        sealed = enc.seal("isa.release-notice.v1", value, headers)
        started = time.perf_counter()
        for _ in range(rounds):
            sealed = enc.seal("isa.release-notice.v1", value, headers)
        seal = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for _ in range(rounds):
            enc.open_("isa.release-notice.v1", *sealed[:1], sealed[1])
        opened = (time.perf_counter() - started) / rounds * 1e6
    return seal, opened


async def compare_encryption(n: int, workers: int, rounds: int) -> None:
    """The same load with the shared topics encrypted and in clear, alternately, ``rounds``
    times each on fresh systems; medians compared."""
    seal, opened = seal_and_open_cost()
    print(f"seal {seal:.1f} µs, open {opened:.1f} µs per release-notice record")
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(rounds):
        for encryption in (True, False):
            print()
            runs[encryption].append(await main(n, workers, encryption=encryption))
    on = tuple(statistics.median(r[i] for r in runs[True]) for i in (0, 1))
    off = tuple(statistics.median(r[i] for r in runs[False]) for i in (0, 1))
    print()
    print(f"medians of {rounds} run(s) each")
    print("topic encryption      on        off    on/off")
    print(f"intake/s        {on[0]:8.1f}   {off[0]:8.1f}   {on[0] / off[0]:6.3f}")
    print(f"deliveries/s    {on[1]:8.1f}   {off[1]:8.1f}   {on[1] / off[1]:6.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--compare-encryption",
        action="store_true",
        help="run with topic encryption on and off, alternately, and print the ratios",
    )
    ap.add_argument("--rounds", type=int, default=3, help="runs of each with --compare-encryption")
    a = ap.parse_args()
    if a.compare_encryption:
        asyncio.run(compare_encryption(a.messages, a.workers, a.rounds))
    elif a.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(main(a.messages, a.workers))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        asyncio.run(main(a.messages, a.workers))
