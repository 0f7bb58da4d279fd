"""Commands on the store: ``db upgrade``, the disclosure log (``audit ...``: verify, seal,
checkpoints, subject access, disclosures) and retention (``retention due|notify``). The long
ones show a progress bar on a terminal (:mod:`.progress`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .common import load_settings

#: the IG queries' bar: a count of entries to come is not known, so it only shows time passing
SEARCHING = "searching the disclosure log"

if TYPE_CHECKING:
    from ..core.settings import Settings
    from ..core.store import Store


async def db_upgrade(_: argparse.Namespace) -> int:
    from ..core.store.migrate import current, head

    settings = load_settings()
    store = open_store(settings)
    try:
        await store.init_schema()
        async with store.engine.connect() as conn:
            revision = await conn.run_sync(current)
    finally:
        await store.aclose()
    print(f"schema at revision {revision} (newest: {head()})")
    return 0


async def audit_command(args: argparse.Namespace) -> int:
    """``isa-broker audit verify|seal|rotate-key|checkpoints export``: the tamper-evident disclosure
    log (services.core.audit). Needs the store and ``keys/audit-log/``, not Kafka."""
    from ..core.audit.keys import LogSigningKeys
    from ..core.audit.sealer import Sealer
    from ..core.audit.verify import export_checkpoints, read_export, verify_log
    from .progress import progress_on_stderr  # rich: imported by the commands that draw

    settings = load_settings()
    keys = LogSigningKeys(settings.data_dir)
    exported = read_export(args.checkpoints) if getattr(args, "checkpoints", None) else None
    store = open_store(settings)
    try:
        await store.init_schema()
        if args.audit_command == "verify":
            with progress_on_stderr() as progress:
                verdict = await verify_log(
                    store, keys, exported, on_progress=progress.callback("verifying the log")
                )
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
                settle_seconds=settings.audit.seal_settle_seconds,
                checkpoint_seconds=settings.audit.checkpoint_seconds,
            )
            sealed = await sealer.seal_now()
            print(f"sealed {sealed} entries; the log holds {sealer.sealed} sealed entries")
            return 0
        with progress_on_stderr() as progress:
            doc = await export_checkpoints(
                store, keys, on_progress=progress.callback("reading the sealed entries")
            )
    finally:
        await store.aclose()
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(doc['checkpoints'])} checkpoints to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


async def retention_command(args: argparse.Namespace) -> int:
    """``isa-broker retention due|notify``: disclosures past their retention, and the
    deletion notices telling recipients to delete them (services.core.retention). Needs
    the store only. Ids, dates and agreements: never personal data."""
    from ..core.clock import utc_now
    from ..core.retention import NOTICE_BATCH, as_of_time, deletion_notice

    now = utc_now()
    try:
        as_of = as_of_time(args.as_of) if args.as_of else now
    except ValueError as e:
        raise SystemExit(f"isa-broker: {e}") from e
    settings = load_settings()
    store = open_store(settings)
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
    print_retention(as_of, due, undeclared, args.format)
    return 0


def print_retention(
    as_of: dt.datetime, due: list[dict[str, Any]], undeclared: list[dict[str, Any]], form: str
) -> None:
    from ..core.retention import disclosure_view

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


async def audit_query(args: argparse.Namespace) -> int:
    """``isa-broker audit subject-access|disclosures``: the IG queries of
    :mod:`services.core.audit.subject_access`, logged with actor ``operator``."""
    from ..core.audit import subject_access as sar
    from ..core.crypto.keys import KeyStore
    from ..core.crypto.signing_keys import RotationPolicy
    from ..core.isa import load_policies
    from ..core.messages.models import PersonIdentifiers
    from ..core.store.subject_access import DisclosureQuery
    from .progress import progress_on_stderr

    settings = load_settings()
    policies = load_policies(settings.policies_dir, settings.schemas_dir)
    actor, client_id = "operator", "cli"  # as the other operator commands log
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
    store = open_store(settings)
    try:
        await store.init_schema()
        with progress_on_stderr() as progress:
            if person is not None:
                keys = KeyStore(settings.data_dir, RotationPolicy.from_settings(settings))
                progress.update(SEARCHING, 0)
                lines = await sar.subject_access(
                    store, keys.pseudonymise, policies, person, actor=actor, client_id=client_id
                )
            else:
                query = DisclosureQuery(
                    args.agreement,
                    args.version,
                    args.party,
                    parse_when(args.since, "--since"),
                    parse_when(args.until, "--until"),
                )
                progress.update(SEARCHING, 0)
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


def parse_when(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise SystemExit(f"isa-broker: {option} must be a time such as 2026-12-01T00:00Z") from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def open_store(settings: Settings) -> Store:
    """The store the settings name; its data folder (where the embedded SQLite file and the
    keys live) made first, readable by this user only, so that any store command works on
    a fresh folder."""
    from ..core.store import Store

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Store(settings.resolved_database_url)
