"""The ``isa-broker`` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from .core.errors import IsaBrokerError
from .core.settings import Settings


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        raise SystemExit(f"isa-broker: invalid settings: {e}") from e
    logging.getLogger().setLevel(settings.log_level)
    return settings


async def _dev(args: argparse.Namespace) -> int:
    from .system import System, ensure_demo_clients, settings_for_local

    base = _settings()
    settings = settings_for_local(
        args.data_dir or base.data_dir,
        args.port,
        kafka_bootstrap_servers=base.kafka_bootstrap_servers,
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
        print("Ctrl-C stops.", flush=True)
        await system.wait()
    finally:
        await system.stop()
    return 0


async def _serve(args: argparse.Namespace) -> int:
    """``isa-broker gateway`` / ``isa-broker router``: one part, configured only from the
    environment (production mode included), sharing Kafka and the store with the others."""
    from .system import System

    settings = _settings()
    system = System(settings)
    await system.start(with_gateway=args.command == "gateway", with_router=args.command == "router")
    try:
        if args.command == "gateway":
            print(f"gateway listening on {settings.host}:{settings.port} as {settings.issuer}")
        else:
            print(f"router consuming from {settings.kafka_bootstrap_servers}")
        sys.stdout.flush()
        await system.wait()
    finally:
        await system.stop()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo.scenario import run_demo

    return 0 if await run_demo(args.data_dir) else 1


async def _clients_create(args: argparse.Namespace) -> int:
    from .core.clients import create_client
    from .core.runtime import Runtime

    settings = _settings()
    runtime = await Runtime.create(settings, settings.kafka_bootstrap_servers or "", embedded=False)
    try:
        jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
        creds = await create_client(runtime, args.party, scopes=args.scope, jwks=jwks)
    finally:
        await runtime.aclose()
    print(json.dumps(creds, indent=2))
    return 0


def _policies_check(_: argparse.Namespace) -> int:
    from .core.isa import load_policies

    settings = _settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    today = dt.datetime.now(dt.UTC).date()
    for a in policies.agreements:
        state = a.not_in_force_reason(today) or "in force"
        span = f"{a.effective_from}..{a.expires_on}"
        print(f"{a.id} v{a.version}: {state}; {len(a.flows)} flow(s), {span}")
    print(f"ok: {len(policies.parties)} parties, {len(policies.agreements)} agreements")
    return 0


def _schemas_export(args: argparse.Namespace) -> int:
    from .core.messages import MESSAGE_TYPES

    settings = _settings()
    stale = []
    for mt in MESSAGE_TYPES.values():
        path = settings.schemas_dir / mt.schema_file
        text = json.dumps(mt.json_schema(), indent=2) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date with the models: {', '.join(stale)}; run isa-broker schemas export")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isa-broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run the whole embedded system with demo parties and ISAs")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path)
    p.set_defaults(run=_dev, is_async=True)

    p = sub.add_parser("gateway", help="run the gateway and outbox relay (settings from env)")
    p.set_defaults(run=_serve, is_async=True)

    p = sub.add_parser("router", help="run the router, one member of its consumer group")
    p.set_defaults(run=_serve, is_async=True)

    p = sub.add_parser("demo", help="run the scripted scenario on a fresh embedded system")
    p.add_argument("--data-dir", type=Path)
    p.set_defaults(run=_demo, is_async=True)

    clients = sub.add_parser("clients", help="manage OAuth clients").add_subparsers(
        dest="clients_command", required=True
    )
    p = clients.add_parser("create", help="register a client for a party; prints credentials")
    p.add_argument("--party", required=True)
    p.add_argument(
        "--scope",
        action="append",
        help="grant this scope (repeatable); default: what the agreements let the party do",
    )
    p.add_argument("--jwks", help="file with the client's public JWK set (private_key_jwt)")
    p.set_defaults(run=_clients_create, is_async=True)

    policies = sub.add_parser("policies", help="ISA files").add_subparsers(
        dest="policies_command", required=True
    )
    p = policies.add_parser("check", help="validate the parties register and agreements")
    p.set_defaults(run=_policies_check, is_async=False)

    schemas = sub.add_parser("schemas", help="JSON Schemas").add_subparsers(
        dest="schemas_command", required=True
    )
    p = schemas.add_parser("export", help="write schemas/*.schema.json from the models")
    p.add_argument("--check", action="store_true", help="only report files out of date")
    p.set_defaults(run=_schemas_export, is_async=False)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Everything this process writes (store, keys, logs) holds personal data or secrets.
    os.umask(0o077)
    try:
        if args.is_async:
            return int(asyncio.run(args.run(args)))
        return int(args.run(args))
    except IsaBrokerError as e:
        print(f"isa-broker: {e.code}: {e.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
