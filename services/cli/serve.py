"""Running the product: the whole embedded system (``dev``), one part (``gateway``,
``router``), or the demonstration (``demo``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from .common import load_settings, warn_if_dev


async def dev(args: argparse.Namespace) -> int:
    from ..system import System, ensure_demo_clients, settings_for_local

    base = load_settings(mode="dev")
    settings = settings_for_local(
        args.data_dir or base.data_dir,
        args.port,
        kafka_bootstrap_servers=base.kafka.bootstrap_servers,
        # ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS if set, else loopback (local receivers)
        **(
            {"webhook_allowed_networks": base.webhooks.allowed_networks}
            if base.webhooks.allowed_networks
            else {}
        ),
    )
    system = System(settings)
    await system.start()
    try:
        assert system.runtime is not None  # noqa: S101
        await ensure_demo_clients(system.runtime)
        print(f"gateway          {system.gateway_url}  (OpenAPI: {system.gateway_url}/docs)")
        print(
            f"kafka bootstrap  {system.bootstrap_servers}"
            f"{'  (embedded Tansu)' if system.broker else ''}"
        )
        print(f"store            {settings.resolved_database_url}")
        print(f"demo clients     {settings.data_dir / 'demo-clients.json'}")
        print("mode             dev: unsafe settings accepted, synthetic data only")
        print("Ctrl-C stops.", flush=True)
        await system.wait()
    finally:
        await system.stop()
    return 0


async def serve(args: argparse.Namespace) -> int:
    """``isa-broker gateway`` / ``isa-broker router``: one part, configured only from the
    environment (production mode included), sharing Kafka and the store with the others."""
    from ..system import System

    settings = load_settings()
    warn_if_dev(settings)
    system = System(settings)
    await system.start(with_gateway=args.command == "gateway", with_router=args.command == "router")
    try:
        if args.command == "gateway":
            http = settings.http
            print(f"gateway listening on {http.host}:{http.port} as {settings.issuer}")
        else:
            print(f"router consuming from {settings.kafka.bootstrap_servers}")
            if settings.http.router_port:
                where = f"{settings.http.host}:{settings.http.router_port}"
                print(f"router endpoint (/livez, /readyz) on {where}")
        sys.stdout.flush()
        await system.wait()
    finally:
        await system.stop()
    return 0


async def demo(args: argparse.Namespace) -> int:
    from ..demo.scenario import run_demo
    from ..demo.tranche import run_tranche
    from .progress import progress_on_stderr

    load_settings(mode="dev")  # the log level and format (each scenario has its own system)

    ok = True
    if args.scenario in ("basic", "all"):
        ok = await run_demo(args.data_dir) and ok
    if args.scenario in ("tranche", "all"):
        if args.scenario == "all":
            print()
        # the scenario's lines go to standard output past the bar; its steps' progress to the bar
        with progress_on_stderr() as progress:
            passed, _ = await run_tranche(
                args.data_dir, out=progress.write, notices=args.notices, on_progress=progress.update
            )
        ok = passed and ok
    return 0 if ok else 1
