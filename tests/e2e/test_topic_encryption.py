"""Encryption on the topics, end to end on the real broker: whoever reads the message-type and
dead-letter topics' raw records (the people who run the Kafka cluster) finds none of the
people's names, dates of birth or identifiers, while every delivery still arrives intact; a
key-encryption key rotated while records wait on the topics leaves both old and new records
routable; and after the demo scenario no topic at all, agency topics included, holds the
demo person's data in clear."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from jsonschema import Draft202012Validator

from services.core.crypto import recipient
from services.core.crypto.kek import FileKeyEncryptionKeys
from services.core.kafka.config import KafkaProfile
from services.core.kafka.encryption import TopicEncryption
from services.core.messages import MESSAGE_TYPES
from services.core.settings import REPO_ROOT
from services.demo import scenario
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients, settings_for_local
from tests.conftest import KafkaTarget
from tests.factories import example, release_notice

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

PRISON, PDU, DIP_POLICE = "hmp-northgate", "eastborough-pdu", "eastborough-police-dip"
IOM, VAWG, HOUSING = "eastborough-police-iom", "eastborough-vawg", "eastborough-housing"
GIVEN = ["Quorinda", "Belvarro", "Tamsilde", "Orrick", "Feyanna", "Drustan"]


def _person(i: int) -> dict[str, str]:
    """A synthetic person; every value distinctive enough to search for in raw bytes."""
    return {
        "prison_number": f"Q{7100 + i}KZ",
        "pnc_id": f"25/{918270 + i:06d}W",
        "crn": f"V{582910 + i:06d}",
        "given_name": GIVEN[i],
        "family_name": f"Zymbrock{'abcdef'[i]}",
        "date_of_birth": f"19{71 + i}-0{1 + i}-2{i}",
        "gender": "female",
    }


def _secrets(people: list[dict[str, str]]) -> list[str]:
    return [v for p in people for k, v in p.items() if k != "gender"]


async def _raw_records(
    profile: KafkaProfile, topics: list[str], enough: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topics``, read by a plain consumer as a cluster operator would
    (connected and tuned as ``profile`` says, in a group of its own)."""
    kw = profile.consumer_kwargs(f"operator-{uuid.uuid4().hex}")
    kw.update(isolation_level="read_uncommitted")  # whatever is on the log
    consumer = AIOKafkaConsumer(*topics, **kw)
    records: list[ConsumerRecord[bytes, bytes]] = []
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        quiet_until = loop.time() + 2
        while loop.time() < deadline and (len(records) < enough or loop.time() < quiet_until):
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
                quiet_until = loop.time() + 2
    finally:
        await consumer.stop()
    return records


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_operators_read_no_personal_data_and_rotation_keeps_records_routable(
    tmp_path: Path, kafka: KafkaTarget, receivers: Receivers
) -> None:
    settings = settings_for_local(
        tmp_path / "data",
        **kafka.settings,
        kafka_topic_prefix=f"enc{uuid.uuid4().hex[:8]}",
        relay_poll_seconds=0.2,
        webhook_retry_schedule=(0, 0.05, 0.1),
    )
    assert settings.kafka.encryption  # on by default
    people = [_person(i) for i in range(len(GIVEN))]
    # the gateway (with its outbox relay) runs first, alone: records wait on the topics
    gateway = await System(settings).start(with_router=False)
    router: System | None = None
    clients: dict[str, AgencyClient] = {}
    try:
        assert gateway.runtime is not None
        creds = await ensure_demo_clients(gateway.runtime)
        clients = {
            p: AgencyClient(gateway.gateway_url, c["client_id"], c["client_secret"])
            for p, c in creds.items()
        }
        for party in (IOM, VAWG, HOUSING):
            await clients[party].subscribe(["release-notice"], receivers.url(party))
        receivers.fail_first[HOUSING] = 10**6  # every attempt fails: dead letters

        async def publish(sender: str, message_type: str, body: dict[str, Any]) -> str:
            r = await clients[sender].publish(message_type, body)
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

        def notice(i: int) -> dict[str, Any]:
            body = release_notice(days_ahead=3 + i)
            body["person"] = people[i]
            return body

        before = [await publish(PRISON, "release-notice", notice(i)) for i in range(3)]
        recall = example("licence-recall")
        recall["person"] = {k: v for k, v in people[3].items() if k in recall["person"]}
        breach = example("dip-breach")
        breach["person"] = {k: v for k, v in people[4].items() if k in breach["person"]}
        others = [
            await publish(PDU, "licence-recall", recall),
            await publish(DIP_POLICE, "dip-breach", breach),
        ]
        store = gateway.runtime.store

        async def all_published() -> bool:
            return not await store.unpublished()

        await _until(all_published, "the relay to publish", timeout=30)
        [old_kid] = [k.kid for k in gateway.runtime.keys.kek.describe()]

        # the operator rotates the KEK from another process (isa-broker keys rotate-kek)
        new_kid = FileKeyEncryptionKeys(settings.data_dir / "keys" / "kek").rotate()
        await asyncio.sleep(1.1)  # running processes look at the folder once a second
        after = [await publish(PRISON, "release-notice", notice(5))]

        # now the router starts: it meets records sealed under both KEKs
        router = await System(settings).start(with_gateway=False)
        everything = [*before, *others, *after]
        routed: set[str] = set()

        async def all_routed() -> bool:
            for mid in everything:
                m = await store.get_message(mid)
                if m is not None and m["routed_at"] is not None:
                    routed.add(mid)
            return routed == set(everything)

        await _until(all_routed, "every message to be routed")

        # control: the deliveries arrive intact, personal data and all, old KEK and new
        notices = {*before, *after}

        async def delivered() -> bool:
            return all(
                {json.loads(r.body)["id"] for r in receivers.for_party(p)} >= notices
                for p in (IOM, VAWG)
            )

        await _until(delivered, "the webhook deliveries")
        by_id = {json.loads(r.body)["id"]: json.loads(r.body) for r in receivers.for_party(IOM)}
        for mid, i in zip([*before, *after], [0, 1, 2, 5], strict=True):
            assert by_id[mid]["data"]["person"] == people[i]

        async def dead_lettered() -> bool:
            ds = [d for mid in notices for d in await store.list_deliveries(message_id=mid)]
            dead = [d for d in ds if d["recipient"] == HOUSING and d["status"] == "dead_lettered"]
            return len(dead) == len(notices)

        await _until(dead_lettered, "housing's deliveries to be dead-lettered", timeout=30)

        # what a cluster operator reads: every record of every shared topic, raw
        profile = gateway.runtime.kafka
        shared = [profile.topic(n) for n in MESSAGE_TYPES] + [profile.dead_letter_topic]
        records = await _raw_records(profile, shared, enough=len(everything) + len(notices))
        on = defaultdict(list)
        for rec in records:
            on[rec.topic].append(rec)
        assert set(on) == set(shared), "every shared topic was written"
        secrets = _secrets(people)
        # the headers are as the AsyncAPI document describes them
        asyncapi = yaml.safe_load((REPO_ROOT / "schemas" / "asyncapi.yaml").read_text())
        described = Draft202012Validator(
            {
                **asyncapi,
                "allOf": [
                    {"$ref": "#/components/schemas/cloudEventBinaryHeaders"},
                    {"$ref": "#/components/schemas/topicEncryptionHeaders"},
                ],
            }
        )
        for rec in records:
            if rec.topic != profile.dead_letter_topic:
                described.validate({k: v.decode() for k, v in rec.headers})
        for rec in records:
            raw = [rec.value or b"", rec.key or b""] + [
                k.encode() + b"=" + v for k, v in rec.headers
            ]
            for value in secrets:
                assert not any(value.encode() in part for part in raw), (rec.topic, value)
            assert not any(b"Zymbrock" in part for part in raw)
            headers = dict(rec.headers)
            assert headers["isa_enc"] == b"aes256gcm-env-v1", rec.topic
            assert headers["isa_kek"] in (old_kid.encode(), new_kid.encode())
            assert rec.key is not None and rec.key.startswith(b"psn_")
            assert headers["ce_subject"].startswith(b"psn_") or rec.topic == shared[-1]

        # the records were sealed under the KEK current when they were published, and the
        # product's own code opens each of them (the router did: all were routed)
        kid_of = {dict(r.headers)["ce_id"].decode(): dict(r.headers)["isa_kek"] for r in records}
        assert {kid_of[m] for m in [*before, *others]} == {old_kid.encode()}
        assert {kid_of[m] for m in after} == {new_kid.encode()}
        assert router.runtime is not None
        opener: TopicEncryption = router.runtime.topic_encryption
        for rec in records:
            assert rec.value is not None
            value, headers = opener.open_(rec.topic, rec.value, list(rec.headers))
            if rec.topic == profile.dead_letter_topic:
                assert json.loads(value)["recipient"] == HOUSING
            else:
                assert json.loads(value)["person"]["given_name"] in GIVEN
            assert not any(k.startswith("isa_") for k, _ in headers)
    finally:
        for c in clients.values():
            await c.aclose()
        if router is not None:
            await router.stop()
        await gateway.stop()


async def test_after_the_demo_no_topic_holds_personal_data_in_clear(
    tmp_path: Path, kafka: KafkaTarget
) -> None:
    """The demo scenario (``isa-broker demo``) on the test's broker; then every topic of the
    demo's prefix that the broker holds, shared and per agency, read raw by a plain consumer:
    none of the synthetic person's values is in any record's value, key or headers. The IOM
    team's own topic holds the JWE the demo decrypted with the team's key, and verified with
    the broker's published delivery-signing keys."""
    person = scenario.release_notice(dt.date.today())
    values = [v for k, v in person["person"].items() if k != "gender"]
    values += ["Example Park", "methadone"]  # an exclusion zone, a medication
    seen: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
    prefix = f"demo{uuid.uuid4().hex[:8]}"  # the broker is the session's: the demo's topics

    async def inspect(system: System) -> None:
        assert system.runtime is not None
        profile = system.runtime.kafka
        # the demo's topics that exist on the broker, whatever created them
        admin = AIOKafkaAdminClient(**profile.client_kwargs())
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        finally:
            await admin.close()
        assert profile.agency_topic(scenario.KAFKA_PARTY) in topics
        for rec in await _raw_records(profile, topics, enough=2):
            seen.setdefault(rec.topic, []).append(rec)

    lines: list[str] = []
    assert await scenario.run_demo(
        tmp_path / "demo",
        out=lines.append,
        inspect=inspect,
        **kafka.settings,
        kafka_topic_prefix=prefix,
    ), lines
    profile_topics = set(seen)
    written = {t for t in profile_topics if t.endswith(".release-notice.v1")}
    iom_topic = next(t for t in profile_topics if t.endswith(f".agency.{scenario.KAFKA_PARTY}.v1"))
    assert written, f"the release-notice topic holds the message: {sorted(seen)}"
    assert {t for t in seen if ".agency." in t} == {iom_topic}, "only the IOM team uses Kafka"
    for topic, records in seen.items():
        for rec in records:
            parts = [rec.value or b"", rec.key or b""] + [
                k.encode() + b"=" + v for k, v in rec.headers
            ]
            for value in values:
                assert not any(value.encode() in part for part in parts), (topic, value)
    [iom_record] = seen[iom_topic]
    header = recipient.protected_header(iom_record.value or b"")
    assert header["isa_recipient"] == scenario.KAFKA_PARTY
    assert header["cty"] == recipient.SIGNED_TYP  # inside, the event the broker signed
    assert dict(iom_record.headers)["content-type"] == b"application/jose"
