"""The HTTP client against a fake broker (``httpx.MockTransport``): what each call sends,
what it makes of the answers, the retries, and the inbox stream."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from isa_broker_client import (
    BrokerClient,
    BrokerUnreachable,
    ClientSecret,
    IdempotencyKeyReused,
    RateLimited,
    SharingRefused,
    Unavailable,
)

BASE = "https://isa-broker.test"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeBroker:
    """Answers tokens itself and hands every other request to ``handle``; records them."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        self.requests.append(request)
        return self.handle(request)

    def client(self, **kw: Any) -> BrokerClient:
        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        return BrokerClient(
            BASE,
            ClientSecret("hmp-northgate.c1", "s"),
            transport=httpx.MockTransport(self),
            sleep=sleep,
            **kw,
        )


ACCEPTED = {
    "id": "6b341713-4c72-490b-b085-530ac98ea114",
    "status": "accepted",
    "message_type": "release-notice",
    "lifecycle": "original",
    "refers_to": None,
    "version": 1,
    "recipients": [
        {
            "party": "eastborough-vawg",
            "fields": ["release.date", "risk.domestic_abuse"],
            "agreements": [{"id": "ISA-EB-020", "version": "1.2"}],
            "purposes": ["victim-safety"],
            "grants": [],
            "withheld": [],
        }
    ],
    "agreements": [{"id": "ISA-EB-020", "version": "1.2"}],
    "not_applied": [],
    "warnings": [],
    "timeliness": None,
}


async def test_publish_sends_purposes_and_an_idempotency_key() -> None:
    broker = FakeBroker(lambda r: httpx.Response(202, json=ACCEPTED))
    async with broker.client() as client:
        accepted = await client.publish(
            "release-notice", {"person": {}}, purposes=["resettlement", "victim-safety"]
        )
    request = broker.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/v1/messages/release-notice"
    assert request.url.params.get_list("purpose") == ["resettlement", "victim-safety"]
    assert request.headers["authorization"] == "Bearer t"
    assert json.loads(request.content) == {"person": {}}
    key = request.headers["idempotency-key"]
    assert accepted.idempotency_key == key and len(key) == 36
    assert accepted.id == ACCEPTED["id"]
    assert not accepted.replayed
    assert accepted.recipients[0].party == "eastborough-vawg"
    assert accepted.recipients[0].agreements == ("ISA-EB-020@1.2",)


async def test_publish_reports_a_replayed_answer() -> None:
    broker = FakeBroker(
        lambda r: httpx.Response(202, json=ACCEPTED, headers={"idempotent-replayed": "true"})
    )
    async with broker.client() as client:
        accepted = await client.publish("release-notice", {}, idempotency_key="k-1")
    assert broker.requests[0].headers["idempotency-key"] == "k-1"
    assert accepted.replayed and accepted.idempotency_key == "k-1"


async def test_a_publish_repeated_after_503_keeps_its_key() -> None:
    answers = iter(
        [
            httpx.Response(503, json={"code": "unavailable", "status": 503}),
            httpx.Response(202, json=ACCEPTED),
        ]
    )
    broker = FakeBroker(lambda r: next(answers))
    async with broker.client() as client:
        await client.publish("release-notice", {})
    keys = {r.headers["idempotency-key"] for r in broker.requests}
    assert len(broker.requests) == 2 and len(keys) == 1
    assert broker.slept == [1.0]


async def test_rate_limit_waits_retry_after_then_gives_up() -> None:
    limited = httpx.Response(
        429,
        headers={"retry-after": "3"},
        json={"code": "rate_limited", "status": 429, "retry_after": 3},
    )
    broker = FakeBroker(lambda r: limited)
    async with broker.client(retries=2) as client:
        with pytest.raises(RateLimited) as raised:
            await client.list_subscriptions()
    assert raised.value.retry_after == 3
    assert broker.slept == [3.0, 3.0]
    assert len(broker.requests) == 3


async def test_a_long_retry_after_is_raised_at_once() -> None:
    broker = FakeBroker(
        lambda r: httpx.Response(429, headers={"retry-after": "600"}, json={"code": "rate_limited"})
    )
    async with broker.client() as client:
        with pytest.raises(RateLimited):
            await client.list_subscriptions()
    assert broker.slept == [] and len(broker.requests) == 1


async def test_creating_a_subscription_is_not_repeated_after_503() -> None:
    broker = FakeBroker(lambda r: httpx.Response(503, json={"code": "unavailable"}))
    async with broker.client() as client:
        with pytest.raises(Unavailable):
            await client.create_subscription(["release-notice"], channel="inbox")
    assert len(broker.requests) == 1


async def test_no_answer_is_broker_unreachable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    broker = FakeBroker(down)
    async with broker.client(retries=1) as client:
        with pytest.raises(BrokerUnreachable):
            await client.list_deliveries()
    assert len(broker.requests) == 2  # a read is repeated once


async def test_problem_answers_raise_their_class() -> None:
    refused = {
        "type": "https://isa-broker.example/problems/sharing_refused",
        "title": "No information sharing agreement permits this share",
        "status": 403,
        "detail": "no agreement in force permits this share",
        "code": "sharing_refused",
        "reason": "purpose_not_covered",
        "rules": [{"agreement": "ISA-EB-020", "version": "1.2", "flow": "f", "outcome": "x"}],
    }
    broker = FakeBroker(lambda r: httpx.Response(403, json=refused))
    async with broker.client() as client:
        with pytest.raises(SharingRefused) as raised:
            await client.publish("release-notice", {}, purposes=["youth-transition"])
    assert raised.value.reason == "purpose_not_covered"
    assert raised.value.clause == "ISA-EB-020@1.2#f"
    assert raised.value.rules[0]["outcome"] == "x"

    broker = FakeBroker(lambda r: httpx.Response(409, json={"code": "idempotency_key_reused"}))
    async with broker.client() as client:
        with pytest.raises(IdempotencyKeyReused):
            await client.publish("release-notice", {}, idempotency_key="k")


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        (
            {"channel": "webhook", "url": "https://vawg.test/hook", "encrypt": True},
            {
                "message_types": ["release-notice"],
                "channel": "webhook",
                "webhook": {"url": "https://vawg.test/hook"},
                "encrypt": True,
            },
        ),
        (
            {"url": "https://vawg.test/hook", "signature_scheme": "v1a"},
            {
                "message_types": ["release-notice"],
                "channel": "webhook",
                "webhook": {"url": "https://vawg.test/hook"},
                "signature_scheme": "v1a",
            },
        ),
        ({"channel": "kafka"}, {"message_types": ["release-notice"], "channel": "kafka"}),
        (
            {"channel": "inbox", "filters": {"local_authority": ["Eastborough"]}},
            {
                "message_types": ["release-notice"],
                "channel": "inbox",
                "filters": {"local_authority": ["Eastborough"]},
            },
        ),
    ],
    ids=["webhook-encrypted", "webhook-v1a", "kafka", "inbox-filtered"],
)
async def test_create_subscription_bodies(kwargs: dict[str, Any], body: dict[str, Any]) -> None:
    answer = {
        "id": "s1",
        "message_types": ["release-notice"],
        "channel": body["channel"],
        "status": "active",
        "created_at": "2026-11-25T10:56:31.956381Z",
        "secret": "whsec_AAAA",
        "kafka_credential": {
            "username": "agency-eastborough-vawg",
            "password": "pw-not-shown",
            "mechanism": "SCRAM-SHA-512",
            "topic": "isa.agency.eastborough-vawg.v1",
            "group_prefix": "eastborough-vawg.",
        },
    }
    broker = FakeBroker(lambda r: httpx.Response(201, json=answer))
    async with broker.client() as client:
        subscription = await client.create_subscription(["release-notice"], **kwargs)
    assert json.loads(broker.requests[0].content) == body
    assert subscription.created_at == dt.datetime(2026, 11, 25, 10, 56, 31, 956381, dt.UTC)
    assert subscription.kafka_credential is not None
    assert "pw-not-shown" not in repr(subscription)
    assert "whsec_AAAA" not in repr(subscription)


async def test_create_subscription_refuses_inconsistent_arguments() -> None:
    broker = FakeBroker(lambda r: httpx.Response(500))
    async with broker.client() as client:
        with pytest.raises(ValueError, match="needs url"):
            await client.create_subscription(["release-notice"])
        with pytest.raises(ValueError, match="webhook subscriptions only"):
            await client.create_subscription(
                ["release-notice"], channel="kafka", signature_scheme="v1a"
            )
    assert broker.requests == []


async def test_deliveries_query_in_utc_and_ids_stay_one_segment() -> None:
    broker = FakeBroker(lambda r: httpx.Response(200, json=[]))
    since = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    async with broker.client() as client:
        await client.list_deliveries(status="retrying", since=since, limit=50)
        with pytest.raises(ValueError, match="aware datetime"):
            await client.list_dead_letters(since=dt.datetime(2026, 1, 1))  # noqa: DTZ001
        broker.handle = lambda r: httpx.Response(202, json={"replayed": []})
        await client.replay_dead_letter("../admin")
    params = broker.requests[0].url.params
    assert dict(params) == {"status": "retrying", "since": "2026-11-25T11:00:00Z", "limit": "50"}
    assert broker.requests[1].url.raw_path == b"/v1/dead-letters/..%2Fadmin/replay"


async def test_acknowledge_duty_sends_the_action() -> None:
    duty = {"id": "dut_1", "status": "acknowledged", "allowed_actions": ["victim_contacted"]}
    broker = FakeBroker(lambda r: httpx.Response(200, json=duty))
    async with broker.client() as client:
        acknowledged = await client.acknowledge_duty("dut_1", "victim_contacted")
        await client.acknowledge_duty("dut_1")
    assert json.loads(broker.requests[0].content) == {"action": "victim_contacted"}
    assert broker.requests[1].content == b""
    assert acknowledged.status == "acknowledged"


# -- the inbox stream ----------------------------------------------------------------------------


def entry(cursor: int, kind: str = "message") -> dict[str, Any]:
    return {
        "cursor": cursor,
        "kind": kind,
        "delivery_id": f"msg_{cursor}" if kind == "message" else None,
        "event": {"id": f"e{cursor}", "isadutyid": "dut_a,dut_b"} if kind == "message" else {},
    }


class FakeInbox:
    """An inbox of ``entries`` read ``limit`` at a time, acknowledged per client."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.acknowledged = 0
        self.log: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/inbox/ack":
            cursor = json.loads(request.content)["cursor"]
            self.log.append(f"ack {cursor}")
            previous, self.acknowledged = self.acknowledged, max(self.acknowledged, cursor)
            return httpx.Response(200, json={"previous": previous, "acknowledged": cursor})
        params = request.url.params
        after = int(params.get("after", self.acknowledged))
        limit = int(params["limit"])
        self.log.append(f"read after={after} wait={params['wait']}")
        page = [e for e in self.entries if e["cursor"] > after][:limit]
        return httpx.Response(
            200,
            json={
                "entries": page,
                "next_cursor": page[-1]["cursor"] if page else after,
                "acknowledged": self.acknowledged,
            },
        )


async def test_inbox_stream_acknowledges_processed_entries_before_each_read() -> None:
    inbox = FakeInbox([entry(3), entry(5), entry(8, "notice")])
    broker = FakeBroker(inbox)
    seen: list[int] = []
    async with broker.client() as client:
        async for item in client.inbox(limit=2, wait=5, stop_when_empty=True):
            seen.append(item.cursor)
            if item.kind == "message":
                assert item.duty_ids == ("dut_a", "dut_b")
    assert seen == [3, 5, 8]
    assert inbox.log == [
        "read after=0 wait=5",
        "ack 5",
        "read after=5 wait=5",
        "ack 8",
        "read after=8 wait=5",
    ]


async def test_inbox_stream_leaves_an_unfinished_entry_unacknowledged() -> None:
    inbox = FakeInbox([entry(1), entry(2), entry(3)])
    broker = FakeBroker(inbox)
    async with broker.client() as client:
        stream = client.inbox(wait=0)
        with pytest.raises(RuntimeError):
            async for item in stream:
                if item.cursor == 2:
                    raise RuntimeError("the case system is down")
        assert stream.cursor == 1
        # a new reader starts after what was acknowledged: entry 2 comes again
        again = client.inbox(wait=0)
        await again.ack()  # nothing processed yet: nothing sent
        first = await again.__anext__()
    assert inbox.acknowledged == 0  # the page was never finished, so nothing was acked
    assert first.cursor == 1


async def test_inbox_stream_ack_covers_the_entry_in_hand() -> None:
    inbox = FakeInbox([entry(1), entry(2)])
    broker = FakeBroker(inbox)
    async with broker.client() as client:
        stream = client.inbox(wait=0, auto_ack=False)
        async for item in stream:
            if item.cursor == 1:
                await stream.ack()
                break
    assert inbox.acknowledged == 1
    assert stream.acknowledged == 1
