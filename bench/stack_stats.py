"""Figures of the production-stack benchmark: percentiles, rates, and the summary of a
py-spy profile."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (no interpolation); ``inf`` counts as a value
    that never came (a delivery that never arrived)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "never"
    return f"{seconds * 1000:.1f} ms"


@dataclass(frozen=True)
class Rate:
    """Completions per second over a window, with the latencies of those completions."""

    count: int
    seconds: float
    p50: float  # seconds
    p99: float
    errors: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.nan

    @classmethod
    def of(
        cls, count: int, seconds: float, latencies: Sequence[float], errors: dict[str, int]
    ) -> Rate:
        return cls(
            count, seconds, percentile(latencies, 50), percentile(latencies, 99), dict(errors)
        )

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Rate:
        errors = d.get("errors") or {}
        assert isinstance(errors, dict)
        return cls(
            int(d["count"]),  # type: ignore[call-overload]
            float(d["seconds"]),  # type: ignore[arg-type]
            float(d["p50"]),  # type: ignore[arg-type]
            float(d["p99"]),  # type: ignore[arg-type]
            {str(k): int(v) for k, v in errors.items()},
        )

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "seconds": self.seconds,
            "p50": self.p50,
            "p99": self.p99,
            "errors": self.errors,
        }


# -- py-spy ----------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    own: list[tuple[str, float]]  # function, share of samples where it was running
    inclusive: list[tuple[str, float]]  # function, share of samples where it was on the stack
    by_package: list[tuple[str, float]]  # top-level package of the running frame, share


def _short(path: str) -> str:
    """A frame's file as a module path: ``sqlalchemy/engine/base.py``, ``asyncio/events.py``,
    ``services/gateway/messages.py``."""
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    stdlib = re.search(r"/lib/python3\.\d+/(.+)$", path)
    if stdlib:
        return stdlib.group(1)
    for root in ("services", "bench"):
        if f"/{root}/" in path:
            return root + "/" + path.rsplit(f"/{root}/", 1)[1]
    return path


def _name(frame: str) -> tuple[str, str]:
    """``function (path:line)`` → (``function (module path)``, top-level package)."""
    found = _FRAME.match(frame.strip())
    if not found:
        return frame.strip(), "?"
    short = _short(found.group("file"))
    package = short.split("/", 1)[0].removesuffix(".py")
    return f"{found.group('function')} ({short})", package


def summarise_pyspy(raw: Path, top: int = 15) -> ProfileSummary:
    """Summarise py-spy's ``--format raw`` output (collapsed stacks: ``frame;frame;... N``,
    outermost first)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        named = [_name(f) for f in frames]
        leaf, package = named[-1]
        own[leaf] += count
        packages[package] += count
        for name in {n for n, _ in named}:
            inclusive[name] += count
    if total == 0:
        return ProfileSummary(0, [], [], [])

    def shares(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in c.most_common(top)]

    return ProfileSummary(total, shares(own), shares(inclusive), shares(packages))
