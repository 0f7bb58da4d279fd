"""Where the CPU went during a timed window of the production-stack benchmark: CPU time of
each part (a process and everything it started: the PostgreSQL server with its backends, a
broker), of this process, and of the rest of the machine (other work sharing it), from
``/proc`` (Linux). Sampled every half second; a window's figures are the differences
between the samples nearest its ends, as CPUs busy on average (2.0 = two cores flat out)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
REST = "rest of the machine"
IDLE = "idle"


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    cpu: dict[int, tuple[str, float]]  # pid → (part, CPU seconds so far)
    busy: float  # the machine's busy CPU seconds (/proc/stat)
    idle: float


def _processes() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds) of every process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # the command may hold spaces and parentheses: split after the last ')'
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(entry.name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK)
    return out


def _machine() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK, (idle + iowait) / TICK


def sample(parts: dict[str, list[int]], own: str = "benchmark") -> Sample:
    """Each process attributed to the part whose root it descends from (the nearest root);
    this process itself to ``own``, its other children to their parts or to no part."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    owner: dict[int, str] = {}
    for part, roots in parts.items():
        queue = [r for r in roots if r in procs]
        while queue:
            pid = queue.pop()
            if pid in owner:
                continue
            owner[pid] = part
            queue += [c for c in children.get(pid, []) if c not in owner]
    me = os.getpid()
    if me in procs:
        owner[me] = own
    busy, idle = _machine()
    cpu = {pid: (part, procs[pid][1]) for pid, part in owner.items()}
    return Sample(time.monotonic(), cpu, busy, idle)


def used(before: Sample, after: Sample) -> dict[str, float]:
    """CPUs busy on average between two samples, per part, for the rest of the machine,
    and idle. A process that started in between counts all its CPU time; one that ended
    in between counts none since the earlier sample (it is a small loss)."""
    seconds = after.at - before.at
    if seconds <= 0:
        return {}
    out: dict[str, float] = {}
    for pid, (part, cpu) in after.cpu.items():
        earlier = before.cpu.get(pid)
        delta = cpu - (earlier[1] if earlier else 0.0)
        out[part] = out.get(part, 0.0) + max(0.0, delta)
    busy = after.busy - before.busy
    out = {k: v / seconds for k, v in out.items()}
    out[REST] = max(0.0, busy / seconds - sum(out.values()))
    out[IDLE] = (after.idle - before.idle) / seconds
    return out


class CpuMeter:
    """Samples every ``every`` seconds while :meth:`run` runs; ``parts`` is asked for the
    part → root pids mapping at each sample, since parts come and go."""

    def __init__(self, parts: Callable[[], dict[str, list[int]]], every: float = 0.5) -> None:
        self.parts = parts
        self.every = every
        self.samples: list[Sample] = []

    async def run(self) -> None:
        while True:
            self.samples.append(await asyncio.to_thread(sample, self.parts()))
            await asyncio.sleep(self.every)

    def nearest(self, at: float) -> Sample | None:
        return min(self.samples, key=lambda s: abs(s.at - at), default=None)

    def of_processes(self, start: float, end: float, pids: list[int]) -> list[float]:
        """CPUs busy on average between ``start`` and ``end`` of each process itself."""
        a, b = self.nearest(start), self.nearest(end)
        if a is None or b is None or b.at <= a.at:
            return []
        seconds = b.at - a.at
        out = []
        for pid in pids:
            after, before = b.cpu.get(pid), a.cpu.get(pid)
            spent = (after[1] if after else 0.0) - (before[1] if before else 0.0)
            out.append(max(0.0, spent) / seconds)
        return out

    def between(self, start: float, end: float) -> dict[str, float]:
        a, b = self.nearest(start), self.nearest(end)
        if a is None or b is None or b.at <= a.at:
            return {}
        return used(a, b)


def describe(use: dict[str, float]) -> str:
    """``gateway 0.91, postgres 0.32, ...`` in CPUs, largest first; idle last."""
    if not use:
        return "(no samples)"
    shown = sorted(((k, v) for k, v in use.items() if k != IDLE), key=lambda kv: -kv[1])
    parts = [f"{k} {v:.2f}" for k, v in shown if v >= 0.005]
    return ", ".join(parts) + f"; idle {use.get(IDLE, 0.0):.2f}"
