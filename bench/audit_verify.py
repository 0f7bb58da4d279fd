"""Verifying and exporting a large disclosure log: time and peak memory against the log's
length. For each size N (default 20,000 and 200,000), a SQLite store gets N synthetic
entries (the detail of a delivery outcome: ids, field names and a grant, no personal value),
sealed by the real sealer with a checkpoint every 10,000 entries. Then a fresh process
opens the store and runs ``verify_log`` and ``export_checkpoints``, printing the time of each
and its peak resident set (``getrusage``), against the same process's peak before either
ran (imports and an open store). Memory that does not grow with N shows the log is read in
pages; time should grow linearly. The baseline, last: the peak once every entry is held in
one list, as verification did before it read in pages.

    .venv/bin/python bench/audit_verify.py [--entries N [N ...]] [--checkpoint-every K]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.core.audit.keys import LogSigningKeys
from services.core.audit.sealer import Sealer
from services.core.audit.verify import export_checkpoints, verify_log
from services.core.store import Store
from services.core.store import tables as t

INSERT_BATCH = 5000


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _entry(i: int, at: dt.datetime) -> dict[str, Any]:
    return {
        "at": at,
        "event": "delivered",
        "message_id": f"msg-{i:08d}",
        "message_type": "release-notice",
        "actor": "hmp-northgate",
        "recipient": "eastborough-vlo",
        "person": f"psn_{i:032x}",
        "detail": {
            "delivery_id": f"dlv-{i:08d}",
            "channel": "webhook",
            "fields": ["release.date", "release.conditions", "person.pnc_id"],
            "grants": [
                {
                    "agreement": "prison-to-victim-liaison",
                    "version": 3,
                    "flow": "release-notice",
                    "purpose": "victim-contact-scheme",
                }
            ],
        },
    }


async def build(url: str, data_dir: Path, n: int, checkpoint_every: int) -> float:
    """N entries, sealed, with a checkpoint every ``checkpoint_every``; the seconds taken."""
    store = Store(url)
    await store.init_schema()
    started = time.perf_counter()
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for start in range(0, n, INSERT_BATCH):
        rows = [_entry(i, at) for i in range(start, min(n, start + INSERT_BATCH))]
        async with store.engine.begin() as c:
            await c.execute(t.audit.insert(), rows)
    sealer = Sealer(store, LogSigningKeys(data_dir), batch=min(INSERT_BATCH, checkpoint_every))
    while await sealer.seal_once():
        if sealer.sealed % checkpoint_every == 0:
            await sealer.checkpoint()
    await sealer.checkpoint()
    await store.aclose()
    return time.perf_counter() - started


async def measure(url: str, data_dir: Path) -> dict[str, Any]:
    """In a fresh process: verify, then export; time and peak memory of each."""
    store = Store(url)
    keys = LogSigningKeys(data_dir)
    await store.audit_checkpoints()
    out: dict[str, Any] = {"before_mib": _peak_mib()}
    started = time.perf_counter()
    verdict = await verify_log(store, keys)
    out["verify_s"] = time.perf_counter() - started
    out["verify_mib"] = _peak_mib()
    out["verdict"] = verdict.line()
    started = time.perf_counter()
    doc = await export_checkpoints(store, keys)
    out["export_s"] = time.perf_counter() - started
    out["export_mib"] = _peak_mib()
    out["proofs"] = len(doc["consistency"])
    held = [entry async for entry in store.log_entries()]  # the baseline: the log in a list
    out["held_mib"] = _peak_mib()
    out["held"] = len(held)
    await store.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--checkpoint-every", type=int, default=10_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        url = f"sqlite+aiosqlite:///{args.measure / 'store.db'}"
        print(json.dumps(asyncio.run(measure(url, args.measure))))
        return
    print(
        f"{dt.date.today()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite, checkpoint every {args.checkpoint_every} entries"
    )
    print(
        "| entries | build + seal, s | verify, s | export, s | peak before, MiB "
        "| peak after verify, MiB | peak after export, MiB | baseline: log held in a list, MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.entries:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            url = f"sqlite+aiosqlite:///{data_dir / 'store.db'}"
            built = asyncio.run(build(url, data_dir, n, args.checkpoint_every))
            child = subprocess.run(  # noqa: S603
                [sys.executable, __file__, "--measure", str(data_dir)],
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(child.stdout)
        assert m["verdict"].startswith("OK"), m["verdict"]
        print(
            f"| {n:,} | {built:.1f} | {m['verify_s']:.1f} | {m['export_s']:.1f} "
            f"| {m['before_mib']:.0f} | {m['verify_mib']:.0f} | {m['export_mib']:.0f} "
            f"| {m['held_mib']:.0f} |"
        )
        print(f"  {m['verdict']}; {m['proofs']} consistency proofs exported", file=sys.stderr)


if __name__ == "__main__":
    main()
