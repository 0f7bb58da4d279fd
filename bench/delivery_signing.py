"""The cost the broker's signature adds to a delivery encrypted to an agency.

Seals the same CloudEvent (about 1.6 KB) both ways, in alternating rounds in one process:
the JWE alone (as deliveries were sealed before they were signed: the baseline) and the
signed then encrypted form :func:`services.core.crypto.recipient.seal` makes now; then the
agency's side, decrypt and verify. Prints the medians, the ratio and the machine's load.

    .venv/bin/python bench/delivery_signing.py [--rounds 5] [--per-round 400]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from joserfc import jwe
from joserfc.jwk import ECKey

from services.core.crypto import recipient


def per_call_ms(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=400)
    args = parser.parse_args()
    private, public = recipient.generate_key("agency-demo")
    signer = ECKey.generate_key("P-256", parameters={"kid": "bench", "alg": "ES256"})
    event = {"id": "m1", "isarecipient": "eastborough-vawg", "data": {"note": "x" * 1500}}
    body = json.dumps(event).encode()
    binding = recipient.Binding("m1", "d1", "eastborough-vawg", "ISA-EB-020@1.2")
    key = ECKey.import_key({k: public[k] for k in ("kty", "crv", "x", "y")})
    header = {
        "alg": recipient.ALG,
        "enc": recipient.ENC,
        "kid": public["kid"],
        "typ": recipient.TYP,
        "cty": "application/cloudevents+json",
        **binding.header(),
    }

    def baseline() -> object:
        return jwe.encrypt_compact(header, body, key, registry=recipient._REGISTRY)

    def signed() -> object:
        return recipient.seal(body, public, binding, signing_key=signer)

    sealed = signed()
    broker_keys = {"keys": [signer.as_dict(private=False)]}

    def opened() -> object:
        return recipient.open_(
            sealed, [private], recipient="eastborough-vawg", broker_keys=broker_keys
        )

    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {"baseline": [], "signed": [], "open": []}
    for _ in range(args.rounds):
        runs["baseline"].append(per_call_ms(baseline, args.per_round))
        runs["signed"].append(per_call_ms(signed, args.per_round))
        runs["open"].append(per_call_ms(opened, args.per_round))
    base, sign, open_ = (statistics.median(runs[k]) for k in ("baseline", "signed", "open"))
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"baseline: seal, JWE only          {base:.3f} ms")
    ratio = f"{sign / base:.2f}x, +{sign - base:.3f} ms"
    print(f"seal, signed then encrypted       {sign:.3f} ms  ({ratio})")
    print(f"open, decrypted and verified      {open_:.3f} ms")


if __name__ == "__main__":
    main()
