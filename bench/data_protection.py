"""What the data protection costs message intake and delivery: the load of ``throughput.py``
(N release notices about 200 people from C concurrent senders, every entitled party
subscribed by webhook, embedded system in one process, SQLite) run with every protection on
and with every protection off, in alternating rounds (on, off, off, on, ...), each round on
a fresh system. Prints each round's figures, the medians, the ratio on/off and the cost in
percent against the goal (at most 15 %).

The protections:

- topic encryption: the shared topics' records envelope-encrypted
  (``ISA_BROKER_KAFKA_ENCRYPTION``);
- the sealer: the disclosure log sealed by a background task as in a router, every
  ``AUDIT_SEAL_SECONDS`` (default 1 s), checkpoints signed every ``AUDIT_CHECKPOINT_SECONDS``;
  off means the entries are written but never sealed;
- recipient encryption: every webhook body signed by the broker (a compact JWS, ES256) and
  encrypted as a compact JWE (ECDH-ES+A256KW, A256GCM) to its recipient's registered public
  key (subscriptions made with ``encrypt: true``), as every agency-topic record is.

``--only topic-encryption``, ``--only sealer`` or ``--only recipient-encryption`` compares
that one protection alone against none (and, for an encryption, first times sealing and
opening one record). After every
round with the sealer on, the rest of the log is sealed and the whole log verified, outside
the timings.

    .venv/bin/python bench/data_protection.py [--messages N] [--workers C] [--rounds R]
        [--only topic-encryption|sealer|recipient-encryption] [--seal-every S]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from throughput import Load, run_load

from services.core.audit.keys import LogSigningKeys
from services.core.audit.verify import verify_log
from services.core.crypto import recipient
from services.core.crypto.envelope import Envelope
from services.core.crypto.kek import FileKeyEncryptionKeys
from services.core.kafka.encryption import TopicEncryption
from services.core.settings import Settings
from services.demo.scenario import release_notice
from services.system import System

GOAL_COST = 0.15  # the protections may cost intake at most 15 %


@dataclass(frozen=True)
class Protection:
    """Which data protections a round runs with."""

    topic_encryption: bool
    sealer: bool
    #: webhook bodies encrypted to their recipient (the subscriptions ask for it)
    recipient_encryption: bool = False

    def label(self) -> str:
        on = [
            name
            for name, flag in (
                ("topic encryption", self.topic_encryption),
                ("sealer", self.sealer),
                ("recipient encryption", self.recipient_encryption),
            )
            if flag
        ]
        return " + ".join(on) if on else "none"

    def settings(self, seal_every: float | None) -> dict[str, Any]:
        """The Settings overrides for a system with these protections."""
        overrides: dict[str, Any] = {"kafka_encryption": self.topic_encryption}
        if not self.sealer:
            overrides["audit_seal_seconds"] = 0
        elif seal_every is not None:
            overrides["audit_seal_seconds"] = seal_every
        return overrides


ALL_ON = Protection(topic_encryption=True, sealer=True, recipient_encryption=True)
ALL_OFF = Protection(topic_encryption=False, sealer=False)
ONLY = {
    "topic-encryption": Protection(topic_encryption=True, sealer=False),
    "sealer": Protection(topic_encryption=False, sealer=True),
    "recipient-encryption": Protection(
        topic_encryption=False, sealer=False, recipient_encryption=True
    ),
}


def machine() -> str:
    """The machine and its load, for reading the figures."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, load average {load}"


def seal_and_open_cost(rounds: int = 5000) -> tuple[float, float]:
    """Microseconds to seal and to open one release-notice record (file KEKs, warm)."""
    with tempfile.TemporaryDirectory() as tmp:
        enc = TopicEncryption(Envelope(FileKeyEncryptionKeys(Path(tmp) / "kek")))
        value = json.dumps(release_notice(datetime.date.today())).encode()
        headers = [("ce_id", b"0b9c3a52-5f0e-4f7e-9d27-2d0c8b1a0001")]
        sealed = enc.seal("isa.release-notice.v1", value, headers)
        started = time.perf_counter()
        for _ in range(rounds):
            sealed = enc.seal("isa.release-notice.v1", value, headers)
        seal = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for _ in range(rounds):
            enc.open_("isa.release-notice.v1", *sealed[:1], sealed[1])
        opened = (time.perf_counter() - started) / rounds * 1e6
    return seal, opened


def jwe_cost(rounds: int = 1000) -> tuple[float, float]:
    """Microseconds to sign one release-notice body (compact JWS, ES256) and encrypt it to a
    recipient (compact JWE, ECDH-ES+A256KW with A256GCM), and to decrypt it with the
    recipient's key and verify the signature."""
    private, public = recipient.generate_key("bench")
    signer = ECKey.generate_key("P-256", parameters={"kid": "bench-signing", "alg": "ES256"})
    broker = recipient.BrokerKeys({"keys": [signer.as_dict(private=False)]})
    body = json.dumps({"id": "m", "data": release_notice(datetime.date.today())}).encode()
    binding = recipient.Binding("m", "msg_bench", "eastborough-vawg", "ISA-EB-020@1.2")
    started = time.perf_counter()
    for _ in range(rounds):
        token = recipient.seal(body, public, binding, signing_key=signer)
    seal = (time.perf_counter() - started) / rounds * 1e6
    started = time.perf_counter()
    for _ in range(rounds):
        recipient.open_(token, [private], broker_keys=broker, recipient="eastborough-vawg")
    return seal, (time.perf_counter() - started) / rounds * 1e6


async def seal_and_verify(notes: list[str], system: System) -> None:
    """Seal what the round left and verify the whole log (not timed with the load)."""
    assert system.runtime is not None and system.sealer is not None
    started = time.perf_counter()
    sealed = await system.sealer.seal_now()
    settings: Settings = system.settings
    verdict = await verify_log(system.runtime.store, LogSigningKeys(settings.data_dir))
    notes.append(
        f"sealed the rest ({sealed}) and verified the log in"
        f" {time.perf_counter() - started:.2f} s: {verdict.line()}"
    )
    assert verdict.ok, verdict.line()


def cost(on: float, off: float) -> str:
    c = 1 - on / off
    verdict = "met" if c <= GOAL_COST else "NOT met"
    return f"{on / off:6.3f}  cost {c * 100:5.1f} %  (goal ≤ {GOAL_COST * 100:.0f} %: {verdict})"


async def compare(
    on: Protection,
    off: Protection,
    n: int,
    workers: int,
    rounds: int,
    seal_every: float | None,
) -> None:
    print(f"data_protection: {datetime.date.today()}, {machine()}")
    print(
        f"{n} release notices per round from {workers} concurrent senders, {rounds} rounds"
        f" each, fresh system per round; on: {on.label()}; off: {off.label()}"
    )
    if on.topic_encryption:
        seal, opened = seal_and_open_cost()
        print(f"topic encryption: seal {seal:.1f} µs, open {opened:.1f} µs per release notice")
    if on.recipient_encryption:
        seal, opened = jwe_cost()
        print(
            f"recipient encryption: sign and encrypt {seal:.1f} µs, decrypt and verify "
            f"{opened:.1f} µs per body"
        )
    runs: dict[Protection, list[Load]] = {on: [], off: []}
    started = time.perf_counter()
    for r in range(rounds * 2):
        p = on if r % 4 in (0, 3) else off  # on off off on: neither side gets the order
        notes: list[str] = []
        load = await run_load(
            n,
            workers,
            baseline_posts=0,
            before_stop=partial(seal_and_verify, notes) if p.sealer else None,
            encrypt_bodies=p.recipient_encryption,
            **p.settings(seal_every),
        )
        runs[p].append(load)
        print(
            f"round {r + 1:2d}  {'on ' if p is on else 'off'}  intake {load.intake:7.1f}"
            f" messages/s  delivered {load.delivered:7.1f} deliveries/s"
            f"  ({load.deliveries} deliveries)"
        )
        for note in notes:
            print(f"          {note}")
    print(f"{rounds * 2} rounds in {time.perf_counter() - started:.0f} s; {machine()}")
    print()
    med = {
        p: (
            statistics.median(x.intake for x in runs[p]),
            statistics.median(x.delivered for x in runs[p]),
        )
        for p in (on, off)
    }
    rng = {
        p: (
            (min(x.intake for x in runs[p]), max(x.intake for x in runs[p])),
            (min(x.delivered for x in runs[p]), max(x.delivered for x in runs[p])),
        )
        for p in (on, off)
    }
    print(f"medians of {rounds} rounds each  {'on':>8}  {'off':>8}  on/off")
    for i, what in enumerate(("intake, messages/s", "delivered, deliveries/s")):
        print(f"{what:<26}  {med[on][i]:8.1f}  {med[off][i]:8.1f}  {cost(med[on][i], med[off][i])}")
    for p, name in ((on, "on"), (off, "off")):
        (il, ih), (dl, dh) = rng[p]
        print(f"range {name:<3} intake {il:.1f} to {ih:.1f}, delivered {dl:.1f} to {dh:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300, help="release notices per round")
    ap.add_argument("--workers", type=int, default=8, help="concurrent senders")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each, on and off")
    ap.add_argument(
        "--only",
        choices=sorted(ONLY),
        help="compare this one protection alone against none (default: all against none)",
    )
    ap.add_argument(
        "--seal-every",
        type=float,
        default=None,
        help="seconds between the sealer's passes (default: the setting's default)",
    )
    a = ap.parse_args()
    on = ONLY[a.only] if a.only else ALL_ON
    asyncio.run(compare(on, ALL_OFF, a.messages, a.workers, a.rounds, a.seal_every))
