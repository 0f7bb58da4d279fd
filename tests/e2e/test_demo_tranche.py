"""The seed scenario end to end (``isa-broker demo --scenario tranche``), smaller than the
default: its board summary prints, agrees with the scenario's own count of what it did, and
agrees with the store, counted here by plain SQL independent of the report's code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.core.settings import Settings
from services.core.store import Store
from services.core.store import tables as t
from services.demo.tranche import run_tranche

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


async def test_tranche_summary_prints_and_agrees_with_the_store(tmp_path: Path) -> None:
    lines: list[str] = []
    data_dir = tmp_path / "tranche"
    ok, report = await run_tranche(data_dir, out=lines.append, notices=60, breaches=12)
    text = "\n".join(lines)
    assert ok, text
    assert "Partnership board summary" in text
    assert "MISMATCH" not in text

    store = Store(Settings(data_dir=data_dir).resolved_database_url)
    try:
        async with store.engine.begin() as c:

            async def count(q: sa.Select[tuple[int]]) -> int:
                return int((await c.execute(q)).scalar_one())

            m, d = t.messages, t.duties
            roots = sa.select(sa.func.count()).select_from(m).where(m.c.refers_to.is_(None))
            releases = roots.where(m.c.message_type == "release-notice")
            dips = roots.where(m.c.message_type == "dip-breach")
            duties = sa.select(sa.func.count()).select_from(d)
            counted = {
                "sent": await count(releases),
                "cancelled": await count(releases.where(m.c.state == "cancelled")),
                "released": await count(releases.where(m.c.state == "released")),
                "dip": await count(dips),
                "dip_closed": await count(dips.where(m.c.state == "closed")),
                "dip_expired": await count(dips.where(m.c.state == "expired")),
                "duties": await count(duties),
                "escalations": await count(duties.where(d.c.escalated_at.is_not(None))),
                "late": await count(duties.where(d.c.late.is_(True))),
                "on_time": await count(
                    duties.where(d.c.acknowledged_at.is_not(None), d.c.late.is_(False))
                ),
                "cleared": await count(duties.where(d.c.status == "cleared")),
            }
            # an escalated duty raised exactly one escalation event, to the sender at least
            escalation_events = await count(
                sa.select(sa.func.count())
                .select_from(m)
                .where(m.c.message_type == "duty-escalation")
            )
    finally:
        await store.aclose()

    rel, du, dip = report["release_notices"], report["duties"], report["dip_breaches"]
    assert counted == {
        "sent": rel["sent"],
        "cancelled": rel["cancelled"],
        "released": rel["released"],
        "dip": dip["total"],
        "dip_closed": dip["closed_before_stl"],
        "dip_expired": dip["expired"],
        "duties": du["total"],
        "escalations": du["escalations"],
        "late": du["acknowledged_late"],
        "on_time": du["acknowledged_on_time"],
        "cleared": du["cleared"],
    }
    assert escalation_events == du["escalations"]
    # the scenario is built so that every outcome occurs at least once
    assert rel["sent"] == 60 and rel["short_notice"] == 6
    assert rel["cancelled"] > 0 and rel["amended"] > 0 and rel["released"] > 0
    assert du["acknowledged_on_time"] > 0 and du["acknowledged_late"] > 0
    assert du["missing"] > 0 and du["escalations"] > 0 and du["cleared"] > 0
    assert dip["closed_before_stl"] > 0 and dip["expired"] > 0 and dip["reminders_sent"] > 0
    assert report["licence_recalls"]["priority_lane"] == 1
    assert report["delivery_latency"]["priority"]["count"] >= 1
    assert dt.datetime.fromisoformat(report["as_at"]) > dt.datetime.now(dt.UTC)
