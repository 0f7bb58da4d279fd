"""Deployments of the production-stack benchmark (``production_stack.py``): the product's
gateways and routers as ``python -m services.cli gateway|router`` processes on a fresh
PostgreSQL database and a fresh Kafka topic prefix, sharing one data directory (keys), with
every party registered and every entitled party subscribed by webhook to the receivers'
process; and the handle on that receivers' process.

What the parts get differs from a production deployment only where the test machine forces
it; ``DIFFERS_FROM_PRODUCTION`` and the docstring of ``production_stack.py`` say what and why.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from stack_procs import BENCH, CLI, PYTHON, Child, Children, PartFailed, wait_http

from services.core.childproc import free_port
from services.core.store.embedded import EmbeddedPostgres

SENDER = "hmp-northgate"

#: settings the parts get that a production deployment would not, each because of the test
#: machine (see production_stack.py); production mode would refuse every one of them
DIFFERS_FROM_PRODUCTION = {
    # production refuses the shipped (fictional) agreements and each setting marked below
    "ISA_BROKER_MODE": "dev",
    # the receivers are plain-http servers on loopback (production: https, public addresses)
    "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "true",
    "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
}
#: allowed in production, and far above the default 600 and 60 a minute, which would cap
#: one sending client at 10 messages a second; the limiter itself still runs
HIGH_LIMITS = {
    "ISA_BROKER_RATE_LIMIT_PER_MINUTE": "1000000",
    "ISA_BROKER_TOKEN_RATE_LIMIT_PER_MINUTE": "100000",
}


def product_env(kafka_env: dict[str, str]) -> dict[str, str]:
    """The environment every part starts from: this one without the product's variables,
    then the settings above and the broker's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ISA_BROKER_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "PYTHONTRACEMALLOC")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["ISA_BROKER_HOST"] = "127.0.0.1"
    return {**env, **DIFFERS_FROM_PRODUCTION, **HIGH_LIMITS, **kafka_env}


async def access_token(http: httpx.AsyncClient, creds: dict[str, str]) -> str:
    """An access token for the client ``creds`` (client_id, client_secret) from the gateway
    ``http`` is based on."""
    r = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


# -- the receivers' process ------------------------------------------------------------------


@dataclass
class ReceiversProcess:
    child: Child
    port: int
    control_port: int

    @classmethod
    async def start(cls, children: Children, env: dict[str, str]) -> ReceiversProcess:
        port, control = free_port(), free_port()
        script = str(BENCH / "stack_receivers.py")
        args = [PYTHON, script, "--port", str(port), "--control-port", str(control)]
        child = children.start("receivers", "receivers", args, env)
        await wait_http(f"http://127.0.0.1:{control}/count", child, 60)
        return cls(child, port, control)

    def url(self, party: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{party}"

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(timeout=60.0, trust_env=False) as http:
            r = await http.request(method, f"http://127.0.0.1:{self.control_port}{path}", **kw)
        if r.status_code != 200:
            raise self.child.failed(f"{method} {path} answered {r.status_code}")
        return r.json()

    async def set_keys(self, keys: dict[str, str]) -> None:
        await self._call("PUT", "/keys", json=keys)

    async def count(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("GET", "/count")
        return found

    async def arrivals(self, since: int = 0) -> list[tuple[float, str, str | None]]:
        found = await self._call("GET", "/arrivals", params={"since": since})
        return [(float(t), str(p), i) for t, p, i in found["arrivals"]]

    async def samples(self) -> dict[str, str]:
        found: dict[str, str] = await self._call("GET", "/samples")
        return found

    async def reset(self) -> None:
        await self._call("POST", "/reset")


# -- a deployment ----------------------------------------------------------------------------


@dataclass
class Deployment:
    """Gateways (and, once started, routers) of one scenario on their own database and
    topics."""

    label: str
    env: dict[str, str]
    database: str
    folder: Path
    gateway_urls: list[str]
    gateways: list[Child]
    children: Children
    pg: EmbeddedPostgres
    routers: list[Child] = field(default_factory=list)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)

    @property
    def public_url(self) -> str:
        return self.env["ISA_BROKER_PUBLIC_URL"]

    @property
    def sender_file(self) -> Path:
        """The sending prison's client id, secret and token endpoint, for the load."""
        return self.folder / "sender.json"

    @classmethod
    async def create(
        cls,
        label: str,
        gateways: int,
        *,
        env: dict[str, str],
        pg: EmbeddedPostgres,
        children: Children,
        work: Path,
        receivers: ReceiversProcess,
    ) -> Deployment:
        database = f"bench_{label.replace('-', '_')}_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        folder = work / label
        folder.mkdir(parents=True)
        ports = [free_port() for _ in range(gateways)]
        env = {
            **env,
            "ISA_BROKER_DATABASE_URL": pg.url(database),
            "ISA_BROKER_DATA_DIR": str(folder / "data"),
            "ISA_BROKER_KAFKA_TOPIC_PREFIX": f"bench{secrets.token_hex(4)}",
            # one public URL (the token issuer) for every gateway, as behind a load balancer
            "ISA_BROKER_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
        }
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        started: list[Child] = []
        # the first gateway migrates the new database; the others start once it has
        for i, port in enumerate(ports):
            started.append(
                children.start(
                    f"{label}-gateway",
                    "gateway",
                    [*CLI, "gateway"],
                    {**env, "ISA_BROKER_PORT": str(port)},
                )
            )
            if i == 0:
                await wait_http(urls[0] + "/readyz", started[0])
        await asyncio.gather(
            *(wait_http(u + "/readyz", c) for u, c in zip(urls, started, strict=True))
        )
        deployment = cls(label, env, database, folder, urls, started, children, pg)
        await deployment._register()
        await deployment._subscribe(receivers)
        return deployment

    async def _register(self) -> None:
        out = self.folder / "clients.json"
        child = self.children.start(
            f"{self.label}-register",
            "set-up",
            [PYTHON, str(BENCH / "stack_register.py"), str(out)],
            self.env,
        )
        if await child.wait_exit(180) != 0:
            raise child.failed("registering the clients failed")
        self.credentials = json.loads(out.read_text())
        sender = self.credentials[SENDER]
        fd = os.open(self.sender_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {
                    "token_url": self.public_url + "/oauth/token",
                    "client_id": sender["client_id"],
                    "client_secret": sender["client_secret"],
                },
                f,
            )

    async def _subscribe(self, receivers: ReceiversProcess) -> None:
        """Every party but the sender subscribes to release notices by webhook at the
        receivers (as ``bench/throughput.py``'s ``subscribe_all``); the agreements refuse
        some. The receivers learn each subscription's signing secret."""
        keys: dict[str, str] = {}
        async with httpx.AsyncClient(
            base_url=self.public_url, timeout=30.0, trust_env=False
        ) as http:
            for party, creds in sorted(self.credentials.items()):
                if party == SENDER:
                    continue
                r = await http.post(
                    "/v1/subscriptions",
                    json={
                        "message_types": ["release-notice"],
                        "webhook": {"url": receivers.url(party)},
                    },
                    headers={"Authorization": f"Bearer {await access_token(http, creds)}"},
                )
                if r.status_code == 201:
                    keys[party] = str(r.json()["secret"])
                elif not 400 <= r.status_code < 500:
                    raise PartFailed(f"subscribing {party} answered {r.status_code}: {r.text}")
        self.subscribed = set(keys)
        await receivers.set_keys(keys)

    async def start_routers(self, n: int) -> list[Child]:
        ports = [free_port() for _ in range(n)]
        started = [
            self.children.start(
                f"{self.label}-router",
                "router",
                [*CLI, "router"],
                {**self.env, "ISA_BROKER_ROUTER_PORT": str(p)},
            )
            for p in ports
        ]
        self.routers += started
        await asyncio.gather(
            *(
                wait_http(f"http://127.0.0.1:{p}/livez", c)
                for p, c in zip(ports, started, strict=True)
            )
        )
        return started

    def stop_routers(self) -> None:
        self.children.stop(*self.routers)

    def stop(self) -> None:
        self.children.stop(*self.routers, *self.gateways)

    # -- what the store recorded ----------------------------------------------------------

    async def attempts(
        self, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """Delivery attempts recorded in the store (all, or those at Unix times in
        [since, until]): how many, how many succeeded, and their durations in seconds."""
        conn = await asyncpg.connect(self.pg.dsn(self.database))
        try:
            total = await conn.fetchrow(
                "SELECT count(*) AS n, count(*) FILTER (WHERE status_code BETWEEN 200 AND 299)"
                " AS ok FROM delivery_attempts"
            )
            if since is not None and until is not None:
                rows = await conn.fetch(
                    "SELECT duration_ms FROM delivery_attempts"
                    " WHERE at >= to_timestamp($1) AND at <= to_timestamp($2)",
                    since,
                    until,
                )
            else:
                rows = await conn.fetch("SELECT duration_ms FROM delivery_attempts")
            statuses = await conn.fetch(
                "SELECT status, count(*) AS n FROM deliveries GROUP BY status"
            )
        finally:
            await conn.close()
        assert total is not None
        return {
            "recorded": int(total["n"]),
            "ok": int(total["ok"]),
            "durations": [float(r["duration_ms"]) / 1000 for r in rows],
            "deliveries": {str(r["status"]): int(r["n"]) for r in statuses},
        }
