"""The timeliness report and the backlog, computed by the store (SQLite and PostgreSQL) from
rows written directly, so that every count is known in advance."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from services.core.store import Store
from services.core.store import tables as t
from tests.factories import message_row

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)


def _message(**kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": "complete",
        "accepted_at": NOW - dt.timedelta(days=5),
        "routed_at": NOW - dt.timedelta(days=5),
    }
    return message_row(**{**fields, **kw})


def _duty(message_id: str, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"duty_{uuid.uuid4().hex[:16]}",
        "message_id": message_id,
        "message_type": "release-notice",
        "person": "psn_x",
        "sender": "hmp-northgate",
        "recipient": f"party-{uuid.uuid4().hex[:6]}",
        "agreement": "ISA-EB-020",
        "agreement_version": "1.0",
        "flow": "perpetrator-release-alert",
        "rule": "within PT24H",
        "escalate_to": [],
        "due_at": NOW - dt.timedelta(days=1),
        "status": "open",
        "created_at": NOW - dt.timedelta(days=5),
        "updated_at": NOW - dt.timedelta(days=5),
    }
    row.update(kw)
    return row


async def _insert(store: Store, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    async with store.engine.begin() as c:
        for row in rows:  # rows differ in which columns they set
            await c.execute(table.insert().values(**row))


async def test_report_counts_what_the_rows_say(store: Store) -> None:
    notices = [
        _message(timeliness={"notice_days": 1.5, "short_notice": True, "days_early": 30}),
        _message(timeliness={"notice_days": 4.0, "short_notice": False, "days_early": 10}),
        _message(timeliness={"notice_days": 9.0, "short_notice": False}, state="cancelled"),
        _message(timeliness={"notice_days": 6.0, "short_notice": False}, state="released"),
    ]
    other_sender = _message(sender="other-prison", timeliness={"notice_days": 0.5})
    amendment = _message(refers_to=notices[0]["id"], lifecycle="amended", version=2)
    breaches = [
        _message(message_type="dip-breach", sender="police", state=s)
        for s in ("open", "closed", "expired", "expired")
    ]
    recall = _message(message_type="licence-recall", sender="pdu", priority=1)
    await _insert(store, t.messages, [*notices, other_sender, amendment, *breaches, recall])
    root = notices[0]["id"]
    await _insert(
        store,
        t.duties,
        [
            _duty(
                root, acknowledged_at=NOW - dt.timedelta(days=3), late=False, status="acknowledged"
            ),
            _duty(
                root,
                acknowledged_at=NOW,
                late=True,
                status="acknowledged",
                escalated_at=NOW - dt.timedelta(hours=20),
            ),
            _duty(root, status="escalated", escalated_at=NOW - dt.timedelta(hours=20)),
            _duty(root, status="open", due_at=NOW + dt.timedelta(days=1)),
            _duty(notices[2]["id"], status="cleared"),
        ],
    )
    await _insert(
        store,
        t.timers,
        [
            {
                "kind": "dip-reminder:7",
                "subject": breaches[0]["id"],
                "due_at": NOW,
                "status": "done",
                "detail": {"sent": True},
            },
            {
                "kind": "dip-reminder:2",
                "subject": breaches[0]["id"],
                "due_at": NOW,
                "status": "pending",
            },
            {
                "kind": "dip-reminder:7",
                "subject": breaches[2]["id"],
                "due_at": NOW,
                "status": "done",
                "detail": {"sent": True},
            },
            {  # fired without sending: the later point was already due
                "kind": "dip-reminder:7",
                "subject": breaches[3]["id"],
                "due_at": NOW,
                "status": "done",
                "detail": {"sent": False},
            },
        ],
    )
    accepted = NOW - dt.timedelta(days=5)
    await _insert(
        store,
        t.deliveries,
        [
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "message_id": message_id,
                "recipient": f"r{i}",
                "subscription_id": None,
                "channel": "webhook",
                "status": "delivered",
                "fields": [],
                "grants": [],
                "created_at": accepted,
                "updated_at": accepted,
                "accepted_at": accepted,
                "priority": priority,
                "delivered_at": accepted + dt.timedelta(milliseconds=ms),
            }
            for i, (message_id, priority, ms) in enumerate(
                [(recall["id"], 1, 40), (root, 0, 200), (root, 0, 400), (notices[1]["id"], 0, 600)]
            )
        ],
    )

    report = await store.timeliness_report(NOW)
    rel = report["release_notices"]
    assert rel["sent"] == 5
    assert (rel["amended"], rel["cancelled"], rel["released"], rel["short_notice"]) == (1, 1, 1, 1)
    assert rel["notice_days"]["min"] == 0.5
    assert rel["notice_days"]["median"] == 4.0
    assert rel["days_early"]["median"] == 20.0
    assert report["duties"] == {
        "total": 5,
        "acknowledged_on_time": 1,
        "acknowledged_late": 1,
        "missing": 1,
        "not_yet_due": 1,
        "cleared": 1,
        "escalations": 2,
    }
    dip = report["dip_breaches"]
    assert (dip["total"], dip["open"], dip["closed_before_stl"], dip["expired"]) == (4, 1, 1, 2)
    assert dip["reminders_sent"] == 2
    assert report["licence_recalls"] == {"sent": 1, "priority_lane": 1}
    lanes = report["delivery_latency"]
    assert lanes["priority"]["count"] == 1 and lanes["priority"]["p50_ms"] == 40.0
    assert lanes["normal"]["count"] == 3 and lanes["normal"]["p50_ms"] == 400.0

    own = await store.timeliness_report(NOW, sender="hmp-northgate")
    assert own["release_notices"]["sent"] == 4
    assert own["dip_breaches"]["total"] == 0

    later = await store.timeliness_report(NOW, since=NOW - dt.timedelta(days=1))
    assert later["release_notices"]["sent"] == 0


async def test_backlog_counts_only_work_due_now(store: Store) -> None:
    assert await store.backlog(NOW) == {
        "unrouted_messages": 0,
        "due_deliveries": 0,
        "due_timers": 0,
    }
    await _insert(store, t.messages, [_message(status="pending", routed_at=None)])
    await _insert(
        store,
        t.timers,
        [
            {"kind": "duty-due", "subject": "d1", "due_at": NOW, "status": "pending"},
            {
                "kind": "duty-due",
                "subject": "d2",
                "due_at": NOW + dt.timedelta(seconds=1),
                "status": "pending",
            },
            {"kind": "duty-due", "subject": "d3", "due_at": NOW, "status": "done"},
        ],
    )
    assert await store.backlog(NOW) == {
        "unrouted_messages": 1,
        "due_deliveries": 0,
        "due_timers": 1,
    }
