"""DIP breach deadlines: reminders before the statutory time limit (STL) expires, and the
expiry itself.

When the router routes an original DIP breach that is still open (no outcome), it writes,
with the delivery rows:

* ``dip-reminder:<n>`` timers at 00:00 UTC of the STL expiry date minus each ``n`` of
  ``settings.timeliness.dip_reminder_days`` (default 7 and 2). A reminder point already past
  when the breach is routed is not kept back: the latest such point fires at once, once; earlier
  past points are skipped (a "7 days left" reminder is wrong when one day is left), and
  none fires when the STL has already expired;
* a ``dip-expiry`` timer at 00:00 UTC of the day AFTER the STL expiry date (the STL date
  itself is still in time).

A reminder goes to the responsible parties, the recipients the breach was permitted to
reach (every delivery not withheld) and its sender (the police must progress it), only while
the breach is open. At expiry an open breach becomes ``expired`` (a conditional update, so an
outcome recorded at the same moment wins or loses cleanly) and the same parties are told.
An outcome update cancels the breach's pending timers.

The rules are here; the rows (timers, the breach's state, the parties it reached) are read
and written by the store's :class:`~services.core.store.dip.BreachRepository`, on the
transaction (:class:`~services.core.store.transaction.Transaction`) the router or the
scheduler hands in."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..notices import SYSTEM_SENDER
from ..settings import Settings
from ..store.dip import EXPIRY as EXPIRY
from ..store.dip import REMINDER as REMINDER
from ..store.timeliness import HandlerResult
from ..store.values import StoredMessage
from .events import emit

if TYPE_CHECKING:
    from ..store.duties import Timer
    from ..store.transaction import Transaction

log = logging.getLogger("isa_broker.timeliness")

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
    tx: Transaction, settings: Settings, root: StoredMessage, now: dt.datetime
) -> None:
    """The timers of an original breach being routed, unless it is closed already (an
    outcome arrived with it, or an outcome update overtook it)."""
    if root.get("state") not in OPEN_STATES or root["payload"].get("breach", {}).get("outcome"):
        return
    expiry = stl_expiry(root["payload"])
    if expiry is None:
        return
    for kind, due in plan(expiry, tuple(settings.timeliness.dip_reminder_days), now).items():
        await tx.breaches.add_timer(kind, root["id"], due, {"stl_expiry": expiry.isoformat()})


async def close(tx: Transaction, root_id: str) -> None:
    """An outcome closed the breach: its reminders and expiry are cancelled."""
    await tx.breaches.cancel_timers(root_id)


async def responsible(tx: Transaction, root: StoredMessage) -> list[str]:
    """The sender and every recipient the breach was permitted to reach."""
    return sorted({root["sender"], *await tx.breaches.recipients(root["id"])})


def _days_left(expiry: dt.date, now: dt.datetime) -> int:
    return (expiry - now.astimezone(dt.UTC).date()).days


async def _later_point_due(tx: Transaction, timer: Timer, now: dt.datetime) -> bool:
    """Whether a reminder of the same breach nearer its expiry is due too (the scheduler was
    stopped past both points): then only that one is sent."""
    n = int(timer.kind.split(":", 1)[1])
    due = await tx.breaches.reminders_due(timer.subject, now)
    return any(int(k.split(":", 1)[1]) < n for k in due)


async def remind(tx: Transaction, timer: Timer, now: dt.datetime) -> HandlerResult:
    """The ``dip-reminder:<n>`` handler."""
    root = await tx.messages.get(timer.subject)
    if root is None:
        return {"outcome": "no such breach"}
    if root.get("state") not in OPEN_STATES:
        return {"outcome": f"breach {root['state']}", "sent": False}
    expiry = stl_expiry(root["payload"])
    assert expiry is not None  # noqa: S101 - the timer exists because it has one
    days_left = _days_left(expiry, now)
    if days_left < 0:
        return {"outcome": "past the STL (the expiry reports it)", "sent": False}
    if await _later_point_due(tx, timer, now):
        return {"outcome": "a later reminder is due too (it is sent instead)", "sent": False}
    targets = await responsible(tx, root)
    event_id = await emit(
        tx.events,
        kind="dip-breach-reminder",
        key=f"{timer.kind}|{root['id']}",
        about=root,
        targets=targets,
        now=now,
        data={
            "message_id": root["id"],
            "sender": root["sender"],
            "stl_expiry": expiry.isoformat(),
            "days_left": days_left,
            "reminder": timer.kind,
            "responsible": targets,
        },
    )
    await tx.audit.append(
        "dip_reminder_sent",
        message_id=root["id"],
        message_type=root["message_type"],
        actor=SYSTEM_SENDER,
        person=root["person"],
        detail={"event_id": event_id, "days_left": days_left, "to": targets},
    )
    return {"outcome": "sent", "sent": True, "days_left": days_left, "event_id": event_id}


async def expire(tx: Transaction, timer: Timer, now: dt.datetime) -> HandlerResult:
    """The ``dip-expiry`` handler: an open breach at its STL becomes ``expired``."""
    root = await tx.messages.get(timer.subject)
    if root is None:
        return {"outcome": "no such breach"}
    if not await tx.breaches.expire(root["id"]):
        return {"outcome": f"breach {root['state']}"}
    expiry = stl_expiry(root["payload"])
    targets = await responsible(tx, root)
    event_id = await emit(
        tx.events,
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
    await tx.audit.append(
        "dip_expired",
        message_id=root["id"],
        message_type=root["message_type"],
        actor=SYSTEM_SENDER,
        person=root["person"],
        detail={"event_id": event_id, "to": targets},
    )
    log.warning("dip breach message_id=%s reached its STL with no outcome", root["id"])
    return {"outcome": "expired", "event_id": event_id}
