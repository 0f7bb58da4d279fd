"""Assembles the running system: broker (embedded unless ``KAFKA_BOOTSTRAP_SERVERS`` names a
cluster), store, gateway with its outbox relay, and router. Used by ``isa-broker dev``,
``isa-broker demo`` and the end-to-end tests, so all three run the same code path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from .core import tracing
from .core.audit.keys import LogSigningKeys
from .core.audit.sealer import Sealer
from .core.clients import create_client
from .core.clock import Clock
from .core.crypto.signing_keys import write_private_file
from .core.errors import ConfigurationError, Unavailable
from .core.kafka.embedded import EmbeddedBroker, free_port
from .core.kafka.publisher import KafkaPublisher
from .core.outbox import OutboxRelay
from .core.policy_watcher import PolicyWatcher
from .core.retention import notify_periodically
from .core.runtime import Runtime
from .core.settings import Settings
from .core.timeliness.scheduler import Scheduler
from .gateway.app import create_app
from .router.endpoint import create_endpoint
from .router.router import Router

log = logging.getLogger("isa_broker.system")


class System:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        #: business time for every part (tests and the demo move it); real time if None
        self.clock = clock
        self.broker: EmbeddedBroker | None = None
        self.runtime: Runtime | None = None
        self.publisher: KafkaPublisher | None = None
        self.router: Router | None = None
        self.scheduler: Scheduler | None = None
        self.sealer: Sealer | None = None
        self.relay: OutboxRelay | None = None
        self.broker_restarts = 0
        self._broker_started = dt.datetime.now(dt.UTC)
        self.watcher: PolicyWatcher | None = None
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def gateway_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    @property
    def bootstrap_servers(self) -> str:
        assert self.runtime is not None  # noqa: S101
        return self.runtime.kafka.bootstrap_servers

    async def start(self, *, with_gateway: bool = True, with_router: bool = True) -> System:
        """Start the gateway (with its outbox relay), the router, or both. A part started
        alone must share a Kafka cluster and a store with the others, so it needs
        ``KAFKA_BOOTSTRAP_SERVERS``; only the whole system may start the embedded broker."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # traces, when the environment names an OTLP endpoint (services.core.tracing)
        parts = {(True, False): "isa-broker-gateway", (False, True): "isa-broker-router"}
        tracing.configure(parts.get((with_gateway, with_router), "isa-broker"))
        if not (with_gateway and with_router) and not s.kafka.bootstrap_servers:
            raise ConfigurationError(
                "running the gateway or the router on its own needs KAFKA_BOOTSTRAP_SERVERS "
                "(the embedded broker serves only the whole system started by 'isa-broker dev')"
            )
        if s.kafka.bootstrap_servers:
            bootstrap, embedded = s.kafka.bootstrap_servers, s.kafka.compat == "tansu"
        else:
            self.broker = EmbeddedBroker(log_path=s.data_dir / "broker.log").start()
            self._write_broker_pid()
            bootstrap, embedded = self.broker.bootstrap_servers, True
        try:
            self.runtime = await Runtime.create(s, bootstrap, embedded=embedded)
            if self.clock is not None:
                self.runtime.clock = self.clock
            await self.runtime.ensure_topics()
            await self.runtime.check_topics()
            # the agencies' Kafka principals and ACLs as their subscriptions say
            await self.runtime.agency_access.reconcile(list(self.runtime.engine.policies.parties))
            self.publisher = KafkaPublisher(self.runtime.kafka)
            await self.publisher.start()
            self.watcher = PolicyWatcher(self.runtime)
            if s.policies_reload_seconds > 0:
                self._tasks.append(asyncio.create_task(self.watcher.run(), name="policy-watcher"))
            if with_gateway:
                await self._start_gateway()
            if with_router:
                self.router = Router(self.runtime, self.publisher)
                self._tasks.append(asyncio.create_task(self.router.run(), name="router"))
                self._tasks.append(
                    asyncio.create_task(self.router.dispatcher.run(), name="dispatcher")
                )
                # deadlines and reminders (services.core.timeliness.scheduler)
                self.scheduler = Scheduler(
                    self.runtime, self.router.dispatcher.owner, self.router.dispatcher.wake
                )
                self.router.on_timers = self.scheduler.wake
                self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
                # the tamper-evident disclosure log (services.core.audit)
                self.sealer = Sealer(
                    self.runtime.store,
                    LogSigningKeys(s.data_dir),
                    settle_seconds=s.audit.seal_settle_seconds,
                    checkpoint_seconds=s.audit.checkpoint_seconds,
                )
                if s.audit.seal_seconds > 0:
                    self._tasks.append(
                        asyncio.create_task(self.sealer.run(s.audit.seal_seconds), name="sealer")
                    )
                # deletion notices for disclosures past retention (services.core.retention)
                if s.audit.retention_notify_seconds > 0:
                    notify = notify_periodically(
                        self.runtime.store, self.runtime.clock, s.audit.retention_notify_seconds
                    )
                    self._tasks.append(asyncio.create_task(notify, name="retention"))
            if with_router and not with_gateway and s.http.router_port:
                await self._start_router_endpoint()
            if self.broker is not None:
                self._tasks.append(asyncio.create_task(self._supervise(), name="broker-supervisor"))
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start_gateway(self) -> None:
        assert self.runtime is not None and self.publisher is not None  # noqa: S101
        self.relay = OutboxRelay(self.runtime, self.publisher)
        await self._serve_http(
            "gateway", create_app(self.runtime, self.relay), self.settings.http.port
        )

    async def _start_router_endpoint(self) -> None:
        """A router started on its own serves /livez and /readyz (services.router.endpoint)."""
        assert self.runtime is not None and self.publisher is not None  # noqa: S101
        assert self.router is not None  # noqa: S101

        def running(name: str) -> Callable[[], bool]:
            # the consumer's task is replaced after an embedded broker restart: look it up
            return lambda: any(t.get_name() == name and not t.done() for t in self._tasks)

        app = create_endpoint(
            self.runtime,
            self.publisher,
            {"consumer": running("router"), "dispatcher": running("dispatcher")},
            self.router.consumer_lag,
        )
        await self._serve_http("router-endpoint", app, self.settings.http.router_port)

    async def _serve_http(self, name: str, app: Any, port: int) -> None:
        """Serve ``app`` on ISA_BROKER_HOST:``port`` until the system stops; returns once it
        listens."""
        host = self.settings.http.host
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", access_log=False
        )
        server = uvicorn.Server(config)
        self._servers.append(server)
        task = asyncio.create_task(server.serve(), name=name)
        self._tasks.append(task)
        while not server.started:
            if task.done():
                task.result()
                raise Unavailable(f"the {name} could not listen on {host}:{port}")
            await asyncio.sleep(0.01)

    def _write_broker_pid(self) -> None:
        assert self.broker is not None and self.broker.pid is not None  # noqa: S101
        (self.settings.data_dir / "broker.pid").write_text(f"{self.broker.pid}\n")

    async def _supervise(self, every: float = 0.5) -> None:
        """Restart the embedded broker when it dies. It comes back empty, so: recreate the
        topics, drop the producer's and the consumer's stale connections and metadata,
        publish again at once every message not yet routed, and queue again what was
        delivered to agency topics since the lost broker started (the broker lost them)."""
        assert self.broker is not None and self.runtime is not None  # noqa: S101
        while True:
            await asyncio.sleep(every)
            if self.broker.running:
                continue
            log.warning("embedded broker exited; restarting it on %s", self.bootstrap_servers)
            lost_since = self._broker_started
            try:
                await asyncio.to_thread(self.broker.start)
                self._write_broker_pid()
                await self.runtime.ensure_topics()
            except Unavailable as e:
                log.error("embedded broker restart failed: %s; trying again", e)
                continue
            self.broker_restarts += 1
            if self.publisher is not None:
                await self.publisher.reset()
            # from here on, topics exist and no producer holds stale metadata: what is
            # delivered now is kept; what was delivered since lost_since is gone
            self._broker_started = dt.datetime.now(dt.UTC)
            await self._restart_consumer()
            try:
                if self.relay is not None:
                    await self.relay.reconcile(everything=True)
                # what was delivered to agency topics since the lost broker started is gone
                again = await self.runtime.store.redeliver_channel(
                    "kafka", lost_since, self.runtime.clock()
                )
                if again:
                    log.warning("%d agency-topic deliveries queued again", len(again))
                    if self.router is not None:
                        self.router.dispatcher.wake()
            except Unavailable as e:
                log.warning("recovering after the broker restart: %s", e)

    async def _restart_consumer(self) -> None:
        """Stop the consumer (its group and offsets died with the broker) and start a new
        one. The new task takes the old one's place before the old one is awaited, so that
        :meth:`wait` never mistakes the replaced task for a part that stopped; the old one is
        closed before the new one joins, so that its connections are not left behind."""
        if self.router is None:
            return
        for i, task in enumerate(self._tasks):
            if task.get_name() == "router":
                ready = asyncio.Event()
                self._tasks[i] = asyncio.create_task(self._run_consumer_after(ready), name="router")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 15)
                ready.set()

    async def _run_consumer_after(self, ready: asyncio.Event) -> None:
        assert self.router is not None  # noqa: S101
        await ready.wait()
        await self.router.run()

    async def wait(self) -> None:
        """Serve until a part stops; re-raise what stopped it. A part the supervisor has
        replaced (the consumer after a broker restart) does not count as stopping."""
        while True:
            done, _ = await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in self._tasks:
                    task.result()
                    return

    async def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True  # stops serving gracefully; not cancelled
        self._servers.clear()
        for task in reversed(self._tasks):
            if task.get_name() not in ("gateway", "router-endpoint"):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        self._tasks.clear()
        if self.sealer is not None and self.settings.audit.seal_seconds > 0:
            # seal what is left and sign a checkpoint of it, so the newest entries are covered
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sealer.seal_now(), 10)
        if self.router is not None:
            await self.router.aclose()
        if self.publisher is not None:
            await self.publisher.aclose()
        if self.runtime is not None:
            await self.runtime.aclose()
        if self.broker is not None:
            self.broker.stop()
            (self.settings.data_dir / "broker.pid").unlink(missing_ok=True)
        tracing.shutdown()

    async def __aenter__(self) -> System:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


#: the demo's and a developer's own webhook receivers listen here
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


def settings_for_local(data_dir: Path, port: int | None = None, **overrides: Any) -> Settings:
    """Settings for a one-machine system in dev mode on a loopback port (0 or None: a free
    one). Its webhook receivers are on this machine too, so loopback is allow-listed for
    webhooks unless the caller says otherwise."""
    port = port or free_port()
    overrides.setdefault("webhook_allowed_networks", LOOPBACK_NETWORKS)
    overrides.setdefault("mode", "dev")  # one machine, demo agreements: never production
    return Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        **overrides,
    )


async def ensure_demo_clients(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """One client_secret_basic client per registered party, written to
    ``<data_dir>/demo-clients.json`` (mode 0600). Reused when still registered."""
    path = runtime.settings.data_dir / "demo-clients.json"
    if path.exists():
        existing: dict[str, dict[str, Any]] = json.loads(path.read_text())
        if all([await runtime.store.get_client(c["client_id"]) for c in existing.values()]):
            return existing
    creds = {}
    for party in runtime.engine.policies.parties:
        creds[party] = await create_client(runtime, party)
    write_private_file(path, json.dumps(creds, indent=2).encode())
    os.chmod(path, 0o600)
    return creds
