"""End to end against a running broker, as two agencies would use it: a prison that publishes
a release notice and a VAWG service that receives it by encrypted webhook, on its Kafka
topic and in its inbox, verifies and opens each, acknowledges the duty it carries, and
replays a dead letter.

Skipped unless ``ISA_GATEWAY_URL`` names a broker; the others (all needed then):
``ISA_KAFKA_BOOTSTRAP_SERVERS``, ``ISA_SENDER_PARTY``, ``ISA_SENDER_CLIENT_ID``,
``ISA_SENDER_CLIENT_SECRET``, ``ISA_RECIPIENT_PARTY``, ``ISA_RECIPIENT_CLIENT_ID``,
``ISA_RECIPIENT_CLIENT_SECRET``, ``ISA_AGENCY_TOPIC``, ``ISA_RELEASE_NOTICE_FILE``. The broker
must call webhooks on 127.0.0.1 (``isa-broker dev`` does); its Kafka needs no login (the
embedded broker of ``dev``)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from isa_broker_client import (
    BrokerClient,
    ClientSecret,
    IdempotencyKeyReused,
    InsufficientScope,
    NotFound,
    Recipient,
    SharingRefused,
    Subscription,
    ValidationFailed,
    WebhookSignatureInvalid,
    WebhookVerifier,
    generate_key,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("ISA_GATEWAY_URL"), reason="no broker: ISA_GATEWAY_URL is not set"
    ),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 60.0


@dataclass(frozen=True)
class Env:
    gateway: str
    bootstrap: str
    sender: str
    recipient: str
    topic: str
    notice: dict[str, Any]
    sender_credentials: ClientSecret
    recipient_credentials: ClientSecret

    @classmethod
    def read(cls) -> Env:
        env = os.environ
        return cls(
            gateway=env["ISA_GATEWAY_URL"],
            bootstrap=env["ISA_KAFKA_BOOTSTRAP_SERVERS"],
            sender=env["ISA_SENDER_PARTY"],
            recipient=env["ISA_RECIPIENT_PARTY"],
            topic=env["ISA_AGENCY_TOPIC"],
            notice=json.loads(Path(env["ISA_RELEASE_NOTICE_FILE"]).read_text()),
            sender_credentials=ClientSecret(
                env["ISA_SENDER_CLIENT_ID"], env["ISA_SENDER_CLIENT_SECRET"]
            ),
            recipient_credentials=ClientSecret(
                env["ISA_RECIPIENT_CLIENT_ID"], env["ISA_RECIPIENT_CLIENT_SECRET"]
            ),
        )


@pytest.fixture
def env() -> Env:
    return Env.read()


@pytest.fixture
async def sender(env: Env) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(env.gateway, env.sender_credentials) as client:
        yield client


@pytest.fixture
async def recipient(env: Env) -> AsyncIterator[BrokerClient]:
    """The recipient's client; every subscription and key it makes is removed afterwards."""
    async with BrokerClient(env.gateway, env.recipient_credentials) as client:
        before = {s.id for s in await client.list_subscriptions()}
        keys_before = {k.kid for k in await client.list_encryption_keys()}
        yield client
        for subscription in await client.list_subscriptions():
            if subscription.id not in before:
                await client.delete_subscription(subscription.id)
        for key in await client.list_encryption_keys():
            if key.kid not in keys_before and key.retired_at is None:
                await client.retire_encryption_key(key.kid)


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """The first truthy answer of ``check``, polled until ``TIMEOUT``."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


# -- webhook receivers on 127.0.0.1 --------------------------------------------------------------


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket, path: str = "/") -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


@contextlib.asynccontextmanager
async def serve(app: Any, sock: socket.socket) -> AsyncIterator[None]:
    """Run an ASGI ``app`` with uvicorn on ``sock`` for the duration of the block."""
    import uvicorn

    config = uvicorn.Config(
        app, http="h11", ws="none", lifespan="auto", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started or task.done()

    try:
        await until(started, "uvicorn")
        assert not task.done(), "uvicorn stopped at start"
        yield
    finally:
        server.should_exit = True
        await task


@dataclass(frozen=True)
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes


class Capture:
    """A receiver that keeps each request raw and answers 204, or 410 at ``/gone`` until
    ``gone`` is cleared."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[Captured] = asyncio.Queue()
        self.gone = True  # /gone answers 410 until this is cleared

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = 410 if scope["path"] == "/gone" and self.gone else 204
        if status == 204:
            await self.requests.put(Captured(scope["path"], headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def next(self, path: str) -> Captured:
        async def one() -> Captured:
            while True:
                found = await self.requests.get()
                if found.path == path:
                    return found

        return await asyncio.wait_for(one(), TIMEOUT)


# -- the agency topic ----------------------------------------------------------------------------


async def read_record(env: Env, message_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The record of ``message_id`` on the recipient's topic, read in a group of its own."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        env.topic,
        bootstrap_servers=env.bootstrap,
        group_id=f"{env.recipient}.sdk-python-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    headers = [(k, bytes(v)) for k, v in record.headers]
                    if dict(headers).get("isa_message_id") == message_id.encode():
                        assert record.value is not None
                        return record.value, headers
    finally:
        await consumer.stop()
    raise AssertionError(f"no record of message {message_id} on {env.topic}")


# -- the tests -----------------------------------------------------------------------------------


async def test_release_notice_by_webhook_kafka_and_inbox(
    env: Env, sender: BrokerClient, recipient: BrokerClient
) -> None:
    # tokens, for both agencies
    sender_token = await sender.tokens.token()
    assert "publish:release-notice" in sender_token.scopes
    assert {"subscriptions:manage", "duties:ack", "inbox:read"} <= (
        await recipient.tokens.token()
    ).scopes

    # the recipient's encryption key, registered: every channel below seals to it
    private, public = generate_key(f"sdk-py-{uuid.uuid4().hex[:8]}")
    registered = await recipient.register_encryption_key(public)
    assert registered.current and registered.kid == public["kid"]
    capture = Capture()
    sock = loopback_socket()
    async with serve(capture, sock):
        sealed = await recipient.create_subscription(
            ["release-notice"],
            url=url_of(sock, "/sealed"),
            signature_scheme="v1a",
            encrypt=True,
        )
        assert sealed.encrypt and sealed.public_key and sealed.secret is None
        # rotate: until previous_secret_until both keys sign each request
        rotated = await recipient.rotate_subscription_secret(sealed.id, overlap_seconds=3600)
        assert rotated.public_key != sealed.public_key
        assert rotated.previous_secret_until is not None
        gone = await recipient.create_subscription(["release-notice"], url=url_of(sock, "/gone"))
        assert gone.signature_scheme == "v1" and gone.secret
        kafka = await recipient.create_subscription(["release-notice"], channel="kafka")
        assert kafka.kafka_topic == env.topic and kafka.encrypt
        inbox = await recipient.create_subscription(["release-notice"], channel="inbox")
        listed = {s.id: s for s in await recipient.list_subscriptions()}
        assert {sealed.id, gone.id, kafka.id, inbox.id} <= set(listed)
        assert listed[sealed.id].public_key == rotated.public_key

        # the sender publishes, with a purpose and an idempotency key
        key = str(uuid.uuid4())
        accepted = await sender.publish(
            "release-notice", env.notice, purposes=["victim-safety"], idempotency_key=key
        )
        assert env.recipient in {r.party for r in accepted.recipients}
        again = await sender.publish(
            "release-notice", env.notice, purposes=["victim-safety"], idempotency_key=key
        )
        assert again.replayed and again.id == accepted.id
        changed = copy.deepcopy(env.notice)
        changed["person"]["given_name"] = "Alexandra"
        with pytest.raises(IdempotencyKeyReused):
            await sender.publish(
                "release-notice", changed, purposes=["victim-safety"], idempotency_key=key
            )

        # the webhook: verified with either key of the rotation, then opened
        request = await capture.next("/sealed")
        old = WebhookVerifier([sealed.public_key or ""]).verify(request.body, request.headers)
        new = WebhookVerifier([rotated.public_key or ""]).verify(request.body, request.headers)
        assert old == new and new.encrypted
        with pytest.raises(WebhookSignatureInvalid):  # another subscription's key
            WebhookVerifier(gone.secret or "").verify(request.body, request.headers)
        broker_keys = await recipient.broker_keys()
        me = Recipient(env.recipient, [private], broker_keys)
        opened = await me.aopen_webhook(new.body, new.webhook_id)
        event = opened.event
        assert event["id"] == accepted.id
        assert event["isarecipient"] == env.recipient
        assert event["isadeliveryid"] == new.webhook_id
        assert "address" not in event["data"].get("destination", {})  # a hard block

        # the agency topic: the same event, sealed again for that delivery
        value, headers = await read_record(env, accepted.id)
        from_kafka = await me.aopen_record(value, headers)
        assert from_kafka.event["id"] == accepted.id
        assert from_kafka.event["data"] == event["data"]
        assert from_kafka.binding.delivery_id != new.webhook_id

        # the inbox: drained, the message found and the cursor acknowledged
        drained: list[Any] = []  # every entry read, each once: the cursor moves on

        async def in_inbox() -> list[Any]:
            drained.extend([e async for e in recipient.inbox(wait=2, stop_when_empty=True)])
            return [e for e in drained if e.kind == "message" and e.event["id"] == accepted.id]

        entries = await until(in_inbox, "the message in the inbox")
        assert entries[0].delivery_id == entries[0].event["isadeliveryid"]
        page = await recipient.read_inbox(wait=0)
        assert page.acknowledged >= entries[0].cursor

        # the duty the flow sets, carried by every channel: acknowledged once
        duties = entries[0].duty_ids
        assert duties and duties == tuple(event["isadutyid"].split(","))
        acknowledged = await recipient.acknowledge_duty(duties[0], "victim_contacted")
        assert acknowledged.status == "acknowledged"
        assert acknowledged.action == "victim_contacted"
        assert (await recipient.acknowledge_duty(duties[0])).action == "victim_contacted"
        assert (await recipient.get_duty(duties[0])).acknowledged_by == (
            env.recipient_credentials.client_id
        )

        # the deliveries: three delivered; the one to /gone dead-lettered by its 410
        async def settled() -> list[Any]:
            found = await recipient.list_deliveries(message_id=accepted.id)
            mine = [d for d in found if d.subscription_id in {sealed.id, kafka.id, inbox.id}]
            ready = len(mine) == 3 and all(d.status == "delivered" for d in mine)
            return found if ready else []

        deliveries = {d.subscription_id: d for d in await until(settled, "deliveries")}
        assert deliveries[kafka.id].channel == "kafka"
        detail = await recipient.get_delivery(deliveries[sealed.id].id)
        assert detail.history and detail.history[-1].status_code == 204

        async def dead() -> list[Any]:
            return await recipient.list_dead_letters(subscription_id=gone.id)

        dead_letter = (await until(dead, "the dead letter"))[0]
        assert dead_letter.message_id == accepted.id
        assert dead_letter.last_status_code == 410
        assert [s.status for s in await recipient.list_subscriptions() if s.id == gone.id] == [
            "disabled"
        ]

        # the broker told the recipient, in its inbox, with a notice
        async def disabled_notice() -> list[Any]:
            drained.extend([e async for e in recipient.inbox(wait=1, stop_when_empty=True)])
            return [
                e
                for e in drained
                if e.kind == "notice"
                and e.event["type"] == "org.isa-broker.notice.subscription-disabled.v1"
                and e.event["data"]["subscription_id"] == gone.id
            ]

        notice = (await until(disabled_notice, "the subscription-disabled notice"))[0]
        assert notice.delivery_id is None
        assert notice.event["data"]["recipient"] == env.recipient

        # the receiver is fixed: enable the subscription and replay its dead letter
        capture.gone = False
        assert (await recipient.enable_subscription(gone.id)).status == "active"
        assert await recipient.replay_dead_letters(subscription_id=gone.id) == [dead_letter.id]
        replayed = await capture.next("/gone")
        verified = WebhookVerifier(gone.secret or "").verify(replayed.body, replayed.headers)
        assert verified.webhook_id == dead_letter.id  # the same delivery id: de-duplicate on it
        assert verified.event()["id"] == accepted.id
        assert await recipient.list_dead_letters(subscription_id=gone.id) == []


async def test_the_broker_problems_are_typed(
    env: Env, sender: BrokerClient, recipient: BrokerClient
) -> None:
    invalid = copy.deepcopy(env.notice)
    del invalid["release"]["date"]
    with pytest.raises(ValidationFailed) as failed:
        await sender.publish("release-notice", invalid)
    assert failed.value.fields == ("/release/date",)
    with pytest.raises(SharingRefused) as refused:
        await sender.publish("release-notice", env.notice, purposes=["no-such-purpose"])
    assert refused.value.reason == "purpose_not_covered"
    with pytest.raises(InsufficientScope) as scope:
        await recipient.publish("release-notice", env.notice)
    assert scope.value.problem["required_scope"] == "publish:release-notice"
    with pytest.raises(NotFound):
        await recipient.get_delivery("msg_" + "0" * 32)


def load_receiver() -> Any:
    """``examples/receiver.py``, imported from its file as an agency would run it."""
    spec = importlib.util.spec_from_file_location("isa_example_receiver", EXAMPLES / "receiver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_reference_receiver(
    env: Env, sender: BrokerClient, recipient: BrokerClient, tmp_path: Path
) -> None:
    example = load_receiver()
    private, public = generate_key(f"sdk-py-rx-{uuid.uuid4().hex[:8]}")
    await recipient.register_encryption_key(public)
    sock = loopback_socket()
    subscription: Subscription = await recipient.create_subscription(
        ["release-notice"], url=url_of(sock), encrypt=True
    )
    receiver = example.Receiver(
        party=env.recipient,
        webhook_keys=[subscription.secret],
        private_keys=[private],
        client=BrokerClient(env.gateway, env.recipient_credentials),
        store=example.Store(tmp_path / "receiver.sqlite3"),
        retry_seconds=1.0,
    )
    async with serve(receiver.app(), sock):
        accepted = await sender.publish("release-notice", env.notice)

        async def stored() -> str | None:
            found = await recipient.list_deliveries(
                message_id=accepted.id, subscription_id=subscription.id, status="delivered"
            )
            return found[0].id if found else None

        delivery_id = await until(stored, "the delivery to the receiver")
        event = receiver.store.event(delivery_id)
        assert event is not None and event["id"] == accepted.id
        duty_id = event["isadutyid"].split(",")[0]

        async def acknowledged() -> bool:
            return bool(receiver.store.duty_state(duty_id) == "acknowledged")

        await until(acknowledged, "the receiver to acknowledge the duty")
    duty = await recipient.get_duty(duty_id)
    assert duty.status == "acknowledged"
    assert duty.acknowledged_by == env.recipient_credentials.client_id
