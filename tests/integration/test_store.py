"""The store suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from services.core.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(database_url)
    await s.init_schema()
    yield s
    await s.aclose()


def _message(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "message_type": "release-notice",
        "sender": "hmp-northgate",
        "client_id": "c1",
        "purposes": None,
        "person": "psn_abc",
        "payload": {"x": 1},
        "decision": {"recipients": []},
        "status": "pending",
        "accepted_at": dt.datetime.now(dt.UTC),
        "idempotency_key": None,
        "request_hash": "h",
    }
    row.update(kw)
    return row


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


async def test_message_completes_only_when_every_delivery_is_terminal(store: Store) -> None:
    m = _message()
    await store.accept_message(m, "t")
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i, party in enumerate(["a-party", "b-party"]):
        rows.append(
            await store.ensure_delivery(
                {
                    "id": f"msg_{i}",
                    "message_id": m["id"],
                    "recipient": party,
                    "subscription_id": None,
                    "channel": "webhook",
                    "status": "pending",
                    "fields": ["release.date"],
                    "grants": [],
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        )
    again = await store.ensure_delivery({**rows[0], "status": "pending"})
    assert again["id"] == rows[0]["id"]
    assert await store.complete_if_settled(str(m["id"])) is False
    await store.record_attempt(
        "msg_0", status_code=204, error=None, duration_ms=1.0, new_status="delivered"
    )
    await store.settle_delivery(
        rows[0], "delivered", message_type="release-notice", person="psn_abc"
    )
    assert await store.complete_if_settled(str(m["id"])) is False
    await store.settle_delivery(
        rows[1], "dead_lettered", message_type="release-notice", person="psn_abc", reason="HTTP 500"
    )
    assert await store.complete_if_settled(str(m["id"])) is True
    stored = await store.get_message(str(m["id"]))
    assert stored is not None and stored["status"] == "complete"
    attempts = await store.attempts("msg_0")
    assert [a["status_code"] for a in attempts] == [204]
    events = [(a["event"], a["recipient"]) for a in await store.audit_entries(str(m["id"]))]
    assert events == [("accepted", None), ("delivered", "a-party"), ("dead_lettered", "b-party")]


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
    assert await store.release_idempotency_key("c1", "k9", cutoff - dt.timedelta(days=2)) is False
    assert await store.find_idempotent("c1", "k9") is not None
    assert await store.release_idempotency_key("c1", "k9", cutoff) is True
    assert await store.find_idempotent("c1", "k9") is None
    assert await store.get_message(str(old["id"])) is not None
    fresh = _message(idempotency_key="k9")
    assert await store.accept_message(fresh, "t") is None
