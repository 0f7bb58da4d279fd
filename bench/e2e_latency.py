"""Latency of one release notice through the embedded system, against baselines measured
in the same run on the same machine.

    .venv/bin/python bench/e2e_latency.py [--messages 200]

Prints, for N sequential messages: the gateway's intake (POST -> 202) against a bare
authenticated GET (baseline: HTTP + token check), and publish -> webhook received against a
bare Kafka produce -> consume round trip (baseline: the broker hop alone)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.demo.scenario import release_notice
from services.system import System, ensure_demo_clients, settings_for_local


def _summary(name: str, samples: list[float]) -> float:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"  {name:<38} p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms")
    return p50


async def kafka_round_trip(system: System, n: int) -> list[float]:
    assert system.runtime is not None
    profile = system.runtime.kafka
    producer = AIOKafkaProducer(**profile.producer_kwargs())
    consumer = AIOKafkaConsumer(**profile.consumer_kwargs(f"bench-{uuid.uuid4().hex}"))
    await producer.start()
    await consumer.start()
    # a private topic so the router does not see these records
    admin = AIOKafkaAdminClient(bootstrap_servers=profile.bootstrap_servers)
    await admin.start()
    bench_topic = f"{profile.topic_prefix}.bench.{uuid.uuid4().hex[:6]}"
    await admin.create_topics([NewTopic(bench_topic, 1, 1)])
    await admin.close()
    consumer.subscribe([bench_topic])
    await producer.send_and_wait(bench_topic, b"warm-up")
    await consumer.getone()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await producer.send_and_wait(bench_topic, b"x" * 1500)
        await consumer.getone()
        out.append(time.perf_counter() - t)
    await producer.stop()
    await consumer.stop()
    return out


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        receivers = await Receivers(verify=False).start()
        system = await System(
            settings_for_local(
                Path(tmp),
                rate_limit_per_minute=0,
                token_rate_limit_per_minute=0,
                relay_poll_seconds=1.0,
            )
        ).start()
        try:
            assert system.runtime is not None
            creds = await ensure_demo_clients(system.runtime)
            prison = AgencyClient(
                system.gateway_url,
                creds["hmp-northgate"]["client_id"],
                creds["hmp-northgate"]["client_secret"],
            )
            vawg = AgencyClient(
                system.gateway_url,
                creds["eastborough-vawg"]["client_id"],
                creds["eastborough-vawg"]["client_secret"],
            )
            await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))
            body = release_notice(datetime.date.today())
            await prison.publish("release-notice", body)  # warm-up
            await receivers.wait_for({"eastborough-vawg"}, 30)

            baseline_http, intake, end_to_end = [], [], []
            for _ in range(n):
                t = time.perf_counter()
                await vawg.request("GET", "/v1/subscriptions")
                baseline_http.append(time.perf_counter() - t)
            for i in range(n):
                before = len(receivers.for_party("eastborough-vawg"))
                t = time.perf_counter()
                r = await prison.publish("release-notice", body)
                intake.append(time.perf_counter() - t)
                assert r.status_code == 202, r.text
                while len(receivers.for_party("eastborough-vawg")) <= before:
                    await asyncio.sleep(0.001)
                end_to_end.append(time.perf_counter() - t)
                if i % 50 == 49:
                    print(f"  ... {i + 1}/{n}", flush=True)
            kafka = await kafka_round_trip(system, n)

            print(f"\n{n} sequential release notices, embedded system, one process:")
            b1 = _summary("baseline: authenticated GET", baseline_http)
            i1 = _summary("intake POST -> 202", intake)
            b2 = _summary("baseline: Kafka produce -> consume", kafka)
            e1 = _summary("POST -> webhook received", end_to_end)
            print(f"\n  intake / authenticated GET      {i1 / b1:6.1f}x")
            print(f"  end to end / Kafka round trip  {e1 / b2:6.1f}x")
            await prison.aclose()
            await vawg.aclose()
        finally:
            await system.stop()
            await receivers.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    asyncio.run(main(parser.parse_args().messages))
