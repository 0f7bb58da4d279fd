"""Demo webhook receivers: one small HTTP server that stands in for each agency's endpoint
at ``/hooks/{party}`` and keeps the raw requests it was sent, so the demo (and the tests) can
see exactly which fields arrived.

Like a real receiver it verifies each POST (Standard Webhooks): a signature by one of the
party's keys (:meth:`Receivers.trust`: the ``whsec_`` secret or ``whpk_`` public key of its
subscription) and a timestamp within five minutes, else 401 and nothing is recorded; a
``webhook-id`` already received is acknowledged and not recorded again. ``verify=False`` keeps
every request unchecked, for tests that check the signatures themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.core.errors import AuthenticationFailed
from services.core.kafka.embedded import free_port
from services.core.webhooks import signing


@dataclass
class Received:
    party: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receivers:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    #: per party, answers to give before accepting: (status, headers), used in order
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    verify: bool = True
    #: per party, the keys its deliveries may be signed with
    keys: dict[str, list[str]] = field(default_factory=dict)
    #: the receivers' idea of now, in Unix seconds, for the signature's timestamp tolerance
    #: (the demo moves the broker's clock days ahead, and the receivers' with it)
    clock: Callable[[], float] = time.time
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, party: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{party}"

    def trust(self, party: str, key: str) -> None:
        """Accept deliveries to ``party`` signed with ``key`` (``whsec_`` or ``whpk_``)."""
        self.keys.setdefault(party, []).append(key)

    def _authentic(self, party: str, headers: dict[str, str], body: bytes) -> bool:
        try:
            msg_id = headers["webhook-id"]
            timestamp = int(headers["webhook-timestamp"])
            header = headers["webhook-signature"]
        except (KeyError, ValueError):
            return False
        now = int(self.clock())
        for key in self.keys.get(party, []):
            try:
                signing.verify(key, msg_id, timestamp, body, header, now)
            except (AuthenticationFailed, ValueError):
                continue
            return True
        return False

    def for_party(self, party: str) -> list[Received]:
        return [r for r in self.received if r.party == party]

    async def _hook(self, request: Request) -> Response:
        party = request.path_params["party"]
        if self.fail_first.get(party, 0) > 0:
            self.fail_first[party] -= 1
            return Response(status_code=503)
        if self.script.get(party):
            status, headers = self.script[party].pop(0)
            return Response(status_code=status, headers=headers)
        headers, body = dict(request.headers), await request.body()
        if self.verify:
            if not self._authentic(party, headers, body):
                return Response(status_code=401)
            if (party, headers["webhook-id"]) in self._seen:
                return Response(status_code=204)  # a redelivery: acknowledged, not processed
            self._seen.add((party, headers["webhook-id"]))
        self.received.append(Received(party, headers, body))
        self._arrived.set()
        return Response(status_code=204)

    async def wait_for(self, parties: set[str], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not parties <= {r.party for r in self.received}:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def start(self) -> Receivers:
        app = Starlette(routes=[Route("/hooks/{party}", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
