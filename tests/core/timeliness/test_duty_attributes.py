"""The duty attributes of a delivered event (``isadutyid``, ``isadutydue``): what the real
dispatcher puts in the event it delivers, read from the real store when the attempt is made;
the store left unread when no flow of the share declares a duty; an amendment's new deadline;
nothing on a cancellation or a broker event; the same attributes inside an encrypted record."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.core.crypto import recipient
from services.core.kafka.publisher import InMemoryPublisher
from services.core.store.timeliness import AwaitedDuty
from services.core.timeliness.duty_attributes import DUTY_DUE, DUTY_ID, duty_extensions
from services.router.dispatch import Dispatcher
from tests.core.timeliness.timeliness_world import (
    HOUSING,
    PDU,
    PRISON,
    START,
    VAWG,
    World,
    notice,
    world,
)

integration = pytest.mark.integration

CLOUDEVENTS_NAME = re.compile(r"^[a-z0-9]{1,20}$")
DAY = dt.timedelta(days=1)
MIDNIGHT = dt.datetime.combine(START.date(), dt.time(), dt.UTC)

# -- the attributes ------------------------------------------------------------------------------


def test_no_duty_no_attributes() -> None:
    assert duty_extensions([]) == {}


def test_several_duties_are_listed_earliest_due_first_with_the_earliest_due() -> None:
    later = AwaitedDuty("dut_" + "b" * 32, START + DAY)
    earlier = AwaitedDuty("dut_" + "c" * 32, START)
    tied = AwaitedDuty("dut_" + "a" * 32, START + DAY)
    out = duty_extensions([later, earlier, tied])
    assert out == {
        DUTY_ID: f"{earlier.id},{tied.id},{later.id}",
        DUTY_DUE: "2026-12-02T09:00:00Z",
    }
    # CloudEvents extension attributes: lowercase letters and digits, at most 20; strings
    assert all(CLOUDEVENTS_NAME.match(name) for name in out)
    assert all(isinstance(value, str) for value in out.values())


def test_the_due_time_is_given_in_utc_with_z() -> None:
    elsewhere = START.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert duty_extensions([AwaitedDuty("dut_x", elsewhere)])[DUTY_DUE] == "2026-12-02T09:00:00Z"


# -- delivered by the dispatcher -----------------------------------------------------------------


@pytest.fixture
async def w(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """On SQLite and on PostgreSQL (``database_url`` is parametrised over both)."""
    async with world(tmp_path, database_url) as it:
        yield it


@pytest.fixture
def reads(w: World, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Per recipient, how many times the dispatcher read its duties from the store."""
    counted: Counter[str] = Counter()
    real = w.runtime.store.duties_awaiting

    async def counting(party: str, message_id: str) -> list[AwaitedDuty]:
        counted[party] += 1
        return await real(party, message_id)

    monkeypatch.setattr(w.runtime.store, "duties_awaiting", counting)
    return counted


async def _inbox(w: World, *parties: str) -> None:
    for party in parties:
        r = await w.http.post(
            "/v1/subscriptions",
            json={"message_types": ["release-notice"], "channel": "inbox"},
            headers=await w.headers(party),
        )
        assert r.status_code == 201, r.text


async def _deliver(w: World, publisher: InMemoryPublisher | None = None) -> int:
    """Attempt every delivery due now, as the dispatcher's loop would (in rounds: per-person
    order holds a later event back until the earlier one is delivered); how many."""
    dispatcher = Dispatcher(w.runtime, publisher or InMemoryPublisher())
    attempted = 0
    try:
        while rows := await w.runtime.store.due_deliveries(w.clock(), 100, set()):
            for row in rows:
                await dispatcher.attempt(row)
            attempted += len(rows)
    finally:
        await dispatcher.aclose()
    return attempted


async def _events(w: World, party: str) -> dict[str, dict[str, Any]]:
    """The events in ``party``'s inbox, by event id."""
    entries = await w.runtime.store.inbox_after(party, 0, 100)
    return {e["id"]: e for e in (json.loads(x["body"]) for x in entries)}


@integration
async def test_a_delivery_names_the_recipients_duty_and_its_due_time(
    w: World, reads: Counter[str]
) -> None:
    await _inbox(w, VAWG, HOUSING, PDU)
    mid = await w.send(PRISON, "release-notice", notice(5))
    assert await _deliver(w) == 3
    duties = await w.duties(mid)

    vawg = (await _events(w, VAWG))[mid]
    assert vawg[DUTY_ID] == duties[VAWG]["id"]
    assert vawg[DUTY_DUE] == "2026-12-03T09:00:00Z"  # within 24 hours of routing
    housing = (await _events(w, HOUSING))[mid]
    assert housing[DUTY_ID] == duties[HOUSING]["id"]
    assert housing[DUTY_DUE] == "2026-12-04T09:00:00Z"  # within 2 days
    # the probation service receives the notice under a flow with no duty: no attribute, and
    # the store is not read for it
    pdu = (await _events(w, PDU))[mid]
    assert PDU not in duties
    assert DUTY_ID not in pdu and DUTY_DUE not in pdu
    assert reads == {VAWG: 1, HOUSING: 1}


@integration
async def test_the_attributes_say_what_holds_when_the_attempt_is_made(w: World) -> None:
    await _inbox(w, VAWG, HOUSING, PDU)
    mid = await w.send(PRISON, "release-notice", notice(5))
    duties = await w.duties(mid)
    # housing acknowledges before its delivery is attempted; the VAWG service's duty
    # escalates before its delivery is attempted
    assert (await w.acknowledge(HOUSING, duties[HOUSING]["id"])).status_code == 200
    w.clock.now = duties[VAWG]["due_at"]
    assert await w.scheduler().run_due(w.clock()) >= 1
    assert (await w.runtime.store.get_duty(duties[VAWG]["id"]))["status"] == "escalated"  # type: ignore[index]
    await _deliver(w)

    assert DUTY_ID not in (await _events(w, HOUSING))[mid]  # nothing left to acknowledge
    vawg = (await _events(w, VAWG))[mid]  # past due and still to be acknowledged
    assert vawg[DUTY_ID] == duties[VAWG]["id"] and vawg[DUTY_DUE] == "2026-12-03T09:00:00Z"
    # the escalation, a broker event delivered to the escalation party, carries no duty
    [escalation] = [
        e
        for e in (await _events(w, PDU)).values()
        if e["type"] == "org.isa-broker.duty-escalation.v1"
        and e["data"]["duty_id"] == duties[VAWG]["id"]
    ]
    assert DUTY_ID not in escalation and DUTY_DUE not in escalation


@integration
async def test_an_amendment_is_delivered_with_the_deadline_it_moved(w: World) -> None:
    await _inbox(w, VAWG, HOUSING)
    mid = await w.send(PRISON, "release-notice", notice(2))
    await _deliver(w)
    housing_duty = (await w.duties(mid))[HOUSING]
    # released in two days: due at least a day before, at 00:00 tomorrow
    assert housing_duty["due_at"] == MIDNIGHT + DAY
    assert (await _events(w, HOUSING))[mid][DUTY_DUE] == "2026-12-03T00:00:00Z"
    vawg_duty = (await w.duties(mid))[VAWG]
    assert (await w.acknowledge(VAWG, vawg_duty["id"])).status_code == 200

    w.clock.advance(dt.timedelta(hours=2))
    update = await w.update(PRISON, mid, "amend", notice(3))  # released a day later
    await w.route(update)  # moves the duty in the transaction that records the deliveries
    assert await _deliver(w) == 2
    amended = (await _events(w, HOUSING))[update]
    assert amended["isalifecycle"] == "amended" and amended["isarefersto"] == mid
    assert amended[DUTY_ID] == housing_duty["id"]  # the same duty, on the original
    assert amended[DUTY_DUE] == "2026-12-04T00:00:00Z"
    assert (await w.duties(mid))[HOUSING]["due_at"] == MIDNIGHT + 2 * DAY
    # the VAWG service acknowledged before the amendment: its copy carries no duty
    assert DUTY_ID not in (await _events(w, VAWG))[update]


@integration
async def test_a_cancellation_carries_no_duty_and_reads_none(w: World, reads: Counter[str]) -> None:
    await _inbox(w, VAWG, HOUSING)
    mid = await w.send(PRISON, "release-notice", notice(5))
    await _deliver(w)
    for party in (VAWG, HOUSING):
        assert DUTY_ID in (await _events(w, party))[mid]
    before = Counter(reads)
    cancel = await w.update(PRISON, mid, "cancel", {"reason": "exemption_panel_refused"})
    await w.route(cancel)
    assert await _deliver(w) == 2
    for party in (VAWG, HOUSING):
        event = (await _events(w, party))[cancel]
        assert event["isalifecycle"] == "cancelled"
        assert DUTY_ID not in event and DUTY_DUE not in event
    assert reads == before  # a cancellation cleared every duty: nothing to read


@integration
async def test_an_encrypted_record_carries_the_attributes_inside(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the dispatcher seals to the recipient's key is what the recipient decrypts
    sealed: list[tuple[bytes, bytes]] = []
    real_seal = recipient.seal

    def seal(body: bytes, *args: Any, **kwargs: Any) -> bytes:
        token = real_seal(body, *args, **kwargs)
        sealed.append((body, token))
        return token

    monkeypatch.setattr(recipient, "seal", seal)
    _, public = recipient.generate_key(f"{VAWG}-1")
    await w.runtime.store.add_party_key(VAWG, public, recipient.thumbprint(public), "test", START)
    await w.runtime.store.add_subscription(
        {
            "id": str(uuid.uuid4()),
            "party": VAWG,
            "message_types": ["release-notice"],
            "channel": "kafka",
            "created_at": START,
            "status": "active",
        }
    )
    mid = await w.send(PRISON, "release-notice", notice(5))
    publisher = InMemoryPublisher()
    assert await _deliver(w, publisher) == 1
    [record] = publisher.records
    value = record.value
    [(plaintext, token)] = sealed
    assert value == token and b"isadutyid" not in value  # not readable in the record
    event = json.loads(plaintext)
    assert event["id"] == mid and event["isarecipient"] == VAWG
    assert event[DUTY_ID] == (await w.duties(mid))[VAWG]["id"]
    assert event[DUTY_DUE] == "2026-12-03T09:00:00Z"
