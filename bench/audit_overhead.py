"""What sealing the disclosure log costs message intake: release notices posted through the
real gateway of the embedded system (one process, SQLite), in rounds alternately with the
sealer running (sealing and signing checkpoints as a router does) and not running. Audit
entries are written in both: the business transactions always write them; what is measured
is the cost of sealing them. Rounds go off, on, on, off, ... so that the log's growth over
the run favours neither. Prints both intake rates (medians) and their ratio.

    .venv/bin/python bench/audit_overhead.py [--messages N] [--rounds R] [--seal-every S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from throughput import SENDER, post_notices, subscribe_all

from services.core.audit.keys import LogSigningKeys
from services.core.audit.sealer import Sealer
from services.core.audit.verify import verify_log
from services.demo.agency import AgencyClient
from services.demo.receivers import Receivers
from services.system import System, ensure_demo_clients, settings_for_local


async def main(n: int, rounds: int, workers: int, seal_every: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for_local(
            Path(tmp),
            rate_limit_per_minute=0,
            token_rate_limit_per_minute=0,
            relay_poll_seconds=0.2,
            audit_seal_seconds=0,  # the bench starts and stops the sealer itself
            audit_checkpoint_seconds=10,
        )
        system = await System(settings).start()
        receivers = await Receivers(verify=False).start()
        assert system.runtime is not None and system.sealer is not None
        sealer: Sealer = system.sealer
        try:
            creds = await ensure_demo_clients(system.runtime)
            clients = {
                p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
                for p, c in creds.items()
            }
            await subscribe_all(clients, receivers)
            await post_notices(clients[SENDER], 50, workers)  # warm-up
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for r in range(rounds * 2):
                mode = "off" if r % 4 in (0, 3) else "on"  # off on on off: no order bias
                task = None
                if mode == "on":
                    await sealer.seal_now()  # what the last round wrote
                    task = asyncio.create_task(sealer.run(seal_every))
                receivers.received.clear()
                rate, expected = await post_notices(clients[SENDER], n, workers)
                while len(receivers.received) < expected:
                    await asyncio.sleep(0.05)
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                rates[mode].append(rate)
                print(f"round {r + 1:2d}  sealer {mode:<3}  intake {rate:7.1f} messages/s")
            started = time.perf_counter()
            sealed = await sealer.seal_now()
            verdict = await verify_log(system.runtime.store, LogSigningKeys(settings.data_dir))
            print(
                f"sealed the rest ({sealed}) and verified in {time.perf_counter() - started:.2f} s:"
                f" {verdict.line()}"
            )
            off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
            print(f"messages {n} per round, {rounds} rounds each, {workers} concurrent senders")
            print(f"intake, sealer off   {off:8.1f} messages/s (median)")
            print(
                f"intake, sealer on    {on:8.1f} messages/s (median, sealing every {seal_every} s)"
            )
            print(f"ratio on/off         {on / off:8.3f}  (cost {(1 - on / off) * 100:.1f} %)")
            for c in clients.values():
                await c.aclose()
        finally:
            await receivers.stop()
            await system.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seal-every", type=float, default=1.0)
    a = ap.parse_args()
    asyncio.run(main(a.messages, a.rounds, a.workers, a.seal_every))
