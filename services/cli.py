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
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .core.errors import IsaBrokerError
from .core.messages import MESSAGE_TYPES as MESSAGE_TYPE_NAMES
from .core.settings import DEV_MODE_WARNING, Settings

if TYPE_CHECKING:
    from .core.crypto.keys import KeyStore


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        raise SystemExit(f"isa-broker: invalid settings: {settings_problems(e)}") from e
    logging.getLogger().setLevel(settings.log_level)
    return settings


def _offline_settings() -> Settings:
    """Settings of a command that serves nothing and opens no store (the agreement tools,
    the schema export): dev mode unless ISA_BROKER_MODE says otherwise, since production's
    rules are about what a running broker connects to."""
    mode_set = any(name.upper() == "ISA_BROKER_MODE" for name in os.environ)
    return _settings() if mode_set else _settings(mode="dev")


def settings_problems(error: ValidationError) -> str:
    """Each problem as ``SETTING: what is wrong``, without the values given (pydantic's own
    text repeats the whole input, passwords included)."""
    out = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        loc = [str(part) for part in item["loc"]]
        out.append(f"ISA_BROKER_{'_'.join(loc).upper()}: {message}" if loc else message)
    return "; ".join(out)


def _warn_if_dev(settings: Settings) -> None:
    """A gateway or router in dev mode says so, loudly, before anything else."""
    if settings.mode == "dev":
        bar = "!" * 78
        print(f"{bar}\n!!! {DEV_MODE_WARNING}\n{bar}", file=sys.stderr, flush=True)
        logging.getLogger("isa_broker").warning("%s", DEV_MODE_WARNING)


async def _dev(args: argparse.Namespace) -> int:
    from .system import System, ensure_demo_clients, settings_for_local

    base = _settings(mode="dev")
    settings = settings_for_local(
        args.data_dir or base.data_dir,
        args.port,
        kafka_bootstrap_servers=base.kafka_bootstrap_servers,
        # ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS if set, else loopback (local receivers)
        **(
            {"webhook_allowed_networks": base.webhook_allowed_networks}
            if base.webhook_allowed_networks
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


async def _serve(args: argparse.Namespace) -> int:
    """``isa-broker gateway`` / ``isa-broker router``: one part, configured only from the
    environment (production mode included), sharing Kafka and the store with the others."""
    from .system import System

    settings = _settings()
    _warn_if_dev(settings)
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
    from .demo.tranche import run_tranche

    ok = True
    if args.scenario in ("basic", "all"):
        ok = await run_demo(args.data_dir) and ok
    if args.scenario in ("tranche", "all"):
        if args.scenario == "all":
            print()
        passed, _ = await run_tranche(args.data_dir, notices=args.notices)
        ok = passed and ok
    return 0 if ok else 1


async def _clients_create(args: argparse.Namespace) -> int:
    from .core.clients import create_client
    from .core.runtime import Runtime

    settings = _settings()
    runtime = await Runtime.create(settings, settings.kafka_bootstrap_servers or "", embedded=False)
    try:
        jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
        creds = await create_client(
            runtime,
            args.party,
            scopes=args.scope,
            jwks=jwks,
            external_subject=args.external_subject,
        )
    finally:
        await runtime.aclose()
    print(json.dumps(creds, indent=2))
    return 0


async def _clients_list(_: argparse.Namespace) -> int:
    from .core.clients import auth_method
    from .core.runtime import Runtime

    settings = _settings()
    runtime = await Runtime.create(settings, settings.kafka_bootstrap_servers or "", embedded=False)
    try:
        rows = await runtime.store.list_clients()
    finally:
        await runtime.aclose()
    for r in rows:
        state = "disabled" if r["disabled"] else "active"
        print(f"{r['client_id']}\t{r['party']}\t{auth_method(r)}\t{state}\t{' '.join(r['scopes'])}")
    return 0


async def _clients_set_disabled(args: argparse.Namespace) -> int:
    from .core.clients import set_client_disabled
    from .core.runtime import Runtime

    settings = _settings()
    runtime = await Runtime.create(settings, settings.kafka_bootstrap_servers or "", embedded=False)
    disabled = args.clients_command == "disable"
    try:
        found = await set_client_disabled(runtime, args.client_id, disabled, actor="operator")
    finally:
        await runtime.aclose()
    if found is None:
        print(f"isa-broker: no client {args.client_id!r}", file=sys.stderr)
        return 1
    print(f"{args.client_id} {'disabled' if disabled else 'enabled'}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .core.crypto.keys import KeyStore
    from .core.crypto.signing_keys import RotationPolicy

    settings = _settings()
    store = KeyStore(
        settings.data_dir,
        RotationPolicy.from_settings(settings),
        delivery_rotation=RotationPolicy.for_delivery_signing(settings),
    )
    delivery = getattr(args, "delivery", False)
    keys = store.delivery_signing if delivery else store.signing
    now = dt.datetime.now(dt.UTC)
    if args.keys_command in ("rotate-kek", "retire-kek"):
        if args.keys_command == "rotate-kek":
            kid = store.kek.rotate()
            print(f"new current key-encryption key {kid}")
            asyncio.run(_log_key_event(settings, "kek_rotated", {"kid": kid}))
        else:
            if args.kid in {k.kid for k in store.kek.describe() if not k.current}:
                # webhook signing keys sealed under it are sealed again under the current one
                moved = asyncio.run(_reseal_signing_keys(settings, store))
                print(f"sealed {moved} webhook signing key(s) again under the current key")
            store.kek.retire(args.kid)
            print(f"retired key-encryption key {args.kid}")
            asyncio.run(_log_key_event(settings, "kek_retired", {"kid": args.kid}))
        return 0
    if args.keys_command == "rotate":
        ahead = settings.signing_key_publish_ahead_seconds
        if args.publish_ahead is not None:
            ahead = args.publish_ahead
        if delivery:
            store.delivery_signing_key(now)  # a key to retire, rather than none
        before = {k["kid"] for k in keys.describe(now)}
        keys.rotate(now, dt.timedelta(seconds=ahead))
        added = sorted({k["kid"] for k in keys.describe(now)} - before)
        if added:
            detail = {"kid": added[0], "publish_ahead_seconds": ahead}
            event = "delivery_signing_key_rotated" if delivery else "signing_key_rotated"
            asyncio.run(_log_key_event(settings, event, detail))
    if not delivery:
        for k in keys.describe(now):
            print(f"{k['kid']}\t{k['state']}\tsigns from {k['activates_at']:%Y-%m-%dT%H:%M:%SZ}")
    if delivery or args.keys_command == "list":
        # thumbprints: what agencies pin (docs/integrators.md)
        for k in store.delivery_signing.describe(now):
            print(
                f"{k['kid']}\tdelivery {k['state']}\tsigns from "
                f"{k['activates_at']:%Y-%m-%dT%H:%M:%SZ}\t{k['thumbprint']}"
            )
    if args.keys_command == "list":
        for kek in store.kek.describe():
            state = "current" if kek.current else "unwraps only"
            print(f"{kek.kid}\tkek {state}\tcreated {kek.created_at:%Y-%m-%dT%H:%M:%SZ}")
    return 0


async def _reseal_signing_keys(settings: Settings, keys: KeyStore) -> int:
    """Seal every stored webhook signing key under the current key-encryption key."""
    from .core.crypto.at_rest import SigningKeysAtRest, reseal_all
    from .core.crypto.envelope import Envelope
    from .core.store import Store

    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        return await reseal_all(store, SigningKeysAtRest(Envelope(keys.kek)))
    finally:
        await store.aclose()


async def _log_key_event(settings: Settings, event: str, detail: dict[str, Any]) -> None:
    """A key rotation or retirement made from the command line, in the disclosure log (key
    ids only), with actor ``operator`` and client id ``cli`` as the other operator
    commands."""
    from .core.store import Store

    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        await store.audit(event, actor="operator", detail={**detail, "client_id": "cli"})
    finally:
        await store.aclose()


def _isa_lint(args: argparse.Namespace) -> int:
    from .core.isa.lint import lint

    settings = _offline_settings()
    today = _date(args.at) if getattr(args, "at", None) else dt.datetime.now(dt.UTC).date()
    findings = lint(settings.policies_dir, settings.schemas_dir, today)
    for f in findings:
        print(f)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    agreements = len(list(settings.agreements_dir.glob("*.yaml")))
    print(f"{agreements} agreement file(s): {errors} error(s), {warnings} warning(s)")
    if errors:
        return 1
    return 1 if getattr(args, "strict", False) and warnings else 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise SystemExit(f"isa-broker: --at must be a date such as 2026-12-01: {text!r}") from e


def _isa_explain(args: argparse.Namespace) -> int:
    from .core.errors import SharingRefused, ValidationFailed
    from .core.isa import IsaEngine, load_policies
    from .core.messages import MESSAGE_TYPES, get_message_type
    from .core.messages.fields import leaf_paths

    settings = _offline_settings()
    engine = IsaEngine(load_policies(settings.policies_dir, settings.schemas_dir))
    raw = Path(args.message).read_bytes()
    names = [args.type] if args.type else list(MESSAGE_TYPES)
    payload, mt_name, last_error = None, "", None
    for name in names:
        try:
            payload = get_message_type(name).validate_json(raw)
            mt_name = name
            break
        except ValidationFailed as e:
            last_error = e
    if payload is None:
        assert last_error is not None  # noqa: S101
        print(f"{args.message} is not a valid {' or '.join(names)}:")
        for err in last_error.errors:
            print(f"  {err['pointer'] or '/'}: {err['message']}")
        return 1
    at = _date(args.at) if args.at else dt.datetime.now(dt.UTC).date()
    when = dt.datetime.combine(at, dt.time(12), tzinfo=dt.UTC)
    print(
        f"{mt_name} from {args.as_party} on {at}"
        + (f" for {', '.join(args.purpose)}" if args.purpose else "")
        + ":"
    )
    try:
        decision = engine.decide(args.as_party, mt_name, when, args.purpose, payload)
    except SharingRefused as e:
        print(f"\nREFUSED ({e.reason}): {e.detail}")
        for rule in e.extra.get("rules", []):
            print(
                f"  - {rule['agreement']} v{rule['version']} flow {rule['flow']}: {rule['detail']}"
            )
        return 3
    all_fields = leaf_paths(payload)
    for r in decision.recipients:
        explained = r.explain(payload)
        shared = [f for f in all_fields if explained[f]["disclosed"]]
        print(f"\n{r.party} receives {len(shared)} of {len(all_fields)} fields")
        for f in shared:
            print(f"  + {f:<55} {', '.join(explained[f]['allowed_by'])}")
        blocked = [
            f
            for f in all_fields
            if not explained[f]["disclosed"] and "would_be_allowed_by" in explained[f]
        ]
        for f in blocked:
            print(f"  - {f:<55} withheld by {', '.join(explained[f]['withheld_by'])}")
        rest = len(all_fields) - len(shared) - len(blocked)
        if rest:
            print(f"    ({rest} other field(s) not shared: no flow permits them)")
    if decision.considered:
        print("\nNot applied:")
        for c in decision.considered:
            who = f" for {c.recipient}" if c.recipient else ""
            print(f"  {c.agreement_id} v{c.agreement_version} flow {c.flow_id}{who}: {c.detail}")
    for w in decision.warnings:
        print(f"\nWARNING: {w}")
    return 0


def _isa_coverage(args: argparse.Namespace) -> int:
    from .core.isa import load_policies
    from .core.isa.coverage import coverage, load_needs

    settings = _offline_settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    today = _date(args.at) if args.at else dt.datetime.now(dt.UTC).date()
    needs = load_needs(settings.policies_dir / "needs.yaml", policies)
    cov = coverage(policies, needs, today)
    print(f"Who can send what to whom under the agreements in force on {today}:")
    for mt, cells in sorted(cov.matrix.items()):
        print(f"\n  {mt}")
        for (sender, recipient), refs in sorted(cells.items()):
            print(f"    {sender:<24} -> {recipient:<26} {'; '.join(refs)}")
    marks = {"covered": "ok ", "conditional": "ok?", "not_in_force": "GAP", "not_covered": "GAP"}
    print("\nThe partnership's needs (isa_policies/needs.yaml):")
    for n in cov.needs:
        print(
            f"  {marks[n.status]} {n.need.message_type} {n.need.sender} -> {n.need.recipient}: "
            f"{n.detail}"
        )
        if n.status in ("not_in_force", "not_covered"):
            print(f"      why it matters: {n.need.why}")
    print("\n(ok? = covered only when the flow's condition holds for the message)")
    if cov.expiring:
        print("\nExpiring within 90 days:")
        for aid, date, days in cov.expiring:
            print(f"  {aid} on {date} ({days} days)")
    if cov.reviews_due:
        print("\nReviews due or overdue within 90 days:")
        for aid, date in cov.reviews_due:
            print(f"  {aid} review {'was due' if date < today else 'due'} on {date}")
    gaps = sum(n.status in ("not_in_force", "not_covered") for n in cov.needs)
    print(f"\n{len(cov.needs) - gaps} of {len(cov.needs)} needs covered, {gaps} gap(s)")
    return 0


def _isa_export_odrl(args: argparse.Namespace) -> int:
    from .core.isa import load_policies
    from .core.isa.odrl import export_all

    settings = _offline_settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for aid, doc in export_all(policies).items():
        path = out / f"{aid}.odrl.jsonld"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


async def _db_upgrade(_: argparse.Namespace) -> int:
    from .core.store import Store
    from .core.store.migrate import current, head

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        async with store.engine.connect() as conn:
            revision = await conn.run_sync(current)
    finally:
        await store.aclose()
    print(f"schema at revision {revision} (newest: {head()})")
    return 0


async def _audit(args: argparse.Namespace) -> int:
    """``isa-broker audit verify|seal|rotate-key|checkpoints export``: the tamper-evident disclosure
    log (services.core.audit). Needs the store and ``keys/audit-log/``, not Kafka."""
    from .core.audit.keys import LogSigningKeys
    from .core.audit.sealer import Sealer
    from .core.audit.verify import export_checkpoints, read_export, verify_log
    from .core.store import Store

    settings = _settings()
    keys = LogSigningKeys(settings.data_dir)
    exported = read_export(args.checkpoints) if getattr(args, "checkpoints", None) else None
    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        if args.audit_command == "verify":
            verdict = await verify_log(store, keys, exported)
            print(verdict.line())
            return 0 if verdict.ok else 1
        if args.audit_command == "rotate-key":
            kid = keys.rotate()
            await store.audit(
                "log_signing_key_rotated", actor="operator", detail={"kid": kid, "client_id": "cli"}
            )
            print(
                f"new log-signing key {kid}: it signs the next checkpoint; older keys still verify"
            )
            return 0
        if args.audit_command == "seal":
            sealer = Sealer(
                store,
                keys,
                settle_seconds=settings.audit_seal_settle_seconds,
                checkpoint_seconds=settings.audit_checkpoint_seconds,
            )
            sealed = await sealer.seal_now()
            print(f"sealed {sealed} entries; the log holds {sealer.sealed} sealed entries")
            return 0
        doc = await export_checkpoints(store, keys)
    finally:
        await store.aclose()
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(doc['checkpoints'])} checkpoints to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


async def _retention(args: argparse.Namespace) -> int:
    """``isa-broker retention due|notify``: disclosures past their retention, and the
    deletion notices telling recipients to delete them (services.core.retention). Needs
    the store only. Ids, dates and agreements: never personal data."""
    from .core.clock import utc_now
    from .core.retention import NOTICE_BATCH, as_of_time, deletion_notice
    from .core.store import Store

    now = utc_now()
    try:
        as_of = as_of_time(args.as_of) if args.as_of else now
    except ValueError as e:
        raise SystemExit(f"isa-broker: {e}") from e
    settings = _settings()
    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        if args.retention_command == "notify":
            sent = await store.notify_retention_due(
                as_of, now, deletion_notice, party=args.party, batch=NOTICE_BATCH
            )
            for n in sent:
                print(f"{n['recipient']}\t{n['notice_id']}\t{len(n['delivery_ids'])} deliveries")
            total = sum(len(s["delivery_ids"]) for s in sent)
            print(f"{len(sent)} deletion notice(s) sent for {total} delivery(ies)")
            return 0
        due = await store.retention_due(as_of, party=args.party)
        undeclared = await store.retention_undeclared(party=args.party)
    finally:
        await store.aclose()
    _print_retention(as_of, due, undeclared, args.format)
    return 0


def _print_retention(
    as_of: dt.datetime, due: list[dict[str, Any]], undeclared: list[dict[str, Any]], form: str
) -> None:
    from .core.retention import disclosure_view

    if form == "json":
        doc = {
            "as_of": as_of.isoformat(),
            "due": [disclosure_view(d) for d in due],
            "no_retention_declared": [disclosure_view(d) for d in undeclared],
        }
        print(json.dumps(doc, indent=2))
        return
    print(f"past retention as of {as_of.isoformat()}: {len(due)}")
    for d in map(disclosure_view, due):
        print(
            f"{d['delivery_id']}\t{d['recipient']}\t{d['message_id']}\t{d['message_type']}\t"
            f"{','.join(d['agreements'])}\t{d['delivered_at']}\t{d['retain_until']}\t"
            f"{d['deletion_notified_at'] or 'not notified'}"
        )
    print(f"no retention declared (the agreement must be corrected): {len(undeclared)}")
    for d in map(disclosure_view, undeclared):
        print(
            f"{d['delivery_id']}\t{d['recipient']}\t{d['message_id']}\t{d['message_type']}\t"
            f"{','.join(d['agreements'])}\t{d['delivered_at']}"
        )


async def _audit_query(args: argparse.Namespace) -> int:
    """``isa-broker audit subject-access|disclosures``: the IG queries of
    :mod:`services.core.audit.subject_access`, logged with actor ``operator``."""
    from .core.audit import subject_access as sar
    from .core.crypto.keys import KeyStore
    from .core.crypto.signing_keys import RotationPolicy
    from .core.isa import load_policies
    from .core.messages.models import PersonIdentifiers
    from .core.store import Store
    from .core.store.subject_access import DisclosureQuery

    settings = _settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    actor, client_id = "operator", "cli"  # as the other operator commands log
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    person = None
    if args.audit_command == "subject-access":
        try:
            person = PersonIdentifiers(
                pnc_id=args.pnc_id, crn=args.crn, prison_number=args.prison_number
            )
        except ValidationError as e:
            bad = sorted(
                {"--" + str(x["loc"][0]).replace("_", "-") for x in e.errors() if x["loc"]}
            )
            named = ", ".join(bad) or "give --pnc-id, --crn or --prison-number"
            raise SystemExit(f"isa-broker: invalid identifier: {named}") from None
    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        if person is not None:
            keys = KeyStore(settings.data_dir, RotationPolicy.from_settings(settings))
            lines = await sar.subject_access(
                store, keys.pseudonymise, policies, person, actor=actor, client_id=client_id
            )
        else:
            query = DisclosureQuery(
                args.agreement,
                args.version,
                args.party,
                _when(args.since, "--since"),
                _when(args.until, "--until"),
            )
            lines, _ = await sar.disclosures(
                store, policies, query, actor=actor, client_id=client_id, limit=args.limit
            )
    finally:
        await store.aclose()
    if args.format == "csv":
        text = sar.to_csv(lines)
    else:
        text = json.dumps(sar.to_json(lines), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, newline="")
        print(f"wrote {len(lines)} disclosures to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _when(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise SystemExit(f"isa-broker: {option} must be a time such as 2026-12-01T00:00Z") from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _schemas_export(args: argparse.Namespace) -> int:
    from .core.messages import MESSAGE_TYPES

    settings = _offline_settings()
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

    p = sub.add_parser("demo", help="run the scripted scenarios on a fresh embedded system")
    p.add_argument("--data-dir", type=Path)
    p.add_argument(
        "--scenario",
        choices=("basic", "tranche", "all"),
        default="all",
        help="basic: one release notice and its projections; tranche: a batch of early "
        "releases, amendments, cancellations, DIP breaches and a recall over three simulated "
        "weeks, with the partnership board summary (default: both)",
    )
    p.add_argument(
        "--notices", type=int, default=300, help="release notices in the tranche (default 300)"
    )
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
    p.add_argument(
        "--external-subject",
        help="the client's id at the external OpenID Connect provider (ISA_BROKER_OIDC_ISSUER)",
    )
    p.set_defaults(run=_clients_create, is_async=True)
    p = clients.add_parser("list", help="registered clients (no secrets)")
    p.set_defaults(run=_clients_list, is_async=True)
    for verb in ("disable", "enable"):
        p = clients.add_parser(verb, help=f"{verb} a client (tokens it holds stop within 10 s)")
        p.add_argument("client_id")
        p.set_defaults(run=_clients_set_disabled, is_async=True)

    keys = sub.add_parser(
        "keys",
        help="token-signing and delivery-signing keys, and the Kafka topics' key-encryption keys",
    ).add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser(
        "list",
        help="token-signing keys, delivery-signing keys (with thumbprints), key-encryption keys",
    )
    p.set_defaults(run=_keys, is_async=False)
    p = keys.add_parser(
        "rotate-kek", help="make a new key-encryption key current (old ones keep unwrapping)"
    )
    p.set_defaults(run=_keys, is_async=False)
    p = keys.add_parser(
        "retire-kek",
        help="delete a key-encryption key that is not current: records it wrapped become "
        "unreadable, so only once they are past the topics' retention",
    )
    p.add_argument("kid")
    p.set_defaults(run=_keys, is_async=False)
    p = keys.add_parser("rotate", help="publish a next key; it signs after the publish-ahead")
    p.add_argument(
        "--publish-ahead",
        type=int,
        help="seconds before the new key signs (default ISA_BROKER_SIGNING_KEY_PUBLISH_AHEAD_"
        "SECONDS; 0 after a suspected compromise)",
    )
    p.add_argument(
        "--delivery",
        action="store_true",
        help="rotate the delivery-signing keys (records and webhook bodies encrypted to "
        "agencies) instead of the token-signing keys",
    )
    p.set_defaults(run=_keys, is_async=False)

    db = sub.add_parser("db", help="the store").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply pending schema migrations (also done at start-up)")
    p.set_defaults(run=_db_upgrade, is_async=True)

    audit = sub.add_parser("audit", help="the tamper-evident disclosure log").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser("verify", help="check the whole log and its signed checkpoints")
    p.add_argument(
        "--checkpoints",
        type=Path,
        help="also check the log against checkpoints exported earlier (a partner's copy)",
    )
    p.set_defaults(run=_audit, is_async=True)
    p = audit.add_parser("seal", help="seal committed entries now and sign a checkpoint")
    p.set_defaults(run=_audit, is_async=True)
    p = audit.add_parser(
        "rotate-key",
        help="make a new log-signing key sign the next checkpoints (older keys keep verifying)",
    )
    p.set_defaults(run=_audit, is_async=True)
    cps = audit.add_parser("checkpoints", help="signed checkpoints").add_subparsers(
        dest="checkpoints_command", required=True
    )
    p = cps.add_parser("export", help="write the checkpoints and public keys (JSON)")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=_audit, is_async=True, audit_command="export")
    p = audit.add_parser("subject-access", help="every disclosure about one person (logged)")
    p.add_argument("--pnc-id", help="PNC id, e.g. 26/000001D")
    p.add_argument("--crn", help="probation case reference number")
    p.add_argument("--prison-number", help="prison number")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=_audit_query, is_async=True)
    p = audit.add_parser("disclosures", help="disclosures by agreement, party, period (logged)")
    p.add_argument("--agreement", help="agreement id")
    p.add_argument("--version", help="agreement version (with --agreement)")
    p.add_argument("--party", help="as sender or recipient")
    p.add_argument("--since", help="from this time (ISO 8601; UTC if no offset)")
    p.add_argument("--until", help="before this time")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many (10000)")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(run=_audit_query, is_async=True)

    retention = sub.add_parser(
        "retention", help="disclosures past their retention, and deletion notices"
    ).add_subparsers(dest="retention_command", required=True)
    due = retention.add_parser("due", help="delivered disclosures past retention (ids only)")
    due.add_argument("--format", choices=("table", "json"), default="table")
    for p in (due, retention.add_parser("notify", help="tell recipients to delete them")):
        p.add_argument("--as-of", help="a date (00:00 UTC) or date-time; default: now")
        p.add_argument("--party", help="only deliveries to this recipient")
        p.set_defaults(run=_retention, is_async=True)

    isa = sub.add_parser("isa", help="tools for information governance officers")
    isa_sub = isa.add_subparsers(dest="isa_command", required=True)
    p = isa_sub.add_parser("lint", help="check the parties register and every agreement")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--at", help="check as on this date (default today)")
    p.set_defaults(run=_isa_lint, is_async=False)
    p = isa_sub.add_parser("explain", help="what a message would share with whom, and why")
    p.add_argument("message", help="a JSON file holding one message body")
    p.add_argument("--as", dest="as_party", required=True, help="the sending party")
    p.add_argument("--type", choices=sorted(MESSAGE_TYPE_NAMES), help="default: detected")
    p.add_argument("--purpose", action="append", help="purpose of the share (repeatable)")
    p.add_argument("--at", help="decide as on this date (default today)")
    p.set_defaults(run=_isa_explain, is_async=False)
    p = isa_sub.add_parser("coverage", help="partnership matrix, gaps, expiring agreements")
    p.add_argument("--at", help="as on this date (default today)")
    p.set_defaults(run=_isa_coverage, is_async=False)
    p = isa_sub.add_parser("export-odrl", help="write each agreement as ODRL 2.2 JSON-LD")
    p.add_argument("--out", default="odrl", help="output folder (default ./odrl)")
    p.set_defaults(run=_isa_export_odrl, is_async=False)

    policies = sub.add_parser("policies", help="alias of 'isa lint'").add_subparsers(
        dest="policies_command", required=True
    )
    p = policies.add_parser("check", help="same as 'isa lint'")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(run=_isa_lint, is_async=False)

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
