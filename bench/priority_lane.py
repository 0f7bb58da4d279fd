"""The priority lane under a backlog: how long a licence recall of a person unlawfully at
large takes to reach the police while ordinary traffic floods slow receivers.

    .venv/bin/python bench/priority_lane.py [--notices 100] [--recalls 5] [--delay 0.5]

One run per configuration, each on a fresh embedded system (one process, SQLite):

1. ``lane``: the priority lane as shipped (recalls attempted first, 8 reserved slots, one
   extra slot per subscription);
2. ``no reserve``: ``priority_lane_reserved_slots=0`` (recalls are still attempted first, but
   ordinary traffic may take every slot);
3. ``baseline``: no lane at all (every message in the normal lane).

In each run N release notices (high risk, domestic abuse, victim contact scheme, no fixed
abode: five recipients) are posted by 8 concurrent senders to receivers that take ``delay``
seconds to answer, every recipient subscribed four times by webhook, the police IOM team's
subscriptions taking recalls too. Once every notice is routed (so the backlog is one of
deliveries, not of routing), K recalls (unlawfully at large) are posted, one every 0.5 s.
Latency is ``delivered_at - accepted_at`` from the store, for the recalls' deliveries and for
the ordinary deliveries to the same police subscriptions."""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import services.gateway.messages as intake
from services.core.messages import MESSAGE_TYPES
from services.core.timeliness import priority
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.demo.scenario import release_notice
from services.system import System, ensure_demo_clients, settings_for_local

IOM = "eastborough-police-iom"
RECIPIENTS = [
    "eastborough-pdu",
    IOM,
    "eastborough-vawg",
    "eastborough-vlo",
    "eastborough-housing",
]
SUBSCRIPTIONS_EACH = 4


@dataclass
class SlowReceivers(Receivers):
    """The demo receivers, each answer ``delay`` seconds late."""

    delay: float = 1.0

    async def _hook(self, request: Request) -> Response:
        await asyncio.sleep(self.delay)
        return await super()._hook(request)


def _notice(i: int) -> dict[str, Any]:
    body = release_notice(datetime.date.today())
    body["person"] = {
        **body["person"],
        "pnc_id": f"24/{100000 + i}A",
        "crn": f"X{100000 + i}",
        "prison_number": f"A{1000 + i % 9000}BC",
    }
    body["risk"] = {"rosh_level": "high", "domestic_abuse": True}
    body["destination"]["no_fixed_abode"] = True
    body["victim_contact_scheme"] = True
    return body


def _recall(i: int) -> dict[str, Any]:
    extra = MESSAGE_TYPES["licence-recall"].model.model_config["json_schema_extra"]
    body: dict[str, Any] = copy.deepcopy(extra["examples"][0])  # type: ignore[index]
    body["person"] = {**body["person"], "pnc_id": f"25/{900000 + i}Z", "crn": f"Z{900000 + i}"}
    body["recall"]["unlawfully_at_large"] = True
    body["risk"] = {"rosh_level": "very_high"}
    return body


def _ms(rows: list[dict[str, Any]]) -> list[float]:
    return sorted(
        (r["delivered_at"] - r["accepted_at"]).total_seconds() * 1000
        for r in rows
        if r["delivered_at"] is not None
    )


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999) - 1))]


async def one_run(
    name: str, notices: int, recalls: int, delay: float, **settings: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        receivers = await SlowReceivers(verify=False, delay=delay).start()
        system = await System(
            settings_for_local(
                Path(tmp),
                rate_limit_per_minute=0,
                token_rate_limit_per_minute=0,
                relay_poll_seconds=0.2,
                **settings,
            )
        ).start()
        try:
            assert system.runtime is not None
            creds = await ensure_demo_clients(system.runtime)
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            for party in RECIPIENTS:
                types = ["release-notice", "licence-recall"] if party == IOM else ["release-notice"]
                for k in range(SUBSCRIPTIONS_EACH):
                    await clients[party].subscribe(types, receivers.url(f"{party}-{k}"))
            prison, pdu = clients["hmp-northgate"], clients["eastborough-pdu"]
            started = time.perf_counter()
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(notices):
                queue.put_nowait(i)

            async def sender() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    r = await prison.publish("release-notice", _notice(i))
                    assert r.status_code == 202, r.text

            await asyncio.gather(*(sender() for _ in range(8)))
            posted = time.perf_counter() - started
            store = system.runtime.store
            # a delivery backlog, not a routing one: every notice routed before the recalls
            expected = notices * len(RECIPIENTS) * SUBSCRIPTIONS_EACH
            while len(await store.list_deliveries()) < expected:
                await asyncio.sleep(0.1)
            backlog = expected - len(await store.list_deliveries(status="delivered"))
            recall_ids = []
            for j in range(recalls):
                r = await pdu.publish("licence-recall", _recall(j))
                assert r.status_code == 202, r.text
                recall_ids.append(r.json()["id"])
                await asyncio.sleep(0.5)
            while True:
                rows = await store.list_deliveries(recipient=IOM)
                done = await store.list_deliveries(status="delivered")
                recall_rows = [r for r in rows if r["message_id"] in recall_ids]
                if len(done) >= expected + len(recall_rows) and all(
                    r["status"] == "delivered" for r in recall_rows
                ):
                    break
                await asyncio.sleep(0.5)
            drained = time.perf_counter() - started
            ordinary = [r for r in rows if r["message_type"] == "release-notice"]
            for c in clients.values():
                await c.aclose()
        finally:
            await system.stop()
            await receivers.stop()
    return {
        "name": name,
        "recall": _ms(recall_rows),
        "ordinary": _ms(ordinary),
        "posted_s": posted,
        "backlog": backlog,
        "drained_s": drained,
    }


def report(run: dict[str, Any]) -> None:
    rec, ordi = run["recall"], run["ordinary"]
    print(
        f"\n{run['name']}: flood posted in {run['posted_s']:.1f} s, "
        f"drained in {run['drained_s']:.1f} s; {run['backlog']} deliveries undelivered "
        "when the first recall was posted"
    )
    for label, v in (("recall (unlawfully at large)", rec), ("ordinary, same receivers", ordi)):
        print(
            f"  {label:<30} n={len(v):<5} p50 {statistics.median(v):8.0f} ms   "
            f"p95 {_p(v, 0.95):8.0f} ms   max {v[-1]:8.0f} ms"
        )
    print(
        f"  ordinary p50 / recall p50      {statistics.median(ordi) / statistics.median(rec):6.1f}x"
    )


async def main(notices: int, recalls: int, delay: float) -> None:
    print(
        f"{notices} release notices x {len(RECIPIENTS)} recipients x {SUBSCRIPTIONS_EACH} "
        f"webhook subscriptions, receivers answer after {delay} s; then {recalls} recalls "
        f"(unlawfully at large) to the police IOM team's {SUBSCRIPTIONS_EACH} subscriptions"
        f" ({datetime.date.today()})"
    )
    runs = [await one_run("lane (8 reserved slots)", notices, recalls, delay)]
    report(runs[-1])
    runs.append(
        await one_run(
            "no reserve (ordering only)", notices, recalls, delay, priority_lane_reserved_slots=0
        )
    )
    report(runs[-1])
    # baseline: no lane at all - every message enters the normal lane at intake
    original = intake.priority_of
    intake.priority_of = lambda message_type, payload: priority.NORMAL
    try:
        runs.append(
            await one_run(
                "baseline (no lane)", notices, recalls, delay, priority_lane_reserved_slots=0
            )
        )
    finally:
        intake.priority_of = original
    report(runs[-1])
    lane, base = statistics.median(runs[0]["recall"]), statistics.median(runs[-1]["recall"])
    print(f"\nrecall p50, baseline / lane: {base / lane:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--notices", type=int, default=100)
    parser.add_argument("--recalls", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(main(args.notices, args.recalls, args.delay))
