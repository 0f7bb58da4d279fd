"""``isa-broker demo --scenario tranche``: the seed scenario end to end.

A prison releases a tranche of prisoners early in one batch (a few hundred notices, some
with short notice); some releases are then moved and some cancelled by an exemption panel;
police post drug-programme (DIP) breaches whose statutory time limits approach; probation
recalls one person who is unlawfully at large while the tranche is still being delivered.
The partner agencies acknowledge the alerts their agreements oblige them to acknowledge,
some on time, some late, some never. The broker's clock is then moved ahead day by day for
three weeks so that deadlines, reminders and escalations fall due in seconds.

At the end it prints the summary a partnership board would read, computed from the store
(``Store.timeliness_report``, the same numbers as ``GET /v1/reports/timeliness``), and checks
each number against what the scenario itself did. Every person is synthetic. How far the
long steps are (publishing the tranche, waiting for its deliveries, the simulated days) is
told to an optional ``on_progress(step, done, total)`` callback: the command's progress bar.

One module on purpose (about 500 lines): a script read from top to bottom, the scenario's
steps in the order they happen."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.core.clock import OffsetClock
from services.core.runtime import Runtime
from services.system import System, ensure_demo_clients, settings_for_local

from .agency import AgencyClient
from .receivers import Receivers

PRISON = "hmp-northgate"
PROBATION = "eastborough-pdu"
DIP_TEAM = "eastborough-police-dip"
#: how each agency deals with the alerts it must acknowledge: share acknowledged on time,
#: share acknowledged late (after the escalation), the rest never
BEHAVIOUR = {
    "eastborough-vlo": (0.9, 0.1),
    "eastborough-vawg": (0.7, 0.15),
    "eastborough-housing": (0.6, 0.2),
    "eastborough-recovery": (0.75, 0.1),
}
DAYS = 21
SHORT_NOTICE_EVERY = 10  # one notice in ten gives one day's notice

#: ``on_progress(step, done, total)``: how far a long step of the scenario is
OnProgress = Callable[[str, int, int], None]
PUBLISHING = "publishing the release notices"
DELIVERING = "routing and delivering"
AMENDING = "cancelling and amending releases"
SIMULATING = "simulated days"


def _no_progress(_step: str, _done: int, _total: int) -> None:
    """Progress told to no one."""


def person(i: int) -> dict[str, Any]:
    return {
        "prison_number": f"T{i % 10000:04d}RA",
        "pnc_id": f"26/{700000 + i}T",
        "crn": f"T{500000 + i:06d}",
        "given_name": "Tranche",
        "family_name": f"Person-{i:04d}",
        "date_of_birth": (dt.date(1970, 1, 1) + dt.timedelta(days=97 * i % 12000)).isoformat(),
        "gender": "male" if i % 3 else "female",
    }


def release_notice(i: int, today: dt.date) -> dict[str, Any]:
    """Early (ECSL) releases over the next fortnight; one in ten with a single day's notice."""
    days = 1 if i % SHORT_NOTICE_EVERY == 0 else 3 + i % 12
    release = today + dt.timedelta(days=days)
    risk: dict[str, Any] = {"rosh_level": ("low", "medium", "high")[i % 3]}
    if i % 3 == 1:
        risk["domestic_abuse"] = True
    if i % 7 == 0:
        risk["mappa"] = {"category": "2", "level": "1"}
    needs: dict[str, Any] = {"accommodation": i % 4 == 0}
    if i % 6 == 0:
        needs["opioid_substitution_therapy"] = {"medication": "methadone", "daily_dose_mg": 30}
    return {
        "person": person(i),
        "release": {
            "date": release.isoformat(),
            "conditional_release_date": (release + dt.timedelta(days=14 + i % 57)).isoformat(),
            "type": "ecsl",
            "establishment": "HMP Northgate (fictional)",
        },
        "destination": {
            "no_fixed_abode": i % 4 == 0,
            "local_authority": "Eastborough",
            "probation_delivery_unit": "Eastborough PDU",
        },
        "risk": risk,
        "licence_conditions": {"non_contact": i % 3 == 1, "electronic_monitoring": i % 2 == 0},
        "resettlement_needs": needs,
        "victim_contact_scheme": i % 5 == 1,
    }


def dip_breach(i: int, today: dt.date, stl_in_days: int) -> dict[str, Any]:
    return {
        "person": {
            "pnc_id": f"25/{800000 + i}D",
            "given_name": "Breach",
            "family_name": f"Example-{i:02d}",
            "date_of_birth": (dt.date(1980, 6, 1) + dt.timedelta(days=131 * i)).isoformat(),
        },
        "test": {"date": (today - dt.timedelta(days=20)).isoformat(), "substances": ["opiates"]},
        "assessment": {"appointment": f"{(today - dt.timedelta(days=18)).isoformat()}T10:00:00Z"},
        "breach": {
            "type": "failed_to_attend" if i % 2 else "ra1_not_signed",
            "date": (today - dt.timedelta(days=18)).isoformat(),
            "stl_expiry": (today + dt.timedelta(days=stl_in_days)).isoformat(),
        },
    }


def recall(today: dt.date) -> dict[str, Any]:
    return {
        "person": {**person(4242), "prison_number": None},
        "recall": {
            "type": "emergency",
            "reason_category": "escalating_risk",
            "date": today.isoformat(),
            "unlawfully_at_large": True,
        },
        "risk": {"rosh_level": "very_high", "domestic_abuse": True},
    }


@dataclass
class Tally:
    """What the scenario itself did, to check the store's report against."""

    notices: list[str] = field(default_factory=list)
    number: dict[str, int] = field(default_factory=dict)  # notice id -> tranche number
    short_notice: int = 0
    amended: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    breaches: dict[str, dt.date] = field(default_factory=dict)  # id -> STL expiry
    outcomes: set[str] = field(default_factory=set)
    acked_on_time: int = 0
    acked_late: int = 0
    recall_id: str | None = None
    refused: Counter[str] = field(default_factory=Counter)


def receivable(runtime: Runtime, party: str) -> list[str]:
    """The message types some agreement in force lets ``party`` receive."""
    today = runtime.clock().date()
    return sorted(
        {
            mt
            for a in runtime.engine.policies.agreements
            if a.not_in_force_reason(today) is None
            for f in a.flows
            if party in f.recipients
            for mt in f.message_types
        }
    )


async def run_tranche(
    data_dir: Path | None = None,
    out: Any = print,
    notices: int = 300,
    breaches: int = 12,
    on_progress: OnProgress | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Run the scenario on a fresh embedded system; returns (every check passed, report)."""
    progress = on_progress or _no_progress
    started = time.monotonic()
    # each escalation and expiry is logged as a warning for operators; here the summary
    # counts them instead of a few hundred log lines
    quiet = logging.getLogger("isa_broker.timeliness")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    rng = random.Random(20261202)  # noqa: S311 - a reproducible simulation, not security
    clock = OffsetClock()
    with tempfile.TemporaryDirectory(prefix="isa-broker-tranche-") as tmp:
        settings = settings_for_local(
            data_dir or Path(tmp),
            relay_poll_seconds=0.2,
            webhook_retry_schedule=(0, 0.2, 0.5, 1),
            scheduler_poll_seconds=0.2,
            # every simulated day expires the agencies' tokens, and all of them come from
            # this one address: the per-address token limit would refuse the demo itself
            rate_limit_per_minute=0,
            token_rate_limit_per_minute=0,
        )
        receivers = await Receivers(clock=lambda: clock().timestamp()).start()
        system = System(settings, clock=clock)
        clients: dict[str, AgencyClient] = {}
        try:
            await system.start()
            runtime = system.runtime
            assert runtime is not None  # noqa: S101
            creds = await ensure_demo_clients(runtime)
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            for party, client in clients.items():
                types = receivable(runtime, party)
                if types:
                    sub = await client.subscribe(types, receivers.url(party))
                    receivers.trust(party, sub["secret"])
            out(
                f"isa-broker tranche scenario: gateway {system.gateway_url}, "
                f"{notices} early release notices, {breaches} DIP breaches, 1 recall; "
                f"{DAYS} simulated days"
            )
            tally = Tally()
            day0 = clock().date()
            await _post_tranche(clients, tally, notices, breaches, day0, out, progress)
            await _wait_idle(system, clock, progress)
            await _amend_and_cancel(clients, tally, rng, day0, out, progress)
            await _wait_idle(system, clock, progress)
            fates: dict[str, str] = {}
            await _acknowledge(clients, tally, rng, clock, fates)
            await _wait_idle(system, clock, progress)
            for day in range(1, DAYS + 1):
                progress(SIMULATING, day - 1, DAYS)
                clock.advance(dt.timedelta(days=1))
                await _wait_idle(system, clock, progress)
                if day == 4:
                    await _outcomes(clients, tally, clock().date(), out)
                await _confirm_releases(clients, tally, day0, clock)
                await _acknowledge(clients, tally, rng, clock, fates)
                await _wait_idle(system, clock, progress)
            progress(SIMULATING, DAYS, DAYS)
            report = await runtime.store.timeliness_report(clock())
            ok = _print_summary(report, tally, out, day0, clock().date())
            ok = await _check_events(runtime, receivers, report, out) and ok
        finally:
            for c in clients.values():
                await c.aclose()
            await system.stop()
            await receivers.stop()
            quiet.setLevel(level)
    took = time.monotonic() - started
    out(f"\n{'PASS' if ok else 'FAIL'}: tranche scenario finished in {took:.1f}s")
    return ok, report


async def _post_tranche(
    clients: dict[str, AgencyClient],
    tally: Tally,
    n: int,
    breaches: int,
    day0: dt.date,
    out: Any,
    progress: OnProgress,
) -> None:
    prison = clients[PRISON]
    gate = asyncio.Semaphore(8)
    answered = 0

    async def post(i: int) -> None:
        nonlocal answered
        async with gate:
            r = await prison.publish("release-notice", release_notice(i, day0))
        answered += 1
        progress(PUBLISHING, answered, n)
        if r.status_code != 202:
            tally.refused[f"release-notice {r.status_code}"] += 1
            return
        tally.notices.append(r.json()["id"])
        tally.number[r.json()["id"]] = i
        tally.short_notice += i % SHORT_NOTICE_EVERY == 0

    t0 = time.monotonic()
    await asyncio.gather(*(post(i) for i in range(n)))
    took = time.monotonic() - t0
    out(
        f"\n1. {PRISON} posts {n} early release notices in one batch: "
        f"{len(tally.notices)} accepted in {took:.1f}s"
    )
    # while the tranche is still being delivered, probation recalls a person who is at large
    r = await clients[PROBATION].publish("licence-recall", recall(day0))
    if r.status_code == 202:
        tally.recall_id = r.json()["id"]
    out(f"2. {PROBATION} recalls a person unlawfully at large: HTTP {r.status_code}")
    stl_days = [3, 5, 6, 8, 9, 10, 12, 14, 16, 18, 25, 30]
    for i in range(breaches):
        stl = stl_days[i % len(stl_days)]
        r = await clients[DIP_TEAM].publish("dip-breach", dip_breach(i, day0, stl))
        if r.status_code == 202:
            tally.breaches[r.json()["id"]] = day0 + dt.timedelta(days=stl)
        else:
            tally.refused[f"dip-breach {r.status_code}"] += 1
    out(f"3. {DIP_TEAM} posts {len(tally.breaches)} DIP breaches, STL expiring in 3 to 30 days")


async def _wait_idle(
    system: System, clock: OffsetClock, progress: OnProgress = _no_progress, timeout: float = 180
) -> None:
    """Until nothing is left to do as at the clock's now: every message routed, no delivery
    due, no deadline or reminder due. Progress: the work done of the most there was to do."""
    assert system.runtime is not None  # noqa: S101
    deadline = time.monotonic() + timeout
    quiet = most = 0
    while time.monotonic() < deadline:
        backlog = await system.runtime.store.backlog(clock())
        left = sum(backlog.values())
        most = max(most, left)
        progress(DELIVERING, most - left, most)
        quiet = quiet + 1 if not left else 0
        if quiet >= 3:  # three looks in a row: the last step's effects have settled too
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the system did not settle within {timeout}s: {backlog}")


async def _amend_and_cancel(
    clients: dict[str, AgencyClient],
    tally: Tally,
    rng: random.Random,
    day0: dt.date,
    out: Any,
    progress: OnProgress,
) -> None:
    """An exemption panel refuses one release in fifteen; one in ten is moved a week on."""
    prison = clients[PRISON]
    chosen = rng.sample(range(len(tally.notices)), k=len(tally.notices) // 6)
    cancel = chosen[: len(tally.notices) // 15]
    amend = chosen[len(cancel) :]
    for done, k in enumerate(cancel):
        progress(AMENDING, done, len(chosen))
        message_id = tally.notices[k]
        r = await prison.request(
            "POST", f"/v1/messages/{message_id}/cancel", json={"reason": "exemption_panel_refused"}
        )
        if r.status_code == 202:
            tally.cancelled.add(message_id)
        else:
            tally.refused[f"cancel {r.status_code}"] += 1
    for done, k in enumerate(amend, start=len(cancel)):
        progress(AMENDING, done, len(chosen))
        message_id = tally.notices[k]
        body = release_notice(tally.number[message_id], day0)
        moved = dt.date.fromisoformat(body["release"]["date"]) + dt.timedelta(days=7)
        body["release"]["date"] = moved.isoformat()
        r = await prison.request("POST", f"/v1/messages/{message_id}/amend", json=body)
        if r.status_code == 202:
            tally.amended.add(message_id)
        else:
            tally.refused[f"amend {r.status_code}"] += 1
    progress(AMENDING, len(chosen), len(chosen))
    out(
        f"4. An exemption panel refuses {len(tally.cancelled)} early releases (cancelled); "
        f"{len(tally.amended)} releases move a week on (amended)"
    )


async def _confirm_releases(
    clients: dict[str, AgencyClient], tally: Tally, day0: dt.date, clock: OffsetClock
) -> None:
    """On each release day the prison confirms the releases of that day that still stand."""
    today = clock().date()
    for message_id, i in tally.number.items():
        if message_id in tally.cancelled or message_id in tally.released:
            continue
        release = dt.date.fromisoformat(release_notice(i, day0)["release"]["date"])
        if message_id in tally.amended:
            release += dt.timedelta(days=7)
        if release != today:
            continue
        r = await clients[PRISON].request(
            "POST",
            f"/v1/messages/{message_id}/confirm-release",
            json={"released_at": clock().isoformat()},
        )
        if r.status_code == 202:
            tally.released.add(message_id)
        else:
            tally.refused[f"confirm-release {r.status_code}"] += 1


async def _outcomes(
    clients: dict[str, AgencyClient], tally: Tally, today: dt.date, out: Any
) -> None:
    """On day 4 police record outcomes for the breaches they have progressed."""
    police = clients[DIP_TEAM]
    open_ones = sorted(tally.breaches, key=lambda m: tally.breaches[m])
    progressed = [m for i, m in enumerate(open_ones) if i % 2 == 1][:5]
    outcomes = ["postal_charge_requisition", "arrested", "re_engaged", "no_further_action"]
    for k, message_id in enumerate(progressed):
        r = await police.request(
            "POST",
            f"/v1/messages/{message_id}/outcome",
            json={"outcome": outcomes[k % len(outcomes)], "date": today.isoformat()},
        )
        if r.status_code == 202:
            tally.outcomes.add(message_id)
        else:
            tally.refused[f"outcome {r.status_code}"] += 1
    out(f"5. Day 4: {DIP_TEAM} records outcomes for {len(tally.outcomes)} breaches")


async def _duties(client: AgencyClient, status: str) -> list[dict[str, Any]]:
    """Every duty of the caller (as recipient) in ``status``, following the pages."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        r = await client.request(
            "GET", "/v1/duties", params={"status": status, "limit": 500, "offset": offset}
        )
        r.raise_for_status()
        page = r.json()
        items += page["duties"]
        offset = page["next_offset"]
    return items


async def _acknowledge(
    clients: dict[str, AgencyClient],
    tally: Tally,
    rng: random.Random,
    clock: OffsetClock,
    fates: dict[str, str],
) -> None:
    """Each agency looks at its open duties: some it acknowledges at once, some only after
    they escalated, some never (``BEHAVIOUR``)."""
    now = clock()
    for party, (on_time, late) in BEHAVIOUR.items():
        client = clients[party]
        for duty in await _duties(client, "open") + await _duties(client, "escalated"):
            fate = fates.get(duty["id"])
            if fate is None:
                u = rng.random()
                fate = fates[duty["id"]] = (
                    "prompt" if u < on_time else "late" if u < on_time + late else "never"
                )
            if fate == "never" or (fate == "late" and duty["status"] != "escalated"):
                continue
            actions = duty["allowed_actions"]
            body = {"action": actions[0]} if actions else {}
            r = await client.request("POST", f"/v1/duties/{duty['id']}/acknowledge", json=body)
            if r.status_code != 200:
                tally.refused[f"acknowledge {r.status_code}"] += 1
                continue
            due = dt.datetime.fromisoformat(duty["due_at"])
            if now > due:
                tally.acked_late += 1
            else:
                tally.acked_on_time += 1


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} days"


def _print_summary(
    report: dict[str, Any], tally: Tally, out: Any, first: dt.date, last: dt.date
) -> bool:
    rel, duties, dip = report["release_notices"], report["duties"], report["dip_breaches"]
    lanes = report["delivery_latency"]
    out(f"\nPartnership board summary, {first} to {last} (from the broker's store)")
    rows: list[tuple[str, str, Any]] = [
        ("Release notices sent", str(rel["sent"]), len(tally.notices)),
        ("  amended (date moved)", str(rel["amended"]), len(tally.amended)),
        ("  cancelled by exemption panel", str(rel["cancelled"]), len(tally.cancelled)),
        ("  confirmed released", str(rel["released"]), len(tally.released)),
        ("  short notice (under 2 days)", str(rel["short_notice"]), tally.short_notice),
        ("  notice period, median", _days(rel["notice_days"]["median"]), None),
        ("  notice period, minimum", _days(rel["notice_days"]["min"]), None),
        ("  days early against CRD, median", _days(rel["days_early"]["median"]), None),
        ("Alerts to acknowledge (duties)", str(duties["total"]), None),
        ("  acknowledged on time", str(duties["acknowledged_on_time"]), tally.acked_on_time),
        ("  acknowledged late", str(duties["acknowledged_late"]), tally.acked_late),
        ("  never acknowledged (missing)", str(duties["missing"]), None),
        ("  cleared (notice cancelled or moved)", str(duties["cleared"]), None),
        ("  escalations raised", str(duties["escalations"]), None),
        ("DIP breaches", str(dip["total"]), len(tally.breaches)),
        ("  closed before STL (outcome)", str(dip["closed_before_stl"]), len(tally.outcomes)),
        ("  expired at STL, no outcome", str(dip["expired"]), _expired(tally, last)),
        ("  still open", str(dip["open"]), None),
        ("  reminders sent", str(dip["reminders_sent"]), None),
        (
            "Recalls, unlawfully at large",
            str(report["licence_recalls"]["priority_lane"]),
            1 if tally.recall_id else 0,
        ),
        ("  delivery p50, priority lane", _ms(lanes["priority"]["p50_ms"]), None),
        ("  delivery p50, other traffic", _ms(lanes["normal"]["p50_ms"]), None),
    ]
    ok = not tally.refused
    width = max(len(r[0]) for r in rows)
    for label, value, expected in rows:
        check = ""
        if expected is not None:
            agrees = str(expected) == value
            ok = ok and agrees
            check = "" if agrees else f"   MISMATCH: the scenario counted {expected}"
        out(f"  {label.ljust(width)}  {value:>12}{check}")
    total = sum(
        duties[k]
        for k in ("acknowledged_on_time", "acknowledged_late", "missing", "not_yet_due", "cleared")
    )
    ok = ok and total == duties["total"]
    if tally.refused:
        out(f"  requests refused unexpectedly: {dict(tally.refused)}")
    return ok


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _expired(tally: Tally, last: dt.date) -> int:
    return sum(1 for m, stl in tally.breaches.items() if m not in tally.outcomes and stl < last)


async def _check_events(
    runtime: Runtime, receivers: Receivers, report: dict[str, Any], out: Any
) -> bool:
    """Every escalation reached the sender of the message: count the escalation events that
    arrived at the prison's receiver or inbox against the store's count."""
    kinds = Counter[str]()
    for got in receivers.for_party(PRISON):
        kinds[str(_event_type(got.body))] += 1
    escalations = kinds["org.isa-broker.duty-escalation.v1"]
    ok = escalations == int(report["duties"]["escalations"])
    out(
        f"\n  escalation events received by {PRISON}: {escalations} "
        f"({'agrees' if ok else 'DOES NOT AGREE'} with the store)"
    )
    return ok


def _event_type(body: bytes) -> Any:
    try:
        return json.loads(body).get("type")
    except ValueError:
        return None
