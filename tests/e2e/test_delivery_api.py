"""End to end through real HTTP (uvicorn), the real broker, real SQLite and real webhooks:
what an agency has been sent and its controls over it - deliveries, dead letters and their
replay, subscriptions disabled (410 Gone, failing too long) and re-enabled, the pull inbox
and the Kafka channel."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from starlette.requests import Request
from starlette.responses import Response

from services.core.clients import create_client
from services.core.clock import OffsetClock
from services.core.crypto import recipient
from services.core.runtime import Runtime
from services.core.store import Store
from services.core.webhooks import signing
from services.demo.agency import AgencyClient
from services.demo.receivers import Received, Receivers
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KafkaTarget
from tests.factories import example, release_notice

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

T = TypeVar("T")

PRISON = "hmp-northgate"
VAWG = "eastborough-vawg"
HOUSING = "eastborough-housing"
PDU = "eastborough-pdu"

SUBSCRIPTION_DISABLED = "org.isa-broker.notice.subscription-disabled.v1"
ENDPOINT_DISABLED = "org.isa-broker.notice.recipient-endpoint-disabled.v1"
PROBLEM_JSON = "application/problem+json"

#: a fast system: retries 0.2 s apart, the dispatcher looking for due rows every 50 ms
FAST = {"webhook_retry_schedule": (0, 0.2, 0.2), "dispatch_poll_seconds": 0.05}


# -- harness -------------------------------------------------------------------------------------


@dataclass
class RecordingReceivers(Receivers):
    """Demo receivers that also keep every request, answered or failed, so that the
    ``webhook-id`` of a failed attempt can be compared with a later successful one."""

    requests: list[Received] = field(default_factory=list)
    verify: bool = False  # these tests are about delivery; signatures: test_release_to_webhooks

    async def _hook(self, request: Request) -> Response:
        party = request.path_params["party"]
        self.requests.append(Received(party, dict(request.headers), await request.body()))
        return await super()._hook(request)

    def fail_always(self, key: str, status: int = 500) -> None:
        self.script[key] = [(status, {})] * 1000

    def succeed(self, key: str) -> None:
        self.script.pop(key, None)
        self.fail_first.pop(key, None)


@dataclass
class Env:
    system: System
    runtime: Runtime
    clients: dict[str, AgencyClient]

    @property
    def store(self) -> Store:
        return self.runtime.store

    async def client(self, party: str, scopes: list[str]) -> AgencyClient:
        """A further client of ``party`` with exactly ``scopes``."""
        creds = await create_client(self.runtime, party, scopes=scopes)
        c = AgencyClient(self.system.gateway_url, creds["client_id"], creds["client_secret"])
        self.clients[f"{party}/{creds['client_id']}"] = c
        return c


StartEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_env(tmp_path: Path, kafka: KafkaTarget) -> AsyncIterator[StartEnv]:
    """Start a whole system (gateway, relay, router, dispatcher) on the test's broker with
    the given settings, and one client per registered party."""
    envs: list[Env] = []

    async def start(**overrides: Any) -> Env:
        settings = settings_for_local(
            tmp_path / f"data{len(envs)}",
            **kafka.settings,
            kafka_topic_prefix=f"dl{uuid.uuid4().hex[:8]}",
            relay_poll_seconds=0.2,
            policies_reload_seconds=0,
            **overrides,
        )
        system = System(settings)
        await system.start()
        assert system.runtime is not None
        creds = await ensure_demo_clients(system.runtime)
        clients = {
            p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
            for p, c in creds.items()
        }
        env = Env(system, system.runtime, clients)
        envs.append(env)
        return env

    yield start
    for env in envs:
        for c in env.clients.values():
            await c.aclose()
        await env.system.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[RecordingReceivers]:
    r = RecordingReceivers()
    await r.start()
    yield r
    await r.stop()


async def _poll(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    timeout: float = 20.0,
) -> T:
    """``probe()`` again every 50 ms until ``done`` of its value, at most ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value}")
        await asyncio.sleep(0.05)


async def _ok(r: Awaitable[httpx.Response], status: int = 200) -> Any:
    response = await r
    assert response.status_code == status, response.text
    return response.json()


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def _subscribe(
    client: AgencyClient, channel: str, url: str | None = None, types: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message_types": types or ["release-notice"], "channel": channel}
    if url is not None:
        body["webhook"] = {"url": url}
    created: dict[str, Any] = await _ok(client.request("POST", "/v1/subscriptions", json=body), 201)
    return created


async def _publish(client: AgencyClient, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    accepted: dict[str, Any] = await _ok(
        client.publish("release-notice", payload or release_notice()), 202
    )
    return accepted


async def _delivery(store: Store, message_id: str, subscription_id: str) -> dict[str, Any]:
    """The delivery of a message to a subscription, once the router has recorded it."""

    async def probe() -> list[dict[str, Any]]:
        rows = await store.list_deliveries(message_id=message_id)
        return [d for d in rows if d["subscription_id"] == subscription_id]

    [row] = await _poll(probe, bool, f"the delivery of {message_id} to {subscription_id}")
    return row


async def _status(store: Store, delivery_id: str, status: str, timeout: float = 20.0) -> None:
    async def probe() -> str | None:
        row = await store.get_delivery(delivery_id)
        return None if row is None else str(row["status"])

    await _poll(probe, lambda s: s == status, f"delivery {delivery_id} {status}", timeout)


async def _inbox(client: AgencyClient, **params: Any) -> dict[str, Any]:
    timeout = float(params.get("wait", 0)) + 10  # a long poll outlasts the client's default
    page: dict[str, Any] = await _ok(
        client.request("GET", "/v1/inbox", params=params, timeout=timeout)
    )
    return page


async def _notices(client: AgencyClient, event_type: str) -> list[dict[str, Any]]:
    """Wait for at least one notice of ``event_type`` on the client's inbox; return them."""

    async def probe() -> list[dict[str, Any]]:
        entries = (await _inbox(client, after=0))["entries"]
        return [e for e in entries if e["kind"] == "notice" and e["event"]["type"] == event_type]

    return await _poll(probe, bool, f"a {event_type} notice")


def _at_least(n: int) -> Callable[[list[Any]], bool]:
    return lambda items: len(items) >= n


def _leaves(data: object, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def _recipient(accepted: dict[str, Any], party: str) -> dict[str, Any]:
    [found] = [r for r in accepted["recipients"] if r["party"] == party]
    return dict(found)


def _fields_for(accepted: dict[str, Any], party: str) -> list[str]:
    return sorted(_recipient(accepted, party)["fields"])


def _utc(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# -- 1. dead letters listed and replayed ---------------------------------------------------------


async def test_dead_letter_is_listed_only_to_its_recipient_and_replayed(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg, housing = env.clients[VAWG], env.clients[HOUSING]
    sub = await _subscribe(vawg, "webhook", receivers.url(VAWG))
    receivers.fail_always(VAWG, 500)
    accepted = await _publish(env.clients[PRISON])
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "dead_lettered")

    [dead] = await _ok(vawg.request("GET", "/v1/dead-letters"))
    assert dead["id"] == row["id"] and dead["message_id"] == accepted["id"]
    assert dead["status"] == "dead_lettered" and dead["channel"] == "webhook"
    assert dead["subscription_id"] == sub["id"] and dead["attempts"] == 3
    assert [a["status_code"] for a in dead["history"]] == [500, 500, 500]
    assert [a["error"] for a in dead["history"]] == ["HTTP 500"] * 3
    assert "retry schedule exhausted after 3 attempts" in dead["last_error"]
    assert dead["next_attempt_at"] is None
    assert dead["fields"] == _fields_for(accepted, VAWG)
    failed_ids = {r.headers["webhook-id"] for r in receivers.requests}
    assert failed_ids == {row["id"]} and len(receivers.requests) == 3

    # another agency neither sees it nor can replay it
    assert await _ok(housing.request("GET", "/v1/dead-letters")) == []
    r = await housing.request("POST", f"/v1/dead-letters/{row['id']}/replay")
    assert "no delivery" in _problem(r, 404)["detail"]
    assert (await env.store.get_delivery(row["id"]) or {})["status"] == "dead_lettered"

    receivers.succeed(VAWG)
    replayed = await _ok(vawg.request("POST", f"/v1/dead-letters/{row['id']}/replay"), 202)
    assert replayed == {"replayed": [row["id"]]}
    assert await receivers.wait_for({VAWG}, timeout=20)
    [arrived] = receivers.for_party(VAWG)
    assert arrived.headers["webhook-id"] == row["id"]  # the same id as the failed attempts
    assert json.loads(arrived.body)["isadeliveryid"] == row["id"]
    await _status(env.store, row["id"], "delivered")

    detail = await _ok(vawg.request("GET", f"/v1/deliveries/{row['id']}"))
    assert detail["status"] == "delivered" and detail["attempts"] == 4
    assert [a["status_code"] for a in detail["history"]] == [500, 500, 500, 204]
    assert detail["last_error"] is None
    assert await _ok(vawg.request("GET", "/v1/dead-letters")) == []

    events = [
        e["event"]
        for e in await env.store.audit_entries(accepted["id"])
        if e["recipient"] == VAWG
        and e["event"] in ("dead_lettered", "replay_requested", "delivered")
    ]
    assert events == ["dead_lettered", "replay_requested", "delivered"]

    r = await vawg.request("POST", f"/v1/dead-letters/{row['id']}/replay")
    assert "is delivered, not dead_lettered" in _problem(r, 409)["detail"]


# -- 2. replay by subscription and by time range -------------------------------------------------


async def test_replay_many_by_subscription_and_by_time_range(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg = env.clients[VAWG]
    sub_a = await _subscribe(vawg, "webhook", receivers.url("vawg-a"))
    sub_b = await _subscribe(vawg, "webhook", receivers.url("vawg-b"))
    receivers.fail_always("vawg-a")
    receivers.fail_always("vawg-b")
    started = dt.datetime.now(dt.UTC)

    async def dead_letters(*messages: dict[str, Any]) -> dict[tuple[str, str], str]:
        """(message id, subscription id) -> delivery id, once all are dead-lettered."""
        out = {}
        for m in messages:
            for sub in (sub_a, sub_b):
                row = await _delivery(env.store, m["id"], sub["id"])
                await _status(env.store, row["id"], "dead_lettered")
                out[(m["id"], sub["id"])] = row["id"]
        return out

    m1 = await _publish(env.clients[PRISON], release_notice(days_ahead=3))
    m2 = await _publish(env.clients[PRISON], release_notice(days_ahead=4))
    early = await dead_letters(m1, m2)
    middle = dt.datetime.now(dt.UTC)
    m3 = await _publish(env.clients[PRISON], release_notice(days_ahead=5))
    late = await dead_letters(m3)
    listed = await _ok(vawg.request("GET", "/v1/dead-letters", params={"limit": 100}))
    assert sorted(d["id"] for d in listed) == sorted([*early.values(), *late.values()])
    only_b = await _ok(
        vawg.request("GET", "/v1/dead-letters", params={"subscription_id": sub_b["id"]})
    )
    assert sorted(d["id"] for d in only_b) == sorted(
        d for (_, s), d in [*early.items(), *late.items()] if s == sub_b["id"]
    )

    receivers.succeed("vawg-a")
    receivers.succeed("vawg-b")

    async def replay(body: dict[str, Any]) -> list[str]:
        r = await _ok(vawg.request("POST", "/v1/dead-letters/replay", json=body), 202)
        return sorted(r["replayed"])

    # a time range: what was dead-lettered since `middle` (m3, both subscriptions)
    assert await replay({"since": _utc(middle)}) == sorted(late.values())
    for delivery_id in late.values():
        await _status(env.store, delivery_id, "delivered")

    # nothing was dead-lettered before the test started
    assert await replay({"until": _utc(started)}) == []

    # a subscription: its remaining dead letters (m1 and m2 to subscription a)
    a_ids = sorted(d for (_, s), d in early.items() if s == sub_a["id"])
    assert await replay({"subscription_id": sub_a["id"]}) == a_ids
    for delivery_id in a_ids:
        await _status(env.store, delivery_id, "delivered")

    # both: subscription b, dead-lettered between the start and `middle`
    b_ids = sorted(d for (_, s), d in early.items() if s == sub_b["id"])
    body = {"subscription_id": sub_b["id"], "since": _utc(started), "until": _utc(middle)}
    assert await replay(body) == b_ids
    for delivery_id in b_ids:
        await _status(env.store, delivery_id, "delivered")

    assert await _ok(vawg.request("GET", "/v1/dead-letters")) == []
    assert len(receivers.for_party("vawg-a")) == 3 and len(receivers.for_party("vawg-b")) == 3
    assert await replay({"subscription_id": sub_a["id"]}) == []  # nothing left to replay

    # a body that selects nothing is refused, naming the problem
    r = await vawg.request("POST", "/v1/dead-letters/replay", json={})
    problem = _problem(r, 422)
    assert problem["code"] == "validation_failed"
    assert "subscription_id" in problem["errors"][0]["message"]
    assert "since/until" in problem["errors"][0]["message"]
    r = await vawg.request(
        "POST", "/v1/dead-letters/replay", json={"since": _utc(middle), "until": _utc(started)}
    )
    assert "since must be before until" in _problem(r, 422)["errors"][0]["message"]
    # another agency's subscription is not the caller's
    r = await env.clients[HOUSING].request(
        "POST", "/v1/dead-letters/replay", json={"subscription_id": sub_a["id"]}
    )
    _problem(r, 404)


async def test_time_range_given_with_a_utc_offset(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg = env.clients[VAWG]
    sub = await _subscribe(vawg, "webhook", receivers.url(VAWG))
    receivers.fail_always(VAWG)
    accepted = await _publish(env.clients[PRISON])
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "dead_lettered")
    receivers.succeed(VAWG)

    def at(minutes: float, hours_east: int) -> str:
        """An instant ``minutes`` from now, written with a UTC offset of ``hours_east``."""
        zone = dt.timezone(dt.timedelta(hours=hours_east))
        return (dt.datetime.now(zone) + dt.timedelta(minutes=minutes)).isoformat()

    async def dead(**params: str) -> list[str]:
        return [d["id"] for d in await _ok(vawg.request("GET", "/v1/dead-letters", params=params))]

    async def delivered(**params: str) -> list[str]:
        params["status"] = "delivered"
        return [d["id"] for d in await _ok(vawg.request("GET", "/v1/deliveries", params=params))]

    # SQLite compares times as text: an offset other than UTC must still mean the instant
    assert await dead(since=at(-60, 2), until=at(60, 2)) == [row["id"]]
    assert await dead(since=at(-60, -5), until=at(30, -5)) == [row["id"]]
    assert await dead(until=at(-30, 2)) == []
    assert await dead(since=at(30, -5)) == []
    body = {"since": at(-30, 2), "until": at(30, 2)}
    replayed = await _ok(vawg.request("POST", "/v1/dead-letters/replay", json=body), 202)
    assert replayed == {"replayed": [row["id"]]}
    await _status(env.store, row["id"], "delivered")
    assert await delivered(since=at(-30, -5), until=at(30, -5)) == [row["id"]]
    assert await delivered(until=at(-30, 2)) == []


# -- 3. 410 Gone disables; notices; re-enable ----------------------------------------------------


async def test_gone_disables_the_subscription_with_notices_until_enabled(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    housing, prison = env.clients[HOUSING], env.clients[PRISON]
    sub = await _subscribe(housing, "webhook", receivers.url(HOUSING))
    # the prison also receives (licence recalls, on its inbox): a message entry of its own
    await _subscribe(prison, "inbox", types=["licence-recall"])
    recall = await _ok(env.clients[PDU].publish("licence-recall", example("licence-recall")), 202)
    receivers.script[HOUSING] = [(410, {})]
    accepted = await _publish(prison)
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "dead_lettered")

    async def subscription() -> dict[str, Any]:
        [s] = await _ok(housing.request("GET", "/v1/subscriptions"))
        assert s["id"] == sub["id"]
        return dict(s)

    disabled = await _poll(subscription, lambda s: s["status"] == "disabled", "disabled")
    assert disabled["status_reason"] == "receiver answered 410 Gone"
    [dead] = await _ok(housing.request("GET", "/v1/dead-letters"))
    assert dead["id"] == row["id"] and [a["status_code"] for a in dead["history"]] == [410]
    assert dead["last_error"] == "receiver answered 410 Gone"

    # the recipient is told on its own inbox
    [notice] = await _notices(housing, SUBSCRIPTION_DISABLED)
    assert notice["delivery_id"] is None
    assert notice["event"]["source"] == "urn:isa-broker:router"
    assert notice["event"]["data"]["subscription_id"] == sub["id"]
    assert notice["event"]["data"]["recipient"] == HOUSING
    assert notice["event"]["data"]["reason"] == "receiver answered 410 Gone"

    # and so is the sender, naming the message, on every client of the party with inbox:read
    notices_only = await env.client(
        PRISON, ["publish:release-notice", "decisions:read", "inbox:read"]
    )
    [told] = await _notices(notices_only, ENDPOINT_DISABLED)
    assert told["event"]["data"]["recipient"] == HOUSING
    assert told["event"]["data"]["message_ids"] == [accepted["id"]]
    assert "Alexis" not in json.dumps(told["event"])
    kinds = {e["kind"] for e in (await _inbox(notices_only, after=0))["entries"]}
    assert "notice" in kinds and kinds <= {"notice", "message"}
    no_inbox = await env.client(PRISON, ["publish:release-notice"])
    r = await no_inbox.request("GET", "/v1/inbox")
    assert _problem(r, 403)["code"] == "insufficient_scope"
    await _notices(prison, ENDPOINT_DISABLED)

    async def prison_messages() -> list[dict[str, Any]]:
        entries = (await _inbox(prison, after=0))["entries"]
        return [e for e in entries if e["kind"] == "message"]

    [entry] = await _poll(prison_messages, bool, "the recall on the prison's inbox")
    assert entry["event"]["id"] == recall["id"]

    # a replay while disabled is refused, and changes nothing
    r = await housing.request("POST", f"/v1/dead-letters/{row['id']}/replay")
    assert "enable it first" in _problem(r, 409)["detail"]
    assert (await env.store.get_delivery(row["id"]) or {})["status"] == "dead_lettered"

    enabled = await _ok(housing.request("POST", f"/v1/subscriptions/{sub['id']}/enable"))
    assert enabled["status"] == "active" and enabled["status_reason"] is None
    assert (await subscription())["status"] == "active"
    replayed = await _ok(housing.request("POST", f"/v1/dead-letters/{row['id']}/replay"), 202)
    assert replayed == {"replayed": [row["id"]]}
    assert await receivers.wait_for({HOUSING}, timeout=20)
    assert receivers.for_party(HOUSING)[0].headers["webhook-id"] == row["id"]
    await _status(env.store, row["id"], "delivered")
    detail = await _ok(housing.request("GET", f"/v1/deliveries/{row['id']}"))
    assert [a["status_code"] for a in detail["history"]] == [410, 204]


# -- 4. an endpoint failing for too long is disabled ---------------------------------------------


async def test_endpoint_failing_for_the_disable_period_is_disabled(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(
        webhook_retry_schedule=(0, 30, 30, 30, 30),
        endpoint_disable_after_seconds=60,
        dispatch_poll_seconds=0.05,
    )
    # real time plus an offset: two messages published one after the other are not
    # accepted at the same instant (which would order them by their random ids)
    clock = OffsetClock()
    env.runtime.clock = clock
    vawg, store = env.clients[VAWG], env.store
    sub = await _subscribe(vawg, "webhook", receivers.url(VAWG))
    receivers.fail_always(VAWG, 500)
    m1 = await _publish(env.clients[PRISON], release_notice(days_ahead=3))
    m2 = await _publish(env.clients[PRISON], release_notice(days_ahead=4))
    first = await _delivery(store, m1["id"], sub["id"])
    # the second message is about the same person: it waits behind the first
    second = await _delivery(store, m2["id"], sub["id"])

    async def attempts() -> list[dict[str, Any]]:
        return await store.attempts(first["id"])

    [first_attempt] = await _poll(attempts, lambda a: len(a) == 1, "the first attempt")
    began = first_attempt["at"]  # the fake time of the first failure

    async def sub_status() -> str:
        return str((await store.get_subscription(sub["id"]) or {})["status"])

    # advance the clock 5 s at a time; whenever the retry is due, let it be attempted
    for _ in range(40):
        row = await store.get_delivery(first["id"])
        assert row is not None and row["status"] == "retrying", row
        done = len(await attempts()) + 1
        clock.advance(dt.timedelta(seconds=5))
        if row["next_attempt_at"] > clock():
            continue
        history = await _poll(attempts, _at_least(done), f"attempt {done}")
        assert len(history) == done
        if (history[-1]["at"] - began).total_seconds() >= 60:
            await _poll(sub_status, lambda s: s == "disabled", "the subscription disabled")
            break
        assert await sub_status() == "active", "disabled before 60 s of failures"
        assert (await store.get_delivery(second["id"]) or {})["attempts"] == 0
    assert await sub_status() == "disabled"

    history = await attempts()
    assert 3 <= len(history) <= 4 and {a["status_code"] for a in history} == {500}
    assert [a["at"] for a in history] == sorted(a["at"] for a in history)
    failing_for = (history[-1]["at"] - began).total_seconds()
    assert 60 <= failing_for < 120

    [subscription] = await _ok(vawg.request("GET", "/v1/subscriptions"))
    assert subscription["status"] == "disabled"
    assert "endpoint failed every attempt for" in subscription["status_reason"]
    dead = {d["id"]: d for d in await _ok(vawg.request("GET", "/v1/dead-letters"))}
    assert set(dead) == {first["id"], second["id"]}
    for d in dead.values():
        assert d["last_error"].startswith("subscription disabled: endpoint failed every attempt")
        assert d["last_error"].endswith("seconds")
    assert dead[second["id"]]["history"] == []  # never attempted: held behind the first

    [notice] = await _notices(vawg, SUBSCRIPTION_DISABLED)
    data = notice["event"]["data"]
    assert data["subscription_id"] == sub["id"]
    assert data["dead_lettered"] == sorted([first["id"], second["id"]])
    assert "endpoint failed every attempt for" in data["reason"]
    notices_only = await env.client(PRISON, ["publish:release-notice", "inbox:read"])
    [told] = await _notices(notices_only, ENDPOINT_DISABLED)
    assert told["event"]["data"]["recipient"] == VAWG
    assert told["event"]["data"]["message_ids"] == sorted([m1["id"], m2["id"]])
    assert "endpoint failed every attempt for" in told["event"]["data"]["reason"]
    assert len(receivers.requests) == len(history)  # nothing more was sent


# -- 5. the pull inbox ---------------------------------------------------------------------------


async def test_inbox_channel_long_poll_ack_and_per_person_order(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg = env.clients[VAWG]
    sub = await _subscribe(vawg, "inbox")
    assert sub["channel"] == "inbox" and sub["status"] == "active"
    assert sub["webhook"] is None and sub["secret"] is None and sub["kafka_topic"] is None
    # the same party also takes the same messages by webhook: the two must carry the same
    await _subscribe(vawg, "webhook", receivers.url(VAWG))
    assert (await _inbox(vawg))["entries"] == []

    # a long poll started before the message is published returns with it
    waiting = asyncio.create_task(_inbox(vawg, wait=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # nothing yet: the request is waiting
    accepted = await _publish(env.clients[PRISON])
    page = await asyncio.wait_for(waiting, 30)
    [entry] = page["entries"]
    assert entry["kind"] == "message" and page["next_cursor"] == entry["cursor"]
    event = entry["event"]
    assert event["id"] == accepted["id"] and event["isarecipient"] == VAWG
    assert event["type"] == "org.isa-broker.release-notice.v1"
    assert event["isadeliveryid"] == entry["delivery_id"]
    assert sorted(_leaves(event["data"])) == _fields_for(accepted, VAWG)
    assert "destination.address.line1" in _leaves(release_notice())
    assert "address" not in event["data"].get("destination", {})
    assert "Nowhere Lane" not in json.dumps(event) and "methadone" not in json.dumps(event)
    assert await receivers.wait_for({VAWG}, timeout=20)
    [hook] = receivers.for_party(VAWG)
    assert json.loads(hook.body)["data"] == event["data"]

    delivery = await _ok(vawg.request("GET", f"/v1/deliveries/{entry['delivery_id']}"))
    assert delivery["channel"] == "inbox" and delivery["status"] == "delivered"
    assert delivery["subscription_id"] == sub["id"] and delivery["attempts"] == 1
    assert delivery["fields"] == _fields_for(accepted, VAWG)
    [logged] = [
        e
        for e in await env.store.audit_entries(accepted["id"])
        if e["event"] == "delivered" and e["detail"]["delivery_id"] == entry["delivery_id"]
    ]
    assert logged["recipient"] == VAWG and logged["detail"]["channel"] == "inbox"

    # acknowledging moves this client's cursor: a read without `after` starts after it
    acked = await _ok(vawg.request("POST", "/v1/inbox/ack", json={"cursor": entry["cursor"]}))
    assert acked == {"previous": 0, "acknowledged": entry["cursor"]}
    page = await _inbox(vawg)
    assert page["entries"] == [] and page["acknowledged"] == entry["cursor"]
    assert page["next_cursor"] == entry["cursor"]
    ack_log = [e for e in await env.store.audit_entries() if e["event"] == "inbox_acknowledged"]
    assert [e["detail"]["delivery_ids"] for e in ack_log] == [[entry["delivery_id"]]]
    r = await vawg.request("POST", "/v1/inbox/ack", json={"cursor": entry["cursor"] + 1000})
    assert "beyond the newest entry" in _problem(r, 400)["detail"]
    # the cursor never moves back
    back = await _ok(vawg.request("POST", "/v1/inbox/ack", json={"cursor": 0}))
    assert back == {"previous": entry["cursor"], "acknowledged": entry["cursor"]}

    # per-person order: five messages about one person arrive in publication order
    published = [
        (await _publish(env.clients[PRISON], release_notice(days_ahead=3 + i)))["id"]
        for i in range(5)
    ]

    async def entries() -> list[dict[str, Any]]:
        return list((await _inbox(vawg))["entries"])

    arrived = await _poll(entries, lambda e: len(e) >= 5, "five inbox entries")
    assert [e["event"]["id"] for e in arrived] == published
    assert [e["cursor"] for e in arrived] == sorted(e["cursor"] for e in arrived)
    dates = [e["event"]["data"]["release"]["date"] for e in arrived]
    assert dates == sorted(dates)


# -- 6. the Kafka channel ------------------------------------------------------------------------


async def _records(runtime: Runtime, topic: str, n: int) -> list[Any]:
    """The first ``n`` records of ``topic``, read by a plain consumer."""
    consumer = AIOKafkaConsumer(topic, **runtime.kafka.consumer_kwargs(f"probe-{uuid.uuid4().hex}"))
    await consumer.start()
    try:
        return [await asyncio.wait_for(consumer.getone(), 20) for _ in range(n)]
    finally:
        await consumer.stop()


async def _broker_keys(env: Env) -> recipient.BrokerKeys:
    """The broker's delivery-signing keys as an agency gets them: from the URL the gateway's
    metadata names, without a token (plain http: the test's gateway is on loopback)."""
    async with httpx.AsyncClient(base_url=env.system.gateway_url) as http:
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        path = httpx.URL(metadata["isa_delivery_signing_jwks_uri"]).path
        assert path == recipient.BROKER_KEYS_PATH
        r = await http.get(path)
    assert r.status_code == 200, r.text
    return recipient.BrokerKeys(r.json())


async def _register_key(client: AgencyClient, kid: str) -> dict[str, Any]:
    """A fresh key pair: the public half registered, the private half returned."""
    private, public = recipient.generate_key(kid)
    await _ok(client.request("POST", "/v1/encryption-keys", json={"jwk": public}), 201)
    return private


async def test_kafka_channel_carries_only_permitted_fields_encrypted_to_the_recipient(
    start_env: StartEnv,
) -> None:
    env = await start_env(**FAST)
    vawg, housing = env.clients[VAWG], env.clients[HOUSING]
    # no key registered: the subscription is refused rather than delivering in clear
    r = await vawg.request(
        "POST", "/v1/subscriptions", json={"message_types": ["release-notice"], "channel": "kafka"}
    )
    assert r.status_code == 422 and r.json()["code"] == "encryption_key_required", r.text
    vawg_key = await _register_key(vawg, "vawg-2026-1")
    housing_key = await _register_key(housing, "housing-2026-1")
    sub = await _subscribe(vawg, "kafka")
    await _subscribe(housing, "kafka")
    topic = env.runtime.kafka.agency_topic(VAWG)
    assert sub["kafka_topic"] == topic and sub["encrypt"] is True
    assert sub["webhook"] is None and sub["secret"] is None
    payload = release_notice()
    accepted = await _publish(env.clients[PRISON], payload)
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "delivered")

    [record] = await _records(env.runtime, topic, 1)
    assert record.value is not None
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["isa_delivery_id"] == row["id"]
    assert headers["isa_message_id"] == accepted["id"]
    assert headers["content-type"] == "application/jose"
    assert record.key is not None and record.key.decode().startswith("psn_")
    # the value is a compact JWE: nothing of the notice readable, not even field names
    raw = record.value.decode()
    for value in ("Nowhere Lane", "ZZ9 9ZZ", "methadone", "A1234BC", "24/123456X", "release"):
        assert value not in raw
    header = recipient.protected_header(record.value)
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM"
    assert header["kid"] == "vawg-2026-1" and header["isa_recipient"] == VAWG
    assert header["isa_message_id"] == accepted["id"]
    assert header["isa_delivery_id"] == row["id"]
    refs = {f"{a['id']}@{a['version']}" for a in _recipient(accepted, VAWG)["agreements"]}
    assert set(header["isa_agreements"].split(",")) == refs

    broker = await _broker_keys(env)
    opened = recipient.open_record(
        record.value, record.headers, [vawg_key], broker_keys=broker, recipient=VAWG
    )
    assert opened.signed_by == env.runtime.keys.delivery_signing_key().kid
    event = opened.event
    assert event["specversion"] == "1.0" and event["id"] == accepted["id"]
    assert event["type"] == "org.isa-broker.release-notice.v1"
    assert event["isarecipient"] == VAWG and event["isadeliveryid"] == row["id"]
    permitted = _fields_for(accepted, VAWG)
    assert sorted(_leaves(event["data"])) == permitted
    missing = set(_leaves(payload)) - set(permitted)
    assert {"destination.address.postcode", "person.prison_number", "risk.rosh_level"} <= missing

    # copied to another agency, it is unreadable there and detectably out of place
    with pytest.raises(recipient.Misrouted):
        recipient.open_record(
            record.value, record.headers, [housing_key], broker_keys=broker, recipient=HOUSING
        )
    with pytest.raises(recipient.UnknownKey):
        recipient.open_(record.value, [housing_key], broker_keys=broker, recipient=VAWG)
    same_kid = {**housing_key, "kid": "vawg-2026-1"}  # another key under the same name
    with pytest.raises(recipient.DeliveryDecryptError, match="does not decrypt"):
        recipient.open_(record.value, [same_kid], broker_keys=broker, recipient=VAWG)
    relabelled = [(k, b"msg_other" if k == "isa_delivery_id" else v) for k, v in record.headers]
    with pytest.raises(recipient.Misrouted, match="bound to delivery"):
        recipient.open_record(
            record.value, relabelled, [vawg_key], broker_keys=broker, recipient=VAWG
        )
    # the token-signing keys are not the delivery-signing keys: a record does not verify
    # with them
    with pytest.raises(recipient.NotSignedByBroker, match="not among"):
        recipient.open_record(
            record.value,
            record.headers,
            [vawg_key],
            broker_keys=env.runtime.keys.jwks(),
            recipient=VAWG,
        )

    delivery = await _ok(vawg.request("GET", f"/v1/deliveries/{row['id']}"))
    assert delivery["channel"] == "kafka" and delivery["status"] == "delivered"
    assert delivery["attempts"] == 1 and delivery["fields"] == permitted

    # rotation: a new agency key takes over at once, and the broker rotates its
    # delivery-signing key too; the old records still open with the old agency key and
    # verify with the retired broker key, which stays published
    new_key = await _register_key(vawg, "vawg-2026-2")
    old_signer = opened.signed_by
    env.runtime.keys.delivery_signing.rotate(env.runtime.clock(), dt.timedelta(0))
    await asyncio.sleep(1.1)  # the router looks at the key folder once a second
    second = await _publish(env.clients[PRISON], release_notice(days_ahead=4))
    row2 = await _delivery(env.store, second["id"], sub["id"])
    await _status(env.store, row2["id"], "delivered")
    first, later = await _records(env.runtime, topic, 2)
    assert recipient.protected_header(later.value)["kid"] == "vawg-2026-2"
    keys = [vawg_key, new_key]
    broker = await _broker_keys(env)
    assert set(broker.thumbprints()) == {old_signer, env.runtime.keys.delivery_signing_key().kid}
    was = recipient.open_record(
        first.value, first.headers, keys, broker_keys=broker, recipient=VAWG
    )
    assert (was.kid, was.signed_by) == ("vawg-2026-1", old_signer)
    now = recipient.open_record(
        later.value, later.headers, keys, broker_keys=broker, recipient=VAWG
    )
    assert now.event["id"] == second["id"] and now.signed_by not in (old_signer, None)
    listed = await _ok(vawg.request("GET", "/v1/encryption-keys"))
    assert [(k["kid"], k["current"]) for k in listed] == [
        ("vawg-2026-2", True),
        ("vawg-2026-1", False),
    ]
    await _ok(vawg.request("DELETE", "/v1/encryption-keys/vawg-2026-1"))
    # the last key a Kafka subscription needs cannot be retired
    r = await vawg.request("DELETE", "/v1/encryption-keys/vawg-2026-2")
    assert r.status_code == 409 and r.json()["code"] == "encryption_key_in_use", r.text
    # a private key is refused, with the member named
    r = await vawg.request("POST", "/v1/encryption-keys", json={"jwk": vawg_key})
    assert r.status_code == 422 and r.json()["code"] == "invalid_encryption_key", r.text
    assert "private" in r.json()["detail"]


async def test_an_encrypted_webhook_body_is_a_signed_jwe_for_the_recipient(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg = env.clients[VAWG]
    key = await _register_key(vawg, "vawg-hook-1")
    body = {
        "message_types": ["release-notice"],
        "webhook": {"url": receivers.url(VAWG)},
        "encrypt": True,
    }
    sub = await _ok(vawg.request("POST", "/v1/subscriptions", json=body), 201)
    assert sub["encrypt"] is True
    accepted = await _publish(env.clients[PRISON], release_notice())
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "delivered")
    [got] = [r for r in receivers.requests if r.party == VAWG]
    assert got.headers["content-type"] == "application/jose"
    # the signature covers the JWE as sent
    signing.verify(
        sub["secret"],
        got.headers["webhook-id"],
        int(got.headers["webhook-timestamp"]),
        got.body,
        got.headers["webhook-signature"],
        int(got.headers["webhook-timestamp"]),
    )
    assert b"24/123456X" not in got.body
    opened = recipient.open_(
        got.body,
        [key],
        broker_keys=await _broker_keys(env),
        recipient=VAWG,
        delivery_id=got.headers["webhook-id"],
    )
    assert opened.event["id"] == accepted["id"]
    assert sorted(_leaves(opened.event["data"])) == _fields_for(accepted, VAWG)


# -- 7. the deliveries listing -------------------------------------------------------------------


async def test_deliveries_listing_filters_and_detail(
    start_env: StartEnv, receivers: RecordingReceivers
) -> None:
    env = await start_env(**FAST)
    vawg, housing = env.clients[VAWG], env.clients[HOUSING]
    sub = await _subscribe(vawg, "webhook", receivers.url(VAWG))
    receivers.fail_first[VAWG] = 1  # the first message: 503, then delivered
    m1 = await _publish(env.clients[PRISON], release_notice(days_ahead=3))
    d1 = await _delivery(env.store, m1["id"], sub["id"])
    await _status(env.store, d1["id"], "delivered")
    receivers.fail_always(VAWG, 500)  # the second: dead-lettered
    m2 = await _publish(env.clients[PRISON], release_notice(days_ahead=4))
    d2 = await _delivery(env.store, m2["id"], sub["id"])
    await _status(env.store, d2["id"], "dead_lettered")
    receivers.succeed(VAWG)  # the third: delivered at once
    m3 = await _publish(env.clients[PRISON], release_notice(days_ahead=5))
    d3 = await _delivery(env.store, m3["id"], sub["id"])
    await _status(env.store, d3["id"], "delivered")

    async def ids(**params: Any) -> list[str]:
        rows = await _ok(vawg.request("GET", "/v1/deliveries", params=params))
        return [r["id"] for r in rows]

    assert await ids() == [d1["id"], d2["id"], d3["id"]]  # oldest first, only the caller's
    assert await ids(status="delivered") == [d1["id"], d3["id"]]
    assert await ids(status="delivered", limit=1) == [d1["id"]]
    assert await ids(status="dead_lettered") == [d2["id"]]
    assert await ids(status="retrying") == []
    assert await ids(message_id=m3["id"]) == [d3["id"]]
    assert await ids(subscription_id=sub["id"], limit=2) == [d1["id"], d2["id"]]
    assert await ids(until=_utc(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))) == []
    r = await vawg.request("GET", "/v1/deliveries", params={"status": "lost"})
    assert _problem(r, 422)["errors"][0]["pointer"] == "/status"
    r = await vawg.request("GET", "/v1/deliveries", params={"limit": 0})
    _problem(r, 422)

    [row] = await _ok(vawg.request("GET", "/v1/deliveries", params={"message_id": m1["id"]}))
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert row["last_status_code"] == 204 and row["next_attempt_at"] is None
    assert "history" not in row
    detail = await _ok(vawg.request("GET", f"/v1/deliveries/{d1['id']}"))
    assert detail["message_id"] == m1["id"] and detail["message_type"] == "release-notice"
    assert detail["subscription_id"] == sub["id"] and detail["channel"] == "webhook"
    assert [a["status_code"] for a in detail["history"]] == [503, 204]
    assert [a["error"] for a in detail["history"]] == ["HTTP 503", None]
    assert detail["fields"] == _fields_for(m1, VAWG)
    detail2 = await _ok(vawg.request("GET", f"/v1/deliveries/{d2['id']}"))
    assert [a["status_code"] for a in detail2["history"]] == [500, 500, 500]

    # another agency: 404 for the id, and none of it in its own listing
    r = await housing.request("GET", f"/v1/deliveries/{d1['id']}")
    assert d1["id"] in _problem(r, 404)["detail"]
    theirs = await _ok(housing.request("GET", "/v1/deliveries"))
    assert {d["id"] for d in theirs}.isdisjoint({d1["id"], d2["id"], d3["id"]})
    assert {d["status"] for d in theirs} <= {"no_channel"}
    r = await vawg.request("GET", "/v1/deliveries/msg_doesnotexist")
    _problem(r, 404)


@pytest.mark.kafka_cluster
async def test_the_cluster_lets_each_agency_read_only_its_own_topic(
    start_env: StartEnv, kafka: KafkaTarget
) -> None:
    """Least privilege enforced by Apache Kafka itself: each agency with a kafka subscription
    gets a principal of its own, issued once, that may read its topic and its own consumer
    groups and nothing else; it goes with the agency's last kafka subscription."""
    env = await start_env(**FAST)
    vawg, housing = env.clients[VAWG], env.clients[HOUSING]
    vawg_key = await _register_key(vawg, "vawg-2026-1")
    await _register_key(housing, "housing-2026-1")
    sub = await _subscribe(vawg, "kafka")
    other = await _subscribe(housing, "kafka")
    credential = sub["kafka_credential"]
    assert credential["username"] == f"agency-{VAWG}"
    assert credential["mechanism"] == "SCRAM-SHA-512"
    assert credential["topic"] == env.runtime.kafka.agency_topic(VAWG)
    assert credential["group_prefix"] == f"{VAWG}."
    # shown once: a second kafka subscription of the same party does not show it again
    again = await _subscribe(vawg, "kafka")
    assert again["kafka_credential"] is None
    assert (await vawg.request("DELETE", f"/v1/subscriptions/{again['id']}")).status_code == 204

    accepted = await _publish(env.clients[PRISON], release_notice())
    row = await _delivery(env.store, accepted["id"], sub["id"])
    await _status(env.store, row["id"], "delivered")

    def as_vawg(group: str, password: str | None = None) -> dict[str, Any]:
        kw = env.runtime.kafka.consumer_kwargs(group)
        kw.update(
            sasl_plain_username=credential["username"],
            sasl_plain_password=password or credential["password"],
        )
        return kw

    # its own topic, in a group of its own namespace: read, and decrypted with its own key
    own = AIOKafkaConsumer(credential["topic"], **as_vawg(f"{VAWG}.case-system"))
    await own.start()
    try:
        record = await asyncio.wait_for(own.getone(), 30)
        await own.commit()
    finally:
        await own.stop()
    assert record.value is not None
    opened = recipient.open_record(
        record.value,
        record.headers,
        [vawg_key],
        broker_keys=await _broker_keys(env),
        recipient=VAWG,
    )
    assert opened.event["id"] == accepted["id"]

    # another agency's topic: refused by the cluster's authorizer
    stranger = AIOKafkaConsumer(other["kafka_topic"], **as_vawg(f"{VAWG}.case-system-2"))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await stranger.start()
            await asyncio.wait_for(stranger.getone(), 30)
    finally:
        await stranger.stop()
    # a consumer group outside its namespace: refused too
    outside = AIOKafkaConsumer(credential["topic"], **as_vawg("isa-broker-router"))
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await outside.start()
            await asyncio.wait_for(outside.getone(), 30)
    finally:
        await outside.stop()
    # writing to its own topic: refused (only the broker writes there)
    producer = AIOKafkaProducer(
        **{
            **env.runtime.kafka.client_kwargs(),
            "sasl_plain_username": credential["username"],
            "sasl_plain_password": credential["password"],
        }
    )
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(credential["topic"], b"forged")
    finally:
        await producer.stop()

    # a new credential replaces the old; its last kafka subscription gone, the principal goes
    fresh = await _ok(vawg.request("POST", "/v1/kafka-credential"), 200)
    assert fresh["password"] != credential["password"]
    assert (await vawg.request("DELETE", f"/v1/subscriptions/{sub['id']}")).status_code == 204
    gone = AIOKafkaConsumer(credential["topic"], **as_vawg(f"{VAWG}.late", fresh["password"]))
    try:
        with pytest.raises(KafkaError):
            await gone.start()
    finally:
        await gone.stop()
    r = await vawg.request("POST", "/v1/kafka-credential")
    assert r.status_code == 409 and r.json()["code"] == "no_kafka_subscription", r.text
    events = [e["event"] for e in await env.store.audit_entries(party=VAWG)]
    assert {"kafka_access_granted", "kafka_credential_issued", "kafka_access_revoked"} <= set(
        events
    )
    assert credential["password"] not in json.dumps(
        [e["detail"] for e in await env.store.audit_entries()]
    )
