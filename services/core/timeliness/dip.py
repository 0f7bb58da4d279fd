"""DIP breach deadlines: reminders before the statutory time limit (STL) expires, and the
expiry itself.

When the router routes an original DIP breach that is still open (no outcome), it writes,
with the delivery rows:

* ``dip-reminder:<n>`` timers at 00:00 UTC of the STL expiry date minus each ``n`` of
  ``settings.dip_reminder_days`` (default 7 and 2). A reminder point already past when the
  breach is routed is not kept back: the latest such point fires at once, once; earlier
  past points are skipped (a "7 days left" reminder is wrong when one day is left), and
  none fires when the STL has already expired;
* a ``dip-expiry`` timer at 00:00 UTC of the day AFTER the STL expiry date (the STL date
  itself is still in time).

A reminder goes to the responsible parties, the recipients the breach was permitted to
reach (every delivery not withheld) and its sender (the police must progress it), only while
the breach is open. At expiry an open breach becomes ``expired`` (a conditional update, so an
outcome recorded at the same moment wins or loses cleanly) and the same parties are told.
An outcome update cancels the breach's pending timers."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..notices import SYSTEM_SENDER
from ..settings import Settings
from ..store import tables as t
from ..store.rows import row_dict
from ..store.sql import append_audit, insert_ignore
from ..store.timeliness import HandlerResult
from .events import emit

log = logging.getLogger("isa_broker.timeliness")

REMINDER = "dip-reminder"
EXPIRY = "dip-expiry"
OPEN_STATES = (None, "open")


def stl_expiry(payload: dict[str, Any]) -> dt.date | None:
    try:
        return dt.date.fromisoformat(payload["breach"]["stl_expiry"])
    except (KeyError, TypeError, ValueError):
        return None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def plan(
    expiry: dt.date, reminder_days: tuple[int, ...], now: dt.datetime
) -> dict[str, dt.datetime]:
    """kind -> due time of the timers of an open breach routed at ``now``."""
    expires_at = _midnight(expiry + dt.timedelta(days=1))
    timers: dict[str, dt.datetime] = {}
    passed_fired = False
    for n in sorted(set(reminder_days)):  # nearest to expiry first
        at = _midnight(expiry) - dt.timedelta(days=n)
        if at > now:
            timers[f"{REMINDER}:{n}"] = at
        elif not passed_fired and expires_at > now:
            timers[f"{REMINDER}:{n}"] = now
            passed_fired = True
        else:
            passed_fired = True
    timers[EXPIRY] = expires_at
    return timers


async def schedule(
    c: AsyncConnection, settings: Settings, root: dict[str, Any], now: dt.datetime
) -> None:
    """The timers of an original breach being routed, unless it is closed already (an
    outcome arrived with it, or an outcome update overtook it)."""
    if root.get("state") not in OPEN_STATES or root["payload"].get("breach", {}).get("outcome"):
        return
    expiry = stl_expiry(root["payload"])
    if expiry is None:
        return
    for kind, due in plan(expiry, tuple(settings.dip_reminder_days), now).items():
        await c.execute(
            insert_ignore(
                c,
                t.timers,
                {
                    "kind": kind,
                    "subject": root["id"],
                    "due_at": due,
                    "status": "pending",
                    "attempts": 0,
                    "detail": {"stl_expiry": expiry.isoformat()},
                },
            )
        )


async def close(c: AsyncConnection, root_id: str) -> None:
    """An outcome closed the breach: its reminders and expiry are cancelled."""
    tm = t.timers
    await c.execute(
        tm.update()
        .where(
            tm.c.subject == root_id,
            sa.or_(tm.c.kind == EXPIRY, tm.c.kind.like(f"{REMINDER}:%")),
            tm.c.status == "pending",
        )
        .values(status="cancelled")
    )


async def responsible(c: AsyncConnection, root: dict[str, Any]) -> list[str]:
    """The sender and every recipient the breach was permitted to reach."""
    dl = t.deliveries
    r = await c.execute(
        sa.select(dl.c.recipient)
        .where(dl.c.message_id == root["id"], dl.c.status != "withheld")
        .distinct()
    )
    return sorted({root["sender"], *(row[0] for row in r.all())})


async def _root(c: AsyncConnection, root_id: str) -> dict[str, Any] | None:
    found = (await c.execute(sa.select(t.messages).where(t.messages.c.id == root_id))).first()
    return row_dict(found) if found is not None else None


def _days_left(expiry: dt.date, now: dt.datetime) -> int:
    return (expiry - now.astimezone(dt.UTC).date()).days


async def _later_point_due(c: AsyncConnection, timer: dict[str, Any], now: dt.datetime) -> bool:
    """Whether a reminder of the same breach nearer its expiry is due too (the scheduler was
    stopped past both points): then only that one is sent."""
    tm = t.timers
    n = int(timer["kind"].split(":", 1)[1])
    r = await c.execute(
        sa.select(tm.c.kind).where(
            tm.c.subject == timer["subject"],
            tm.c.kind.like(f"{REMINDER}:%"),
            tm.c.status == "pending",
            tm.c.due_at <= now,
        )
    )
    return any(int(k.split(":", 1)[1]) < n for (k,) in r.all())


async def remind(c: AsyncConnection, timer: dict[str, Any], now: dt.datetime) -> HandlerResult:
    """The ``dip-reminder:<n>`` handler."""
    root = await _root(c, timer["subject"])
    if root is None:
        return {"outcome": "no such breach"}
    if root.get("state") not in OPEN_STATES:
        return {"outcome": f"breach {root['state']}", "sent": False}
    expiry = stl_expiry(root["payload"])
    assert expiry is not None  # noqa: S101 - the timer exists because it has one
    days_left = _days_left(expiry, now)
    if days_left < 0:
        return {"outcome": "past the STL (the expiry reports it)", "sent": False}
    if await _later_point_due(c, timer, now):
        return {"outcome": "a later reminder is due too (it is sent instead)", "sent": False}
    targets = await responsible(c, root)
    event_id = await emit(
        c,
        kind="dip-breach-reminder",
        key=f"{timer['kind']}|{root['id']}",
        about=root,
        targets=targets,
        now=now,
        data={
            "message_id": root["id"],
            "sender": root["sender"],
            "stl_expiry": expiry.isoformat(),
            "days_left": days_left,
            "reminder": timer["kind"],
            "responsible": targets,
        },
    )
    await append_audit(
        c,
        "dip_reminder_sent",
        message_id=root["id"],
        message_type=root["message_type"],
        actor=SYSTEM_SENDER,
        person=root["person"],
        detail={"event_id": event_id, "days_left": days_left, "to": targets},
    )
    return {"outcome": "sent", "sent": True, "days_left": days_left, "event_id": event_id}


async def expire(c: AsyncConnection, timer: dict[str, Any], now: dt.datetime) -> HandlerResult:
    """The ``dip-expiry`` handler: an open breach at its STL becomes ``expired``."""
    m = t.messages
    root = await _root(c, timer["subject"])
    if root is None:
        return {"outcome": "no such breach"}
    r = await c.execute(
        m.update()
        .where(m.c.id == root["id"], sa.or_(m.c.state.is_(None), m.c.state == "open"))
        .values(state="expired")
    )
    if not r.rowcount:
        return {"outcome": f"breach {root['state']}"}
    expiry = stl_expiry(root["payload"])
    targets = await responsible(c, root)
    event_id = await emit(
        c,
        kind="dip-breach-expired",
        key=root["id"],
        about=root,
        targets=targets,
        now=now,
        data={
            "message_id": root["id"],
            "sender": root["sender"],
            "stl_expiry": expiry.isoformat() if expiry else None,
            "responsible": targets,
        },
    )
    await append_audit(
        c,
        "dip_expired",
        message_id=root["id"],
        message_type=root["message_type"],
        actor=SYSTEM_SENDER,
        person=root["person"],
        detail={"event_id": event_id, "to": targets},
    )
    log.warning("dip breach message_id=%s reached its STL with no outcome", root["id"])
    return {"outcome": "expired", "event_id": event_id}
