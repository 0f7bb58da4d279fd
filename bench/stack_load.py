"""The load generator of the production-stack benchmark, as a process of its own (asyncio and
httpx; ``wrk`` is not used because the e2e join needs each 202's message id).

    python bench/stack_load.py intake   --urls U[,U2] [--credentials F] --connections N
                                        --seconds S --warmup W --persons P --out F
    python bench/stack_load.py e2e      (the same) --rate R
    python bench/stack_load.py webhooks --targets F --concurrency-per-target K --max-in-flight M
                                        --seconds S --warmup W --out F

- ``intake``: closed loop. N connections in all (split evenly over the URLs, as a load
  balancer would), one sender per connection posting release notices back to back for W + S
  seconds. Counted: the answers completed in the last S seconds; latency is POST → answer.
- ``e2e``: open loop. Message i is due at start + i / R, whatever the earlier ones are doing
  (they queue for one of the N connections if all are busy); latency is measured from the
  due time, so queueing counts. Every message's due time, answer time, status, id and
  recipients go to the output for the benchmark to join with the receivers' arrivals.
- ``webhooks`` (baseline b): bare signed webhook POSTs with the router's own sender
  (``services.router.webhook.WebhookSender`` built from the routers' settings, read from the
  same environment), K at once per target and at most M in all, as the router's dispatcher
  allows per subscription and per process; each target's body is a real delivered event.

The sender's client id, secret and token endpoint come from the ``--credentials`` JSON file
(``token_url``, ``client_id``, ``client_secret``); without it (the pass-through baseline) a
placeholder of a token's size is sent. Access tokens are fetched before the timed window
(and again only on a 401). Every message is a synthetic release notice
(``services.demo.scenario.release_notice``) about one of P invented people, with its own
``Idempotency-Key`` as the agency SDKs send.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from stack_stats import Rate

PATH = "/v1/messages/release-notice"
#: a placeholder of an access token's size, for the pass-through baseline (no token check)
PLACEHOLDER_TOKEN = "x" * 560  # noqa: S105 - not a secret


def notices(persons: int) -> list[bytes]:
    """One release notice per invented person, serialised once, before any timing."""
    from services.demo.scenario import release_notice

    out = []
    today = dt.date.today()
    for k in range(persons):
        body = release_notice(today)
        body["person"].update(
            prison_number=f"Z{k % 10000:04d}XX",
            pnc_id=f"26/{k:06d}X",
            crn=f"X{k:06d}",
            given_name=f"Synthetic{k}",
            family_name="Benchperson",
        )
        out.append(json.dumps(body).encode())
    return out


@dataclass
class Client:
    """The sender's HTTP clients (one pool per gateway) and its access token."""

    urls: list[str]
    connections: int
    token_url: str | None
    client_id: str | None
    client_secret: str | None
    token: str = PLACEHOLDER_TOKEN
    token_fetches: int = 0
    pools: list[httpx.AsyncClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        per = [self.connections // len(self.urls)] * len(self.urls)
        for i in range(self.connections % len(self.urls)):
            per[i] += 1
        self.per_pool = per
        for url, n in zip(self.urls, per, strict=True):
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
            timeout = httpx.Timeout(30.0, pool=None)  # wait for a free connection
            self.pools.append(
                httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, trust_env=False)
            )

    async def fetch_token(self) -> None:
        if self.token_url is None:
            return
        assert self.client_id is not None and self.client_secret is not None
        async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
            r = await http.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.client_secret),
            )
            r.raise_for_status()
            self.token = str(r.json()["access_token"])
            self.token_fetches += 1

    async def post(self, pool: httpx.AsyncClient, body: bytes) -> httpx.Response:
        for _ in range(2):
            headers = {
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            }
            r = await pool.post(PATH, content=body, headers=headers)
            if r.status_code != 401 or self.token_url is None:
                return r
            await self.fetch_token()  # expired: once more with a new token
        return r

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


def _client(a: argparse.Namespace) -> Client:
    creds: dict[str, str] = json.loads(Path(a.credentials).read_text()) if a.credentials else {}
    return Client(
        a.urls.split(","),
        a.connections,
        creds.get("token_url"),
        creds.get("client_id"),
        creds.get("client_secret"),
    )


def _error_name(e: BaseException) -> str:
    return type(e).__name__


async def intake(a: argparse.Namespace) -> dict[str, Any]:
    bodies = notices(a.persons)
    client = _client(a)
    await client.fetch_token()
    done: list[tuple[float, float, int]] = []  # started, ended, status
    called_for: Counter[str] = Counter()  # deliveries the 202s call for, by recipient
    errors: Counter[str] = Counter()
    start = time.monotonic()
    end = start + a.warmup + a.seconds

    async def sender(pool: httpx.AsyncClient, first: int) -> None:
        i = first
        while time.monotonic() < end:
            body = bodies[i % len(bodies)]
            i += a.connections
            t = time.monotonic()
            try:
                r = await client.post(pool, body)
            except httpx.HTTPError as e:
                errors[_error_name(e)] += 1
                done.append((t, time.monotonic(), -1))
                continue
            done.append((t, time.monotonic(), r.status_code))
            if r.status_code == 202 and client.token_url is not None:
                called_for.update(x["party"] for x in r.json().get("recipients", []))

    senders = []
    n = 0
    for pool, count in zip(client.pools, client.per_pool, strict=True):
        for _ in range(count):
            senders.append(sender(pool, n))
            n += 1
    await asyncio.gather(*senders)
    await client.aclose()
    window_start = start + a.warmup
    counted = [d for d in done if window_start <= d[1] <= end]
    for d in counted:
        if d[2] != 202 and d[2] != -1:
            errors[f"HTTP {d[2]}"] += 1
    accepted = [d for d in counted if d[2] == 202]
    rate = Rate.of(len(accepted), a.seconds, [e - s for s, e, _ in accepted], errors)
    return {
        "rate": rate.to_json(),
        "sent": len(done),
        "accepted_all": sum(1 for d in done if d[2] == 202),
        "called_for": dict(called_for),
        "token_fetches": client.token_fetches,
        "window": [window_start, end],
    }


async def e2e(a: argparse.Namespace) -> dict[str, Any]:
    bodies = notices(a.persons)
    client = _client(a)
    await client.fetch_token()
    records: list[dict[str, Any]] = []
    start = time.monotonic() + 0.2
    stop_at = start + a.warmup + a.seconds
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        pool = client.pools[i % len(client.pools)]
        # status None: not answered within the grace period (cancelled)
        record: dict[str, Any] = {"due": due, "counted": due >= start + a.warmup, "status": None}
        records.append(record)
        try:
            r = await client.post(pool, bodies[i % len(bodies)])
        except httpx.HTTPError as e:
            record.update(status=-1, error=_error_name(e), answered=time.monotonic())
        else:
            record.update(status=r.status_code, answered=time.monotonic())
            if r.status_code == 202:
                body = r.json()
                record.update(
                    id=body["id"], recipients=[x["party"] for x in body.get("recipients", [])]
                )

    i = 0
    lateness = 0.0  # the latest a request was started after its due time
    while True:
        due = start + i / a.rate
        if due >= stop_at:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness = max(lateness, time.monotonic() - due)
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    unanswered = 0
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=a.grace)
        unanswered = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await client.aclose()
    return {
        "records": records,
        "unanswered": unanswered,
        "window": [start + a.warmup, stop_at],
        "scheduler_lateness": lateness,
        "token_fetches": client.token_fetches,
    }


async def webhooks(a: argparse.Namespace) -> dict[str, Any]:
    from services.cli.common import load_settings
    from services.router.webhook import WebhookSender

    targets: list[dict[str, str]] = json.loads(Path(a.targets).read_text())
    sender = WebhookSender.from_settings(load_settings())
    done: list[tuple[float, float, bool, float]] = []  # started, ended, ok, duration (s)
    errors: Counter[str] = Counter()
    start = time.monotonic()
    end = start + a.warmup + a.seconds
    in_flight = asyncio.Semaphore(a.max_in_flight)

    async def worker(target: dict[str, str]) -> None:
        body = target["body"].encode()
        while time.monotonic() < end:
            async with in_flight:
                t = time.monotonic()
                result = await sender.attempt(
                    target["url"], [target["key"]], f"bench-{uuid.uuid4()}", body, int(time.time())
                )
                done.append((t, time.monotonic(), result.ok, result.duration_ms / 1000))
                if not result.ok:
                    errors[result.error or f"HTTP {result.status_code}"] += 1

    await asyncio.gather(*(worker(t) for t in targets for _ in range(a.concurrency_per_target)))
    await sender.aclose()
    counted = [d for d in done if start + a.warmup <= d[1] <= end and d[2]]
    rate = Rate.of(len(counted), a.seconds, [d[3] for d in counted], errors)
    return {"rate": rate.to_json(), "sent": len(done), "window": [start + a.warmup, end]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("intake", "e2e", "webhooks"))
    ap.add_argument("--urls", default="")
    ap.add_argument("--credentials", help="JSON file: token_url, client_id, client_secret")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--persons", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--grace", type=float, default=30.0, help="e2e: wait for late answers")
    ap.add_argument("--targets", help="webhooks: JSON file of {url, key, body}")
    ap.add_argument("--concurrency-per-target", type=int, default=4)
    ap.add_argument("--max-in-flight", type=int, default=64)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    run = {"intake": intake, "e2e": e2e, "webhooks": webhooks}[a.mode]
    result = asyncio.run(run(a))
    Path(a.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
