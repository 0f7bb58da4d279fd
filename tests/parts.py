"""The broker's parts as separate processes (``isa-broker gateway``, ``isa-broker router``),
as in production: the command line, and a client registered through it."""

from __future__ import annotations

import json
import subprocess
import sys

from services.demo.agency import AgencyClient

CLI = [sys.executable, "-m", "services.cli"]


def create_client(env: dict[str, str], party: str) -> dict[str, str]:
    """``isa-broker clients create --party PARTY`` run as a process: its client id and secret."""
    out = subprocess.run(  # noqa: S603
        [*CLI, "clients", "create", "--party", party], env=env, capture_output=True, check=True
    )
    creds: dict[str, str] = json.loads(out.stdout)
    return creds


def agency(env: dict[str, str], party: str) -> AgencyClient:
    """An agency's client of the gateway at ``ISA_BROKER_PUBLIC_URL``, with a new client of
    ``party`` registered through the command line."""
    creds = create_client(env, party)
    return AgencyClient(env["ISA_BROKER_PUBLIC_URL"], creds["client_id"], creds["client_secret"])
