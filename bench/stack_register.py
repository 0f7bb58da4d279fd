"""Set-up step of the production-stack benchmark: register one OAuth client (client secret)
for every party in the register, as ``isa-broker clients create --party P`` does for one,
in one process instead of one per party. Settings come from the environment the gateway
and the routers get; writes ``{party: credentials}`` as JSON to the file given.

    python bench/stack_register.py OUT.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from services.cli.common import load_settings
from services.core.clients import create_client
from services.core.runtime import Runtime


async def main(out: Path) -> None:
    settings = load_settings()
    runtime = await Runtime.create(settings, settings.kafka.bootstrap_servers or "", embedded=False)
    try:
        creds = {p: await create_client(runtime, p) for p in runtime.engine.policies.parties}
    finally:
        await runtime.aclose()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
