"""Retention of disclosures and deletion notices (UK GDPR Art 5(1)(e) and Art 19).

Each agreement declares, per recipient, how long that recipient may keep what it receives
under the agreement (``retention: [{party, period: P2Y}]``). When a delivery is made, the
periods of the agreements whose grants permitted it are recorded with it, and its
``retain_until``: the delivery time plus the period. Where several agreements granted
fields to the same recipient, each agreement's period is kept and ``retain_until`` is the
latest end, since the recipient may lawfully hold the record that long under one of them.
A recipient for whom no agreement declares a period gets none (null): no default is
invented, and the disclosure is reported as "no retention declared" for IG to correct
the agreement.

Once ``retain_until`` has passed, ``isa-broker retention notify`` tells the recipient, on
its own inbox feed, to delete what those deliveries carried (one notice per batch of at
most :data:`NOTICE_BATCH` deliveries), marks each delivery notified and writes a
``deletion_notice`` entry in the disclosure log. Ids, dates and agreement references only:
no personal data.

Periods of years and months are calendar periods (P2Y from 2026-02-28 ends on 2028-02-28;
P1M from 31 January ends on the last day of February); weeks, days and times are exact
(:func:`services.core.isa.model.parse_duration`)."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .clock import Clock, utc_z
from .errors import Unavailable
from .isa.model import PolicySet, agreement_ref, parse_duration
from .notices import notice_event
from .store.values import Retention

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("isa_broker.retention")

#: the CloudEvents type of a deletion notice on a recipient's inbox feed
NOTICE_KIND = "retention-expired"
NOTICE_TYPE = f"org.isa-broker.notice.{NOTICE_KIND}.v1"
NOTICE_SOURCE = "urn:isa-broker:retention"
#: what the recipient must do
ACTION = "delete the records received in these deliveries"
#: deliveries named in one notice at most
NOTICE_BATCH = 500

_CALENDAR = re.compile(r"^P(?!$)(?:(?P<y>[0-9]+)Y)?(?:(?P<mo>[0-9]+)M)?(?P<rest>.*)$")
_NAMESPACE = uuid.UUID("0b6f1f5e-3c1a-4d7e-9a55-2f4e8c1d7a90")


def add_period(start: dt.datetime, period: str) -> dt.datetime:
    """``start`` plus an ISO 8601 duration: years and months on the calendar (a day past
    the end of the target month becomes its last day), the rest exact. Raises
    :class:`ValueError` naming the period when it is not a duration."""
    m = _CALENDAR.match(period)
    if m is None:
        raise ValueError(f"retention period {period!r} is not an ISO 8601 duration (e.g. P2Y)")
    months = 12 * int(m["y"] or 0) + int(m["mo"] or 0)
    year, month = divmod(start.month - 1 + months, 12)
    year += start.year
    day = min(start.day, calendar.monthrange(year, month + 1)[1])
    end = start.replace(year=year, month=month + 1, day=day)
    if m["rest"]:
        try:
            end += parse_duration("P" + m["rest"])
        except ValueError as e:
            raise ValueError(
                f"retention period {period!r} is not an ISO 8601 duration (e.g. P2Y)"
            ) from e
    return end


def _granted_by(grant: Mapping[str, Any]) -> str:
    """``id@version`` of the agreement a grant (its stored dict) comes from."""
    return agreement_ref(grant["agreement"], grant["version"])


def periods_for(
    policies: PolicySet, recipient: str, grants: Iterable[Mapping[str, Any]]
) -> dict[str, str | None]:
    """Per agreement (``id@version``) whose grants permitted a delivery to ``recipient``,
    the retention period it declares for that recipient, or None when it declares none."""
    out: dict[str, str | None] = {}
    for grant in grants:
        agreement = next(
            (
                a
                for a in policies.agreements
                if a.id == grant["agreement"] and a.version == grant["version"]
            ),
            None,
        )
        out[_granted_by(grant)] = (
            agreement.retention.get(recipient) if agreement is not None else None
        )
    return out


def retention_end(
    delivered_at: dt.datetime, periods: Mapping[str, str | None]
) -> tuple[str | None, dt.datetime | None]:
    """The period that holds longest and its end (``retain_until``); (None, None) when no
    agreement declares one."""
    ends = [(add_period(delivered_at, p), p) for p in periods.values() if p]
    if not ends:
        return None, None
    end, period = max(ends)
    return period, end


def deletion_notice(
    recipient: str, deliveries: Sequence[Mapping[str, Any]], now: dt.datetime
) -> tuple[str, str]:
    """The deletion notice (a CloudEvent, JSON) telling ``recipient`` to delete what
    ``deliveries`` carried; returns (its id, its body). The id is derived from the
    deliveries named, so that a receiver can de-duplicate on it."""
    ids = sorted(d["id"] for d in deliveries)
    notice_id = str(uuid.uuid5(_NAMESPACE, recipient + "|" + ",".join(ids)))
    data = {
        "recipient": recipient,
        "action": ACTION,
        "deliveries": [
            {
                "delivery_id": d["id"],
                "message_id": d["message_id"],
                "message_type": d["message_type"],
                "agreements": sorted({_granted_by(g) for g in d["grants"]}),
                "delivered_at": utc_z(d["delivered_at"]),
                "retain_until": utc_z(d["retain_until"]),
            }
            for d in sorted(deliveries, key=lambda d: (d["retain_until"], d["id"]))
        ],
    }
    body = notice_event(
        NOTICE_KIND,
        data,
        source=NOTICE_SOURCE,
        at=now,
        event_id=notice_id,
        isarecipient=recipient,
    )
    return notice_id, body


def as_of_time(text: str) -> dt.datetime:
    """``--as-of``: a date (00:00 UTC that day) or a date-time with its offset. Raises
    :class:`ValueError` naming the option."""
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise ValueError(
            f"--as-of must be a date such as 2028-03-01 or a date-time with its offset: {text!r}"
        ) from e
    if value.tzinfo is None:
        raise ValueError(f"--as-of date-time must carry its offset (e.g. Z): {text!r}")
    return value


def retention_of(
    periods: Mapping[str, str | None] | None, delivered_at: dt.datetime
) -> Retention | None:
    """How long a delivery made at ``delivered_at`` may be kept, to be recorded with it:
    ``periods`` is :func:`periods_for`'s answer for its grants. None for a delivery that
    discloses nothing under an agreement (a broker event)."""
    if periods is None:
        return None
    period, end = retention_end(delivered_at, periods)
    return Retention(periods=dict(periods), period=period, retain_until=end)


def disclosure_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A delivery as the retention views show it (``retention due``, ``GET
    /v1/retention/due``): ids, dates and agreements, never personal data."""

    def iso(value: Any) -> str | None:
        return utc_z(value) if isinstance(value, dt.datetime) else None

    return {
        "delivery_id": row["id"],
        "recipient": row["recipient"],
        "message_id": row["message_id"],
        "message_type": row["message_type"],
        "agreements": sorted({_granted_by(g) for g in row["grants"] or []}),
        "delivered_at": iso(row["delivered_at"]),
        "retention": row["retention"],
        "retain_until": iso(row["retain_until"]),
        "deletion_notified_at": iso(row["deletion_notified_at"]),
    }


async def notify_due(store: Store, now: dt.datetime, *, party: str | None = None) -> list[Any]:
    """Send the deletion notices due at ``now`` (see ``RetentionStore.notify_retention_due``);
    one summary per notice sent."""
    sent: list[Any] = await store.notify_retention_due(
        now, now, deletion_notice, party=party, batch=NOTICE_BATCH
    )
    return sent


async def notify_periodically(store: Store, clock: Clock, every: float) -> None:
    """The router's retention task: every ``every`` seconds, send the deletion notices that
    have fallen due. Idempotent and safe in several routers at once (a delivery is claimed
    before it is notified), so a router that is down only delays them."""
    while True:
        try:
            sent = await notify_due(store, clock())
        except Unavailable as e:
            log.warning("retention notices not sent this time: %s", e)
        else:
            if sent:
                deliveries = sum(len(s["delivery_ids"]) for s in sent)
                log.warning(
                    "sent %d deletion notice(s) for %d deliveries past retention",
                    len(sent),
                    deliveries,
                )
        await asyncio.sleep(every)
