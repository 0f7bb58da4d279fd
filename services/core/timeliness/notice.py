"""The notice period of a release notice: how long before the release partners were told.

Definitions (pure functions, no I/O; the gateway stores the result in ``messages.timeliness``
at intake and recipients see it as CloudEvent extension attributes):

* ``notice_days``: the scheduled release date at 00:00 UTC minus the time the broker accepted
  the notice (or the update), in days, rounded to 2 decimals. Negative when the notice came
  after the release date.
* ``days_early``: how many days before the conditional release date (CRD) the person is
  released: ``conditional_release_date - release.date`` for the early-release types (ECSL,
  home detention curfew) whenever the CRD is given, and for any other type when the CRD is
  given and later than the release date. Otherwise null.
* ``short_notice``: ``notice_days`` is under the configured threshold
  (``ISA_BROKER_SHORT_NOTICE_DAYS``, default 2).

Nothing here is personal data beyond what the dates already are to the recipients entitled to
them; the dictionary holds numbers and flags only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

#: release types that release a person before the conditional release date
EARLY_RELEASE_TYPES = frozenset({"ecsl", "home_detention_curfew"})


def notice_days(release_date: dt.date, accepted_at: dt.datetime) -> float:
    """Release date at 00:00 UTC minus ``accepted_at``, in days, 2 decimals."""
    midnight = dt.datetime.combine(release_date, dt.time(), tzinfo=dt.UTC)
    at = accepted_at if accepted_at.tzinfo else accepted_at.replace(tzinfo=dt.UTC)
    return round((midnight - at).total_seconds() / 86400, 2)


def days_early(
    release_type: str | None, release_date: dt.date, conditional_release_date: dt.date | None
) -> int | None:
    """Days between the release date and the CRD (see the module docstring), else None."""
    if conditional_release_date is None:
        return None
    days = (conditional_release_date - release_date).days
    if release_type in EARLY_RELEASE_TYPES or days > 0:
        return days
    return None


def notice_period(
    release: Mapping[str, Any], accepted_at: dt.datetime, short_notice_days: float
) -> dict[str, Any]:
    """The timeliness of one release-notice version. ``release`` is the payload's
    ``release`` object in its JSON form (dates as ISO strings) or with ``date`` objects."""
    date = _date(release["date"])
    crd = release.get("conditional_release_date")
    days = notice_days(date, accepted_at)
    return {
        "notice_days": days,
        "days_early": days_early(release.get("type"), date, _date(crd) if crd else None),
        "short_notice": days < short_notice_days,
        "short_notice_threshold_days": float(short_notice_days),
    }


def timeliness_of(
    message_type: str,
    payload: Mapping[str, Any],
    accepted_at: dt.datetime,
    short_notice_days: float,
) -> dict[str, Any] | None:
    """What is computed at intake for a message of ``message_type``: the notice period of a
    release notice; the statutory time limit of a DIP breach (a deadline date); else None."""
    if message_type == "release-notice":
        return notice_period(payload["release"], accepted_at, short_notice_days)
    if message_type == "dip-breach":
        return {"stl_expiry": _date(payload["breach"]["stl_expiry"]).isoformat()}
    return None


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
