"""DIP breach deadlines with a controlled clock: both reminders, at their points, to the
responsible parties, then the expiry; or an outcome that closes the breach and stops them;
a breach that arrives late; an expiry racing an outcome; and ``GET /v1/dip-breaches``."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.core.timeliness.dip import plan
from tests.core.timeliness.timeliness_world import (
    PDU,
    POLICE_DIP,
    PRISON,
    START,
    World,
    breach,
    world,
)

pytestmark = pytest.mark.integration

US = dt.timedelta(microseconds=1)


def _midnight(days: int) -> dt.datetime:
    return dt.datetime.combine(START.date() + dt.timedelta(days=days), dt.time(), dt.UTC)


def test_plan_of_a_breach_in_good_time() -> None:
    expiry = START.date() + dt.timedelta(days=10)
    assert plan(expiry, (7, 2), START) == {
        "dip-reminder:2": _midnight(8),
        "dip-reminder:7": _midnight(3),
        "dip-expiry": _midnight(11),  # the STL date itself is still in time
    }


def test_plan_of_a_late_breach_fires_the_latest_passed_point_once() -> None:
    # five days left: the 7-day point has passed (fires now), the 2-day one is to come
    assert plan(START.date() + dt.timedelta(days=5), (7, 2), START) == {
        "dip-reminder:2": _midnight(3),
        "dip-reminder:7": START,
        "dip-expiry": _midnight(6),
    }
    # one day left: only the 2-day reminder, at once; "7 days left" would be wrong
    assert plan(START.date() + dt.timedelta(days=1), (7, 2), START) == {
        "dip-reminder:2": START,
        "dip-expiry": _midnight(2),
    }
    # already expired: no reminder, the expiry at once
    assert plan(START.date() - dt.timedelta(days=1), (7, 2), START) == {"dip-expiry": _midnight(0)}


@pytest.fixture
async def w(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path, database_url) as it:
        yield it


async def test_a_breach_gets_both_reminders_then_expires(w: World) -> None:
    mid = await w.send(POLICE_DIP, "dip-breach", breach(10))
    deliveries = await w.runtime.store.list_deliveries(message_id=mid)
    recipients = {d["recipient"] for d in deliveries if d["status"] != "withheld"}
    assert PDU in recipients
    responsible = sorted({POLICE_DIP, *recipients})
    s = w.scheduler()

    w.clock.now = _midnight(3) - US
    assert await s.run_due(w.clock()) == 0
    w.clock.now = _midnight(3)
    assert await s.run_due(w.clock()) == 1
    [first] = await w.events("dip-breach-reminder")
    assert first["payload"]["type"] == "org.isa-broker.dip-breach-reminder.v1"
    assert first["payload"]["data"] == {
        "message_id": mid,
        "sender": POLICE_DIP,
        "stl_expiry": (START.date() + dt.timedelta(days=10)).isoformat(),
        "days_left": 7,
        "reminder": "dip-reminder:7",
        "responsible": responsible,
    }
    # the responsible parties have no subscription here: each has it on its feed
    for party in responsible:
        feed = await w.runtime.store.inbox_after(party, 0, 100)
        assert [e["kind"] for e in feed] == ["notice"], party

    w.clock.now = _midnight(8)
    assert await s.run_due(w.clock()) == 1
    assert [e["payload"]["data"]["days_left"] for e in await w.events("dip-breach-reminder")] == [
        7,
        2,
    ]
    w.clock.now = _midnight(11) - US  # the STL date is still in time
    assert await s.run_due(w.clock()) == 0
    assert (await w.runtime.store.get_message(mid))["state"] == "open"  # type: ignore[index]
    w.clock.now = _midnight(11)
    assert await s.run_due(w.clock()) == 1
    assert (await w.runtime.store.get_message(mid))["state"] == "expired"  # type: ignore[index]
    [expired] = await w.events("dip-breach-expired")
    assert expired["payload"]["data"]["responsible"] == responsible
    audit = [e["event"] for e in await w.runtime.store.audit_entries(mid)]
    assert audit.count("dip_reminder_sent") == 2 and audit.count("dip_expired") == 1

    w.clock.advance(dt.timedelta(days=30))
    assert await s.run_due(w.clock()) == 0

    r = await w.http.get("/v1/dip-breaches", headers=await w.headers(PDU))
    assert r.status_code == 200, r.text
    [listed] = r.json()["breaches"]
    assert listed["id"] == mid and listed["state"] == "expired"
    assert listed["reminders_sent"] == 2 and listed["outcome"] is None
    assert listed["stl_expiry"] == (START.date() + dt.timedelta(days=10)).isoformat()
    # a party that neither sent nor received it sees nothing (control: the sender does)
    r = await w.http.get("/v1/dip-breaches", headers=await w.headers(PRISON))
    assert r.status_code in (200, 403) and mid not in r.text
    r = await w.http.get("/v1/dip-breaches", headers=await w.headers(POLICE_DIP))
    assert [b["id"] for b in r.json()["breaches"]] == [mid]


async def test_an_outcome_closes_the_breach_and_stops_its_reminders(w: World) -> None:
    mid = await w.send(POLICE_DIP, "dip-breach", breach(10))
    s = w.scheduler()
    w.clock.now = _midnight(3)
    assert await s.run_due(w.clock()) == 1  # the 7-day reminder
    update = await w.update(
        POLICE_DIP,
        mid,
        "outcome",
        {"outcome": "postal_charge_requisition", "date": w.clock().date().isoformat()},
    )
    await w.route(update)
    assert (await w.runtime.store.get_message(mid))["state"] == "closed"  # type: ignore[index]
    timers = {t["kind"]: t["status"] for t in await w.runtime.store.list_timers(subject=mid)}
    assert timers == {
        "dip-reminder:7": "done",
        "dip-reminder:2": "cancelled",
        "dip-expiry": "cancelled",
    }
    w.clock.advance(dt.timedelta(days=30))
    assert await s.run_due(w.clock()) == 0
    assert len(await w.events("dip-breach-reminder")) == 1
    assert await w.events("dip-breach-expired") == []
    r = await w.http.get("/v1/dip-breaches", headers=await w.headers(POLICE_DIP))
    [listed] = r.json()["breaches"]
    assert listed["state"] == "closed" and listed["outcome"] == "postal_charge_requisition"
    assert listed["reminders_sent"] == 1


async def test_an_outcome_accepted_before_the_expiry_fires_wins_the_race(w: World) -> None:
    """The outcome is accepted (the breach is closed) but its record has not been routed
    when the expiry timer fires: the conditional update leaves the breach closed."""
    mid = await w.send(POLICE_DIP, "dip-breach", breach(1))
    s = w.scheduler()
    assert await s.run_due(w.clock()) == 1  # one day left: the 2-day reminder, at once
    w.clock.now = _midnight(1) + dt.timedelta(hours=20)
    await w.update(
        POLICE_DIP, mid, "outcome", {"outcome": "arrested", "date": w.clock().date().isoformat()}
    )
    w.clock.now = _midnight(2)
    assert await s.run_due(w.clock()) == 1  # the expiry timer fired, and did nothing
    assert (await w.runtime.store.get_message(mid))["state"] == "closed"  # type: ignore[index]
    assert await w.events("dip-breach-expired") == []
    # the reminder that fired at once when it arrived (one day left) is the only event
    assert [e["payload"]["data"]["days_left"] for e in await w.events("dip-breach-reminder")] == [1]


async def test_a_breach_that_arrives_with_its_outcome_gets_no_timer(w: World) -> None:
    body = breach(10)
    body["breach"]["outcome"] = "re_engaged"
    mid = await w.send(POLICE_DIP, "dip-breach", body)
    assert await w.runtime.store.list_timers(subject=mid) == []
    # control: one without an outcome gets its three
    other = await w.send(POLICE_DIP, "dip-breach", breach(10, pnc="2026/0000456B"))
    assert len(await w.runtime.store.list_timers(subject=other)) == 3


async def test_reminders_follow_the_configured_points(tmp_path: Path) -> None:
    async with world(tmp_path, None, dip_reminder_days=(14, 3, 1)) as w:
        mid = await w.send(POLICE_DIP, "dip-breach", breach(20))
        kinds = sorted(t["kind"] for t in await w.runtime.store.list_timers(subject=mid))
        assert kinds == ["dip-expiry", "dip-reminder:1", "dip-reminder:14", "dip-reminder:3"]
        s = w.scheduler()
        w.clock.now = _midnight(20 - 14)
        assert await s.run_due(w.clock()) == 1
        # the scheduler was stopped past the 3-day and the 1-day points: only the latest
        # is sent, saying how many days are left
        w.clock.now = _midnight(20 - 1) + dt.timedelta(hours=3)
        assert await s.run_due(w.clock()) == 2
        sent = [e["payload"]["data"] for e in await w.events("dip-breach-reminder")]
        assert [(x["reminder"], x["days_left"]) for x in sent] == [
            ("dip-reminder:14", 14),
            ("dip-reminder:1", 1),
        ]
        assert sent[0]["responsible"] == sent[1]["responsible"]
        # stopped past the STL itself: no reminder, the expiry reports it
        w.clock.advance(dt.timedelta(days=30))
        assert await s.run_due(w.clock()) == 1
        assert len(await w.events("dip-breach-reminder")) == 2
        assert len(await w.events("dip-breach-expired")) == 1
