"""Subscription filters, cohorts and the priority lane with the real store (SQLite and
PostgreSQL), the real ISA engine on the demo agreements and the real router and dispatcher.
No Kafka: messages are handed to ``Router.route`` as the consumer would, and the dispatcher's
publisher is a seam that holds every attempt in flight (so the slot counts are exact)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from services.core.clock import ManualClock
from services.core.crypto import recipient
from services.core.runtime import Runtime
from services.core.store.tables import cohort_members
from services.core.store.values import Attempt, DeliveryOutcome
from services.router.dispatch import MAX_IN_FLIGHT, Dispatcher
from services.router.router import Router
from tests.factories import example
from tests.integration.conftest import T0, MakeRuntime, accept

pytestmark = pytest.mark.integration

PRISON, PDU = "hmp-northgate", "eastborough-pdu"
IOM, VAWG, HOUSING = "eastborough-police-iom", "eastborough-vawg", "eastborough-housing"


class HeldPublisher:
    """The dispatcher's publisher seam: every publish waits until released, so attempts
    stay in flight for as long as the test needs."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        await self.gate.wait()


def person(i: int, *, pnc: bool = True, crn: bool = True, prison: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {
        "given_name": "Test",
        "family_name": f"Person{i}",
        "date_of_birth": "1990-01-01",
    }
    if pnc:
        p["pnc_id"] = f"24/{100000 + i}X"
    if crn:
        p["crn"] = f"X{100000 + i}"
    if prison:
        p["prison_number"] = f"A{1000 + i}BC"
    return p


def recall(i: int, *, ual: bool) -> dict[str, Any]:
    body = example("licence-recall")
    body["person"] = person(i)
    body["recall"]["unlawfully_at_large"] = ual
    return body


def notice(i: int, *, la: str = "Eastborough", **who: bool) -> dict[str, Any]:
    body = example("release-notice")
    body["person"] = person(i, **who)
    body["destination"]["local_authority"] = la
    body["risk"] = {"rosh_level": "high", "domestic_abuse": True}  # IOM and VAWG both get it
    return body


async def subscribe(
    rt: Runtime, party: str, types: list[str], filters: dict[str, Any] | None = None
) -> str:
    sub_id = str(uuid.uuid4())
    if await rt.store.current_party_key(party) is None:  # Kafka records are encrypted to it
        _, public = recipient.generate_key(f"{party}-1")
        await rt.store.add_party_key(party, public, recipient.thumbprint(public), "test", T0)
    await rt.store.add_subscription(
        {
            "id": sub_id,
            "party": party,
            "message_types": types,
            "channel": "kafka",
            "created_at": T0,
            "status": "active",
            "filters": filters,
        }
    )
    return sub_id


async def routed(rt: Runtime, message: dict[str, Any]) -> dict[str | None, str]:
    """Route a message; its deliveries as {subscription id: status}."""
    router = Router(rt, HeldPublisher())
    await router.route(message)
    rows = await rt.store.list_deliveries(message_id=message["id"])
    return {r["subscription_id"]: r["status"] for r in rows}


# -- filters in the router ---------------------------------------------------------------------


async def test_a_filter_narrows_and_never_adds_a_recipient(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    la_east = await subscribe(rt, IOM, ["release-notice"], {"local_authorities": ["eastborough"]})
    la_west = await subscribe(rt, IOM, ["release-notice"], {"local_authorities": ["Westshire"]})
    plain = await subscribe(rt, IOM, ["release-notice"])
    # housing's filter matches the notice, but the agreements do not send it this notice (no
    # accommodation need, not of no fixed abode): the filter cannot add it
    housing = await subscribe(
        rt, HOUSING, ["release-notice"], {"local_authorities": ["Eastborough"]}
    )
    body = notice(1)
    body["destination"]["no_fixed_abode"] = False
    message = await accept(rt, PRISON, "release-notice", body)
    assert HOUSING not in {r["party"] for r in message["decision"]["recipients"]}
    got = await routed(rt, message)
    assert got.get(la_east) == "pending" and got.get(plain) == "pending"
    assert la_west not in got  # filtered out: no row at all
    assert housing not in got
    # control: the same housing subscription gets a notice the agreements do send it
    body = notice(2)
    body["destination"]["no_fixed_abode"] = True
    got = await routed(rt, await accept(rt, PRISON, "release-notice", body))
    assert got.get(housing) == "pending"


async def test_a_party_whose_every_subscription_is_filtered_out_gets_nothing(
    make_runtime: MakeRuntime,
) -> None:
    rt = await make_runtime()
    sub = await subscribe(rt, IOM, ["release-notice"], {"risk": {"mappa": True}})
    message = await accept(rt, PRISON, "release-notice", notice(3))
    await Router(rt, HeldPublisher()).route(message)
    rows = await rt.store.list_deliveries(message_id=message["id"])
    assert IOM not in {r["recipient"] for r in rows}  # no delivery, not even "no channel"
    assert VAWG in {r["recipient"] for r in rows}  # control: others are routed as before
    body = notice(4)
    body["risk"]["mappa"] = {"category": "2", "level": "1"}
    assert (await routed(rt, await accept(rt, PRISON, "release-notice", body))).get(sub)


async def test_cohort_matches_by_each_identifier_kind(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    sub = await subscribe(rt, IOM, ["release-notice"], {"cohort": True})
    add = [
        rt.keys.pseudonymise("pnc_id:24/100010X"),  # person 10, listed by PNC
        rt.keys.pseudonymise("crn:X100011"),  # person 11, listed by CRN only
        rt.keys.pseudonymise("prison_number:A1012BC"),  # person 12, by prison number
    ]
    counts = await rt.store.change_cohort(IOM, sub, add, [], T0, 100)
    assert counts == {"added": 3, "removed": 0, "total": 3}
    cases = {
        10: (notice(10), True),
        # keyed by PNC (it carries one), listed by CRN: still matched
        11: (notice(11), True),
        12: (notice(12, pnc=False, crn=False, prison=True), True),
        13: (notice(13), False),  # not in the cohort
        # person 10's CRN only, but the cohort lists person 10 by PNC: not matched
        14: (notice(10, pnc=False), False),
    }
    for i, (body, expected) in cases.items():
        got = await routed(rt, await accept(rt, PRISON, "release-notice", body))
        assert (sub in got) is expected, i
    # removal: person 11 no longer matches
    assert await rt.store.change_cohort(IOM, sub, [], [add[1]], T0, 100) == {
        "added": 0,
        "removed": 1,
        "total": 2,
    }
    assert sub not in await routed(rt, await accept(rt, PRISON, "release-notice", notice(11)))


async def test_cohort_identifiers_are_never_stored_in_clear(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    sub = await subscribe(rt, IOM, ["release-notice"], {"cohort": True})
    p = rt.keys.pseudonymise("pnc_id:24/100010X")
    await rt.store.change_cohort(IOM, sub, [p, p], [], T0, 100)
    async with rt.store.engine.connect() as c:
        stored = [tuple(r) for r in (await c.execute(cohort_members.select())).all()]
    assert [(s, m) for s, m, _ in stored] == [(sub, p)]
    assert "100010" not in repr(stored)
    audit = [a for a in await rt.store.audit_entries() if a["event"] == "cohort_changed"]
    assert [a["detail"] for a in audit] == [
        {"subscription_id": sub, "added": 1, "removed": 0, "total": 1}
    ]
    # another party's subscription: as if it did not exist, nothing changed
    assert await rt.store.change_cohort(VAWG, sub, [p], [p], T0, 100) is None
    assert await rt.store.cohort_of(VAWG, sub) is None
    assert await rt.store.cohort_of(IOM, sub) == [p]
    with pytest.raises(ValueError, match="at most 2"):
        await rt.store.change_cohort(IOM, sub, ["psn_a", "psn_b"], [], T0, 2)
    assert await rt.store.cohort_of(IOM, sub) == [p]


async def test_a_lifecycle_update_reaches_a_subscription_that_got_its_root(
    make_runtime: MakeRuntime,
) -> None:
    rt = await make_runtime()
    east = await subscribe(rt, IOM, ["release-notice"], {"local_authorities": ["Eastborough"]})
    root = await accept(rt, PRISON, "release-notice", notice(20))
    assert east in await routed(rt, root)
    # subscribed after the root was routed: it never got the root
    late = await subscribe(rt, IOM, ["release-notice"], {"local_authorities": ["Eastborough"]})
    amended = notice(20, la="Westshire")  # no longer matches either filter
    update = await accept(
        rt, PRISON, "release-notice", amended, refers_to=root["id"], lifecycle="amended", version=2
    )
    got = await routed(rt, update)
    assert got.get(east) == "pending"
    assert late not in got  # control: the filter still applies to one that never got it
    # a further update follows the chain too
    again = await accept(
        rt, PRISON, "release-notice", amended, refers_to=root["id"], lifecycle="amended", version=3
    )
    assert east in await routed(rt, again)


# -- the priority lane -------------------------------------------------------------------------


async def test_due_deliveries_returns_the_priority_lane_first(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    await subscribe(rt, IOM, ["licence-recall"])
    assert isinstance(rt.clock, ManualClock)
    for i in range(5):
        await routed(rt, await accept(rt, PDU, "licence-recall", recall(30 + i, ual=False)))
        rt.clock.advance(dt.timedelta(seconds=1))
    urgent = await accept(rt, PDU, "licence-recall", recall(40, ual=True))
    assert urgent["priority"] == 1
    await routed(rt, urgent)
    # behind an earlier unfinished message about the same person: per-person order holds
    held = await accept(rt, PDU, "licence-recall", recall(30, ual=True))
    await routed(rt, held)
    due = await rt.store.due_deliveries(rt.clock(), 3, set())
    assert [d["message_id"] for d in due][0] == urgent["id"]
    assert [d["priority"] for d in due] == [1, 0, 0]
    everything = await rt.store.due_deliveries(rt.clock(), 100, set())
    assert held["id"] not in {d["message_id"] for d in everything}
    assert len(everything) == 6
    # the recall is the newest of them, and still first; the rest oldest first
    assert [d["priority"] for d in everything] == [1, 0, 0, 0, 0, 0]
    assert urgent["accepted_at"] == max(d["accepted_at"] for d in everything)
    rest = [d["accepted_at"] for d in everything[1:]]
    assert rest == sorted(rest)


@pytest.mark.parametrize("reserve", [8, 0])
async def test_normal_traffic_cannot_take_the_reserved_slots(
    make_runtime: MakeRuntime, reserve: int
) -> None:
    rt = await make_runtime(webhook_max_in_flight=100, priority_lane_reserved_slots=reserve)
    await subscribe(rt, IOM, ["licence-recall"])
    for i in range(MAX_IN_FLIGHT + 6):
        await routed(rt, await accept(rt, PDU, "licence-recall", recall(100 + i, ual=False)))
    dispatcher = Dispatcher(rt, HeldPublisher())
    try:
        assert await dispatcher.dispatch_due() == MAX_IN_FLIGHT - reserve
        urgent = await accept(rt, PDU, "licence-recall", recall(99, ual=True))
        await routed(rt, urgent)
        started = await dispatcher.dispatch_due()
        if reserve:
            assert started == 1
            rows = await rt.store.list_deliveries(message_id=urgent["id"], recipient=IOM)
            assert rows[0]["id"] in dispatcher._in_flight
        else:  # control: the lane's reserve disabled, every slot is taken by ordinary traffic
            assert started == 0
        assert dispatcher.in_flight == MAX_IN_FLIGHT - reserve + (1 if reserve else 0)
    finally:
        await dispatcher.aclose()


@pytest.mark.parametrize("reserve", [8, 0])
async def test_a_recall_gets_a_slot_at_a_receiver_busy_with_ordinary_traffic(
    make_runtime: MakeRuntime, reserve: int
) -> None:
    rt = await make_runtime(webhook_max_in_flight=2, priority_lane_reserved_slots=reserve)
    await subscribe(rt, IOM, ["licence-recall"])
    for i in range(5):
        await routed(rt, await accept(rt, PDU, "licence-recall", recall(200 + i, ual=False)))
    dispatcher = Dispatcher(rt, HeldPublisher())
    try:
        assert await dispatcher.dispatch_due() == 2  # the subscription's limit
        await routed(rt, await accept(rt, PDU, "licence-recall", recall(199, ual=True)))
        assert await dispatcher.dispatch_due() == (1 if reserve else 0)
        assert await dispatcher.dispatch_due() == 0  # and ordinary traffic still may not
    finally:
        await dispatcher.aclose()


async def test_delivered_at_and_latency_by_lane(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    await subscribe(rt, IOM, ["licence-recall"])
    assert isinstance(rt.clock, ManualClock)
    messages = [
        await accept(rt, PDU, "licence-recall", recall(300 + i, ual=i == 0)) for i in range(3)
    ]
    for m in messages:
        await routed(rt, m)
    rt.clock.advance(dt.timedelta(seconds=2))
    for m in messages:
        (row,) = await rt.store.list_deliveries(message_id=m["id"], recipient=IOM)
        took = 250.0 if m["priority"] else 1000.0 * (messages.index(m) + 1)
        attempt = Attempt(at=rt.clock(), status_code=200, duration_ms=took)
        await rt.store.record_outcome(row, DeliveryOutcome("delivered", attempt=attempt))
    (first,) = await rt.store.list_deliveries(message_id=messages[0]["id"], recipient=IOM)
    assert first["delivered_at"] == T0 + dt.timedelta(seconds=2.25)
    lanes = await rt.store.delivery_latency_by_lane(recipient=IOM)
    assert lanes["priority"] == {"count": 1, "p50_ms": 2250.0, "p95_ms": 2250.0, "max_ms": 2250.0}
    assert lanes["normal"] == {"count": 2, "p50_ms": 4000.0, "p95_ms": 5000.0, "max_ms": 5000.0}
    assert (await rt.store.delivery_latency_by_lane(sender=PDU))["normal"]["count"] == 2
    assert (await rt.store.delivery_latency_by_lane(recipient=VAWG))["normal"]["count"] == 0
    later = await rt.store.delivery_latency_by_lane(since=T0 + dt.timedelta(seconds=10))
    assert later["priority"]["count"] == 0 and later["normal"]["count"] == 0
    # a failed attempt sets no delivered_at
    m = await accept(rt, PDU, "licence-recall", recall(310, ual=False))
    await routed(rt, m)
    (row,) = await rt.store.list_deliveries(message_id=m["id"], recipient=IOM)
    attempt = Attempt(at=rt.clock(), status_code=500, error="HTTP 500", duration_ms=5.0)
    await rt.store.record_outcome(
        row, DeliveryOutcome("retrying", attempt=attempt, next_attempt_at=rt.clock())
    )
    (row,) = await rt.store.list_deliveries(message_id=m["id"], recipient=IOM)
    assert row["delivered_at"] is None
