"""The retry schedule: jitter, Retry-After, exhaustion."""

from __future__ import annotations

import datetime as dt
import random
from email.utils import format_datetime

import pytest

from services.router.webhook import MAX_RETRY_AFTER, next_delay, parse_retry_after

SCHEDULE = (0.0, 5.0, 300.0, 1800.0)


def test_delays_follow_the_schedule_with_jitter() -> None:
    rng = random.Random(1)
    for attempts, base in [(1, 5.0), (2, 300.0), (3, 1800.0)]:
        delays = [next_delay(attempts, SCHEDULE, None, rng) for _ in range(200)]
        assert all(d is not None and 0.8 * base <= d <= 1.2 * base for d in delays)
        assert len({round(d or 0, 6) for d in delays}) > 100  # really jittered


def test_the_schedule_runs_out() -> None:
    assert next_delay(len(SCHEDULE), SCHEDULE, None, random.Random(1)) is None
    assert next_delay(len(SCHEDULE), SCHEDULE, 10.0, random.Random(1)) is None


def test_a_longer_retry_after_wins_and_a_shorter_one_does_not() -> None:
    rng = random.Random(1)
    assert next_delay(1, SCHEDULE, 120.0, rng) == 120.0
    d = next_delay(2, SCHEDULE, 1.0, rng)
    assert d is not None and d >= 240


@pytest.mark.parametrize(
    ("header", "expected"),
    [("30", 30.0), ("0", 0.0), ("", None), ("soon", None), ("999999999", MAX_RETRY_AFTER)],
)
def test_retry_after_seconds(header: str, expected: float | None) -> None:
    assert parse_retry_after(header, 1_000_000.0) == expected


def test_retry_after_http_date() -> None:
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    header = format_datetime(now + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(header, now.timestamp()) == pytest.approx(90.0)
    past = format_datetime(now - dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now.timestamp()) == 0.0
