"""A bounded schemathesis fuzz of the whole HTTP API over real HTTP: uvicorn serves the gateway
from a thread with its own event loop, store and key material.

Every operation of the OpenAPI document gets schema-conforming (positive) and
schema-violating (negative) requests, and the operations that take an id a third run with
real ids (a subscription, a dead-lettered delivery, a decision, a client), authenticated with
a token holding every scope but ``admin``; the operator routes get a second run with an
``admin`` token. Checked on every response: no 5xx (``not_a_server_error``); on 2xx, the body
matches the documented schema (``response_schema_conformance``).

Bounded for CI: a fixed seed and derandomised generation, ``MAX_EXAMPLES`` per operation and
mode, no shrinking (each failing input is recorded with a curl line to reproduce it).

schemathesis 4's own pytest integration (``schemathesis.pytest.from_fixture``) cannot run on
pytest 9.2 (it sets ``Function._nodeid``, which pytest no longer has), so the operations are
driven with its public strategy API (``APIOperation.as_strategy``) and ``hypothesis.given``."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.core.clients import create_client
from services.core.crypto import recipient
from services.core.runtime import Runtime
from services.core.scopes import ADMIN_SCOPE
from services.gateway.app import create_app
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import example
from tests.security.helpers import ALL_BUT_ADMIN, FORM, PDU, PRISON, TOKEN, route_and_settle

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
SEED = 20_250_101
T = TypeVar("T")


class Served:
    """An ASGI app on a loopback port, served by uvicorn from a thread with its own event
    loop; ``run`` executes a coroutine on that loop (where the app's store lives)."""

    def __init__(self, make_app: Callable[[], Awaitable[Any]]) -> None:
        self.make_app = make_app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Served:
        self.thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            await self.make_app(), log_level="warning", access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self, then: Callable[[], Awaitable[None]] | None = None) -> None:
        async def stop() -> None:
            if self._server is not None and self._task is not None:
                self._server.should_exit = True
                await self._task
            if then is not None:
                await then()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class FuzzTarget:
    served: Served
    runtime: Runtime
    #: real ids of the agency the fuzzer acts as (the prison), by path parameter name
    ids: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    def ids_for(self, path: str) -> dict[str, str]:
        """Real ids for the parameters of ``path``: a fresh subscription and a fresh client
        for each operation (one operation's run may delete or disable them), the dead letter
        and the decision of the seeded objects."""
        ids = dict(self.ids)
        if "{subscription_id}" in path:
            ids["subscription_id"] = self._subscription()
        if "{client_id}" in path:
            ids["client_id"] = self.served.run(create_client(self.runtime, PDU))["client_id"]
        return {k: v for k, v in ids.items() if "{" + k + "}" in path}

    def _subscription(self) -> str:
        hook = {"message_types": ["licence-recall"], "webhook": {"url": "http://127.0.0.1:9/x"}}
        r = httpx.post(self.url + "/v1/subscriptions", json=hook, headers=self.prison)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    @property
    def prison(self) -> dict[str, str]:
        if "prison" not in self._tokens:
            self._tokens["prison"] = self.token(PRISON)
        return {"Authorization": f"Bearer {self._tokens['prison']}"}

    @property
    def url(self) -> str:
        return self.served.url

    def token(self, party: str, scopes: list[str] | None = None) -> str:
        creds = self.served.run(create_client(self.runtime, party, scopes=scopes))
        r = httpx.post(
            self.url + TOKEN, data=FORM, auth=(creds["client_id"], creds["client_secret"])
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def schema(self) -> Any:
        config = schemathesis.Config.from_dict({"seed": SEED, "base-url": self.url})
        return schemathesis.openapi.from_url(self.url + "/openapi.json", config=config)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[FuzzTarget]:
    settings = make_settings(
        tmp_path_factory.mktemp("fuzz"),
        # limits that would only slow the fuzzer down, or make it wait on purpose
        rate_limit_per_minute=0,
        token_rate_limit_per_minute=0,
        inbox_max_wait_seconds=0,
        dispatch_poll_seconds=0.05,
        webhook_retry_schedule=(0,),
    )
    runtimes: list[Runtime] = []

    async def make_app() -> FastAPI:
        runtimes.append(
            await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
        )
        return create_app(runtimes[0])

    served = Served(make_app).start()
    t = FuzzTarget(served, runtimes[0])
    try:
        _seed_objects(t)
        yield t
    finally:
        served.stop(then=runtimes[0].aclose)


def _seed_objects(t: FuzzTarget) -> None:
    """Real objects of the prison's for the id-taking routes: subscriptions, an encryption
    key, a delivery to
    it (dead-lettered: its webhook URL answers nothing), the decision on a notice it sent."""
    t.ids["subscription_id"] = t._subscription()
    # a public encryption key, so that Kafka and encrypted-webhook subscriptions can be made
    _, public = recipient.generate_key("prison-fuzz-1")
    r = httpx.post(t.url + "/v1/encryption-keys", json={"jwk": public}, headers=t.prison)
    assert r.status_code == 201, r.text
    t.ids["kid"] = r.json()["kid"]
    r = httpx.post(
        t.url + "/v1/messages/release-notice", json=example("release-notice"), headers=t.prison
    )
    assert r.status_code == 202, r.text
    t.ids["message_id"] = r.json()["id"]
    # routed, so that it holds up no later message about the same person
    t.served.run(route_and_settle(t.runtime, t.ids["message_id"]))
    pdu = {"Authorization": f"Bearer {t.token(PDU)}"}
    r = httpx.post(
        t.url + "/v1/messages/licence-recall", json=example("licence-recall"), headers=pdu
    )
    assert r.status_code == 202, r.text
    t.served.run(route_and_settle(t.runtime, r.json()["id"]))
    [delivery] = t.served.run(t.runtime.store.list_deliveries(recipient=PRISON))
    assert delivery["status"] == "dead_lettered", delivery
    t.ids["delivery_id"] = delivery["id"]


# -- the fuzzer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    operation: str
    mode: str
    problem: str
    reproduce: str

    def __str__(self) -> str:
        return f"{self.operation} [{self.mode}] {self.problem}\n    {self.reproduce}"


@dataclass
class Run:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)

    def answered(self, low: int, high: int) -> set[str]:
        """The operations that got at least one answer with a status in ``low``..``high``."""
        return {op for (op, status) in self.statuses if low <= status <= high}

    def report(self) -> str:
        lines = [str(f) for f in self.findings.values()]
        lines.append(
            "statuses: " + ", ".join(f"{o} {s} x{n}" for (o, s), n in self.statuses.items())
        )
        return "\n".join(lines)


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # failures are recorded, not raised: no shrinking
    suppress_health_check=list(HealthCheck),
)


def fuzz(
    schema: Any,
    token: str,
    include: Callable[[str], bool] = lambda path: True,
    ids_for: Callable[[str], dict[str, str]] = lambda path: {},
    problems: bool = True,
) -> Run:
    """Every operation whose path ``include`` accepts: positive and negative requests, and
    positive ones with the real ids ``ids_for`` gives where the path takes them. At most one
    finding per operation, mode and problem. With ``problems``, every error response must
    be in the gateway's error shape too."""
    headers = {"Authorization": f"Bearer {token}"}
    out = Run()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not include(operation.path):
            continue
        strategies = {
            "positive": operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            "negative": operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        }
        real = ids_for(operation.path)
        if real:
            strategies["real ids"] = operation.as_strategy(
                generation_mode=GenerationMode.POSITIVE, path_parameters=real
            )
        for mode, strategy in strategies.items():
            try:
                _run(strategy, operation.label, mode, headers, out, problems)
            except Unsatisfiable:
                # nothing about this operation can violate its schema (no parameters, no
                # body): the positive run covers it
                assert mode == "negative", operation.label
    return out


def _run(
    strategy: Any, label: str, mode: str, headers: dict[str, str], out: Run, problems: bool
) -> None:
    @given(case=strategy)
    @FUZZ_SETTINGS
    def attempt(case: Any) -> None:
        response = case.call(headers=headers, timeout=30)
        out.statuses[(label, response.status_code)] += 1
        checks = [not_a_server_error]
        if 200 <= response.status_code < 300:
            checks.append(response_schema_conformance)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (AssertionError, FailureGroup) as e:
            failures = e.exceptions if isinstance(e, FailureGroup) else (e,)
            problem = f"HTTP {response.status_code}: " + "; ".join(
                f"{getattr(f, 'title', type(f).__name__)}: {_first_line(f)}" for f in failures
            )
            curl = case.as_curl_command()
            out.findings.setdefault((label, mode, problem), Finding(label, mode, problem, curl))
        wrong = _error_shape(label, response) if problems else None
        if wrong:
            problem = f"HTTP {response.status_code}: {wrong}"
            curl = case.as_curl_command()
            out.findings.setdefault((label, mode, problem), Finding(label, mode, problem, curl))

    attempt()


def _error_shape(label: str, response: Any) -> str | None:
    """What is wrong with an error response, if anything: the token endpoint answers in the
    RFC 6749 s5.2 shape, every other route with an RFC 9457 problem; none shows a trace."""
    if response.status_code < 400:
        return None
    if "Traceback" in response.text or 'File "' in response.text:
        return "the error response shows a stack trace"
    try:
        body = response.json()
    except ValueError:
        return f"the error response is not JSON: {response.text[:80]!r}"
    if label.endswith(" /oauth/token"):
        ok = isinstance(body, dict) and isinstance(body.get("error"), str)
        return None if ok else f"not an OAuth error response: {response.text[:120]}"
    media = response.headers.get("content-type") or [""]  # schemathesis: name -> values
    media = media[0] if isinstance(media, list) else str(media)
    if not media.startswith("application/problem+json"):
        return f"error media type is {media!r}, not application/problem+json"
    if not (
        isinstance(body, dict)
        and {"type", "title", "status", "detail", "code"} <= body.keys()
        and body["status"] == response.status_code
    ):
        return f"not an RFC 9457 problem: {response.text[:120]}"
    return None


def _first_line(failure: BaseException) -> str:
    text = str(getattr(failure, "message", "") or failure).strip()
    return text.splitlines()[0] if text else ""


# -- the runs ----------------------------------------------------------------------------------


def test_no_operation_answers_5xx_to_an_agency(target: FuzzTarget) -> None:
    """Every operation, with a token holding every scope but admin."""
    run = fuzz(target.schema(), target.token(PRISON, ALL_BUT_ADMIN), ids_for=target.ids_for)
    assert not run.findings, run.report()
    # the fuzzer got past authentication and validation into the routes, ids included
    assert {
        "GET /v1/subscriptions",
        "POST /v1/subscriptions",
        "POST /v1/messages/release-notice",
        "GET /v1/deliveries",
        "GET /v1/deliveries/{delivery_id}",
        "GET /v1/dead-letters",
        "GET /v1/decisions/{message_id}",
        "GET /v1/inbox",
        "GET /v1/audit",
        "POST /v1/subscriptions/{subscription_id}/rotate-secret",
    } <= run.answered(200, 299), run.report()


def test_no_operator_operation_answers_5xx(target: FuzzTarget) -> None:
    """The operator routes, with an admin token."""
    run = fuzz(
        target.schema(),
        target.token(PRISON, [ADMIN_SCOPE]),
        include=lambda path: path.startswith("/v1/admin/"),
        ids_for=target.ids_for,
    )
    assert not run.findings, run.report()
    assert {
        "GET /v1/admin/clients",
        "POST /v1/admin/clients/{client_id}/disable",
        "POST /v1/admin/clients/{client_id}/enable",
        "GET /v1/admin/signing-keys",
    } <= run.answered(200, 299), run.report()


def test_the_fuzzer_reports_a_server_error() -> None:
    """Control: the same harness, against an app with a deliberate 500, an undocumented
    response shape and FastAPI's default error bodies, reports each."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id % 7 == 3:
            raise RuntimeError("deliberate")
        return {"id": item_id}

    shape = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}

    @app.get(
        "/shape",
        response_model=None,
        responses={200: {"content": {"application/json": {"schema": shape}}}},
    )
    async def undocumented_shape() -> dict[str, str]:
        return {"name": "not what the document says"}

    async def make_app() -> FastAPI:
        return app

    served = Served(make_app).start()
    try:
        config = schemathesis.Config.from_dict({"seed": SEED, "base-url": served.url})
        schema = schemathesis.openapi.from_url(served.url + "/openapi.json", config=config)
        run = fuzz(schema, "unused")
    finally:
        served.stop()
    found = {(f.operation, f.problem.split(":")[0]): f for f in run.findings.values()}
    assert set(found) == {
        ("GET /items/{item_id}", "HTTP 500"),
        ("GET /items/{item_id}", "HTTP 422"),  # FastAPI's own error shape, not a problem
        ("GET /shape", "HTTP 200"),
    }, run.report()
    server_error = found[("GET /items/{item_id}", "HTTP 500")]
    assert "curl -X GET" in server_error.reproduce and "/items/" in server_error.reproduce
    assert "schema" in found[("GET /shape", "HTTP 200")].problem.lower(), run.report()
