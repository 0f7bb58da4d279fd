"""End to end through real HTTP (uvicorn), the real broker and real webhooks."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from cloudevents.v1.kafka import KafkaMessage, from_binary
from standardwebhooks.webhooks import Webhook

from services.core.store import Store
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.demo.scenario import run_demo
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KafkaTarget
from tests.factories import release_notice

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

RECIPIENTS = ["eastborough-vawg", "eastborough-housing", "eastborough-police-iom"]


async def _agencies(system: System) -> dict[str, AgencyClient]:
    assert system.runtime is not None
    creds = await ensure_demo_clients(system.runtime)
    return {
        p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }


async def test_each_recipient_gets_only_its_fields_signed(
    system: System, receivers: Receivers
) -> None:
    clients = await _agencies(system)
    secrets = {
        p: (await clients[p].subscribe(["release-notice"], receivers.url(p)))["secret"]
        for p in [*RECIPIENTS, "westshire-youth-justice"]
    }
    r = await clients["hmp-northgate"].publish("release-notice", release_notice())
    assert r.status_code == 202, r.text
    accepted = r.json()
    expected = {x["party"]: x["fields"] for x in accepted["recipients"]}
    assert await receivers.wait_for(set(RECIPIENTS), timeout=30)

    for party in RECIPIENTS:
        [req] = receivers.for_party(party)
        # verified by an independent Standard Webhooks implementation
        Webhook(secrets[party]).verify(req.body, req.headers)
        event = json.loads(req.body)
        assert event["specversion"] == "1.0" and event["id"] == accepted["id"]
        assert event["type"] == "org.isa-broker.release-notice.v1"
        assert event["isarecipient"] == party
        leaves = sorted(_leaves(event["data"]))
        assert leaves == expected[party]
    vawg_raw = receivers.for_party("eastborough-vawg")[0].body.decode()
    for secret_value in (
        "Nowhere Lane",
        "ZZ9 9ZZ",
        "methadone",
        "mental_health",
        "A1234BC",
        "24/123456X",
    ):
        assert secret_value not in vawg_raw
    housing_raw = receivers.for_party("eastborough-housing")[0].body.decode()
    for not_for_housing in ("domestic_abuse", "rosh_level", "exclusion_zones", "methadone"):
        assert not_for_housing not in housing_raw
    assert receivers.for_party("westshire-youth-justice") == []

    # every recipient gets a terminal outcome; the disclosure log names fields, never values
    assert system.runtime is not None
    await _settled(system.runtime.store, accepted["id"])
    deliveries = await system.runtime.store.list_deliveries(message_id=accepted["id"])
    by_party = {d["recipient"]: d["status"] for d in deliveries}
    assert {p: by_party[p] for p in RECIPIENTS} == dict.fromkeys(RECIPIENTS, "delivered")
    assert by_party["eastborough-pdu"] == "no_channel"
    log = json.dumps(
        [e["detail"] for e in await system.runtime.store.audit_entries(accepted["id"])]
    )
    assert "Alexis" not in log and "Nowhere Lane" not in log and "release.date" in log
    for c in clients.values():
        await c.aclose()


async def test_kafka_record_is_a_binary_cloudevent_keyed_by_pseudonym(
    system: System,
) -> None:
    clients = await _agencies(system)
    r = await clients["hmp-northgate"].publish("release-notice", release_notice())
    assert r.status_code == 202
    assert system.runtime is not None
    record = await _first_record(system, system.runtime.kafka.topic("release-notice"))
    # the record as it is on the topic parses with the CloudEvents SDK; its content type says
    # the data is sealed, so a consumer keeps it as bytes (the SDK's default would JSON-decode)
    assert record.value is not None
    raw = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    sealed = from_binary(raw, data_unmarshaller=lambda data: data)
    assert sealed["id"] == r.json()["id"] and sealed["type"] == "org.isa-broker.release-notice.v1"
    assert sealed["datacontenttype"] == "application/vnd.isa-broker.sealed"
    assert sealed.get_data() == record.value
    event = from_binary(_opened(system, record))
    assert event["datacontenttype"] == "application/json"
    assert event["id"] == r.json()["id"]
    assert event["source"] == "urn:isa-broker:party:hmp-northgate"
    assert event["type"] == "org.isa-broker.release-notice.v1"
    assert event.get_data()["release"]["type"] == "ecsl"
    assert record.key is not None and record.key.decode().startswith("psn_")
    headers = json.dumps({k: v.decode() for k, v in record.headers})
    assert "Alexis" not in headers and "A1234BC" not in headers
    for c in clients.values():
        await c.aclose()


async def test_failing_receiver_is_retried_then_dead_lettered(
    system: System, receivers: Receivers
) -> None:
    clients = await _agencies(system)
    await clients["eastborough-vawg"].subscribe(
        ["release-notice"], receivers.url("eastborough-vawg")
    )
    await clients["eastborough-housing"].subscribe(
        ["release-notice"], receivers.url("eastborough-housing")
    )
    receivers.fail_first = {"eastborough-vawg": 1, "eastborough-housing": 99}
    r = await clients["hmp-northgate"].publish("release-notice", release_notice())
    assert r.status_code == 202
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=30)
    assert system.runtime is not None
    store = system.runtime.store
    for _ in range(200):
        ds = {d["recipient"]: d for d in await store.list_deliveries(message_id=r.json()["id"])}
        if ds.get("eastborough-housing", {}).get("status") == "dead_lettered":
            break
        await asyncio.sleep(0.05)
    assert (
        ds["eastborough-vawg"]["status"] == "delivered" and ds["eastborough-vawg"]["attempts"] == 2
    )
    assert ds["eastborough-housing"]["status"] == "dead_lettered"
    attempts = await store.attempts(ds["eastborough-housing"]["id"])
    assert [a["status_code"] for a in attempts] == [503, 503, 503]
    # the dead letter is announced on the dead-letter topic as a CloudEvent, without payload
    record = await _first_record(system, system.runtime.kafka.dead_letter_topic)
    event = from_binary(_opened(system, record))
    assert event["type"] == "org.isa-broker.dead-letter.v1"
    assert event["id"] == ds["eastborough-housing"]["id"]
    data = event.get_data()
    assert data["recipient"] == "eastborough-housing"
    assert [a["status_code"] for a in data["attempts"]] == [503, 503, 503]
    assert record.value is not None and b"Alexis" not in record.value
    for c in clients.values():
        await c.aclose()


async def test_message_accepted_while_broker_down_is_published_later(
    tmp_path: Path, receivers: Receivers
) -> None:
    """A 202 means stored: the relay publishes once a broker answers again."""
    from services.core.kafka.embedded import EmbeddedBroker, free_port

    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    settings = settings_for_local(
        tmp_path / "d",
        relay_poll_seconds=0.2,
        kafka_compat="tansu",
        kafka_bootstrap_servers=broker.bootstrap_servers,
    )
    system = await System(settings).start()
    try:
        clients = await _agencies(system)
        await clients["eastborough-vawg"].subscribe(
            ["release-notice"], receivers.url("eastborough-vawg")
        )
        broker.stop()
        r = await clients["hmp-northgate"].publish("release-notice", release_notice())
        assert r.status_code == 202
        assert system.runtime is not None
        await asyncio.sleep(1.0)
        assert [m["id"] for m in await system.runtime.store.unpublished()] == [r.json()["id"]]
        broker = EmbeddedBroker(port=port).start()  # a new, empty broker on the same address
        from services.core.kafka.topics import ensure_topics

        await ensure_topics(system.runtime.kafka)
        for _ in range(300):
            if not await system.runtime.store.unpublished():
                break
            await asyncio.sleep(0.1)
        assert await system.runtime.store.unpublished() == []
        for c in clients.values():
            await c.aclose()
    finally:
        await system.stop()
        broker.stop()


async def test_demo_scenario_passes(tmp_path: Path, kafka: KafkaTarget) -> None:
    lines: list[str] = []
    prefix = f"demo{uuid.uuid4().hex[:8]}"  # the broker is the session's: topics of its own
    assert await run_demo(
        tmp_path / "demo", out=lines.append, **kafka.settings, kafka_topic_prefix=prefix
    ), lines
    text = "\n".join(lines)
    assert "PASS" in text and "sharing_refused" in text and "westshire-youth-justice" in text


async def _first_record(system: System, topic: str) -> ConsumerRecord[bytes, bytes]:
    """The first record on ``topic``, read by a consumer group of its own."""
    assert system.runtime is not None
    consumer = AIOKafkaConsumer(
        topic, **system.runtime.kafka.consumer_kwargs(f"probe-{uuid.uuid4().hex}")
    )
    await consumer.start()
    try:
        return await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()


def _opened(system: System, record: ConsumerRecord[bytes, bytes]) -> KafkaMessage:
    """The record as a binary-mode CloudEvent, decrypted by the product's own code (the
    shared topics are encrypted: services.core.kafka.encryption)."""
    assert system.runtime is not None and record.value is not None
    assert ("isa_enc", b"aes256gcm-env-v1") in record.headers
    value, headers = system.runtime.topic_encryption.open_(
        record.topic, record.value, list(record.headers)
    )
    return KafkaMessage(headers=dict(headers), key=record.key, value=value)


async def _settled(store: Store, message_id: str) -> None:
    """Wait until the router has recorded an outcome for every recipient of the message."""
    for _ in range(200):
        message = await store.get_message(message_id)
        if message and message["status"] == "complete":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} was not settled within 10 s")


def _leaves(data: object, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


async def test_retry_after_is_honoured_and_410_disables_the_subscription(
    system: System, receivers: Receivers
) -> None:
    clients = await _agencies(system)
    await clients["eastborough-vawg"].subscribe(
        ["release-notice"], receivers.url("eastborough-vawg")
    )
    gone = await clients["eastborough-housing"].subscribe(
        ["release-notice"], receivers.url("eastborough-housing")
    )
    receivers.script = {
        "eastborough-vawg": [(429, {"Retry-After": "1"})],
        "eastborough-housing": [(410, {})],
    }
    r = await clients["hmp-northgate"].publish("release-notice", release_notice())
    assert r.status_code == 202
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=30)
    assert system.runtime is not None
    store = system.runtime.store
    await _settled(store, r.json()["id"])
    ds = {d["recipient"]: d for d in await store.list_deliveries(message_id=r.json()["id"])}
    vawg = await store.attempts(ds["eastborough-vawg"]["id"])
    assert [a["status_code"] for a in vawg] == [429, 204]
    # the schedule says 0.05 s, the receiver asked for 1 s: the receiver wins
    assert (vawg[1]["at"] - vawg[0]["at"]).total_seconds() >= 0.9
    assert ds["eastborough-housing"]["status"] == "dead_lettered"
    assert [a["status_code"] for a in await store.attempts(ds["eastborough-housing"]["id"])] == [
        410
    ]
    subs = (await clients["eastborough-housing"].request("GET", "/v1/subscriptions")).json()
    assert [(s["id"], s["status"]) for s in subs] == [(gone["id"], "disabled")]
    # a later message does not go to the disabled endpoint: it waits as a dead letter, to be
    # replayed if the subscription is enabled again
    r2 = await clients["hmp-northgate"].publish("release-notice", release_notice(days_ahead=4))
    await _settled(store, r2.json()["id"])
    ds2 = {d["recipient"]: d for d in await store.list_deliveries(message_id=r2.json()["id"])}
    assert ds2["eastborough-housing"]["status"] == "dead_lettered"
    assert ds2["eastborough-housing"]["last_error"].startswith("subscription disabled: ")
    assert ds2["eastborough-housing"]["attempts"] == 0
    assert len(receivers.for_party("eastborough-housing")) == 0
    for c in clients.values():
        await c.aclose()
