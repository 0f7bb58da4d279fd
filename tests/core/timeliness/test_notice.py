"""The notice period of a release notice (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.core.timeliness.lifecycle import event_extensions
from services.core.timeliness.notice import days_early, notice_days, notice_period, timeliness_of

NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_notice_days_counts_from_acceptance_to_midnight_utc_of_the_release_date() -> None:
    assert notice_days(dt.date(2026, 12, 1), NOON) == 2.5
    assert notice_days(dt.date(2026, 11, 29), NOON) == 0.5
    # rounded to 2 decimals
    assert notice_days(dt.date(2026, 11, 29), NOON + dt.timedelta(minutes=7)) == 0.5
    assert notice_days(dt.date(2026, 11, 29), NOON + dt.timedelta(hours=1)) == 0.46


def test_notice_after_the_release_is_negative() -> None:
    assert notice_days(dt.date(2026, 11, 27), NOON) == -1.5


def test_a_naive_time_is_taken_as_utc_and_another_offset_is_converted() -> None:
    assert notice_days(dt.date(2026, 12, 1), NOON.replace(tzinfo=None)) == 2.5
    plus_two = NOON.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert notice_days(dt.date(2026, 12, 1), plus_two) == 2.5


@pytest.mark.parametrize(
    ("release_type", "crd", "expected"),
    [
        ("ecsl", dt.date(2026, 12, 11), 10),
        ("home_detention_curfew", dt.date(2027, 1, 30), 60),
        ("ecsl", None, None),  # early, but no CRD to count from
        ("conditional_release", dt.date(2026, 12, 1), None),  # on the CRD: not early
        ("parole", dt.date(2026, 12, 5), 4),  # any type released before a given CRD
        ("parole", dt.date(2026, 11, 20), None),  # CRD before the release: not early
        ("ecsl", dt.date(2026, 11, 30), -1),  # an early type: counted even if negative
    ],
)
def test_days_early(release_type: str, crd: dt.date | None, expected: int | None) -> None:
    assert days_early(release_type, dt.date(2026, 12, 1), crd) == expected


def test_short_notice_is_under_the_threshold_not_at_it() -> None:
    release = {"date": "2026-11-30", "type": "parole"}
    at_threshold = notice_period(release, dt.datetime(2026, 11, 28, tzinfo=dt.UTC), 2.0)
    assert at_threshold == {
        "notice_days": 2.0,
        "days_early": None,
        "short_notice": False,
        "short_notice_threshold_days": 2.0,
    }
    # compared as shown (2 decimals): a minute under 2 days shows 2.0 and is not flagged
    a_minute = notice_period(release, dt.datetime(2026, 11, 28, 0, 1, tzinfo=dt.UTC), 2.0)
    assert a_minute["short_notice"] is False and a_minute["notice_days"] == 2.0
    just_under = notice_period(release, dt.datetime(2026, 11, 28, 0, 15, tzinfo=dt.UTC), 2.0)
    assert just_under["short_notice"] is True and just_under["notice_days"] == 1.99
    # the threshold is configurable
    assert notice_period(release, NOON, 0.5)["short_notice"] is False
    assert notice_period(release, NOON, 3)["short_notice_threshold_days"] == 3.0


def test_notice_period_reads_dates_as_json_strings_or_dates() -> None:
    as_json = {"date": "2026-12-01", "conditional_release_date": "2026-12-11", "type": "ecsl"}
    as_dates = {
        "date": dt.date(2026, 12, 1),
        "conditional_release_date": dt.date(2026, 12, 11),
        "type": "ecsl",
    }
    assert notice_period(as_json, NOON, 2) == notice_period(as_dates, NOON, 2)
    assert notice_period(as_json, NOON, 2)["days_early"] == 10


def test_timeliness_by_message_type() -> None:
    release = {"release": {"date": "2026-12-01", "type": "parole"}}
    assert timeliness_of("release-notice", release, NOON, 2)["notice_days"] == 2.5
    breach = {"breach": {"stl_expiry": "2027-05-10"}}
    assert timeliness_of("dip-breach", breach, NOON, 2) == {"stl_expiry": "2027-05-10"}
    assert timeliness_of("licence-recall", {}, NOON, 2) is None


def test_event_extensions_are_cloudevents_strings_and_integers() -> None:
    original = {
        "lifecycle": None,
        "refers_to": None,
        "version": 1,
        "timeliness": notice_period(
            {"date": "2026-11-29", "type": "ecsl", "conditional_release_date": "2026-12-09"},
            NOON,
            2,
        ),
    }
    assert event_extensions(original) == {
        "isalifecycle": "original",
        "isaversion": 1,
        "isanoticedays": "0.50",
        "isashortnotice": "true",
        "isadaysearly": 10,
    }
    cancelled = {
        "lifecycle": "cancelled",
        "refers_to": "root-id",
        "version": 3,
        "timeliness": {"notice_days": 5, "short_notice": False, "reason": "recalled"},
    }
    assert event_extensions(cancelled) == {
        "isalifecycle": "cancelled",
        "isaversion": 3,
        "isarefersto": "root-id",
        "isanoticedays": "5.00",
        "isashortnotice": "false",
        "isacancelreason": "recalled",
    }
    # a message type without a notice period carries the lifecycle only
    assert event_extensions({"version": 1, "timeliness": None}) == {
        "isalifecycle": "original",
        "isaversion": 1,
    }
    for name in {**event_extensions(original), **event_extensions(cancelled)}:
        assert name.isalnum() and name.islower() and len(name) <= 20
