"""The webhook receivers of the production-stack benchmark, as a process of their own.

    python bench/stack_receivers.py --port P --control-port Q

``services.demo.receivers.Receivers`` on port P (``POST /hooks/{party}``): every POST is
verified as an agency's receiver would (Standard Webhooks signature by the party's key,
timestamp within five minutes, else 401 and nothing recorded). Each accepted webhook is
time-stamped (``time.monotonic()``, the system-wide CLOCK_MONOTONIC, so comparable with the
load generator's) when it has been read and verified.

On port Q, for the benchmark only:

- ``PUT /keys`` ``{party: key}``: the key each party's deliveries are signed with (replaces
  the party's keys);
- ``GET /count``: accepted webhooks so far, refused ones (401), repeated ones (a
  ``webhook-id`` already accepted: acknowledged with 204 and not recorded again), the last
  arrival's time;
- ``GET /arrivals?since=N``: ``[time, party, CloudEvent id]`` of each accepted webhook from
  the N-th;
- ``GET /samples``: the newest body each party received (what the baseline re-sends);
- ``POST /reset``: forget what arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.demo.receivers import Received, Receivers


class ArrivalLog(list[Received]):
    """The receivers' list of accepted webhooks, with the time each was appended."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Received) -> None:
        self.times.append(time.monotonic())
        super().append(item)

    def clear(self) -> None:
        super().clear()
        self.times.clear()


@dataclass
class TimedReceivers(Receivers):
    """:class:`Receivers` that time each accepted webhook and count the refused and the
    repeated ones."""

    received: list[Received] = field(default_factory=ArrivalLog)
    refused: int = 0
    repeated: int = 0

    async def _hook(self, request: Request) -> Response:
        key = (request.path_params["party"], request.headers.get("webhook-id", ""))
        seen_before = key in self._seen
        response = await super()._hook(request)
        if response.status_code == 401:
            self.refused += 1
        elif seen_before and response.status_code == 204:
            self.repeated += 1
        return response

    @property
    def log(self) -> ArrivalLog:
        assert isinstance(self.received, ArrivalLog)
        return self.received


def _event_id(body: bytes) -> str | None:
    try:
        event = json.loads(body)
        return str(event["id"])
    except (ValueError, KeyError, TypeError):
        return None


def control_app(receivers: TimedReceivers) -> Starlette:
    async def keys(request: Request) -> Response:
        given: dict[str, str] = await request.json()
        for party, key in given.items():
            receivers.keys[party] = [key]
        return JSONResponse({"parties": sorted(receivers.keys)})

    async def count(_: Request) -> Response:
        log = receivers.log
        return JSONResponse(
            {
                "received": len(log),
                "refused": receivers.refused,
                "repeated": receivers.repeated,
                "last": log.times[-1] if log.times else None,
            }
        )

    async def arrivals(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        log = receivers.log
        out: list[list[Any]] = [
            [t, r.party, _event_id(r.body)]
            for t, r in zip(log.times[since:], log[since:], strict=True)
        ]
        return JSONResponse({"arrivals": out})

    async def samples(_: Request) -> Response:
        newest: dict[str, str] = {}
        for r in receivers.log:
            newest[r.party] = r.body.decode()
        return JSONResponse(newest)

    async def reset(_: Request) -> Response:
        receivers.log.clear()
        receivers.refused = 0
        receivers.repeated = 0
        return JSONResponse({"received": 0})

    return Starlette(
        routes=[
            Route("/keys", keys, methods=["PUT"]),
            Route("/count", count),
            Route("/arrivals", arrivals),
            Route("/samples", samples),
            Route("/reset", reset, methods=["POST"]),
        ]
    )


async def main(port: int, control_port: int) -> None:
    receivers = TimedReceivers(port=port, verify=True)
    await receivers.start()
    config = uvicorn.Config(
        control_app(receivers),
        host="127.0.0.1",
        port=control_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    control = uvicorn.Server(config)
    task = asyncio.create_task(control.serve())
    while not control.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    print(f"receivers on 127.0.0.1:{port}, control on 127.0.0.1:{control_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    control.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await receivers.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    a = ap.parse_args()
    asyncio.run(main(a.port, a.control_port))
