"""The store suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from services.core.store import Store
from services.core.store.values import Attempt, DeliveryOutcome
from tests.factories import message_row

pytestmark = pytest.mark.integration


def _message(**kw: Any) -> dict[str, Any]:
    return message_row(**{"person": "psn_abc", "payload": {"x": 1}, **kw})


async def test_accepted_message_has_an_outbox_row_until_published(store: Store) -> None:
    m = _message()
    assert await store.accept_message(m, "isa.release-notice.v1") is None
    pending = await store.unpublished()
    assert [p["id"] for p in pending] == [m["id"]]
    assert pending[0]["topic"] == "isa.release-notice.v1"
    assert pending[0]["payload"] == {"x": 1}
    assert pending[0]["accepted_at"].tzinfo is not None
    await store.mark_published(str(m["id"]))
    assert await store.unpublished() == []
    audit = await store.audit_entries(str(m["id"]))
    assert [a["event"] for a in audit] == ["accepted"]
    assert "x" not in str(audit[0]["detail"])  # the payload never enters the disclosure log


async def test_same_idempotency_key_returns_the_first_message(store: Store) -> None:
    first = _message(idempotency_key="k1", request_hash="h1")
    assert await store.accept_message(first, "t") is None
    second = _message(idempotency_key="k1", request_hash="h2")
    existing = await store.accept_message(second, "t")
    assert existing is not None and existing["id"] == first["id"]
    assert existing["request_hash"] == "h1"
    assert await store.get_message(str(second["id"])) is None
    assert len(await store.unpublished()) == 1
    other_client = _message(idempotency_key="k1", client_id="c2")
    assert await store.accept_message(other_client, "t") is None


async def test_subscriptions_are_scoped_to_their_party(store: Store) -> None:
    sub = {
        "id": str(uuid.uuid4()),
        "party": "eastborough-vawg",
        "message_types": ["release-notice"],
        "url": "http://127.0.0.1:1/h",
        "secret": "whsec_x",
        "created_at": dt.datetime.now(dt.UTC),
        "status": "active",
    }
    await store.add_subscription(sub)
    assert [
        s["id"] for s in await store.active_subscriptions("eastborough-vawg", "release-notice")
    ] == [sub["id"]]
    assert await store.active_subscriptions("eastborough-vawg", "dip-breach") == []
    assert await store.delete_subscription("eastborough-housing", str(sub["id"])) is False
    assert await store.delete_subscription("eastborough-vawg", str(sub["id"])) is True
    assert await store.delete_subscription("eastborough-vawg", str(sub["id"])) is False
    assert await store.active_subscriptions("eastborough-vawg", "release-notice") == []


T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


async def _subscribe(store: Store, party: str = "eastborough-vawg", **kw: object) -> str:
    sub: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "party": party,
        "message_types": ["release-notice"],
        "channel": "webhook",
        "url": "http://127.0.0.1:1/h",
        "secret": "whsec_x",
        "created_at": T0,
        "status": "active",
    }
    sub.update(kw)
    await store.add_subscription(sub)
    return str(sub["id"])


def _delivery(
    m: dict[str, object], sub_id: str | None, party: str, **kw: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "msg_" + uuid.uuid4().hex,
        "message_id": m["id"],
        "recipient": party,
        "subscription_id": sub_id,
        "channel": "webhook",
        "status": "pending",
        "fields": ["release.date"],
        "grants": [],
        "attempts": 0,
        "retry_index": 0,
        "person": m["person"],
        "accepted_at": m["accepted_at"],
        "message_type": m["message_type"],
        "created_at": T0,
        "updated_at": T0,
        "next_attempt_at": T0,
    }
    row.update(kw)
    return row


async def _accepted(store: Store, minutes: int = 0, person: str = "psn_abc") -> dict[str, object]:
    m = _message(person=person, accepted_at=T0 + dt.timedelta(minutes=minutes))
    await store.accept_message(m, "t")
    await store.mark_published(str(m["id"]), T0 + dt.timedelta(minutes=minutes))
    return m


async def test_message_completes_only_when_every_delivery_is_terminal(store: Store) -> None:
    sub = await _subscribe(store)
    m = await _accepted(store)
    rows = [
        _delivery(m, sub, "eastborough-vawg"),
        _delivery(m, None, "b-party", status="no_channel", channel="none"),
    ]
    assert len(await store.mark_routed(str(m["id"]), rows)) == 2
    assert await store.mark_routed(str(m["id"]), rows) == []  # a repeat changes nothing
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "pending" and stored["routed_at"]
    [due] = await store.due_deliveries(T0, 10, set())
    assert due["url"] == "http://127.0.0.1:1/h" and due["payload"] == {"x": 1}
    await store.record_outcome(
        due,
        DeliveryOutcome(
            "retrying",
            attempt=Attempt(at=T0, status_code=500, error="HTTP 500", duration_ms=2.0),
            next_attempt_at=T0 + dt.timedelta(seconds=5),
            retry_index=1,
        ),
    )
    assert await store.due_deliveries(T0 + dt.timedelta(seconds=4), 10, set()) == []
    [due] = await store.due_deliveries(T0 + dt.timedelta(seconds=5), 10, set())
    assert due["attempts"] == 1 and due["retry_index"] == 1
    await store.record_outcome(
        due, DeliveryOutcome("delivered", attempt=Attempt(at=T0, status_code=204, duration_ms=1.0))
    )
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "complete"
    assert [a["status_code"] for a in await store.attempts(str(due["id"]))] == [500, 204]
    events = [(a["event"], a["recipient"]) for a in await store.audit_entries(str(m["id"]))]
    assert events == [
        ("accepted", None),
        ("no_channel", "b-party"),
        ("delivered", "eastborough-vawg"),
    ]


async def test_per_person_order_holds_back_later_deliveries(store: Store) -> None:
    sub = await _subscribe(store)
    first = await _accepted(store, 0)
    second = await _accepted(store, 1)
    other_person = await _accepted(store, 2, person="psn_other")
    await store.mark_routed(str(second["id"]), [_delivery(second, sub, "eastborough-vawg")])
    await store.mark_routed(
        str(other_person["id"]), [_delivery(other_person, sub, "eastborough-vawg")]
    )
    # the first message about psn_abc is not routed yet: only the other person's is due
    due = await store.due_deliveries(T0, 10, set())
    assert [d["message_id"] for d in due] == [other_person["id"]]
    await store.mark_routed(str(first["id"]), [_delivery(first, sub, "eastborough-vawg")])
    due = await store.due_deliveries(T0, 10, set())
    assert [d["message_id"] for d in due] == [first["id"], other_person["id"]]
    # while the first is retrying, the second still waits
    await store.record_outcome(
        due[0],
        DeliveryOutcome("retrying", next_attempt_at=T0 + dt.timedelta(hours=1), retry_index=1),
    )
    assert [d["message_id"] for d in await store.due_deliveries(T0, 10, set())] == [
        other_person["id"]
    ]
    await store.record_outcome(due[0], DeliveryOutcome("dead_lettered", reason="exhausted"))
    assert str(second["id"]) in [d["message_id"] for d in await store.due_deliveries(T0, 10, set())]


async def test_a_lease_goes_to_one_router_until_it_runs_out(store: Store) -> None:
    sub = await _subscribe(store)
    m = await _accepted(store)
    [row] = [_delivery(m, sub, "eastborough-vawg")]
    await store.mark_routed(str(m["id"]), [row])
    until = T0 + dt.timedelta(seconds=60)
    assert await store.claim([str(row["id"])], "router-a", T0, until) == {row["id"]}
    assert await store.claim([str(row["id"])], "router-b", T0, until) == set()
    # router-a, restarted, takes its leases back at once
    assert await store.release_leases("router-a") == 1
    assert await store.claim([str(row["id"])], "router-a", T0, until) == {row["id"]}
    assert await store.due_deliveries(T0, 10, set()) == []
    later = until + dt.timedelta(seconds=1)
    assert await store.claim([str(row["id"])], "router-b", later, later + dt.timedelta(60)) == {
        row["id"]
    }


async def test_a_lease_is_not_given_on_a_delivery_settled_or_not_yet_due(store: Store) -> None:
    """Two routers read the same due rows; the one that claims second, after the first
    attempted and settled the delivery (its lease cleared), must not attempt it again."""
    sub = await _subscribe(store)
    m = await _accepted(store)
    [row] = [_delivery(m, sub, "eastborough-vawg")]
    await store.mark_routed(str(m["id"]), [row])
    [due] = await store.due_deliveries(T0, 10, set())  # both routers read this
    until = T0 + dt.timedelta(seconds=60)
    assert await store.claim([str(row["id"])], "router-a", T0, until) == {row["id"]}
    retry_at = T0 + dt.timedelta(seconds=5)
    await store.record_outcome(due, DeliveryOutcome("retrying", next_attempt_at=retry_at))
    assert await store.claim([str(row["id"])], "router-b", T0, until) == set()  # not due yet
    [due] = await store.due_deliveries(retry_at, 10, set())
    assert await store.claim([str(row["id"])], "router-a", retry_at, until) == {row["id"]}
    await store.record_outcome(due, DeliveryOutcome("delivered"))
    assert await store.claim([str(row["id"])], "router-b", retry_at, until) == set()  # settled
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "complete"


async def test_disable_dead_letters_pending_and_replay_queues_them_again(store: Store) -> None:
    sub = await _subscribe(store)
    m = await _accepted(store)
    await store.mark_routed(str(m["id"]), [_delivery(m, sub, "eastborough-vawg")])
    held = await store.disable_subscription(sub, "receiver answered 410 Gone")
    assert held is not None and [h["sender"] for h in held] == ["hmp-northgate"]
    assert await store.disable_subscription(sub, "again") is None
    [dead] = await store.list_deliveries(status="dead_lettered")
    assert "410" in dead["last_error"]
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "complete"
    # not while the subscription is disabled; another party cannot replay it
    assert await store.replay("eastborough-vawg", T0) == []
    assert await store.enable_subscription("eastborough-housing", sub) is None
    enabled = await store.enable_subscription("eastborough-vawg", sub)
    assert enabled is not None and enabled["status"] == "active"
    assert await store.replay("eastborough-housing", T0) == []
    assert await store.replay("eastborough-vawg", T0, subscription_id=sub) == [dead["id"]]
    [due] = await store.due_deliveries(T0, 10, set())
    assert due["id"] == dead["id"] and due["retry_index"] == 0
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "pending"
    events = [e["event"] for e in await store.audit_entries(str(m["id"]))]
    assert events == ["accepted", "dead_lettered", "replay_requested"]


async def test_inbox_cursor_moves_forward_per_client(store: Store) -> None:
    for i in range(3):
        await store.add_notice("eastborough-vawg", f'{{"n":{i}}}')
    await store.add_notice("eastborough-housing", '{"n":9}')
    entries = await store.inbox_after("eastborough-vawg", 0, 10)
    assert [e["body"] for e in entries] == ['{"n":0}', '{"n":1}', '{"n":2}']
    second = entries[1]["seq"]
    assert await store.ack_inbox("eastborough-vawg", "c1", second) == (0, second)
    assert await store.inbox_cursor("c1") == second
    assert await store.inbox_cursor("c2") == 0
    assert await store.ack_inbox("eastborough-vawg", "c1", 0) == (second, second)  # never back
    assert await store.ack_inbox("eastborough-vawg", "c1", entries[2]["seq"] + 100) is None
    assert [e["body"] for e in await store.inbox_after("eastborough-vawg", second, 10)] == [
        '{"n":2}'
    ]


async def test_unrouted_messages_are_requeued_with_backoff(store: Store) -> None:
    m = await _accepted(store)
    routed = await _accepted(store, person="psn_other")
    await store.mark_routed(str(routed["id"]), [])
    assert await store.requeue_unrouted(T0 + dt.timedelta(seconds=59), 60) == []
    assert await store.requeue_unrouted(T0 + dt.timedelta(seconds=60), 60) == [m["id"]]
    assert [p["id"] for p in await store.unpublished()] == [m["id"]]
    await store.mark_published(str(m["id"]), T0 + dt.timedelta(seconds=60))
    # the second repeat waits twice as long
    assert await store.requeue_unrouted(T0 + dt.timedelta(seconds=179), 60) == []
    assert await store.requeue_unrouted(T0 + dt.timedelta(seconds=180), 60) == [m["id"]]
    await store.mark_published(str(m["id"]), T0 + dt.timedelta(seconds=180))
    assert await store.requeue_unrouted(T0, 60, everything=True) == [m["id"]]


async def test_clients_round_trip(store: Store) -> None:
    await store.add_client(
        "hmp-northgate.1", "hmp-northgate", ["publish:release-notice"], secret_hash="ab" * 32
    )
    c = await store.get_client("hmp-northgate.1")
    assert (
        c is not None
        and c["party"] == "hmp-northgate"
        and c["scopes"] == ["publish:release-notice"]
    )
    assert await store.get_client("nobody") is None


async def test_an_expired_idempotency_key_is_released(store: Store) -> None:
    old = _message(idempotency_key="k9", accepted_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    await store.accept_message(old, "t")
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    kept = await store.idempotent_unexpired("c1", "k9", cutoff - dt.timedelta(days=2))
    assert kept is not None and kept["id"] == old["id"]
    assert await store.find_idempotent("c1", "k9") is not None
    assert await store.idempotent_unexpired("c1", "k9", cutoff) is None  # expired: released
    assert await store.find_idempotent("c1", "k9") is None
    assert await store.idempotent_unexpired("c1", "k9", cutoff) is None
    assert await store.get_message(str(old["id"])) is not None
    fresh = _message(idempotency_key="k9")
    assert await store.accept_message(fresh, "t") is None


async def test_outcomes_recorded_together_are_each_recorded_as_alone(store: Store) -> None:
    """Group commit (``record_outcomes``): outcomes of different kinds in one transaction give
    what one ``record_outcome`` each would: history rows, states, attempt counts, disclosure
    log entries, the failing endpoint recovered, and the messages completed."""
    sub = await _subscribe(store)
    other = await _subscribe(store, party="b-party")
    await store.endpoint_failed(sub, T0)
    one, two = await _accepted(store), await _accepted(store, minutes=1, person="psn_def")
    rows = [
        _delivery(one, sub, "eastborough-vawg"),
        _delivery(one, other, "b-party"),
        _delivery(two, sub, "eastborough-vawg"),
    ]
    await store.mark_routed(str(one["id"]), rows[:2])
    await store.mark_routed(str(two["id"]), rows[2:])
    due = {d["id"]: d for d in await store.due_deliveries(T0 + dt.timedelta(minutes=2), 10, set())}
    assert len(due) == 3
    ok = Attempt(at=T0, status_code=204, duration_ms=1.0)
    retry_at = T0 + dt.timedelta(minutes=5)
    await store.record_outcomes(
        [
            (due[rows[0]["id"]], DeliveryOutcome("delivered", attempt=ok, endpoint_ok=True)),
            (
                due[rows[1]["id"]],
                DeliveryOutcome(
                    "retrying",
                    attempt=Attempt(at=T0, status_code=503, error="HTTP 503", duration_ms=2.0),
                    next_attempt_at=retry_at,
                    retry_index=1,
                ),
            ),
            (due[rows[2]["id"]], DeliveryOutcome("dead_lettered", reason="subscription paused")),
        ]
    )
    got = {r["id"]: await store.get_delivery(str(r["id"])) for r in rows}
    delivered, retrying, dead = (got[r["id"]] for r in rows)
    assert delivered and delivered["status"] == "delivered" and delivered["attempts"] == 1
    assert delivered["lease_owner"] is None and delivered["last_status_code"] == 204
    assert retrying and retrying["status"] == "retrying" and retrying["attempts"] == 1
    assert retrying["retry_index"] == 1 and retrying["last_error"] == "HTTP 503"
    assert dead and dead["status"] == "dead_lettered" and dead["attempts"] == 0
    assert dead["last_error"] == "subscription paused"
    assert [a["status_code"] for a in await store.attempts(str(rows[1]["id"]))] == [503]
    assert await store.attempts(str(rows[2]["id"])) == []
    one_events = [(a["event"], a["recipient"]) for a in await store.audit_entries(str(one["id"]))]
    assert one_events == [("accepted", None), ("delivered", "eastborough-vawg")]
    two_events = [(a["event"], a["recipient"]) for a in await store.audit_entries(str(two["id"]))]
    assert two_events == [("accepted", None), ("dead_lettered", "eastborough-vawg")]
    first, second = await store.get_message(str(one["id"])), await store.get_message(str(two["id"]))
    assert first and first["status"] == "pending"  # b-party's delivery is still open
    assert second and second["status"] == "complete"
    recovered = await store.get_subscription(sub)
    assert recovered is not None and recovered["failing_since"] is None
